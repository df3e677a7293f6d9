-- The operator's figures count bookings by day and status ("Upcoming": every booking from
-- today on that is not cancelled; "Pending requests": every booking waiting, whatever its
-- day). Counted in the records' indexes, each figure walked every booking it covers on
-- every change: 200,000 index entries, re-read from the file after each write (a write
-- empties every connection's page cache), at 150,000 bookings ahead. So the cache keeps
-- the counts themselves, one row per status and day, maintained by triggers in the
-- transaction that changes the records: a figure is a range of this small table (one
-- status's days, or one day).
--
-- Rows are written in place (an upsert), so the update trigger follows a changed booking;
-- the delete trigger follows removals and a snapshot's delete of everything.
CREATE TABLE booking_days (
    status TEXT NOT NULL,
    day TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (status, day)
) WITHOUT ROWID;

INSERT INTO booking_days (status, day, n)
SELECT status, day, count(*) FROM records WHERE kind = 'booking' GROUP BY status, day;

CREATE TRIGGER booking_days_insert AFTER INSERT ON records WHEN NEW.kind = 'booking'
BEGIN
    INSERT INTO booking_days (status, day, n) VALUES (NEW.status, NEW.day, 1)
    ON CONFLICT (status, day) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER booking_days_delete AFTER DELETE ON records WHEN OLD.kind = 'booking'
BEGIN
    UPDATE booking_days SET n = n - 1 WHERE status = OLD.status AND day = OLD.day;
END;

-- `kind` is part of the key, so an update never changes it.
CREATE TRIGGER booking_days_update AFTER UPDATE OF day, status ON records
WHEN OLD.kind = 'booking' AND (OLD.day IS NOT NEW.day OR OLD.status IS NOT NEW.status)
BEGIN
    UPDATE booking_days SET n = n - 1 WHERE status = OLD.status AND day = OLD.day;
    INSERT INTO booking_days (status, day, n) VALUES (NEW.status, NEW.day, 1)
    ON CONFLICT (status, day) DO UPDATE SET n = n + 1;
END;
