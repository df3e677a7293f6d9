//! The signed-in session: the app's ONE sync engine (one WebSocket, one SQLite cache),
//! and the tasks that carry what it publishes to every window.
//!
//! Every call into `clinic_sync` is in this module.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use clinic_protocol::{Mutation, Staff};
use clinic_sync::{CacheEvent, ChangeKind, Engine, EngineConfig, Origin, Status};
use tauri::{AppHandle, Emitter};
use uuid::Uuid;

use crate::error::UiError;
use crate::events::{self, ChangeDto, ChangesPayload, RejectionPayload, StatusPayload, SyncState};
use crate::news::Newsroom;
use crate::notify;

/// What windows read when they (re)load: every record and the cache sequence it is at.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ViewDto {
    pub seq: u64,
    pub records: Vec<RecordDto>,
    pub status: StatusPayload,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordDto {
    pub record: clinic_protocol::Record,
    pub pending: bool,
}

/// A signed-in session. Dropping it stops its forwarding tasks.
pub struct Session {
    pub engine: Engine,
    pub user: Staff,
    pub server: String,
    /// Which window each pending mutation came from, so that only that window tells the
    /// user when the server refuses it.
    origins: Arc<Mutex<HashMap<Uuid, String>>>,
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
    EngineConfig::new(server, data_dir)
}

impl Session {
    /// Signs in with a password.
    pub async fn login(
        app: &AppHandle,
        data_dir: &std::path::Path,
        server: &str,
        username: &str,
        password: &str,
    ) -> Result<Session, UiError> {
        let engine = Engine::login(config(server, data_dir), username, password).await?;
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
        let origins = Arc::new(Mutex::new(HashMap::new()));
        let tasks = vec![
            tauri::async_runtime::spawn(forward_changes(
                app.clone(),
                engine.clone(),
                origins.clone(),
            )),
            tauri::async_runtime::spawn(forward_status(app.clone(), engine.status())),
        ];
        Session {
            engine,
            user,
            server: server.to_owned(),
            origins,
            tasks,
        }
    }

    pub async fn view(&self) -> Result<ViewDto, UiError> {
        let view = self.engine.view_at().await?;
        Ok(ViewDto {
            seq: view.seq,
            records: view
                .records
                .into_iter()
                .map(|r| RecordDto {
                    record: r.record,
                    pending: r.pending,
                })
                .collect(),
            status: status_payload(&self.engine.status().borrow()),
        })
    }

    /// Queues a change made in window `origin`; it shows at once, marked pending.
    pub async fn submit(&self, origin: &str, mutation: Mutation) -> Result<Uuid, UiError> {
        let id = self.engine.submit(mutation).await?;
        self.origins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, origin.to_owned());
        Ok(id)
    }

    pub async fn logout(self) -> Result<(), UiError> {
        self.engine.logout().await?;
        Ok(())
    }
}

/// Carries cache changes to every window, in batches: everything the engine has published
/// by the time the previous batch went out travels together, so a catch-up of thousands of
/// changes is a handful of events, not thousands.
async fn forward_changes(
    app: AppHandle,
    engine: Engine,
    origins: Arc<Mutex<HashMap<Uuid, String>>>,
) {
    let mut events = engine.subscribe();
    let mut newsroom = newsroom_from_cache(&engine).await;
    while let Some(first) = events.recv().await {
        let mut batch = vec![first];
        while let Some(more) = events.try_recv() {
            batch.push(more);
        }
        let mut changes = Vec::with_capacity(batch.len());
        let (mut from, mut to) = (u64::MAX, 0);
        for event in batch {
            match event {
                CacheEvent::Change(change) => {
                    from = from.min(change.seq);
                    to = to.max(change.seq);
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
                    changes.push(match change.kind {
                        ChangeKind::Upsert { record, pending } => {
                            ChangeDto::Upsert { record, pending }
                        }
                        ChangeKind::Remove { kind, id } => ChangeDto::Remove { kind, id },
                        ChangeKind::Reset => ChangeDto::Reset,
                    });
                }
                CacheEvent::Rejected(rejection) => {
                    let origin = origins
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&rejection.mutation_id);
                    let payload = RejectionPayload {
                        origin,
                        mutation_id: rejection.mutation_id,
                        code: rejection.code,
                        message: rejection.message,
                        current: rejection.current,
                    };
                    emit(&app, events::REJECTION, payload);
                }
                CacheEvent::Confirmed { mutation_id } => {
                    origins
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&mutation_id);
                }
            }
        }
        if !changes.is_empty() {
            emit(&app, events::CHANGES, ChangesPayload { from, to, changes });
        }
        for notice in newsroom.flush() {
            notify::show(&app, notice);
        }
    }
}

/// A newsroom that knows what the cache holds now: that is old news.
async fn newsroom_from_cache(engine: &Engine) -> Newsroom {
    let known = match engine.view_at().await {
        Ok(view) => view
            .records
            .into_iter()
            .map(|r| r.record)
            .collect::<Vec<_>>(),
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
        emit(&app, events::STATUS, payload);
        if status.changed().await.is_err() {
            return;
        }
    }
}

fn status_payload(status: &Status) -> StatusPayload {
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
    }
}

fn emit<T: serde::Serialize + Clone>(app: &AppHandle, event: &str, payload: T) {
    if let Err(e) = app.emit(event, payload) {
        tracing::warn!("could not broadcast {event}: {e}");
    }
}
