//! The app as support finds it: a log file in the profile's `logs/` folder with no secret
//! in it, even at trace level, and windows restored where the user can reach them.

mod common;

use std::path::Path;

use clinic_test_kit::{TestServer, PASSWORD};
use common::{poll, resumed, App, Launch};
use serde_json::{json, Value};

/// The text of every log file in `<data>/logs`.
fn logs_of(data: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(data.join("logs")).expect("a logs folder") {
        let path = entry.expect("an entry").path();
        if path.is_file() && !path.is_symlink() {
            text.push_str(&std::fs::read_to_string(&path).expect("a log file"));
        }
    }
    text
}

/// The longest run of hex digits in `text` (a session token is 64).
fn longest_hex_run(text: &str) -> usize {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_has_no_secrets_and_windows_come_back_on_screen() {
    let server = TestServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    // Trace level for what carries the password and the token: the HTTP client and the
    // WebSocket, which logs every frame it sends (the feed's hello carries the token).
    let mut app = App::launch(Launch {
        args: vec!["--server".into(), server.url()],
        env: vec![
            (
                "CLINIC_DESK_DATA_DIR".into(),
                data.path().display().to_string(),
            ),
            (
                "RUST_LOG".into(),
                "info,tungstenite=trace,tokio_tungstenite=trace,reqwest=trace,hyper=trace,\
                 hyper_util=trace,clinic_sync=trace"
                    .into(),
            ),
        ],
        measure: false,
    })
    .await;
    app.eval(
        "login",
        "const f = document.querySelector('form#login');
         f.elements.server.value = arguments[0];
         f.elements.username.value = arguments[1];
         f.elements.password.value = arguments[2];
         f.querySelector('button[type=submit]').click();
         return true",
        vec![json!(server.url()), json!("olivia"), json!(PASSWORD)],
    )
    .await;
    let operator = app.window_like("operator-").await;
    app.wait_for(
        &operator,
        "online",
        "return document.querySelector('#sync-dot')?.dataset.state === 'online'",
    )
    .await;
    app.close().await;

    let log = logs_of(data.path());
    assert!(log.contains("logs in"), "the run is in the file:\n{log}");
    assert!(
        log.contains("[redacted]"),
        "the hello frame's token was logged, and redacted"
    );
    assert!(
        longest_hex_run(&log) < 32,
        "no token in the log (a run of {} hex digits)",
        longest_hex_run(&log)
    );
    assert!(
        !log.contains(&format!("\"{PASSWORD}\"")),
        "no password in the log"
    );

    // The monitor the windows were on is gone: every saved place is far to the right.
    let file = data.path().join("layout.json");
    let mut layout: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&file).expect("layout.json")).expect("json");
    assert!(!layout.is_empty());
    for window in &mut layout {
        window["x"] = json!(5000.0);
        window["y"] = json!(200.0);
    }
    std::fs::write(&file, serde_json::to_vec(&layout).expect("json")).expect("write");

    let mut app = resumed(&server.url(), data.path()).await;
    for saved in &layout {
        let label = saved["label"].as_str().expect("a label");
        let client = app.window(label).await.clone();
        let (x, y, width, _) = poll(&format!("{label} placed on the screen"), || {
            let client = client.clone();
            async move {
                let rect = client.get_window_rect().await.ok()?;
                (rect.0 + 100 <= 1440).then_some(rect)
            }
        })
        .await;
        assert!(y < 900 && width <= 1440, "{label}: {x},{y}");
    }
    app.close().await;
}
