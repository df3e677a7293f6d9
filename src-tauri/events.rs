//! The events the backend broadcasts to windows: names and payloads, in one place. The UI's
//! copy of the names is `ui/js/ipc.js`; a unit test keeps the two in step.

use chrono::{DateTime, Utc};
use clinic_protocol::{ErrorCode, Id, Record, RecordKind};
use serde::Serialize;
use uuid::Uuid;

/// A batch of cache changes, [`ChangesPayload`].
pub const CHANGES: &str = "cache://changes";
/// The sync state, [`StatusPayload`].
pub const STATUS: &str = "sync://status";
/// The server refused a change, [`RejectionPayload`].
pub const REJECTION: &str = "sync://rejection";
/// News shown in-app when native notifications are unavailable, [`NoticePayload`].
pub const NOTICE: &str = "app://notice";

/// Every event name, for the test that checks the UI knows each one.
pub const ALL: &[&str] = &[CHANGES, STATUS, REJECTION, NOTICE];

/// One change to what the windows show.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChangeDto {
    Upsert {
        record: Record,
        pending: bool,
    },
    Remove {
        kind: RecordKind,
        id: Id,
    },
    /// Everything was replaced (a resync or another login): read the whole view again.
    Reset,
}

/// Changes numbered `from..=to` by the cache's sequence, one number each, in order.
/// A window applies a batch only if `from` is its last sequence + 1, and reads its view
/// again when it sees a gap.
#[derive(Debug, Clone, Serialize)]
pub struct ChangesPayload {
    pub from: u64,
    pub to: u64,
    pub changes: Vec<ChangeDto>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    Online,
    Syncing,
    Offline,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusPayload {
    pub state: SyncState,
    pub pending: u64,
    pub oldest_pending_secs: Option<u64>,
    pub lag: u64,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectionPayload {
    /// The window the change was made in: only that one tells the user.
    pub origin: Option<String>,
    pub mutation_id: Uuid,
    pub code: ErrorCode,
    pub message: String,
    pub current: Option<Record>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoticePayload {
    pub title: String,
    pub body: String,
    /// The dashboard kind the news belongs to.
    pub kind: String,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ui_knows_every_event_name() {
        let ipc = include_str!("../ui/js/ipc.js");
        for name in super::ALL {
            assert!(
                ipc.contains(&format!("\"{name}\"")),
                "ui/js/ipc.js lacks {name}"
            );
        }
    }
}
