//! The records the server owns and clients cache: staff, bookings, availability slots, messages.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Every record id is a UUID. Clients generate the ids of what they create, so a record
/// made offline already has its final id and the outbox can refer to it before the server
/// has seen it.
pub type Id = Uuid;

/// A staff member's role. One account may hold several (a small clinic's owner is often
/// operator and therapist at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Scheduler,
    Therapist,
    Driver,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Operator,
        Role::Scheduler,
        Role::Therapist,
        Role::Driver,
        Role::Admin,
    ];

    /// The stable wire name, also used as the SQL column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Scheduler => "scheduler",
            Role::Therapist => "therapist",
            Role::Driver => "driver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// How the app names the role to a person (the Staff dashboard's checkboxes, a role
    /// change's notice).
    pub fn label(self) -> &'static str {
        match self {
            Role::Operator => "Operator",
            Role::Scheduler => "Scheduler",
            Role::Therapist => "Therapist",
            Role::Driver => "Driver",
            Role::Admin => "Administrator",
        }
    }
}

/// The kinds of record. Used in removals and as the cache's table discriminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Staff,
    Booking,
    Slot,
    Message,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Staff => "staff",
            RecordKind::Booking => "booking",
            RecordKind::Slot => "slot",
            RecordKind::Message => "message",
        }
    }

    pub fn parse(s: &str) -> Option<RecordKind> {
        [
            RecordKind::Staff,
            RecordKind::Booking,
            RecordKind::Slot,
            RecordKind::Message,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A staff account, as every signed-in user sees it (the staff directory is public inside
/// the clinic, state included: see [`crate::rules::sees_all`]).
///
/// `disabled` and `must_change_password` came later: they default to false when missing
/// (records stored before them), and are left out of the JSON while false, so that an
/// older client, which refuses unknown fields, still reads every ordinary account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Staff {
    pub id: Id,
    pub username: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    pub version: i64,
    /// An administrator disabled the account: it cannot sign in, its sessions were ended,
    /// and nobody should be given new work under it. Its name stays, for the history.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// The account's password is a one-time password an administrator (or
    /// `clinic-server staff add`) gave out: its sessions may only change it
    /// (`POST /v1/password`) until it is changed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub must_change_password: bool,
    /// A driver is on duty: at work and able to take runs. Drivers set it for themselves
    /// ([`crate::Mutation::SetOnDuty`]); operators see it live on their dashboard.
    #[serde(default, skip_serializing_if = "is_false")]
    pub on_duty: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Staff {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Where a booking is in its life cycle. See [`crate::rules`] for who may move it where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    /// New, waiting for the assigned therapist to accept (or for the operator to assign one).
    Requested,
    /// The therapist accepted.
    Confirmed,
    /// The therapist declined; back to the operator to reassign.
    Declined,
    /// The driver confirmed the pickup.
    PickupConfirmed,
    /// The driver is on the way.
    EnRoute,
    /// The driver arrived at the client's address.
    Arrived,
    /// The session is running.
    InSession,
    Completed,
    Cancelled,
}

impl BookingStatus {
    pub const ALL: [BookingStatus; 9] = [
        BookingStatus::Requested,
        BookingStatus::Confirmed,
        BookingStatus::Declined,
        BookingStatus::PickupConfirmed,
        BookingStatus::EnRoute,
        BookingStatus::Arrived,
        BookingStatus::InSession,
        BookingStatus::Completed,
        BookingStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BookingStatus::Requested => "requested",
            BookingStatus::Confirmed => "confirmed",
            BookingStatus::Declined => "declined",
            BookingStatus::PickupConfirmed => "pickup_confirmed",
            BookingStatus::EnRoute => "en_route",
            BookingStatus::Arrived => "arrived",
            BookingStatus::InSession => "in_session",
            BookingStatus::Completed => "completed",
            BookingStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<BookingStatus> {
        BookingStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The status as a chip or column reads: "Requested", "Pickup confirmed", ... (In a
    /// sentence, see [`crate::rules::status_words`].)
    pub fn label(self) -> &'static str {
        match self {
            BookingStatus::Requested => "Requested",
            BookingStatus::Confirmed => "Confirmed",
            BookingStatus::Declined => "Declined",
            BookingStatus::PickupConfirmed => "Pickup confirmed",
            BookingStatus::EnRoute => "En route",
            BookingStatus::Arrived => "Arrived",
            BookingStatus::InSession => "In session",
            BookingStatus::Completed => "Completed",
            BookingStatus::Cancelled => "Cancelled",
        }
    }

    /// Statuses in which the therapist's time is taken: these may never overlap.
    pub fn holds_therapist(self) -> bool {
        matches!(
            self,
            BookingStatus::Confirmed
                | BookingStatus::PickupConfirmed
                | BookingStatus::EnRoute
                | BookingStatus::Arrived
                | BookingStatus::InSession
        )
    }

    /// Whether a booking in this status takes up its therapist's and driver's time: every
    /// status but cancelled and declined (a declined booking goes back to be reassigned).
    /// The one rule for "who is busy" ([`crate::free::free_busy`]) and for a driver's runs
    /// (the app's Drivers panel). Wider than [`BookingStatus::holds_therapist`], which is what
    /// the server refuses to overlap.
    pub fn takes_time(self) -> bool {
        !matches!(self, BookingStatus::Cancelled | BookingStatus::Declined)
    }

    /// Before the session starts the operator may still cancel, reschedule and reassign.
    pub fn before_session(self) -> bool {
        matches!(
            self,
            BookingStatus::Requested
                | BookingStatus::Confirmed
                | BookingStatus::Declined
                | BookingStatus::PickupConfirmed
                | BookingStatus::EnRoute
                | BookingStatus::Arrived
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Unpaid,
    Verified,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Unpaid => "unpaid",
            PaymentStatus::Verified => "verified",
        }
    }

    pub fn parse(s: &str) -> Option<PaymentStatus> {
        match s {
            "unpaid" => Some(PaymentStatus::Unpaid),
            "verified" => Some(PaymentStatus::Verified),
            _ => None,
        }
    }
}

/// How a client paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Cash,
    Card,
    Insurance,
    Other,
}

impl PaymentMethod {
    pub const ALL: [PaymentMethod; 4] = [
        PaymentMethod::Cash,
        PaymentMethod::Card,
        PaymentMethod::Insurance,
        PaymentMethod::Other,
    ];

    /// The wire name: "cash", "card", ...
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Cash => "cash",
            PaymentMethod::Card => "card",
            PaymentMethod::Insurance => "insurance",
            PaymentMethod::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<PaymentMethod> {
        PaymentMethod::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The method as a form or a row reads: "Cash", "Card", ...
    pub fn label(self) -> &'static str {
        match self {
            PaymentMethod::Cash => "Cash",
            PaymentMethod::Card => "Card",
            PaymentMethod::Insurance => "Insurance",
            PaymentMethod::Other => "Other",
        }
    }
}

/// A verified payment: what was paid, how, and who checked it when. The server stamps
/// `verified_by` and `verified_at` (the user and the time it judges the change at).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRecord {
    /// In the clinic's currency's smallest unit (cents), so that sums are exact.
    pub amount_cents: i64,
    pub method: PaymentMethod,
    /// A receipt, card slip or claim number; may be empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reference: String,
    pub verified_by: Id,
    pub verified_at: DateTime<Utc>,
}

/// Why a booking was cancelled, by whom and when (stamped by the server as for payments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancellation {
    pub reason: String,
    pub by: Id,
    pub at: DateTime<Utc>,
}

/// An appointment: a therapist (and usually a driver) visiting a client on one day.
/// Times are the clinic's local wall-clock time; a booking never spans midnight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Booking {
    pub id: Id,
    pub client_name: String,
    pub client_phone: String,
    pub address: String,
    pub service: String,
    pub date: NaiveDate,
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub therapist_id: Option<Id>,
    pub driver_id: Option<Id>,
    pub notes: String,
    pub status: BookingStatus,
    pub payment: PaymentStatus,
    /// Who created it; `None` for the web intake form.
    pub created_by: Option<Id>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    /// The payment as verified (with `payment` verified). Came later than the rest: missing
    /// in records stored before it, and left out of the JSON while there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_detail: Option<PaymentRecord>,
    /// Why and by whom it was cancelled (with status cancelled); optional as above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation: Option<Cancellation>,
}

impl Booking {
    /// Whether two bookings' times overlap (touching ends do not overlap).
    pub fn overlaps(&self, date: NaiveDate, start: NaiveTime, end: NaiveTime) -> bool {
        self.date == date && self.start < end && start < self.end
    }
}

/// A window of time a therapist is available on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    pub id: Id,
    pub staff_id: Id,
    pub date: NaiveDate,
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub note: String,
    pub version: i64,
}

impl Slot {
    pub fn covers(&self, date: NaiveDate, start: NaiveTime, end: NaiveTime) -> bool {
        self.date == date && self.start <= start && end <= self.end
    }
}

/// A private message between two staff members. Only they ever receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub id: Id,
    pub sender_id: Id,
    pub recipient_id: Id,
    pub body: String,
    pub sent_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
    pub version: i64,
}

/// Any record, tagged with its kind on the wire: `{"kind":"booking", ...fields}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Staff(Staff),
    Booking(Booking),
    Slot(Slot),
    Message(Message),
}

impl Record {
    /// The booking, if this is one (for `filter_map` over mixed records).
    pub fn into_booking(self) -> Option<Booking> {
        match self {
            Record::Booking(b) => Some(b),
            _ => None,
        }
    }

    /// The availability slot, if this is one.
    pub fn into_slot(self) -> Option<Slot> {
        match self {
            Record::Slot(s) => Some(s),
            _ => None,
        }
    }

    /// The message, if this is one.
    pub fn into_message(self) -> Option<Message> {
        match self {
            Record::Message(m) => Some(m),
            _ => None,
        }
    }

    /// The staff member, if this is one.
    pub fn into_staff(self) -> Option<Staff> {
        match self {
            Record::Staff(s) => Some(s),
            _ => None,
        }
    }

    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Staff(_) => RecordKind::Staff,
            Record::Booking(_) => RecordKind::Booking,
            Record::Slot(_) => RecordKind::Slot,
            Record::Message(_) => RecordKind::Message,
        }
    }

    pub fn id(&self) -> Id {
        match self {
            Record::Staff(r) => r.id,
            Record::Booking(r) => r.id,
            Record::Slot(r) => r.id,
            Record::Message(r) => r.id,
        }
    }

    pub fn version(&self) -> i64 {
        match self {
            Record::Staff(r) => r.version,
            Record::Booking(r) => r.version,
            Record::Slot(r) => r.version,
            Record::Message(r) => r.version,
        }
    }

    /// The staff members this record belongs to, beyond the roles that see every record
    /// of its kind (see [`crate::rules::visible_to`]).
    pub fn parties(&self) -> Vec<Id> {
        match self {
            Record::Staff(_) => Vec::new(),
            Record::Booking(b) => b.therapist_id.into_iter().chain(b.driver_id).collect(),
            Record::Slot(s) => vec![s.staff_id],
            Record::Message(m) => vec![m.sender_id, m.recipient_id],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accounts_state_is_optional_on_the_wire_both_ways() {
        // Stored before accounts could be disabled: still read, as enabled.
        let old = r#"{"id":"00000000-0000-0000-0000-000000000007","username":"kim","display_name":"Dr. Jun Kim","roles":["therapist"],"version":1}"#;
        let staff: Staff = serde_json::from_str(old).unwrap();
        assert!(!staff.disabled && !staff.must_change_password);
        // Written as before while the state is the ordinary one, so that an older client,
        // which refuses unknown fields, reads it.
        assert_eq!(serde_json::to_string(&staff).unwrap(), old);
        let disabled = Staff {
            disabled: true,
            ..staff
        };
        let json = serde_json::to_string(&disabled).unwrap();
        assert!(json.ends_with(r#""version":1,"disabled":true}"#), "{json}");
        assert_eq!(serde_json::from_str::<Staff>(&json).unwrap(), disabled);
    }
}
