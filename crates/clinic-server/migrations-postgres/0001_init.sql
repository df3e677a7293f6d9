-- The clinic's store on PostgreSQL: the same tables as SQLite's migrations/ end up with
-- (0001 to 0005), in one step. Times are stored as fixed-width RFC 3339 text, as on
-- SQLite, so that the same SQL compares them. Several server instances share these
-- tables; every write takes the `head` row's lock first (store/db.rs), which orders the
-- change log across them.

-- Staff accounts: the record as JSON, and the password hash apart from it.
CREATE TABLE staff (
    id TEXT PRIMARY KEY NOT NULL,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    body TEXT NOT NULL
);

-- Bearer tokens, by their SHA-256 (never as sent).
CREATE TABLE tokens (
    token_hash BYTEA PRIMARY KEY NOT NULL,
    staff_id TEXT NOT NULL REFERENCES staff(id),
    expires_at TEXT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX tokens_staff ON tokens (staff_id);

-- Bookings, slots and messages: the record as JSON, keyed by kind and id.
CREATE TABLE records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);

-- The change log: gap-free seq, written in the same transaction as the record change.
CREATE TABLE changes (
    seq BIGINT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT,
    prev_parties TEXT NOT NULL,
    prev_existed BOOLEAN NOT NULL,
    actor TEXT,
    mutation_id TEXT,
    committed_at TEXT NOT NULL
);

-- The head survives log compaction; its row's lock is the one writer's turn.
CREATE TABLE head (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq BIGINT NOT NULL
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

-- Web bookings by idempotency key, kept for a day and the last 10,000 keys at most.
CREATE TABLE intake_requests (
    n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    request TEXT NOT NULL,
    booking TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX intake_requests_received_at ON intake_requests (received_at);

-- Seqs that never happened here (a restore from a backup moves the head on).
CREATE TABLE skipped (
    after BIGINT PRIMARY KEY NOT NULL,
    resume BIGINT NOT NULL
);
