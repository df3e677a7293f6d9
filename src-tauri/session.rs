//! The signed-in session: the app's ONE sync engine (one WebSocket, one SQLite cache),
//! and the tasks that carry what it publishes to every window.
//!
//! Every call into the engine is here, but for the dashboards' views, which `watch` reads
//! and keeps current.

use std::sync::Arc;

use clinic_protocol::{Mutation, Record, Staff};
use clinic_sync::{CacheEvent, ChangeKind, Engine, EngineConfig, Origin, Status};
use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::{AppHandle, Emitter};
use uuid::Uuid;

use crate::error::UiError;
use crate::ipc::{self, ChangesPayload, RejectionPayload, StatusPayload, SyncState, ViewRequest};
use crate::news::Newsroom;
use crate::notify;
use crate::watch::Watch;
use crate::windows;

/// A signed-in session. Dropping it stops its forwarding tasks.
pub struct Session {
    pub engine: Engine,
    pub user: Staff,
    pub server: String,
    /// What each window shows, kept current: see [`Watch`].
    watch: Arc<Watch>,
    tasks: Vec<tauri::async_runtime::JoinHandle<()>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user.username)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn config(server: &str, data_dir: &std::path::Path) -> EngineConfig {
    EngineConfig {
        ca_file: crate::config::ca_file(),
        ..EngineConfig::new(server, data_dir)
    }
}

impl Session {
    /// Signs in with a password; with `new_password`, `password` is a one-time password
    /// that is first replaced by the new one.
    pub async fn login(
        app: &AppHandle,
        data_dir: &std::path::Path,
        server: &str,
        username: &str,
        password: &str,
        new_password: Option<&str>,
    ) -> Result<Session, UiError> {
        let config = config(server, data_dir);
        let engine = match new_password {
            None => Engine::login(config, username, password).await?,
            Some(new) => Engine::login_with_new_password(config, username, password, new).await?,
        };
        Ok(Session::start(app, engine, server))
    }

    /// Reopens the last session from its cache, offline if need be, without a password.
    pub async fn resume(
        app: &AppHandle,
        data_dir: &std::path::Path,
        server: &str,
    ) -> Result<Session, UiError> {
        let engine = Engine::resume(config(server, data_dir)).await?;
        Ok(Session::start(app, engine, server))
    }

    fn start(app: &AppHandle, engine: Engine, server: &str) -> Session {
        let user = engine.user();
        let watch = Arc::new(Watch::new(engine.clone()));
        let tasks = vec![
            tauri::async_runtime::spawn(forward_changes(
                app.clone(),
                engine.clone(),
                watch.clone(),
            )),
            tauri::async_runtime::spawn(forward_status(app.clone(), engine.status())),
        ];
        Session {
            engine,
            user,
            server: server.to_owned(),
            watch,
            tasks,
        }
    }

    /// What window `label` shows now (see [`views`]), whole or as a patch to read `base`;
    /// later changes reach it on `updates` (see [`Watch`]).
    pub async fn load(
        &self,
        label: &str,
        request: &ViewRequest,
        base: Option<u64>,
        updates: Channel<InvokeResponseBody>,
    ) -> Result<Arc<str>, UiError> {
        self.watch.load(label, request, base, updates).await
    }

    /// Forgets window `label`, which closed.
    pub async fn forget(&self, label: &str) {
        self.watch.forget(label).await;
    }

    /// Queues a change made in window `origin`; it shows at once, marked pending. The
    /// window's label is kept with the change in the outbox, so that a refusal, even one
    /// that comes after a restart, is told in that window.
    pub async fn submit(&self, origin: &str, mutation: Mutation) -> Result<Uuid, UiError> {
        Ok(self.engine.submit_tagged(mutation, origin).await?)
    }

    pub async fn logout(self) -> Result<(), UiError> {
        self.engine.logout().await?;
        Ok(())
    }
}

/// Tells every window what changed, in batches: everything the engine has published by
/// the time the previous batch went out travels together, so a catch-up of thousands of
/// changes is a handful of messages, not thousands. Each window gets, with the batch, what
/// changed in its view if the batch touches a kind of record it reads (see [`Watch`]).
async fn forward_changes(app: AppHandle, engine: Engine, watch: Arc<Watch>) {
    let mut events = engine.subscribe();
    let mut newsroom = newsroom_from_cache(&engine).await;
    while let Some(first) = events.recv().await {
        let mut batch = vec![first];
        while let Some(more) = events.try_recv() {
            batch.push(more);
        }
        let mut changes = ChangesPayload {
            from: u64::MAX,
            to: 0,
            kinds: Vec::new(),
            reset: false,
            at: 0.0,
            views_ms: 0.0,
        };
        for event in batch {
            match event {
                CacheEvent::Change(change) => {
                    changes.from = changes.from.min(change.seq);
                    changes.to = changes.to.max(change.seq);
                    let kind = match &change.kind {
                        ChangeKind::Upsert { record, .. } => Some(record.kind()),
                        ChangeKind::Remove { kind, .. } => Some(*kind),
                        ChangeKind::Reset => None,
                    };
                    match kind {
                        Some(kind) if !changes.kinds.contains(&kind) => changes.kinds.push(kind),
                        Some(_) => {}
                        None => changes.reset = true,
                    }
                    match (&change.origin, &change.kind) {
                        // A snapshot replaced everything: what it holds is the new baseline
                        // (the cache already has it), not a flood of news.
                        (_, ChangeKind::Reset) => newsroom = newsroom_from_cache(&engine).await,
                        (Origin::Server { actor, .. }, ChangeKind::Upsert { record, .. }) => {
                            newsroom.observe(record, *actor);
                        }
                        (Origin::Server { .. }, ChangeKind::Remove { id, .. }) => {
                            newsroom.forget(*id);
                        }
                        _ => {}
                    }
                }
                CacheEvent::Rejected(rejection) => {
                    let payload = RejectionPayload {
                        origin: rejection
                            .tag
                            .as_deref()
                            .and_then(|t| windows::teller(&app, t)),
                        mutation_id: rejection.mutation_id,
                        code: rejection.code,
                        message: rejection.message,
                        detail: rejection.current.as_ref().and_then(detail),
                    };
                    emit(&app, ipc::REJECTION, payload);
                }
                CacheEvent::Confirmed { .. } => {}
            }
        }
        if changes.from <= changes.to {
            watch.push(&app, changes).await;
        }
        for notice in newsroom.flush() {
            notify::show(&app, notice);
        }
    }
}

/// Where a refused change's record stands now, in a sentence.
fn detail(current: &Record) -> Option<String> {
    match current {
        Record::Booking(b) => Some(format!(
            "Booking for {} is now {}.",
            b.client_name,
            clinic_protocol::rules::status_words(b.status)
        )),
        _ => None,
    }
}

/// A newsroom that knows what the cache holds now: that is old news.
async fn newsroom_from_cache(engine: &Engine) -> Newsroom {
    let known = match engine.queries().all().await {
        Ok(records) => records.into_iter().map(|r| r.record).collect::<Vec<_>>(),
        Err(e) => {
            tracing::warn!("could not read the cache for notifications: {e}");
            Vec::new()
        }
    };
    Newsroom::new(engine.user(), known.iter())
}

async fn forward_status(app: AppHandle, mut status: tokio::sync::watch::Receiver<Status>) {
    loop {
        let payload = status_payload(&status.borrow_and_update());
        emit(&app, ipc::STATUS, payload);
        if status.changed().await.is_err() {
            return;
        }
    }
}

pub(crate) fn status_payload(status: &Status) -> StatusPayload {
    StatusPayload {
        state: match status.state {
            clinic_sync::SyncState::Online => SyncState::Online,
            clinic_sync::SyncState::Syncing => SyncState::Syncing,
            clinic_sync::SyncState::Offline => SyncState::Offline,
        },
        pending: status.pending,
        oldest_pending_secs: status.oldest_pending.map(|d| d.as_secs()),
        lag: status.lag,
        last_sync_at: status.last_sync,
        last_error: status.last_error.clone(),
        session_expired: status.session_expired,
        account_disabled: status.account_disabled,
    }
}

fn emit<T: serde::Serialize + Clone>(app: &AppHandle, event: &str, payload: T) {
    if let Err(e) = app.emit(event, payload) {
        tracing::warn!("could not broadcast {event}: {e}");
    }
}
