//! Who is free at a time: for a booking form (new booking, assign, reschedule), each
//! therapist and driver as free, busy with another booking, outside their availability, or
//! off that day. Pure, so that the app computes it once, in Rust, from its cache (and a test
//! from plain values); the forms only show the answer and warn before a choice that is not
//! free. It decides nothing: the server's rules ([`crate::rules::check_schedule`]) do.

use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};

use crate::records::{Booking, BookingStatus, Id, Role, Slot, Staff};
use crate::rules::hm;

/// The time a form asks about, and the booking it edits (left out of the clashes: a booking
/// does not clash with itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreeQuery {
    pub date: NaiveDate,
    pub start: NaiveTime,
    pub end: NaiveTime,
    #[serde(default)]
    pub booking: Option<Id>,
}

/// Where one person stands at the asked time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Standing {
    /// Inside their availability (therapists) and with no other booking then.
    Free,
    /// Another booking of theirs overlaps the time, as therapist or as driver (someone with
    /// both roles cannot drive while giving a session). Any booking that takes time
    /// ([`BookingStatus::takes_time`]) counts, a requested one too, although the server only
    /// refuses a clash with a booking the therapist has taken on
    /// ([`crate::rules::check_schedule`], [`BookingStatus::holds_therapist`]): the form warns
    /// earlier than the server refuses, so the operator does not promise a time twice.
    Busy {
        booking: Id,
        client_name: String,
        start: NaiveTime,
        end: NaiveTime,
        status: BookingStatus,
    },
    /// A therapist available that day, but not for the whole time asked.
    OutsideHours {
        /// Their availability that day, by start.
        hours: Vec<(NaiveTime, NaiveTime)>,
    },
    /// A therapist with no availability that day, or a disabled account.
    Off { disabled: bool },
}

impl Standing {
    /// Whether choosing this person deserves a warning before the change is sent.
    pub fn warns(&self) -> bool {
        !matches!(self, Standing::Free)
    }

    /// The standing in words, as a form shows it next to the name.
    pub fn words(&self) -> String {
        match self {
            Standing::Free => "Free".to_owned(),
            Standing::Busy {
                client_name,
                start,
                end,
                status,
                ..
            } => format!(
                "Busy {}–{} ({client_name}, {})",
                hm(*start),
                hm(*end),
                crate::rules::status_words(*status)
            ),
            Standing::OutsideHours { hours } => {
                let hours: Vec<String> = hours
                    .iter()
                    .map(|(s, e)| format!("{}–{}", hm(*s), hm(*e)))
                    .collect();
                format!("Outside their hours (available {})", hours.join(", "))
            }
            Standing::Off { disabled: true } => "Account disabled".to_owned(),
            Standing::Off { disabled: false } => "No availability that day".to_owned(),
        }
    }
}

/// One person's standing, for a form's list, with its words and whether choosing them
/// deserves a warning ([`Standing::words`], [`Standing::warns`]), so that no form words it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    pub id: Id,
    pub name: String,
    pub role: Role,
    pub standing: Standing,
    pub words: String,
    pub warns: bool,
}

/// The answer for a form: its query, every therapist and every driver, each list by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FreeBusy {
    pub query: FreeQuery,
    pub therapists: Vec<Person>,
    pub drivers: Vec<Person>,
}

/// Each therapist and driver in `staff` as they stand at `query`'s time, judged on `slots`
/// (availability: therapists only; drivers have none and are free unless busy) and
/// `bookings` (any of that day may be given; others are ignored).
pub fn free_busy(
    staff: &[Staff],
    slots: &[Slot],
    bookings: &[Booking],
    query: &FreeQuery,
) -> FreeBusy {
    // A person's bookings in either role count in both lists: a therapist who also drives
    // is busy driving while giving a session, and the other way round.
    let clash = |id: Id| {
        bookings
            .iter()
            .filter(|b| Some(b.id) != query.booking && b.status.takes_time())
            .filter(|b| b.therapist_id == Some(id) || b.driver_id == Some(id))
            .filter(|b| b.overlaps(query.date, query.start, query.end))
            .min_by_key(|b| (b.start, b.id))
    };
    let standing = |s: &Staff, role: Role| {
        if s.disabled {
            return Standing::Off { disabled: true };
        }
        if let Some(b) = clash(s.id) {
            return Standing::Busy {
                booking: b.id,
                client_name: b.client_name.clone(),
                start: b.start,
                end: b.end,
                status: b.status,
            };
        }
        if role == Role::Driver {
            return Standing::Free;
        }
        let mut day: Vec<&Slot> = slots
            .iter()
            .filter(|x| x.staff_id == s.id && x.date == query.date)
            .collect();
        if day.is_empty() {
            return Standing::Off { disabled: false };
        }
        if day
            .iter()
            .any(|x| x.covers(query.date, query.start, query.end))
        {
            return Standing::Free;
        }
        day.sort_by_key(|x| (x.start, x.end));
        Standing::OutsideHours {
            hours: day.iter().map(|x| (x.start, x.end)).collect(),
        }
    };
    let list = |role: Role| {
        let mut people: Vec<Person> = staff
            .iter()
            .filter(|s| s.has(role))
            .map(|s| {
                let standing = standing(s, role);
                Person {
                    id: s.id,
                    name: s.display_name.clone(),
                    role,
                    words: standing.words(),
                    warns: standing.warns(),
                    standing,
                }
            })
            .collect();
        people.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        people
    };
    FreeBusy {
        query: *query,
        therapists: list(Role::Therapist),
        drivers: list(Role::Driver),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutation::NewBooking;
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    fn t(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").expect("a time")
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 1).expect("a date")
    }

    /// Built from JSON so that fields added to staff later do not break these tests.
    fn person(name: &str, roles: &[Role]) -> Staff {
        serde_json::from_value(serde_json::json!({
            "id": Uuid::new_v4(),
            "username": name.to_lowercase(),
            "display_name": name,
            "roles": roles,
            "version": 1,
        }))
        .expect("a staff record")
    }

    fn slot(who: &Staff, date: NaiveDate, start: &str, end: &str) -> Slot {
        Slot {
            id: Uuid::new_v4(),
            staff_id: who.id,
            date,
            start: t(start),
            end: t(end),
            note: String::new(),
            version: 1,
        }
    }

    fn booking(
        therapist: Option<&Staff>,
        driver: Option<&Staff>,
        start: &str,
        end: &str,
        status: BookingStatus,
    ) -> Booking {
        let fields = NewBooking {
            id: Uuid::new_v4(),
            client_name: "Ana Lopez".into(),
            client_phone: String::new(),
            address: String::new(),
            service: "Massage".into(),
            date: day(),
            start: t(start),
            end: t(end),
            therapist_id: therapist.map(|s| s.id),
            driver_id: driver.map(|s| s.id),
            notes: String::new(),
        };
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
        Booking {
            status,
            ..crate::rules::new_booking(&fields, None, now).expect("a valid booking")
        }
    }

    fn query(start: &str, end: &str, booking: Option<Id>) -> FreeQuery {
        FreeQuery {
            date: day(),
            start: t(start),
            end: t(end),
            booking,
        }
    }

    fn standing_of(answer: &FreeBusy, who: &Staff) -> Standing {
        answer
            .therapists
            .iter()
            .chain(&answer.drivers)
            .find(|p| p.id == who.id)
            .map(|p| p.standing.clone())
            .expect("listed")
    }

    #[test]
    fn a_therapist_is_free_inside_their_availability_and_outside_it_otherwise() {
        let elena = person("Elena", &[Role::Therapist]);
        let slots = [
            slot(&elena, day(), "13:00", "17:00"),
            slot(&elena, day(), "09:00", "12:00"),
        ];
        let staff = [elena.clone()];
        let free = free_busy(&staff, &slots, &[], &query("10:00", "11:00", None));
        assert_eq!(standing_of(&free, &elena), Standing::Free);
        // Touching the end is inside; running past it is not, whichever slot.
        let free = free_busy(&staff, &slots, &[], &query("11:00", "12:00", None));
        assert_eq!(standing_of(&free, &elena), Standing::Free);
        let outside = free_busy(&staff, &slots, &[], &query("11:30", "13:30", None));
        let standing = standing_of(&outside, &elena);
        assert_eq!(
            standing,
            Standing::OutsideHours {
                hours: vec![(t("09:00"), t("12:00")), (t("13:00"), t("17:00"))]
            }
        );
        assert!(standing.warns());
        assert_eq!(
            standing.words(),
            "Outside their hours (available 09:00–12:00, 13:00–17:00)"
        );
    }

    #[test]
    fn a_therapist_with_no_availability_that_day_is_off() {
        let elena = person("Elena", &[Role::Therapist]);
        let other_day = slot(&elena, day().succ_opt().unwrap(), "09:00", "17:00");
        let free = free_busy(
            std::slice::from_ref(&elena),
            &[other_day],
            &[],
            &query("10:00", "11:00", None),
        );
        let standing = standing_of(&free, &elena);
        assert_eq!(standing, Standing::Off { disabled: false });
        assert_eq!(standing.words(), "No availability that day");
    }

    #[test]
    fn an_overlapping_booking_makes_them_busy_but_not_the_booking_being_edited() {
        let elena = person("Elena", &[Role::Therapist]);
        let tom = person("Tom", &[Role::Driver]);
        let slots = [slot(&elena, day(), "09:00", "17:00")];
        let held = booking(
            Some(&elena),
            Some(&tom),
            "10:30",
            "11:30",
            BookingStatus::Requested,
        );
        let staff = [elena.clone(), tom.clone()];
        let bookings = [held.clone()];
        let free = free_busy(&staff, &slots, &bookings, &query("10:00", "11:00", None));
        for who in [&elena, &tom] {
            let standing = standing_of(&free, who);
            assert!(
                matches!(standing, Standing::Busy { booking, .. } if booking == held.id),
                "{standing:?}"
            );
            assert_eq!(
                standing.words(),
                "Busy 10:30–11:30 (Ana Lopez, waiting for the therapist)"
            );
        }
        // The same booking, moved: it does not clash with itself.
        let moving = free_busy(
            &staff,
            &slots,
            &bookings,
            &query("10:00", "11:00", Some(held.id)),
        );
        assert_eq!(standing_of(&moving, &elena), Standing::Free);
        assert_eq!(standing_of(&moving, &tom), Standing::Free);
        // Touching ends do not overlap.
        let after = free_busy(&staff, &slots, &bookings, &query("11:30", "12:30", None));
        assert_eq!(standing_of(&after, &elena), Standing::Free);
    }

    #[test]
    fn cancelled_and_declined_bookings_take_no_time() {
        let elena = person("Elena", &[Role::Therapist]);
        let slots = [slot(&elena, day(), "09:00", "17:00")];
        let bookings = [
            booking(
                Some(&elena),
                None,
                "10:00",
                "11:00",
                BookingStatus::Cancelled,
            ),
            booking(
                Some(&elena),
                None,
                "10:00",
                "11:00",
                BookingStatus::Declined,
            ),
        ];
        let free = free_busy(
            std::slice::from_ref(&elena),
            &slots,
            &bookings,
            &query("10:00", "11:00", None),
        );
        assert_eq!(standing_of(&free, &elena), Standing::Free);
    }

    #[test]
    fn a_therapist_who_also_drives_is_busy_in_both_lists() {
        let elena = person("Elena", &[Role::Therapist, Role::Driver]);
        let tom = person("Tom", &[Role::Driver]);
        let slots = [slot(&elena, day(), "09:00", "17:00")];
        let staff = [elena.clone(), tom.clone()];
        // Giving a session: not free to drive then.
        let giving = booking(
            Some(&elena),
            Some(&tom),
            "10:00",
            "11:00",
            BookingStatus::Confirmed,
        );
        // Driving: not free to give a session then.
        let driving = booking(
            None,
            Some(&elena),
            "14:00",
            "15:00",
            BookingStatus::Confirmed,
        );
        let bookings = [giving.clone(), driving.clone()];
        let busy_with = |answer: &FreeBusy, list: Role| {
            let people = match list {
                Role::Driver => &answer.drivers,
                _ => &answer.therapists,
            };
            match &people
                .iter()
                .find(|p| p.id == elena.id)
                .expect("listed")
                .standing
            {
                Standing::Busy { booking, .. } => Some(*booking),
                _ => None,
            }
        };
        let morning = free_busy(&staff, &slots, &bookings, &query("10:30", "11:30", None));
        assert_eq!(busy_with(&morning, Role::Therapist), Some(giving.id));
        assert_eq!(busy_with(&morning, Role::Driver), Some(giving.id));
        let afternoon = free_busy(&staff, &slots, &bookings, &query("14:30", "15:30", None));
        assert_eq!(busy_with(&afternoon, Role::Therapist), Some(driving.id));
        assert_eq!(busy_with(&afternoon, Role::Driver), Some(driving.id));
        // Between the two, free in both lists.
        let noon = free_busy(&staff, &slots, &bookings, &query("12:00", "13:00", None));
        assert_eq!(busy_with(&noon, Role::Therapist), None);
        assert_eq!(busy_with(&noon, Role::Driver), None);
        for p in noon.therapists.iter().chain(&noon.drivers) {
            assert_eq!(p.standing, Standing::Free, "{}", p.name);
        }
    }

    #[test]
    fn drivers_have_no_hours_and_disabled_accounts_are_off() {
        let tom = person("Tom", &[Role::Driver]);
        let mut gone: Staff = person("Zed", &[Role::Therapist, Role::Driver]);
        gone.disabled = true;
        let staff = [tom.clone(), gone.clone()];
        let free = free_busy(&staff, &[], &[], &query("10:00", "11:00", None));
        assert_eq!(standing_of(&free, &tom), Standing::Free);
        assert_eq!(free.therapists.len(), 1);
        assert_eq!(free.drivers.len(), 2);
        for p in free.therapists.iter().chain(&free.drivers) {
            if p.id == gone.id {
                assert_eq!(p.standing, Standing::Off { disabled: true });
                assert_eq!(p.standing.words(), "Account disabled");
            }
        }
    }

    #[test]
    fn lists_are_by_name_and_the_answer_names_its_query() {
        let b = person("Bea", &[Role::Therapist]);
        let a = person("Ann", &[Role::Therapist]);
        let q = query("10:00", "11:00", None);
        let free = free_busy(&[b, a], &[], &[], &q);
        let names: Vec<&str> = free.therapists.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["Ann", "Bea"]);
        assert_eq!(free.query, q);
        let json = serde_json::to_value(&free.therapists[0]).unwrap();
        assert_eq!(json["standing"]["state"], "off");
        assert_eq!(json["words"], "No availability that day");
        assert_eq!(json["warns"], true);
    }
}
