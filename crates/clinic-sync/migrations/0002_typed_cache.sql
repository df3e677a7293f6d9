-- Records get typed columns for the dashboards' queries, and pending changes get their own
-- table (the overlay) so that every query sees them with one UNION ALL view.
-- Caches made by 0001 are rebuilt from a fresh snapshot: dropping the cursor makes the
-- engine fetch one; the outbox is kept.

DROP TABLE records;
DELETE FROM meta WHERE key = 'cursor';

-- Records as the server last said they are (never optimistic). `body` is the record's
-- JSON; the other columns are copies of its fields that queries filter and sort on.
CREATE TABLE records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    day TEXT,            -- booking or slot date, YYYY-MM-DD
    start_time TEXT,     -- booking or slot start, HH:MM:SS
    status TEXT,         -- booking status
    therapist_id TEXT,   -- booking
    driver_id TEXT,      -- booking
    staff_id TEXT,       -- slot
    sender_id TEXT,      -- message
    recipient_id TEXT,   -- message
    at TEXT,             -- booking created_at / message sent_at, RFC 3339 UTC (sortable)
    unread INTEGER,      -- message: 1 while read_at is null
    PRIMARY KEY (kind, id)
);
CREATE INDEX records_day ON records (kind, day, start_time);
CREATE INDEX records_therapist ON records (kind, therapist_id);
CREATE INDEX records_driver ON records (kind, driver_id);
CREATE INDEX records_status ON records (kind, status);
CREATE INDEX records_staff ON records (kind, staff_id, day);
CREATE INDEX records_sender ON records (kind, sender_id);
CREATE INDEX records_recipient ON records (kind, recipient_id);

-- The record as this user's queued changes make it: one row per record that has a
-- mutation in the outbox (server record + every pending mutation re-applied in order).
-- A NULL body means "hidden": deleted, or no longer visible to this user.
CREATE TABLE overlay (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT,
    day TEXT,
    start_time TEXT,
    status TEXT,
    therapist_id TEXT,
    driver_id TEXT,
    staff_id TEXT,
    sender_id TEXT,
    recipient_id TEXT,
    at TEXT,
    unread INTEGER,
    PRIMARY KEY (kind, id)
);

-- What queries read: the server's records, with the overlay in place of the records it
-- covers. `pending` is 1 for records with a change not yet confirmed by the server.
CREATE VIEW visible AS
SELECT kind, id, body, day, start_time, status, therapist_id, driver_id, staff_id,
       sender_id, recipient_id, at, unread, 0 AS pending
FROM records r
WHERE NOT EXISTS (SELECT 1 FROM overlay o WHERE o.kind = r.kind AND o.id = r.id)
UNION ALL
SELECT kind, id, body, day, start_time, status, therapist_id, driver_id, staff_id,
       sender_id, recipient_id, at, unread, 1 AS pending
FROM overlay
WHERE body IS NOT NULL;
