//! The store's database: a SQLite file or a PostgreSQL database, behind one pair of enums.
//!
//! The SQL is the same for both wherever the two agree: `$1` parameters (SQLite takes them
//! too), `ON CONFLICT` upserts, `TRUE` and `FALSE`, `RETURNING`, a `VALUES` list joined as
//! a table (its columns are `column1`, `column2`... in both). [`on_pool!`] and [`on_tx!`]
//! run one piece of sqlx code on whichever connection it is: the piece is compiled once
//! per driver, so each keeps its own types and placeholders. Where the two differ, the
//! match is spelled out: connecting and migrating, the head row's lock, notifications,
//! and deleting by a list of keys.
//!
//! # Several instances on PostgreSQL
//!
//! Every write transaction begins by locking the `head` row ([`Tx::lock_head`]), so
//! writes from all instances take turns, each seeing every earlier one committed: the log
//! stays gap-free and in commit order, and a write is judged against the committed state
//! (the instance first brings its memory up to the head it read under the lock). A commit
//! that moved the head tells the other instances with `NOTIFY` ([`HEAD_CHANNEL`], the new
//! head only); they read the log from what they last saw (`follow.rs`).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, Postgres};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use crate::config::{Config, Database, Durability};
use crate::error::ServerError;
use crate::lock::DbLock;

/// The channel a commit that moved the head notifies, with the new head as its payload.
pub(crate) const HEAD_CHANNEL: &str = "clinic_head";

/// The channel a revocation of tokens is announced on, so that every instance ends the
/// feeds of those tokens (payload: `<ending>:<token hash in hex>`).
pub(crate) const REVOKED_CHANNEL: &str = "clinic_revoked";

/// Runs `$body` with `$p` bound to the pool, whichever database it is.
macro_rules! on_pool {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            $crate::store::db::Db::Sqlite($p) => $body,
            $crate::store::db::Db::Postgres($p) => $body,
        }
    };
}

/// Runs `$body` with `$c` bound to the transaction, whichever database it is.
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx {
            $crate::store::db::Tx::Sqlite($c) => $body,
            $crate::store::db::Tx::Postgres($c) => $body,
        }
    };
}

pub(crate) use {on_pool, on_tx};

/// A pool of connections to the store's database. Cloning shares it.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A transaction on the store's database.
#[derive(Debug)]
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Db {
    /// Connects and migrates. A SQLite file is this process's alone from here on (its
    /// lock file, returned); a PostgreSQL database is shared by every instance on it.
    pub(crate) async fn open(config: &Config) -> Result<(Db, Option<Arc<DbLock>>), ServerError> {
        match &config.db {
            Database::Sqlite(path) => {
                // Before anything is read: what is read into memory must stay the truth.
                let lock = DbLock::take(path)?;
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // FULL: in WAL mode every commit syncs the log to disk before it
                    // returns, so a change acknowledged to a client survives a power cut,
                    // not only a crash of this process. The writer commits a whole group of
                    // writes at once (see the module docs), so writers arriving together
                    // share that one sync.
                    .synchronous(match config.durability {
                        Durability::Full => SqliteSynchronous::Full,
                        Durability::Normal => SqliteSynchronous::Normal,
                    })
                    .busy_timeout(Duration::from_secs(5));
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await?;
                sqlx::migrate!("./migrations").run(&pool).await?;
                crate::auth::hash_stored_tokens(&pool).await?;
                Ok((Db::Sqlite(pool), Some(lock)))
            }
            Database::Postgres(url) => {
                let options: PgConnectOptions = url.parse().map_err(|e| {
                    ServerError::Config(format!(
                        "{} is not a PostgreSQL address: {e}",
                        config.db.display()
                    ))
                })?;
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    // A database that does not answer is an error soon, not a hang: the
                    // writer answers its callers, readiness says so, and the next write
                    // tries again.
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await?;
                // sqlx's migrator takes an advisory lock: instances starting together
                // migrate once.
                sqlx::migrate!("./migrations-postgres").run(&pool).await?;
                Ok((Db::Postgres(pool), None))
            }
        }
    }

    /// A write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`):
    /// a deferred one that read first could not take it later once another connection had
    /// written meanwhile (a sign-in's token, the token pruning), and would fail the whole
    /// group with SQLITE_BUSY instead of waiting its turn.
    pub(crate) async fn begin(&self) -> Result<Tx, ServerError> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// A read-only transaction that sees one committed state throughout (on PostgreSQL,
    /// `REPEATABLE READ`; a SQLite read transaction always does).
    pub(crate) async fn begin_snapshot(&self) -> Result<Tx, ServerError> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
            Db::Postgres(pool) => Tx::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ),
        })
    }

    /// Whether several instances may share this database (and so must follow each other).
    pub(crate) fn shared(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Which of these token hashes are revoked now (PostgreSQL only: on SQLite this
    /// process revokes every token itself and ends its feeds as it does).
    pub(crate) async fn revoked_among(
        &self,
        hashes: &[Vec<u8>],
    ) -> Result<Vec<Vec<u8>>, ServerError> {
        Ok(match self {
            Db::Sqlite(_) => Vec::new(),
            Db::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT token_hash FROM tokens WHERE revoked AND token_hash = ANY($1)",
                )
                .bind(hashes)
                .fetch_all(pool)
                .await?
            }
        })
    }

    /// Tells every instance (this one too) that these tokens' sessions ended, and why.
    /// Nothing to tell on SQLite, which one process serves.
    pub(crate) async fn announce_revoked(
        &self,
        hashes: &[Vec<u8>],
        why: &str,
    ) -> Result<(), ServerError> {
        if let Db::Postgres(pool) = self {
            for hash in hashes {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(REVOKED_CHANNEL)
                    .bind(format!("{why}:{}", hex(hash)))
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }
}

impl Tx {
    /// Takes the writers' turn: on PostgreSQL, locks the `head` row until this transaction
    /// ends and returns the committed head, which no other instance can move meanwhile.
    /// `None` on SQLite, where this process is the only writer and its memory is the head.
    pub(crate) async fn lock_head(&mut self) -> Result<Option<u64>, ServerError> {
        match self {
            Tx::Sqlite(_) => Ok(None),
            Tx::Postgres(c) => {
                let seq: i64 = sqlx::query_scalar("SELECT seq FROM head FOR UPDATE")
                    .fetch_one(&mut **c)
                    .await?;
                Ok(Some(u64::try_from(seq).unwrap_or(0)))
            }
        }
    }

    /// Tells the other instances, when this transaction commits, that the head is `head`.
    pub(crate) async fn notify_head(&mut self, head: u64) -> Result<(), ServerError> {
        if let Tx::Postgres(c) = self {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(HEAD_CHANNEL)
                .bind(head.to_string())
                .execute(&mut **c)
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn commit(self) -> Result<(), ServerError> {
        on_tx!(self, c => c.commit().await?);
        Ok(())
    }
}

/// Lower-case hex, for token hashes in notifications.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of lower-case or upper-case hex; `None` if it is not hex.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use sqlx::{ConnectOptions, Connection};

    use super::*;

    /// Regression: the writer's transaction began deferred, so a group that read before it
    /// wrote failed with SQLITE_BUSY when another connection wrote in between (seen as a
    /// rare `internal` answer to a web booking while the token pruning ran).
    #[tokio::test]
    async fn a_write_transaction_holds_the_sqlite_write_lock_from_its_start() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("clinic.db");
        let (db, _lock) = Db::open(&Config::new(&path)).await.expect("open");
        let tx = db.begin().await.expect("begin");
        let mut other = SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(Duration::ZERO)
            .connect()
            .await
            .expect("another connection");
        let refused = sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await;
        assert!(
            refused.is_err(),
            "nobody else may write while a write transaction is open"
        );
        tx.commit().await.expect("commit");
        let mut tx = other.begin().await.expect("free again");
        sqlx::query("UPDATE head SET seq = seq")
            .execute(&mut *tx)
            .await
            .expect("a write");
        tx.commit().await.expect("commit");
    }

    #[test]
    fn hex_goes_there_and_back() {
        let bytes = vec![0, 1, 0xab, 0xff];
        assert_eq!(hex(&bytes), "0001abff");
        assert_eq!(unhex("0001abff"), Some(bytes));
        assert_eq!(unhex("0001ABFF"), Some(vec![0, 1, 0xab, 0xff]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
