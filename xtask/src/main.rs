//! Clinic Desk project tasks, reached through `cargo xtask <task>` (an alias in
//! `.cargo/config.toml`).
//!
//! - `run`:   install missing system packages, build, start the app in demo mode.
//! - `test`:  install what tests need, then fmt, clippy and the whole suite (end-to-end
//!   tests in real windows included) under a virtual display and a private D-Bus; then the
//!   server suite again on PostgreSQL, on a throwaway cluster (`pg_virtualenv`).
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
  test                fmt, clippy, node and every test, end-to-end in real windows included;
                      then the server's tests again on a throwaway PostgreSQL cluster
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
        .args(TEST_BUILD)
        .env("TAURI_DRIVER", &tauri_driver)
        .env("RUST_BACKTRACE", "1");
    status(&mut headless(&tests))?;
    server_suite_on_postgres()?;
    // The benchmarks at their quick size, as a smoke run: they work, whatever the figures.
    // (The window benchmark's quick size ran above, as tests/window_latency.rs.) The test
    // run built every binary with the workspace's feature set; building the same set again
    // only puts the binaries in place, where building two packages alone would compile
    // their dependencies again with other features.
    status(cargo().args(["build", "--workspace", "--all-targets", "--locked"]))?;
    status(Command::new(target_dir().join("debug/clinic-bench")).arg("--quick"))
}

/// The flags of `test`'s one `cargo test`: the PostgreSQL run asks cargo for the same
/// build, so that it finds every test executable built and compiles nothing.
const TEST_BUILD: [&str; 3] = ["test", "--workspace", "--locked"];

/// Makes `CLINIC_TEST_POSTGRES` from what `pg_virtualenv` sets (its password is letters and
/// digits: nothing to escape in the address), then runs every executable given, all of them
/// even if one fails, and fails if any did.
const ON_POSTGRES: &str = r#"export CLINIC_TEST_POSTGRES="postgres://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/$PGDATABASE"
failed=0
for t in "$@"; do
    echo "xtask: $ $t   (on PostgreSQL)" >&2
    "$t" || failed=1
done
exit $failed"#;

/// The server's tests (unit and integration) a second time, on PostgreSQL: each test makes
/// a database of its own on a throwaway cluster that `pg_virtualenv` creates and removes
/// (PostgreSQL refuses to run as root; pg_virtualenv runs it as `postgres`).
///
/// `cargo test -p clinic-server` would resolve features for that package alone and so
/// compile much of the tree again (serde_json's features differ, and everything above it);
/// instead, cargo names the executables the workspace run built, and they run here as
/// `cargo test` would run them (from the package's folder).
fn server_suite_on_postgres() -> Result<(), String> {
    let mut list = cargo();
    list.args(TEST_BUILD)
        .args(["--no-run", "--message-format=json"]);
    eprintln!("xtask: $ {}", describe(&list));
    let out = list
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("could not start `{}`: {e}", describe(&list)))?;
    if !out.status.success() {
        return Err(format!("`{}` failed ({})", describe(&list), out.status));
    }
    let package = root().join("crates/clinic-server");
    let manifest = package.join("Cargo.toml");
    let executables = test_executables(&String::from_utf8_lossy(&out.stdout), &manifest);
    if executables.is_empty() {
        return Err("cargo listed no test executable of clinic-server".into());
    }
    let mut run = Command::new("pg_virtualenv");
    run.current_dir(&package)
        .args(["sh", "-c", ON_POSTGRES, "sh"])
        .args(&executables)
        .env("RUST_BACKTRACE", "1");
    status(&mut run)
}

/// The test executables (unit and integration tests) of the package whose manifest is
/// `manifest`, from cargo's JSON messages (`--message-format=json`, one object a line).
fn test_executables(messages: &str, manifest: &Path) -> Vec<PathBuf> {
    let manifest = manifest.to_string_lossy();
    messages
        .lines()
        .filter(|line| json_string(line, "reason").as_deref() == Some("compiler-artifact"))
        .filter(|line| json_string(line, "manifest_path").as_deref() == Some(&*manifest))
        .filter(|line| {
            // The profile is a flat object; a target's own `"test"` field says only
            // whether it is tested by default, so look inside the profile.
            line.split_once(r#""profile":{"#)
                .and_then(|(_, rest)| rest.split_once('}'))
                .is_some_and(|(profile, _)| profile.contains(r#""test":true"#))
        })
        .filter_map(|line| json_string(line, "executable"))
        .map(PathBuf::from)
        .collect()
}

/// The string value of the first `"key":` in a line of cargo's JSON (no spaces around
/// the colon in its messages); `None` if absent or not a string (`null`).
fn json_string(line: &str, key: &str) -> Option<String> {
    let (_, rest) = line.split_once(&format!(r#""{key}":""#))?;
    let mut value = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
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
    // The growth benchmark (tests/window_growth.rs): a clinic's history generated through
    // the real server at each size, then the release app on it. Like the window benchmark,
    // the test (and the server it runs in its own process) is the debug build the test run
    // made: generating the 150,000-booking clinic takes a few minutes there.
    let growth = target_dir().join("bench/growth.json");
    let mut growth_bench = cargo();
    growth_bench
        .args([
            "test",
            "--workspace",
            "--locked",
            "--test",
            "window_growth",
            "--",
            "--nocapture",
        ])
        .env("TAURI_DRIVER", &tauri_driver)
        .env("CLINIC_DESK_APP", target_dir().join("release/clinic-desk"))
        .env("CLINIC_BENCH_GROWTH_OUT", &growth);
    if !quick {
        growth_bench.env("CLINIC_BENCH_FULL", "1");
    }
    status(&mut headless(&growth_bench))?;
    // The bench runs inside a throwaway PostgreSQL cluster (`pg_virtualenv`, as the server
    // suite's PostgreSQL run), for its `postgres` benchmark: two server instances on
    // PostgreSQL beside one on SQLite. It makes a database of its own there for each row.
    // pg_virtualenv turns fsync off for its clusters; on again, so that PostgreSQL commits
    // are as durable as the SQLite server's (synchronous=FULL) they are compared with.
    let mut cmd = Command::new("pg_virtualenv");
    cmd.current_dir(root())
        .args(["-o", "fsync=on", "sh", "-c", BENCH_ON_POSTGRES, "sh"])
        .arg(target_dir().join("release/clinic-bench"))
        .arg("--windows")
        .arg(&windows)
        .arg("--growth")
        .arg(&growth);
    if quick {
        cmd.arg("--quick");
    } else {
        cmd.args(["--markdown", "BENCHMARKS.md"]);
    }
    status(&mut cmd)
}

/// Makes `CLINIC_BENCH_POSTGRES` from what `pg_virtualenv` sets (its password is letters
/// and digits: nothing to escape), then runs the bench command given.
const BENCH_ON_POSTGRES: &str = r#"export CLINIC_BENCH_POSTGRES="postgres://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/$PGDATABASE"
exec "$@""#;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as cargo writes them (shortened): the server's lib unit tests, one of its
    /// integration tests, its binary (not a test), a fresh test of another package, and a
    /// build-script message.
    const MESSAGES: &str = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/clinic-server#0.1.0","manifest_path":"/w/crates/clinic-server/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"clinic_server","src_path":"/w/crates/clinic-server/src/lib.rs","edition":"2021","doctest":true,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/w/target/debug/deps/clinic_server-1"],"executable":"/w/target/debug/deps/clinic_server-1","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/crates/clinic-server#0.1.0","manifest_path":"/w/crates/clinic-server/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"server","src_path":"/w/crates/clinic-server/tests/server.rs","edition":"2021","doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/w/target/debug/deps/server-2"],"executable":"/w/target/debug/deps/server-2","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/crates/clinic-server#0.1.0","manifest_path":"/w/crates/clinic-server/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"clinic-server","src_path":"/w/crates/clinic-server/src/main.rs","edition":"2021","doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":false},"features":[],"filenames":["/w/target/debug/clinic-server"],"executable":"/w/target/debug/clinic-server","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/crates/clinic-sync#0.1.0","manifest_path":"/w/crates/clinic-sync/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"sync","src_path":"/w/crates/clinic-sync/tests/sync.rs","edition":"2021","doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/w/target/debug/deps/sync-3"],"executable":"/w/target/debug/deps/sync-3","fresh":true}
{"reason":"compiler-artifact","package_id":"registry+https://github.com/rust-lang/crates.io-index#serde@1.0.0","manifest_path":"/r/serde/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"serde","src_path":"/r/serde/src/lib.rs","edition":"2018","doctest":true,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":false},"features":[],"filenames":["/w/target/debug/deps/libserde.rlib"],"executable":null,"fresh":true}
{"reason":"build-finished","success":true}"#;

    #[test]
    fn the_postgres_run_takes_exactly_the_servers_test_executables() {
        let found = test_executables(MESSAGES, Path::new("/w/crates/clinic-server/Cargo.toml"));
        assert_eq!(
            found,
            [
                PathBuf::from("/w/target/debug/deps/clinic_server-1"),
                PathBuf::from("/w/target/debug/deps/server-2"),
            ]
        );
        assert!(test_executables(MESSAGES, Path::new("/w/other/Cargo.toml")).is_empty());
    }

    #[test]
    fn a_json_string_is_read_with_its_escapes_and_null_is_none() {
        assert_eq!(
            json_string(r#"{"a":"x\"y\\z","b":null}"#, "a").as_deref(),
            Some(r#"x"y\z"#)
        );
        assert_eq!(json_string(r#"{"a":"x","b":null}"#, "b"), None);
        assert_eq!(json_string(r#"{"a":"unterminated"#, "a"), None);
    }
}
