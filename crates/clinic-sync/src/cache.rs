//! The SQLite cache: the server's records, the cursor, the outbox and the session.
//!
//! Every feed batch is applied in ONE transaction together with the new cursor, so a crash
//! never leaves the cache ahead of or behind its cursor. Rows are written with multi-row
//! statements: sqlx pays a round trip to its worker thread per statement.

use std::path::Path;

use chrono::{DateTime, Utc};
use clinic_protocol::{Change, ChangeOp, Mutation, Record, RecordKind, Staff};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

use crate::error::SyncError;

/// Rows per multi-row INSERT (SQLite allows 32766 bound parameters; 3 per row).
const ROWS_PER_STATEMENT: usize = 500;

#[derive(Debug, Clone)]
pub(crate) struct Cache {
    pool: SqlitePool,
}

/// What a cache holds when opened.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub records: Vec<Record>,
    pub outbox: Vec<Queued>,
    pub cursor: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub mutation_id: Uuid,
    pub mutation: Mutation,
    pub queued_at: DateTime<Utc>,
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
            .synchronous(SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| SyncError::Storage(e.to_string()))?;
        Ok(Cache { pool })
    }

    pub(crate) async fn load(&self) -> Result<Loaded, SyncError> {
        let records = sqlx::query("SELECT body FROM records")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| serde_json::from_str(row.get("body")))
            .collect::<Result<Vec<Record>, _>>()?;
        let outbox =
            sqlx::query("SELECT mutation_id, body, queued_at FROM outbox ORDER BY position")
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|row| -> Result<Queued, SyncError> {
                    let id: String = row.get("mutation_id");
                    let at: String = row.get("queued_at");
                    Ok(Queued {
                        mutation_id: id
                            .parse()
                            .map_err(|_| SyncError::Storage("bad outbox id".into()))?,
                        mutation: serde_json::from_str(row.get("body"))?,
                        queued_at: DateTime::parse_from_rfc3339(&at)
                            .map_err(|_| SyncError::Storage("bad outbox time".into()))?
                            .with_timezone(&Utc),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
        let cursor = self
            .meta("cursor")
            .await?
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok(Loaded {
            records,
            outbox,
            cursor,
        })
    }

    pub(crate) async fn meta(&self, key: &str) -> Result<Option<String>, SyncError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub(crate) async fn set_meta(&self, key: &str, value: &str) -> Result<(), SyncError> {
        sqlx::query("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn delete_meta(&self, key: &str) -> Result<(), SyncError> {
        sqlx::query("DELETE FROM meta WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn save_user(&self, user: &Staff) -> Result<(), SyncError> {
        self.set_meta("user", &serde_json::to_string(user)?).await
    }

    /// One feed batch and its cursor, atomically.
    pub(crate) async fn apply(&self, changes: &[Change], upto: u64) -> Result<(), SyncError> {
        let mut tx = self.pool.begin().await?;
        let upserts: Vec<&Record> = changes
            .iter()
            .filter_map(|c| match &c.op {
                ChangeOp::Upsert { record } => Some(record),
                ChangeOp::Remove { .. } => None,
            })
            .collect();
        insert_records(&mut tx, &upserts).await?;
        for change in changes {
            if let ChangeOp::Remove { kind, id } = &change.op {
                remove(&mut tx, *kind, *id).await?;
            }
        }
        set_cursor(&mut tx, upto).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A snapshot replaces everything, with its seq as the cursor.
    pub(crate) async fn replace_all(&self, records: &[Record], seq: u64) -> Result<(), SyncError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM records").execute(&mut *tx).await?;
        insert_records(&mut tx, &records.iter().collect::<Vec<_>>()).await?;
        set_cursor(&mut tx, seq).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A record as the server answered a mutation (not through the feed; the cursor stays).
    pub(crate) async fn put(&self, record: &Record) -> Result<(), SyncError> {
        let mut tx = self.pool.begin().await?;
        insert_records(&mut tx, &[record]).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn forget(&self, kind: RecordKind, id: Uuid) -> Result<(), SyncError> {
        let mut tx = self.pool.begin().await?;
        remove(&mut tx, kind, id).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn enqueue(&self, queued: &Queued) -> Result<(), SyncError> {
        sqlx::query("INSERT INTO outbox (mutation_id, body, queued_at) VALUES (?, ?, ?)")
            .bind(queued.mutation_id.to_string())
            .bind(serde_json::to_string(&queued.mutation)?)
            .bind(queued.queued_at.to_rfc3339())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn dequeue(&self, mutation_id: Uuid) -> Result<(), SyncError> {
        sqlx::query("DELETE FROM outbox WHERE mutation_id = ?")
            .bind(mutation_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

async fn insert_records(
    tx: &mut Transaction<'_, Sqlite>,
    records: &[&Record],
) -> Result<(), SyncError> {
    for chunk in records.chunks(ROWS_PER_STATEMENT) {
        let bodies = chunk
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()?;
        let mut q: QueryBuilder<'_, Sqlite> =
            QueryBuilder::new("INSERT OR REPLACE INTO records (kind, id, body) ");
        q.push_values(chunk.iter().zip(bodies), |mut row, (record, body)| {
            row.push_bind(record.kind().as_str())
                .push_bind(record.id().to_string())
                .push_bind(body);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn remove(
    tx: &mut Transaction<'_, Sqlite>,
    kind: RecordKind,
    id: Uuid,
) -> Result<(), SyncError> {
    sqlx::query("DELETE FROM records WHERE kind = ? AND id = ?")
        .bind(kind.as_str())
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn set_cursor(tx: &mut Transaction<'_, Sqlite>, cursor: u64) -> Result<(), SyncError> {
    sqlx::query("INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor', ?)")
        .bind(cursor.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
