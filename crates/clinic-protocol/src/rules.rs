//! The booking rules as pure functions: who sees what, who may do what, and what a
//! mutation turns a record into.
//!
//! The server runs them to decide; the client runs the very same functions to show a change
//! optimistically before the server has answered. The server then adds the checks that need
//! the whole store ([`check_schedule`], [`check_assignees`]) and always has the last word.
//!
//! Every applied mutation raises the record's version by exactly one. Clients rely on this
//! to chain several offline changes to the same record.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

use crate::error::ErrorCode;
use crate::mutation::{BookingAction, Mutation, NewBooking, NewMessage, NewSlot};
use crate::records::{
    Booking, BookingStatus, Id, Message, PaymentStatus, Record, RecordKind, Role, Slot, Staff,
};
use crate::wire::{MAX_MESSAGE_TEXT, MAX_NOTE_TEXT, MAX_SHORT_TEXT};

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
    Upsert(Record),
    Delete { kind: RecordKind, id: Id },
}

/// Whether the user's roles let them see every record of this kind.
pub fn sees_all(user: &Staff, kind: RecordKind) -> bool {
    match kind {
        // The staff directory is public inside the clinic: everyone needs names.
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

fn is_operator(user: &Staff) -> bool {
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
        Mutation::CreateBooking { booking } => {
            exists_not(current, "booking")?;
            create_booking(user, booking, now).map(|b| Effect::Upsert(Record::Booking(b)))
        }
        Mutation::CreateSlot { slot } => {
            exists_not(current, "availability slot")?;
            create_slot(user, slot).map(|s| Effect::Upsert(Record::Slot(s)))
        }
        Mutation::SendMessage { message } => {
            exists_not(current, "message")?;
            send_message(user, message, now).map(|m| Effect::Upsert(Record::Message(m)))
        }
        Mutation::BookingAction {
            version, action, ..
        } => {
            let b = booking_at(user, current, *version)?;
            booking_action(user, b, *action, now).map(|b| Effect::Upsert(Record::Booking(b)))
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
            Ok(Effect::Upsert(Record::Message(Message {
                read_at: m.read_at.or(Some(now)),
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
pub fn booking_actions(user: &Staff, booking: &Booking, now: DateTime<Utc>) -> Vec<BookingAction> {
    BookingAction::ALL
        .into_iter()
        .filter(|&action| booking_action(user, booking, action, now).is_ok())
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
    Ok(())
}

/// Validates and builds a booking from the web intake form or an operator's form.
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

fn create_slot(user: &Staff, fields: &NewSlot) -> Result<Slot, Rejection> {
    may_manage_slot(user, fields.staff_id)?;
    check_times(fields.start, fields.end)?;
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

    let mut next = b.clone();
    let from = b.status;
    next.status = match (action, from) {
        (BookingAction::Accept, S::Requested) => S::Confirmed,
        (BookingAction::Decline, S::Requested | S::Confirmed) => S::Declined,
        (BookingAction::ConfirmPickup, S::Confirmed) => S::PickupConfirmed,
        (BookingAction::StartJourney, S::PickupConfirmed) => S::EnRoute,
        (BookingAction::MarkArrived, S::EnRoute) => S::Arrived,
        (BookingAction::StartSession, S::Arrived) => S::InSession,
        (BookingAction::StartSession, S::Confirmed) if b.driver_id.is_none() => S::InSession,
        (BookingAction::Complete, S::InSession) => S::Completed,
        (BookingAction::VerifyPayment, S::Completed) if b.payment == PaymentStatus::Unpaid => {
            next.payment = PaymentStatus::Verified;
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
    next.version = b.version + 1;
    next.updated_at = now;
    Ok(next)
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
    use uuid::Uuid;

    fn staff(roles: &[Role]) -> Staff {
        Staff {
            id: Uuid::new_v4(),
            username: "u".into(),
            display_name: "U".into(),
            roles: roles.to_vec(),
            version: 1,
        }
    }

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn booking(therapist: &Staff, driver: &Staff, status: BookingStatus) -> Booking {
        let nb = NewBooking {
            id: Uuid::new_v4(),
            client_name: "Ana".into(),
            client_phone: "555".into(),
            address: "Main St 1".into(),
            service: "Massage".into(),
            date: NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
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

    fn act(user: &Staff, b: &Booking, action: BookingAction) -> Result<Booking, Rejection> {
        let m = Mutation::BookingAction {
            id: b.id,
            version: b.version,
            action,
        };
        match apply(user, &m, Some(&Record::Booking(b.clone())), Utc::now())? {
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
                let offered = booking_actions(user, &b, Utc::now());
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
            booking_actions(th, &requested, Utc::now()),
            [BookingAction::Accept, BookingAction::Decline]
        );
        assert!(may_edit_booking(&users[3], &requested));
        assert!(!may_edit_booking(th, &requested));
        let done = booking(th, dr, BookingStatus::Completed);
        assert!(!may_edit_booking(&users[0], &done));
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
            date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
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
}
