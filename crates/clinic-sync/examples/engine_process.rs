//! One sync engine in a process of its own, for the tests that kill it with SIGKILL
//! (`tests/chaos.rs`): a crash wherever the engine happens to be (inside a SQLite
//! transaction, between a commit and its event, half-way through a `submit`), which
//! dropping an [`Engine`] inside the test's own process can never be.
//!
//! ```text
//! engine_process --server URL --dir DIR [--login USER] MODE [MODE OPTIONS]
//! ```
//!
//! Opens the engine on `DIR` for the server at `URL` (signing `USER` in with the demo
//! password, or else resuming the last session from the cache, offline-capable), subscribes
//! to its events, and prints `{"ready":{"user":"<username>"}}`. Then, by `MODE`, it prints
//! one JSON object a line on stdout, each line flushed as it is written:
//! - `sync`: just syncs; `{"change":<cache seq>}` for every change applied to the cache.
//! - `submit --count N --prefix P [--staff ID]`: queues `N` new availability slots for staff
//!   member `ID` (default: the user) with the notes `P #1` .. `P #N`, one after the other,
//!   printing `{"queued":i,"id":"<mutation id>"}` as soon as each `submit` has returned,
//!   then `{"done":N}`, and goes on syncing.
//! - `serve`: answers commands read on stdin, one JSON object a line, with one line each:
//!   - `{"cmd":"act","seed":S,"tag":"T"}`: one random change among those the user's roles
//!     allow (a life-cycle step, often on the same few bookings as other users, a
//!     reschedule, an assignment, a booking, a slot created, edited or deleted, a message,
//!     marking one read), picked with the seed `S` from what the cache shows now (a kind
//!     with nothing to act on gives way to another); texts it writes say `chaos T`.
//!     Answers `{"reply":"queued","id":..,"what":<kind>}`,
//!     `{"reply":"refused","what":..,"code":..}` (the engine refused it locally, unsent) or
//!     `{"reply":"idle"}` (nothing at all to act on).
//!   - `{"cmd":"status"}`: `{"reply":"status","pending":n,"state":"Online",...}`.
//!   - `{"cmd":"view"}`: `{"reply":"view","seq":s,"records":[{"record":..,"pending":b}]}`.
//!
//!   and, whenever they happen, the server's verdicts on this user's changes:
//!   `{"event":"confirmed","id":..}` and `{"event":"rejected","id":..,"code":..}`.
//!
//! Every mode ends when stdin closes (the test is gone), if not killed before. Logs go to
//! stderr (`RUST_LOG`, default `warn`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{Local, NaiveDate, NaiveTime, TimeDelta};
use clinic_protocol::rules;
use clinic_protocol::{
    Booking, BookingAction, Id, Mutation, NewBooking, NewMessage, NewSlot, Role, Slot, Staff,
};
use clinic_sync::{BookingQuery, CacheEvent, Engine, EngineConfig, Queries, SyncError, Timing};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

/// The demo clinic's password (see `clinic_server::demo`).
const PASSWORD: &str = "demo";

/// Prints one line of JSON on stdout and flushes it, so that a line is either wholly in
/// the pipe or not at all when the process is killed.
fn emit(value: &Value) {
    let mut out = std::io::stdout().lock();
    // A closed stdout means the test is gone; stdin closing ends the process then.
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

#[derive(Debug)]
struct Args {
    server: String,
    dir: PathBuf,
    login: Option<String>,
    mode: String,
    count: u32,
    prefix: String,
    staff: Option<Id>,
}

fn args() -> anyhow::Result<Args> {
    let mut parsed = Args {
        server: String::new(),
        dir: PathBuf::new(),
        login: None,
        mode: String::new(),
        count: 0,
        prefix: "slot".into(),
        staff: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--server" => parsed.server = value()?,
            "--dir" => parsed.dir = value()?.into(),
            "--login" => parsed.login = Some(value()?),
            "--count" => parsed.count = value()?.parse()?,
            "--prefix" => parsed.prefix = value()?,
            "--staff" => parsed.staff = Some(value()?.parse()?),
            "sync" | "submit" | "serve" => parsed.mode = arg,
            other => bail!("unknown argument {other}"),
        }
    }
    if parsed.server.is_empty() || parsed.dir.as_os_str().is_empty() || parsed.mode.is_empty() {
        bail!("usage: engine_process --server URL --dir DIR [--login USER] sync|submit|serve");
    }
    Ok(parsed)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = args()?;
    let mut config = EngineConfig::new(&args.server, &args.dir);
    // Quick to notice a dead link and to retry (a cut proxy or a killed server closes the
    // connections, so `dead_after` only has to exceed the server's heartbeat, 5 s).
    config.timing = Timing {
        dead_after: Duration::from_secs(10),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
    };
    config.request_timeout = Duration::from_secs(5);
    let engine = match &args.login {
        Some(user) => Engine::login(config, user, PASSWORD).await,
        None => Engine::resume(config).await,
    }
    .context("opening the engine")?;
    // Subscribed before anything is printed: the test lets the engine reach the server
    // only after `ready`, so no verdict goes unreported.
    let events = engine.subscribe();
    emit(&json!({ "ready": { "user": engine.user().username } }));
    let stdin_closed = async {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(_)) = lines.next_line().await {}
    };
    match args.mode.as_str() {
        "sync" => {
            tokio::spawn(report_changes(events));
            stdin_closed.await;
        }
        "submit" => {
            tokio::spawn(report_changes(events));
            let staff = args.staff.unwrap_or(engine.user().id);
            tokio::select! {
                submitted = submit(&engine, staff, &args.prefix, args.count) => submitted?,
                () = stdin_closed => return Ok(()),
            }
            emit(&json!({ "done": args.count }));
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(_)) = lines.next_line().await {}
        }
        _ => {
            tokio::spawn(report_verdicts(events));
            serve(&engine).await?;
        }
    }
    Ok(())
}

async fn report_changes(mut events: clinic_sync::Subscription) {
    while let Some(event) = events.recv().await {
        if let CacheEvent::Change(change) = event {
            emit(&json!({ "change": change.seq }));
        }
    }
}

async fn report_verdicts(mut events: clinic_sync::Subscription) {
    while let Some(event) = events.recv().await {
        match event {
            CacheEvent::Confirmed { mutation_id, .. } => {
                emit(&json!({ "event": "confirmed", "id": mutation_id }));
            }
            CacheEvent::Rejected(r) => {
                emit(&json!({ "event": "rejected", "id": r.mutation_id, "code": r.code }));
            }
            CacheEvent::Change(_) => {}
        }
    }
}

async fn submit(engine: &Engine, staff: Id, prefix: &str, count: u32) -> anyhow::Result<()> {
    let date = Local::now().date_naive() + TimeDelta::days(3);
    for i in 1..=count {
        let start = NaiveTime::from_hms_opt(8 + i % 10, 0, 0).unwrap_or(NaiveTime::MIN);
        let slot = NewSlot {
            id: Uuid::new_v4(),
            staff_id: staff,
            date,
            start,
            end: start + TimeDelta::minutes(30),
            note: format!("{prefix} #{i}"),
        };
        let id = engine.submit(Mutation::CreateSlot { slot }).await?;
        emit(&json!({ "queued": i, "id": id }));
    }
    Ok(())
}

async fn serve(engine: &Engine) -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let command: Value = serde_json::from_str(&line).context("a command line")?;
        let reply = match command["cmd"].as_str() {
            Some("act") => {
                let seed = command["seed"].as_u64().context("act needs a seed")?;
                let tag = command["tag"].as_str().unwrap_or_default();
                act(engine, seed, tag).await?
            }
            Some("status") => {
                let s = engine.status().borrow().clone();
                json!({
                    "reply": "status",
                    "pending": s.pending,
                    "state": format!("{:?}", s.state),
                    "lag": s.lag,
                    "last_error": s.last_error,
                })
            }
            Some("view") => {
                let view = engine.view_at().await?;
                json!({ "reply": "view", "seq": view.seq, "records": view.records })
            }
            other => bail!("unknown command {other:?}"),
        };
        emit(&reply);
    }
    Ok(())
}

/// The kinds of change `act` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Step,
    Reschedule,
    Assign,
    CreateBooking,
    CreateSlot,
    EditSlot,
    DeleteSlot,
    Message,
    MarkRead,
}

/// What the cache shows now, for picking a change.
struct Scene {
    user: Staff,
    today: NaiveDate,
    staff: Vec<Staff>,
    queries: Queries,
}

impl Scene {
    fn with_role(&self, role: Role) -> Vec<Id> {
        self.staff
            .iter()
            .filter(|s| s.has(role))
            .map(|s| s.id)
            .collect()
    }

    /// Every booking the user sees, by id (the same order in every engine, so that "one of
    /// the first few" is often the same booking for different users: conflicts).
    async fn bookings(&self) -> anyhow::Result<Vec<Booking>> {
        let mut all: Vec<Booking> = self
            .queries
            .bookings(&BookingQuery::default())
            .await?
            .into_iter()
            .map(|c| c.record)
            .collect();
        all.sort_by_key(|b| b.id);
        Ok(all)
    }

    async fn slots(&self, staff: Option<Id>) -> anyhow::Result<Vec<Slot>> {
        let from = self.today - TimeDelta::days(30);
        Ok(self
            .queries
            .slots(staff, from, None)
            .await?
            .into_iter()
            .map(|c| c.record)
            .collect())
    }
}

/// One of the first few of `list` half of the time (shared hot spots), any otherwise.
fn pick<'a, T>(rng: &mut StdRng, list: &'a [T]) -> Option<&'a T> {
    if list.is_empty() {
        return None;
    }
    let n = if rng.gen_bool(0.5) {
        list.len().min(6)
    } else {
        list.len()
    };
    list.get(rng.gen_range(0..n))
}

async fn act(engine: &Engine, seed: u64, tag: &str) -> anyhow::Result<Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    let user = engine.user();
    let queries = engine.queries();
    let staff = queries.staff().await?;
    let scene = Scene {
        today: Local::now().date_naive(),
        staff,
        queries,
        user,
    };
    let schedules = rules::may_create_booking(&scene.user);
    let own_slots = scene.user.has(Role::Therapist);
    let mut menu = vec![(Kind::Step, 6), (Kind::Message, 2), (Kind::MarkRead, 1)];
    if schedules {
        menu.extend([
            (Kind::Reschedule, 1),
            (Kind::Assign, 1),
            (Kind::CreateBooking, 1),
        ]);
    }
    if schedules || own_slots {
        menu.extend([
            (Kind::CreateSlot, 2),
            (Kind::EditSlot, 1),
            (Kind::DeleteSlot, 1),
        ]);
    }
    // Drawn by weight; a kind with nothing to act on gives way to another.
    let mut drawn = None;
    while let Ok(&(kind, _)) = menu.choose_weighted(&mut rng, |(_, w)| *w) {
        if let Some(mutation) = change(&scene, kind, &mut rng, tag).await? {
            drawn = Some((kind, mutation));
            break;
        }
        menu.retain(|(k, _)| *k != kind);
    }
    let Some((kind, mutation)) = drawn else {
        return Ok(json!({ "reply": "idle" }));
    };
    let what = format!("{kind:?}");
    Ok(match engine.submit(mutation).await {
        Ok(id) => json!({ "reply": "queued", "id": id, "what": what }),
        Err(SyncError::Refused { code, .. }) => {
            json!({ "reply": "refused", "what": what, "code": code })
        }
        Err(e) => return Err(e).context("submit"),
    })
}

async fn change(
    scene: &Scene,
    kind: Kind,
    rng: &mut StdRng,
    tag: &str,
) -> anyhow::Result<Option<Mutation>> {
    let me = scene.user.id;
    let therapists = scene.with_role(Role::Therapist);
    let drivers = scene.with_role(Role::Driver);
    let hour = |h: u32| NaiveTime::from_hms_opt(h, 0, 0).unwrap_or(NaiveTime::MIN);
    Ok(match kind {
        Kind::Step => {
            let steps: Vec<(Booking, Vec<BookingAction>)> = scene
                .bookings()
                .await?
                .into_iter()
                .map(|b| {
                    let actions = rules::booking_actions(&scene.user, &b);
                    (b, actions)
                })
                .filter(|(_, actions)| !actions.is_empty())
                .collect();
            pick(rng, &steps).and_then(|(b, actions)| {
                // Cancelling ends a booking's life: rarer than the steps forward.
                let forward: Vec<BookingAction> = actions
                    .iter()
                    .copied()
                    .filter(|a| *a != BookingAction::Cancel)
                    .collect();
                let choices = if forward.is_empty() || rng.gen_bool(0.1) {
                    actions
                } else {
                    &forward
                };
                choices.choose(rng).map(|&action| match action {
                    // The two steps that carry more than the step.
                    BookingAction::Cancel => Mutation::CancelBooking {
                        id: b.id,
                        version: b.version,
                        reason: "Chaos: called off.".into(),
                    },
                    BookingAction::VerifyPayment => Mutation::VerifyPayment {
                        id: b.id,
                        version: b.version,
                        amount_cents: 12_000,
                        method: clinic_protocol::PaymentMethod::Card,
                        reference: String::new(),
                    },
                    _ => Mutation::BookingAction {
                        id: b.id,
                        version: b.version,
                        action,
                    },
                })
            })
        }
        Kind::Reschedule => {
            let editable: Vec<Booking> = scene
                .bookings()
                .await?
                .into_iter()
                .filter(|b| rules::may_edit_booking(&scene.user, b))
                .collect();
            match pick(rng, &editable) {
                Some(b) => {
                    let slots = match b.therapist_id {
                        Some(t) => scene.slots(Some(t)).await?,
                        None => Vec::new(),
                    };
                    let (date, start) = match slots.choose(rng) {
                        Some(s) => (s.date, s.start),
                        None => (
                            scene.today + TimeDelta::days(rng.gen_range(1..10)),
                            hour(10),
                        ),
                    };
                    Some(Mutation::RescheduleBooking {
                        id: b.id,
                        version: b.version,
                        date,
                        start,
                        end: start + TimeDelta::hours(1),
                    })
                }
                None => None,
            }
        }
        Kind::Assign => {
            let editable: Vec<Booking> = scene
                .bookings()
                .await?
                .into_iter()
                .filter(|b| rules::may_edit_booking(&scene.user, b))
                .collect();
            pick(rng, &editable).map(|b| Mutation::AssignBooking {
                id: b.id,
                version: b.version,
                therapist_id: therapists.choose(rng).copied(),
                driver_id: drivers.choose(rng).copied().filter(|_| rng.gen_bool(0.7)),
            })
        }
        Kind::CreateBooking => {
            // At a therapist's available time, so that accepting it can succeed.
            let slots: Vec<Slot> = scene
                .slots(None)
                .await?
                .into_iter()
                .filter(|s| s.date >= scene.today && therapists.contains(&s.staff_id))
                .collect();
            let (date, start, therapist_id) = match slots.choose(rng) {
                Some(s) => (s.date, s.start, Some(s.staff_id)),
                None => (scene.today + TimeDelta::days(3), hour(10), None),
            };
            Some(Mutation::CreateBooking {
                booking: NewBooking {
                    id: Uuid::new_v4(),
                    client_name: format!("chaos {tag}"),
                    client_phone: "555-0100".into(),
                    address: "1 Chaos Street".into(),
                    service: "Massage".into(),
                    date,
                    start,
                    end: start + TimeDelta::hours(1),
                    therapist_id,
                    driver_id: drivers.choose(rng).copied().filter(|_| rng.gen_bool(0.5)),
                    notes: String::new(),
                },
            })
        }
        Kind::CreateSlot => {
            let staff_id = if rules::may_create_booking(&scene.user) {
                therapists.choose(rng).copied().unwrap_or(me)
            } else {
                me
            };
            let start = hour(rng.gen_range(8..16));
            Some(Mutation::CreateSlot {
                slot: NewSlot {
                    id: Uuid::new_v4(),
                    staff_id,
                    date: scene.today + TimeDelta::days(rng.gen_range(0..10)),
                    start,
                    end: start + TimeDelta::hours(2),
                    note: format!("chaos {tag}"),
                },
            })
        }
        Kind::EditSlot | Kind::DeleteSlot => {
            let mine: Vec<Slot> = scene
                .slots(None)
                .await?
                .into_iter()
                .filter(|s| rules::may_manage_slots_of(&scene.user, s.staff_id))
                .collect();
            pick(rng, &mine).map(|s| match kind {
                Kind::DeleteSlot => Mutation::DeleteSlot {
                    id: s.id,
                    version: s.version,
                },
                _ => Mutation::UpdateSlot {
                    id: s.id,
                    version: s.version,
                    date: s.date,
                    start: s.start,
                    // Sometimes longer, which never leaves a booking outside it.
                    end: if rng.gen_bool(0.5) && s.end < hour(20) {
                        s.end + TimeDelta::minutes(30)
                    } else {
                        s.end
                    },
                    note: format!("chaos {tag}"),
                },
            })
        }
        Kind::Message => {
            let others: Vec<Id> = scene
                .staff
                .iter()
                .map(|s| s.id)
                .filter(|id| *id != me)
                .collect();
            others
                .choose(rng)
                .map(|&recipient_id| Mutation::SendMessage {
                    message: NewMessage {
                        id: Uuid::new_v4(),
                        recipient_id,
                        body: format!("chaos {tag}"),
                    },
                })
        }
        Kind::MarkRead => {
            let mut to_me = Vec::new();
            for c in scene.queries.conversations().await? {
                to_me.extend(
                    scene
                        .queries
                        .messages_with(c.peer)
                        .await?
                        .into_iter()
                        .map(|m| m.record)
                        .filter(|m| m.recipient_id == me),
                );
            }
            // Mostly unread ones; now and then one already read (a no-op the server
            // acknowledges without a change).
            let unread: Vec<_> = to_me.iter().filter(|m| m.read_at.is_none()).collect();
            let chosen = if unread.is_empty() || rng.gen_bool(0.1) {
                to_me.choose(rng)
            } else {
                unread.choose(rng).copied()
            };
            chosen.map(|m| Mutation::MarkRead { id: m.id })
        }
    })
}
