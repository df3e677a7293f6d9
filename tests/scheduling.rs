//! The scheduler's whole job and the shared booking forms, end to end: the real app in
//! WebKit windows (tauri-driver), the real clinic server on loopback, real SQLite files.
//! - a booking from the web intake shows in the Scheduling window's unassigned lane; a
//!   scheduler assigns it there and the therapist's app shows it;
//! - a form's "Who is free" list follows other clients' availability and bookings live;
//! - a new booking the server refuses is told in its window with "Reopen"; closed with that
//!   window and the app restarted, it is told in another dashboard, which offers to open an
//!   Operator window, where "Reopen" fills the form again with what was typed; a refused
//!   assignment reopens the booking's editor in the Scheduling window the same way.

mod common;

use chrono::{Duration, Local, NaiveDate, NaiveTime};
use clinic_protocol::{IntakeRequest, Mutation, MutationOutcome, NewBooking, NewSlot};
use clinic_test_kit::{staff_id, Staffer, TestServer};
use common::{poll, resumed, signed_in, signed_in_beside, wait_attr, App};
use serde_json::{json, Value};
use uuid::Uuid;

fn t(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("a time")
}

fn today() -> NaiveDate {
    Local::now().date_naive()
}

/// Types `values` into the fields of the form matching `form` in `label`, as a user would:
/// each field gets its value and an input and a change event.
async fn type_into(app: &mut App, label: &str, form: &str, values: Value) {
    app.eval(
        label,
        "const f = document.querySelector(arguments[0]);
         for (const [name, value] of Object.entries(arguments[1])) {
           const el = f.elements[name];
           el.value = value;
           el.dispatchEvent(new Event('input', { bubbles: true }));
           el.dispatchEvent(new Event('change', { bubbles: true }));
         }
         return true",
        vec![json!(form), values],
    )
    .await;
}

/// Clicks the element matching `css` in `label` from the page (the side column of a busy
/// window may put it out of WebDriver's reach; the click is the same event).
async fn press(app: &mut App, label: &str, css: &str) {
    let done = app
        .eval(
            label,
            "const el = document.querySelector(arguments[0]);
             if (!el) return false;
             el.scrollIntoView({ block: 'center' });
             el.click();
             return true",
            vec![json!(css)],
        )
        .await;
    assert_eq!(done, json!(true), "{css} in {label}");
}

async fn add_slot(by: &Staffer, staff: Uuid, date: NaiveDate, start: NaiveTime, end: NaiveTime) {
    let outcome = by
        .mutate(Mutation::CreateSlot {
            slot: NewSlot {
                id: Uuid::new_v4(),
                staff_id: staff,
                date,
                start,
                end,
                note: String::new(),
            },
        })
        .await;
    assert!(
        matches!(outcome, MutationOutcome::Applied { .. }),
        "{outcome:?}"
    );
}

/// 1. A booking from the web form has no therapist: the Scheduling window shows it in the
///    unassigned lane; the scheduler opens it, sees who is free then, assigns a therapist;
///    it moves into the therapist's lane, and the therapist's own app lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_assigns_an_intake_booking_and_the_therapists_app_shows_it() {
    let server = TestServer::start().await;
    let sam = Staffer::login(&server.url(), "sam").await;
    let snapshot = sam.snapshot().await;
    let kim = staff_id(&snapshot, "kim");
    let reyes = staff_id(&snapshot, "reyes");
    // Early in the morning, before the demo clinic's hours: only Kim is available then.
    add_slot(&sam, kim, today(), t(6, 0), t(8, 0)).await;
    let intake = server
        .intake(&IntakeRequest {
            client_name: "Web Intake Client".into(),
            client_phone: "555-0199".into(),
            address: "Harbour Road 9".into(),
            service: "Physiotherapy".into(),
            date: today(),
            start: t(6, 30),
            end: t(7, 30),
            notes: String::new(),
        })
        .await;
    assert_eq!(intake.therapist_id, None);

    let (mut desk, _desk_data) = signed_in(&server.url(), "sam").await;
    let scheduling = desk.window_like("scheduling-").await;
    let block = format!(
        ".lane[data-staff-id=\"unassigned\"] [data-booking-id=\"{}\"]",
        intake.id
    );
    wait_attr(&mut desk, &scheduling, &block, "data-status", "requested").await;
    desk.click(&scheduling, &block).await;

    // The editor says who is free at the booking's time, from availability and bookings.
    let person = |id: Uuid| format!("#edit-booking .free-person[data-person-id=\"{id}\"]");
    wait_attr(&mut desk, &scheduling, &person(kim), "data-state", "free").await;
    wait_attr(
        &mut desk,
        &scheduling,
        &person(reyes),
        "data-state",
        "outside_hours",
    )
    .await;
    let words = desk
        .text(&scheduling, &format!("{} .free-words", person(reyes)))
        .await
        .unwrap_or_default();
    assert!(words.contains("09:00–18:00"), "{words}");

    type_into(
        &mut desk,
        &scheduling,
        "#edit-booking form.editor",
        json!({ "therapist_id": kim.to_string() }),
    )
    .await;
    press(
        &mut desk,
        &scheduling,
        "#edit-booking form.editor button[type=submit]",
    )
    .await;
    let in_kims_lane = format!(
        ".lane[data-staff-id=\"{kim}\"] [data-booking-id=\"{}\"]",
        intake.id
    );
    wait_attr(
        &mut desk,
        &scheduling,
        &in_kims_lane,
        "data-pending",
        "false",
    )
    .await;
    let still_unassigned = desk
        .eval(
            &scheduling,
            "return document.querySelector(arguments[0]) !== null",
            vec![json!(block)],
        )
        .await;
    assert_eq!(
        still_unassigned,
        json!(false),
        "it left the unassigned lane"
    );
    assert_eq!(
        sam.booking(intake.id).await.and_then(|b| b.therapist_id),
        Some(kim),
        "the server has the assignment"
    );

    // Kim's own app lists it, waiting for her to accept.
    let (mut kims, _kim_data) = signed_in_beside(&desk, &server.url(), "kim").await;
    let therapist = kims.window_like("therapist-").await;
    wait_attr(
        &mut kims,
        &therapist,
        &format!("[data-booking-id=\"{}\"]", intake.id),
        "data-status",
        "requested",
    )
    .await;
    kims.close().await;
    desk.close().await;
}

/// 2. The new-booking form's "Who is free" list is live: availability another client adds,
///    then a booking another client makes, change it while the form stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forms_free_list_follows_other_clients_live() {
    let server = TestServer::start().await;
    let sam = Staffer::login(&server.url(), "sam").await;
    let olivia = Staffer::login(&server.url(), "olivia").await;
    let kim = staff_id(&sam.snapshot().await, "kim");
    let day = today() + Duration::days(1);

    let (mut app, _data) = signed_in(&server.url(), "sam").await;
    let scheduling = app.window_like("scheduling-").await;
    wait_attr(&mut app, &scheduling, "body", "data-ready", "true").await;
    type_into(
        &mut app,
        &scheduling,
        "form#new-booking",
        json!({
            "client_name": "Typed Client",
            "date": day.to_string(),
            "start": "06:00",
            "end": "07:00",
        }),
    )
    .await;
    let kims = format!("#new-booking .free-person[data-person-id=\"{kim}\"]");
    wait_attr(&mut app, &scheduling, &kims, "data-state", "outside_hours").await;

    // Someone else makes Kim available then: free, with nothing typed lost.
    add_slot(&sam, kim, day, t(6, 0), t(8, 0)).await;
    wait_attr(&mut app, &scheduling, &kims, "data-state", "free").await;

    // Someone else books her then: busy, with that booking named.
    let other = Uuid::new_v4();
    let outcome = olivia
        .mutate(Mutation::CreateBooking {
            booking: NewBooking {
                id: other,
                client_name: "Other Desk Client".into(),
                client_phone: String::new(),
                address: String::new(),
                service: "Massage".into(),
                date: day,
                start: t(6, 30),
                end: t(7, 30),
                therapist_id: Some(kim),
                driver_id: None,
                notes: String::new(),
            },
        })
        .await;
    assert!(
        matches!(outcome, MutationOutcome::Applied { .. }),
        "{outcome:?}"
    );
    wait_attr(&mut app, &scheduling, &kims, "data-state", "busy").await;
    let words = app
        .text(&scheduling, &format!("{kims} .free-words"))
        .await
        .unwrap_or_default();
    assert!(words.contains("Other Desk Client"), "{words}");
    let typed = app
        .eval(
            &scheduling,
            "return document.querySelector('form#new-booking').elements.client_name.value",
            vec![],
        )
        .await;
    assert_eq!(typed, json!("Typed Client"));

    // Choosing her now asks for a second click before anything is sent.
    type_into(
        &mut app,
        &scheduling,
        "form#new-booking",
        json!({ "service": "Massage", "therapist_id": kim.to_string() }),
    )
    .await;
    press(
        &mut app,
        &scheduling,
        "form#new-booking button[type=submit]",
    )
    .await;
    wait_attr(
        &mut app,
        &scheduling,
        "form#new-booking button[type=submit]",
        "data-confirm",
        "true",
    )
    .await;
    let warning = app
        .text(&scheduling, "form#new-booking .form-warning")
        .await
        .unwrap_or_default();
    assert!(warning.contains("Other Desk Client"), "{warning}");
    app.close().await;
}

/// 3. A new booking the server refuses (outside the therapist's availability: a rule only
///    the server checks) is told in the window it was made in with "Reopen". The user
///    closes that window and restarts the app: the refusal is told in another dashboard,
///    which has no such form and offers to open the Operator window; there one click puts
///    every typed value back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_new_booking_reopens_its_form_with_the_typed_values() {
    let server = TestServer::start().await;
    let olivia = Staffer::login(&server.url(), "olivia").await;
    let reyes = staff_id(&olivia.snapshot().await, "reyes");

    let (mut app, data) = signed_in(&server.url(), "olivia").await;
    let operator = app.window_like("operator-").await;
    wait_attr(&mut app, &operator, "#sync-dot", "data-state", "online").await;
    let typed = json!({
        "client_name": "Refused Client",
        "client_phone": "555-0142",
        "address": "Elm Street 4",
        "service": "Reflexology",
        "date": today().to_string(),
        "start": "06:00",
        "end": "07:00",
        "therapist_id": reyes.to_string(),
        "notes": "Ring twice.",
    });
    type_into(&mut app, &operator, "form#new-booking", typed.clone()).await;
    // Dr. Reyes works 09:00–18:00: the form says so and asks again before sending.
    wait_attr(
        &mut app,
        &operator,
        &format!("#new-booking .free-person[data-person-id=\"{reyes}\"]"),
        "data-state",
        "outside_hours",
    )
    .await;
    press(&mut app, &operator, "form#new-booking button[type=submit]").await;
    wait_attr(
        &mut app,
        &operator,
        "form#new-booking button[type=submit]",
        "data-confirm",
        "true",
    )
    .await;
    press(&mut app, &operator, "form#new-booking button[type=submit]").await;

    // The server refuses it: told here, in words, with the offer to reopen.
    let toast = "#toasts .toast-rejection[data-reopen=\"new_booking\"]";
    let message = app
        .wait_for(
            &operator,
            "the refusal with Reopen",
            &format!(
                "const t = document.querySelector('{}'); return t && t.textContent",
                toast.replace('\'', "\\'")
            ),
        )
        .await;
    assert!(
        message
            .as_str()
            .unwrap_or_default()
            .contains("not available"),
        "{message}"
    );
    assert_eq!(
        app.eval(
            &operator,
            "return document.querySelector('form#new-booking').elements.client_name.value",
            vec![],
        )
        .await,
        json!(""),
        "the form was cleared when the booking was queued"
    );

    // The user closes the Operator window without dismissing the refusal: it is kept.
    app.eval(
        &operator,
        "window.__TAURI__.window.getCurrentWindow().close(); return true",
        vec![],
    )
    .await;
    let layout = data.path().join("layout.json");
    poll("the Operator window gone from the saved layout", || async {
        let saved = std::fs::read_to_string(&layout).ok()?;
        (!saved.contains("\"operator\"") && saved.contains("\"messages\"")).then_some(())
    })
    .await;
    app.close().await;

    // After a restart only the other dashboards open. The first one tells the refusal: it
    // has no form for it, so it offers to open the Operator window instead (and never lets
    // it go on a timer).
    let mut app = resumed(&server.url(), data.path()).await;
    let other = app.window_like("messages-").await;
    let offer = "#toasts .toast-rejection .toast-open[data-kind=\"operator\"]";
    let words = app
        .wait_for(
            &other,
            "the offer to open the Operator window",
            &format!(
                "const b = document.querySelector('{}'); return b && b.textContent",
                offer.replace('\'', "\\'")
            ),
        )
        .await;
    assert_eq!(words, json!("Open the Operator window"));
    assert!(
        app.labels()
            .await
            .iter()
            .all(|l| !l.starts_with("operator-")),
        "no Operator window yet"
    );
    press(&mut app, &other, offer).await;
    // The new Operator window tells it with Reopen; the offer goes from the other window
    // (without forgetting the refusal: the Operator window still has it to tell).
    let operator = app.window_like("operator-").await;
    let client = app.window(&other).await.clone();
    poll("the offer gone once the Operator window opened", || async {
        let left = client
            .execute(
                "return document.querySelectorAll('#toasts .toast-rejection').length",
                vec![],
            )
            .await
            .ok()?;
        (left.as_u64()? == 0).then_some(())
    })
    .await;
    app.click(&operator, &format!("{toast} .toast-reopen"))
        .await;
    let form = app
        .eval(
            &operator,
            "const f = document.querySelector('form#new-booking');
             return Object.fromEntries(Object.keys(arguments[0]).map((n) => [n, f.elements[n].value]))",
            vec![typed.clone()],
        )
        .await;
    assert_eq!(form, typed, "every typed value is back");
    let left = app
        .eval(
            &operator,
            "return document.querySelectorAll('#toasts .toast-rejection').length",
            vec![],
        )
        .await;
    assert_eq!(left, json!(0), "reopened, the offer is gone");
    // Seen, it is forgotten: the backend has no refusal left for this window to tell.
    let client = app.window(&operator).await.clone();
    poll("the refusal forgotten once reopened", || async {
        let told = client
            .execute(
                "return window.__TAURI__.core.invoke('rejections').then((list) => list.length)",
                vec![],
            )
            .await
            .ok()?;
        (told.as_u64()? == 0).then_some(())
    })
    .await;
    app.close().await;
}

/// 4. An assignment the server refuses reopens, in the Scheduling window, the booking's
///    editor with the choice made, after the form warned about it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_assignment_reopens_its_editor_with_the_choice_made() {
    let server = TestServer::start().await;
    let sam = Staffer::login(&server.url(), "sam").await;
    let reyes = staff_id(&sam.snapshot().await, "reyes");
    let intake = server
        .intake(&IntakeRequest {
            client_name: "Dawn Client".into(),
            client_phone: String::new(),
            address: String::new(),
            service: "Massage".into(),
            date: today(),
            start: t(5, 0),
            end: t(6, 0),
            notes: String::new(),
        })
        .await;

    let (mut app, _data) = signed_in(&server.url(), "sam").await;
    let scheduling = app.window_like("scheduling-").await;
    let block = format!(
        ".lane[data-staff-id=\"unassigned\"] [data-booking-id=\"{}\"]",
        intake.id
    );
    wait_attr(&mut app, &scheduling, &block, "data-status", "requested").await;
    press(&mut app, &scheduling, &block).await;
    wait_attr(
        &mut app,
        &scheduling,
        &format!("#edit-booking .free-person[data-person-id=\"{reyes}\"]"),
        "data-state",
        "outside_hours",
    )
    .await;
    type_into(
        &mut app,
        &scheduling,
        "#edit-booking form.editor",
        json!({ "therapist_id": reyes.to_string() }),
    )
    .await;
    let submit = "#edit-booking form.editor button[type=submit]";
    press(&mut app, &scheduling, submit).await;
    wait_attr(&mut app, &scheduling, submit, "data-confirm", "true").await;
    press(&mut app, &scheduling, submit).await;

    let toast = "#toasts .toast-rejection[data-reopen=\"assign\"]";
    wait_attr(
        &mut app,
        &scheduling,
        toast,
        "data-code",
        "outside_availability",
    )
    .await;
    // Back where it was, unassigned; the editor closed when the change was queued.
    wait_attr(&mut app, &scheduling, &block, "data-pending", "false").await;
    press(
        &mut app,
        &scheduling,
        "#toasts .toast-rejection .toast-reopen",
    )
    .await;
    let chosen = app
        .wait_for(
            &scheduling,
            "the assign editor reopened",
            "const f = document.querySelector('#edit-booking form.editor[data-editor=assign]');
             return f && f.elements.therapist_id.value",
        )
        .await;
    assert_eq!(chosen, json!(reyes.to_string()), "the choice made is back");
    app.close().await;
}
