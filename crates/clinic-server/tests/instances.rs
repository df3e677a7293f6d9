//! Several server instances on one PostgreSQL database, end to end: writers and readers on
//! both, every feed the same gap-free sequence; two instances judging the same booking at
//! once, one winner; an instance killed (SIGKILL) under its writers, the others retried
//! through the survivor by their mutation ids; the database restarting under running
//! instances.
//!
//! Always on PostgreSQL: a fresh database on the server `CLINIC_TEST_POSTGRES` names, or,
//! when that is unset, a throwaway cluster of the test's own (`PgCluster`), so these tests
//! never pass without testing what they claim. The database-restart test always runs its
//! own cluster: it stops the server under the instances. Real sockets on 127.0.0.1, real
//! WebSockets, the real binary for the crash; waits are polls or reads with a deadline.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{Days, Local, NaiveDate, NaiveTime};
use clinic_protocol::wire::paths;
use clinic_protocol::{
    Booking, BookingAction, BookingStatus, Change, ClientFrame, ErrorCode, Mutation,
    MutationOutcome, NewBooking, NewMessage, Record, ServerFrame, PROTOCOL_VERSION,
};
use clinic_server::Database;
use clinic_test_kit::postgres::PgCluster;
use clinic_test_kit::process::ServerProcess;
use clinic_test_kit::{poll_until, staff_id, Staffer, TestServer, TestStore, DEADLINE};
use futures_util::{SinkExt, StreamExt};
use sqlx::{Connection, PgConnection};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A user's feed as a client keeps it: its cursor, every change it was sent, and, if the
/// socket ends, opened again at its cursor (counted: where no reconnect is expected the
/// test says so).
struct Reader {
    who: Staffer,
    ws: Option<Ws>,
    cursor: u64,
    changes: Vec<Change>,
    reopened: u32,
}

impl Reader {
    async fn open(who: &Staffer, cursor: u64) -> Reader {
        let mut reader = Reader {
            who: who.clone(),
            ws: None,
            cursor,
            changes: Vec::new(),
            reopened: 0,
        };
        reader.ws = Some(
            reader
                .connect()
                .await
                .unwrap_or_else(|e| panic!("a feed on {}: {e}", reader.who.server())),
        );
        reader
    }

    /// Opens a socket at the cursor and reads its welcome.
    async fn connect(&self) -> Result<Ws, String> {
        let url = format!(
            "{}{}",
            self.who.server().replace("http://", "ws://"),
            paths::FEED
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| e.to_string())?;
        let hello = ClientFrame::Hello {
            protocol: PROTOCOL_VERSION,
            token: self.who.login.token.clone(),
            cursor: self.cursor,
        };
        let hello = serde_json::to_string(&hello).expect("json");
        ws.send(Message::text(hello))
            .await
            .map_err(|e| e.to_string())?;
        match read(&mut ws).await {
            Some(ServerFrame::Welcome { .. }) => Ok(ws),
            Some(ServerFrame::Resync { reason, message }) => {
                panic!(
                    "a resync ({reason:?}: {message}) instead of a catch-up at {}",
                    self.cursor
                )
            }
            other => Err(format!("no welcome: {other:?}")),
        }
    }

    /// Reads until the cursor reaches `head`: every change in order, each after the last.
    async fn read_until(&mut self, head: u64) {
        let until = Instant::now() + DEADLINE;
        while self.cursor < head {
            assert!(
                Instant::now() < until,
                "{}'s feed on {} stuck at {} of {head}",
                self.who.login.user.username,
                self.who.server(),
                self.cursor
            );
            let frame = match self.ws.as_mut() {
                Some(ws) => read(ws).await,
                None => None,
            };
            match frame {
                Some(ServerFrame::Changes { changes, upto }) => {
                    for change in changes {
                        assert!(
                            change.seq > self.cursor,
                            "change {} after cursor {}",
                            change.seq,
                            self.cursor
                        );
                        self.cursor = change.seq;
                        self.changes.push(change);
                    }
                    self.cursor = upto;
                }
                Some(ServerFrame::Heartbeat { head }) => self.cursor = self.cursor.max(head),
                Some(other) => panic!("unexpected on a feed: {other:?}"),
                // Ended: opened again at the cursor, as a client does, once the server
                // takes it.
                None => {
                    self.ws = None;
                    self.reopened += 1;
                    let ws = poll_until("the feed to open again", || async {
                        self.connect().await.ok()
                    })
                    .await;
                    self.ws = Some(ws);
                }
            }
        }
    }

    fn seqs(&self) -> Vec<u64> {
        self.changes.iter().map(|c| c.seq).collect()
    }
}

/// The next frame, or `None` once the socket ends; a frame that does not come within the
/// deadline fails the test.
async fn read(ws: &mut Ws) -> Option<ServerFrame> {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a frame in time")?;
        match msg.ok()? {
            Message::Text(t) => return Some(serde_json::from_str(t.as_str()).expect("a frame")),
            Message::Close(_) => return None,
            _ => {}
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

fn t(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("a time")
}

fn today() -> NaiveDate {
    Local::now().date_naive()
}

fn booking(therapist: Option<Uuid>, date: NaiveDate, start: NaiveTime, end: NaiveTime) -> Mutation {
    Mutation::CreateBooking {
        booking: NewBooking {
            id: Uuid::new_v4(),
            client_name: "Two Desks Client".into(),
            client_phone: "555".into(),
            address: "Somewhere 1".into(),
            service: "Massage".into(),
            date,
            start,
            end,
            therapist_id: therapist,
            driver_id: None,
            notes: String::new(),
        },
    }
}

fn applied_seq(outcome: &MutationOutcome) -> u64 {
    match outcome {
        MutationOutcome::Applied { seq, .. } => *seq,
        other => panic!("expected applied, got {other:?}"),
    }
}

fn booking_of(outcome: &MutationOutcome) -> Booking {
    match outcome {
        MutationOutcome::Applied {
            record: Some(Record::Booking(b)),
            ..
        } => b.clone(),
        other => panic!("expected a booking, got {other:?}"),
    }
}

/// `n` mutations made by `make` through `who`, one after another; each acknowledged
/// mutation's id and seq.
async fn write(who: Staffer, n: usize, make: impl Fn(usize) -> Mutation) -> Vec<(Uuid, u64)> {
    let mut acked = Vec::with_capacity(n);
    for i in 0..n {
        let id = Uuid::new_v4();
        acked.push((id, applied_seq(&who.send(id, make(i)).await)));
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_and_readers_on_two_instances_see_one_gap_free_sequence() {
    const EACH: usize = 25;
    let (_cluster, store) = TestStore::postgres_anywhere().await;
    let a = TestServer::start_in(store, |_| {}).await;
    let b = TestServer::beside(&a).await;
    assert!(a.is_postgres() && b.is_postgres());

    let olivia_a = a.login("olivia").await;
    let olivia_b = b.login("olivia").await;
    let maria_a = a.login("maria").await;
    let maria_b = b.login("maria").await;
    let reyes_a = a.login("reyes").await;
    let reyes_b = b.login("reyes").await;
    let reyes = reyes_a.login.user.id;
    let from = olivia_a.snapshot().await.seq;

    // Olivia (an operator) sees every booking and her own messages: her feed is every
    // change. Reyes sees only the messages to him: his feeds are the same filtered list.
    let mut readers = vec![
        Reader::open(&olivia_a, from).await,
        Reader::open(&olivia_b, from).await,
        Reader::open(&reyes_a, from).await,
        Reader::open(&reyes_b, from).await,
    ];

    let day = today() + Days::new(1);
    let writers = vec![
        tokio::spawn(write(olivia_a.clone(), EACH, move |i| {
            message(reyes, format!("through A, {i}"))
        })),
        tokio::spawn(write(olivia_b.clone(), EACH, move |i| {
            message(reyes, format!("through B, {i}"))
        })),
        tokio::spawn(write(maria_a.clone(), EACH, move |_| {
            booking(None, day, t(10, 0), t(11, 0))
        })),
        tokio::spawn(write(maria_b.clone(), EACH, move |_| {
            booking(None, day, t(10, 0), t(11, 0))
        })),
    ];
    let mut acked = Vec::new();
    for (i, writer) in writers.into_iter().enumerate() {
        let mine = writer.await.expect("a writer");
        // Each writer's own acknowledgements come in the order it wrote.
        assert!(
            mine.windows(2).all(|w| w[0].1 < w[1].1),
            "writer {i}: {mine:?}"
        );
        acked.push(mine);
    }
    let messages_to_reyes: HashSet<Uuid> = acked[..2].iter().flatten().map(|a| a.0).collect();
    let by_seq: BTreeMap<u64, Uuid> = acked.iter().flatten().map(|&(id, seq)| (seq, id)).collect();
    let head = *by_seq.keys().last().expect("writes");
    // One seq per acknowledged write, none skipped: the writers were the only ones.
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (from + 1..=head).collect::<Vec<_>>(),
        "the instances' commits interleave into one gap-free log"
    );

    for reader in &mut readers {
        reader.read_until(head).await;
        assert_eq!(reader.reopened, 0, "no feed ended");
    }
    let [olivia_on_a, olivia_on_b, reyes_on_a, reyes_on_b] = &readers[..] else {
        unreachable!("four readers")
    };
    assert_eq!(olivia_on_a.seqs(), (from + 1..=head).collect::<Vec<_>>());
    for change in &olivia_on_a.changes {
        assert_eq!(
            change.mutation_id,
            Some(by_seq[&change.seq]),
            "change {} is the write acknowledged with its seq",
            change.seq
        );
    }
    assert_eq!(
        olivia_on_a.changes, olivia_on_b.changes,
        "both instances send the same changes in the same order"
    );
    assert_eq!(reyes_on_a.changes, reyes_on_b.changes);
    let reyes_got: HashSet<Uuid> = reyes_on_a
        .changes
        .iter()
        .filter_map(|c| c.mutation_id)
        .collect();
    assert_eq!(reyes_got, messages_to_reyes);
    assert_eq!(reyes_on_a.changes.len(), 2 * EACH);

    // Both instances answer a snapshot at the same head with the same records.
    let (snap_a, snap_b) = (olivia_a.snapshot().await, olivia_b.snapshot().await);
    assert_eq!((snap_a.seq, snap_b.seq), (head, head));
    let mut records_a = snap_a.records;
    let mut records_b = snap_b.records;
    let key = |r: &Record| serde_json::to_string(r).expect("json");
    records_a.sort_by_key(key);
    records_b.sort_by_key(key);
    assert_eq!(records_a, records_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_judging_one_booking_at_once_let_exactly_one_win() {
    const ROUNDS: u32 = 6;
    let (_cluster, store) = TestStore::postgres_anywhere().await;
    let a = TestServer::start_in(store, |_| {}).await;
    let b = TestServer::beside(&a).await;
    let olivia = a.login("olivia").await;
    let reyes_a = a.login("reyes").await;
    let reyes_b = b.login("reyes").await;
    let reyes = reyes_a.login.user.id;

    // The same booking accepted through both at once: one accept, the other refused as
    // stale (the winner's commit moved the version the loser judged against).
    let day = today() + Days::new(2);
    for round in 0..ROUNDS {
        let start = t(9 + round, 0);
        let requested = booking_of(
            &olivia
                .mutate(booking(Some(reyes), day, start, t(9 + round, 45)))
                .await,
        );
        let (one, other) = tokio::join!(
            reyes_a.act(&requested, BookingAction::Accept),
            reyes_b.act(&requested, BookingAction::Accept)
        );
        let (won, lost) = match (&one, &other) {
            (MutationOutcome::Applied { .. }, lost) => (booking_of(&one), lost),
            (lost, MutationOutcome::Applied { .. }) => (booking_of(&other), lost),
            _ => panic!("round {round}: neither accept won: {one:?} / {other:?}"),
        };
        assert_eq!(won.status, BookingStatus::Confirmed);
        match lost {
            MutationOutcome::Rejected { code, current, .. } => {
                assert_eq!(*code, ErrorCode::StaleVersion, "round {round}: {lost:?}");
                assert_eq!(current.as_ref(), Some(&Record::Booking(won.clone())));
            }
            MutationOutcome::Applied { .. } => panic!("round {round}: both accepts won"),
        }
    }

    // Two bookings at the same hour, each accepted through another instance at once: the
    // therapist ends up with one, the other is refused as double-booked. Judged against
    // the committed state, not against one instance's memory.
    let day = today() + Days::new(3);
    for round in 0..ROUNDS {
        let (start, end) = (t(9 + round, 0), t(9 + round, 45));
        let first = booking_of(&olivia.mutate(booking(Some(reyes), day, start, end)).await);
        let second = booking_of(&olivia.mutate(booking(Some(reyes), day, start, end)).await);
        let (one, other) = tokio::join!(
            reyes_a.act(&first, BookingAction::Accept),
            reyes_b.act(&second, BookingAction::Accept)
        );
        let outcomes = [&one, &other];
        let won = outcomes
            .iter()
            .filter(|o| matches!(o, MutationOutcome::Applied { .. }))
            .count();
        assert_eq!(won, 1, "round {round}: {one:?} / {other:?}");
        let refused: Vec<ErrorCode> = outcomes
            .iter()
            .filter_map(|o| match o {
                MutationOutcome::Rejected { code, .. } => Some(*code),
                MutationOutcome::Applied { .. } => None,
            })
            .collect();
        assert_eq!(refused, [ErrorCode::DoubleBooked], "round {round}");
    }

    // Both instances agree on the outcome: one confirmed booking per hour on each day.
    for who in [&reyes_a, &reyes_b] {
        let confirmed: Vec<(NaiveDate, NaiveTime)> =
            clinic_test_kit::bookings(&who.snapshot().await)
                .into_iter()
                .filter(|b| b.status == BookingStatus::Confirmed && b.date > today() + Days::new(1))
                .map(|b| (b.date, b.start))
                .collect();
        assert_eq!(confirmed.len(), 2 * ROUNDS as usize, "{confirmed:?}");
        let distinct: HashSet<_> = confirmed.iter().collect();
        assert_eq!(distinct.len(), confirmed.len(), "never two at one time");
    }
}

/// What one writer through the instance that is killed got: the mutations acknowledged,
/// and the one it was sending when the instance died (no answer).
#[derive(Default)]
struct Sent {
    acked: Vec<(Uuid, u64, String)>,
    /// The first acknowledged mutation, to send it again.
    first: Option<(Uuid, u64, Mutation)>,
    unanswered: Option<(Uuid, Mutation, String)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_instance_loses_nothing_acknowledged_and_retries_land_once_on_another() {
    const WRITERS: usize = 4;
    let (_cluster, store) = TestStore::postgres_anywhere().await;
    // The instance that is killed is the real binary, a process of its own.
    let mut doomed = ServerProcess::start_on(store.database().clone()).await;
    let survivor = TestServer::start_in(store.beside(), |_| {}).await;
    let olivia = Staffer::login(&doomed.url(), "olivia").await;
    let before = olivia.snapshot().await;
    let reyes = staff_id(&before, "reyes");
    let from = before.seq;

    let sent: Vec<Arc<Mutex<Sent>>> = (0..WRITERS).map(|_| Arc::default()).collect();
    let writers: Vec<_> = sent
        .iter()
        .enumerate()
        .map(|(w, sent)| {
            let (olivia, sent) = (olivia.clone(), Arc::clone(sent));
            tokio::spawn(async move {
                for i in 0.. {
                    let (id, body) = (Uuid::new_v4(), format!("writer {w}, message {i}"));
                    let mutation = message(reyes, body.clone());
                    match olivia.try_send(id, &mutation).await {
                        Ok(outcome) => {
                            let seq = applied_seq(&outcome);
                            let mut sent = sent.lock().expect("sent");
                            sent.acked.push((id, seq, body));
                            sent.first.get_or_insert((id, seq, mutation));
                        }
                        Err(_) => {
                            sent.lock().expect("sent").unanswered = Some((id, mutation, body));
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    poll_until("writes acknowledged by the instance to be killed", || {
        let count: usize = sent
            .iter()
            .map(|s| s.lock().expect("sent").acked.len())
            .sum();
        async move { (count >= 40).then_some(()) }
    })
    .await;
    doomed.kill().await;
    for writer in writers {
        tokio::time::timeout(DEADLINE, writer)
            .await
            .expect("every writer notices the instance is gone")
            .expect("a writer");
    }

    // Each client fails over to the survivor with its session and sends again what got no
    // answer, under the same mutation id.
    let olivia_there = olivia.via(&survivor.url());
    let mut acked: Vec<(Uuid, u64, String)> = Vec::new();
    let mut retried: Vec<(Uuid, u64, String)> = Vec::new();
    for sent in &sent {
        let (id, mutation, body, first) = {
            let sent = sent.lock().expect("sent");
            acked.extend(sent.acked.iter().cloned());
            let (id, mutation, body) = sent.unanswered.clone().expect("the write cut short");
            (id, mutation, body, sent.first.clone())
        };
        // An acknowledged mutation sent again through the survivor is answered as the
        // first time, and committed no second time.
        if let Some((id, seq, mutation)) = first {
            let again = olivia_there.send(id, mutation).await;
            assert_eq!(applied_seq(&again), seq, "{again:?}");
        }
        let seq = applied_seq(&olivia_there.send(id, mutation).await);
        retried.push((id, seq, body));
    }

    let head = acked
        .iter()
        .chain(&retried)
        .map(|a| a.1)
        .max()
        .expect("writes");
    let mut feed = Reader::open(&olivia_there, from).await;
    feed.read_until(head).await;
    assert_eq!(
        feed.seqs(),
        (from + 1..=head).collect::<Vec<_>>(),
        "the log is gap-free across the crash"
    );
    let mut seen: BTreeMap<Uuid, Vec<u64>> = BTreeMap::new();
    for change in &feed.changes {
        let id = change.mutation_id.expect("every change here is a client's");
        seen.entry(id).or_default().push(change.seq);
    }
    for (id, seq, body) in &acked {
        assert_eq!(
            seen.get(id),
            Some(&vec![*seq]),
            "acknowledged {body:?} once, at {seq}"
        );
    }
    for (id, seq, body) in &retried {
        assert_eq!(
            seen.get(id),
            Some(&vec![*seq]),
            "retried {body:?} once, at {seq}"
        );
    }
    assert_eq!(
        seen.len(),
        acked.len() + retried.len(),
        "nothing but these writes"
    );

    // And the records themselves: each message once.
    let snapshot = olivia_there.snapshot().await;
    let mut bodies: BTreeMap<String, usize> = BTreeMap::new();
    for record in &snapshot.records {
        if let Record::Message(m) = record {
            *bodies.entry(m.body.clone()).or_default() += 1;
        }
    }
    for (_, _, body) in acked.iter().chain(&retried) {
        assert_eq!(
            bodies.get(body),
            Some(&1),
            "{body}: {}",
            doomed.log_tail(20)
        );
    }
}

/// `/readyz`'s status and its body's `code` (`None` when ready).
async fn readyz(http: &reqwest::Client, server: &str) -> Option<(u16, Option<String>)> {
    let res = http.get(format!("{server}/readyz")).send().await.ok()?;
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await.ok()?;
    Some((status, body["code"].as_str().map(str::to_owned)))
}

/// Sends `mutation` under `id` until it is applied (the same id every time, so it lands
/// once however many tries got no answer); its seq.
async fn send_until_applied(who: &Staffer, id: Uuid, mutation: &Mutation) -> u64 {
    poll_until("the write to be applied", || async {
        match who.try_send(id, mutation).await {
            Ok(MutationOutcome::Applied { seq, .. }) => Some(seq),
            _ => None,
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_ride_out_a_database_restart_and_their_feeds_have_no_gap() {
    // Its own cluster whatever the environment: the test stops the database server.
    let mut cluster = PgCluster::start().await;
    let store = TestStore::postgres(&cluster.url()).await;
    let a = TestServer::start_in(store, |_| {}).await;
    let b = TestServer::beside(&a).await;
    let olivia_a = a.login("olivia").await;
    let olivia_b = olivia_a.via(&b.url());
    let reyes = staff_id(&olivia_a.snapshot().await, "reyes");
    let from = olivia_a.snapshot().await.seq;
    let mut on_a = Reader::open(&olivia_a, from).await;
    let mut on_b = Reader::open(&olivia_b, from).await;
    let mut writes: Vec<(Uuid, u64)> = Vec::new();

    let id = Uuid::new_v4();
    let seq = applied_seq(&olivia_a.send(id, message(reyes, "before".into())).await);
    writes.push((id, seq));
    on_a.read_until(seq).await;
    on_b.read_until(seq).await;

    // The database goes away: the instances say they are not ready, and a write gets no
    // acknowledgement.
    cluster.stop().await;
    let http = reqwest::Client::new();
    for server in [&a, &b] {
        let code = poll_until(
            "/readyz to say not ready while the database is down",
            || {
                let (http, url) = (http.clone(), server.url());
                async move {
                    match readyz(&http, &url).await {
                        Some((503, code)) => Some(code),
                        _ => None,
                    }
                }
            },
        )
        .await;
        // A stable code that names the database (which of the two depends on how the
        // probe's connection fails), never a bare 503.
        assert!(
            matches!(
                code.as_deref(),
                Some("database_unwritable" | "database_busy")
            ),
            "{code:?}"
        );
    }
    let during = (
        Uuid::new_v4(),
        message(reyes, "while the database is down".into()),
    );
    let refused = olivia_b.try_send(during.0, &during.1).await;
    assert!(
        !matches!(refused, Ok(MutationOutcome::Applied { .. })),
        "applied without a database: {refused:?}"
    );

    // It comes back: the instances reconnect on their own and serve again.
    cluster.resume().await;
    for server in [&a, &b] {
        poll_until("/readyz to say ready again", || {
            let (http, url) = (http.clone(), server.url());
            async move { (readyz(&http, &url).await == Some((200, None))).then_some(()) }
        })
        .await;
    }
    // The write that got no acknowledgement is sent again under its id: once.
    writes.push((
        during.0,
        send_until_applied(&olivia_b, during.0, &during.1).await,
    ));
    // A restart (stop and start at once) too, then writes through each instance.
    cluster.restart().await;
    for (who, body) in [
        (&olivia_a, "after, through A"),
        (&olivia_b, "after, through B"),
    ] {
        let id = Uuid::new_v4();
        let seq = send_until_applied(who, id, &message(reyes, body.into())).await;
        writes.push((id, seq));
    }
    let head = writes.iter().map(|w| w.1).max().expect("writes");
    on_a.read_until(head).await;
    on_b.read_until(head).await;

    let want: Vec<u64> = (from + 1..=head).collect();
    assert_eq!(
        on_a.seqs(),
        want,
        "A's feed: no gap, {}",
        cluster.log_tail(20)
    );
    assert_eq!(on_b.seqs(), want, "B's feed: no gap");
    assert_eq!(on_a.changes, on_b.changes);
    let ids: Vec<Option<Uuid>> = on_a.changes.iter().map(|c| c.mutation_id).collect();
    let mut written: Vec<(u64, Uuid)> = writes.iter().map(|&(id, seq)| (seq, id)).collect();
    written.sort();
    assert_eq!(
        ids,
        written.iter().map(|w| Some(w.1)).collect::<Vec<_>>(),
        "every write once, in commit order"
    );
}

/// The code a feed ends with, reading past changes and heartbeats; `None` if it closes
/// without one. Fails the test if it has not ended within the deadline.
async fn ended_with(ws: &mut Ws) -> Option<ErrorCode> {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match read(ws).await {
                Some(ServerFrame::Error { code, .. }) => return Some(code),
                Some(ServerFrame::Changes { .. } | ServerFrame::Heartbeat { .. }) => {}
                Some(other) => panic!("unexpected on a feed: {other:?}"),
                None => return None,
            }
        }
    })
    .await
    .expect("the feed ends in time")
}

/// A session revoked through one instance ends its feed on another at once (the notice),
/// and ends it too when the notice never came: here the token is revoked in the database
/// behind both instances' backs, as if the notice had been lost, and the instance finds it
/// on its own (its sweep of the tokens its feeds use).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_session_ends_its_feeds_on_every_instance_notice_or_not() {
    let (_cluster, store) = TestStore::postgres_anywhere().await;
    let a = TestServer::start_in(store.beside(), |_| {}).await;
    let b = TestServer::beside(&a).await;

    // Signed out through A: the feed on B ends with `unauthorized`.
    let olivia = a.login("olivia").await;
    let mut on_b = Reader::open(&olivia.via(&b.url()), 0).await;
    olivia.logout().await;
    let ended = ended_with(on_b.ws.as_mut().expect("open")).await;
    assert_eq!(
        ended,
        Some(ErrorCode::Unauthorized),
        "signed out on A, ended on B"
    );

    // Revoked with no notice at all: B still finds it.
    let sam = a.login("sam").await;
    let mut on_b = Reader::open(&sam.via(&b.url()), 0).await;
    let Database::Postgres(url) = store.database() else {
        unreachable!("a PostgreSQL store");
    };
    let mut db = PgConnection::connect(url).await.expect("the database");
    sqlx::query("UPDATE tokens SET revoked = TRUE WHERE staff_id = $1")
        .bind(sam.login.user.id.to_string())
        .execute(&mut db)
        .await
        .expect("revoke behind the instances' backs");
    let ended = ended_with(on_b.ws.as_mut().expect("open")).await;
    assert_eq!(
        ended,
        Some(ErrorCode::Unauthorized),
        "found revoked by B itself"
    );
}
