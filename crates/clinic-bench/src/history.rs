//! Benchmark 8: the dashboards' reads as the clinic's history grows.
//!
//! A cache is filled, through the engine's own write path, with a generated clinic of
//! `n` bookings spread over the three years up to today (with a week ahead), availability
//! (one slot per ten bookings) and messages (two for every three bookings) among 60 staff.
//! Then every read a dashboard makes after a change is timed on it, through the engine's
//! queries (`clinic_sync::Queries`): what a window waits for, and what must not grow with
//! history. The peer, in the same run on the same cache and connection pool, is the same
//! read as the engine made it before (one statement on the `visible` view), for the reads
//! whose statement changed.

use std::time::Instant;

use anyhow::bail;
use chrono::{Duration, Local, NaiveTime, Utc};
use clinic_protocol::{BookingStatus, Id, Message, PaymentStatus, Record, Role, Slot, Staff};
use clinic_sync::probe::CacheProbe;
use clinic_sync::{BookingOrder, BookingQuery};
use uuid::Uuid;

use crate::benches::template;
use crate::hist::{Histogram, Latency};

/// Each read is timed this many times (after one untimed run that warms the page cache).
const REPEATS: usize = 30;
const STAFF: usize = 60;
const THERAPISTS: usize = 40;
/// Rows per write: what the server puts in one feed frame.
const BATCH: usize = clinic_protocol::wire::MAX_BATCH_CHANGES;

/// One read at one size: ours, and the statement before where it changed.
#[derive(Debug, Clone)]
pub(crate) struct Read {
    pub(crate) name: &'static str,
    pub(crate) ours: Latency,
    pub(crate) before: Option<Latency>,
}

/// Every read at one history size.
#[derive(Debug, Clone)]
pub(crate) struct Size {
    pub(crate) bookings: usize,
    pub(crate) reads: Vec<Read>,
}

/// The generated clinic: who is who, and every record.
struct Clinic {
    me: Id,
    therapist: Id,
    peer: Id,
    records: Vec<Record>,
}

fn staff(id: Id, i: usize) -> anyhow::Result<Record> {
    let roles = if i == 0 {
        vec![Role::Operator, Role::Scheduler]
    } else if i <= THERAPISTS {
        vec![Role::Therapist]
    } else {
        vec![Role::Driver]
    };
    // Through JSON, so that fields with defaults need not be spelt out here.
    let staff: Staff = serde_json::from_value(serde_json::json!({
        "id": id,
        "username": format!("staff{i}"),
        "display_name": format!("Staff member {i}"),
        "roles": roles,
        "version": 1,
    }))?;
    Ok(Record::Staff(staff))
}

fn clinic(bookings: usize) -> anyhow::Result<Clinic> {
    let ids: Vec<Id> = (0..STAFF).map(|_| Uuid::new_v4()).collect();
    let me = ids[0];
    let mut records = Vec::with_capacity(bookings * 2);
    for (i, id) in ids.iter().enumerate() {
        records.push(staff(*id, i)?);
    }
    let today = Local::now().date_naive();
    // Three years back and a week ahead, about as many bookings on every day.
    let days = 3 * 365 + 7;
    let first = today - Duration::days(3 * 365);
    let clinic_protocol::ChangeOp::Upsert {
        record: Record::Booking(template),
    } = template().op
    else {
        bail!("the template is a booking")
    };
    let hour = |h: usize| NaiveTime::from_hms_opt(8 + (h % 10) as u32, 0, 0).unwrap_or_default();
    for i in 0..bookings {
        let date = first + Duration::days((i * days / bookings.max(1)) as i64);
        let mut b = template.clone();
        b.id = Uuid::new_v4();
        b.client_name = format!("Client {i}");
        b.date = date;
        b.start = hour(i);
        b.end = hour(i) + Duration::minutes(50);
        b.therapist_id = (i % 50 != 0).then(|| ids[1 + i % THERAPISTS]);
        b.driver_id = Some(ids[1 + THERAPISTS + i % (STAFF - 1 - THERAPISTS)]);
        b.created_at = Utc::now() - Duration::days(3 * 365) + Duration::minutes(i as i64 * 10);
        b.updated_at = b.created_at;
        (b.status, b.payment) = if date < today {
            if i % 20 == 0 {
                (BookingStatus::Cancelled, PaymentStatus::Unpaid)
            } else {
                (BookingStatus::Completed, PaymentStatus::Verified)
            }
        } else if i % 3 == 0 {
            (BookingStatus::Requested, PaymentStatus::Unpaid)
        } else {
            (BookingStatus::Confirmed, PaymentStatus::Unpaid)
        };
        records.push(Record::Booking(b));
    }
    for i in 0..bookings / 10 {
        records.push(Record::Slot(Slot {
            id: Uuid::new_v4(),
            staff_id: ids[1 + i % THERAPISTS],
            date: first + Duration::days((i * 10 * days / bookings.max(1)) as i64),
            start: NaiveTime::from_hms_opt(8, 0, 0).unwrap_or_default(),
            end: NaiveTime::from_hms_opt(18, 0, 0).unwrap_or_default(),
            note: String::new(),
            version: 1,
        }));
    }
    let messages = bookings * 2 / 3;
    for i in 0..messages {
        let other = ids[1 + i % (STAFF - 1)];
        let (sender_id, recipient_id) = if i % 2 == 0 { (me, other) } else { (other, me) };
        let sent_at = Utc::now() - Duration::days(3 * 365) + Duration::minutes(i as i64 * 15);
        records.push(Record::Message(Message {
            id: Uuid::new_v4(),
            sender_id,
            recipient_id,
            body: format!("Can you take the 3 pm on day {i}?"),
            sent_at,
            // The last few are unread.
            read_at: (i + 20 < messages).then_some(sent_at),
            version: 1,
        }));
    }
    Ok(Clinic {
        me,
        therapist: ids[1],
        peer: ids[1],
        records,
    })
}

/// Times `read` REPEATS times after one warm-up run.
async fn time<F, Fut>(mut read: F) -> anyhow::Result<Latency>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    read().await?;
    let h = Histogram::new();
    for _ in 0..REPEATS {
        let t = Instant::now();
        read().await?;
        h.record(t.elapsed());
    }
    Ok(h.summary())
}

pub(crate) async fn history(bookings: usize) -> anyhow::Result<Size> {
    let clinic = clinic(bookings)?;
    let dir = tempfile::tempdir()?;
    let cache = CacheProbe::open(&dir.path().join("cache.db")).await?;
    for (i, chunk) in clinic.records.chunks(BATCH).enumerate() {
        cache.apply(chunk, i as u64 + 1).await?;
    }
    let q = cache.queries(clinic.me);
    let today = Local::now().date_naive();
    let monday = today - Duration::days(7);
    let page = Some(201);
    let newest = BookingQuery {
        order: BookingOrder::NewestFirst,
        limit: page,
        ..BookingQuery::default()
    };
    let mut reads = Vec::new();

    // The statement before, on the same pool, decoding what it returns like a query.
    let before = |sql: String| {
        let cache = &cache;
        async move {
            time(|| {
                let sql = sql.clone();
                async move {
                    cache.read_rows(&sql).await?;
                    Ok(())
                }
            })
            .await
        }
    };
    let (me, peer, therapist) = (clinic.me, clinic.peer, clinic.therapist);

    let ours = time(|| async {
        q.bookings(&newest).await?;
        Ok(())
    })
    .await?;
    let old = before(
        "SELECT body, pending FROM visible WHERE kind = 'booking' ORDER BY at DESC, id LIMIT 201"
            .into(),
    )
    .await?;
    reads.push(Read {
        name: "operator: a page, newest first",
        ours,
        before: Some(old),
    });

    let attention = BookingQuery {
        needs_attention: true,
        ..newest.clone()
    };
    let ours = time(|| async {
        q.bookings(&attention).await?;
        Ok(())
    })
    .await?;
    let old = before(
        "SELECT body, pending FROM visible WHERE kind = 'booking' AND (status IN ('requested', \
         'declined') OR (status = 'completed' AND payment = 'unpaid')) ORDER BY at DESC, id LIMIT 201"
            .into(),
    )
    .await?;
    reads.push(Read {
        name: "operator: needs attention",
        ours,
        before: Some(old),
    });

    let day = BookingQuery {
        from: Some(today),
        to: Some(today),
        limit: page,
        ..BookingQuery::default()
    };
    let ours = time(|| async {
        q.bookings(&day).await?;
        Ok(())
    })
    .await?;
    let old = before(format!(
        "SELECT body, pending FROM visible WHERE kind = 'booking' AND day >= '{today}' AND \
         day <= '{today}' ORDER BY at DESC, id LIMIT 201"
    ))
    .await?;
    reads.push(Read {
        name: "operator: today",
        ours,
        before: Some(old),
    });

    let ours = time(|| async {
        q.counts(today).await?;
        Ok(())
    })
    .await?;
    let old = before(format!(
        "SELECT COALESCE(SUM(status IN ('requested', 'declined')), 0), \
         COALESCE(SUM(day = '{today}' AND status IN ('confirmed', 'completed')), 0), \
         COALESCE(SUM(status <> 'cancelled'), 0), COALESCE(SUM(pending), 0) \
         FROM visible WHERE kind = 'booking'"
    ))
    .await?;
    reads.push(Read {
        name: "operator: the counts",
        ours,
        before: Some(old),
    });

    let upcoming = BookingQuery {
        therapist: Some(therapist),
        from: Some(today),
        limit: Some(200),
        ..BookingQuery::default()
    };
    let earlier = BookingQuery {
        therapist: Some(therapist),
        to: Some(today - Duration::days(1)),
        order: BookingOrder::ByTimeDesc,
        limit: Some(50),
        ..BookingQuery::default()
    };
    let ours = time(|| async {
        q.bookings(&upcoming).await?;
        q.bookings(&earlier).await?;
        Ok(())
    })
    .await?;
    reads.push(Read {
        name: "therapist: upcoming and earlier",
        ours,
        before: None,
    });

    let week = BookingQuery {
        from: Some(monday),
        to: Some(monday + Duration::days(6)),
        ..BookingQuery::default()
    };
    let ours = time(|| async {
        q.bookings(&week).await?;
        q.slots(None, monday, Some(monday + Duration::days(6)))
            .await?;
        Ok(())
    })
    .await?;
    reads.push(Read {
        name: "scheduling: a week",
        ours,
        before: None,
    });

    let ours = time(|| async {
        q.conversations().await?;
        Ok(())
    })
    .await?;
    let old = before(format!(
        "WITH m AS (SELECT CASE WHEN sender_id = '{me}' THEN recipient_id ELSE sender_id END \
         AS peer, recipient_id, unread, at, id, body, pending FROM visible WHERE kind = 'message'), \
         r AS (SELECT peer, body, pending, at, SUM(CASE WHEN recipient_id = '{me}' AND unread = 1 \
         THEN 1 ELSE 0 END) OVER (PARTITION BY peer) AS unread_count, ROW_NUMBER() OVER \
         (PARTITION BY peer ORDER BY at DESC, id DESC) AS rn FROM m) \
         SELECT peer, body, pending, unread_count FROM r WHERE rn = 1 ORDER BY at DESC"
    ))
    .await?;
    reads.push(Read {
        name: "messages: the conversations",
        ours,
        before: Some(old),
    });

    let ours = time(|| async {
        q.messages_with(peer).await?;
        Ok(())
    })
    .await?;
    let old = before(format!(
        "SELECT body, pending FROM visible WHERE kind = 'message' AND ((sender_id = '{me}' AND \
         recipient_id = '{peer}') OR (sender_id = '{peer}' AND recipient_id = '{me}')) \
         ORDER BY at, id"
    ))
    .await?;
    reads.push(Read {
        name: "messages: one conversation",
        ours,
        before: Some(old),
    });

    if q.bookings(&newest).await?.is_empty() {
        bail!("the generated clinic has no bookings to read");
    }
    Ok(Size { bookings, reads })
}
