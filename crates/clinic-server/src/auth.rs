//! Passwords (argon2), opaque bearer tokens with expiry and revocation, the sessions that
//! open feeds watch for revocation, and sign-in admission (failures limited per address and
//! per username, a bound on concurrent password checks).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use clinic_protocol::{ErrorCode, Staff};
use sha2::{Digest, Sha256};
use sqlx::{Connection, SqlitePool};

use tokio::sync::{watch, Semaphore};

use crate::config::Config;
use crate::error::ServerError;
use crate::store::db::{on_pool, Db};

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

/// The letters of a one-time password: lowercase letters and digits without the ones
/// read or typed for each other (i/l/1, o/0).
const READABLE: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// A one-time password an administrator reads out or writes down: 4 groups of 4 from
/// [`READABLE`] (`7kqm-x2pf-...`), about 79 bits from the OS's random source, more than
/// enough for a password that only lives until its first use.
pub(crate) fn one_time_password() -> String {
    use rand::seq::SliceRandom;
    let mut rng = rand::rngs::OsRng;
    (0..4)
        .map(|_| {
            (0..4)
                .map(|_| char::from(*READABLE.choose(&mut rng).unwrap_or(&b'x')))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// A new random token: 32 bytes, hex.
pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the database keeps of a token: its SHA-256, never the token as sent. A token is 32
/// random bytes, so a fast hash is enough: nobody can guess one from its hash.
pub(crate) fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub(crate) async fn store_token(
    db: &Db,
    token: &str,
    staff: &Staff,
    expires_at: DateTime<Utc>,
) -> Result<(), ServerError> {
    on_pool!(db, p => {
        sqlx::query("INSERT INTO tokens (token_hash, staff_id, expires_at) VALUES ($1, $2, $3)")
            .bind(token_hash(token))
            .bind(staff.id.to_string())
            .bind(timestamp(expires_at))
            .execute(p)
            .await?;
    });
    Ok(())
}

/// A live token: whose it is and until when it is valid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveToken {
    pub(crate) staff_id: uuid::Uuid,
    pub(crate) expires_at: DateTime<Utc>,
}

/// What a bearer token stands for now.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Token {
    Live(LiveToken),
    /// Revoked or expired, and whose it was (until pruned: see [`prune_tokens`]).
    Ended(uuid::Uuid),
    /// Never issued, or pruned.
    Unknown,
}

/// Looks `token` up by its hash: one primary-key read, whoever sends it.
pub(crate) async fn token(db: &Db, token: &str) -> Result<Token, ServerError> {
    let row: Option<(String, String, bool)> = on_pool!(db, p => {
        sqlx::query_as("SELECT staff_id, expires_at, revoked FROM tokens WHERE token_hash = $1")
            .bind(token_hash(token))
            .fetch_optional(p)
            .await?
    });
    let Some((staff_id, expires_at, revoked)) = row else {
        return Ok(Token::Unknown);
    };
    let (Ok(staff_id), Ok(expires_at)) = (
        staff_id.parse(),
        DateTime::parse_from_rfc3339(&expires_at).map(|t| t.with_timezone(&Utc)),
    ) else {
        return Ok(Token::Unknown);
    };
    if revoked || expires_at <= Utc::now() {
        return Ok(Token::Ended(staff_id));
    }
    Ok(Token::Live(LiveToken {
        staff_id,
        expires_at,
    }))
}

/// The owner and expiry of a live token; `None` for an unknown, expired or revoked one.
#[cfg(test)]
pub(crate) async fn check_token(db: &Db, token: &str) -> Result<Option<LiveToken>, ServerError> {
    Ok(match self::token(db, token).await? {
        Token::Live(live) => Some(live),
        Token::Ended(_) | Token::Unknown => None,
    })
}

/// Why a request's token signs nobody in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No token, or one unknown, expired or revoked: sign in again.
    NoSession,
    /// The token is (or was) of a disabled account: signing in again will not help.
    Disabled,
}

/// The user `token` signs in now, with the token's expiry: live, of an account that
/// exists and is enabled. A disabled account is refused even with a live token (one issued
/// by a sign-in whose password check overlapped the disabling), and a revoked token of a
/// disabled account says so, so that its client can tell the two apart. Whether the
/// account must change its password first is for the caller to judge.
pub(crate) async fn authenticate(
    store: &crate::store::Store,
    token: &str,
) -> Result<Result<(Staff, LiveToken), Denied>, ServerError> {
    let (staff_id, live) = match self::token(store.db(), token).await? {
        Token::Live(live) => (live.staff_id, Some(live)),
        Token::Ended(staff_id) => (staff_id, None),
        Token::Unknown => return Ok(Err(Denied::NoSession)),
    };
    let Some(user) = store.staff(staff_id).await else {
        return Ok(Err(Denied::NoSession));
    };
    Ok(match live {
        _ if user.disabled => Err(Denied::Disabled),
        Some(live) => Ok((user, live)),
        None => Err(Denied::NoSession),
    })
}

pub(crate) async fn revoke(db: &Db, token: &str) -> Result<(), ServerError> {
    on_pool!(db, p => {
        sqlx::query("UPDATE tokens SET revoked = TRUE WHERE token_hash = $1")
            .bind(token_hash(token))
            .execute(p)
            .await?;
    });
    Ok(())
}

/// Finishes migration 0003: the tokens stored as sent before it (moved to `tokens_plain`)
/// are stored as hashes, and `tokens_plain` goes, in one transaction, so that nobody signed
/// in then has to sign in again. The freed pages are zeroed (`secure_delete`) and the log
/// checkpointed, so the plain tokens do not linger in the file either. Does nothing once
/// done.
pub(crate) async fn hash_stored_tokens(pool: &SqlitePool) -> Result<(), ServerError> {
    let mut conn = pool.acquire().await?;
    let pending: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tokens_plain'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if pending.is_none() {
        return Ok(());
    }
    sqlx::query("PRAGMA secure_delete = ON")
        .execute(&mut *conn)
        .await?;
    let moved = async {
        let mut tx = conn.begin().await?;
        let plain: Vec<(String, String, String, bool)> =
            sqlx::query_as("SELECT token, staff_id, expires_at, revoked FROM tokens_plain")
                .fetch_all(&mut *tx)
                .await?;
        for (token, staff_id, expires_at, revoked) in &plain {
            sqlx::query(
                "INSERT OR IGNORE INTO tokens (token_hash, staff_id, expires_at, revoked)
                 VALUES (?, ?, ?, ?)",
            )
            .bind(token_hash(token))
            .bind(staff_id)
            .bind(expires_at)
            .bind(revoked)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DROP TABLE tokens_plain")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await?;
        Ok::<usize, ServerError>(plain.len())
    }
    .await;
    // The pool's connection goes back as it came.
    sqlx::query("PRAGMA secure_delete = OFF")
        .execute(&mut *conn)
        .await?;
    let moved = moved?;
    tracing::info!("stored {moved} session tokens as hashes");
    Ok(())
}

/// How long a logout (or anything else that ends sessions) waits for the feeds of its
/// tokens to stop (see [`Sessions::end`]). Only a feed stuck writing to a client that does
/// not read can take that long, and what it is writing was begun before the session ended.
const REVOKE_WAIT: Duration = Duration::from_secs(2);

/// Why a session ended, which its feeds tell their client in their last frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Its logout.
    SignedOut,
    /// The user changed their password from another session.
    PasswordChanged,
    /// An administrator reset the user's password.
    PasswordReset,
    /// An administrator disabled the account.
    Disabled,
    /// Found revoked in the database by another instance's doing, whose notice of it this
    /// instance missed (see `AppState::open`'s sweep).
    Revoked,
}

impl Ending {
    /// The code the feed's last frame carries: `account_disabled` for a disabled account,
    /// so that its client does not ask for a sign-in that would be refused anyway;
    /// `unauthorized` (sign in again) otherwise.
    pub(crate) fn code(self) -> ErrorCode {
        match self {
            Ending::Disabled => ErrorCode::AccountDisabled,
            Ending::SignedOut
            | Ending::PasswordChanged
            | Ending::PasswordReset
            | Ending::Revoked => ErrorCode::Unauthorized,
        }
    }

    /// How the ending travels between instances (see `store::db::REVOKED_CHANNEL`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Ending::SignedOut => "signed_out",
            Ending::PasswordChanged => "password_changed",
            Ending::PasswordReset => "password_reset",
            Ending::Disabled => "disabled",
            Ending::Revoked => "revoked",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Ending> {
        [
            Ending::SignedOut,
            Ending::PasswordChanged,
            Ending::PasswordReset,
            Ending::Disabled,
            Ending::Revoked,
        ]
        .into_iter()
        .find(|e| e.as_str() == text)
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            Ending::SignedOut => "You signed out; sign in again.",
            Ending::PasswordChanged => {
                "Your password was changed from another session; sign in with the new one."
            }
            Ending::PasswordReset => {
                "An administrator reset your password; sign in with the one-time password \
                 they give you."
            }
            Ending::Disabled => "An administrator disabled your account.",
            Ending::Revoked => "This session was ended; sign in again.",
        }
    }
}

/// A session's flag: `None` while it holds, then why it ended.
type Flag = Arc<watch::Sender<Option<Ending>>>;

/// The tokens that have a feed open, by their hash, each with a flag raised when the
/// session ends, so that a feed ends with its session rather than at its hello only.
///
/// A feed registers its token ([`Sessions::watch`]) BEFORE it checks the token in the
/// database, and whatever ends a session (a logout, a password change, an administrator)
/// raises the flag ([`Sessions::end`]) AFTER the revocation is committed: whichever comes
/// first, the feed learns of it. Kept by hash because the database knows tokens only by
/// their hash: ending every session of a user is a matter of the hashes its revocation
/// returns. Only tokens with an open feed have an entry, and ending sessions touches only
/// their own feeds: no feed polls the database, and no other feed wakes.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<Vec<u8>, Flag>>,
}

impl Sessions {
    /// The hashes of the tokens with a feed open now.
    pub(crate) fn watched(&self) -> Vec<Vec<u8>> {
        self.open().keys().cloned().collect()
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Flag>> {
        // Every critical section leaves the map consistent, so a panic in one is harmless.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches `token` for the end of its session for as long as the returned value lives.
    pub(crate) fn watch(self: &Arc<Self>, token: &str) -> Revocation {
        let hash = token_hash(token);
        let receiver = self
            .open()
            .entry(hash.clone())
            .or_insert_with(|| Arc::new(watch::channel(None).0))
            .subscribe();
        Revocation {
            sessions: Arc::clone(self),
            hash,
            receiver: Some(receiver),
        }
    }

    /// Tells every feed of the tokens with these hashes that its session ended, and why,
    /// and waits (at most [`REVOKE_WAIT`] in all) until each has let go of its
    /// [`Revocation`], which a feed does before it sends its last frame. So once the
    /// change that ended them is answered, no feed of those sessions sends anything but
    /// that last frame. Call after the revocation is committed.
    pub(crate) async fn end(&self, hashes: &[Vec<u8>], why: Ending) {
        let flags: Vec<Flag> = {
            let open = self.open();
            hashes.iter().filter_map(|h| open.get(h).cloned()).collect()
        };
        let deadline = tokio::time::Instant::now() + REVOKE_WAIT;
        for flag in &flags {
            // The first reason stands: a feed told it signed out is not told otherwise.
            flag.send_if_modified(|ended| ended.is_none() && ended.replace(why).is_none());
        }
        for flag in flags {
            if tokio::time::timeout_at(deadline, flag.closed())
                .await
                .is_err()
            {
                tracing::warn!("a feed took over {REVOKE_WAIT:?} to end with its session");
                return;
            }
        }
    }
}

/// One feed's watch on its token (see [`Sessions`]).
#[derive(Debug)]
pub(crate) struct Revocation {
    sessions: Arc<Sessions>,
    hash: Vec<u8>,
    /// Always `Some` until dropped.
    receiver: Option<watch::Receiver<Option<Ending>>>,
}

impl Revocation {
    /// Why the session ended, if it has since this watch began (cheap: no database).
    pub(crate) fn ended(&self) -> Option<Ending> {
        self.receiver.as_ref().and_then(|r| *r.borrow())
    }

    /// Resolves once the session ends, with why; never if it does not.
    pub(crate) async fn wait(&mut self) -> Ending {
        if let Some(receiver) = self.receiver.as_mut() {
            if let Ok(ended) = receiver.wait_for(Option::is_some).await {
                if let Some(why) = *ended {
                    return why;
                }
            }
        }
        // The sender lives in the map while any receiver does, so this is not reached.
        std::future::pending().await
    }
}

impl Drop for Revocation {
    fn drop(&mut self) {
        let mut open = self.sessions.open();
        // Dropped under the lock, so that the last feed of a token always sees the count
        // reach zero and removes the entry.
        drop(self.receiver.take());
        if open
            .get(&self.hash)
            .is_some_and(|flag| flag.receiver_count() == 0)
        {
            open.remove(&self.hash);
        }
    }
}

/// Drops expired and revoked tokens: they can never authorize anything again.
pub(crate) async fn prune_tokens(db: &Db) -> Result<(), ServerError> {
    on_pool!(db, p => {
        sqlx::query("DELETE FROM tokens WHERE revoked = TRUE OR expires_at < $1")
            .bind(timestamp(Utc::now()))
            .execute(p)
            .await?;
    });
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

/// How long a failed sign-in counts against its address and its username.
const WINDOW: Duration = Duration::from_secs(60);

/// How many addresses, and how many usernames, the sign-in limits remember at most (plus
/// those with a sign-in under way). Quiet ones are forgotten first; when every one has
/// failed within the minute, the one whose last failure is oldest goes.
const TRACKED: usize = 10_000;

/// Sign-in admission: failures counted per address and per username, and a bound on how
/// many password checks run at once.
///
/// - An address (an IPv4 address, or an IPv6 /64, which one party usually holds whole) may
///   fail `per_address` times a minute; then it is refused, without a password check, until
///   its oldest failure is a minute old.
/// - A username that failed `per_username` times in the last minute, from wherever, is
///   under attack: from then on only an address with no recent failure (and no sign-in
///   under way) may try it. An attacker's addresses each get one guess; the real user, from
///   their own address, still gets in.
/// - Only failures count: signing in again and again is never refused.
/// - At most `checks` argon2 checks (about 19 MiB of memory each) run at once, on the
///   blocking pool; a sign-in waits at most `check_wait` for its turn, then is told the
///   server is busy. A flood of made-up usernames costs memory for `checks` checks, not one
///   per request.
///
/// A sign-in under way counts as a failure until it is known not to be one, so a burst of
/// concurrent attempts cannot slip past the limits before the first one is judged.
#[derive(Debug)]
pub(crate) struct Logins {
    per_address: usize,
    per_username: usize,
    check_wait: Duration,
    checks: Arc<Semaphore>,
    /// How many checks are running, and the most that ever ran at once.
    running: Arc<Gauge>,
    /// Usernames are remembered by a keyed hash: a long made-up name costs no memory.
    names: RandomState,
    books: Mutex<Books>,
}

/// Why a sign-in was refused before its password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its address failed too often in the last minute.
    Address,
    /// The username is under attack and its address failed recently.
    Username,
}

/// No password check could start within the configured wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy;

#[derive(Debug, Default)]
struct Books {
    addresses: Tracked<Source>,
    usernames: Tracked<u64>,
}

/// Where sign-ins come from, as the limits see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => Source::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// The recent failures of one address or username, and its sign-ins under way.
#[derive(Debug, Default)]
struct Record {
    /// Oldest first; no more than the limit is kept.
    failures: VecDeque<Instant>,
    pending: usize,
}

impl Record {
    /// Failures within the last minute, plus sign-ins under way.
    fn load(&mut self, now: Instant) -> usize {
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.failures.pop_front();
        }
        self.failures.len() + self.pending
    }

    fn fail(&mut self, now: Instant, keep: usize) {
        self.failures.push_back(now);
        while self.failures.len() > keep {
            self.failures.pop_front();
        }
    }
}

/// A map of [`Record`]s that stays within [`TRACKED`] entries (plus those under way).
#[derive(Debug)]
struct Tracked<K> {
    records: HashMap<K, Record>,
}

impl<K> Default for Tracked<K> {
    fn default() -> Self {
        Tracked {
            records: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> Tracked<K> {
    /// The record of `key`, made if need be. When the map is full, the quiet records go
    /// first; if it is still full (an attack from more than [`TRACKED`] addresses, or on as
    /// many usernames, within a minute), the eighth whose last failure is oldest goes too,
    /// so that forgetting costs little per sign-in.
    fn get(&mut self, key: K, now: Instant) -> &mut Record {
        if !self.records.contains_key(&key) && self.records.len() >= TRACKED {
            self.records.retain(|_, r| r.load(now) > 0);
            if self.records.len() >= TRACKED {
                let mut idle: Vec<(Option<Instant>, K)> = self
                    .records
                    .iter()
                    .filter(|(_, r)| r.pending == 0)
                    .map(|(k, r)| (r.failures.back().copied(), *k))
                    .collect();
                let forget = (TRACKED / 8).min(idle.len());
                if forget > 0 {
                    idle.select_nth_unstable_by_key(forget - 1, |(last, _)| *last);
                    for (_, k) in &idle[..forget] {
                        self.records.remove(k);
                    }
                }
            }
        }
        self.records.entry(key).or_default()
    }
}

impl Logins {
    pub(crate) fn new(config: &Config) -> Logins {
        let checks = config.login_concurrent_checks.max(1);
        Logins {
            per_address: (config.login_attempts_per_minute as usize).max(1),
            per_username: (config.login_failures_per_username as usize).max(1),
            check_wait: config.login_check_wait,
            checks: Arc::new(Semaphore::new(checks)),
            running: Arc::default(),
            names: RandomState::new(),
            books: Mutex::default(),
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        // Every critical section leaves the maps consistent, so a panic in one is harmless.
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets a sign-in for `username` from `from` go on to its password check, or refuses
    /// it. The [`Attempt`] counts as a failure unless it is marked otherwise.
    pub(crate) fn admit(&self, from: IpAddr, username: &str) -> Result<Attempt<'_>, Refused> {
        let now = Instant::now();
        let source = Source::of(from);
        let name = self.names.hash_one(username);
        let mut books = self.books();
        let address = books.addresses.get(source, now).load(now);
        if address >= self.per_address {
            return Err(Refused::Address);
        }
        if address > 0 && books.usernames.get(name, now).load(now) >= self.per_username {
            return Err(Refused::Username);
        }
        books.addresses.get(source, now).pending += 1;
        books.usernames.get(name, now).pending += 1;
        Ok(Attempt {
            logins: self,
            source,
            name,
            outcome: Outcome::Failed,
        })
    }

    /// Checks `password` against `hash`, or against a dummy hash when there is no account
    /// (so that response times do not tell which usernames exist), on the blocking pool and
    /// with no more than the configured number of checks at once.
    pub(crate) async fn check(&self, password: String, hash: Option<String>) -> Result<bool, Busy> {
        let permit =
            tokio::time::timeout(self.check_wait, Arc::clone(&self.checks).acquire_owned())
                .await
                .map_err(|_| Busy)?
                // The semaphore is never closed.
                .map_err(|_| Busy)?;
        let running = Arc::clone(&self.running);
        let matched = tokio::task::spawn_blocking(move || {
            // The slot is held until the check ends, even if the sign-in was abandoned.
            let _permit = permit;
            // Dropped before the permit: the gauge never counts more than the slots.
            let _running = running.enter();
            match hash {
                Some(hash) => verify_password(&password, &hash),
                None => {
                    verify_password(&password, dummy_hash());
                    false
                }
            }
        })
        .await
        // A check that panicked is a failed one.
        .unwrap_or(false);
        Ok(matched)
    }

    /// How many password checks run now, and the most that ever ran at once.
    pub(crate) fn checks_running(&self) -> (usize, usize) {
        (
            self.running.now.load(Ordering::SeqCst),
            self.running.peak.load(Ordering::SeqCst),
        )
    }
}

/// Counts what runs, and remembers the most that ran at once.
#[derive(Debug, Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    fn enter(self: &Arc<Self>) -> Entered {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Entered(Arc::clone(self))
    }
}

#[derive(Debug)]
struct Entered(Arc<Gauge>);

impl Drop for Entered {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Failed,
    Succeeded,
    NotTried,
}

/// A sign-in let through by [`Logins::admit`]. Dropped as it is, it counts as a failure
/// for its address and its username (so abandoning a request mid-check gains nothing);
/// [`Attempt::succeeded`] and [`Attempt::not_tried`] say otherwise.
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    logins: &'a Logins,
    source: Source,
    name: u64,
    outcome: Outcome,
}

impl Attempt<'_> {
    /// The password was right: nothing counts against anyone.
    pub(crate) fn succeeded(mut self) {
        self.outcome = Outcome::Succeeded;
    }

    /// The password was never checked (the server was busy): nothing counts.
    pub(crate) fn not_tried(mut self) {
        self.outcome = Outcome::NotTried;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let logins = self.logins;
        let mut books = logins.books();
        let failed = self.outcome == Outcome::Failed;
        let address = books.addresses.get(self.source, now);
        address.pending = address.pending.saturating_sub(1);
        if failed {
            address.fail(now, logins.per_address);
        }
        let username = books.usernames.get(self.name, now);
        username.pending = username.pending.saturating_sub(1);
        if failed {
            username.fail(now, logins.per_username);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_stored_as_sent_before_hashing_stay_valid_and_leave_the_file() {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = dir.path().join("clinic.db");
        // A database as servers left it before migration 0003: the migrations before it,
        // run from copies of their files (same names and contents, so same checksums).
        let old = dir.path().join("migrations-before-0003");
        std::fs::create_dir(&old).expect("a folder");
        for name in ["0001_init.sql", "0002_intake_requests.sql"] {
            let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(name);
            std::fs::copy(from, old.join(name)).expect("a migration");
        }
        let pool = SqlitePool::connect_with(
            SqliteConnectOptions::new()
                .filename(&db)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal),
        )
        .await
        .expect("a database");
        sqlx::migrate::Migrator::new(old.as_path())
            .await
            .expect("the old migrations")
            .run(&pool)
            .await
            .expect("run");
        let staff = Staff {
            id: uuid::Uuid::new_v4(),
            username: "olivia".into(),
            display_name: "Olivia".into(),
            roles: vec![clinic_protocol::Role::Operator],
            version: 1,
            disabled: false,
            must_change_password: false,
            on_duty: false,
        };
        sqlx::query("INSERT INTO staff (id, username, password_hash, body) VALUES (?, ?, 'x', ?)")
            .bind(staff.id.to_string())
            .bind(&staff.username)
            .bind(serde_json::to_string(&staff).expect("json"))
            .execute(&pool)
            .await
            .expect("a staff member");
        let (live, revoked) = (new_token(), new_token());
        let tomorrow = timestamp(Utc::now() + chrono::TimeDelta::days(1));
        for (token, gone) in [(&live, false), (&revoked, true)] {
            sqlx::query(
                "INSERT INTO tokens (token, staff_id, expires_at, revoked) VALUES (?, ?, ?, ?)",
            )
            .bind(token)
            .bind(staff.id.to_string())
            .bind(&tomorrow)
            .bind(gone)
            .execute(&pool)
            .await
            .expect("a token as sent");
        }
        pool.close().await;

        let store = crate::store::Store::open(&Config::new(&db))
            .await
            .expect("the server opens it");
        let found = check_token(store.db(), &live)
            .await
            .expect("a lookup")
            .expect("still signed in");
        assert_eq!(found.staff_id, staff.id);
        assert!(check_token(store.db(), &revoked)
            .await
            .expect("a lookup")
            .is_none());
        let plain_left: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE name = 'tokens_plain'")
                .fetch_optional(store.pool())
                .await
                .expect("the schema");
        assert_eq!(plain_left, None);
        for file in ["clinic.db", "clinic.db-wal"] {
            let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
            for token in [&live, &revoked] {
                assert!(
                    !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                    "{file} still holds a token as sent"
                );
            }
        }
    }

    #[test]
    fn one_time_passwords_are_long_readable_and_new_each_time() {
        let made: Vec<String> = (0..50).map(|_| one_time_password()).collect();
        for p in &made {
            assert_eq!(p.len(), 19, "{p}");
            assert!(p.chars().count() >= clinic_protocol::wire::MIN_PASSWORD_CHARS);
            assert!(
                p.split('-')
                    .all(|g| g.len() == 4 && g.bytes().all(|b| READABLE.contains(&b))),
                "{p}"
            );
        }
        let distinct: std::collections::HashSet<&String> = made.iter().collect();
        assert_eq!(distinct.len(), made.len());
    }

    fn logins(tune: impl FnOnce(&mut Config)) -> Logins {
        let mut config = Config::new("never-opened.db");
        tune(&mut config);
        Logins::new(&config)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn successes_never_count_and_failures_limit_only_their_address() {
        let logins = logins(|c| c.login_attempts_per_minute = 3);
        for _ in 0..20 {
            logins.admit(ip(1), "olivia").unwrap().succeeded();
        }
        for _ in 0..3 {
            drop(logins.admit(ip(1), "olivia").unwrap());
        }
        assert_eq!(
            logins.admit(ip(1), "sam").unwrap_err(),
            Refused::Address,
            "the address is limited, whatever username it tries"
        );
        logins.admit(ip(2), "olivia").unwrap().succeeded();
    }

    #[test]
    fn an_attempt_under_way_counts_until_it_is_judged() {
        let logins = logins(|c| c.login_attempts_per_minute = 2);
        let first = logins.admit(ip(1), "olivia").unwrap();
        let second = logins.admit(ip(1), "olivia").unwrap();
        assert_eq!(logins.admit(ip(1), "olivia").unwrap_err(), Refused::Address);
        first.not_tried();
        second.succeeded();
        logins.admit(ip(1), "olivia").unwrap().succeeded();
    }

    #[test]
    fn a_username_under_attack_is_open_only_to_addresses_without_recent_failures() {
        let logins = logins(|c| c.login_failures_per_username = 3);
        for last in 1..=3 {
            drop(logins.admit(ip(last), "olivia").unwrap());
        }
        // Each attacking address has failed once: olivia is closed to it...
        assert_eq!(
            logins.admit(ip(1), "olivia").unwrap_err(),
            Refused::Username
        );
        // ...not to a quiet address, where one guess is all an attacker gets...
        drop(logins.admit(ip(9), "olivia").unwrap());
        assert_eq!(
            logins.admit(ip(9), "olivia").unwrap_err(),
            Refused::Username
        );
        // ...and not to other usernames.
        logins.admit(ip(1), "sam").unwrap().succeeded();
        logins.admit(ip(10), "olivia").unwrap().succeeded();
    }

    #[test]
    fn an_ipv6_network_is_one_address_and_mapped_ipv4_is_ipv4() {
        let logins = logins(|c| c.login_attempts_per_minute = 1);
        drop(logins.admit("2001:db8::1".parse().unwrap(), "x").unwrap());
        assert_eq!(
            logins
                .admit("2001:db8::ffff:2".parse().unwrap(), "y")
                .unwrap_err(),
            Refused::Address
        );
        logins
            .admit("2001:db8:0:1::1".parse().unwrap(), "y")
            .unwrap()
            .succeeded();
        drop(logins.admit(ip(7), "x").unwrap());
        assert_eq!(
            logins
                .admit("::ffff:192.0.2.7".parse().unwrap(), "x")
                .unwrap_err(),
            Refused::Address
        );
    }

    #[test]
    fn the_limits_remember_a_bounded_number_of_addresses_and_usernames() {
        let logins = logins(|_| {});
        for i in 0..(2 * TRACKED as u32 + 7) {
            let from = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            drop(logins.admit(from, &format!("made-up-{i}")).unwrap());
        }
        let books = logins.books();
        assert!(books.addresses.records.len() <= TRACKED);
        assert!(books.usernames.records.len() <= TRACKED);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_password_checks_run_at_once_than_configured() {
        let logins = Arc::new(logins(|c| {
            c.login_concurrent_checks = 2;
            c.login_check_wait = Duration::from_secs(600);
        }));
        let hash = hash_password("right").unwrap();
        let checks: Vec<_> = (0..8)
            .map(|i| {
                let logins = Arc::clone(&logins);
                let password = if i == 0 { "right" } else { "wrong" };
                let hash = (i % 2 == 0).then(|| hash.clone());
                tokio::spawn(async move { logins.check(password.to_owned(), hash).await })
            })
            .collect();
        let mut right = 0;
        for check in checks {
            if check.await.unwrap().expect("a check within the wait") {
                right += 1;
            }
        }
        assert_eq!(right, 1, "only the right password against its hash passes");
        let (running, most) = logins.checks_running();
        assert_eq!(running, 0);
        assert!((1..=2).contains(&most), "{most} checks ran at once");
    }

    #[tokio::test]
    async fn a_check_that_cannot_start_in_time_is_busy() {
        let logins = logins(|c| {
            c.login_concurrent_checks = 1;
            c.login_check_wait = Duration::from_millis(1);
        });
        let _taken = Arc::clone(&logins.checks).acquire_owned().await.unwrap();
        assert_eq!(logins.check("x".into(), None).await, Err(Busy));
    }
}
