//! Authorization as data (issue 13).
//!
//! [`TABLE`] is the authorization spec, readable on its own: for each kind of record, each
//! thing a user can do with one (find it in their snapshot, get it on their feed, every
//! [`Mutation`] and every [`BookingAction`]) and each relation the user can have to it (a
//! booking's therapist, its driver, neither; their own availability or someone else's; a
//! message's sender, recipient, neither; their own staff record or another's), what each
//! role gets: applied (seen), or refused with which code.
//!
//! - [`the_table_covers_every_case_exactly_once`] checks the table's shape: one line for
//!   every kind, action and relation, a cell for every role, and a blank (`__`) exactly
//!   where the case cannot arise (only a therapist can be a booking's therapist).
//! - [`every_cell_of_the_table_holds_on_a_real_server`] walks every cell against the real
//!   server (test kit, HTTP, the WebSocket feed): a fresh record in the status and relation
//!   the line needs, the user acts, the outcome is compared with the cell. A refusal must
//!   commit nothing and hand back the record only to a user who may see it; an applied
//!   change must reach the user's own feed.
//! - [`no_snapshot_or_feed_ever_carries_what_the_rules_keep_from_its_user`] is a property
//!   test: random users (random role sets) make random changes through a real server, and
//!   no snapshot and no feed ever carries a record `rules::visible_to` keeps from its user;
//!   a record that stops being visible arrives on that user's feed as a removal. Its number
//!   of cases is `CLINIC_AUTHZ_CASES` (32 by default).

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use chrono::{Days, Local, NaiveDate, NaiveTime};
use clinic_protocol::rules::{self, visible_to};
use clinic_protocol::wire::paths;
use clinic_protocol::{
    Booking, BookingAction, Change, ChangeOp, ClientFrame, ErrorCode, Message, Mutation,
    MutationOutcome, NewBooking, NewMessage, NewSlot, PaymentMethod, Record, RecordKind, Role,
    ServerFrame, Slot, Staff, PROTOCOL_VERSION,
};
use clinic_server::{AppState, Embedded};
use clinic_test_kit::{Staffer, TestServer, TestStore, DEADLINE, PASSWORD};
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

use Act::*;
use Rel::*;

// ---------------------------------------------------------------------------------------
// The table.

/// The users of the table's columns, one per role, and one person with two roles (a small
/// clinic's owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Operator,
    Scheduler,
    Therapist,
    Driver,
    Admin,
    OperatorTherapist,
}

/// The columns, in order.
const WHO: [Who; 6] = [
    Who::Operator,
    Who::Scheduler,
    Who::Therapist,
    Who::Driver,
    Who::Admin,
    Who::OperatorTherapist,
];

impl Who {
    fn roles(self) -> &'static [Role] {
        match self {
            Who::Operator => &[Role::Operator],
            Who::Scheduler => &[Role::Scheduler],
            Who::Therapist => &[Role::Therapist],
            Who::Driver => &[Role::Driver],
            Who::Admin => &[Role::Admin],
            Who::OperatorTherapist => &[Role::Operator, Role::Therapist],
        }
    }

    fn has(self, role: Role) -> bool {
        self.roles().contains(&role)
    }

    fn name(self) -> &'static str {
        match self {
            Who::Operator => "operator",
            Who::Scheduler => "scheduler",
            Who::Therapist => "therapist",
            Who::Driver => "driver",
            Who::Admin => "admin",
            Who::OperatorTherapist => "operator+therapist",
        }
    }
}

/// What the user does with the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    /// The record is in the user's snapshot.
    InSnapshot,
    /// The record reaches the user's feed.
    InFeed,
    CreateBooking,
    /// A step in the booking's life cycle, tried in the status it starts from.
    Step(BookingAction),
    RescheduleBooking,
    AssignBooking,
    CreateSlot,
    UpdateSlot,
    DeleteSlot,
    SendMessage,
    MarkRead,
    /// A driver goes on or off duty (a staff record).
    SetOnDuty,
}

impl Act {
    fn name(self) -> &'static str {
        match self {
            InSnapshot => "in the snapshot",
            InFeed => "on the feed",
            CreateBooking => "create_booking",
            Step(action) => action.as_str(),
            RescheduleBooking => "reschedule_booking",
            AssignBooking => "assign_booking",
            CreateSlot => "create_slot",
            UpdateSlot => "update_slot",
            DeleteSlot => "delete_slot",
            SendMessage => "send_message",
            MarkRead => "mark_read",
            SetOnDuty => "set_on_duty",
        }
    }

    fn sees(self) -> bool {
        matches!(self, InSnapshot | InFeed)
    }
}

/// The act a mutation is. No wildcard: a new `Mutation` variant does not compile here until
/// it has its act, and then the coverage test wants its lines in the table.
fn act_of(mutation: &Mutation) -> Act {
    match mutation {
        Mutation::CreateBooking { .. } => CreateBooking,
        Mutation::BookingAction { action, .. } => Step(*action),
        // The two steps that carry more than the step itself.
        Mutation::VerifyPayment { .. } => Step(BookingAction::VerifyPayment),
        Mutation::CancelBooking { .. } => Step(BookingAction::Cancel),
        Mutation::SetOnDuty { .. } => SetOnDuty,
        Mutation::RescheduleBooking { .. } => RescheduleBooking,
        Mutation::AssignBooking { .. } => AssignBooking,
        Mutation::CreateSlot { .. } => CreateSlot,
        Mutation::UpdateSlot { .. } => UpdateSlot,
        Mutation::DeleteSlot { .. } => DeleteSlot,
        Mutation::SendMessage { .. } => SendMessage,
        Mutation::MarkRead { .. } => MarkRead,
    }
}

/// How the record relates to the user (for a creation: how the new record would).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rel {
    /// A booking: the user is its therapist.
    Therapist,
    /// A booking: the user is its driver.
    Driver,
    /// A booking or a message: it is none of the user's.
    Neither,
    /// A slot: the user's own availability. Staff: the user's own record.
    Own,
    /// A slot: another therapist's availability. Staff: another staff member's record.
    Others,
    /// A message the user sent.
    Sender,
    /// A message sent to the user.
    Recipient,
}

impl Rel {
    fn name(self) -> &'static str {
        match self {
            Therapist => "the user is its therapist",
            Driver => "the user is its driver",
            Neither => "none of the user's",
            Own => "the user's own",
            Others => "someone else's",
            Sender => "the user sent it",
            Recipient => "sent to the user",
        }
    }
}

/// What a cell says a user gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Applied; for the visibility lines, seen.
    Yes,
    /// Refused with this code; for the visibility lines `N` means not seen.
    No(ErrorCode),
    /// The case cannot arise (only a therapist can be a booking's therapist).
    Blank,
}

/// Applied, or seen.
const A: Want = Want::Yes;
/// Refused: `forbidden` (the user sees the record but their role may not do this).
const F: Want = Want::No(ErrorCode::Forbidden);
/// Refused: `not_found` (the record is not the user's to see); on a visibility line, not seen.
const N: Want = Want::No(ErrorCode::NotFound);
/// Refused: `invalid_value` (availability is for therapists only).
const V: Want = Want::No(ErrorCode::InvalidValue);
/// Cannot arise.
const __: Want = Want::Blank;

impl Want {
    fn words(self, act: Act) -> String {
        match self {
            Want::Yes if act.sees() => "seen".into(),
            Want::Yes => "applied".into(),
            Want::No(ErrorCode::NotFound) if act.sees() => "not seen".into(),
            Want::No(code) => format!("refused with {}", code.as_str()),
            Want::Blank => "cannot arise".into(),
        }
    }
}

use BookingAction as B;
use RecordKind as K;

/// A line of the table: a kind of record, what the user does with it, how it relates to
/// the user, and what each of the columns ([`WHO`]) gets.
type Line = (RecordKind, Act, Rel, [Want; 6]);

/// Who may see and do what. A life-cycle step is tried on a booking in the status it starts
/// from (accept: requested; confirm_pickup: confirmed; ... verify_payment: completed), so
/// that a refusal here is about who, never about when.
///
/// The columns are [`WHO`]: operator, scheduler, therapist, driver, admin, and one person who
/// is operator and therapist. `A` applied (seen), `F` forbidden, `N` not found (not seen),
/// `V` invalid value, `__` cannot arise.
#[rustfmt::skip]
const TABLE: &[Line] = &[
    //kind       act                     relation     oper  sched   ther   drvr  admin  op+th
    (K::Booking, InSnapshot,             Therapist, [   __,    __,     A,    __,    __,     A]),
    (K::Booking, InSnapshot,             Driver,    [   __,    __,    __,     A,    __,    __]),
    (K::Booking, InSnapshot,             Neither,   [    A,     A,     N,     N,     A,     A]),
    (K::Booking, InFeed,                 Therapist, [   __,    __,     A,    __,    __,     A]),
    (K::Booking, InFeed,                 Driver,    [   __,    __,    __,     A,    __,    __]),
    (K::Booking, InFeed,                 Neither,   [    A,     A,     N,     N,     A,     A]),
    (K::Booking, CreateBooking,          Therapist, [   __,    __,     F,    __,    __,     A]),
    (K::Booking, CreateBooking,          Driver,    [   __,    __,    __,     F,    __,    __]),
    (K::Booking, CreateBooking,          Neither,   [    A,     A,     F,     F,     A,     A]),
    (K::Booking, Step(B::Accept),        Therapist, [   __,    __,     A,    __,    __,     A]),
    (K::Booking, Step(B::Accept),        Driver,    [   __,    __,    __,     F,    __,    __]),
    (K::Booking, Step(B::Accept),        Neither,   [    F,     F,     N,     N,     F,     F]),
    (K::Booking, Step(B::Decline),       Therapist, [   __,    __,     A,    __,    __,     A]),
    (K::Booking, Step(B::Decline),       Driver,    [   __,    __,    __,     F,    __,    __]),
    (K::Booking, Step(B::Decline),       Neither,   [    F,     F,     N,     N,     F,     F]),
    (K::Booking, Step(B::ConfirmPickup), Therapist, [   __,    __,     F,    __,    __,     F]),
    (K::Booking, Step(B::ConfirmPickup), Driver,    [   __,    __,    __,     A,    __,    __]),
    (K::Booking, Step(B::ConfirmPickup), Neither,   [    F,     F,     N,     N,     F,     F]),
    (K::Booking, Step(B::StartJourney),  Therapist, [   __,    __,     F,    __,    __,     F]),
    (K::Booking, Step(B::StartJourney),  Driver,    [   __,    __,    __,     A,    __,    __]),
    (K::Booking, Step(B::StartJourney),  Neither,   [    F,     F,     N,     N,     F,     F]),
    (K::Booking, Step(B::MarkArrived),   Therapist, [   __,    __,     F,    __,    __,     F]),
    (K::Booking, Step(B::MarkArrived),   Driver,    [   __,    __,    __,     A,    __,    __]),
    (K::Booking, Step(B::MarkArrived),   Neither,   [    F,     F,     N,     N,     F,     F]),
    (K::Booking, Step(B::StartSession),  Therapist, [   __,    __,     A,    __,    __,     A]),
    (K::Booking, Step(B::StartSession),  Driver,    [   __,    __,    __,     F,    __,    __]),
    (K::Booking, Step(B::StartSession),  Neither,   [    A,     F,     N,     N,     A,     A]),
    (K::Booking, Step(B::Complete),      Therapist, [   __,    __,     A,    __,    __,     A]),
    (K::Booking, Step(B::Complete),      Driver,    [   __,    __,    __,     F,    __,    __]),
    (K::Booking, Step(B::Complete),      Neither,   [    A,     F,     N,     N,     A,     A]),
    (K::Booking, Step(B::VerifyPayment), Therapist, [   __,    __,     F,    __,    __,     A]),
    (K::Booking, Step(B::VerifyPayment), Driver,    [   __,    __,    __,     F,    __,    __]),
    (K::Booking, Step(B::VerifyPayment), Neither,   [    A,     F,     N,     N,     A,     A]),
    (K::Booking, Step(B::Cancel),        Therapist, [   __,    __,     F,    __,    __,     A]),
    (K::Booking, Step(B::Cancel),        Driver,    [   __,    __,    __,     F,    __,    __]),
    (K::Booking, Step(B::Cancel),        Neither,   [    A,     F,     N,     N,     A,     A]),
    (K::Booking, RescheduleBooking,      Therapist, [   __,    __,     F,    __,    __,     A]),
    (K::Booking, RescheduleBooking,      Driver,    [   __,    __,    __,     F,    __,    __]),
    (K::Booking, RescheduleBooking,      Neither,   [    A,     A,     N,     N,     A,     A]),
    (K::Booking, AssignBooking,          Therapist, [   __,    __,     F,    __,    __,     A]),
    (K::Booking, AssignBooking,          Driver,    [   __,    __,    __,     F,    __,    __]),
    (K::Booking, AssignBooking,          Neither,   [    A,     A,     N,     N,     A,     A]),

    (K::Slot,    InSnapshot,             Own,       [   __,    __,     A,    __,    __,     A]),
    (K::Slot,    InSnapshot,             Others,    [    A,     A,     N,     N,     A,     A]),
    (K::Slot,    InFeed,                 Own,       [   __,    __,     A,    __,    __,     A]),
    (K::Slot,    InFeed,                 Others,    [    A,     A,     N,     N,     A,     A]),
    (K::Slot,    CreateSlot,             Own,       [    V,     V,     A,     F,     V,     A]),
    (K::Slot,    CreateSlot,             Others,    [    A,     A,     F,     F,     A,     A]),
    (K::Slot,    UpdateSlot,             Own,       [   __,    __,     A,    __,    __,     A]),
    (K::Slot,    UpdateSlot,             Others,    [    A,     A,     N,     N,     A,     A]),
    (K::Slot,    DeleteSlot,             Own,       [   __,    __,     A,    __,    __,     A]),
    (K::Slot,    DeleteSlot,             Others,    [    A,     A,     N,     N,     A,     A]),

    (K::Message, InSnapshot,             Sender,    [    A,     A,     A,     A,     A,     A]),
    (K::Message, InSnapshot,             Recipient, [    A,     A,     A,     A,     A,     A]),
    (K::Message, InSnapshot,             Neither,   [    N,     N,     N,     N,     N,     N]),
    (K::Message, InFeed,                 Sender,    [    A,     A,     A,     A,     A,     A]),
    (K::Message, InFeed,                 Recipient, [    A,     A,     A,     A,     A,     A]),
    (K::Message, InFeed,                 Neither,   [    N,     N,     N,     N,     N,     N]),
    (K::Message, SendMessage,            Sender,    [    A,     A,     A,     A,     A,     A]),
    (K::Message, MarkRead,               Sender,    [    F,     F,     F,     F,     F,     F]),
    (K::Message, MarkRead,               Recipient, [    A,     A,     A,     A,     A,     A]),
    (K::Message, MarkRead,               Neither,   [    N,     N,     N,     N,     N,     N]),

    (K::Staff,   InSnapshot,             Own,       [    A,     A,     A,     A,     A,     A]),
    (K::Staff,   InSnapshot,             Others,    [    A,     A,     A,     A,     A,     A]),
    (K::Staff,   InFeed,                 Own,       [    A,     A,     A,     A,     A,     A]),
    (K::Staff,   InFeed,                 Others,    [    A,     A,     A,     A,     A,     A]),
    (K::Staff,   SetOnDuty,              Own,       [    F,     F,     F,     A,     F,     F]),
    (K::Staff,   SetOnDuty,              Others,    [    F,     F,     F,     F,     F,     F]),

];

const KINDS: [RecordKind; 4] = [K::Booking, K::Slot, K::Message, K::Staff];

/// Everything a user can do with a record of `kind`.
fn acts(kind: RecordKind) -> Vec<Act> {
    let mut acts = vec![InSnapshot, InFeed];
    match kind {
        K::Booking => {
            acts.push(CreateBooking);
            acts.extend(BookingAction::ALL.map(Step));
            acts.extend([RescheduleBooking, AssignBooking]);
        }
        K::Slot => acts.extend([CreateSlot, UpdateSlot, DeleteSlot]),
        K::Message => acts.extend([SendMessage, MarkRead]),
        K::Staff => acts.push(SetOnDuty),
    }
    acts
}

/// How a record of `kind` can relate to a user.
fn rels(kind: RecordKind) -> &'static [Rel] {
    match kind {
        K::Booking => &[Therapist, Driver, Neither],
        K::Slot | K::Staff => &[Own, Others],
        K::Message => &[Sender, Recipient, Neither],
    }
}

/// Whether the case can arise at all: whether `who` can stand in relation `rel` to a record
/// of `kind` (or try to, for a creation).
fn arises(who: Who, kind: RecordKind, act: Act, rel: Rel) -> bool {
    match (kind, rel) {
        // The server refuses to assign anyone else (`invalid_value`): only a therapist is
        // a booking's therapist, only a driver its driver.
        (K::Booking, Therapist) => who.has(Role::Therapist),
        (K::Booking, Driver) => who.has(Role::Driver),
        // Availability is a therapist's; anyone may try to give themselves some.
        (K::Slot, Own) => who.has(Role::Therapist) || act == CreateSlot,
        // The server makes whoever sends a message its sender.
        (K::Message, Recipient | Neither) => act != SendMessage,
        _ => rels(kind).contains(&rel),
    }
}

/// One cell of the table, as a failure names it.
#[derive(Debug, Clone, Copy)]
struct Cellref {
    kind: RecordKind,
    act: Act,
    rel: Rel,
    who: Who,
    want: Want,
}

impl fmt::Display for Cellref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{} / {} / {} / {}] (the table says {})",
            self.kind.as_str(),
            self.act.name(),
            self.rel.name(),
            self.who.name(),
            self.want.words(self.act)
        )
    }
}

#[test]
fn the_table_covers_every_case_exactly_once() {
    let mut wanted = 0;
    for kind in KINDS {
        for act in acts(kind) {
            for &rel in rels(kind) {
                let lines: Vec<&Line> = TABLE
                    .iter()
                    .filter(|l| (l.0, l.1, l.2) == (kind, act, rel))
                    .collect();
                let arising = WHO.into_iter().any(|w| arises(w, kind, act, rel));
                let what = format!("{} / {} / {}", kind.as_str(), act.name(), rel.name());
                assert_eq!(
                    lines.len(),
                    usize::from(arising),
                    "lines for {what} (needed exactly when the case can arise)"
                );
                let Some(line) = lines.first() else { continue };
                for (who, cell) in WHO.into_iter().zip(line.3) {
                    assert_eq!(
                        cell == __,
                        !arises(who, kind, act, rel),
                        "{what} / {}: blank exactly when the case cannot arise",
                        who.name()
                    );
                    wanted += usize::from(cell != __);
                }
            }
        }
    }
    for line in TABLE {
        assert!(
            acts(line.0).contains(&line.1) && rels(line.0).contains(&line.2),
            "a line the table has no business with: {line:?}"
        );
    }
    assert_eq!(cells(), wanted, "every cell is counted once");
}

/// The cells of the table that can arise: what the walk tries.
fn cells() -> usize {
    TABLE
        .iter()
        .map(|l| l.3.iter().filter(|&&c| c != __).count())
        .sum()
}

// ---------------------------------------------------------------------------------------
// A feed, read to the head.

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One user's feed, with everything it has carried so far.
struct Feed {
    ws: Ws,
    cursor: u64,
    changes: Vec<Change>,
}

impl Feed {
    async fn open(user: &Staffer, cursor: u64) -> Feed {
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
        Feed {
            ws,
            cursor,
            changes: Vec::new(),
        }
    }

    /// Reads until the feed has said everything up to `head`.
    async fn read_to(&mut self, head: u64) {
        while self.cursor < head {
            let msg = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("the feed stays open")
                .expect("a readable frame");
            let WsMessage::Text(text) = msg else { continue };
            match serde_json::from_str(text.as_str()).expect("a valid frame") {
                ServerFrame::Changes { changes, upto } => {
                    self.changes.extend(changes);
                    self.cursor = upto;
                }
                ServerFrame::Heartbeat { head } => self.cursor = head,
                ServerFrame::Welcome { .. } => {}
                other => panic!("the feed ended: {other:?}"),
            }
        }
    }

    /// What the feed carried about one record, in order.
    fn about(&self, kind: RecordKind, id: Uuid) -> Vec<&Change> {
        self.changes
            .iter()
            .filter(|c| c.op.target() == (kind, id))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// The walk.

fn t(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

fn today() -> NaiveDate {
    Local::now().date_naive()
}

/// The days the walk's bookings are on (clear of the demo clinic's, today and tomorrow),
/// each therapist available all of them 06:00–22:00; and the day of the slots it tries
/// things on (no bookings that day, so changing them is never refused for a booking's sake).
const BOOKING_DAYS: std::ops::RangeInclusive<u64> = 2..=10;
const SLOT_DAY: u64 = 40;
/// Bookings a day: every half hour from 07:00, 25 minutes each.
const BOOKINGS_A_DAY: u32 = 28;

fn outcome_words(outcome: &MutationOutcome) -> String {
    match outcome {
        MutationOutcome::Applied { .. } => "applied".into(),
        MutationOutcome::Rejected { code, message, .. } => {
            format!("refused with {} ({message})", code.as_str())
        }
    }
}

fn applied<T>(outcome: MutationOutcome, what: &str, pick: impl FnOnce(Record) -> Option<T>) -> T {
    match outcome {
        MutationOutcome::Applied {
            record: Some(record),
            ..
        } => pick(record).unwrap_or_else(|| panic!("{what}: another kind of record")),
        other => panic!("setting up {what}: {other:?}"),
    }
}

/// The steps that bring a new booking to the status `action` starts from.
fn path_to(action: BookingAction) -> &'static [BookingAction] {
    const FULL: [BookingAction; 6] = [
        B::Accept,
        B::ConfirmPickup,
        B::StartJourney,
        B::MarkArrived,
        B::StartSession,
        B::Complete,
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
    &FULL[..len]
}

/// A check made once every cell has run, when the feeds are read to the head (once).
enum FeedCheck {
    /// A visibility cell: the user's feed carries the record as it is now, or nothing of it.
    Sees(Cellref, Record),
    /// An applied change reaches the feed of the user who made it.
    Carries(Cellref, u64, Uuid, ChangeOp),
}

/// The server, the table's users, and the others the records need.
struct Walk {
    server: TestServer,
    /// The users of the columns, in [`WHO`] order.
    users: Vec<Staffer>,
    /// Another therapist and another driver: the parties of what is none of the user's.
    therapist2: Staffer,
    driver2: Staffer,
    /// An operator who sets records up.
    boss: Staffer,
    by_id: HashMap<Uuid, Staffer>,
    /// Each column user's feed, opened before any of them existed.
    feeds: Vec<Feed>,
    checks: Vec<FeedCheck>,
    next_time: u32,
}

impl Walk {
    async fn start() -> Walk {
        let server = TestServer::start().await;
        let start = server.state().head().await;
        let state = server.state().clone();
        const THERAPIST: &[Role] = &[Role::Therapist];
        const DRIVER: &[Role] = &[Role::Driver];
        const OPERATOR: &[Role] = &[Role::Operator];
        let mut staff = Vec::new();
        let cast = WHO
            .iter()
            .map(|w| (format!("authz-{}", w.name()), w.roles()))
            .chain([
                ("authz-therapist-2".to_owned(), THERAPIST),
                ("authz-driver-2".to_owned(), DRIVER),
                ("authz-boss".to_owned(), OPERATOR),
            ]);
        for (username, roles) in cast {
            state
                .create_staff(&username, &username, roles, PASSWORD)
                .await
                .expect("create a staff member");
            staff.push(server.login(&username).await);
        }
        let boss = staff.pop().unwrap();
        let driver2 = staff.pop().unwrap();
        let therapist2 = staff.pop().unwrap();
        let by_id = staff
            .iter()
            .chain([&therapist2, &driver2, &boss])
            .map(|s| (s.login.user.id, s.clone()))
            .collect();
        let mut feeds = Vec::new();
        for user in &staff {
            feeds.push(Feed::open(user, start).await);
        }
        let walk = Walk {
            server,
            users: staff,
            therapist2,
            driver2,
            boss,
            by_id,
            feeds,
            checks: Vec::new(),
            next_time: 0,
        };
        for therapist in [
            walk.user(Who::Therapist),
            walk.user(Who::OperatorTherapist),
            &walk.therapist2,
        ] {
            for day in BOOKING_DAYS {
                let slot = NewSlot {
                    id: Uuid::new_v4(),
                    staff_id: therapist.login.user.id,
                    date: today() + Days::new(day),
                    start: t(6, 0),
                    end: t(22, 0),
                    note: String::new(),
                };
                let made = walk.boss.mutate(Mutation::CreateSlot { slot }).await;
                applied(made, "availability", Record::into_slot);
            }
        }
        walk
    }

    fn user(&self, who: Who) -> &Staffer {
        &self.users[WHO.iter().position(|&w| w == who).unwrap()]
    }

    fn id(&self, who: Who) -> Uuid {
        self.user(who).login.user.id
    }

    /// A time of its own for every booking, so that confirmed ones never overlap.
    fn next_time(&mut self) -> (NaiveDate, NaiveTime, NaiveTime) {
        let n = self.next_time;
        self.next_time += 1;
        let day = BOOKING_DAYS.start() + u64::from(n / BOOKINGS_A_DAY);
        assert!(BOOKING_DAYS.contains(&day), "the walk needs more days");
        let (h, m) = (7 + n % BOOKINGS_A_DAY / 2, 30 * (n % 2));
        (today() + Days::new(day), t(h, m), t(h, m + 25))
    }

    /// The therapist and driver of a booking in relation `rel` to `who`.
    fn parties(&self, rel: Rel, who: Who) -> (Uuid, Uuid) {
        let (t2, d2) = (self.therapist2.login.user.id, self.driver2.login.user.id);
        match rel {
            Therapist => (self.id(who), d2),
            Driver => (t2, self.id(who)),
            _ => (t2, d2),
        }
    }

    fn new_booking(&mut self, rel: Rel, who: Who) -> NewBooking {
        let (therapist, driver) = self.parties(rel, who);
        let (date, start, end) = self.next_time();
        NewBooking {
            id: Uuid::new_v4(),
            client_name: "Authz Client".into(),
            client_phone: "555-0199".into(),
            address: "Table Road 1".into(),
            service: "Massage".into(),
            date,
            start,
            end,
            therapist_id: Some(therapist),
            driver_id: Some(driver),
            notes: String::new(),
        }
    }

    /// A new booking in relation `rel` to `who`, taken along `path` by whoever's step each
    /// is (its therapist, its driver, the boss).
    async fn booking(&mut self, rel: Rel, who: Who, path: &[BookingAction]) -> Booking {
        let booking = self.new_booking(rel, who);
        let made = self.boss.mutate(Mutation::CreateBooking { booking }).await;
        let mut b = applied(made, "a booking", Record::into_booking);
        for &step in path {
            let by = match step {
                B::Accept | B::Decline => b.therapist_id,
                B::ConfirmPickup | B::StartJourney | B::MarkArrived => b.driver_id,
                _ => Some(self.boss.login.user.id),
            };
            let by = &self.by_id[&by.unwrap()];
            b = applied(by.act(&b, step).await, step.as_str(), Record::into_booking);
        }
        b
    }

    async fn slot(&self, rel: Rel, who: Who) -> Slot {
        let staff_id = match rel {
            Own => self.id(who),
            _ => self.therapist2.login.user.id,
        };
        let slot = NewSlot {
            id: Uuid::new_v4(),
            staff_id,
            date: today() + Days::new(SLOT_DAY),
            start: t(9, 0),
            end: t(12, 0),
            note: String::new(),
        };
        let made = self.boss.mutate(Mutation::CreateSlot { slot }).await;
        applied(made, "a slot", Record::into_slot)
    }

    async fn message(&self, rel: Rel, who: Who) -> Message {
        let user = self.user(who);
        let (from, to) = match rel {
            Sender => (user, &self.therapist2),
            Recipient => (&self.therapist2, user),
            _ => (&self.therapist2, &self.driver2),
        };
        let message = NewMessage {
            id: Uuid::new_v4(),
            recipient_id: to.login.user.id,
            body: "Authz: between the two of us.".into(),
        };
        let made = from.mutate(Mutation::SendMessage { message }).await;
        applied(made, "a message", Record::into_message)
    }

    /// A record of `kind` in relation `rel` to `who`, as it is now.
    async fn record(&mut self, kind: RecordKind, rel: Rel, who: Who) -> Record {
        match kind {
            K::Booking => Record::Booking(self.booking(rel, who, &[]).await),
            K::Slot => Record::Slot(self.slot(rel, who).await),
            K::Message => Record::Message(self.message(rel, who).await),
            K::Staff => Record::Staff(match rel {
                Own => self.user(who).login.user.clone(),
                _ => self.therapist2.login.user.clone(),
            }),
        }
    }

    /// The mutation a cell tries, and the record it targets as it is before.
    async fn mutation(&mut self, cell: Cellref) -> (Mutation, Option<Record>) {
        let Cellref { rel, who, .. } = cell;
        match cell.act {
            CreateBooking => {
                let booking = self.new_booking(rel, who);
                (Mutation::CreateBooking { booking }, None)
            }
            Step(action) => {
                let b = self.booking(rel, who, path_to(action)).await;
                let (id, version) = (b.id, b.version);
                let m = match action {
                    B::VerifyPayment => Mutation::VerifyPayment {
                        id,
                        version,
                        amount_cents: 9_500,
                        method: PaymentMethod::Card,
                        reference: "Authz slip".into(),
                    },
                    B::Cancel => Mutation::CancelBooking {
                        id,
                        version,
                        reason: "Authz: the client called off.".into(),
                    },
                    _ => Mutation::BookingAction {
                        id,
                        version,
                        action,
                    },
                };
                (m, Some(Record::Booking(b)))
            }
            SetOnDuty => {
                let staff = match rel {
                    Own => self.user(who).login.user.clone(),
                    _ => self.therapist2.login.user.clone(),
                };
                // The account as it is now (an earlier cell may have put it on duty).
                let now = self
                    .user(who)
                    .snapshot()
                    .await
                    .records
                    .into_iter()
                    .find_map(|r| r.into_staff().filter(|s| s.id == staff.id));
                let staff = now.unwrap_or(staff);
                let m = Mutation::SetOnDuty {
                    staff_id: staff.id,
                    on_duty: !staff.on_duty,
                };
                (m, Some(Record::Staff(staff)))
            }
            RescheduleBooking => {
                let b = self.booking(rel, who, &[]).await;
                let (date, start, end) = self.next_time();
                let m = Mutation::RescheduleBooking {
                    id: b.id,
                    version: b.version,
                    date,
                    start,
                    end,
                };
                (m, Some(Record::Booking(b)))
            }
            AssignBooking => {
                let b = self.booking(rel, who, &[]).await;
                let d2 = self.driver2.login.user.id;
                let driver = if b.driver_id == Some(d2) {
                    self.id(Who::Driver)
                } else {
                    d2
                };
                let m = Mutation::AssignBooking {
                    id: b.id,
                    version: b.version,
                    therapist_id: b.therapist_id,
                    driver_id: Some(driver),
                };
                (m, Some(Record::Booking(b)))
            }
            CreateSlot => {
                let staff_id = match rel {
                    Own => self.id(who),
                    _ => self.therapist2.login.user.id,
                };
                let slot = NewSlot {
                    id: Uuid::new_v4(),
                    staff_id,
                    date: today() + Days::new(SLOT_DAY),
                    start: t(13, 0),
                    end: t(15, 0),
                    note: String::new(),
                };
                (Mutation::CreateSlot { slot }, None)
            }
            UpdateSlot => {
                let s = self.slot(rel, who).await;
                let m = Mutation::UpdateSlot {
                    id: s.id,
                    version: s.version,
                    date: s.date,
                    start: t(10, 0),
                    end: s.end,
                    note: "Starts later.".into(),
                };
                (m, Some(Record::Slot(s)))
            }
            DeleteSlot => {
                let s = self.slot(rel, who).await;
                let m = Mutation::DeleteSlot {
                    id: s.id,
                    version: s.version,
                };
                (m, Some(Record::Slot(s)))
            }
            SendMessage => {
                let message = NewMessage {
                    id: Uuid::new_v4(),
                    recipient_id: self.therapist2.login.user.id,
                    body: "Authz: a new message.".into(),
                };
                (Mutation::SendMessage { message }, None)
            }
            MarkRead => {
                let m = self.message(rel, who).await;
                (Mutation::MarkRead { id: m.id }, Some(Record::Message(m)))
            }
            InSnapshot | InFeed => unreachable!("not a mutation"),
        }
    }

    /// Runs one cell: `Err` says how the server differs from the table.
    async fn cell(&mut self, cell: Cellref) -> Result<(), String> {
        let Cellref { kind, rel, who, .. } = cell;
        match cell.act {
            InSnapshot => {
                let record = self.record(kind, rel, who).await;
                let snapshot = self.user(who).snapshot().await;
                let found = snapshot
                    .records
                    .iter()
                    .find(|r| (r.kind(), r.id()) == (kind, record.id()));
                let got = match found {
                    Some(r) if *r == record => A,
                    Some(r) => return Err(format!("the snapshot has another version: {r:?}")),
                    None => N,
                };
                same(cell, got, "the snapshot")
            }
            InFeed => {
                let record = self.record(kind, rel, who).await;
                self.checks.push(FeedCheck::Sees(cell, record));
                Ok(())
            }
            _ => self.mutate(cell).await,
        }
    }

    async fn mutate(&mut self, cell: Cellref) -> Result<(), String> {
        let (mutation, before) = self.mutation(cell).await;
        assert_eq!(
            act_of(&mutation),
            cell.act,
            "the walk tries what the cell says"
        );
        let (kind, id) = mutation.target();
        let head = self.server.state().head().await;
        let user = self.user(cell.who).clone();
        let me = &user.login.user;
        let mutation_id = Uuid::new_v4();
        let outcome = user.send(mutation_id, mutation).await;
        match (cell.want, &outcome) {
            (Want::Yes, MutationOutcome::Applied { seq, record }) => {
                if *seq != head + 1 {
                    return Err(format!("applied at seq {seq} with the head at {head}"));
                }
                if let Some(r) = record.as_ref().filter(|r| !visible_to(me, r)) {
                    return Err(format!(
                        "the answer carries a record they may not see: {r:?}"
                    ));
                }
                let op = match record {
                    Some(record) => ChangeOp::Upsert {
                        record: record.clone(),
                    },
                    None => ChangeOp::Remove { kind, id },
                };
                self.checks
                    .push(FeedCheck::Carries(cell, *seq, mutation_id, op));
                Ok(())
            }
            (
                Want::No(code),
                MutationOutcome::Rejected {
                    code: got, current, ..
                },
            ) if *got == code => {
                let now = self.server.state().head().await;
                if now != head {
                    return Err(format!("refused, yet the head moved from {head} to {now}"));
                }
                let may_see = before.as_ref().filter(|b| visible_to(me, b));
                if current.as_ref() != may_see {
                    return Err(format!(
                        "refused with the record {current:?}; it should come back exactly when \
                         the user may see it: {may_see:?}"
                    ));
                }
                Ok(())
            }
            (_, outcome) => Err(format!("the server: {}", outcome_words(outcome))),
        }
    }

    /// Reads every feed to the head, then makes the checks the cells left for it.
    async fn check_feeds(&mut self) -> Vec<String> {
        let head = self.server.state().head().await;
        for feed in &mut self.feeds {
            feed.read_to(head).await;
        }
        let column = |who: Who| WHO.iter().position(|&w| w == who).unwrap();
        let mut wrong = Vec::new();
        for check in &self.checks {
            match check {
                FeedCheck::Sees(cell, record) => {
                    let about = self.feeds[column(cell.who)].about(record.kind(), record.id());
                    let got = match about.last().map(|c| &c.op) {
                        None => N,
                        Some(ChangeOp::Upsert { record: r }) if r == record => A,
                        // Changed by a later cell (a driver going on duty changes their own
                        // staff record): a later version of it reached the feed, so it did.
                        Some(ChangeOp::Upsert { record: r })
                            if (r.kind(), r.id()) == (record.kind(), record.id())
                                && r.version() > record.version() =>
                        {
                            A
                        }
                        Some(other) => {
                            wrong.push(format!("{cell}: the feed's last word on it: {other:?}"));
                            continue;
                        }
                    };
                    if let Err(e) = same(*cell, got, "the feed") {
                        wrong.push(format!("{cell}: {e}"));
                    }
                }
                FeedCheck::Carries(cell, seq, mutation_id, op) => {
                    let feed = &self.feeds[column(cell.who)];
                    let carried = feed
                        .changes
                        .iter()
                        .any(|c| (c.seq, c.mutation_id, &c.op) == (*seq, Some(*mutation_id), op));
                    if !carried {
                        wrong.push(format!(
                            "{cell}: applied as seq {seq}, but their feed did not carry it"
                        ));
                    }
                }
            }
        }
        wrong
    }
}

/// Compares what a visibility cell got (`A` seen, `N` not) with the table.
fn same(cell: Cellref, got: Want, place: &str) -> Result<(), String> {
    if got == cell.want {
        Ok(())
    } else {
        Err(format!("{place}: {}", got.words(cell.act)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cell_of_the_table_holds_on_a_real_server() {
    let mut walk = Walk::start().await;
    let mut wrong = Vec::new();
    let mut walked = 0;
    for &(kind, act, rel, wants) in TABLE {
        for (who, want) in WHO.into_iter().zip(wants) {
            if want == __ {
                continue;
            }
            walked += 1;
            let cell = Cellref {
                kind,
                act,
                rel,
                who,
                want,
            };
            if let Err(e) = walk.cell(cell).await {
                wrong.push(format!("{cell}: {e}"));
            }
        }
    }
    wrong.extend(walk.check_feeds().await);
    assert_eq!(walked, cells());
    assert!(
        wrong.is_empty(),
        "{} of the {walked} cells of the table do not hold on the server:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// The property: nobody receives what is not theirs.

/// A random change, its targets as indices taken modulo what exists when it runs.
#[derive(Debug, Clone)]
enum Op {
    CreateBooking {
        by: usize,
        therapist: Option<usize>,
        driver: Option<usize>,
        day: u64,
        hour: u32,
    },
    /// `honest`: one of the steps the rules offer someone on that booking, if any;
    /// otherwise `action` by `by`, whatever the rules say.
    Act {
        booking: usize,
        by: usize,
        action: usize,
        honest: bool,
    },
    Reschedule {
        by: usize,
        booking: usize,
        day: u64,
        hour: u32,
    },
    Assign {
        by: usize,
        booking: usize,
        therapist: Option<usize>,
        driver: Option<usize>,
    },
    CreateSlot {
        by: usize,
        staff: usize,
        day: u64,
        from: u32,
        to: u32,
    },
    UpdateSlot {
        by: usize,
        slot: usize,
        from: u32,
        to: u32,
    },
    DeleteSlot {
        by: usize,
        slot: usize,
    },
    Send {
        by: usize,
        to: usize,
    },
    /// By the recipient when `by` is even, else by another user.
    MarkRead {
        by: usize,
        message: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let i = || 0..64usize;
    let who = || proptest::option::weighted(0.85, 0..64usize);
    let honest = || proptest::bool::weighted(0.8);
    let (day, hour, from, to) = (|| 2..4u64, || 8..18u32, || 6..12u32, || 13..21u32);
    prop_oneof![
        3 => (i(), who(), who(), day(), hour()).prop_map(|(by, therapist, driver, day, hour)| {
            Op::CreateBooking { by, therapist, driver, day, hour }
        }),
        6 => (i(), i(), i(), honest()).prop_map(|(booking, by, action, honest)| {
            Op::Act { booking, by, action, honest }
        }),
        1 => (i(), i(), day(), hour()).prop_map(|(by, booking, day, hour)| {
            Op::Reschedule { by, booking, day, hour }
        }),
        3 => (i(), i(), who(), who()).prop_map(|(by, booking, therapist, driver)| {
            Op::Assign { by, booking, therapist, driver }
        }),
        3 => (i(), i(), day(), from(), to()).prop_map(|(by, staff, day, from, to)| {
            Op::CreateSlot { by, staff, day, from, to }
        }),
        1 => (i(), i(), from(), to()).prop_map(|(by, slot, from, to)| {
            Op::UpdateSlot { by, slot, from, to }
        }),
        1 => (i(), i()).prop_map(|(by, slot)| Op::DeleteSlot { by, slot }),
        2 => (i(), i()).prop_map(|(by, to)| Op::Send { by, to }),
        2 => (i(), i()).prop_map(|(by, message)| Op::MarkRead { by, message }),
    ]
}

/// A random set of roles, at least one.
fn roles() -> impl Strategy<Value = Vec<Role>> {
    proptest::sample::subsequence(Role::ALL.to_vec(), 1..=Role::ALL.len())
}

/// A committed change, as the server answered the user who made it.
#[derive(Debug)]
struct Committed {
    seq: u64,
    kind: RecordKind,
    id: Uuid,
    before: Option<Record>,
    after: Option<Record>,
}

impl Committed {
    /// What `user`'s feed must carry for it: the record if they may see it now, a removal
    /// if they could see it before, else nothing.
    fn for_user(&self, user: &Staff) -> Option<ChangeOp> {
        match (&self.before, &self.after) {
            (_, Some(after)) if visible_to(user, after) => Some(ChangeOp::Upsert {
                record: after.clone(),
            }),
            (Some(before), _) if visible_to(user, before) => Some(ChangeOp::Remove {
                kind: self.kind,
                id: self.id,
            }),
            _ => None,
        }
    }
}

/// What a case counts, summed over the run so that it can be shown not to be vacuous.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    applied: usize,
    refused: usize,
    removals: usize,
}

/// One case: a server of its own with the users, the record of truth (every record as the
/// server's answers say it is now), and what was committed, in order.
struct Case {
    server: Embedded,
    // After the server: it stops before its store goes.
    _store: TestStore,
    users: Vec<Staff>,
    clients: Vec<Staffer>,
    truth: BTreeMap<(RecordKind, Uuid), Record>,
    /// The records in the order they were made, so that an index picks the same one in
    /// every run of a case (ids are random).
    made: Vec<(RecordKind, Uuid)>,
    log: Vec<Committed>,
    start: u64,
    head: u64,
    tally: Tally,
}

impl Case {
    async fn start(roles: &[Vec<Role>]) -> Case {
        let store = TestStore::fresh().await;
        let mut config = store.config();
        // Feeds are read to the head at the end; a short beat makes that quick.
        config.heartbeat = Duration::from_millis(50);
        let state = AppState::open(config).await.expect("open the database");
        let mut users = Vec::new();
        for (i, roles) in roles.iter().enumerate() {
            let name = format!("user{i}");
            let staff = state
                .create_staff(&name, &name, roles, PASSWORD)
                .await
                .expect("create a staff member");
            users.push(staff);
        }
        let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let server = Embedded::spawn(any_port, state).await.expect("serve");
        let mut clients = Vec::new();
        for user in &users {
            clients.push(Staffer::login(&server.url(), &user.username).await);
        }
        let head = server.state().head().await;
        Case {
            _store: store,
            server,
            users,
            clients,
            truth: BTreeMap::new(),
            made: Vec::new(),
            log: Vec::new(),
            start: head,
            head,
            tally: Tally::default(),
        }
    }

    fn who(&self, i: usize) -> String {
        let u = &self.users[i];
        let roles: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
        format!("{} ({})", u.username, roles.join("+"))
    }

    fn user(&self, i: usize) -> usize {
        i % self.users.len()
    }

    /// The `i`-th existing record of `kind`, in the order they were made.
    fn nth(&self, kind: RecordKind, i: usize) -> Option<Record> {
        let existing: Vec<&Record> = self
            .made
            .iter()
            .filter(|(k, _)| *k == kind)
            .filter_map(|key| self.truth.get(key))
            .collect();
        (!existing.is_empty()).then(|| existing[i % existing.len()].clone())
    }

    /// Someone with `role` (most of the time), or anyone (to be refused).
    fn with_role(&self, role: Role, i: usize) -> Uuid {
        let fit: Vec<&Staff> = self.users.iter().filter(|u| u.has(role)).collect();
        if i < 48 && !fit.is_empty() {
            fit[i % fit.len()].id
        } else {
            self.users[self.user(i)].id
        }
    }

    /// The change `op` stands for now, and who makes it; `None` if it has nothing to act on.
    fn resolve(&self, op: &Op) -> Option<(usize, Mutation)> {
        let date = |day| today() + Days::new(day);
        let person = |role, pick: &Option<usize>| pick.map(|i| self.with_role(role, i));
        Some(match op {
            Op::CreateBooking {
                by,
                therapist,
                driver,
                day,
                hour,
            } => (
                self.user(*by),
                Mutation::CreateBooking {
                    booking: NewBooking {
                        id: Uuid::new_v4(),
                        client_name: "Prop Client".into(),
                        client_phone: String::new(),
                        address: String::new(),
                        service: "Massage".into(),
                        date: date(*day),
                        start: t(*hour, 0),
                        end: t(*hour + 1, 0),
                        therapist_id: person(Role::Therapist, therapist),
                        driver_id: person(Role::Driver, driver),
                        notes: String::new(),
                    },
                },
            ),
            Op::Act {
                booking,
                by,
                action,
                honest,
            } => {
                let Some(Record::Booking(b)) = self.nth(K::Booking, *booking) else {
                    return None;
                };
                let offered: Vec<(usize, BookingAction)> = (0..self.users.len())
                    .flat_map(|u| {
                        rules::booking_actions(&self.users[u], &b)
                            .into_iter()
                            .map(move |a| (u, a))
                    })
                    .collect();
                let (u, action) = if *honest && !offered.is_empty() {
                    offered[action % offered.len()]
                } else {
                    (
                        self.user(*by),
                        BookingAction::ALL[action % BookingAction::ALL.len()],
                    )
                };
                (
                    u,
                    Mutation::BookingAction {
                        id: b.id,
                        version: b.version,
                        action,
                    },
                )
            }
            Op::Reschedule {
                by,
                booking,
                day,
                hour,
            } => {
                let b = self.nth(K::Booking, *booking)?;
                (
                    self.user(*by),
                    Mutation::RescheduleBooking {
                        id: b.id(),
                        version: b.version(),
                        date: date(*day),
                        start: t(*hour, 0),
                        end: t(*hour + 1, 0),
                    },
                )
            }
            Op::Assign {
                by,
                booking,
                therapist,
                driver,
            } => {
                let b = self.nth(K::Booking, *booking)?;
                (
                    self.user(*by),
                    Mutation::AssignBooking {
                        id: b.id(),
                        version: b.version(),
                        therapist_id: person(Role::Therapist, therapist),
                        driver_id: person(Role::Driver, driver),
                    },
                )
            }
            Op::CreateSlot {
                by,
                staff,
                day,
                from,
                to,
            } => (
                self.user(*by),
                Mutation::CreateSlot {
                    slot: NewSlot {
                        id: Uuid::new_v4(),
                        staff_id: self.with_role(Role::Therapist, *staff),
                        date: date(*day),
                        start: t(*from, 0),
                        end: t(*to, 0),
                        note: String::new(),
                    },
                },
            ),
            Op::UpdateSlot { by, slot, from, to } => {
                let Some(Record::Slot(s)) = self.nth(K::Slot, *slot) else {
                    return None;
                };
                (
                    self.user(*by),
                    Mutation::UpdateSlot {
                        id: s.id,
                        version: s.version,
                        date: s.date,
                        start: t(*from, 0),
                        end: t(*to, 0),
                        note: "changed".into(),
                    },
                )
            }
            Op::DeleteSlot { by, slot } => {
                let s = self.nth(K::Slot, *slot)?;
                (
                    self.user(*by),
                    Mutation::DeleteSlot {
                        id: s.id(),
                        version: s.version(),
                    },
                )
            }
            Op::Send { by, to } => (
                self.user(*by),
                Mutation::SendMessage {
                    message: NewMessage {
                        id: Uuid::new_v4(),
                        recipient_id: self.users[self.user(*to)].id,
                        body: "hello".into(),
                    },
                },
            ),
            Op::MarkRead { by, message } => {
                let Some(Record::Message(m)) = self.nth(K::Message, *message) else {
                    return None;
                };
                let by = if by % 2 == 0 {
                    self.users.iter().position(|u| u.id == m.recipient_id)?
                } else {
                    self.user(by / 2)
                };
                (by, Mutation::MarkRead { id: m.id })
            }
        })
    }

    /// Makes the change through the server and keeps the record of truth: an answer never
    /// carries a record its user may not see, a refusal commits nothing.
    async fn apply(&mut self, by: usize, mutation: Mutation) {
        let (kind, id) = mutation.target();
        let before = self.truth.get(&(kind, id)).cloned();
        let what = format!("{} by {}", act_of(&mutation).name(), self.who(by));
        let outcome = self.clients[by].mutate(mutation).await;
        let user = &self.users[by];
        match outcome {
            MutationOutcome::Applied { seq, record } => {
                if let Some(r) = &record {
                    assert!(
                        visible_to(user, r),
                        "{what}: answered with {r:?}, not theirs"
                    );
                }
                if seq == self.head {
                    assert_eq!(record, before, "{what}: nothing to do, the record as it is");
                } else {
                    assert_eq!(seq, self.head + 1, "{what}: the next seq");
                    self.head = seq;
                    if before.is_none() {
                        self.made.push((kind, id));
                    }
                    match &record {
                        Some(r) => self.truth.insert((kind, id), r.clone()),
                        None => self.truth.remove(&(kind, id)),
                    };
                    self.log.push(Committed {
                        seq,
                        kind,
                        id,
                        before,
                        after: record,
                    });
                }
                self.tally.applied += 1;
            }
            MutationOutcome::Rejected { current, .. } => {
                if let Some(r) = &current {
                    assert!(
                        visible_to(user, r),
                        "{what}: refused with {r:?}, not theirs"
                    );
                    assert_eq!(
                        Some(r),
                        before.as_ref(),
                        "{what}: refused with the record now"
                    );
                }
                self.tally.refused += 1;
            }
        }
        assert_eq!(
            self.server.state().head().await,
            self.head,
            "{what}: the head is where the answers say"
        );
    }

    /// Every user's snapshot is exactly what the rules let them see of the truth.
    async fn check_snapshots(&self, after: &str) {
        for (i, client) in self.clients.iter().enumerate() {
            let user = &self.users[i];
            let snapshot = client.snapshot().await;
            assert_eq!(
                snapshot.seq,
                self.head,
                "{after}: {}'s snapshot",
                self.who(i)
            );
            let mut staff = 0;
            let mut got = BTreeMap::new();
            for record in snapshot.records {
                assert!(
                    visible_to(user, &record),
                    "{after}: {}'s snapshot carries {record:?}, which the rules keep from them",
                    self.who(i)
                );
                match record {
                    Record::Staff(_) => staff += 1,
                    r => {
                        got.insert((r.kind(), r.id()), r);
                    }
                }
            }
            assert_eq!(staff, self.users.len(), "{after}: the staff list");
            let want: BTreeMap<_, _> = self
                .truth
                .iter()
                .filter(|(_, r)| visible_to(user, r))
                .map(|(k, r)| (*k, r.clone()))
                .collect();
            if got != want {
                let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(k)).collect();
                let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(k)).collect();
                panic!(
                    "{after}: {}'s snapshot is not what the rules let them see: missing \
                     {missing:?}, extra {extra:?}, or another version",
                    self.who(i)
                );
            }
        }
    }

    /// Every user's feed, live and caught up from the case's start, carries exactly this:
    /// each change as they may see it now, a removal where they could see it before and may
    /// no longer, nothing else.
    async fn check_feeds(&mut self, live: &mut [Feed]) {
        for (i, feed) in live.iter_mut().enumerate() {
            let user = &self.users[i];
            feed.read_to(self.head).await;
            let mut caught_up = Feed::open(&self.clients[i], self.start).await;
            caught_up.read_to(self.head).await;
            let want: Vec<(u64, ChangeOp)> = self
                .log
                .iter()
                .filter_map(|c| Some((c.seq, c.for_user(user)?)))
                .collect();
            self.tally.removals += want
                .iter()
                .filter(|(_, op)| matches!(op, ChangeOp::Remove { .. }))
                .count();
            for (how, feed) in [("live", &*feed), ("caught-up", &caught_up)] {
                let got: Vec<(u64, ChangeOp)> =
                    feed.changes.iter().map(|c| (c.seq, c.op.clone())).collect();
                for (seq, op) in &got {
                    if let ChangeOp::Upsert { record } = op {
                        assert!(
                            visible_to(user, record),
                            "{}'s {how} feed carries {record:?} (seq {seq}), which the rules \
                             keep from them",
                            self.who(i)
                        );
                    }
                }
                for (seq, op) in &want {
                    if let ChangeOp::Remove { kind, id } = op {
                        assert!(
                            got.iter().any(|(s, o)| s == seq && o == op),
                            "{}: {} {id} stopped being theirs to see at seq {seq}, but their \
                             {how} feed carried no removal: {got:?}",
                            self.who(i),
                            kind.as_str()
                        );
                    }
                }
                assert_eq!(
                    got,
                    want,
                    "{}'s {how} feed is not exactly what the rules let them see",
                    self.who(i)
                );
            }
        }
    }
}

async fn run_case(roles: Vec<Vec<Role>>, ops: Vec<Op>) -> Tally {
    let mut case = Case::start(&roles).await;
    let mut live = Vec::new();
    for client in &case.clients {
        live.push(Feed::open(client, case.start).await);
    }
    for (n, op) in ops.iter().enumerate() {
        let Some((by, mutation)) = case.resolve(op) else {
            continue;
        };
        case.apply(by, mutation).await;
        case.check_snapshots(&format!("after step {n} ({op:?})"))
            .await;
    }
    case.check_feeds(&mut live).await;
    case.tally
}

#[test]
fn no_snapshot_or_feed_ever_carries_what_the_rules_keep_from_its_user() {
    let cases = std::env::var("CLINIC_AUTHZ_CASES")
        .ok()
        .map(|n| n.parse().expect("CLINIC_AUTHZ_CASES is a number"))
        .unwrap_or(32);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let total = Cell::new(Tally::default());
    let strategy = (
        proptest::collection::vec(roles(), 2..=5),
        proptest::collection::vec(op(), 5..40),
    );
    let result = runner.run(&strategy, |(roles, ops)| {
        let tally = runtime.block_on(run_case(roles, ops));
        let sum = total.get();
        total.set(Tally {
            applied: sum.applied + tally.applied,
            refused: sum.refused + tally.refused,
            removals: sum.removals + tally.removals,
        });
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let total = total.get();
    eprintln!("{cases} cases: {total:?}");
    // Not vacuous: changes were made and refused, and some records stopped being visible.
    assert!(
        total.applied > 0 && total.refused > 0 && total.removals > 0,
        "{total:?}"
    );
}
