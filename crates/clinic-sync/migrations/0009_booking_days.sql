-- The operator's figures count bookings by day and status ("Upcoming": every booking from
-- today on that is not cancelled; "Pending requests": every booking waiting, whatever its
-- day). Counted in the records' indexes, each figure walked every booking it covers on
-- every change: 200,000 index entries, re-read from the file after each write (a write
-- empties every connection's page cache), at 150,000 bookings ahead. So the cache keeps
-- the counts themselves, one row per day and status, maintained by triggers in the
-- transaction that changes the records: a figure sums a few hundred rows at any size.
--
-- The records' writes are INSERT OR REPLACE: its delete of the row it replaces fires the
-- delete trigger because the cache turns recursive triggers on (cache.rs).
CREATE TABLE booking_days (
    day TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (day, status)
) WITHOUT ROWID;

INSERT INTO booking_days (day, status, n)
SELECT day, status, count(*) FROM records WHERE kind = 'booking' GROUP BY day, status;

CREATE TRIGGER booking_days_insert AFTER INSERT ON records WHEN NEW.kind = 'booking'
BEGIN
    INSERT INTO booking_days (day, status, n) VALUES (NEW.day, NEW.status, 1)
    ON CONFLICT (day, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER booking_days_delete AFTER DELETE ON records WHEN OLD.kind = 'booking'
BEGIN
    UPDATE booking_days SET n = n - 1 WHERE day = OLD.day AND status = OLD.status;
END;

CREATE TRIGGER booking_days_update AFTER UPDATE OF kind, day, status ON records
BEGIN
    UPDATE booking_days SET n = n - 1
    WHERE OLD.kind = 'booking' AND day = OLD.day AND status = OLD.status;
    INSERT INTO booking_days (day, status, n)
    SELECT NEW.day, NEW.status, 1 WHERE NEW.kind = 'booking'
    ON CONFLICT (day, status) DO UPDATE SET n = n + 1;
END;
