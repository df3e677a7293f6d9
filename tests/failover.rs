//! A clinic server with two addresses, in the real app (tauri-driver, real WebKit windows,
//! the real server on loopback behind two cuttable proxies, as two instances in front of
//! one database look to a client): `--server` given twice is offered on the login form as
//! both addresses; when the one in use goes away, the app carries on at the other with
//! what was queued and what others changed, and its sync panel names the address in use.

mod common;

use clinic_protocol::{BookingStatus, Mutation, MutationOutcome};
use clinic_test_kit::{staff_id, Proxy, Staffer, TestServer, PASSWORD};
use common::{poll, requested_for, row, wait_attr, App, Launch};
use serde_json::{json, Value};

/// The sync panel's figures in window `label`, by key: `[value, text]`.
const FIGURES: &str =
    "return Object.fromEntries([...document.querySelectorAll('#sync-panel [data-figure]')]
    .map(f => [f.dataset.figure, [f.dataset.value, f.querySelector('dd').textContent]]))";

/// Waits until the sync panel open in `label` shows `server` as the server's address.
async fn panel_shows_server(app: &mut App, label: &str, server: &str) {
    let client = app.window(label).await.clone();
    poll(&format!("the sync panel names {server}"), || async {
        let figures: Value = client.execute(FIGURES, vec![]).await.ok()?;
        (figures["server"][0] == json!(server)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_moves_to_the_next_server_address_when_one_goes_away() {
    let server = TestServer::start().await;
    let first = Proxy::start(server.addr()).await;
    let second = Proxy::start(server.addr()).await;
    let olivia = Staffer::login(&server.url(), "olivia").await;
    let snapshot = olivia.snapshot().await;
    let mine = requested_for(&snapshot, staff_id(&snapshot, "maria"));
    let theirs = requested_for(&snapshot, staff_id(&snapshot, "reyes"));

    let data = tempfile::tempdir().expect("tempdir");
    let mut app = App::launch(Launch {
        args: vec![
            "--server".into(),
            first.url(),
            "--server".into(),
            second.url(),
        ],
        env: vec![(
            "CLINIC_DESK_DATA_DIR".into(),
            data.path().display().to_string(),
        )],
        measure: false,
    })
    .await;
    // The login form offers both addresses, first preferred; signing in keeps them.
    let offered = app
        .wait_for(
            "login",
            "the server addresses prefilled",
            "const s = document.querySelector('#server'); return s && s.value ? s.value : null",
        )
        .await;
    assert_eq!(offered, json!(format!("{}, {}", first.url(), second.url())));
    app.eval(
        "login",
        "const f = document.querySelector('form#login');
         f.elements.username.value = arguments[0];
         f.elements.password.value = arguments[1];
         f.querySelector('button[type=submit]').click();
         return true",
        vec![json!("maria"), json!(PASSWORD)],
    )
    .await;
    let therapist = app.window_like("therapist-").await;
    let operator = app.window_like("operator-").await;
    for id in [mine.id, theirs.id] {
        wait_attr(&mut app, &operator, &row(id), "data-status", "requested").await;
    }
    app.click(&operator, "#sync-button").await;
    app.wait_for(
        &operator,
        "the sync panel",
        "const p = document.querySelector('#sync-panel'); return p && !p.hidden && p.querySelectorAll('[data-figure]').length > 0",
    )
    .await;
    panel_shows_server(&mut app, &operator, &first.url()).await;

    // The first address goes away; maria accepts her booking meanwhile and olivia, on
    // the server, cancels another one.
    first.cut();
    app.click(
        &therapist,
        &format!("{} button[data-action=\"accept\"]", row(mine.id)),
    )
    .await;
    let cancelled = olivia
        .send(
            uuid::Uuid::new_v4(),
            Mutation::CancelBooking {
                id: theirs.id,
                version: theirs.version,
                reason: "The client called off.".into(),
            },
        )
        .await;
    assert!(
        matches!(cancelled, MutationOutcome::Applied { .. }),
        "{cancelled:?}"
    );

    // The app carries on at the second address: both changes show, maria's confirmed by
    // the server, and the panel names the address in use.
    wait_attr(
        &mut app,
        &operator,
        &row(theirs.id),
        "data-status",
        "cancelled",
    )
    .await;
    wait_attr(
        &mut app,
        &operator,
        &row(mine.id),
        "data-status",
        "confirmed",
    )
    .await;
    wait_attr(&mut app, &operator, &row(mine.id), "data-pending", "false").await;
    for label in [&therapist, &operator] {
        wait_attr(&mut app, label, "#sync-dot", "data-state", "online").await;
    }
    panel_shows_server(&mut app, &operator, &second.url()).await;

    // Maria's accept landed once: one version up, confirmed.
    let now = olivia.booking(mine.id).await.expect("the booking");
    assert_eq!(now.status, BookingStatus::Confirmed);
    assert_eq!(now.version, mine.version + 1, "accepted exactly once");
    app.close().await;
}
