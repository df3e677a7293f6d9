-- Staff accounts. Roles as a JSON array of role names.
CREATE TABLE staff (
    id TEXT PRIMARY KEY NOT NULL,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    body TEXT NOT NULL
);

-- Bearer tokens, opaque to clients. Expired or revoked tokens stay until pruned.
CREATE TABLE tokens (
    token TEXT PRIMARY KEY NOT NULL,
    staff_id TEXT NOT NULL REFERENCES staff(id),
    expires_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);

-- Bookings, slots and messages: the record as JSON, keyed by kind and id.
CREATE TABLE records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);

-- The change log: one row per committed mutation, gap-free seq, written in the same
-- transaction as the record change. `body` is NULL after a delete; `prev_parties` is the
-- JSON array of the staff who owned the previous version (for removals on reassignment).
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT,
    prev_parties TEXT NOT NULL,
    prev_existed INTEGER NOT NULL,
    actor TEXT,
    mutation_id TEXT,
    committed_at TEXT NOT NULL
);

-- The head survives log compaction.
CREATE TABLE head (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL
);
INSERT INTO head (one, seq) VALUES (1, 0);

-- Outcomes of mutations by (user, mutation id): a replay returns the first outcome.
CREATE TABLE mutations (
    staff_id TEXT NOT NULL,
    mutation_id TEXT NOT NULL,
    request TEXT NOT NULL,
    outcome TEXT NOT NULL,
    PRIMARY KEY (staff_id, mutation_id)
);
