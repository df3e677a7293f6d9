-- Indexes shaped like the dashboards' queries, so that every read touches only the rows it
-- returns however long the clinic's history grows (issue 14: three years of data is about
-- 150,000 bookings and 100,000 messages). Each index ends with the columns the query
-- orders by, so SQLite reads it in order and stops at the page's LIMIT instead of sorting
-- every match; none is added for a query already served, so the cache's write cost (one
-- B-tree per index) stays as it was, but for three small partial indexes.

DROP INDEX records_day;
CREATE INDEX records_day ON records (kind, day, start_time, id);
DROP INDEX records_therapist;
CREATE INDEX records_therapist ON records (kind, therapist_id, day, start_time, id);
DROP INDEX records_driver;
CREATE INDEX records_driver ON records (kind, driver_id, day, start_time, id);
DROP INDEX records_at;
CREATE INDEX records_at ON records (kind, at, id);
DROP INDEX records_sender;
CREATE INDEX records_sender ON records (kind, sender_id, recipient_id, at, id);
DROP INDEX records_recipient;
CREATE INDEX records_recipient ON records (kind, recipient_id, sender_id, at, id);
-- Only the bookings the operator's "Needs attention" and "Open" lists show, newest first:
-- few, whatever the history (queries.rs spells their conditions the same way, literally).
CREATE INDEX records_attention ON records (kind, at, id)
WHERE status IN ('requested', 'declined') OR (status = 'completed' AND payment = 'unpaid');
CREATE INDEX records_open ON records (kind, at, id)
WHERE status NOT IN ('completed', 'cancelled');
-- Only unread messages: a handful, whatever the history.
CREATE INDEX records_unread ON records (recipient_id, sender_id)
WHERE kind = 'message' AND unread = 1;
DROP INDEX records_staff;
CREATE INDEX records_staff ON records (kind, staff_id, day, start_time, id);
