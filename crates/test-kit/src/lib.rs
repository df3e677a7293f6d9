//! What every Clinic Desk test suite needs around the real server: the server's own tests,
//! the sync engine's, and the desktop app's end-to-end tests. Test-only: a dev-dependency,
//! never shipped (the app's demo mode embeds the server through
//! [`clinic_server::Embedded`] instead).
//!
//! # Modules
//! - `server`: [`TestServer`], the demo clinic on 127.0.0.1 (any free port) over the test's
//!   store, with an intake key; stopped and restarted on the same port and database; a
//!   second instance beside it on the same PostgreSQL database.
//! - `store`: [`TestStore`], the one place that picks a test's store: a SQLite file in a
//!   temporary directory, or a fresh PostgreSQL database when `CLINIC_TEST_POSTGRES` is set
//!   (so the same tests run on both).
//! - [`postgres`]: [`postgres::fresh_database`] on the server `CLINIC_TEST_POSTGRES` names,
//!   and [`postgres::PgCluster`], a throwaway cluster of a test's own that it can restart.
//! - [`process`]: [`process::ServerProcess`], the real binary as a child process (SIGKILL,
//!   restart), on a SQLite file or a PostgreSQL database.
//! - `client`: [`Staffer`], a staff member signed in over HTTP or HTTPS (snapshot, mutate,
//!   act on a booking, logout), and what tests look up in a snapshot ([`staff_id`],
//!   [`bookings`]).
//! - `proxy`: [`Proxy`], a loopback TCP proxy that can be cut and restored: a network
//!   partition for one client while the server and the others carry on.
//! - `poll`: [`poll_until`], [`eventually`] and [`poll_within`]: wait for a state by
//!   checking it again and again until a deadline, never by sleeping a guessed time.
//! - [`fuzz_json`]: property-test strategies for bytes from outside (near-valid JSON,
//!   any JSON, hostile text, raw bodies around a limit), for every suite's fuzz targets.
//! - `tls`: [`TestCa`], a certificate authority made at test time, and the server
//!   certificates it signs ([`TestServer::start_tls`] serves one).

mod client;
pub mod fuzz_json;
mod poll;
pub mod postgres;
pub mod process;
mod proxy;
mod server;
mod store;
mod tls;

pub use client::{bookings, staff_id, Staffer};
pub use poll::{eventually, poll_until, poll_within, DEADLINE};
pub use proxy::Proxy;
pub use server::TestServer;
pub use store::TestStore;
pub use tls::TestCa;

/// The password of every demo login (see [`clinic_server::demo`]).
pub const PASSWORD: &str = "demo";

/// The web booking form's key on a [`TestServer`].
pub const INTAKE_KEY: &str = "test-intake-key";
