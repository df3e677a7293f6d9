//! Clinic Desk project tasks, reached through `cargo xtask <task>` (an alias in
//! `.cargo/config.toml`).
//!
//! - `run`:   install missing system packages, build, start the app in demo mode.
//! - `test`:  install what tests need, then fmt, clippy and the whole suite (end-to-end
//!   tests in real windows included) under a virtual display and a private D-Bus.
//! - `bench`: every benchmark side by side with a Socket.IO peer; writes BENCHMARKS.md.
//! - `screenshot`: run the demo under Xvfb and save the README's screenshots.
//! - `chaos`: the long chaos run (`crates/clinic-sync/tests/chaos.rs` at its long size);
//!   writes RELIABILITY.md. `test` runs it at CI size.
//! - `bundle`: the app's .deb and .rpm and the server's .deb (release builds; installs
//!   tauri-cli and cargo-deb if missing). Not part of `test`, whose unit tests check the
//!   packaging's configuration instead (`packaging.rs`).
//!
//! This crate uses std only: it must build in seconds on a fresh machine and must not change
//! the feature set of any dependency the app shares (which would compile the GTK/WebKit
//! stack twice).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bundle;
mod packaging;
mod setup;

/// The virtual screen tests and screenshots run on.
const XVFB_SERVER_ARGS: &str = "-screen 0 1440x900x24 -nolisten tcp";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match task {
        "run" => run(rest),
        "test" => test(rest),
        "bench" => bench(rest),
        "screenshot" => screenshot(),
        "chaos" => chaos(rest),
        "bundle" => bundle::bundle(rest),
        "help" | "--help" | "-h" => {
            eprintln!("{}", HELP);
            Ok(())
        }
        other => Err(format!("unknown task `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

const HELP: &str = "usage: cargo xtask <task>

  run [-- APP ARGS]   start Clinic Desk in demo mode (installs build packages if missing)
  test                fmt, clippy, node and every test, end-to-end in real windows included
  bench [--quick]     every benchmark against a Socket.IO peer; full runs write BENCHMARKS.md
  screenshot          save docs/screenshot.png (the demo), docs/admin.png and
                      docs/sync-panel.png, taken under Xvfb
  chaos               the long chaos run (debug build, minutes); writes RELIABILITY.md
  bundle              the app's .deb and .rpm and the server's .deb (release builds)";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs a command, echoing it, and turns a non-zero exit into an error.
fn status(cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask: $ {}", describe(cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("could not start `{}`: {e}", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", describe(cmd)))
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Wraps a command so that it runs on a virtual display with a private session bus.
/// The private bus keeps notifications sent by tests off the developer's desktop, and lets a
/// test own `org.freedesktop.Notifications` to record them.
fn headless(inner: &Command) -> Command {
    let mut cmd = Command::new("xvfb-run");
    cmd.current_dir(root())
        .args(["-a", "-s", XVFB_SERVER_ARGS, "dbus-run-session", "--"])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (key, value) in inner.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd
}

fn run(rest: &[String]) -> Result<(), String> {
    setup::ensure_build_packages()?;
    // Build what `cargo xtask test` builds (the whole workspace, every target): the same
    // feature set, so the GTK/WebKit stack is compiled once for both commands.
    status(cargo().args(["build", "--workspace", "--all-targets", "--locked"]))?;
    let app_args: Vec<&String> = rest.iter().skip_while(|a| a.as_str() == "--").collect();
    let mut cmd = Command::new(target_dir().join("debug").join("clinic-desk"));
    cmd.current_dir(root());
    if app_args.is_empty() {
        cmd.arg("--demo");
    } else {
        cmd.args(app_args);
    }
    if env::var_os("DISPLAY").is_none() && env::var_os("WAYLAND_DISPLAY").is_none() {
        eprintln!("xtask: no display found; running under Xvfb (the windows are invisible there)");
        setup::ensure_test_packages()?;
        return status(&mut headless(&cmd));
    }
    status(&mut cmd)
}

fn test(rest: &[String]) -> Result<(), String> {
    if !rest.is_empty() {
        return Err(format!("`test` takes no arguments, got {rest:?}"));
    }
    let tauri_driver = setup::ensure_all()?;

    status(cargo().args(["fmt", "--all", "--check"]))?;
    status(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The front end's pure modules, with node's own test runner (no npm packages).
    status(
        Command::new("node")
            .current_dir(root())
            .args(["--test", "ui/test/"]),
    )?;
    // One `cargo test` for the whole workspace: the same feature set as clippy above, so the
    // GTK/WebKit stack is compiled once per run.
    let mut tests = cargo();
    tests
        .args(["test", "--workspace", "--locked"])
        .env("TAURI_DRIVER", &tauri_driver)
        .env("RUST_BACKTRACE", "1");
    status(&mut headless(&tests))?;
    // The benchmarks at their quick size, as a smoke run: they work, whatever the figures.
    // (The window benchmark's quick size ran above, as tests/window_latency.rs.) The test
    // run built every binary with the workspace's feature set; building the same set again
    // only puts the binaries in place, where building two packages alone would compile
    // their dependencies again with other features.
    status(cargo().args(["build", "--workspace", "--all-targets", "--locked"]))?;
    status(Command::new(target_dir().join("debug/clinic-bench")).arg("--quick"))
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

fn bench(rest: &[String]) -> Result<(), String> {
    let quick = match rest {
        [] => false,
        [flag] if flag == "--quick" => true,
        other => return Err(format!("`bench` takes only --quick, got {other:?}")),
    };
    let tauri_driver = setup::ensure_all()?;
    status(cargo().args([
        "build",
        "--release",
        "--locked",
        "-p",
        "clinic-server",
        "-p",
        "clinic-bench",
        "-p",
        "clinic-desk",
    ]))?;
    // The window benchmark drives the real app through WebDriver, so it lives with the
    // end-to-end tests; here it drives the release build of the app (`CLINIC_DESK_APP`).
    let windows = target_dir().join("bench/windows.json");
    std::fs::create_dir_all(target_dir().join("bench")).map_err(|e| e.to_string())?;
    let mut window_bench = cargo();
    window_bench
        .args([
            "test",
            "--workspace",
            "--locked",
            "--test",
            "window_latency",
            "--",
            "--nocapture",
        ])
        .env("TAURI_DRIVER", &tauri_driver)
        .env("CLINIC_DESK_APP", target_dir().join("release/clinic-desk"))
        .env("CLINIC_BENCH_OUT", &windows);
    if !quick {
        window_bench.env("CLINIC_BENCH_FULL", "1");
    }
    status(&mut headless(&window_bench))?;
    let mut cmd = Command::new(target_dir().join("release/clinic-bench"));
    cmd.current_dir(root()).arg("--windows").arg(&windows);
    if quick {
        cmd.arg("--quick");
    } else {
        cmd.args(["--markdown", "BENCHMARKS.md"]);
    }
    status(&mut cmd)
}

fn screenshot() -> Result<(), String> {
    setup::ensure_build_packages()?;
    setup::ensure_test_packages()?;
    let tauri_driver = setup::ensure_tauri_driver()?;
    // The demo side by side, and the two tests that show the Staff dashboard and the sync
    // panel take their pictures on the way when told where to put them.
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--workspace",
        "--locked",
        "--test",
        "screenshot",
        "--test",
        "admin",
        "--test",
        "session",
        "--",
        "--nocapture",
    ])
    .env("TAURI_DRIVER", &tauri_driver)
    .env("CLINIC_SCREENSHOT", root().join("docs/screenshot.png"))
    .env("CLINIC_ADMIN_SCREENSHOT", root().join("docs/admin.png"))
    .env(
        "CLINIC_SYNC_PANEL_SCREENSHOT",
        root().join("docs/sync-panel.png"),
    );
    status(&mut headless(&cmd))
}

/// The long chaos run (`crates/clinic-sync/tests/chaos.rs` at its `long` size): the real
/// server binary and ten engine processes, each killed and restarted; the test writes its
/// figures into RELIABILITY.md. A debug build, like every test run. `CLINIC_CHAOS_SEED`
/// replays a run's choices; `CLINIC_CHAOS_MUTATIONS` changes its length.
fn chaos(rest: &[String]) -> Result<(), String> {
    if !rest.is_empty() {
        return Err(format!("`chaos` takes no arguments, got {rest:?}"));
    }
    // `cargo test -p clinic-sync` builds neither the server binary nor the example the run
    // starts as processes.
    status(cargo().args([
        "build",
        "--locked",
        "-p",
        "clinic-server",
        "-p",
        "clinic-sync",
        "--bin",
        "clinic-server",
        "--example",
        "engine_process",
    ]))?;
    status(
        cargo()
            .args([
                "test",
                "--locked",
                "-p",
                "clinic-sync",
                "--test",
                "chaos",
                "--",
                "--exact",
                "chaos_run",
                "--nocapture",
            ])
            .env("CLINIC_CHAOS_SIZE", "long")
            .env("CLINIC_CHAOS_REPORT", root().join("RELIABILITY.md"))
            .env("RUST_BACKTRACE", "1"),
    )
}
