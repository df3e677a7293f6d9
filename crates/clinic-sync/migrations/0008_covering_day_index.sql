-- The operator's "Upcoming" and "Confirmed today" counts read bookings by day and filter
-- them by status. With the status outside the day index, each booking of the range was
-- looked up in the table for it: at 150,000 bookings ahead of today, 0.4 s of every view
-- read after every change. With the status at the end of the index, the counts read the
-- index alone; the index still gives bookings by day and time, as before.
DROP INDEX booking_day;
CREATE INDEX booking_day ON records (kind, day, start_time, status) WHERE kind = 'booking';
