//! The cache's own write and read paths, opened without an engine, so that `clinic-bench`
//! measures exactly the code a feed batch and a dashboard read run. Not the app's API: the
//! app goes through [`crate::Engine`], and builds without it (the `probe` feature is off
//! unless `clinic-bench` is in the build).

use std::path::Path;

use clinic_protocol::{Id, Record, RecordKind};
use sqlx::Row;
use uuid::Uuid;

use crate::cache::{Cache, Write};
use crate::error::SyncError;
use crate::queries::Queries;

/// The cache's schema, in migration order, for a floor measured with another SQLite driver.
pub const SCHEMA: [&str; 9] = [
    include_str!("../migrations/0001_cache.sql"),
    include_str!("../migrations/0002_typed_cache.sql"),
    include_str!("../migrations/0003_outbox_tag.sql"),
    include_str!("../migrations/0004_booking_payment.sql"),
    include_str!("../migrations/0005_query_indexes.sql"),
    include_str!("../migrations/0006_rejections.sql"),
    include_str!("../migrations/0007_lean_indexes.sql"),
    include_str!("../migrations/0008_covering_day_index.sql"),
    include_str!("../migrations/0009_booking_days.sql"),
];

/// What the cache's row writes end with (after their `VALUES`): a row already there is
/// updated in place.
pub const UPSERT: &str = crate::cache::UPSERT;

/// A cache file opened directly.
#[derive(Debug)]
pub struct CacheProbe {
    cache: Cache,
}

impl CacheProbe {
    /// Opens (or creates) a cache database at `path`, migrated like the engine's.
    pub async fn open(path: &Path) -> Result<CacheProbe, SyncError> {
        Ok(CacheProbe {
            cache: Cache::open(path).await?,
        })
    }

    /// Applies server records the way a feed batch does: one transaction, multi-row
    /// statements, the cursor with them.
    pub async fn apply(&self, records: &[Record], cursor: u64) -> Result<(), SyncError> {
        self.cache
            .write(&Write {
                upserts: records.iter().collect(),
                cursor: Some(cursor),
                ..Write::default()
            })
            .await
    }

    /// One record by its key, decoded, as the engine reads a server record.
    pub async fn read(&self, kind: RecordKind, id: Uuid) -> Result<Option<Record>, SyncError> {
        self.cache.server_record((kind, id)).await
    }

    /// The dashboards' reads on this cache, as the user `me`.
    pub fn queries(&self, me: Id) -> Queries {
        Queries::new(self.cache.pool().clone(), me)
    }

    /// Runs `sql` and decodes the record of every row that has a `body`, as a query does:
    /// for measuring another statement of the same read on the same connection pool.
    pub async fn read_rows(&self, sql: &str) -> Result<usize, SyncError> {
        let rows = sqlx::query(sql).fetch_all(self.cache.pool()).await?;
        for row in &rows {
            if let Ok(body) = row.try_get::<&str, _>("body") {
                let _: Record = serde_json::from_str(body)?;
            }
        }
        Ok(rows.len())
    }
}
