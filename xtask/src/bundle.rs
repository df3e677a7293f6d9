//! `cargo xtask bundle`: the installable packages, release builds.
//!
//! - the app: `cargo tauri build --bundles deb,rpm` (tauri-cli 2), from the bundle section
//!   of `tauri.conf.json`, into `target/release/bundle/{deb,rpm}/`;
//! - the server: `cargo deb -p clinic-server` (cargo-deb), from `[package.metadata.deb]`
//!   in `crates/clinic-server/Cargo.toml` and `crates/clinic-server/debian/`, into
//!   `target/debian/`;
//! - all three copied into `target/packages/` under Debian-style names.
//!
//! Both bundlers are pure Rust (no rpmbuild, no downloads at build time); cargo-deb asks
//! dpkg-shlibdeps for the server's library dependencies. The AppImage is not built: its
//! bundler downloads linuxdeploy from outside the package registries.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::{cargo, packaging, root, setup, status, target_dir};

pub(crate) fn bundle(rest: &[String]) -> Result<(), String> {
    if !rest.is_empty() {
        return Err(format!("`bundle` takes no arguments, got {rest:?}"));
    }
    // The configuration first: seconds, where a mistake would surface after the build.
    let problems = packaging::check(&root());
    if !problems.is_empty() {
        return Err(format!(
            "the packaging is broken:\n  {}",
            problems.join("\n  ")
        ));
    }
    setup::ensure_build_packages()?;
    setup::ensure_bundle_packages()?;
    setup::ensure_tauri_cli()?;
    setup::ensure_cargo_deb()?;
    let started = SystemTime::now();

    // The app, built in release with Tauri's production feature (`tauri/custom-protocol`)
    // and bundled. `--ci`: no prompts; after `--`: cargo build's own flags.
    status(cargo().args([
        "tauri",
        "build",
        "--bundles",
        "deb,rpm",
        "--ci",
        "--",
        "--locked",
    ]))?;
    // The server. cargo-deb builds it (`cargo build --release -p clinic-server`), strips it
    // and packs it with its unit and maintainer scripts.
    status(cargo().args(["deb", "-p", "clinic-server", "--", "--locked"]))?;

    let release = target_dir().join("release");
    let mut built = Vec::new();
    for (dir, extension) in [
        (release.join("bundle/deb"), "deb"),
        (release.join("bundle/rpm"), "rpm"),
        (target_dir().join("debian"), "deb"),
    ] {
        built.extend(made_since(&dir, extension, started));
    }
    if built.is_empty() {
        return Err("the bundlers reported success but no package is newer than this run".into());
    }
    // All three in one folder, named the Debian way: Tauri names its files after the
    // product name ("Clinic Desk_0.1.0_amd64.deb"), the package inside is clinic-desk.
    let out = target_dir().join("packages");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    eprintln!("\nxtask: packages built, copied into {}:", out.display());
    for (path, bytes) in &built {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase().replace(' ', "-"))
            .unwrap_or_default();
        let copy = out.join(&name);
        fs::copy(path, &copy).map_err(|e| format!("copying {}: {e}", path.display()))?;
        eprintln!("  {}  ({:.1} MB)", copy.display(), *bytes as f64 / 1e6);
    }
    eprintln!(
        "\nInstall on Debian/Ubuntu with `sudo apt install ./<file>.deb` (the README's \"Install\")."
    );
    Ok(())
}

/// The files of `dir` ending in `.extension` written since `since`, with their sizes.
fn made_since(dir: &Path, extension: &str, since: SystemTime) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, u64)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == extension))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            (meta.modified().ok()? >= since).then(|| (e.path(), meta.len()))
        })
        .collect();
    found.sort();
    found
}
