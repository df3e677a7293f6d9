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

pub fn hash_password(password: &str) -> Result<String, ServerError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServerError::Hash(e.to_string()))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A new random token: 32 bytes, hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn store_token(
    pool: &SqlitePool,
    token: &str,
    staff: &Staff,
    expires_at: DateTime<Utc>,
) -> Result<(), ServerError> {
    sqlx::query("INSERT INTO tokens (token, staff_id, expires_at) VALUES (?, ?, ?)")
        .bind(token)
        .bind(staff.id.to_string())
        .bind(expires_at.to_rfc3339())
        .execute(pool)
        .await?;
    Ok(())
}

/// The staff id a live token belongs to.
pub async fn check_token(
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

pub async fn revoke(pool: &SqlitePool, token: &str) -> Result<(), ServerError> {
    sqlx::query("UPDATE tokens SET revoked = 1 WHERE token = ?")
        .bind(token)
        .execute(pool)
        .await?;
    Ok(())
}

/// Counts login attempts per username over the last minute.
#[derive(Debug, Default)]
pub struct RateLimit {
    attempts: HashMap<String, Vec<Instant>>,
}

impl RateLimit {
    /// Records an attempt; `false` if the user is over the limit.
    pub fn allow(&mut self, username: &str, per_minute: u32) -> bool {
        let now = Instant::now();
        let window = Duration::from_secs(60);
        let attempts = self.attempts.entry(username.to_owned()).or_default();
        attempts.retain(|t| now.duration_since(*t) < window);
        if attempts.len() >= per_minute as usize {
            return false;
        }
        attempts.push(now);
        true
    }
}
