//! Shows native notifications (notify-rust, over the session D-Bus), one per piece of news
//! per app, and falls back to an in-app banner when the notification service is missing.
//! It also knows whether notifications work ([`health`]), for the sync panel: from asking
//! the service who it is when a session starts, then from every notification shown.

use std::sync::LazyLock;

use notify_rust::Notification;
use tauri::{AppHandle, Emitter};
use tokio::sync::watch;

use crate::ipc::{self, NoticePayload};
use crate::news::Notice;
use crate::windows;

/// The action id of a click on the notification body (the freedesktop convention).
const DEFAULT_ACTION: &str = "default";

/// Whether desktop notifications work, as far as the app knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Not asked yet.
    Unknown,
    /// The service answered; `server` is what it calls itself.
    Working { server: String },
    /// The service is missing or failed; news is shown inside the app instead.
    Unavailable { error: String },
}

/// One per process, like the notifications themselves (the session bus is the process's).
static HEALTH: LazyLock<watch::Sender<Health>> =
    LazyLock::new(|| watch::channel(Health::Unknown).0);

/// The current [`Health`]; `changed().await` waits for the next.
pub fn health() -> watch::Receiver<Health> {
    HEALTH.subscribe()
}

fn set_health(health: Health) {
    HEALTH.send_if_modified(|now| {
        let changed = *now != health;
        if changed {
            *now = health;
        }
        changed
    });
}

/// Asks the notification service who it is, without showing anything, so that the sync
/// panel can say whether notifications work before the first one is due.
pub fn probe() {
    tauri::async_runtime::spawn_blocking(|| match notify_rust::get_server_information() {
        Ok(info) => set_health(Health::Working {
            server: format!("{} {}", info.name, info.version),
        }),
        Err(e) => set_health(Health::Unavailable {
            error: e.to_string(),
        }),
    });
}

/// Shows `notice`. Never fails: a missing or broken notification service is logged and the
/// news is shown inside the app instead.
pub fn show(app: &AppHandle, notice: Notice) {
    let app = app.clone();
    // notify-rust talks D-Bus synchronously and `wait_for_action` blocks until the
    // notification is clicked or closed, so each notification gets its own blocking thread.
    tauri::async_runtime::spawn_blocking(move || {
        let shown = Notification::new()
            .appname("Clinic Desk")
            .summary(&notice.summary)
            .body(&notice.body)
            .action(DEFAULT_ACTION, "Open")
            .show();
        match shown {
            Ok(handle) => {
                // The service took it; a service that took the probe but not this one
                // would have said so below.
                if !matches!(*HEALTH.borrow(), Health::Working { .. }) {
                    set_health(Health::Working {
                        server: "the desktop's notification service".into(),
                    });
                }
                let open = notice.open;
                handle.wait_for_action(|action| {
                    if action == DEFAULT_ACTION {
                        tracing::info!("a notification was clicked: bringing up {open}");
                        if let Err(e) = windows::focus_or_open(&app, open) {
                            tracing::warn!("could not open the {open} dashboard: {e}");
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!("notification service unavailable, showing the news in-app: {e}");
                set_health(Health::Unavailable {
                    error: e.to_string(),
                });
                let payload = NoticePayload {
                    title: notice.summary,
                    body: notice.body,
                    kind: notice.open.as_str().to_owned(),
                    to: None,
                };
                if let Err(e) = app.emit(ipc::NOTICE, payload) {
                    tracing::warn!("could not show the news in-app either: {e}");
                }
            }
        }
    });
}
