//! The SQLite cache: the server's records, the overlay of pending changes, the outbox, the
//! cursor and the session.
//!
//! Every write the engine makes (a feed batch, a snapshot, a submitted change, a server
//! verdict) is ONE [`Write`] applied in ONE transaction together with the cursor and the
//! cache sequence number, so a crash never leaves the cache ahead of or behind either.
//! Rows are written with multi-row statements: sqlx pays a round trip to its worker thread
//! per statement (about 70 us here), so a batch costs a handful of statements whatever its
//! size.
//!
//! Durability is chosen per write. The cache runs WAL with `synchronous=NORMAL`: a commit
//! survives a crash of the app, but a power cut can lose the last ones. That is fine for
//! everything the server can give back (records, the cursor: they are refilled from the
//! feed), and for an outbox entry leaving (the change is sent again under the same
//! mutation id and the server answers with its first outcome). It is not fine for a change
//! the user was shown as queued: only this cache holds it. So every write that queues a
//! change goes through a connection of its own with `synchronous=FULL`, whose commit syncs
//! the log to disk before `submit` returns, the rest of the cache staying NORMAL. (The
//! setting is per connection, and cannot change inside a transaction, hence a connection
//! rather than a pragma around the write.) One log serves both connections and a power cut
//! loses only its unsynced tail, so the cache comes back as it was at some commit: never a
//! queued change without the cursor and records that went with it.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use clinic_protocol::{Mutation, Record, RecordKind, Staff};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

use crate::error::SyncError;

/// A record's identity in the cache.
pub(crate) type Key = (RecordKind, Uuid);

/// Rows per multi-row statement: SQLite allows 32766 bound parameters, a row binds 14.
const ROWS_PER_STATEMENT: usize = 1_000;

#[derive(Debug, Clone)]
pub(crate) struct Cache {
    pool: SqlitePool,
    /// One connection with `synchronous=FULL`, for the writes that queue a change (see the
    /// module docs).
    durable: SqlitePool,
}

/// A change of the user's waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Queued {
    pub(crate) mutation_id: Uuid,
    pub(crate) mutation: Mutation,
    pub(crate) queued_at: DateTime<Utc>,
    /// Where in the app the change was made (the app's own label), told back with the
    /// server's verdict.
    pub(crate) tag: Option<String>,
}

/// What a cache holds when opened (records stay on disk; queries read them there).
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) outbox: Vec<Queued>,
    /// The last server seq applied; `None` before the first snapshot.
    pub(crate) cursor: Option<u64>,
    /// The last cache sequence number handed to subscribers.
    pub(crate) cache_seq: u64,
}

/// One atomic change to the cache. Order inside the transaction: replace, server
/// records, overlay, outbox, meta.
#[derive(Debug, Default)]
pub(crate) struct Write<'a> {
    /// Delete every server record and overlay row first (a snapshot).
    pub(crate) replace_all: bool,
    /// Server records that now look like this (the last state of each key only).
    pub(crate) upserts: Vec<&'a Record>,
    /// Server records that are gone.
    pub(crate) removes: Vec<Key>,
    /// Overlay rows to set: `None` hides the record.
    pub(crate) overlay: Vec<(Key, Option<Record>)>,
    /// Overlay rows to drop (no pending change left for the record).
    pub(crate) overlay_clear: Vec<Key>,
    pub(crate) enqueue: Option<&'a Queued>,
    pub(crate) dequeue: Vec<Uuid>,
    /// A refusal to keep until the user has seen it (see [`Cache::rejections`]).
    pub(crate) reject: Option<&'a crate::events::Rejected>,
    pub(crate) cursor: Option<u64>,
    pub(crate) cache_seq: Option<u64>,
}

impl Cache {
    pub(crate) async fn open(path: &Path) -> Result<Cache, SyncError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| SyncError::Storage(e.to_string()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10));
        // One writer (the engine serialises its writes) and readers for queries: WAL lets
        // dashboards read while a batch is being applied.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| SyncError::Storage(e.to_string()))?;
        let durable = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.synchronous(SqliteSynchronous::Full))
            .await?;
        Ok(Cache { pool, durable })
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) async fn load(&self) -> Result<Loaded, SyncError> {
        let outbox =
            sqlx::query("SELECT mutation_id, body, queued_at, tag FROM outbox ORDER BY position")
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|row| -> Result<Queued, SyncError> {
                    let id: String = row.try_get("mutation_id")?;
                    let at: String = row.try_get("queued_at")?;
                    Ok(Queued {
                        mutation_id: id
                            .parse()
                            .map_err(|_| SyncError::Storage("bad outbox id".into()))?,
                        mutation: serde_json::from_str(row.try_get("body")?)?,
                        queued_at: DateTime::parse_from_rfc3339(&at)
                            .map_err(|_| SyncError::Storage("bad outbox time".into()))?
                            .with_timezone(&Utc),
                        tag: row.try_get("tag")?,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
        let cursor = self.meta("cursor").await?.and_then(|c| c.parse().ok());
        let cache_seq = self
            .meta("cache_seq")
            .await?
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok(Loaded {
            outbox,
            cursor,
            cache_seq,
        })
    }

    pub(crate) async fn meta(&self, key: &str) -> Result<Option<String>, SyncError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub(crate) async fn delete_meta(&self, key: &str) -> Result<(), SyncError> {
        sqlx::query("DELETE FROM meta WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The session: token, its expiry and the signed-in user, in one statement.
    pub(crate) async fn save_session(
        &self,
        token: &str,
        expires_at: DateTime<Utc>,
        user: &Staff,
    ) -> Result<(), SyncError> {
        sqlx::query("INSERT OR REPLACE INTO meta (key, value) VALUES ('token', ?), ('expires_at', ?), ('user', ?)")
            .bind(token)
            .bind(expires_at.to_rfc3339())
            .bind(serde_json::to_string(user)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn save_user(&self, user: &Staff) -> Result<(), SyncError> {
        sqlx::query("INSERT OR REPLACE INTO meta (key, value) VALUES ('user', ?)")
            .bind(serde_json::to_string(user)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The refusals not yet seen, oldest first. A row that no longer reads as a refusal
    /// (written by another version of the app, say) is logged and skipped: one bad row must
    /// not hide every other refusal for good. It stays in the table, so nothing is lost
    /// that a later version could still read.
    pub(crate) async fn rejections(&self) -> Result<Vec<crate::events::Rejected>, SyncError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT mutation_id, body FROM rejections ORDER BY at, mutation_id")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, body)| match serde_json::from_str(&body) {
                Ok(rejected) => Some(rejected),
                Err(e) => {
                    tracing::warn!("skipping stored refusal {id} that does not read: {e}");
                    None
                }
            })
            .collect())
    }

    /// Forgets a refusal the user has seen. Forgetting one that is gone is not an error (two
    /// windows may acknowledge it).
    pub(crate) async fn forget_rejection(&self, mutation_id: Uuid) -> Result<(), SyncError> {
        sqlx::query("DELETE FROM rejections WHERE mutation_id = ?")
            .bind(mutation_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The server's copy of one record (not the overlay).
    pub(crate) async fn server_record(&self, key: Key) -> Result<Option<Record>, SyncError> {
        let body: Option<String> =
            sqlx::query_scalar("SELECT body FROM records WHERE kind = ? AND id = ?")
                .bind(key.0.as_str())
                .bind(key.1.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
    }

    /// Where `w` is committed: a write that queues a change must survive a power cut (the
    /// `synchronous=FULL` connection); any other may not (the pool, `NORMAL`).
    fn pool_for(&self, w: &Write<'_>) -> &SqlitePool {
        if w.enqueue.is_some() {
            &self.durable
        } else {
            &self.pool
        }
    }

    /// Applies `w` atomically.
    pub(crate) async fn write(&self, w: &Write<'_>) -> Result<(), SyncError> {
        let mut tx = self.pool_for(w).begin().await?;
        if w.replace_all {
            sqlx::query("DELETE FROM records").execute(&mut *tx).await?;
            sqlx::query("DELETE FROM overlay").execute(&mut *tx).await?;
        }
        delete_keys(&mut tx, "records", &w.removes).await?;
        let rows = w
            .upserts
            .iter()
            .map(|r| Columns::of(r.kind(), r.id(), Some(r)))
            .collect::<Result<Vec<_>, _>>()?;
        insert_rows(&mut tx, "records", &rows).await?;
        delete_keys(&mut tx, "overlay", &w.overlay_clear).await?;
        let rows = w
            .overlay
            .iter()
            .map(|(key, r)| Columns::of(key.0, key.1, r.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        insert_rows(&mut tx, "overlay", &rows).await?;
        if let Some(q) = w.enqueue {
            sqlx::query(
                "INSERT INTO outbox (mutation_id, body, queued_at, tag) VALUES (?, ?, ?, ?)",
            )
            .bind(q.mutation_id.to_string())
            .bind(serde_json::to_string(&q.mutation)?)
            .bind(q.queued_at.to_rfc3339())
            .bind(q.tag.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        for chunk in w.dequeue.chunks(ROWS_PER_STATEMENT) {
            let mut q: QueryBuilder<'_, Sqlite> =
                QueryBuilder::new("DELETE FROM outbox WHERE mutation_id IN (");
            let mut ids = q.separated(", ");
            for id in chunk {
                ids.push_bind(id.to_string());
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        if let Some(r) = w.reject {
            sqlx::query(
                "INSERT OR REPLACE INTO rejections (mutation_id, body, at) VALUES (?, ?, ?)",
            )
            .bind(r.mutation_id.to_string())
            .bind(serde_json::to_string(r)?)
            .bind(sortable(Utc::now()))
            .execute(&mut *tx)
            .await?;
        }
        let mut meta: Vec<(&str, String)> = Vec::new();
        if let Some(c) = w.cursor {
            meta.push(("cursor", c.to_string()));
        }
        if let Some(s) = w.cache_seq {
            meta.push(("cache_seq", s.to_string()));
        }
        if !meta.is_empty() {
            let mut q: QueryBuilder<'_, Sqlite> =
                QueryBuilder::new("INSERT OR REPLACE INTO meta (key, value) ");
            q.push_values(meta, |mut row, (k, v)| {
                row.push_bind(k).push_bind(v);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// A record's typed columns, as stored in `records` and `overlay`.
#[derive(Debug, Default)]
struct Columns {
    kind: &'static str,
    id: String,
    body: Option<String>,
    day: Option<String>,
    start_time: Option<String>,
    status: Option<&'static str>,
    therapist_id: Option<String>,
    driver_id: Option<String>,
    staff_id: Option<String>,
    sender_id: Option<String>,
    recipient_id: Option<String>,
    at: Option<String>,
    unread: Option<bool>,
    payment: Option<&'static str>,
}

/// RFC 3339 in UTC with a fixed precision, so that text order is time order.
pub(crate) fn sortable(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Columns {
    fn of(kind: RecordKind, id: Uuid, record: Option<&Record>) -> Result<Columns, SyncError> {
        let mut c = Columns {
            kind: kind.as_str(),
            id: id.to_string(),
            ..Columns::default()
        };
        let Some(record) = record else {
            return Ok(c);
        };
        c.body = Some(serde_json::to_string(record)?);
        match record {
            Record::Staff(_) => {}
            Record::Booking(b) => {
                c.day = Some(b.date.to_string());
                c.start_time = Some(b.start.to_string());
                c.status = Some(b.status.as_str());
                c.payment = Some(b.payment.as_str());
                c.therapist_id = b.therapist_id.map(|i| i.to_string());
                c.driver_id = b.driver_id.map(|i| i.to_string());
                c.at = Some(sortable(b.created_at));
            }
            Record::Slot(s) => {
                c.day = Some(s.date.to_string());
                c.start_time = Some(s.start.to_string());
                c.staff_id = Some(s.staff_id.to_string());
            }
            Record::Message(m) => {
                c.sender_id = Some(m.sender_id.to_string());
                c.recipient_id = Some(m.recipient_id.to_string());
                c.at = Some(sortable(m.sent_at));
                c.unread = Some(m.read_at.is_none());
            }
        }
        Ok(c)
    }
}

/// How [`insert_rows`] writes a row whose key is there already: in place, so that the
/// per-day counts' update trigger (migration 0009) follows it. (INSERT OR REPLACE deleted
/// the row and inserted it again, re-placing it in every index, which was slower, and its
/// delete fires no delete trigger unless recursive triggers are on.)
pub(crate) const UPSERT: &str = " ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, \
    day = excluded.day, start_time = excluded.start_time, status = excluded.status, \
    therapist_id = excluded.therapist_id, driver_id = excluded.driver_id, \
    staff_id = excluded.staff_id, sender_id = excluded.sender_id, \
    recipient_id = excluded.recipient_id, at = excluded.at, unread = excluded.unread, \
    payment = excluded.payment";

async fn insert_rows(
    tx: &mut Transaction<'_, Sqlite>,
    table: &str,
    rows: &[Columns],
) -> Result<(), SyncError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q: QueryBuilder<'_, Sqlite> = QueryBuilder::new(format!(
            "INSERT INTO {table} (kind, id, body, day, start_time, status, \
             therapist_id, driver_id, staff_id, sender_id, recipient_id, at, unread, payment) "
        ));
        q.push_values(chunk, |mut row, c| {
            row.push_bind(c.kind)
                .push_bind(c.id.as_str())
                .push_bind(c.body.as_deref())
                .push_bind(c.day.as_deref())
                .push_bind(c.start_time.as_deref())
                .push_bind(c.status)
                .push_bind(c.therapist_id.as_deref())
                .push_bind(c.driver_id.as_deref())
                .push_bind(c.staff_id.as_deref())
                .push_bind(c.sender_id.as_deref())
                .push_bind(c.recipient_id.as_deref())
                .push_bind(c.at.as_deref())
                .push_bind(c.unread)
                .push_bind(c.payment);
        });
        q.push(UPSERT);
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn delete_keys(
    tx: &mut Transaction<'_, Sqlite>,
    table: &str,
    keys: &[Key],
) -> Result<(), SyncError> {
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut q: QueryBuilder<'_, Sqlite> =
            QueryBuilder::new(format!("DELETE FROM {table} WHERE (kind, id) IN ("));
        q.push_values(chunk, |mut row, key| {
            row.push_bind(key.0.as_str()).push_bind(key.1.to_string());
        });
        q.push(")");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn synchronous(pool: &SqlitePool) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(pool)
            .await
            .expect("the setting")
    }

    /// SQLite's numbers for `PRAGMA synchronous`.
    const NORMAL: i64 = 1;
    const FULL: i64 = 2;

    #[tokio::test]
    async fn a_refusal_is_kept_with_its_values_until_seen_even_after_reopening() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("cache.db");
        let cache = Cache::open(&path).await.expect("a cache");
        let queued = Queued {
            mutation_id: Uuid::new_v4(),
            mutation: Mutation::MarkRead { id: Uuid::new_v4() },
            queued_at: Utc::now(),
            tag: Some("operator-3".into()),
        };
        cache
            .write(&Write {
                enqueue: Some(&queued),
                ..Write::default()
            })
            .await
            .expect("queued");
        let refused = crate::events::Rejected {
            mutation_id: queued.mutation_id,
            mutation: queued.mutation.clone(),
            code: clinic_protocol::ErrorCode::Forbidden,
            message: "No.".into(),
            current: None,
            tag: queued.tag.clone(),
        };
        // The verdict takes the change out of the outbox and keeps the refusal, at once.
        cache
            .write(&Write {
                dequeue: vec![queued.mutation_id],
                reject: Some(&refused),
                ..Write::default()
            })
            .await
            .expect("settled");
        drop(cache);
        let cache = Cache::open(&path).await.expect("the cache again");
        assert!(cache.load().await.expect("loaded").outbox.is_empty());
        assert_eq!(
            cache.rejections().await.expect("read"),
            vec![refused.clone()]
        );
        // A row that does not read (another version wrote it) is skipped, not an error that
        // would hide the good ones; it sorts first here.
        sqlx::query("INSERT INTO rejections (mutation_id, body, at) VALUES (?, ?, ?)")
            .bind(Uuid::new_v4().to_string())
            .bind("{\"not\": \"a refusal\"}")
            .bind("0000-01-01T00:00:00Z")
            .execute(&cache.pool)
            .await
            .expect("a bad row");
        assert_eq!(cache.rejections().await.expect("read"), vec![refused]);
        cache
            .forget_rejection(queued.mutation_id)
            .await
            .expect("forgotten");
        cache
            .forget_rejection(queued.mutation_id)
            .await
            .expect("forgetting twice is fine");
        assert!(cache.rejections().await.expect("read").is_empty());
    }

    #[tokio::test]
    async fn a_queued_change_is_committed_with_a_sync_to_disk_the_rest_normally() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let cache = Cache::open(&dir.path().join("cache.db"))
            .await
            .expect("a cache");
        let queued = Queued {
            mutation_id: Uuid::new_v4(),
            mutation: Mutation::MarkRead { id: Uuid::new_v4() },
            queued_at: Utc::now(),
            tag: Some("operator-1".into()),
        };
        let submit = Write {
            enqueue: Some(&queued),
            cache_seq: Some(1),
            ..Write::default()
        };
        let batch = Write {
            cursor: Some(7),
            dequeue: vec![queued.mutation_id],
            ..Write::default()
        };
        assert_eq!(synchronous(cache.pool_for(&submit)).await, FULL);
        assert_eq!(synchronous(cache.pool_for(&batch)).await, NORMAL);
        // Every connection of the pool queries use and batches are written with.
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut conn = cache.pool().acquire().await.expect("a connection");
            let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await
                .expect("the setting");
            assert_eq!(level, NORMAL);
            held.push(conn);
        }
        drop(held);

        // The submit's transaction runs on that connection, and is read back by the rest.
        cache.write(&submit).await.expect("queued");
        let loaded = cache.load().await.expect("loaded");
        assert_eq!(loaded.outbox, vec![queued.clone()]);
        assert_eq!(loaded.cache_seq, 1);
        cache.write(&batch).await.expect("applied");
        let loaded = cache.load().await.expect("loaded");
        assert!(loaded.outbox.is_empty());
        assert_eq!(loaded.cursor, Some(7));
    }
}
