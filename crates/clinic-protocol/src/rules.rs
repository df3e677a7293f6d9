//! The booking rules as pure functions: who sees what, who may do what, and what a
//! mutation turns a record into.
//!
//! The server runs them to decide; the client runs the very same functions to show a change
//! optimistically before the server has answered. The server then adds the checks that need
//! the whole store ([`check_schedule`], [`check_assignees`], [`check_slot_change`]) and
//! always has the last word.
//!
//! Every applied mutation that changes a record raises its version by exactly one. Clients
//! rely on this to chain several offline changes to the same record. A mutation that finds
//! the record already as it would make it (marking read a message that is read) changes
//! nothing: [`apply`] answers the record as it is ([`Effect::changes`] is false), and the
//! server acknowledges it without a new version or a change-log entry.
//!
//! The current time is an input (`now`), never read here: the server judges with its clock,
//! a client with the time the user made the change, and both get the same answer for it.
//!
//! # Dates a clinic books
//! A booking or an availability slot is dated from yesterday up to two years ahead
//! ([`date_window`]) when it is created, rescheduled or moved; a date outside is refused
//! with `invalid_value` and the window in words ([`DATE_WINDOW_WORDS`]). Records already
//! stored keep their dates: a past booking can still be completed, paid and cancelled.

use chrono::{DateTime, Days, Months, NaiveDate, NaiveTime, TimeDelta, Utc};

use crate::error::ErrorCode;
use crate::mutation::{BookingAction, Mutation, NewBooking, NewMessage, NewSlot};
use crate::records::{
    Booking, BookingStatus, Cancellation, Id, Message, PaymentRecord, PaymentStatus, Record,
    RecordKind, Role, Slot, Staff,
};
use crate::wire::{
    MAX_MESSAGE_TEXT, MAX_NOTE_TEXT, MAX_PASSWORD_CHARS, MAX_PAYMENT_CENTS, MAX_SHORT_TEXT,
    MAX_USERNAME_CHARS, MIN_PASSWORD_CHARS,
};

/// A refusal with a stable code and a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
        }
    }
}

/// What a mutation does to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The record as the mutation leaves it. The record unchanged (equal to the current
    /// one, same version) when there is nothing to do: see [`Effect::changes`].
    Upsert(Record),
    Delete {
        kind: RecordKind,
        id: Id,
    },
}

impl Effect {
    /// Whether this effect changes `current` (the record the mutation targets as it is).
    /// `false` for a mutation that finds the record already as it would make it (marking
    /// read a message that is read): the server then acknowledges it as applied and
    /// commits nothing, neither a new version nor a change-log entry.
    pub fn changes(&self, current: Option<&Record>) -> bool {
        match self {
            Effect::Upsert(record) => current != Some(record),
            Effect::Delete { .. } => current.is_some(),
        }
    }
}

/// How many days before today a booking or slot may be dated (yesterday: a visit entered
/// the morning after).
pub const DATE_WINDOW_DAYS_BEFORE: u64 = 1;
/// How many months after today a booking or slot may be dated (two years).
pub const DATE_WINDOW_MONTHS_AHEAD: u32 = 24;
/// The window of [`date_window`] as a sentence says it.
pub const DATE_WINDOW_WORDS: &str = "from yesterday up to two years ahead";

/// The first and last date (inclusive) a booking or an availability slot may be given at
/// `now`: yesterday up to two years ahead (see [`DATE_WINDOW_WORDS`]).
///
/// Dates are the clinic's wall-clock dates, and the clinic's time zone is not part of the
/// protocol: the window is taken wide enough for every time zone (UTC-12 to UTC+14), so
/// it never refuses a date that is inside it on the clinic's calendar, and a client and the
/// server agree on it whatever their own zones. At the edges it allows up to a day more.
pub fn date_window(now: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
    let earliest_today = (now - TimeDelta::hours(12)).date_naive();
    let latest_today = (now + TimeDelta::hours(14)).date_naive();
    (
        earliest_today
            .checked_sub_days(Days::new(DATE_WINDOW_DAYS_BEFORE))
            .unwrap_or(NaiveDate::MIN),
        latest_today
            .checked_add_months(Months::new(DATE_WINDOW_MONTHS_AHEAD))
            .unwrap_or(NaiveDate::MAX),
    )
}

/// Refuses a `date` outside [`date_window`] for `what` ("A booking", "Availability"), with
/// `invalid_value` and the window in words.
pub fn check_date(what: &str, date: NaiveDate, now: DateTime<Utc>) -> Result<(), Rejection> {
    let (first, last) = date_window(now);
    if (first..=last).contains(&date) {
        Ok(())
    } else {
        Err(Rejection::new(
            ErrorCode::InvalidValue,
            format!("{what} can be dated {DATE_WINDOW_WORDS}, not {date}."),
        ))
    }
}

/// Whether the user's roles let them see every record of this kind.
pub fn sees_all(user: &Staff, kind: RecordKind) -> bool {
    match kind {
        // The staff directory is public inside the clinic: everyone needs names, and the
        // accounts' state with them (a disabled colleague is given no work; nobody can use
        // the fact that someone has yet to change a one-time password without the
        // password). So every staff change reaches every feed, every administrator's too.
        RecordKind::Staff => true,
        RecordKind::Booking | RecordKind::Slot => {
            user.has(Role::Operator) || user.has(Role::Scheduler) || user.has(Role::Admin)
        }
        // Private messages are private, whatever the role.
        RecordKind::Message => false,
    }
}

/// Whether `user` may see `record`: by role, or because it is theirs.
pub fn visible_to(user: &Staff, record: &Record) -> bool {
    sees_all(user, record.kind()) || record.parties().contains(&user.id)
}

/// Whether `user` works as an operator: operators, and administrators who may do all an
/// operator does. Public so that the app (its notifications) asks the same question.
pub fn is_operator(user: &Staff) -> bool {
    user.has(Role::Operator) || user.has(Role::Admin)
}

fn manages_schedule(user: &Staff) -> bool {
    is_operator(user) || user.has(Role::Scheduler)
}

/// Applies `mutation`, made by `user` at `now`, to `current` (the record it targets, if it
/// exists). Checks roles, versions, the life cycle and field values; not the checks that
/// need other records.
pub fn apply(
    user: &Staff,
    mutation: &Mutation,
    current: Option<&Record>,
    now: DateTime<Utc>,
) -> Result<Effect, Rejection> {
    match mutation {
        // The new record is judged before its id is: someone who may not create it learns
        // nothing about which ids exist from the answer.
        Mutation::CreateBooking { booking } => {
            let b = create_booking(user, booking, now)?;
            exists_not(current, "booking")?;
            Ok(Effect::Upsert(Record::Booking(b)))
        }
        Mutation::CreateSlot { slot } => {
            let s = create_slot(user, slot, now)?;
            exists_not(current, "availability slot")?;
            Ok(Effect::Upsert(Record::Slot(s)))
        }
        Mutation::SendMessage { message } => {
            let m = send_message(user, message, now)?;
            exists_not(current, "message")?;
            Ok(Effect::Upsert(Record::Message(m)))
        }
        Mutation::BookingAction {
            version, action, ..
        } => {
            let b = booking_at(user, current, *version)?;
            booking_action(user, b, *action, now).map(|b| Effect::Upsert(Record::Booking(b)))
        }
        Mutation::VerifyPayment {
            version,
            amount_cents,
            method,
            reference,
            ..
        } => {
            let b = booking_at(user, current, *version)?;
            let (status, payment) = step(user, b, BookingAction::VerifyPayment)?;
            let (amount_cents, reference) = check_payment(*amount_cents, reference)?;
            Ok(Effect::Upsert(Record::Booking(Booking {
                status,
                payment,
                payment_detail: Some(PaymentRecord {
                    amount_cents,
                    method: *method,
                    reference,
                    verified_by: user.id,
                    verified_at: now,
                }),
                version: b.version + 1,
                updated_at: now,
                ..b.clone()
            })))
        }
        Mutation::CancelBooking {
            version, reason, ..
        } => {
            let b = booking_at(user, current, *version)?;
            let (status, payment) = step(user, b, BookingAction::Cancel)?;
            let reason = check_cancel_reason(reason)?;
            Ok(Effect::Upsert(Record::Booking(Booking {
                status,
                payment,
                cancellation: Some(Cancellation {
                    reason,
                    by: user.id,
                    at: now,
                }),
                version: b.version + 1,
                updated_at: now,
                ..b.clone()
            })))
        }
        Mutation::SetOnDuty { staff_id, on_duty } => {
            if *staff_id != user.id || !user.has(Role::Driver) {
                return Err(Rejection::new(
                    ErrorCode::Forbidden,
                    "Only a driver can go on or off duty, and only themselves.",
                ));
            }
            let Some(Record::Staff(me)) = current else {
                return Err(not_found("staff account"));
            };
            if me.on_duty == *on_duty {
                // Already so: nothing to do, and nothing to log (see `Effect::changes`).
                return Ok(Effect::Upsert(Record::Staff(me.clone())));
            }
            Ok(Effect::Upsert(Record::Staff(Staff {
                on_duty: *on_duty,
                version: me.version + 1,
                ..me.clone()
            })))
        }
        Mutation::RescheduleBooking {
            version,
            date,
            start,
            end,
            ..
        } => {
            let b = booking_at(user, current, *version)?;
            reschedule(user, b, *date, *start, *end, now)
                .map(|b| Effect::Upsert(Record::Booking(b)))
        }
        Mutation::AssignBooking {
            version,
            therapist_id,
            driver_id,
            ..
        } => {
            let b = booking_at(user, current, *version)?;
            assign(user, b, *therapist_id, *driver_id, now)
                .map(|b| Effect::Upsert(Record::Booking(b)))
        }
        Mutation::UpdateSlot {
            version,
            date,
            start,
            end,
            note,
            ..
        } => {
            let s = slot_at(user, current, *version)?;
            may_manage_slot(user, s.staff_id)?;
            check_times(*start, *end)?;
            // Moved (another date or other times): the new place must be in the window. A
            // new note on a past slot is fine.
            if (*date, *start, *end) != (s.date, s.start, s.end) {
                check_date(AVAILABILITY, *date, now)?;
            }
            check_text("note", note, MAX_NOTE_TEXT, true)?;
            Ok(Effect::Upsert(Record::Slot(Slot {
                date: *date,
                start: *start,
                end: *end,
                note: note.clone(),
                version: s.version + 1,
                ..s.clone()
            })))
        }
        Mutation::DeleteSlot { version, .. } => {
            let s = slot_at(user, current, *version)?;
            may_manage_slot(user, s.staff_id)?;
            Ok(Effect::Delete {
                kind: RecordKind::Slot,
                id: s.id,
            })
        }
        Mutation::MarkRead { .. } => {
            let Some(Record::Message(m)) = current.filter(|r| visible_to(user, r)) else {
                return Err(not_found("message"));
            };
            if m.recipient_id != user.id {
                return Err(Rejection::new(
                    ErrorCode::Forbidden,
                    "Only the recipient can mark a message as read.",
                ));
            }
            if m.read_at.is_some() {
                // Already read: nothing to do, and nothing to log (see `Effect::changes`).
                return Ok(Effect::Upsert(Record::Message(m.clone())));
            }
            Ok(Effect::Upsert(Record::Message(Message {
                read_at: Some(now),
                version: m.version + 1,
                ..m.clone()
            })))
        }
    }
}

/// The life-cycle actions `user` may take on `booking` now, in [`BookingAction::ALL`] order.
///
/// Derived from [`apply`] itself rather than restated, so that what a dashboard offers can
/// never drift from what the server accepts.
pub fn booking_actions(user: &Staff, booking: &Booking) -> Vec<BookingAction> {
    BookingAction::ALL
        .into_iter()
        .filter(|&action| step(user, booking, action).is_ok())
        .collect()
}

/// Whether `user` may reschedule and reassign `booking` now: the checks [`apply`] makes for
/// both, without the new values (which are checked when the change is made).
pub fn may_edit_booking(user: &Staff, booking: &Booking) -> bool {
    manages_schedule(user) && editable(booking, "change").is_ok()
}

/// Whether `user` may create bookings (the checks of [`apply`] that do not depend on the
/// booking's fields).
pub fn may_create_booking(user: &Staff) -> bool {
    manages_schedule(user)
}

/// Whether `user` may add, change and delete the availability of staff member `staff_id`.
pub fn may_manage_slots_of(user: &Staff, staff_id: Id) -> bool {
    may_manage_slot(user, staff_id).is_ok()
}

/// Whether the server must run [`check_schedule`] and [`check_assignees`] on the result of
/// this mutation: whenever the therapist, the time or the acceptance changes.
pub fn needs_schedule_check(mutation: &Mutation) -> bool {
    matches!(
        mutation,
        Mutation::CreateBooking { .. }
            | Mutation::RescheduleBooking { .. }
            | Mutation::AssignBooking { .. }
            | Mutation::BookingAction {
                action: BookingAction::Accept,
                ..
            }
    )
}

/// A therapist is never double-booked, and a booking falls inside their availability.
/// `others` are the therapist's other bookings that day, `slots` their slots that day.
pub fn check_schedule(
    booking: &Booking,
    therapist_name: &str,
    others: &[Booking],
    slots: &[Slot],
) -> Result<(), Rejection> {
    if booking.therapist_id.is_none() || !booking.status.before_session() {
        return Ok(());
    }
    if booking.status.holds_therapist() {
        if let Some(clash) = others.iter().find(|o| {
            o.id != booking.id
                && o.therapist_id == booking.therapist_id
                && o.status.holds_therapist()
                && o.overlaps(booking.date, booking.start, booking.end)
        }) {
            return Err(Rejection::new(
                ErrorCode::DoubleBooked,
                format!(
                    "{therapist_name} already has a confirmed booking at {}–{} on {}.",
                    hm(clash.start),
                    hm(clash.end),
                    clash.date
                ),
            ));
        }
    }
    if !slots.iter().any(|s| {
        Some(s.staff_id) == booking.therapist_id
            && s.covers(booking.date, booking.start, booking.end)
    }) {
        return Err(Rejection::new(
            ErrorCode::OutsideAvailability,
            format!(
                "{therapist_name} is not available {}–{} on {}.",
                hm(booking.start),
                hm(booking.end),
                booking.date
            ),
        ));
    }
    Ok(())
}

/// Whether the server must run [`check_slot_change`] on this mutation: whenever
/// availability is changed or removed.
pub fn needs_slot_check(mutation: &Mutation) -> bool {
    matches!(
        mutation,
        Mutation::UpdateSlot { .. } | Mutation::DeleteSlot { .. }
    )
}

/// A therapist's availability may not shrink, move or go away under a booking they have
/// taken on (confirmed, or further along: [`BookingStatus::holds_therapist`]), which would
/// then stay confirmed outside their availability. A booking still waiting for the
/// therapist does not hold the slot: accepting it checks the availability then.
///
/// `before` is the slot as it is, `after` what the change makes of it (`None`: deleted),
/// `bookings` the therapist's bookings on `before`'s date, `slots` their slots that day
/// (`before` among them is ignored). Only bookings `before` covered are checked, so a
/// booking already outside availability does not block an unrelated change.
pub fn check_slot_change(
    before: &Slot,
    after: Option<&Slot>,
    therapist_name: &str,
    bookings: &[Booking],
    slots: &[Slot],
) -> Result<(), Rejection> {
    let still_covered = |b: &Booking| {
        after
            .into_iter()
            .chain(slots.iter().filter(|s| s.id != before.id))
            .any(|s| s.staff_id == before.staff_id && s.covers(b.date, b.start, b.end))
    };
    let Some(held) = bookings.iter().find(|b| {
        b.therapist_id == Some(before.staff_id)
            && b.status.holds_therapist()
            && before.covers(b.date, b.start, b.end)
            && !still_covered(b)
    }) else {
        return Ok(());
    };
    Err(Rejection::new(
        ErrorCode::OutsideAvailability,
        format!(
            "{therapist_name} has a booking at {}–{} on {} that is {} ({}); move or cancel it \
             before {} this availability.",
            hm(held.start),
            hm(held.end),
            held.date,
            status_words(held.status),
            held.client_name,
            if after.is_some() {
                "changing"
            } else {
                "removing"
            }
        ),
    ))
}

/// The assigned therapist must be a therapist and the driver a driver.
pub fn check_assignees(
    booking: &Booking,
    therapist: Option<&Staff>,
    driver: Option<&Staff>,
) -> Result<(), Rejection> {
    if booking.therapist_id.is_some() && !therapist.is_some_and(|t| t.has(Role::Therapist)) {
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            "The assigned therapist is not a therapist of this clinic.",
        ));
    }
    if booking.driver_id.is_some() && !driver.is_some_and(|d| d.has(Role::Driver)) {
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            "The assigned driver is not a driver of this clinic.",
        ));
    }
    // A disabled account cannot sign in to see the work, so it is given none.
    if let Some(gone) = therapist.into_iter().chain(driver).find(|s| s.disabled) {
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            format!(
                "{}'s account is disabled; assign someone else.",
                gone.display_name
            ),
        ));
    }
    Ok(())
}

/// A payment's amount and reference as [`Mutation::VerifyPayment`] takes them: more than
/// zero and at most [`MAX_PAYMENT_CENTS`], a reference of at most [`MAX_SHORT_TEXT`]
/// characters without line breaks (returned trimmed). Refused with `invalid_value`.
pub fn check_payment(amount_cents: i64, reference: &str) -> Result<(i64, String), Rejection> {
    if amount_cents <= 0 || amount_cents > MAX_PAYMENT_CENTS {
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            format!(
                "A payment is more than 0 and at most {}.",
                money(MAX_PAYMENT_CENTS)
            ),
        ));
    }
    let reference = reference.trim();
    if reference.chars().count() > MAX_SHORT_TEXT || reference.chars().any(char::is_control) {
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            format!(
                "A payment reference is at most {MAX_SHORT_TEXT} characters, without line \
                 breaks or tabs."
            ),
        ));
    }
    Ok((amount_cents, reference.to_owned()))
}

/// A cancellation's reason: not blank, at most [`MAX_SHORT_TEXT`] characters without line
/// breaks (returned trimmed). Refused with `invalid_value`.
pub fn check_cancel_reason(reason: &str) -> Result<String, Rejection> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            "Say why the booking is cancelled: the reason is shown to everyone who sees it.",
        ));
    }
    if reason.chars().count() > MAX_SHORT_TEXT || reason.chars().any(char::is_control) {
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            format!(
                "A cancellation reason is at most {MAX_SHORT_TEXT} characters, without line \
                 breaks or tabs."
            ),
        ));
    }
    Ok(reason.to_owned())
}

/// An amount in cents as the clinic reads it: "1,234.50". No currency sign: the protocol
/// does not know the clinic's currency.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let units = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in units.chars().enumerate() {
        if i > 0 && (units.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{:02}", cents % 100)
}

/// Whether `user` may manage staff accounts (list, create, change, disable, reset
/// passwords): administrators only.
pub fn may_manage_staff(user: &Staff) -> bool {
    user.has(Role::Admin)
}

/// A username: 1 to [`MAX_USERNAME_CHARS`] lowercase ASCII letters, digits, `.`, `-` or
/// `_`, starting with a letter or a digit. Lowercase only, so that "Maria" and "maria"
/// cannot be two accounts, and ASCII, so that no two usernames look alike.
pub fn check_username(username: &str) -> Result<(), Rejection> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
    let starts_well = username
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if starts_well && username.len() <= MAX_USERNAME_CHARS && username.chars().all(allowed) {
        Ok(())
    } else {
        Err(Rejection::new(
            ErrorCode::InvalidValue,
            format!(
                "A username is 1 to {MAX_USERNAME_CHARS} lowercase letters, digits, '.', '-' \
                 or '_', starting with a letter or a digit; {username:?} is not."
            ),
        ))
    }
}

/// A staff member's name as others read it: not blank, at most [`MAX_SHORT_TEXT`]
/// characters, no control characters. Returns it trimmed.
pub fn check_display_name(name: &str) -> Result<String, Rejection> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_SHORT_TEXT
        || name.chars().any(char::is_control)
    {
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            format!("A name is 1 to {MAX_SHORT_TEXT} characters, without line breaks or tabs."),
        ));
    }
    Ok(name.to_owned())
}

/// An account's roles: at least one. Returns them in one order ([`Role`]'s), each once,
/// so that two role sets compare equal when they hold the same roles.
pub fn check_roles(roles: &[Role]) -> Result<Vec<Role>, Rejection> {
    let mut roles = roles.to_vec();
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() {
        let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            format!("An account needs at least one role: {}.", all.join(", ")),
        ));
    }
    Ok(roles)
}

/// A new password: at least [`MIN_PASSWORD_CHARS`] characters (`password_too_short`), at
/// most [`MAX_PASSWORD_CHARS`].
pub fn check_new_password(password: &str) -> Result<(), Rejection> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(Rejection::new(
            ErrorCode::PasswordTooShort,
            format!("A password has at least {MIN_PASSWORD_CHARS} characters."),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            format!("A password has at most {MAX_PASSWORD_CHARS} characters."),
        ));
    }
    Ok(())
}

/// Whether `staff` as a whole still has an enabled administrator: a change to accounts
/// that would leave none is refused (`last_admin`), or nobody could manage accounts from
/// the app again.
pub fn has_enabled_admin<'a>(staff: impl IntoIterator<Item = &'a Staff>) -> bool {
    staff.into_iter().any(|s| s.has(Role::Admin) && !s.disabled)
}

/// How [`check_date`] names what it refuses.
const A_BOOKING: &str = "A booking";
const AVAILABILITY: &str = "Availability";

/// Validates and builds a booking from the web intake form or an operator's form: texts,
/// times, and a date in [`date_window`] at `now`.
pub fn new_booking(
    fields: &NewBooking,
    created_by: Option<Id>,
    now: DateTime<Utc>,
) -> Result<Booking, Rejection> {
    check_text("client name", &fields.client_name, MAX_SHORT_TEXT, false)?;
    check_text("phone", &fields.client_phone, MAX_SHORT_TEXT, true)?;
    check_text("address", &fields.address, MAX_SHORT_TEXT, true)?;
    check_text("service", &fields.service, MAX_SHORT_TEXT, false)?;
    check_text("notes", &fields.notes, MAX_NOTE_TEXT, true)?;
    check_times(fields.start, fields.end)?;
    check_date(A_BOOKING, fields.date, now)?;
    Ok(Booking {
        id: fields.id,
        client_name: fields.client_name.trim().to_owned(),
        client_phone: fields.client_phone.trim().to_owned(),
        address: fields.address.trim().to_owned(),
        service: fields.service.trim().to_owned(),
        date: fields.date,
        start: fields.start,
        end: fields.end,
        therapist_id: fields.therapist_id,
        driver_id: fields.driver_id,
        notes: fields.notes.clone(),
        status: BookingStatus::Requested,
        payment: PaymentStatus::Unpaid,
        created_by,
        created_at: now,
        updated_at: now,
        version: 1,
        payment_detail: None,
        cancellation: None,
    })
}

fn create_booking(
    user: &Staff,
    fields: &NewBooking,
    now: DateTime<Utc>,
) -> Result<Booking, Rejection> {
    if !manages_schedule(user) {
        return Err(forbidden("create bookings"));
    }
    new_booking(fields, Some(user.id), now)
}

fn create_slot(user: &Staff, fields: &NewSlot, now: DateTime<Utc>) -> Result<Slot, Rejection> {
    may_manage_slot(user, fields.staff_id)?;
    check_times(fields.start, fields.end)?;
    check_date(AVAILABILITY, fields.date, now)?;
    check_text("note", &fields.note, MAX_NOTE_TEXT, true)?;
    Ok(Slot {
        id: fields.id,
        staff_id: fields.staff_id,
        date: fields.date,
        start: fields.start,
        end: fields.end,
        note: fields.note.clone(),
        version: 1,
    })
}

fn send_message(
    user: &Staff,
    fields: &NewMessage,
    now: DateTime<Utc>,
) -> Result<Message, Rejection> {
    if fields.recipient_id == user.id {
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            "You cannot send a message to yourself.",
        ));
    }
    check_text("message", &fields.body, MAX_MESSAGE_TEXT, false)?;
    Ok(Message {
        id: fields.id,
        sender_id: user.id,
        recipient_id: fields.recipient_id,
        body: fields.body.clone(),
        sent_at: now,
        read_at: None,
        version: 1,
    })
}

fn may_manage_slot(user: &Staff, staff_id: Id) -> Result<(), Rejection> {
    if manages_schedule(user) || (user.id == staff_id && user.has(Role::Therapist)) {
        Ok(())
    } else {
        Err(forbidden("change another therapist's availability"))
    }
}

fn booking_action(
    user: &Staff,
    b: &Booking,
    action: BookingAction,
    now: DateTime<Utc>,
) -> Result<Booking, Rejection> {
    let (status, payment) = step(user, b, action)?;
    // Judged after the step, so that someone who may not take it hears that first.
    match action {
        BookingAction::VerifyPayment => {
            return Err(Rejection::new(
                ErrorCode::InvalidValue,
                "Verifying a payment records its amount and method (verify_payment).",
            ))
        }
        BookingAction::Cancel => {
            return Err(Rejection::new(
                ErrorCode::InvalidValue,
                "Cancelling a booking needs a reason (cancel_booking).",
            ))
        }
        _ => {}
    }
    Ok(Booking {
        status,
        payment,
        version: b.version + 1,
        updated_at: now,
        ..b.clone()
    })
}

/// Where `action` by `user` takes booking `b`: its next status and payment, or why not.
/// Copies nothing, so that [`booking_actions`] can ask it for every action of every row a
/// dashboard shows.
fn step(
    user: &Staff,
    b: &Booking,
    action: BookingAction,
) -> Result<(BookingStatus, PaymentStatus), Rejection> {
    use BookingStatus as S;
    let my_therapy = b.therapist_id == Some(user.id) && user.has(Role::Therapist);
    let my_run = b.driver_id == Some(user.id) && user.has(Role::Driver);
    let operator = is_operator(user);

    let allowed = match action {
        BookingAction::Accept | BookingAction::Decline => my_therapy,
        BookingAction::ConfirmPickup | BookingAction::StartJourney | BookingAction::MarkArrived => {
            my_run
        }
        BookingAction::StartSession | BookingAction::Complete => my_therapy || operator,
        BookingAction::VerifyPayment | BookingAction::Cancel => operator,
    };
    if !allowed {
        return Err(forbidden(&format!("{} this booking", action.verb())));
    }

    let from = b.status;
    let mut payment = b.payment;
    let status = match (action, from) {
        (BookingAction::Accept, S::Requested) => S::Confirmed,
        (BookingAction::Decline, S::Requested | S::Confirmed) => S::Declined,
        (BookingAction::ConfirmPickup, S::Confirmed) => S::PickupConfirmed,
        (BookingAction::StartJourney, S::PickupConfirmed) => S::EnRoute,
        (BookingAction::MarkArrived, S::EnRoute) => S::Arrived,
        (BookingAction::StartSession, S::Arrived) => S::InSession,
        (BookingAction::StartSession, S::Confirmed) if b.driver_id.is_none() => S::InSession,
        (BookingAction::Complete, S::InSession) => S::Completed,
        (BookingAction::VerifyPayment, S::Completed) if b.payment == PaymentStatus::Unpaid => {
            payment = PaymentStatus::Verified;
            S::Completed
        }
        (BookingAction::Cancel, s) if s.before_session() => S::Cancelled,
        _ => {
            return Err(Rejection::new(
                ErrorCode::InvalidTransition,
                format!(
                    "You cannot {} a booking that is {}{}.",
                    action.verb(),
                    status_words(from),
                    if from == S::Completed && b.payment == PaymentStatus::Verified {
                        " and paid"
                    } else {
                        ""
                    }
                ),
            ))
        }
    };
    Ok((status, payment))
}

fn reschedule(
    user: &Staff,
    b: &Booking,
    date: NaiveDate,
    start: NaiveTime,
    end: NaiveTime,
    now: DateTime<Utc>,
) -> Result<Booking, Rejection> {
    if !manages_schedule(user) {
        return Err(forbidden("reschedule bookings"));
    }
    editable(b, "reschedule")?;
    check_times(start, end)?;
    check_date(A_BOOKING, date, now)?;
    Ok(Booking {
        date,
        start,
        end,
        // A new time needs the therapist's yes again.
        status: BookingStatus::Requested,
        version: b.version + 1,
        updated_at: now,
        ..b.clone()
    })
}

fn assign(
    user: &Staff,
    b: &Booking,
    therapist_id: Option<Id>,
    driver_id: Option<Id>,
    now: DateTime<Utc>,
) -> Result<Booking, Rejection> {
    if !manages_schedule(user) {
        return Err(forbidden("assign bookings"));
    }
    editable(b, "reassign")?;
    let mut status = b.status;
    if therapist_id != b.therapist_id || status == BookingStatus::Declined {
        // A new therapist must accept it themselves.
        status = BookingStatus::Requested;
    } else if driver_id != b.driver_id
        && matches!(
            status,
            BookingStatus::PickupConfirmed | BookingStatus::EnRoute | BookingStatus::Arrived
        )
    {
        // A new driver starts the run from the beginning.
        status = BookingStatus::Confirmed;
    }
    Ok(Booking {
        therapist_id,
        driver_id,
        status,
        version: b.version + 1,
        updated_at: now,
        ..b.clone()
    })
}

fn editable(b: &Booking, verb: &str) -> Result<(), Rejection> {
    if b.status.before_session() {
        Ok(())
    } else {
        Err(Rejection::new(
            ErrorCode::InvalidTransition,
            format!(
                "You cannot {verb} a booking that is {}.",
                status_words(b.status)
            ),
        ))
    }
}

fn booking_at<'a>(
    user: &Staff,
    current: Option<&'a Record>,
    version: i64,
) -> Result<&'a Booking, Rejection> {
    match current.filter(|r| visible_to(user, r)) {
        Some(Record::Booking(b)) => {
            check_version(b.version, version, || {
                format!(
                    "This booking was changed by someone else; it is now {}.",
                    status_words(b.status)
                )
            })?;
            Ok(b)
        }
        _ => Err(not_found("booking")),
    }
}

fn slot_at<'a>(
    user: &Staff,
    current: Option<&'a Record>,
    version: i64,
) -> Result<&'a Slot, Rejection> {
    match current.filter(|r| visible_to(user, r)) {
        Some(Record::Slot(s)) => {
            check_version(s.version, version, || {
                format!(
                    "This availability was changed by someone else; it is now {}–{} on {}.",
                    hm(s.start),
                    hm(s.end),
                    s.date
                )
            })?;
            Ok(s)
        }
        _ => Err(not_found("availability slot")),
    }
}

fn check_version(
    have: i64,
    expected: i64,
    message: impl FnOnce() -> String,
) -> Result<(), Rejection> {
    if have == expected {
        Ok(())
    } else {
        Err(Rejection::new(ErrorCode::StaleVersion, message()))
    }
}

fn exists_not(current: Option<&Record>, what: &str) -> Result<(), Rejection> {
    match current {
        None => Ok(()),
        Some(_) => Err(Rejection::new(
            ErrorCode::Conflict,
            format!("A {what} with this id already exists."),
        )),
    }
}

fn check_times(start: NaiveTime, end: NaiveTime) -> Result<(), Rejection> {
    if start < end {
        Ok(())
    } else {
        Err(Rejection::new(
            ErrorCode::InvalidValue,
            format!(
                "The end ({}) must be after the start ({}).",
                hm(end),
                hm(start)
            ),
        ))
    }
}

fn check_text(field: &str, value: &str, max: usize, may_be_empty: bool) -> Result<(), Rejection> {
    if !may_be_empty && value.trim().is_empty() {
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            format!("The {field} must not be empty."),
        ));
    }
    if value.chars().count() > max {
        return Err(Rejection::new(
            ErrorCode::InvalidValue,
            format!("The {field} is longer than {max} characters."),
        ));
    }
    Ok(())
}

fn forbidden(what: &str) -> Rejection {
    Rejection::new(
        ErrorCode::Forbidden,
        format!("Your role does not allow you to {what}."),
    )
}

fn not_found(what: &str) -> Rejection {
    Rejection::new(
        ErrorCode::NotFound,
        format!("This {what} does not exist (any more)."),
    )
}

/// "14:30": times in messages, without seconds.
pub fn hm(t: NaiveTime) -> String {
    t.format("%H:%M").to_string()
}

/// A driver's duty as a chip reads: "On duty" or "Off duty" (a staff record's `on_duty`).
pub fn duty_label(on_duty: bool) -> &'static str {
    if on_duty {
        "On duty"
    } else {
        "Off duty"
    }
}

/// The step that puts a driver on duty (`true`) or off it: "Go on duty", "Go off duty".
pub fn duty_step(on_duty: bool) -> &'static str {
    if on_duty {
        "Go on duty"
    } else {
        "Go off duty"
    }
}

/// How a status reads in a sentence: "confirmed", "on the way", ...
pub fn status_words(s: BookingStatus) -> &'static str {
    match s {
        BookingStatus::Requested => "waiting for the therapist",
        BookingStatus::Confirmed => "confirmed",
        BookingStatus::Declined => "declined",
        BookingStatus::PickupConfirmed => "awaiting pickup",
        BookingStatus::EnRoute => "on the way",
        BookingStatus::Arrived => "arrived",
        BookingStatus::InSession => "in session",
        BookingStatus::Completed => "completed",
        BookingStatus::Cancelled => "cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::PaymentMethod;
    use uuid::Uuid;

    fn staff(roles: &[Role]) -> Staff {
        Staff {
            id: Uuid::new_v4(),
            username: "u".into(),
            display_name: "U".into(),
            roles: roles.to_vec(),
            version: 1,
            disabled: false,
            must_change_password: false,
            on_duty: false,
        }
    }

    #[test]
    fn accounts_are_checked_before_they_are_made() {
        for good in ["maria", "dr.kim", "lee_2", "0day-shift"] {
            assert!(check_username(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Maria",
            "jos\u{e9}",
            "a b",
            ".dot",
            "-x",
            &"x".repeat(65),
        ] {
            assert_eq!(
                check_username(bad).unwrap_err().code,
                ErrorCode::InvalidValue,
                "{bad:?}"
            );
        }
        assert_eq!(check_display_name("  Dr. Kim ").unwrap(), "Dr. Kim");
        for bad in ["", "   ", "a\nb", &"x".repeat(MAX_SHORT_TEXT + 1)] {
            assert!(check_display_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_roles(&[Role::Admin, Role::Operator, Role::Admin]).unwrap(),
            vec![Role::Operator, Role::Admin]
        );
        assert_eq!(check_roles(&[]).unwrap_err().code, ErrorCode::InvalidValue);
        assert_eq!(
            check_new_password("123456789").unwrap_err().code,
            ErrorCode::PasswordTooShort
        );
        // Characters, not bytes: ten accented letters are a long enough password.
        assert!(check_new_password(&"\u{e9}".repeat(10)).is_ok());
        assert_eq!(
            check_new_password(&"x".repeat(MAX_PASSWORD_CHARS + 1))
                .unwrap_err()
                .code,
            ErrorCode::InvalidValue
        );
    }

    #[test]
    fn only_admins_manage_staff_and_the_last_enabled_admin_is_kept() {
        let admin = staff(&[Role::Admin]);
        let op = staff(&[Role::Operator]);
        assert!(may_manage_staff(&admin) && !may_manage_staff(&op));
        assert!(has_enabled_admin([&admin, &op]));
        let gone = Staff {
            disabled: true,
            ..admin
        };
        assert!(!has_enabled_admin([&gone, &op]));
    }

    #[test]
    fn nobody_disabled_is_given_work() {
        let th = staff(&[Role::Therapist]);
        let dr = Staff {
            disabled: true,
            display_name: "Dan".into(),
            ..staff(&[Role::Driver])
        };
        let b = booking(&th, &dr, BookingStatus::Requested);
        let refused = check_assignees(&b, Some(&th), Some(&dr)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidValue);
        assert!(refused.message.contains("Dan's account is disabled"));
        let dr = Staff {
            disabled: false,
            ..dr
        };
        assert!(check_assignees(&b, Some(&th), Some(&dr)).is_ok());
    }

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    /// A week from now: inside the date window whenever the tests run.
    fn next_week() -> NaiveDate {
        Utc::now().date_naive() + Days::new(7)
    }

    fn booking(therapist: &Staff, driver: &Staff, status: BookingStatus) -> Booking {
        let nb = NewBooking {
            id: Uuid::new_v4(),
            client_name: "Ana".into(),
            client_phone: "555".into(),
            address: "Main St 1".into(),
            service: "Massage".into(),
            date: next_week(),
            start: t(14, 30),
            end: t(15, 30),
            therapist_id: Some(therapist.id),
            driver_id: Some(driver.id),
            notes: String::new(),
        };
        Booking {
            status,
            ..new_booking(&nb, None, Utc::now()).unwrap()
        }
    }

    /// Takes `action`; cancelling and verifying a payment as their own mutations, with a
    /// stock reason and payment (see [`bare`] for the bare step).
    fn act(user: &Staff, b: &Booking, action: BookingAction) -> Result<Booking, Rejection> {
        let (id, version) = (b.id, b.version);
        let m = match action {
            BookingAction::Cancel => Mutation::CancelBooking {
                id,
                version,
                reason: "The client is ill.".into(),
            },
            BookingAction::VerifyPayment => Mutation::VerifyPayment {
                id,
                version,
                amount_cents: 8_000,
                method: PaymentMethod::Cash,
                reference: String::new(),
            },
            _ => Mutation::BookingAction {
                id,
                version,
                action,
            },
        };
        mutate(user, b, &m)
    }

    /// The bare step, as [`Mutation::BookingAction`].
    fn bare(user: &Staff, b: &Booking, action: BookingAction) -> Result<Booking, Rejection> {
        let m = Mutation::BookingAction {
            id: b.id,
            version: b.version,
            action,
        };
        mutate(user, b, &m)
    }

    fn mutate(user: &Staff, b: &Booking, m: &Mutation) -> Result<Booking, Rejection> {
        match apply(user, m, Some(&Record::Booking(b.clone())), Utc::now())? {
            Effect::Upsert(Record::Booking(b)) => Ok(b),
            other => panic!("unexpected effect {other:?}"),
        }
    }

    #[test]
    fn the_whole_life_cycle_by_the_right_roles() {
        let op = staff(&[Role::Operator]);
        let th = staff(&[Role::Therapist]);
        let dr = staff(&[Role::Driver]);
        let mut b = booking(&th, &dr, BookingStatus::Requested);
        let steps = [
            (&th, BookingAction::Accept, BookingStatus::Confirmed),
            (
                &dr,
                BookingAction::ConfirmPickup,
                BookingStatus::PickupConfirmed,
            ),
            (&dr, BookingAction::StartJourney, BookingStatus::EnRoute),
            (&dr, BookingAction::MarkArrived, BookingStatus::Arrived),
            (&op, BookingAction::StartSession, BookingStatus::InSession),
            (&th, BookingAction::Complete, BookingStatus::Completed),
            (&op, BookingAction::VerifyPayment, BookingStatus::Completed),
        ];
        for (i, (who, action, expect)) in steps.into_iter().enumerate() {
            b = act(who, &b, action).unwrap();
            assert_eq!(b.status, expect);
            assert_eq!(
                b.version,
                2 + i as i64,
                "each step bumps the version by one"
            );
        }
        assert_eq!(b.payment, PaymentStatus::Verified);
        let again = act(&op, &b, BookingAction::VerifyPayment).unwrap_err();
        assert_eq!(again.code, ErrorCode::InvalidTransition);
    }

    #[test]
    fn offered_actions_are_exactly_the_ones_apply_accepts() {
        let users = [
            staff(&[Role::Operator]),
            staff(&[Role::Therapist]),
            staff(&[Role::Driver]),
            staff(&[Role::Scheduler]),
            staff(&[Role::Operator, Role::Therapist]),
        ];
        let (th, dr) = (&users[1], &users[2]);
        for status in BookingStatus::ALL {
            let b = booking(th, dr, status);
            for user in &users {
                let offered = booking_actions(user, &b);
                for action in BookingAction::ALL {
                    assert_eq!(
                        offered.contains(&action),
                        act(user, &b, action).is_ok(),
                        "{action:?} on a {status:?} booking for {:?}",
                        user.roles
                    );
                }
            }
        }
        let requested = booking(th, dr, BookingStatus::Requested);
        assert_eq!(
            booking_actions(th, &requested),
            [BookingAction::Accept, BookingAction::Decline]
        );
        assert!(may_edit_booking(&users[3], &requested));
        assert!(!may_edit_booking(th, &requested));
        let done = booking(th, dr, BookingStatus::Completed);
        assert!(!may_edit_booking(&users[0], &done));
    }

    #[test]
    fn who_may_not_create_a_record_learns_nothing_about_its_id() {
        let th = staff(&[Role::Therapist]);
        let dr = staff(&[Role::Driver]);
        let existing = booking(&th, &dr, BookingStatus::Requested);
        let fields = NewBooking {
            id: existing.id,
            client_name: "Eve".into(),
            client_phone: String::new(),
            address: String::new(),
            service: "Massage".into(),
            date: existing.date,
            start: t(9, 0),
            end: t(10, 0),
            therapist_id: None,
            driver_id: None,
            notes: String::new(),
        };
        let m = Mutation::CreateBooking { booking: fields };
        let taken = Some(Record::Booking(existing));
        let now = Utc::now();
        let refused = apply(&th, &m, taken.as_ref(), now).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden, "{refused}");
        let op = staff(&[Role::Operator]);
        let refused = apply(&op, &m, taken.as_ref(), now).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Conflict, "{refused}");
    }

    #[test]
    fn wire_names_are_the_serde_names() {
        for action in BookingAction::ALL {
            assert_eq!(
                serde_json::to_value(action).unwrap(),
                serde_json::json!(action.as_str())
            );
        }
    }

    #[test]
    fn every_action_is_refused_to_every_wrong_role() {
        let th = staff(&[Role::Therapist]);
        let dr = staff(&[Role::Driver]);
        let other_therapist = staff(&[Role::Therapist]);
        let sched = staff(&[Role::Scheduler]);
        for action in BookingAction::ALL {
            for status in BookingStatus::ALL {
                let b = booking(&th, &dr, status);
                for intruder in [&other_therapist, &sched] {
                    let err = act(intruder, &b, action).unwrap_err();
                    // Another therapist does not even see the booking.
                    assert!(
                        matches!(err.code, ErrorCode::Forbidden | ErrorCode::NotFound),
                        "{action:?} {status:?} {err}"
                    );
                }
            }
        }
        let b = booking(&th, &dr, BookingStatus::Requested);
        assert_eq!(
            act(&dr, &b, BookingAction::Accept).unwrap_err().code,
            ErrorCode::Forbidden
        );
        assert_eq!(
            act(&th, &b, BookingAction::Cancel).unwrap_err().code,
            ErrorCode::Forbidden
        );
    }

    #[test]
    fn invalid_transitions_and_stale_versions_are_refused() {
        let th = staff(&[Role::Therapist]);
        let dr = staff(&[Role::Driver]);
        let op = staff(&[Role::Operator]);
        let b = booking(&th, &dr, BookingStatus::Requested);
        assert_eq!(
            act(&dr, &b, BookingAction::StartJourney).unwrap_err().code,
            ErrorCode::InvalidTransition
        );
        let done = booking(&th, &dr, BookingStatus::InSession);
        assert_eq!(
            act(&op, &done, BookingAction::Cancel).unwrap_err().code,
            ErrorCode::InvalidTransition
        );
        let stale = Mutation::BookingAction {
            id: b.id,
            version: b.version - 1,
            action: BookingAction::Accept,
        };
        let err = apply(&th, &stale, Some(&Record::Booking(b)), Utc::now()).unwrap_err();
        assert_eq!(err.code, ErrorCode::StaleVersion);
    }

    #[test]
    fn one_person_with_two_roles_can_do_both_jobs() {
        let owner = staff(&[Role::Operator, Role::Therapist]);
        let dr = staff(&[Role::Driver]);
        let b = booking(&owner, &dr, BookingStatus::Requested);
        let b = act(&owner, &b, BookingAction::Accept).unwrap();
        let b = act(&owner, &b, BookingAction::Cancel).unwrap();
        assert_eq!(b.status, BookingStatus::Cancelled);
    }

    #[test]
    fn reassigning_sends_the_booking_back_and_changes_who_sees_it() {
        let op = staff(&[Role::Operator]);
        let a = staff(&[Role::Therapist]);
        let b_ = staff(&[Role::Therapist]);
        let dr = staff(&[Role::Driver]);
        let b = booking(&a, &dr, BookingStatus::Confirmed);
        let m = Mutation::AssignBooking {
            id: b.id,
            version: b.version,
            therapist_id: Some(b_.id),
            driver_id: b.driver_id,
        };
        let Effect::Upsert(rec) = apply(&op, &m, Some(&Record::Booking(b)), Utc::now()).unwrap()
        else {
            panic!()
        };
        let Record::Booking(nb) = &rec else { panic!() };
        assert_eq!(nb.status, BookingStatus::Requested);
        assert!(!visible_to(&a, &rec));
        assert!(visible_to(&b_, &rec));
        assert!(visible_to(&dr, &rec));
        assert!(visible_to(&op, &rec));
    }

    #[test]
    fn schedule_rules() {
        let th = staff(&[Role::Therapist]);
        let dr = staff(&[Role::Driver]);
        let mut b = booking(&th, &dr, BookingStatus::Confirmed);
        let slot = Slot {
            id: Uuid::new_v4(),
            staff_id: th.id,
            date: b.date,
            start: t(9, 0),
            end: t(17, 0),
            note: String::new(),
            version: 1,
        };
        assert!(check_schedule(&b, "Dr. Reyes", &[], std::slice::from_ref(&slot)).is_ok());
        assert_eq!(
            check_schedule(&b, "Dr. Reyes", &[], &[]).unwrap_err().code,
            ErrorCode::OutsideAvailability
        );
        let mut other = booking(&th, &dr, BookingStatus::Confirmed);
        other.start = t(15, 0);
        other.end = t(16, 0);
        let err = check_schedule(
            &b,
            "Dr. Reyes",
            std::slice::from_ref(&other),
            std::slice::from_ref(&slot),
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::DoubleBooked);
        assert!(
            err.message
                .contains("Dr. Reyes already has a confirmed booking at 15:00"),
            "{}",
            err.message
        );
        other.start = t(15, 30);
        other.end = t(16, 30);
        assert!(
            check_schedule(&b, "Dr. Reyes", &[other], &[slot]).is_ok(),
            "touching ends do not overlap"
        );
        b.status = BookingStatus::Cancelled;
        assert!(check_schedule(&b, "Dr. Reyes", &[], &[]).is_ok());
    }

    #[test]
    fn messages_are_private_and_only_the_recipient_marks_read() {
        let a = staff(&[Role::Operator, Role::Admin]);
        let b = staff(&[Role::Therapist]);
        let c = staff(&[Role::Operator]);
        let m = Mutation::SendMessage {
            message: NewMessage {
                id: Uuid::new_v4(),
                recipient_id: b.id,
                body: "hi".into(),
            },
        };
        let Effect::Upsert(rec) = apply(&a, &m, None, Utc::now()).unwrap() else {
            panic!()
        };
        assert!(visible_to(&a, &rec) && visible_to(&b, &rec) && !visible_to(&c, &rec));
        let read = Mutation::MarkRead { id: rec.id() };
        assert_eq!(
            apply(&a, &read, Some(&rec), Utc::now()).unwrap_err().code,
            ErrorCode::Forbidden
        );
        assert!(apply(&b, &read, Some(&rec), Utc::now()).is_ok());
    }

    #[test]
    fn therapists_manage_only_their_own_slots() {
        let a = staff(&[Role::Therapist]);
        let b = staff(&[Role::Therapist]);
        let s = staff(&[Role::Scheduler]);
        let ns = NewSlot {
            id: Uuid::new_v4(),
            staff_id: a.id,
            date: next_week(),
            start: t(9, 0),
            end: t(12, 0),
            note: String::new(),
        };
        let m = Mutation::CreateSlot { slot: ns };
        assert!(apply(&a, &m, None, Utc::now()).is_ok());
        assert!(apply(&s, &m, None, Utc::now()).is_ok());
        assert_eq!(
            apply(&b, &m, None, Utc::now()).unwrap_err().code,
            ErrorCode::Forbidden
        );
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn the_date_window_is_yesterday_to_two_years_ahead_on_every_clinic_calendar() {
        for now in [
            "2026-06-15T00:30:00Z",
            "2026-06-15T12:00:00Z",
            "2026-06-15T23:30:00Z",
            "2028-02-29T12:00:00Z",
        ] {
            let now = at(now);
            let (first, last) = date_window(now);
            // The clinic's calendar, in every time zone there is.
            for offset in -12..=14 {
                let today = (now + TimeDelta::hours(offset)).date_naive();
                let yesterday = today - Days::new(1);
                let ahead = today.checked_add_months(Months::new(24)).unwrap();
                assert!(
                    first <= yesterday && ahead <= last,
                    "{now} at UTC{offset:+}"
                );
            }
            // And not much more: the window is at most a day wider at each end.
            let utc_today = now.date_naive();
            assert!(first >= utc_today - Days::new(2), "{now}: {first}");
            assert!(
                last <= utc_today.checked_add_months(Months::new(24)).unwrap() + Days::new(1),
                "{now}: {last}"
            );
        }
        let now = at("2026-06-15T12:00:00Z");
        assert_eq!(date_window(now), (date(2026, 6, 14), date(2028, 6, 16)));
        for ok in [date(2026, 6, 14), date(2026, 6, 15), date(2028, 6, 16)] {
            assert!(check_date("A booking", ok, now).is_ok(), "{ok}");
        }
        for refused in [
            date(2001, 1, 1),
            date(2026, 6, 13),
            date(2028, 6, 17),
            date(9999, 12, 31),
        ] {
            let err = check_date("A booking", refused, now).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidValue);
            assert_eq!(
                err.message,
                format!(
                    "A booking can be dated from yesterday up to two years ahead, not {refused}."
                )
            );
        }
    }

    #[test]
    fn bookings_and_slots_are_created_and_moved_only_inside_the_date_window() {
        let now = at("2026-06-15T12:00:00Z");
        let op = staff(&[Role::Operator]);
        let th = staff(&[Role::Therapist]);
        let dr = staff(&[Role::Driver]);
        let far = date(9999, 1, 1);
        let code = |r: Result<Effect, Rejection>| r.map(|_| ()).map_err(|r| r.code);

        let mut nb = NewBooking {
            id: Uuid::new_v4(),
            client_name: "Ana".into(),
            client_phone: String::new(),
            address: String::new(),
            service: "Massage".into(),
            date: far,
            start: t(10, 0),
            end: t(11, 0),
            therapist_id: None,
            driver_id: None,
            notes: String::new(),
        };
        let create = |nb: &NewBooking| Mutation::CreateBooking {
            booking: nb.clone(),
        };
        assert_eq!(
            code(apply(&op, &create(&nb), None, now)),
            Err(ErrorCode::InvalidValue)
        );
        assert_eq!(
            new_booking(&nb, None, now).unwrap_err().code,
            ErrorCode::InvalidValue
        );
        nb.date = date(2026, 6, 20);
        assert_eq!(code(apply(&op, &create(&nb), None, now)), Ok(()));

        let mut b = booking(&th, &dr, BookingStatus::Confirmed);
        b.date = date(2026, 6, 20);
        let reschedule = |to| Mutation::RescheduleBooking {
            id: b.id,
            version: b.version,
            date: to,
            start: t(9, 0),
            end: t(10, 0),
        };
        let current = Record::Booking(b.clone());
        for (to, expect) in [
            (date(2001, 1, 1), Err(ErrorCode::InvalidValue)),
            (date(2030, 1, 1), Err(ErrorCode::InvalidValue)),
            (date(2026, 6, 14), Ok(())),
        ] {
            assert_eq!(
                code(apply(&op, &reschedule(to), Some(&current), now)),
                expect,
                "{to}"
            );
        }

        let new_slot = |on| Mutation::CreateSlot {
            slot: NewSlot {
                id: Uuid::new_v4(),
                staff_id: th.id,
                date: on,
                start: t(9, 0),
                end: t(17, 0),
                note: String::new(),
            },
        };
        assert_eq!(
            code(apply(&th, &new_slot(date(2001, 1, 1)), None, now)),
            Err(ErrorCode::InvalidValue)
        );
        assert_eq!(
            code(apply(&th, &new_slot(date(2026, 7, 1)), None, now)),
            Ok(())
        );

        // A slot from last month keeps its date: a new note is fine, moving it is not.
        let old = Slot {
            id: Uuid::new_v4(),
            staff_id: th.id,
            date: date(2026, 5, 1),
            start: t(9, 0),
            end: t(17, 0),
            note: String::new(),
            version: 1,
        };
        let update = |start, note: &str| Mutation::UpdateSlot {
            id: old.id,
            version: 1,
            date: old.date,
            start,
            end: old.end,
            note: note.into(),
        };
        let current = Record::Slot(old.clone());
        assert_eq!(
            code(apply(&th, &update(t(9, 0), "sick"), Some(&current), now)),
            Ok(())
        );
        assert_eq!(
            code(apply(&th, &update(t(10, 0), ""), Some(&current), now)),
            Err(ErrorCode::InvalidValue)
        );
    }

    #[test]
    fn marking_a_read_message_read_again_changes_nothing() {
        let a = staff(&[Role::Operator]);
        let b = staff(&[Role::Therapist]);
        let sent = apply(
            &a,
            &Mutation::SendMessage {
                message: NewMessage {
                    id: Uuid::new_v4(),
                    recipient_id: b.id,
                    body: "hi".into(),
                },
            },
            None,
            Utc::now(),
        )
        .unwrap();
        let Effect::Upsert(unread) = sent else {
            panic!()
        };
        let read = Mutation::MarkRead { id: unread.id() };
        let first = apply(&b, &read, Some(&unread), Utc::now()).unwrap();
        assert!(first.changes(Some(&unread)));
        let Effect::Upsert(Record::Message(m)) = &first else {
            panic!()
        };
        assert_eq!(m.version, 2);
        let read_at = m.read_at.expect("read now");

        let again_rec = Record::Message(m.clone());
        let again = apply(
            &b,
            &read,
            Some(&again_rec),
            Utc::now() + TimeDelta::hours(1),
        )
        .unwrap();
        assert!(!again.changes(Some(&again_rec)), "{again:?}");
        let Effect::Upsert(Record::Message(m)) = again else {
            panic!()
        };
        assert_eq!((m.version, m.read_at), (2, Some(read_at)));
        // Still only the recipient's to do.
        assert_eq!(
            apply(&a, &read, Some(&again_rec), Utc::now())
                .unwrap_err()
                .code,
            ErrorCode::Forbidden
        );
    }

    #[test]
    fn availability_cannot_shrink_or_go_away_under_a_booking_the_therapist_took_on() {
        let th = staff(&[Role::Therapist]);
        let dr = staff(&[Role::Driver]);
        let mut held = booking(&th, &dr, BookingStatus::Confirmed);
        (held.start, held.end) = (t(14, 30), t(15, 30));
        let slot = Slot {
            id: Uuid::new_v4(),
            staff_id: th.id,
            date: held.date,
            start: t(9, 0),
            end: t(17, 0),
            note: String::new(),
            version: 1,
        };
        let shrunk = |start, end| Slot {
            start,
            end,
            version: 2,
            ..slot.clone()
        };
        let check = |after: Option<&Slot>, bookings: &[Booking], others: &[Slot]| {
            check_slot_change(&slot, after, "Dr. Reyes", bookings, others)
        };
        let all = std::slice::from_ref(&slot);

        let err = check(
            Some(&shrunk(t(9, 0), t(15, 0))),
            std::slice::from_ref(&held),
            all,
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::OutsideAvailability);
        assert_eq!(
            err.message,
            format!(
                "Dr. Reyes has a booking at 14:30–15:30 on {} that is confirmed (Ana); move or \
                 cancel it before changing this availability.",
                held.date
            )
        );
        let err = check(None, std::slice::from_ref(&held), all).unwrap_err();
        assert!(
            err.message.contains("before removing this availability"),
            "{}",
            err.message
        );
        let moved = Slot {
            date: held.date + Days::new(1),
            ..slot.clone()
        };
        assert!(check(Some(&moved), std::slice::from_ref(&held), all).is_err());

        // Still covered: by what is left, or by another slot of theirs that day.
        assert!(check(
            Some(&shrunk(t(14, 0), t(16, 0))),
            std::slice::from_ref(&held),
            all
        )
        .is_ok());
        let other = Slot {
            id: Uuid::new_v4(),
            start: t(13, 0),
            end: t(18, 0),
            ..slot.clone()
        };
        assert!(check(None, std::slice::from_ref(&held), &[slot.clone(), other]).is_ok());

        // Bookings the therapist has not taken on, or no longer holds, do not block.
        for status in BookingStatus::ALL {
            let b = Booking {
                status,
                ..held.clone()
            };
            assert_eq!(
                check(None, std::slice::from_ref(&b), all).is_err(),
                status.holds_therapist(),
                "{status:?}"
            );
        }
        // Nor does one that was outside this slot already.
        let mut outside = held;
        (outside.start, outside.end) = (t(18, 0), t(19, 0));
        assert!(check(None, &[outside], all).is_ok());
    }

    #[test]
    fn a_verified_payment_records_amount_method_reference_and_who_when() {
        let op = staff(&[Role::Operator]);
        let th = staff(&[Role::Therapist]);
        let dr = staff(&[Role::Driver]);
        let done = booking(&th, &dr, BookingStatus::Completed);
        let pay = |amount_cents: i64, reference: &str| Mutation::VerifyPayment {
            id: done.id,
            version: done.version,
            amount_cents,
            method: PaymentMethod::Insurance,
            reference: reference.into(),
        };
        let at = Utc::now();
        let Effect::Upsert(Record::Booking(paid)) = apply(
            &op,
            &pay(12_050, "  Claim 77 "),
            Some(&Record::Booking(done.clone())),
            at,
        )
        .unwrap() else {
            panic!("a booking")
        };
        assert_eq!(paid.payment, PaymentStatus::Verified);
        assert_eq!(
            paid.payment_detail,
            Some(PaymentRecord {
                amount_cents: 12_050,
                method: PaymentMethod::Insurance,
                reference: "Claim 77".into(),
                verified_by: op.id,
                verified_at: at,
            })
        );
        assert_eq!(paid.version, done.version + 1);

        // Bad amounts and references: invalid_value, whoever asks.
        for (amount, reference) in [
            (0, ""),
            (-500, ""),
            (MAX_PAYMENT_CENTS + 1, ""),
            (100, "a\nb"),
            (100, &"r".repeat(MAX_SHORT_TEXT + 1)),
        ] {
            let refused = mutate(&op, &done, &pay(amount, reference)).unwrap_err();
            assert_eq!(
                refused.code,
                ErrorCode::InvalidValue,
                "{amount} {reference:?}"
            );
        }
        assert!(mutate(&op, &done, &pay(MAX_PAYMENT_CENTS, "")).is_ok());
        // Not the operator's: forbidden before the values are looked at.
        assert_eq!(
            mutate(&th, &done, &pay(0, "")).unwrap_err().code,
            ErrorCode::Forbidden
        );
        // Not completed yet: the life cycle says no.
        let early = booking(&th, &dr, BookingStatus::InSession);
        assert_eq!(
            act(&op, &early, BookingAction::VerifyPayment)
                .unwrap_err()
                .code,
            ErrorCode::InvalidTransition
        );
        // The bare step is still offered on the row, but refused without its details.
        assert!(booking_actions(&op, &done).contains(&BookingAction::VerifyPayment));
        assert_eq!(
            bare(&op, &done, BookingAction::VerifyPayment)
                .unwrap_err()
                .code,
            ErrorCode::InvalidValue
        );
        // Stored before payments had details: still read.
        let mut json = serde_json::to_value(&done).unwrap();
        json.as_object_mut().unwrap().remove("payment_detail");
        assert_eq!(serde_json::from_value::<Booking>(json).unwrap(), done);
        assert!(!serde_json::to_string(&done)
            .unwrap()
            .contains("payment_detail"));
    }

    #[test]
    fn a_cancellation_needs_a_reason_and_keeps_it_with_who_and_when() {
        let op = staff(&[Role::Operator]);
        let th = staff(&[Role::Therapist]);
        let dr = staff(&[Role::Driver]);
        let b = booking(&th, &dr, BookingStatus::Confirmed);
        let cancel = |reason: &str| Mutation::CancelBooking {
            id: b.id,
            version: b.version,
            reason: reason.into(),
        };
        let at = Utc::now();
        let Effect::Upsert(Record::Booking(gone)) = apply(
            &op,
            &cancel(" The client is ill. "),
            Some(&Record::Booking(b.clone())),
            at,
        )
        .unwrap() else {
            panic!("a booking")
        };
        assert_eq!(gone.status, BookingStatus::Cancelled);
        assert_eq!(
            gone.cancellation,
            Some(Cancellation {
                reason: "The client is ill.".into(),
                by: op.id,
                at,
            })
        );
        for bad in ["", "   ", "two\nlines", &"x".repeat(MAX_SHORT_TEXT + 1)] {
            assert_eq!(
                mutate(&op, &b, &cancel(bad)).unwrap_err().code,
                ErrorCode::InvalidValue,
                "{bad:?}"
            );
        }
        assert_eq!(
            mutate(&th, &b, &cancel("Mine.")).unwrap_err().code,
            ErrorCode::Forbidden
        );
        assert_eq!(
            act(&op, &gone, BookingAction::Cancel).unwrap_err().code,
            ErrorCode::InvalidTransition
        );
        assert!(booking_actions(&op, &b).contains(&BookingAction::Cancel));
        assert_eq!(
            bare(&op, &b, BookingAction::Cancel).unwrap_err().code,
            ErrorCode::InvalidValue
        );
    }

    #[test]
    fn a_driver_goes_on_and_off_duty_only_themselves() {
        let dr = staff(&[Role::Driver]);
        let other = staff(&[Role::Driver]);
        let op = staff(&[Role::Operator, Role::Admin]);
        let duty = |who: &Staff, of: &Staff, on_duty: bool| {
            apply(
                who,
                &Mutation::SetOnDuty {
                    staff_id: of.id,
                    on_duty,
                },
                Some(&Record::Staff(of.clone())),
                Utc::now(),
            )
        };
        let Effect::Upsert(Record::Staff(on)) = duty(&dr, &dr, true).unwrap() else {
            panic!("a staff record")
        };
        assert!(on.on_duty);
        assert_eq!(on.version, dr.version + 1);
        // Already on duty: nothing changes, nothing is logged.
        let again = duty(&on, &on, true).unwrap();
        assert!(!again.changes(Some(&Record::Staff(on.clone()))));
        let Effect::Upsert(Record::Staff(off)) = duty(&on, &on, false).unwrap() else {
            panic!("a staff record")
        };
        assert!(!off.on_duty && off.version == on.version + 1);
        // Another driver's duty, or anyone who is not a driver: forbidden.
        for (who, of) in [(&dr, &other), (&op, &dr), (&op, &op)] {
            assert_eq!(
                duty(who, of, true).unwrap_err().code,
                ErrorCode::Forbidden,
                "{:?} for {:?}",
                who.roles,
                of.roles
            );
        }
        // Off duty is the default, and is left out of the JSON.
        assert!(!serde_json::to_string(&dr).unwrap().contains("on_duty"));
        assert!(serde_json::to_string(&on)
            .unwrap()
            .ends_with(r#""on_duty":true}"#));
    }

    #[test]
    fn money_reads_as_the_clinic_writes_it() {
        assert_eq!(money(0), "0.00");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(12_050), "120.50");
        assert_eq!(money(123_456_789), "1,234,567.89");
        assert_eq!(money(-100_000), "-1,000.00");
    }
}
