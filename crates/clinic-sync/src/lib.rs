//! The Clinic Desk client sync engine: everything a desktop app's backend needs to keep a
//! local copy of the clinic in sync, with no GUI in it.
//!
//! # Modules
//! - [`machine`]: the sync protocol as a state machine without IO: events in (connected,
//!   frame, snapshot fetched, mutation answered, tick), instructions out (connect, hello,
//!   apply, fetch snapshot, send, wait until, report). Hostile frames are caught here.
//! - [`engine`]: the [`Engine`] handle the app holds, the cache writes (every one a single
//!   transaction with the cursor and the cache seq), and the IO driver: ONE WebSocket to
//!   the feed plus HTTP for login, snapshot and mutations.
//! - `overlay`: the optimistic state as a pure function: the server's record with the
//!   pending mutations re-applied through `clinic_protocol::rules::apply` (rebase).
//! - `cache`: SQLite through sqlx: server records with typed columns, the overlay, the
//!   durable outbox, the cursor and the session; multi-row statements on every hot path.
//! - [`queries`]: the dashboards' reads, in SQL over the cache with pending changes applied.
//! - [`probe`]: the cache's write and read paths without an engine, for `clinic-bench`.
//! - [`error`]: [`SyncError`], each with a stable [`SyncError::code`].
//!
//! # Guarantees
//! - A change the user makes is in the outbox on disk before [`Engine::submit`] returns,
//!   together with its optimistic effect. It is sent when online, in order, one at a time;
//!   replays after a reconnect or a restart are safe (the server deduplicates by mutation
//!   id). The server's verdict wins: a rejection rolls the change back and is reported
//!   as [`CacheEvent::Rejected`] with the server's code, message and current record.
//! - A server change to a record with pending changes is the new base; the pending
//!   changes are re-applied on top (a change that no longer applies stays queued, shown
//!   as the server's record, until the server rejects it).
//! - Subscribers see every change to what queries return, in order, each with a gap-free
//!   cache sequence number. **Joining late** without a gap or a duplicate:
//!   1. `let mut events = engine.subscribe();` first,
//!   2. `let view = engine.view_at().await?;` (all records at cache seq `view.seq`),
//!   3. apply each [`CacheEvent::Change`] with `seq > view.seq`, skip the others; on
//!      [`ChangeKind::Reset`] read `view_at` again.
//! - Garbage, another protocol version, unknown frames, or sequence numbers out of order
//!   set [`Status::last_error`] and lead to a resync from a snapshot; never a panic, never
//!   a half-applied batch.
//!
//! # Two engines syncing through a server
//! (`examples/two_engines.rs` is the same, runnable with `cargo run --example two_engines`.)
//! ```
//! use clinic_protocol::{BookingAction, BookingStatus, Mutation, Record};
//! use clinic_sync::{CacheEvent, ChangeKind, Engine, EngineConfig, Origin};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A server on loopback with the demo clinic.
//! let dir = tempfile::tempdir()?;
//! let state = clinic_server::AppState::open(clinic_server::Config::new(dir.path().join("clinic.db"))).await?;
//! clinic_server::demo::seed(&state).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}", listener.local_addr()?);
//! tokio::spawn(clinic_server::serve(listener, state, std::future::pending()));
//!
//! // Two users, each with their own cache.
//! let olivia = Engine::login(EngineConfig::new(&url, &dir.path().join("olivia")), "olivia", "demo").await?;
//! let reyes = Engine::login(EngineConfig::new(&url, &dir.path().join("reyes")), "reyes", "demo").await?;
//! let mut olivia_events = olivia.subscribe();
//!
//! // Reyes (a therapist) accepts a booking of his: shown at once, pending...
//! let requested = reyes.bookings_with_status(BookingStatus::Requested).await?;
//! let booking = requested[0].record.clone();
//! let mutation_id = reyes
//!     .submit(Mutation::BookingAction { id: booking.id, version: booking.version, action: BookingAction::Accept })
//!     .await?;
//! let mine = reyes.bookings_of_therapist(reyes.user().id).await?;
//! assert!(mine.iter().any(|b| b.record.id == booking.id && b.pending && b.record.status == BookingStatus::Confirmed));
//!
//! // ...and Olivia (an operator) receives it from the server, tagged with who and which mutation.
//! loop {
//!     let event = tokio::time::timeout(std::time::Duration::from_secs(20), olivia_events.recv()).await?;
//!     if let Some(CacheEvent::Change(change)) = event {
//!         if let (ChangeKind::Upsert { record: Record::Booking(b), pending: false }, Origin::Server { actor, mutation_id: Some(m), .. }) = (&change.kind, &change.origin) {
//!             if b.id == booking.id && *m == mutation_id {
//!                 assert_eq!(b.status, BookingStatus::Confirmed);
//!                 assert_eq!(*actor, Some(reyes.user().id));
//!                 break;
//!             }
//!         }
//!     }
//! }
//! olivia.shutdown().await;
//! reyes.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod cache;
pub mod engine;
pub mod error;
pub mod machine;
mod overlay;
pub mod probe;
pub mod queries;

pub use engine::{
    CacheChange, CacheEvent, ChangeKind, Engine, EngineConfig, Origin, Rejected, Status,
    Subscription, View, ViewRecord,
};
pub use error::SyncError;
pub use machine::{SyncState, Timing};
pub use queries::{Cached, Conversation, Counts};
