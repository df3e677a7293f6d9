//! Server settings.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub db_path: PathBuf,
    /// The shared key of the clinic's web booking form; `None` refuses every intake.
    pub intake_key: Option<String>,
    /// Web bookings taken per minute from one address (an IPv4 address, or an IPv6 /64);
    /// more are refused with `rate_limited` until the oldest is a minute old.
    pub intake_per_minute: u32,
    pub token_ttl: Duration,
    /// How often an idle feed gets a heartbeat.
    pub heartbeat: Duration,
    /// How many changes a feed connection may fall behind before it is told to resync.
    pub feed_queue: usize,
    /// How many recent changes the log keeps for resuming clients.
    pub log_keep: u64,
    /// Failed sign-ins allowed per minute from one address (an IPv4 address, or an IPv6
    /// /64); more are refused with `rate_limited` until the oldest is a minute old.
    /// Successful sign-ins do not count.
    pub login_attempts_per_minute: u32,
    /// Failed sign-ins per minute for one username, from all addresses together, after
    /// which the username is under attack: only addresses with no recent failure may try it.
    pub login_failures_per_username: u32,
    /// How many password checks (argon2, about 19 MiB of memory each) may run at once.
    pub login_concurrent_checks: usize,
    /// How long a sign-in waits for a password check to free up before it is told the
    /// server is busy (`rate_limited`).
    pub login_check_wait: Duration,
    /// How SQLite makes a commit durable. [`Durability::Full`], the default, is what a
    /// clinic runs; [`Durability::Normal`] exists for measurement only (the write
    /// benchmark compares the two).
    pub durability: Durability,
    /// The most writes the writer commits together in one transaction (group commit): the
    /// writes queued at the moment it starts a commit, up to this many. 1 commits every
    /// write alone, as the server did before group commit: for measurement only.
    pub write_group: usize,
    /// The bearer token `GET /metrics` requires; `None` serves the metrics to anyone who
    /// can reach the server (they hold counts only: no names, no tokens, no records).
    pub metrics_token: Option<String>,
}

/// How SQLite makes a commit durable (its `synchronous` setting, in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: every commit is on disk before the write is answered, so an
    /// acknowledged change survives a power cut. The default.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a commit survives a crash of the server, but a power cut can
    /// lose the last acknowledged ones. For measurement only.
    Normal,
}

impl Config {
    pub fn new(db_path: impl Into<PathBuf>) -> Config {
        Config {
            db_path: db_path.into(),
            intake_key: None,
            intake_per_minute: 30,
            token_ttl: Duration::from_secs(12 * 3600),
            heartbeat: Duration::from_secs(5),
            feed_queue: 4096,
            log_keep: 1_000_000,
            login_attempts_per_minute: 10,
            login_failures_per_username: 10,
            login_concurrent_checks: std::thread::available_parallelism()
                .map_or(1, std::num::NonZeroUsize::get),
            login_check_wait: Duration::from_secs(2),
            durability: Durability::Full,
            write_group: 256,
            metrics_token: None,
        }
    }
}
