//! What each dashboard shows, read from the cache in SQL and dressed with what the user may
//! do: every booking row carries the actions the shared rules allow this user now and the
//! dashboard offers, so no window keeps a copy of the rules.
//!
//! A view is read at a cache sequence number taken BEFORE its rows: a window that sees a
//! change batch ending after that number loads again, so it can never miss a change.

use std::collections::{HashMap, HashSet};

use chrono::{Datelike, Duration, NaiveDate};
use clinic_protocol::{rules, Booking, BookingStatus, Id, RecordKind, Role, Slot, Staff};
use clinic_sync::{BookingOrder, BookingQuery, Cached, Queries, SyncError};

use crate::ipc::{
    BookingRow, ConversationDto, CountsDto, Lane, MessageRow, MessagesView, OperatorFilter,
    OperatorView, OwnView, Person, PersonRef, SchedulingView, SlotRow, StatusPayload, ViewBody,
    ViewData, ViewRequest,
};
use crate::windows::WindowKind;

/// How many bookings a list shows before "more" (the operator's) or in the earlier page.
const PAGE: u32 = 200;
const EARLIER_PAGE: u32 = 50;

impl ViewRequest {
    /// The dashboard this view belongs to: only its windows may load it.
    pub fn kind(&self) -> WindowKind {
        match self {
            ViewRequest::Operator { .. } => WindowKind::Operator,
            ViewRequest::Therapist => WindowKind::Therapist,
            ViewRequest::Driver => WindowKind::Driver,
            ViewRequest::Scheduling { .. } => WindowKind::Scheduling,
            ViewRequest::Messages { .. } => WindowKind::Messages,
        }
    }

    /// The record kinds the view reads.
    pub fn kinds(&self) -> Vec<RecordKind> {
        match self {
            ViewRequest::Operator { .. } | ViewRequest::Driver => {
                vec![RecordKind::Booking, RecordKind::Staff]
            }
            ViewRequest::Therapist | ViewRequest::Scheduling { .. } => {
                vec![RecordKind::Booking, RecordKind::Slot, RecordKind::Staff]
            }
            ViewRequest::Messages { .. } => vec![RecordKind::Message, RecordKind::Staff],
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
    };
    let body = match request {
        ViewRequest::Operator { filter, limit } => {
            ViewBody::Operator(operator(queries, &ctx, &staff, *filter, *limit, today).await?)
        }
        ViewRequest::Therapist => ViewBody::Own(own(queries, &ctx, Role::Therapist, today).await?),
        ViewRequest::Driver => ViewBody::Own(own(queries, &ctx, Role::Driver, today).await?),
        ViewRequest::Scheduling { week } => {
            ViewBody::Scheduling(scheduling(queries, &ctx, &staff, week.unwrap_or(today)).await?)
        }
        ViewRequest::Messages { peer } => {
            ViewBody::Messages(messages(queries, &ctx, &staff, *peer).await?)
        }
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
        BookingRow {
            editable: self.kind.offers_editing() && rules::may_edit_booking(self.user, &b.record),
            therapist_name: self.name(b.record.therapist_id),
            driver_name: self.name(b.record.driver_id),
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
    Ok(OperatorView {
        counts: CountsDto {
            pending_requests: counts.pending_requests,
            confirmed_today: counts.confirmed_today,
            total: counts.total,
            unsynced: counts.unsynced,
        },
        bookings: ctx.bookings(bookings),
        more,
        therapists: people(staff, Role::Therapist),
        drivers: people(staff, Role::Driver),
        may_create: rules::may_create_booking(ctx.user),
    })
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
    let slots = if role == Role::Therapist {
        let slots = queries.slots(Some(me), today, None).await?;
        Some(slots.into_iter().map(|s| ctx.slot(s)).collect())
    } else {
        None
    };
    Ok(OwnView {
        upcoming: ctx.bookings(upcoming),
        earlier: ctx.bookings(earlier),
        slots,
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
            assigned_only: true,
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
    for b in bookings {
        if let Some(i) = b.record.therapist_id.and_then(|t| index.get(&t).copied()) {
            let row = ctx.booking(b);
            lanes[i].bookings.push(row);
        }
    }
    Ok(SchedulingView {
        week: monday,
        days: (0..7).map(|i| monday + Duration::days(i)).collect(),
        may_manage: lanes.iter().any(|l| l.manageable),
        lanes,
        therapists: people(staff, Role::Therapist),
        may_create: rules::may_create_booking(ctx.user),
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
