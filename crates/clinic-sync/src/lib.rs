//! The Clinic Desk client sync engine: everything a desktop app's backend needs to keep a
//! local copy of the clinic in sync, with no GUI in it.
//!
//! # Modules
//! Along the data's path, from the server to the subscriber:
//! - `tls`: encryption: the one rustls config (system roots plus an optional clinic CA
//!   file) for `https://` and `wss://`, TLS failures as errors, and
//!   [`insecure_address_warning`] for an `http://` address off this computer.
//! - `client`: the HTTP calls: sign in, snapshot, send one mutation, revoke the token.
//! - [`machine`]: the sync protocol as a state machine without IO: events in, instructions out.
//! - `driver`: the IO loop around the machine: ONE feed WebSocket, one mutation in flight.
//! - `writes`: every cache write, ONE transaction each with the cache seq, then its events.
//! - `overlay`: pending changes re-applied on the server's record (rebase), a pure function.
//! - `cache`: SQLite: records with typed columns, overlay, durable outbox, cursor, session.
//! - [`events`]: what subscribers get: [`CacheEvent`]s with cache seqs, and the [`Status`].
//! - [`queries`]: [`Queries`], the dashboards' reads in SQL, with pending changes applied.
//! - [`engine`]: the [`Engine`] handle the app holds; it ties the modules above together.
//!   A clinic server may have several addresses ([`EngineConfig::with_servers`]): the
//!   engine fails over between them with its cursor and outbox (see [`machine`]).
//! - [`error`]: [`SyncError`], each with a stable [`SyncError::code`].
//! - `probe` (feature `probe`): the cache's write and read paths for `clinic-bench`.
//!
//! # Guarantees
//! - A change the user makes is in the outbox on disk before [`Engine::submit`] returns,
//!   together with its optimistic effect. It is sent when online, in order, one at a time;
//!   replays after a reconnect or a restart are safe (the server deduplicates by mutation
//!   id). The server's verdict wins: a rejection rolls the change back and is reported
//!   as [`CacheEvent::Rejected`] with the server's code, message and current record, and
//!   with the tag the change was queued with ([`Engine::submit_tagged`]), which is kept
//!   in the outbox and so survives a restart. The refusal itself, with the refused change,
//!   is kept in the cache (committed with the change leaving the outbox) until the app
//!   says the user saw it ([`Engine::rejections`], [`Engine::seen_rejection`]): what was
//!   typed is never in neither place.
//! - A server change to a record with pending changes is the new base; the pending
//!   changes are re-applied on top (a change that no longer applies stays queued, shown
//!   as the server's record, until the server rejects it).
//! - Subscribers see every change to what [`Queries`] return, in order, each with a gap-free
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
//! use clinic_sync::{BookingQuery, CacheEvent, ChangeKind, Engine, EngineConfig, Origin};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A server on loopback (any free port) with the demo clinic; it stops when dropped.
//! let dir = tempfile::tempdir()?;
//! let state = clinic_server::AppState::open(clinic_server::Config::new(dir.path().join("clinic.db"))).await?;
//! clinic_server::demo::seed(&state).await?;
//! let server = clinic_server::Embedded::spawn("127.0.0.1:0".parse()?, state).await?;
//! let url = server.url();
//!
//! // Two users, each with their own cache.
//! let olivia = Engine::login(EngineConfig::new(&url, &dir.path().join("olivia")), "olivia", "demo").await?;
//! let reyes = Engine::login(EngineConfig::new(&url, &dir.path().join("reyes")), "reyes", "demo").await?;
//! let mut olivia_events = olivia.subscribe();
//!
//! // Reyes (a therapist) accepts a booking of his: shown at once, pending...
//! let queries = reyes.queries();
//! let requested = queries
//!     .bookings(&BookingQuery { statuses: Some(vec![BookingStatus::Requested]), ..BookingQuery::default() })
//!     .await?;
//! let booking = requested[0].record.clone();
//! let mutation_id = reyes
//!     .submit(Mutation::BookingAction { id: booking.id, version: booking.version, action: BookingAction::Accept })
//!     .await?;
//! let mine = queries.bookings(&BookingQuery { therapist: Some(reyes.user().id), ..BookingQuery::default() }).await?;
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
mod client;
mod driver;
pub mod engine;
pub mod error;
pub mod events;
pub mod machine;
mod overlay;
#[cfg(feature = "probe")]
pub mod probe;
pub mod queries;
mod tls;
mod writes;

pub use engine::{server_list, Engine, EngineConfig};
pub use error::SyncError;
pub use events::{
    CacheChange, CacheEvent, ChangeKind, Origin, PendingChange, Rejected, Status, Subscription,
    View, ViewRecord, OUTBOX_SHOWN,
};
pub use machine::{SyncState, Timing};
pub use queries::{BookingOrder, BookingQuery, Cached, Conversation, Counts, Queries};
pub use tls::insecure_address_warning;
