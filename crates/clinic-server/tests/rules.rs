//! The rules a clinic expects of its server (issue 13, defect 6), each a regression test of
//! the failure it records: a double-submitted web form made two bookings; the web form had
//! no rate limit; any date was accepted (year 2001, year 9999); availability could be taken
//! from under a confirmed booking; marking a read message read again made a new version
//! and a change-log entry every time. Real server on 127.0.0.1, real SQLite, no sleeps.

use chrono::{Days, Local, NaiveDate, NaiveTime};
use clinic_protocol::rules::DATE_WINDOW_WORDS;
use clinic_protocol::wire::paths;
use clinic_protocol::{
    ApiError, Booking, BookingAction, BookingStatus, ChangeOp, ClientFrame, ErrorCode,
    IntakeRequest, Message, Mutation, MutationOutcome, NewBooking, NewMessage, NewSlot, Record,
    ServerFrame, Slot, PROTOCOL_VERSION,
};
use clinic_test_kit::{bookings, staff_id, Staffer, TestServer, DEADLINE, INTAKE_KEY};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use tokio_tungstenite::tungstenite;
use uuid::Uuid;

fn t(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

fn today() -> NaiveDate {
    Local::now().date_naive()
}

fn web_form(client: &str, date: NaiveDate) -> IntakeRequest {
    IntakeRequest {
        client_name: client.into(),
        client_phone: "555-0100".into(),
        address: "Elm St 9".into(),
        service: "Massage".into(),
        date,
        start: t(16, 0),
        end: t(17, 0),
        notes: String::new(),
    }
}

/// What the web form gets back: the status, whether it is marked as a repeat, the body.
struct Answer {
    status: StatusCode,
    replayed: bool,
    body: String,
}

impl Answer {
    fn booking(&self) -> Booking {
        assert_eq!(self.status, StatusCode::CREATED, "{}", self.body);
        serde_json::from_str(&self.body).expect("a booking")
    }

    fn error(&self) -> ApiError {
        serde_json::from_str(&self.body).expect("an ApiError")
    }
}

/// Posts the web form with the right intake key and, if given, an idempotency key.
async fn post_form(s: &TestServer, form: &IntakeRequest, idempotency_key: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new()
        .post(format!("{}{}", s.url(), paths::INTAKE))
        .header(paths::INTAKE_KEY_HEADER, INTAKE_KEY)
        .json(form);
    if let Some(key) = idempotency_key {
        request = request.header(paths::IDEMPOTENCY_KEY_HEADER, key);
    }
    let res = request.send().await.expect("the server answers");
    Answer {
        status: res.status(),
        replayed: res
            .headers()
            .get(paths::IDEMPOTENT_REPLAYED_HEADER)
            .is_some_and(|v| v == "true"),
        body: res.text().await.unwrap(),
    }
}

fn bookings_of(snapshot: &clinic_protocol::Snapshot, client: &str) -> Vec<Booking> {
    bookings(snapshot)
        .into_iter()
        .filter(|b| b.client_name == client)
        .collect()
}

fn applied(o: &MutationOutcome) -> Option<&Record> {
    match o {
        MutationOutcome::Applied { record, .. } => record.as_ref(),
        other => panic!("expected applied, got {other:?}"),
    }
}

fn rejected(o: &MutationOutcome) -> (ErrorCode, String) {
    match o {
        MutationOutcome::Rejected { code, message, .. } => (*code, message.clone()),
        other => panic!("expected rejected, got {other:?}"),
    }
}

fn booking_of(o: &MutationOutcome) -> Booking {
    match applied(o) {
        Some(Record::Booking(b)) => b.clone(),
        other => panic!("expected a booking, got {other:?}"),
    }
}

// One booking per submission of the web form.

#[tokio::test]
async fn a_double_submitted_web_form_makes_one_booking() {
    // Regression: the second submission made a second booking and a second change.
    let mut s = TestServer::start().await;
    let form = web_form("Double Click", today());
    let head = s.state().head().await;
    let first = post_form(&s, &form, Some("form-7f3e")).await;
    let booking = first.booking();
    assert!(!first.replayed);
    assert_eq!(s.state().head().await, head + 1);

    let again = post_form(&s, &form, Some("form-7f3e")).await;
    assert!(again.replayed, "a repeat says so");
    assert_eq!(
        again.booking(),
        booking,
        "and answers with the first booking"
    );
    assert_eq!(s.state().head().await, head + 1, "no second change");

    // Two at once (a double click): still one.
    let form = web_form("Two At Once", today());
    let (a, b) = tokio::join!(
        post_form(&s, &form, Some("form-2")),
        post_form(&s, &form, Some("form-2"))
    );
    assert_eq!(a.booking().id, b.booking().id);
    assert_eq!(s.state().head().await, head + 2);

    // The key outlives a restart (it is in the database, with the booking).
    s.restart().await;
    let after = post_form(&s, &web_form("Double Click", today()), Some("form-7f3e")).await;
    assert_eq!(after.booking().id, booking.id);
    let snapshot = s.snapshot("olivia").await;
    assert_eq!(bookings_of(&snapshot, "Double Click").len(), 1);
    assert_eq!(bookings_of(&snapshot, "Two At Once").len(), 1);
}

#[tokio::test]
async fn an_idempotency_key_used_for_another_booking_is_a_conflict() {
    let s = TestServer::start().await;
    post_form(&s, &web_form("First", today()), Some("form-1"))
        .await
        .booking();
    let head = s.state().head().await;
    let other = post_form(&s, &web_form("Someone Else", today()), Some("form-1")).await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    assert_eq!(other.error().code, ErrorCode::Conflict);
    assert_eq!(s.state().head().await, head, "nothing is made");

    let bad = post_form(&s, &web_form("Bad Key", today()), Some("two words")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.error().code, ErrorCode::InvalidValue);
    assert!(
        bad.error().message.contains("Idempotency-Key"),
        "{}",
        bad.body
    );

    // Without a key, each request is a booking of its own (as before).
    post_form(&s, &web_form("No Key", today()), None)
        .await
        .booking();
    post_form(&s, &web_form("No Key", today()), None)
        .await
        .booking();
    assert_eq!(s.state().head().await, head + 2);
}

// A rate limit on the web form.

#[tokio::test]
async fn web_bookings_are_rate_limited_per_address() {
    // Regression: the intake endpoint took any number of bookings.
    let s = TestServer::start_with(|c| c.intake_per_minute = 3).await;
    // A wrong intake key is refused before it counts.
    let wrong = reqwest::Client::new()
        .post(format!("{}{}", s.url(), paths::INTAKE))
        .header(paths::INTAKE_KEY_HEADER, "wrong")
        .json(&web_form("Nobody", today()))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    for n in 0..3 {
        post_form(&s, &web_form(&format!("Client {n}"), today()), None)
            .await
            .booking();
    }
    let head = s.state().head().await;
    let fourth = post_form(&s, &web_form("One Too Many", today()), None).await;
    assert_eq!(fourth.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(fourth.error().code, ErrorCode::RateLimited);
    assert!(
        fourth.error().message.contains("wait a minute"),
        "{}",
        fourth.body
    );
    assert_eq!(s.state().head().await, head, "nothing is made");
}

// Dates a clinic books.

#[tokio::test]
async fn dates_outside_the_window_are_refused_with_the_window_in_words() {
    // Regression: bookings and availability in 2001 and 9999 were accepted.
    let s = TestServer::start().await;
    let olivia = s.login("olivia").await;
    let sam = s.login("sam").await;
    let reyes_id = staff_id(&olivia.snapshot().await, "reyes");
    let head = s.state().head().await;

    for date in [
        NaiveDate::from_ymd_opt(2001, 5, 1).unwrap(),
        NaiveDate::from_ymd_opt(9999, 12, 31).unwrap(),
    ] {
        let web = post_form(&s, &web_form("Time Traveller", date), None).await;
        assert_eq!(web.status, StatusCode::BAD_REQUEST, "{date}");
        assert_eq!(
            web.error(),
            ApiError {
                code: ErrorCode::InvalidValue,
                message: format!("A booking can be dated {DATE_WINDOW_WORDS}, not {date}."),
            }
        );
    }
    let three_years = today().checked_add_months(chrono::Months::new(36)).unwrap();
    let mut nb = NewBooking {
        id: Uuid::new_v4(),
        client_name: "Far Ahead".into(),
        client_phone: String::new(),
        address: String::new(),
        service: "Massage".into(),
        date: three_years,
        start: t(10, 0),
        end: t(11, 0),
        therapist_id: None,
        driver_id: None,
        notes: String::new(),
    };
    let (code, message) = rejected(
        &olivia
            .mutate(Mutation::CreateBooking {
                booking: nb.clone(),
            })
            .await,
    );
    assert_eq!(code, ErrorCode::InvalidValue);
    assert!(message.contains(DATE_WINDOW_WORDS), "{message}");
    let slot = Mutation::CreateSlot {
        slot: NewSlot {
            id: Uuid::new_v4(),
            staff_id: reyes_id,
            date: NaiveDate::from_ymd_opt(2001, 5, 1).unwrap(),
            start: t(9, 0),
            end: t(17, 0),
            note: String::new(),
        },
    };
    let (code, message) = rejected(&sam.mutate(slot).await);
    assert_eq!(
        (code, message),
        (
            ErrorCode::InvalidValue,
            format!("Availability can be dated {DATE_WINDOW_WORDS}, not 2001-05-01.")
        )
    );
    assert_eq!(s.state().head().await, head, "nothing refused is committed");

    // Inside the window: yesterday, and a little under two years ahead.
    nb.date = today() + Days::new(700);
    let b = booking_of(&olivia.mutate(Mutation::CreateBooking { booking: nb }).await);
    let reschedule = |date| Mutation::RescheduleBooking {
        id: b.id,
        version: b.version,
        date,
        start: t(9, 0),
        end: t(10, 0),
    };
    let (code, _) = rejected(&olivia.mutate(reschedule(three_years)).await);
    assert_eq!(code, ErrorCode::InvalidValue);
    let moved = booking_of(&olivia.mutate(reschedule(today() - Days::new(1))).await);
    assert_eq!(moved.date, today() - Days::new(1));
    post_form(&s, &web_form("Next Year", today() + Days::new(365)), None)
        .await
        .booking();
}

// Availability under a booking.

/// `therapist`'s slot on `date`, as `who` sees it now.
async fn slot_of(who: &Staffer, therapist: Uuid, date: NaiveDate) -> Slot {
    who.snapshot()
        .await
        .records
        .into_iter()
        .find_map(|r| match r {
            Record::Slot(s) if s.staff_id == therapist && s.date == date => Some(s),
            _ => None,
        })
        .expect("the demo clinic has availability every day this week")
}

#[tokio::test]
async fn availability_cannot_shrink_or_go_away_under_a_confirmed_booking() {
    // Regression: a therapist could delete or shrink the slot under a confirmed booking,
    // which then stayed confirmed outside their availability.
    let s = TestServer::start().await;
    let olivia = s.login("olivia").await;
    let reyes = s.login("reyes").await;
    let sam = s.login("sam").await;
    let me = reyes.login.user.id;
    let day = today() + Days::new(5);
    let book = |start, end| {
        let olivia = olivia.clone();
        async move {
            booking_of(
                &olivia
                    .mutate(Mutation::CreateBooking {
                        booking: NewBooking {
                            id: Uuid::new_v4(),
                            client_name: "Ana Lopez".into(),
                            client_phone: String::new(),
                            address: String::new(),
                            service: "Massage".into(),
                            date: day,
                            start,
                            end,
                            therapist_id: Some(me),
                            driver_id: None,
                            notes: String::new(),
                        },
                    })
                    .await,
            )
        }
    };
    let confirmed = book(t(10, 0), t(11, 0)).await;
    let confirmed = booking_of(&reyes.act(&confirmed, BookingAction::Accept).await);
    assert_eq!(confirmed.status, BookingStatus::Confirmed);
    let waiting = book(t(15, 0), t(16, 0)).await;

    let slot = slot_of(&reyes, me, day).await;
    let change = |slot: &Slot, date, start, end| Mutation::UpdateSlot {
        id: slot.id,
        version: slot.version,
        date,
        start,
        end,
        note: String::new(),
    };
    let head = s.state().head().await;
    let (code, message) = rejected(&reyes.mutate(change(&slot, day, t(12, 0), t(18, 0))).await);
    assert_eq!(code, ErrorCode::OutsideAvailability);
    assert_eq!(
        message,
        format!(
            "Dr. Elena Reyes has a booking at 10:00–11:00 on {day} that is confirmed \
             (Ana Lopez); move or cancel it before changing this availability."
        )
    );
    let moved = change(&slot, day + Days::new(1), t(9, 0), t(18, 0));
    assert_eq!(
        rejected(&reyes.mutate(moved).await).0,
        ErrorCode::OutsideAvailability
    );
    let delete = Mutation::DeleteSlot {
        id: slot.id,
        version: slot.version,
    };
    let removed = sam.mutate(delete).await;
    let (code, message) = rejected(&removed);
    assert_eq!(code, ErrorCode::OutsideAvailability);
    assert!(
        message.contains("before removing this availability"),
        "{message}"
    );
    assert_eq!(s.state().head().await, head, "nothing refused is committed");

    // Shrinking around the confirmed booking is fine: the one still waiting for the
    // therapist does not hold the slot, and can no longer be accepted.
    applied(&reyes.mutate(change(&slot, day, t(9, 0), t(12, 0))).await);
    assert_eq!(
        rejected(&reyes.act(&waiting, BookingAction::Accept).await).0,
        ErrorCode::OutsideAvailability
    );
    // Once the booking is cancelled, the slot may go.
    let cancelled = booking_of(&olivia.act(&confirmed, BookingAction::Cancel).await);
    assert_eq!(cancelled.status, BookingStatus::Cancelled);
    let slot = slot_of(&reyes, me, day).await;
    let gone = reyes
        .mutate(Mutation::DeleteSlot {
            id: slot.id,
            version: slot.version,
        })
        .await;
    assert_eq!(applied(&gone), None);
}

// Nothing to do, nothing logged.

#[tokio::test]
async fn marking_a_read_message_read_again_changes_nothing() {
    // Regression: every mark_read raised the version and added a change-log entry.
    let s = TestServer::start().await;
    let olivia = s.login("olivia").await;
    let maria = s.login("maria").await;
    let sent = olivia
        .mutate(Mutation::SendMessage {
            message: NewMessage {
                id: Uuid::new_v4(),
                recipient_id: maria.login.user.id,
                body: "Can you take Ana at ten?".into(),
            },
        })
        .await;
    let Some(Record::Message(message)) = applied(&sent) else {
        panic!("{sent:?}")
    };
    let mark_read = Mutation::MarkRead { id: message.id };
    let first = maria.mutate(mark_read.clone()).await;
    let Some(Record::Message(read)) = applied(&first).cloned() else {
        panic!("{first:?}")
    };
    assert_eq!(read.version, message.version + 1);
    assert!(read.read_at.is_some());
    let head = s.state().head().await;
    let mut feed = open_feed(&maria, head).await;

    let again_id = Uuid::new_v4();
    let again = maria.send(again_id, mark_read.clone()).await;
    assert_eq!(
        again,
        MutationOutcome::Applied {
            seq: head,
            record: Some(Record::Message(read.clone())),
        },
        "acknowledged, with the message as it is"
    );
    assert_eq!(s.state().head().await, head, "no new change");
    assert_eq!(
        maria.send(again_id, mark_read).await,
        again,
        "a replay answers the same"
    );

    // The feed's next change is the next real one, not the repeat.
    olivia
        .mutate(Mutation::SendMessage {
            message: NewMessage {
                id: Uuid::new_v4(),
                recipient_id: maria.login.user.id,
                body: "Thanks!".into(),
            },
        })
        .await;
    let next = next_change(&mut feed).await;
    assert_eq!(next.seq, head + 1);
    assert_ne!(next.mutation_id, Some(again_id));
    assert!(
        matches!(&next.op, ChangeOp::Upsert { record: Record::Message(Message { body, .. }) } if body == "Thanks!")
    );
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_feed(who: &Staffer, cursor: u64) -> Ws {
    let url = format!(
        "{}{}",
        who.server().replace("http://", "ws://"),
        paths::FEED
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = ClientFrame::Hello {
        protocol: PROTOCOL_VERSION,
        token: who.login.token.clone(),
        cursor,
    };
    ws.send(tungstenite::Message::text(
        serde_json::to_string(&hello).unwrap(),
    ))
    .await
    .unwrap();
    ws
}

/// The first change the feed carries (skipping the welcome and heartbeats).
async fn next_change(ws: &mut Ws) -> clinic_protocol::Change {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a frame in time")
            .expect("the feed is open")
            .unwrap();
        let tungstenite::Message::Text(text) = msg else {
            continue;
        };
        match serde_json::from_str(text.as_str()).expect("a valid frame") {
            ServerFrame::Changes { mut changes, .. } => return changes.remove(0),
            ServerFrame::Welcome { .. } | ServerFrame::Heartbeat { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
