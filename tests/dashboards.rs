//! The desktop app's end-to-end suite: the real app binary in real WebKit windows (through
//! tauri-driver), the real clinic server on loopback, real SQLite files, a private D-Bus.
//! Latency is measured inside the pages with timestamps and printed, never asserted.

mod common;

use std::time::Duration;

use chrono::{Local, NaiveTime};
use clinic_protocol::{Booking, BookingStatus, IntakeRequest, Mutation, MutationOutcome, NewSlot};
use clinic_test_kit::{bookings, staff_id, Proxy, Staffer, TestServer};
use common::notifications::NotificationService;
use common::{poll, requested_for, resumed, row, signed_in, signed_in_measuring, wait_attr, App};
use serde_json::{json, Value};

async fn number(app: &mut App, label: &str, css: &str) -> i64 {
    let text = app.text(label, css).await.unwrap_or_default();
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{css} in {label} is not a number: {text:?}"))
}

/// Click-to-render latencies seen by `observer` for actions taken in `actor`, in ms.
async fn latencies(app: &mut App, actor: &str, observer: &str) -> Vec<f64> {
    let actions = app
        .eval(actor, "return window.__clinic.actions", vec![])
        .await;
    let renders = app
        .eval(observer, "return window.__clinic.renders", vec![])
        .await;
    let renders: Vec<f64> = renders
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["t"].as_f64())
        .collect();
    actions
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["t"].as_f64())
        .filter_map(|t| renders.iter().find(|r| **r >= t).map(|r| r - t))
        .collect()
}

/// Prints what the pages measured; tests never assert on time.
#[allow(clippy::print_stdout)]
fn report(what: &str, ms: &[f64]) {
    if ms.is_empty() {
        println!("latency {what}: no samples");
        return;
    }
    let mut sorted = ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    println!(
        "latency {what}: n={} p50={:.1} ms max={:.1} ms",
        sorted.len(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );
}

fn today_at(h: u32, m: u32) -> (chrono::NaiveDate, NaiveTime) {
    (
        Local::now().date_naive(),
        NaiveTime::from_hms_opt(h, m, 0).expect("time"),
    )
}

/// A server, a cuttable proxy for Maria's app, Olivia (an operator, signed in directly),
/// and a booking requested of Maria.
async fn a_booking_of_maria_behind_a_proxy() -> (TestServer, Proxy, Staffer, Booking) {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr()).await;
    let olivia = Staffer::login(&server.url(), "olivia").await;
    let snapshot = olivia.snapshot().await;
    let maria = staff_id(&snapshot, "maria");
    let booking = requested_for(&snapshot, maria);
    (server, proxy, olivia, booking)
}

/// Cuts Maria's app off the network, has Olivia cancel `booking` meanwhile, and has Maria
/// accept it in her therapist window: a change queued offline that the server will refuse.
async fn accept_offline_what_olivia_cancelled(
    app: &mut App,
    proxy: &Proxy,
    olivia: &Staffer,
    therapist: &str,
    booking: &Booking,
) {
    proxy.cut();
    wait_attr(app, therapist, "#sync-dot", "data-state", "offline").await;
    let outcome = olivia
        .mutate(Mutation::CancelBooking {
            id: booking.id,
            version: booking.version,
            reason: "The client called off.".into(),
        })
        .await;
    assert!(
        matches!(outcome, MutationOutcome::Applied { .. }),
        "{outcome:?}"
    );
    app.click(
        therapist,
        &format!("{} button[data-action=\"accept\"]", row(booking.id)),
    )
    .await;
}

/// 1. Two windows in one app: accepting in the therapist dashboard shows up confirmed in
///    the operator dashboard, figures included, without any reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_in_one_window_updates_the_other() {
    let server = TestServer::start().await;
    let olivia = Staffer::login(&server.url(), "olivia").await;
    let snapshot = olivia.snapshot().await;
    let maria = staff_id(&snapshot, "maria");
    let booking = requested_for(&snapshot, maria);

    let (mut app, _data) = signed_in_measuring(&server.url(), "maria").await;
    let therapist = app.window_like("therapist-").await;
    let operator = app.window_like("operator-").await;
    wait_attr(
        &mut app,
        &operator,
        &row(booking.id),
        "data-status",
        "requested",
    )
    .await;
    let pending_before = number(&mut app, &operator, "#count-pending").await;
    let confirmed_before = number(&mut app, &operator, "#count-confirmed-today").await;
    let reloads = app
        .eval(
            &operator,
            "return performance.getEntriesByType('navigation').length",
            vec![],
        )
        .await;

    app.click(
        &therapist,
        &format!("{} button[data-action=\"accept\"]", row(booking.id)),
    )
    .await;
    wait_attr(
        &mut app,
        &operator,
        &row(booking.id),
        "data-status",
        "confirmed",
    )
    .await;
    wait_attr(
        &mut app,
        &operator,
        &row(booking.id),
        "data-pending",
        "false",
    )
    .await;
    assert_eq!(
        number(&mut app, &operator, "#count-pending").await,
        pending_before - 1
    );
    let confirmed_after = number(&mut app, &operator, "#count-confirmed-today").await;
    let is_today = booking.date == Local::now().date_naive();
    assert_eq!(confirmed_after, confirmed_before + i64::from(is_today));
    let reloads_after = app
        .eval(
            &operator,
            "return performance.getEntriesByType('navigation').length",
            vec![],
        )
        .await;
    assert_eq!(
        reloads, reloads_after,
        "the operator window was not reloaded"
    );

    let server_side = bookings(&olivia.snapshot().await)
        .into_iter()
        .find(|b| b.id == booking.id)
        .expect("booking");
    assert_eq!(server_side.status, BookingStatus::Confirmed);
    report(
        "therapist click -> operator render",
        &latencies(&mut app, &therapist, &operator).await,
    );
    app.close().await;
}

/// 2. A window opened after changes happened shows the current state, with nothing missing
///    and nothing applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_window_shows_the_current_state() {
    let server = TestServer::start().await;
    let olivia = Staffer::login(&server.url(), "olivia").await;
    let (mut app, _data) = signed_in(&server.url(), "maria").await;
    let first = app.window_like("operator-").await;

    // Changes by someone else while the first window is open.
    let (date, _) = today_at(0, 0);
    let mut made = Vec::new();
    for i in 0..5 {
        let b = server
            .intake(&IntakeRequest {
                client_name: format!("Late window client {i}"),
                client_phone: "555-0100".into(),
                address: "Harbour Road 3".into(),
                service: "Physiotherapy".into(),
                date,
                start: NaiveTime::from_hms_opt(8, i * 10, 0).expect("time"),
                end: NaiveTime::from_hms_opt(9, 0, 0).expect("time"),
                notes: String::new(),
            })
            .await;
        made.push(b.id);
    }
    let cancel = made[0];
    let snap = olivia.snapshot().await;
    let version = bookings(&snap)
        .into_iter()
        .find(|b| b.id == cancel)
        .expect("made")
        .version;
    let outcome = olivia
        .mutate(Mutation::CancelBooking {
            id: cancel,
            version,
            reason: "The client called off.".into(),
        })
        .await;
    assert!(
        matches!(outcome, MutationOutcome::Applied { .. }),
        "{outcome:?}"
    );
    wait_attr(&mut app, &first, &row(cancel), "data-status", "cancelled").await;

    // A new window, opened through the backend like the Window menu does.
    let before = app.labels().await;
    app.eval(
        &first,
        "window.__TAURI__.core.invoke('open_window', { kind: 'operator' }); return true",
        vec![],
    )
    .await;
    let late = {
        let deadline = std::time::Instant::now() + common::DEADLINE;
        loop {
            let now = app.labels().await;
            if let Some(l) = now
                .iter()
                .find(|l| l.starts_with("operator-") && !before.contains(l))
            {
                break l.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no new operator window"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    app.window(&late).await;
    wait_attr(&mut app, &late, &row(cancel), "data-status", "cancelled").await;

    let rows = "return [...document.querySelectorAll('[data-booking-id]')].map(e => e.dataset.bookingId + ':' + e.dataset.status).sort()";
    let a = app.eval(&first, rows, vec![]).await;
    let b = app.eval(&late, rows, vec![]).await;
    assert_eq!(a, b, "both operator windows show the same bookings");
    let ids: Vec<String> = b
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|v| {
            v.as_str()
                .map(|s| s.split(':').next().unwrap_or_default().to_owned())
        })
        .collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "no booking is shown twice");
    for id in &made {
        assert!(
            ids.contains(&id.to_string()),
            "booking {id} is missing from the late window"
        );
    }
    let server_ids: Vec<String> = bookings(&olivia.snapshot().await)
        .iter()
        .map(|b| b.id.to_string())
        .collect();
    for id in &server_ids {
        assert!(
            ids.contains(id),
            "server booking {id} missing from the window"
        );
    }
    let seq_a = app
        .eval(&first, "return document.body.dataset.seq", vec![])
        .await;
    let seq_b = app
        .eval(&late, "return document.body.dataset.seq", vec![])
        .await;
    assert_eq!(seq_a, seq_b, "both windows are at the same cache sequence");
    app.close().await;
}

/// 3. Two clients: another user adds availability; the first app's scheduling dashboard
///    shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_from_another_client_appears() {
    let server = TestServer::start().await;
    let (mut app, _data) = signed_in(&server.url(), "maria").await;
    let scheduling = app.window_like("scheduling-").await;

    let reyes = Staffer::login(&server.url(), "reyes").await;
    let slot = uuid::Uuid::new_v4();
    let (date, start) = today_at(19, 0);
    let outcome = reyes
        .mutate(Mutation::CreateSlot {
            slot: NewSlot {
                id: slot,
                staff_id: reyes.login.user.id,
                date,
                start,
                end: NaiveTime::from_hms_opt(21, 0, 0).expect("time"),
                note: "Evening shift".into(),
            },
        })
        .await;
    assert!(
        matches!(outcome, MutationOutcome::Applied { .. }),
        "{outcome:?}"
    );
    app.wait_for(
        &scheduling,
        "the new slot",
        &format!("return document.querySelector('[data-slot-id=\"{slot}\"]') !== null"),
    )
    .await;
    app.close().await;
}

/// 4. A web intake booking gives exactly one notification per app, whatever the number of
///    windows; the user's own change gives none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_per_change_and_none_for_my_own() {
    let notifications = NotificationService::claim().await;
    let server = TestServer::start().await;
    let (mut app, _data) = signed_in(&server.url(), "maria").await;
    let operator = app.window_like("operator-").await;
    app.window_like("therapist-").await;
    app.window_like("scheduling-").await;
    assert!(
        app.labels().await.len() >= 3,
        "three windows or more are open"
    );

    let (date, start) = today_at(7, 0);
    let request = IntakeRequest {
        client_name: "Web Form Client".into(),
        client_phone: "555-0199".into(),
        address: "Elm Street 9".into(),
        service: "Sports massage".into(),
        date,
        start,
        end: NaiveTime::from_hms_opt(8, 0, 0).expect("time"),
        notes: String::new(),
    };
    let first = server.intake(&request).await;
    let seen = poll("the intake notification", || async {
        let r = notifications.recorded();
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(seen[0].summary, "New booking");
    assert!(seen[0].body.contains("Web Form Client"), "{:?}", seen[0]);
    assert_eq!(seen[0].app_name, "Clinic Desk");

    // My own change: cancel that booking from the operator window.
    wait_attr(
        &mut app,
        &operator,
        &row(first.id),
        "data-status",
        "requested",
    )
    .await;
    app.click(
        &operator,
        &format!("{} button[data-action=\"cancel\"]", row(first.id)),
    )
    .await;
    // Cancelling asks for a reason in a dialog, then goes.
    wait_attr(&mut app, &operator, "#cancel-dialog", "data-state", "open").await;
    app.eval(
        &operator,
        "document.getElementById('cancel-reason').value = 'A test run.'; return true",
        vec![],
    )
    .await;
    app.click(&operator, "#cancel-confirm").await;
    wait_attr(
        &mut app,
        &operator,
        &row(first.id),
        "data-status",
        "cancelled",
    )
    .await;
    wait_attr(&mut app, &operator, &row(first.id), "data-pending", "false").await;

    // A sentinel from the web form: once its notification is here, anything my own change
    // could have caused (it came first) would be here too.
    let sentinel = server
        .intake(&IntakeRequest {
            client_name: "Sentinel Client".into(),
            ..request
        })
        .await;
    let seen = poll("the sentinel notification", || async {
        let r = notifications.recorded();
        r.iter()
            .any(|n| n.body.contains("Sentinel Client"))
            .then_some(r)
    })
    .await;
    let summaries: Vec<(&str, &str)> = seen
        .iter()
        .map(|n| (n.summary.as_str(), n.body.as_str()))
        .collect();
    assert_eq!(
        seen.len(),
        2,
        "exactly one notification per intake, none for my cancel: {summaries:?}"
    );
    assert!(seen[1].body.contains("Sentinel Client"));
    let _ = sentinel;
    app.close().await;
}

/// 5. Offline: the server stops, the dot turns red, an action made offline shows as
///    pending; the server comes back, the change lands, the dot turns green, and the other
///    client sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_changes_land_when_the_server_returns() {
    let mut server = TestServer::start().await;
    let olivia = Staffer::login(&server.url(), "olivia").await;
    let snapshot = olivia.snapshot().await;
    let maria = staff_id(&snapshot, "maria");
    let booking = requested_for(&snapshot, maria);
    let (mut app, _data) = signed_in(&server.url(), "maria").await;
    let therapist = app.window_like("therapist-").await;
    let operator = app.window_like("operator-").await;
    wait_attr(&mut app, &therapist, "#sync-dot", "data-state", "online").await;

    server.stop().await;
    wait_attr(&mut app, &therapist, "#sync-dot", "data-state", "offline").await;
    wait_attr(&mut app, &operator, "#sync-dot", "data-state", "offline").await;

    app.click(
        &therapist,
        &format!("{} button[data-action=\"accept\"]", row(booking.id)),
    )
    .await;
    wait_attr(
        &mut app,
        &operator,
        &row(booking.id),
        "data-status",
        "confirmed",
    )
    .await;
    wait_attr(
        &mut app,
        &operator,
        &row(booking.id),
        "data-pending",
        "true",
    )
    .await;
    // At least the accept is queued (the messages window may have queued read receipts too).
    let pending = app
        .text(&operator, "#sync-pending")
        .await
        .unwrap_or_default();
    let queued: u32 = pending
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        queued >= 1,
        "the pending count shows the queued change: {pending:?}"
    );

    server.restart().await;
    wait_attr(
        &mut app,
        &operator,
        &row(booking.id),
        "data-pending",
        "false",
    )
    .await;
    wait_attr(&mut app, &operator, "#sync-dot", "data-state", "online").await;
    wait_attr(&mut app, &therapist, "#sync-dot", "data-state", "online").await;

    let olivia = Staffer::login(&server.url(), "olivia").await;
    let landed = bookings(&olivia.snapshot().await)
        .into_iter()
        .find(|b| b.id == booking.id)
        .expect("booking");
    assert_eq!(
        landed.status,
        BookingStatus::Confirmed,
        "the offline accept landed"
    );
    assert_eq!(landed.version, booking.version + 1, "exactly once");
    app.close().await;
}

/// 6. Rejection: two users act on the same booking; the loser's windows roll back and the
///    window where they acted says what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loser_of_a_conflict_rolls_back_and_is_told() {
    let (_server, proxy, olivia, booking) = a_booking_of_maria_behind_a_proxy().await;

    let (mut app, _data) = signed_in(&proxy.url(), "maria").await;
    let therapist = app.window_like("therapist-").await;
    let operator = app.window_like("operator-").await;
    wait_attr(&mut app, &therapist, "#sync-dot", "data-state", "online").await;

    // Maria accepts offline what Olivia has just cancelled: it shows as confirmed,
    // pending, in every window.
    accept_offline_what_olivia_cancelled(&mut app, &proxy, &olivia, &therapist, &booking).await;
    wait_attr(
        &mut app,
        &operator,
        &row(booking.id),
        "data-status",
        "confirmed",
    )
    .await;

    proxy.restore();
    // The server wins: every window shows the booking cancelled.
    wait_attr(
        &mut app,
        &operator,
        &row(booking.id),
        "data-status",
        "cancelled",
    )
    .await;
    wait_attr(
        &mut app,
        &therapist,
        &row(booking.id),
        "data-status",
        "cancelled",
    )
    .await;
    wait_attr(
        &mut app,
        &therapist,
        &row(booking.id),
        "data-pending",
        "false",
    )
    .await;
    // Told in the window where she acted, and only there.
    let toast = app
        .wait_for(
            &therapist,
            "the rejection message",
            "const t = document.querySelector('#toasts .toast'); return t && t.textContent",
        )
        .await;
    let toast = toast.as_str().unwrap_or_default().to_owned();
    assert!(
        toast.contains("cancelled"),
        "the message says what the booking is now: {toast:?}"
    );
    let toasts_elsewhere = app
        .eval(
            &operator,
            "return document.querySelectorAll('#toasts .toast[data-code]').length",
            vec![],
        )
        .await;
    assert_eq!(
        toasts_elsewhere,
        json!(0),
        "no dialog storm in the other windows"
    );
    app.close().await;
}

/// 7. A booking note with HTML and script in it is shown as plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_text_is_shown_as_text() {
    let server = TestServer::start().await;
    let (mut app, _data) = signed_in(&server.url(), "maria").await;
    let operator = app.window_like("operator-").await;
    let hostile =
        "<b>bold</b><img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>";
    let (date, start) = today_at(6, 0);
    let booking = server
        .intake(&IntakeRequest {
            client_name: "<i>Eve</i>".into(),
            client_phone: "555".into(),
            address: "Nowhere".into(),
            service: "Massage".into(),
            date,
            start,
            end: NaiveTime::from_hms_opt(6, 30, 0).expect("time"),
            notes: hostile.into(),
        })
        .await;
    wait_attr(
        &mut app,
        &operator,
        &row(booking.id),
        "data-status",
        "requested",
    )
    .await;
    let shown: Value = app
        .eval(
            &operator,
            "const r = document.querySelector(arguments[0]);
             const n = r.querySelector('.booking-notes');
             const c = r.querySelector('.booking-client');
             return { notes: n && n.textContent, client: c && c.textContent,
                      elements: r.querySelectorAll('b, img, script, i').length,
                      pwned: window.__pwned === undefined ? null : window.__pwned }",
            vec![json!(row(booking.id))],
        )
        .await;
    assert_eq!(shown["notes"], json!(hostile));
    assert_eq!(shown["client"], json!("<i>Eve</i>"));
    assert_eq!(
        shown["elements"],
        json!(0),
        "no element was made from user text"
    );
    assert_eq!(shown["pwned"], Value::Null, "no script ran");
    app.close().await;
}

/// 8. A change refused after the app was restarted is told in the window it was made in:
///    the window's label is kept with the change in the outbox, and the restarted app
///    reopens its windows under the same labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_after_a_restart_is_told_where_the_change_was_made() {
    let (_server, proxy, olivia, booking) = a_booking_of_maria_behind_a_proxy().await;

    let (mut app, data) = signed_in(&proxy.url(), "maria").await;
    let therapist = app.window_like("therapist-").await;
    wait_attr(&mut app, &therapist, "#sync-dot", "data-state", "online").await;

    // Offline, Maria accepts a booking that Olivia has just cancelled; then the app quits
    // with the accept still queued.
    accept_offline_what_olivia_cancelled(&mut app, &proxy, &olivia, &therapist, &booking).await;
    wait_attr(
        &mut app,
        &therapist,
        &row(booking.id),
        "data-pending",
        "true",
    )
    .await;
    app.close().await;

    // The restarted app resumes offline from its cache, with the same windows.
    // `window` waits for a window with exactly this label, and fails if none comes.
    let mut app = resumed(&proxy.url(), data.path()).await;
    app.window(&therapist).await;
    wait_attr(
        &mut app,
        &therapist,
        &row(booking.id),
        "data-pending",
        "true",
    )
    .await;

    proxy.restore();
    wait_attr(
        &mut app,
        &therapist,
        &row(booking.id),
        "data-status",
        "cancelled",
    )
    .await;
    let toast = app
        .wait_for(
            &therapist,
            "the rejection message after the restart",
            "const t = document.querySelector('#toasts .toast'); return t && t.textContent",
        )
        .await;
    assert!(
        toast.as_str().unwrap_or_default().contains("cancelled"),
        "the message says what the booking is now: {toast}"
    );
    for other in app.labels().await {
        if other == therapist {
            continue;
        }
        let toasts = app
            .eval(
                &other,
                "return document.querySelectorAll('#toasts .toast[data-code]').length",
                vec![],
            )
            .await;
        assert_eq!(
            toasts,
            json!(0),
            "told once, in its own window, not in {other}"
        );
    }
    app.close().await;
}

/// 9. Pages keep no latency probes in normal use: only an app started with `--measure`
///    records clicks and renders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_probes_are_off_unless_measuring() {
    let server = TestServer::start().await;
    for (measure, want) in [(false, "undefined"), (true, "object")] {
        let (mut app, _data) = if measure {
            signed_in_measuring(&server.url(), "maria").await
        } else {
            signed_in(&server.url(), "maria").await
        };
        let operator = app.window_like("operator-").await;
        let probes = app
            .eval(&operator, "return typeof window.__clinic", vec![])
            .await;
        assert_eq!(probes, json!(want), "measure = {measure}");
        app.close().await;
    }
}
