//! The HTTP routes: login, logout, snapshot, mutations, intake, health. Bodies are parsed
//! here by hand so that every failure (malformed, unknown field, too large) answers with an
//! [`ApiError`](clinic_protocol::ApiError) and a stable code.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use clinic_protocol::wire::paths;
use clinic_protocol::{
    ErrorCode, IntakeRequest, LoginRequest, LoginResponse, MutationOutcome, MutationRequest,
    Snapshot, Staff,
};
use serde::de::DeserializeOwned;

use crate::error::HttpError;
use crate::store::Intake;
use crate::{auth, AppState};

fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, HttpError> {
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

/// The signed-in user of a request.
async fn user(state: &AppState, headers: &HeaderMap) -> Result<Staff, HttpError> {
    let unauthorized = || {
        HttpError::new(
            ErrorCode::Unauthorized,
            "Sign in first; the session is missing or has expired.",
        )
    };
    let token = bearer(headers).ok_or_else(unauthorized)?;
    let live = auth::check_token(state.store.pool(), token)
        .await?
        .ok_or_else(unauthorized)?;
    state
        .store
        .staff(live.staff_id)
        .await
        .ok_or_else(unauthorized)
}

pub(crate) async fn healthz() -> &'static str {
    "ok"
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
/// saying why.
pub(crate) async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LoginResponse>, HttpError> {
    let request: LoginRequest = parse(body)?;
    // Served without the peer's address (`app` driven directly), everyone is one address.
    let from = peer.map_or(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        |Extension(ConnectInfo(a))| a.ip(),
    );
    let attempt = state
        .logins
        .admit(from, &request.username)
        .map_err(|refused| {
            let message = match refused {
                auth::Refused::Address => {
                    "Too many failed sign-ins from your address; wait a minute."
                }
                auth::Refused::Username => {
                    "Too many failed sign-ins for this user; wait a minute, or sign in from \
                     where you usually do."
                }
            };
            HttpError::new(ErrorCode::RateLimited, message)
        })?;
    let account = state.store.staff_by_username(&request.username).await?;
    let hash = account.as_ref().map(|(_, hash)| hash.clone());
    // argon2 is deliberately slow and memory-hungry: a few checks at a time, off the async
    // workers. An unknown username is checked against a dummy hash, so response times do
    // not tell which usernames exist.
    let Ok(ok) = state.logins.check(request.password, hash).await else {
        attempt.not_tried();
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
        return Err(HttpError::new(
            ErrorCode::Unauthorized,
            "Wrong username or password.",
        ));
    };
    attempt.succeeded();
    let token = auth::new_token();
    let expires_at = Utc::now()
        + chrono::Duration::from_std(state.config.token_ttl).unwrap_or(chrono::Duration::hours(12));
    auth::store_token(state.store.pool(), &token, &user, expires_at).await?;
    Ok(Json(LoginResponse {
        token,
        expires_at,
        user,
    }))
}

/// Revokes the request's token. The feeds opened with it end too: each gets an
/// `unauthorized` error frame and closes, and none sends anything else once this answers.
pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<StatusCode, HttpError> {
    user(&state, &headers).await?;
    if let Some(token) = bearer(&headers) {
        // Committed first, then told: a feed checking its token meanwhile sees either.
        auth::revoke(state.store.pool(), token).await?;
        state.sessions.revoked(token).await;
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

pub(crate) async fn mutations(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MutationOutcome>, HttpError> {
    let user = user(&state, &headers).await?;
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
