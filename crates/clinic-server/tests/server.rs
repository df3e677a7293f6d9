//! The server end to end: real sockets on 127.0.0.1:0, the suite's store, a real
//! WebSocket client. The server and its signed-in users come from `clinic-test-kit`; the
//! feed client is here, since only these tests read frames. Waits are bounded by
//! deadlines, never sleeps.

use std::time::Duration;

use chrono::{Local, NaiveTime};
use clinic_protocol::wire::{paths, MAX_REQUEST_BODY_BYTES};
use clinic_protocol::{
    ApiError, Booking, BookingAction, BookingStatus, Change, ChangeOp, ClientFrame, ErrorCode,
    IntakeRequest, Mutation, MutationOutcome, NewBooking, Record, ResyncReason, ServerFrame,
    PROTOCOL_VERSION,
};
use clinic_test_kit::{bookings, staff_id, Staffer, TestServer, DEADLINE, INTAKE_KEY};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// A user's own feed, opened with their token.
trait OpenFeed {
    async fn feed(&self, cursor: u64) -> Feed;
}

impl OpenFeed for Staffer {
    async fn feed(&self, cursor: u64) -> Feed {
        let ws_url = format!(
            "{}{}",
            self.server().replace("http://", "ws://"),
            paths::FEED
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
        let hello = ClientFrame::Hello {
            protocol: PROTOCOL_VERSION,
            token: self.login.token.clone(),
            cursor,
        };
        ws.send(Message::text(serde_json::to_string(&hello).unwrap()))
            .await
            .unwrap();
        Feed {
            ws,
            cursor,
            largest: 0,
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Feed {
    ws: Ws,
    cursor: u64,
    /// The largest text frame received, in bytes.
    largest: usize,
}

impl Feed {
    async fn frame(&mut self) -> Option<ServerFrame> {
        loop {
            let msg = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("a frame in time")?;
            match msg.ok()? {
                Message::Text(t) => {
                    self.largest = self.largest.max(t.len());
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
    let s = TestServer::start().await;
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
    let s = TestServer::start().await;
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
    let s = TestServer::start().await;
    let olivia = s.login("olivia").await;
    let reyes = s.login("reyes").await;
    let head = s.state().head().await;
    let late = olivia
        .mutate(Mutation::CreateBooking {
            booking: new_booking(Some(reyes.login.user.id), (20, 0), (21, 0)),
        })
        .await;
    assert_eq!(rejected(&late), ErrorCode::OutsideAvailability);
    assert_eq!(s.state().head().await, head, "a refusal commits nothing");

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
    let head = s.state().head().await;
    let replay = reyes.send(id, accept.clone()).await;
    assert_eq!(first, replay, "a replay returns the first outcome");
    assert_eq!(s.state().head().await, head, "and changes nothing");
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
    let s = TestServer::start().await;
    let olivia = s.login("olivia").await;
    let sam = s.login("sam").await;
    let start = s.state().head().await;
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
    let head = s.state().head().await;
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
    let s = TestServer::start_with(|c| c.feed_queue = 4).await;
    let olivia = s.login("olivia").await;
    s.state().compact_log(3).await.unwrap();
    let mut old = olivia.feed(1).await;
    assert!(matches!(
        old.frame().await,
        Some(ServerFrame::Resync {
            reason: ResyncReason::CursorTooOld,
            ..
        })
    ));
    let mut ahead = olivia.feed(s.state().head().await + 10).await;
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
        .connect(s.url().trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    let ws_url = format!("{}{}", s.url().replace("http://", "ws://"), paths::FEED);
    let (mut ws, _) =
        tokio_tungstenite::client_async(ws_url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    let hello = ClientFrame::Hello {
        protocol: PROTOCOL_VERSION,
        token: olivia.login.token.clone(),
        cursor: s.state().head().await,
    };
    ws.send(Message::text(serde_json::to_string(&hello).unwrap()))
        .await
        .unwrap();
    let mut slow = Feed {
        ws,
        cursor: 0,
        largest: 0,
    };
    let from = s.state().head().await;
    // Once welcomed, the connection is subscribed to live changes; from here on it reads
    // nothing until the commits are done.
    assert!(matches!(
        slow.frame().await,
        Some(ServerFrame::Welcome { .. })
    ));
    // Bulky changes (4,000-character messages olivia sends, so her feed carries them),
    // more than the server's socket send buffer can hold, so that its writes back up.
    let maria = staff_id(&olivia.snapshot().await, "maria");
    let count = send_buffer_bytes() / 4_000 + 500;
    for _ in 0..count {
        olivia
            .mutate(Mutation::SendMessage {
                message: clinic_protocol::NewMessage {
                    id: Uuid::new_v4(),
                    recipient_id: maria,
                    body: "x".repeat(clinic_protocol::wire::MAX_MESSAGE_TEXT),
                },
            })
            .await;
    }
    let mut delivered = Vec::new();
    let reason = loop {
        match slow.frame().await {
            Some(ServerFrame::Resync { reason, .. }) => break Some(reason),
            Some(ServerFrame::Changes { changes, .. }) => {
                delivered.extend(changes.iter().map(|c| c.seq));
            }
            Some(_) => {}
            None => break None,
        }
    };
    assert_eq!(
        reason,
        Some(ResyncReason::TooSlow),
        "the slow client is told to resync"
    );
    assert_eq!(
        delivered,
        (from + 1..from + 1 + delivered.len() as u64).collect::<Vec<_>>(),
        "and what it did get has no holes"
    );

    // Resuming from before all that catches up on megabytes of changes: exactly those,
    // in frames no larger than clients accept.
    let head = s.state().head().await;
    let mut again = olivia.feed(from).await;
    let seqs: Vec<u64> = again
        .changes_until(head)
        .await
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, (from + 1..=head).collect::<Vec<_>>());
    assert!(
        again.largest <= clinic_protocol::wire::MAX_SERVER_FRAME_BYTES,
        "{} bytes",
        again.largest
    );
}

/// The most a loopback TCP socket may buffer on the sending side (Linux autotuning's max).
fn send_buffer_bytes() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20)
}

#[tokio::test]
async fn therapists_only_get_their_own_and_lose_what_is_reassigned() {
    let s = TestServer::start().await;
    let olivia = s.login("olivia").await;
    let reyes = s.login("reyes").await;
    let kim = s.login("kim").await;
    let start = s.state().head().await;
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
    let head = s.state().head().await;

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
    let s = TestServer::start().await;
    let olivia = s.login("olivia").await;
    let mut feed = olivia.feed(s.state().head().await).await;
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
    let url = format!("{}{}", s.url(), paths::INTAKE);
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
        .header(paths::INTAKE_KEY_HEADER, INTAKE_KEY)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let booking: Booking = res.json().await.unwrap();
    let changes = feed.changes_until(s.state().head().await).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].actor, None);
    assert!(
        matches!(&changes[0].op, ChangeOp::Upsert { record: Record::Booking(b) } if b.id == booking.id)
    );
}

#[tokio::test]
async fn bad_input_gets_its_code_changes_nothing_and_the_server_keeps_serving() {
    let s = TestServer::start().await;
    let olivia = s.login("olivia").await;
    let head = s.state().head().await;
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>, token: Option<&str>| {
        let mut r = http
            .post(format!("{}{}", s.url(), paths::MUTATIONS))
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
    assert_eq!(s.state().head().await, head, "nothing was committed");

    // Hostile feed hellos.
    let ws_url = format!("{}{}", s.url().replace("http://", "ws://"), paths::FEED);
    let hellos = [
        (
            format!(r#"{{"type":"hello","protocol":99,"token":"{token}","cursor":0}}"#),
            ErrorCode::UnsupportedVersion,
        ),
        (
            format!(
                r#"{{"type":"hello","protocol":{PROTOCOL_VERSION},"token":"forged","cursor":0}}"#
            ),
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
        let mut feed = Feed {
            ws,
            cursor: 0,
            largest: 0,
        };
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
    let s = TestServer::start_with(|c| c.login_attempts_per_minute = 3).await;
    let olivia = s.login("olivia").await;
    let http = reqwest::Client::new();
    let url = format!("{}{}", s.url(), paths::LOGIN);
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
    // Only failures count (the successful sign-in above does not): three, then refused.
    assert_eq!(
        codes,
        [
            ErrorCode::Unauthorized,
            ErrorCode::Unauthorized,
            ErrorCode::Unauthorized,
            ErrorCode::RateLimited
        ]
    );
    assert_eq!(olivia.logout().await, 204);
    let res = http
        .get(format!("{}{}", s.url(), paths::SNAPSHOT))
        .bearer_auth(&olivia.login.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn a_restarted_server_continues_the_sequence_with_nothing_lost() {
    let mut s = TestServer::start().await;
    let olivia = s.login("olivia").await;
    let b = applied(
        &olivia
            .mutate(Mutation::CreateBooking {
                booking: new_booking(None, (8, 0), (8, 30)),
            })
            .await,
    );
    let head = s.state().head().await;
    s.restart().await;
    assert_eq!(s.state().head().await, head);
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

// ---------------------------------------------------------------------------------------
// Every booking action against every role, through HTTP.

/// What a user gets when they try an action on a booking in the action's starting state.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Applied,
    Refused(ErrorCode),
}

const F: Want = Want::Refused(ErrorCode::Forbidden);
/// The booking is not theirs and their role does not see every booking.
const N: Want = Want::Refused(ErrorCode::NotFound);
const A: Want = Want::Applied;

/// Users in the order of the table's columns. reyes and dan are the booking's therapist
/// and driver; kim and lee are a therapist and a driver of other bookings.
const USERS: [&str; 7] = ["olivia", "admin", "sam", "reyes", "kim", "dan", "lee"];

fn role_table() -> Vec<(BookingAction, [Want; 7])> {
    use BookingAction as B;
    //                          olivia admin sam reyes kim dan lee
    vec![
        (B::Accept, [F, F, F, A, N, F, N]),
        (B::Decline, [F, F, F, A, N, F, N]),
        (B::ConfirmPickup, [F, F, F, F, N, A, N]),
        (B::StartJourney, [F, F, F, F, N, A, N]),
        (B::MarkArrived, [F, F, F, F, N, A, N]),
        (B::StartSession, [A, A, F, A, N, F, N]),
        (B::Complete, [A, A, F, A, N, F, N]),
        (B::VerifyPayment, [A, A, F, F, N, F, N]),
        (B::Cancel, [A, A, F, F, N, F, N]),
    ]
}

/// The steps (action, by whom) that bring a new booking to where `action` can start.
fn path_to(action: BookingAction) -> Vec<(BookingAction, &'static str)> {
    use BookingAction as B;
    let full = [
        (B::Accept, "reyes"),
        (B::ConfirmPickup, "dan"),
        (B::StartJourney, "dan"),
        (B::MarkArrived, "dan"),
        (B::StartSession, "olivia"),
        (B::Complete, "reyes"),
    ];
    let len = match action {
        B::Accept | B::Decline | B::Cancel => 0,
        B::ConfirmPickup => 1,
        B::StartJourney => 2,
        B::MarkArrived => 3,
        B::StartSession => 4,
        B::Complete => 5,
        B::VerifyPayment => 6,
    };
    full[..len].to_vec()
}

#[tokio::test]
async fn every_booking_action_is_allowed_to_exactly_the_right_roles() {
    let s = TestServer::start().await;
    let mut users = std::collections::HashMap::new();
    for name in USERS {
        users.insert(name, s.login(name).await);
    }
    let olivia = &users["olivia"];
    let snap = olivia.snapshot().await;
    let (reyes_id, dan_id) = (staff_id(&snap, "reyes"), staff_id(&snap, "dan"));
    // Each booking gets its own hour, two days ahead (clear of the demo's bookings), so
    // that accepted ones never overlap.
    let mut hour = 0;
    let mut fresh = |action: BookingAction| {
        let (day, h) = (2 + hour / 8, 9 + hour % 8);
        hour += 1;
        let mut nb = new_booking(Some(reyes_id), (h, 0), (h, 45));
        nb.date = Local::now().date_naive() + chrono::Duration::days(day.into());
        nb.driver_id = Some(dan_id);
        let users = &users;
        async move {
            let mut b = applied(
                &users["olivia"]
                    .mutate(Mutation::CreateBooking { booking: nb })
                    .await,
            );
            for (step, who) in path_to(action) {
                b = applied(&users[who].act(&b, step).await);
            }
            b
        }
    };

    let mut paid = None;
    for (action, wants) in role_table() {
        let b = fresh(action).await;
        let head = s.state().head().await;
        for (name, want) in USERS.iter().zip(wants) {
            let Want::Refused(code) = want else { continue };
            let outcome = users[name].act(&b, action).await;
            let MutationOutcome::Rejected {
                code: got, current, ..
            } = &outcome
            else {
                panic!("{name} may not {action:?}: {outcome:?}")
            };
            assert_eq!(*got, code, "{name} {action:?}");
            assert_eq!(
                current.is_some(),
                code != ErrorCode::NotFound,
                "{name} gets the current booking back only if they may see it"
            );
        }
        assert_eq!(s.state().head().await, head, "refusals commit nothing");
        // Every allowed user, each on a booking of their own in the starting state.
        let mut first = Some(b);
        for (name, want) in USERS.iter().zip(wants) {
            if want != Want::Applied {
                continue;
            }
            let b = match first.take() {
                Some(b) => b,
                None => fresh(action).await,
            };
            let after = applied(&users[name].act(&b, action).await);
            assert_eq!(after.version, b.version + 1, "{name} {action:?}");
            if action == BookingAction::VerifyPayment {
                paid = Some(after);
            }
        }
    }

    // A completed, paid booking: whoever's role would allow the action, the life cycle
    // does not.
    let paid = paid.unwrap();
    for (action, who) in [
        (BookingAction::Accept, "reyes"),
        (BookingAction::Decline, "reyes"),
        (BookingAction::ConfirmPickup, "dan"),
        (BookingAction::StartJourney, "dan"),
        (BookingAction::MarkArrived, "dan"),
        (BookingAction::StartSession, "reyes"),
        (BookingAction::Complete, "olivia"),
        (BookingAction::VerifyPayment, "olivia"),
        (BookingAction::Cancel, "olivia"),
    ] {
        assert_eq!(
            rejected(&users[who].act(&paid, action).await),
            ErrorCode::InvalidTransition,
            "{who} {action:?} on a paid booking"
        );
    }
}

#[tokio::test]
async fn scheduling_and_availability_follow_the_roles() {
    let s = TestServer::start().await;
    let (olivia, sam, reyes, kim, dan) = (
        s.login("olivia").await,
        s.login("sam").await,
        s.login("reyes").await,
        s.login("kim").await,
        s.login("dan").await,
    );
    let snap = sam.snapshot().await;
    let (reyes_id, kim_id, dan_id) = (
        staff_id(&snap, "reyes"),
        staff_id(&snap, "kim"),
        staff_id(&snap, "dan"),
    );
    let create = |therapist| Mutation::CreateBooking {
        booking: new_booking(Some(therapist), (17, 0), (17, 30)),
    };
    // Creating: the schedule managers only.
    assert_eq!(
        rejected(&reyes.mutate(create(reyes_id)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        rejected(&dan.mutate(create(reyes_id)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        rejected(&sam.mutate(create(dan_id)).await),
        ErrorCode::InvalidValue,
        "a driver is no therapist"
    );
    let b = applied(&sam.mutate(create(reyes_id)).await);
    let b = applied(&reyes.act(&b, BookingAction::Accept).await);

    // Rescheduling sends it back to the therapist; only schedule managers may.
    let reschedule = |b: &Booking| Mutation::RescheduleBooking {
        id: b.id,
        version: b.version,
        date: b.date,
        start: t(16, 0),
        end: t(16, 30),
    };
    assert_eq!(
        rejected(&reyes.mutate(reschedule(&b)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        rejected(&kim.mutate(reschedule(&b)).await),
        ErrorCode::NotFound
    );
    let b = applied(&sam.mutate(reschedule(&b)).await);
    assert_eq!(b.status, BookingStatus::Requested);

    // Reassigning likewise; the new therapist must accept.
    let assign = |b: &Booking, therapist| Mutation::AssignBooking {
        id: b.id,
        version: b.version,
        therapist_id: Some(therapist),
        driver_id: None,
    };
    assert_eq!(
        rejected(&reyes.mutate(assign(&b, kim_id)).await),
        ErrorCode::Forbidden
    );
    let b = applied(&olivia.mutate(assign(&b, kim_id)).await);
    assert_eq!(b.therapist_id, Some(kim_id));
    assert_eq!(
        rejected(&reyes.act(&b, BookingAction::Accept).await),
        ErrorCode::NotFound
    );
    applied(&kim.act(&b, BookingAction::Accept).await);

    // Availability: a therapist for themselves, a schedule manager for any therapist.
    let slot = |staff| Mutation::CreateSlot {
        slot: clinic_protocol::NewSlot {
            id: Uuid::new_v4(),
            staff_id: staff,
            date: Local::now().date_naive() + chrono::Duration::days(8),
            start: t(9, 0),
            end: t(12, 0),
            note: String::new(),
        },
    };
    assert_eq!(
        rejected(&reyes.mutate(slot(kim_id)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        rejected(&dan.mutate(slot(dan_id)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        rejected(&olivia.mutate(slot(dan_id)).await),
        ErrorCode::InvalidValue,
        "availability is for therapists"
    );
    applied_any(&sam.mutate(slot(kim_id)).await);
    let mine = match reyes.mutate(slot(reyes_id)).await {
        MutationOutcome::Applied {
            record: Some(Record::Slot(slot)),
            ..
        } => slot,
        other => panic!("{other:?}"),
    };
    let update = |version| Mutation::UpdateSlot {
        id: mine.id,
        version,
        date: mine.date,
        start: t(10, 0),
        end: t(12, 0),
        note: "late start".into(),
    };
    assert_eq!(
        rejected(&kim.mutate(update(mine.version)).await),
        ErrorCode::NotFound
    );
    applied_any(&reyes.mutate(update(mine.version)).await);
    let stale = reyes
        .mutate(Mutation::DeleteSlot {
            id: mine.id,
            version: mine.version,
        })
        .await;
    let MutationOutcome::Rejected {
        code: ErrorCode::StaleVersion,
        current: Some(Record::Slot(now)),
        ..
    } = stale
    else {
        panic!("{stale:?}")
    };
    assert_eq!(now.note, "late start");
    let gone = reyes
        .mutate(Mutation::DeleteSlot {
            id: mine.id,
            version: now.version,
        })
        .await;
    assert!(
        matches!(gone, MutationOutcome::Applied { record: None, .. }),
        "{gone:?}"
    );
}

fn applied_any(o: &MutationOutcome) {
    assert!(matches!(o, MutationOutcome::Applied { .. }), "{o:?}");
}

#[tokio::test]
async fn messages_reach_their_two_participants_and_nobody_else() {
    let s = TestServer::start().await;
    let (olivia, sam, reyes, kim) = (
        s.login("olivia").await,
        s.login("sam").await,
        s.login("reyes").await,
        s.login("kim").await,
    );
    let start = s.state().head().await;
    let mut feeds = Vec::new();
    for who in [&olivia, &sam, &reyes, &kim] {
        feeds.push(who.feed(start).await);
    }
    let send = |to| Mutation::SendMessage {
        message: clinic_protocol::NewMessage {
            id: Uuid::new_v4(),
            recipient_id: to,
            body: "between us".into(),
        },
    };
    assert_eq!(
        rejected(&reyes.mutate(send(reyes.login.user.id)).await),
        ErrorCode::InvalidValue,
        "not to oneself"
    );
    assert_eq!(
        rejected(&reyes.mutate(send(Uuid::new_v4())).await),
        ErrorCode::InvalidValue,
        "not to nobody"
    );
    let MutationOutcome::Applied {
        record: Some(Record::Message(m)),
        ..
    } = reyes.mutate(send(kim.login.user.id)).await
    else {
        panic!()
    };
    let mark = Mutation::MarkRead { id: m.id };
    assert_eq!(
        rejected(&olivia.mutate(mark.clone()).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        rejected(&reyes.mutate(mark.clone()).await),
        ErrorCode::Forbidden
    );
    applied_any(&kim.mutate(mark).await);
    let head = s.state().head().await;

    let mut seen = Vec::new();
    for feed in &mut feeds {
        seen.push(feed.changes_until(head).await);
    }
    assert!(seen[0].is_empty(), "the operator: {:?}", seen[0]);
    assert!(seen[1].is_empty(), "the scheduler: {:?}", seen[1]);
    for (who, changes) in [("reyes", &seen[2]), ("kim", &seen[3])] {
        assert_eq!(
            changes.len(),
            2,
            "{who} sees the message and its read receipt"
        );
        assert!(changes.iter().all(|c| matches!(
            &c.op,
            ChangeOp::Upsert { record: Record::Message(x) } if x.id == m.id
        )));
    }
    for who in [&olivia, &sam] {
        assert!(who
            .snapshot()
            .await
            .records
            .iter()
            .all(|r| !matches!(r, Record::Message(x) if x.id == m.id)));
    }
}

// ---------------------------------------------------------------------------------------
// The feed's edges.

#[tokio::test]
async fn a_bad_frame_after_hello_closes_that_feed_only() {
    let s = TestServer::start().await;
    let olivia = s.login("olivia").await;
    let head = s.state().head().await;
    let mut good = olivia.feed(head).await;
    let mut bad = olivia.feed(head).await;
    for feed in [&mut good, &mut bad] {
        assert!(matches!(
            feed.frame().await,
            Some(ServerFrame::Welcome { .. })
        ));
    }
    bad.ws
        .send(Message::text(format!(
            r#"{{"type":"hello","protocol":{PROTOCOL_VERSION},"token":"x","cursor":0}}"#
        )))
        .await
        .unwrap();
    let mut got = None;
    while let Some(frame) = bad.frame().await {
        if let ServerFrame::Error { code, .. } = frame {
            got = Some(code);
        }
    }
    assert_eq!(got, Some(ErrorCode::Malformed), "a second hello is refused");
    // The other feed goes on.
    let b = applied(
        &olivia
            .mutate(Mutation::CreateBooking {
                booking: new_booking(None, (8, 0), (8, 30)),
            })
            .await,
    );
    let changes = good.changes_until(s.state().head().await).await;
    assert!(matches!(
        &changes[..],
        [Change { op: ChangeOp::Upsert { record: Record::Booking(x) }, .. }] if x.id == b.id
    ));
}

#[tokio::test]
async fn an_idle_feed_gets_heartbeats_and_a_close_frame_at_shutdown() {
    let mut s = TestServer::start().await;
    let olivia = s.login("olivia").await;
    let head = s.state().head().await;
    let mut feed = olivia.feed(head).await;
    assert!(matches!(
        feed.frame().await,
        Some(ServerFrame::Welcome { .. })
    ));
    // Nothing happens: heartbeats (every 200 ms here) carry the head.
    for _ in 0..3 {
        assert_eq!(feed.frame().await, Some(ServerFrame::Heartbeat { head }));
    }
    // The feed is read while the server stops: stopping returns once feeds are closed.
    let close = async {
        loop {
            let msg = tokio::time::timeout(DEADLINE, feed.ws.next())
                .await
                .expect("the feed ends in time");
            match msg {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    };
    let (stopped, closed) = tokio::join!(tokio::time::timeout(DEADLINE, s.stop()), close);
    assert!(
        closed.is_some(),
        "a proper close frame, not a dropped socket"
    );
    stopped.expect("the server stops once feeds are closed");
}

// ---------------------------------------------------------------------------------------
// HTTP edges, intake, demo.

#[tokio::test]
async fn health_unknown_paths_and_a_closed_intake() {
    let s = TestServer::start_with(|c| c.intake_key = None).await;
    let http = reqwest::Client::new();
    let res = http
        .get(format!("{}{}", s.url(), paths::HEALTHZ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ok");
    let res = http
        .get(format!("{}/v1/nothing-here", s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.json::<ApiError>().await.unwrap().code,
        ErrorCode::NotFound
    );

    let head = s.state().head().await;
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
    for key in ["", INTAKE_KEY, "anything"] {
        let res = http
            .post(format!("{}{}", s.url(), paths::INTAKE))
            .header(paths::INTAKE_KEY_HEADER, key)
            .json(&req)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "no key configured: no intake");
        assert_eq!(
            res.json::<ApiError>().await.unwrap().code,
            ErrorCode::BadIntakeKey
        );
    }
    assert_eq!(s.state().head().await, head);
}

#[tokio::test]
async fn intake_bodies_are_checked_like_any_other() {
    let s = TestServer::start().await;
    let head = s.state().head().await;
    let http = reqwest::Client::new();
    let post = |body: String| {
        http.post(format!("{}{}", s.url(), paths::INTAKE))
            .header(paths::INTAKE_KEY_HEADER, INTAKE_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let day = Local::now().date_naive();
    let cases = [
        ("{".to_owned(), 400, ErrorCode::Malformed),
        (
            format!(
                r#"{{"client_name":"A","client_phone":"1","address":"B","service":"S","date":"{day}","start":"10:00:00","end":"11:00:00","therapist_id":null}}"#
            ),
            400,
            ErrorCode::Malformed,
        ),
        (
            format!(
                r#"{{"client_name":"","client_phone":"1","address":"B","service":"S","date":"{day}","start":"10:00:00","end":"11:00:00"}}"#
            ),
            400,
            ErrorCode::InvalidValue,
        ),
        (
            format!(
                r#"{{"client_name":"A","client_phone":"1","address":"B","service":"S","date":"{day}","start":"11:00:00","end":"10:00:00"}}"#
            ),
            400,
            ErrorCode::InvalidValue,
        ),
        (
            "x".repeat(MAX_REQUEST_BODY_BYTES + 1),
            413,
            ErrorCode::TooLarge,
        ),
    ];
    for (body, status, code) in cases {
        let res = post(body).await.unwrap();
        assert_eq!(res.status().as_u16(), status);
        assert_eq!(res.json::<ApiError>().await.unwrap().code, code);
    }
    assert_eq!(s.state().head().await, head, "nothing was committed");
}

#[tokio::test]
async fn the_demo_clinic_is_seeded_once_with_what_it_promises() {
    let s = TestServer::start().await;
    let head = s.state().head().await;
    let logins = clinic_server::demo::seed(s.state()).await.unwrap();
    assert_eq!(
        s.state().head().await,
        head,
        "seeding again changes nothing"
    );
    let maria = logins.iter().find(|l| l.username == "maria").unwrap();
    assert_eq!(maria.display_name, "Maria Santos");
    assert!(maria.roles.contains(&clinic_protocol::Role::Operator));
    assert!(maria.roles.contains(&clinic_protocol::Role::Therapist));
    for l in &logins {
        // Every printed login works.
        let c = s.login(&l.username).await;
        assert_eq!(c.login.user.display_name, l.display_name);
    }
    let all = bookings(&s.login("olivia").await.snapshot().await);
    assert!(all.len() >= 8, "{}", all.len());
    for status in [
        BookingStatus::Requested,
        BookingStatus::Confirmed,
        BookingStatus::EnRoute,
        BookingStatus::Completed,
    ] {
        assert!(
            all.iter().any(|b| b.status == status),
            "a {status:?} booking"
        );
    }
    // Therapists see their own bookings only.
    let reyes = s.login("reyes").await;
    let mine = bookings(&reyes.snapshot().await);
    assert!(!mine.is_empty());
    assert!(mine
        .iter()
        .all(|b| b.therapist_id == Some(reyes.login.user.id)));
}

/// A client that gives up on a request while the server commits it (a timeout, a closed
/// laptop) must not leave the server behind its own log: the write is finished, and every
/// later write still lands and is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_abandoned_by_their_client_mid_commit_leave_the_server_consistent() {
    let s = TestServer::start().await;
    let olivia = s.login("olivia").await;
    let reyes_id = staff_id(&olivia.snapshot().await, "reyes");
    let message = |body: String| Mutation::SendMessage {
        message: clinic_protocol::NewMessage {
            id: Uuid::new_v4(),
            recipient_id: reyes_id,
            body,
        },
    };
    // Each request is dropped a little later than the one before, so that some are
    // dropped while their commit is under way, whatever this machine's speed.
    for i in 0..300u64 {
        let send = olivia.send(Uuid::new_v4(), message(format!("abandoned {i}")));
        let _ = tokio::time::timeout(Duration::from_micros(i * 20), send).await;
    }
    let last = olivia.send(Uuid::new_v4(), message("kept".into())).await;
    applied_any(&last);
    let MutationOutcome::Applied { seq, .. } = last else {
        unreachable!()
    };
    let snap = olivia.snapshot().await;
    assert_eq!(snap.seq, seq, "memory's head is the log's head");
    assert!(snap
        .records
        .iter()
        .any(|r| matches!(r, Record::Message(m) if m.body == "kept")));
}
