-- Bookings get a typed payment column, so that "needs attention" (completed but unpaid)
-- is a filter on typed columns like every other, and `at` gets an index because the
-- operator's list and every conversation are ordered by it.

ALTER TABLE records ADD COLUMN payment TEXT;   -- booking payment status
ALTER TABLE overlay ADD COLUMN payment TEXT;

-- Rows written before this migration have every field in their JSON body already.
UPDATE records SET payment = json_extract(body, '$.payment') WHERE kind = 'booking';
UPDATE overlay SET payment = json_extract(body, '$.payment')
WHERE kind = 'booking' AND body IS NOT NULL;

CREATE INDEX records_at ON records (kind, at);

-- The same view as in 0002, with the new column.
DROP VIEW visible;
CREATE VIEW visible AS
SELECT kind, id, body, day, start_time, status, therapist_id, driver_id, staff_id,
       sender_id, recipient_id, at, unread, payment, 0 AS pending
FROM records r
WHERE NOT EXISTS (SELECT 1 FROM overlay o WHERE o.kind = r.kind AND o.id = r.id)
UNION ALL
SELECT kind, id, body, day, start_time, status, therapist_id, driver_id, staff_id,
       sender_id, recipient_id, at, unread, payment, 1 AS pending
FROM overlay
WHERE body IS NOT NULL;
