//! The real `clinic-server` binary as a process of its own, which a test can kill with
//! SIGKILL (no graceful shutdown, no flushing: a crash) and start again on the same
//! database and port; and where to find the binaries a test runs.

use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clinic_protocol::wire::paths;
use clinic_server::Database;
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::poll_within;

/// How long a (debug) server may take to open its database and answer `/healthz`.
const STARTUP: Duration = Duration::from_secs(60);

/// A binary cargo built into the test's target directory: `relative` to the profile
/// directory (`target/debug`), which holds the test executable in `deps/`. Panics, saying
/// how to build it, if it is not there: `cargo test -p <one package>` builds neither the
/// other packages' binaries nor examples (`cargo test --workspace` builds both).
pub fn built_binary(relative: &str, build_with: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps");
    let path = profile.join(relative);
    assert!(
        path.is_file(),
        "{} is missing: build it first with `{build_with}` (`cargo test --workspace` and \
         `cargo xtask chaos` build it)",
        path.display()
    );
    path
}

/// A `clinic-server` process serving a demo clinic (`--demo`, every password
/// [`crate::PASSWORD`]) from a SQLite database in a temporary directory (or, started with
/// [`ServerProcess::start_on`], from a PostgreSQL database), on a fixed loopback port. [`ServerProcess::kill`] is a SIGKILL; [`ServerProcess::restart`] starts the binary
/// again on the same database and port. The process is killed when this is dropped.
/// [`ServerProcess::start_empty`] starts it without `--demo` (a clinic's first start),
/// [`ServerProcess::terminate`] stops it gracefully, and [`ServerProcess::bin`] runs its
/// other commands on the same database.
#[derive(Debug)]
pub struct ServerProcess {
    bin: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
    /// Every start's stderr, appended (`server.log`), and the SQLite database (`clinic.db`).
    dir: TempDir,
    /// What `--db` names: `clinic.db` in `dir`, or a `postgres://` address.
    db: Database,
    starts: u32,
    /// Started with `--demo` (seeded if empty); without, a clinic's first start.
    demo: bool,
}

impl ServerProcess {
    /// Starts `target/<profile>/clinic-server` on a free loopback port and waits until it
    /// answers.
    pub async fn start() -> ServerProcess {
        ServerProcess::start_with_demo(true).await
    }

    /// [`ServerProcess::start`] without `--demo`: an empty database, no staff, as a clinic's
    /// server starts the first time (every restart is without `--demo` too).
    pub async fn start_empty() -> ServerProcess {
        ServerProcess::start_with_demo(false).await
    }

    /// [`ServerProcess::start`] on `db`: a PostgreSQL database (`--db postgres://...`)
    /// that other instances may share. `--demo` seeds it only if it has no staff yet.
    pub async fn start_on(db: Database) -> ServerProcess {
        let dir = tempfile::tempdir().expect("a temporary directory");
        ServerProcess::launch(dir, db, true).await
    }

    async fn start_with_demo(demo: bool) -> ServerProcess {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = Database::Sqlite(dir.path().join("clinic.db"));
        ServerProcess::launch(dir, db, demo).await
    }

    async fn launch(dir: TempDir, db: Database, demo: bool) -> ServerProcess {
        let bin = built_binary("clinic-server", "cargo build -p clinic-server");
        // A port that was free a moment ago: the server binds it itself, and binds it
        // again after every restart.
        let addr = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free loopback port");
        let mut server = ServerProcess {
            bin,
            addr,
            child: None,
            dir,
            db,
            starts: 0,
            demo,
        };
        server.restart().await;
        server
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The SQLite file. Panics, saying so, when the process runs on PostgreSQL.
    pub fn db_path(&self) -> PathBuf {
        match &self.db {
            Database::Sqlite(path) => path.clone(),
            Database::Postgres(_) => panic!(
                "this server process runs on PostgreSQL ({}): it has no database file",
                self.db.display()
            ),
        }
    }

    /// The store it serves.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The binary, to run its other commands (`staff add`, `backup`) on
    /// [`ServerProcess::db_path`].
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Whether the process is running (started and not killed since).
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// How many times the binary was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// SIGKILL, and waits for the process to be gone: whatever it was doing stops there.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `kill` is SIGKILL on Unix, then waits for the exit.
            child.kill().await.expect("SIGKILL the server");
        }
    }

    /// SIGTERM, and waits for the process to exit: a graceful stop (feeds get their close
    /// frame, the server removes what it leaves next to its database).
    pub async fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let sent = Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()
                    .await
                    .expect("run kill -TERM");
                assert!(sent.success(), "kill -TERM {pid}: {sent}");
            }
            let exited = child.wait().await.expect("wait for the server to exit");
            assert!(exited.success(), "the server stopped with {exited}");
        }
    }

    /// Starts the binary again (killing it first if it runs) on the same database and
    /// port, and waits until it answers `/healthz`.
    pub async fn restart(&mut self) {
        self.kill().await;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("the server's log file");
        let db = match &self.db {
            Database::Sqlite(path) => path.as_os_str().to_owned(),
            Database::Postgres(url) => url.into(),
        };
        let child = Command::new(&self.bin)
            .arg("--db")
            .arg(db)
            .arg("--listen")
            .arg(self.addr.to_string())
            // Seeds only an empty database: a restart keeps what was committed.
            .args(self.demo.then_some("--demo"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
        self.starts += 1;
        let http = reqwest::Client::new();
        let health = format!("{}{}", self.url(), paths::HEALTHZ);
        let what = format!("the server process to answer on {}", self.addr);
        poll_within(STARTUP, &what, || {
            let request = http.get(&health).send();
            async move { request.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
    }

    /// The last `lines` lines the server wrote to stderr, across every start: for a failing
    /// test's message.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}
