//! The reads the dashboards need, answered by SQLite from the cache (so offline too), each
//! with this user's pending changes applied: the server's records with the overlay of
//! pending changes in place of the records it covers (the `visible` view of the
//! migrations, which [`visible`] spells out in every query; see there why).
//!
//! Every query is one statement on the typed columns, shaped so that an index answers it
//! in order and it stops at its page: its cost follows what the dashboard shows, not the
//! clinic's history (migration 0005). Only the returned records' JSON is decoded.
//! [`Queries`] holds the cache's connection pool and nothing of the engine, so reads never
//! wait for a sync step (SQLite's WAL lets them run while a batch is written).

use chrono::NaiveDate;
use clinic_protocol::{Booking, BookingStatus, Id, Message, Record, RecordKind, Slot, Staff};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use crate::error::SyncError;
use crate::events::ViewRecord;

/// A record from a query, with whether a change of this user's to it is still pending.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Cached<T> {
    pub record: T,
    pub pending: bool,
}

/// The operator's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Counts {
    /// Requested or declined: waiting for someone to act.
    pub pending_requests: u64,
    /// Today's bookings that hold the therapist's time or are done.
    pub confirmed_today: u64,
    /// Bookings from today on that are not cancelled: what is ahead. (A count of all
    /// history would grow for ever and cost a walk of it on every change.)
    pub upcoming: u64,
    /// Bookings with a change not yet confirmed by the server.
    pub unsynced: u64,
}

/// One conversation: the other person, the last message and how many are unread.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Conversation {
    pub peer: Id,
    pub last: Cached<Message>,
    /// Messages to this user from `peer` not read yet.
    pub unread: u64,
}

/// The order of [`Queries::bookings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BookingOrder {
    /// By date and start time, earliest first.
    #[default]
    ByTime,
    /// By date and start time, latest first.
    ByTimeDesc,
    /// The most recently created first.
    NewestFirst,
}

/// Which bookings [`Queries::bookings`] returns: every filter that is set must hold (the
/// default is every booking, by time).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BookingQuery {
    /// Assigned to this therapist.
    pub therapist: Option<Id>,
    /// Assigned to this driver.
    pub driver: Option<Id>,
    /// In one of these statuses (an empty list matches nothing).
    pub statuses: Option<Vec<BookingStatus>>,
    /// On or after this day.
    pub from: Option<NaiveDate>,
    /// On or before this day.
    pub to: Option<NaiveDate>,
    /// Only bookings with a therapist assigned.
    pub assigned_only: bool,
    /// Only bookings waiting for someone to act: requested or declined, or completed and
    /// not paid yet (the operator's "Needs attention").
    pub needs_attention: bool,
    /// Only bookings still under way: neither completed nor cancelled (the operator's
    /// "Open").
    pub open_only: bool,
    pub order: BookingOrder,
    /// At most this many.
    pub limit: Option<u32>,
}

/// The dashboards' reads, from [`Engine::queries`](crate::Engine::queries).
#[derive(Debug, Clone)]
pub struct Queries {
    pool: SqlitePool,
    /// The signed-in user, whose conversations these are.
    me: Id,
}

const BY_TIME: &str = " ORDER BY day, start_time, id";

/// How many messages of one conversation [`Queries::messages_with`] returns: the latest.
pub const THREAD_PAGE: u32 = 200;

/// What every arm of a [`visible`] query selects: the record, whether it is pending, and
/// what the queries order by (a compound SELECT orders by its result columns only).
const COLUMNS: &str = "body, day, start_time, at, id";

/// `SELECT ... FROM records ... UNION ALL SELECT ... FROM overlay ...`: the visible records
/// of `kind` for which `filter` holds (it pushes `AND ...` clauses on the typed columns),
/// the server's record where no pending change covers it and the overlay's where one does.
///
/// The same rows as the `visible` view, spelt out because SQLite cannot take a view's
/// ORDER BY ... LIMIT into its UNION ALL: it reads and sorts every match of the view first,
/// the whole history (0.5 s for a page of bookings at 150,000). With the filter in each
/// arm it merges two index-ordered streams and stops at the LIMIT (under a millisecond).
fn visible<'a>(
    kind: RecordKind,
    filter: impl Fn(&mut QueryBuilder<'a, Sqlite>),
) -> QueryBuilder<'a, Sqlite> {
    let kind = kind.as_str();
    let mut q = QueryBuilder::new(format!(
        "SELECT {COLUMNS}, 0 AS pending FROM records r WHERE kind = '{kind}'"
    ));
    filter(&mut q);
    q.push(" AND ").push(NOT_COVERED);
    q.push(format!(
        " UNION ALL SELECT {COLUMNS}, 1 AS pending FROM overlay \
         WHERE kind = '{kind}' AND body IS NOT NULL"
    ));
    filter(&mut q);
    q
}

impl Queries {
    pub(crate) fn new(pool: SqlitePool, me: Id) -> Queries {
        Queries { pool, me }
    }

    /// Runs `q` (selecting `body, pending`) and keeps the records `pick` accepts.
    async fn fetch<T>(
        &self,
        mut q: QueryBuilder<'_, Sqlite>,
        pick: fn(Record) -> Option<T>,
    ) -> Result<Vec<Cached<T>>, SyncError> {
        let rows = q.build().fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let record: Record = serde_json::from_str(row.try_get::<&str, _>("body")?)?;
            if let Some(record) = pick(record) {
                out.push(Cached {
                    record,
                    pending: row.try_get::<bool, _>("pending")?,
                });
            }
        }
        Ok(out)
    }

    /// The cache's sequence number now: the seq of the last change published. Read it
    /// BEFORE a query and apply the changes above it afterwards: a change the query
    /// already saw is then applied twice, which is harmless, and none is missed.
    pub async fn seq(&self) -> Result<u64, SyncError> {
        let seq: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'cache_seq'")
                .fetch_optional(&self.pool)
                .await?;
        Ok(seq.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// Every visible record. [`Engine::view_at`](crate::Engine::view_at) pairs it with
    /// the seq it is consistent at.
    pub async fn all(&self) -> Result<Vec<ViewRecord>, SyncError> {
        sqlx::query("SELECT body, pending FROM visible")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(ViewRecord {
                    record: serde_json::from_str(row.try_get::<&str, _>("body")?)?,
                    pending: row.try_get::<bool, _>("pending")?,
                })
            })
            .collect()
    }

    /// The bookings `q` asks for, in one statement.
    pub async fn bookings(&self, q: &BookingQuery) -> Result<Vec<Cached<Booking>>, SyncError> {
        self.fetch(booking_sql(q), Record::into_booking).await
    }

    /// How many visible bookings match `filter` (on the columns `day` and `status` only):
    /// the matching server records, less those a pending change covers, plus the matching
    /// overlay rows. The server records are counted in `booking_days` (migration 0009),
    /// keyed by status and day, where a figure is a range of a status's days or one day,
    /// and the overlay's few keys are each looked up by their primary key: nothing here
    /// walks the bookings.
    async fn count_bookings(
        &self,
        filter: impl Fn(&mut QueryBuilder<'_, Sqlite>),
    ) -> Result<u64, SyncError> {
        let mut q =
            QueryBuilder::new("SELECT (SELECT coalesce(sum(n), 0) FROM booking_days WHERE TRUE");
        filter(&mut q);
        // The covered ones from the overlay's few keys (CROSS JOIN keeps that order).
        q.push(
            ") - (SELECT count(*) FROM (SELECT id AS oid FROM overlay WHERE kind = 'booking') \
             CROSS JOIN records WHERE kind = 'booking' AND id = oid",
        );
        filter(&mut q);
        q.push(")");
        q.push(" + (SELECT count(*) FROM overlay WHERE kind = 'booking' AND body IS NOT NULL");
        filter(&mut q);
        q.push(")");
        let n: i64 = q.build_query_scalar().fetch_one(&self.pool).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Bookings on one day, by start time.
    pub async fn bookings_on(&self, day: NaiveDate) -> Result<Vec<Cached<Booking>>, SyncError> {
        self.bookings(&BookingQuery {
            from: Some(day),
            to: Some(day),
            ..BookingQuery::default()
        })
        .await
    }

    /// A therapist's bookings, by date and time.
    pub async fn bookings_of_therapist(
        &self,
        therapist: Id,
    ) -> Result<Vec<Cached<Booking>>, SyncError> {
        self.bookings(&BookingQuery {
            therapist: Some(therapist),
            ..BookingQuery::default()
        })
        .await
    }

    /// Bookings in one status, by date and time.
    pub async fn bookings_with_status(
        &self,
        status: BookingStatus,
    ) -> Result<Vec<Cached<Booking>>, SyncError> {
        self.bookings(&BookingQuery {
            statuses: Some(vec![status]),
            ..BookingQuery::default()
        })
        .await
    }

    /// The most recently created bookings first.
    pub async fn recent_bookings(&self, limit: u32) -> Result<Vec<Cached<Booking>>, SyncError> {
        self.bookings(&BookingQuery {
            order: BookingOrder::NewestFirst,
            limit: Some(limit),
            ..BookingQuery::default()
        })
        .await
    }

    /// The operator's figures for `today` (the clinic's local date).
    pub async fn counts(&self, today: NaiveDate) -> Result<Counts, SyncError> {
        let waiting = [BookingStatus::Requested, BookingStatus::Declined];
        let taken: Vec<BookingStatus> = BookingStatus::ALL
            .into_iter()
            .filter(|s| s.holds_therapist() || *s == BookingStatus::Completed)
            .collect();
        let pending_requests = self.count_bookings(|q| status_in(q, &waiting)).await?;
        let confirmed_today = self
            .count_bookings(|q| {
                q.push(" AND day = ").push_bind(today.to_string());
                status_in(q, &taken);
            })
            .await?;
        // Every status but cancelled, from today on.
        let live: Vec<BookingStatus> = BookingStatus::ALL
            .into_iter()
            .filter(|s| *s != BookingStatus::Cancelled)
            .collect();
        let upcoming = self
            .count_bookings(|q| {
                q.push(" AND day >= ").push_bind(today.to_string());
                status_in(q, &live);
            })
            .await?;
        let unsynced: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM overlay WHERE kind = 'booking' AND body IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Counts {
            pending_requests,
            confirmed_today,
            upcoming,
            unsynced: u64::try_from(unsynced).unwrap_or(0),
        })
    }

    /// Availability from `from` to `to` (inclusive; `None`: no end): one staff member's,
    /// or everyone's the user may see with `None`. By date and time.
    pub async fn slots(
        &self,
        staff: Option<Id>,
        from: NaiveDate,
        to: Option<NaiveDate>,
    ) -> Result<Vec<Cached<Slot>>, SyncError> {
        let mut q = visible(RecordKind::Slot, |q| {
            q.push(" AND day >= ").push_bind(from.to_string());
            if let Some(to) = to {
                q.push(" AND day <= ").push_bind(to.to_string());
            }
            if let Some(staff) = staff {
                q.push(" AND staff_id = ").push_bind(staff.to_string());
            }
        });
        q.push(BY_TIME);
        self.fetch(q, Record::into_slot).await
    }

    /// The user's conversations, the most recent first, with unread counts.
    ///
    /// One indexed lookup per colleague for the last message (both directions and the
    /// overlay, merged in index order, LIMIT 1) and one count on the partial index of
    /// unread messages: a few milliseconds at 100,000 messages, where grouping every
    /// message by peer took half a second.
    pub async fn conversations(&self) -> Result<Vec<Conversation>, SyncError> {
        let sql = format!(
            "WITH last AS (
                 SELECT p.id AS peer,
                        (SELECT body FROM ({} ORDER BY at DESC, id DESC LIMIT 1)) AS body
                 FROM records p WHERE p.kind = 'staff' AND p.id <> ?1)
             SELECT peer, body,
                    EXISTS (SELECT 1 FROM overlay o WHERE o.kind = 'message'
                            AND o.id = json_extract(last.body, '$.id')
                            AND o.body IS NOT NULL) AS pending
             FROM last WHERE body IS NOT NULL",
            messages_between("?1", "p.id")
        );
        let rows = sqlx::query(&sql)
            .bind(self.me.to_string())
            .fetch_all(&self.pool)
            .await?;
        // The partial index is named: with no statistics SQLite would rather walk every
        // message from the peer through `records_recipient`.
        let unread_sql = format!(
            "SELECT sender_id, count(*) FROM (
                 SELECT sender_id FROM records r INDEXED BY records_unread
                 WHERE kind = 'message' AND unread = 1 AND recipient_id = ?1 AND {NOT_COVERED}
                 UNION ALL
                 SELECT sender_id FROM overlay
                 WHERE kind = 'message' AND body IS NOT NULL AND unread = 1
                   AND recipient_id = ?1)
             GROUP BY sender_id"
        );
        let unread: std::collections::HashMap<String, i64> = sqlx::query_as(&unread_sql)
            .bind(self.me.to_string())
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let peer: String = row.try_get("peer")?;
            let Some(last) =
                serde_json::from_str::<Record>(row.try_get::<&str, _>("body")?)?.into_message()
            else {
                continue;
            };
            out.push(Conversation {
                unread: u64::try_from(unread.get(&peer).copied().unwrap_or(0)).unwrap_or(0),
                peer: peer
                    .parse()
                    .map_err(|_| SyncError::Storage("bad peer id".into()))?,
                last: Cached {
                    record: last,
                    pending: row.try_get("pending")?,
                },
            });
        }
        out.sort_by(|a, b| {
            (b.last.record.sent_at, b.last.record.id)
                .cmp(&(a.last.record.sent_at, a.last.record.id))
        });
        Ok(out)
    }

    /// The latest [`THREAD_PAGE`] messages between the user and `peer`, oldest first.
    pub async fn messages_with(&self, peer: Id) -> Result<Vec<Cached<Message>>, SyncError> {
        let sql = format!(
            "{} ORDER BY at DESC, id DESC LIMIT ?3",
            messages_between("?1", "?2")
        );
        let q = sqlx::query(&sql)
            .bind(self.me.to_string())
            .bind(peer.to_string())
            .bind(i64::from(THREAD_PAGE));
        let mut list = Vec::new();
        for row in q.fetch_all(&self.pool).await? {
            let record: Record = serde_json::from_str(row.try_get::<&str, _>("body")?)?;
            if let Some(m) = record.into_message() {
                list.push(Cached {
                    record: m,
                    pending: row.try_get::<bool, _>("pending")?,
                });
            }
        }
        list.reverse();
        Ok(list)
    }

    /// The staff list, by display name.
    pub async fn staff(&self) -> Result<Vec<Staff>, SyncError> {
        let q = QueryBuilder::new("SELECT body, pending FROM visible WHERE kind = 'staff'");
        let mut list: Vec<Staff> = self
            .fetch(q, Record::into_staff)
            .await?
            .into_iter()
            .map(|c| c.record)
            .collect();
        list.sort_by(|a, b| a.display_name.cmp(&b.display_name).then(a.id.cmp(&b.id)));
        Ok(list)
    }
}

/// Bookings waiting for someone to act, as `records_attention` (migration 0005) says it.
const NEEDS_ATTENTION: &str =
    "(status IN ('requested', 'declined') OR (status = 'completed' AND payment = 'unpaid'))";
/// Bookings under way, as `records_open` (migration 0005) says it.
const OPEN: &str = "status NOT IN ('completed', 'cancelled')";

/// A server record (alias `r`) that no pending change covers.
const NOT_COVERED: &str =
    "NOT EXISTS (SELECT 1 FROM overlay o WHERE o.kind = r.kind AND o.id = r.id)";

/// The visible messages between `a` and `b` (SQL expressions: placeholders or columns),
/// a compound SELECT of `body, at, id, pending` to be ordered by `at, id`: one arm per
/// direction, so that each reads its own index (`records_sender`) in order.
fn messages_between(a: &str, b: &str) -> String {
    format!(
        "SELECT body, at, id, 0 AS pending FROM records r \
         WHERE kind = 'message' AND sender_id = {a} AND recipient_id = {b} AND {NOT_COVERED} \
         UNION ALL SELECT body, at, id, 0 FROM records r \
         WHERE kind = 'message' AND sender_id = {b} AND recipient_id = {a} AND {NOT_COVERED} \
         UNION ALL SELECT body, at, id, 1 FROM overlay \
         WHERE kind = 'message' AND body IS NOT NULL \
           AND ((sender_id = {a} AND recipient_id = {b}) OR (sender_id = {b} AND recipient_id = {a}))"
    )
}

/// The statement of [`Queries::bookings`].
fn booking_sql(q: &BookingQuery) -> QueryBuilder<'_, Sqlite> {
    let mut sql = visible(RecordKind::Booking, |sql| booking_filter(sql, q));
    sql.push(match q.order {
        BookingOrder::ByTime => BY_TIME,
        BookingOrder::ByTimeDesc => " ORDER BY day DESC, start_time DESC, id DESC",
        // `at` alone, as the indexes hold it (their rowid breaks the ties of equal
        // timestamps, which microseconds make rare).
        BookingOrder::NewestFirst => " ORDER BY at DESC",
    });
    if let Some(limit) = q.limit {
        sql.push(" LIMIT ").push_bind(i64::from(limit));
    }
    sql
}

/// `AND ...` for every filter of `q` that is set.
fn booking_filter<'a>(sql: &mut QueryBuilder<'a, Sqlite>, q: &BookingQuery) {
    if let Some(therapist) = q.therapist {
        sql.push(" AND therapist_id = ")
            .push_bind(therapist.to_string());
    }
    if let Some(driver) = q.driver {
        sql.push(" AND driver_id = ").push_bind(driver.to_string());
    }
    if let Some(statuses) = &q.statuses {
        status_in(sql, statuses);
    }
    // One day is an equality, which SQLite's planner weighs right (a range on one day
    // makes it walk the whole `at` index for the operator's "Today").
    match (q.from, q.to) {
        (Some(from), Some(to)) if from == to => {
            sql.push(" AND day = ").push_bind(from.to_string());
        }
        (from, to) => {
            if let Some(from) = from {
                sql.push(" AND day >= ").push_bind(from.to_string());
            }
            if let Some(to) = to {
                sql.push(" AND day <= ").push_bind(to.to_string());
            }
        }
    }
    if q.assigned_only {
        sql.push(" AND therapist_id IS NOT NULL");
    }
    // These two are spelt as the partial indexes of migration 0005 are, literally: SQLite
    // uses a partial index only for a query whose WHERE visibly implies the index's, which
    // a bound parameter never does. Each index holds only the bookings that need
    // attention (or are open), in `at` order: a page of them is read in order and stops,
    // where the `at` index would be walked through the whole history to find a few.
    if q.needs_attention {
        sql.push(" AND ").push(NEEDS_ATTENTION);
    }
    if q.open_only {
        sql.push(" AND ").push(OPEN);
    }
}

/// `AND status IN (...)`; an empty list matches nothing.
fn status_in(sql: &mut QueryBuilder<'_, Sqlite>, statuses: &[BookingStatus]) {
    if statuses.is_empty() {
        sql.push(" AND 0");
        return;
    }
    sql.push(" AND status IN (");
    let mut list = sql.separated(", ");
    for s in statuses {
        list.push_bind(s.as_str());
    }
    sql.push(")");
}

#[cfg(test)]
mod tests;
