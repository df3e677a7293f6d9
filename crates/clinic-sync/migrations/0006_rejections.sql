-- Refusals the user has not yet seen: the server's verdict on a queued change, with the
-- change itself (its values), kept until the window it was made in (or one of its kind)
-- says it was told (dismissed, or reopened). Written in the same transaction that takes
-- the change out of the outbox, so a refusal is never in neither table.
CREATE TABLE rejections (
    mutation_id TEXT PRIMARY KEY NOT NULL,
    body TEXT NOT NULL,   -- the `Rejected` event as JSON
    at TEXT NOT NULL      -- when it was refused, RFC 3339 UTC (sortable)
);
