//! The app's state: settings, the current session (if signed in), the window layout, and
//! the demo server when running in demo mode. It opens and closes windows but leaves the
//! menu to its callers (`commands`, `menu`, start-up), so that nothing imports in a circle.

use tauri::{AppHandle, Manager};
use tokio::sync::RwLock;

use clinic_protocol::Role;

use crate::config::{Remembered, Servers, Settings};
use crate::demo::{self, Demo};
use crate::error::UiError;
use crate::ipc::{SessionDto, ViewRequest, WindowDto, Words};
use crate::layout::Layout;
use crate::session::Session;
use crate::windows::{self, WindowKind};

#[derive(Debug)]
pub struct Backend {
    pub settings: Settings,
    pub session: RwLock<Option<Session>>,
    pub layout: Layout,
    demo: RwLock<Option<Demo>>,
}

impl Backend {
    pub fn new(settings: Settings) -> Backend {
        Backend {
            layout: Layout::new(settings.data_dir.join("layout.json")),
            settings,
            session: RwLock::new(None),
            demo: RwLock::new(None),
        }
    }

    /// Where the sync engine keeps its caches (per server and user, inside).
    fn cache_dir(&self) -> std::path::PathBuf {
        if self.settings.args.demo {
            self.settings.data_dir.join("demo").join("cache")
        } else {
            self.settings.data_dir.join("cache")
        }
    }

    /// What happens at start: the demo signs in by itself; otherwise the last session is
    /// resumed from its cache (offline if need be), or the login window opens. Returns the
    /// signed-in user's roles (none when the login window opened).
    pub async fn start(&self, app: &AppHandle) -> anyhow::Result<Vec<Role>> {
        if self.settings.args.demo {
            let demo = demo::start(&self.settings.data_dir.join("demo").join("server")).await?;
            print_demo(&demo);
            let password = demo
                .password_of(demo::DEMO_USER)
                .ok_or_else(|| anyhow::anyhow!("the demo clinic has no user {}", demo::DEMO_USER))?
                .to_owned();
            let url = demo.url.clone();
            *self.demo.write().await = Some(demo);
            return self
                .login(app, &url, demo::DEMO_USER, &password, None)
                .await
                .map_err(|e| anyhow::anyhow!("signing in to the demo clinic: {e}"));
        }
        match Session::resume(app, &self.cache_dir(), &self.settings.server()).await {
            Ok(session) => self.install(app, session).await,
            Err(e) => {
                tracing::info!(
                    "no session to resume ({}), showing the login window",
                    e.code
                );
                windows::open(app, WindowKind::Login, None)?;
                Ok(Vec::new())
            }
        }
    }

    pub async fn login(
        &self,
        app: &AppHandle,
        server: &str,
        username: &str,
        password: &str,
        new_password: Option<&str>,
    ) -> Result<Vec<Role>, UiError> {
        let session = Session::login(
            app,
            &self.cache_dir(),
            server,
            username,
            password,
            new_password,
        )
        .await?;
        if !self.settings.args.demo {
            let remembered = Remembered {
                server: Some(Servers::parse(server)),
                username: Some(username.to_owned()),
            };
            if let Err(e) = remembered.save(&self.settings.remembered_file) {
                tracing::warn!("could not remember the last login: {e:#}");
            }
        }
        self.install(app, session)
            .await
            .map_err(|e| UiError::internal("Could not open the dashboards", e))
    }

    /// Makes `session` current and opens its dashboards: where they were last time, or a
    /// default set tiled side by side. The login window closes only after they are open, so
    /// the app never has zero windows (which would quit it).
    async fn install(&self, app: &AppHandle, session: Session) -> anyhow::Result<Vec<Role>> {
        let roles = session.user().roles;
        *self.session.write().await = Some(session);
        let restored: Vec<_> = self
            .layout
            .restore()
            .into_iter()
            .filter(|(_, kind, _)| kind.allowed_for(&roles))
            .collect();
        if restored.is_empty() {
            windows::open_default_set(app, &roles)?;
        } else {
            for (label, kind, placement) in restored {
                match label {
                    Some(label) => windows::reopen(app, &label, kind, placement)?,
                    None => windows::open(app, kind, Some(placement))?,
                };
            }
        }
        if let Some(login) = app.get_webview_window(WindowKind::Login.as_str()) {
            login.close()?;
        }
        Ok(roles)
    }

    pub async fn logout(&self, app: &AppHandle) -> Result<(), UiError> {
        let session = self.session.write().await.take();
        windows::open(app, WindowKind::Login, None)
            .map_err(|e| UiError::internal("Could not open the login window", e))?;
        self.layout.clear();
        for (label, window) in app.webview_windows() {
            if label != WindowKind::Login.as_str() {
                let _ = window.close();
            }
        }
        match session {
            Some(session) => session.logout().await,
            None => Ok(()),
        }
    }

    /// Signs the current session's user in again after the server ended the session (it
    /// expired or was revoked, or the account was disabled and is enabled again), without
    /// closing a window: the engine syncs on from its cache with a new token, and what was
    /// queued meanwhile goes out, once. With `new_password`, `password` is a one-time
    /// password (an administrator reset it) that is replaced first.
    pub async fn sign_in_again(
        &self,
        password: &str,
        new_password: Option<&str>,
    ) -> Result<(), UiError> {
        let engine = self
            .session
            .read()
            .await
            .as_ref()
            .ok_or_else(UiError::not_signed_in)?
            .engine
            .clone();
        let renewed = engine.sign_in_again(password, new_password).await?;
        let unused = match self.session.write().await.as_mut() {
            // Still the session this renewal started from: it takes the new engine.
            Some(session) if session.engine.same(&engine) => {
                session.engine = renewed;
                None
            }
            // Signed out meanwhile (and perhaps in again, maybe as someone else): the new
            // engine has nothing to sync for, and its token must not outlive the sign-out.
            _ => Some(renewed),
        };
        if let Some(engine) = unused {
            if let Err(e) = engine.logout().await {
                tracing::warn!("could not forget a renewal that came after signing out: {e}");
            }
            return Err(UiError::not_signed_in());
        }
        Ok(())
    }

    pub async fn open_dashboard(&self, app: &AppHandle, kind: WindowKind) -> Result<(), UiError> {
        self.bring_up(app, kind, false).await
    }

    /// Brings up a dashboard of `kind` for a notification that was clicked: the one open
    /// already, else a new one; only while signed in and allowed, like
    /// [`Backend::open_dashboard`] (the role may have gone since the news came).
    pub async fn focus_dashboard(&self, app: &AppHandle, kind: WindowKind) -> Result<(), UiError> {
        self.bring_up(app, kind, true).await
    }

    async fn bring_up(
        &self,
        app: &AppHandle,
        kind: WindowKind,
        reuse: bool,
    ) -> Result<(), UiError> {
        let allowed = |session: &Option<Session>| {
            let user = session.as_ref().ok_or_else(UiError::not_signed_in)?.user();
            if kind == WindowKind::Login || !kind.allowed_for(&user.roles) {
                return Err(UiError::forbidden_window(kind.as_str()));
            }
            Ok(())
        };
        allowed(&*self.session.read().await)?;
        let opened = if reuse {
            windows::focus_or_open(app, kind)
        } else {
            windows::open(app, kind, None)
        };
        opened.map_err(|e| UiError::internal("Could not open the window", e))?;
        // The roles may have changed while the window was being made: the change closed the
        // windows it listed, and this one was not among them yet. Ask again now that it is.
        if let Err(refused) = allowed(&*self.session.read().await) {
            for (label, window) in app.webview_windows() {
                if windows::kind_of(&label) == Some(kind) {
                    if let Err(e) = window.close() {
                        tracing::warn!("could not close {label}: {e}");
                    }
                }
            }
            return Err(refused);
        }
        Ok(())
    }

    /// What window `label` shows now, for `load`, in JSON: only its own dashboard's view,
    /// and only while the user's roles allow that dashboard.
    pub async fn load(
        &self,
        label: &str,
        request: &ViewRequest,
        base: Option<u64>,
        updates: tauri::ipc::Channel<tauri::ipc::InvokeResponseBody>,
    ) -> Result<std::sync::Arc<str>, UiError> {
        let session = self.session.read().await;
        let session = session.as_ref().ok_or_else(UiError::not_signed_in)?;
        let kind = request.kind();
        if windows::kind_of(label) != Some(kind) || !kind.allowed_for(&session.user().roles) {
            return Err(UiError::forbidden_window(kind.as_str()));
        }
        session.load(label, request, base, updates).await
    }

    pub async fn session_dto(&self, label: &str) -> SessionDto {
        let session = self.session.read().await;
        let user = session.as_ref().map(Session::user);
        // Only a dashboard the roles allow takes the notice held for the one that opens (a
        // window about to close for the change asks too).
        let notice = session
            .as_ref()
            .zip(user.as_ref())
            .filter(|(_, u)| {
                windows::kind_of(label)
                    .is_some_and(|k| k != WindowKind::Login && k.allowed_for(&u.roles))
            })
            .and_then(|(s, _)| s.take_notice());
        let server = session
            .as_ref()
            .map_or_else(|| self.settings.server(), |s| s.server.clone());
        let dashboards = user
            .as_ref()
            .map(|u| {
                WindowKind::DASHBOARDS
                    .into_iter()
                    .filter(|k| k.allowed_for(&u.roles))
                    .map(|k| k.dto(None))
                    .collect()
            })
            .unwrap_or_default();
        let window = windows::kind_of(label).map_or_else(
            || WindowDto {
                label: Some(label.to_owned()),
                kind: None,
                title: "Clinic Desk",
                shortcut: None,
            },
            |k| k.dto(Some(label)),
        );
        SessionDto {
            user,
            server_warning: crate::config::server_warning(&server),
            server,
            last_username: self.settings.remembered().username,
            window,
            dashboards,
            measure: self.settings.args.measure,
            words: Words::new(),
            min_password_chars: clinic_protocol::wire::MIN_PASSWORD_CHARS,
            max_short_text: clinic_protocol::wire::MAX_SHORT_TEXT,
            notice,
        }
    }
}

/// Demo mode prints its logins so a new user can also reach the server with curl.
#[allow(clippy::print_stdout)]
fn print_demo(demo: &Demo) {
    println!("Clinic Desk demo: clinic server at {}", demo.url);
    println!("  web intake key: {}", clinic_server::demo::DEMO_INTAKE_KEY);
    for login in &demo.logins {
        let roles: Vec<&str> = login.roles.iter().map(|r| r.as_str()).collect();
        println!(
            "  {:<8} password {:<6} {} ({})",
            login.username,
            login.password,
            login.display_name,
            roles.join(", ")
        );
    }
}
