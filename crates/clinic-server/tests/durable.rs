//! Durability, end to end over real sockets and the suite's store: many concurrent writers
//! (their writes committed in groups) all land once, gap-free, each answered with its own
//! outcome; the database file never holds a bearer token as sent; `clinic-server backup`
//! (the real binary) copies a server's database while it is being written, and a server on
//! the copy serves everything up to the backup while clients of the original that are past
//! it are told to resync, never shown a gap.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clinic_protocol::wire::paths;
use clinic_protocol::{
    Change, ClientFrame, Mutation, MutationOutcome, NewMessage, Record, ResyncReason, ServerFrame,
    PROTOCOL_VERSION,
};
use clinic_server::{Config, Embedded};
use clinic_test_kit::{staff_id, Staffer, TestServer, DEADLINE};
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Row};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A feed opened at `cursor`, and the cursor its frames have moved it to.
struct Feed {
    ws: Ws,
    cursor: u64,
}

impl Feed {
    async fn open(server: &str, token: &str, cursor: u64) -> Feed {
        let url = format!("{}{}", server.replace("http://", "ws://"), paths::FEED);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("a feed");
        let hello = ClientFrame::Hello {
            protocol: PROTOCOL_VERSION,
            token: token.to_owned(),
            cursor,
        };
        ws.send(Message::text(serde_json::to_string(&hello).expect("json")))
            .await
            .expect("the hello");
        Feed { ws, cursor }
    }

    async fn frame(&mut self) -> Option<ServerFrame> {
        loop {
            let msg = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("a frame in time")?;
            match msg.ok()? {
                Message::Text(t) => {
                    let frame: ServerFrame =
                        serde_json::from_str(t.as_str()).expect("a valid frame");
                    match &frame {
                        ServerFrame::Changes { upto, .. } => self.cursor = *upto,
                        ServerFrame::Heartbeat { head } => self.cursor = *head,
                        _ => {}
                    }
                    return Some(frame);
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Every change until the cursor reaches `head`; any other frame than changes,
    /// heartbeats and the welcome fails the test.
    async fn changes_until(&mut self, head: u64) -> Vec<Change> {
        let mut out = Vec::new();
        while self.cursor < head {
            match self.frame().await.expect("the feed stays open") {
                ServerFrame::Changes { changes, .. } => out.extend(changes),
                ServerFrame::Heartbeat { .. } | ServerFrame::Welcome { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    /// The first frame after the welcome must be a resync with `reason`.
    async fn expect_resync(&mut self, reason: ResyncReason) {
        match self.frame().await {
            Some(ServerFrame::Resync { reason: r, .. }) if r == reason => {}
            other => panic!("expected a resync ({reason:?}), got {other:?}"),
        }
    }
}

fn message(to: Uuid, body: String) -> Mutation {
    Mutation::SendMessage {
        message: NewMessage {
            id: Uuid::new_v4(),
            recipient_id: to,
            body,
        },
    }
}

fn applied_seq(outcome: &MutationOutcome) -> u64 {
    match outcome {
        MutationOutcome::Applied { seq, .. } => *seq,
        other => panic!("expected applied, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_all_land_once_gap_free_each_answered_with_its_own_outcome() {
    const WRITERS: usize = 24;
    const EACH: usize = 8;
    let s = TestServer::start().await;
    let olivia = s.login("olivia").await;
    let reyes = staff_id(&olivia.snapshot().await, "reyes");
    let from = s.state().head().await;
    let mut feed = Feed::open(&s.url(), &olivia.login.token, from).await;

    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let olivia = olivia.clone();
        tasks.spawn(async move {
            let mut answered = Vec::new();
            for i in 0..EACH {
                let mutation_id = Uuid::new_v4();
                // One refusal among each writer's changes, so that refusals land in the
                // middle of the groups the server commits.
                let (body, mutation) = if i == EACH / 2 {
                    let cancel = Mutation::CancelBooking {
                        id: Uuid::new_v4(),
                        version: 1,
                        reason: "The client called off.".into(),
                    };
                    (None, cancel)
                } else {
                    let body = format!("writer {w} change {i}");
                    (Some(body.clone()), message(reyes, body))
                };
                let outcome = olivia.send(mutation_id, mutation).await;
                answered.push((mutation_id, body, outcome));
            }
            answered
        });
    }
    let mut answers = Vec::new();
    while let Some(done) = tasks.join_next().await {
        answers.extend(done.expect("a writer"));
    }

    let mut seqs = Vec::new();
    let mut by_seq = std::collections::HashMap::new();
    for (mutation_id, body, outcome) in &answers {
        match (body, outcome) {
            (
                Some(body),
                MutationOutcome::Applied {
                    seq,
                    record: Some(Record::Message(m)),
                },
            ) => {
                assert_eq!(&m.body, body, "each writer is answered with its own change");
                seqs.push(*seq);
                by_seq.insert(*seq, *mutation_id);
            }
            (None, MutationOutcome::Rejected { .. }) => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let applied = WRITERS * (EACH - 1);
    let head = from + applied as u64;
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (from + 1..=head).collect::<Vec<_>>(),
        "every write once, no gap"
    );
    assert_eq!(s.state().head().await, head);

    // The feed carried exactly those changes, in seq order, each with its writer's id.
    let changes = feed.changes_until(head).await;
    let got: Vec<(u64, Option<Uuid>)> = changes.iter().map(|c| (c.seq, c.mutation_id)).collect();
    let want: Vec<(u64, Option<Uuid>)> = (from + 1..=head).map(|s| (s, Some(by_seq[&s]))).collect();
    assert_eq!(got, want);

    // And they are on disk: a restarted server has them all.
    let mut s = s;
    s.restart().await;
    assert_eq!(s.state().head().await, head);
}

#[tokio::test]
async fn the_database_file_holds_no_token_as_sent() {
    // About the SQLite file's bytes: on SQLite whatever the suite's store.
    let s = TestServer::start_sqlite().await;
    let olivia = s.login("olivia").await;
    let token = olivia.login.token.clone();
    assert_eq!(olivia.snapshot().await.user.id, olivia.login.user.id);

    let mut db = SqliteConnectOptions::new()
        .filename(s.db_path())
        .connect()
        .await
        .expect("the server's database");
    let rows = sqlx::query("SELECT * FROM tokens")
        .fetch_all(&mut db)
        .await
        .expect("the tokens table");
    assert!(!rows.is_empty());
    let hash = Sha256::digest(token.as_bytes()).to_vec();
    let stored: Vec<Vec<u8>> = rows.iter().map(|r| r.get("token_hash")).collect();
    assert!(stored.contains(&hash), "the token's hash is what is stored");
    // The files themselves (every table, free pages, the log): none holds the token.
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", s.db_path().display());
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "{path} holds the token as sent"
        );
    }

    // Looked up by its hash, the token still signs out.
    assert!(olivia.logout().await.is_success());
    let res = reqwest::Client::new()
        .get(format!("{}{}", s.url(), paths::SNAPSHOT))
        .bearer_auth(&token)
        .send()
        .await
        .expect("an answer");
    assert_eq!(res.status(), reqwest::StatusCode::UNAUTHORIZED);
}

/// Messages olivia sends to reyes until told to stop, each remembered with its seq.
fn keep_writing(
    olivia: Staffer,
    reyes: Uuid,
    acked: Arc<Mutex<Vec<(u64, String)>>>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0u64;
        while !*stop.borrow_and_update() {
            let body = format!("before or after the backup, {n}");
            let outcome = olivia.mutate(message(reyes, body.clone())).await;
            acked
                .lock()
                .expect("the list")
                .push((applied_seq(&outcome), body));
            n += 1;
        }
    })
}

async fn wait_for_acks(acked: &Arc<Mutex<Vec<(u64, String)>>>, at_least: usize) -> u64 {
    clinic_test_kit::poll_until("writes acknowledged", || {
        let list = acked.lock().expect("the list");
        let last = (list.len() >= at_least).then(|| list.iter().map(|a| a.0).max().unwrap_or(0));
        async move { last }
    })
    .await
}

async fn run_backup(db: &std::path::Path, file: &std::path::Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_clinic-server"))
        .arg("backup")
        .arg("--db")
        .arg(db)
        .arg(file)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run clinic-server backup")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writing_restores_everything_up_to_it_and_later_cursors_resync() {
    // `clinic-server backup` copies a SQLite file (PostgreSQL has its own tools).
    let s = TestServer::start_sqlite().await;
    let olivia = s.login("olivia").await;
    let reyes = staff_id(&olivia.snapshot().await, "reyes");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("clinic-backup.db");

    // Writes go on before, during and after the backup.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (stop, stopped) = watch::channel(false);
    let writing = keep_writing(olivia.clone(), reyes, Arc::clone(&acked), stopped);
    let acked_before = wait_for_acks(&acked, 20).await;
    let out = run_backup(s.db_path(), &file).await;
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    let upto: u64 = said
        .split("up to seq ")
        .nth(1)
        .and_then(|rest| rest.trim().trim_end_matches('.').parse().ok())
        .unwrap_or_else(|| panic!("the backup says up to which seq: {said}"));
    let count = acked.lock().expect("the list").len();
    wait_for_acks(&acked, count + 20).await;
    let _ = stop.send(true);
    writing.await.expect("the writer");
    let original_head = s.state().head().await;
    assert!(
        acked_before <= upto,
        "everything acknowledged before the backup is in it"
    );
    assert!(upto < original_head, "writes went on after the backup");

    // A backup never overwrites.
    let size = std::fs::metadata(&file).expect("the backup").len();
    let again = run_backup(s.db_path(), &file).await;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(std::fs::metadata(&file).expect("the backup").len(), size);

    // The original's log up to the backup.
    let mut original = Feed::open(&s.url(), &olivia.login.token, 0).await;
    let expected: Vec<Change> = original
        .changes_until(original_head)
        .await
        .into_iter()
        .filter(|c| c.seq <= upto)
        .collect();
    assert_eq!(
        expected.iter().map(|c| c.seq).collect::<Vec<_>>(),
        (1..=upto).collect::<Vec<_>>()
    );

    // A server started on the copy: every change up to the backup, the same; its head
    // moved past any seq the original may have reached.
    let mut config = Config::new(&file);
    config.heartbeat = Duration::from_millis(200);
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let restored = Embedded::start(any_port, config)
        .await
        .expect("a server on the backup");
    let restored_head = restored.state().head().await;
    assert!(restored_head > original_head);
    // The original's session is in the copy (as its hash): olivia is still signed in.
    let mut from_zero = Feed::open(&restored.url(), &olivia.login.token, 0).await;
    match from_zero.frame().await {
        Some(ServerFrame::Welcome { head, .. }) => assert_eq!(head, restored_head),
        other => panic!("expected the welcome, got {other:?}"),
    }
    assert_eq!(from_zero.changes_until(restored_head).await, expected);
    let olivia_there = Staffer::login(&restored.url(), "olivia").await;
    let snapshot = olivia_there.snapshot().await;
    let bodies: std::collections::HashSet<String> = snapshot
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Message(m) => Some(m.body.clone()),
            _ => None,
        })
        .collect();
    for (seq, body) in acked.lock().expect("the list").iter() {
        assert_eq!(
            bodies.contains(body),
            *seq <= upto,
            "change {seq} is in the copy exactly if it is up to the backup"
        );
    }

    // A client of the original that saw changes after the backup: told to resync, not
    // caught up on a history this server never had...
    let mut ahead = Feed::open(&restored.url(), &olivia.login.token, original_head).await;
    ahead.expect_resync(ResyncReason::CursorAhead).await;
    // ...even once the restored server has made more changes than the original had
    // after the backup, so that its head is past that client's cursor.
    let mut restored_writes = Vec::new();
    for n in 0..=(original_head - upto) {
        let outcome = olivia_there
            .mutate(message(reyes, format!("after the restore, {n}")))
            .await;
        restored_writes.push(applied_seq(&outcome));
    }
    let new_head = restored.state().head().await;
    assert_eq!(
        restored_writes,
        (restored_head + 1..=new_head).collect::<Vec<_>>()
    );
    let mut ahead = Feed::open(&restored.url(), &olivia.login.token, original_head).await;
    ahead.expect_resync(ResyncReason::CursorAhead).await;
    let mut inside = Feed::open(&restored.url(), &olivia.login.token, upto + 1).await;
    inside.expect_resync(ResyncReason::CursorAhead).await;

    // A client exactly at the backup, or behind it, resumes without a gap: what the copy
    // has after its cursor, then the restored server's own changes.
    let mut at_backup = Feed::open(&restored.url(), &olivia.login.token, upto).await;
    let seqs: Vec<u64> = at_backup
        .changes_until(new_head)
        .await
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, restored_writes);
    let behind = upto - 5;
    let mut behind_feed = Feed::open(&restored.url(), &olivia.login.token, behind).await;
    let seqs: Vec<u64> = behind_feed
        .changes_until(new_head)
        .await
        .iter()
        .map(|c| c.seq)
        .collect();
    let mut want: Vec<u64> = (behind + 1..=upto).collect();
    want.extend(&restored_writes);
    assert_eq!(seqs, want);
}
