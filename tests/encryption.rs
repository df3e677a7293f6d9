//! Encryption in the real app (through tauri-driver, real WebKit windows): started with
//! `--ca-file`, it signs in to a server serving TLS with a certificate from that clinic CA,
//! refuses one whose certificate comes from another CA (told in the login window with its
//! code), and its login window warns, in words, about an `http://` address of another
//! computer.

mod common;

use clinic_test_kit::{TestServer, PASSWORD};
use common::{App, Launch};
use serde_json::json;

/// Puts `address` in the login form's server field as a person would (a `change` event),
/// then waits for the warning (or for none); returns its words.
async fn type_server(app: &mut App, address: &str, expect_warning: bool) -> String {
    app.eval(
        "login",
        "const s = document.querySelector('form#login').elements.server;
         s.value = arguments[0];
         s.dispatchEvent(new Event('change'));
         return true",
        vec![json!(address)],
    )
    .await;
    let script = if expect_warning {
        "const w = document.querySelector('#server-warning').textContent;
         return w.includes('not encrypted') ? w : null"
    } else {
        "return document.querySelector('#server-warning').textContent === ''"
    };
    let seen = app
        .wait_for("login", &format!("the warning for {address}"), script)
        .await;
    seen.as_str().unwrap_or_default().to_owned()
}

/// Signs in as olivia with the address in the form.
async fn submit(app: &mut App) {
    app.eval(
        "login",
        "const f = document.querySelector('form#login');
         f.elements.username.value = arguments[0];
         f.elements.password.value = arguments[1];
         f.querySelector('button[type=submit]').click();
         return true",
        vec![json!("olivia"), json!(PASSWORD)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_signs_in_over_tls_with_its_ca_file_and_warns_about_clear_text() {
    let server = TestServer::start_tls().await;
    let url = server.url();
    let ca_file = server.ca_file().expect("a TLS server has a CA file");
    let data = tempfile::tempdir().expect("tempdir");
    let mut app = App::launch(Launch {
        args: vec![
            "--server".into(),
            url.clone(),
            "--ca-file".into(),
            ca_file.display().to_string(),
        ],
        env: vec![(
            "CLINIC_DESK_DATA_DIR".into(),
            data.path().display().to_string(),
        )],
        measure: false,
    })
    .await;

    // The https:// address it was given is prefilled, with no warning.
    let prefilled = app
        .eval(
            "login",
            "return document.querySelector('form#login').elements.server.value",
            vec![],
        )
        .await;
    assert_eq!(prefilled, json!(url));
    assert_eq!(
        app.text("login", "#server-warning").await.as_deref(),
        Some("")
    );

    // Another computer over http://: warned. Loopback over http://: not.
    let warning = type_server(&mut app, "http://192.0.2.10:7420", true).await;
    assert!(warning.contains("192.0.2.10"), "{warning}");
    type_server(&mut app, "http://127.0.0.1:7420", false).await;

    // A server whose certificate comes from another CA: refused, and told with its code.
    let stranger = TestServer::start_tls().await;
    type_server(&mut app, &stranger.url(), false).await;
    submit(&mut app).await;
    let refused = app
        .wait_for(
            "login",
            "the refusal of an untrusted certificate",
            "const e = document.querySelector('#login-error');
             return e.dataset.code === 'untrusted_certificate' ? e.textContent : null",
        )
        .await;
    assert!(
        refused.as_str().unwrap_or_default().contains("not trusted"),
        "{refused}"
    );

    // Back to the https:// address: signed in through TLS, the dashboards open.
    type_server(&mut app, &url, false).await;
    submit(&mut app).await;
    let operator = app.window_like("operator-").await;
    app.wait_for(
        &operator,
        "the operator dashboard to show bookings from the server",
        "return document.querySelectorAll('[data-booking-id]').length > 0",
    )
    .await;
    app.close().await;
}
