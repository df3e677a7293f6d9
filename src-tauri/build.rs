fn main() {
    // Capability files live in src-tauri/capabilities, not next to tauri.conf.json.
    let attributes =
        tauri_build::Attributes::new().capabilities_path_pattern("./src-tauri/capabilities/**/*");
    tauri_build::try_build(attributes).expect("tauri-build failed");
}
