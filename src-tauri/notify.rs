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
use crate::windows::WindowKind;

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

/// What a click on a notification does with the dashboard it names. Set once at start-up
/// (lib.rs) to the backend's opener, which checks that the user is signed in and allowed
/// that dashboard: the backend uses this module, so this module does not use it back.
static OPENER: std::sync::OnceLock<fn(&AppHandle, WindowKind)> = std::sync::OnceLock::new();

/// Sets what a click on a notification does (once; later calls are ignored).
pub fn on_click(opener: fn(&AppHandle, WindowKind)) {
    let _ = OPENER.set(opener);
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

/// `text` as plain text in a notification body: freedesktop notification services may read
/// the body as markup (links, images, bold), and a body holds what people typed, such as a
/// client's name from the public intake form, so `&`, `<` and `>` are escaped.
fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
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
            .body(&escape_markup(&notice.body))
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
                        // Clicked maybe long after it came: signed out since, or the role
                        // gone, the opener leaves the window closed, as the menu would.
                        match OPENER.get() {
                            Some(opener) => opener(&app, open),
                            None => tracing::warn!("no opener for a clicked notification"),
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

#[cfg(test)]
mod tests {
    use super::escape_markup;

    #[test]
    fn a_body_is_shown_as_text_not_markup() {
        assert_eq!(
            escape_markup("<a href=\"x\">Ann & <b>Bo</b></a>"),
            "&lt;a href=\"x\"&gt;Ann &amp; &lt;b&gt;Bo&lt;/b&gt;&lt;/a&gt;"
        );
        assert_eq!(escape_markup("Plain text, 3 > 2"), "Plain text, 3 &gt; 2");
        assert_eq!(escape_markup("&amp;"), "&amp;amp;");
    }
}
