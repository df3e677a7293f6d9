//! Embeds tauri.conf.json and ui/, and generates one permission per app command so that each
//! window kind can be granted only the commands it needs (see src-tauri/capabilities/).

/// Every command in `tauri::generate_handler!` (src-tauri/lib.rs). A command missing here
/// cannot be granted to any window, so calling it fails with a permission error.
const COMMANDS: &[&str] = &[
    "session",
    "login",
    "logout",
    "load_view",
    "submit",
    "open_window",
];

fn main() {
    let attributes = tauri_build::Attributes::new()
        .capabilities_path_pattern("./src-tauri/capabilities/**/*")
        .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS));
    println!("cargo:rerun-if-changed=src-tauri/capabilities");
    tauri_build::try_build(attributes).expect("tauri-build failed");
}
