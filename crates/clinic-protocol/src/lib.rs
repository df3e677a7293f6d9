//! The Clinic Desk protocol: what the clinic server and its desktop clients say to each
//! other. This page is the specification.
//!
//! # Modules
//! - [`records`]: the records the server owns and clients cache (staff, bookings, slots, messages).
//! - [`mutation`]: the changes a client may ask for.
//! - [`free`]: who is free, busy or off at a time, for the booking forms.
//! - [`rules`]: pure functions for visibility, roles and the booking life cycle, run by the
//!   server to decide and by clients to show changes optimistically.
//! - [`wire`]: HTTP bodies, feed frames, paths and limits.
//! - [`error`]: stable error codes.
//!
//! # The model
//! The server keeps the truth and one **change log**: every committed mutation appends one
//! entry with a global, gap-free sequence number (`seq`), in the same transaction as the
//! record change. Every record carries a `version` that each applied mutation raises by one.
//! A client keeps a cache plus a **cursor**: the last `seq` it has applied.
//!
//! Each user sees a filtered view ([`rules::visible_to`]): operators, schedulers and admins
//! every booking and slot; a therapist the bookings assigned to them and their own slots; a
//! driver their own runs; a message only its sender and recipient; everyone the staff list.
//! When a record stops being visible to a user (a booking reassigned from therapist A to B),
//! A's feed carries a [`wire::ChangeOp::Remove`] for it.
//!
//! # A client session, worked through
//! All bodies are JSON. Errors are `{"code": "...", "message": "..."}` ([`wire::ApiError`])
//! with the HTTP status of [`error::ErrorCode::http_status`]: every refusal, including an
//! unknown path (404 `not_found`), a method the endpoint does not take (405
//! `method_not_allowed`, with an `Allow` header), a body over the limit (413 `too_large`),
//! a body that is not the expected JSON whatever its `content-type` (400 `malformed`), and
//! a plain request to the feed's path without a WebSocket upgrade (400 `malformed`).
//!
//! 1. **Login.** `POST /v1/login` `{"username":"maria","password":"..."}` answers
//!    `{"token":"...","expires_at":"...","user":{...}}`. Wrong credentials: 401 `unauthorized`;
//!    too many attempts: 429 `rate_limited`. `POST /v1/logout` with the bearer token revokes it.
//! 2. **Snapshot.** `GET /v1/snapshot` with `Authorization: Bearer <token>` answers
//!    `{"seq":41,"user":{...},"records":[{"kind":"booking",...},...]}`: every record the
//!    user may see, as of change 41. The client replaces its cache and sets its cursor to 41.
//! 3. **Feed.** The client opens ONE WebSocket at `/v1/feed` and sends
//!    `{"type":"hello","protocol":2,"token":"...","cursor":41}`. The server answers
//!    `{"type":"welcome","protocol":2,"user_id":"...","head":45}`, then every later change
//!    the user may see, in order, many per frame when catching up:
//!    `{"type":"changes","changes":[{"seq":43,"actor":"...","mutation_id":"...","op":{"type":"upsert","record":{...}}}],"upto":45}`.
//!    After applying a frame the client's cursor is `upto` (44 and 45 were not for this user).
//!    Live changes follow the same way; when idle the server sends
//!    `{"type":"heartbeat","head":45}`, which also moves the cursor. A client that misses
//!    heartbeats for a few intervals treats the connection as dead and reconnects.
//! 4. **A mutation.** `POST /v1/mutations`
//!    `{"mutation_id":"<uuid>","mutation":{"op":"booking_action","id":"<booking>","version":3,"action":"accept"}}`
//!    answers `{"outcome":"applied","seq":46,"record":{...}}`; the same change also arrives
//!    on the feed as seq 46 with that `mutation_id`. Sending the same `mutation_id` again
//!    returns the same outcome and changes nothing, so a client may replay its outbox freely.
//!    A mutation that finds nothing to change (marking read a message that is already read)
//!    is answered `applied` too, with the record as it is (same version) and the head as
//!    `seq`; it commits no new version and no change, so nothing follows on the feed.
//!    Two steps carry more than the step: verifying a payment
//!    (`{"op":"verify_payment","id":...,"version":7,"amount_cents":4550,"method":"card","reference":"Slip 9"}`,
//!    amount 1 to [`wire::MAX_PAYMENT_CENTS`]) and cancelling
//!    (`{"op":"cancel_booking","id":...,"version":2,"reason":"The client is ill."}`, a reason
//!    of 1 to 200 characters); the server stamps who and when into the booking's
//!    `payment_detail` / `cancellation`, and refuses them as bare `booking_action` steps with
//!    `invalid_value`. A driver goes on or off duty with
//!    `{"op":"set_on_duty","staff_id":"<themselves>","on_duty":true}` (their staff record's
//!    `on_duty`; anyone else's is `forbidden`).
//! 5. **A rejection.** Had someone else changed the booking first:
//!    `{"outcome":"rejected","code":"stale_version","message":"This booking was changed by someone else; it is now confirmed.","current":{...}}`
//!    with HTTP 200: the request was understood, the change refused. The client drops its
//!    optimistic change, shows the message, and the record as `current` says.
//! 6. **A resume.** After a disconnect the client says hello again with its cursor and gets
//!    exactly what it missed. If the cursor is older than the log keeps, or the client was
//!    too slow to keep up, the server sends `{"type":"resync","reason":"cursor_too_old",...}`
//!    and closes; the client fetches a new snapshot and reconnects from its `seq`.
//!
//! Unknown fields, unknown frame types and bodies over the limits in [`wire`] are refused
//! (`malformed`, `too_large`); a hello with another protocol version gets
//! `{"type":"error","code":"unsupported_version",...}` and the socket closes.
//!
//! # The web booking form
//! The web booking form posts an [`wire::IntakeRequest`] to `POST /v1/intake` with the
//! header `x-intake-key`, and gets 201 with the booking; the booking arrives in every
//! operator's feed with no actor.
//! - **One booking per submission.** The form sends an `Idempotency-Key` header
//!   ([`wire::paths::IDEMPOTENCY_KEY_HEADER`]: 1 to 255 visible ASCII characters, e.g. a UUID
//!   made when the form is shown). The same key again, say a double click or a retry after
//!   a lost answer, gets 201 with the booking the first request made, marked
//!   `idempotent-replayed: true`, and makes no second booking and no second change; the
//!   same key with a different booking is refused with 409 `conflict`. The server remembers
//!   a key for 24 hours (the last 10,000 keys at most). Without the header every request
//!   makes a booking.
//! - **A rate limit.** The server takes only so many web bookings a minute from one address
//!   (30 by default; an IPv4 address or an IPv6 /64); more are refused with 429
//!   `rate_limited` until the oldest is a minute old.
//!
//! # Accounts
//! Staff accounts are staff records in the change log like any other: every user's feed
//! carries every change to one (the staff directory, `disabled` and `must_change_password`
//! included, is visible to all; see [`rules::sees_all`]). Administrators manage them over
//! HTTP (the server's `http` module documents the endpoints: `GET`/`POST /v1/staff`,
//! `PATCH /v1/staff/{id}`, `POST /v1/staff/{id}/password`), everyone changes their own
//! password with `POST /v1/password` ([`wire::PasswordChange`]). What a client must handle:
//! - **A one-time password.** A sign-in with one answers `"must_change_password":true`; that
//!   session gets `password_change_required` (403) from everything but `POST /v1/password`
//!   and logout, and the feed refuses its hello with that code, until the password is changed.
//! - **A disabled account.** Sign-in answers `account_disabled` (403), and the account's
//!   feeds end with `{"type":"error","code":"account_disabled",...}` within a second of the
//!   change: unlike `unauthorized`, signing in again will not help. Its outbox is not lost;
//!   it just cannot be sent.
//! - **A changed account.** A change to the user's own account (roles, name, enabled again)
//!   ends their feed with `{"type":"resync","reason":"account_changed",...}`: the client
//!   fetches a snapshot, now filtered by the account as it is, so records they may no longer
//!   see go and newly visible ones arrive.
//! - **No accounts yet.** A server with no staff answers every sign-in with `no_staff`
//!   (503); the first administrator is made at its console with `clinic-server staff add`.
//!
//! # Rules a clinic expects
//! Beyond roles, versions and the life cycle ([`rules`]):
//! - **Dates.** A booking or an availability slot is dated from yesterday up to two years
//!   ahead ([`rules::date_window`]) when it is created (also on the web form), rescheduled,
//!   or moved; anything else is refused with `invalid_value` and the window in words: "A
//!   booking can be dated from yesterday up to two years ahead, not 2001-05-01." The date
//!   is judged at the time of the change (`now` is an input of the rules), so a client
//!   refuses the same thing at once.
//! - **No double booking, no booking outside availability.** A therapist's confirmed
//!   bookings never overlap (`double_booked`), a booking lies inside their availability
//!   (`outside_availability`), and availability cannot be shrunk, moved or deleted from
//!   under a booking they took on (confirmed, or further along): `outside_availability`
//!   with the booking's time, "Dr. Elena Reyes has a booking at 14:30–15:30 on 2026-12-01
//!   that is confirmed (Ana Lopez); move or cancel it before changing this availability."
//!   The server checks these against its committed state ([`rules::check_schedule`],
//!   [`rules::check_slot_change`]); a client's optimistic change may be rejected by them.
//! - **Nothing to do, nothing logged.** Marking read a message that is read is applied
//!   without a new version or a change (see step 4).
//!
//! ```
//! use clinic_protocol::wire::{ClientFrame, ServerFrame, PROTOCOL_VERSION};
//! let hello = ClientFrame::Hello { protocol: PROTOCOL_VERSION, token: "t".into(), cursor: 41 };
//! let json = serde_json::to_string(&hello).unwrap();
//! assert_eq!(json, r#"{"type":"hello","protocol":2,"token":"t","cursor":41}"#);
//! let beat: ServerFrame = serde_json::from_str(r#"{"type":"heartbeat","head":45}"#).unwrap();
//! assert_eq!(beat, ServerFrame::Heartbeat { head: 45 });
//! // Unknown fields are refused rather than silently dropped.
//! assert!(serde_json::from_str::<ServerFrame>(r#"{"type":"heartbeat","head":45,"x":1}"#).is_err());
//! ```

pub mod error;
pub mod free;
pub mod mutation;
pub mod records;
pub mod rules;
pub mod wire;

pub use error::ErrorCode;
pub use mutation::{BookingAction, Mutation, NewBooking, NewMessage, NewSlot};
pub use records::{
    Booking, BookingStatus, Cancellation, Id, Message, PaymentMethod, PaymentRecord, PaymentStatus,
    Record, RecordKind, Role, Slot, Staff,
};
pub use wire::{
    ApiError, Change, ChangeOp, ClientFrame, IntakeRequest, IssuedPassword, LoginRequest,
    LoginResponse, MutationOutcome, MutationRequest, NewStaff, PasswordChange, ResyncReason,
    ServerFrame, Snapshot, StaffList, StaffPatch, PROTOCOL_VERSION,
};
