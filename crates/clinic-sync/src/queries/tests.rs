//! The queries against a cache written directly (no server): each filter and order of
//! [`BookingQuery`] on a handful of bookings chosen so that every clause matters.

use chrono::{NaiveTime, TimeZone, Utc};
use clinic_protocol::{PaymentStatus, RecordKind};
use uuid::Uuid;

use super::*;
use crate::cache::{Cache, Key, Write};

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
}

fn at(h: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, 0, 0).unwrap()
}

/// A booking on day `d` at hour `h`, created `created` minutes into the day.
fn booking_at(d: u32, h: u32, status: BookingStatus, created: i64) -> Booking {
    let created_at =
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(created);
    Booking {
        id: Uuid::new_v4(),
        client_name: format!("client {d}/{h}"),
        client_phone: String::new(),
        address: String::new(),
        service: "massage".into(),
        date: day(d),
        start: at(h),
        end: at(h + 1),
        therapist_id: None,
        driver_id: None,
        notes: String::new(),
        status,
        payment: PaymentStatus::Unpaid,
        created_by: None,
        created_at,
        updated_at: created_at,
        version: 1,
        payment_detail: None,
        cancellation: None,
    }
}

async fn open(dir: &tempfile::TempDir) -> (Cache, Queries) {
    let cache = Cache::open(&dir.path().join("cache.db")).await.unwrap();
    let queries = Queries::new(cache.pool().clone(), Uuid::new_v4());
    (cache, queries)
}

/// Writes `records` as the server's, as a feed batch would.
async fn upsert(cache: &Cache, records: &[Record]) {
    cache
        .write(&Write {
            upserts: records.iter().collect(),
            ..Write::default()
        })
        .await
        .unwrap();
}

fn names(list: &[Cached<Booking>]) -> Vec<&str> {
    list.iter().map(|c| c.record.client_name.as_str()).collect()
}

#[tokio::test]
async fn booking_queries_filter_and_order_on_the_typed_columns() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, queries) = open(&dir).await;
    let (reyes, dan) = (Uuid::new_v4(), Uuid::new_v4());
    let mut early = booking_at(2, 9, BookingStatus::Requested, 30);
    early.therapist_id = Some(reyes);
    let mut done_unpaid = booking_at(3, 10, BookingStatus::Completed, 10);
    done_unpaid.therapist_id = Some(reyes);
    done_unpaid.driver_id = Some(dan);
    let mut done_paid = done_unpaid.clone();
    done_paid.id = Uuid::new_v4();
    done_paid.client_name = "client paid".into();
    done_paid.start = at(14);
    done_paid.end = at(15);
    done_paid.payment = PaymentStatus::Verified;
    done_paid.created_at += chrono::Duration::minutes(100);
    let unassigned = booking_at(4, 8, BookingStatus::Declined, 20);
    let mut confirmed = booking_at(5, 11, BookingStatus::Confirmed, 40);
    confirmed.driver_id = Some(dan);
    let records: Vec<Record> = [&early, &done_unpaid, &done_paid, &unassigned]
        .into_iter()
        .cloned()
        .map(Record::Booking)
        .collect();
    // One booking only in the overlay, as a pending change shows it.
    cache
        .write(&Write {
            upserts: records.iter().collect(),
            overlay: vec![(
                (RecordKind::Booking, confirmed.id),
                Some(Record::Booking(confirmed.clone())),
            )],
            cache_seq: Some(7),
            ..Write::default()
        })
        .await
        .unwrap();
    assert_eq!(queries.seq().await.unwrap(), 7);

    let all = queries.bookings(&BookingQuery::default()).await.unwrap();
    assert_eq!(
        names(&all),
        [
            "client 2/9",
            "client 3/10",
            "client paid",
            "client 4/8",
            "client 5/11"
        ],
        "by date and time"
    );
    assert_eq!(
        all.iter().map(|c| c.pending).collect::<Vec<_>>(),
        [false, false, false, false, true]
    );
    let query = |q: BookingQuery| {
        let queries = queries.clone();
        async move { queries.bookings(&q).await.unwrap() }
    };
    assert_eq!(
        names(
            &query(BookingQuery {
                order: BookingOrder::ByTimeDesc,
                ..BookingQuery::default()
            })
            .await
        ),
        [
            "client 5/11",
            "client 4/8",
            "client paid",
            "client 3/10",
            "client 2/9"
        ]
    );
    assert_eq!(
        names(
            &query(BookingQuery {
                order: BookingOrder::NewestFirst,
                limit: Some(3),
                ..BookingQuery::default()
            })
            .await
        ),
        ["client paid", "client 5/11", "client 2/9"],
        "by created_at, newest first, at most three"
    );
    assert_eq!(
        names(
            &query(BookingQuery {
                therapist: Some(reyes),
                driver: Some(dan),
                ..BookingQuery::default()
            })
            .await
        ),
        ["client 3/10", "client paid"]
    );
    assert_eq!(
        names(
            &query(BookingQuery {
                driver: Some(dan),
                from: Some(day(4)),
                ..BookingQuery::default()
            })
            .await
        ),
        ["client 5/11"],
        "a pending change's driver counts"
    );
    assert_eq!(
        names(
            &query(BookingQuery {
                from: Some(day(3)),
                to: Some(day(4)),
                ..BookingQuery::default()
            })
            .await
        ),
        ["client 3/10", "client paid", "client 4/8"],
        "both ends inclusive"
    );
    assert_eq!(
        names(
            &query(BookingQuery {
                statuses: Some(vec![BookingStatus::Declined, BookingStatus::Confirmed]),
                ..BookingQuery::default()
            })
            .await
        ),
        ["client 4/8", "client 5/11"]
    );
    assert!(query(BookingQuery {
        statuses: Some(Vec::new()),
        ..BookingQuery::default()
    })
    .await
    .is_empty());
    assert_eq!(
        names(
            &query(BookingQuery {
                assigned_only: true,
                ..BookingQuery::default()
            })
            .await
        ),
        ["client 2/9", "client 3/10", "client paid"]
    );
    assert_eq!(
        names(
            &query(BookingQuery {
                needs_attention: true,
                ..BookingQuery::default()
            })
            .await
        ),
        ["client 2/9", "client 3/10", "client 4/8"],
        "requested, declined, or completed and unpaid"
    );
    assert_eq!(
        names(
            &query(BookingQuery {
                open_only: true,
                ..BookingQuery::default()
            })
            .await
        ),
        ["client 2/9", "client 4/8", "client 5/11"],
        "neither completed nor cancelled, pending ones included"
    );

    // The thin wrappers say the same as the general query.
    assert_eq!(
        names(&queries.bookings_on(day(3)).await.unwrap()),
        ["client 3/10", "client paid"]
    );
    assert_eq!(
        queries.recent_bookings(1).await.unwrap()[0].record.id,
        done_paid.id
    );
}

#[tokio::test]
async fn slots_are_read_in_a_date_range_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, queries) = open(&dir).await;
    let (reyes, maria) = (Uuid::new_v4(), Uuid::new_v4());
    let slot = |staff_id, d, h| {
        Record::Slot(Slot {
            id: Uuid::new_v4(),
            staff_id,
            date: day(d),
            start: at(h),
            end: at(h + 2),
            note: format!("{d}/{h}"),
            version: 1,
        })
    };
    let records = [
        slot(reyes, 2, 9),
        slot(maria, 2, 8),
        slot(reyes, 9, 9),
        slot(reyes, 1, 9),
        slot(reyes, 2, 7),
    ];
    upsert(&cache, &records).await;
    let notes = |list: Vec<Cached<Slot>>| -> Vec<String> {
        list.into_iter().map(|c| c.record.note).collect()
    };
    assert_eq!(
        notes(queries.slots(None, day(2), Some(day(8))).await.unwrap()),
        ["2/7", "2/8", "2/9"]
    );
    assert_eq!(
        notes(queries.slots(Some(reyes), day(2), None).await.unwrap()),
        ["2/7", "2/9", "9/9"]
    );
}

/// A cache made before `0004_booking_payment` has no payment column: the migration fills
/// it from the records' JSON, so "needs attention" finds completed, unpaid bookings there.
/// The same cache gets its per-day counts (0009) from the bookings it holds.
#[tokio::test]
async fn a_cache_from_before_the_payment_column_gets_it_filled_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let mut old = sqlx::migrate!("./migrations");
    old.migrations = old
        .migrations
        .iter()
        .filter(|m| m.version <= 2)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    old.run(&pool).await.unwrap();
    let b = booking_at(3, 10, BookingStatus::Completed, 0);
    sqlx::query(
        "INSERT INTO records (kind, id, body, day, start_time, status, at) \
         VALUES ('booking', ?, ?, ?, ?, 'completed', ?)",
    )
    .bind(b.id.to_string())
    .bind(serde_json::to_string(&Record::Booking(b.clone())).unwrap())
    .bind(b.date.to_string())
    .bind(b.start.to_string())
    .bind(crate::cache::sortable(b.created_at))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let cache = Cache::open(&path).await.unwrap();
    let queries = Queries::new(cache.pool().clone(), Uuid::new_v4());
    let attention = queries
        .bookings(&BookingQuery {
            needs_attention: true,
            ..BookingQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(attention.len(), 1);
    assert_eq!(attention[0].record, b);
    let today = day(3);
    let figures = queries.counts(today).await.unwrap();
    assert_eq!(figures, counted(&queries, today).await);
    assert_eq!((figures.confirmed_today, figures.upcoming), (1, 1));
}

/// Every booking list a dashboard shows is read through the index made for it, in the
/// order shown, so it stops at its page: no full scan, no view materialised first (the
/// `visible` view was read whole and sorted for every page: half a second at 150,000
/// bookings), no sort of the server's records (only of the few pending ones). This is what
/// keeps a window's read independent of the clinic's history.
#[tokio::test]
async fn every_dashboard_read_follows_its_index_and_stops_at_its_page() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(&dir).await;
    let today = day(15);
    let me = Uuid::new_v4();
    let page = Some(201);
    let shapes = [
        (
            "booking_at",
            BookingQuery {
                order: BookingOrder::NewestFirst,
                limit: page,
                ..BookingQuery::default()
            },
        ),
        (
            "booking_attention",
            BookingQuery {
                needs_attention: true,
                order: BookingOrder::NewestFirst,
                limit: page,
                ..BookingQuery::default()
            },
        ),
        (
            "booking_open",
            BookingQuery {
                open_only: true,
                order: BookingOrder::NewestFirst,
                limit: page,
                ..BookingQuery::default()
            },
        ),
        (
            "booking_day",
            BookingQuery {
                from: Some(today),
                to: Some(today),
                limit: page,
                ..BookingQuery::default()
            },
        ),
        (
            "booking_therapist",
            BookingQuery {
                therapist: Some(me),
                from: Some(today),
                limit: page,
                ..BookingQuery::default()
            },
        ),
        (
            "booking_driver",
            BookingQuery {
                driver: Some(me),
                to: Some(today),
                order: BookingOrder::ByTimeDesc,
                limit: page,
                ..BookingQuery::default()
            },
        ),
        (
            "booking_day",
            BookingQuery {
                from: Some(today),
                to: Some(day(21)),
                ..BookingQuery::default()
            },
        ),
    ];
    for (index, q) in shapes {
        let sql = booking_sql(&q).sql().to_owned();
        // Its rows are (id, parent, unused, detail).
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(cache.pool())
                .await
                .unwrap();
        let plan: Vec<String> = plan.into_iter().map(|row| row.3).collect();
        let records = plan
            .iter()
            .skip_while(|line| *line != "LEFT")
            .take_while(|line| *line != "RIGHT")
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        let plan = plan.join("\n");
        assert!(plan.starts_with("MERGE (UNION ALL)"), "{index}: {plan}");
        assert!(
            records.contains(&format!("SEARCH r USING INDEX {index} ")),
            "{index}: {plan}"
        );
        // No scan, and no sort but of ties (the rowid orders an index's equal keys; the
        // lists order them by id).
        assert!(
            !plan.contains("SCAN") && !records.contains("USE TEMP B-TREE FOR ORDER BY"),
            "{index}: {plan}"
        );
    }
}

/// The conditions spelt literally for the partial indexes name the statuses as the
/// protocol does.
#[test]
fn the_literal_conditions_name_the_protocol_statuses() {
    use BookingStatus as S;
    assert_eq!(
        NEEDS_ATTENTION,
        format!(
            "(status IN ('{}', '{}') OR (status = '{}' AND payment = '{}'))",
            S::Requested.as_str(),
            S::Declined.as_str(),
            S::Completed.as_str(),
            PaymentStatus::Unpaid.as_str()
        )
    );
    assert_eq!(
        OPEN,
        format!(
            "status NOT IN ('{}', '{}')",
            S::Completed.as_str(),
            S::Cancelled.as_str()
        )
    );
}

/// The operator's figures as the visible bookings give them, counted one by one.
async fn counted(queries: &Queries, today: NaiveDate) -> Counts {
    let all = queries.bookings(&BookingQuery::default()).await.unwrap();
    let count = |f: &dyn Fn(&Booking) -> bool| all.iter().filter(|c| f(&c.record)).count() as u64;
    Counts {
        pending_requests: count(&|b| {
            matches!(b.status, BookingStatus::Requested | BookingStatus::Declined)
        }),
        confirmed_today: count(&|b| {
            b.date == today && (b.status.holds_therapist() || b.status == BookingStatus::Completed)
        }),
        upcoming: count(&|b| b.date >= today && b.status != BookingStatus::Cancelled),
        unsynced: all.iter().filter(|c| c.pending).count() as u64,
    }
}

/// Regression: the operator's figures were counted in the records' indexes, walking every
/// booking they cover on every change (200,000 index entries at 150,000 bookings ahead).
/// They now sum the per-day counts the triggers of migration 0009 keep, which must follow
/// every kind of write: new records, replaced ones (a status or a day changed), removed
/// ones, pending changes on top, and a snapshot replacing everything.
#[tokio::test]
async fn the_operators_figures_follow_every_write_without_walking_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, queries) = open(&dir).await;
    let today = day(4);
    let statuses = BookingStatus::ALL;
    let mut bookings: Vec<Booking> = (0..60u32)
        .map(|i| {
            booking_at(
                1 + i % 7,
                8 + i % 9,
                statuses[i as usize % statuses.len()],
                i.into(),
            )
        })
        .collect();
    let check = |what: &'static str| {
        let queries = queries.clone();
        async move {
            let want = counted(&queries, today).await;
            assert_eq!(queries.counts(today).await.unwrap(), want, "{what}");
            want
        }
    };
    let records: Vec<Record> = bookings.iter().cloned().map(Record::Booking).collect();
    upsert(&cache, &records).await;
    let first = check("new records").await;
    assert!(first.pending_requests > 0 && first.confirmed_today > 0 && first.upcoming > 0);

    // Replaced: every third booking moves a day on and changes its status.
    for (i, b) in bookings.iter_mut().enumerate().filter(|(i, _)| i % 3 == 0) {
        b.date = b.date.succ_opt().unwrap();
        b.status = statuses[(i + 4) % statuses.len()];
        b.version += 1;
    }
    let records: Vec<Record> = bookings
        .iter()
        .step_by(3)
        .cloned()
        .map(Record::Booking)
        .collect();
    upsert(&cache, &records).await;
    check("replaced records").await;

    // Removed, and pending changes on top: one hides a booking, one changes another's
    // status and day, one is a booking the server has not seen.
    let gone: Vec<Key> = bookings[..5]
        .iter()
        .map(|b| (RecordKind::Booking, b.id))
        .collect();
    let mut moved = bookings[10].clone();
    moved.status = BookingStatus::Cancelled;
    moved.date = today;
    let fresh = booking_at(4, 12, BookingStatus::Requested, 99);
    cache
        .write(&Write {
            removes: gone,
            overlay: vec![
                ((RecordKind::Booking, bookings[7].id), None),
                (
                    (RecordKind::Booking, moved.id),
                    Some(Record::Booking(moved)),
                ),
                (
                    (RecordKind::Booking, fresh.id),
                    Some(Record::Booking(fresh)),
                ),
            ],
            ..Write::default()
        })
        .await
        .unwrap();
    let with_overlay = check("removed records and pending changes").await;
    assert_eq!(with_overlay.unsynced, 2);

    // A snapshot replaces everything.
    let snapshot: Vec<Record> = bookings[20..30]
        .iter()
        .cloned()
        .map(Record::Booking)
        .collect();
    cache
        .write(&Write {
            replace_all: true,
            upserts: snapshot.iter().collect(),
            ..Write::default()
        })
        .await
        .unwrap();
    let after = check("a snapshot").await;
    assert_eq!(after.unsynced, 0);
    let kept: i64 = sqlx::query_scalar("SELECT sum(n) FROM booking_days")
        .fetch_one(cache.pool())
        .await
        .unwrap();
    assert_eq!(
        kept, 10,
        "the per-day counts hold exactly the snapshot's bookings"
    );
}
