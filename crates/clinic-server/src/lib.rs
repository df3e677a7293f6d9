//! The Clinic Desk server: the authoritative store, the ordered change feed a client
//! resumes from its cursor, authentication, and per-user filtering. The protocol it speaks
//! is specified in `clinic_protocol`'s crate docs.
//!
//! # Modules, along the path of a change
//! - `config`: the settings ([`Config`], [`Durability`]).
//! - `http`: login, logout, snapshot, mutations, intake, health, readiness, metrics;
//!   every refusal is an [`ApiError`](clinic_protocol::ApiError) with a stable code; and
//!   the request log (method, path, status, latency: never a query string or a header).
//! - `auth`: passwords (argon2), opaque bearer tokens (stored as their SHA-256), the
//!   sessions open feeds watch for revocation, the login rate limit.
//! - `store`: SQLite (WAL, `synchronous=FULL`, migrations in `migrations/`) plus an
//!   in-memory copy of the records; the ONE write path, a writer task with group commit:
//!   rules, record changes, change-log rows and mutation outcomes of every write queued
//!   at the moment in one transaction, then the committed changes are published; and
//!   [`backup`] of a live database.
//! - `feed`: the WebSocket feed: hello, catch-up from the log, live changes filtered per
//!   user, heartbeats, resync instead of silent loss; it ends when its token is revoked or
//!   expires, and with a Close frame when the server stops ([`serve`] waits for that).
//! - `intake`: what guards the web form beyond its key: the rate limit per address and the
//!   form's idempotency key (the booking is made once per key by `store`).
//! - `accounts`: staff accounts: made, changed, disabled, passwords reset by administrators
//!   (`/v1/staff`), and everyone's own password (`/v1/password`); documented in `http`.
//! - [`admin`]: the console: `clinic-server staff add` reaches a running server on the
//!   Unix socket `<db>.admin.sock`, or writes a stopped server's database itself.
//! - `lock`: the database's lock file (`<db>.lock`): one process writes a database.
//! - `error`: [`ServerError`], and how it becomes an HTTP answer without leaking internals.
//! - `metrics`: the counters (atomics with fixed label sets) and `GET /metrics`, their
//!   Prometheus text exposition.
//! - `ready`: `GET /readyz`'s check (writer alive, database write lock granted in time),
//!   its answer cached for a second so that probes cannot hammer the database.
//! - [`logging`]: the binary's log, text or JSON lines, with bearer tokens redacted.
//! - [`demo`]: the demo clinic, for trying things out.
//! - `tls`: [`TlsConfig`] (a PEM certificate chain and key) and the listener that does
//!   the TLS handshakes for [`serve_tls`].
//! - `embedded`: [`Embedded`], the server inside another program (the app's demo mode,
//!   the tests): spawned on an address, stopped gracefully, restarted on the same address
//!   and database, stopped when dropped.
//!
//! The public surface is small on purpose: [`AppState`], [`app`], [`serve`],
//! [`serve_tls`], [`TlsConfig`], [`Config`], [`Durability`], [`ServerError`], [`demo`],
//! [`Embedded`], [`backup`], [`admin`] and [`logging`]. The desktop app and the tests
//! embed the server through exactly these.

mod accounts;
pub mod admin;
mod auth;
mod config;
pub mod demo;
mod embedded;
mod error;
mod feed;
mod http;
mod intake;
mod lock;
pub mod logging;
mod metrics;
mod ready;
mod store;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, post};
use axum::serve::ListenerExt;
use axum::Router;
use clinic_protocol::wire::{paths, MAX_REQUEST_BODY_BYTES};
use clinic_protocol::{Role, Staff};
use tokio::sync::watch;

pub use config::{Config, Database, Durability};
pub use embedded::Embedded;
pub use error::ServerError;
pub use tls::TlsConfig;

/// Everything the handlers share. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) config: Arc<Config>,
    pub(crate) store: store::Store,
    pub(crate) logins: Arc<auth::Logins>,
    /// The tokens with a feed open, so that a logout ends those feeds.
    pub(crate) sessions: Arc<auth::Sessions>,
    /// Set to true when the server shuts down, so feeds close with a Close frame.
    pub(crate) shutdown: Arc<watch::Sender<bool>>,
    /// The feeds open, which [`serve`] waits for before it returns.
    pub(crate) feeds: feed::Feeds,
    /// Web bookings taken per address in the last minute.
    pub(crate) intake_limit: Arc<intake::IntakeLimit>,
    /// What `GET /metrics` reports; the store's writer and the feeds count into it too.
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// `GET /readyz`'s last database check.
    pub(crate) readiness: Arc<ready::Readiness>,
}

impl AppState {
    /// Opens (or creates) the database, applies migrations and continues its sequence.
    pub async fn open(config: Config) -> Result<AppState, ServerError> {
        let store = store::Store::open(&config).await?;
        let (shutdown, _) = watch::channel(false);
        let logins = Arc::new(auth::Logins::new(&config));
        let intake_limit = Arc::new(intake::IntakeLimit::new(config.intake_per_minute));
        let metrics = Arc::clone(store.metrics());
        let sessions = Arc::new(auth::Sessions::default());
        // Sessions another instance ended (PostgreSQL): their feeds here end too. The task
        // ends with the store, whose drop closes the channel.
        let mut elsewhere = store.revoked_elsewhere();
        let ending = Arc::clone(&sessions);
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match elsewhere.recv().await {
                    Ok((hash, why)) => {
                        if let Some(why) = auth::Ending::parse(&why) {
                            ending.end(&[hash], why).await;
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!("{missed} revocations from other instances missed");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        if store.db().shared() {
            tokio::spawn(sweep_revoked(store.db().clone(), Arc::downgrade(&sessions)));
        }
        Ok(AppState {
            config: Arc::new(config),
            store,
            logins,
            sessions,
            shutdown: Arc::new(shutdown),
            feeds: feed::Feeds::default(),
            intake_limit,
            metrics,
            readiness: Arc::default(),
        })
    }

    pub async fn create_staff(
        &self,
        username: &str,
        display_name: &str,
        roles: &[Role],
        password: &str,
    ) -> Result<Staff, ServerError> {
        let hash = accounts::hash(password.to_owned()).await?;
        self.store
            .create_staff(username, display_name, roles, &hash)
            .await
    }

    pub async fn head(&self) -> u64 {
        self.store.head().await
    }

    /// Ends the sessions of these token hashes, committed as revoked already: their feeds
    /// here (waiting until they let go, see `auth::Sessions::end`) and, on PostgreSQL, on
    /// every other instance.
    pub(crate) async fn end_sessions(&self, hashes: &[Vec<u8>], why: auth::Ending) {
        if hashes.is_empty() {
            return;
        }
        if let Err(e) = self.store.db().announce_revoked(hashes, why.as_str()).await {
            // The other instances' sweeps end those feeds (`sweep_revoked`).
            tracing::warn!("could not tell the other instances of ended sessions: {e}");
        }
        self.sessions.end(hashes, why).await;
    }

    /// Keeps only the last `keep_last` changes; clients with older cursors resync.
    pub async fn compact_log(&self, keep_last: u64) -> Result<(), ServerError> {
        self.store.compact(keep_last).await
    }
}

/// How often an instance on a shared database looks for revoked tokens among those its
/// feeds use.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// On a shared database, what makes a revocation on another instance end the feeds here
/// even when its notice was lost (this instance's connection to the database was down when
/// it was sent): every [`SWEEP_EVERY`], the tokens with a feed open are looked up (one
/// statement, as many keys as feeds) and the revoked ones' feeds end. Ends with the state.
async fn sweep_revoked(db: store::db::Db, sessions: std::sync::Weak<auth::Sessions>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(sessions) = sessions.upgrade() else {
            return;
        };
        let watched = sessions.watched();
        if watched.is_empty() {
            continue;
        }
        match db.revoked_among(&watched).await {
            Ok(revoked) if !revoked.is_empty() => {
                sessions.end(&revoked, auth::Ending::Revoked).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("could not look for revoked sessions: {e}"),
        }
    }
}

/// Copies the database at `db`, which a running server may be serving, into the new file
/// `to` (never overwriting one): a consistent copy at one commit (SQLite's `VACUUM INTO`,
/// from a connection of its own; the server goes on writing meanwhile). A server started on
/// the copy serves every change up to the backup; clients of the original that are past it
/// are told to resync, never shown a gap. Returns the last seq the copy holds.
pub async fn backup(db: &std::path::Path, to: &std::path::Path) -> Result<u64, ServerError> {
    store::backup(db, to).await
}

/// The routes, apart from serving them (tests drive this directly too).
pub fn app(state: AppState) -> Router {
    let trace = http::trace_layer(Arc::clone(&state.metrics));
    Router::new()
        .route(paths::HEALTHZ, get(http::healthz))
        .route(http::LIVEZ, get(http::livez))
        .route(http::READYZ, get(http::readyz))
        .route(http::METRICS, get(http::metrics))
        .route(paths::LOGIN, post(http::login))
        .route(paths::LOGOUT, post(http::logout))
        .route(paths::SNAPSHOT, get(http::snapshot))
        .route(paths::MUTATIONS, post(http::mutations))
        .route(paths::INTAKE, post(http::intake))
        .route(paths::FEED, get(feed::upgrade))
        .route(paths::PASSWORD, post(accounts::change_password))
        .route(paths::STAFF, get(accounts::list).post(accounts::create))
        .route(paths::STAFF_MEMBER, patch(accounts::patch))
        .route(paths::STAFF_PASSWORD, post(accounts::reset_password))
        // Refusals axum would answer by itself, as ApiError JSON too. This one applies to
        // the routes above it, so it stays after the last `.route`.
        .method_not_allowed_fallback(http::method_not_allowed)
        .fallback(http::not_found)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(axum::middleware::map_response(server_header))
        // Outermost, so that every answer is logged and counted, refusals of the layers
        // above included.
        .layer(trace)
        .with_state(state)
}

/// What every answer says the server is (`Server: clinic-server/0.1.0`), the feed's
/// handshake included: the app shows it in its sync panel, support reads it with curl.
pub const SERVER_NAME: &str = concat!("clinic-server/", env!("CARGO_PKG_VERSION"));

async fn server_header(mut response: axum::response::Response) -> axum::response::Response {
    response.headers_mut().insert(
        axum::http::header::SERVER,
        axum::http::HeaderValue::from_static(SERVER_NAME),
    );
    response
}

/// How long [`serve`] waits, once told to stop, for the open feeds to send their Close
/// frame. A feed ends at once; only one whose client has stopped reading (its socket
/// buffer full) can hold its task up, and such a client is not worth holding the process
/// for: 5 seconds is ample for the rest and well inside what service managers allow a
/// stopping process (`docker stop` waits 10 seconds before SIGKILL).
const FEEDS_CLOSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `state` on `listener` until `shutdown` resolves; then it stops accepting,
/// in-flight requests finish, every feed sends its Close frame, and only then does it
/// return (waiting for the feeds 5 seconds at most, `FEEDS_CLOSE_WITHIN`), so a process
/// may exit as soon as it returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, None, shutdown).await
}

/// [`serve`] over TLS: every connection is encrypted with `tls` (`https://` and the feed's
/// `wss://`); a client that does not complete the handshake is dropped before any HTTP.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: TlsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, Some(tls), shutdown).await
}

/// [`serve`], or [`serve_tls`] when `tls` is given.
pub(crate) async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Option<TlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if state.store.staff_count().await == 0 {
        tracing::warn!("{}", accounts::NO_STAFF_HINT);
    }
    // `clinic-server staff add` reaches a running server here (see `admin`).
    #[cfg(unix)]
    let console = admin::Listening::open(&state);
    let stopping = state.shutdown.clone();
    let (stopped_all, feeds) = (state.shutdown.clone(), state.feeds.clone());
    // The log keeps the last `log_keep` changes for resuming clients; older cursors resync.
    let compacting = state.clone();
    let mut stopped = state.shutdown.subscribe();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = every.tick() => {
                    if let Err(e) = compacting.compact_log(compacting.config.log_keep).await {
                        tracing::warn!("log compaction failed: {e}");
                    }
                    if let Err(e) = auth::prune_tokens(compacting.store.db()).await {
                        tracing::warn!("token pruning failed: {e}");
                    }
                }
                _ = stopped.changed() => return,
            }
        }
    });
    // Feeds stop on their own signal: axum's graceful shutdown would otherwise wait for
    // every upgraded WebSocket to end by itself.
    let signal = async move {
        shutdown.await;
        stopping.send_replace(true);
    };
    // The peer address is what the sign-in limits count failures by.
    let app = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = match tls {
        None => {
            // Changes are small frames that must leave at once: no Nagle delay.
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!("could not set TCP_NODELAY: {e}");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
        }
        Some(tls) => {
            // The TLS listener sets TCP_NODELAY itself, before the handshake. The (empty)
            // tap is what gives handlers `ConnectInfo<SocketAddr>`: axum provides it for a
            // tapped listener of any kind whose address is a `SocketAddr`.
            let listener = tls::TlsListener::new(listener, &tls).tap_io(|_| {});
            axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
        }
    };
    // Upgraded connections are no longer axum's: its graceful shutdown has not waited for
    // the feeds. Told to stop (again, should serving have failed), they end now; wait
    // until they have sent their Close frame, or a process exiting next would cut them.
    stopped_all.send_replace(true);
    if let Err(open) = feeds.ended_within(FEEDS_CLOSE_WITHIN).await {
        tracing::warn!(
            "{open} feeds still open after {FEEDS_CLOSE_WITHIN:?}; stopping without them"
        );
    }
    #[cfg(unix)]
    if let Some(console) = console {
        console.close().await;
    }
    served
}
