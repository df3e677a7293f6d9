-- Records as the server last said they are (never optimistic).
CREATE TABLE records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);

-- Changes the user made that the server has not answered yet, in the order they were made.
CREATE TABLE outbox (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    mutation_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    queued_at TEXT NOT NULL
);

-- The cursor (last server seq applied), the session token and the signed-in user.
CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
