//! Every role's whole job (issue 11), as the server judges it: a verified payment records
//! its amount, method, reference, who and when; a cancellation needs a reason, kept with who
//! and when; a driver goes on and off duty, themselves only. Bad input is refused with a
//! stable code and changes nothing. Real server on 127.0.0.1 (the demo clinic), real
//! SQLite, real HTTP; no sleeps.

use chrono::{TimeDelta, Utc};
use clinic_protocol::wire::{paths, StaffPatch, MAX_PAYMENT_CENTS};
use clinic_protocol::{
    Booking, BookingAction, BookingStatus, ChangeOp, ClientFrame, ErrorCode, Mutation,
    MutationOutcome, PaymentMethod, PaymentStatus, Record, Role, ServerFrame, Staff,
    PROTOCOL_VERSION,
};
use clinic_test_kit::{bookings, Staffer, TestServer, DEADLINE};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `user`'s feed from `cursor`, hello sent.
async fn feed(user: &Staffer, cursor: u64) -> Ws {
    let url = format!(
        "{}{}",
        user.server().replace("http://", "ws://"),
        paths::FEED
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the feed opens");
    let hello = ClientFrame::Hello {
        protocol: PROTOCOL_VERSION,
        token: user.login.token.clone(),
        cursor,
    };
    ws.send(WsMessage::text(serde_json::to_string(&hello).unwrap()))
        .await
        .expect("the hello goes out");
    ws
}

/// The next frame within the deadline; `None` once the feed has closed.
async fn frame(ws: &mut Ws) -> Option<ServerFrame> {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a frame in time");
        match msg {
            None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return None,
            Some(Ok(WsMessage::Text(text))) => {
                return Some(serde_json::from_str(text.as_str()).expect("a valid frame"))
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Reads the feed until it carries `id`'s account; that account. Panics if the feed ends
/// (a resync, an error) first.
async fn account_on(ws: &mut Ws, id: uuid::Uuid) -> Staff {
    loop {
        match frame(ws).await {
            Some(ServerFrame::Changes { changes, .. }) => {
                let found = changes.into_iter().find_map(|c| match c.op {
                    ChangeOp::Upsert {
                        record: Record::Staff(s),
                    } if s.id == id => Some(s),
                    _ => None,
                });
                if let Some(staff) = found {
                    return staff;
                }
            }
            Some(ServerFrame::Heartbeat { .. } | ServerFrame::Welcome { .. }) => {}
            other => panic!("the feed ended before the account changed: {other:?}"),
        }
    }
}

/// The demo booking of `client`, as `user` sees it now.
async fn booking_of(user: &Staffer, client: &str) -> Booking {
    bookings(&user.snapshot().await)
        .into_iter()
        .find(|b| b.client_name == client)
        .unwrap_or_else(|| {
            panic!(
                "{client}'s booking in {}'s snapshot",
                user.login.user.username
            )
        })
}

/// The staff record of `username`, as `user` sees it now.
async fn staff_of(user: &Staffer, username: &str) -> Staff {
    user.snapshot()
        .await
        .records
        .into_iter()
        .filter_map(Record::into_staff)
        .find(|s| s.username == username)
        .unwrap_or_else(|| panic!("{username} in the staff directory"))
}

/// The code of a refusal; panics on anything else.
fn refused(outcome: &MutationOutcome) -> ErrorCode {
    match outcome {
        MutationOutcome::Rejected { code, .. } => *code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The record an applied change answers with, and its seq.
fn applied(outcome: &MutationOutcome) -> (u64, Record) {
    match outcome {
        MutationOutcome::Applied {
            seq,
            record: Some(record),
        } => (*seq, record.clone()),
        other => panic!("expected applied, got {other:?}"),
    }
}

#[tokio::test]
async fn a_verified_payment_keeps_amount_method_reference_who_and_when() {
    let server = TestServer::start().await;
    let olivia = server.login("olivia").await;
    let reyes = server.login("reyes").await;
    let dan = server.login("dan").await;
    // Ben's session is done and waits for payment (the demo clinic).
    let ben = booking_of(&olivia, "Ben Carter").await;
    assert_eq!(
        (ben.status, ben.payment),
        (BookingStatus::Completed, PaymentStatus::Unpaid)
    );
    let head = server.state().head().await;

    // Bad amounts and references: invalid_value; the wrong role: forbidden.
    for (amount, reference) in [
        (0, ""),
        (-2_500, ""),
        (MAX_PAYMENT_CENTS + 1, ""),
        (8_000, "two\nlines"),
    ] {
        let answer = olivia
            .verify_payment(&ben, amount, PaymentMethod::Cash, reference)
            .await;
        assert_eq!(
            refused(&answer),
            ErrorCode::InvalidValue,
            "{amount} {reference:?}"
        );
    }
    let long = "r".repeat(201);
    assert_eq!(
        refused(
            &olivia
                .verify_payment(&ben, 8_000, PaymentMethod::Card, &long)
                .await
        ),
        ErrorCode::InvalidValue
    );
    assert_eq!(
        refused(
            &reyes
                .verify_payment(&ben, 8_000, PaymentMethod::Card, "")
                .await
        ),
        ErrorCode::Forbidden,
        "the therapist does not take payments"
    );
    // The bare step, as an older client would send it: refused, it says too little.
    let bare = olivia
        .mutate(Mutation::BookingAction {
            id: ben.id,
            version: ben.version,
            action: BookingAction::VerifyPayment,
        })
        .await;
    assert_eq!(refused(&bare), ErrorCode::InvalidValue);
    assert_eq!(
        server.state().head().await,
        head,
        "no refusal changed anything"
    );

    let before = Utc::now();
    let (seq, record) = applied(
        &olivia
            .verify_payment(&ben, 12_050, PaymentMethod::Insurance, " Claim 77 ")
            .await,
    );
    assert_eq!(seq, head + 1);
    let Record::Booking(paid) = record else {
        panic!("a booking")
    };
    assert_eq!(paid.payment, PaymentStatus::Verified);
    let detail = paid.payment_detail.clone().expect("the payment's details");
    assert_eq!(detail.amount_cents, 12_050);
    assert_eq!(detail.method, PaymentMethod::Insurance);
    assert_eq!(detail.reference, "Claim 77");
    assert_eq!(
        detail.verified_by, olivia.login.user.id,
        "stamped by the server"
    );
    assert!(
        detail.verified_at >= before - TimeDelta::seconds(1)
            && detail.verified_at <= Utc::now() + TimeDelta::seconds(1),
        "stamped now: {}",
        detail.verified_at
    );
    // Everyone who sees the booking sees the payment; it survives a second try.
    assert_eq!(booking_of(&reyes, "Ben Carter").await, paid);
    assert_eq!(
        refused(
            &olivia
                .verify_payment(&paid, 100, PaymentMethod::Cash, "")
                .await
        ),
        ErrorCode::InvalidTransition,
        "paid once"
    );
    // The driver's view of it, too (Lee drove Ben); Dan never sees it.
    let lee = server.login("lee").await;
    assert_eq!(
        booking_of(&lee, "Ben Carter").await.payment_detail,
        Some(detail)
    );
    assert!(bookings(&dan.snapshot().await)
        .iter()
        .all(|b| b.client_name != "Ben Carter"));

    // The demo clinic shows a couple of verified payments.
    let paid_in_demo = bookings(&olivia.snapshot().await)
        .into_iter()
        .filter(|b| b.payment_detail.is_some())
        .count();
    assert!(
        paid_in_demo >= 3,
        "the demo's two and Ben's: {paid_in_demo}"
    );
}

#[tokio::test]
async fn a_cancellation_needs_a_reason_and_everyone_who_sees_the_booking_reads_it() {
    let server = TestServer::start().await;
    let olivia = server.login("olivia").await;
    let kim = server.login("kim").await;
    let lee = server.login("lee").await;
    // Emma is confirmed, with Dr. Kim and Lee.
    let emma = booking_of(&olivia, "Emma Rossi").await;
    assert_eq!(emma.status, BookingStatus::Confirmed);
    let head = server.state().head().await;

    for reason in ["", "   ", "one\nand two", &"x".repeat(201)] {
        assert_eq!(
            refused(&olivia.cancel(&emma, reason).await),
            ErrorCode::InvalidValue,
            "{reason:?}"
        );
    }
    assert_eq!(
        refused(&lee.cancel(&emma, "I cannot drive today.").await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(&kim.cancel(&emma, "Not me.").await),
        ErrorCode::Forbidden
    );
    let bare = olivia
        .mutate(Mutation::BookingAction {
            id: emma.id,
            version: emma.version,
            action: BookingAction::Cancel,
        })
        .await;
    assert_eq!(refused(&bare), ErrorCode::InvalidValue);
    assert_eq!(
        server.state().head().await,
        head,
        "no refusal changed anything"
    );

    let (_, record) = applied(&olivia.cancel(&emma, "  The client is ill. ").await);
    let Record::Booking(gone) = record else {
        panic!("a booking")
    };
    assert_eq!(gone.status, BookingStatus::Cancelled);
    let why = gone.cancellation.clone().expect("the cancellation");
    assert_eq!(why.reason, "The client is ill.");
    assert_eq!(why.by, olivia.login.user.id);
    for who in [&kim, &lee] {
        assert_eq!(
            booking_of(who, "Emma Rossi").await.cancellation.as_ref(),
            Some(&why),
            "{} reads why",
            who.login.user.username
        );
    }
    assert_eq!(
        refused(&olivia.cancel(&gone, "Again.").await),
        ErrorCode::InvalidTransition
    );
}

#[tokio::test]
async fn a_driver_goes_on_and_off_duty_themselves_only() {
    let server = TestServer::start().await;
    let olivia = server.login("olivia").await;
    let lee = server.login("lee").await;
    let dan = server.login("dan").await;
    let admin = server.login("admin").await;
    // The demo clinic has Dan on duty, Lee off.
    assert!(staff_of(&olivia, "dan").await.on_duty);
    assert!(!staff_of(&olivia, "lee").await.on_duty);

    let head = server.state().head().await;
    // Someone else's duty, or anyone's who is not a driver: forbidden.
    let dans = Mutation::SetOnDuty {
        staff_id: dan.login.user.id,
        on_duty: false,
    };
    assert_eq!(
        refused(&lee.mutate(dans.clone()).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(&olivia.mutate(dans.clone()).await),
        ErrorCode::Forbidden
    );
    assert_eq!(refused(&admin.mutate(dans).await), ErrorCode::Forbidden);
    assert_eq!(
        refused(&olivia.set_on_duty(true).await),
        ErrorCode::Forbidden
    );
    assert_eq!(server.state().head().await, head);

    let (seq, record) = applied(&lee.set_on_duty(true).await);
    assert_eq!(seq, head + 1);
    let Record::Staff(on) = record else {
        panic!("a staff record")
    };
    assert!(on.on_duty);
    // Everyone's directory has it (the operators' Drivers panel reads it).
    assert_eq!(staff_of(&olivia, "lee").await, on);
    // Already on duty: acknowledged, nothing new.
    let again = lee.set_on_duty(true).await;
    assert_eq!(applied(&again), (head + 1, Record::Staff(on.clone())));
    assert_eq!(server.state().head().await, head + 1);

    // Off again; the account stays as it was otherwise, and still signs in.
    let (_, Record::Staff(off)) = applied(&lee.set_on_duty(false).await) else {
        panic!("a staff record")
    };
    assert_eq!(
        Staff {
            on_duty: true,
            version: on.version,
            ..off.clone()
        },
        on
    );
    assert!(!off.on_duty);
    // Kept in the database, not only in memory: a restart still has it.
    let mut server = server;
    server.restart().await;
    let olivia = server.login("olivia").await;
    assert_eq!(staff_of(&olivia, "lee").await, off);
    assert!(staff_of(&olivia, "dan").await.on_duty);
    server.login("lee").await;
}

/// `admin` changes `who`'s account (`PATCH /v1/staff/{id}`); the account as it is now.
async fn edit_account(admin: &Staffer, who: &Staff, patch: &StaffPatch) -> Staff {
    let response = admin
        .http()
        .patch(format!("{}{}", admin.server(), paths::staff_member(who.id)))
        .bearer_auth(&admin.login.token)
        .json(patch)
        .send()
        .await
        .expect("the server answers");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("the account")
}

#[tokio::test]
async fn a_driver_disabled_or_no_longer_a_driver_is_off_duty() {
    let server = TestServer::start().await;
    let admin = server.login("admin").await;
    let olivia = server.login("olivia").await;
    let lee = server.login("lee").await;
    // The demo clinic has Dan on duty; Lee goes on duty too.
    let dan = staff_of(&olivia, "dan").await;
    assert!(dan.on_duty);
    applied(&lee.set_on_duty(true).await);
    let lee = staff_of(&olivia, "lee").await;
    assert!(lee.on_duty);

    // Dan is no longer a driver: off duty with it, in one new version.
    let edit = |roles: Option<Vec<Role>>, disabled: Option<bool>, version: i64| StaffPatch {
        display_name: None,
        roles,
        disabled,
        version,
    };
    let dispatcher = edit_account(
        &admin,
        &dan,
        &edit(Some(vec![Role::Operator]), None, dan.version),
    )
    .await;
    assert_eq!(dispatcher.roles, [Role::Operator]);
    assert!(!dispatcher.on_duty, "off duty once not a driver");
    assert_eq!(dispatcher.version, dan.version + 1);
    assert_eq!(staff_of(&olivia, "dan").await, dispatcher);
    // A driver again: still off duty until he goes on duty himself.
    let driver_again = edit_account(
        &admin,
        &dispatcher,
        &edit(Some(vec![Role::Driver]), None, dispatcher.version),
    )
    .await;
    assert!(!driver_again.on_duty);

    // Lee's account disabled: off duty with it; enabled again, still off.
    let disabled = edit_account(&admin, &lee, &edit(None, Some(true), lee.version)).await;
    assert!(disabled.disabled && !disabled.on_duty);
    assert_eq!(staff_of(&olivia, "lee").await, disabled);
    let enabled = edit_account(
        &admin,
        &disabled,
        &edit(None, Some(false), disabled.version),
    )
    .await;
    assert!(!enabled.disabled && !enabled.on_duty);

    // Kept in the database: a restart still has both off duty.
    let mut server = server;
    server.restart().await;
    let olivia = server.login("olivia").await;
    assert!(!staff_of(&olivia, "dan").await.on_duty);
    assert!(!staff_of(&olivia, "lee").await.on_duty);
}

#[tokio::test]
async fn an_app_of_the_protocol_before_these_records_is_told_to_update() {
    // Records refuse unknown fields: an app of protocol 1 cannot read a payment's details, a
    // cancellation or a driver's duty, so its feed is refused with a stable code and a
    // sentence saying what to do, not fed records it would choke on.
    assert_eq!(PROTOCOL_VERSION, 2);
    let server = TestServer::start().await;
    let olivia = server.login("olivia").await;
    let url = format!(
        "{}{}",
        olivia.server().replace("http://", "ws://"),
        paths::FEED
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the feed opens");
    let hello = ClientFrame::Hello {
        protocol: PROTOCOL_VERSION - 1,
        token: olivia.login.token.clone(),
        cursor: olivia.snapshot().await.seq,
    };
    ws.send(WsMessage::text(serde_json::to_string(&hello).unwrap()))
        .await
        .expect("the hello goes out");
    match frame(&mut ws).await {
        Some(ServerFrame::Error { code, message }) => {
            assert_eq!(code, ErrorCode::UnsupportedVersion);
            assert_eq!(
                message,
                "This server speaks protocol 2, not 1. Update Clinic Desk on this computer."
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(frame(&mut ws).await.is_none(), "the feed closes");
    // The current protocol is welcomed on the same server.
    let mut current = feed(&olivia, 0).await;
    assert!(matches!(
        frame(&mut current).await,
        Some(ServerFrame::Welcome { protocol: 2, .. })
    ));
}

#[tokio::test]
async fn going_on_duty_reaches_every_feed_live_without_ending_the_drivers_own() {
    let server = TestServer::start().await;
    let lee = server.login("lee").await;
    let olivia = server.login("olivia").await;
    let at = lee.snapshot().await.seq;
    let mut lees = feed(&lee, at).await;
    let mut olivias = feed(&olivia, olivia.snapshot().await.seq).await;
    // Both feeds are open before Lee acts: a change committed while a feed is still
    // saying hello is history to it, and history about one's own account is a resync.
    for ws in [&mut lees, &mut olivias] {
        assert!(matches!(frame(ws).await, Some(ServerFrame::Welcome { .. })));
    }

    let applied_on = applied(&lee.set_on_duty(true).await).1;
    // Lee's own feed goes on and carries the change (no resync: nothing he may see changed).
    let on = account_on(&mut lees, lee.login.user.id).await;
    assert!(on.on_duty);
    assert_eq!(Record::Staff(on.clone()), applied_on);
    // The operator's feed carries it too: her Drivers panel follows it live.
    assert_eq!(account_on(&mut olivias, lee.login.user.id).await, on);
    // And so on: going off duty arrives on the same feed.
    applied(&lee.set_on_duty(false).await);
    assert!(!account_on(&mut lees, lee.login.user.id).await.on_duty);
}
