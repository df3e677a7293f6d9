//! The engine: the handle the app holds, the cache writes that keep the overlay of pending
//! changes honest, and the IO driver that runs the [`SyncMachine`].
//!
//! One tokio task (the driver) owns the feed's WebSocket and the in-flight mutation
//! request; it turns socket frames, timers and HTTP answers into machine events and
//! carries out the machine's instructions. Every change to what queries return happens in
//! [`Inner`]'s write paths, each under the state lock and each ONE SQLite transaction that
//! also stores the cache sequence number; its events are published after the commit, still
//! under the lock, so `view_at` plus the change stream never misses or repeats anything.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clinic_protocol::rules;
use clinic_protocol::wire::{paths, MAX_SERVER_FRAME_BYTES};
use clinic_protocol::{
    ApiError, ChangeOp, ClientFrame, ErrorCode, Id, LoginRequest, LoginResponse, Mutation,
    MutationOutcome, MutationRequest, Record, RecordKind, Snapshot, Staff, PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch, Mutex, Notify};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::cache::{Cache, Key, Queued, Write};
use crate::error::SyncError;
use crate::machine::{Event, Instruction, Report, Sent, SyncMachine, SyncState, Timing};
use crate::overlay::rebase;

/// Where to sync with and where to keep the cache.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `http://host:port` of the clinic server (the feed uses the same host with `ws://`).
    pub server_url: String,
    /// The platform data dir (tests: a tempdir). The cache lives in
    /// `<data_dir>/<server>/<user id>.db`: one database per server and user.
    pub data_dir: PathBuf,
    /// Heartbeat timeout and reconnect backoff.
    pub timing: Timing,
    /// Longest wait for one HTTP request (login, snapshot, mutation).
    pub request_timeout: Duration,
}

impl EngineConfig {
    pub fn new(server_url: &str, data_dir: &Path) -> EngineConfig {
        EngineConfig {
            server_url: server_url.trim_end_matches('/').to_owned(),
            data_dir: data_dir.to_path_buf(),
            timing: Timing::default(),
            request_timeout: Duration::from_secs(15),
        }
    }

    /// One directory per server: its address made safe as a directory name.
    fn server_dir(&self) -> PathBuf {
        let safe: String = self
            .server_url
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.data_dir.join(safe)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server_url)
    }
}

/// A record as queries return it: with the user's pending changes applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ViewRecord {
    pub record: Record,
    /// A change of this user's to it is waiting for the server.
    pub pending: bool,
}

/// Every visible record, consistent at cache sequence number `seq`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct View {
    pub seq: u64,
    pub records: Vec<ViewRecord>,
}

/// Where a change to what queries return came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Origin {
    /// The server: its feed, or its answer to one of this user's mutations. `actor` made
    /// the change (`None`: the web intake form); `mutation_id` lets the app recognise its
    /// own changes; `live` is false while catching up on what happened while away.
    Server {
        actor: Option<Id>,
        mutation_id: Option<Uuid>,
        live: bool,
    },
    /// This user's change, applied optimistically, or its rollback after a rejection.
    Local,
    /// A snapshot replaced the whole cache (comes with [`ChangeKind::Reset`]).
    Snapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ChangeKind {
    /// The record now looks like this (`pending`: with a change of this user's on top).
    Upsert { record: Record, pending: bool },
    /// The record is gone from what queries return.
    Remove { kind: RecordKind, id: Id },
    /// Everything was replaced (a snapshot after a resync): read [`Engine::view_at`] again.
    Reset,
}

/// One change to what queries return.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheChange {
    /// The cache's sequence number: +1 per change, gap-free and persisted, so it keeps
    /// growing across restarts. Not the server's seq.
    pub seq: u64,
    pub kind: ChangeKind,
    pub origin: Origin,
}

/// The server refused a change of this user's; its optimistic effect has been rolled back
/// (the [`CacheChange`] just before this event shows the record as it is now).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    pub mutation_id: Uuid,
    pub mutation: Mutation,
    pub code: ErrorCode,
    /// A sentence for the user, from the server.
    pub message: String,
    /// The record as the server has it, if it exists and the user may see it.
    pub current: Option<Record>,
}

/// What subscribers receive, in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CacheEvent {
    Change(CacheChange),
    Rejected(Rejected),
    /// The server applied this mutation of this user's (it left the outbox).
    Confirmed {
        mutation_id: Uuid,
    },
}

/// The sync status, for the sync dot in every window.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub state: SyncState,
    /// Changes in the outbox.
    pub pending: u64,
    /// Age of the oldest change in the outbox, when the status was published.
    pub oldest_pending: Option<Duration>,
    /// When the oldest change in the outbox was made (for a live age).
    pub oldest_pending_at: Option<DateTime<Utc>>,
    /// Server head minus local cursor.
    pub lag: u64,
    /// Last frame applied from the server.
    pub last_sync: Option<DateTime<Utc>>,
    /// The last error since the engine was last caught up.
    pub last_error: Option<String>,
    /// The server refused the session: the engine stays offline (the cache still
    /// answers) until the app signs in again with [`Engine::login`].
    pub session_expired: bool,
}

/// The receiving end of [`Engine::subscribe`]. Unbounded, so that a slow window never
/// stalls sync; each subscriber should keep reading.
#[derive(Debug)]
pub struct Subscription(mpsc::UnboundedReceiver<CacheEvent>);

impl Subscription {
    /// The next event; `None` once the engine is gone.
    pub async fn recv(&mut self) -> Option<CacheEvent> {
        self.0.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<CacheEvent> {
        self.0.try_recv().ok()
    }
}

#[derive(Debug)]
struct State {
    /// The last cache sequence number published.
    seq: u64,
    /// The outbox, in order (a copy of the table, for rebasing without reads).
    outbox: Vec<Queued>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    config: EngineConfig,
    user: std::sync::RwLock<Staff>,
    token: String,
    pub(crate) cache: Cache,
    http: reqwest::Client,
    /// Serialises every write to the cache and the publication of its events.
    state: Mutex<State>,
    /// Subscribers, apart from `state` so that subscribing never waits on a sync step.
    subscribers: std::sync::Mutex<Vec<mpsc::UnboundedSender<CacheEvent>>>,
    status: watch::Sender<Status>,
    /// The machine's last report (the published state also depends on the outbox).
    report: std::sync::Mutex<Report>,
    /// Wakes the driver: something was queued.
    outbox_ready: Notify,
    stop: watch::Sender<bool>,
    driver: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Stops the driver when the last [`Engine`] handle is dropped (the driver itself holds
/// only [`Inner`], so it does not keep itself alive).
#[derive(Debug)]
struct Alive(Arc<Inner>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.stop.send_replace(true);
    }
}

/// The sync engine: one per app. Cheap to clone; dropping the last clone stops it.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
    _alive: Arc<Alive>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn http_client(config: &EngineConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(config.request_timeout)
        .build()
        .unwrap_or_default()
}

/// An HTTP error answer: the server's code and message, or what we can say without one.
async fn api_error(response: reqwest::Response) -> SyncError {
    let status = response.status();
    match response.json::<ApiError>().await {
        Ok(e) => SyncError::Refused {
            code: e.code,
            message: e.message,
        },
        Err(_) => SyncError::Unreachable(format!("the server answered {status}")),
    }
}

impl Engine {
    /// Signs in, opens (or creates) this user's cache, fetches a snapshot if the cache has
    /// none, and starts syncing. The session token is kept in the cache for
    /// [`Engine::resume`].
    pub async fn login(
        config: EngineConfig,
        username: &str,
        password: &str,
    ) -> Result<Engine, SyncError> {
        let http = http_client(&config);
        let response = http
            .post(config.url(paths::LOGIN))
            .json(&LoginRequest {
                username: username.into(),
                password: password.into(),
            })
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(api_error(response).await);
        }
        let login: LoginResponse = response.json().await?;
        let dir = config.server_dir();
        let cache = Cache::open(&dir.join(format!("{}.db", login.user.id))).await?;
        cache
            .save_session(&login.token, login.expires_at, &login.user)
            .await?;
        std::fs::write(dir.join("last-user"), login.user.id.to_string())
            .map_err(|e| SyncError::Storage(e.to_string()))?;
        Engine::start(config, login.user, login.token, cache, http, true).await
    }

    /// Reopens the last session with this server from its cache, without a password and
    /// without waiting for the network: the app works offline from here. Errors:
    /// [`SyncError::NoSession`] (never signed in, or signed out) and
    /// [`SyncError::SessionExpired`] (the token's time is up): ask for a login.
    pub async fn resume(config: EngineConfig) -> Result<Engine, SyncError> {
        let dir = config.server_dir();
        let user_id =
            std::fs::read_to_string(dir.join("last-user")).map_err(|_| SyncError::NoSession)?;
        let path = dir.join(format!("{}.db", user_id.trim()));
        if !path.exists() {
            return Err(SyncError::NoSession);
        }
        let cache = Cache::open(&path).await?;
        let token = cache.meta("token").await?.ok_or(SyncError::NoSession)?;
        let expires_at = cache
            .meta("expires_at")
            .await?
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok());
        if expires_at.is_none_or(|t| t <= Utc::now()) {
            return Err(SyncError::SessionExpired);
        }
        let user: Staff =
            serde_json::from_str(&cache.meta("user").await?.ok_or(SyncError::NoSession)?)?;
        let http = http_client(&config);
        Engine::start(config, user, token, cache, http, false).await
    }

    async fn start(
        config: EngineConfig,
        user: Staff,
        token: String,
        cache: Cache,
        http: reqwest::Client,
        fetch_first: bool,
    ) -> Result<Engine, SyncError> {
        let loaded = cache.load().await?;
        let (status, _) = watch::channel(Status {
            state: SyncState::Offline,
            pending: 0,
            oldest_pending: None,
            oldest_pending_at: None,
            lag: 0,
            last_sync: None,
            last_error: None,
            session_expired: false,
        });
        let (stop, _) = watch::channel(false);
        let timing = config.timing;
        let inner = Arc::new(Inner {
            config,
            user: std::sync::RwLock::new(user),
            token,
            cache,
            http,
            state: Mutex::new(State {
                seq: loaded.cache_seq,
                outbox: loaded.outbox,
            }),
            subscribers: std::sync::Mutex::new(Vec::new()),
            status,
            report: std::sync::Mutex::new(Report {
                state: SyncState::Offline,
                lag: 0,
                error: None,
                session_expired: false,
                synced: false,
            }),
            outbox_ready: Notify::new(),
            stop,
            driver: std::sync::Mutex::new(None),
        });
        let mut cursor = loaded.cursor;
        if cursor.is_none() && fetch_first {
            // A new cache answers queries from the start; failing that, the driver retries.
            match inner.fetch_snapshot().await {
                Ok(seq) => cursor = Some(seq),
                Err(e) => tracing::warn!("first snapshot failed, will retry: {e}"),
            }
        }
        inner.publish(None);
        let machine = SyncMachine::new(timing, cursor, rand::random());
        let driver = tokio::spawn(drive(inner.clone(), machine));
        *lock(&inner.driver) = Some(driver);
        Ok(Engine {
            _alive: Arc::new(Alive(inner.clone())),
            inner,
        })
    }

    /// The signed-in user (roles as of the last snapshot).
    pub fn user(&self) -> Staff {
        self.inner.user()
    }

    /// The server this engine syncs with.
    pub fn server_url(&self) -> &str {
        &self.inner.config.server_url
    }

    /// Every change to what queries return, and every verdict on this user's changes, in
    /// order, from now on. A late subscriber joins without a gap or a duplicate:
    /// 1. `let mut events = engine.subscribe();` (first!)
    /// 2. `let view = engine.view_at().await?;` (everything, at cache seq `view.seq`)
    /// 3. for each [`CacheEvent::Change`] received, skip it if `change.seq <= view.seq`,
    ///    apply it otherwise; on [`ChangeKind::Reset`] read `view_at` again.
    ///
    /// [`CacheEvent::Rejected`] and [`CacheEvent::Confirmed`] carry no seq: they are
    /// notices, the record itself changes through a `Change`.
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.inner.subscribers).push(tx);
        Subscription(rx)
    }

    /// The sync status; `changed().await` on the receiver waits for the next one.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.inner.status.subscribe()
    }

    /// Every visible record with pending changes applied, and the cache sequence number it
    /// is consistent at. See [`Engine::subscribe`] for joining the stream after it.
    pub async fn view_at(&self) -> Result<View, SyncError> {
        let state = self.inner.state.lock().await;
        let records = crate::queries::all(&self.inner.cache).await?;
        Ok(View {
            seq: state.seq,
            records,
        })
    }

    /// Queues a change and returns its mutation id. It is written to the outbox in SQLite
    /// first, in the same transaction as its optimistic effect on what queries return
    /// (marked pending), then sent when online, in order. A change the rules already
    /// forbid against the cached record is refused here ([`SyncError::Refused`]), unsent.
    pub async fn submit(&self, mutation: Mutation) -> Result<Uuid, SyncError> {
        let id = self.inner.submit(mutation).await?;
        self.inner.outbox_ready.notify_one();
        Ok(id)
    }

    /// Signs out: stops syncing, revokes the token if the server is reachable, and forgets
    /// the session (the cache and any unsent changes stay on disk for the next login).
    pub async fn logout(&self) -> Result<(), SyncError> {
        self.shutdown().await;
        let revoke = self
            .inner
            .http
            .post(self.inner.config.url(paths::LOGOUT))
            .bearer_auth(&self.inner.token)
            .timeout(Duration::from_secs(3))
            .send();
        if let Err(e) = revoke.await {
            tracing::info!("could not revoke the token (offline?): {e}");
        }
        self.inner.cache.delete_meta("token").await?;
        self.inner.cache.delete_meta("expires_at").await?;
        let _ = std::fs::remove_file(self.inner.config.server_dir().join("last-user"));
        Ok(())
    }

    /// Stops syncing and waits for the driver to end. Queries keep answering from the
    /// cache; the outbox stays on disk for the next start.
    pub async fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        let driver = lock(&self.inner.driver).take();
        if let Some(driver) = driver {
            let _ = driver.await;
        }
        self.inner.publish_report(Report {
            state: SyncState::Offline,
            lag: 0,
            error: None,
            session_expired: false,
            synced: false,
        });
    }
}

/// Turns a record (or its absence) into the change subscribers see.
fn change_kind(key: Key, record: Option<&Record>, pending: bool) -> ChangeKind {
    match record {
        Some(record) => ChangeKind::Upsert {
            record: record.clone(),
            pending,
        },
        None => ChangeKind::Remove {
            kind: key.0,
            id: key.1,
        },
    }
}

impl Inner {
    fn user(&self) -> Staff {
        self.user
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn broadcast(&self, events: Vec<CacheEvent>) {
        let mut subscribers = lock(&self.subscribers);
        subscribers.retain(|s| events.iter().all(|e| s.send(e.clone()).is_ok()));
    }

    /// Publishes the status: the machine's report (if new) with the outbox's figures.
    fn publish(&self, outbox: Option<&[Queued]>) {
        let report = lock(&self.report).clone();
        self.status.send_modify(|s| {
            if let Some(outbox) = outbox {
                s.pending = outbox.len() as u64;
                s.oldest_pending_at = outbox.first().map(|q| q.queued_at);
            }
            s.oldest_pending = s
                .oldest_pending_at
                .and_then(|t| (Utc::now() - t).to_std().ok());
            s.lag = report.lag;
            s.last_error.clone_from(&report.error);
            s.session_expired = report.session_expired;
            if report.synced {
                s.last_sync = Some(Utc::now());
            }
            s.state = match report.state {
                // Queued changes are still to go, whatever the machine knows yet.
                SyncState::Online if s.pending > 0 => SyncState::Syncing,
                other => other,
            };
        });
    }

    fn publish_report(&self, report: Report) {
        *lock(&self.report) = report;
        self.publish(None);
        lock(&self.report).synced = false;
    }

    async fn submit(&self, mutation: Mutation) -> Result<Uuid, SyncError> {
        let mut state = self.state.lock().await;
        let user = self.user();
        let key = mutation.target();
        let server = self.cache.server_record(key).await?;
        let current = rebase(&user, key, server.as_ref(), &state.outbox);
        let now = Utc::now();
        rules::apply(&user, &mutation, current.as_ref(), now).map_err(|r| SyncError::Refused {
            code: r.code,
            message: r.message,
        })?;
        let queued = Queued {
            mutation_id: Uuid::new_v4(),
            mutation,
            queued_at: now,
        };
        let shown = rebase(
            &user,
            key,
            server.as_ref(),
            state.outbox.iter().chain([&queued]),
        );
        let seq = state.seq + 1;
        self.cache
            .write(&Write {
                overlay: vec![(key, shown.clone())],
                enqueue: Some(&queued),
                cache_seq: Some(seq),
                ..Write::default()
            })
            .await?;
        let id = queued.mutation_id;
        state.outbox.push(queued);
        state.seq = seq;
        self.broadcast(vec![CacheEvent::Change(CacheChange {
            seq,
            kind: change_kind(key, shown.as_ref(), true),
            origin: Origin::Local,
        })]);
        self.publish(Some(&state.outbox));
        Ok(id)
    }

    /// One feed batch: server records, rebased overlays, confirmed mutations, cursor and
    /// cache seq, in one transaction of a handful of statements.
    async fn apply_batch(
        &self,
        changes: &[clinic_protocol::Change],
        upto: u64,
        live: bool,
    ) -> Result<(), SyncError> {
        let mut state = self.state.lock().await;
        let user = self.user();
        let mut outbox = state.outbox.clone();
        let mut seq = state.seq;
        let mut events = Vec::with_capacity(changes.len());
        let mut last: HashMap<Key, Option<&Record>> = HashMap::new();
        let mut overlay: HashMap<Key, Option<Record>> = HashMap::new();
        let mut overlay_clear: HashSet<Key> = HashSet::new();
        let mut dequeue = Vec::new();
        for change in changes {
            let key = change.op.target();
            let server = match &change.op {
                ChangeOp::Upsert { record } => Some(record),
                ChangeOp::Remove { .. } => None,
            };
            last.insert(key, server);
            // A change caused by one of our queued mutations confirms it.
            let confirmed = change
                .mutation_id
                .and_then(|id| outbox.iter().position(|q| q.mutation_id == id))
                .map(|pos| outbox.remove(pos));
            let pending = outbox.iter().any(|q| q.mutation.target() == key);
            seq += 1;
            let kind = if pending {
                // Rebase: the server's new version, our pending changes on top.
                let shown = rebase(&user, key, server, &outbox);
                let kind = change_kind(key, shown.as_ref(), true);
                overlay_clear.remove(&key);
                overlay.insert(key, shown);
                kind
            } else {
                if confirmed.is_some() || overlay.contains_key(&key) {
                    overlay.remove(&key);
                    overlay_clear.insert(key);
                }
                change_kind(key, server, false)
            };
            events.push(CacheEvent::Change(CacheChange {
                seq,
                kind,
                origin: Origin::Server {
                    actor: change.actor,
                    mutation_id: change.mutation_id,
                    live,
                },
            }));
            if let Some(q) = confirmed {
                dequeue.push(q.mutation_id);
                events.push(CacheEvent::Confirmed {
                    mutation_id: q.mutation_id,
                });
            }
        }
        let (upserts, removes): (Vec<_>, Vec<_>) = last.into_iter().partition(|(_, r)| r.is_some());
        self.cache
            .write(&Write {
                upserts: upserts.into_iter().filter_map(|(_, r)| r).collect(),
                removes: removes.into_iter().map(|(k, _)| k).collect(),
                overlay: overlay.into_iter().collect(),
                overlay_clear: overlay_clear.into_iter().collect(),
                dequeue,
                cursor: Some(upto),
                cache_seq: Some(seq),
                ..Write::default()
            })
            .await?;
        let outbox_changed = outbox.len() != state.outbox.len();
        state.outbox = outbox;
        state.seq = seq;
        self.broadcast(events);
        if outbox_changed {
            self.publish(Some(&state.outbox));
        }
        Ok(())
    }

    async fn advance(&self, cursor: u64) -> Result<(), SyncError> {
        let _state = self.state.lock().await;
        self.cache
            .write(&Write {
                cursor: Some(cursor),
                ..Write::default()
            })
            .await
    }

    /// Fetches a snapshot and replaces the cache with it (overlay recomputed on top), all
    /// in one transaction; subscribers get one [`ChangeKind::Reset`].
    async fn fetch_snapshot(&self) -> Result<u64, SyncError> {
        let response = self
            .http
            .get(self.config.url(paths::SNAPSHOT))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Err(SyncError::SessionExpired);
        }
        if !response.status().is_success() {
            return Err(api_error(response).await);
        }
        let snapshot: Snapshot = response.json().await?;
        let mut state = self.state.lock().await;
        *self
            .user
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = snapshot.user.clone();
        let by_key: HashMap<Key, &Record> = snapshot
            .records
            .iter()
            .map(|r| ((r.kind(), r.id()), r))
            .collect();
        let pending: HashSet<Key> = state.outbox.iter().map(|q| q.mutation.target()).collect();
        let overlay = pending
            .into_iter()
            .map(|key| {
                let shown = rebase(
                    &snapshot.user,
                    key,
                    by_key.get(&key).copied(),
                    &state.outbox,
                );
                (key, shown)
            })
            .collect();
        let seq = state.seq + 1;
        self.cache
            .write(&Write {
                replace_all: true,
                upserts: snapshot.records.iter().collect(),
                overlay,
                cursor: Some(snapshot.seq),
                cache_seq: Some(seq),
                ..Write::default()
            })
            .await?;
        self.cache.save_user(&snapshot.user).await?;
        state.seq = seq;
        self.broadcast(vec![CacheEvent::Change(CacheChange {
            seq,
            kind: ChangeKind::Reset,
            origin: Origin::Snapshot,
        })]);
        Ok(snapshot.seq)
    }

    fn queued(&self, state: &State, mutation_id: Uuid) -> Option<Queued> {
        state
            .outbox
            .iter()
            .find(|q| q.mutation_id == mutation_id)
            .cloned()
    }

    async fn outbox_head(&self) -> Option<Uuid> {
        self.state
            .lock()
            .await
            .outbox
            .first()
            .map(|q| q.mutation_id)
    }

    /// The server's verdict on a queued mutation. Applied: it leaves the outbox and the
    /// server's record wins. Rejected: it leaves the outbox, the overlay is recomputed
    /// without it (the rollback) and the rejection is reported.
    async fn settle(&self, mutation_id: Uuid, outcome: MutationOutcome) -> Result<(), SyncError> {
        let mut state = self.state.lock().await;
        let Some(pos) = state
            .outbox
            .iter()
            .position(|q| q.mutation_id == mutation_id)
        else {
            // The feed confirmed it first; its change carried the record.
            return Ok(());
        };
        let user = self.user();
        let mut outbox = state.outbox.clone();
        let queued = outbox.remove(pos);
        let key = queued.mutation.target();
        let mut server = self.cache.server_record(key).await?;
        let (fresh, rejected) = match outcome {
            MutationOutcome::Applied { record, .. } => (Some(record), None),
            MutationOutcome::Rejected {
                code,
                message,
                current,
            } => (
                current.clone().map(Some),
                Some(Rejected {
                    mutation_id,
                    mutation: queued.mutation.clone(),
                    code,
                    message,
                    current,
                }),
            ),
        };
        let mut write = Write {
            dequeue: vec![mutation_id],
            ..Write::default()
        };
        // The server's record, unless the feed already brought a newer one.
        match fresh {
            Some(Some(record))
                if server
                    .as_ref()
                    .is_none_or(|have| have.version() < record.version()) =>
            {
                server = Some(record).filter(|r| rules::visible_to(&user, r));
            }
            Some(None) => server = None,
            _ => {}
        }
        match &server {
            Some(r) => write.upserts.push(r),
            None => write.removes.push(key),
        }
        let pending = outbox.iter().any(|q| q.mutation.target() == key);
        let shown = if pending {
            let shown = rebase(&user, key, server.as_ref(), &outbox);
            write.overlay.push((key, shown.clone()));
            shown
        } else {
            write.overlay_clear.push(key);
            server.clone()
        };
        let seq = state.seq + 1;
        write.cache_seq = Some(seq);
        self.cache.write(&write).await?;
        state.outbox = outbox;
        state.seq = seq;
        let origin = match &rejected {
            Some(_) => Origin::Local,
            None => Origin::Server {
                actor: Some(user.id),
                mutation_id: Some(mutation_id),
                live: true,
            },
        };
        let notice = match rejected {
            Some(r) => CacheEvent::Rejected(r),
            None => CacheEvent::Confirmed { mutation_id },
        };
        self.broadcast(vec![
            CacheEvent::Change(CacheChange {
                seq,
                kind: change_kind(key, shown.as_ref(), pending),
                origin,
            }),
            notice,
        ]);
        self.publish(Some(&state.outbox));
        Ok(())
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type Sending = Pin<Box<dyn Future<Output = Event> + Send>>;

async fn connect(inner: &Inner) -> Result<Socket, String> {
    let base = &inner.config.server_url;
    let url = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}{}", paths::FEED)
    } else {
        format!("ws://{}{}", base.trim_start_matches("http://"), paths::FEED)
    };
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(MAX_SERVER_FRAME_BYTES))
        .max_frame_size(Some(MAX_SERVER_FRAME_BYTES));
    let connecting = tokio_tungstenite::connect_async_with_config(url, Some(ws_config), true);
    match tokio::time::timeout(inner.config.timing.dead_after, connecting).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(e)) => Err(format!("cannot connect: {e}")),
        Err(_) => Err("connecting timed out".into()),
    }
}

/// The next frame of the feed as a machine event; never resolves without a socket.
async fn next_frame(socket: &mut Option<Socket>) -> Event {
    let Some(ws) = socket.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        return match ws.next().await {
            None => Event::Disconnected {
                error: "the server closed the connection".into(),
            },
            Some(Err(e)) => Event::Disconnected {
                error: format!("connection lost: {e}"),
            },
            Some(Ok(Message::Text(t))) => Event::Frame(t.as_str().to_owned()),
            Some(Ok(Message::Binary(b))) => Event::Frame(String::from_utf8_lossy(&b).into_owned()),
            Some(Ok(Message::Close(_))) => Event::Disconnected {
                error: "the server closed the feed".into(),
            },
            // Pings are answered by tungstenite while reading.
            Some(Ok(_)) => continue,
        };
    }
}

/// POSTs one mutation and says how it went.
async fn send_mutation(inner: Arc<Inner>, queued: Queued) -> Event {
    let request = MutationRequest {
        mutation_id: queued.mutation_id,
        mutation: queued.mutation,
    };
    let sent = inner
        .http
        .post(inner.config.url(paths::MUTATIONS))
        .bearer_auth(&inner.token)
        .json(&request)
        .send()
        .await;
    let result = match sent {
        Ok(r) if r.status().is_success() => match r.json::<MutationOutcome>().await {
            Ok(outcome) => Sent::Outcome(outcome),
            Err(e) => Sent::Failed(e.to_string()),
        },
        Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => Sent::Expired,
        Ok(r) if r.status().is_client_error() && r.status() != 429 => match api_error(r).await {
            // The server understood and refused the request itself: drop it, or it would
            // block every later change.
            SyncError::Refused { code, message } => Sent::Outcome(MutationOutcome::Rejected {
                code,
                message,
                current: None,
            }),
            other => Sent::Failed(other.to_string()),
        },
        Ok(r) => Sent::Failed(format!("the server answered {}", r.status())),
        Err(e) => Sent::Failed(e.to_string()),
    };
    Event::MutationDone {
        mutation_id: request.mutation_id,
        result,
    }
}

/// Resolves once the engine is told to stop. (A unit output: the watch's read guard must
/// not live inside `select!`'s output across an await.)
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The IO driver: runs the machine until stopped.
async fn drive(inner: Arc<Inner>, mut machine: SyncMachine) {
    let mut stop = inner.stop.subscribe();
    let mut socket: Option<Socket> = None;
    let mut wake: Option<tokio::time::Instant> = None;
    let mut sending: Option<Sending> = None;
    let mut events: VecDeque<Event> = VecDeque::new();
    events.push_back(Event::OutboxHead(inner.outbox_head().await));
    let mut todo: VecDeque<Instruction> = machine.start(Instant::now()).into();
    loop {
        while let Some(instruction) = todo.pop_front() {
            match instruction {
                Instruction::Connect => {
                    let connected = tokio::select! {
                        c = connect(&inner) => c,
                        () = stopped(&mut stop) => return,
                    };
                    events.push_back(match connected {
                        Ok(ws) => {
                            socket = Some(ws);
                            Event::Connected
                        }
                        Err(error) => Event::Disconnected { error },
                    });
                }
                Instruction::SendHello { cursor } => {
                    let hello = ClientFrame::Hello {
                        protocol: PROTOCOL_VERSION,
                        token: inner.token.clone(),
                        cursor,
                    };
                    let sent = match (socket.as_mut(), serde_json::to_string(&hello)) {
                        (Some(ws), Ok(text)) => ws
                            .send(Message::text(text))
                            .await
                            .map_err(|e| e.to_string()),
                        (None, _) => Err("no connection".into()),
                        (_, Err(e)) => Err(e.to_string()),
                    };
                    if let Err(e) = sent {
                        events.push_back(Event::Disconnected {
                            error: format!("cannot say hello: {e}"),
                        });
                    }
                }
                Instruction::Close => socket = None,
                Instruction::FetchSnapshot => {
                    let fetched = tokio::select! {
                        f = inner.fetch_snapshot() => f,
                        () = stopped(&mut stop) => return,
                    };
                    events.push_back(match fetched {
                        Ok(seq) => Event::SnapshotFetched { seq },
                        Err(e) => Event::SnapshotFailed {
                            expired: matches!(e, SyncError::SessionExpired),
                            error: format!("cannot fetch a snapshot: {e}"),
                        },
                    });
                }
                Instruction::Apply {
                    changes,
                    upto,
                    live,
                } => {
                    if let Err(e) = inner.apply_batch(&changes, upto, live).await {
                        events.push_back(Event::ApplyFailed {
                            error: e.to_string(),
                        });
                    }
                }
                Instruction::Advance { cursor } => {
                    if let Err(e) = inner.advance(cursor).await {
                        events.push_back(Event::ApplyFailed {
                            error: e.to_string(),
                        });
                    }
                }
                Instruction::Send { mutation_id } => {
                    let queued = inner.queued(&*inner.state.lock().await, mutation_id);
                    match queued {
                        Some(q) => sending = Some(Box::pin(send_mutation(inner.clone(), q))),
                        None => {
                            events.push_back(Event::MutationDone {
                                mutation_id,
                                result: Sent::Gone,
                            });
                            events.push_back(Event::OutboxHead(inner.outbox_head().await));
                        }
                    }
                }
                Instruction::Settle {
                    mutation_id,
                    outcome,
                } => {
                    if let Err(e) = inner.settle(mutation_id, outcome).await {
                        tracing::error!("could not record the server's verdict: {e}");
                    }
                    events.push_back(Event::OutboxHead(inner.outbox_head().await));
                }
                Instruction::WakeAt(at) => wake = Some(at.into()),
                Instruction::Report(report) => inner.publish_report(report),
            }
        }
        let event = match events.pop_front() {
            Some(event) => event,
            None => tokio::select! {
                () = stopped(&mut stop) => return,
                event = next_frame(&mut socket) => event,
                () = async {
                    match wake {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    wake = None;
                    Event::Tick
                }
                event = async {
                    match sending.as_mut() {
                        Some(f) => f.await,
                        None => std::future::pending().await,
                    }
                } => {
                    sending = None;
                    event
                }
                () = inner.outbox_ready.notified() => Event::OutboxHead(inner.outbox_head().await),
            },
        };
        todo.extend(machine.handle(event, Instant::now()));
    }
}
