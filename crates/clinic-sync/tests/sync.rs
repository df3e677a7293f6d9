//! The engine against the real server, in-process on 127.0.0.1:0, with real SQLite files.
//! Every wait polls with a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::{Local, NaiveTime};
use clinic_protocol::{
    BookingAction, BookingStatus, ErrorCode, Mutation, NewSlot, Record, Snapshot,
};
use clinic_server::{AppState, Config};
use clinic_sync::{CacheEvent, Engine, EngineConfig, SyncState, View};
use tokio::sync::oneshot;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(20);

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Server {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let state = AppState::open(config(dir.path())).await.unwrap();
        clinic_server::demo::seed(&state).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut s = Server {
            dir,
            addr,
            stop: None,
            task: None,
        };
        s.serve(listener, state);
        s
    }

    fn serve(&mut self, listener: tokio::net::TcpListener, state: AppState) {
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(async move {
            clinic_server::serve(listener, state, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        }));
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }

    async fn restart(&mut self) {
        let state = AppState::open(config(self.dir.path())).await.unwrap();
        let deadline = Instant::now() + DEADLINE;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "rebind: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        self.serve(listener, state);
    }

    async fn snapshot(&self, user: &str) -> Snapshot {
        let http = reqwest::Client::new();
        let login: clinic_protocol::LoginResponse = http
            .post(format!("{}/v1/login", self.url()))
            .json(&serde_json::json!({"username": user, "password": "demo"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        http.get(format!("{}/v1/snapshot", self.url()))
            .bearer_auth(login.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::new(dir.join("clinic.db"));
    c.heartbeat = Duration::from_millis(200);
    c
}

fn engine_config(server: &Server, data: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(&server.url(), data);
    c.dead_after = Duration::from_secs(2);
    c.max_backoff = Duration::from_millis(300);
    c
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

async fn converged(engine: &Engine, server: &Server, user: &str) -> bool {
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
    let server = Server::start().await;
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
            if let clinic_sync::Origin::Server { mutation_id, actor } = &c.origin {
                saw |= *mutation_id == Some(mid) && *actor == Some(reyes.user().id);
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
    let mut server = Server::start().await;
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
    let mut server = Server::start().await;
    let data = tempfile::tempdir().unwrap();
    let reyes = server.snapshot("reyes").await.user.id;
    let sam = Engine::login(engine_config(&server, data.path()), "sam", "demo")
        .await
        .unwrap();
    server.stop().await;
    for hour in 14..17 {
        sam.submit(slot_for(reyes, hour)).await.unwrap();
    }
    sam.shutdown();
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

/// A loopback TCP proxy that can be cut: one client offline while the server carries on.
async fn proxy(upstream: SocketAddr) -> (String, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (online, _) = tokio::sync::watch::channel(true);
    let state = online.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if !*state.borrow() {
                continue;
            }
            let mut cut = state.subscribe();
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = cut.wait_for(|online| !online) => {}
                }
            });
        }
    });
    (url, online)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loser_of_a_conflict_is_rolled_back_and_told() {
    let server = Server::start().await;
    let (url, link) = proxy(server.addr).await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let olivia = Engine::login(engine_config(&server, d1.path()), "olivia", "demo")
        .await
        .unwrap();
    let mut maria_config = EngineConfig::new(&url, d2.path());
    maria_config.dead_after = Duration::from_secs(2);
    maria_config.max_backoff = Duration::from_millis(300);
    let maria = Engine::login(maria_config, "maria", "demo").await.unwrap();
    let b = requested_of(&maria.view_at().await.unwrap(), maria.user().id);
    eventually("olivia has it", || async {
        booking(&olivia.view_at().await.unwrap(), b.id).is_some()
    })
    .await;

    // Maria loses the network; Olivia cancels; Maria accepts the old version offline.
    let mut status = maria.status();
    link.send_replace(false);
    eventually("maria offline", || {
        let s = status.borrow_and_update().state;
        async move { s == SyncState::Offline }
    })
    .await;
    olivia
        .submit(Mutation::BookingAction {
            id: b.id,
            version: b.version,
            action: BookingAction::Cancel,
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

    link.send_replace(true);
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
async fn hostile_frames_cause_a_resync_not_a_corrupt_cache() {
    let server = Server::start().await;
    // A fake feed in front of the real server: HTTP is proxied to it, the WebSocket is ours.
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_addr = fake.local_addr().unwrap();
    let real = server.url();
    let frames = [
        "garbage".to_owned(),
        r#"{"type":"welcome","protocol":7,"user_id":"00000000-0000-0000-0000-000000000000","head":1}"#.to_owned(),
    ];
    let upstream = real.clone();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = fake.accept().await.unwrap();
            let mut peek = [0u8; 512];
            let n = stream.peek(&mut peek).await.unwrap();
            let head = String::from_utf8_lossy(&peek[..n]).to_string();
            if head.contains("/v1/feed") {
                let i = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let frame = frames[i % frames.len()].clone();
                tokio::spawn(async move {
                    use futures_util::{SinkExt, StreamExt};
                    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                    let _ = ws.next().await;
                    let _ = ws
                        .send(tokio_tungstenite::tungstenite::Message::text(frame))
                        .await;
                    let _ = ws.next().await;
                });
            } else {
                let up = upstream.trim_start_matches("http://").to_owned();
                tokio::spawn(async move {
                    let mut client = stream;
                    let mut server = tokio::net::TcpStream::connect(up).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        }
    });
    let data = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(&format!("http://{fake_addr}"), data.path());
    config.max_backoff = Duration::from_millis(100);
    let engine = Engine::login(config, "olivia", "demo").await.unwrap();
    let before = records(&engine.view_at().await.unwrap());
    let mut status = engine.status();
    eventually("several hostile feeds served", || {
        let n = served.load(std::sync::atomic::Ordering::SeqCst);
        async move { n >= 4 }
    })
    .await;
    eventually("an error is reported", || {
        let e = status.borrow_and_update().last_error.clone();
        async move { e.is_some() }
    })
    .await;
    assert_ne!(status.borrow().state, SyncState::Online);
    assert_eq!(
        records(&engine.view_at().await.unwrap()),
        before,
        "the cache is intact"
    );
    assert_eq!(
        records(&engine.view_at().await.unwrap()),
        snapshot_records(&server.snapshot("olivia").await)
    );
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

async fn run_model(steps: Vec<Step>) {
    let server = Server::start().await;
    let dirs: Vec<tempfile::TempDir> = USERS.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let mut links = Vec::new();
    let mut configs = Vec::new();
    let mut engines = Vec::new();
    for (i, user) in USERS.iter().enumerate() {
        let (url, link) = proxy(server.addr).await;
        let mut c = EngineConfig::new(&url, dirs[i].path());
        c.dead_after = Duration::from_secs(2);
        c.max_backoff = Duration::from_millis(200);
        engines.push(Engine::login(c.clone(), user, "demo").await.unwrap());
        configs.push(c);
        links.push(link);
    }
    let ids: Vec<Uuid> = engines.iter().map(|e| e.user().id).collect();
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
                links[u].send_replace(up);
            }
            Step::Restart { u } => {
                engines[u].shutdown();
                engines[u] = Engine::resume(configs[u].clone()).await.unwrap();
            }
        }
    }
    for link in &links {
        link.send_replace(true);
    }
    for (i, user) in USERS.iter().enumerate() {
        eventually(&format!("{user} converges"), || {
            converged(&engines[i], &server, user)
        })
        .await;
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
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 6, failure_persistence: None, ..Default::default() })]
    #[test]
    fn random_users_changes_partitions_and_restarts_converge(steps in proptest::collection::vec(step(), 5..25)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(run_model(steps));
    }
}
