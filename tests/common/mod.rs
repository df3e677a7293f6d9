//! Drives the real Clinic Desk binary in real WebKit windows: tauri-driver on free loopback
//! ports, a WebDriver session through fantoccini, windows found by the label each page
//! exposes (`document.body.dataset.window`), and polling with a deadline instead of sleeps.
#![allow(dead_code, unreachable_pub)] // Each test binary uses a different part of this.

pub mod notifications;
pub mod windows;

use std::collections::HashMap;
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clinic_test_kit::PASSWORD;
use fantoccini::wd::{Capabilities, WindowHandle};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long any one expected state may take to appear. Generous: the machine is shared and
/// the first window of a cold WebKit takes seconds; tests still fail if it never appears.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The app binary the tests drive: this test build's (debug), or the one named by
/// `CLINIC_DESK_APP` (`cargo xtask bench` measures the release build that way).
pub fn app_binary() -> PathBuf {
    std::env::var_os("CLINIC_DESK_APP").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_clinic-desk")),
        PathBuf::from,
    )
}

/// Only one app runs at a time: on two cores, parallel WebKit instances starve each other.
static ONE_APP_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn tauri_driver_path() -> PathBuf {
    if let Some(p) = std::env::var_os("TAURI_DRIVER") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    home.join("bin/tauri-driver")
}

/// A running app under tauri-driver. Dropping it ends the session and stops the driver
/// with SIGTERM, which also stops WebKitWebDriver and the app.
pub struct App {
    pub client: Client,
    driver: Child,
    handles: HashMap<String, WindowHandle>,
    /// `None` for a second app a test runs beside its first ([`App::launch_beside`]).
    _turn: Option<tokio::sync::MutexGuard<'static, ()>>,
}

/// What the app is started with.
#[derive(Debug, Default, Clone)]
pub struct Launch {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Start the app with `--measure`: pages keep latency probes in `window.__clinic`.
    pub measure: bool,
}

impl App {
    pub async fn launch(launch: Launch) -> App {
        // An async mutex: a test that panicked released its turn when its App dropped.
        let turn = ONE_APP_AT_A_TIME.lock().await;
        App::start(launch, Some(turn)).await
    }

    /// A second app, run beside one this test already launched (which holds the turn):
    /// two desks of one clinic, each with its own data directory (so its own single
    /// instance) and its own tauri-driver.
    pub async fn launch_beside(_first: &App, launch: Launch) -> App {
        App::start(launch, None).await
    }

    async fn start(launch: Launch, turn: Option<tokio::sync::MutexGuard<'static, ()>>) -> App {
        let port = free_port();
        let native_port = free_port();
        let mut cmd = Command::new(tauri_driver_path());
        cmd.args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native_port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
        // The app inherits the driver's environment: this is how a test configures it.
        for (k, v) in &launch.env {
            cmd.env(k, v);
        }
        let driver = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start tauri-driver at {} ({e}); run `cargo xtask test`, which installs it",
                tauri_driver_path().display()
            )
        });
        let mut driver = Stopper(Some(driver));

        let mut caps = Capabilities::new();
        // tauri:options must sit in alwaysMatch: in firstMatch alone WebKitWebDriver starts
        // its MiniBrowser instead of the app.
        let mut args = launch.args.clone();
        if launch.measure {
            args.push("--measure".into());
        }
        caps.insert(
            "tauri:options".into(),
            json!({ "application": app_binary(), "args": args }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = poll("tauri-driver to accept a session", || async {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
                .ok()
        })
        .await;
        App {
            client,
            driver: driver.0.take().expect("driver"),
            handles: HashMap::new(),
            _turn: turn,
        }
    }

    /// The labels of the windows open right now.
    pub async fn labels(&mut self) -> Vec<String> {
        self.refresh_handles().await;
        let mut labels: Vec<String> = self.handles.keys().cloned().collect();
        labels.sort();
        labels
    }

    async fn refresh_handles(&mut self) {
        let Ok(handles) = self.client.windows().await else {
            return;
        };
        self.handles.retain(|_, h| handles.contains(h));
        for handle in handles {
            if self.handles.values().any(|h| *h == handle) {
                continue;
            }
            if self.client.switch_to_window(handle.clone()).await.is_err() {
                continue;
            }
            let label = self
                .client
                .execute(
                    "return document.body ? document.body.dataset.window : null",
                    vec![],
                )
                .await
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned));
            if let Some(label) = label {
                self.handles.insert(label, handle);
            }
        }
    }

    /// Switches WebDriver to the window with this label, waiting for it to appear and for
    /// its page to finish booting.
    pub async fn window(&mut self, label: &str) -> &Client {
        self.window_within(label, DEADLINE).await
    }

    /// [`App::window`] with a deadline of the caller's (a first start that downloads a
    /// long history).
    pub async fn window_within(&mut self, label: &str, within: Duration) -> &Client {
        let deadline = Instant::now() + within;
        loop {
            self.refresh_handles().await;
            if let Some(handle) = self.handles.get(label).cloned() {
                self.client
                    .switch_to_window(handle)
                    .await
                    .expect("switch to window");
                let ready = self
                    .client
                    .execute("return document.body.dataset.ready === 'true'", vec![])
                    .await
                    .ok()
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                if ready {
                    return &self.client;
                }
            }
            assert!(
                Instant::now() < deadline,
                "window {label} did not appear within {within:?}; open: {:?}",
                self.handles.keys().collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a window whose label starts with `prefix` is open; returns its label.
    pub async fn window_like(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(l) = self
                .labels()
                .await
                .into_iter()
                .find(|l| l.starts_with(prefix))
            {
                self.window(&l).await;
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no {prefix}* window within {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the element matching `css` in the window `label`.
    pub async fn click(&mut self, label: &str, css: &str) {
        let client = self.window(label).await.clone();
        let el = poll(&format!("{css} in {label}"), || async {
            client.find(Locator::Css(css)).await.ok()
        })
        .await;
        el.click()
            .await
            .unwrap_or_else(|e| panic!("click {css} in {label}: {e}"));
    }

    /// Runs a script in the window `label` and returns its value.
    pub async fn eval(&mut self, label: &str, script: &str, args: Vec<Value>) -> Value {
        let client = self.window(label).await.clone();
        client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script in {label} failed: {e}\n{script}"))
    }

    /// Polls a script in the window `label` until it returns something other than null,
    /// false or undefined, and returns that value.
    pub async fn wait_for(&mut self, label: &str, what: &str, script: &str) -> Value {
        let client = self.window(label).await.clone();
        poll(&format!("{what} (in {label})"), || async {
            match client.execute(script, vec![]).await {
                Ok(Value::Null | Value::Bool(false)) | Err(_) => None,
                Ok(v) => Some(v),
            }
        })
        .await
    }

    /// The text of the element matching `css` in the window `label`, if any.
    pub async fn text(&mut self, label: &str, css: &str) -> Option<String> {
        let v = self
            .eval(
                label,
                "const el = document.querySelector(arguments[0]); return el ? el.textContent : null",
                vec![json!(css)],
            )
            .await;
        v.as_str().map(str::to_owned)
    }

    pub async fn close(mut self) {
        let client = self.client.clone();
        // Ending the session closes the app; the driver is stopped by Drop.
        let _ = client.close().await;
        stop(&mut self.driver);
    }
}

impl Drop for App {
    fn drop(&mut self) {
        stop(&mut self.driver);
    }
}

/// Holds the driver until the session exists, so a failed start does not leak it.
struct Stopper(Option<Child>);

impl Drop for Stopper {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            stop(child);
        }
    }
}

/// Stops tauri-driver with SIGTERM (SIGKILL would leave WebKitWebDriver running) and waits
/// for it to exit.
fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `probe` until it yields a value or [`DEADLINE`] passes (then panics with `what`).
pub async fn poll<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    clinic_test_kit::poll_within(DEADLINE, what, probe).await
}

/// Starts the app against `server_url`, with its own data dir, and signs in as `username`
/// through the login window.
pub async fn signed_in(server_url: &str, username: &str) -> (App, tempfile::TempDir) {
    sign_in(server_url, username, false).await
}

/// [`signed_in`], with the pages' latency probes on (`--measure`).
pub async fn signed_in_measuring(server_url: &str, username: &str) -> (App, tempfile::TempDir) {
    sign_in(server_url, username, true).await
}

/// Starts the app again on the data dir of an earlier run: it resumes that session from
/// its cache (no login) and restores its windows.
pub async fn resumed(server_url: &str, data: &std::path::Path) -> App {
    resume(server_url, data, false).await
}

/// [`resumed`], with the pages' latency probes on (`--measure`).
pub async fn resumed_measuring(server_url: &str, data: &std::path::Path) -> App {
    resume(server_url, data, true).await
}

async fn resume(server_url: &str, data: &std::path::Path, measure: bool) -> App {
    // The earlier run's app may still be exiting after its session closed; a second
    // instance on the same data dir would hand over to it (single instance) and quit. One
    // that is still there after a grace period is killed, as a crash would: the test then
    // resumes from whatever the app left on disk, which must be enough.
    let marker = format!("CLINIC_DESK_DATA_DIR={}", data.display());
    let grace = Instant::now() + Duration::from_secs(10);
    loop {
        let left = apps_running_with(&marker);
        if left.is_empty() {
            break;
        }
        if Instant::now() > grace {
            for pid in left {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    App::launch(launch_on(server_url, data, measure)).await
}

/// The app processes with `entry` in their environment (Linux: /proc/*/environ).
fn apps_running_with(entry: &str) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter(|p| {
            std::fs::read_link(p.path().join("exe")).is_ok_and(|exe| exe.ends_with(app_binary()))
                && std::fs::read(p.path().join("environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == entry.as_bytes()))
        })
        .filter_map(|p| p.file_name().to_str()?.parse().ok())
        .collect()
}

/// How the app is started against `server_url` on the data directory `data`.
pub fn launch_on(server_url: &str, data: &std::path::Path, measure: bool) -> Launch {
    Launch {
        args: vec!["--server".into(), server_url.into()],
        env: vec![("CLINIC_DESK_DATA_DIR".into(), data.display().to_string())],
        measure,
    }
}

async fn sign_in(server_url: &str, username: &str, measure: bool) -> (App, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("tempdir");
    let app = App::launch(launch_on(server_url, data.path(), measure)).await;
    (log_in(app, server_url, username).await, data)
}

/// A second desk beside `first` (see [`App::launch_beside`]), signed in as `username`,
/// with its own data directory.
pub async fn signed_in_beside(
    first: &App,
    server_url: &str,
    username: &str,
) -> (App, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("tempdir");
    let app = App::launch_beside(first, launch_on(server_url, data.path(), false)).await;
    (log_in(app, server_url, username).await, data)
}

/// Signs `username` in through the login window of a freshly launched app.
async fn log_in(mut app: App, server_url: &str, username: &str) -> App {
    app.eval(
        "login",
        "const f = document.querySelector('form#login');
         f.elements.server.value = arguments[0];
         f.elements.username.value = arguments[1];
         f.elements.password.value = arguments[2];
         f.querySelector('button[type=submit]').click();
         return true",
        vec![json!(server_url), json!(username), json!(PASSWORD)],
    )
    .await;
    app
}

/// The CSS selector of a booking's row (or card) in any dashboard.
pub fn row(id: impl std::fmt::Display) -> String {
    format!("[data-booking-id=\"{id}\"]")
}

/// The script that returns an element's attribute, or null.
const ATTR: &str = "const el = document.querySelector(arguments[0]); return el ? el.getAttribute(arguments[1]) : null";

/// Waits until the first element matching `css` in window `label` has `attr` = `want`.
pub async fn wait_attr(app: &mut App, label: &str, css: &str, attr: &str, want: &str) {
    let client = app.window(label).await.clone();
    let what = format!("{css} {attr}={want} in {label}");
    poll(&what, || async {
        let v = client
            .execute(ATTR, vec![json!(css), json!(attr)])
            .await
            .ok()?;
        (v.as_str() == Some(want)).then_some(())
    })
    .await;
}

/// A booking of the demo clinic that waits for `staff` (a therapist) to accept it.
pub fn requested_for(
    snapshot: &clinic_protocol::Snapshot,
    staff: uuid::Uuid,
) -> clinic_protocol::Booking {
    clinic_test_kit::bookings(snapshot)
        .into_iter()
        .find(|b| {
            b.therapist_id == Some(staff) && b.status == clinic_protocol::BookingStatus::Requested
        })
        .expect("the demo clinic has a requested booking for this therapist")
}
