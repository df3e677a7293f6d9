//! Tauri commands: thin wrappers the windows call. Every command a window may call must
//! also be listed in `build.rs` (which generates its permission) and granted to that window's
//! kind in `src-tauri/capabilities/`.

use serde::Serialize;
use tauri::{AppHandle, Emitter, WebviewWindow};

use crate::events;

#[derive(Debug, Clone, Serialize)]
pub struct Ping {
    pub from: String,
    pub count: u64,
}

/// Broadcasts a ping from the calling window to every window.
#[tauri::command]
pub fn ping(app: AppHandle, window: WebviewWindow, count: u64) -> Result<(), String> {
    let ping = Ping {
        from: window.label().to_owned(),
        count,
    };
    app.emit(events::PING, ping).map_err(|e| e.to_string())
}
