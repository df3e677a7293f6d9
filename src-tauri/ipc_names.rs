// The names crossing the boundary: events the backend broadcasts and commands windows call.
// Included by `ipc.rs` (the app) and `build.rs` (permissions); mirrored by `ui/js/ipc.js`.

/// Cache changes happened, [`ChangesPayload`].
pub const CHANGES: &str = "cache://changes";
/// The sync state, [`StatusPayload`].
pub const STATUS: &str = "sync://status";
/// The server refused a change, [`RejectionPayload`].
pub const REJECTION: &str = "sync://rejection";
/// News shown in-app when native notifications are unavailable, [`NoticePayload`].
pub const NOTICE: &str = "app://notice";

/// Every event name, for the test that checks the UI knows each one.
pub const EVENTS: &[&str] = &[CHANGES, STATUS, REJECTION, NOTICE];

/// Every command, as `tauri::generate_handler!` in `lib.rs` registers them and `build.rs`
/// makes permissions for them.
pub const COMMANDS: &[&str] = &[
    "session",
    "login",
    "logout",
    "load",
    "submit",
    "open_window",
];
