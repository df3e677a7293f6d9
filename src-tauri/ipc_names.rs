// The names crossing the boundary: events the backend broadcasts and commands windows call.
// (Change batches are not broadcast: each window gets them on the channel it gives `load`.)
// Included by `ipc.rs` (the app) and `build.rs` (permissions); mirrored by `ui/js/ipc.js`.

/// The sync state, [`StatusPayload`].
pub const STATUS: &str = "sync://status";
/// The server refused a change, [`RejectionPayload`].
pub const REJECTION: &str = "sync://rejection";
/// News shown in-app when native notifications are unavailable, [`NoticePayload`].
pub const NOTICE: &str = "app://notice";

/// The menu's "Change password…" was chosen: the window named in the payload (a label)
/// opens the change-password dialog.
pub const CHANGE_PASSWORD: &str = "app://change-password";

/// The signed-in user's roles changed (an administrator changed them): the roles now. The
/// windows that stay ask for their session again (their Window menu), and the app's menu
/// follows.
pub const ROLES_CHANGED: &str = "app://roles-changed";

/// Every event name, for the test that checks the UI knows each one.
pub const EVENTS: &[&str] = &[STATUS, REJECTION, NOTICE, CHANGE_PASSWORD, ROLES_CHANGED];

/// Every command, as `tauri::generate_handler!` in `lib.rs` registers them and `build.rs`
/// makes permissions for them.
pub const COMMANDS: &[&str] = &[
    "session",
    "login",
    "logout",
    "load",
    "submit",
    "rejections",
    "seen_rejection",
    "open_window",
    "sign_in_again",
    "change_password",
    "create_staff",
    "change_staff",
    "reset_password",
];
