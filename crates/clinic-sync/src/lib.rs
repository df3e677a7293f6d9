//! The Clinic Desk client sync engine: everything a desktop app's backend needs to keep a
//! local copy of the clinic in sync, with no GUI in it.
//!
//! - [`engine`]: the [`Engine`] handle, its in-memory view (server records with the
//!   outbox re-applied on top), and its two tasks: the feed over ONE WebSocket and the
//!   outbox sender over HTTP.
//! - [`machine`]: the feed protocol as a state machine without IO (frames in, instructions
//!   out), where hostile frames are caught.
//! - `cache`: the SQLite cache (records, cursor, outbox, session), batch writes.
//! - [`queries`]: the reads the dashboards need, over a [`View`].
//! - [`error`]: [`SyncError`], each with a stable code.
//!
//! A late subscriber calls [`Engine::subscribe`] first, then [`Engine::view_at`] (which
//! gives a cache sequence number `S`), then applies only events with a sequence above `S`.
//!
//! See `examples/two_engines.rs` for two engines syncing through a server.

mod cache;
pub mod engine;
pub mod error;
pub mod machine;
pub mod queries;

pub use engine::{
    CacheChange, CacheEvent, ChangeKind, Engine, EngineConfig, Origin, Rejected, Status,
    Subscription, SyncState, View, ViewRecord,
};
pub use error::SyncError;
