//! The boundary between the backend and the windows, in one place: every command's
//! arguments and answers, every event name and payload. The UI's mirror is `ui/js/ipc.js`;
//! a unit test below keeps the names in step.
//!
//! Records travel as the protocol defines them (snake_case wire fields); everything the app
//! adds around them is camelCase, as JavaScript reads it.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use clinic_protocol::free::{FreeBusy, FreeQuery};
use clinic_protocol::{
    Booking, BookingAction, BookingStatus, ErrorCode, Id, Message, Mutation, PaymentMethod,
    RecordKind, Role, Slot, Staff,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

// The event and command names, in a file of their own so that `build.rs` reads the same
// list of commands to make their permissions.
include!("ipc_names.rs");

/// What a window learns about itself and the signed-in user (`session`, `login`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionDto {
    pub user: Option<Staff>,
    pub server: String,
    /// A warning in words when `server` (or the address the login form asked about) is
    /// `http://` off this computer: passwords would cross the network in clear text.
    pub server_warning: Option<String>,
    /// The last username signed in with, to prefill the login form (never a password).
    pub last_username: Option<String>,
    pub window: WindowDto,
    /// The dashboards this user may open, in menu order.
    pub dashboards: Vec<WindowDto>,
    /// Whether pages keep latency probes (the app was started with `--measure`).
    pub measure: bool,
    pub words: Words,
    /// The fewest characters the server takes in a new password (the change-password
    /// dialog says so and checks it before asking).
    pub min_password_chars: usize,
    /// The most characters the server takes in a short text: a cancellation's reason, a
    /// payment's reference ([`clinic_protocol::wire::MAX_SHORT_TEXT`]; the dialogs' limit).
    pub max_short_text: usize,
    /// Something this window must say as it opens, once: why windows were closed when the
    /// user's roles changed and none of theirs was left open to say it.
    pub notice: Option<NoticePayload>,
}

/// A window kind as the UI shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowDto {
    /// The window's own label (only in [`SessionDto::window`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub kind: Option<&'static str>,
    pub title: &'static str,
    /// The keyboard shortcut that opens one, as the menu shows it ("Ctrl+1").
    pub shortcut: Option<String>,
}

/// The words the UI shows for protocol values, so that no page keeps its own copy. Both
/// maps go out in the protocol's order (life-cycle order for statuses), which is the order
/// a legend lists them in.
#[derive(Debug, Clone, Default)]
pub struct Words;

#[derive(Debug, Clone, Serialize)]
pub struct StatusWords {
    /// "Pickup confirmed": chips and legends.
    pub label: &'static str,
    /// "awaiting pickup": in a sentence.
    pub words: &'static str,
}

impl Words {
    pub fn new() -> Words {
        Words
    }
}

impl Serialize for Words {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut words = serializer.serialize_struct("Words", 5)?;
        words.serialize_field("statuses", &Ordered(Statuses))?;
        words.serialize_field("actions", &Ordered(Actions))?;
        words.serialize_field("dialogs", &Ordered(Dialogs))?;
        words.serialize_field("paymentMethods", &Ordered(PaymentMethods))?;
        words.serialize_field("duty", &DutyWords::new())?;
        words.end()
    }
}

/// A driver's duty in words: the chip ("On duty", "Off duty") and the switch's step ("Go on
/// duty", "Go off duty"), from [`clinic_protocol::rules::duty_label`] and `duty_step`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DutyWords {
    on: &'static str,
    off: &'static str,
    go_on: &'static str,
    go_off: &'static str,
}

impl DutyWords {
    fn new() -> DutyWords {
        use clinic_protocol::rules::{duty_label, duty_step};
        DutyWords {
            on: duty_label(true),
            off: duty_label(false),
            go_on: duty_step(true),
            go_off: duty_step(false),
        }
    }
}

/// A map written in the order of its entries, by wire name.
struct Ordered<T>(T);
struct Statuses;
struct Actions;
/// The steps that open a dialog for more than the click, each by the form it is (and is
/// reopened in after a refusal): `{ "cancel": "cancel_booking", ... }`.
struct Dialogs;
struct PaymentMethods;

impl Serialize for Ordered<Dialogs> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            BookingAction::ALL
                .into_iter()
                .filter_map(|a| Reopen::for_step(a).map(|form| (a.as_str(), form))),
        )
    }
}

impl Serialize for Ordered<PaymentMethods> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            PaymentMethod::ALL
                .into_iter()
                .map(|m| (m.as_str(), m.label())),
        )
    }
}

impl Serialize for Ordered<Statuses> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(BookingStatus::ALL.into_iter().map(|s| {
            let words = StatusWords {
                label: s.label(),
                words: clinic_protocol::rules::status_words(s),
            };
            (s.as_str(), words)
        }))
    }
}

impl Serialize for Ordered<Actions> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            BookingAction::ALL
                .into_iter()
                .map(|a| (a.as_str(), a.label())),
        )
    }
}

/// The answer to `submit`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitDto {
    pub mutation_id: Uuid,
}

/// What one dashboard asks to show (`load`). A window may only ask for its own kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(tag = "dashboard", rename_all = "snake_case", deny_unknown_fields)]
pub enum ViewRequest {
    Operator {
        #[serde(default)]
        filter: OperatorFilter,
        limit: Option<u32>,
        /// The time a booking form is working on: the view then says who is free then.
        free: Option<FreeQuery>,
    },
    Therapist,
    Driver,
    Scheduling {
        /// Any day of the week to show; this week when absent.
        week: Option<NaiveDate>,
        /// As for the operator's: who is free at the time a booking form is working on.
        free: Option<FreeQuery>,
    },
    Messages {
        peer: Option<Id>,
    },
    /// Staff accounts (administrators).
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorFilter {
    #[default]
    All,
    /// Requested, declined, or completed and not paid yet.
    Attention,
    Today,
    /// Not completed and not cancelled.
    Open,
}

/// What a dashboard shows, read at cache sequence `seq`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewData {
    /// Read before the rows: a change batch with `to > seq` may not be in this view yet.
    pub seq: u64,
    /// The record kinds this view reads; changes to other kinds do not concern it.
    pub kinds: Vec<RecordKind>,
    pub status: StatusPayload,
    /// The clinic's local date.
    pub today: NaiveDate,
    #[serde(flatten)]
    pub body: ViewBody,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ViewBody {
    Operator(OperatorView),
    Own(OwnView),
    Scheduling(SchedulingView),
    Messages(MessagesView),
    Admin(AdminView),
}

/// Every staff account, as the Staff dashboard lists it, with the roles an account can
/// have (in the protocol's order) and their words.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminView {
    /// By name; disabled accounts too.
    pub staff: Vec<StaffRow>,
    pub roles: Vec<RoleDto>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StaffRow {
    pub record: Staff,
    /// `active`, `disabled`, or `must_change_password` (a one-time password not replaced
    /// yet), and how the dashboard says it.
    pub state: &'static str,
    pub state_label: &'static str,
    /// The signed-in administrator's own account.
    pub me: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleDto {
    pub value: Role,
    pub label: &'static str,
}

/// A staff account to make (`create_staff`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewStaffArgs {
    pub username: String,
    pub display_name: String,
    pub roles: Vec<Role>,
}

/// What the Staff dashboard's actions answer: the account as the server has it now, and a
/// one-time password when one was just made (creating an account, resetting a password),
/// to be shown once.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StaffAnswer {
    pub staff: Staff,
    pub one_time_password: Option<String>,
}

/// Written by hand so that the one-time password never reaches a log.
impl std::fmt::Debug for StaffAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffAnswer")
            .field("staff", &self.staff)
            .field(
                "one_time_password",
                &self.one_time_password.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorView {
    pub counts: CountsDto,
    /// Newest first, at most the asked limit.
    pub bookings: Vec<BookingRow>,
    /// More bookings match than were sent.
    pub more: bool,
    pub therapists: Vec<Person>,
    pub drivers: Vec<Person>,
    pub may_create: bool,
    /// Who is free at the time of the request's `free` query (see [`clinic_protocol::free`]).
    pub free: Option<FreeBusy>,
    /// The payments verified today (the clinic's date), pending ones included.
    pub paid_today: PaidTodayDto,
    /// Every enabled driver: on duty or not, and where their run of today is.
    pub driver_board: Vec<DriverRow>,
}

/// Today's takings: how many payments were verified and their sum.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaidTodayDto {
    pub count: u64,
    pub amount_cents: i64,
    /// The sum as the clinic reads it ("1,234.50": [`clinic_protocol::rules::money`]).
    pub amount: String,
    /// What the figure counts, in words, for its tooltip: how many payments, and that only
    /// bookings of the last days are looked at ("2 payments verified today, for bookings
    /// of the last 7 days").
    pub about: String,
}

/// A driver on the operator's Drivers panel.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverRow {
    pub id: Id,
    pub name: String,
    pub on_duty: bool,
    /// The booking of today they are on: the run under way (pickup confirmed, en route,
    /// arrived), else the next one waiting for them; `None` when nothing is left today.
    pub current: Option<DriverRun>,
    /// Their runs of today that take time (not cancelled or declined:
    /// [`BookingStatus::takes_time`]), and how many of them are done (arrived or further
    /// along).
    pub runs_today: u32,
    pub done_today: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverRun {
    pub booking_id: Id,
    pub client_name: String,
    pub address: String,
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub status: BookingStatus,
    pub pending: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CountsDto {
    pub pending_requests: u64,
    pub confirmed_today: u64,
    pub upcoming: u64,
    pub unsynced: u64,
}

/// A therapist's appointments or a driver's runs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnView {
    /// From today on, by time.
    pub upcoming: Vec<BookingRow>,
    /// Before today, the most recent first (one page).
    pub earlier: Vec<BookingRow>,
    /// The user's own availability from today to `slots_through` (therapists only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<Vec<SlotRow>>,
    /// The last day `slots` covers (eight weeks from today, `views::OWN_SLOT_DAYS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots_through: Option<NaiveDate>,
    /// Whether the user is on duty (drivers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_duty: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingView {
    /// The Monday of the week shown.
    pub week: NaiveDate,
    pub days: Vec<NaiveDate>,
    pub lanes: Vec<Lane>,
    /// The week's bookings with no therapist yet (the web intake's, say), by time: the
    /// grid's first lane, where a scheduler assigns them.
    pub unassigned: Vec<BookingRow>,
    /// The user may add availability for someone (the lanes say for whom).
    pub may_manage: bool,
    pub therapists: Vec<Person>,
    pub drivers: Vec<Person>,
    pub may_create: bool,
    /// Who is free at the time of the request's `free` query.
    pub free: Option<FreeBusy>,
}

/// One person's row in the week grid.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lane {
    pub id: Id,
    pub name: String,
    pub manageable: bool,
    pub slots: Vec<SlotRow>,
    pub bookings: Vec<BookingRow>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagesView {
    pub conversations: Vec<ConversationDto>,
    /// The conversation shown: the one asked for, or the most recent.
    pub peer: Option<Id>,
    /// Oldest first.
    pub thread: Vec<MessageRow>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationDto {
    pub peer: PersonRef,
    pub last: Option<MessageRow>,
    pub unread: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PersonRef {
    pub id: Id,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Person {
    pub id: Id,
    pub name: String,
    pub roles: Vec<Role>,
}

/// A booking with what this user may do to it from this dashboard.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingRow {
    pub record: Booking,
    pub pending: bool,
    /// The life-cycle actions the rules allow this user now and this dashboard offers.
    pub actions: Vec<BookingAction>,
    /// The user may reschedule and reassign it here.
    pub editable: bool,
    pub therapist_name: Option<String>,
    pub driver_name: Option<String>,
    /// The verified payment in words, for everyone who sees the booking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paid: Option<PaidDto>,
    /// Why and by whom it was cancelled, for everyone who sees the booking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<CancelledDto>,
}

/// A booking's verified payment as a row shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaidDto {
    /// "120.50"
    pub amount: String,
    /// "Card"
    pub method: &'static str,
    pub reference: String,
    /// Who verified it (their name).
    pub by: String,
    pub at: DateTime<Utc>,
}

/// A booking's cancellation as a row shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelledDto {
    pub reason: String,
    /// Who cancelled it (their name).
    pub by: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotRow {
    pub record: Slot,
    pub pending: bool,
    pub manageable: bool,
    pub staff_name: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRow {
    pub record: Message,
    pub pending: bool,
    pub mine: bool,
}

/// The cache changed: sequence numbers `from..=to`, touching `kinds`. Sent to each window
/// on its `load` channel with what changed in its view (see [`crate::watch`]); on `reset`
/// every window loads its view again.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangesPayload {
    pub from: u64,
    pub to: u64,
    pub kinds: Vec<RecordKind>,
    /// Everything was replaced (a resync from a snapshot).
    pub reset: bool,
    /// When the backend sent the batch, in milliseconds since the Unix epoch, and how many
    /// milliseconds before that it began reading the windows' views: the window benchmark
    /// splits a change's way to a window at these points.
    pub at: f64,
    pub views_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    Online,
    Syncing,
    Offline,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusPayload {
    pub state: SyncState,
    pub pending: u64,
    pub oldest_pending_secs: Option<u64>,
    pub lag: u64,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The server ended the session (expired or revoked): sign in again to sync.
    pub session_expired: bool,
    /// An administrator disabled the account: nothing syncs, unsent changes are kept.
    pub account_disabled: bool,
    /// The server's address, and what it says it is (`clinic-server/0.1.0`) since the
    /// feed last connected.
    pub server: String,
    pub server_version: Option<String>,
    /// The first changes waiting to go, oldest first: at most `clinic_sync::OUTBOX_SHOWN`
    /// of `pending`.
    pub outbox: Vec<PendingDto>,
    pub notifications: NotificationsDto,
}

/// A change waiting in the outbox, as the sync panel lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingDto {
    pub mutation_id: Uuid,
    /// The change in words: "Accept a booking", "Message to Ana: Running late".
    pub what: String,
    pub queued_at: DateTime<Utc>,
    /// The window it was made in: its title ("My appointments") and its label.
    pub window: Option<String>,
    pub window_label: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    Working,
    Unavailable,
    /// Not known yet (the notification service has not answered).
    Unknown,
}

/// Whether desktop notifications work, with a sentence saying so.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationsDto {
    pub state: NotificationState,
    pub words: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectionPayload {
    /// The window that tells the user: the one the change was made in, or another of its
    /// kind when that one is gone (after a restart, say).
    pub origin: Option<String>,
    pub mutation_id: Uuid,
    pub code: ErrorCode,
    pub message: String,
    /// Where the record stands now, in a sentence ("Booking for Ana is now confirmed.").
    pub detail: Option<String>,
    /// The day the booking or slot the change was about is on now, when there is one: a
    /// window showing another week goes there to reopen the change.
    pub on: Option<NaiveDate>,
    /// The refused change, with every value the user typed: reopening its form fills it in.
    pub mutation: Mutation,
    /// The form that edits such a change, when one does (see [`Reopen`]); the window
    /// offers "Reopen" with it filled in. Such a refusal stays until the user dismisses or
    /// reopens it: what they typed is not dropped on a timer.
    pub reopen: Option<Reopen>,
    /// The kind of window the change was made in, when `origin` is a window of another
    /// kind (that one is closed) and the user may open one: `origin` offers to open it, and
    /// the new window tells the refusal with its form.
    pub open: Option<WindowDto>,
}

/// The form a refused change is reopened in, filled with its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reopen {
    NewBooking,
    Assign,
    Reschedule,
    NewSlot,
    EditSlot,
    /// The cancel dialog, with the reason typed.
    CancelBooking,
    /// The payment dialog, with the amount, method and reference typed.
    VerifyPayment,
}

impl Reopen {
    /// The dialog life-cycle step `action` is taken in, when it needs more than the click
    /// (a reason, the payment's details): its change is then the one [`Reopen::of`] names.
    pub fn for_step(action: BookingAction) -> Option<Reopen> {
        match action {
            BookingAction::Cancel => Some(Reopen::CancelBooking),
            BookingAction::VerifyPayment => Some(Reopen::VerifyPayment),
            _ => None,
        }
    }

    /// The form for `mutation`, if it was made in one (a life-cycle step is a click).
    pub fn of(mutation: &Mutation) -> Option<Reopen> {
        match mutation {
            Mutation::CreateBooking { .. } => Some(Reopen::NewBooking),
            Mutation::AssignBooking { .. } => Some(Reopen::Assign),
            Mutation::RescheduleBooking { .. } => Some(Reopen::Reschedule),
            Mutation::CreateSlot { .. } => Some(Reopen::NewSlot),
            Mutation::UpdateSlot { .. } => Some(Reopen::EditSlot),
            Mutation::CancelBooking { .. } => Some(Reopen::CancelBooking),
            Mutation::VerifyPayment { .. } => Some(Reopen::VerifyPayment),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NoticePayload {
    pub title: String,
    pub body: String,
    /// The dashboard kind the news belongs to.
    pub kind: String,
    /// The one window that shows it (its label), or every window when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

#[cfg(test)]
mod tests {
    const IPC_JS: &str = include_str!("../ui/js/ipc.js");

    #[test]
    fn the_ui_knows_every_event_and_command_name() {
        for name in super::EVENTS.iter().chain(super::COMMANDS) {
            assert!(
                IPC_JS.contains(&format!("\"{name}\"")),
                "ui/js/ipc.js lacks {name}"
            );
        }
    }

    #[test]
    fn a_view_request_names_its_dashboard() {
        let r: super::ViewRequest =
            serde_json::from_str(r#"{"dashboard":"operator","filter":"today"}"#).unwrap();
        assert_eq!(
            r,
            super::ViewRequest::Operator {
                filter: super::OperatorFilter::Today,
                limit: None,
                free: None,
            }
        );
        let r: super::ViewRequest = serde_json::from_str(r#"{"dashboard":"therapist"}"#).unwrap();
        assert_eq!(r, super::ViewRequest::Therapist);
        // A booking form's time rides on its dashboard's view.
        let r: super::ViewRequest = serde_json::from_str(
            r#"{"dashboard":"scheduling","free":{"date":"2026-12-01","start":"10:00:00","end":"11:00:00","booking":null}}"#,
        )
        .unwrap();
        let super::ViewRequest::Scheduling {
            week: None,
            free: Some(free),
        } = r
        else {
            panic!("{r:?}");
        };
        assert_eq!(
            free.start,
            chrono::NaiveTime::from_hms_opt(10, 0, 0).unwrap()
        );
        assert!(serde_json::from_str::<super::ViewRequest>(
            r#"{"dashboard":"operator","free":{"date":"2026-12-01","start":"10:00:00","end":"11:00:00","x":1}}"#
        )
        .is_err());
        let r: super::ViewRequest = serde_json::from_str(r#"{"dashboard":"admin"}"#).unwrap();
        assert_eq!(r, super::ViewRequest::Admin);
        assert!(serde_json::from_str::<super::ViewRequest>(r#"{"dashboard":"staff"}"#).is_err());
    }

    #[test]
    fn words_cover_every_status_and_action() {
        let words = serde_json::to_value(super::Words::new()).unwrap();
        assert_eq!(
            words["statuses"]["pickup_confirmed"]["label"],
            "Pickup confirmed"
        );
        assert_eq!(words["actions"]["verify_payment"], "Verify payment");
        assert_eq!(words["statuses"].as_object().unwrap().len(), 9);
        assert_eq!(words["actions"].as_object().unwrap().len(), 9);
        // The steps taken in a dialog, by the form a refusal reopens.
        assert_eq!(
            words["dialogs"],
            serde_json::json!({ "verify_payment": "verify_payment", "cancel": "cancel_booking" })
        );
        // The text keeps the life-cycle order, which a legend follows.
        let text = serde_json::to_string(&super::Words::new()).unwrap();
        let at = |s: &str| text.find(&format!("\"{s}\":{{")).unwrap();
        assert!(at("requested") < at("confirmed") && at("completed") < at("cancelled"));
        // The payment methods too, in the protocol's order (the dialog's picker follows it).
        let methods: Vec<(&String, &serde_json::Value)> = words["paymentMethods"]
            .as_object()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(methods.len(), clinic_protocol::PaymentMethod::ALL.len());
        assert_eq!(words["paymentMethods"]["insurance"], "Insurance");
        let method_at = |s: &str| text.find(&format!("\"{s}\":\"")).unwrap();
        assert!(
            method_at("cash") < method_at("card") && method_at("insurance") < method_at("other")
        );
        // A driver's duty: the chip and the switch's step.
        assert_eq!(
            words["duty"],
            serde_json::json!({ "on": "On duty", "off": "Off duty", "goOn": "Go on duty", "goOff": "Go off duty" })
        );
    }
}
