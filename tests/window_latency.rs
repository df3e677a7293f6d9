//! Window benchmark of the real app: how long a change made in one dashboard window takes to
//! be rendered in the other windows of the same app, and how much memory the app holds with
//! one and with four dashboard windows open.
//!
//! The real app binary runs in real WebKit windows (tauri-driver, Xvfb) against the real
//! clinic server on loopback, signed in as maria (operator and therapist). Every action is a
//! real click on a booking's action button in the therapist window, so it goes through the
//! `submit` command, the sync engine's outbox, the server and back through the feed. Each
//! click is timed inside the page (`window.__clinic.actions`, pushed by the click handler),
//! each render inside every observing page (`window.__clinic.renders`, pushed right after
//! the dashboard re-rendered); both use `performance.timeOrigin + performance.now()`
//! (ui/js/shell.js), which is comparable across windows. A render is paired with the click
//! whose change it shows by reading the booking's row at the moment of that render, so
//! renders caused by anything else are never counted. The next click waits until every
//! window shows the previous change confirmed by the server.
//!
//! Scenarios: clicks in the therapist window observed by 1 operator window, then by 4
//! operator windows at once (one sample per click per observer). Memory: VmRSS summed over
//! the app process and every process it started (WebKit's web and network processes), with
//! exactly 1 and then exactly 4 operator windows open. Where the time of a click goes is
//! split at timestamps the backend puts on each change batch (see `Stages`).
//!
//! Quick (20 clicks per scenario, a CI smoke test):
//! `xvfb-run -a -s "-screen 0 1440x900x24 -nolisten tcp" dbus-run-session -- cargo test -p clinic-desk --test window_latency -- --nocapture`
//! Full (200 clicks per scenario): the same with `CLINIC_BENCH_FULL=1`. With
//! `CLINIC_BENCH_OUT=<file>` the figures are also written there as JSON, which
//! crates/clinic-bench reads (`cargo xtask bench` sets both). Only the number of observed
//! changes and of web processes (one, shared by all windows) is asserted, never a time.
//!
//! Reading the figures: WebKitGTK coarsens `performance.now()` to whole milliseconds, so
//! every sample is quantised to 1 ms. The app is the debug build the end-to-end tests use,
//! or the one `CLINIC_DESK_APP` names (`cargo xtask bench`: the release build).
//! VmRSS counts the libraries the WebKit processes share once per process; PSS, printed
//! beside it, divides them among the processes.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{Days, Local, NaiveTime};
use clinic_protocol::{Mutation, MutationOutcome, NewBooking, NewSlot};
use clinic_test_kit::{staff_id, Staffer, TestServer};
use common::windows::{
    app_pid, close_window, open_windows, settled_memory, summary, summary_json, wait_labels,
    Memory, ARM, INSTALL, SETTLED,
};
use common::{signed_in_measuring, App, DEADLINE};
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::Locator;
use serde_json::{json, Value};

const QUICK_ACTIONS: usize = 20;
const FULL_ACTIONS: usize = 200;
/// Observers in the second scenario (the first has one).
const MANY: usize = 4;
/// Half-hour bookings from 08:00: twenty fit in the 07:00–19:00 availability of one day.
const BOOKINGS_PER_DAY: usize = 20;

/// The therapist's steps through a booking's life cycle, each a button of the therapist
/// dashboard: (action, status before, status after). A booking without a driver goes
/// straight from confirmed to in session, so one booking serves three clicks.
const LIFE_CYCLE: [(&str, &str, &str); 3] = [
    ("accept", "requested", "confirmed"),
    ("start_session", "confirmed", "in_session"),
    ("complete", "in_session", "completed"),
];

/// One click to make: which booking, which button, and the statuses around it.
#[derive(Debug, Clone, Copy)]
struct Step {
    booking: uuid::Uuid,
    action: &'static str,
    from: &'static str,
    to: &'static str,
}

/// What the pages measured, in ms after the click.
#[derive(Debug, Default)]
struct Samples {
    /// The change rendered in an observer (first render showing the new status; optimistic).
    shown: Vec<f64>,
    /// The change rendered as confirmed by the server (no longer pending) in an observer.
    confirmed: Vec<f64>,
    /// The change rendered in the window where the click happened.
    own: Vec<f64>,
    /// Where the time to `shown` goes, in ms: see [`Stages`].
    stages: Stages,
}

/// The way of a click to an observer's render, stage by stage, in ms. The backend stamps
/// each change batch when it sends it (`at`); the observing page notes when it heard the
/// batch, when its load's answer came and when it rendered.
#[derive(Debug, Default)]
struct Stages {
    /// Click to the `submit` command's answer in the clicked window (the engine has
    /// written the change to its cache and outbox).
    command: Vec<f64>,
    /// Click to the change batch formed in the backend (the command, the engine's write,
    /// its event).
    sent: Vec<f64>,
    /// Reading the views the batch concerns, once per view, and making each window's patch.
    views: Vec<f64>,
    /// The batch sent (with the patch to the page's view) to the observing page hearing it.
    heard: Vec<f64>,
    /// Heard to the page's view patched (or loaded again, if the patch did not fit).
    loaded: Vec<f64>,
    /// Patched to the change rendered.
    rendered: Vec<f64>,
}

impl Stages {
    fn rows(&self) -> [(&'static str, &Vec<f64>); 6] {
        [
            ("command: click -> submit answered", &self.command),
            ("engine: click -> batch formed", &self.sent),
            ("views: read once, a patch per window", &self.views),
            ("event: batch and patch sent -> heard", &self.heard),
            ("patch: heard -> view patched", &self.loaded),
            ("render: view patched -> rendered", &self.rendered),
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_to_render_latency_across_windows() {
    let started = Instant::now();
    let full = std::env::var("CLINIC_BENCH_FULL").is_ok_and(|v| v == "1");
    let per_scenario = if full { FULL_ACTIONS } else { QUICK_ACTIONS };

    let server = TestServer::start().await;
    // Made before the app starts, so that its first view already holds them all.
    let steps = bookings_to_act_on(&server.url(), 2 * per_scenario).await;
    let (mut app, data) = signed_in_measuring(&server.url(), "maria").await;

    // The default set (operator, therapist, scheduling, messages) opens after sign-in; keep
    // one operator window so that memory is measured with exactly one dashboard.
    let first = app.window_like("operator-").await;
    let defaults = wait_labels(&mut app, "the default dashboards", |l| {
        l.len() == 4 && !l.iter().any(|l| l == "login")
    })
    .await;
    for label in defaults.iter().filter(|l| **l != first) {
        close_window(&mut app, label).await;
    }
    let pid = app_pid(data.path());
    let mem_1 = settled_memory(&mut app, pid, std::slice::from_ref(&first)).await;

    let therapist = open_windows(&mut app, &first, "therapist", 1)
        .await
        .remove(0);
    let last = steps.last().expect("steps").booking;
    for label in [&therapist, &first] {
        app.wait_for(
            label,
            "the benchmark's last booking",
            &format!("return document.querySelector('{}') !== null", row(last)),
        )
        .await;
    }

    let (one, rest) = steps.split_at(per_scenario);
    let single = run(&mut app, &therapist, std::slice::from_ref(&first), one).await;

    let mut operators = vec![first.clone()];
    operators.extend(open_windows(&mut app, &first, "operator", MANY - 1).await);
    let many = run(&mut app, &therapist, &operators, rest).await;

    close_window(&mut app, &therapist).await;
    let mem_4 = settled_memory(&mut app, pid, &operators).await;

    // The one assertion: every click was seen, by every observer. Times are only reported.
    assert_eq!(single.shown.len(), per_scenario, "every click seen by 1");
    assert_eq!(
        many.shown.len(),
        per_scenario * MANY,
        "every click seen by each of {MANY}"
    );
    // The windows share one web process, though the window the first ones were related to
    // (the login window) closed long before.
    assert_eq!(
        (mem_1.web_processes, mem_4.web_processes),
        (1, 1),
        "one web process for 1 and for 4 windows"
    );
    // Every render that showed a click came from a change batch, so each has its stages.
    assert_eq!(
        many.stages.sent.len(),
        many.shown.len(),
        "stages of every observed render"
    );
    let results = Results {
        per_scenario,
        single,
        many,
        mem_1,
        mem_4,
    };
    results.print(started.elapsed());
    if let Some(path) = std::env::var_os("CLINIC_BENCH_OUT") {
        results.write_json(Path::new(&path));
    }
    app.close().await;
}

/// Creates, as olivia (an operator), requested bookings for maria without a driver, inside
/// availability made for them, enough for `clicks` clicks; returns the clicks in order.
async fn bookings_to_act_on(server_url: &str, clicks: usize) -> Vec<Step> {
    let olivia = Staffer::login(server_url, "olivia").await;
    let maria = staff_id(&olivia.snapshot().await, "maria");
    // A month ahead: clear of the demo clinic's bookings this week (accepting one of ours
    // must never clash with them), and still in the therapist's upcoming list.
    let first_day = Local::now().date_naive() + Days::new(30);
    let count = clicks.div_ceil(LIFE_CYCLE.len());
    let mut steps = Vec::with_capacity(count * LIFE_CYCLE.len());
    for i in 0..count {
        let date = first_day + Days::new((i / BOOKINGS_PER_DAY) as u64);
        let nth = u32::try_from(i % BOOKINGS_PER_DAY).expect("small");
        if nth == 0 {
            applied(
                olivia
                    .mutate(Mutation::CreateSlot {
                        slot: NewSlot {
                            id: uuid::Uuid::new_v4(),
                            staff_id: maria,
                            date,
                            start: hm(7, 0),
                            end: hm(19, 0),
                            note: "Benchmark".into(),
                        },
                    })
                    .await,
            );
        }
        let id = uuid::Uuid::new_v4();
        let start = 8 * 60 + 30 * nth;
        applied(
            olivia
                .mutate(Mutation::CreateBooking {
                    booking: NewBooking {
                        id,
                        client_name: format!("Bench client {i}"),
                        client_phone: "555-0100".into(),
                        address: "Harbour Road 3".into(),
                        service: "Physiotherapy".into(),
                        date,
                        start: hm(start / 60, start % 60),
                        end: hm((start + 30) / 60, (start + 30) % 60),
                        therapist_id: Some(maria),
                        driver_id: None,
                        notes: String::new(),
                    },
                })
                .await,
        );
        steps.extend(LIFE_CYCLE.map(|(action, from, to)| Step {
            booking: id,
            action,
            from,
            to,
        }));
    }
    steps.truncate(clicks);
    steps
}

fn applied(outcome: MutationOutcome) {
    assert!(
        matches!(outcome, MutationOutcome::Applied { .. }),
        "{outcome:?}"
    );
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("time")
}

fn row(id: impl std::fmt::Display) -> String {
    format!("[data-booking-id=\"{id}\"]")
}

/// Clicks through `steps` in `actor`, each observed by every window in `observers`.
async fn run(app: &mut App, actor: &str, observers: &[String], steps: &[Step]) -> Samples {
    let Some(first) = steps.first() else {
        return Samples::default();
    };
    // Window handles are looked up once: `App::window` lists every window again on each
    // call, round trips through the app's main thread that would add to every step.
    let mut handles = HashMap::new();
    for w in std::iter::once(actor).chain(observers.iter().map(String::as_str)) {
        app.eval(w, INSTALL, vec![]).await;
        let now = app
            .eval(w, ARM, vec![json!(row(first.booking)), json!(first.to)])
            .await;
        assert_eq!(now.as_str(), Some(first.from), "{first:?} in {w}");
        let handle = app.client.window().await.expect("window handle");
        handles.insert(w.to_owned(), handle);
    }
    let client = app.client.clone();
    // The longest an async script may wait: the harness's deadline for any state.
    client
        .update_timeouts(TimeoutConfiguration::new(Some(DEADLINE), None, None))
        .await
        .expect("script timeout");
    let settled = |label: &str, next: &Value| {
        let client = client.clone();
        let handle = handles[label].clone();
        let label = label.to_owned();
        let next = next.clone();
        async move {
            client
                .switch_to_window(handle)
                .await
                .unwrap_or_else(|e| panic!("switch to {label}: {e}"));
            client
                .execute_async(SETTLED, vec![next])
                .await
                .unwrap_or_else(|e| panic!("waiting in {label}: {e}"))
        }
    };

    let mut samples = Samples::default();
    for (i, step) in steps.iter().enumerate() {
        let next = steps.get(i + 1);
        let next_watch = next.map_or(
            Value::Null,
            |n| json!({ "css": row(n.booking), "status": n.to }),
        );
        let button = format!(
            "{} button[data-action=\"{}\"]",
            row(step.booking),
            step.action
        );
        client
            .switch_to_window(handles[actor].clone())
            .await
            .expect("switch to the actor");
        client
            .find(Locator::Css(&button))
            .await
            .unwrap_or_else(|e| panic!("{button} in {actor}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {button} in {actor}: {e}"));
        // The actor first: the click's time is there.
        let acted = settled(actor, &next_watch).await;
        assert_eq!(acted["actions"], json!(1), "one click recorded: {acted}");
        let t = ms(&acted, "t");
        samples.own.push(since(t, &acted, "shown"));
        // The command's answer may come after the change is rendered everywhere.
        if acted["submitted"].is_number() {
            samples.stages.command.push(since(t, &acted, "submitted"));
        }
        let mut armed = vec![acted["next"].clone()];
        for o in observers {
            let seen = settled(o, &next_watch).await;
            samples.shown.push(since(t, &seen, "shown"));
            samples.confirmed.push(since(t, &seen, "confirmed"));
            // A render caused by a batch carries its timing; the first of a window may not.
            let entry = &seen["entry"];
            if entry["at"].is_number() {
                let stages = &mut samples.stages;
                let views = ms(entry, "viewsMs");
                stages
                    .sent
                    .push(((ms(entry, "at") - views - t) * 1000.0).round() / 1000.0);
                stages.views.push((views * 1000.0).round() / 1000.0);
                stages.heard.push(since(ms(entry, "at"), entry, "heard"));
                stages
                    .loaded
                    .push(since(ms(entry, "heard"), entry, "loaded"));
                stages.rendered.push(since(ms(entry, "loaded"), entry, "t"));
            }
            armed.push(seen["next"].clone());
        }
        if let Some(n) = next {
            assert!(
                armed.iter().all(|s| s.as_str() == Some(n.from)),
                "{n:?}: every window must show it {} before its click: {armed:?}",
                n.from
            );
        }
    }
    samples
}

/// The time from `t` to the page time `v[key]`, in ms, rounded to the microsecond: page
/// times are epoch milliseconds, so their difference carries float noise (0.000244...).
fn since(t: f64, v: &Value, key: &str) -> f64 {
    ((ms(v, key) - t) * 1000.0).round() / 1000.0
}

fn ms(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a time: {v}"))
}

/// Everything one run measured.
#[derive(Debug)]
struct Results {
    per_scenario: usize,
    single: Samples,
    many: Samples,
    mem_1: Memory,
    mem_4: Memory,
}

impl Results {
    /// Prints what the pages and /proc measured; nothing here is asserted.
    #[allow(clippy::print_stdout)]
    fn print(&self, took: Duration) {
        let (single, many) = (&self.single, &self.many);
        println!(
            "\nwindow benchmark: {} clicks per scenario, {took:.1?}",
            self.per_scenario
        );
        println!(
            "{:<50} {:>5} {:>8} {:>8} {:>8}",
            "click in the therapist window ->", "n", "p50 ms", "p99 ms", "max ms"
        );
        for (what, ms) in [
            ("rendered in 1 operator window", &single.shown),
            ("rendered in each of 4 operator windows", &many.shown),
            (
                "confirmed by the server, in 1 operator window",
                &single.confirmed,
            ),
            ("confirmed by the server, in each of 4", &many.confirmed),
            ("rendered in the therapist window (1 observer)", &single.own),
            ("rendered in the therapist window (4 observers)", &many.own),
        ] {
            let (n, p50, p99, max) = summary(ms);
            println!("{what:<50} {n:>5} {p50:>8.2} {p99:>8.2} {max:>8.2}");
        }
        for (scenario, stages) in [
            ("1 observer", &single.stages),
            ("4 observers", &many.stages),
        ] {
            println!("where the time goes, {scenario}:");
            for (what, ms) in stages.rows() {
                let (n, p50, p99, max) = summary(ms);
                println!("  {what:<48} {n:>5} {p50:>8.2} {p99:>8.2} {max:>8.2}");
            }
        }
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "app memory, app + WebKit processes: VmRSS {:.1} MiB with 1 dashboard window, {:.1} MiB with 4 (PSS {:.1} and {:.1} MiB; {} and {} web processes)",
            mib(self.mem_1.rss_kib),
            mib(self.mem_4.rss_kib),
            mib(self.mem_1.pss_kib),
            mib(self.mem_4.pss_kib),
            self.mem_1.web_processes,
            self.mem_4.web_processes,
        );
    }

    /// The figures `cargo xtask bench` reads, plus the server-confirmed latencies.
    fn write_json(&self, path: &Path) {
        let out = json!({
            "windows_1": summary_json(&self.single.shown),
            "windows_4": summary_json(&self.many.shown),
            "windows_1_confirmed": summary_json(&self.single.confirmed),
            "windows_4_confirmed": summary_json(&self.many.confirmed),
            "windows_4_stages": self.many.stages.rows().iter().map(|(what, ms)| {
                json!({ "stage": what, "latency": summary_json(ms) })
            }).collect::<Vec<_>>(),
            "app_rss_kib_1_window": self.mem_1.rss_kib,
            "app_rss_kib_4_windows": self.mem_4.rss_kib,
            "app_pss_kib_1_window": self.mem_1.pss_kib,
            "app_pss_kib_4_windows": self.mem_4.pss_kib,
            "web_processes_1_window": self.mem_1.web_processes,
            "web_processes_4_windows": self.mem_4.web_processes,
            "actions_per_scenario": self.per_scenario,
        });
        let text = serde_json::to_string_pretty(&out).expect("json");
        std::fs::write(path, text + "\n")
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}
