//! Server settings.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub db_path: PathBuf,
    /// The shared key of the clinic's web booking form; `None` refuses every intake.
    pub intake_key: Option<String>,
    pub token_ttl: Duration,
    /// How often an idle feed gets a heartbeat.
    pub heartbeat: Duration,
    /// How many changes a feed connection may fall behind before it is told to resync.
    pub feed_queue: usize,
    /// How many recent changes the log keeps for resuming clients.
    pub log_keep: u64,
    pub login_attempts_per_minute: u32,
}

impl Config {
    pub fn new(db_path: impl Into<PathBuf>) -> Config {
        Config {
            db_path: db_path.into(),
            intake_key: None,
            token_ttl: Duration::from_secs(12 * 3600),
            heartbeat: Duration::from_secs(5),
            feed_queue: 4096,
            log_keep: 1_000_000,
            login_attempts_per_minute: 10,
        }
    }
}
