//! Readiness (`GET /readyz`): can this server take a write now?
//!
//! Ready means: the server is not shutting down, the writer task is alive (its queue has a
//! receiver), and the database grants a write lock within [`READY_WITHIN`] (on SQLite
//! `BEGIN IMMEDIATE; ROLLBACK`; on PostgreSQL the head row's lock, which every writer
//! takes, and which a read-only standby refuses). The probe is unauthenticated, so a flood of them
//! must not become a flood of database work: the database's answer is kept for
//! [`FRESH_FOR`], every probe meanwhile gets it from memory, and at most one database
//! check runs at a time (one pooled connection at most, even while the database hangs).

use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::store::db::Db;
use crate::store::Store;

/// How long a probe waits for the database's write lock before it answers not ready.
/// The writer holds the lock for one group commit (milliseconds); a second means trouble.
pub(crate) const READY_WITHIN: Duration = Duration::from_secs(1);

/// How long the database's answer is reused: probes more frequent than this cost nothing.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Why the server is not ready. The codes are stable: monitoring may branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotReady {
    /// The server is shutting down.
    Stopping,
    /// The writer task has ended: no write can be committed.
    WriterStopped,
    /// The database did not grant its write lock within [`READY_WITHIN`] (another process
    /// holds it, or the disk is stalled).
    DatabaseBusy,
    /// The database refused a write transaction (read-only, I/O error, closed pool).
    DatabaseUnwritable,
}

impl NotReady {
    pub(crate) fn code(self) -> &'static str {
        match self {
            NotReady::Stopping => "stopping",
            NotReady::WriterStopped => "writer_stopped",
            NotReady::DatabaseBusy => "database_busy",
            NotReady::DatabaseUnwritable => "database_unwritable",
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            NotReady::Stopping => "The server is shutting down.",
            NotReady::WriterStopped => "The writer task has stopped; restart the server.",
            NotReady::DatabaseBusy => {
                "The database did not grant a write lock in time; another process may hold it."
            }
            NotReady::DatabaseUnwritable => {
                "The database refuses writes; the server's log says why."
            }
        }
    }
}

/// The last database check and the one under way, if it outlived its probe.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    last: Mutex<Last>,
}

#[derive(Debug, Default)]
struct Last {
    checked: Option<(Instant, Result<(), NotReady>)>,
    /// The database check under way, or one that outlived [`READY_WITHIN`] and still
    /// waits for the database: the next probe waits for it instead of starting another, so
    /// a hung database ties up one pooled connection, not one per probe.
    running: Option<JoinHandle<Result<(), NotReady>>>,
}

impl Readiness {
    /// Whether `store` can take a write now; at most [`READY_WITHIN`] of waiting.
    pub(crate) async fn check(&self, store: &Store, stopping: bool) -> Result<(), NotReady> {
        if stopping {
            return Err(NotReady::Stopping);
        }
        if !store.writer_alive() {
            return Err(NotReady::WriterStopped);
        }
        // Probes arriving during a check wait for it (READY_WITHIN at most) and share it.
        let mut last = self.last.lock().await;
        if let Some((at, result)) = last.checked {
            if at.elapsed() < FRESH_FOR {
                return result;
            }
        }
        // The check is kept in `last` while it is awaited: should this probe's client go
        // away, the next probe waits for the same check instead of starting another. A
        // finished one nobody collected answered about a moment long gone: ask again.
        let task = match &mut last.running {
            Some(task) if !task.is_finished() => task,
            idle => {
                let db = store.db().clone();
                // Its own task, so that giving up on it never cancels it between BEGIN
                // and ROLLBACK: the lock is let go as soon as it was granted.
                idle.insert(tokio::spawn(async move { writable(&db).await }))
            }
        };
        let result = match tokio::time::timeout(READY_WITHIN, task).await {
            Ok(joined) => {
                last.running = None;
                joined.unwrap_or_else(|panicked| {
                    tracing::error!("the readiness check panicked: {panicked}");
                    Err(NotReady::DatabaseUnwritable)
                })
            }
            Err(_) => Err(NotReady::DatabaseBusy),
        };
        let before = last.checked.map(|(_, r)| r);
        if before != Some(result) {
            // Logged on a change only: a probe every second must not fill the log.
            match result {
                Ok(()) => tracing::info!("ready: the database takes writes"),
                Err(why) => tracing::warn!("not ready ({}): {}", why.code(), why.message()),
            }
        }
        last.checked = Some((Instant::now(), result));
        result
    }
}

/// Takes the database's write lock and lets it go at once: nothing is written.
async fn writable(db: &Db) -> Result<(), NotReady> {
    let failed = |e: sqlx::Error| {
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), extended codes included: someone else
        // holds the lock for longer than the busy timeout.
        let busy = e
            .as_database_error()
            .and_then(|d| d.code())
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6));
        if busy {
            NotReady::DatabaseBusy
        } else {
            tracing::warn!("readiness: the database refuses a write transaction: {e}");
            NotReady::DatabaseUnwritable
        }
    };
    // sqlx's own transaction, so that the pool knows the connection's state whatever
    // happens (a connection returned inside a transaction is rolled back first).
    match db {
        Db::Sqlite(pool) => {
            let tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
            tx.rollback().await.map_err(failed)
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await.map_err(failed)?;
            sqlx::query("SET LOCAL lock_timeout = '1s'")
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            sqlx::query("SELECT seq FROM head FOR UPDATE")
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    // 55P03: lock_not_available, the lock timeout.
                    if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03") {
                        NotReady::DatabaseBusy
                    } else {
                        failed(e)
                    }
                })?;
            tx.rollback().await.map_err(failed)
        }
    }
}
