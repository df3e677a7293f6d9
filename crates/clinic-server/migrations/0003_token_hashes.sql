-- Bearer tokens are kept as their SHA-256 (32 bytes), never as sent: a copy of the
-- database (a backup, a stolen disk) signs nobody in. A request's token is hashed and
-- looked up by its hash.
--
-- SQLite has no SHA-256 of its own, so the tokens stored so far move to `tokens_plain`
-- here, and the server hashes them into `tokens` when it opens the database, dropping
-- `tokens_plain` in the same transaction (auth.rs, `hash_stored_tokens`): signed-in users
-- stay signed in.
ALTER TABLE tokens RENAME TO tokens_plain;

CREATE TABLE tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    staff_id TEXT NOT NULL REFERENCES staff(id),
    expires_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
