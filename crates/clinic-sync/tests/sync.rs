//! The engine against the real server, in-process on 127.0.0.1:0, with real SQLite files.
//! The server, the proxies that cut one engine off and the deadlines come from
//! `clinic-test-kit`. Every wait polls with a deadline.

use std::time::{Duration, Instant};

use chrono::{Local, NaiveTime};
use clinic_protocol::{
    BookingAction, BookingStatus, ErrorCode, Mutation, NewSlot, Record, Snapshot, PROTOCOL_VERSION,
};
use clinic_sync::{CacheEvent, ChangeKind, Engine, EngineConfig, SyncState, Timing, View};
use clinic_test_kit::{eventually, poll_until, Proxy, TestServer, DEADLINE};
use uuid::Uuid;

/// Short timeouts so that tests notice a dead server quickly; generous enough for a
/// loaded machine (the server heartbeats every 200 ms).
fn fast(mut c: EngineConfig) -> EngineConfig {
    c.timing = Timing {
        dead_after: Duration::from_secs(3),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
    };
    // A request caught in a cut connection must fail fast too, or recovery can take the
    // default 15 s and the convergence deadlines below become a race.
    c.request_timeout = Duration::from_secs(3);
    c
}

fn engine_config(server: &TestServer, data: &std::path::Path) -> EngineConfig {
    fast(EngineConfig::new(&server.url(), data))
}

/// The records of a view, comparable with a snapshot: sorted JSON, no pending flags.
fn records(view: &View) -> Vec<String> {
    let mut v: Vec<String> = view
        .records
        .iter()
        .map(|r| serde_json::to_string(&r.record).unwrap())
        .collect();
    v.sort();
    v
}

fn snapshot_records(s: &Snapshot) -> Vec<String> {
    let mut v: Vec<String> = s
        .records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    v.sort();
    v
}

async fn converged(engine: &Engine, server: &TestServer, user: &str) -> bool {
    let view = engine.view_at().await.unwrap();
    view.records.iter().all(|r| !r.pending)
        && records(&view) == snapshot_records(&server.snapshot(user).await)
}

fn booking(view: &View, id: Uuid) -> Option<clinic_protocol::Booking> {
    view.records.iter().find_map(|r| match &r.record {
        Record::Booking(b) if b.id == id => Some(b.clone()),
        _ => None,
    })
}

fn requested_of(view: &View, therapist: Uuid) -> clinic_protocol::Booking {
    view.records
        .iter()
        .find_map(|r| match &r.record {
            Record::Booking(b)
                if b.therapist_id == Some(therapist) && b.status == BookingStatus::Requested =>
            {
                Some(b.clone())
            }
            _ => None,
        })
        .expect("a requested booking")
}

fn slot_for(staff: Uuid, hour: u32) -> Mutation {
    Mutation::CreateSlot {
        slot: NewSlot {
            id: Uuid::new_v4(),
            staff_id: staff,
            date: Local::now().date_naive() + chrono::Duration::days(10),
            start: NaiveTime::from_hms_opt(hour, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(hour, 30, 0).unwrap(),
            note: format!("slot at {hour}"),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_converge_with_the_right_filtering() {
    let server = TestServer::start().await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let olivia = Engine::login(engine_config(&server, d1.path()), "olivia", "demo")
        .await
        .unwrap();
    let reyes = Engine::login(engine_config(&server, d2.path()), "reyes", "demo")
        .await
        .unwrap();
    let mut events = olivia.subscribe();

    let view = reyes.view_at().await.unwrap();
    let b = requested_of(&view, reyes.user().id);
    let mid = reyes
        .submit(Mutation::BookingAction {
            id: b.id,
            version: b.version,
            action: BookingAction::Accept,
        })
        .await
        .unwrap();
    // Shown at once, pending, in reyes's own view.
    let mine = reyes.view_at().await.unwrap();
    assert!(mine.records.iter().any(|r| r.pending && matches!(&r.record, Record::Booking(x) if x.id == b.id && x.status == BookingStatus::Confirmed)));

    eventually("olivia sees the acceptance", || async {
        booking(&olivia.view_at().await.unwrap(), b.id)
            .is_some_and(|x| x.status == BookingStatus::Confirmed)
    })
    .await;
    let mut saw = false;
    while let Some(event) = events.try_recv() {
        if let CacheEvent::Change(c) = event {
            if let clinic_sync::Origin::Server {
                mutation_id,
                actor,
                live,
            } = &c.origin
            {
                saw |= *mutation_id == Some(mid) && *actor == Some(reyes.user().id) && *live;
            }
        }
    }
    assert!(saw, "olivia's stream carried reyes's change with its actor");
    eventually(
        "both caches equal what the server says each may see",
        || async {
            converged(&olivia, &server, "olivia").await && converged(&reyes, &server, "reyes").await
        },
    )
    .await;
    let reyes_view = reyes.view_at().await.unwrap();
    assert!(
        reyes_view.records.iter().all(|r| match &r.record {
            Record::Booking(x) => x.therapist_id == Some(reyes.user().id),
            Record::Message(m) =>
                m.sender_id == reyes.user().id || m.recipient_id == reyes.user().id,
            Record::Slot(s) => s.staff_id == reyes.user().id,
            Record::Staff(_) => true,
        }),
        "reyes's cache holds only what is his to see"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_changes_land_exactly_once_when_the_server_returns() {
    let mut server = TestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let sam = Engine::login(engine_config(&server, data.path()), "sam", "demo")
        .await
        .unwrap();
    let mut status = sam.status();
    eventually("online", || {
        let s = status.borrow_and_update().state;
        async move { s == SyncState::Online }
    })
    .await;
    let reyes = server.snapshot("reyes").await.user.id;

    server.stop().await;
    eventually("offline", || {
        let s = status.borrow_and_update().state;
        async move { s == SyncState::Offline }
    })
    .await;
    for hour in 8..13 {
        sam.submit(slot_for(reyes, hour)).await.unwrap();
    }
    assert_eq!(sam.status().borrow().pending, 5);
    server.restart().await;
    eventually("the outbox drains", || {
        let p = status.borrow_and_update().pending;
        async move { p == 0 }
    })
    .await;
    eventually("sam's cache equals the server", || {
        converged(&sam, &server, "sam")
    })
    .await;
    let slots = server
        .snapshot("sam")
        .await
        .records
        .iter()
        .filter(|r| matches!(r, Record::Slot(s) if s.note.starts_with("slot at")))
        .count();
    assert_eq!(slots, 5, "every change landed exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_engine_replays_its_outbox() {
    let mut server = TestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let reyes = server.snapshot("reyes").await.user.id;
    let sam = Engine::login(engine_config(&server, data.path()), "sam", "demo")
        .await
        .unwrap();
    server.stop().await;
    for hour in 14..17 {
        sam.submit(slot_for(reyes, hour)).await.unwrap();
    }
    sam.shutdown().await;
    drop(sam);

    server.restart().await;
    let again = Engine::resume(engine_config(&server, data.path()))
        .await
        .unwrap();
    assert_eq!(
        again
            .view_at()
            .await
            .unwrap()
            .records
            .iter()
            .filter(|r| r.pending)
            .count(),
        3,
        "the pending changes survived"
    );
    eventually("the outbox replays", || converged(&again, &server, "sam")).await;
    let slots = server
        .snapshot("sam")
        .await
        .records
        .iter()
        .filter(|r| matches!(r, Record::Slot(s) if s.note.starts_with("slot at")))
        .count();
    assert_eq!(slots, 3, "nothing lost or doubled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loser_of_a_conflict_is_rolled_back_and_told() {
    let server = TestServer::start().await;
    let link = Proxy::start(server.addr()).await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let olivia = Engine::login(engine_config(&server, d1.path()), "olivia", "demo")
        .await
        .unwrap();
    let maria_config = fast(EngineConfig::new(&link.url(), d2.path()));
    let maria = Engine::login(maria_config, "maria", "demo").await.unwrap();
    let b = requested_of(&maria.view_at().await.unwrap(), maria.user().id);
    eventually("olivia has it", || async {
        booking(&olivia.view_at().await.unwrap(), b.id).is_some()
    })
    .await;

    // Maria loses the network; Olivia cancels; Maria accepts the old version offline.
    let mut status = maria.status();
    link.cut();
    eventually("maria offline", || {
        let s = status.borrow_and_update().state;
        async move { s == SyncState::Offline }
    })
    .await;
    olivia
        .submit(Mutation::CancelBooking {
            id: b.id,
            version: b.version,
            reason: "The client called off.".into(),
        })
        .await
        .unwrap();
    eventually("the cancel landed", || async {
        server.snapshot("olivia").await.records.iter().any(|r| matches!(r, Record::Booking(x) if x.id == b.id && x.status == BookingStatus::Cancelled))
    }).await;
    let mut events = maria.subscribe();
    maria
        .submit(Mutation::BookingAction {
            id: b.id,
            version: b.version,
            action: BookingAction::Accept,
        })
        .await
        .unwrap();
    assert_eq!(
        booking(&maria.view_at().await.unwrap(), b.id)
            .unwrap()
            .status,
        BookingStatus::Confirmed,
        "optimistic"
    );

    link.restore();
    eventually("maria converges on the server's record", || {
        converged(&maria, &server, "maria")
    })
    .await;
    assert_eq!(
        booking(&maria.view_at().await.unwrap(), b.id)
            .unwrap()
            .status,
        BookingStatus::Cancelled
    );
    let mut rejection = None;
    while let Some(e) = events.try_recv() {
        if let CacheEvent::Rejected(r) = e {
            rejection = Some(r);
        }
    }
    let r = rejection.expect("maria was told");
    assert_eq!(r.code, ErrorCode::StaleVersion);
    assert!(r.message.contains("cancelled"), "{}", r.message);
    assert!(matches!(r.current, Some(Record::Booking(x)) if x.status == BookingStatus::Cancelled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_cause_an_error_and_a_resync_not_a_corrupt_cache() {
    let server = TestServer::start().await;
    let head = server.snapshot("olivia").await.seq;
    // A fake feed in front of the real server: HTTP is proxied to it, the WebSocket is ours
    // and serves one hostile script per connection, round robin.
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_addr = fake.local_addr().unwrap();
    let welcome = format!(
        r#"{{"type":"welcome","protocol":{},"user_id":"00000000-0000-0000-0000-000000000000","head":{}}}"#,
        PROTOCOL_VERSION,
        head + 10
    );
    let slot_change = |seq: u64| {
        format!(
            r#"{{"seq":{seq},"actor":null,"mutation_id":null,"op":{{"type":"remove","kind":"slot","id":"00000000-0000-0000-0000-000000000000"}}}}"#
        )
    };
    let scripts: Vec<Vec<String>> = vec![
        vec!["garbage".into()],
        vec![welcome.replace(
            &format!(r#""protocol":{PROTOCOL_VERSION}"#),
            r#""protocol":7"#,
        )],
        vec![welcome.clone(), r#"{"type":"teleport","to":"mars"}"#.into()],
        // Out of order within a batch.
        vec![
            welcome.clone(),
            format!(
                r#"{{"type":"changes","changes":[{},{}],"upto":{}}}"#,
                slot_change(head + 3),
                slot_change(head + 2),
                head + 3
            ),
        ],
        // A repeat of what the cache already has.
        vec![
            welcome.clone(),
            format!(
                r#"{{"type":"changes","changes":[{}],"upto":{head}}}"#,
                slot_change(head)
            ),
        ],
        // A heartbeat behind the cursor.
        vec![welcome, r#"{"type":"heartbeat","head":0}"#.into()],
    ];
    let upstream = server.addr();
    let feeds = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let feed_count = feeds.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = fake.accept().await {
            let mut peek = [0u8; 512];
            let Ok(n) = stream.peek(&mut peek).await else {
                continue;
            };
            let head = String::from_utf8_lossy(&peek[..n]).to_string();
            if head.contains("/v1/feed") {
                let i = feed_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let script = scripts[i % scripts.len()].clone();
                tokio::spawn(async move {
                    use futures_util::{SinkExt, StreamExt};
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    let _ = ws.next().await;
                    for frame in script {
                        let _ = ws
                            .send(tokio_tungstenite::tungstenite::Message::text(frame))
                            .await;
                    }
                    while let Some(Ok(_)) = ws.next().await {}
                });
            } else {
                tokio::spawn(async move {
                    let mut client = stream;
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        }
    });
    let data = tempfile::tempdir().unwrap();
    let config = fast(EngineConfig::new(
        &format!("http://{fake_addr}"),
        data.path(),
    ));
    let engine = Engine::login(config, "olivia", "demo").await.unwrap();
    let mut events = engine.subscribe();
    let before = records(&engine.view_at().await.unwrap());
    let mut status = engine.status();
    let mut errors = std::collections::HashSet::new();
    let deadline = Instant::now() + DEADLINE;
    // Every script served at least twice, and an error seen for each kind of frame.
    while feeds.load(std::sync::atomic::Ordering::SeqCst) < 12 || errors.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "timed out; errors seen: {errors:?}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), status.changed()).await;
        let s = status.borrow_and_update().clone();
        if let Some(e) = s.last_error {
            assert_ne!(s.state, SyncState::Online, "{e}");
            errors.insert(e.split(':').take(2).collect::<String>());
        }
    }
    let mut resyncs = 0;
    while let Some(event) = events.try_recv() {
        match event {
            CacheEvent::Change(c) if c.kind == ChangeKind::Reset => resyncs += 1,
            other => panic!("nothing but resyncs reached the cache: {other:?}"),
        }
    }
    assert!(
        resyncs >= 6,
        "hostile frames lead to resyncs from a snapshot ({resyncs})"
    );
    assert_eq!(
        records(&engine.view_at().await.unwrap()),
        before,
        "the cache is intact"
    );
    assert_eq!(
        records(&engine.view_at().await.unwrap()),
        snapshot_records(&server.snapshot("olivia").await)
    );
    engine.shutdown().await;
}

/// One step of the model-based test.
#[derive(Debug, Clone)]
enum Step {
    /// User `u` creates availability (slot notes are unique, to count applications).
    CreateSlot { u: usize, hour: u32 },
    /// User `u` deletes the `nth` slot they can see (if any).
    DeleteSlot { u: usize, nth: usize },
    /// User `u` writes to user `to`.
    Message { u: usize, to: usize },
    /// User `u` takes the next life-cycle step they can on the `nth` booking they see.
    Advance { u: usize, nth: usize },
    /// User `u` loses or regains the network.
    Link { u: usize, up: bool },
    /// User `u`'s app restarts (engine dropped, resumed from its files).
    Restart { u: usize },
}

const USERS: [&str; 3] = ["sam", "reyes", "dan"];

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (0..3usize, 8..18u32).prop_map(|(u, hour)| Step::CreateSlot { u, hour }),
        1 => (0..3usize, 0..4usize).prop_map(|(u, nth)| Step::DeleteSlot { u, nth }),
        2 => (0..3usize, 0..3usize).prop_map(|(u, to)| Step::Message { u, to }),
        2 => (0..3usize, 0..6usize).prop_map(|(u, nth)| Step::Advance { u, nth }),
        2 => (0..3usize, any::<bool>()).prop_map(|(u, up)| Step::Link { u, up }),
        1 => (0..3usize).prop_map(|u| Step::Restart { u }),
    ]
}

/// What a window of the app keeps: built with the late-subscriber recipe (subscribe, read
/// the view at seq S, then apply only events above S), kept up to date from the stream.
struct Mirror {
    events: clinic_sync::Subscription,
    records: std::collections::HashMap<(clinic_protocol::RecordKind, Uuid), (Record, bool)>,
    seq: u64,
}

impl Mirror {
    async fn join(engine: &Engine) -> Mirror {
        let events = engine.subscribe();
        let mut m = Mirror {
            events,
            records: Default::default(),
            seq: 0,
        };
        m.reload(engine).await;
        m
    }

    async fn reload(&mut self, engine: &Engine) {
        let view = engine.view_at().await.unwrap();
        self.seq = view.seq;
        self.records = view
            .records
            .into_iter()
            .map(|r| ((r.record.kind(), r.record.id()), (r.record, r.pending)))
            .collect();
    }

    /// Applies what the stream has; true if the mirror equals the engine's view.
    async fn caught_up(&mut self, engine: &Engine) -> bool {
        while let Some(event) = self.events.try_recv() {
            let CacheEvent::Change(change) = event else {
                continue;
            };
            if change.seq <= self.seq {
                continue;
            }
            assert_eq!(change.seq, self.seq + 1, "no gap in the cache sequence");
            self.seq = change.seq;
            match change.kind {
                ChangeKind::Upsert { record, pending } => {
                    self.records
                        .insert((record.kind(), record.id()), (record, pending));
                }
                ChangeKind::Remove { kind, id } => {
                    self.records.remove(&(kind, id));
                }
                ChangeKind::Reset => self.reload(engine).await,
            }
        }
        let view = engine.view_at().await.unwrap();
        let now: std::collections::HashMap<_, _> = view
            .records
            .into_iter()
            .map(|r| ((r.record.kind(), r.record.id()), (r.record, r.pending)))
            .collect();
        view.seq == self.seq && now == self.records
    }
}

async fn run_model(steps: Vec<Step>) {
    // The server's and engine's logs show in a failing test's output (and only there).
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn,clinic_server=info,clinic_sync=info")
        .with_test_writer()
        .try_init();
    let server = TestServer::start().await;
    let dirs: Vec<tempfile::TempDir> = USERS.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let mut links = Vec::new();
    let mut configs = Vec::new();
    let mut engines = Vec::new();
    for (i, user) in USERS.iter().enumerate() {
        let link = Proxy::start(server.addr()).await;
        let c = fast(EngineConfig::new(&link.url(), dirs[i].path()));
        engines.push(Engine::login(c.clone(), user, "demo").await.unwrap());
        configs.push(c);
        links.push(link);
    }
    let ids: Vec<Uuid> = engines.iter().map(|e| e.user().id).collect();
    let mut mirrors = Vec::new();
    for e in &engines {
        mirrors.push(Mirror::join(e).await);
    }
    let mut notes = 0u32;
    for step in steps {
        match step {
            Step::CreateSlot { u, hour } => {
                notes += 1;
                // Sam (scheduler) sets reyes's availability; reyes sets his own; dan may not.
                let mut m = slot_for(ids[1], hour);
                if let Mutation::CreateSlot { slot } = &mut m {
                    slot.note = format!("model {notes}");
                }
                let _ = engines[u].submit(m).await;
            }
            Step::DeleteSlot { u, nth } => {
                let view = engines[u].view_at().await.unwrap();
                let slot = view
                    .records
                    .iter()
                    .filter_map(|r| match &r.record {
                        Record::Slot(s) => Some(s.clone()),
                        _ => None,
                    })
                    .nth(nth);
                if let Some(s) = slot {
                    let _ = engines[u]
                        .submit(Mutation::DeleteSlot {
                            id: s.id,
                            version: s.version,
                        })
                        .await;
                }
            }
            Step::Message { u, to } => {
                let _ = engines[u]
                    .submit(Mutation::SendMessage {
                        message: clinic_protocol::NewMessage {
                            id: Uuid::new_v4(),
                            recipient_id: ids[to],
                            body: "model".into(),
                        },
                    })
                    .await;
            }
            Step::Advance { u, nth } => {
                let view = engines[u].view_at().await.unwrap();
                let b = view
                    .records
                    .iter()
                    .filter_map(|r| match &r.record {
                        Record::Booking(b) => Some(b.clone()),
                        _ => None,
                    })
                    .nth(nth);
                if let Some(b) = b {
                    for action in BookingAction::ALL {
                        if engines[u]
                            .submit(Mutation::BookingAction {
                                id: b.id,
                                version: b.version,
                                action,
                            })
                            .await
                            .is_ok()
                        {
                            break;
                        }
                    }
                }
            }
            Step::Link { u, up } => {
                if up {
                    links[u].restore();
                } else {
                    links[u].cut();
                }
            }
            Step::Restart { u } => {
                engines[u].shutdown().await;
                engines[u] = Engine::resume(configs[u].clone()).await.unwrap();
                mirrors[u] = Mirror::join(&engines[u]).await;
            }
        }
    }
    for link in &links {
        link.restore();
    }
    for (i, user) in USERS.iter().enumerate() {
        let deadline = Instant::now() + DEADLINE;
        while !converged(&engines[i], &server, user).await {
            if Instant::now() > deadline {
                let view = engines[i].view_at().await.unwrap();
                let mine = records(&view);
                let theirs = snapshot_records(&server.snapshot(user).await);
                let only_mine: Vec<_> = mine.iter().filter(|r| !theirs.contains(r)).collect();
                let only_theirs: Vec<_> = theirs.iter().filter(|r| !mine.contains(r)).collect();
                let pending: Vec<_> = view.records.iter().filter(|r| r.pending).collect();
                panic!(
                    "timed out waiting for {user} converges\nstatus: {:?}\npending: {pending:?}\nonly in the cache: {only_mine:#?}\nonly on the server: {only_theirs:#?}",
                    *engines[i].status().borrow()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for (i, mirror) in mirrors.iter_mut().enumerate() {
        let deadline = Instant::now() + DEADLINE;
        while !mirror.caught_up(&engines[i]).await {
            assert!(
                Instant::now() < deadline,
                "{}: the change stream rebuilds the view",
                USERS[i]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // At most once: every model slot note appears at most once on the server.
    let everything = server.snapshot("sam").await;
    let mut seen = std::collections::HashSet::new();
    for r in &everything.records {
        if let Record::Slot(s) = r {
            if s.note.starts_with("model ") {
                assert!(seen.insert(s.note.clone()), "{} applied twice", s.note);
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 10, failure_persistence: None, ..Default::default() })]
    #[test]
    fn random_users_changes_partitions_and_restarts_converge(steps in proptest::collection::vec(step(), 5..25)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(run_model(steps));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_answer_from_the_cache_with_pending_changes() {
    let server = TestServer::start().await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let olivia = Engine::login(engine_config(&server, d1.path()), "olivia", "demo")
        .await
        .unwrap();
    let reyes = Engine::login(engine_config(&server, d2.path()), "reyes", "demo")
        .await
        .unwrap();
    let view = olivia.view_at().await.unwrap();
    let all: Vec<clinic_protocol::Booking> = view
        .records
        .iter()
        .filter_map(|r| match &r.record {
            Record::Booking(b) => Some(b.clone()),
            _ => None,
        })
        .collect();
    assert!(!all.is_empty());
    let day = all[0].date;
    let ids = |list: Vec<clinic_sync::Cached<clinic_protocol::Booking>>| {
        let mut v: Vec<Uuid> = list.into_iter().map(|c| c.record.id).collect();
        v.sort();
        v
    };
    let expect = |f: &dyn Fn(&clinic_protocol::Booking) -> bool| {
        let mut v: Vec<Uuid> = all.iter().filter(|b| f(b)).map(|b| b.id).collect();
        v.sort();
        v
    };
    let me = reyes.user().id;
    assert_eq!(
        ids(olivia.queries().bookings_on(day).await.unwrap()),
        expect(&|b| b.date == day)
    );
    assert_eq!(
        ids(olivia.queries().bookings_of_therapist(me).await.unwrap()),
        expect(&|b| b.therapist_id == Some(me))
    );
    assert_eq!(
        ids(olivia
            .queries()
            .bookings_with_status(BookingStatus::Requested)
            .await
            .unwrap()),
        expect(&|b| b.status == BookingStatus::Requested)
    );
    let counts = olivia.queries().counts(day).await.unwrap();
    assert_eq!(
        counts.upcoming as usize,
        all.iter()
            .filter(|b| b.status != BookingStatus::Cancelled && b.date >= day)
            .count()
    );
    assert_eq!(
        olivia.queries().recent_bookings(3).await.unwrap().len(),
        all.len().min(3)
    );
    assert_eq!(
        olivia.queries().staff().await.unwrap().len(),
        view.records
            .iter()
            .filter(|r| matches!(r.record, Record::Staff(_)))
            .count()
    );

    // A pending change shows in every query at once.
    let b = requested_of(&reyes.view_at().await.unwrap(), me);
    reyes
        .submit(Mutation::BookingAction {
            id: b.id,
            version: b.version,
            action: BookingAction::Accept,
        })
        .await
        .unwrap();
    let confirmed = reyes
        .queries()
        .bookings_with_status(BookingStatus::Confirmed)
        .await
        .unwrap();
    assert!(confirmed.iter().any(|c| c.record.id == b.id));
    let mine = reyes.queries().bookings_of_therapist(me).await.unwrap();
    let accepted = mine.iter().find(|c| c.record.id == b.id).unwrap();
    // Pending until the server confirms it (possibly already: then it is not pending).
    assert_eq!(accepted.record.status, BookingStatus::Confirmed);

    // Messages: a conversation with an unread count, read optimistically.
    let olivia_id = olivia.user().id;
    olivia
        .submit(Mutation::SendMessage {
            message: clinic_protocol::NewMessage {
                id: Uuid::new_v4(),
                recipient_id: me,
                body: "Can you take the 3 pm?".into(),
            },
        })
        .await
        .unwrap();
    let unread = poll_until("the message reaches reyes", || async {
        let conversations = reyes.queries().conversations().await.unwrap();
        let with_olivia = conversations.iter().find(|c| c.peer == olivia_id);
        with_olivia.map(|c| c.unread).filter(|unread| *unread > 0)
    })
    .await;
    let thread = reyes.queries().messages_with(olivia_id).await.unwrap();
    let last = thread.last().unwrap().record.clone();
    assert_eq!(last.body, "Can you take the 3 pm?");
    reyes
        .submit(Mutation::MarkRead { id: last.id })
        .await
        .unwrap();
    let c = reyes.queries().conversations().await.unwrap();
    let c = c.iter().find(|c| c.peer == olivia_id).unwrap();
    assert_eq!(c.unread, unread - 1, "read at once, optimistically");
    olivia.shutdown().await;
    reyes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_works_offline_and_an_expired_session_is_a_distinct_error() {
    let mut server = TestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let config = engine_config(&server, data.path());
    let sam = Engine::login(config.clone(), "sam", "demo").await.unwrap();
    let before = records(&sam.view_at().await.unwrap());
    sam.shutdown().await;
    drop(sam);
    server.stop().await;
    // Offline, no password: the cache answers.
    let again = Engine::resume(config.clone()).await.unwrap();
    assert_eq!(records(&again.view_at().await.unwrap()), before);
    assert_eq!(again.user().username, "sam");
    again.logout().await.unwrap();
    let err = Engine::resume(config.clone()).await.unwrap_err();
    assert_eq!(err.code(), "no_session");

    // A server whose tokens live one second.
    let short = TestServer::start_with(|c| c.token_ttl = Duration::from_secs(1)).await;
    let config = engine_config(&short, data.path());
    Engine::login(config.clone(), "sam", "demo")
        .await
        .unwrap()
        .shutdown()
        .await;
    let refused = poll_until("the session expires", || async {
        match Engine::resume(config.clone()).await {
            Err(e) => Some(e),
            Ok(engine) => {
                engine.shutdown().await;
                None
            }
        }
    })
    .await;
    assert_eq!(refused.code(), "session_expired", "{refused}");
    server.restart().await;
}

/// Two people delete the same slot, one of them offline: whichever reaches the offline one
/// first (the removal on the feed, or the rejection of its own delete), it converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_slot_someone_else_deleted_converges() {
    for removal_first in [true, false] {
        let server = TestServer::start().await;
        let link = Proxy::start(server.addr()).await;
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let sam = Engine::login(
            fast(EngineConfig::new(&link.url(), d1.path())),
            "sam",
            "demo",
        )
        .await
        .unwrap();
        let reyes = Engine::login(engine_config(&server, d2.path()), "reyes", "demo")
            .await
            .unwrap();
        let id = reyes.user().id;
        reyes.submit(slot_for(id, 9)).await.unwrap();
        eventually("sam sees the slot", || async {
            sam.view_at()
                .await
                .unwrap()
                .records
                .iter()
                .any(|r| matches!(&r.record, Record::Slot(s) if s.note == "slot at 9"))
        })
        .await;
        let slot = sam
            .view_at()
            .await
            .unwrap()
            .records
            .iter()
            .find_map(|r| match &r.record {
                Record::Slot(s) if s.note == "slot at 9" => Some(s.clone()),
                _ => None,
            })
            .unwrap();
        link.cut();
        eventually("sam offline", || async {
            sam.status().borrow().state == SyncState::Offline
        })
        .await;
        if removal_first {
            reyes
                .submit(Mutation::DeleteSlot {
                    id: slot.id,
                    version: slot.version,
                })
                .await
                .unwrap();
            eventually("reyes's delete landed", || {
                converged(&reyes, &server, "reyes")
            })
            .await;
        }
        sam.submit(Mutation::DeleteSlot {
            id: slot.id,
            version: slot.version,
        })
        .await
        .unwrap();
        if !removal_first {
            reyes
                .submit(Mutation::UpdateSlot {
                    id: slot.id,
                    version: slot.version,
                    date: slot.date,
                    start: slot.start,
                    end: slot.end,
                    note: "moved".into(),
                })
                .await
                .unwrap();
            eventually("reyes's edit landed", || {
                converged(&reyes, &server, "reyes")
            })
            .await;
        }
        link.restore();
        eventually(
            &format!("sam converges (removal first: {removal_first})"),
            || converged(&sam, &server, "sam"),
        )
        .await;
    }
}

/// A sequence the model test once failed on in CI (convergence took longer than its
/// deadline while a request waited out the default 15 s timeout), kept as a regression case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_that_once_timed_out_converges() {
    run_model(vec![
        Step::Link { u: 0, up: true },
        Step::CreateSlot { u: 0, hour: 12 },
        Step::CreateSlot { u: 0, hour: 9 },
        Step::CreateSlot { u: 1, hour: 15 },
        Step::Advance { u: 2, nth: 0 },
        Step::Message { u: 1, to: 0 },
        Step::Link { u: 0, up: false },
        Step::DeleteSlot { u: 0, nth: 2 },
        Step::Advance { u: 0, nth: 3 },
        Step::Link { u: 2, up: true },
        Step::CreateSlot { u: 1, hour: 14 },
        Step::CreateSlot { u: 0, hour: 17 },
        Step::CreateSlot { u: 2, hour: 14 },
        Step::DeleteSlot { u: 2, nth: 2 },
        Step::DeleteSlot { u: 1, nth: 1 },
        Step::Message { u: 0, to: 2 },
        Step::Advance { u: 2, nth: 3 },
        Step::Link { u: 2, up: true },
        Step::Advance { u: 1, nth: 4 },
        Step::Link { u: 0, up: false },
    ])
    .await;
}

/// A second sequence the model test failed on in CI: sam (the scheduler) never lost the
/// network, but restarted, then created and deleted slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_restart_then_slot_edits_converges() {
    run_model(vec![
        Step::CreateSlot { u: 1, hour: 15 },
        Step::CreateSlot { u: 2, hour: 14 },
        Step::Restart { u: 0 },
        Step::Message { u: 0, to: 0 },
        Step::CreateSlot { u: 0, hour: 10 },
        Step::CreateSlot { u: 2, hour: 14 },
        Step::Advance { u: 0, nth: 2 },
        Step::Message { u: 1, to: 1 },
        Step::Advance { u: 1, nth: 0 },
        Step::DeleteSlot { u: 0, nth: 3 },
        Step::Link { u: 1, up: true },
        Step::Message { u: 2, to: 0 },
        Step::CreateSlot { u: 0, hour: 16 },
        Step::Restart { u: 2 },
        Step::DeleteSlot { u: 1, nth: 3 },
        Step::Advance { u: 0, nth: 1 },
    ])
    .await;
}

/// The app tags each change with the window it came from, to tell a rejection there. The
/// tag lives in the outbox on disk, so it still comes back when the verdict arrives after
/// the app restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_after_an_engine_restart_carries_its_tag() {
    let server = TestServer::start().await;
    let link = Proxy::start(server.addr()).await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let olivia = Engine::login(engine_config(&server, d1.path()), "olivia", "demo")
        .await
        .unwrap();
    let maria_config = fast(EngineConfig::new(&link.url(), d2.path()));
    let maria = Engine::login(maria_config.clone(), "maria", "demo")
        .await
        .unwrap();
    let b = requested_of(&maria.view_at().await.unwrap(), maria.user().id);

    // Offline, Maria accepts from a window; the app quits before the server hears of it.
    link.cut();
    eventually("maria offline", || async {
        maria.status().borrow().state == SyncState::Offline
    })
    .await;
    maria
        .submit_tagged(
            Mutation::BookingAction {
                id: b.id,
                version: b.version,
                action: BookingAction::Accept,
            },
            "therapist-1",
        )
        .await
        .unwrap();
    maria.shutdown().await;
    drop(maria);

    // Meanwhile Olivia cancels the booking, so Maria's acceptance will lose.
    olivia
        .submit(Mutation::CancelBooking {
            id: b.id,
            version: b.version,
            reason: "The client called off.".into(),
        })
        .await
        .unwrap();
    eventually("the cancel landed", || async {
        server.snapshot("olivia").await.records.iter().any(|r| matches!(r, Record::Booking(x) if x.id == b.id && x.status == BookingStatus::Cancelled))
    }).await;

    // The app starts again, offline, then the network comes back.
    let maria = Engine::resume(maria_config).await.unwrap();
    let mut events = maria.subscribe();
    assert_eq!(
        maria.status().borrow().pending,
        1,
        "the change is still queued"
    );
    link.restore();
    eventually("maria converges on the server's record", || {
        converged(&maria, &server, "maria")
    })
    .await;
    let mut rejection = None;
    while let Some(e) = events.try_recv() {
        if let CacheEvent::Rejected(r) = e {
            rejection = Some(r);
        }
    }
    let r = rejection.expect("maria was told");
    assert_eq!(r.code, ErrorCode::StaleVersion);
    assert_eq!(r.tag.as_deref(), Some("therapist-1"));
    olivia.shutdown().await;
    maria.shutdown().await;
}

/// A new account's one-time password is not a way in: the engine says so with a stable
/// code, keeps nothing, and signs in once a password of the user's own replaces it (which
/// the server judges: too short is refused and changes nothing).
#[tokio::test]
async fn a_one_time_password_is_replaced_before_the_engine_signs_in() {
    let server = TestServer::start().await;
    let admin = server.login("admin").await;
    let made: serde_json::Value = admin
        .http()
        .post(format!("{}{}", server.url(), clinic_protocol::wire::paths::STAFF))
        .bearer_auth(&admin.login.token)
        .json(&serde_json::json!({"username": "nova", "display_name": "Nova Reed", "roles": ["operator"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let one_time = made["one_time_password"]
        .as_str()
        .expect("a one-time password");
    let data = tempfile::tempdir().unwrap();
    let config = || engine_config(&server, data.path());

    let refused = Engine::login(config(), "nova", one_time).await.unwrap_err();
    assert_eq!(refused.code(), "password_change_required", "{refused}");
    let short = Engine::login_with_new_password(config(), "nova", one_time, "short")
        .await
        .unwrap_err();
    assert_eq!(short.code(), "password_too_short", "{short}");

    let nova = Engine::login_with_new_password(config(), "nova", one_time, "a long new password")
        .await
        .unwrap();
    assert_eq!(nova.user().username, "nova");
    eventually("the engine fetches what nova may see", || async {
        !nova.view_at().await.unwrap().records.is_empty()
    })
    .await;
    let again = Engine::login(config(), "nova", one_time).await.unwrap_err();
    assert_eq!(
        again.code(),
        "unauthorized",
        "the one-time password is spent: {again}"
    );
}

/// Disabling an account ends its engine's feed with `account_disabled` (not "offline", not
/// a rejection), and a change made while it is disabled stays in the outbox, on disk: once
/// an administrator enables the account again and the user signs in again, it lands on the
/// server exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_keeps_its_outbox_until_it_is_enabled_again() {
    let server = TestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let config = || engine_config(&server, data.path());
    let sam = Engine::login(config(), "sam", "demo").await.unwrap();
    let mut status = sam.status();
    eventually("online", || {
        let s = status.borrow_and_update().state;
        async move { s == SyncState::Online }
    })
    .await;
    let reyes = server.snapshot("reyes").await.user.id;

    let admin = server.login("admin").await;
    let set_disabled = |disabled: bool| {
        let admin = &admin;
        let server = &server;
        async move {
            let me = server.snapshot("admin").await;
            let sam = me
                .records
                .into_iter()
                .filter_map(Record::into_staff)
                .find(|s| s.username == "sam")
                .expect("sam");
            let answer = admin
                .http()
                .patch(format!(
                    "{}{}",
                    server.url(),
                    clinic_protocol::wire::paths::staff_member(sam.id)
                ))
                .bearer_auth(&admin.login.token)
                .json(&serde_json::json!({"disabled": disabled, "version": sam.version}))
                .send()
                .await
                .unwrap();
            assert!(answer.status().is_success(), "{}", answer.status());
        }
    };
    set_disabled(true).await;
    eventually("sam's engine is told the account was disabled", || {
        let s = status.borrow_and_update().account_disabled;
        async move { s }
    })
    .await;
    assert!(!status.borrow().session_expired, "disabled is not expired");

    sam.submit(slot_for(reyes, 9)).await.unwrap();
    assert_eq!(sam.status().borrow().pending, 1);
    sam.shutdown().await;
    drop(sam);
    let refused = Engine::login(config(), "sam", "demo").await.unwrap_err();
    assert_eq!(refused.code(), "account_disabled", "{refused}");

    set_disabled(false).await;
    let again = Engine::login(config(), "sam", "demo").await.unwrap();
    assert_eq!(
        again.status().borrow().pending,
        1,
        "the queued change survived the disabled spell"
    );
    eventually("the outbox replays", || converged(&again, &server, "sam")).await;
    let slots = server
        .snapshot("sam")
        .await
        .records
        .iter()
        .filter(|r| matches!(r, Record::Slot(s) if s.note == "slot at 9"))
        .count();
    assert_eq!(slots, 1, "landed exactly once");
    again.shutdown().await;
}
