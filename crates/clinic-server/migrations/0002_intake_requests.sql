-- Web bookings by idempotency key (the `Idempotency-Key` header of POST /v1/intake): the
-- same key again answers with the booking the first request made. `request` is the intake
-- body as parsed (JSON), `booking` the booking as first answered. Kept for a day and the
-- last 10,000 keys at most: pruned by `n` and `received_at` whenever a key is added.
CREATE TABLE intake_requests (
    n INTEGER PRIMARY KEY NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    request TEXT NOT NULL,
    booking TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX intake_requests_received_at ON intake_requests (received_at);
