//! The servers under test, each its own process pinned to its own core where the machine
//! has one: our `clinic-server` and the Socket.IO peer on node; and their resident memory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running server process; killed when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    _child: Child,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
    _dir: Option<tempfile::TempDir>,
}

/// Which core each side runs on (`None`: wherever the kernel likes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cores {
    pub(crate) server: Option<usize>,
    pub(crate) load: Option<usize>,
}

impl Cores {
    /// Server on core 0 and the load generator on core 1, if there are two cores.
    pub(crate) fn split() -> Cores {
        let n = std::thread::available_parallelism().map_or(1, usize::from);
        if n >= 2 && which("taskset") {
            Cores {
                server: Some(0),
                load: Some(1),
            }
        } else {
            Cores {
                server: None,
                load: None,
            }
        }
    }
}

fn which(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Pins this process's current thread (and so every thread it starts later) to `core`.
pub(crate) fn pin_self(core: usize) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args([
            "-p",
            "-c",
            &core.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .context("running taskset")?;
    if !status.success() {
        bail!("taskset could not pin the load generator");
    }
    Ok(())
}

fn command(program: &Path, core: Option<usize>) -> Command {
    match core {
        Some(core) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(core.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Our server with a fresh demo clinic in a temporary directory.
pub(crate) async fn start_ours(bin: &Path, core: Option<usize>) -> anyhow::Result<Server> {
    start_ours_with(bin, core, &[]).await
}

/// [`start_ours`] with more flags (the write benchmark's measurement settings).
pub(crate) async fn start_ours_with(
    bin: &Path,
    core: Option<usize>,
    flags: &[&str],
) -> anyhow::Result<Server> {
    start_ours_on(bin, core, None, flags).await
}

/// Our server on the store `db` (`--db`, e.g. a `postgres://` address several instances
/// share), or on a fresh SQLite file in a temporary directory if `None`; `--demo` seeds
/// the demo clinic unless the database has staff already, so a second instance on the
/// same database starts on the first one's clinic.
pub(crate) async fn start_ours_on(
    bin: &Path,
    core: Option<usize>,
    db: Option<&str>,
    flags: &[&str],
) -> anyhow::Result<Server> {
    let (dir, db) = match db {
        Some(db) => (None, std::ffi::OsString::from(db)),
        None => {
            let dir = tempfile::tempdir()?;
            let db = dir.path().join("clinic.db").into_os_string();
            (Some(dir), db)
        }
    };
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let mut child = command(bin, core)
        .arg("--db")
        .arg(db)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--demo")
        // Hundreds of engines sign in as the same operator within a minute.
        .arg("--login-attempts-per-minute")
        .arg("1000000")
        .args(flags)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id().context("the server exited at once")?;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = http
            .get(format!(
                "http://{addr}{}",
                clinic_protocol::wire::paths::HEALTHZ
            ))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        if let Some(exit) = child.try_wait()? {
            bail!("our server exited before answering ({exit}); its log is above");
        }
        if Instant::now() > deadline {
            bail!("our server did not answer on {addr} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Server {
        _child: child,
        pid,
        addr,
        _dir: dir,
    })
}

/// The Socket.IO peer (`peer/server.js`), once npm has installed it.
pub(crate) async fn start_peer(peer_dir: &Path, core: Option<usize>) -> anyhow::Result<Server> {
    if !peer_dir.join("node_modules/socket.io").is_dir() {
        bail!(
            "the Socket.IO peer is not installed in {}: run `cargo xtask bench` (or `npm ci` there)",
            peer_dir.display()
        );
    }
    let port = free_port()?;
    let mut child = command(Path::new("node"), core)
        .arg(peer_dir.join("server.js"))
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting node (is nodejs installed?)")?;
    let pid = child.id().context("node exited at once")?;
    let stdout = child.stdout.take().context("node's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("the peer did not start within 30 s")??;
    if !ready.is_some_and(|l| l.starts_with("listening")) {
        bail!("the peer did not say it was listening");
    }
    Ok(Server {
        _child: child,
        pid,
        addr: ([127, 0, 0, 1], port).into(),
        _dir: None,
    })
}

/// Where the peer lives in the repository.
pub(crate) fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peer")
}

fn proc_field(path: &str, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

/// Resident memory of a process, in KiB.
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    proc_field(&format!("/proc/{pid}/status"), "VmRSS:")
}
