//! The signed-in session: the app's ONE sync engine (one WebSocket, one SQLite cache),
//! and the tasks that carry what it publishes to every window.
//!
//! Every call into the engine is here, but for the dashboards' views, which `watch` reads
//! and keeps current.

use std::sync::Arc;

use clinic_protocol::{Mutation, Record, Role, Staff};
use clinic_sync::{CacheEvent, ChangeKind, Engine, EngineConfig, Origin};
use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::{AppHandle, Emitter, Manager};
use uuid::Uuid;

use crate::error::UiError;
use crate::ipc::{self, ChangesPayload, NoticePayload, RejectionPayload, ViewRequest};
use crate::news::Newsroom;
use crate::notify;
use crate::watch::Watch;
use crate::windows::{self, WindowKind};

/// A notice kept for the next window that opens (see [`Session::take_notice`]).
type HeldNotice = Arc<std::sync::Mutex<Option<NoticePayload>>>;

/// A signed-in session. Dropping it stops its forwarding tasks.
pub struct Session {
    pub engine: Engine,
    /// The clinic server's addresses as the login form shows them (comma-separated when
    /// there are several; the engine says which one is in use).
    pub server: String,
    /// Why windows closed when none was left to say it: for the window opened in their
    /// place.
    held: HeldNotice,
    /// What each window shows, kept current: see [`Watch`].
    watch: Arc<Watch>,
    tasks: Vec<tauri::async_runtime::JoinHandle<()>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user().username)
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

/// `server` holds one address or several ([`clinic_sync::server_list`]); the cache is
/// the first one's, whichever is in use.
fn config(server: &str, data_dir: &std::path::Path) -> EngineConfig {
    EngineConfig {
        ca_file: crate::config::ca_file(),
        ..EngineConfig::with_servers(&clinic_sync::server_list(server), data_dir)
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
        // The sync panel says whether notifications work before the first one is due.
        notify::probe();
        let watch = Arc::new(Watch::new(engine.clone()));
        let held = HeldNotice::default();
        let tasks = vec![
            tauri::async_runtime::spawn(forward_changes(
                app.clone(),
                engine.clone(),
                watch.clone(),
                held.clone(),
            )),
            tauri::async_runtime::spawn(crate::status::forward(app.clone(), engine.clone())),
        ];
        Session {
            engine,
            server: crate::config::Servers::parse(server).text(),
            held,
            watch,
            tasks,
        }
    }

    /// The signed-in user as the server last said (roles change while signed in: an
    /// administrator's change arrives as a new snapshot).
    pub fn user(&self) -> Staff {
        self.engine.user()
    }

    /// The notice held for the next window that opens, once.
    pub fn take_notice(&self) -> Option<NoticePayload> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
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
async fn forward_changes(app: AppHandle, engine: Engine, watch: Arc<Watch>, held: HeldNotice) {
    let mut events = engine.subscribe();
    let mut newsroom = newsroom_from_cache(&engine).await;
    let mut roles = engine.user().roles;
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
                    emit(
                        &app,
                        ipc::REJECTION,
                        rejection_payload(&app, &roles, rejection),
                    );
                }
                CacheEvent::Confirmed { .. } => {}
            }
        }
        // A change to the user's own roles comes as a snapshot (the server resyncs the
        // feed first), which replaces the engine's user: the windows the new roles do not
        // allow close before the batch reaches them.
        let now = engine.user().roles;
        if now != roles {
            roles_changed(&app, &roles, &now, &held);
            roles = now;
        }
        if changes.from <= changes.to {
            watch.push(&app, changes).await;
        }
        for notice in newsroom.flush() {
            notify::show(&app, notice);
        }
    }
}

/// How the app menu follows the user's roles, set once at start-up (lib.rs) to
/// `menu::enable_for`: the menu module uses the backend, which uses this one, so this one
/// is handed the function rather than using the menu module.
static MENU_FOLLOWS: std::sync::OnceLock<fn(&AppHandle, &[Role])> = std::sync::OnceLock::new();

/// Sets how the menu follows a change of roles (once; later calls are ignored).
pub fn menu_follows_roles(follow: fn(&AppHandle, &[Role])) {
    let _ = MENU_FOLLOWS.set(follow);
}

/// The user's roles changed from `before` to `now`: the dashboards they no longer allow
/// close, and a window that stays says why (or, if none stays, one of the new roles' opens
/// and says it); the menu follows the new roles.
fn roles_changed(app: &AppHandle, before: &[Role], now: &[Role], held: &HeldNotice) {
    tracing::info!("the user's roles changed: {before:?} -> {now:?}");
    emit(app, ipc::ROLES_CHANGED, now.to_vec());
    if let Some(follow) = MENU_FOLLOWS.get() {
        follow(app, now);
    }
    let mut closing: Vec<(String, WindowKind)> = Vec::new();
    let mut staying: Vec<String> = Vec::new();
    for label in app.webview_windows().into_keys() {
        match windows::kind_of(&label) {
            None | Some(WindowKind::Login) => {}
            Some(kind) if kind.allowed_for(now) => staying.push(label),
            Some(kind) => closing.push((label, kind)),
        }
    }
    if closing.is_empty() {
        return;
    }
    let notice = role_notice(&closing, now);
    staying.sort();
    match staying.first() {
        Some(label) => emit(
            app,
            ipc::NOTICE,
            NoticePayload {
                to: Some(label.clone()),
                ..notice
            },
        ),
        None => {
            // Opened before the others close, so that the app never has no window (it
            // would quit).
            *held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(notice);
            if let Some(kind) = windows::default_set(now).first() {
                if let Err(e) = windows::open(app, *kind, None) {
                    tracing::warn!("could not open the {kind} dashboard: {e}");
                }
            }
        }
    }
    for (label, _) in closing {
        if let Some(window) = app.get_webview_window(&label) {
            if let Err(e) = window.close() {
                tracing::warn!("could not close {label}: {e}");
            }
        }
    }
}

/// "Your roles changed: the Operator window was closed." and the roles now.
fn role_notice(closing: &[(String, WindowKind)], now: &[Role]) -> NoticePayload {
    let mut kinds: Vec<WindowKind> = closing.iter().map(|(_, k)| *k).collect();
    kinds.sort_by_key(|k| WindowKind::DASHBOARDS.iter().position(|d| d == k));
    kinds.dedup();
    let titles: Vec<&str> = kinds.iter().map(|k| k.title()).collect();
    let closed = match titles.as_slice() {
        [one] => format!("the {one} window was closed"),
        [first @ .., last] => format!("the {} and {last} windows were closed", first.join(", ")),
        [] => String::new(),
    };
    let roles: Vec<&str> = now.iter().map(|r| r.label()).collect();
    NoticePayload {
        title: "Your roles changed".into(),
        body: format!(
            "Your roles changed: {closed}. You are now: {}.",
            roles.join(", ")
        ),
        kind: "roles".into(),
        to: None,
    }
}

/// The refusals window `label` has to tell and the user has not seen yet: the ones of
/// changes made in it, and of changes made in a window that is gone if `label` is the one
/// to tell them instead ([`windows::teller`]). Refusals are kept in the cache until seen
/// (`Engine::seen_rejection`, when the user dismisses or reopens one): the event is sent
/// once, when the server answers, and a window that was not open then (the app restarted
/// in between, or was starting) asks for them when it loads. So what was typed in a
/// refused change survives a restart. It takes the engine, not the session, so that the
/// caller does not hold the session lock across the cache read.
pub async fn rejections(
    app: &AppHandle,
    engine: &Engine,
    label: &str,
) -> Result<Vec<RejectionPayload>, UiError> {
    let roles = engine.user().roles;
    Ok(engine
        .rejections()
        .await?
        .into_iter()
        .map(|r| rejection_payload(app, &roles, r))
        .filter(|r| r.origin.as_deref() == Some(label))
        .collect())
}

/// A refusal as the windows hear it: told in the window the change was made in, or another
/// of its kind if that one is gone, or else the first dashboard ([`windows::teller`]). When
/// that last one is of another kind and the change has a form, it offers to open a window
/// of the change's kind (if `roles` allow one), which then tells it with its form: a window
/// of another kind has no form to put the typed values back in.
fn rejection_payload(
    app: &AppHandle,
    roles: &[Role],
    rejection: clinic_sync::Rejected,
) -> RejectionPayload {
    let origin = windows::teller(app, rejection.tag.as_deref());
    let reopen = ipc::Reopen::of(&rejection.mutation);
    let made_in = rejection.tag.as_deref().and_then(windows::kind_of);
    let open = match (reopen, made_in) {
        (Some(_), Some(kind))
            if origin.as_deref().and_then(windows::kind_of) != Some(kind)
                && kind.allowed_for(roles) =>
        {
            Some(kind.dto(None))
        }
        _ => None,
    };
    RejectionPayload {
        origin,
        mutation_id: rejection.mutation_id,
        code: rejection.code,
        message: rejection.message,
        detail: rejection.current.as_ref().and_then(detail),
        on: match &rejection.current {
            Some(Record::Booking(b)) => Some(b.date),
            Some(Record::Slot(s)) => Some(s.date),
            _ => None,
        },
        reopen,
        open,
        mutation: rejection.mutation,
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

/// A newsroom that knows what the cache holds now: that is old news. It reads the staff and
/// the few bookings it remembers ([`Newsroom::recalls`]), never the whole cache.
async fn newsroom_from_cache(engine: &Engine) -> Newsroom {
    let me = engine.user();
    let queries = engine.queries();
    let read = async {
        let staff = queries.staff().await?;
        let mut known = Vec::new();
        for query in Newsroom::recalls(&me) {
            known.extend(queries.bookings(&query).await?);
        }
        Ok::<_, clinic_sync::SyncError>((staff, known))
    };
    let (staff, known) = read.await.unwrap_or_else(|e| {
        tracing::warn!("could not read the cache for notifications: {e}");
        Default::default()
    });
    Newsroom::new(me, &staff, known.iter().map(|b| &b.record))
}

fn emit<T: serde::Serialize + Clone>(app: &AppHandle, event: &str, payload: T) {
    if let Err(e) = app.emit(event, payload) {
        tracing::warn!("could not broadcast {event}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_notice_names_the_closed_windows_and_the_roles_now() {
        let closing = |kinds: &[WindowKind]| -> Vec<(String, WindowKind)> {
            kinds.iter().map(|k| (format!("{k}-1"), *k)).collect()
        };
        let one = role_notice(&closing(&[WindowKind::Operator]), &[Role::Therapist]);
        assert_eq!(
            one.body,
            "Your roles changed: the Operator window was closed. You are now: Therapist."
        );
        let three = role_notice(
            &closing(&[
                WindowKind::Scheduling,
                WindowKind::Operator,
                WindowKind::Operator,
                WindowKind::Admin,
            ]),
            &[Role::Driver, Role::Therapist],
        );
        assert_eq!(
            three.body,
            "Your roles changed: the Operator, Scheduling and Staff windows were closed. \
             You are now: Driver, Therapist."
        );
        assert!(three.to.is_none());
    }
}
