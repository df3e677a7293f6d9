//! Nothing typed is lost, nothing fails silently, in the real app (tauri-driver, real
//! WebKit windows, the real server on loopback, a private D-Bus): a session the server
//! ends is said in every window and signed in again from there, the queued change going
//! out once; a change in flight turns the dot orange and is listed, with its window, in
//! every window's sync panel; a message reaches its recipient's app and nobody else; a
//! click on a notification brings up the dashboard it is about; the dashboards and their
//! places come back after a restart.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use clinic_protocol::wire::paths;
use clinic_protocol::{BookingStatus, IntakeRequest, Message, Record, Snapshot};
use clinic_test_kit::{staff_id, Proxy, Staffer, TestServer, PASSWORD};
use common::notifications::NotificationService;
use common::{poll, requested_for, resumed, row, signed_in, signed_in_beside, wait_attr, App};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

fn messages(snapshot: &Snapshot) -> Vec<Message> {
    snapshot
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// A loopback proxy that can hold back what clients send while letting the server's
/// answers and heartbeats through: the feed stays open and healthy, and a request sent
/// meanwhile is in flight, unanswered, until released.
struct HoldingProxy {
    addr: SocketAddr,
    held: watch::Sender<bool>,
}

impl HoldingProxy {
    async fn start(upstream: SocketAddr) -> HoldingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (held, rx) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(hold_forward(client, upstream, rx.clone()));
            }
        });
        HoldingProxy { addr, held }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hold(&self) {
        self.held.send_replace(true);
    }

    fn release(&self) {
        self.held.send_replace(false);
    }
}

async fn hold_forward(client: TcpStream, upstream: SocketAddr, mut held: watch::Receiver<bool>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from_client.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if held.wait_for(|h| !*h).await.is_err() {
            break;
        }
        if to_server.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to_server.shutdown().await;
    down.abort();
}

/// The sync panel's figures in window `label`, by key: `[value, text]`.
const FIGURES: &str =
    "return Object.fromEntries([...document.querySelectorAll('#sync-panel [data-figure]')]
    .map(f => [f.dataset.figure, [f.dataset.value, f.querySelector('dd').textContent]]))";

/// The text of every log file of the app run on `data`.
fn logs_of(data: &std::path::Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(data.join("logs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        if path.is_file() && !path.is_symlink() {
            text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    text
}

/// Opens the sync panel in window `label` by clicking the sync indicator.
async fn open_panel(app: &mut App, label: &str) {
    app.click(label, "#sync-button").await;
    app.wait_for(
        label,
        "the sync panel",
        "const p = document.querySelector('#sync-panel'); return p && !p.hidden && p.querySelectorAll('[data-figure]').length > 0",
    )
    .await;
}

/// 1. The server ends the session while a change waits offline: every window says so and
///    offers to sign in again; signing in again from another window (the password changed
///    meanwhile) sends the change once, and nothing was closed on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_again_after_the_session_ended_sends_the_queued_change_once() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr()).await;
    let olivia = Staffer::login(&server.url(), "olivia").await;
    let snapshot = olivia.snapshot().await;
    let booking = requested_for(&snapshot, staff_id(&snapshot, "maria"));

    let (mut app, _data) = signed_in(&proxy.url(), "maria").await;
    let therapist = app.window_like("therapist-").await;
    let operator = app.window_like("operator-").await;
    wait_attr(&mut app, &therapist, "#sync-dot", "data-state", "online").await;
    let windows_before = app.labels().await;

    // Offline, Maria accepts the booking: queued.
    proxy.cut();
    wait_attr(&mut app, &therapist, "#sync-dot", "data-state", "offline").await;
    app.click(
        &therapist,
        &format!("{} button[data-action=\"accept\"]", row(booking.id)),
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

    // Meanwhile she changes her password at another desk: the server ends every other
    // session of hers, this app's included.
    let elsewhere = Staffer::login(&server.url(), "maria").await;
    let new_password = "a long new password";
    let changed = elsewhere
        .http()
        .post(format!("{}{}", server.url(), paths::PASSWORD))
        .bearer_auth(&elsewhere.login.token)
        .json(&json!({"current": PASSWORD, "new": new_password}))
        .send()
        .await
        .expect("change maria's password");
    assert!(changed.status().is_success(), "{}", changed.status());
    proxy.restore();

    // Every window says the session ended (not "offline") and offers to sign in again.
    for label in [&therapist, &operator] {
        let told = app
            .wait_for(
                label,
                "the window to say the session ended",
                "const p = document.querySelector('.account-state');
                 const offer = document.querySelector('.sign-in-again');
                 return p.dataset.state === 'expired' && !p.hidden && offer && !offer.hidden ? p.textContent : null",
            )
            .await;
        assert!(
            told.as_str()
                .unwrap_or_default()
                .contains("session has ended"),
            "{told}"
        );
    }
    // Nothing went out with the dead token: the server still has the booking requested.
    let on_server = olivia.booking(booking.id).await.expect("booking");
    assert_eq!(on_server.status, BookingStatus::Requested);
    assert_eq!(on_server.version, booking.version);

    // From the operator window: the old password is refused in words, the new one works.
    app.click(&operator, ".sign-in-again").await;
    for (password, expect_error) in [(PASSWORD, true), (new_password, false)] {
        app.eval(
            &operator,
            "const f = document.querySelector('#sync-signin');
             f.elements.password.value = arguments[0];
             f.querySelector('button[type=submit]').click();
             return true",
            vec![json!(password)],
        )
        .await;
        if expect_error {
            let error = app
                .wait_for(
                    &operator,
                    "the sign-in error",
                    "const e = document.querySelector('#sync-signin-error');
                     return e.dataset.code ? [e.dataset.code, e.textContent] : null",
                )
                .await;
            assert!(
                !error[1].as_str().unwrap_or_default().is_empty(),
                "the refusal is said in words: {error}"
            );
        }
    }

    // The queued accept lands, once, and every window is back to normal.
    wait_attr(
        &mut app,
        &operator,
        &row(booking.id),
        "data-pending",
        "false",
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
    for label in [&therapist, &operator] {
        wait_attr(&mut app, label, ".account-state", "data-state", "ok").await;
        wait_attr(&mut app, label, "#sync-dot", "data-state", "online").await;
        let offer_hidden = app
            .eval(
                label,
                "return document.querySelector('.sign-in-again').hidden",
                vec![],
            )
            .await;
        assert_eq!(offer_hidden, json!(true), "no offer left in {label}");
    }
    let landed = olivia.booking(booking.id).await.expect("booking");
    assert_eq!(landed.status, BookingStatus::Confirmed);
    assert_eq!(landed.version, booking.version + 1, "applied exactly once");
    assert_eq!(app.labels().await, windows_before, "no window was closed");
    app.close().await;
}

/// 2. A change in flight (the server has not answered yet) turns the dot orange in every
///    window, and every window's sync panel lists it with the window it was made in and
///    shows the same figures; once answered, the dot is green and the list empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)]
async fn a_change_in_flight_is_orange_and_listed_with_its_window_in_every_sync_panel() {
    let _notifications = NotificationService::claim().await;
    let server = TestServer::start().await;
    let proxy = HoldingProxy::start(server.addr()).await;
    let olivia = Staffer::login(&server.url(), "olivia").await;
    let snapshot = olivia.snapshot().await;
    let booking = requested_for(&snapshot, staff_id(&snapshot, "maria"));

    let (mut app, _data) = signed_in(&proxy.url(), "maria").await;
    let therapist = app.window_like("therapist-").await;
    let operator = app.window_like("operator-").await;
    for label in [&therapist, &operator] {
        wait_attr(&mut app, label, "#sync-dot", "data-state", "online").await;
    }

    proxy.hold();
    app.click(
        &therapist,
        &format!("{} button[data-action=\"accept\"]", row(booking.id)),
    )
    .await;
    // Orange everywhere, and it stays orange while the answer is held back.
    for label in [&therapist, &operator] {
        wait_attr(&mut app, label, "#sync-dot", "data-state", "syncing").await;
        let state = app
            .eval(label, "return document.body.dataset.syncState", vec![])
            .await;
        assert_eq!(state, json!("syncing"), "{label}");
    }

    // The sync panel, opened in both windows, lists the accept with its window.
    let listed = format!(".sync-change[data-window=\"{therapist}\"]");
    for label in [&therapist, &operator] {
        open_panel(&mut app, label).await;
        let item = app
            .wait_for(
                label,
                "the accept in the sync panel",
                &format!(
                    "const li = document.querySelector('#sync-panel {listed}'); return li ? li.textContent : null"
                ),
            )
            .await;
        let item = item.as_str().unwrap_or_default().to_owned();
        assert!(item.contains("Accept a booking"), "{item}");
        assert!(item.contains("My appointments"), "{item}");
        assert!(item.contains(therapist.as_str()), "{item}");
    }
    // The same figures in both windows (heartbeats move "last sync": read until a moment
    // when both windows have the same status, which must come).
    let (a, _) = {
        let t = app.window(&therapist).await.clone();
        let o = app.window(&operator).await.clone();
        poll("the same figures in both windows", || async {
            let a = t.execute(FIGURES, vec![]).await.ok()?;
            let b = o.execute(FIGURES, vec![]).await.ok()?;
            let values = |v: &Value| -> Vec<Value> {
                v.as_object()
                    .map(|m| m.iter().map(|(k, f)| json!([k, f[0]])).collect())
                    .unwrap_or_default()
            };
            (values(&a) == values(&b)).then_some((a, b))
        })
        .await
    };
    assert_eq!(a["state"][0], json!("syncing"));
    assert_eq!(a["server"][0], json!(proxy.url()));
    assert!(
        a["version"][0]
            .as_str()
            .unwrap_or_default()
            .starts_with("clinic-server/"),
        "the server's version: {a}"
    );
    assert!(
        a["pending"][0]
            .as_str()
            .unwrap_or_default()
            .parse::<u32>()
            .unwrap_or(0)
            >= 1,
        "{a}"
    );
    assert_eq!(
        a["notifications"][0],
        json!("working"),
        "the notification service answered: {a}"
    );
    assert!(
        a["notifications"][1]
            .as_str()
            .is_some_and(|t| t.contains("clinic-desk-e2e")),
        "notifications are said in words, with the service's name: {a}"
    );

    // A picture of the panel for the docs, when asked for.
    if let Some(path) = std::env::var_os("CLINIC_SYNC_PANEL_SCREENSHOT").map(PathBuf::from) {
        let client = app.window(&operator).await.clone();
        client
            .set_window_rect(0, 0, 1000, 720)
            .await
            .expect("a window big enough for the picture");
        poll("the page laid out at the picture's size", || async {
            let size = client
                .execute(
                    "return window.innerWidth >= 990 && window.innerHeight >= 690",
                    vec![],
                )
                .await
                .ok()?;
            (size == json!(true)).then_some(())
        })
        .await;
        let png = client.screenshot().await.expect("screenshot");
        std::fs::write(&path, png).expect("write the screenshot");
        println!("sync panel screenshot: {}", path.display());
    }

    proxy.release();
    for label in [&therapist, &operator] {
        wait_attr(&mut app, label, "#sync-dot", "data-state", "online").await;
        app.wait_for(
            label,
            "an empty list of waiting changes",
            "return document.querySelectorAll('#sync-panel .sync-change').length === 0",
        )
        .await;
    }
    let landed = olivia.booking(booking.id).await.expect("booking");
    assert_eq!(landed.status, BookingStatus::Confirmed);
    assert_eq!(landed.version, booking.version + 1);
    app.close().await;
}

/// 3. Two desks: a message Maria sends in her Messages window arrives in Olivia's
///    Messages window, and nobody else gets it (Dr. Reyes's snapshot, filtered by the
///    same rules as her feed, does not hold it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_in_one_app_arrives_in_the_others_messages_window_and_nobody_elses() {
    let server = TestServer::start().await;
    let snapshot = server.snapshot("admin").await;
    let olivia_id = staff_id(&snapshot, "olivia");

    let (mut maria, _maria_data) = signed_in(&server.url(), "maria").await;
    let maria_messages = maria.window_like("messages-").await;
    let (mut olivia, _olivia_data) = signed_in_beside(&maria, &server.url(), "olivia").await;
    let olivia_messages = olivia.window_like("messages-").await;

    let body = format!(
        "Can you call the Harbour Road client? {}",
        uuid::Uuid::new_v4()
    );
    maria
        .click(
            &maria_messages,
            &format!("[data-peer-id=\"{olivia_id}\"] .peer-btn"),
        )
        .await;
    maria
        .wait_for(
            &maria_messages,
            "the conversation with Olivia",
            "const b = document.querySelector('#send-message textarea'); return b && !b.disabled",
        )
        .await;
    maria
        .eval(
            &maria_messages,
            "const f = document.querySelector('#send-message');
             f.elements.body.value = arguments[0];
             f.requestSubmit();
             return true",
            vec![json!(body)],
        )
        .await;

    // The server holds it once.
    let olivia_kit = Staffer::login(&server.url(), "olivia").await;
    let held: Vec<Message> = poll("the message on the server", || async {
        let held: Vec<Message> = messages(&olivia_kit.snapshot().await)
            .into_iter()
            .filter(|m| m.body == body)
            .collect();
        (!held.is_empty()).then_some(held)
    })
    .await;
    assert_eq!(held.len(), 1, "sent once");

    // Olivia's Messages window shows it: in Maria's conversation, live.
    let maria_id = staff_id(&snapshot, "maria");
    let last = olivia
        .wait_for(
            &olivia_messages,
            "Maria's message in Olivia's conversation list",
            &format!(
                "const p = document.querySelector('[data-peer-id=\"{maria_id}\"] .peer-last');
                 return p && p.textContent.includes({}) ? p.textContent : null",
                serde_json::to_string(&body).expect("json")
            ),
        )
        .await;
    assert!(last.as_str().is_some_and(|t| t.contains(&body)), "{last}");
    olivia
        .click(
            &olivia_messages,
            &format!("[data-peer-id=\"{maria_id}\"] .peer-btn"),
        )
        .await;
    let bubble = olivia
        .wait_for(
            &olivia_messages,
            "Maria's message in the thread",
            &format!(
                "const m = document.querySelector('[data-message-id=\"{}\"] .message-body');
                 return m ? m.textContent : null",
                held[0].id
            ),
        )
        .await;
    assert_eq!(bubble, json!(body));

    // For the two of them only.
    assert_eq!(held[0].recipient_id, olivia_id);
    for other in ["reyes", "sam", "dan"] {
        let theirs = messages(&server.snapshot(other).await);
        assert!(
            theirs.iter().all(|m| m.id != held[0].id && m.body != body),
            "{other} must not get the message"
        );
    }
    olivia.close().await;
    maria.close().await;
}

/// 4. A click on a notification brings up the dashboard it is about: it opens one when
///    none is open, and brings up the one that is (no second one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicking_a_notification_opens_or_focuses_the_right_dashboard() {
    let notifications = NotificationService::claim().await;
    let server = TestServer::start().await;
    let (mut app, data) = signed_in(&server.url(), "maria").await;
    let operator = app.window_like("operator-").await;
    let therapist = app.window_like("therapist-").await;

    // The sync panel knows the notification service answers.
    open_panel(&mut app, &therapist).await;
    wait_attr(
        &mut app,
        &therapist,
        "#sync-panel [data-figure=notifications]",
        "data-value",
        "working",
    )
    .await;

    // No operator window: the news of a web booking opens one.
    app.eval(
        &operator,
        "window.__TAURI__.window.getCurrentWindow().close(); return true",
        vec![],
    )
    .await;
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while app
        .labels()
        .await
        .iter()
        .any(|l| l.starts_with("operator-"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the operator window did not close"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let date = chrono::Local::now().date_naive();
    let intake = |name: &str| IntakeRequest {
        client_name: name.into(),
        client_phone: "555-0142".into(),
        address: "Quay Street 4".into(),
        service: "Physiotherapy".into(),
        date,
        start: chrono::NaiveTime::from_hms_opt(7, 0, 0).expect("time"),
        end: chrono::NaiveTime::from_hms_opt(8, 0, 0).expect("time"),
        notes: String::new(),
    };
    server.intake(&intake("Notified Client")).await;
    let first = poll("the notification", || async {
        notifications
            .recorded()
            .iter()
            .position(|n| n.body.contains("Notified Client"))
    })
    .await;
    // A click before the app listens for it is lost: click until the window comes.
    let deadline = std::time::Instant::now() + common::DEADLINE;
    let opened = loop {
        notifications.click(first).await;
        if let Some(l) = app
            .labels()
            .await
            .into_iter()
            .find(|l| l.starts_with("operator-"))
        {
            break l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no operator window opened by the click"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_ne!(opened, operator, "a new operator window");
    app.window(&opened).await;

    // With the operator window open, a click on the next notification brings it up
    // instead of opening another. (Under Xvfb there is no window manager to hand the focus
    // over, so the app's log is the witness that the click was taken.)
    server.intake(&intake("Second Client")).await;
    let second = poll("the second notification", || async {
        notifications
            .recorded()
            .iter()
            .position(|n| n.body.contains("Second Client"))
    })
    .await;
    poll("the second click to be taken", || async {
        notifications.click(second).await;
        let log = logs_of(data.path());
        (log.matches("a notification was clicked: bringing up operator")
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    let operators = app
        .labels()
        .await
        .into_iter()
        .filter(|l| l.starts_with("operator-"))
        .count();
    assert_eq!(operators, 1, "brought up, not opened again");
    assert!(app.labels().await.contains(&opened));
    app.close().await;
}

/// Waits until the app that ran on `data` has exited; one still there after a grace period
/// is killed, as a crash would (what it left on disk is then what the next start reads).
async fn gone(data: &std::path::Path) {
    let entry = format!("CLINIC_DESK_DATA_DIR={}", data.display());
    let exe = common::app_binary();
    let running = || -> Vec<String> {
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .flatten()
            .filter(|p| {
                std::fs::read_link(p.path().join("exe")).is_ok_and(|e| e.ends_with(&exe))
                    && std::fs::read(p.path().join("environ"))
                        .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == entry.as_bytes()))
            })
            .filter_map(|p| p.file_name().to_str().map(str::to_owned))
            .collect()
    };
    let grace = std::time::Instant::now() + std::time::Duration::from_secs(10);
    poll("the app to exit", || {
        let left = running();
        if !left.is_empty() && std::time::Instant::now() > grace {
            for pid in &left {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", pid])
                    .status();
            }
        }
        async move { left.is_empty().then_some(()) }
    })
    .await;
}

/// 5. The open dashboards come back after a restart under their labels, each where the
///    layout says it was and as big. (The place is written into the saved layout here:
///    moving a window through WebDriver is not always reported to the app under Xvfb,
///    which has no window manager.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_dashboards_and_their_places_come_back_after_a_restart() {
    let server = TestServer::start().await;
    let (mut app, data) = signed_in(&server.url(), "maria").await;
    let operator = app.window_like("operator-").await;
    app.window_like("therapist-").await;
    let before = app.labels().await;
    app.close().await;
    // The app writes its layout on the way out: the edit below must come after that, or
    // the exiting app overwrites it.
    gone(data.path()).await;

    let file = data.path().join("layout.json");
    let mut layout: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&file).expect("layout.json")).expect("json");
    let saved: Vec<String> = layout
        .iter()
        .filter_map(|w| w["label"].as_str().map(str::to_owned))
        .collect();
    let mut sorted = saved.clone();
    sorted.sort();
    assert_eq!(
        sorted, before,
        "every open dashboard is in the saved layout"
    );
    let placed = (120, 90, 820, 560);
    for window in &mut layout {
        if window["label"] == json!(operator) {
            window["x"] = json!(placed.0);
            window["y"] = json!(placed.1);
            window["width"] = json!(placed.2);
            window["height"] = json!(placed.3);
        }
    }
    std::fs::write(&file, serde_json::to_vec(&layout).expect("json")).expect("write");

    let mut app = resumed(&server.url(), data.path()).await;
    for label in &before {
        app.window(label).await;
    }
    assert_eq!(
        app.labels().await,
        before,
        "the same dashboards, under the same labels"
    );
    let client = app.window(&operator).await.clone();
    poll("the operator window back in its place", || async {
        let r = client.get_window_rect().await.ok()?;
        (r.0 == placed.0
            && r.1 == placed.1
            && r.2.abs_diff(placed.2) <= 2
            && r.3.abs_diff(placed.3) <= 2)
            .then_some(())
    })
    .await;
    let rows = app
        .eval(
            &operator,
            "return document.querySelectorAll('[data-booking-id]').length",
            vec![],
        )
        .await;
    assert!(rows.as_u64().unwrap_or(0) > 0, "and showing its bookings");
    app.close().await;
}
