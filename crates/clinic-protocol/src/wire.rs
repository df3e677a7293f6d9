//! Frames and request/response bodies: what travels over HTTP and the feed WebSocket.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ErrorCode;
use crate::mutation::Mutation;
use crate::records::{Id, Record, RecordKind, Role, Staff};

/// The protocol version spoken by this crate. A hello with another version is refused with
/// [`ErrorCode::UnsupportedVersion`] and a sentence saying to update the app.
///
/// Records and frames refuse unknown fields, so a client of an older version cannot read
/// what a newer server sends: every new field is a new version. 2 (issue 11): bookings carry
/// `payment_detail` and `cancellation`, staff records `on_duty`.
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest frame a client may send on the feed socket, and largest HTTP request body.
/// Everything a client legitimately sends is far smaller; the limit keeps a hostile peer
/// from making the server buffer megabytes.
pub const MAX_CLIENT_FRAME_BYTES: usize = 16 * 1024;
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;
/// Largest frame the server sends (a catch-up batch). Clients refuse anything bigger.
pub const MAX_SERVER_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// How many changes the server packs into one catch-up frame at most.
pub const MAX_BATCH_CHANGES: usize = 2_000;

/// Longest text accepted in a name, address, phone or service field.
pub const MAX_SHORT_TEXT: usize = 200;
/// Longest booking note or slot note.
pub const MAX_NOTE_TEXT: usize = 2_000;
/// Longest private message.
pub const MAX_MESSAGE_TEXT: usize = 4_000;
/// The largest payment one booking may record, in cents (1,000,000.00): a typing slip
/// (an extra zero or two) is refused rather than summed into the day's takings.
pub const MAX_PAYMENT_CENTS: i64 = 100_000_000;

/// HTTP paths, in one place for server and client.
pub mod paths {
    pub const HEALTHZ: &str = "/healthz";
    pub const LOGIN: &str = "/v1/login";
    pub const LOGOUT: &str = "/v1/logout";
    pub const SNAPSHOT: &str = "/v1/snapshot";
    pub const MUTATIONS: &str = "/v1/mutations";
    pub const INTAKE: &str = "/v1/intake";
    pub const FEED: &str = "/v1/feed";
    /// `POST`: the signed-in user changes their own password ([`PasswordChange`](super::PasswordChange)).
    pub const PASSWORD: &str = "/v1/password";
    /// `GET`: every staff account; `POST`: a new one (administrators only).
    pub const STAFF: &str = "/v1/staff";
    /// `PATCH`: change one account ([`StaffPatch`](super::StaffPatch)); the route's
    /// pattern, see [`staff_member`] for a path.
    pub const STAFF_MEMBER: &str = "/v1/staff/{id}";
    /// `POST`: reset one account's password to a new one-time password; the route's
    /// pattern, see [`staff_password`] for a path.
    pub const STAFF_PASSWORD: &str = "/v1/staff/{id}/password";

    /// The path of one staff account ([`STAFF_MEMBER`]).
    pub fn staff_member(id: crate::Id) -> String {
        format!("{STAFF}/{id}")
    }

    /// The path that resets one account's password ([`STAFF_PASSWORD`]).
    pub fn staff_password(id: crate::Id) -> String {
        format!("{STAFF}/{id}/password")
    }
    /// Header carrying the web booking form's shared key.
    pub const INTAKE_KEY_HEADER: &str = "x-intake-key";
    /// Optional header of `POST /v1/intake`: the form's own id for this submission (a UUID
    /// made when the form is shown will do; 1 to [`MAX_IDEMPOTENCY_KEY`](super::MAX_IDEMPOTENCY_KEY)
    /// visible ASCII characters). The same key again answers with the booking the first
    /// request made, and makes no other; the same key with a different booking is refused
    /// with `conflict`. Keys are remembered for [`IDEMPOTENCY_KEY_HOURS`](super::IDEMPOTENCY_KEY_HOURS).
    pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
    /// Set to `true` on an intake answer that repeats an earlier one (same idempotency key).
    pub const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";
}

/// Longest idempotency key of a web booking, in characters.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// How long the server remembers a web booking's idempotency key (the last 10,000 at most).
pub const IDEMPOTENCY_KEY_HOURS: u32 = 24;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginResponse {
    /// Opaque bearer token for `Authorization: Bearer <token>` and the feed hello.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: Staff,
    /// The password used is a one-time password: this session may only change it
    /// ([`paths::PASSWORD`]) or sign out until then; everything else, the feed included,
    /// answers `password_change_required`. Left out while false (older clients refuse
    /// unknown fields).
    #[serde(default, skip_serializing_if = "is_false")]
    pub must_change_password: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The fewest characters a new password has (`password_too_short` otherwise).
pub const MIN_PASSWORD_CHARS: usize = 10;
/// The most characters a new password has (`invalid_value` otherwise): enough for any
/// passphrase, and a bound on what a password check hashes.
pub const MAX_PASSWORD_CHARS: usize = 200;
/// The most characters of a username.
pub const MAX_USERNAME_CHARS: usize = 64;

/// `POST /v1/password`: the signed-in user's current password and the new one. On success
/// (204) every other session of the user ends; this one goes on, and is no longer limited
/// to changing the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
}

/// `POST /v1/staff`: a new account. Its password is a one-time password the server makes
/// and answers once ([`IssuedPassword`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewStaff {
    pub username: String,
    pub display_name: String,
    pub roles: Vec<Role>,
}

/// `PATCH /v1/staff/{id}`: what to change (absent fields stay), based on `version`, the
/// account's version as the administrator saw it (`conflict` if it has changed since).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<Role>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    pub version: i64,
}

/// An account with the one-time password just made for it (`POST /v1/staff`,
/// `POST /v1/staff/{id}/password`). The server keeps only its hash: this is the one time
/// it can be read.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedPassword {
    pub staff: Staff,
    pub one_time_password: String,
}

/// Written by hand so that the password never reaches a log or a panic message.
impl std::fmt::Debug for IssuedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedPassword")
            .field("staff", &self.staff)
            .field("one_time_password", &"<hidden>")
            .finish()
    }
}

/// `GET /v1/staff`: every account, disabled ones too, as of change `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffList {
    pub seq: u64,
    pub staff: Vec<Staff>,
}

/// Every record the user may see, consistent as of change `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub seq: u64,
    pub user: Staff,
    pub records: Vec<Record>,
}

/// A mutation with the client-generated id that makes it idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MutationRequest {
    pub mutation_id: Uuid,
    pub mutation: Mutation,
}

/// The server's verdict on a mutation. A replay of the same mutation id returns the same
/// outcome again and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum MutationOutcome {
    /// Committed as change `seq`. `record` is the record as stored, `None` after a delete.
    ///
    /// A mutation that finds the record already as it would make it (marking read a
    /// message that is read) is applied without a change: `record` is the record as it is
    /// (same version), `seq` the head it is current at, and no change with this mutation's
    /// id follows on the feed.
    Applied { seq: u64, record: Option<Record> },
    /// Refused. `current` is the record as the server has it now, if it exists and the
    /// user may see it, so the client can show what the record really is.
    Rejected {
        code: ErrorCode,
        message: String,
        current: Option<Record>,
    },
}

/// A booking from the clinic's public web form (`POST /v1/intake` with the intake key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeRequest {
    pub client_name: String,
    pub client_phone: String,
    pub address: String,
    pub service: String,
    pub date: NaiveDate,
    pub start: NaiveTime,
    pub end: NaiveTime,
    #[serde(default)]
    pub notes: String,
}

/// The body of every HTTP error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

/// What a client sends on the feed socket. Exactly one hello, first; anything else is an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Hello {
        protocol: u32,
        token: String,
        /// The last change sequence number the client has applied (0 for none).
        cursor: u64,
    },
}

/// Why the server asks a client to drop its feed position and fetch a fresh snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResyncReason {
    /// The cursor is older than the oldest change the server keeps.
    CursorTooOld,
    /// The cursor is ahead of the server's head (the server's database was replaced).
    CursorAhead,
    /// The client did not read its feed fast enough; its bounded queue overflowed.
    TooSlow,
    /// The user's own account changed (roles, name, or it was enabled again): what they
    /// may see is judged again, so a snapshot filtered by the account as it is now replaces
    /// the copy.
    AccountChanged,
}

impl ResyncReason {
    /// Every reason, in a fixed order (the metrics count them so).
    pub const ALL: [ResyncReason; 4] = [
        ResyncReason::CursorTooOld,
        ResyncReason::CursorAhead,
        ResyncReason::TooSlow,
        ResyncReason::AccountChanged,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ResyncReason::CursorTooOld => "cursor_too_old",
            ResyncReason::CursorAhead => "cursor_ahead",
            ResyncReason::TooSlow => "too_slow",
            ResyncReason::AccountChanged => "account_changed",
        }
    }

    /// This reason's place in [`ResyncReason::ALL`]. An exhaustive match, so a new reason
    /// does not compile until it has a place there.
    pub const fn index(self) -> usize {
        match self {
            ResyncReason::CursorTooOld => 0,
            ResyncReason::CursorAhead => 1,
            ResyncReason::TooSlow => 2,
            ResyncReason::AccountChanged => 3,
        }
    }
}

/// What the server sends on the feed socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerFrame {
    /// The hello was accepted; changes after the client's cursor follow.
    Welcome {
        protocol: u32,
        user_id: Id,
        head: u64,
    },
    /// Changes in ascending `seq` order. After applying them the client is current up to
    /// `upto` (>= the last change's seq): changes in between were not for this user.
    Changes { changes: Vec<Change>, upto: u64 },
    /// Sent when idle. Everything up to `head` that is visible to this user has been sent,
    /// so the client may move its cursor to `head`.
    Heartbeat { head: u64 },
    /// The client must fetch a snapshot and reconnect from the snapshot's seq.
    Resync {
        reason: ResyncReason,
        message: String,
    },
    /// The server refuses the connection or a frame; the socket closes after it.
    Error { code: ErrorCode, message: String },
}

/// One entry of the change log as a user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// Global, gap-free sequence number of the committed change.
    pub seq: u64,
    /// The staff member who made it; `None` for the web intake.
    pub actor: Option<Id>,
    /// The mutation that caused it, so its author can match it with its outbox.
    pub mutation_id: Option<Uuid>,
    pub op: ChangeOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChangeOp {
    /// The record now looks like this (created or changed).
    Upsert { record: Record },
    /// The record is gone for this user: deleted, or no longer theirs to see
    /// (a booking reassigned to another therapist).
    Remove { kind: RecordKind, id: Id },
}

impl ChangeOp {
    pub fn target(&self) -> (RecordKind, Id) {
        match self {
            ChangeOp::Upsert { record } => (record.kind(), record.id()),
            ChangeOp::Remove { kind, id } => (*kind, *id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resync_reason_has_its_place_and_its_wire_name() {
        for (i, reason) in ResyncReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                serde_json::Value::from(reason.as_str()),
                "the label is the wire name"
            );
        }
    }
}
