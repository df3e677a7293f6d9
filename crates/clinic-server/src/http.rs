//! The HTTP routes: login, logout, snapshot, mutations, intake, health. Bodies are parsed
//! here by hand so that every failure (malformed, unknown field, too large) answers with an
//! [`ApiError`](clinic_protocol::ApiError) and a stable code.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use clinic_protocol::wire::paths;
use clinic_protocol::{
    Booking, ErrorCode, IntakeRequest, LoginRequest, LoginResponse, MutationOutcome,
    MutationRequest, NewBooking, Snapshot, Staff,
};
use serde::de::DeserializeOwned;

use crate::error::HttpError;
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

pub(crate) async fn login(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LoginResponse>, HttpError> {
    let request: LoginRequest = parse(body)?;
    let allowed = state
        .logins
        .lock()
        .await
        .allow(&request.username, state.config.login_attempts_per_minute);
    if !allowed {
        return Err(HttpError::new(
            ErrorCode::RateLimited,
            "Too many sign-in attempts; wait a minute.",
        ));
    }
    let wrong = || HttpError::new(ErrorCode::Unauthorized, "Wrong username or password.");
    let account = state.store.staff_by_username(&request.username).await?;
    let hash = account.as_ref().map(|(_, hash)| hash.clone());
    let password = request.password;
    // argon2 is deliberately slow: keep it off the async workers. An unknown username is
    // checked against a dummy hash, so response times do not tell which usernames exist.
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(hash) => auth::verify_password(&password, &hash),
        None => {
            auth::verify_password(&password, auth::dummy_hash());
            false
        }
    })
    .await
    .unwrap_or(false);
    let Some((user, _)) = account.filter(|_| ok) else {
        return Err(wrong());
    };
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

pub(crate) async fn intake(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Booking>), HttpError> {
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
    let request: IntakeRequest = parse(body)?;
    let fields = NewBooking {
        id: uuid::Uuid::new_v4(),
        client_name: request.client_name,
        client_phone: request.client_phone,
        address: request.address,
        service: request.service,
        date: request.date,
        start: request.start,
        end: request.end,
        therapist_id: None,
        driver_id: None,
        notes: request.notes,
    };
    let booking = clinic_protocol::rules::new_booking(&fields, None, Utc::now())
        .map_err(|r| HttpError::new(r.code, r.message))?;
    let booking = state.store.intake(booking).await?;
    Ok((StatusCode::CREATED, Json(booking)))
}
