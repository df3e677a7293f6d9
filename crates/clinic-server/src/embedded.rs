//! The server inside another program: the desktop app's demo mode and every test suite.
//! One handle binds, serves in a task, stops gracefully and restarts on the same address
//! and database, so that nobody writes those steps again.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{AppState, Config, ServerError, TlsConfig};

/// How long [`Embedded::restart`] keeps trying to take its old address back.
const REBIND_FOR: Duration = Duration::from_secs(10);

/// A server served by a task of the current Tokio runtime.
///
/// Dropping it tells the server to stop; the task then ends on its own (feeds still get
/// their close frame), so a test that panics does not leave a server behind.
#[derive(Debug)]
pub struct Embedded {
    addr: SocketAddr,
    state: AppState,
    /// Served over TLS (`https://`) with this, if set; kept across restarts.
    tls: Option<TlsConfig>,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

impl Embedded {
    /// Opens (or creates) the database `config` names and serves it on `addr`; port 0
    /// takes any free port ([`Embedded::addr`] says which).
    pub async fn start(addr: SocketAddr, config: Config) -> Result<Embedded, ServerError> {
        let state = AppState::open(config).await?;
        Ok(Embedded::spawn(addr, state).await?)
    }

    /// Serves an already open `state` on `addr` (for instance after seeding it); port 0
    /// takes any free port.
    pub async fn spawn(addr: SocketAddr, state: AppState) -> io::Result<Embedded> {
        Embedded::spawn_with(addr, state, None).await
    }

    /// [`Embedded::spawn`] over TLS: `https://` (and `wss://` for feeds) with `tls`'s
    /// certificate, also after a restart.
    pub async fn spawn_tls(
        addr: SocketAddr,
        state: AppState,
        tls: TlsConfig,
    ) -> io::Result<Embedded> {
        Embedded::spawn_with(addr, state, Some(tls)).await
    }

    async fn spawn_with(
        addr: SocketAddr,
        state: AppState,
        tls: Option<TlsConfig>,
    ) -> io::Result<Embedded> {
        let listener = TcpListener::bind(addr).await?;
        let mut server = Embedded {
            addr: listener.local_addr()?,
            state,
            tls,
            running: None,
        };
        server.serve(listener);
        Ok(server)
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let serving = crate::serve_with(listener, self.state.clone(), self.tls.clone(), shutdown);
        let task = tokio::spawn(async move {
            let served = serving.await;
            // Logged here too: a dropped handle never reads the result.
            if let Err(e) = &served {
                tracing::error!("the embedded server stopped: {e}");
            }
            served
        });
        self.running = Some(Running { stop, task });
    }

    /// Where it listens; the same after a restart.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` (or `https://` when served over TLS) and the address, what clients are
    /// given.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The state being served (since the last restart).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn config(&self) -> &Config {
        &self.state.config
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Stops serving and returns once it has: requests under way finished and every feed
    /// sent its close frame (a feed whose client stopped reading is waited for a few
    /// seconds at most, see [`crate::serve`]). Stopping a stopped server does nothing.
    pub async fn stop(&mut self) -> io::Result<()> {
        let Some(Running { stop, task }) = self.running.take() else {
            return Ok(());
        };
        let _ = stop.send(());
        task.await?
    }

    /// Stops (if running), reopens the same database with the same settings and serves it
    /// on the same address again, as an operator restarting the server process would.
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.stop().await?;
        // A fresh state: the old one has been told to shut down, and reopening is what
        // proves that nothing lived only in memory.
        self.state = AppState::open(Config::clone(&self.state.config)).await?;
        let listener = rebind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(());
        }
    }
}

/// The address was ours a moment ago, but the kernel may still hold it briefly (or another
/// program bound it meanwhile and lets go soon): keep trying, for a while.
async fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let deadline = Instant::now() + REBIND_FOR;
    loop {
        match TcpListener::bind(addr).await {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            bound => return bound,
        }
    }
}
