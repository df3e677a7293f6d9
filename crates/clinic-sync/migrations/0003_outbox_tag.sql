-- Each queued change remembers where in the app it was made (the app stores the window's
-- label), so that the server's verdict can be told there even after a restart. NULL for
-- changes queued without a tag, and for every change queued before this migration.
ALTER TABLE outbox ADD COLUMN tag TEXT;
