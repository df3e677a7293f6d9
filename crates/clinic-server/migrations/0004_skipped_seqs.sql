-- Seqs that never happened here. `clinic-server backup` moves its copy's head from the
-- backup's last seq (`after`) to `resume` (four billion on) and records it here: the
-- original's clients may hold cursors past the backup, from changes the copy never had,
-- and must be told to resync rather than pass for the copy's own later changes. A cursor
-- strictly between `after` and `resume` resyncs; one at `after` resumes from `resume`.
CREATE TABLE skipped (
    after INTEGER PRIMARY KEY NOT NULL,
    resume INTEGER NOT NULL
);
