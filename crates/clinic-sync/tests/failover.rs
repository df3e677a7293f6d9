//! One engine, one clinic server with two addresses: two loopback proxies in front of ONE
//! real server (as two instances in front of one database look to a client). Cutting the
//! address in use must move the engine to the other with its cursor and its outbox:
//! every change arrives once, in order, and every queued change lands once.
//! Real server, real SQLite, real WebSocket; every wait polls with a deadline. The last
//! test runs two real instances on one PostgreSQL database and kills the one in use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{Local, NaiveTime};
use clinic_protocol::{Mutation, MutationOutcome, NewSlot, Record};
use clinic_sync::{CacheEvent, ChangeKind, Engine, EngineConfig, Origin, SyncState, Timing, View};
use clinic_test_kit::process::ServerProcess;
use clinic_test_kit::{eventually, poll_until, Proxy, Staffer, TestServer, TestStore};
use uuid::Uuid;

/// Short timeouts, so that a cut address is noticed quickly (the server heartbeats every
/// 200 ms), generous enough for a loaded machine.
fn fast(mut c: EngineConfig) -> EngineConfig {
    c.timing = Timing {
        dead_after: Duration::from_secs(3),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
    };
    c.request_timeout = Duration::from_secs(3);
    c
}

/// A half-hour slot for `staff`, `day` days ahead (one day each, so none overlap), noted.
fn slot(staff: Uuid, day: u64, note: &str) -> Mutation {
    Mutation::CreateSlot {
        slot: NewSlot {
            id: Uuid::new_v4(),
            staff_id: staff,
            date: Local::now().date_naive() + chrono::Days::new(30 + day),
            start: NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(7, 30, 0).unwrap(),
            note: note.into(),
        },
    }
}

/// Every event the engine published, in order, gathered by a task of its own.
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<CacheEvent>>>);

impl Heard {
    fn listen(engine: &Engine) -> Heard {
        let heard = Heard::default();
        let mut events = engine.subscribe();
        let into = heard.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                into.0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(event);
            }
        });
        heard
    }

    fn events(&self) -> Vec<CacheEvent> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The mutation ids of the server's changes heard, in the order heard.
    fn server_changes(&self) -> Vec<Uuid> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                CacheEvent::Change(c) => match c.origin {
                    Origin::Server {
                        mutation_id: Some(m),
                        ..
                    } => Some(m),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// Asserts that every change in `others` (mutation id, seq) was heard exactly once, in
    /// seq order.
    fn once_in_seq_order(&self, others: &[(Uuid, u64)]) {
        let heard: Vec<Uuid> = self
            .server_changes()
            .into_iter()
            .filter(|m| others.iter().any(|(o, _)| o == m))
            .collect();
        let mut in_seq_order = others.to_vec();
        in_seq_order.sort_by_key(|(_, seq)| *seq);
        let expected: Vec<Uuid> = in_seq_order.iter().map(|(id, _)| *id).collect();
        assert_eq!(heard, expected, "every change once, in seq order");
    }

    fn confirmed(&self, id: Uuid) -> usize {
        self.events()
            .iter()
            .filter(
                |e| matches!(e, CacheEvent::Confirmed { mutation_id, .. } if *mutation_id == id),
            )
            .count()
    }
}

/// Another client writes straight to the server: a slot, under a mutation id it keeps,
/// with the server seq it was committed at.
async fn other_writes(other: &Staffer, staff: Uuid, day: u64, log: &mut Vec<(Uuid, u64)>) {
    let id = Uuid::new_v4();
    match other
        .send(id, slot(staff, day, &format!("other {day}")))
        .await
    {
        MutationOutcome::Applied { seq, .. } => log.push((id, seq)),
        rejected => panic!("the other client's slot was refused: {rejected:?}"),
    }
}

/// How many slots carry each note in `snapshot`.
fn slot_notes(snapshot: &clinic_protocol::Snapshot) -> HashMap<&str, usize> {
    let mut notes: HashMap<&str, usize> = HashMap::new();
    for record in &snapshot.records {
        if let Record::Slot(s) = record {
            *notes.entry(s.note.as_str()).or_default() += 1;
        }
    }
    notes
}

fn records(view: &View) -> Vec<String> {
    let mut v: Vec<String> = view
        .records
        .iter()
        .map(|r| serde_json::to_string(&r.record).unwrap())
        .collect();
    v.sort();
    v
}

async fn converged(engine: &Engine, server: &TestServer) -> bool {
    let view = engine.view_at().await.unwrap();
    let mut snapshot: Vec<String> = server
        .snapshot("sam")
        .await
        .records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    snapshot.sort();
    view.records.iter().all(|r| !r.pending) && records(&view) == snapshot
}

async fn drained(engine: &Engine) {
    let mut status = engine.status();
    eventually("the outbox drains and the engine is online", || {
        let s = status.borrow_and_update().clone();
        async move { s.pending == 0 && s.state == SyncState::Online }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_address_fails_over_with_the_cursor_and_the_outbox() {
    let server = TestServer::start().await;
    let first = Proxy::start(server.addr()).await;
    let second = Proxy::start(server.addr()).await;
    let data = tempfile::tempdir().unwrap();
    let addresses = [first.url(), second.url()];
    let sam = Engine::login(
        fast(EngineConfig::with_servers(&addresses, data.path())),
        "sam",
        "demo",
    )
    .await
    .unwrap();
    assert_eq!(
        sam.server_url(),
        first.url(),
        "the first address is preferred"
    );
    assert_eq!(sam.servers(), &addresses[..]);
    let heard = Heard::listen(&sam);
    drained(&sam).await;
    let reyes = server.snapshot("reyes").await.user.id;
    let other = server.login("sam").await;
    let mut others: Vec<(Uuid, u64)> = Vec::new();
    let mut mine: Vec<(Uuid, String, Mutation)> = Vec::new();
    let mut day = 0;

    // Some traffic through the first address.
    for _ in 0..3 {
        other_writes(&other, reyes, day, &mut others).await;
        day += 1;
    }

    // The first address goes away while the engine has changes queued (some may be in
    // flight when it is cut) and while the other client goes on writing.
    for _ in 0..5 {
        let (note, mutation) = (
            format!("mine {day}"),
            slot(reyes, day, &format!("mine {day}")),
        );
        mine.push((sam.submit(mutation.clone()).await.unwrap(), note, mutation));
        day += 1;
    }
    first.cut();
    for _ in 0..3 {
        other_writes(&other, reyes, day, &mut others).await;
        day += 1;
    }
    poll_until("the engine moves to the second address", || async {
        (sam.server_url() == second.url()).then_some(())
    })
    .await;
    drained(&sam).await;

    // Now both are away: the engine goes round and backs off; changes queue up; the
    // other client writes on. The first address comes back: the engine returns to it.
    second.cut();
    let mut status = sam.status();
    eventually("offline with both addresses cut", || {
        let s = status.borrow_and_update().state;
        async move { s == SyncState::Offline }
    })
    .await;
    for _ in 0..3 {
        let (note, mutation) = (
            format!("mine {day}"),
            slot(reyes, day, &format!("mine {day}")),
        );
        mine.push((sam.submit(mutation.clone()).await.unwrap(), note, mutation));
        day += 1;
        other_writes(&other, reyes, day, &mut others).await;
        day += 1;
    }
    assert!(sam.status().borrow().pending >= 3, "queued while offline");
    first.restore();
    drained(&sam).await;
    assert_eq!(sam.server_url(), first.url());
    eventually("the engine's cache equals the server's", || {
        converged(&sam, &server)
    })
    .await;

    // Every change of the other client's heard exactly once, in the server's order, and
    // no resync from a snapshot (which would hide a gap or a repeat).
    let events = heard.events();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, CacheEvent::Change(c) if matches!(c.kind, ChangeKind::Reset))),
        "no resync: the feed resumed from the cursor"
    );
    heard.once_in_seq_order(&others);

    // Every change of the engine's landed once: confirmed once, and once on the server.
    let snapshot = server.snapshot("sam").await;
    let notes = slot_notes(&snapshot);
    for (id, note, mutation) in &mine {
        assert_eq!(heard.confirmed(*id), 1, "{note} confirmed once");
        assert_eq!(
            notes.get(note.as_str()),
            Some(&1),
            "{note} on the server once"
        );
        // The server knows it by its id: sent again, it is not applied again.
        let again = other.send(*id, mutation.clone()).await;
        assert!(
            matches!(again, MutationOutcome::Applied { .. }),
            "a replay of {note} is answered as applied: {again:?}"
        );
    }
    let after = server.snapshot("sam").await;
    let slots = |s: &clinic_protocol::Snapshot| {
        s.records
            .iter()
            .filter(|r| matches!(r, Record::Slot(_)))
            .count()
    };
    assert_eq!(slots(&after), slots(&snapshot), "replays changed nothing");

    // The cache belongs to the clinic, not to an address: a one-address configuration with
    // the first address resumes the same cache.
    let before = records(&sam.view_at().await.unwrap());
    sam.shutdown().await;
    drop(sam);
    let dirs = std::fs::read_dir(data.path()).unwrap().count();
    assert_eq!(dirs, 1, "one cache directory, whatever address was in use");
    let again = Engine::resume(fast(EngineConfig::new(&first.url(), data.path())))
        .await
        .unwrap();
    assert_eq!(
        records(&again.view_at().await.unwrap()),
        before,
        "the same cache, resumed"
    );
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_skips_an_address_that_does_not_answer() {
    let server = TestServer::start().await;
    let away = Proxy::start(server.addr()).await;
    let up = Proxy::start(server.addr()).await;
    away.cut();
    let data = tempfile::tempdir().unwrap();
    let sam = Engine::login(
        fast(EngineConfig::with_servers(
            &[away.url(), up.url()],
            data.path(),
        )),
        "sam",
        "demo",
    )
    .await
    .unwrap();
    assert_eq!(sam.server_url(), up.url());
    drained(&sam).await;
    assert_eq!(sam.server_url(), up.url(), "it stays where it signed in");
    eventually("the engine's cache equals the server's", || {
        converged(&sam, &server)
    })
    .await;
    sam.shutdown().await;
}

/// Two real instances on one PostgreSQL database, the engine given both addresses. The
/// instance in use is killed (SIGKILL, the real binary) while the engine has changes queued
/// and in flight and another client writes through the other instance: the engine moves to
/// the survivor with its cursor, every change of the other client's reaches it once in seq
/// order, and every change of its own lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_under_the_engine_costs_nothing_on_postgres() {
    let (_cluster, store) = TestStore::postgres_anywhere().await;
    let mut doomed = ServerProcess::start_on(store.database().clone()).await;
    let survivor = TestServer::start_in(store.beside(), |_| {}).await;
    let data = tempfile::tempdir().unwrap();
    let sam = Engine::login(
        fast(EngineConfig::with_servers(
            &[doomed.url(), survivor.url()],
            data.path(),
        )),
        "sam",
        "demo",
    )
    .await
    .unwrap();
    assert_eq!(sam.server_url(), doomed.url());
    let heard = Heard::listen(&sam);
    drained(&sam).await;
    let reyes = survivor.snapshot("reyes").await.user.id;
    let other = survivor.login("sam").await;
    let (mut others, mut mine) = (Vec::new(), Vec::new());
    for day in 0..20u64 {
        let note = format!("mine {day}");
        let mutation = slot(reyes, day, &note);
        mine.push((sam.submit(mutation).await.unwrap(), note));
        if day % 4 == 0 {
            other_writes(&other, reyes, 100 + day, &mut others).await;
        }
        if day == 10 {
            doomed.kill().await;
        }
    }
    for day in 200..205 {
        other_writes(&other, reyes, day, &mut others).await;
    }
    poll_until("the engine moves to the surviving instance", || async {
        (sam.server_url() == survivor.url()).then_some(())
    })
    .await;
    drained(&sam).await;
    eventually("the engine's cache equals the server's", || {
        converged(&sam, &survivor)
    })
    .await;

    heard.once_in_seq_order(&others);
    let snapshot = survivor.snapshot("sam").await;
    let notes = slot_notes(&snapshot);
    for (id, note) in &mine {
        assert_eq!(heard.confirmed(*id), 1, "{note} confirmed once");
        assert_eq!(
            notes.get(note.as_str()),
            Some(&1),
            "{note} on the server once: {}",
            doomed.log_tail(20)
        );
    }
    sam.shutdown().await;
}
