//! What deserves a native notification, decided without IO.
//!
//! The backend feeds every change the server sent (never the user's own optimistic changes)
//! through [`Newsroom::observe`]; it remembers the last state of the bookings it can have
//! news about so it can tell "assigned to me" or "rescheduled" from any other edit.
//! [`Newsroom::flush`] turns what one batch brought into notifications: one per piece of
//! news, or a single summary when a catch-up brought several, so a user coming back online
//! is not buried.

use std::collections::{HashMap, HashSet};

use chrono::{NaiveDate, NaiveTime};
use clinic_protocol::{Booking, BookingStatus, Id, Message, Record, Role, Staff};
use clinic_sync::BookingQuery;

use crate::windows::WindowKind;

/// One piece of news for the logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum News {
    /// A booking the operator did not make (web intake or another operator).
    NewBooking(Booking),
    AssignedToMe(Booking),
    Cancelled(Booking),
    Rescheduled(Booking),
    /// Operators: a therapist declined a booking, which waits for someone to reassign it.
    Declined(Booking),
    Message(Message),
}

impl News {
    /// The dashboard a click on the notification should open or focus.
    pub fn dashboard(&self, me: &Staff) -> WindowKind {
        match self {
            News::NewBooking(_) | News::Declined(_) => WindowKind::Operator,
            News::Message(_) => WindowKind::Messages,
            News::AssignedToMe(b) | News::Cancelled(b) | News::Rescheduled(b) => {
                if b.therapist_id == Some(me.id) && me.has(Role::Therapist) {
                    WindowKind::Therapist
                } else if b.driver_id == Some(me.id) && me.has(Role::Driver) {
                    WindowKind::Driver
                } else {
                    WindowKind::Operator
                }
            }
        }
    }
}

/// A notification ready to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub summary: String,
    pub body: String,
    pub open: WindowKind,
}

/// Remembers what the user has seen and collects the news of the current batch.
///
/// It remembers only the bookings it can have news about: the user's own (as therapist or
/// driver), which grow only with their own share of the history, and, for operators, those
/// declined now. (It used to keep every booking of the cache, read in full at every start:
/// at 150,000 bookings that was most of the app's growth with history, 612 against 330 MiB
/// PSS in the growth benchmark; BENCHMARKS.md.) A booking new to an operator is told by its
/// first version, which the feed carries for every booking created while the app was away
/// too, since a catch-up replays the log.
#[derive(Debug)]
pub struct Newsroom {
    me: Staff,
    operator: bool,
    /// The user's own bookings as last seen.
    mine: HashMap<Id, Seen>,
    /// For operators: the bookings declined now.
    declined: HashSet<Id>,
    names: HashMap<Id, String>,
    pending: Vec<News>,
}

/// What judging the next change to one of the user's own bookings needs of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    status: BookingStatus,
    when: (NaiveDate, NaiveTime, NaiveTime),
}

impl Newsroom {
    /// The bookings [`Newsroom::new`] needs to know of `me` from the cache: one index range
    /// each, of the user's own bookings or of the declined ones.
    pub fn recalls(me: &Staff) -> Vec<BookingQuery> {
        let mut wants = Vec::new();
        if me.has(Role::Therapist) {
            wants.push(BookingQuery {
                therapist: Some(me.id),
                ..BookingQuery::default()
            });
        }
        if me.has(Role::Driver) {
            wants.push(BookingQuery {
                driver: Some(me.id),
                ..BookingQuery::default()
            });
        }
        if clinic_protocol::rules::is_operator(me) {
            wants.push(BookingQuery {
                statuses: Some(vec![BookingStatus::Declined]),
                ..BookingQuery::default()
            });
        }
        wants
    }

    /// Starts from what the cache holds, which is old news by definition: the staff (for
    /// names) and the bookings [`Newsroom::recalls`] asks for.
    pub fn new<'a>(
        me: Staff,
        staff: impl IntoIterator<Item = &'a Staff>,
        known: impl IntoIterator<Item = &'a Booking>,
    ) -> Newsroom {
        let mut room = Newsroom {
            operator: clinic_protocol::rules::is_operator(&me),
            me,
            mine: HashMap::new(),
            declined: HashSet::new(),
            names: HashMap::new(),
            pending: Vec::new(),
        };
        for s in staff {
            room.names.insert(s.id, s.display_name.clone());
        }
        for b in known {
            room.remember(b);
        }
        room
    }

    fn is_mine(&self, b: &Booking) -> bool {
        let me = &self.me;
        (b.therapist_id == Some(me.id) && me.has(Role::Therapist))
            || (b.driver_id == Some(me.id) && me.has(Role::Driver))
    }

    fn remember(&mut self, b: &Booking) {
        if self.is_mine(b) {
            let seen = Seen {
                status: b.status,
                when: (b.date, b.start, b.end),
            };
            self.mine.insert(b.id, seen);
        } else {
            self.mine.remove(&b.id);
        }
        if self.operator && b.status == BookingStatus::Declined {
            self.declined.insert(b.id);
        } else {
            self.declined.remove(&b.id);
        }
    }

    /// Looks at one change the server sent. `actor` is who made it (`None`: web intake).
    pub fn observe(&mut self, record: &Record, actor: Option<Id>) {
        let news = match record {
            Record::Booking(b) => {
                let news = self.judge_booking(b);
                self.remember(b);
                news
            }
            Record::Staff(s) => {
                self.names.insert(s.id, s.display_name.clone());
                None
            }
            Record::Message(m)
                if m.recipient_id == self.me.id && m.read_at.is_none() && m.version == 1 =>
            {
                Some(News::Message(m.clone()))
            }
            Record::Message(_) | Record::Slot(_) => None,
        };
        if actor == Some(self.me.id) {
            return; // Never news about my own actions, from whichever window or device.
        }
        self.pending.extend(news);
    }

    /// Forgets a record the user can no longer see.
    pub fn forget(&mut self, id: Id) {
        self.mine.remove(&id);
        self.declined.remove(&id);
    }

    /// What a booking's new state is news of, against what was remembered of it.
    fn judge_booking(&self, b: &Booking) -> Option<News> {
        let was = self.mine.get(&b.id);
        if self.operator && b.version == 1 {
            Some(News::NewBooking(b.clone()))
        } else if self.is_mine(b) {
            match was {
                None => Some(News::AssignedToMe(b.clone())),
                Some(p)
                    if b.status == BookingStatus::Cancelled
                        && p.status != BookingStatus::Cancelled =>
                {
                    Some(News::Cancelled(b.clone()))
                }
                Some(p) if p.when != (b.date, b.start, b.end) => Some(News::Rescheduled(b.clone())),
                Some(_) => self.declined_news(b),
            }
        } else {
            self.declined_news(b)
        }
    }

    fn declined_news(&self, b: &Booking) -> Option<News> {
        (self.operator && b.status == BookingStatus::Declined && !self.declined.contains(&b.id))
            .then(|| News::Declined(b.clone()))
    }

    /// The notifications for everything observed since the last flush: each on its own, or
    /// one summary if there were several (a catch-up after being offline).
    pub fn flush(&mut self) -> Vec<Notice> {
        let news = std::mem::take(&mut self.pending);
        match news.len() {
            0 => Vec::new(),
            1 => vec![self.notice(&news[0])],
            _ => vec![self.summary(&news)],
        }
    }

    fn name(&self, id: Option<Id>) -> String {
        id.and_then(|id| self.names.get(&id).cloned())
            .unwrap_or_else(|| "someone".to_owned())
    }

    fn notice(&self, news: &News) -> Notice {
        let when = |b: &Booking| {
            format!(
                "{} {}–{}",
                b.date.format("%a %-d %b"),
                b.start.format("%H:%M"),
                b.end.format("%H:%M")
            )
        };
        let (summary, body) = match news {
            News::NewBooking(b) => (
                "New booking".to_owned(),
                format!("{}: {}, {}", b.client_name, b.service, when(b)),
            ),
            News::AssignedToMe(b) => (
                "Booking assigned to you".to_owned(),
                format!("{}: {}, {}", b.client_name, b.service, when(b)),
            ),
            News::Cancelled(b) => (
                "Booking cancelled".to_owned(),
                match &b.cancellation {
                    // The reason goes to everyone the booking concerns.
                    Some(c) => format!(
                        "{}: {}, {}. {} gave the reason: {}",
                        b.client_name,
                        b.service,
                        when(b),
                        self.name(Some(c.by)),
                        c.reason
                    ),
                    None => format!("{}: {}, {}", b.client_name, b.service, when(b)),
                },
            ),
            News::Declined(b) => (
                "Booking declined".to_owned(),
                format!(
                    "{} declined {}: {}, {}. Assign another therapist.",
                    self.name(b.therapist_id),
                    b.client_name,
                    b.service,
                    when(b)
                ),
            ),
            News::Rescheduled(b) => (
                "Booking rescheduled".to_owned(),
                format!("{} is now {}", b.client_name, when(b)),
            ),
            News::Message(m) => (
                format!("Message from {}", self.name(Some(m.sender_id))),
                m.body.chars().take(160).collect(),
            ),
        };
        Notice {
            summary,
            body,
            open: news.dashboard(&self.me),
        }
    }

    fn summary(&self, news: &[News]) -> Notice {
        let count = |f: fn(&News) -> bool| news.iter().filter(|n| f(n)).count();
        let parts: Vec<String> = [
            (
                count(|n| matches!(n, News::NewBooking(_))),
                "new booking",
                "new bookings",
            ),
            (
                count(|n| matches!(n, News::AssignedToMe(_))),
                "booking assigned to you",
                "bookings assigned to you",
            ),
            (
                count(|n| matches!(n, News::Rescheduled(_))),
                "booking rescheduled",
                "bookings rescheduled",
            ),
            (
                count(|n| matches!(n, News::Cancelled(_))),
                "booking cancelled",
                "bookings cancelled",
            ),
            (
                count(|n| matches!(n, News::Declined(_))),
                "booking declined",
                "bookings declined",
            ),
            (
                count(|n| matches!(n, News::Message(_))),
                "new message",
                "new messages",
            ),
        ]
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
        .collect();
        Notice {
            summary: "While you were away".to_owned(),
            body: parts.join(", "),
            open: news[0].dashboard(&self.me),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, NaiveTime, Utc};
    use clinic_protocol::PaymentStatus;
    use uuid::Uuid;

    fn staff(name: &str, roles: &[Role]) -> Staff {
        Staff {
            id: Uuid::new_v4(),
            username: name.to_lowercase(),
            display_name: name.into(),
            roles: roles.to_vec(),
            version: 1,
            disabled: false,
            must_change_password: false,
            on_duty: false,
        }
    }

    fn booking(therapist: Option<Id>) -> Booking {
        Booking {
            id: Uuid::new_v4(),
            client_name: "Ana Lopez".into(),
            client_phone: String::new(),
            address: String::new(),
            service: "Massage".into(),
            date: NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
            start: NaiveTime::from_hms_opt(14, 30, 0).unwrap(),
            end: NaiveTime::from_hms_opt(15, 30, 0).unwrap(),
            therapist_id: therapist,
            driver_id: None,
            notes: String::new(),
            status: BookingStatus::Requested,
            payment: PaymentStatus::Unpaid,
            created_by: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 1,
            payment_detail: None,
            cancellation: None,
        }
    }

    #[test]
    fn an_operator_hears_of_new_bookings_but_not_of_their_own() {
        let me = staff("Olivia", &[Role::Operator]);
        let mut room = Newsroom::new(me.clone(), [], []);
        room.observe(&Record::Booking(booking(None)), None);
        let notices = room.flush();
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].summary, "New booking");
        assert_eq!(
            notices[0].body,
            "Ana Lopez: Massage, Sun 22 Nov 14:30–15:30"
        );
        assert_eq!(notices[0].open, WindowKind::Operator);

        room.observe(&Record::Booking(booking(None)), Some(me.id));
        assert!(room.flush().is_empty());
    }

    #[test]
    fn a_therapist_hears_of_assignment_reschedule_and_cancel_but_not_of_other_edits() {
        let me = staff("Elena", &[Role::Therapist]);
        let op = staff("Olivia", &[Role::Operator]);
        let mut room = Newsroom::new(me.clone(), [], []);
        let mut b = booking(Some(me.id));
        room.observe(&Record::Booking(b.clone()), Some(op.id));
        assert_eq!(room.flush()[0].summary, "Booking assigned to you");

        b.notes = "ring twice".into();
        room.observe(&Record::Booking(b.clone()), Some(op.id));
        assert!(room.flush().is_empty(), "a note edit is not news");

        b.start = NaiveTime::from_hms_opt(16, 0, 0).unwrap();
        b.end = NaiveTime::from_hms_opt(17, 0, 0).unwrap();
        room.observe(&Record::Booking(b.clone()), Some(op.id));
        let n = room.flush();
        assert_eq!(n[0].summary, "Booking rescheduled");
        assert_eq!(n[0].open, WindowKind::Therapist);

        b.status = BookingStatus::Cancelled;
        room.observe(&Record::Booking(b), Some(op.id));
        assert_eq!(room.flush()[0].summary, "Booking cancelled");
    }

    #[test]
    fn operators_hear_when_a_therapist_declines_and_everyone_hears_why_a_booking_was_cancelled() {
        let elena = staff("Dr. Elena Reyes", &[Role::Therapist]);
        let olivia = staff("Olivia Grant", &[Role::Operator]);
        let dan = staff("Dan Cole", &[Role::Driver]);
        let staff = [elena.clone(), olivia.clone(), dan.clone()];
        let mut b = booking(Some(elena.id));
        b.driver_id = Some(dan.id);
        let mut operator = Newsroom::new(olivia.clone(), &staff, [&b]);
        let mut therapist = Newsroom::new(elena.clone(), &staff, [&b]);
        let mut driver = Newsroom::new(dan, &staff, [&b]);

        b.status = BookingStatus::Declined;
        b.version = 2;
        for room in [&mut operator, &mut therapist, &mut driver] {
            room.observe(&Record::Booking(b.clone()), Some(elena.id));
        }
        let n = operator.flush();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].summary, "Booking declined");
        assert_eq!(
            n[0].body,
            "Dr. Elena Reyes declined Ana Lopez: Massage, Sun 22 Nov 14:30–15:30. Assign another \
             therapist."
        );
        assert_eq!(n[0].open, WindowKind::Operator);
        assert!(therapist.flush().is_empty(), "not news to who declined");
        assert!(
            driver.flush().is_empty(),
            "the driver is not the one to act"
        );
        // Seen again (a replay of the same state): not news twice.
        operator.observe(&Record::Booking(b.clone()), Some(elena.id));
        assert!(operator.flush().is_empty());

        b.status = BookingStatus::Cancelled;
        b.version = 3;
        b.cancellation = Some(clinic_protocol::Cancellation {
            reason: "The client is ill.".into(),
            by: olivia.id,
            at: Utc::now(),
        });
        driver.observe(&Record::Booking(b.clone()), Some(olivia.id));
        let n = driver.flush();
        assert_eq!(n[0].summary, "Booking cancelled");
        assert!(
            n[0].body
                .ends_with("Olivia Grant gave the reason: The client is ill."),
            "{}",
            n[0].body
        );
        assert_eq!(n[0].open, WindowKind::Driver);
        // The operator who cancelled hears nothing of it.
        operator.observe(&Record::Booking(b), Some(olivia.id));
        assert!(operator.flush().is_empty());
    }

    #[test]
    fn it_remembers_only_the_bookings_it_can_have_news_about() {
        let me = staff("Maria", &[Role::Operator, Role::Therapist]);
        let recalls = Newsroom::recalls(&me);
        assert_eq!(recalls.len(), 2, "{recalls:?}");
        assert_eq!(recalls[0].therapist, Some(me.id));
        assert_eq!(recalls[1].statuses, Some(vec![BookingStatus::Declined]));
        let driver = staff("Dan", &[Role::Driver]);
        assert_eq!(
            Newsroom::recalls(&driver),
            vec![BookingQuery {
                driver: Some(driver.id),
                ..BookingQuery::default()
            }]
        );

        let others: Vec<Booking> = (0..1_000).map(|_| booking(Some(Uuid::new_v4()))).collect();
        let mine = booking(Some(me.id));
        let mut declined = booking(Some(Uuid::new_v4()));
        declined.status = BookingStatus::Declined;
        let room = Newsroom::new(me, [], others.iter().chain([&mine, &declined]));
        assert_eq!(room.mine.len(), 1);
        assert!(room.mine.contains_key(&mine.id));
        assert_eq!(room.declined.len(), 1);
        assert!(room.declined.contains(&declined.id));
    }

    #[test]
    fn an_edit_to_a_booking_it_does_not_remember_is_not_news() {
        let me = staff("Olivia", &[Role::Operator]);
        let other = staff("Omar", &[Role::Operator]);
        let mut room = Newsroom::new(me, [], []);
        let mut b = booking(Some(Uuid::new_v4()));
        b.status = BookingStatus::Confirmed;
        b.version = 3;
        b.notes = "ring twice".into();
        room.observe(&Record::Booking(b.clone()), Some(other.id));
        assert!(
            room.flush().is_empty(),
            "an old booking's edit is not a new booking"
        );

        b.status = BookingStatus::Declined;
        b.version = 4;
        room.observe(&Record::Booking(b), Some(other.id));
        assert_eq!(room.flush()[0].summary, "Booking declined");
    }

    #[test]
    fn after_a_restart_a_change_to_an_own_booking_is_judged_against_the_cache() {
        let me = staff("Elena", &[Role::Therapist]);
        let op = staff("Olivia", &[Role::Operator]);
        let mut b = booking(Some(me.id));
        b.status = BookingStatus::Confirmed;
        b.version = 2;
        // A newsroom started from the cache (the app restarted): the booking is known.
        let mut room = Newsroom::new(me, [&op], [&b]);
        b.notes = "ring twice".into();
        b.version = 3;
        room.observe(&Record::Booking(b.clone()), Some(op.id));
        assert!(room.flush().is_empty(), "a note edit is not news");
        b.start = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        b.end = NaiveTime::from_hms_opt(10, 0, 0).unwrap();
        b.version = 4;
        room.observe(&Record::Booking(b), Some(op.id));
        let n = room.flush();
        assert_eq!(n.len(), 1);
        assert_eq!(
            n[0].summary, "Booking rescheduled",
            "not assigned: it was mine"
        );
    }

    #[test]
    fn a_catch_up_gives_one_summary() {
        let me = staff("Maria", &[Role::Operator, Role::Therapist]);
        let mut room = Newsroom::new(me.clone(), [], []);
        for _ in 0..3 {
            room.observe(&Record::Booking(booking(None)), None);
        }
        let msg = Message {
            id: Uuid::new_v4(),
            sender_id: Uuid::new_v4(),
            recipient_id: me.id,
            body: "hi".into(),
            sent_at: Utc::now(),
            read_at: None,
            version: 1,
        };
        room.observe(&Record::Message(msg), None);
        let n = room.flush();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].summary, "While you were away");
        assert_eq!(n[0].body, "3 new bookings, 1 new message");
        assert!(room.flush().is_empty());
    }

    #[test]
    fn messages_to_others_and_read_receipts_are_not_news() {
        let me = staff("Dan", &[Role::Driver]);
        let mut room = Newsroom::new(me.clone(), [], []);
        let mut msg = Message {
            id: Uuid::new_v4(),
            sender_id: me.id,
            recipient_id: Uuid::new_v4(),
            body: "on my way".into(),
            sent_at: Utc::now(),
            read_at: None,
            version: 1,
        };
        room.observe(&Record::Message(msg.clone()), Some(msg.sender_id));
        msg.read_at = Some(Utc::now());
        msg.version = 2;
        room.observe(&Record::Message(msg.clone()), Some(msg.recipient_id));
        assert!(room.flush().is_empty());
    }
}
