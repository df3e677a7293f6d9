//! End-to-end tests of the real app in real WebKit windows (through tauri-driver).

mod common;

use common::{App, Launch};

/// A click in one window goes through a Rust command; the broadcast from the Rust side
/// reaches the other window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_from_rust_reaches_every_window() {
    let mut app = App::launch(Launch::default()).await;
    let operator = app.window_like("operator-").await;
    let therapist = app.window_like("therapist-").await;
    assert_ne!(operator, therapist);

    app.click(&operator, "#ping").await;
    let seen = app
        .wait_for(
            &therapist,
            "the ping broadcast",
            "const li = document.querySelector('#pings li'); return li && li.textContent",
        )
        .await;
    assert_eq!(
        seen.as_str(),
        Some(format!("ping 1 from {operator}").as_str())
    );
    app.close().await;
}
