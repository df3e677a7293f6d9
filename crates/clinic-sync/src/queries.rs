//! The reads the dashboards need, answered by SQLite from the cache (so offline too), each
//! with this user's pending changes applied: they all read the `visible` view, which is the
//! server's records with the overlay of pending changes in place (see the migrations).
//!
//! Every query is one statement on the typed columns; only the matching records' JSON is
//! decoded.

use chrono::{Datelike, Duration, NaiveDate};
use clinic_protocol::{Booking, BookingStatus, Id, Message, Record, Slot, Staff};
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::cache::Cache;
use crate::engine::{Engine, ViewRecord};
use crate::error::SyncError;

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

/// Every visible record (for [`Engine::view_at`]).
pub(crate) async fn all(cache: &Cache) -> Result<Vec<ViewRecord>, SyncError> {
    sqlx::query("SELECT body, pending FROM visible")
        .fetch_all(cache.pool())
        .await?
        .iter()
        .map(|row| {
            Ok(ViewRecord {
                record: serde_json::from_str(row.get::<&str, _>("body"))?,
                pending: row.get::<bool, _>("pending"),
            })
        })
        .collect()
}

/// Runs `q` (selecting `body, pending`) and keeps the records `pick` accepts.
async fn fetch<T>(
    engine: &Engine,
    mut q: QueryBuilder<'_, Sqlite>,
    pick: fn(Record) -> Option<T>,
) -> Result<Vec<Cached<T>>, SyncError> {
    let rows = q.build().fetch_all(engine.inner.cache.pool()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let record: Record = serde_json::from_str(row.get::<&str, _>("body"))?;
        if let Some(record) = pick(record) {
            out.push(Cached {
                record,
                pending: row.get::<bool, _>("pending"),
            });
        }
    }
    Ok(out)
}

fn booking(r: Record) -> Option<Booking> {
    match r {
        Record::Booking(b) => Some(b),
        _ => None,
    }
}

fn slot(r: Record) -> Option<Slot> {
    match r {
        Record::Slot(s) => Some(s),
        _ => None,
    }
}

fn message(r: Record) -> Option<Message> {
    match r {
        Record::Message(m) => Some(m),
        _ => None,
    }
}

fn bookings_where(clause: &str) -> QueryBuilder<'_, Sqlite> {
    let mut q = QueryBuilder::new("SELECT body, pending FROM visible WHERE kind = 'booking' AND ");
    q.push(clause);
    q
}

const BY_TIME: &str = " ORDER BY day, start_time, id";

impl Engine {
    /// Bookings on one day, by start time.
    pub async fn bookings_on(&self, day: NaiveDate) -> Result<Vec<Cached<Booking>>, SyncError> {
        let mut q = bookings_where("day = ");
        q.push_bind(day.to_string()).push(BY_TIME);
        fetch(self, q, booking).await
    }

    /// A therapist's bookings, by date and time.
    pub async fn bookings_of_therapist(
        &self,
        therapist: Id,
    ) -> Result<Vec<Cached<Booking>>, SyncError> {
        let mut q = bookings_where("therapist_id = ");
        q.push_bind(therapist.to_string()).push(BY_TIME);
        fetch(self, q, booking).await
    }

    /// A driver's runs, by date and time.
    pub async fn bookings_of_driver(&self, driver: Id) -> Result<Vec<Cached<Booking>>, SyncError> {
        let mut q = bookings_where("driver_id = ");
        q.push_bind(driver.to_string()).push(BY_TIME);
        fetch(self, q, booking).await
    }

    /// Bookings in one status, by date and time.
    pub async fn bookings_with_status(
        &self,
        status: BookingStatus,
    ) -> Result<Vec<Cached<Booking>>, SyncError> {
        let mut q = bookings_where("status = ");
        q.push_bind(status.as_str()).push(BY_TIME);
        fetch(self, q, booking).await
    }

    /// The most recently created bookings first.
    pub async fn recent_bookings(&self, limit: u32) -> Result<Vec<Cached<Booking>>, SyncError> {
        let mut q = bookings_where("1 ORDER BY at DESC, id LIMIT ");
        q.push_bind(i64::from(limit));
        fetch(self, q, booking).await
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
        let row = q.build().fetch_one(self.inner.cache.pool()).await?;
        let get = |name: &str| u64::try_from(row.get::<i64, _>(name)).unwrap_or(0);
        Ok(Counts {
            pending_requests: get("pending_requests"),
            confirmed_today: get("confirmed_today"),
            total: get("total"),
            unsynced: get("unsynced"),
        })
    }

    /// Availability in the week (Monday to Sunday) holding `day`: one staff member's, or
    /// everyone's the user may see with `None`. By date and time.
    pub async fn slots_in_week(
        &self,
        staff: Option<Id>,
        day: NaiveDate,
    ) -> Result<Vec<Cached<Slot>>, SyncError> {
        let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
        let sunday = monday + Duration::days(6);
        let mut q: QueryBuilder<'_, Sqlite> =
            QueryBuilder::new("SELECT body, pending FROM visible WHERE kind = 'slot' AND day >= ");
        q.push_bind(monday.to_string())
            .push(" AND day <= ")
            .push_bind(sunday.to_string());
        if let Some(staff) = staff {
            q.push(" AND staff_id = ").push_bind(staff.to_string());
        }
        q.push(BY_TIME);
        fetch(self, q, slot).await
    }

    /// The user's conversations, the most recent first, with unread counts.
    pub async fn conversations(&self) -> Result<Vec<Conversation>, SyncError> {
        let me = self.user().id.to_string();
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
        .bind(me)
        .fetch_all(self.inner.cache.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let peer: String = row.get("peer");
            let Some(last) = message(serde_json::from_str(row.get::<&str, _>("body"))?) else {
                continue;
            };
            out.push(Conversation {
                peer: peer
                    .parse()
                    .map_err(|_| SyncError::Storage("bad peer id".into()))?,
                last: Cached {
                    record: last,
                    pending: row.get("pending"),
                },
                unread: u64::try_from(row.get::<i64, _>("unread_count")).unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// Messages between the user and `peer`, oldest first.
    pub async fn messages_with(&self, peer: Id) -> Result<Vec<Cached<Message>>, SyncError> {
        let me = self.user().id.to_string();
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
        fetch(self, q, message).await
    }

    /// The staff list, by display name.
    pub async fn staff(&self) -> Result<Vec<Staff>, SyncError> {
        let q = QueryBuilder::new("SELECT body, pending FROM visible WHERE kind = 'staff'");
        let mut list: Vec<Staff> = fetch(self, q, |r| match r {
            Record::Staff(s) => Some(s),
            _ => None,
        })
        .await?
        .into_iter()
        .map(|c| c.record)
        .collect();
        list.sort_by(|a, b| a.display_name.cmp(&b.display_name).then(a.id.cmp(&b.id)));
        Ok(list)
    }
}
