//! Growth benchmark of the real app: how start-up, opening a window, click-to-render and
//! memory change as the clinic's history grows (issue 14, "years of data").
//!
//! For each size a fresh clinic server (the test kit's, on loopback) is given a generated
//! history through its own HTTP API: 60 staff (the demo clinic's 8 and 52 more), one
//! availability slot per ten bookings, the bookings (created by an operator, then accepted
//! by their therapists or cancelled, a third left waiting), and two messages per three
//! bookings (to, from and between staff, those to maria read but the last few). Every
//! change is a real mutation by a signed-in staff member, many in flight at once (the
//! server commits them in groups). The server accepts a booking or slot only from
//! yesterday up to two years ahead (`clinic_protocol::rules::date_window`), so the history
//! cannot be dated in the past: it is laid out from today on, at the same density per day
//! at every size (21 therapists a day, ten bookings each), so that what "today" and "this
//! week" hold is the same at every size and only the length of the history grows. The
//! demo clinic's own week stays as it is (its therapists get no generated work in it).
//!
//! Then the real app (the debug build, or `CLINIC_DESK_APP`), signed in as maria (operator
//! and therapist, so her cache holds every booking and slot and her own messages):
//! - first start: signing in through the login window to the first dashboard rendered
//!   (the whole history downloaded), and to the dashboard counting every booking;
//! - start with a warm cache: the app quit and started again on its data directory
//!   (`resumed`): the app process's start (from /proc) to the operator window's first render;
//! - opening one more window, of each dashboard kind: the page time just before asking the
//!   backend for it (`open_window`, as the Window menu does) to the new page's first render;
//! - click-to-render: clicks through a booking's life cycle in the therapist window,
//!   rendered there and in one operator window (window_latency's probes, fewer clicks);
//! - memory: VmRSS and PSS of the app and its WebKit processes with one operator window.
//!
//! Quick (300 and 1,000 bookings; part of `cargo xtask test`):
//! `xvfb-run -a -s "-screen 0 1440x900x24 -nolisten tcp" dbus-run-session -- cargo test -p clinic-desk --test window_growth -- --nocapture`
//! Full (1,000, 10,000 and 150,000 bookings): the same with `CLINIC_BENCH_FULL=1`. With
//! `CLINIC_BENCH_GROWTH_OUT=<file>` the figures are also written there as JSON, which
//! crates/clinic-bench reads (`--growth`; `cargo xtask bench` sets both). Only counts are
//! asserted (the dashboard counts every upcoming booking, every click is seen), never a
//! time. Page times are whole milliseconds (WebKitGTK coarsens `performance.now()`); the
//! process start is known to a clock tick (10 ms).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{Days, Local, NaiveDate, NaiveTime};
use clinic_protocol::{
    BookingAction, Mutation, MutationOutcome, NewBooking, NewMessage, NewSlot, Role,
};
use clinic_test_kit::{bookings, poll_within, staff_id, Staffer, TestServer, PASSWORD};
use common::windows::{
    app_pid, close_window, first_render, open_windows, process_started_ms, settled_memory, summary,
    summary_json, wait_labels, Memory, ARM, INSTALL, SETTLED,
};
use common::{launch_on, resumed_measuring, row, App, DEADLINE};
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::Locator;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use uuid::Uuid;

const QUICK_SIZES: [usize; 2] = [300, 1_000];
const FULL_SIZES: [usize; 3] = [1_000, 10_000, 150_000];
const QUICK_CLICKS: usize = 6;
const FULL_CLICKS: usize = 30;
/// Therapists among the 60 staff; the demo clinic's three are the last of them.
const THERAPISTS: usize = 40;
const DEMO_THERAPISTS: [&str; 3] = ["reyes", "kim", "maria"];
/// The demo clinic's week: its therapists get no generated work in it (it would clash).
const DEMO_DAYS: usize = 7;
/// Slots a day (each a different therapist) and bookings a slot: 210 bookings a day, so
/// 150,000 bookings fill 715 days, inside the two years the server accepts.
const SLOTS_PER_DAY: usize = 21;
const PER_SLOT: usize = 10;
/// How long the first start may take to download the history and count it (150,000
/// bookings and their slots and messages).
const DOWNLOAD: Duration = Duration::from_secs(600);
/// Requests in flight at once while generating.
const IN_FLIGHT: usize = 48;
/// The messages to maria left unread.
const UNREAD: usize = 20;
/// Dashboard kinds, in the order a window of each is opened.
const KINDS: [&str; 4] = ["operator", "therapist", "scheduling", "messages"];

/// The therapist's steps through a booking's life cycle (as in window_latency).
const LIFE_CYCLE: [(&str, &str, &str); 3] = [
    ("accept", "requested", "confirmed"),
    ("start_session", "confirmed", "in_session"),
    ("complete", "in_session", "completed"),
];

#[derive(Debug, Clone, Copy)]
struct Step {
    booking: Uuid,
    action: &'static str,
    to: &'static str,
}

/// What was generated, and how long it took.
#[derive(Debug, Default)]
struct History {
    bookings: usize,
    slots: usize,
    messages: usize,
    staff: usize,
    mutations: usize,
    /// Making the staff and signing everyone in.
    setup: Duration,
    /// Sending the history (every mutation after the sign-ins).
    took: Duration,
    /// Bookings from today on that are not cancelled: the operator's "Upcoming" count.
    upcoming: u64,
    clicks: Vec<Step>,
}

/// What one size measured, in ms unless named otherwise.
#[derive(Debug)]
struct Size {
    history: History,
    cold_first_render: f64,
    cold_all_counted: f64,
    warm_first_render: f64,
    /// Per kind: the request to the first render, and the part of it in the new page (its
    /// navigation start to its first render; the rest is making the window).
    open_window: Vec<(&'static str, f64, f64)>,
    click_observer: Vec<f64>,
    click_own: Vec<f64>,
    memory: Memory,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_as_history_grows() {
    let started = Instant::now();
    // The server runs in this process: its warnings and errors (why it refused or failed
    // a request) go to the test's output.
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_test_writer()
        .try_init();
    let full = std::env::var("CLINIC_BENCH_FULL").is_ok_and(|v| v == "1");
    let (mut sizes, clicks) = if full {
        (FULL_SIZES.to_vec(), FULL_CLICKS)
    } else {
        (QUICK_SIZES.to_vec(), QUICK_CLICKS)
    };
    // Other sizes, to look at one case: `CLINIC_BENCH_GROWTH_SIZES=10000,20000`.
    if let Ok(list) = std::env::var("CLINIC_BENCH_GROWTH_SIZES") {
        sizes = list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("CLINIC_BENCH_GROWTH_SIZES: numbers")
            })
            .collect();
    }
    let mut results = Vec::new();
    for n in sizes {
        // Every staff member signs in once; the kit's usual limit is for tests of it.
        let server = TestServer::start_with(|c| c.login_attempts_per_minute = 100_000).await;
        let history = generate(&server, n, clicks).await;
        eprintln!(
            "window_growth: {n} bookings generated in {:.1?} after {:.1?} of staff and sign-ins ({} mutations, {:.2} s per 1,000 bookings)",
            history.took,
            history.setup,
            history.mutations,
            history.took.as_secs_f64() * 1000.0 / n as f64
        );
        results.push(measure(&server, history).await);
    }
    print(&results, started.elapsed());
    if let Some(path) = std::env::var_os("CLINIC_BENCH_GROWTH_OUT") {
        write_json(&results, Path::new(&path));
    }
}

// --- The history, through the server ---------------------------------------------------

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("time")
}

fn applied(outcome: &MutationOutcome, what: &str) {
    assert!(
        matches!(outcome, MutationOutcome::Applied { .. }),
        "{what}: {outcome:?}"
    );
}

/// Sends every mutation, each by its staff member, up to [`IN_FLIGHT`] at once, and
/// checks that the server applied each.
async fn send_all(what: &str, jobs: Vec<(Staffer, Mutation)>) -> usize {
    let count = jobs.len();
    let t0 = Instant::now();
    let mut flight = JoinSet::new();
    let done = |joined: Result<MutationOutcome, tokio::task::JoinError>| {
        applied(&joined.expect("a send"), what);
    };
    for (staffer, mutation) in jobs {
        while flight.len() >= IN_FLIGHT {
            done(flight.join_next().await.expect("a job"));
        }
        flight.spawn(send_once(staffer, mutation));
    }
    while let Some(joined) = flight.join_next().await {
        done(joined);
    }
    let took = t0.elapsed();
    eprintln!(
        "window_growth: {count} × {what} in {took:.1?} ({:.0}/s)",
        count as f64 / took.as_secs_f64()
    );
    count
}

/// Sends `mutation` once; an error answer fails the benchmark (the server's log, printed
/// with the test's, says why). Returns the outcome.
async fn send_once(staffer: Staffer, mutation: Mutation) -> MutationOutcome {
    match staffer.try_send(Uuid::new_v4(), &mutation).await {
        Ok(outcome) => outcome,
        Err(e) => panic!("{mutation:?}: {e}"),
    }
}

/// Generates a clinic of `n` bookings on `server` through its HTTP API (see the module's
/// comment), and the bookings maria clicks through (`clicks` clicks), made last so that
/// they are the newest.
async fn generate(server: &TestServer, n: usize, clicks: usize) -> History {
    let t0 = Instant::now();
    let today = Local::now().date_naive();
    let olivia = server.login("olivia").await;
    let demo = olivia.snapshot().await;
    let demo_upcoming = bookings(&demo)
        .iter()
        .filter(|b| b.date >= today && b.status != clinic_protocol::BookingStatus::Cancelled)
        .count() as u64;

    // 52 staff more, to 60: 37 therapists, 13 drivers, an operator and a scheduler. An
    // account is made the way the server's console makes one (accounts are not the
    // history being measured).
    let mut therapists: Vec<String> = (1..=THERAPISTS - DEMO_THERAPISTS.len())
        .map(|i| format!("therapist{i:02}"))
        .collect();
    let mut more: Vec<(String, Role)> = therapists
        .iter()
        .map(|u| (u.clone(), Role::Therapist))
        .collect();
    more.extend((1..=13).map(|i| (format!("driver{i:02}"), Role::Driver)));
    more.push(("operator2".into(), Role::Operator));
    more.push(("scheduler2".into(), Role::Scheduler));
    for (username, role) in &more {
        server
            .state()
            .create_staff(username, &format!("Staff {username}"), &[*role], PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("create {username}: {e}"));
    }
    therapists.extend(DEMO_THERAPISTS.iter().map(|s| (*s).to_owned()));
    let snapshot = olivia.snapshot().await;
    let everyone: Vec<String> = snapshot
        .records
        .iter()
        .filter_map(|r| match r {
            clinic_protocol::Record::Staff(s) if !s.has(Role::Admin) => Some(s.username.clone()),
            _ => None,
        })
        .collect();
    let mut sessions = std::collections::HashMap::new();
    for username in &everyone {
        sessions.insert(username.clone(), server.login(username).await);
    }
    let id = |u: &str| staff_id(&snapshot, u);
    let maria = sessions["maria"].clone();
    let mut mutations = 0;
    let setup = t0.elapsed();
    let t0 = Instant::now();

    // Availability: slot j is on day j / 21, for the (j % 21)th therapist of that day.
    let slots = n.div_ceil(PER_SLOT);
    let slot_of = |j: usize| -> (NaiveDate, usize) {
        let (day, k) = (j / SLOTS_PER_DAY, j % SLOTS_PER_DAY);
        let pool = if day < DEMO_DAYS {
            THERAPISTS - DEMO_THERAPISTS.len()
        } else {
            THERAPISTS
        };
        (
            today + Days::new(day as u64),
            (day * SLOTS_PER_DAY + k) % pool,
        )
    };
    let jobs = (0..slots)
        .map(|j| {
            let (date, t) = slot_of(j);
            let slot = NewSlot {
                id: Uuid::new_v4(),
                staff_id: id(&therapists[t]),
                date,
                start: hm(8, 0),
                end: hm(18, 0),
                note: String::new(),
            };
            (olivia.clone(), Mutation::CreateSlot { slot })
        })
        .collect();
    mutations += send_all("a slot", jobs).await;

    // Bookings: ten a slot, on the hour, 50 minutes each.
    let mut made = Vec::with_capacity(n);
    let mut jobs = Vec::with_capacity(n);
    for i in 0..n {
        let (date, t) = slot_of(i / PER_SLOT);
        let hour = 8 + (i % PER_SLOT) as u32;
        let booking = NewBooking {
            id: Uuid::new_v4(),
            client_name: format!("Client {i}"),
            client_phone: "555-0100".into(),
            address: format!("Harbour Road {}", i % 300),
            service: "Physiotherapy".into(),
            date,
            start: hm(hour, 0),
            end: hm(hour, 50),
            therapist_id: Some(id(&therapists[t])),
            driver_id: None,
            notes: String::new(),
        };
        made.push((booking.id, t));
        jobs.push((olivia.clone(), Mutation::CreateBooking { booking }));
    }
    mutations += send_all("a booking", jobs).await;

    // One in twenty cancelled, a third left waiting, the rest accepted by their therapist.
    let mut cancelled = 0;
    let jobs = made
        .iter()
        .enumerate()
        .filter_map(|(i, (booking, t))| {
            if i % 20 == 1 {
                cancelled += 1;
                let m = Mutation::CancelBooking {
                    id: *booking,
                    version: 1,
                    reason: "The client cancelled.".into(),
                };
                Some((olivia.clone(), m))
            } else if i % 3 != 0 {
                let m = Mutation::BookingAction {
                    id: *booking,
                    version: 1,
                    action: BookingAction::Accept,
                };
                Some((sessions[&therapists[*t]].clone(), m))
            } else {
                None
            }
        })
        .collect();
    mutations += send_all("a booking's step", jobs).await;

    // Messages: a quarter from maria, a quarter to her, half between the others.
    let others: Vec<&String> = everyone.iter().filter(|u| *u != "maria").collect();
    let count = n * 2 / 3;
    let mut to_maria = Vec::new();
    let jobs = (0..count)
        .map(|m| {
            let peer = others[m % others.len()];
            let (from, to) = match m % 4 {
                0 => ("maria", peer.as_str()),
                1 => (peer.as_str(), "maria"),
                _ => (peer.as_str(), others[(m + 1) % others.len()].as_str()),
            };
            let message = NewMessage {
                id: Uuid::new_v4(),
                recipient_id: id(to),
                body: format!("Can you take the 3 pm on day {m}?"),
            };
            if to == "maria" {
                to_maria.push(message.id);
            }
            (sessions[from].clone(), Mutation::SendMessage { message })
        })
        .collect();
    mutations += send_all("a message", jobs).await;
    let read = to_maria.len().saturating_sub(UNREAD);
    let jobs = to_maria[..read]
        .iter()
        .map(|m| (maria.clone(), Mutation::MarkRead { id: *m }))
        .collect();
    mutations += send_all("a message read", jobs).await;

    // maria's bookings to click through: this evening, after every generated hour, in an
    // evening slot of her own, half an hour each.
    let per = LIFE_CYCLE.len();
    let count_clicks = clicks.div_ceil(per);
    assert!(count_clicks <= 10, "ten half hours fit this evening");
    let slot = NewSlot {
        id: Uuid::new_v4(),
        staff_id: id("maria"),
        date: today,
        start: hm(18, 10),
        end: hm(23, 50),
        note: "Benchmark".into(),
    };
    applied(
        &olivia.mutate(Mutation::CreateSlot { slot }).await,
        "the evening slot",
    );
    let mut steps = Vec::new();
    for k in 0..count_clicks {
        let start = 18 * 60 + 30 + 30 * k as u32;
        let booking = NewBooking {
            id: Uuid::new_v4(),
            client_name: format!("Evening client {k}"),
            client_phone: "555-0100".into(),
            address: "Harbour Road 3".into(),
            service: "Physiotherapy".into(),
            date: today,
            start: hm(start / 60, start % 60),
            end: hm((start + 30) / 60, (start + 30) % 60),
            therapist_id: Some(id("maria")),
            driver_id: None,
            notes: String::new(),
        };
        let booking_id = booking.id;
        applied(
            &olivia.mutate(Mutation::CreateBooking { booking }).await,
            "an evening booking",
        );
        steps.extend(LIFE_CYCLE.map(|(action, _, to)| Step {
            booking: booking_id,
            action,
            to,
        }));
    }
    steps.truncate(clicks);
    mutations += 1 + count_clicks;

    History {
        bookings: n,
        slots,
        messages: count,
        staff: everyone.len() + 1,
        mutations,
        setup,
        took: t0.elapsed(),
        upcoming: demo_upcoming + (n - cancelled) as u64 + count_clicks as u64,
        clicks: steps,
    }
}

// --- The app ------------------------------------------------------------------------------

/// The page clock, read in a page.
const CLOCK: &str = "return performance.timeOrigin + performance.now()";

/// The operator dashboard's "Upcoming" count, once it is `want`.
fn upcoming_is(want: u64) -> String {
    format!(
        "const el = document.getElementById('count-upcoming'); return el !== null && el.textContent.trim() === '{want}'"
    )
}

async fn measure(server: &TestServer, history: History) -> Size {
    let url = server.url();
    let data = tempfile::tempdir().expect("tempdir");

    // First start: sign in, download everything.
    let mut app = App::launch(launch_on(&url, data.path(), true)).await;
    let submitted = app
        .eval(
            "login",
            "const f = document.querySelector('form#login');
             f.elements.server.value = arguments[0];
             f.elements.username.value = arguments[1];
             f.elements.password.value = arguments[2];
             const t = performance.timeOrigin + performance.now();
             f.querySelector('button[type=submit]').click();
             return t",
            vec![json!(url), json!("maria"), json!(PASSWORD)],
        )
        .await
        .as_f64()
        .expect("the login page's clock");
    // The whole history comes down first: longer than the harness's usual deadline.
    let deadline = Instant::now() + DOWNLOAD;
    let first = loop {
        let labels = app.labels().await;
        if let Some(l) = labels.into_iter().find(|l| l.starts_with("operator-")) {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "no operator window within {DOWNLOAD:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let counted = upcoming_is(history.upcoming);
    let client = app.window_within(&first, DOWNLOAD).await.clone();
    poll_within(DOWNLOAD, "every upcoming booking counted", || async {
        let v = client.execute(&counted, vec![]).await.ok()?;
        (v == json!(true)).then_some(())
    })
    .await;
    let cold_first_render = first_render(&mut app, &first).await - submitted;
    let counted = app.eval(&first, CLOCK, vec![]).await;
    let cold_all_counted = counted.as_f64().expect("clock") - submitted;
    // Keep the operator window alone, so that the app comes back with it alone.
    let defaults = wait_labels(&mut app, "the default dashboards", |l| {
        l.len() == KINDS.len() && !l.iter().any(|l| l == "login")
    })
    .await;
    for label in defaults.iter().filter(|l| **l != first) {
        close_window(&mut app, label).await;
    }
    app.close().await;

    // Start again on the warm cache.
    let mut app = resumed_measuring(&url, data.path()).await;
    let pid = app_pid(data.path());
    let process_started = process_started_ms(pid);
    let first = app.window_like("operator-").await;
    let warm_first_render = first_render(&mut app, &first).await - process_started;
    app.wait_for(
        &first,
        "every upcoming booking counted after the restart",
        &upcoming_is(history.upcoming),
    )
    .await;
    for label in app.labels().await.iter().filter(|l| **l != first) {
        close_window(&mut app, label).await;
    }
    let memory = settled_memory(&mut app, pid, std::slice::from_ref(&first)).await;

    // One more window of each kind, from the operator window.
    let mut open_window = Vec::new();
    let mut therapist = None;
    for kind in KINDS {
        let asked = app
            .eval(&first, CLOCK, vec![])
            .await
            .as_f64()
            .expect("clock");
        let label = open_windows(&mut app, &first, kind, 1).await.remove(0);
        let shown = first_render(&mut app, &label).await;
        let origin = app
            .eval(&label, "return performance.timeOrigin", vec![])
            .await
            .as_f64()
            .expect("the new page's time origin");
        // `asked` was read just before the request, in the same page: what the user waits
        // is from the request to the new page's render.
        open_window.push((kind, shown - asked, shown - origin));
        if kind == "therapist" {
            therapist = Some(label);
        }
    }
    let therapist = therapist.expect("a therapist window");
    // Clicks as in window_latency's first scenario: the therapist window and one operator
    // window, nothing else receiving the changes.
    for label in app.labels().await {
        if label != first && label != therapist {
            close_window(&mut app, &label).await;
        }
    }

    let (click_own, click_observer) = clicks(&mut app, &therapist, &first, &history.clicks).await;
    assert_eq!(
        click_observer.len(),
        history.clicks.len(),
        "every click seen in the operator window"
    );
    app.close().await;
    Size {
        history,
        cold_first_render,
        cold_all_counted,
        warm_first_render,
        open_window,
        click_observer,
        click_own,
        memory,
    }
}

/// Clicks through `steps` in `actor`, observed in `observer`: the render of each change,
/// in ms after its click, in the actor and in the observer (window_latency's probes).
async fn clicks(
    app: &mut App,
    actor: &str,
    observer: &str,
    steps: &[Step],
) -> (Vec<f64>, Vec<f64>) {
    let last = steps.last().expect("steps").booking;
    for label in [actor, observer] {
        app.wait_for(
            label,
            "the last booking to click",
            &format!("return document.querySelector('{}') !== null", row(last)),
        )
        .await;
        app.eval(label, INSTALL, vec![]).await;
    }
    let client = app.client.clone();
    client
        .update_timeouts(TimeoutConfiguration::new(Some(DEADLINE), None, None))
        .await
        .expect("script timeout");
    let (mut own, mut seen) = (Vec::new(), Vec::new());
    for step in steps {
        let css = row(step.booking);
        for label in [actor, observer] {
            app.eval(label, ARM, vec![json!(css), json!(step.to)]).await;
        }
        let button = format!("{css} button[data-action=\"{}\"]", step.action);
        app.window(actor)
            .await
            .find(Locator::Css(&button))
            .await
            .unwrap_or_else(|e| panic!("{button} in {actor}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {button} in {actor}: {e}"));
        let settled = |label: &str| {
            let label = label.to_owned();
            let client = client.clone();
            async move {
                client
                    .execute_async(SETTLED, vec![Value::Null])
                    .await
                    .unwrap_or_else(|e| panic!("waiting in {label}: {e}"))
            }
        };
        let acted = settled(actor).await;
        assert_eq!(acted["actions"], json!(1), "one click recorded: {acted}");
        let t = acted["t"].as_f64().expect("the click's time");
        own.push(acted["shown"].as_f64().expect("shown") - t);
        app.window(observer).await;
        let observed = settled(observer).await;
        seen.push(observed["shown"].as_f64().expect("shown") - t);
    }
    (own, seen)
}

// --- The figures --------------------------------------------------------------------------

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Prints the growth table; nothing here is asserted.
#[allow(clippy::print_stdout)]
fn print(sizes: &[Size], took: Duration) {
    println!("\ngrowth benchmark: {} sizes, {took:.1?}", sizes.len());
    let mut head = format!("{:<44}", "bookings (slots, messages, staff)");
    for s in sizes {
        let h = &s.history;
        head.push_str(&format!(
            " {:>22}",
            format!("{} ({}, {}, {})", h.bookings, h.slots, h.messages, h.staff)
        ));
    }
    println!("{head}");
    let row = |what: &str, cell: &dyn Fn(&Size) -> String| {
        let mut line = format!("{what:<44}");
        for s in sizes {
            line.push_str(&format!(" {:>22}", cell(s)));
        }
        println!("{line}");
    };
    row("generated through the server, s", &|s| {
        format!("{:.1}", s.history.took.as_secs_f64())
    });
    row("first start: sign-in -> first render, ms", &|s| {
        format!("{:.0}", s.cold_first_render)
    });
    row("first start: sign-in -> all counted, ms", &|s| {
        format!("{:.0}", s.cold_all_counted)
    });
    row("warm start: process -> first render, ms", &|s| {
        format!("{:.0}", s.warm_first_render)
    });
    for (i, kind) in KINDS.iter().enumerate() {
        row(&format!("open a {kind} window, ms"), &|s| {
            let (_, total, page) = s.open_window[i];
            format!("{total:.0} (page {page:.0})")
        });
    }
    row("click -> rendered in 1 other, p50 / max ms", &|s| {
        let (_, p50, _, max) = summary(&s.click_observer);
        format!("{p50:.0} / {max:.0}")
    });
    row("click -> rendered in its window, p50 / max", &|s| {
        let (_, p50, _, max) = summary(&s.click_own);
        format!("{p50:.0} / {max:.0}")
    });
    row("memory, 1 window: RSS / PSS MiB", &|s| {
        format!(
            "{:.0} / {:.0}",
            mib(s.memory.rss_kib),
            mib(s.memory.pss_kib)
        )
    });
    row("  of which the app's own process, PSS MiB", &|s| {
        format!("{:.0}", mib(s.memory.backend_pss_kib))
    });
}

/// The figures `cargo xtask bench` reads (`clinic-bench --growth`).
fn write_json(sizes: &[Size], path: &Path) {
    let out = json!({
        "sizes": sizes.iter().map(|s| {
            let h = &s.history;
            json!({
                "bookings": h.bookings,
                "slots": h.slots,
                "messages": h.messages,
                "staff": h.staff,
                "mutations": h.mutations,
                "generate_s": h.took.as_secs_f64(),
                "setup_s": h.setup.as_secs_f64(),
                "cold_first_render_ms": s.cold_first_render,
                "cold_all_counted_ms": s.cold_all_counted,
                "warm_first_render_ms": s.warm_first_render,
                "open_window_ms": s.open_window.iter().map(|(kind, ms, page)| {
                    json!({ "kind": kind, "ms": ms, "page_ms": page })
                }).collect::<Vec<_>>(),
                "click_observer": summary_json(&s.click_observer),
                "click_own": summary_json(&s.click_own),
                "rss_kib_1_window": s.memory.rss_kib,
                "pss_kib_1_window": s.memory.pss_kib,
                "backend_pss_kib_1_window": s.memory.backend_pss_kib,
            })
        }).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&out).expect("json");
    std::fs::write(path, text + "\n").unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
