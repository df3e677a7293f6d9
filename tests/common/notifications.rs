//! A test-owned `org.freedesktop.Notifications` on the private session bus: every `Notify`
//! call the app makes is a real D-Bus round trip, recorded here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zbus::OwnedVariant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub app_name: String,
    pub summary: String,
    pub body: String,
    pub actions: Vec<String>,
}

#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Recorded>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Recorder {
    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        _hints: HashMap<String, OwnedVariant>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut seen = self.seen.lock().expect("recorder lock");
        seen.push(Recorded {
            app_name,
            summary,
            body,
            actions,
        });
        u32::try_from(seen.len()).expect("few notifications")
    }

    fn close_notification(&self, _id: u32) {}

    fn get_capabilities(&self) -> Vec<String> {
        vec!["actions".into(), "body".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "clinic-desk-e2e".into(),
            "clinic".into(),
            "1".into(),
            "1.2".into(),
        )
    }
}

/// Owns the notification service name for as long as it lives.
pub struct NotificationService {
    seen: Arc<Mutex<Vec<Recorded>>>,
    connection: zbus::Connection,
}

impl NotificationService {
    /// Claims the name. Call before the app starts, so nothing else gets activated for it.
    pub async fn claim() -> NotificationService {
        let recorder = Recorder::default();
        let seen = recorder.seen.clone();
        let connection = zbus::connection::Builder::session()
            .name("org.freedesktop.Notifications")
            .serve_at("/org/freedesktop/Notifications", recorder)
            .build()
            .await
            .expect("own org.freedesktop.Notifications on the session bus (run under dbus-run-session, as `cargo xtask test` does)");
        NotificationService { seen, connection }
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.seen.lock().expect("recorder lock").clone()
    }

    /// Clicks the body of the `index`th notification recorded (from 0), as a desktop does:
    /// the `ActionInvoked` signal with the "default" action. Its id is `index + 1` (see
    /// `notify`). A signal sent before the app listens for it is lost, so a test repeats
    /// the click until it sees the effect (the app acts on the first one it hears only).
    pub async fn click(&self, index: usize) {
        let id = u32::try_from(index + 1).expect("few notifications");
        self.connection
            .emit_signal(
                None::<&str>,
                "/org/freedesktop/Notifications",
                "org.freedesktop.Notifications",
                "ActionInvoked",
                &(id, "default"),
            )
            .await
            .expect("emit ActionInvoked");
    }
}
