//! The reads the dashboards need, answered by SQLite from the cache (so offline too), each
//! with this user's pending changes applied: they all read the `visible` view, which is the
//! server's records with the overlay of pending changes in place (see the migrations).
//!
//! Every query is one statement on the typed columns; only the matching records' JSON is
//! decoded. [`Queries`] holds the cache's connection pool and nothing of the engine, so
//! reads never wait for a sync step (SQLite's WAL lets them run while a batch is written).

use chrono::NaiveDate;
use clinic_protocol::{Booking, BookingStatus, Id, Message, PaymentStatus, Record, Slot, Staff};
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
    /// Every booking that is not cancelled.
    pub total: u64,
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
        let mut sql: QueryBuilder<'_, Sqlite> =
            QueryBuilder::new("SELECT body, pending FROM visible WHERE kind = 'booking'");
        if let Some(therapist) = q.therapist {
            sql.push(" AND therapist_id = ")
                .push_bind(therapist.to_string());
        }
        if let Some(driver) = q.driver {
            sql.push(" AND driver_id = ").push_bind(driver.to_string());
        }
        if let Some(statuses) = &q.statuses {
            if statuses.is_empty() {
                sql.push(" AND 0");
            } else {
                sql.push(" AND status IN (");
                let mut list = sql.separated(", ");
                for s in statuses {
                    list.push_bind(s.as_str());
                }
                sql.push(")");
            }
        }
        if let Some(from) = q.from {
            sql.push(" AND day >= ").push_bind(from.to_string());
        }
        if let Some(to) = q.to {
            sql.push(" AND day <= ").push_bind(to.to_string());
        }
        if q.assigned_only {
            sql.push(" AND therapist_id IS NOT NULL");
        }
        if q.needs_attention {
            sql.push(" AND (status IN (")
                .push_bind(BookingStatus::Requested.as_str())
                .push(", ")
                .push_bind(BookingStatus::Declined.as_str())
                .push(") OR (status = ")
                .push_bind(BookingStatus::Completed.as_str())
                .push(" AND payment = ")
                .push_bind(PaymentStatus::Unpaid.as_str())
                .push("))");
        }
        sql.push(match q.order {
            BookingOrder::ByTime => BY_TIME,
            BookingOrder::ByTimeDesc => " ORDER BY day DESC, start_time DESC, id DESC",
            BookingOrder::NewestFirst => " ORDER BY at DESC, id",
        });
        if let Some(limit) = q.limit {
            sql.push(" LIMIT ").push_bind(i64::from(limit));
        }
        self.fetch(sql, Record::into_booking).await
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
        let mut q: QueryBuilder<'_, Sqlite> = QueryBuilder::new(
            "SELECT \
               COALESCE(SUM(status IN ('requested', 'declined')), 0) AS pending_requests, \
               COALESCE(SUM(day = ",
        );
        q.push_bind(today.to_string()).push(" AND status IN (");
        let mut taken = q.separated(", ");
        for s in BookingStatus::ALL
            .into_iter()
            .filter(|s| s.holds_therapist() || *s == BookingStatus::Completed)
        {
            taken.push_bind(s.as_str());
        }
        q.push(
            ")), 0) AS confirmed_today, \
               COALESCE(SUM(status <> 'cancelled'), 0) AS total, \
               COALESCE(SUM(pending), 0) AS unsynced \
             FROM visible WHERE kind = 'booking'",
        );
        let row = q.build().fetch_one(&self.pool).await?;
        let get = |name: &str| -> Result<u64, SyncError> {
            Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
        };
        Ok(Counts {
            pending_requests: get("pending_requests")?,
            confirmed_today: get("confirmed_today")?,
            total: get("total")?,
            unsynced: get("unsynced")?,
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
        let mut q: QueryBuilder<'_, Sqlite> =
            QueryBuilder::new("SELECT body, pending FROM visible WHERE kind = 'slot' AND day >= ");
        q.push_bind(from.to_string());
        if let Some(to) = to {
            q.push(" AND day <= ").push_bind(to.to_string());
        }
        if let Some(staff) = staff {
            q.push(" AND staff_id = ").push_bind(staff.to_string());
        }
        q.push(BY_TIME);
        self.fetch(q, Record::into_slot).await
    }

    /// The user's conversations, the most recent first, with unread counts.
    pub async fn conversations(&self) -> Result<Vec<Conversation>, SyncError> {
        let rows = sqlx::query(
            "WITH m AS (
                 SELECT CASE WHEN sender_id = ?1 THEN recipient_id ELSE sender_id END AS peer,
                        recipient_id, unread, at, id, body, pending
                 FROM visible WHERE kind = 'message'),
             r AS (
                 SELECT peer, body, pending, at,
                        SUM(CASE WHEN recipient_id = ?1 AND unread = 1 THEN 1 ELSE 0 END)
                            OVER (PARTITION BY peer) AS unread_count,
                        ROW_NUMBER() OVER (PARTITION BY peer ORDER BY at DESC, id DESC) AS rn
                 FROM m)
             SELECT peer, body, pending, unread_count FROM r WHERE rn = 1 ORDER BY at DESC",
        )
        .bind(self.me.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let peer: String = row.try_get("peer")?;
            let Some(last) =
                serde_json::from_str::<Record>(row.try_get::<&str, _>("body")?)?.into_message()
            else {
                continue;
            };
            out.push(Conversation {
                peer: peer
                    .parse()
                    .map_err(|_| SyncError::Storage("bad peer id".into()))?,
                last: Cached {
                    record: last,
                    pending: row.try_get("pending")?,
                },
                unread: u64::try_from(row.try_get::<i64, _>("unread_count")?).unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// Messages between the user and `peer`, oldest first.
    pub async fn messages_with(&self, peer: Id) -> Result<Vec<Cached<Message>>, SyncError> {
        let me = self.me.to_string();
        let peer = peer.to_string();
        let mut q: QueryBuilder<'_, Sqlite> = QueryBuilder::new(
            "SELECT body, pending FROM visible WHERE kind = 'message' AND ((sender_id = ",
        );
        q.push_bind(me.clone())
            .push(" AND recipient_id = ")
            .push_bind(peer.clone())
            .push(") OR (sender_id = ")
            .push_bind(peer)
            .push(" AND recipient_id = ")
            .push_bind(me)
            .push(")) ORDER BY at, id");
        self.fetch(q, Record::into_message).await
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

#[cfg(test)]
mod tests;
