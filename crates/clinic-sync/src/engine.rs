//! The engine: the in-memory view over the cache, and the two IO tasks (the feed over ONE
//! WebSocket, and the outbox sender over HTTP).
//!
//! The view is the server's records with the outbox re-applied on top through
//! `clinic_protocol::rules::apply`, so a pending change shows at once and is rebased
//! whenever the server's version of its record changes. Every change to the view is
//! published to subscribers with the next cache sequence number, under the same lock that
//! changes the view, so `view_at` plus the stream never misses or repeats anything.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clinic_protocol::rules::{self, Effect};
use clinic_protocol::wire::{paths, MAX_SERVER_FRAME_BYTES};
use clinic_protocol::{
    ApiError, Change, ChangeOp, ClientFrame, ErrorCode, Id, LoginRequest, LoginResponse, Mutation,
    MutationOutcome, MutationRequest, Record, RecordKind, Snapshot, Staff, PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch, Mutex, Notify};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::cache::{Cache, Queued};
use crate::error::SyncError;
use crate::machine::{FeedMachine, Instruction};

type Key = (RecordKind, Id);

/// Where to sync with and where to keep the cache.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub server_url: String,
    pub data_dir: PathBuf,
    /// With no frame (not even a heartbeat) for this long, the connection is dead.
    pub dead_after: Duration,
    /// The longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

impl EngineConfig {
    pub fn new(server_url: &str, data_dir: &Path) -> EngineConfig {
        EngineConfig {
            server_url: server_url.trim_end_matches('/').to_owned(),
            data_dir: data_dir.to_path_buf(),
            dead_after: Duration::from_secs(15),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// One cache per server: its address made safe as a directory name.
    fn server_dir(&self) -> PathBuf {
        let safe: String = self
            .server_url
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.data_dir.join(safe)
    }
}

/// A record as queries return it: with the user's pending changes applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewRecord {
    pub record: Record,
    pub pending: bool,
}

/// Every visible record, consistent at cache sequence `seq`.
#[derive(Debug, Clone)]
pub struct View {
    pub seq: u64,
    pub records: Vec<ViewRecord>,
}

/// Where a change to the view came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The server's feed or its answer to a mutation. `actor` made it (`None`: web intake).
    Server {
        actor: Option<Id>,
        mutation_id: Option<Uuid>,
    },
    /// A change of this user's, applied optimistically, or its rollback.
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    Upsert {
        record: Record,
        pending: bool,
    },
    Remove {
        kind: RecordKind,
        id: Id,
    },
    /// Everything was replaced (a snapshot after a resync): read the view again.
    Reset,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheChange {
    /// The cache's sequence number: one per change, gap-free, per engine.
    pub seq: u64,
    pub kind: ChangeKind,
    pub origin: Origin,
}

/// The server refused a change of this user's; its optimistic effect has been rolled back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub mutation_id: Uuid,
    pub mutation: Mutation,
    pub code: ErrorCode,
    pub message: String,
    pub current: Option<Record>,
}

/// What subscribers receive, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheEvent {
    Change(CacheChange),
    Rejected(Rejected),
    /// The server applied this mutation.
    Confirmed {
        mutation_id: Uuid,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    Online,
    Syncing,
    Offline,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub state: SyncState,
    pub pending: u64,
    pub oldest_pending: Option<Duration>,
    /// Server head minus local cursor.
    pub lag: u64,
    pub last_sync: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// The receiving end of [`Engine::subscribe`].
#[derive(Debug)]
pub struct Subscription(mpsc::UnboundedReceiver<CacheEvent>);

impl Subscription {
    pub async fn recv(&mut self) -> Option<CacheEvent> {
        self.0.recv().await
    }

    pub fn try_recv(&mut self) -> Option<CacheEvent> {
        self.0.try_recv().ok()
    }
}

#[derive(Debug, Default)]
struct State {
    server: HashMap<Key, Record>,
    outbox: Vec<Queued>,
    view: HashMap<Key, ViewRecord>,
    seq: u64,
}

#[derive(Debug)]
struct Inner {
    config: EngineConfig,
    user: Staff,
    token: String,
    cache: Cache,
    http: reqwest::Client,
    state: Mutex<State>,
    /// Subscribers, apart from `state` so that subscribing never waits on a sync step.
    /// Always locked inside the state lock when publishing, so events keep their order.
    subscribers: std::sync::Mutex<Vec<mpsc::UnboundedSender<CacheEvent>>>,
    /// Outbox length and oldest entry, for the status (kept in step under the state lock).
    outbox_summary: std::sync::Mutex<(u64, Option<DateTime<Utc>>)>,
    status: watch::Sender<Status>,
    /// Wakes the sender: something was queued, or the connection came back.
    outbox_ready: Notify,
    stop: watch::Sender<bool>,
}

/// The sync engine. Cheap to clone; one per app.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

async fn api_error(response: reqwest::Response) -> SyncError {
    let status = response.status();
    match response.json::<ApiError>().await {
        Ok(e) if e.code == ErrorCode::Unauthorized && status == 401 => SyncError::Refused {
            code: e.code,
            message: e.message,
        },
        Ok(e) => SyncError::Refused {
            code: e.code,
            message: e.message,
        },
        Err(_) => SyncError::Unreachable(format!("the server answered {status}")),
    }
}

impl Engine {
    /// Signs in, opens (or creates) this user's cache, fetches a snapshot if the cache is
    /// new, and starts syncing.
    pub async fn login(
        config: EngineConfig,
        username: &str,
        password: &str,
    ) -> Result<Engine, SyncError> {
        let http = http_client();
        let response = http
            .post(format!("{}{}", config.server_url, paths::LOGIN))
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
        cache.set_meta("token", &login.token).await?;
        cache.save_user(&login.user).await?;
        std::fs::write(dir.join("last-user"), login.user.id.to_string())
            .map_err(|e| SyncError::Storage(e.to_string()))?;
        Engine::start(config, login.user, login.token, cache, http).await
    }

    /// Reopens the last session with this server from its cache, without a password and
    /// without the network: the app works offline from here.
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
        let user: Staff =
            serde_json::from_str(&cache.meta("user").await?.ok_or(SyncError::NoSession)?)?;
        Engine::start(config, user, token, cache, http_client()).await
    }

    async fn start(
        config: EngineConfig,
        user: Staff,
        token: String,
        cache: Cache,
        http: reqwest::Client,
    ) -> Result<Engine, SyncError> {
        let loaded = cache.load().await?;
        let mut state = State {
            server: loaded
                .records
                .into_iter()
                .map(|r| ((r.kind(), r.id()), r))
                .collect(),
            outbox: loaded.outbox,
            ..State::default()
        };
        let keys: Vec<Key> = state
            .server
            .keys()
            .copied()
            .chain(state.outbox.iter().map(|q| q.mutation.target()))
            .collect();
        for key in keys {
            if let Some(v) = compute(&user, &state.server, &state.outbox, key) {
                state.view.insert(key, v);
            }
        }
        let (status, _) = watch::channel(Status {
            state: SyncState::Offline,
            pending: state.outbox.len() as u64,
            oldest_pending: None,
            lag: 0,
            last_sync: None,
            last_error: None,
        });
        let (stop, _) = watch::channel(false);
        let engine = Engine {
            inner: Arc::new(Inner {
                config,
                user,
                token,
                cache,
                http,
                outbox_summary: std::sync::Mutex::new(summary(&state.outbox)),
                state: Mutex::new(state),
                subscribers: std::sync::Mutex::new(Vec::new()),
                status,
                outbox_ready: Notify::new(),
                stop,
            }),
        };
        if loaded.cursor == 0 {
            // A new cache starts from a snapshot; failing that, the feed will resync.
            if let Err(e) = engine.resync().await {
                tracing::warn!("first snapshot failed, will retry: {e}");
            }
        }
        tokio::spawn(feed_task(engine.clone(), loaded.cursor));
        tokio::spawn(sender_task(engine.clone()));
        Ok(engine)
    }

    pub fn user(&self) -> &Staff {
        &self.inner.user
    }

    /// Subscribe first, then read [`Engine::view_at`], then apply only events with a higher
    /// seq: nothing is missed and nothing applied twice.
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.inner.subscribers).push(tx);
        Subscription(rx)
    }

    pub fn status(&self) -> watch::Receiver<Status> {
        self.inner.status.subscribe()
    }

    /// Every visible record with pending changes applied, at the current cache seq.
    pub async fn view_at(&self) -> Result<View, SyncError> {
        let state = self.inner.state.lock().await;
        Ok(View {
            seq: state.seq,
            records: state.view.values().cloned().collect(),
        })
    }

    /// Queues a change: durable in the outbox first, then shown at once (pending), then sent
    /// when online. A change the rules already forbid locally is refused here, unsent.
    pub async fn submit(&self, mutation: Mutation) -> Result<Uuid, SyncError> {
        let key = mutation.target();
        let mut state = self.inner.state.lock().await;
        let current = state.view.get(&key).map(|v| v.record.clone());
        rules::apply(&self.inner.user, &mutation, current.as_ref(), Utc::now()).map_err(|r| {
            SyncError::Refused {
                code: r.code,
                message: r.message,
            }
        })?;
        let queued = Queued {
            mutation_id: Uuid::new_v4(),
            mutation,
            queued_at: Utc::now(),
        };
        self.inner.cache.enqueue(&queued).await?;
        let id = queued.mutation_id;
        state.outbox.push(queued);
        self.outbox_changed(&state);
        self.refresh(&mut state, &[key], &Origin::Local);
        drop(state);
        self.publish_status(|_| {});
        self.inner.outbox_ready.notify_one();
        Ok(id)
    }

    /// Signs out: revokes the token (if the server is reachable) and forgets the session.
    pub async fn logout(&self) -> Result<(), SyncError> {
        self.shutdown();
        let _ = self
            .inner
            .http
            .post(format!("{}{}", self.inner.config.server_url, paths::LOGOUT))
            .bearer_auth(&self.inner.token)
            .send()
            .await;
        self.inner.cache.delete_meta("token").await?;
        let _ = std::fs::remove_file(self.inner.config.server_dir().join("last-user"));
        Ok(())
    }

    /// Stops the tasks. The cache and outbox stay for the next start.
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        self.inner.outbox_ready.notify_one();
    }

    /// Recomputes the view for `keys` and publishes what changed.
    fn refresh(&self, state: &mut State, keys: &[Key], origin: &Origin) {
        for key in keys {
            let new = compute(&self.inner.user, &state.server, &state.outbox, *key);
            let old = state.view.get(key);
            if old == new.as_ref() {
                continue;
            }
            let kind = match &new {
                Some(v) => ChangeKind::Upsert {
                    record: v.record.clone(),
                    pending: v.pending,
                },
                None => ChangeKind::Remove {
                    kind: key.0,
                    id: key.1,
                },
            };
            match new {
                Some(v) => state.view.insert(*key, v),
                None => state.view.remove(key),
            };
            state.seq += 1;
            let event = CacheEvent::Change(CacheChange {
                seq: state.seq,
                kind,
                origin: origin.clone(),
            });
            self.broadcast(&event);
        }
    }

    fn publish_status(&self, update: impl FnOnce(&mut Status)) {
        let (count, oldest) = *lock(&self.inner.outbox_summary);
        self.inner.status.send_modify(|status| {
            update(status);
            status.pending = count;
            status.oldest_pending = oldest.and_then(|t| (Utc::now() - t).to_std().ok());
            if status.state == SyncState::Online && count > 0 {
                status.state = SyncState::Syncing;
            }
        });
    }

    /// Sends `event` to every subscriber. Called with the state lock held.
    fn broadcast(&self, event: &CacheEvent) {
        lock(&self.inner.subscribers).retain(|s| s.send(event.clone()).is_ok());
    }

    /// The outbox changed: keep the status summary in step. Called with the state lock held.
    fn outbox_changed(&self, state: &State) {
        *lock(&self.inner.outbox_summary) = summary(&state.outbox);
    }

    /// Applies a feed batch: cache first (with the cursor), then the view.
    async fn apply(&self, changes: Vec<Change>, upto: u64) -> Result<(), SyncError> {
        let mut state = self.inner.state.lock().await;
        self.inner.cache.apply(&changes, upto).await?;
        let mut confirmed = Vec::new();
        for change in changes {
            let key = change.op.target();
            match change.op {
                ChangeOp::Upsert { record } => {
                    state.server.insert(key, record);
                }
                ChangeOp::Remove { .. } => {
                    state.server.remove(&key);
                }
            }
            // Our own change came back through the feed: it is confirmed.
            if let Some(mid) = change.mutation_id {
                if let Some(pos) = state.outbox.iter().position(|q| q.mutation_id == mid) {
                    state.outbox.remove(pos);
                    self.inner.cache.dequeue(mid).await?;
                    self.outbox_changed(&state);
                    confirmed.push(mid);
                }
            }
            let origin = Origin::Server {
                actor: change.actor,
                mutation_id: change.mutation_id,
            };
            self.refresh(&mut state, &[key], &origin);
        }
        for mutation_id in confirmed {
            self.broadcast(&CacheEvent::Confirmed { mutation_id });
        }
        Ok(())
    }

    /// Fetches a snapshot and replaces the cache with it.
    async fn resync(&self) -> Result<u64, SyncError> {
        let response = self
            .inner
            .http
            .get(format!(
                "{}{}",
                self.inner.config.server_url,
                paths::SNAPSHOT
            ))
            .bearer_auth(&self.inner.token)
            .send()
            .await?;
        if response.status() == 401 {
            return Err(SyncError::SessionExpired);
        }
        if !response.status().is_success() {
            return Err(api_error(response).await);
        }
        let snapshot: Snapshot = response.json().await?;
        let mut state = self.inner.state.lock().await;
        self.inner
            .cache
            .replace_all(&snapshot.records, snapshot.seq)
            .await?;
        self.inner.cache.save_user(&snapshot.user).await?;
        state.server = snapshot
            .records
            .into_iter()
            .map(|r| ((r.kind(), r.id()), r))
            .collect();
        let keys: Vec<Key> = state
            .server
            .keys()
            .copied()
            .chain(state.outbox.iter().map(|q| q.mutation.target()))
            .collect();
        state.view.clear();
        for key in keys {
            if let Some(v) = compute(&self.inner.user, &state.server, &state.outbox, key) {
                state.view.insert(key, v);
            }
        }
        state.seq += 1;
        let event = CacheEvent::Change(CacheChange {
            seq: state.seq,
            kind: ChangeKind::Reset,
            origin: Origin::Server {
                actor: None,
                mutation_id: None,
            },
        });
        self.broadcast(&event);
        Ok(snapshot.seq)
    }

    /// The server answered the first queued mutation.
    async fn settle(&self, queued: &Queued, outcome: MutationOutcome) -> Result<(), SyncError> {
        let key = queued.mutation.target();
        let mut state = self.inner.state.lock().await;
        let still_queued = state
            .outbox
            .iter()
            .position(|q| q.mutation_id == queued.mutation_id);
        let (server_record, rejected) = match outcome {
            MutationOutcome::Applied { record, .. } => (record.map(Some), None),
            MutationOutcome::Rejected {
                code,
                message,
                current,
            } => {
                let rejected = Rejected {
                    mutation_id: queued.mutation_id,
                    mutation: queued.mutation.clone(),
                    code,
                    message,
                    current: current.clone(),
                };
                (current.map(Some), Some(rejected))
            }
        };
        // The server's record wins if it is newer than ours (the feed may have been faster).
        match server_record {
            Some(Some(record))
                if state
                    .server
                    .get(&key)
                    .is_none_or(|have| have.version() < record.version()) =>
            {
                self.inner.cache.put(&record).await?;
                state.server.insert(key, record);
            }
            None if matches!(queued.mutation, Mutation::DeleteSlot { .. })
                && rejected.is_none() =>
            {
                self.inner.cache.forget(key.0, key.1).await?;
                state.server.remove(&key);
            }
            _ => {}
        }
        if let Some(pos) = still_queued {
            state.outbox.remove(pos);
            self.inner.cache.dequeue(queued.mutation_id).await?;
            self.outbox_changed(&state);
        }
        let origin = match &rejected {
            Some(_) => Origin::Local,
            None => Origin::Server {
                actor: Some(self.inner.user.id),
                mutation_id: Some(queued.mutation_id),
            },
        };
        self.refresh(&mut state, &[key], &origin);
        if still_queued.is_some() {
            let event = match rejected {
                Some(r) => CacheEvent::Rejected(r),
                None => CacheEvent::Confirmed {
                    mutation_id: queued.mutation_id,
                },
            };
            self.broadcast(&event);
        }
        Ok(())
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn summary(outbox: &[Queued]) -> (u64, Option<DateTime<Utc>>) {
    (outbox.len() as u64, outbox.first().map(|q| q.queued_at))
}

/// The view of one record: the server's version with the pending mutations for it re-applied
/// in order. A mutation that no longer applies locally stays queued; the server decides.
fn compute(
    user: &Staff,
    server: &HashMap<Key, Record>,
    outbox: &[Queued],
    key: Key,
) -> Option<ViewRecord> {
    let mut record = server.get(&key).cloned();
    let mut pending = false;
    for queued in outbox.iter().filter(|q| q.mutation.target() == key) {
        match rules::apply(user, &queued.mutation, record.as_ref(), queued.queued_at) {
            Ok(Effect::Upsert(r)) => {
                record = Some(r);
                pending = true;
            }
            Ok(Effect::Delete { .. }) => {
                record = None;
                pending = true;
            }
            Err(_) => {}
        }
    }
    record
        .filter(|r| rules::visible_to(user, r))
        .map(|record| ViewRecord { record, pending })
}

/// Why one feed connection ended.
enum Ended {
    Resync(String),
    Refused(ErrorCode, String),
    Lost(String),
    Stopped,
}

async fn feed_task(engine: Engine, cursor: u64) {
    let mut stop = engine.inner.stop.subscribe();
    let mut cursor = cursor;
    let mut attempt: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        if cursor == 0 {
            match engine.resync().await {
                Ok(seq) => cursor = seq,
                Err(SyncError::SessionExpired) => {
                    engine.publish_status(|s| {
                        s.state = SyncState::Offline;
                        s.last_error = Some(SyncError::SessionExpired.to_string());
                    });
                    return;
                }
                Err(e) => {
                    engine.publish_status(|s| {
                        s.state = SyncState::Offline;
                        s.last_error = Some(e.to_string());
                    });
                    if backoff(&engine, &mut stop, &mut attempt).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let ended = connect_once(&engine, &mut cursor, &mut attempt, &mut stop).await;
        match ended {
            Ended::Stopped => return,
            Ended::Resync(why) => {
                tracing::info!("resync: {why}");
                engine.publish_status(|s| {
                    s.state = SyncState::Syncing;
                    s.last_error = Some(why);
                });
                cursor = 0;
            }
            Ended::Refused(code, why) => {
                engine.publish_status(|s| {
                    s.state = SyncState::Offline;
                    s.last_error = Some(why);
                });
                if code == ErrorCode::Unauthorized {
                    engine.publish_status(|s| {
                        s.last_error = Some(SyncError::SessionExpired.to_string());
                    });
                    return;
                }
                if backoff(&engine, &mut stop, &mut attempt).await {
                    return;
                }
            }
            Ended::Lost(why) => {
                engine.publish_status(|s| {
                    s.state = SyncState::Offline;
                    s.last_error = Some(why);
                });
                if backoff(&engine, &mut stop, &mut attempt).await {
                    return;
                }
            }
        }
    }
}

/// Waits before the next attempt: exponential, with jitter so that a clinic's worth of
/// apps does not reconnect in lockstep after a server restart. True if stopping.
async fn backoff(engine: &Engine, stop: &mut watch::Receiver<bool>, attempt: &mut u32) -> bool {
    let base = Duration::from_millis(200).saturating_mul(1 << (*attempt).min(6));
    let cap = base.min(engine.inner.config.max_backoff);
    let jitter = rand::random::<f64>() * 0.5 + 0.75;
    *attempt += 1;
    tokio::select! {
        () = tokio::time::sleep(cap.mul_f64(jitter)) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

async fn connect_once(
    engine: &Engine,
    cursor: &mut u64,
    attempt: &mut u32,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let url = format!(
        "{}{}",
        engine.inner.config.server_url.replacen("http", "ws", 1),
        paths::FEED
    );
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_SERVER_FRAME_BYTES))
        .max_frame_size(Some(MAX_SERVER_FRAME_BYTES));
    let connecting = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let mut ws = match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => return Ended::Lost(format!("cannot connect: {e}")),
        Err(_) => return Ended::Lost("connecting timed out".into()),
    };
    let hello = ClientFrame::Hello {
        protocol: PROTOCOL_VERSION,
        token: engine.inner.token.clone(),
        cursor: *cursor,
    };
    let Ok(text) = serde_json::to_string(&hello) else {
        return Ended::Lost("cannot encode hello".into());
    };
    if let Err(e) = ws.send(Message::text(text)).await {
        return Ended::Lost(format!("cannot say hello: {e}"));
    }
    let mut machine = FeedMachine::new(*cursor);
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(engine.inner.config.dead_after, ws.next()) => next,
            _ = stop.wait_for(|s| *s) => return Ended::Stopped,
        };
        let message = match next {
            Err(_) => return Ended::Lost("no heartbeat from the server".into()),
            Ok(None) => return Ended::Lost("the server closed the connection".into()),
            Ok(Some(Err(e))) => return Ended::Lost(format!("connection lost: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        let text = match message {
            Message::Text(t) => t,
            Message::Close(_) => return Ended::Lost("the server closed the connection".into()),
            _ => continue,
        };
        match machine.on_text(text.as_str()) {
            Instruction::Nothing => {}
            Instruction::Apply { changes, upto } => {
                if let Err(e) = engine.apply(changes, upto).await {
                    return Ended::Resync(format!("could not apply changes: {e}"));
                }
                *cursor = upto;
            }
            Instruction::Advance { head } => {
                if let Err(e) = engine.inner.cache.apply(&[], head).await {
                    return Ended::Resync(format!("could not store the cursor: {e}"));
                }
                *cursor = head;
            }
            Instruction::Resync { why } => return Ended::Resync(why),
            Instruction::Fail { code, why } => return Ended::Refused(code, why),
        }
        // Connected and reading: reset the backoff, report, and let queued changes go.
        *attempt = 0;
        let lag = machine.lag();
        engine.publish_status(|s| {
            s.state = if lag == 0 {
                SyncState::Online
            } else {
                SyncState::Syncing
            };
            s.lag = lag;
            s.last_sync = Some(Utc::now());
            s.last_error = None;
        });
        engine.inner.outbox_ready.notify_one();
    }
}

/// Sends the outbox, first in, first out, one at a time so that order is kept.
async fn sender_task(engine: Engine) {
    let stop = engine.inner.stop.subscribe();
    loop {
        if *stop.borrow() {
            return;
        }
        let next = engine.inner.state.lock().await.outbox.first().cloned();
        let Some(queued) = next else {
            engine.inner.outbox_ready.notified().await;
            continue;
        };
        let request = MutationRequest {
            mutation_id: queued.mutation_id,
            mutation: queued.mutation.clone(),
        };
        let sent = engine
            .inner
            .http
            .post(format!(
                "{}{}",
                engine.inner.config.server_url,
                paths::MUTATIONS
            ))
            .bearer_auth(&engine.inner.token)
            .json(&request)
            .send()
            .await;
        let outcome = match sent {
            Ok(r) if r.status().is_success() => {
                r.json::<MutationOutcome>().await.map_err(|e| e.to_string())
            }
            Ok(r) if r.status() == 401 => {
                engine
                    .publish_status(|s| s.last_error = Some(SyncError::SessionExpired.to_string()));
                engine.inner.outbox_ready.notified().await;
                continue;
            }
            Ok(r) => match api_error(r).await {
                // The server understood and refused the request itself: drop it, or it
                // would block every later change.
                SyncError::Refused { code, message } => Ok(MutationOutcome::Rejected {
                    code,
                    message,
                    current: None,
                }),
                other => Err(other.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(outcome) => {
                if let Err(e) = engine.settle(&queued, outcome).await {
                    tracing::error!("could not settle a mutation: {e}");
                }
                engine.publish_status(|_| {});
            }
            Err(why) => {
                // Offline: wait until the feed reconnects (it wakes us), or retry later.
                engine
                    .publish_status(|s| s.last_error = Some(format!("cannot send changes: {why}")));
                let _ = tokio::time::timeout(
                    engine.inner.config.max_backoff,
                    engine.inner.outbox_ready.notified(),
                )
                .await;
            }
        }
    }
}
