//! The [`Engine`] handle the app holds: sign in or resume a session, then read, subscribe
//! and submit while a driver task keeps the cache in sync.
//!
//! The handle ties the parts together and holds no logic of its own: writes go through
//! `writes.rs`, HTTP through `client.rs`, the sync loop is `driver.rs` and reads are
//! [`Queries`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clinic_protocol::{ErrorCode, Id, IssuedPassword, Mutation, NewStaff, Staff, StaffPatch};
use tokio::sync::watch;
use uuid::Uuid;

use crate::cache::Cache;
use crate::client::Client;
use crate::driver::{drive, Link};
use crate::error::SyncError;
use crate::events::{Status, Subscription, View};
use crate::machine::{Report, SyncMachine, SyncState, Timing};
use crate::queries::Queries;
use crate::writes::Writer;

/// Where to sync with and where to keep the cache.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The clinic server's addresses, `https://host:port` each (the feed uses the same host
    /// with `wss://`), in order of preference: several instances sharing one database, or
    /// one address (often a load balancer's). The engine starts with the first and moves to
    /// the next when one stops answering, with its cursor and its outbox (see
    /// [`machine`](crate::machine)). `http://` (and `ws://`) is clear text, fine on
    /// loopback only: see [`insecure_address_warning`](crate::insecure_address_warning).
    pub servers: Vec<String>,
    /// A clinic CA certificate file (PEM) to trust besides the system's roots, for a server
    /// whose certificate the clinic signs itself.
    pub ca_file: Option<PathBuf>,
    /// The platform data dir (tests: a tempdir). The cache lives in
    /// `<data_dir>/<server>/<user id>.db`: one database per clinic server and user, named
    /// after the FIRST address, whichever is in use (they are one clinic).
    pub data_dir: PathBuf,
    /// Heartbeat timeout and reconnect backoff.
    pub timing: Timing,
    /// Longest wait for one HTTP request (login, snapshot, mutation).
    pub request_timeout: Duration,
}

impl EngineConfig {
    /// A clinic server with one address.
    pub fn new(server_url: &str, data_dir: &Path) -> EngineConfig {
        EngineConfig::with_servers(&[server_url], data_dir)
    }

    /// A clinic server with several addresses, the first preferred (trailing slashes,
    /// blanks and repeats are dropped). An empty list is refused when the engine starts.
    pub fn with_servers<S: AsRef<str>>(servers: &[S], data_dir: &Path) -> EngineConfig {
        let mut list: Vec<String> = Vec::new();
        for server in servers {
            let server = server.as_ref().trim().trim_end_matches('/');
            if !server.is_empty() && !list.iter().any(|s| s == server) {
                list.push(server.to_owned());
            }
        }
        EngineConfig {
            servers: list,
            ca_file: None,
            data_dir: data_dir.to_path_buf(),
            timing: Timing::default(),
            request_timeout: Duration::from_secs(15),
        }
    }

    /// One directory per clinic server: its first address made safe as a directory name,
    /// so that an install that had one address keeps its cache when more are added.
    fn server_dir(&self) -> PathBuf {
        let first = self.servers.first().map_or("", String::as_str);
        let safe: String = first
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.data_dir.join(safe)
    }

    /// The HTTP client, with the TLS settings the feed uses too. Fails only on a CA file
    /// that cannot be used.
    fn client(&self) -> Result<Client, SyncError> {
        let tls = crate::tls::client_config(self.ca_file.as_deref())?;
        Client::new(&self.servers, self.request_timeout, tls)
    }
}

/// A clinic server's addresses as a person types them in one field or setting:
/// separated by commas or whitespace ("https://a:7420, https://b:7420"), in order of
/// preference. Blanks are dropped; [`EngineConfig::with_servers`] drops repeats.
pub fn server_list(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[derive(Debug)]
struct Inner {
    config: EngineConfig,
    client: Client,
    token: String,
    writer: Arc<Writer>,
    stop: watch::Sender<bool>,
    driver: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The driver holds the writer, not this, so that it does not keep itself alive: the last
/// [`Engine`] handle going away stops it.
impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// The sync engine: one per app. Cheap to clone; dropping the last clone stops it.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
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
        let client = config.client()?;
        let login = sign_in(&client, username, password, None).await?;
        let dir = config.server_dir();
        let cache = Cache::open(&dir.join(format!("{}.db", login.user.id))).await?;
        cache
            .save_session(&login.token, login.expires_at, &login.user)
            .await?;
        std::fs::write(dir.join("last-user"), login.user.id.to_string())
            .map_err(|e| SyncError::Storage(e.to_string()))?;
        Engine::start(config, client, login.user, login.token, cache, true).await
    }

    /// Signs in with a one-time password, replaces it with `new_password`, and signs in
    /// with that ([`Engine::login`]). The server judges the new password (length, not the
    /// one-time one again) and says why it refuses one.
    pub async fn login_with_new_password(
        config: EngineConfig,
        username: &str,
        one_time_password: &str,
        new_password: &str,
    ) -> Result<Engine, SyncError> {
        let client = config.client()?;
        let login = client.login(username, one_time_password).await?;
        let changed = client
            .change_password(&login.token, one_time_password, new_password)
            .await;
        let _ = client.revoke(&login.token).await;
        changed?;
        Engine::login(config, username, new_password).await
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
        let client = config.client()?;
        Engine::start(config, client, user, token, cache, false).await
    }

    /// Signs the same user in again after the server ended the session (it expired, was
    /// revoked, or the account was disabled and has been enabled since), and syncs on with
    /// the new token: the cache, the outbox, the subscribers and the status stay as they
    /// are, so whatever was queued meanwhile is sent now, once (the server knows each
    /// mutation id). With `new_password`, `password` is a one-time password that is first
    /// replaced (as in [`Engine::login_with_new_password`]).
    ///
    /// Returns the handle to keep from now on; this one stops syncing (its reads and
    /// subscriptions go on working: they share the cache). Only one of two concurrent
    /// calls succeeds; the other is refused with `invalid_value`.
    pub async fn sign_in_again(
        &self,
        password: &str,
        new_password: Option<&str>,
    ) -> Result<Engine, SyncError> {
        let inner = &self.inner;
        let user = inner.writer.user();
        let login = sign_in(&inner.client, &user.username, password, new_password).await?;
        if login.user.id != user.id {
            let _ = inner.client.revoke(&login.token).await;
            return Err(SyncError::Refused {
                code: ErrorCode::InvalidValue,
                message: "That is another account: sign out to sign in as someone else.".into(),
            });
        }
        // Whoever takes the driver first replaces it; a second caller finds none.
        let driver = lock(&inner.driver).take();
        let Some(driver) = driver else {
            let _ = inner.client.revoke(&login.token).await;
            return Err(SyncError::Refused {
                code: ErrorCode::InvalidValue,
                message: "This session was already signed in again or signed out.".into(),
            });
        };
        inner.stop.send_replace(true);
        let _ = driver.await;
        // From here on this handle has no driver: whatever fails below must not leave the
        // app without one, so the writes are best-effort and a new engine always runs.
        let cache = inner.writer.cache();
        if let Err(e) = cache
            .save_session(&login.token, login.expires_at, &login.user)
            .await
        {
            tracing::warn!("could not keep the new session for the next start: {e}");
        }
        if let Err(e) = std::fs::write(
            inner.config.server_dir().join("last-user"),
            login.user.id.to_string(),
        ) {
            tracing::warn!("could not note the signed-in user for the next start: {e}");
        }
        // The old token is replaced: end it on the server too, in case it still works
        // (nothing has to have ended it for this call to be made).
        if let Err(e) = inner.client.revoke(&inner.token).await {
            tracing::info!("could not revoke the replaced token: {e}");
        }
        // Roles that changed while the session was away: a snapshot filtered by the new
        // ones replaces the cache (and the user), as a live feed's `account_changed` would.
        // An unreadable cursor means the same: start from a snapshot.
        let cursor = if login.user.roles == user.roles {
            match cache.meta("cursor").await {
                Ok(c) => c.and_then(|c| c.parse().ok()),
                Err(e) => {
                    tracing::warn!("could not read the sync cursor: {e}");
                    None
                }
            }
        } else {
            None
        };
        Ok(Engine::run(
            inner.config.clone(),
            inner.client.clone(),
            login.token,
            inner.writer.clone(),
            cursor,
        ))
    }

    /// Whether `other` is this very handle (or a clone of it), not one that replaced it
    /// through [`Engine::sign_in_again`].
    pub fn same(&self, other: &Engine) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    async fn start(
        config: EngineConfig,
        client: Client,
        user: Staff,
        token: String,
        cache: Cache,
        fetch_first: bool,
    ) -> Result<Engine, SyncError> {
        let loaded = cache.load().await?;
        let mut cursor = loaded.cursor;
        let link = Link {
            writer: Arc::new(Writer::new(cache, user, loaded)),
            client: client.clone(),
            token: token.clone(),
            connect_timeout: config.timing.dead_after,
        };
        if cursor.is_none() && fetch_first {
            // A new cache answers queries from the start; failing that, the driver retries.
            match link.fetch_snapshot().await {
                Ok(seq) => cursor = Some(seq),
                Err(e) => tracing::warn!("first snapshot failed, will retry: {e}"),
            }
        }
        Ok(Engine::run(config, client, token, link.writer, cursor))
    }

    /// Starts a driver for `writer`'s cache at `cursor` (`None`: from a snapshot).
    fn run(
        config: EngineConfig,
        client: Client,
        token: String,
        writer: Arc<Writer>,
        cursor: Option<u64>,
    ) -> Engine {
        let link = Link {
            writer: writer.clone(),
            client: client.clone(),
            token: token.clone(),
            connect_timeout: config.timing.dead_after,
        };
        let (stop, stopped) = watch::channel(false);
        let machine = SyncMachine::new(config.timing, cursor, rand::random())
            .with_servers(client.server_count(), client.current());
        let driver = tokio::spawn(drive(link, machine, stopped));
        Engine {
            inner: Arc::new(Inner {
                config,
                client,
                token,
                writer,
                stop,
                driver: std::sync::Mutex::new(Some(driver)),
            }),
        }
    }

    /// The signed-in user (roles as of the last snapshot).
    pub fn user(&self) -> Staff {
        self.inner.writer.user()
    }

    /// The address of the server this engine syncs with now (of several, the one in use:
    /// it changes when one stops answering).
    pub fn server_url(&self) -> &str {
        self.inner.client.server_url()
    }

    /// Every address of the clinic server, in order of preference.
    pub fn servers(&self) -> &[String] {
        &self.inner.config.servers
    }

    /// The dashboards' reads, answered from the cache (so offline too) with this user's
    /// pending changes applied. The handle is cheap and stays usable after a shutdown.
    pub fn queries(&self) -> Queries {
        Queries::new(self.inner.writer.cache().pool().clone(), self.user().id)
    }

    /// Every change to what queries return, and every verdict on this user's changes, in
    /// order, from now on. A late subscriber joins without a gap or a duplicate:
    /// 1. `let mut events = engine.subscribe();` (first!)
    /// 2. `let view = engine.view_at().await?;` (everything, at cache seq `view.seq`)
    /// 3. for each [`CacheEvent::Change`](crate::CacheEvent::Change) received, skip it if
    ///    `change.seq <= view.seq`, apply it otherwise; on
    ///    [`ChangeKind::Reset`](crate::ChangeKind::Reset) read `view_at` again.
    ///
    /// [`CacheEvent::Rejected`](crate::CacheEvent::Rejected) and
    /// [`CacheEvent::Confirmed`](crate::CacheEvent::Confirmed) carry no seq: they are
    /// notices, the record itself changes through a `Change`.
    pub fn subscribe(&self) -> Subscription {
        self.inner.writer.subscribe()
    }

    /// The sync status; `changed().await` on the receiver waits for the next one.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.inner.writer.status()
    }

    /// Every visible record with pending changes applied, and the cache sequence number it
    /// is consistent at. See [`Engine::subscribe`] for joining the stream after it.
    pub async fn view_at(&self) -> Result<View, SyncError> {
        let queries = self.queries();
        let (seq, records) = self.inner.writer.at_rest(queries.all()).await;
        Ok(View {
            seq,
            records: records?,
        })
    }

    /// Queues a change and returns its mutation id. It is written to the outbox in SQLite
    /// first, in the same transaction as its optimistic effect on what queries return
    /// (marked pending), then sent when online, in order. A change the rules already
    /// forbid against the cached record is refused here ([`SyncError::Refused`]), unsent.
    pub async fn submit(&self, mutation: Mutation) -> Result<Uuid, SyncError> {
        self.inner.writer.submit(mutation, None).await
    }

    /// [`Engine::submit`], with a tag saying where in the app the change was made (the app
    /// uses the window's label). The tag is stored with the outbox entry, in the same
    /// transaction, and comes back on the server's verdict
    /// ([`Rejected::tag`](crate::Rejected::tag), [`CacheEvent::Confirmed`](crate::CacheEvent::Confirmed)),
    /// even after a restart.
    pub async fn submit_tagged(&self, mutation: Mutation, tag: &str) -> Result<Uuid, SyncError> {
        self.inner.writer.submit(mutation, Some(tag)).await
    }

    /// Changes the signed-in user's password, on the server at once (it needs the
    /// network: [`SyncError::Unreachable`] otherwise, and nothing changes). The server ends
    /// every other session of the user and keeps this one, so the engine goes on syncing
    /// with the same token.
    pub async fn change_password(&self, current: &str, new: &str) -> Result<(), SyncError> {
        self.inner
            .client
            .change_password(&self.inner.token, current, new)
            .await
    }

    /// Makes a staff account (administrators only; the server judges): the account and the
    /// one-time password its owner signs in with once. Over HTTP at once, not through the
    /// outbox: the password exists only in this answer. The account reaches the cache (and
    /// every administrator's) through the feed, like any change.
    pub async fn create_staff(&self, new: &NewStaff) -> Result<IssuedPassword, SyncError> {
        self.inner.client.create_staff(&self.inner.token, new).await
    }

    /// Changes staff account `id` (roles, name, disabled), based on the version in `patch`
    /// (administrators only). Over HTTP at once; the change reaches the cache through the
    /// feed.
    pub async fn change_staff(&self, id: Id, patch: &StaffPatch) -> Result<Staff, SyncError> {
        self.inner
            .client
            .patch_staff(&self.inner.token, id, patch)
            .await
    }

    /// Gives staff account `id` a new one-time password (administrators only), answered
    /// once here; every session of that account ends.
    pub async fn reset_password(&self, id: Id) -> Result<IssuedPassword, SyncError> {
        self.inner
            .client
            .reset_password(&self.inner.token, id)
            .await
    }

    /// The server's refusals of this user's changes that the app has not yet said were
    /// seen ([`Engine::seen_rejection`]), oldest first: each was also sent as a
    /// [`CacheEvent::Rejected`](crate::CacheEvent::Rejected), but a window that was not
    /// open then (the app restarted) learns of them here, with the refused change's values.
    pub async fn rejections(&self) -> Result<Vec<crate::Rejected>, SyncError> {
        self.inner.writer.cache().rejections().await
    }

    /// The user has seen refusal `mutation_id` (dismissed it, or reopened its values): it
    /// is forgotten.
    pub async fn seen_rejection(&self, mutation_id: Uuid) -> Result<(), SyncError> {
        self.inner
            .writer
            .cache()
            .forget_rejection(mutation_id)
            .await
    }

    /// Signs out: stops syncing, revokes the token if the server is reachable, and forgets
    /// the session (the cache and any unsent changes stay on disk for the next login).
    pub async fn logout(&self) -> Result<(), SyncError> {
        self.shutdown().await;
        if let Err(e) = self.inner.client.revoke(&self.inner.token).await {
            tracing::info!("could not revoke the token (offline?): {e}");
        }
        // Only this handle's own session is forgotten: a handle that was replaced, or a
        // renewal that lost a race with signing out and in again, must not sign out the
        // session that is stored now.
        let cache = self.inner.writer.cache();
        if cache.meta("token").await?.as_deref() == Some(self.inner.token.as_str()) {
            cache.delete_meta("token").await?;
            cache.delete_meta("expires_at").await?;
            let last = self.inner.config.server_dir().join("last-user");
            let me = self.inner.writer.user().id.to_string();
            if std::fs::read_to_string(&last).is_ok_and(|id| id.trim() == me) {
                let _ = std::fs::remove_file(last);
            }
        }
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
        self.inner.writer.report(Report {
            state: SyncState::Offline,
            lag: 0,
            error: None,
            session_expired: false,
            account_disabled: false,
            synced: false,
        });
    }
}

/// A std mutex that shrugs off poisoning: the driver's handle is only taken or put.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Signs `username` in; with `new_password`, `password` is a one-time password replaced
/// first. A session that may do nothing but change its password is not kept: it is
/// refused with `password_change_required`, and the caller asks for a new password.
async fn sign_in(
    client: &Client,
    username: &str,
    password: &str,
    new_password: Option<&str>,
) -> Result<clinic_protocol::LoginResponse, SyncError> {
    let password = match new_password {
        Some(new) => {
            let once = client.login(username, password).await?;
            let changed = client.change_password(&once.token, password, new).await;
            let _ = client.revoke(&once.token).await;
            changed?;
            new
        }
        None => password,
    };
    let login = client.login(username, password).await?;
    if login.must_change_password {
        let _ = client.revoke(&login.token).await;
        return Err(SyncError::Refused {
            code: ErrorCode::PasswordChangeRequired,
            message: "This is a one-time password: choose a password of your own to \
                      sign in."
                .into(),
        });
    }
    Ok(login)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_listed_in_order_without_blanks_or_repeats() {
        let typed =
            server_list(" https://a.clinic:7420/, https://b.clinic:7420\nhttps://a.clinic:7420 ,,");
        let config = EngineConfig::with_servers(&typed, Path::new("/data"));
        assert_eq!(
            config.servers,
            ["https://a.clinic:7420", "https://b.clinic:7420"]
        );
        assert!(server_list(" , ").is_empty());
    }

    #[test]
    fn the_cache_directory_is_the_first_address_s_whatever_else_is_listed() {
        let one = EngineConfig::new("https://a.clinic:7420/", Path::new("/data"));
        let two = EngineConfig::with_servers(
            &["https://a.clinic:7420", "https://b.clinic:7420"],
            Path::new("/data"),
        );
        assert_eq!(one.server_dir(), two.server_dir());
        assert_eq!(
            one.server_dir(),
            Path::new("/data/https___a_clinic_7420"),
            "an install with one address keeps its directory"
        );
    }
}
