//! The HTTP routes: login, logout, snapshot, mutations, intake, health, readiness and
//! metrics, and the request log ([`trace_layer`]); the accounts' handlers are in
//! `accounts.rs`, documented here with the rest. Bodies are parsed here by hand so that
//! every failure (malformed, unknown field, too large) answers with an
//! [`ApiError`](clinic_protocol::ApiError) and a stable code.
//!
//! # Accounts: the HTTP API
//!
//! JSON bodies (snake_case fields, unknown fields refused: `malformed`), bearer token in
//! `Authorization: Bearer <token>`. Every refusal is `{"code": "...", "message": "..."}`
//! with the status of [`ErrorCode::http_status`]; the message is a sentence for a person,
//! the code what a program branches on. Types are in `clinic_protocol::wire`.
//!
//! **Refusals common to every endpoint below**: 401 `unauthorized` (no token, or an
//! unknown, expired or revoked one); 403 `account_disabled` (the token is, or was, of a
//! disabled account); 400 `malformed`, 413 `too_large` (the body).
//! The administrators' endpoints also answer 403 `password_change_required` (the session
//! signed in with a one-time password and has not changed it yet) and 403 `forbidden`
//! (the user is not an administrator).
//!
//! ## Signing in: `POST /v1/login`
//! `{"username":"maria","password":"..."}` → 200
//! `{"token":"...","expires_at":"...","user":{Staff},"must_change_password":true}`
//! (`must_change_password` is present only when true: the password was a one-time
//! password, and this session may only call `POST /v1/password` or `POST /v1/logout` until
//! it is changed; everything else answers 403 `password_change_required`, and the feed
//! refuses its hello with an error frame of that code).
//! Refusals: 503 `no_staff` (the server has no account yet; the message says what to run
//! at the server's console), 401 `unauthorized` (wrong username or password), 403
//! `account_disabled` (right password, disabled account), 429 `rate_limited`.
//!
//! ## Changing one's password: `POST /v1/password`
//! Any signed-in user, one with a one-time password included. `{"current":"...",
//! "new":"..."}` → 204. Every OTHER session of the user ends (their feeds close with
//! `unauthorized`); this one goes on, no longer limited.
//! Refusals: 400 `password_too_short` (fewer than
//! [`MIN_PASSWORD_CHARS`](clinic_protocol::wire::MIN_PASSWORD_CHARS) = 10 characters),
//! 400 `invalid_value` (more than 200 characters, or the one-time password again), 403
//! `wrong_password` (`current` is not right; counts as a failed sign-in of the user, under
//! the sign-in limits), 429 `rate_limited`.
//!
//! ## Listing accounts: `GET /v1/staff` (administrators)
//! → 200 `{"seq":41,"staff":[{Staff},...]}`: every account, disabled ones too, by
//! username, as of change `seq`. A Staff is
//! `{"id":"<uuid>","username":"maria","display_name":"Maria Santos","roles":["operator","therapist"],"version":3,"disabled":true,"must_change_password":true}`,
//! `disabled` and `must_change_password` present only when true.
//!
//! ## Making an account: `POST /v1/staff` (administrators)
//! `{"username":"kim","display_name":"Dr. Jun Kim","roles":["therapist"]}` → 201
//! `{"staff":{Staff},"one_time_password":"7kqm-x2pf-9hcz-t4nw"}`. The server keeps only
//! the password's hash: this answer is the one time it can be read. Its owner signs in
//! with it and must change it then.
//! Refusals: 400 `invalid_value` (a username that is not 1 to 64 lowercase letters,
//! digits, `.`, `-`, `_` starting with a letter or digit; a blank name or one over 200
//! characters; no roles), 400 `malformed` (an unknown role: roles are `operator`,
//! `scheduler`, `therapist`, `driver`, `admin`), 409 `username_taken`.
//!
//! ## Changing an account: `PATCH /v1/staff/{id}` (administrators)
//! `{"display_name":"...","roles":[...],"disabled":true,"version":3}`: every field but
//! `version` optional, absent ones unchanged; `version` is the account's version as the
//! administrator saw it. → 200 with the account as it is now (its version one higher; the
//! same version if nothing changed). Disabling revokes every token of the account, and its
//! feeds end with `account_disabled` within a second (before this answers); a change of
//! roles (or name, or enabling again) ends its feeds with a resync (`account_changed`),
//! so its app fetches a snapshot filtered by the new roles.
//! Refusals: 404 `not_found` (no such account, or not an id), 409 `conflict` (`version`
//! is not the account's version any more: reload it), 409 `last_admin` (the change would
//! leave no enabled administrator), 400 `invalid_value` (a blank name, no roles).
//!
//! ## Resetting a password: `POST /v1/staff/{id}/password` (administrators)
//! No body. → 200 `{"staff":{Staff},"one_time_password":"..."}` with a new one-time
//! password (`must_change_password` set); every session of the account ends (its feeds
//! close with `unauthorized`). Refusals: 404 `not_found`.
//!
//! ## Live
//! Each change of an account (made, changed, disabled, reset, or its one-time password
//! changed) is a new version of its staff record in the change log, with the
//! administrator as its actor: every signed-in user's feed carries it, so every
//! administrator's dashboard sees it at once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use clinic_protocol::wire::paths;
use clinic_protocol::{
    ErrorCode, IntakeRequest, LoginRequest, LoginResponse, MutationOutcome, MutationRequest,
    Snapshot, Staff,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tower_http::trace::{HttpMakeClassifier, MakeSpan, OnResponse, TraceLayer};
use tracing::Span;

use crate::error::HttpError;
use crate::metrics::{Gauges, Metrics, SignIn};
use crate::store::Intake;
use crate::{auth, AppState};

pub(crate) fn parse<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, HttpError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            HttpError::new(ErrorCode::TooLarge, "The request body is too large.")
        } else {
            HttpError::new(
                ErrorCode::Malformed,
                format!("The request body could not be read: {e}"),
            )
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        HttpError::new(
            ErrorCode::Malformed,
            format!("The request body is not valid: {e}"),
        )
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// The signed-in user of a request; a session with a one-time password is refused with
/// `password_change_required` (see [`session`]).
pub(crate) async fn user(state: &AppState, headers: &HeaderMap) -> Result<Staff, HttpError> {
    let (user, _) = session(state, headers).await?;
    if user.must_change_password {
        return Err(HttpError::new(
            ErrorCode::PasswordChangeRequired,
            "Change your one-time password first (POST /v1/password).",
        ));
    }
    Ok(user)
}

/// The signed-in user of a request and their token, even a session that must change its
/// one-time password (only changing it and signing out take that). A disabled account is
/// `account_disabled`, anything else without a live session `unauthorized`.
pub(crate) async fn session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Staff, String), HttpError> {
    let unauthorized = || {
        HttpError::new(
            ErrorCode::Unauthorized,
            "Sign in first; the session is missing or has expired.",
        )
    };
    let token = bearer(headers).ok_or_else(unauthorized)?;
    match auth::authenticate(&state.store, token).await? {
        Ok((user, _)) => Ok((user, token.to_owned())),
        Err(auth::Denied::Disabled) => Err(HttpError::new(
            ErrorCode::AccountDisabled,
            "This account is disabled; ask an administrator.",
        )),
        Err(auth::Denied::NoSession) => Err(unauthorized()),
    }
}

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /livez`: the process is up and serving HTTP. Nothing else is checked, so a
/// supervisor restarts the process only when it is truly stuck, not when its disk is.
pub(crate) async fn livez() -> Json<Live> {
    Json(Live { live: true })
}

#[derive(Debug, Serialize)]
pub(crate) struct Live {
    live: bool,
}

/// `GET /readyz`: 200 `{"ready":true,"head":N}` when a write can be committed now, else
/// 503 `{"ready":false,"head":N,"code":...,"message":...}` with a stable code (see
/// [`NotReady`](crate::ready::NotReady)). Cheap under a flood: see [`crate::ready`].
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let stopping = *state.shutdown.borrow();
    let checked = state.readiness.check(&state.store, stopping).await;
    let head = state.store.head().await;
    match checked {
        Ok(()) => (
            StatusCode::OK,
            Json(Ready {
                ready: true,
                head,
                code: None,
                message: None,
            }),
        ),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Ready {
                ready: false,
                head,
                code: Some(why.code()),
                message: Some(why.message()),
            }),
        ),
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Ready {
    ready: bool,
    head: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
}

/// `GET /metrics`, in Prometheus' text format (see [`crate::metrics`]). With a metrics
/// token configured (`--metrics-token`), only `Authorization: Bearer <token>` gets them;
/// anything else is `unauthorized`, like every refusal.
pub(crate) async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    if let Some(token) = &state.config.metrics_token {
        if !bearer(&headers).is_some_and(|given| auth::same_secret(token, given)) {
            return Err(HttpError::new(
                ErrorCode::Unauthorized,
                "The metrics need the metrics token (Authorization: Bearer ...).",
            ));
        }
    }
    let text = state.metrics.render(Gauges {
        feeds_open: state.feeds.count(),
        head: state.store.head().await,
    });
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

/// The paths probed and scraped every few seconds: their requests are logged at debug
/// level, so that a monitor does not fill the log at the default level.
const PROBES: [&str; 4] = [paths::HEALTHZ, LIVEZ, READYZ, METRICS];

/// The liveness probe's path.
pub(crate) const LIVEZ: &str = "/livez";
/// The readiness probe's path.
pub(crate) const READYZ: &str = "/readyz";
/// The Prometheus scrape path.
pub(crate) const METRICS: &str = "/metrics";

/// Logs every request (method, path without its query, status, latency) and counts its
/// answer by status class (`clinic_http_responses_total`).
pub(crate) fn trace_layer(
    metrics: Arc<Metrics>,
) -> TraceLayer<HttpMakeClassifier, RequestSpan, (), Answered, (), (), ()> {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        // One line per request, when it is answered (a 5xx too, at warn): nothing when it
        // arrives, nor per body chunk or at the end of a body.
        .on_request(())
        .on_response(Answered(metrics))
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// The span of a request: its method and path. Never the query string, where a client
/// could have put a secret, nor any header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        // Bounded: anyone may send a path of many kilobytes, and each is logged.
        let path = truncated(request.uri().path(), 128);
        if PROBES.contains(&path.as_ref()) {
            tracing::debug_span!("request", method = %request.method(), path = %path)
        } else {
            tracing::info_span!("request", method = %request.method(), path = %path)
        }
    }
}

/// The first `max` bytes of `text` (cut on a character boundary), marked if cut.
fn truncated(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

/// Counts an answer and logs it, at its span's level (warn for a 5xx).
#[derive(Debug, Clone)]
pub(crate) struct Answered(Arc<Metrics>);

impl<B> OnResponse<B> for Answered {
    fn on_response(self, response: &axum::http::Response<B>, latency: Duration, span: &Span) {
        let status = response.status();
        self.0.http_answer(status);
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let status = status.as_u16();
        if response.status().is_server_error() {
            tracing::warn!(status, latency_us, "answered");
        } else if span
            .metadata()
            .is_some_and(|m| *m.level() == tracing::Level::INFO)
        {
            tracing::info!(status, latency_us, "answered");
        } else {
            tracing::debug!(status, latency_us, "answered");
        }
    }
}

/// Unknown paths get an [`ApiError`](clinic_protocol::ApiError) like every other refusal.
pub(crate) async fn not_found() -> HttpError {
    HttpError::new(ErrorCode::NotFound, "There is no such endpoint.")
}

/// A known path with a method it does not take (`GET /v1/mutations`): an
/// [`ApiError`](clinic_protocol::ApiError) too, instead of axum's empty 405. axum adds the
/// `Allow` header listing the methods the path takes.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> HttpError {
    HttpError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} does not take {method}; the Allow header says what it takes.",
            uri.path()
        ),
    )
}

/// Signs in. Failures are limited per address and per username, and password checks run
/// a few at a time (see [`auth::Logins`]); each refusal is `rate_limited` with a sentence
/// saying why. Every attempt is counted by its result (`clinic_sign_ins_total`).
pub(crate) async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LoginResponse>, HttpError> {
    // Set where the result is known; an early `?` (a bad body, a database error) is an error.
    let mut result = SignIn::Error;
    let answer = sign_in(&state, peer, body, &mut result).await;
    state.metrics.sign_in(result);
    answer
}

async fn sign_in(
    state: &AppState,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Result<Bytes, BytesRejection>,
    result: &mut SignIn,
) -> Result<Json<LoginResponse>, HttpError> {
    let request: LoginRequest = parse(body)?;
    // Nobody can sign in, and only someone at the server's console can change that: say so
    // (from memory, no password check: cheap whoever asks).
    if state.store.staff_count().await == 0 {
        *result = SignIn::NoStaff;
        return Err(HttpError::new(
            ErrorCode::NoStaff,
            crate::accounts::NO_STAFF_HINT,
        ));
    }
    // Served without the peer's address (`app` driven directly), everyone is one address.
    let from = peer.map_or(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        |Extension(ConnectInfo(a))| a.ip(),
    );
    let attempt = state
        .logins
        .admit(from, &request.username)
        .map_err(|refused| {
            let (counted, message) = match refused {
                auth::Refused::Address => (
                    SignIn::LimitedAddress,
                    "Too many failed sign-ins from your address; wait a minute.",
                ),
                auth::Refused::Username => (
                    SignIn::LimitedUsername,
                    "Too many failed sign-ins for this user; wait a minute, or sign in from \
                     where you usually do.",
                ),
            };
            *result = counted;
            HttpError::new(ErrorCode::RateLimited, message)
        })?;
    let account = state.store.staff_by_username(&request.username).await?;
    let hash = account.as_ref().map(|(_, hash)| hash.clone());
    // argon2 is deliberately slow and memory-hungry: a few checks at a time, off the async
    // workers. An unknown username is checked against a dummy hash, so response times do
    // not tell which usernames exist.
    let Ok(ok) = state.logins.check(request.password, hash).await else {
        attempt.not_tried();
        *result = SignIn::Busy;
        let (running, most) = state.logins.checks_running();
        tracing::debug!(
            "a sign-in found no free password check ({running} running, at most {most} so far)"
        );
        return Err(HttpError::new(
            ErrorCode::RateLimited,
            "The server is busy with other sign-ins; try again in a moment.",
        ));
    };
    let Some((user, _)) = account.filter(|_| ok) else {
        // Dropped as it is, the attempt counts as a failure.
        drop(attempt);
        *result = SignIn::WrongCredentials;
        return Err(HttpError::new(
            ErrorCode::Unauthorized,
            "Wrong username or password.",
        ));
    };
    attempt.succeeded();
    // Said only to whoever knows the password, so that it tells a guesser nothing.
    if user.disabled {
        *result = SignIn::Disabled;
        return Err(HttpError::new(
            ErrorCode::AccountDisabled,
            "This account is disabled; ask an administrator.",
        ));
    }
    let token = auth::new_token();
    let expires_at = Utc::now()
        + chrono::Duration::from_std(state.config.token_ttl).unwrap_or(chrono::Duration::hours(12));
    auth::store_token(state.store.db(), &token, &user, expires_at).await?;
    *result = SignIn::Ok;
    Ok(Json(LoginResponse {
        token,
        expires_at,
        must_change_password: user.must_change_password,
        user,
    }))
}

/// Revokes the request's token. The feeds opened with it end too: each gets an
/// `unauthorized` error frame and closes, and none sends anything else once this answers.
/// A session that must change its one-time password may sign out too.
pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<StatusCode, HttpError> {
    session(&state, &headers).await?;
    if let Some(token) = bearer(&headers) {
        // Committed first, then told: a feed checking its token meanwhile sees either.
        auth::revoke(state.store.db(), token).await?;
        state
            .end_sessions(&[auth::token_hash(token)], auth::Ending::SignedOut)
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn snapshot(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Snapshot>, HttpError> {
    let user = user(&state, &headers).await?;
    let (seq, records) = state.store.snapshot(&user).await;
    Ok(Json(Snapshot { seq, user, records }))
}

/// A mutation, counted by its answer (`clinic_mutations_total`).
pub(crate) async fn mutations(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MutationOutcome>, HttpError> {
    let answer = mutate(&state, &headers, body).await;
    state.metrics.mutation(
        answer
            .as_ref()
            .map(|Json(outcome)| outcome)
            .map_err(|e| e.0),
    );
    answer
}

async fn mutate(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MutationOutcome>, HttpError> {
    let user = user(state, headers).await?;
    let request: MutationRequest = parse(body)?;
    let outcome = state
        .store
        .mutate(&user, request.mutation_id, &request.mutation)
        .await?;
    Ok(Json(outcome))
}

/// A booking from the clinic's web form: the intake key, then the rate limit per address
/// ([`IntakeLimit`](crate::intake::IntakeLimit)), then the body and its optional
/// `Idempotency-Key` (the same key again answers with the first booking, marked
/// `idempotent-replayed: true`; with another body, `conflict`). 201 with the booking.
pub(crate) async fn intake(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let given = headers
        .get(paths::INTAKE_KEY_HEADER)
        .and_then(|v| v.to_str().ok());
    match (&state.config.intake_key, given) {
        (Some(key), Some(given)) if auth::same_secret(key, given) => {}
        _ => {
            return Err(HttpError::new(
                ErrorCode::BadIntakeKey,
                "The intake key is missing or wrong.",
            ))
        }
    }
    // Served without the peer's address (`app` driven directly), everyone is one address.
    let from = peer.map_or(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        |Extension(ConnectInfo(a))| a.ip(),
    );
    if !state.intake_limit.admit(from) {
        return Err(HttpError::new(
            ErrorCode::RateLimited,
            "Too many web bookings from your address; wait a minute.",
        ));
    }
    let request: IntakeRequest = parse(body)?;
    let key = crate::intake::idempotency_key(&headers)?;
    let (booking, replayed) = match state.store.intake(request, key).await? {
        Intake::Created(booking) => (booking, false),
        Intake::Replayed(booking) => (booking, true),
        Intake::Refused(r) => return Err(HttpError::new(r.code, r.message)),
    };
    let mut answer = (StatusCode::CREATED, Json(booking)).into_response();
    if replayed {
        answer.headers_mut().insert(
            paths::IDEMPOTENT_REPLAYED_HEADER,
            HeaderValue::from_static("true"),
        );
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::truncated;

    #[test]
    fn a_logged_path_is_bounded_and_cut_on_a_character() {
        assert_eq!(truncated("/v1/login", 128), "/v1/login");
        let long = format!("/{}", "é".repeat(200));
        let cut = truncated(&long, 128);
        assert!(cut.len() <= 128 + '…'.len_utf8(), "{}", cut.len());
        assert!(cut.ends_with('…'));
    }
}
