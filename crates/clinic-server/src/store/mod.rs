//! The authoritative store: a database (a SQLite file, or PostgreSQL shared by several
//! server instances), with every record also held in memory.
//!
//! # Modules
//! - `db`: the database, SQLite or PostgreSQL: connecting, migrating (`migrations/` and
//!   `migrations-postgres/`), the writers' turn on PostgreSQL (the head row's lock) and
//!   the notifications between instances.
//! - `follow`: on PostgreSQL, what another instance committed: heard of by `LISTEN`, read
//!   from the log, applied to memory and published to this instance's feeds.
//! - `backup`: a consistent copy of a live SQLite file, marked as a restore point.
//! - this file: the store's API, memory, and the writer with its group commit.
//!
//! A clinic's working set (staff, a few thousand bookings and slots, messages) fits in memory
//! many times over, so reads (snapshots, rule checks) never touch the disk.
//!
//! # The one write path: a writer task with group commit
//!
//! Every write (a mutation, a web booking, a new or changed staff account, a new password)
//! is queued to ONE writer task.
//! The writer takes every write queued at that moment (up to `Config::write_group`) as a
//! group, and in ONE SQLite transaction: judges each in queue order against memory plus the
//! group's earlier writes (so the second of two clashing bookings in a group is refused, as
//! it would be one after the other), gives each change the next gap-free seq, writes the
//! records, the change-log rows and every outcome (a refusal too, so that a replay answers
//! the same), and commits once. With `synchronous=FULL` that commit is the fsync that makes
//! an acknowledged change survive a power cut, and the whole group shares it. Only after the
//! commit is memory updated, the changes published to the feeds (in seq order) and each
//! caller answered. A refused write is an outcome like any other and never aborts the rest
//! of its group; a write that fails (a database error) makes the writer roll the group back
//! and commit each of its writes alone, so that only the failing one is answered with the
//! error. A caller that goes away (a client hanging up) cannot cancel its write half-way:
//! the writer is not its task.
//!
//! The fan-out is a `tokio::sync::broadcast` ring of `feed_queue` changes: each feed
//! connection reads it at its own pace and filters for its user, so the ring is every
//! connection's bounded queue at once, holding each change once (an `Arc`) however many
//! clients are connected. A connection that falls `feed_queue` changes behind is told so
//! (`Lagged`) and the feed turns that into a resync; nothing is dropped silently.
//!
//! # Several instances (PostgreSQL)
//!
//! Memory is then a copy of the committed state that may lag other instances' commits.
//! The writer's transaction first locks the head row (`db::Tx::lock_head`), which every
//! instance's writer does, and brings memory up to that head from the log (publishing
//! those changes to this instance's feeds, in seq order) before judging: so a write is
//! judged against the committed state inside its transaction, whichever instance made the
//! last change. Between writes, `follow` keeps memory and the feeds up to date.
//!
//! # Backups and the seqs they skip
//!
//! [`backup`] copies a live database (`VACUUM INTO`) and moves the copy's head forward by
//! [`RESTORE_SKIP`], recording the skipped range in `skipped`: the original's clients may
//! hold cursors past the backup's head, from changes the copy never had, and those must not
//! pass for the copy's own later changes. A cursor inside a skipped range is told to resync;
//! a cursor at its start is at the same state as its end ([`Store::resume_point`]).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use clinic_protocol::rules::{self, Effect, Rejection};
use clinic_protocol::wire::IDEMPOTENCY_KEY_HOURS;
use clinic_protocol::{
    Booking, Change, ChangeOp, ErrorCode, Id, IntakeRequest, Mutation, MutationOutcome, NewBooking,
    Record, RecordKind, Role, Slot, Staff,
};
use futures_util::FutureExt;
use sqlx::QueryBuilder;
use tokio::sync::{broadcast, mpsc, oneshot, watch, RwLock};
use uuid::Uuid;

use crate::config::Config;
use crate::error::ServerError;
use crate::lock::DbLock;
use crate::metrics::Metrics;

mod backup;
pub(crate) mod db;
mod follow;

pub(crate) use backup::backup;
use db::{on_pool, on_tx, Db, Tx};

/// How many web bookings' idempotency keys are kept at most (each for
/// [`IDEMPOTENCY_KEY_HOURS`] hours).
const INTAKE_KEYS_KEPT: i64 = 10_000;

/// What became of a web booking ([`Store::intake`]).
#[derive(Debug)]
pub(crate) enum Intake {
    /// Made now.
    Created(Booking),
    /// Made earlier, by a request with the same idempotency key and the same body.
    Replayed(Booking),
    /// Refused by the rules, or its idempotency key was used for another booking.
    Refused(Rejection),
}

/// One fixed width for stored times, so that SQL compares them correctly as text.
fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A committed change as the server keeps it: the new state and who could see the old one.
#[derive(Debug, Clone)]
pub(crate) struct Logged {
    pub(crate) seq: u64,
    pub(crate) kind: RecordKind,
    pub(crate) id: Id,
    /// The record now; `None` after a delete.
    pub(crate) record: Option<Record>,
    /// Staff who owned the previous version (see `Record::parties`).
    pub(crate) prev_parties: Vec<Id>,
    pub(crate) prev_existed: bool,
    pub(crate) actor: Option<Id>,
    pub(crate) mutation_id: Option<Uuid>,
    /// The upsert as a `Change` in JSON, made once and shared by every feed connection
    /// that may see it (it reads the same for all of them).
    upsert_json: OnceLock<String>,
    /// When its commit returned, or when this instance read it from another's commit, for
    /// the feeds' send lag (`None` when a feed catching up read it from the log).
    pub(crate) committed: Option<std::time::Instant>,
}

impl Logged {
    /// This change as `user` sees it, as the JSON of a [`Change`], or `None` if it is none
    /// of their business: the new version if they may see it, else a removal if they could
    /// see the previous one. An upsert is serialized once, however many connections it
    /// goes to.
    pub(crate) fn json_for(&self, user: &Staff) -> Result<Option<Cow<'_, str>>, ServerError> {
        match &self.record {
            Some(record) if rules::visible_to(user, record) => {
                if let Some(json) = self.upsert_json.get() {
                    return Ok(Some(Cow::Borrowed(json)));
                }
                let json = serde_json::to_string(&self.change(ChangeOp::Upsert {
                    record: record.clone(),
                }))?;
                Ok(Some(Cow::Borrowed(self.upsert_json.get_or_init(|| json))))
            }
            _ if self.removes_for(user) => Ok(Some(Cow::Owned(serde_json::to_string(
                &self.change(ChangeOp::Remove {
                    kind: self.kind,
                    id: self.id,
                }),
            )?))),
            _ => Ok(None),
        }
    }

    /// Whether `user` could see the previous version, so must drop it from their cache.
    fn removes_for(&self, user: &Staff) -> bool {
        self.prev_existed
            && (rules::sees_all(user, self.kind) || self.prev_parties.contains(&user.id))
    }

    fn change(&self, op: ChangeOp) -> Change {
        Change {
            seq: self.seq,
            actor: self.actor,
            mutation_id: self.mutation_id,
            op,
        }
    }
}

#[derive(Debug, Default)]
struct Memory {
    staff: HashMap<Id, Staff>,
    /// Changed only through [`Memory::put`] and [`Memory::take`], which keep `days`.
    records: HashMap<(RecordKind, Id), Record>,
    /// The bookings (by therapist) and availability slots (by staff member) of each person
    /// and day: what a booking or slot change is judged against, found without walking
    /// the clinic's whole history.
    days: HashMap<(Id, NaiveDate), HashSet<(RecordKind, Id)>>,
    head: u64,
}

/// The person and day a record is judged with: a booking's therapist, a slot's owner.
fn day_of(record: &Record) -> Option<(Id, NaiveDate)> {
    match record {
        Record::Booking(b) => b.therapist_id.map(|t| (t, b.date)),
        Record::Slot(s) => Some((s.staff_id, s.date)),
        _ => None,
    }
}

impl Memory {
    fn put(&mut self, record: Record) {
        let key = (record.kind(), record.id());
        let day = day_of(&record);
        if let Some(old) = self.records.insert(key, record) {
            self.unindex(key, day_of(&old));
        }
        if let Some(day) = day {
            self.days.entry(day).or_default().insert(key);
        }
    }

    fn take(&mut self, key: (RecordKind, Id)) {
        if let Some(old) = self.records.remove(&key) {
            self.unindex(key, day_of(&old));
        }
    }

    fn unindex(&mut self, key: (RecordKind, Id), day: Option<(Id, NaiveDate)>) {
        if let Some(day) = day {
            if let Some(keys) = self.days.get_mut(&day) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.days.remove(&day);
                }
            }
        }
    }
}

/// How far [`backup`] moves a copy's head: more changes than any clinic makes between a
/// backup and a restore from it (four billion), and still far inside what a JavaScript
/// number holds exactly (2^53), restore after restore.
pub(crate) const RESTORE_SKIP: u64 = 1 << 32;

/// Seqs that never happened here: cursors strictly between `after` and `resume` are from
/// another history (the original a backup was taken from); `after` is the same state as
/// `resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Skip {
    after: u64,
    resume: u64,
}

/// The store. Cloning shares it.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    db: Db,
    memory: Arc<RwLock<Memory>>,
    /// The writer task's queue: every write goes through it.
    jobs: mpsc::Sender<Job>,
    published: broadcast::Sender<Arc<Logged>>,
    /// Sessions another instance ended (PostgreSQL only): token hashes and why, for this
    /// instance to end their feeds too.
    revoked_elsewhere: broadcast::Sender<(Vec<u8>, String)>,
    /// Ranges of seqs skipped by restores from backups, oldest first (usually none).
    skips: Arc<[Skip]>,
    /// Transactions the writer has committed (for tests: how writes were grouped).
    #[cfg_attr(not(test), allow(dead_code))]
    commits: Arc<AtomicU64>,
    /// The server's counters; the writer times its commits into them.
    metrics: Arc<Metrics>,
    /// This process's claim on a SQLite file: nobody else writes it while a store is open.
    _lock: Option<Arc<DbLock>>,
    /// Dropped with the last clone: the task following other instances then stops.
    _open: Arc<watch::Sender<()>>,
}

/// How many writes may wait for the writer; more callers wait to queue theirs.
const QUEUED_WRITES: usize = 4096;

impl Store {
    pub(crate) async fn open(config: &Config) -> Result<Store, ServerError> {
        let (db, lock) = Db::open(config).await?;
        // One committed state: on PostgreSQL other instances may be writing meanwhile.
        let mut tx = db.begin_snapshot().await?;
        let mut memory = Memory::default();
        let (staff, records, head, skips) = on_tx!(&mut tx, c => {
            let staff: Vec<String> = sqlx::query_scalar("SELECT body FROM staff")
                .fetch_all(&mut **c)
                .await?;
            let records: Vec<String> = sqlx::query_scalar("SELECT body FROM records")
                .fetch_all(&mut **c)
                .await?;
            let head: i64 = sqlx::query_scalar("SELECT seq FROM head")
                .fetch_one(&mut **c)
                .await?;
            let skips: Vec<(i64, i64)> =
                sqlx::query_as("SELECT after, resume FROM skipped ORDER BY after")
                    .fetch_all(&mut **c)
                    .await?;
            (staff, records, head, skips)
        });
        tx.commit().await?;
        for body in staff {
            let staff: Staff = serde_json::from_str(&body)?;
            memory.staff.insert(staff.id, staff);
        }
        for body in records {
            let record: Record = serde_json::from_str(&body)?;
            memory.put(record);
        }
        memory.head = u64::try_from(head).unwrap_or(0);
        let skips: Vec<Skip> = skips
            .into_iter()
            .map(|(after, resume)| Skip {
                after: u64::try_from(after).unwrap_or(0),
                resume: u64::try_from(resume).unwrap_or(0),
            })
            .collect();
        let (published, _) = broadcast::channel(config.feed_queue.max(1));
        let (revoked_elsewhere, _) = broadcast::channel(1024);
        let memory = Arc::new(RwLock::new(memory));
        let (jobs, queue) = mpsc::channel(QUEUED_WRITES);
        let commits = Arc::new(AtomicU64::new(0));
        let metrics = Arc::new(Metrics::default());
        let writer = Writer {
            db: db.clone(),
            memory: Arc::clone(&memory),
            published: published.clone(),
            group_max: config.write_group.max(1),
            commits: Arc::clone(&commits),
            metrics: Arc::clone(&metrics),
        };
        // Ends when the last `Store` clone (and with it the queue's sender) is dropped.
        tokio::spawn(writer.run(queue));
        let (open, closed) = watch::channel(());
        if db.shared() {
            tokio::spawn(follow::follow(follow::Follower {
                db: db.clone(),
                memory: Arc::clone(&memory),
                published: published.clone(),
                revoked: revoked_elsewhere.clone(),
                closed,
            }));
        }
        Ok(Store {
            db,
            memory,
            jobs,
            published,
            revoked_elsewhere,
            skips: skips.into(),
            commits,
            metrics,
            _lock: lock,
            _open: Arc::new(open),
        })
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// The SQLite pool, for unit tests that look at the file.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &sqlx::SqlitePool {
        match &self.db {
            Db::Sqlite(pool) => pool,
            Db::Postgres(_) => panic!("a unit test's store is a SQLite file"),
        }
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether the writer task still takes writes (its queue has a receiver).
    pub(crate) fn writer_alive(&self) -> bool {
        !self.jobs.is_closed()
    }

    pub(crate) async fn head(&self) -> u64 {
        self.memory.read().await.head
    }

    /// The head, with memory first brought up to what other instances committed (on
    /// PostgreSQL; on SQLite memory is always the head). A client that moved here from
    /// another instance may hold a cursor past this one's memory, which must not pass for
    /// a cursor from another history.
    pub(crate) async fn latest_head(&self) -> Result<u64, ServerError> {
        if self.db.shared() {
            return follow::catch_up_to(&self.db, &self.memory, &self.published, None).await;
        }
        Ok(self.head().await)
    }

    /// Sessions other instances ended: token hashes and why (`Ending::as_str`).
    pub(crate) fn revoked_elsewhere(&self) -> broadcast::Receiver<(Vec<u8>, String)> {
        self.revoked_elsewhere.subscribe()
    }

    /// Where a client at `cursor` resumes: `cursor` itself, or the end of a skipped range
    /// it stands at the start of; `None` if it stands inside one (its cursor is from the
    /// history a backup was taken from, past the backup: it must resync).
    pub(crate) fn resume_point(&self, cursor: u64) -> Option<u64> {
        let mut at = cursor;
        for skip in self.skips.iter() {
            if at == skip.after {
                at = skip.resume;
            } else if skip.after < at && at < skip.resume {
                return None;
            }
        }
        Some(at)
    }

    /// Live changes from now on. A receiver that falls `feed_queue` changes behind gets
    /// `Lagged`, which the feed turns into a resync: never silent loss.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Logged>> {
        self.published.subscribe()
    }

    pub(crate) async fn staff(&self, id: Id) -> Option<Staff> {
        self.memory.read().await.staff.get(&id).cloned()
    }

    /// The account and its password hash, for login.
    pub(crate) async fn staff_by_username(
        &self,
        username: &str,
    ) -> Result<Option<(Staff, String)>, ServerError> {
        // PostgreSQL's text cannot hold NUL, so no account has such a name, and asking the
        // database would fail the sign-in with an internal error instead of a wrong name.
        if username.contains('\0') {
            return Ok(None);
        }
        let row: Option<(String, String)> = on_pool!(&self.db, p => {
            sqlx::query_as("SELECT body, password_hash FROM staff WHERE username = $1")
                .bind(username)
                .fetch_optional(p)
                .await?
        });
        row.map(|(body, hash)| Ok((serde_json::from_str(&body)?, hash)))
            .transpose()
    }

    pub(crate) async fn staff_count(&self) -> usize {
        self.memory.read().await.staff.len()
    }

    /// Every account, disabled ones too, by username, and the seq they are current at.
    pub(crate) async fn staff_list(&self) -> (u64, Vec<Staff>) {
        let memory = self.memory.read().await;
        let mut staff: Vec<Staff> = memory.staff.values().cloned().collect();
        staff.sort_unstable_by(|a, b| a.username.cmp(&b.username));
        (memory.head, staff)
    }

    /// The password hash of account `id`, to check a password against.
    pub(crate) async fn password_hash(&self, id: Id) -> Result<Option<String>, ServerError> {
        Ok(on_pool!(&self.db, p => {
            sqlx::query_scalar("SELECT password_hash FROM staff WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(p)
                .await?
        }))
    }

    /// Every record `user` may see, and the seq they are consistent at.
    pub(crate) async fn snapshot(&self, user: &Staff) -> (u64, Vec<Record>) {
        let memory = self.memory.read().await;
        let mut records: Vec<Record> = memory.staff.values().cloned().map(Record::Staff).collect();
        records.extend(
            memory
                .records
                .values()
                .filter(|r| rules::visible_to(user, r))
                .cloned(),
        );
        (memory.head, records)
    }

    /// The log from `after + 1` on, at most `limit` entries.
    pub(crate) async fn log_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Logged>, ServerError> {
        follow::Source::Pool(&self.db).log_after(after, limit).await
    }

    /// The oldest seq still in the log (`None` if the log is empty).
    pub(crate) async fn oldest_kept(&self) -> Result<Option<u64>, ServerError> {
        let seq: Option<i64> = on_pool!(&self.db, p => {
            sqlx::query_scalar("SELECT MIN(seq) FROM changes")
                .fetch_one(p)
                .await?
        });
        Ok(seq.map(|s| u64::try_from(s).unwrap_or(0)))
    }

    /// Keeps only the last `keep_last` log entries (counted as entries, not as seqs: after a
    /// restore the seqs jump, see [`RESTORE_SKIP`]).
    pub(crate) async fn compact(&self, keep_last: u64) -> Result<(), ServerError> {
        on_pool!(&self.db, p => {
            sqlx::query(
                "DELETE FROM changes
                 WHERE seq <= (SELECT seq FROM changes ORDER BY seq DESC LIMIT 1 OFFSET $1)",
            )
            .bind(i64::try_from(keep_last).unwrap_or(i64::MAX))
            .execute(p)
            .await?;
        });
        Ok(())
    }

    /// Queues `request` for the writer and waits for its answer.
    async fn write<T>(
        &self,
        request: Request,
        reply: Reply,
        answer: oneshot::Receiver<Result<T, ServerError>>,
    ) -> Result<T, ServerError> {
        self.jobs
            .send(Job { request, reply })
            .await
            .map_err(|_| ServerError::Invariant("the writer has stopped"))?;
        answer
            .await
            .map_err(|_| ServerError::Invariant("a write was dropped by the writer (a panic)"))?
    }

    pub(crate) async fn create_staff(
        &self,
        username: &str,
        display_name: &str,
        roles: &[Role],
        password_hash: &str,
    ) -> Result<Staff, ServerError> {
        self.add_staff(NewAccount {
            username: username.to_owned(),
            display_name: display_name.to_owned(),
            roles: roles.to_vec(),
            password_hash: password_hash.to_owned(),
            must_change_password: false,
            actor: None,
        })
        .await
    }

    /// Makes an account (a taken username is refused as `username_taken`); its record
    /// goes into the log like any change.
    pub(crate) async fn add_staff(&self, account: NewAccount) -> Result<Staff, ServerError> {
        let (reply, answer) = oneshot::channel();
        self.write(Request::CreateStaff(account), Reply::Staff(reply), answer)
            .await
    }

    /// Changes account `edit.id` as an administrator asked; disabling it revokes every
    /// token of its in the same transaction. The new record goes into the log.
    pub(crate) async fn edit_staff(&self, edit: StaffEdit) -> Result<AccountChange, ServerError> {
        let (reply, answer) = oneshot::channel();
        self.write(Request::EditStaff(edit), Reply::Account(reply), answer)
            .await
    }

    /// Gives account `set.id` a new password and revokes its tokens (all, or all but the
    /// one `set.keep` is the hash of), in one transaction. A change of
    /// `must_change_password` is a new version of its record, in the log.
    pub(crate) async fn set_password(
        &self,
        set: PasswordSet,
    ) -> Result<AccountChange, ServerError> {
        let (reply, answer) = oneshot::channel();
        self.write(Request::SetPassword(set), Reply::Account(reply), answer)
            .await
    }

    /// Applies a mutation from `user` (idempotent by `mutation_id`).
    pub(crate) async fn mutate(
        &self,
        user: &Staff,
        mutation_id: Uuid,
        mutation: &Mutation,
    ) -> Result<MutationOutcome, ServerError> {
        let (reply, answer) = oneshot::channel();
        let request = Request::Mutate {
            user: user.clone(),
            mutation_id,
            mutation: mutation.clone(),
        };
        self.write(request, Reply::Mutate(reply), answer).await
    }

    /// A booking from the web form (no actor, no mutation id), made once per
    /// `idempotency_key`: the same key with the same request answers with the booking the
    /// first one made; with another request it is refused with `conflict`.
    pub(crate) async fn intake(
        &self,
        request: IntakeRequest,
        idempotency_key: Option<String>,
    ) -> Result<Intake, ServerError> {
        let (reply, answer) = oneshot::channel();
        let request = Request::Intake {
            request,
            key: idempotency_key,
        };
        self.write(request, Reply::Intake(reply), answer).await
    }
}

/// A write queued for the writer, and where its answer goes.
#[derive(Debug)]
struct Job {
    request: Request,
    reply: Reply,
}

#[derive(Debug)]
enum Request {
    Mutate {
        user: Staff,
        mutation_id: Uuid,
        mutation: Mutation,
    },
    Intake {
        request: IntakeRequest,
        key: Option<String>,
    },
    CreateStaff(NewAccount),
    EditStaff(StaffEdit),
    SetPassword(PasswordSet),
}

/// A new account, its password already hashed.
#[derive(Debug)]
pub(crate) struct NewAccount {
    pub(crate) username: String,
    pub(crate) display_name: String,
    pub(crate) roles: Vec<Role>,
    pub(crate) password_hash: String,
    pub(crate) must_change_password: bool,
    /// The administrator who made it; `None` at the console (or for the demo clinic).
    pub(crate) actor: Option<Id>,
}

/// An administrator's change to an account: the fields given change, if `version` is
/// still the account's.
#[derive(Debug)]
pub(crate) struct StaffEdit {
    pub(crate) id: Id,
    pub(crate) version: i64,
    /// Checked already (`rules::check_display_name`).
    pub(crate) display_name: Option<String>,
    /// Checked already (`rules::check_roles`).
    pub(crate) roles: Option<Vec<Role>>,
    pub(crate) disabled: Option<bool>,
    pub(crate) actor: Id,
}

/// A new password for account `id`, already hashed.
#[derive(Debug)]
pub(crate) struct PasswordSet {
    pub(crate) id: Id,
    pub(crate) password_hash: String,
    /// A one-time password (an administrator's reset) or the user's own.
    pub(crate) must_change_password: bool,
    /// The hash of the token to keep (the session that changed its own password); every
    /// other token of the account is revoked.
    pub(crate) keep: Option<Vec<u8>>,
    pub(crate) actor: Id,
}

/// An account as a change left it, and the hashes of the tokens the change revoked (whose
/// feeds must now end: see `auth::Sessions::end`).
#[derive(Debug)]
pub(crate) struct AccountChange {
    pub(crate) staff: Staff,
    pub(crate) revoked: Vec<Vec<u8>>,
}

/// What became of a write that did not fail.
#[derive(Debug)]
enum Done {
    /// Refused as the session (the account was disabled meanwhile), not as the change.
    Mutate(Result<MutationOutcome, Rejection>),
    Intake(Intake),
    /// A taken username is a refusal, not a failure of the group.
    Staff(Result<Staff, ServerError>),
    /// A refused account change (no such account, another version, the last admin) is a
    /// refusal too.
    Account(Result<AccountChange, Rejection>),
}

#[derive(Debug)]
enum Reply {
    Mutate(oneshot::Sender<Result<MutationOutcome, ServerError>>),
    Intake(oneshot::Sender<Result<Intake, ServerError>>),
    Staff(oneshot::Sender<Result<Staff, ServerError>>),
    Account(oneshot::Sender<Result<AccountChange, ServerError>>),
}

impl Reply {
    /// Answers the caller (who may have gone away: then nobody hears it).
    fn send(self, result: Result<Done, ServerError>) {
        let mismatch = ServerError::Invariant("a write answered with another kind of outcome");
        match self {
            Reply::Mutate(tx) => {
                let _ = tx.send(match result {
                    Ok(Done::Mutate(Ok(outcome))) => Ok(outcome),
                    Ok(Done::Mutate(Err(refused))) => Err(ServerError::Refused(refused)),
                    Ok(_) => Err(mismatch),
                    Err(e) => Err(e),
                });
            }
            Reply::Intake(tx) => {
                let _ = tx.send(match result {
                    Ok(Done::Intake(intake)) => Ok(intake),
                    Ok(_) => Err(mismatch),
                    Err(e) => Err(e),
                });
            }
            Reply::Staff(tx) => {
                let _ = tx.send(match result {
                    Ok(Done::Staff(staff)) => staff,
                    Ok(_) => Err(mismatch),
                    Err(e) => Err(e),
                });
            }
            Reply::Account(tx) => {
                let _ = tx.send(match result {
                    Ok(Done::Account(changed)) => changed.map_err(ServerError::Refused),
                    Ok(_) => Err(mismatch),
                    Err(e) => Err(e),
                });
            }
        }
    }
}

/// The writer task: the only one that writes records, the log and memory.
#[derive(Debug)]
struct Writer {
    db: Db,
    memory: Arc<RwLock<Memory>>,
    published: broadcast::Sender<Arc<Logged>>,
    group_max: usize,
    commits: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

impl Writer {
    async fn run(self, mut queue: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(self.group_max);
        // Waits for one write, then takes every other one queued by now.
        while queue.recv_many(&mut jobs, self.group_max).await > 0 {
            self.commit_group(std::mem::take(&mut jobs)).await;
        }
    }

    /// Commits `jobs` in one transaction and answers each; if the group fails, commits
    /// each alone so that only the failing write gets the error.
    async fn commit_group(&self, jobs: Vec<Job>) {
        let (requests, replies): (Vec<Request>, Vec<Reply>) =
            jobs.into_iter().map(|j| (j.request, j.reply)).unzip();
        match self.guarded(&requests).await {
            Some(Ok(done)) => {
                for (reply, done) in replies.into_iter().zip(done) {
                    reply.send(Ok(done));
                }
            }
            Some(Err(e)) if requests.len() > 1 => {
                tracing::warn!(
                    "a group of {} writes failed ({e}); committing each alone",
                    requests.len()
                );
                for (request, reply) in requests.iter().zip(replies) {
                    match self.guarded(std::slice::from_ref(request)).await {
                        Some(Ok(mut done)) => reply.send(
                            done.pop()
                                .ok_or(ServerError::Invariant("a write without an outcome")),
                        ),
                        Some(Err(e)) => reply.send(Err(e)),
                        // Dropped: the caller hears that the write was lost.
                        None => {}
                    }
                }
            }
            Some(Err(e)) => {
                if let Some(reply) = replies.into_iter().next() {
                    reply.send(Err(e));
                }
            }
            // Dropped replies: every caller hears that its write was lost.
            None => {}
        }
    }

    /// [`Writer::group`], with a panic (a bug in judging) contained to its group: the
    /// transaction rolls back with it and the writer goes on. `None` after a panic.
    async fn guarded(&self, requests: &[Request]) -> Option<Result<Vec<Done>, ServerError>> {
        match AssertUnwindSafe(self.group(requests)).catch_unwind().await {
            Ok(result) => Some(result),
            Err(_) => {
                tracing::error!("a write panicked; its group was rolled back");
                None
            }
        }
    }

    /// Judges and writes `requests` in order in one transaction, commits, then updates
    /// memory and publishes. Nothing after the commit can fail.
    async fn group(&self, requests: &[Request]) -> Result<Vec<Done>, ServerError> {
        let started = std::time::Instant::now();
        let mut tx = self.db.begin().await?;
        // On PostgreSQL, the writers' turn; then memory is brought up to the head the lock
        // shows, so that this group is judged against every committed change, whichever
        // instance made it.
        if let Some(head) = tx.lock_head().await? {
            if head != self.memory.read().await.head {
                let mut memory = self.memory.write().await;
                follow::catch_up(
                    &mut memory,
                    &mut follow::Source::Tx(&mut tx),
                    &self.published,
                    head,
                )
                .await?;
            }
        }
        let memory = self.memory.read().await;
        let base = memory.head;
        let mut group = Group::new(&memory);
        group.earlier = earlier_outcomes(&mut tx, requests).await?;
        let mut done = Vec::with_capacity(requests.len());
        for request in requests {
            done.push(match request {
                Request::Mutate {
                    user,
                    mutation_id,
                    mutation,
                } => {
                    // Judged as the user is now, not as they were when the request was let
                    // in: an administrator may have disabled the account or changed its
                    // roles while the write waited (or earlier in this group). A disabled
                    // account is refused as a session, so the app keeps the change queued.
                    let now = group
                        .view()
                        .staff(&user.id)
                        .filter(|s| !s.disabled)
                        .cloned();
                    Done::Mutate(match now {
                        Some(user) => Ok(group.mutate(&user, *mutation_id, mutation)?),
                        None => Err(Rejection::new(
                            ErrorCode::AccountDisabled,
                            "This account is disabled.",
                        )),
                    })
                }
                Request::Intake { request, key } => {
                    Done::Intake(group.intake(&mut tx, request, key.as_deref()).await?)
                }
                Request::CreateStaff(account) => {
                    Done::Staff(group.create_staff(&mut tx, account).await?)
                }
                Request::EditStaff(edit) => Done::Account(group.edit_staff(&mut tx, edit).await?),
                Request::SetPassword(set) => Done::Account(group.set_password(&mut tx, set).await?),
            });
        }
        group.flush(&mut tx).await?;
        if group.head != base {
            tx.notify_head(group.head).await?;
        }
        tx.commit().await?;
        let committed = std::time::Instant::now();
        self.metrics.commit_seconds.observe(committed - started);
        self.commits.fetch_add(1, Ordering::Relaxed);

        let Group {
            head,
            records,
            staff,
            logged,
            ..
        } = group;
        drop(memory);
        let mut memory = self.memory.write().await;
        if memory.head != base {
            // On PostgreSQL: this instance's follower heard of the commit first and read
            // the group's changes from the log (it cannot have stopped half-way: it holds
            // the memory lock until it has read all there is). They are applied and
            // published already.
            debug_assert!(
                memory.head >= head,
                "memory stopped inside a committed group"
            );
            return Ok(done);
        }
        for (key, record) in records {
            match record {
                Some(record) => memory.put(record),
                None => memory.take(key),
            };
        }
        memory.staff.extend(staff);
        memory.head = head;
        // Under the write lock, in seq order: a feed that reads the head and then
        // subscribes cannot miss or repeat a change. No receivers is fine.
        for (mut logged, _) in logged {
            logged.committed = Some(committed);
            let _ = self.published.send(Arc::new(logged));
        }
        Ok(done)
    }
}

/// The stored outcomes of the group's mutations that were seen before (replays), by user
/// and mutation id: `(request, outcome)` as JSON.
async fn earlier_outcomes(
    tx: &mut Tx,
    requests: &[Request],
) -> Result<HashMap<(Id, Uuid), (String, String)>, ServerError> {
    let keys: Vec<(String, String)> = requests
        .iter()
        .filter_map(|r| match r {
            Request::Mutate {
                user, mutation_id, ..
            } => Some((user.id.to_string(), mutation_id.to_string())),
            _ => None,
        })
        .collect();
    let mut earlier = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        // A join from the keys, not `(staff_id, mutation_id) IN (VALUES ...)`: SQLite scans
        // the whole table for a row-value IN list of more than one row.
        let rows: Vec<(String, String, String, String)> = on_tx!(tx, c => {
            let mut q = QueryBuilder::new(
                "SELECT m.staff_id, m.mutation_id, m.request, m.outcome FROM (",
            );
            q.push_values(chunk, |mut row, (staff, id)| {
                row.push_bind(staff.as_str()).push_bind(id.as_str());
            });
            q.push(
                ") AS k JOIN mutations AS m
                 ON m.staff_id = k.column1 AND m.mutation_id = k.column2",
            );
            q.build_query_as().fetch_all(&mut **c).await?
        });
        for (staff, id, request, outcome) in rows {
            if let (Ok(staff), Ok(id)) = (staff.parse(), id.parse()) {
                earlier.insert((staff, id), (request, outcome));
            }
        }
    }
    Ok(earlier)
}

/// Rows per multi-row statement: SQLite allows 32766 bound parameters (PostgreSQL 65535),
/// a change row binds 9.
const ROWS_PER_STATEMENT: usize = 1_000;

/// One group of writes under way: memory as committed, plus what the group has done so far,
/// which is what each next write is judged against and what [`Group::flush`] writes.
#[derive(Debug)]
struct Group<'m> {
    memory: &'m Memory,
    head: u64,
    /// Records the group changed: the last state of each (`None`: deleted).
    records: HashMap<(RecordKind, Id), Option<Record>>,
    /// Staff the group added or changed: the last state of each.
    staff: HashMap<Id, Staff>,
    /// Staff changed by mutations (going on duty), whose rows [`Group::flush`] writes;
    /// account changes write theirs as they go.
    staff_bodies: Vec<Id>,
    /// The group's changes in seq order, each with its commit time.
    logged: Vec<(Logged, String)>,
    /// Outcomes stored before the group, by user and mutation id.
    earlier: HashMap<(Id, Uuid), (String, String)>,
    /// Outcomes the group decided, in order: `(user, mutation id, request, outcome)`.
    outcomes: Vec<(Id, Uuid, String, String)>,
    /// Where each decided outcome is in `outcomes`.
    decided: HashMap<(Id, Uuid), usize>,
}

impl<'m> Group<'m> {
    fn new(memory: &'m Memory) -> Group<'m> {
        Group {
            memory,
            head: memory.head,
            records: HashMap::new(),
            staff: HashMap::new(),
            staff_bodies: Vec::new(),
            logged: Vec::new(),
            earlier: HashMap::new(),
            outcomes: Vec::new(),
            decided: HashMap::new(),
        }
    }

    fn view(&self) -> View<'_> {
        View {
            memory: self.memory,
            records: &self.records,
            staff: &self.staff,
        }
    }

    fn mutate(
        &mut self,
        user: &Staff,
        mutation_id: Uuid,
        mutation: &Mutation,
    ) -> Result<MutationOutcome, ServerError> {
        let request = serde_json::to_string(mutation)?;
        let key = (user.id, mutation_id);
        let earlier = match self.decided.get(&key) {
            Some(&i) => Some((&self.outcomes[i].2, &self.outcomes[i].3)),
            None => self.earlier.get(&key).map(|(r, o)| (r, o)),
        };
        if let Some((earlier_request, outcome)) = earlier {
            if *earlier_request != request {
                return Ok(MutationOutcome::Rejected {
                    code: ErrorCode::Conflict,
                    message: "This change id was already used for a different change.".into(),
                    current: None,
                });
            }
            return Ok(serde_json::from_str(outcome)?);
        }

        let now = Utc::now();
        let (kind, id) = mutation.target();
        let judged = {
            let view = self.view();
            // Staff are kept apart from the other records (their own table, with the
            // password): a mutation of one (going on duty) is judged against it there.
            let staff = (kind == RecordKind::Staff)
                .then(|| view.staff(&id).cloned().map(Record::Staff))
                .flatten();
            let current = match kind {
                RecordKind::Staff => staff.as_ref(),
                _ => view.record((kind, id)),
            };
            judge(&view, user, mutation, current, now)
        };
        let outcome = match judged {
            Err((rejection, current)) => MutationOutcome::Rejected {
                code: rejection.code,
                message: rejection.message,
                current: current.filter(|r| rules::visible_to(user, r)),
            },
            // Nothing to change (marking read a message that is read): acknowledged as
            // applied, with the record as it is and the head it is current at; no new
            // version, no log entry, nothing published. The outcome is still kept below,
            // so a replay answers the same.
            Ok((effect, previous)) if !effect.changes(previous.as_ref()) => {
                MutationOutcome::Applied {
                    seq: self.head,
                    record: previous,
                }
            }
            Ok((effect, previous)) => {
                let record = match effect {
                    Effect::Upsert(record) => Some(record),
                    Effect::Delete { .. } => None,
                };
                let target = record
                    .clone()
                    .or(previous.clone())
                    .ok_or(ServerError::Invariant("a mutation without a record"))?;
                match &record {
                    Some(Record::Staff(staff)) => {
                        self.staff.insert(staff.id, staff.clone());
                        self.staff_bodies.push(staff.id);
                    }
                    Some(_) => {
                        self.records.insert((kind, id), record.clone());
                    }
                    // No mutation deletes an account.
                    None if kind == RecordKind::Staff => {
                        return Err(ServerError::Invariant("a mutation deleting an account"));
                    }
                    None => {
                        self.records.insert((kind, id), None);
                    }
                }
                let seq = self.append(
                    &target,
                    record.clone(),
                    previous.as_ref(),
                    Some(user.id),
                    Some(mutation_id),
                )?;
                MutationOutcome::Applied { seq, record }
            }
        };
        self.decided.insert(key, self.outcomes.len());
        self.outcomes.push((
            user.id,
            mutation_id,
            request,
            serde_json::to_string(&outcome)?,
        ));
        Ok(outcome)
    }

    async fn intake(
        &mut self,
        tx: &mut Tx,
        request: &IntakeRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Intake, ServerError> {
        let body = serde_json::to_string(request)?;
        let now = Utc::now();
        let kept_since = timestamp(now - TimeDelta::hours(IDEMPOTENCY_KEY_HOURS.into()));
        // Looked up before the rules run: a repeat answers as the first request did, even
        // if the rules would now judge it differently (its date has left the window). Read
        // in the group's transaction, so a repeat in the same group is seen too.
        if let Some(key) = idempotency_key {
            let earlier: Option<(String, String)> = on_tx!(tx, c => {
                sqlx::query_as(
                    "SELECT request, booking FROM intake_requests
                     WHERE idempotency_key = $1 AND received_at >= $2",
                )
                .bind(key)
                .bind(&kept_since)
                .fetch_optional(&mut **c)
                .await?
            });
            if let Some((earlier_request, booking)) = earlier {
                if earlier_request != body {
                    return Ok(Intake::Refused(Rejection::new(
                        ErrorCode::Conflict,
                        "This idempotency key was already used for a different booking.",
                    )));
                }
                return Ok(Intake::Replayed(serde_json::from_str(&booking)?));
            }
        }
        let fields = NewBooking {
            id: Uuid::new_v4(),
            client_name: request.client_name.clone(),
            client_phone: request.client_phone.clone(),
            address: request.address.clone(),
            service: request.service.clone(),
            date: request.date,
            start: request.start,
            end: request.end,
            therapist_id: None,
            driver_id: None,
            notes: request.notes.clone(),
        };
        let booking = match rules::new_booking(&fields, None, now) {
            Ok(booking) => booking,
            Err(rejection) => return Ok(Intake::Refused(rejection)),
        };
        let record = Record::Booking(booking.clone());
        if let Some(key) = idempotency_key {
            // Bounded: keys older than a day go (this one's expired copy too), and beyond
            // the last INTAKE_KEYS_KEPT the oldest.
            let booking_json = serde_json::to_string(&booking)?;
            on_tx!(tx, c => {
                sqlx::query("DELETE FROM intake_requests WHERE received_at < $1")
                    .bind(&kept_since)
                    .execute(&mut **c)
                    .await?;
                sqlx::query(
                    "INSERT INTO intake_requests (idempotency_key, request, booking, received_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(key)
                .bind(&body)
                .bind(&booking_json)
                .bind(timestamp(now))
                .execute(&mut **c)
                .await?;
                sqlx::query(
                    "DELETE FROM intake_requests
                     WHERE n <= (SELECT MAX(n) FROM intake_requests) - $1",
                )
                .bind(INTAKE_KEYS_KEPT)
                .execute(&mut **c)
                .await?;
            });
        }
        self.records
            .insert((RecordKind::Booking, booking.id), Some(record.clone()));
        self.append(&record, Some(record.clone()), None, None, None)?;
        Ok(Intake::Created(booking))
    }

    async fn create_staff(
        &mut self,
        tx: &mut Tx,
        account: &NewAccount,
    ) -> Result<Result<Staff, ServerError>, ServerError> {
        let username = account.username.as_str();
        let taken = self
            .memory
            .staff
            .values()
            .chain(self.staff.values())
            .any(|s| s.username == username);
        if taken {
            return Ok(Err(ServerError::Refused(Rejection::new(
                ErrorCode::UsernameTaken,
                format!("The username {username:?} is taken; choose another."),
            ))));
        }
        let staff = Staff {
            id: Uuid::new_v4(),
            username: username.to_owned(),
            display_name: account.display_name.clone(),
            roles: account.roles.clone(),
            version: 1,
            disabled: false,
            must_change_password: account.must_change_password,
            on_duty: false,
        };
        let body = serde_json::to_string(&staff)?;
        on_tx!(tx, c => {
            sqlx::query(
                "INSERT INTO staff (id, username, password_hash, body) VALUES ($1, $2, $3, $4)",
            )
            .bind(staff.id.to_string())
            .bind(username)
            .bind(&account.password_hash)
            .bind(&body)
            .execute(&mut **c)
            .await?;
        });
        let record = Record::Staff(staff.clone());
        self.staff.insert(staff.id, staff.clone());
        self.append(&record, Some(record.clone()), None, account.actor, None)?;
        Ok(Ok(staff))
    }

    /// Account `id` as the group sees it, or `not_found`.
    fn account(&self, id: Id) -> Result<Staff, Rejection> {
        self.view()
            .staff(&id)
            .cloned()
            .ok_or_else(|| Rejection::new(ErrorCode::NotFound, "There is no such staff account."))
    }

    async fn edit_staff(
        &mut self,
        tx: &mut Tx,
        edit: &StaffEdit,
    ) -> Result<Result<AccountChange, Rejection>, ServerError> {
        let before = match self.account(edit.id) {
            Ok(before) => before,
            Err(refused) => return Ok(Err(refused)),
        };
        if before.version != edit.version {
            return Ok(Err(Rejection::new(
                ErrorCode::Conflict,
                format!(
                    "{}'s account was changed by someone else (version {} now, not {}); \
                     reload it and try again.",
                    before.display_name, before.version, edit.version
                ),
            )));
        }
        let mut after = before.clone();
        if let Some(name) = &edit.display_name {
            after.display_name.clone_from(name);
        }
        if let Some(roles) = &edit.roles {
            after.roles.clone_from(roles);
        }
        if let Some(disabled) = edit.disabled {
            after.disabled = disabled;
        }
        // On duty only while an enabled driver: a disabled account, or one no longer a
        // driver, cannot go off duty itself (the Drivers panel would list it as ready for
        // good). Enabled again, or a driver again, they go on duty themselves.
        if after.disabled || !after.has(Role::Driver) {
            after.on_duty = false;
        }
        if after == before {
            // Nothing to change: no new version, nothing logged (as for a mutation).
            return Ok(Ok(AccountChange {
                staff: before,
                revoked: Vec::new(),
            }));
        }
        let others = self
            .memory
            .staff
            .values()
            .filter(|s| s.id != after.id && !self.staff.contains_key(&s.id))
            .chain(self.staff.values().filter(|s| s.id != after.id));
        let losing_an_admin =
            rules::has_enabled_admin([&before]) && !rules::has_enabled_admin([&after]);
        if losing_an_admin && !rules::has_enabled_admin(others) {
            return Ok(Err(Rejection::new(
                ErrorCode::LastAdmin,
                format!(
                    "{} is the clinic's last enabled administrator; make someone else an \
                     administrator first.",
                    before.display_name
                ),
            )));
        }
        after.version += 1;
        update_staff(tx, &after, None).await?;
        let revoked = if after.disabled && !before.disabled {
            revoke_tokens(tx, after.id, None).await?
        } else {
            Vec::new()
        };
        self.record_account(&before, &after, Some(edit.actor))?;
        Ok(Ok(AccountChange {
            staff: after,
            revoked,
        }))
    }

    async fn set_password(
        &mut self,
        tx: &mut Tx,
        set: &PasswordSet,
    ) -> Result<Result<AccountChange, Rejection>, ServerError> {
        let before = match self.account(set.id) {
            Ok(before) => before,
            Err(refused) => return Ok(Err(refused)),
        };
        let mut after = before.clone();
        after.must_change_password = set.must_change_password;
        if after != before {
            after.version += 1;
        }
        update_staff(tx, &after, Some(&set.password_hash)).await?;
        let revoked = revoke_tokens(tx, after.id, set.keep.as_deref()).await?;
        if after != before {
            self.record_account(&before, &after, Some(set.actor))?;
        }
        Ok(Ok(AccountChange {
            staff: after,
            revoked,
        }))
    }

    /// Logs a changed account and keeps it for the group's later writes and for memory.
    fn record_account(
        &mut self,
        before: &Staff,
        after: &Staff,
        actor: Option<Id>,
    ) -> Result<(), ServerError> {
        let record = Record::Staff(after.clone());
        self.staff.insert(after.id, after.clone());
        self.append(
            &record,
            Some(record.clone()),
            Some(&Record::Staff(before.clone())),
            actor,
            None,
        )?;
        Ok(())
    }

    /// Takes the next seq for a change of `target`; its log row is written by
    /// [`Group::flush`].
    fn append(
        &mut self,
        target: &Record,
        record: Option<Record>,
        previous: Option<&Record>,
        actor: Option<Id>,
        mutation_id: Option<Uuid>,
    ) -> Result<u64, ServerError> {
        let seq = self.head + 1;
        i64::try_from(seq).map_err(|_| ServerError::Invariant("seq overflow"))?;
        self.head = seq;
        let logged = Logged {
            seq,
            kind: target.kind(),
            id: target.id(),
            record,
            prev_parties: previous.map(Record::parties).unwrap_or_default(),
            prev_existed: previous.is_some(),
            actor,
            mutation_id,
            upsert_json: OnceLock::new(),
            committed: None,
        };
        self.logged.push((logged, Utc::now().to_rfc3339()));
        Ok(seq)
    }

    /// Writes what the group did: records, log rows, outcomes and the head, a few
    /// multi-row statements whatever the group's size.
    async fn flush(&self, tx: &mut Tx) -> Result<(), ServerError> {
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for ((kind, id), record) in &self.records {
            match record {
                Some(record) => upserts.push((
                    kind.as_str(),
                    id.to_string(),
                    serde_json::to_string(record)?,
                )),
                None => deletes.push((kind.as_str(), id.to_string())),
            }
        }
        for chunk in upserts.chunks(ROWS_PER_STATEMENT) {
            on_tx!(&mut *tx, c => {
                let mut q = QueryBuilder::new("INSERT INTO records (kind, id, body) ");
                q.push_values(chunk, |mut row, (kind, id, body)| {
                    row.push_bind(*kind)
                        .push_bind(id.as_str())
                        .push_bind(body.as_str());
                });
                q.push(" ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body");
                q.build().execute(&mut **c).await?;
            });
        }
        for chunk in deletes.chunks(ROWS_PER_STATEMENT) {
            match &mut *tx {
                // By rowid from a join, for the index (see `earlier_outcomes`).
                Tx::Sqlite(c) => {
                    let mut q = QueryBuilder::new(
                        "DELETE FROM records WHERE rowid IN (SELECT r.rowid FROM (",
                    );
                    q.push_values(chunk, |mut row, (kind, id)| {
                        row.push_bind(*kind).push_bind(id.as_str());
                    });
                    q.push(") AS k JOIN records AS r ON r.kind = k.column1 AND r.id = k.column2)");
                    q.build().execute(&mut **c).await?;
                }
                Tx::Postgres(c) => {
                    let mut q = QueryBuilder::new("DELETE FROM records AS r USING (");
                    q.push_values(chunk, |mut row, (kind, id)| {
                        row.push_bind(*kind).push_bind(id.as_str());
                    });
                    q.push(") AS k WHERE r.kind = k.column1 AND r.id = k.column2");
                    q.build().execute(&mut **c).await?;
                }
            }
        }
        let mut changed_staff = self.staff_bodies.clone();
        changed_staff.sort_unstable();
        changed_staff.dedup();
        for id in changed_staff {
            let staff = self
                .staff
                .get(&id)
                .ok_or(ServerError::Invariant("a changed account not kept"))?;
            update_staff(tx, staff, None).await?;
        }
        let mut rows = Vec::with_capacity(self.logged.len());
        for (logged, committed_at) in &self.logged {
            rows.push((
                i64::try_from(logged.seq).map_err(|_| ServerError::Invariant("seq overflow"))?,
                logged.kind.as_str(),
                logged.id.to_string(),
                logged
                    .record
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()?,
                serde_json::to_string(&logged.prev_parties)?,
                logged.prev_existed,
                logged.actor.map(|a| a.to_string()),
                logged.mutation_id.map(|m| m.to_string()),
                committed_at.as_str(),
            ));
        }
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            on_tx!(&mut *tx, c => {
                let mut q = QueryBuilder::new(
                    "INSERT INTO changes (seq, kind, id, body, prev_parties, prev_existed, \
                     actor, mutation_id, committed_at) ",
                );
                q.push_values(chunk, |mut row, r| {
                    row.push_bind(r.0)
                        .push_bind(r.1)
                        .push_bind(r.2.as_str())
                        .push_bind(r.3.as_deref())
                        .push_bind(r.4.as_str())
                        .push_bind(r.5)
                        .push_bind(r.6.as_deref())
                        .push_bind(r.7.as_deref())
                        .push_bind(r.8);
                });
                q.build().execute(&mut **c).await?;
            });
        }
        for chunk in self.outcomes.chunks(ROWS_PER_STATEMENT) {
            on_tx!(&mut *tx, c => {
                let mut q = QueryBuilder::new(
                    "INSERT INTO mutations (staff_id, mutation_id, request, outcome) ",
                );
                q.push_values(chunk, |mut row, (user, id, request, outcome)| {
                    row.push_bind(user.to_string())
                        .push_bind(id.to_string())
                        .push_bind(request.as_str())
                        .push_bind(outcome.as_str());
                });
                q.build().execute(&mut **c).await?;
            });
        }
        if self.head != self.memory.head {
            let head =
                i64::try_from(self.head).map_err(|_| ServerError::Invariant("seq overflow"))?;
            on_tx!(&mut *tx, c => {
                sqlx::query("UPDATE head SET seq = $1")
                    .bind(head)
                    .execute(&mut **c)
                    .await?;
            });
        }
        Ok(())
    }
}

/// Revokes every live token of account `staff_id` but the one whose hash is `keep`, and
/// returns the hashes of those it revoked.
async fn revoke_tokens(
    tx: &mut Tx,
    staff_id: Id,
    keep: Option<&[u8]>,
) -> Result<Vec<Vec<u8>>, ServerError> {
    Ok(on_tx!(tx, c => {
        sqlx::query_scalar(
            "UPDATE tokens SET revoked = TRUE
             WHERE staff_id = $1 AND revoked = FALSE AND ($2 IS NULL OR token_hash <> $2)
             RETURNING token_hash",
        )
        .bind(staff_id.to_string())
        .bind(keep)
        .fetch_all(&mut **c)
        .await?
    }))
}

/// Writes account `staff`'s record, and its new password hash if given.
async fn update_staff(
    tx: &mut Tx,
    staff: &Staff,
    password_hash: Option<&str>,
) -> Result<(), ServerError> {
    let body = serde_json::to_string(staff)?;
    on_tx!(tx, c => {
        sqlx::query(
            "UPDATE staff SET body = $1, password_hash = COALESCE($2, password_hash)
             WHERE id = $3",
        )
        .bind(&body)
        .bind(password_hash)
        .bind(staff.id.to_string())
        .execute(&mut **c)
        .await?;
    });
    Ok(())
}

/// Memory as a group sees it: what is committed, overlaid with what the group did so far.
#[derive(Debug)]
struct View<'a> {
    memory: &'a Memory,
    records: &'a HashMap<(RecordKind, Id), Option<Record>>,
    staff: &'a HashMap<Id, Staff>,
}

impl View<'_> {
    fn record(&self, key: (RecordKind, Id)) -> Option<&Record> {
        match self.records.get(&key) {
            Some(changed) => changed.as_ref(),
            None => self.memory.records.get(&key),
        }
    }

    fn staff(&self, id: &Id) -> Option<&Staff> {
        self.staff.get(id).or_else(|| self.memory.staff.get(id))
    }

    /// The bookings of therapist `staff` and the slots of `staff` on `date`, each in its
    /// latest state: what a booking or a slot of theirs that day is judged against.
    fn day(&self, staff: Id, date: NaiveDate) -> (Vec<Booking>, Vec<Slot>) {
        let (mut bookings, mut slots) = (Vec::new(), Vec::new());
        for record in self.on_day(staff, date) {
            match record {
                Record::Booking(b) => bookings.push(b.clone()),
                Record::Slot(s) => slots.push(s.clone()),
                _ => {}
            }
        }
        (bookings, slots)
    }

    /// The records of `staff` on `date` (see [`day_of`]), each in its latest state.
    fn on_day(&self, staff: Id, date: NaiveDate) -> impl Iterator<Item = &Record> {
        let changed = self.records;
        let memory = self.memory;
        memory
            .days
            .get(&(staff, date))
            .into_iter()
            .flatten()
            .filter(move |key| !changed.contains_key(*key))
            .filter_map(move |key| memory.records.get(key))
            .chain(
                changed
                    .values()
                    .flatten()
                    .filter(move |r| day_of(r) == Some((staff, date))),
            )
    }
}

/// Decides a mutation against memory as the group sees it: the pure rules, then the checks
/// that need other records (assignees are real staff with the right role; no double
/// booking; inside availability; no availability taken from under a booking the therapist
/// took on). Returns the effect and the previous record, or the rejection and the current
/// record.
#[allow(clippy::type_complexity)]
fn judge(
    memory: &View<'_>,
    user: &Staff,
    mutation: &Mutation,
    current: Option<&Record>,
    now: DateTime<Utc>,
) -> Result<(Effect, Option<Record>), (Rejection, Option<Record>)> {
    let effect = rules::apply(user, mutation, current, now).map_err(|r| (r, current.cloned()))?;
    if let (Effect::Upsert(Record::Booking(b)), true) =
        (&effect, rules::needs_schedule_check(mutation))
    {
        let therapist = b.therapist_id.and_then(|id| memory.staff(&id));
        let driver = b.driver_id.and_then(|id| memory.staff(&id));
        rules::check_assignees(b, therapist, driver).map_err(|r| (r, current.cloned()))?;
        if let Some(t) = therapist {
            let (others, slots) = memory.day(t.id, b.date);
            rules::check_schedule(b, &t.display_name, &others, &slots)
                .map_err(|r| (r, current.cloned()))?;
        }
    }
    if let (Some(Record::Slot(before)), true) = (current, rules::needs_slot_check(mutation)) {
        let after = match &effect {
            Effect::Upsert(Record::Slot(s)) => Some(s),
            _ => None,
        };
        let (bookings, slots) = memory.day(before.staff_id, before.date);
        let name = memory
            .staff(&before.staff_id)
            .map_or("The therapist", |t| t.display_name.as_str());
        rules::check_slot_change(before, after, name, &bookings, &slots)
            .map_err(|r| (r, current.cloned()))?;
    }
    if let (Effect::Upsert(Record::Message(m)), Mutation::SendMessage { .. }) = (&effect, mutation)
    {
        if memory.staff(&m.recipient_id).is_none() {
            return Err((
                Rejection::new(
                    ErrorCode::InvalidValue,
                    "There is no such staff member to write to.",
                ),
                None,
            ));
        }
    }
    if let (Effect::Upsert(Record::Slot(s)), Mutation::CreateSlot { .. }) = (&effect, mutation) {
        if !memory
            .staff(&s.staff_id)
            .is_some_and(|st| st.has(Role::Therapist))
        {
            return Err((
                Rejection::new(
                    ErrorCode::InvalidValue,
                    "Availability is for therapists only.",
                ),
                None,
            ));
        }
    }
    Ok((effect, current.cloned()))
}

/// A change-log row as both databases return it: seq, kind, id, body, prev_parties,
/// prev_existed, actor, mutation_id.
type LogRow = (
    i64,
    String,
    String,
    Option<String>,
    String,
    bool,
    Option<String>,
    Option<String>,
);

/// The log from a seq on, in seq order, a page at a time.
const LOG_AFTER: &str = "SELECT seq, kind, id, body, prev_parties, prev_existed, actor, \
                         mutation_id FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2";

fn decode_logged(row: LogRow) -> Result<Logged, ServerError> {
    let (seq, kind, id, body, prev, prev_existed, actor, mutation_id) = row;
    Ok(Logged {
        seq: u64::try_from(seq).map_err(|_| ServerError::Invariant("negative seq"))?,
        kind: RecordKind::parse(&kind).ok_or(ServerError::Invariant("unknown kind in the log"))?,
        id: id
            .parse()
            .map_err(|_| ServerError::Invariant("bad id in the log"))?,
        record: body.map(|b| serde_json::from_str(&b)).transpose()?,
        prev_parties: serde_json::from_str(&prev)?,
        prev_existed,
        actor: actor.and_then(|a| a.parse().ok()),
        mutation_id: mutation_id.and_then(|m| m.parse().ok()),
        upsert_json: OnceLock::new(),
        committed: None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::{Local, NaiveTime};
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::ConnectOptions;

    use super::*;

    async fn open(dir: &Path) -> Store {
        Store::open(&Config::new(dir.join("clinic.db")))
            .await
            .expect("open the store")
    }

    fn booking(id: Uuid, notes: &str) -> Mutation {
        Mutation::CreateBooking {
            booking: NewBooking {
                id,
                client_name: "Group Client".into(),
                client_phone: "555".into(),
                address: "Somewhere 1".into(),
                service: "Massage".into(),
                date: Local::now().date_naive() + TimeDelta::days(1),
                start: NaiveTime::from_hms_opt(9, 0, 0).expect("a time"),
                end: NaiveTime::from_hms_opt(10, 0, 0).expect("a time"),
                therapist_id: None,
                driver_id: None,
                notes: notes.into(),
            },
        }
    }

    #[test]
    fn memory_finds_each_record_under_its_person_and_day_as_it_changes() {
        let Mutation::CreateBooking { booking: fields } = booking(Uuid::new_v4(), "day") else {
            unreachable!("a booking");
        };
        let mut b = rules::new_booking(&fields, None, Utc::now()).expect("a booking");
        let (ana, ben) = (Uuid::new_v4(), Uuid::new_v4());
        let key = (RecordKind::Booking, b.id);
        let keys = |m: &Memory, who: Id| m.days.get(&(who, fields.date)).cloned();
        let mut memory = Memory::default();
        memory.put(Record::Booking(b.clone()));
        assert!(
            memory.days.is_empty(),
            "a booking nobody took is nobody's day"
        );
        b.therapist_id = Some(ana);
        memory.put(Record::Booking(b.clone()));
        assert_eq!(keys(&memory, ana), Some(HashSet::from([key])));
        b.therapist_id = Some(ben);
        memory.put(Record::Booking(b));
        assert_eq!(keys(&memory, ana), None, "reassigned: gone from Ana's day");
        assert_eq!(keys(&memory, ben), Some(HashSet::from([key])));
        memory.take(key);
        assert!(memory.days.is_empty() && memory.records.is_empty());
    }

    fn cancel_a(id: Uuid) -> Mutation {
        Mutation::CancelBooking {
            id,
            version: 1,
            reason: "The client called off.".into(),
        }
    }

    /// Queues a mutation without waiting: mutations queued one after the other in a test
    /// on the current-thread runtime are all waiting when the writer next runs, so they
    /// form one group, in this order.
    fn queue(
        store: &Store,
        user: &Staff,
        mutation_id: Uuid,
        mutation: Mutation,
    ) -> oneshot::Receiver<Result<MutationOutcome, ServerError>> {
        let (reply, answer) = oneshot::channel();
        store
            .jobs
            .try_send(Job {
                request: Request::Mutate {
                    user: user.clone(),
                    mutation_id,
                    mutation,
                },
                reply: Reply::Mutate(reply),
            })
            .expect("room in the queue");
        answer
    }

    async fn answer(
        answer: oneshot::Receiver<Result<MutationOutcome, ServerError>>,
    ) -> Result<MutationOutcome, ServerError> {
        answer.await.expect("an answer")
    }

    fn seq(outcome: &MutationOutcome) -> u64 {
        match outcome {
            MutationOutcome::Applied { seq, .. } => *seq,
            other => panic!("expected applied, got {other:?}"),
        }
    }

    fn code(outcome: &MutationOutcome) -> ErrorCode {
        match outcome {
            MutationOutcome::Rejected { code, .. } => *code,
            other => panic!("expected rejected, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_group_judges_each_write_after_the_earlier_ones_and_commits_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = open(dir.path()).await;
        let olivia = store
            .create_staff("olivia", "Olivia", &[Role::Operator], "hash")
            .await
            .expect("an operator");
        let head = store.head().await;
        let commits = store.commits.load(Ordering::Relaxed);
        let mut live = store.subscribe();

        let a = Uuid::new_v4();
        let cancel = cancel_a(a);
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        let answers = vec![
            // Made, then cancelled by the next write, which only works if it sees it.
            queue(&store, &olivia, ids[0], booking(a, "a")),
            queue(&store, &olivia, ids[1], cancel.clone()),
            // The same cancel again: version 1 is gone by now. Refused, in the middle.
            queue(&store, &olivia, ids[2], cancel),
            queue(&store, &olivia, ids[3], booking(Uuid::new_v4(), "b")),
            // A replay of the first (its outcome), and the second's id reused for
            // another change (a conflict): both decided inside the same group.
            queue(&store, &olivia, ids[0], booking(a, "a")),
            queue(&store, &olivia, ids[1], booking(Uuid::new_v4(), "c")),
        ];
        let mut outcomes = Vec::new();
        for a in answers {
            outcomes.push(answer(a).await.expect("no failure"));
        }
        assert_eq!(seq(&outcomes[0]), head + 1);
        assert_eq!(seq(&outcomes[1]), head + 2);
        assert_ne!(code(&outcomes[2]), ErrorCode::Internal);
        assert_eq!(seq(&outcomes[3]), head + 3);
        assert_eq!(
            outcomes[4], outcomes[0],
            "a replay answers as the first time"
        );
        assert_eq!(code(&outcomes[5]), ErrorCode::Conflict);
        assert_eq!(
            store.commits.load(Ordering::Relaxed),
            commits + 1,
            "one commit for the group"
        );

        // Memory, the log and the feed's ring agree: three changes, gap-free, in order,
        // and each was on disk by the time a feed could see it.
        assert_eq!(store.head().await, head + 3);
        let seqs: Vec<u64> = store
            .log_after(head, 100)
            .await
            .expect("the log")
            .iter()
            .map(|l| l.seq)
            .collect();
        assert_eq!(seqs, vec![head + 1, head + 2, head + 3]);
        let mut disk = SqliteConnectOptions::new()
            .filename(dir.path().join("clinic.db"))
            .connect()
            .await
            .expect("a connection of its own");
        for expected in head + 1..=head + 3 {
            let logged = live.try_recv().expect("published");
            assert_eq!(logged.seq, expected);
            let on_disk: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM changes WHERE seq = ?")
                .bind(i64::try_from(logged.seq).expect("small"))
                .fetch_one(&mut disk)
                .await
                .expect("a count");
            assert_eq!(on_disk, 1, "published after the commit");
        }
        assert!(live.try_recv().is_err(), "nothing else published");

        // What a reopened store reads from disk is what memory held.
        let (_, before) = store.snapshot(&olivia).await;
        drop(store);
        let store = open(dir.path()).await;
        let (at, after) = store.snapshot(&olivia).await;
        assert_eq!(at, head + 3);
        let key = |r: &Record| (r.kind(), r.id());
        let mut before: Vec<(RecordKind, Id)> = before.iter().map(key).collect();
        let mut after: Vec<(RecordKind, Id)> = after.iter().map(key).collect();
        before.sort_unstable_by_key(|k| (k.0.as_str(), k.1));
        after.sort_unstable_by_key(|k| (k.0.as_str(), k.1));
        assert_eq!(before, after);
        let replays = [
            queue(&store, &olivia, ids[0], booking(a, "a")),
            queue(&store, &olivia, ids[1], cancel_a(a)),
            queue(&store, &olivia, ids[2], cancel_a(a)),
        ];
        for (replay, first) in replays.into_iter().zip(&outcomes) {
            assert_eq!(
                &answer(replay).await.expect("a replay"),
                first,
                "outcomes were committed with the group, refusals too"
            );
        }
        assert_eq!(store.head().await, head + 3, "replays change nothing");
    }

    #[tokio::test]
    async fn a_write_is_judged_as_its_user_is_when_it_is_written() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = open(dir.path()).await;
        let admin = store
            .create_staff("ada", "Ada", &[Role::Admin], "hash")
            .await
            .expect("an administrator");
        // The copy a request was let in with, before an administrator changed the account.
        let olivia = store
            .create_staff("olivia", "Olivia", &[Role::Operator], "hash")
            .await
            .expect("an operator");
        let edit = |disabled| StaffEdit {
            id: olivia.id,
            version: 0,
            display_name: None,
            roles: None,
            disabled: Some(disabled),
            actor: admin.id,
        };
        let version = |s: &Staff| s.version;
        let disabled = store
            .edit_staff(StaffEdit {
                version: version(&olivia),
                ..edit(true)
            })
            .await
            .expect("disabled");
        let refused = store
            .mutate(&olivia, Uuid::new_v4(), &booking(Uuid::new_v4(), "late"))
            .await
            .expect_err("refused as the session");
        assert!(
            matches!(&refused, ServerError::Refused(r) if r.code == ErrorCode::AccountDisabled),
            "{refused:?}"
        );
        store
            .edit_staff(StaffEdit {
                version: disabled.staff.version,
                ..edit(false)
            })
            .await
            .expect("enabled again");
        let outcome = store
            .mutate(&olivia, Uuid::new_v4(), &booking(Uuid::new_v4(), "again"))
            .await
            .expect("judged");
        seq(&outcome);
    }

    #[tokio::test]
    async fn a_write_that_fails_fails_alone_and_the_others_of_its_group_land() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = open(dir.path()).await;
        let olivia = store
            .create_staff("olivia", "Olivia", &[Role::Operator], "hash")
            .await
            .expect("an operator");
        // A database failure for one booking of the group, whatever the writer does.
        sqlx::query(
            "CREATE TRIGGER injected BEFORE INSERT ON records WHEN NEW.body LIKE '%FAIL%'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        )
        .execute(store.pool())
        .await
        .expect("a trigger");
        let head = store.head().await;
        let answers = vec![
            queue(
                &store,
                &olivia,
                Uuid::new_v4(),
                booking(Uuid::new_v4(), "x"),
            ),
            queue(
                &store,
                &olivia,
                Uuid::new_v4(),
                booking(Uuid::new_v4(), "FAIL"),
            ),
            queue(
                &store,
                &olivia,
                Uuid::new_v4(),
                booking(Uuid::new_v4(), "z"),
            ),
        ];
        let mut results = Vec::new();
        for a in answers {
            results.push(answer(a).await);
        }
        assert_eq!(seq(results[0].as_ref().expect("x lands")), head + 1);
        assert!(
            matches!(results[1], Err(ServerError::Database(_))),
            "{:?}",
            results[1]
        );
        assert_eq!(seq(results[2].as_ref().expect("z lands")), head + 2);
        let seqs: Vec<u64> = store
            .log_after(head, 100)
            .await
            .expect("the log")
            .iter()
            .map(|l| l.seq)
            .collect();
        assert_eq!(seqs, vec![head + 1, head + 2], "gap-free");
        assert_eq!(store.head().await, head + 2);
    }

    #[tokio::test]
    async fn records_deleted_in_a_group_are_gone_from_disk() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = open(dir.path()).await;
        let reyes = store
            .create_staff("reyes", "Dr. Reyes", &[Role::Therapist], "hash")
            .await
            .expect("a therapist");
        let slot = |id: Uuid, hour: u32| Mutation::CreateSlot {
            slot: clinic_protocol::NewSlot {
                id,
                staff_id: reyes.id,
                date: Local::now().date_naive() + TimeDelta::days(2),
                start: NaiveTime::from_hms_opt(hour, 0, 0).expect("a time"),
                end: NaiveTime::from_hms_opt(hour + 1, 0, 0).expect("a time"),
                note: String::new(),
            },
        };
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        for (i, id) in ids.iter().enumerate() {
            let hour = 9 + 2 * u32::try_from(i).expect("small");
            seq(&store
                .mutate(&reyes, Uuid::new_v4(), &slot(*id, hour))
                .await
                .expect("a slot"));
        }
        // Two deletes in one group: one statement for both.
        let delete = |id: Uuid| Mutation::DeleteSlot { id, version: 1 };
        let answers = [
            queue(&store, &reyes, Uuid::new_v4(), delete(ids[0])),
            queue(&store, &reyes, Uuid::new_v4(), delete(ids[2])),
        ];
        for a in answers {
            seq(&answer(a).await.expect("deleted"));
        }
        drop(store);
        let store = open(dir.path()).await;
        let (_, records) = store.snapshot(&reyes).await;
        let slots: Vec<Id> = records
            .iter()
            .filter(|r| r.kind() == RecordKind::Slot)
            .map(Record::id)
            .collect();
        assert_eq!(slots, vec![ids[1]]);
    }

    #[tokio::test]
    async fn a_cursor_inside_a_skipped_range_resumes_nowhere() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut store = open(dir.path()).await;
        assert_eq!(store.resume_point(7), Some(7));
        store.skips = vec![
            Skip {
                after: 10,
                resume: 100,
            },
            Skip {
                after: 100,
                resume: 1000,
            },
        ]
        .into();
        assert_eq!(store.resume_point(9), Some(9));
        assert_eq!(
            store.resume_point(10),
            Some(1000),
            "restored twice, no write between"
        );
        assert_eq!(store.resume_point(11), None);
        assert_eq!(store.resume_point(100), Some(1000));
        assert_eq!(store.resume_point(999), None);
        assert_eq!(store.resume_point(1000), Some(1000));
        assert_eq!(store.resume_point(1001), Some(1001));
    }
}
