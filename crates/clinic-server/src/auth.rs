//! Passwords (argon2), opaque bearer tokens with expiry and revocation, the sessions that
//! open feeds watch for revocation, and the login rate limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use clinic_protocol::Staff;
use sqlx::SqlitePool;
use tokio::sync::watch;

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

/// A live token: whose it is and until when it is valid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveToken {
    pub(crate) staff_id: uuid::Uuid,
    pub(crate) expires_at: DateTime<Utc>,
}

/// The owner and expiry of a live token; `None` for an unknown, expired or revoked one.
pub(crate) async fn check_token(
    pool: &SqlitePool,
    token: &str,
) -> Result<Option<LiveToken>, ServerError> {
    let row: Option<(String, String, bool)> =
        sqlx::query_as("SELECT staff_id, expires_at, revoked FROM tokens WHERE token = ?")
            .bind(token)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|(staff_id, expires_at, revoked)| {
        let expires_at = DateTime::parse_from_rfc3339(&expires_at)
            .ok()?
            .with_timezone(&Utc);
        if revoked || expires_at <= Utc::now() {
            return None;
        }
        Some(LiveToken {
            staff_id: staff_id.parse().ok()?,
            expires_at,
        })
    }))
}

pub(crate) async fn revoke(pool: &SqlitePool, token: &str) -> Result<(), ServerError> {
    sqlx::query("UPDATE tokens SET revoked = 1 WHERE token = ?")
        .bind(token)
        .execute(pool)
        .await?;
    Ok(())
}

/// How long a logout waits for the feeds opened with its token to stop (see
/// [`Sessions::revoked`]). Only a feed stuck writing to a client that does not read can take
/// that long, and what it is writing was begun before the logout.
const REVOKE_WAIT: Duration = Duration::from_secs(2);

/// The tokens that have a feed open, each with a flag raised when the token is revoked, so
/// that a feed ends with its session rather than at its hello only.
///
/// A feed registers its token ([`Sessions::watch`]) BEFORE it checks the token in the
/// database, and a logout raises the flag ([`Sessions::revoked`]) AFTER the revocation is
/// committed: whichever comes first, the feed learns of the revocation. Only tokens with an
/// open feed have an entry, and a logout touches only its own token's feeds: no feed polls
/// the database, and no other feed wakes.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<String, Arc<watch::Sender<bool>>>>,
}

impl Sessions {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<watch::Sender<bool>>>> {
        // Every critical section leaves the map consistent, so a panic in one is harmless.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches `token` for revocation for as long as the returned value lives.
    pub(crate) fn watch(self: &Arc<Self>, token: &str) -> Revocation {
        let receiver = self
            .open()
            .entry(token.to_owned())
            .or_insert_with(|| Arc::new(watch::channel(false).0))
            .subscribe();
        Revocation {
            sessions: Arc::clone(self),
            token: token.to_owned(),
            receiver: Some(receiver),
        }
    }

    /// Tells every feed of `token` that it was revoked, and waits (at most [`REVOKE_WAIT`])
    /// until each has let go of its [`Revocation`], which a feed does before it sends its
    /// last frame. So once the logout is answered, no feed with that token sends anything
    /// but that error frame. Call after the revocation is committed.
    pub(crate) async fn revoked(&self, token: &str) {
        let Some(flag) = self.open().get(token).cloned() else {
            return;
        };
        flag.send_replace(true);
        if tokio::time::timeout(REVOKE_WAIT, flag.closed())
            .await
            .is_err()
        {
            tracing::warn!("a feed took over {REVOKE_WAIT:?} to end after its logout");
        }
    }
}

/// One feed's watch on its token (see [`Sessions`]).
#[derive(Debug)]
pub(crate) struct Revocation {
    sessions: Arc<Sessions>,
    token: String,
    /// Always `Some` until dropped.
    receiver: Option<watch::Receiver<bool>>,
}

impl Revocation {
    /// Whether the token has been revoked since this watch began (cheap: no database).
    pub(crate) fn is_revoked(&self) -> bool {
        self.receiver.as_ref().is_some_and(|r| *r.borrow())
    }

    /// Resolves once the token is revoked; never if it is not.
    pub(crate) async fn wait(&mut self) {
        if let Some(receiver) = self.receiver.as_mut() {
            if receiver.wait_for(|revoked| *revoked).await.is_ok() {
                return;
            }
        }
        // The sender lives in the map while any receiver does, so this is not reached.
        std::future::pending::<()>().await;
    }
}

impl Drop for Revocation {
    fn drop(&mut self) {
        let mut open = self.sessions.open();
        // Dropped under the lock, so that the last feed of a token always sees the count
        // reach zero and removes the entry.
        drop(self.receiver.take());
        if open
            .get(&self.token)
            .is_some_and(|flag| flag.receiver_count() == 0)
        {
            open.remove(&self.token);
        }
    }
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
