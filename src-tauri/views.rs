//! What each dashboard shows, read from the cache in SQL and dressed with what the user may
//! do: every booking row carries the actions the shared rules allow this user now and the
//! dashboard offers, so no window keeps a copy of the rules.
//!
//! A view is read at a cache sequence number taken BEFORE its rows: a window that sees a
//! change batch ending after that number loads again, so it can never miss a change.

use std::collections::{HashMap, HashSet};

use chrono::{Datelike, Duration, Local, NaiveDate};
use clinic_protocol::free::{self, FreeBusy, FreeQuery};
use clinic_protocol::{rules, Booking, BookingStatus, Id, RecordKind, Role, Slot, Staff};
use clinic_sync::{BookingOrder, BookingQuery, Cached, Queries, SyncError};

use crate::ipc::{
    AdminView, BookingRow, CancelledDto, ConversationDto, CountsDto, DriverRow, DriverRun, Lane,
    MessageRow, MessagesView, OperatorFilter, OperatorView, OwnView, PaidDto, PaidTodayDto, Person,
    PersonRef, RoleDto, SchedulingView, SlotRow, StaffRow, StatusPayload, ViewBody, ViewData,
    ViewRequest,
};
use crate::windows::WindowKind;

/// How many bookings a list shows before "more" (the operator's) or in the earlier page.
const PAGE: u32 = 200;
const EARLIER_PAGE: u32 = 50;
/// How far ahead a therapist's own availability is listed: what they plan with, read by
/// its index range, however many months of slots they have entered.
const OWN_SLOT_DAYS: i64 = 56;

impl ViewRequest {
    /// The dashboard this view belongs to: only its windows may load it.
    pub fn kind(&self) -> WindowKind {
        match self {
            ViewRequest::Operator { .. } => WindowKind::Operator,
            ViewRequest::Therapist => WindowKind::Therapist,
            ViewRequest::Driver => WindowKind::Driver,
            ViewRequest::Scheduling { .. } => WindowKind::Scheduling,
            ViewRequest::Messages { .. } => WindowKind::Messages,
            ViewRequest::Admin => WindowKind::Admin,
        }
    }

    /// The record kinds the view reads.
    pub fn kinds(&self) -> Vec<RecordKind> {
        match self {
            // An operator's form asking who is free reads availability too.
            ViewRequest::Operator { free: Some(_), .. }
            | ViewRequest::Therapist
            | ViewRequest::Scheduling { .. } => {
                vec![RecordKind::Booking, RecordKind::Slot, RecordKind::Staff]
            }
            ViewRequest::Operator { .. } | ViewRequest::Driver => {
                vec![RecordKind::Booking, RecordKind::Staff]
            }
            ViewRequest::Messages { .. } => vec![RecordKind::Message, RecordKind::Staff],
            ViewRequest::Admin => vec![RecordKind::Staff],
        }
    }
}

/// Reads `request` for `user` (its dashboard's kind already checked by the caller).
pub async fn load(
    queries: &Queries,
    user: &Staff,
    request: &ViewRequest,
    today: NaiveDate,
    status: StatusPayload,
) -> Result<ViewData, SyncError> {
    // Before the rows: see the module docs.
    let seq = queries.seq().await?;
    let staff = queries.staff().await?;
    let ctx = Ctx {
        user,
        kind: request.kind(),
        names: staff
            .iter()
            .map(|s| (s.id, s.display_name.clone()))
            .collect(),
        staff: &staff,
    };
    let body = match request {
        ViewRequest::Operator {
            filter,
            limit,
            free,
        } => {
            let mut view = operator(queries, &ctx, &staff, *filter, *limit, today).await?;
            view.free = free_busy(queries, &staff, free.as_ref()).await?;
            ViewBody::Operator(view)
        }
        ViewRequest::Therapist => ViewBody::Own(own(queries, &ctx, Role::Therapist, today).await?),
        ViewRequest::Driver => ViewBody::Own(own(queries, &ctx, Role::Driver, today).await?),
        ViewRequest::Scheduling { week, free } => {
            let mut view = scheduling(queries, &ctx, &staff, week.unwrap_or(today)).await?;
            view.free = free_busy(queries, &staff, free.as_ref()).await?;
            ViewBody::Scheduling(view)
        }
        ViewRequest::Messages { peer } => {
            ViewBody::Messages(messages(queries, &ctx, &staff, *peer).await?)
        }
        ViewRequest::Admin => ViewBody::Admin(admin(queries, user).await?),
    };
    Ok(ViewData {
        seq,
        kinds: request.kinds(),
        status,
        today,
        body,
    })
}

/// Who is looking, from which dashboard, and everyone's names.
struct Ctx<'a> {
    user: &'a Staff,
    kind: WindowKind,
    names: HashMap<Id, String>,
    staff: &'a [Staff],
}

impl Ctx<'_> {
    fn name(&self, id: Option<Id>) -> Option<String> {
        id.map(|id| {
            self.names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| "Unknown staff".to_owned())
        })
    }

    fn booking(&self, b: Cached<Booking>) -> BookingRow {
        let actions = rules::booking_actions(self.user, &b.record)
            .into_iter()
            .filter(|a| self.kind.offers(*a))
            .collect();
        let paid = b.record.payment_detail.as_ref().map(|p| PaidDto {
            amount: rules::money(p.amount_cents),
            method: p.method.label(),
            reference: p.reference.clone(),
            by: self.name(Some(p.verified_by)).unwrap_or_default(),
            at: p.verified_at,
        });
        let cancelled = b.record.cancellation.as_ref().map(|c| CancelledDto {
            reason: c.reason.clone(),
            by: self.name(Some(c.by)).unwrap_or_default(),
            at: c.at,
        });
        BookingRow {
            editable: self.kind.offers_editing() && rules::may_edit_booking(self.user, &b.record),
            therapist_name: self.name(b.record.therapist_id),
            driver_name: self.name(b.record.driver_id),
            paid,
            cancelled,
            actions,
            pending: b.pending,
            record: b.record,
        }
    }

    fn bookings(&self, list: Vec<Cached<Booking>>) -> Vec<BookingRow> {
        list.into_iter().map(|b| self.booking(b)).collect()
    }

    fn slot(&self, s: Cached<Slot>) -> SlotRow {
        SlotRow {
            manageable: rules::may_manage_slots_of(self.user, s.record.staff_id),
            staff_name: self.name(Some(s.record.staff_id)).unwrap_or_default(),
            pending: s.pending,
            record: s.record,
        }
    }
}

fn people(staff: &[Staff], role: Role) -> Vec<Person> {
    staff
        .iter()
        .filter(|s| s.has(role))
        .map(|s| Person {
            id: s.id,
            name: s.display_name.clone(),
            roles: s.roles.clone(),
        })
        .collect()
}

async fn operator(
    queries: &Queries,
    ctx: &Ctx<'_>,
    staff: &[Staff],
    filter: OperatorFilter,
    limit: Option<u32>,
    today: NaiveDate,
) -> Result<OperatorView, SyncError> {
    let limit = limit.unwrap_or(PAGE).clamp(1, 10 * PAGE);
    let mut query = BookingQuery {
        order: BookingOrder::NewestFirst,
        // One more than shown tells whether there are more.
        limit: Some(limit + 1),
        ..BookingQuery::default()
    };
    match filter {
        OperatorFilter::All => {}
        OperatorFilter::Attention => query.needs_attention = true,
        OperatorFilter::Today => {
            query.from = Some(today);
            query.to = Some(today);
            // The day as it runs, and the order its index gives: newest-created first
            // would walk the whole history's `at` index for one day's bookings.
            query.order = BookingOrder::ByTime;
        }
        OperatorFilter::Open => query.open_only = true,
    }
    let mut bookings = queries.bookings(&query).await?;
    let more = bookings.len() > limit as usize;
    bookings.truncate(limit as usize);
    let counts = queries.counts(today).await?;
    let recent = queries
        .bookings(&BookingQuery {
            from: Some(today - Duration::days(PAID_LOOKBACK_DAYS)),
            to: Some(today),
            order: BookingOrder::ByTime,
            ..BookingQuery::default()
        })
        .await?;
    let paid_today = paid_today(&recent, today);
    let driver_board = driver_board(staff, &recent, today);
    Ok(OperatorView {
        counts: CountsDto {
            pending_requests: counts.pending_requests,
            confirmed_today: counts.confirmed_today,
            upcoming: counts.upcoming,
            unsynced: counts.unsynced,
        },
        bookings: ctx.bookings(bookings),
        more,
        therapists: people(staff, Role::Therapist),
        drivers: people(staff, Role::Driver),
        may_create: rules::may_create_booking(ctx.user),
        free: None,
        paid_today,
        driver_board,
    })
}

/// How many days back the bookings whose payments may count as today's go: a payment is
/// verified after the visit, usually the same day, at the latest within the week. Bounded,
/// so that the figure reads a few days of bookings (an index range), not the history.
const PAID_LOOKBACK_DAYS: i64 = 7;

/// The payments verified today (the clinic's local date) among `bookings` (those of the last
/// [`PAID_LOOKBACK_DAYS`] days: a payment verified today for an older booking is not
/// counted, which the figure's words say).
fn paid_today(bookings: &[Cached<Booking>], today: NaiveDate) -> PaidTodayDto {
    let (count, amount_cents) = bookings
        .iter()
        .filter_map(|b| b.record.payment_detail.as_ref())
        .filter(|p| p.verified_at.with_timezone(&Local).date_naive() == today)
        .fold((0u64, 0i64), |(n, sum), p| {
            (n + 1, sum.saturating_add(p.amount_cents))
        });
    let payments = if count == 1 {
        "1 payment".to_owned()
    } else {
        format!("{count} payments")
    };
    PaidTodayDto {
        count,
        amount_cents,
        amount: rules::money(amount_cents),
        about: format!(
            "{payments} verified today, for bookings of the last {PAID_LOOKBACK_DAYS} days"
        ),
    }
}

/// Every enabled driver with where their run of today is (`bookings` include today's).
fn driver_board(staff: &[Staff], bookings: &[Cached<Booking>], today: NaiveDate) -> Vec<DriverRow> {
    use BookingStatus as S;
    staff
        .iter()
        .filter(|s| s.has(Role::Driver) && !s.disabled)
        .map(|d| {
            let runs: Vec<&Cached<Booking>> = bookings
                .iter()
                .filter(|b| {
                    b.record.date == today
                        && b.record.driver_id == Some(d.id)
                        && b.record.status.takes_time()
                })
                .collect();
            let done = |s: S| matches!(s, S::Arrived | S::InSession | S::Completed);
            // Under way first (the one they are driving), else the next still to drive.
            let under_way = runs.iter().find(|b| {
                matches!(
                    b.record.status,
                    S::PickupConfirmed | S::EnRoute | S::Arrived
                )
            });
            let next = runs
                .iter()
                .find(|b| matches!(b.record.status, S::Requested | S::Confirmed));
            let current = under_way.or(next).map(|b| DriverRun {
                booking_id: b.record.id,
                client_name: b.record.client_name.clone(),
                address: b.record.address.clone(),
                start: b.record.start,
                end: b.record.end,
                status: b.record.status,
                pending: b.pending,
            });
            DriverRow {
                id: d.id,
                name: d.display_name.clone(),
                on_duty: d.on_duty,
                current,
                runs_today: u32::try_from(runs.len()).unwrap_or(u32::MAX),
                done_today: u32::try_from(runs.iter().filter(|b| done(b.record.status)).count())
                    .unwrap_or(u32::MAX),
            }
        })
        .collect()
}

/// Who is free at the time a booking form is working on: the staff's standing computed
/// once, in the protocol ([`free::free_busy`]), from the cache's slots and bookings of that
/// day (pending changes included, so a form sees the user's own queued bookings).
async fn free_busy(
    queries: &Queries,
    staff: &[Staff],
    query: Option<&FreeQuery>,
) -> Result<Option<FreeBusy>, SyncError> {
    let Some(query) = query else {
        return Ok(None);
    };
    let slots: Vec<Slot> = queries
        .slots(None, query.date, Some(query.date))
        .await?
        .into_iter()
        .map(|s| s.record)
        .collect();
    let bookings: Vec<Booking> = queries
        .bookings(&BookingQuery {
            from: Some(query.date),
            to: Some(query.date),
            order: BookingOrder::ByTime,
            ..BookingQuery::default()
        })
        .await?
        .into_iter()
        .map(|b| b.record)
        .collect();
    Ok(Some(free::free_busy(staff, &slots, &bookings, query)))
}

/// A therapist's appointments and availability, or a driver's runs.
async fn own(
    queries: &Queries,
    ctx: &Ctx<'_>,
    role: Role,
    today: NaiveDate,
) -> Result<OwnView, SyncError> {
    let me = ctx.user.id;
    let mine = |q: BookingQuery| match role {
        Role::Therapist => BookingQuery {
            therapist: Some(me),
            ..q
        },
        _ => BookingQuery {
            driver: Some(me),
            ..q
        },
    };
    let upcoming = queries
        .bookings(&mine(BookingQuery {
            from: Some(today),
            order: BookingOrder::ByTime,
            limit: Some(PAGE),
            ..BookingQuery::default()
        }))
        .await?;
    let earlier = queries
        .bookings(&mine(BookingQuery {
            to: Some(today - Duration::days(1)),
            order: BookingOrder::ByTimeDesc,
            limit: Some(EARLIER_PAGE),
            ..BookingQuery::default()
        }))
        .await?;
    let (slots, slots_through) = if role == Role::Therapist {
        let through = today + Duration::days(OWN_SLOT_DAYS - 1);
        let slots = queries.slots(Some(me), today, Some(through)).await?;
        (
            Some(slots.into_iter().map(|s| ctx.slot(s)).collect()),
            Some(through),
        )
    } else {
        (None, None)
    };
    // The user's own account as the cache has it (a pending change to go on duty shows).
    let on_duty = (role == Role::Driver).then(|| {
        ctx.staff
            .iter()
            .find(|s| s.id == me)
            .map_or(ctx.user.on_duty, |s| s.on_duty)
    });
    Ok(OwnView {
        upcoming: ctx.bookings(upcoming),
        earlier: ctx.bookings(earlier),
        slots,
        slots_through,
        on_duty,
    })
}

async fn scheduling(
    queries: &Queries,
    ctx: &Ctx<'_>,
    staff: &[Staff],
    day: NaiveDate,
) -> Result<SchedulingView, SyncError> {
    let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
    let sunday = monday + Duration::days(6);
    let slots = queries.slots(None, monday, Some(sunday)).await?;
    let bookings = queries
        .bookings(&BookingQuery {
            from: Some(monday),
            to: Some(sunday),
            statuses: Some(
                BookingStatus::ALL
                    .into_iter()
                    .filter(|s| *s != BookingStatus::Cancelled)
                    .collect(),
            ),
            order: BookingOrder::ByTime,
            ..BookingQuery::default()
        })
        .await?;

    // A lane for every therapist, and for anyone else with something in the week.
    let mut ids: Vec<Id> = staff
        .iter()
        .filter(|s| s.has(Role::Therapist))
        .map(|s| s.id)
        .collect();
    let mut seen: HashSet<Id> = ids.iter().copied().collect();
    let extra = slots
        .iter()
        .map(|s| s.record.staff_id)
        .chain(bookings.iter().filter_map(|b| b.record.therapist_id));
    for id in extra {
        if seen.insert(id) {
            ids.push(id);
        }
    }
    let mut lanes: Vec<Lane> = ids
        .into_iter()
        .map(|id| Lane {
            id,
            name: ctx.name(Some(id)).unwrap_or_default(),
            manageable: rules::may_manage_slots_of(ctx.user, id),
            slots: Vec::new(),
            bookings: Vec::new(),
        })
        .collect();
    lanes.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let index: HashMap<Id, usize> = lanes.iter().enumerate().map(|(i, l)| (l.id, i)).collect();
    for s in slots {
        let i = index[&s.record.staff_id];
        let row = ctx.slot(s);
        lanes[i].slots.push(row);
    }
    // Every booking of the week shows: in its therapist's lane, or in the unassigned lane.
    let mut unassigned = Vec::new();
    for b in bookings {
        match b.record.therapist_id.and_then(|t| index.get(&t).copied()) {
            Some(i) => {
                let row = ctx.booking(b);
                lanes[i].bookings.push(row);
            }
            None => unassigned.push(ctx.booking(b)),
        }
    }
    Ok(SchedulingView {
        week: monday,
        days: (0..7).map(|i| monday + Duration::days(i)).collect(),
        may_manage: lanes.iter().any(|l| l.manageable),
        lanes,
        unassigned,
        therapists: people(staff, Role::Therapist),
        drivers: people(staff, Role::Driver),
        may_create: rules::may_create_booking(ctx.user),
        free: None,
    })
}

async fn messages(
    queries: &Queries,
    ctx: &Ctx<'_>,
    staff: &[Staff],
    peer: Option<Id>,
) -> Result<MessagesView, SyncError> {
    let me = ctx.user.id;
    let row = |m: Cached<clinic_protocol::Message>| MessageRow {
        mine: m.record.sender_id == me,
        pending: m.pending,
        record: m.record,
    };
    // Conversations with messages, the most recent first, then everyone else by name.
    let mut conversations: Vec<ConversationDto> = Vec::new();
    let mut seen = HashSet::from([me]);
    for c in queries.conversations().await? {
        seen.insert(c.peer);
        conversations.push(ConversationDto {
            peer: PersonRef {
                id: c.peer,
                name: ctx.name(Some(c.peer)).unwrap_or_default(),
            },
            last: Some(row(c.last)),
            unread: c.unread,
        });
    }
    for s in staff {
        if seen.insert(s.id) {
            conversations.push(ConversationDto {
                peer: PersonRef {
                    id: s.id,
                    name: s.display_name.clone(),
                },
                last: None,
                unread: 0,
            });
        }
    }
    let peer = peer
        .filter(|p| conversations.iter().any(|c| c.peer.id == *p))
        .or_else(|| {
            conversations
                .iter()
                .find(|c| c.last.is_some())
                .map(|c| c.peer.id)
        });
    let thread = match peer {
        Some(p) => queries
            .messages_with(p)
            .await?
            .into_iter()
            .map(row)
            .collect(),
        None => Vec::new(),
    };
    Ok(MessagesView {
        conversations,
        peer,
        thread,
    })
}

/// Every staff account (staff records reach every user, administrators included, with
/// their state), by name.
async fn admin(queries: &Queries, user: &Staff) -> Result<AdminView, SyncError> {
    let rows = queries
        .staff()
        .await?
        .into_iter()
        .map(|record| {
            let (state, state_label) = if record.disabled {
                ("disabled", "Disabled")
            } else if record.must_change_password {
                ("must_change_password", "Must change password")
            } else {
                ("active", "Active")
            };
            StaffRow {
                me: record.id == user.id,
                state,
                state_label,
                record,
            }
        })
        .collect();
    Ok(AdminView {
        staff: rows,
        roles: Role::ALL
            .into_iter()
            .map(|value| RoleDto {
                value,
                label: value.label(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, Utc};
    use clinic_protocol::NewBooking;

    fn t(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").expect("a time")
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 1).expect("a date")
    }

    fn driver(name: &str) -> Staff {
        serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::new_v4(),
            "username": name.to_lowercase(),
            "display_name": name,
            "roles": ["driver"],
            "version": 1,
        }))
        .expect("a staff record")
    }

    fn run(who: &Staff, start: &str, end: &str, status: BookingStatus) -> Cached<Booking> {
        let fields = NewBooking {
            id: uuid::Uuid::new_v4(),
            client_name: "Ana Lopez".into(),
            client_phone: String::new(),
            address: "1 Main St".into(),
            service: "Massage".into(),
            date: today(),
            start: t(start),
            end: t(end),
            therapist_id: None,
            driver_id: Some(who.id),
            notes: String::new(),
        };
        let booking = rules::new_booking(&fields, None, Utc::now()).expect("a valid booking");
        Cached {
            record: Booking { status, ..booking },
            pending: false,
        }
    }

    #[test]
    fn the_drivers_panel_counts_only_runs_that_take_time() {
        let lee = driver("Lee");
        let bookings = [
            run(&lee, "09:00", "10:00", BookingStatus::Declined),
            run(&lee, "10:00", "11:00", BookingStatus::Cancelled),
            run(&lee, "11:00", "12:00", BookingStatus::Completed),
            run(&lee, "13:00", "14:00", BookingStatus::Confirmed),
        ];
        let board = driver_board(std::slice::from_ref(&lee), &bookings, today());
        assert_eq!(board.len(), 1);
        let row = &board[0];
        // The same rule as "who is busy": declined and cancelled runs are not his.
        let taking: Vec<_> = bookings
            .iter()
            .filter(|b| b.record.status.takes_time())
            .collect();
        assert_eq!(row.runs_today as usize, taking.len());
        assert_eq!((row.runs_today, row.done_today), (2, 1));
        let current = row.current.as_ref().expect("the next run");
        assert_eq!(current.booking_id, bookings[3].record.id);
    }

    #[test]
    fn paid_today_says_what_it_counts() {
        let none = paid_today(&[], today());
        assert_eq!((none.count, none.amount_cents), (0, 0));
        assert_eq!(
            none.about,
            format!(
                "0 payments verified today, for bookings of the last {PAID_LOOKBACK_DAYS} days"
            )
        );
    }
}
