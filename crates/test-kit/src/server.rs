//! The real server with the demo clinic, in the test's process on loopback, on the test's
//! own store.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use clinic_protocol::wire::paths;
use clinic_protocol::{Booking, IntakeRequest, Snapshot};
use clinic_server::{AppState, Config, Database, Embedded};

use crate::client::{answer, Staffer};
use crate::store::TestStore;
use crate::tls::TestCa;
use crate::INTAKE_KEY;

/// An [`Embedded`] server on 127.0.0.1 (any free port) over the test's own store (see
/// [`TestStore::fresh`]: a SQLite file in a temporary directory, or a fresh PostgreSQL
/// database when `CLINIC_TEST_POSTGRES` is set), seeded with the demo clinic (every
/// password [`crate::PASSWORD`]) and taking web bookings with [`INTAKE_KEY`]. It stops and
/// restarts on the same port and database. [`TestServer::start_tls`] serves it over TLS,
/// with a certificate from a CA of its own; [`TestServer::start_sqlite`] insists on the
/// SQLite file; [`TestServer::beside`] starts another instance on the same PostgreSQL
/// database.
#[derive(Debug)]
pub struct TestServer {
    // Declared before the store, so the server stops before its files or database go.
    server: Embedded,
    store: TestStore,
    /// The CA file (PEM) that vouches for the server's certificate, when served over TLS.
    ca_file: Option<PathBuf>,
    /// What the kit's own requests go through: trusts `ca_file`.
    http: reqwest::Client,
    /// One sign-in per user for [`TestServer::snapshot`].
    staff: Mutex<HashMap<String, Staffer>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// Starts with some settings changed: a small feed queue, short-lived tokens...
    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_in(TestStore::fresh().await, tune).await
    }

    /// Starts on a SQLite file whatever the environment: for the tests of the file itself
    /// (its bytes, its backup, its lock).
    pub async fn start_sqlite() -> TestServer {
        TestServer::start_sqlite_with(|_| {}).await
    }

    /// [`TestServer::start_sqlite`] with some settings changed.
    pub async fn start_sqlite_with(tune: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_in(TestStore::sqlite(), tune).await
    }

    /// Starts on `store` (seeding the demo clinic if it has no staff yet): for a test that
    /// picks its store itself, such as a database on a [`crate::postgres::PgCluster`].
    pub async fn start_in(store: TestStore, tune: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_inner(store, tune, false, true).await
    }

    /// Starts serving `https://` (and `wss://`) on 127.0.0.1 with a certificate for
    /// `127.0.0.1` and `localhost` from a CA made for this server alone: clients trust it
    /// only with [`TestServer::ca_file`].
    pub async fn start_tls() -> TestServer {
        TestServer::start_tls_with(|_| {}).await
    }

    /// [`TestServer::start_tls`] with some settings changed.
    pub async fn start_tls_with(tune: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_inner(TestStore::fresh().await, tune, true, true).await
    }

    /// A second instance on `first`'s PostgreSQL database (plain `http://`, the kit's
    /// usual settings, nothing seeded: the clinic is `first`'s). Panics if `first` runs on
    /// a SQLite file, which one process alone writes.
    pub async fn beside(first: &TestServer) -> TestServer {
        TestServer::beside_with(first, |_| {}).await
    }

    /// [`TestServer::beside`] with some settings changed.
    pub async fn beside_with(first: &TestServer, tune: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_inner(first.store.beside(), tune, false, false).await
    }

    async fn start_inner(
        store: TestStore,
        tune: impl FnOnce(&mut Config),
        tls: bool,
        seed: bool,
    ) -> TestServer {
        let mut config = store.config();
        config.intake_key = Some(INTAKE_KEY.to_owned());
        // Frequent heartbeats: clients notice a dead server quickly, and a test of an idle
        // feed does not wait long for one.
        config.heartbeat = Duration::from_millis(200);
        tune(&mut config);
        let state = AppState::open(config)
            .await
            .unwrap_or_else(|e| panic!("open the database {}: {e}", store.database().display()));
        if seed {
            clinic_server::demo::seed(&state)
                .await
                .expect("seed the demo clinic");
        }
        let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut http = reqwest::Client::builder();
        let (server, ca_file) = if tls {
            let ca = TestCa::new("Test clinic CA");
            let ca_file = store.dir().join("clinic-ca.pem");
            ca.write_pem(&ca_file);
            http = http.add_root_certificate(ca.reqwest_root());
            let server = Embedded::spawn_tls(any_port, state, ca.loopback_server()).await;
            (server, Some(ca_file))
        } else {
            (Embedded::spawn(any_port, state).await, None)
        };
        TestServer {
            server: server.expect("serve on loopback"),
            store,
            ca_file,
            http: http.build().expect("the kit's HTTP client"),
            staff: Mutex::default(),
        }
    }

    /// `http://127.0.0.1:port` (`https://` when started with [`TestServer::start_tls`]).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The CA certificate file (PEM) that vouches for this server's certificate, when it
    /// serves TLS: what a client is given as its clinic CA file.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The state being served, to read the head or compact the log.
    pub fn state(&self) -> &AppState {
        self.server.state()
    }

    /// The store it serves: a SQLite file or a PostgreSQL database.
    pub fn database(&self) -> &Database {
        &self.server.config().db
    }

    /// Whether it runs on PostgreSQL (`CLINIC_TEST_POSTGRES` set, or started so).
    pub fn is_postgres(&self) -> bool {
        self.store.is_postgres()
    }

    /// The SQLite file. Panics, saying so, on PostgreSQL: a test of the file starts with
    /// [`TestServer::start_sqlite`].
    pub fn db_path(&self) -> &Path {
        self.store.db_path()
    }

    /// Stops gracefully: open feeds get their close frame, then the port is free.
    pub async fn stop(&mut self) {
        self.server.stop().await.expect("the server stops cleanly");
    }

    /// Starts again (stopping first if need be) on the same port and database, with the
    /// same settings: what was committed is there, the sequence continues.
    pub async fn restart(&mut self) {
        self.server
            .restart()
            .await
            .expect("the server restarts on its port and database");
    }

    /// Signs `username` in (a new session each time).
    pub async fn login(&self, username: &str) -> Staffer {
        Staffer::login_with(self.http.clone(), &self.url(), username).await
    }

    /// What the server says `username` may see now. Signs in only the first time for each
    /// user: a test that polls this would otherwise run into the sign-in rate limit. The
    /// session survives restarts (tokens are in the database).
    pub async fn snapshot(&self, username: &str) -> Snapshot {
        let known = self.staff().get(username).cloned();
        let staffer = match known {
            Some(staffer) => staffer,
            None => {
                let staffer = self.login(username).await;
                self.staff().insert(username.to_owned(), staffer.clone());
                staffer
            }
        };
        staffer.snapshot().await
    }

    fn staff(&self) -> std::sync::MutexGuard<'_, HashMap<String, Staffer>> {
        // Nothing is left half-done under this lock, so a panic elsewhere does not matter.
        self.staff.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Books through the clinic's web form endpoint, with the right key.
    pub async fn intake(&self, request: &IntakeRequest) -> Booking {
        let res = self
            .http
            .post(format!("{}{}", self.url(), paths::INTAKE))
            .header(paths::INTAKE_KEY_HEADER, INTAKE_KEY)
            .json(request)
            .send()
            .await;
        answer(res, "intake").await
    }
}
