//! Stable error codes. Clients branch on the code, never on the message text.

use serde::{Deserialize, Serialize};

/// Every refusal the server can give, on HTTP and on the feed. The wire form is the
/// snake_case name; new codes may be added, existing ones never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request or frame is not valid JSON, or not the expected shape (unknown field,
    /// unknown message type, wrong field type).
    #[error("malformed request")]
    Malformed,
    /// A field's value is out of range (empty name, end before start, text too long, a date
    /// outside [`crate::rules::date_window`]).
    #[error("invalid value")]
    InvalidValue,
    /// The body or frame is larger than the protocol allows.
    #[error("too large")]
    TooLarge,
    /// The client speaks a protocol version this server does not.
    #[error("unsupported protocol version")]
    UnsupportedVersion,
    /// No token, an unknown token, an expired or revoked token, or wrong credentials.
    #[error("unauthorized")]
    Unauthorized,
    /// The user's roles do not allow this action on this record.
    #[error("forbidden")]
    Forbidden,
    /// No such endpoint, or no such record (as far as the user may see).
    #[error("not found")]
    NotFound,
    /// The endpoint exists but not with this HTTP method (`GET /v1/mutations`); the
    /// answer's `Allow` header lists the methods it takes.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The record changed since the version the client based its change on.
    #[error("stale version")]
    StaleVersion,
    /// The booking's status does not allow this step.
    #[error("invalid transition")]
    InvalidTransition,
    /// The therapist already has a confirmed booking overlapping this time.
    #[error("double booked")]
    DoubleBooked,
    /// The booking is not inside the therapist's availability, or a change to availability
    /// would leave a booking the therapist took on outside it.
    #[error("outside availability")]
    OutsideAvailability,
    /// A record with this id already exists, or a mutation id (or a web booking's
    /// idempotency key) was reused for another mutation (another booking).
    #[error("conflict")]
    Conflict,
    /// Too many attempts (sign-ins, web bookings); try again later.
    #[error("rate limited")]
    RateLimited,
    /// The web intake key is missing or wrong.
    #[error("bad intake key")]
    BadIntakeKey,
    #[error("internal error")]
    Internal,
    /// Sign-in to a server that has no staff account yet: the first administrator is made
    /// at the server's console (`clinic-server staff add ... --roles admin`).
    #[error("no staff accounts yet")]
    NoStaff,
    /// The account was disabled by an administrator: sign-in is refused, and its sessions
    /// (feeds included) end with this code rather than `unauthorized`.
    #[error("account disabled")]
    AccountDisabled,
    /// The session's password is a one-time password: only `POST /v1/password` (and
    /// logout) is answered until it is changed; the feed is refused with this code.
    #[error("password change required")]
    PasswordChangeRequired,
    /// A new password shorter than [`crate::wire::MIN_PASSWORD_CHARS`].
    #[error("password too short")]
    PasswordTooShort,
    /// The current password given to change it is wrong.
    #[error("wrong password")]
    WrongPassword,
    /// Another account already has this username.
    #[error("username taken")]
    UsernameTaken,
    /// The change would leave the clinic without an enabled administrator.
    #[error("last admin")]
    LastAdmin,
}

impl ErrorCode {
    /// Every code, in a fixed order: the metrics list them so, and tests walk them.
    pub const ALL: [ErrorCode; 23] = [
        ErrorCode::Malformed,
        ErrorCode::InvalidValue,
        ErrorCode::TooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::StaleVersion,
        ErrorCode::InvalidTransition,
        ErrorCode::DoubleBooked,
        ErrorCode::OutsideAvailability,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::BadIntakeKey,
        ErrorCode::Internal,
        ErrorCode::NoStaff,
        ErrorCode::AccountDisabled,
        ErrorCode::PasswordChangeRequired,
        ErrorCode::PasswordTooShort,
        ErrorCode::WrongPassword,
        ErrorCode::UsernameTaken,
        ErrorCode::LastAdmin,
    ];

    /// This code's place in [`ErrorCode::ALL`]. An exhaustive match, so a new code does not
    /// compile until it has a place there.
    pub const fn index(self) -> usize {
        match self {
            ErrorCode::Malformed => 0,
            ErrorCode::InvalidValue => 1,
            ErrorCode::TooLarge => 2,
            ErrorCode::UnsupportedVersion => 3,
            ErrorCode::Unauthorized => 4,
            ErrorCode::Forbidden => 5,
            ErrorCode::NotFound => 6,
            ErrorCode::MethodNotAllowed => 7,
            ErrorCode::StaleVersion => 8,
            ErrorCode::InvalidTransition => 9,
            ErrorCode::DoubleBooked => 10,
            ErrorCode::OutsideAvailability => 11,
            ErrorCode::Conflict => 12,
            ErrorCode::RateLimited => 13,
            ErrorCode::BadIntakeKey => 14,
            ErrorCode::Internal => 15,
            ErrorCode::NoStaff => 16,
            ErrorCode::AccountDisabled => 17,
            ErrorCode::PasswordChangeRequired => 18,
            ErrorCode::PasswordTooShort => 19,
            ErrorCode::WrongPassword => 20,
            ErrorCode::UsernameTaken => 21,
            ErrorCode::LastAdmin => 22,
        }
    }

    /// The HTTP status a server answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Malformed
            | ErrorCode::InvalidValue
            | ErrorCode::UnsupportedVersion
            | ErrorCode::PasswordTooShort => 400,
            ErrorCode::Unauthorized | ErrorCode::BadIntakeKey => 401,
            // Not 401: the session is valid (or the password was right), and a client must
            // not take these for a session that ended by itself.
            ErrorCode::Forbidden
            | ErrorCode::AccountDisabled
            | ErrorCode::PasswordChangeRequired
            | ErrorCode::WrongPassword => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::StaleVersion
            | ErrorCode::InvalidTransition
            | ErrorCode::DoubleBooked
            | ErrorCode::OutsideAvailability
            | ErrorCode::Conflict
            | ErrorCode::UsernameTaken
            | ErrorCode::LastAdmin => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            // The server works but is not set up: nobody can sign in until someone at its
            // console makes the first account.
            ErrorCode::NoStaff => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::StaleVersion => "stale_version",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::DoubleBooked => "double_booked",
            ErrorCode::OutsideAvailability => "outside_availability",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BadIntakeKey => "bad_intake_key",
            ErrorCode::Internal => "internal",
            ErrorCode::NoStaff => "no_staff",
            ErrorCode::AccountDisabled => "account_disabled",
            ErrorCode::PasswordChangeRequired => "password_change_required",
            ErrorCode::PasswordTooShort => "password_too_short",
            ErrorCode::WrongPassword => "wrong_password",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::LastAdmin => "last_admin",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_place() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.index(), i, "{code:?}");
        }
    }

    #[test]
    fn the_wire_name_is_the_stable_name() {
        let codes = ErrorCode::ALL;
        for code in codes {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::from(code.as_str())
            );
            assert!((400..600).contains(&code.http_status()), "{code:?}");
        }
    }
}
