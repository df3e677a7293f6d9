//! Machine set-up: installs what is missing, says what it installs, and does nothing (in
//! well under a second) when everything is there already.

use std::env;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::status;

/// What building the app needs: the WebKitGTK development files (they pull in GTK, libsoup
/// and libdbus) and a C toolchain with pkg-config for the -sys crates.
const BUILD_PACKAGES: &[Need] = &[
    Need::PkgConfig("webkit2gtk-4.1", "libwebkit2gtk-4.1-dev"),
    Need::Binary("pkg-config", "pkg-config"),
    Need::Binary("cc", "build-essential"),
];

/// What the end-to-end tests need: a virtual display, the WebKit WebDriver, a session bus.
const TEST_PACKAGES: &[Need] = &[
    Need::Binary("Xvfb", "xvfb"),
    Need::Binary("xvfb-run", "xvfb"),
    Need::Binary("xauth", "xauth"),
    Need::Binary("WebKitWebDriver", "webkit2gtk-driver"),
    Need::Binary("dbus-run-session", "dbus"),
    Need::Binary("dbus-daemon", "dbus"),
    // `import`, for the screenshot of the dashboards side by side.
    Need::Binary("import", "imagemagick"),
];

/// What the benchmarks need beside the test packages: node and npm for the Socket.IO peer,
/// strace to count the servers' write syscalls, taskset to pin each side to its own core.
const BENCH_PACKAGES: &[Need] = &[
    Need::Binary("node", "nodejs"),
    Need::Binary("npm", "npm"),
    Need::Binary("strace", "strace"),
    Need::Binary("taskset", "util-linux"),
];

/// What the server suite's PostgreSQL run needs: the server programs (Debian's
/// `postgresql`, which puts them under /usr/lib/postgresql/<version>/bin, off PATH) and
/// `pg_virtualenv` (postgresql-common), which makes the throwaway cluster and removes it.
const POSTGRES_PACKAGES: &[Need] = &[
    Need::InAnyVersion("/usr/lib/postgresql", "bin/initdb", "postgresql"),
    Need::Binary("pg_virtualenv", "postgresql-common"),
];

/// What `bundle` needs beside the build packages: dpkg-shlibdeps (cargo-deb's `$auto`
/// dependencies of the server package) and strip. The deb and rpm bundlers themselves are
/// pure Rust: no rpmbuild.
const BUNDLE_PACKAGES: &[Need] = &[
    Need::Binary("dpkg-shlibdeps", "dpkg-dev"),
    Need::Binary("strip", "binutils"),
];

/// tauri-driver bridges WebDriver to the app; major 2 matches Tauri 2 (crates.io also
/// serves a 3.0 alpha, which must not be picked up).
const TAURI_DRIVER_VERSION: &str = "^2";
/// tauri-cli (`cargo tauri build`) bundles the app; major 2, like tauri-driver.
const TAURI_CLI_VERSION: &str = "^2";
/// cargo-deb (`cargo deb`) packs the server; the major its metadata was written for.
const CARGO_DEB_VERSION: &str = "^3";

#[derive(Debug, Clone, Copy)]
enum Need {
    /// A pkg-config module, and the Debian package that provides it.
    PkgConfig(&'static str, &'static str),
    /// A program on PATH, and the Debian package that provides it.
    Binary(&'static str, &'static str),
    /// A file at `relative` under any folder of `dir` (one per installed version), and the
    /// Debian package that provides it.
    InAnyVersion(&'static str, &'static str, &'static str),
}

impl Need {
    fn present(self) -> bool {
        match self {
            Need::PkgConfig(module, _) => Command::new("pkg-config")
                .args(["--exists", module])
                .status()
                .is_ok_and(|s| s.success()),
            Need::Binary(name, _) => which(name).is_some(),
            Need::InAnyVersion(dir, relative, _) => std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|version| version.path().join(relative).is_file()),
        }
    }

    fn package(self) -> &'static str {
        match self {
            Need::PkgConfig(_, p) | Need::Binary(_, p) | Need::InAnyVersion(_, _, p) => p,
        }
    }
}

/// Everything `test` and `bench` need; returns tauri-driver's path.
pub(crate) fn ensure_all() -> Result<PathBuf, String> {
    ensure_build_packages()?;
    ensure_test_packages()?;
    ensure_bench_packages()?;
    ensure_postgres_packages()?;
    ensure_bench_peer()?;
    ensure_tauri_driver()
}

/// PostgreSQL for the server suite's second run (`test`) and the store benchmarks.
pub(crate) fn ensure_postgres_packages() -> Result<(), String> {
    ensure(POSTGRES_PACKAGES)
}

pub(crate) fn ensure_build_packages() -> Result<(), String> {
    ensure(BUILD_PACKAGES)
}

pub(crate) fn ensure_test_packages() -> Result<(), String> {
    ensure(TEST_PACKAGES)
}

fn ensure_bench_packages() -> Result<(), String> {
    ensure(BENCH_PACKAGES)
}

pub(crate) fn ensure_bundle_packages() -> Result<(), String> {
    ensure(BUNDLE_PACKAGES)
}

/// Installs the Socket.IO peer from the npm registry into its folder (ignored by git), as
/// pinned by its package-lock.json, unless it is there already.
fn ensure_bench_peer() -> Result<(), String> {
    let peer = crate::root().join("crates/clinic-bench/peer");
    if peer.join("node_modules/socket.io/package.json").is_file() {
        return Ok(());
    }
    eprintln!("xtask: installing the Socket.IO peer with npm");
    status(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&peer),
    )
}

fn ensure(needs: &[Need]) -> Result<(), String> {
    let mut missing: Vec<&str> = needs
        .iter()
        .filter(|n| !n.present())
        .map(|n| n.package())
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

fn apt_install(packages: &[&str]) -> Result<(), String> {
    let by_hand = format!(
        "install them by hand, then run this again:\n    sudo apt-get install {}",
        packages.join(" ")
    );
    if which("apt-get").is_none() {
        return Err(format!(
            "missing system packages ({}) and no apt-get here; {by_hand}",
            packages.join(", ")
        ));
    }
    let as_root = is_root();
    if !as_root && which("sudo").is_none() {
        return Err(format!("not root and no sudo; {by_hand}"));
    }
    eprintln!("xtask: installing system packages: {}", packages.join(" "));
    let apt = |args: &[&str]| {
        let mut cmd = if as_root {
            let mut c = Command::new("apt-get");
            c.env("DEBIAN_FRONTEND", "noninteractive");
            c
        } else {
            // sudo drops the environment, so the variable goes on its command line.
            let mut c = Command::new("sudo");
            c.args(["DEBIAN_FRONTEND=noninteractive", "apt-get"]);
            c
        };
        cmd.args(args);
        cmd
    };
    status(&mut apt(&["update", "-qq"])).map_err(|e| format!("{e}; {by_hand}"))?;
    let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.args(packages);
    status(&mut install).map_err(|e| format!("{e}; {by_hand}"))
}

/// Installs tauri-driver (major 2) into cargo's bin dir if it is missing or another major.
pub(crate) fn ensure_tauri_driver() -> Result<PathBuf, String> {
    ensure_cargo_install("tauri-driver", "tauri-driver", TAURI_DRIVER_VERSION)
}

/// Installs tauri-cli (major 2, the `cargo tauri` subcommand) the same way; compiling it
/// takes several minutes, once.
pub(crate) fn ensure_tauri_cli() -> Result<PathBuf, String> {
    ensure_cargo_install("tauri-cli", "cargo-tauri", TAURI_CLI_VERSION)
}

/// Installs cargo-deb (the `cargo deb` subcommand) the same way.
pub(crate) fn ensure_cargo_deb() -> Result<PathBuf, String> {
    ensure_cargo_install("cargo-deb", "cargo-deb", CARGO_DEB_VERSION)
}

/// `cargo install --locked KRATE --version ^N` into cargo's bin dir, unless BINARY is there
/// from major N already. Returns the binary's path.
fn ensure_cargo_install(krate: &str, binary: &str, version: &str) -> Result<PathBuf, String> {
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let path = cargo_home.join("bin").join(binary);
    let wanted_major = version.trim_start_matches('^');
    // tauri-driver 2 has no --version; cargo's own list of installed crates says which.
    let prefix = format!("{krate} v");
    let installed_major = crate::cargo()
        .args(["install", "--list"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|list| {
            list.lines().find_map(|l| {
                let version = l.strip_prefix(&prefix)?;
                version.split('.').next().map(str::to_owned)
            })
        })
        .filter(|_| path.is_file());
    if installed_major.as_deref() == Some(wanted_major) {
        return Ok(path);
    }
    eprintln!("xtask: installing {krate} {version} with cargo install");
    status(crate::cargo().args(["install", krate, "--locked", "--version", version]))?;
    Ok(path)
}

fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|uid| uid.trim() == "0")
}
