//! The cache's own write and read paths, opened without an engine, so that `clinic-bench`
//! measures exactly the code a feed batch and a dashboard read run. Not the app's API: the
//! app goes through [`crate::Engine`], and builds without it (the `probe` feature is off
//! unless `clinic-bench` is in the build).

use std::path::Path;

use clinic_protocol::{Record, RecordKind};
use uuid::Uuid;

use crate::cache::{Cache, Write};
use crate::error::SyncError;

/// The cache's schema, in migration order, for a floor measured with another SQLite driver.
pub const SCHEMA: [&str; 4] = [
    include_str!("../migrations/0001_cache.sql"),
    include_str!("../migrations/0002_typed_cache.sql"),
    include_str!("../migrations/0003_outbox_tag.sql"),
    include_str!("../migrations/0004_booking_payment.sql"),
];

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
}
