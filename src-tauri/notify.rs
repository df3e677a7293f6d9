//! Shows native notifications (notify-rust, over the session D-Bus), one per piece of news
//! per app, and falls back to an in-app banner when the notification service is missing.

use notify_rust::Notification;
use tauri::{AppHandle, Emitter};

use crate::ipc::{self, NoticePayload};
use crate::news::Notice;
use crate::windows;

/// The action id of a click on the notification body (the freedesktop convention).
const DEFAULT_ACTION: &str = "default";

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
                let open = notice.open;
                handle.wait_for_action(|action| {
                    if action == DEFAULT_ACTION {
                        if let Err(e) = windows::focus_or_open(&app, open) {
                            tracing::warn!("could not open the {open} dashboard: {e}");
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!("notification service unavailable, showing the news in-app: {e}");
                let payload = NoticePayload {
                    title: notice.summary,
                    body: notice.body,
                    kind: notice.open.as_str().to_owned(),
                };
                if let Err(e) = app.emit(ipc::NOTICE, payload) {
                    tracing::warn!("could not show the news in-app either: {e}");
                }
            }
        }
    });
}
