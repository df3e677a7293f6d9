//! Names of the events the backend broadcasts to windows, in one place. The UI's copy of
//! these names is `ui/js/ipc.js`; a test keeps the two in step.

/// A probe broadcast to every window (the workspace's first end-to-end test uses it).
pub const PING: &str = "app://ping";

/// Every event name, for the test that checks the UI knows each one.
pub const ALL: &[&str] = &[PING];
