//! The authoritative store: SQLite on disk, with every record also held in memory.
//!
//! A clinic's working set (staff, a few thousand bookings and slots, messages) fits in memory
//! many times over, so reads (snapshots, rule checks) never touch the disk. Writes go through
//! ONE writer lock: the mutation is judged against memory, then the record, the change-log
//! row (with the next gap-free seq) and the mutation's outcome are committed in one SQLite
//! transaction, and only then is memory updated and the change published to the feeds.
//! Each write runs on its own task, so a client that hangs up mid-commit cannot cancel it
//! between the commit and the memory update.
//!
//! Publishing happens under the writer lock, so feeds see changes in seq order. The fan-out
//! is a `tokio::sync::broadcast` ring of `feed_queue` changes: each feed connection reads it
//! at its own pace and filters for its user, so the ring is every connection's bounded
//! queue at once, holding each change once (an `Arc`) however many clients are connected.
//! A connection that falls `feed_queue` changes behind is told so (`Lagged`) and the feed
//! turns that into a resync; nothing is dropped silently.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, TimeDelta, Utc};
use clinic_protocol::rules::{self, Effect, Rejection};
use clinic_protocol::wire::IDEMPOTENCY_KEY_HOURS;
use clinic_protocol::{
    Booking, Change, ChangeOp, ErrorCode, Id, IntakeRequest, Mutation, MutationOutcome, NewBooking,
    Record, RecordKind, Role, Staff,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::{broadcast, Mutex, RwLock};
use uuid::Uuid;

use crate::error::ServerError;

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

/// Runs a write to its end even if its caller goes away.
///
/// A client that disconnects or times out drops its HTTP handler, and with it any future
/// the handler awaits. SQLite finishes a COMMIT already handed to its worker thread, so a
/// write dropped while its commit is under way lands on disk but never reaches memory:
/// memory's head falls behind the log and every later write collides on the next seq.
/// A spawned task is never cancelled by the caller, so commit and publish stay one step.
async fn to_completion<T: Send + 'static>(
    write: impl std::future::Future<Output = Result<T, ServerError>> + Send + 'static,
) -> Result<T, ServerError> {
    tokio::spawn(write)
        .await
        .map_err(|_| ServerError::Invariant("a write task panicked"))?
}

#[derive(Debug, Default)]
struct Memory {
    staff: HashMap<Id, Staff>,
    records: HashMap<(RecordKind, Id), Record>,
    head: u64,
}

/// The store. Cloning shares it.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pool: SqlitePool,
    memory: Arc<RwLock<Memory>>,
    writer: Arc<Mutex<()>>,
    published: broadcast::Sender<Arc<Logged>>,
}

impl Store {
    pub(crate) async fn open(path: &Path, feed_queue: usize) -> Result<Store, ServerError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL survives a crash of this process; only a power cut can
            // lose the last commits, and then clients find their cursor ahead of the head
            // and resync. FULL would pay an fsync per mutation.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;

        let mut memory = Memory::default();
        for row in sqlx::query("SELECT body FROM staff")
            .fetch_all(&pool)
            .await?
        {
            let staff: Staff = serde_json::from_str(row.get("body"))?;
            memory.staff.insert(staff.id, staff);
        }
        for row in sqlx::query("SELECT body FROM records")
            .fetch_all(&pool)
            .await?
        {
            let record: Record = serde_json::from_str(row.get("body"))?;
            memory.records.insert((record.kind(), record.id()), record);
        }
        let head: i64 = sqlx::query_scalar("SELECT seq FROM head")
            .fetch_one(&pool)
            .await?;
        memory.head = u64::try_from(head).unwrap_or(0);
        let (published, _) = broadcast::channel(feed_queue.max(1));
        Ok(Store {
            pool,
            memory: Arc::new(RwLock::new(memory)),
            writer: Arc::new(Mutex::new(())),
            published,
        })
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) async fn head(&self) -> u64 {
        self.memory.read().await.head
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
        let row = sqlx::query("SELECT body, password_hash FROM staff WHERE username = ?")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let staff: Staff = serde_json::from_str(row.get("body"))?;
            Ok((staff, row.get("password_hash")))
        })
        .transpose()
    }

    pub(crate) async fn staff_count(&self) -> usize {
        self.memory.read().await.staff.len()
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
        let rows = sqlx::query(
            "SELECT seq, kind, id, body, prev_parties, prev_existed, actor, mutation_id
             FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| decode_logged(&row)).collect()
    }

    /// The oldest seq still in the log (`None` if the log is empty).
    pub(crate) async fn oldest_kept(&self) -> Result<Option<u64>, ServerError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM changes")
            .fetch_one(&self.pool)
            .await?;
        Ok(seq.map(|s| u64::try_from(s).unwrap_or(0)))
    }

    /// Keeps only the last `keep_last` log entries.
    pub(crate) async fn compact(&self, keep_last: u64) -> Result<(), ServerError> {
        let head = self.head().await;
        let cutoff = head.saturating_sub(keep_last);
        sqlx::query("DELETE FROM changes WHERE seq <= ?")
            .bind(i64::try_from(cutoff).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn create_staff(
        &self,
        username: &str,
        display_name: &str,
        roles: &[Role],
        password_hash: &str,
    ) -> Result<Staff, ServerError> {
        let store = self.clone();
        let (username, display_name, roles, password_hash) = (
            username.to_owned(),
            display_name.to_owned(),
            roles.to_vec(),
            password_hash.to_owned(),
        );
        to_completion(async move {
            store
                .create_staff_now(&username, &display_name, &roles, &password_hash)
                .await
        })
        .await
    }

    async fn create_staff_now(
        &self,
        username: &str,
        display_name: &str,
        roles: &[Role],
        password_hash: &str,
    ) -> Result<Staff, ServerError> {
        let staff = Staff {
            id: Uuid::new_v4(),
            username: username.to_owned(),
            display_name: display_name.to_owned(),
            roles: roles.to_vec(),
            version: 1,
        };
        let _writer = self.writer.lock().await;
        if self
            .memory
            .read()
            .await
            .staff
            .values()
            .any(|s| s.username == username)
        {
            return Err(ServerError::UsernameTaken(username.to_owned()));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO staff (id, username, password_hash, body) VALUES (?, ?, ?, ?)")
            .bind(staff.id.to_string())
            .bind(username)
            .bind(password_hash)
            .bind(serde_json::to_string(&staff)?)
            .execute(&mut *tx)
            .await?;
        let record = Record::Staff(staff.clone());
        let logged = self
            .append(&mut tx, &record, Some(record.clone()), None, None, None)
            .await?;
        tx.commit().await?;
        self.publish(logged, |m| {
            m.staff.insert(staff.id, staff.clone());
        })
        .await;
        Ok(staff)
    }

    /// Applies a mutation from `user` (idempotent by `mutation_id`).
    pub(crate) async fn mutate(
        &self,
        user: &Staff,
        mutation_id: Uuid,
        mutation: &Mutation,
    ) -> Result<MutationOutcome, ServerError> {
        let (store, user, mutation) = (self.clone(), user.clone(), mutation.clone());
        to_completion(async move { store.mutate_now(&user, mutation_id, &mutation).await }).await
    }

    async fn mutate_now(
        &self,
        user: &Staff,
        mutation_id: Uuid,
        mutation: &Mutation,
    ) -> Result<MutationOutcome, ServerError> {
        let request = serde_json::to_string(mutation)?;
        let _writer = self.writer.lock().await;
        let earlier: Option<(String, String)> = sqlx::query_as(
            "SELECT request, outcome FROM mutations WHERE staff_id = ? AND mutation_id = ?",
        )
        .bind(user.id.to_string())
        .bind(mutation_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        if let Some((earlier_request, outcome)) = earlier {
            if earlier_request != request {
                return Ok(MutationOutcome::Rejected {
                    code: ErrorCode::Conflict,
                    message: "This change id was already used for a different change.".into(),
                    current: None,
                });
            }
            return Ok(serde_json::from_str(&outcome)?);
        }

        let now = Utc::now();
        let (kind, id) = mutation.target();
        let (judged, head) = {
            let memory = self.memory.read().await;
            let current = memory.records.get(&(kind, id));
            (judge(&memory, user, mutation, current, now), memory.head)
        };
        let mut tx = self.pool.begin().await?;
        let (outcome, logged) = match judged {
            Err((rejection, current)) => (
                MutationOutcome::Rejected {
                    code: rejection.code,
                    message: rejection.message,
                    current: current.filter(|r| rules::visible_to(user, r)),
                },
                None,
            ),
            // Nothing to change (marking read a message that is read): acknowledged as
            // applied, with the record as it is and the head it is current at; no new
            // version, no log entry, nothing published. The outcome is still kept below,
            // so a replay answers the same.
            Ok((effect, previous)) if !effect.changes(previous.as_ref()) => (
                MutationOutcome::Applied {
                    seq: head,
                    record: previous,
                },
                None,
            ),
            Ok((effect, previous)) => {
                let (record, kept) = match effect {
                    Effect::Upsert(record) => {
                        sqlx::query(
                            "INSERT OR REPLACE INTO records (kind, id, body) VALUES (?, ?, ?)",
                        )
                        .bind(kind.as_str())
                        .bind(id.to_string())
                        .bind(serde_json::to_string(&record)?)
                        .execute(&mut *tx)
                        .await?;
                        (Some(record.clone()), Some(record))
                    }
                    Effect::Delete { .. } => {
                        sqlx::query("DELETE FROM records WHERE kind = ? AND id = ?")
                            .bind(kind.as_str())
                            .bind(id.to_string())
                            .execute(&mut *tx)
                            .await?;
                        (None, None)
                    }
                };
                let target = record
                    .clone()
                    .or(previous.clone())
                    .ok_or(ServerError::Invariant("a mutation without a record"))?;
                let logged = self
                    .append(
                        &mut tx,
                        &target,
                        record,
                        previous.as_ref(),
                        Some(user.id),
                        Some(mutation_id),
                    )
                    .await?;
                (
                    MutationOutcome::Applied {
                        seq: logged.seq,
                        record: kept,
                    },
                    Some(logged),
                )
            }
        };
        sqlx::query(
            "INSERT INTO mutations (staff_id, mutation_id, request, outcome) VALUES (?, ?, ?, ?)",
        )
        .bind(user.id.to_string())
        .bind(mutation_id.to_string())
        .bind(&request)
        .bind(serde_json::to_string(&outcome)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if let Some(logged) = logged {
            self.publish(logged, |m| match (&outcome, kind) {
                (
                    MutationOutcome::Applied {
                        record: Some(r), ..
                    },
                    _,
                ) => {
                    m.records.insert((kind, id), r.clone());
                }
                _ => {
                    m.records.remove(&(kind, id));
                }
            })
            .await;
        }
        Ok(outcome)
    }

    /// A booking from the web form (no actor, no mutation id), made once per
    /// `idempotency_key`: the same key with the same request answers with the booking the
    /// first one made; with another request it is refused with `conflict`.
    pub(crate) async fn intake(
        &self,
        request: IntakeRequest,
        idempotency_key: Option<String>,
    ) -> Result<Intake, ServerError> {
        let store = self.clone();
        to_completion(async move { store.intake_now(&request, idempotency_key).await }).await
    }

    async fn intake_now(
        &self,
        request: &IntakeRequest,
        idempotency_key: Option<String>,
    ) -> Result<Intake, ServerError> {
        let body = serde_json::to_string(request)?;
        let now = Utc::now();
        let kept_since = timestamp(now - TimeDelta::hours(IDEMPOTENCY_KEY_HOURS.into()));
        let _writer = self.writer.lock().await;
        // Looked up before the rules run: a repeat answers as the first request did, even
        // if the rules would now judge it differently (its date has left the window).
        if let Some(key) = &idempotency_key {
            let earlier: Option<(String, String)> = sqlx::query_as(
                "SELECT request, booking FROM intake_requests
                 WHERE idempotency_key = ? AND received_at >= ?",
            )
            .bind(key)
            .bind(&kept_since)
            .fetch_optional(&self.pool)
            .await?;
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO records (kind, id, body) VALUES (?, ?, ?)")
            .bind(RecordKind::Booking.as_str())
            .bind(booking.id.to_string())
            .bind(serde_json::to_string(&record)?)
            .execute(&mut *tx)
            .await?;
        let logged = self
            .append(&mut tx, &record, Some(record.clone()), None, None, None)
            .await?;
        if let Some(key) = &idempotency_key {
            // Bounded: keys older than a day go (this one's expired copy too), and beyond
            // the last INTAKE_KEYS_KEPT the oldest.
            sqlx::query("DELETE FROM intake_requests WHERE received_at < ?")
                .bind(&kept_since)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO intake_requests (idempotency_key, request, booking, received_at)
                 VALUES (?, ?, ?, ?)",
            )
            .bind(key)
            .bind(&body)
            .bind(serde_json::to_string(&booking)?)
            .bind(timestamp(now))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM intake_requests
                 WHERE n <= (SELECT MAX(n) FROM intake_requests) - ?",
            )
            .bind(INTAKE_KEYS_KEPT)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.publish(logged, |m| {
            m.records
                .insert((RecordKind::Booking, booking.id), record.clone());
        })
        .await;
        Ok(Intake::Created(booking))
    }

    /// Appends the change-log row for `target` inside `tx`, taking the next seq.
    async fn append(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        target: &Record,
        record: Option<Record>,
        previous: Option<&Record>,
        actor: Option<Id>,
        mutation_id: Option<Uuid>,
    ) -> Result<Logged, ServerError> {
        let seq = self.memory.read().await.head + 1;
        let prev_parties = previous.map(Record::parties).unwrap_or_default();
        let committed_at: DateTime<Utc> = Utc::now();
        sqlx::query(
            "INSERT INTO changes (seq, kind, id, body, prev_parties, prev_existed, actor, mutation_id, committed_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(i64::try_from(seq).map_err(|_| ServerError::Invariant("seq overflow"))?)
        .bind(target.kind().as_str())
        .bind(target.id().to_string())
        .bind(record.as_ref().map(serde_json::to_string).transpose()?)
        .bind(serde_json::to_string(&prev_parties)?)
        .bind(previous.is_some())
        .bind(actor.map(|a| a.to_string()))
        .bind(mutation_id.map(|m| m.to_string()))
        .bind(committed_at.to_rfc3339())
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE head SET seq = ?")
            .bind(i64::try_from(seq).map_err(|_| ServerError::Invariant("seq overflow"))?)
            .execute(&mut **tx)
            .await?;
        Ok(Logged {
            seq,
            kind: target.kind(),
            id: target.id(),
            record,
            prev_parties,
            prev_existed: previous.is_some(),
            actor,
            mutation_id,
            upsert_json: OnceLock::new(),
        })
    }

    /// After a commit: update memory and the head together, then tell the feeds.
    async fn publish(&self, logged: Logged, update: impl FnOnce(&mut Memory)) {
        let mut memory = self.memory.write().await;
        update(&mut memory);
        memory.head = logged.seq;
        // No receivers is fine: nobody is connected.
        let _ = self.published.send(Arc::new(logged));
    }
}

/// Decides a mutation against memory: the pure rules, then the checks that need other
/// records (assignees are real staff with the right role; no double booking; inside
/// availability; no availability taken from under a booking the therapist took on). Returns the effect and the previous record, or the rejection and the
/// current record.
#[allow(clippy::type_complexity)]
fn judge(
    memory: &Memory,
    user: &Staff,
    mutation: &Mutation,
    current: Option<&Record>,
    now: DateTime<Utc>,
) -> Result<(Effect, Option<Record>), (Rejection, Option<Record>)> {
    let effect = rules::apply(user, mutation, current, now).map_err(|r| (r, current.cloned()))?;
    if let (Effect::Upsert(Record::Booking(b)), true) =
        (&effect, rules::needs_schedule_check(mutation))
    {
        let therapist = b.therapist_id.and_then(|id| memory.staff.get(&id));
        let driver = b.driver_id.and_then(|id| memory.staff.get(&id));
        rules::check_assignees(b, therapist, driver).map_err(|r| (r, current.cloned()))?;
        if let Some(t) = therapist {
            let others: Vec<_> = memory
                .records
                .values()
                .filter_map(|r| match r {
                    Record::Booking(o) if o.therapist_id == Some(t.id) && o.date == b.date => {
                        Some(o.clone())
                    }
                    _ => None,
                })
                .collect();
            let slots: Vec<_> = memory
                .records
                .values()
                .filter_map(|r| match r {
                    Record::Slot(s) if s.staff_id == t.id && s.date == b.date => Some(s.clone()),
                    _ => None,
                })
                .collect();
            rules::check_schedule(b, &t.display_name, &others, &slots)
                .map_err(|r| (r, current.cloned()))?;
        }
    }
    if let (Some(Record::Slot(before)), true) = (current, rules::needs_slot_check(mutation)) {
        let after = match &effect {
            Effect::Upsert(Record::Slot(s)) => Some(s),
            _ => None,
        };
        let on_the_day = |r: &&Record| match r {
            Record::Booking(b) => b.therapist_id == Some(before.staff_id) && b.date == before.date,
            Record::Slot(s) => s.staff_id == before.staff_id && s.date == before.date,
            _ => false,
        };
        let (mut bookings, mut slots) = (Vec::new(), Vec::new());
        for record in memory.records.values().filter(on_the_day) {
            match record {
                Record::Booking(b) => bookings.push(b.clone()),
                Record::Slot(s) => slots.push(s.clone()),
                _ => {}
            }
        }
        let name = memory
            .staff
            .get(&before.staff_id)
            .map_or("The therapist", |t| t.display_name.as_str());
        rules::check_slot_change(before, after, name, &bookings, &slots)
            .map_err(|r| (r, current.cloned()))?;
    }
    if let (Effect::Upsert(Record::Message(m)), Mutation::SendMessage { .. }) = (&effect, mutation)
    {
        if !memory.staff.contains_key(&m.recipient_id) {
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
            .staff
            .get(&s.staff_id)
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

fn decode_logged(row: &sqlx::sqlite::SqliteRow) -> Result<Logged, ServerError> {
    let kind: String = row.get("kind");
    let id: String = row.get("id");
    let body: Option<String> = row.get("body");
    let prev: String = row.get("prev_parties");
    let actor: Option<String> = row.get("actor");
    let mutation_id: Option<String> = row.get("mutation_id");
    let seq: i64 = row.get("seq");
    Ok(Logged {
        seq: u64::try_from(seq).map_err(|_| ServerError::Invariant("negative seq"))?,
        kind: RecordKind::parse(&kind).ok_or(ServerError::Invariant("unknown kind in the log"))?,
        id: id
            .parse()
            .map_err(|_| ServerError::Invariant("bad id in the log"))?,
        record: body.map(|b| serde_json::from_str(&b)).transpose()?,
        prev_parties: serde_json::from_str(&prev)?,
        prev_existed: row.get("prev_existed"),
        actor: actor.and_then(|a| a.parse().ok()),
        mutation_id: mutation_id.and_then(|m| m.parse().ok()),
        upsert_json: OnceLock::new(),
    })
}
