//! Every role's whole job, end to end (issue 11): two desks of one clinic, an operator's and
//! a driver's, each the real app in real WebKit windows, against the real server on
//! loopback. The driver goes on duty and takes a run through pickup, journey and arrival
//! in their own window, and the operator's Drivers panel shows each step live; the operator
//! verifies a payment (amount, method, reference) and sees it on the booking and in today's
//! total; a cancellation asks for a reason, which the driver's window then shows; a
//! therapist's decline raises a desktop notification in the operator's app (a test-owned
//! notification service on a private D-Bus).

mod common;

use clinic_protocol::{Booking, BookingAction, BookingStatus, MutationOutcome, Staff};
use clinic_test_kit::{bookings, Staffer, TestServer};
use common::notifications::NotificationService;
use common::{poll, row, signed_in, signed_in_beside, wait_attr, App};
use serde_json::{json, Value};

/// Waits until the text of `css` in `label` contains every one of `parts`; returns it.
async fn wait_text(app: &mut App, label: &str, css: &str, parts: &[&str]) -> String {
    let client = app.window(label).await.clone();
    poll(&format!("{css} to say {parts:?} in {label}"), || async {
        let v = client
            .execute(
                "const el = document.querySelector(arguments[0]); return el ? el.textContent : null",
                vec![json!(css)],
            )
            .await
            .ok()?;
        let text = v.as_str()?.to_owned();
        parts.iter().all(|p| text.contains(p)).then_some(text)
    })
    .await
}

/// Sets the value of the form control `css` in `label` as typing would leave it.
async fn type_into(app: &mut App, label: &str, css: &str, value: &str) {
    let done = app
        .eval(
            label,
            "const el = document.querySelector(arguments[0]);
             if (!el) return false;
             el.value = arguments[1];
             el.dispatchEvent(new Event('input', { bubbles: true }));
             el.dispatchEvent(new Event('change', { bubbles: true }));
             return true",
            vec![json!(css), json!(value)],
        )
        .await;
    assert_eq!(done, Value::Bool(true), "{css} in {label}");
}

async fn booking(by: &Staffer, client: &str) -> Booking {
    bookings(&by.snapshot().await)
        .into_iter()
        .find(|b| b.client_name == client)
        .unwrap_or_else(|| panic!("the demo clinic's booking of {client}"))
}

fn staff(snapshot: &clinic_protocol::Snapshot, username: &str) -> Staff {
    snapshot
        .records
        .iter()
        .filter_map(|r| r.clone().into_staff())
        .find(|s| s.username == username)
        .expect("in the directory")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drivers_run_a_payment_and_a_cancellation_show_live_where_they_should() {
    let notifications = NotificationService::claim().await;
    let server = TestServer::start().await;
    let olivia = Staffer::login(&server.url(), "olivia").await;
    let snapshot = olivia.snapshot().await;
    let lee = staff(&snapshot, "lee");
    // Lee's run of today still to drive: Emma, confirmed (the demo clinic).
    let emma = booking(&olivia, "Emma Rossi").await;
    assert_eq!(emma.driver_id, Some(lee.id));

    let (mut desk, _desk_data) = signed_in(&server.url(), "olivia").await;
    let operator = desk.window_like("operator-").await;
    let (mut car, _car_data) = signed_in_beside(&desk, &server.url(), "lee").await;
    let driver = car.window_like("driver-").await;

    // The Drivers panel: Lee off duty, his next run Emma's, waiting.
    let lee_row = format!("#driver-board [data-driver-id=\"{}\"]", lee.id);
    let lee_run = format!("{lee_row} .driver-run");
    wait_attr(&mut desk, &operator, &lee_row, "data-duty", "off").await;
    wait_attr(
        &mut desk,
        &operator,
        &lee_run,
        "data-run-booking",
        &emma.id.to_string(),
    )
    .await;
    wait_attr(&mut desk, &operator, &lee_run, "data-status", "confirmed").await;

    // Lee goes on duty in his window: the operator's panel says so.
    wait_attr(&mut car, &driver, "#duty-state", "data-duty", "off").await;
    car.click(&driver, "#duty-toggle").await;
    wait_attr(&mut car, &driver, "#duty-state", "data-duty", "on").await;
    wait_attr(&mut desk, &operator, &lee_row, "data-duty", "on").await;
    wait_text(
        &mut desk,
        &operator,
        &format!("{lee_row} .duty"),
        &["On duty"],
    )
    .await;

    // Each step of the run, clicked in Lee's window, shows in the operator's.
    for (action, status, words) in [
        ("confirm_pickup", "pickup_confirmed", "Pickup confirmed"),
        ("start_journey", "en_route", "En route"),
        ("mark_arrived", "arrived", "Arrived"),
    ] {
        car.click(
            &driver,
            &format!("{} button[data-action=\"{action}\"]", row(emma.id)),
        )
        .await;
        wait_attr(&mut desk, &operator, &lee_run, "data-status", status).await;
        wait_attr(&mut desk, &operator, &lee_run, "data-pending", "false").await;
        wait_text(&mut desk, &operator, &lee_run, &[words, "Emma Rossi"]).await;
    }
    wait_text(
        &mut desk,
        &operator,
        &format!("{lee_row} .driver-tally"),
        &["2/2 today"],
    )
    .await;

    // A payment: Ben's session is done, unpaid. The operator verifies it in a dialog.
    let ben = booking(&olivia, "Ben Carter").await;
    let before: i64 = desk
        .wait_for(
            &operator,
            "today's total",
            "const el = document.getElementById('paid-today'); return el && el.dataset.cents",
        )
        .await
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("today's total in cents");
    assert_eq!(
        before,
        6_500 + 9_000,
        "the demo clinic's two payments of today"
    );
    wait_text(&mut desk, &operator, "#paid-today", &["155.00"]).await;
    desk.click(
        &operator,
        &format!("{} button[data-action=\"verify_payment\"]", row(ben.id)),
    )
    .await;
    wait_attr(
        &mut desk,
        &operator,
        "#payment-dialog",
        "data-state",
        "open",
    )
    .await;
    type_into(&mut desk, &operator, "#payment-amount", "45.50").await;
    type_into(&mut desk, &operator, "#payment-method", "card").await;
    type_into(&mut desk, &operator, "#payment-reference", "Slip 9").await;
    desk.click(&operator, "#payment-confirm").await;
    wait_attr(
        &mut desk,
        &operator,
        "#payment-dialog",
        "data-state",
        "closed",
    )
    .await;
    let paid = format!("{} .booking-paid", row(ben.id));
    wait_attr(&mut desk, &operator, &paid, "data-amount", "45.50").await;
    wait_text(
        &mut desk,
        &operator,
        &paid,
        &[
            "Paid 45.50",
            "Card",
            "ref Slip 9",
            "verified by Olivia Grant",
        ],
    )
    .await;
    wait_attr(
        &mut desk,
        &operator,
        "#paid-today",
        "data-cents",
        &(before + 4_550).to_string(),
    )
    .await;
    wait_text(&mut desk, &operator, "#paid-today", &["200.50"]).await;
    // The server has it as typed, stamped with who.
    let detail = booking(&olivia, "Ben Carter")
        .await
        .payment_detail
        .expect("the payment reached the server");
    assert_eq!(
        (detail.amount_cents, detail.reference.as_str()),
        (4_550, "Slip 9")
    );
    assert_eq!(detail.verified_by, olivia.login.user.id);

    // A cancellation asks for a reason; Lee's window shows it on his run of tomorrow.
    let grace = booking(&olivia, "Grace Kim").await;
    assert_eq!(grace.driver_id, Some(lee.id));
    wait_attr(
        &mut car,
        &driver,
        &row(grace.id),
        "data-status",
        "requested",
    )
    .await;
    desk.click(
        &operator,
        &format!("{} button[data-action=\"cancel\"]", row(grace.id)),
    )
    .await;
    wait_attr(&mut desk, &operator, "#cancel-dialog", "data-state", "open").await;
    // Nothing happens until the reason is given and the cancellation confirmed.
    wait_attr(
        &mut desk,
        &operator,
        &row(grace.id),
        "data-status",
        "requested",
    )
    .await;
    type_into(
        &mut desk,
        &operator,
        "#cancel-reason",
        "The client is away this week.",
    )
    .await;
    desk.click(&operator, "#cancel-confirm").await;
    wait_attr(
        &mut desk,
        &operator,
        &row(grace.id),
        "data-status",
        "cancelled",
    )
    .await;
    wait_attr(
        &mut car,
        &driver,
        &row(grace.id),
        "data-status",
        "cancelled",
    )
    .await;
    wait_text(
        &mut car,
        &driver,
        &format!("{} .booking-cancelled", row(grace.id)),
        &["Cancelled by Olivia Grant", "The client is away this week."],
    )
    .await;

    // A therapist declines: the operator's app (and only hers: Lee is no operator) raises
    // one desktop notification, in words that say who and what to do.
    let reyes = Staffer::login(&server.url(), "reyes").await;
    let ana = booking(&reyes, "Ana Lopez").await;
    assert_eq!(ana.status, BookingStatus::Requested);
    let declined = reyes.act(&ana, BookingAction::Decline).await;
    assert!(
        matches!(declined, MutationOutcome::Applied { .. }),
        "{declined:?}"
    );
    wait_attr(
        &mut desk,
        &operator,
        &row(ana.id),
        "data-status",
        "declined",
    )
    .await;
    let seen = poll("the decline notification", || async {
        let found: Vec<_> = notifications
            .recorded()
            .into_iter()
            .filter(|n| n.summary == "Booking declined")
            .collect();
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(
        seen.len(),
        1,
        "one notification, in the operator's app: {seen:?}"
    );
    assert!(
        seen[0]
            .body
            .starts_with("Dr. Elena Reyes declined Ana Lopez: Deep tissue massage")
            && seen[0].body.ends_with("Assign another therapist."),
        "{:?}",
        seen[0]
    );
    // Lee heard of the cancellation of his run, with its reason; Olivia of nothing she did.
    let all = notifications.recorded();
    assert!(
        all.iter().any(|n| n.summary == "Booking cancelled"
            && n.body
                .contains("Olivia Grant gave the reason: The client is away this week.")),
        "{all:?}"
    );
    assert_eq!(
        all.iter()
            .filter(|n| n.summary == "Booking cancelled")
            .count(),
        1,
        "not in the app that cancelled: {all:?}"
    );

    car.close().await;
    desk.close().await;
}
