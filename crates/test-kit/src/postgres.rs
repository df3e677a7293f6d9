//! PostgreSQL for the tests: a fresh database of a test's own on the server that
//! `CLINIC_TEST_POSTGRES` names ([`fresh_database`]), or a whole throwaway cluster of a test's
//! own ([`PgCluster`]) that it can stop, start and restart under running server instances.
//!
//! `CLINIC_TEST_POSTGRES` is a `postgres://` address of a database on which the user may
//! `CREATE DATABASE` (`cargo xtask test` sets it for the server suite's second run, on a
//! cluster `pg_virtualenv` makes and removes). Each test gets a database of its own, so
//! tests running side by side never see each other's changes; it is dropped when the test
//! is done with it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tempfile::TempDir;
use tokio::process::Command;
use uuid::Uuid;

/// The environment variable that names the PostgreSQL server the suites run on.
pub const ENV: &str = "CLINIC_TEST_POSTGRES";

/// How long a cluster of a test's own may take to start or stop (a busy machine, a debug
/// build beside it).
const PG_CTL_WAIT: Duration = Duration::from_secs(120);

/// The address in `CLINIC_TEST_POSTGRES`, if the suites are to run on PostgreSQL.
pub fn base_url() -> Option<String> {
    std::env::var(ENV).ok().filter(|url| !url.trim().is_empty())
}

/// A new, uniquely named, empty database on the server `CLINIC_TEST_POSTGRES` names; it
/// is dropped with the returned handle. Panics if the variable is unset or the server
/// refuses.
pub async fn fresh_database() -> TestDatabase {
    let base =
        base_url().unwrap_or_else(|| panic!("{ENV} is not set: no PostgreSQL server to test on"));
    TestDatabase::create(&base).await
}

/// A database made for one test on a PostgreSQL server. Dropping it drops the database
/// (`WITH (FORCE)`: server instances still connected are cut off), so a run leaves nothing
/// behind on a server it was given.
#[derive(Debug)]
pub struct TestDatabase {
    /// Where it was made from (the database `CREATE DATABASE` ran in).
    base: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Makes a new database on the server `base` addresses (a `postgres://` address of a
    /// database where the user may `CREATE DATABASE`).
    pub async fn create(base: &str) -> TestDatabase {
        let name = format!("clinic_test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(base)
            .await
            .unwrap_or_else(|e| panic!("connect to {} ({ENV}): {e}", redacted(base)));
        // The name is ours (letters, digits, underscores): nothing to escape.
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE on {}: {e}", redacted(base)));
        let _ = admin.close().await;
        TestDatabase {
            url: with_database(base, &name),
            base: base.to_owned(),
            name,
        }
    }

    /// Its `postgres://` address, what `--db` and [`clinic_server::Config::postgres`] take.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop runs inside the test's runtime, where nothing may block on a future: the
        // statement runs on a thread and a runtime of its own, waited for here.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&base)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            // Not a test failure: the database is only left behind (a cluster of
            // pg_virtualenv's goes with it anyway).
            Ok(Err(e)) => eprintln!("test-kit: could not drop database {}: {e}", self.name),
            Err(_) => eprintln!("test-kit: dropping database {} panicked", self.name),
        }
    }
}

/// `base` with its database name (the path) replaced by `name`, its query kept.
fn with_database(base: &str, name: &str) -> String {
    let (main, query) = match base.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (base, None),
    };
    let authority = main.find("://").map_or(0, |i| i + 3);
    let path = main[authority..]
        .find('/')
        .map_or(main.len(), |i| authority + i);
    let mut url = format!("{}/{name}", &main[..path]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// The address without its password, for messages.
fn redacted(url: &str) -> String {
    clinic_server::Database::Postgres(url.to_owned()).display()
}

/// A PostgreSQL cluster of a test's own: `initdb` into a temporary directory, served on a
/// free loopback port (its socket in that directory too), trusted logins from loopback
/// only, superuser `postgres`. It can be stopped, started and restarted under running
/// server instances; dropping it stops it at once (`-m immediate`) and removes its files.
///
/// PostgreSQL refuses to run as root: as root, the directory is handed to the `postgres`
/// user (Debian's `postgresql` package makes it) and every PostgreSQL program runs as that
/// user through `runuser`.
#[derive(Debug)]
pub struct PgCluster {
    /// `data/` (the cluster), `log` (the server's log); removed on drop.
    dir: TempDir,
    /// Where `initdb`, `pg_ctl` and `postgres` are.
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
    running: bool,
}

impl PgCluster {
    /// Makes the cluster and starts it (a few seconds).
    pub async fn start() -> PgCluster {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let as_postgres_user = is_root();
        if as_postgres_user {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()))
            .await;
        }
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut cluster = PgCluster {
            dir,
            bin,
            port,
            as_postgres_user,
            running: false,
        };
        let data = cluster.data();
        // Trust: the cluster listens on loopback only, lives as long as one test and holds
        // nothing but that test's clinic. No fsync while making it: it is thrown away.
        let mut initdb = cluster.pg("initdb");
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(&mut initdb).await;
        cluster.resume().await;
        cluster
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`: a database where `CREATE DATABASE`
    /// works, as `CLINIC_TEST_POSTGRES` would name one.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the cluster is running (started and not stopped since).
    pub fn is_up(&self) -> bool {
        self.running
    }

    /// Stops it as an administrator would (`-m fast`: connections are cut, the server
    /// shuts down cleanly) and waits until it has.
    pub async fn stop(&mut self) {
        let mut stop = self.pg("pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-t"]);
        stop.arg(PG_CTL_WAIT.as_secs().to_string()).arg("stop");
        run(&mut stop).await;
        self.running = false;
    }

    /// Starts it again on the same port and files, and waits until it accepts
    /// connections.
    pub async fn resume(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let mut start = self.pg("pg_ctl");
        start
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t"])
            .arg(PG_CTL_WAIT.as_secs().to_string())
            .arg("-o")
            .arg(options)
            .arg("start");
        run(&mut start).await;
        self.running = true;
    }

    /// The database restarting under whoever is connected: stopped (`-m fast`), then
    /// started again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.resume().await;
    }

    /// The last `lines` lines of the cluster's log, for a failing test's message.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A PostgreSQL program, run as the `postgres` user when we are root, from inside the
    /// cluster's directory (that user may not enter the test's working directory).
    fn pg(&self, program: &str) -> Command {
        let mut cmd = Command::from(self.pg_std(program));
        cmd.kill_on_drop(true);
        cmd
    }

    fn pg_std(&self, program: &str) -> std::process::Command {
        let program = self.bin.join(program);
        let mut cmd = if self.as_postgres_user {
            let mut cmd = std::process::Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            std::process::Command::new(program)
        };
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        cmd
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let mut stop = self.pg_std("pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Blocking is fine here: an immediate stop takes a moment, and the files must not
        // go while the server still writes them.
        if let Err(e) = stop.status() {
            eprintln!("test-kit: could not stop the test's PostgreSQL cluster: {e}");
        }
    }
}

/// Runs a set-up command to its end; panics with its output if it fails.
async fn run(cmd: &mut Command) {
    let what = format!("{:?}", cmd.as_std());
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap_or_else(|e| panic!("could not run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The directory of PostgreSQL's server programs: what `pg_config --bindir` says, else the
/// newest version under /usr/lib/postgresql (Debian's layout).
fn bin_dir() -> PathBuf {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let said = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    if let Some(dir) = said.filter(|d| has_initdb(d)) {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_initdb(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server programs (initdb, pg_ctl): install Debian's `postgresql` \
             package (`cargo xtask test` does)"
        )
    })
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|uid| uid.trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_name_replaces_the_path_and_keeps_the_rest() {
        assert_eq!(
            with_database("postgres://u:p@localhost:5433/postgres", "t1"),
            "postgres://u:p@localhost:5433/t1"
        );
        assert_eq!(
            with_database("postgres://h:1/db?sslmode=disable", "t2"),
            "postgres://h:1/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h", "t3"), "postgresql://h/t3");
    }

    /// A cluster of the test's own starts, takes a database, survives a restart with its
    /// data, and is gone (port closed) once dropped.
    #[tokio::test]
    async fn a_cluster_of_its_own_serves_restarts_and_goes() {
        let mut cluster = PgCluster::start().await;
        let db = TestDatabase::create(&cluster.url()).await;
        let mut conn = PgConnection::connect(db.url()).await.expect("connect");
        sqlx::raw_sql("CREATE TABLE t (n INT); INSERT INTO t VALUES (7)")
            .execute(&mut conn)
            .await
            .expect("write");
        cluster.restart().await;
        assert!(conn.ping().await.is_err(), "the restart cut the connection");
        let mut conn = PgConnection::connect(db.url()).await.expect("reconnect");
        let n: i32 = sqlx::query_scalar("SELECT n FROM t")
            .fetch_one(&mut conn)
            .await
            .expect("read");
        assert_eq!(n, 7);
        let _ = conn.close().await;
        drop(db);
        let port = cluster.port();
        let dir = cluster.dir.path().to_path_buf();
        drop(cluster);
        assert!(std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
        assert!(!dir.exists());
    }
}
