//! Clinic Desk, the desktop app: one backend process, any number of dashboard windows.
//!
//! - [`windows`]: window kinds and labels, opening windows.
//! - [`events`]: names of the events broadcast to windows.
//! - [`commands`]: the Tauri commands windows call.

pub mod commands;
pub mod events;
pub mod windows;

use windows::WindowKind;

/// Starts the app and blocks until it quits.
pub fn run() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    tauri::Builder::default()
        .invoke_handler(tauri::generate_handler![commands::ping])
        .setup(|app| {
            for kind in [WindowKind::Operator, WindowKind::Therapist] {
                windows::open(app.handle(), kind, None)?;
            }
            Ok(())
        })
        .run(tauri::generate_context!())
        .expect("error while running Clinic Desk");
}
