-- Disabling an account or changing its password revokes its tokens inside the writer's
-- transaction: without an index that is a scan of every token while all writes wait.
CREATE INDEX IF NOT EXISTS tokens_staff ON tokens (staff_id);
