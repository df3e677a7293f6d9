//! Embeds tauri.conf.json and ui/, and generates one permission per app command so that each
//! window kind can be granted only the commands it needs (see src-tauri/capabilities/).

/// Every command in `tauri::generate_handler!` (src-tauri/lib.rs), from the one list in
/// `ipc.rs`. A command missing there cannot be granted to any window, so calling it fails
/// with a permission error.
const COMMANDS: &[&str] = names::COMMANDS;

#[allow(dead_code, unreachable_pub)]
mod names {
    include!("ipc_names.rs");
}

fn main() {
    let attributes = tauri_build::Attributes::new()
        .capabilities_path_pattern("./src-tauri/capabilities/**/*")
        .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS));
    println!("cargo:rerun-if-changed=src-tauri/capabilities");
    tauri_build::try_build(attributes).expect("tauri-build failed");
}
