// The names crossing the boundary: events the backend broadcasts and commands windows call.
// (Change batches are not broadcast: each window gets them on the channel it gives `load`.)
// Included by `ipc.rs` (the app) and `build.rs` (permissions); mirrored by `ui/js/ipc.js`.

/// The sync state, [`StatusPayload`].
pub const STATUS: &str = "sync://status";
/// The server refused a change, [`RejectionPayload`].
pub const REJECTION: &str = "sync://rejection";
/// News shown in-app when native notifications are unavailable, [`NoticePayload`].
pub const NOTICE: &str = "app://notice";

/// Every event name, for the test that checks the UI knows each one.
pub const EVENTS: &[&str] = &[STATUS, REJECTION, NOTICE];

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
