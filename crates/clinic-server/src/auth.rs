//! Passwords (argon2), opaque bearer tokens with expiry and revocation, and the login
//! rate limit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use clinic_protocol::Staff;
use sqlx::SqlitePool;

use crate::error::ServerError;

pub(crate) fn hash_password(password: &str) -> Result<String, ServerError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServerError::Hash(e.to_string()))
}

pub(crate) fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A valid hash of no one's password, checked when a login names an unknown user so that
/// such a login takes as long as a wrong password.
pub(crate) fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no one's password").unwrap_or_default())
}

/// A new random token: 32 bytes, hex.
pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) async fn store_token(
    pool: &SqlitePool,
    token: &str,
    staff: &Staff,
    expires_at: DateTime<Utc>,
) -> Result<(), ServerError> {
    sqlx::query("INSERT INTO tokens (token, staff_id, expires_at) VALUES (?, ?, ?)")
        .bind(token)
        .bind(staff.id.to_string())
        .bind(timestamp(expires_at))
        .execute(pool)
        .await?;
    Ok(())
}

/// The staff id a live token belongs to.
pub(crate) async fn check_token(
    pool: &SqlitePool,
    token: &str,
) -> Result<Option<uuid::Uuid>, ServerError> {
    let row: Option<(String, String, bool)> =
        sqlx::query_as("SELECT staff_id, expires_at, revoked FROM tokens WHERE token = ?")
            .bind(token)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|(staff_id, expires_at, revoked)| {
        let expires = DateTime::parse_from_rfc3339(&expires_at).ok()?;
        (!revoked && expires > Utc::now()).then(|| staff_id.parse().ok())?
    }))
}

pub(crate) async fn revoke(pool: &SqlitePool, token: &str) -> Result<(), ServerError> {
    sqlx::query("UPDATE tokens SET revoked = 1 WHERE token = ?")
        .bind(token)
        .execute(pool)
        .await?;
    Ok(())
}

/// Drops expired and revoked tokens: they can never authorize anything again.
pub(crate) async fn prune_tokens(pool: &SqlitePool) -> Result<(), ServerError> {
    sqlx::query("DELETE FROM tokens WHERE revoked = 1 OR expires_at < ?")
        .bind(timestamp(Utc::now()))
        .execute(pool)
        .await?;
    Ok(())
}

/// Compares two secrets in time that depends only on their lengths, so that the intake
/// key cannot be guessed byte by byte from response times.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// One fixed width for stored times, so that SQL compares them correctly as text.
fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

const PRUNE_AT: usize = 10_000;

/// Counts login attempts per username over the last minute.
#[derive(Debug, Default)]
pub(crate) struct RateLimit {
    attempts: HashMap<String, Vec<Instant>>,
}

impl RateLimit {
    /// Records an attempt; `false` if the user is over the limit.
    pub(crate) fn allow(&mut self, username: &str, per_minute: u32) -> bool {
        let now = Instant::now();
        let window = Duration::from_secs(60);
        // Every username tried gets an entry, real or not: forget the quiet ones now and
        // then so that guessing names cannot grow this map without bound.
        if self.attempts.len() >= PRUNE_AT {
            self.attempts
                .retain(|_, at| at.last().is_some_and(|t| now.duration_since(*t) < window));
        }
        let attempts = self.attempts.entry(username.to_owned()).or_default();
        attempts.retain(|t| now.duration_since(*t) < window);
        if attempts.len() >= per_minute as usize {
            return false;
        }
        attempts.push(now);
        true
    }
}
