//! The server end to end: real sockets on 127.0.0.1:0, real SQLite files, a real
//! WebSocket client. Waits are bounded by deadlines, never sleeps.

use std::time::Duration;

use chrono::{Local, NaiveTime};
use clinic_protocol::wire::{paths, MAX_REQUEST_BODY_BYTES};
use clinic_protocol::{
    ApiError, Booking, BookingAction, BookingStatus, Change, ChangeOp, ClientFrame, ErrorCode,
    IntakeRequest, LoginResponse, Mutation, MutationOutcome, MutationRequest, NewBooking, Record,
    ResyncReason, ServerFrame, Snapshot, PROTOCOL_VERSION,
};
use clinic_server::{AppState, Config};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);
const KEY: &str = "test-key";

struct Server {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    url: String,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start() -> Server {
        Server::start_with(|_| {}).await
    }

    async fn start_with(tune: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("clinic.db");
        let mut config = Config::new(&db);
        config.intake_key = Some(KEY.into());
        config.heartbeat = Duration::from_millis(200);
        tune(&mut config);
        let state = AppState::open(config).await.unwrap();
        clinic_server::demo::seed(&state).await.unwrap();
        let mut server = Server {
            _dir: dir,
            db,
            url: String::new(),
            state: state.clone(),
            stop: None,
            task: None,
        };
        server.serve(state).await;
        server
    }

    async fn serve(&mut self, state: AppState) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.state = state.clone();
        self.task = Some(tokio::spawn(async move {
            clinic_server::serve(listener, state, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        }));
    }

    async fn restart(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
        let mut config = Config::new(&self.db);
        config.intake_key = Some(KEY.into());
        let state = AppState::open(config).await.unwrap();
        self.serve(state).await;
    }

    async fn login(&self, user: &str) -> Client {
        let http = reqwest::Client::new();
        let login: LoginResponse = http
            .post(format!("{}{}", self.url, paths::LOGIN))
            .json(&serde_json::json!({"username": user, "password": "demo"}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        Client {
            http,
            url: self.url.clone(),
            login,
        }
    }
}

struct Client {
    http: reqwest::Client,
    url: String,
    login: LoginResponse,
}

impl Client {
    async fn snapshot(&self) -> Snapshot {
        self.http
            .get(format!("{}{}", self.url, paths::SNAPSHOT))
            .bearer_auth(&self.login.token)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn send(&self, id: Uuid, mutation: Mutation) -> MutationOutcome {
        self.http
            .post(format!("{}{}", self.url, paths::MUTATIONS))
            .bearer_auth(&self.login.token)
            .json(&MutationRequest {
                mutation_id: id,
                mutation,
            })
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn mutate(&self, mutation: Mutation) -> MutationOutcome {
        self.send(Uuid::new_v4(), mutation).await
    }

    async fn act(&self, b: &Booking, action: BookingAction) -> MutationOutcome {
        self.mutate(Mutation::BookingAction {
            id: b.id,
            version: b.version,
            action,
        })
        .await
    }

    async fn booking(&self, id: Uuid) -> Option<Booking> {
        bookings(&self.snapshot().await)
            .into_iter()
            .find(|b| b.id == id)
    }

    async fn feed(&self, cursor: u64) -> Feed {
        let ws_url = format!("{}{}", self.url.replace("http://", "ws://"), paths::FEED);
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
        let hello = ClientFrame::Hello {
            protocol: PROTOCOL_VERSION,
            token: self.login.token.clone(),
            cursor,
        };
        ws.send(Message::text(serde_json::to_string(&hello).unwrap()))
            .await
            .unwrap();
        Feed { ws, cursor }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Feed {
    ws: Ws,
    cursor: u64,
}

impl Feed {
    async fn frame(&mut self) -> Option<ServerFrame> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
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

    /// Changes until the cursor reaches `head`.
    async fn changes_until(&mut self, head: u64) -> Vec<Change> {
        let mut out = Vec::new();
        while self.cursor < head {
            match self.frame().await.expect("feed open") {
                ServerFrame::Changes { changes, .. } => out.extend(changes),
                ServerFrame::Heartbeat { .. } | ServerFrame::Welcome { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }
}

fn bookings(s: &Snapshot) -> Vec<Booking> {
    s.records
        .iter()
        .filter_map(|r| match r {
            Record::Booking(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn staff_id(s: &Snapshot, username: &str) -> Uuid {
    s.records
        .iter()
        .find_map(|r| match r {
            Record::Staff(st) if st.username == username => Some(st.id),
            _ => None,
        })
        .unwrap()
}

fn t(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

fn new_booking(therapist: Option<Uuid>, start: (u32, u32), end: (u32, u32)) -> NewBooking {
    NewBooking {
        id: Uuid::new_v4(),
        client_name: "Test Client".into(),
        client_phone: "555".into(),
        address: "Somewhere 1".into(),
        service: "Massage".into(),
        date: Local::now().date_naive(),
        start: t(start.0, start.1),
        end: t(end.0, end.1),
        therapist_id: therapist,
        driver_id: None,
        notes: String::new(),
    }
}

fn applied(o: &MutationOutcome) -> Booking {
    match o {
        MutationOutcome::Applied {
            record: Some(Record::Booking(b)),
            ..
        } => b.clone(),
        other => panic!("expected applied, got {other:?}"),
    }
}

fn rejected(o: &MutationOutcome) -> ErrorCode {
    match o {
        MutationOutcome::Rejected { code, .. } => *code,
        other => panic!("expected rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn the_life_cycle_runs_by_the_right_roles_and_refuses_the_wrong_ones() {
    let s = Server::start().await;
    let olivia = s.login("olivia").await;
    let (reyes, dan, kim) = (
        s.login("reyes").await,
        s.login("dan").await,
        s.login("kim").await,
    );
    let snap = olivia.snapshot().await;
    let mut nb = new_booking(Some(staff_id(&snap, "reyes")), (17, 0), (17, 45));
    nb.driver_id = Some(staff_id(&snap, "dan"));
    let mut b = applied(&olivia.mutate(Mutation::CreateBooking { booking: nb }).await);
    assert_eq!(b.status, BookingStatus::Requested);
    // Wrong roles first, at each step: nothing changes.
    assert_eq!(
        rejected(&dan.act(&b, BookingAction::Accept).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        rejected(&kim.act(&b, BookingAction::Accept).await),
        ErrorCode::NotFound,
        "kim cannot even see it"
    );
    assert_eq!(
        rejected(&reyes.act(&b, BookingAction::Cancel).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        rejected(&dan.act(&b, BookingAction::StartJourney).await),
        ErrorCode::InvalidTransition
    );
    for (who, action) in [
        (&reyes, BookingAction::Accept),
        (&dan, BookingAction::ConfirmPickup),
        (&dan, BookingAction::StartJourney),
        (&dan, BookingAction::MarkArrived),
        (&olivia, BookingAction::StartSession),
        (&reyes, BookingAction::Complete),
        (&olivia, BookingAction::VerifyPayment),
    ] {
        b = applied(&who.act(&b, action).await);
    }
    assert_eq!(b.status, BookingStatus::Completed);
    assert_eq!(
        olivia.booking(b.id).await.unwrap().payment,
        clinic_protocol::PaymentStatus::Verified
    );
    assert_eq!(
        rejected(&olivia.act(&b, BookingAction::Cancel).await),
        ErrorCode::InvalidTransition
    );
}

#[tokio::test]
async fn two_concurrent_accepts_of_overlapping_bookings_cannot_both_win() {
    let s = Server::start().await;
    let olivia = s.login("olivia").await;
    let reyes = s.login("reyes").await;
    let me = reyes.login.user.id;
    let a = applied(
        &olivia
            .mutate(Mutation::CreateBooking {
                booking: new_booking(Some(me), (12, 0), (13, 0)),
            })
            .await,
    );
    let b = applied(
        &olivia
            .mutate(Mutation::CreateBooking {
                booking: new_booking(Some(me), (12, 30), (13, 30)),
            })
            .await,
    );
    let (x, y) = tokio::join!(
        reyes.act(&a, BookingAction::Accept),
        reyes.act(&b, BookingAction::Accept)
    );
    let outcomes = [x, y];
    let wins = outcomes
        .iter()
        .filter(|o| matches!(o, MutationOutcome::Applied { .. }))
        .count();
    assert_eq!(wins, 1, "{outcomes:?}");
    let loser = outcomes
        .iter()
        .find(|o| matches!(o, MutationOutcome::Rejected { .. }))
        .unwrap();
    let MutationOutcome::Rejected {
        code,
        message,
        current,
    } = loser
    else {
        unreachable!()
    };
    assert_eq!(*code, ErrorCode::DoubleBooked);
    assert!(
        message.contains("Dr. Elena Reyes already has a confirmed booking"),
        "{message}"
    );
    assert!(current.is_some(), "the current record comes back");
}

#[tokio::test]
async fn outside_availability_stale_versions_replays_and_conflicts() {
    let s = Server::start().await;
    let olivia = s.login("olivia").await;
    let reyes = s.login("reyes").await;
    let head = s.state.head().await;
    let late = olivia
        .mutate(Mutation::CreateBooking {
            booking: new_booking(Some(reyes.login.user.id), (20, 0), (21, 0)),
        })
        .await;
    assert_eq!(rejected(&late), ErrorCode::OutsideAvailability);
    assert_eq!(s.state.head().await, head, "a refusal commits nothing");

    let b = applied(
        &olivia
            .mutate(Mutation::CreateBooking {
                booking: new_booking(Some(reyes.login.user.id), (9, 0), (9, 30)),
            })
            .await,
    );
    let id = Uuid::new_v4();
    let accept = Mutation::BookingAction {
        id: b.id,
        version: b.version,
        action: BookingAction::Accept,
    };
    let first = reyes.send(id, accept.clone()).await;
    let head = s.state.head().await;
    let replay = reyes.send(id, accept.clone()).await;
    assert_eq!(first, replay, "a replay returns the first outcome");
    assert_eq!(s.state.head().await, head, "and changes nothing");
    let other = Mutation::BookingAction {
        id: b.id,
        version: b.version,
        action: BookingAction::Decline,
    };
    assert_eq!(rejected(&reyes.send(id, other).await), ErrorCode::Conflict);

    let stale = olivia.act(&b, BookingAction::Cancel).await;
    let MutationOutcome::Rejected {
        code,
        current: Some(Record::Booking(now)),
        ..
    } = stale
    else {
        panic!("{stale:?}")
    };
    assert_eq!(code, ErrorCode::StaleVersion);
    assert_eq!(now.status, BookingStatus::Confirmed);
}

#[tokio::test]
async fn feeds_deliver_the_same_changes_in_the_same_order_and_resume_exactly() {
    let s = Server::start().await;
    let olivia = s.login("olivia").await;
    let sam = s.login("sam").await;
    let start = s.state.head().await;
    let mut a = olivia.feed(start).await;
    let mut b = sam.feed(start).await;
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(
            applied(
                &olivia
                    .mutate(Mutation::CreateBooking {
                        booking: new_booking(None, (8, i * 5), (9, 0)),
                    })
                    .await,
            )
            .id,
        );
    }
    let head = s.state.head().await;
    let seen_a: Vec<u64> = a.changes_until(head).await.iter().map(|c| c.seq).collect();
    let seen_b: Vec<u64> = b.changes_until(head).await.iter().map(|c| c.seq).collect();
    assert_eq!(seen_a, (start + 1..=head).collect::<Vec<_>>());
    assert_eq!(seen_a, seen_b);

    // Resume from the middle: exactly the missed changes.
    let mid = start + 2;
    let mut resumed = olivia.feed(mid).await;
    let again: Vec<u64> = resumed
        .changes_until(head)
        .await
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(again, (mid + 1..=head).collect::<Vec<_>>());
}

#[tokio::test]
async fn old_cursors_and_slow_consumers_are_told_to_resync() {
    let s = Server::start_with(|c| c.feed_queue = 4).await;
    let olivia = s.login("olivia").await;
    s.state.compact_log(3).await.unwrap();
    let mut old = olivia.feed(1).await;
    assert!(matches!(
        old.frame().await,
        Some(ServerFrame::Resync {
            reason: ResyncReason::CursorTooOld,
            ..
        })
    ));
    let mut ahead = olivia.feed(s.state.head().await + 10).await;
    assert!(matches!(
        ahead.frame().await,
        Some(ServerFrame::Resync {
            reason: ResyncReason::CursorAhead,
            ..
        })
    ));

    // A client that does not read (with a tiny receive window) while many bulky changes
    // commit: the server's writes back up and its bounded queue overflows.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(s.url.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    let ws_url = format!("{}{}", s.url.replace("http://", "ws://"), paths::FEED);
    let (mut ws, _) =
        tokio_tungstenite::client_async(ws_url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    let hello = ClientFrame::Hello {
        protocol: PROTOCOL_VERSION,
        token: olivia.login.token.clone(),
        cursor: s.state.head().await,
    };
    ws.send(Message::text(serde_json::to_string(&hello).unwrap()))
        .await
        .unwrap();
    let mut slow = Feed { ws, cursor: 0 };
    // Past the 4 MiB a loopback socket may buffer.
    for i in 0..3_000 {
        let mut nb = new_booking(None, (7, i % 50), (7, 55));
        nb.notes = "x".repeat(1_900);
        olivia.mutate(Mutation::CreateBooking { booking: nb }).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut got_resync = false;
    while tokio::time::Instant::now() < deadline {
        match slow.frame().await {
            Some(ServerFrame::Resync { reason, .. }) => {
                assert_eq!(reason, ResyncReason::TooSlow);
                got_resync = true;
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    assert!(
        got_resync,
        "the slow client was told to resync, not silently skipped"
    );
}

#[tokio::test]
async fn therapists_only_get_their_own_and_lose_what_is_reassigned() {
    let s = Server::start().await;
    let olivia = s.login("olivia").await;
    let reyes = s.login("reyes").await;
    let kim = s.login("kim").await;
    let start = s.state.head().await;
    let mut feed_reyes = reyes.feed(start).await;
    let mut feed_kim = kim.feed(start).await;

    let b = applied(
        &olivia
            .mutate(Mutation::CreateBooking {
                booking: new_booking(Some(reyes.login.user.id), (10, 0), (10, 30)),
            })
            .await,
    );
    // A private message between olivia and kim.
    olivia
        .mutate(Mutation::SendMessage {
            message: clinic_protocol::NewMessage {
                id: Uuid::new_v4(),
                recipient_id: kim.login.user.id,
                body: "private".into(),
            },
        })
        .await;
    let moved = applied(
        &olivia
            .mutate(Mutation::AssignBooking {
                id: b.id,
                version: b.version,
                therapist_id: Some(kim.login.user.id),
                driver_id: None,
            })
            .await,
    );
    let head = s.state.head().await;

    let r = feed_reyes.changes_until(head).await;
    let k = feed_kim.changes_until(head).await;
    assert!(matches!(&r[0].op, ChangeOp::Upsert { record: Record::Booking(x) } if x.id == b.id));
    assert!(
        matches!(&r[1].op, ChangeOp::Remove { id, .. } if *id == b.id),
        "reyes loses the reassigned booking: {r:?}"
    );
    assert_eq!(r.len(), 2, "reyes never sees the message: {r:?}");
    assert!(k.iter().any(|c| matches!(
        &c.op,
        ChangeOp::Upsert {
            record: Record::Message(_)
        }
    )));
    assert!(k.iter().any(
        |c| matches!(&c.op, ChangeOp::Upsert { record: Record::Booking(x) } if x.id == moved.id)
    ));
    assert!(bookings(&reyes.snapshot().await)
        .iter()
        .all(|x| x.id != b.id));
    assert!(reyes
        .snapshot()
        .await
        .records
        .iter()
        .all(|r| !matches!(r, Record::Message(_))));
}

#[tokio::test]
async fn the_web_intake_needs_its_key_and_reaches_operators_without_an_actor() {
    let s = Server::start().await;
    let olivia = s.login("olivia").await;
    let mut feed = olivia.feed(s.state.head().await).await;
    let http = reqwest::Client::new();
    let req = IntakeRequest {
        client_name: "Web Client".into(),
        client_phone: "1".into(),
        address: "A".into(),
        service: "Massage".into(),
        date: Local::now().date_naive(),
        start: t(10, 0),
        end: t(11, 0),
        notes: String::new(),
    };
    let url = format!("{}{}", s.url, paths::INTAKE);
    for key in [None, Some("wrong")] {
        let mut r = http.post(&url).json(&req);
        if let Some(k) = key {
            r = r.header(paths::INTAKE_KEY_HEADER, k);
        }
        let res = r.send().await.unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.json::<ApiError>().await.unwrap().code,
            ErrorCode::BadIntakeKey
        );
    }
    let res = http
        .post(&url)
        .header(paths::INTAKE_KEY_HEADER, KEY)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let booking: Booking = res.json().await.unwrap();
    let changes = feed.changes_until(s.state.head().await).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].actor, None);
    assert!(
        matches!(&changes[0].op, ChangeOp::Upsert { record: Record::Booking(b) } if b.id == booking.id)
    );
}

#[tokio::test]
async fn bad_input_gets_its_code_changes_nothing_and_the_server_keeps_serving() {
    let s = Server::start().await;
    let olivia = s.login("olivia").await;
    let head = s.state.head().await;
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>, token: Option<&str>| {
        let mut r = http
            .post(format!("{}{}", s.url, paths::MUTATIONS))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let token = olivia.login.token.as_str();
    let cases: Vec<(Vec<u8>, Option<&str>, u16, ErrorCode)> = vec![
        (b"{not json".to_vec(), Some(token), 400, ErrorCode::Malformed),
        (br#"{"mutation_id":"00000000-0000-0000-0000-000000000001","mutation":{"op":"drop_tables"}}"#.to_vec(), Some(token), 400, ErrorCode::Malformed),
        (br#"{"mutation_id":"00000000-0000-0000-0000-000000000001","mutation":{"op":"mark_read","id":"00000000-0000-0000-0000-000000000002"},"extra":1}"#.to_vec(), Some(token), 400, ErrorCode::Malformed),
        (vec![b' '; MAX_REQUEST_BODY_BYTES + 10], Some(token), 413, ErrorCode::TooLarge),
        (b"{}".to_vec(), None, 401, ErrorCode::Unauthorized),
        (b"{}".to_vec(), Some("forged"), 401, ErrorCode::Unauthorized),
    ];
    for (body, tok, status, code) in cases {
        let res = post(body, tok).await.unwrap();
        assert_eq!(res.status().as_u16(), status);
        assert_eq!(res.json::<ApiError>().await.unwrap().code, code);
    }
    assert_eq!(s.state.head().await, head, "nothing was committed");

    // Hostile feed hellos.
    let ws_url = format!("{}{}", s.url.replace("http://", "ws://"), paths::FEED);
    let hellos = [
        (
            format!(r#"{{"type":"hello","protocol":99,"token":"{token}","cursor":0}}"#),
            ErrorCode::UnsupportedVersion,
        ),
        (
            r#"{"type":"hello","protocol":1,"token":"forged","cursor":0}"#.to_owned(),
            ErrorCode::Unauthorized,
        ),
        ("garbage".to_owned(), ErrorCode::Malformed),
        (
            r#"{"type":"subscribe_all"}"#.to_owned(),
            ErrorCode::Malformed,
        ),
        ("x".repeat(64 * 1024), ErrorCode::TooLarge),
    ];
    for (hello, want) in hellos {
        let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
        let _ = ws.send(Message::text(hello)).await;
        let mut feed = Feed { ws, cursor: 0 };
        match feed.frame().await {
            Some(ServerFrame::Error { code, .. }) => assert_eq!(code, want),
            other => panic!("expected error {want:?}, got {other:?}"),
        }
    }
    // Everyone else is still served.
    assert_eq!(olivia.snapshot().await.seq, head);
    let mut feed = olivia.feed(head).await;
    assert!(matches!(
        feed.frame().await,
        Some(ServerFrame::Welcome { .. })
    ));
}

#[tokio::test]
async fn logins_are_rate_limited_and_logout_revokes() {
    let s = Server::start_with(|c| c.login_attempts_per_minute = 3).await;
    let olivia = s.login("olivia").await;
    let http = reqwest::Client::new();
    let url = format!("{}{}", s.url, paths::LOGIN);
    let mut codes = Vec::new();
    for _ in 0..4 {
        let res = http
            .post(&url)
            .json(&serde_json::json!({"username":"olivia","password":"wrong"}))
            .send()
            .await
            .unwrap();
        codes.push(res.json::<ApiError>().await.unwrap().code);
    }
    assert_eq!(
        codes,
        [
            ErrorCode::Unauthorized,
            ErrorCode::Unauthorized,
            ErrorCode::RateLimited,
            ErrorCode::RateLimited
        ]
    );
    let res = http
        .post(format!("{}{}", s.url, paths::LOGOUT))
        .bearer_auth(&olivia.login.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = http
        .get(format!("{}{}", s.url, paths::SNAPSHOT))
        .bearer_auth(&olivia.login.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn a_restarted_server_continues_the_sequence_with_nothing_lost() {
    let mut s = Server::start().await;
    let olivia = s.login("olivia").await;
    let b = applied(
        &olivia
            .mutate(Mutation::CreateBooking {
                booking: new_booking(None, (8, 0), (8, 30)),
            })
            .await,
    );
    let head = s.state.head().await;
    s.restart().await;
    assert_eq!(s.state.head().await, head);
    let olivia = s.login("olivia").await;
    assert!(olivia.booking(b.id).await.is_some());
    let next = olivia
        .mutate(Mutation::CreateBooking {
            booking: new_booking(None, (8, 30), (9, 0)),
        })
        .await;
    let MutationOutcome::Applied { seq, .. } = next else {
        panic!()
    };
    assert_eq!(seq, head + 1, "gap-free after a restart");
    let mut feed = olivia.feed(head - 1).await;
    let seqs: Vec<u64> = feed
        .changes_until(head + 1)
        .await
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, [head, head + 1]);
}
