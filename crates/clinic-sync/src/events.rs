//! What subscribers get: every change to what queries return, each with the cache's own
//! sequence number, the server's verdicts on this user's changes, and the sync status.
//!
//! The write paths in `writes.rs` publish here after each commit, still holding the write
//! lock, so events leave in the order of the cache sequence numbers they carry.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clinic_protocol::{ErrorCode, Id, Mutation, Record, RecordKind};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::cache::{Key, Queued};
use crate::machine::{Report, SyncState};

/// A record as queries return it: with the user's pending changes applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ViewRecord {
    pub record: Record,
    /// A change of this user's to it is waiting for the server.
    pub pending: bool,
}

/// Every visible record, consistent at cache sequence number `seq`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct View {
    pub seq: u64,
    pub records: Vec<ViewRecord>,
}

/// Where a change to what queries return came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Origin {
    /// The server: its feed, or its answer to one of this user's mutations. `actor` made
    /// the change (`None`: the web intake form); `mutation_id` lets the app recognise its
    /// own changes; `live` is false while catching up on what happened while away.
    Server {
        actor: Option<Id>,
        mutation_id: Option<Uuid>,
        live: bool,
    },
    /// This user's change, applied optimistically, or its rollback after a rejection.
    Local,
    /// A snapshot replaced the whole cache (comes with [`ChangeKind::Reset`]).
    Snapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ChangeKind {
    /// The record now looks like this (`pending`: with a change of this user's on top).
    Upsert { record: Record, pending: bool },
    /// The record is gone from what queries return.
    Remove { kind: RecordKind, id: Id },
    /// Everything was replaced (a snapshot after a resync): read
    /// [`Engine::view_at`](crate::Engine::view_at) again.
    Reset,
}

impl ChangeKind {
    /// A record as it is now shown (or its absence) as the change subscribers see.
    pub(crate) fn of(key: Key, record: Option<&Record>, pending: bool) -> ChangeKind {
        match record {
            Some(record) => ChangeKind::Upsert {
                record: record.clone(),
                pending,
            },
            None => ChangeKind::Remove {
                kind: key.0,
                id: key.1,
            },
        }
    }
}

/// One change to what queries return.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheChange {
    /// The cache's sequence number: +1 per change, gap-free and persisted, so it keeps
    /// growing across restarts. Not the server's seq.
    pub seq: u64,
    pub kind: ChangeKind,
    pub origin: Origin,
}

/// The server refused a change of this user's; its optimistic effect has been rolled back
/// (the [`CacheChange`] just before this event shows the record as it is now). It is also
/// kept in the cache until the app says the user has seen it
/// ([`Engine::rejections`](crate::Engine::rejections)), so that what was typed survives a
/// restart even when no window was there to hear the event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejected {
    pub mutation_id: Uuid,
    pub mutation: Mutation,
    pub code: ErrorCode,
    /// A sentence for the user, from the server.
    pub message: String,
    /// The record as the server has it, if it exists and the user may see it.
    pub current: Option<Record>,
    /// The tag the change was queued with ([`Engine::submit_tagged`](crate::Engine::submit_tagged)),
    /// kept in the outbox, so it survives a restart.
    pub tag: Option<String>,
}

/// What subscribers receive, in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CacheEvent {
    Change(CacheChange),
    Rejected(Rejected),
    /// The server applied this mutation of this user's (it left the outbox). `tag` is the
    /// one it was queued with.
    Confirmed {
        mutation_id: Uuid,
        tag: Option<String>,
    },
}

/// The sync status, for the sync dot in every window.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub state: SyncState,
    /// Changes in the outbox.
    pub pending: u64,
    /// Age of the oldest change in the outbox, when the status was published.
    pub oldest_pending: Option<Duration>,
    /// When the oldest change in the outbox was made (for a live age).
    pub oldest_pending_at: Option<DateTime<Utc>>,
    /// Server head minus local cursor.
    pub lag: u64,
    /// Last frame applied from the server.
    pub last_sync: Option<DateTime<Utc>>,
    /// The last error since the engine was last caught up.
    pub last_error: Option<String>,
    /// The server refused the session: the engine stays offline (the cache still
    /// answers) until the app signs in again with [`Engine::login`](crate::Engine::login).
    pub session_expired: bool,
    /// An administrator disabled the account (`account_disabled`): the engine stays
    /// offline, the cache still answers, the outbox is kept on disk (nothing is deleted);
    /// signing in again is refused until an administrator enables the account.
    pub account_disabled: bool,
    /// What the server said it is when the feed last connected (its `Server` header, such
    /// as `clinic-server/0.1.0`); `None` before the first connection.
    pub server_version: Option<String>,
    /// The oldest changes in the outbox, in the order they go out: at most
    /// [`OUTBOX_SHOWN`] of the [`Status::pending`].
    pub outbox: Vec<PendingChange>,
}

/// How many outbox entries the status lists: enough for a panel to show what waits, few
/// enough that publishing the status stays cheap with a long queue offline.
pub const OUTBOX_SHOWN: usize = 20;

/// A change waiting in the outbox, as the status lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChange {
    pub mutation_id: Uuid,
    pub mutation: Mutation,
    /// When it was queued (its age is now minus this).
    pub queued_at: DateTime<Utc>,
    /// The tag it was queued with (the app: the window it was made in).
    pub tag: Option<String>,
}

/// The receiving end of [`Engine::subscribe`](crate::Engine::subscribe). Unbounded, so
/// that a slow window never stalls sync; each subscriber should keep reading.
#[derive(Debug)]
pub struct Subscription(mpsc::UnboundedReceiver<CacheEvent>);

impl Subscription {
    /// The next event; `None` once the engine is gone.
    pub async fn recv(&mut self) -> Option<CacheEvent> {
        self.0.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<CacheEvent> {
        self.0.try_recv().ok()
    }
}

/// A std mutex that shrugs off poisoning: every critical section here only pushes, sends
/// or replaces a value, so a panic there cannot leave the data half-changed.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Everyone subscribed to the change stream. A std mutex apart from the write lock, so
/// that subscribing never waits for a sync step to finish.
#[derive(Debug, Default)]
pub(crate) struct Subscribers(std::sync::Mutex<Vec<mpsc::UnboundedSender<CacheEvent>>>);

impl Subscribers {
    pub(crate) fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.0).push(tx);
        Subscription(rx)
    }

    /// Sends `events` to every subscriber, in order, and forgets those that hung up.
    pub(crate) fn broadcast(&self, events: Vec<CacheEvent>) {
        lock(&self.0).retain(|s| events.iter().all(|e| s.send(e.clone()).is_ok()));
    }
}

/// The published [`Status`]: the machine's last report combined with the outbox's
/// figures, which only the write paths know.
#[derive(Debug)]
pub(crate) struct StatusBoard {
    status: watch::Sender<Status>,
    report: std::sync::Mutex<Report>,
}

impl StatusBoard {
    /// Offline, with the outbox as loaded from disk.
    pub(crate) fn new(outbox: &[Queued]) -> StatusBoard {
        let (status, _) = watch::channel(Status {
            state: SyncState::Offline,
            pending: 0,
            oldest_pending: None,
            oldest_pending_at: None,
            lag: 0,
            last_sync: None,
            last_error: None,
            session_expired: false,
            account_disabled: false,
            server_version: None,
            outbox: Vec::new(),
        });
        let board = StatusBoard {
            status,
            report: std::sync::Mutex::new(Report {
                state: SyncState::Offline,
                lag: 0,
                error: None,
                session_expired: false,
                account_disabled: false,
                synced: false,
            }),
        };
        board.publish(Some(outbox));
        board
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Publishes the status: the machine's report with the outbox's figures (`None`: the
    /// outbox did not change).
    pub(crate) fn publish(&self, outbox: Option<&[Queued]>) {
        let report = lock(&self.report).clone();
        self.status.send_modify(|s| {
            if let Some(outbox) = outbox {
                s.pending = outbox.len() as u64;
                s.oldest_pending_at = outbox.first().map(|q| q.queued_at);
                s.outbox = outbox
                    .iter()
                    .take(OUTBOX_SHOWN)
                    .map(|q| PendingChange {
                        mutation_id: q.mutation_id,
                        mutation: q.mutation.clone(),
                        queued_at: q.queued_at,
                        tag: q.tag.clone(),
                    })
                    .collect();
            }
            s.oldest_pending = s
                .oldest_pending_at
                .and_then(|t| (Utc::now() - t).to_std().ok());
            s.lag = report.lag;
            s.last_error.clone_from(&report.error);
            s.session_expired = report.session_expired;
            s.account_disabled = report.account_disabled;
            if report.synced {
                s.last_sync = Some(Utc::now());
            }
            s.state = match report.state {
                // Queued changes are still to go, whatever the machine knows yet.
                SyncState::Online if s.pending > 0 => SyncState::Syncing,
                other => other,
            };
        });
    }

    /// What the server calls itself, from the feed's handshake; published only when it
    /// changes (a server upgraded between two connections).
    pub(crate) fn server_version(&self, version: Option<String>) {
        self.status.send_if_modified(|s| {
            let changed = version.is_some() && s.server_version != version;
            if changed {
                s.server_version = version;
            }
            changed
        });
    }

    /// A new report from the machine. `synced` marks one moment, not a state, so it is
    /// cleared once published.
    pub(crate) fn report(&self, report: Report) {
        *lock(&self.report) = report;
        self.publish(None);
        lock(&self.report).synced = false;
    }
}
