//! The reads the dashboards need, answered from a [`View`] (so offline too, and with
//! pending changes applied).

use chrono::{Datelike, Duration, NaiveDate};
use clinic_protocol::{Booking, BookingStatus, Id, Message, Record, Slot, Staff};

use crate::engine::{View, ViewRecord};

fn bookings(view: &View) -> impl Iterator<Item = (&Booking, bool)> {
    view.records.iter().filter_map(|v| match &v.record {
        Record::Booking(b) => Some((b, v.pending)),
        _ => None,
    })
}

pub fn staff(view: &View) -> Vec<Staff> {
    let mut staff: Vec<Staff> = view
        .records
        .iter()
        .filter_map(|v| match &v.record {
            Record::Staff(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    staff.sort_by(|a, b| a.display_name.cmp(&b.display_name));
    staff
}

fn sorted(mut list: Vec<Booking>) -> Vec<Booking> {
    list.sort_by_key(|b| (b.date, b.start, b.id));
    list
}

pub fn bookings_on(view: &View, day: NaiveDate) -> Vec<Booking> {
    sorted(
        bookings(view)
            .filter(|(b, _)| b.date == day)
            .map(|(b, _)| b.clone())
            .collect(),
    )
}

pub fn bookings_of_therapist(view: &View, therapist: Id) -> Vec<Booking> {
    sorted(
        bookings(view)
            .filter(|(b, _)| b.therapist_id == Some(therapist))
            .map(|(b, _)| b.clone())
            .collect(),
    )
}

pub fn bookings_of_driver(view: &View, driver: Id) -> Vec<Booking> {
    sorted(
        bookings(view)
            .filter(|(b, _)| b.driver_id == Some(driver))
            .map(|(b, _)| b.clone())
            .collect(),
    )
}

pub fn bookings_with_status(view: &View, status: BookingStatus) -> Vec<Booking> {
    sorted(
        bookings(view)
            .filter(|(b, _)| b.status == status)
            .map(|(b, _)| b.clone())
            .collect(),
    )
}

/// The most recently created bookings first.
pub fn recent_bookings(view: &View, limit: usize) -> Vec<Booking> {
    let mut list: Vec<Booking> = bookings(view).map(|(b, _)| b.clone()).collect();
    list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    list.truncate(limit);
    list
}

/// The operator's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Requested or declined: waiting for someone to act.
    pub pending_requests: usize,
    pub confirmed_today: usize,
    /// Every booking that is not cancelled.
    pub total: usize,
    /// Bookings with a change not yet confirmed by the server.
    pub unsynced: usize,
}

pub fn counts(view: &View, today: NaiveDate) -> Counts {
    let mut c = Counts::default();
    for (b, pending) in bookings(view) {
        if matches!(b.status, BookingStatus::Requested | BookingStatus::Declined) {
            c.pending_requests += 1;
        }
        if b.date == today && (b.status.holds_therapist() || b.status == BookingStatus::Completed) {
            c.confirmed_today += 1;
        }
        if b.status != BookingStatus::Cancelled {
            c.total += 1;
        }
        c.unsynced += usize::from(pending);
    }
    c
}

/// A staff member's slots in the week (Monday to Sunday) holding `day`.
pub fn slots_in_week(view: &View, staff: Option<Id>, day: NaiveDate) -> Vec<Slot> {
    let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
    let sunday = monday + Duration::days(6);
    let mut slots: Vec<Slot> = view
        .records
        .iter()
        .filter_map(|v| match &v.record {
            Record::Slot(s)
                if staff.is_none_or(|id| s.staff_id == id)
                    && s.date >= monday
                    && s.date <= sunday =>
            {
                Some(s.clone())
            }
            _ => None,
        })
        .collect();
    slots.sort_by_key(|s| (s.date, s.start, s.id));
    slots
}

/// One conversation: the other person, the last message and how many are unread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub peer: Id,
    pub last: Message,
    pub unread: usize,
}

pub fn conversations(view: &View, me: Id) -> Vec<Conversation> {
    let mut by_peer: std::collections::HashMap<Id, Conversation> = std::collections::HashMap::new();
    for m in messages(view) {
        let peer = if m.sender_id == me {
            m.recipient_id
        } else {
            m.sender_id
        };
        let unread = usize::from(m.recipient_id == me && m.read_at.is_none());
        let entry = by_peer.entry(peer).or_insert_with(|| Conversation {
            peer,
            last: m.clone(),
            unread: 0,
        });
        entry.unread += unread;
        if m.sent_at > entry.last.sent_at {
            entry.last = m.clone();
        }
    }
    let mut list: Vec<Conversation> = by_peer.into_values().collect();
    list.sort_by_key(|c| std::cmp::Reverse(c.last.sent_at));
    list
}

pub fn messages_with(view: &View, me: Id, peer: Id) -> Vec<Message> {
    let mut list: Vec<Message> = messages(view)
        .filter(|m| {
            (m.sender_id == me && m.recipient_id == peer)
                || (m.sender_id == peer && m.recipient_id == me)
        })
        .cloned()
        .collect();
    list.sort_by_key(|m| (m.sent_at, m.id));
    list
}

fn messages(view: &View) -> impl Iterator<Item = &Message> {
    view.records
        .iter()
        .filter_map(|v: &ViewRecord| match &v.record {
            Record::Message(m) => Some(m),
            _ => None,
        })
}
