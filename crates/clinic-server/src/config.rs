//! Server settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::ServerError;

/// Where the clinic's store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file: the embedded default (the demo, tests, a clinic with one server).
    /// One process writes it (its lock file, `<db>.lock`).
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://...`): several server processes may share it.
    Postgres(String),
}

impl Database {
    /// What `--db` names: `postgres://` or `postgresql://` is PostgreSQL, `sqlite:` or a
    /// plain path is a SQLite file, and any other `scheme://` is refused (it would
    /// otherwise be taken for a file path, a folder named after the scheme).
    pub fn parse(db: &str) -> Result<Database, ServerError> {
        if db.starts_with("postgres://") || db.starts_with("postgresql://") {
            return Ok(Database::Postgres(db.to_owned()));
        }
        if let Some(path) = db.strip_prefix("sqlite://").or(db.strip_prefix("sqlite:")) {
            if path.is_empty() {
                return Err(ServerError::Config(
                    "`sqlite:` needs a file path after it".into(),
                ));
            }
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = db.split_once("://") {
            return Err(ServerError::Config(format!(
                "`{scheme}://` is not a database this server can use: give a file path \
                 (SQLite) or a postgres:// address"
            )));
        }
        if db.is_empty() {
            return Err(ServerError::Config("the database address is empty".into()));
        }
        Ok(Database::Sqlite(PathBuf::from(db)))
    }

    /// The SQLite file, if the store is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        }
    }

    /// The address for messages: the file path, or the PostgreSQL address without its
    /// password.
    pub fn display(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(url) => redact_password(url),
        }
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub db: Database,
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
    /// Settings for a SQLite store at `db_path`.
    pub fn new(db_path: impl Into<PathBuf>) -> Config {
        Config::on(Database::Sqlite(db_path.into()))
    }

    /// Settings for a PostgreSQL store at `url` (`postgres://...`).
    pub fn postgres(url: impl Into<String>) -> Config {
        Config::on(Database::Postgres(url.into()))
    }

    /// Settings for the store `db`.
    pub fn on(db: Database) -> Config {
        Config {
            db,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_db_address_names_its_store_or_is_refused() {
        assert_eq!(
            Database::parse("postgres://u:p@h/db").ok(),
            Some(Database::Postgres("postgres://u:p@h/db".into()))
        );
        assert_eq!(
            Database::parse("postgresql://h/db").ok(),
            Some(Database::Postgres("postgresql://h/db".into()))
        );
        assert_eq!(
            Database::parse("/var/lib/clinic/clinic.db").ok(),
            Some(Database::Sqlite("/var/lib/clinic/clinic.db".into()))
        );
        assert_eq!(
            Database::parse("sqlite:clinic.db").ok(),
            Some(Database::Sqlite("clinic.db".into()))
        );
        for bad in ["mysql://h/db", "http://h/db", "", "sqlite:"] {
            let err = Database::parse(bad).expect_err(bad);
            assert!(matches!(err, ServerError::Config(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn a_postgres_address_is_shown_without_its_password() {
        let db = Database::Postgres("postgres://clinic:s3cret@db.local:5432/clinic".into());
        assert_eq!(db.display(), "postgres://clinic:***@db.local:5432/clinic");
        assert!(!db.display().contains("s3cret"));
        let db = Database::Postgres("postgres://db.local/clinic".into());
        assert_eq!(db.display(), "postgres://db.local/clinic");
    }
}
