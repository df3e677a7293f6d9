//! Following the other instances on a shared PostgreSQL database.
//!
//! A commit that moves the head notifies [`HEAD_CHANNEL`] with the new head only: a
//! payload is small and never replayed. An instance that hears of a head past its memory
//! reads the log from the last seq it has ([`catch_up`]), applies each change to memory
//! and publishes it to its feeds in seq order, under the memory lock, just as its own
//! writer does. So a lost notification, or a connection to the database lost and made
//! again, costs latency and never a change: after every (re)connection the follower
//! catches up before it waits, and once a second it looks at the head anyway.
//!
//! Revoked sessions travel on [`REVOKED_CHANNEL`], so that a sign-out or a disabled
//! account on one instance ends the feeds of those tokens on every instance.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, watch, RwLock};

use super::db::{on_pool, on_tx, unhex, Db, Tx, HEAD_CHANNEL, REVOKED_CHANNEL};
use super::{decode_logged, LogRow, Logged, Memory, LOG_AFTER};
use crate::error::ServerError;

/// Log entries read per statement while catching up.
const CATCH_UP_PAGE: usize = 1_000;

/// How often the follower looks at the head even without a notification.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Where the log is read from: the pool, or the writer's transaction (which holds the
/// writers' turn, so nothing can be committed behind it).
pub(super) enum Source<'a> {
    Pool(&'a Db),
    Tx(&'a mut Tx),
}

impl Source<'_> {
    /// The log from `after + 1` on, at most `limit` entries.
    pub(super) async fn log_after(
        &mut self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Logged>, ServerError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<LogRow> = match self {
            Source::Pool(db) => on_pool!(*db, p => {
                sqlx::query_as(LOG_AFTER).bind(after).bind(limit).fetch_all(p).await?
            }),
            Source::Tx(tx) => on_tx!(&mut **tx, c => {
                sqlx::query_as(LOG_AFTER)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&mut **c)
                    .await?
            }),
        };
        rows.into_iter().map(decode_logged).collect()
    }
}

impl Memory {
    /// Takes one committed change (read from the log) into memory.
    fn apply(&mut self, logged: &Logged) {
        let key = (logged.kind, logged.id);
        match &logged.record {
            Some(clinic_protocol::Record::Staff(staff)) => {
                self.staff.insert(staff.id, staff.clone());
            }
            Some(record) => self.put(record.clone()),
            None if logged.kind == clinic_protocol::RecordKind::Staff => {
                self.staff.remove(&logged.id);
            }
            None => self.take(key),
        }
        self.head = logged.seq;
    }
}

/// Brings `memory` up to `head`, a head the database has shown (or further, as far as the
/// pages read reach), publishing each change in seq order. The caller holds the memory
/// lock, so nothing is applied or published twice. Reading stops at `head` rather than at
/// an empty page: a notification heard costs one read of the log, not two.
pub(super) async fn catch_up(
    memory: &mut Memory,
    source: &mut Source<'_>,
    published: &broadcast::Sender<Arc<Logged>>,
    head: u64,
) -> Result<(), ServerError> {
    while memory.head < head {
        let batch = source.log_after(memory.head, CATCH_UP_PAGE).await?;
        let Some(first) = batch.first() else {
            return Ok(());
        };
        if first.seq != memory.head + 1 {
            // The log keeps `log_keep` changes (a million by default); an instance that
            // ran this far behind cannot tell its feeds what they missed.
            return Err(ServerError::Invariant(
                "this instance fell further behind than the log keeps; restart it",
            ));
        }
        // When this instance learned of them: the feeds' send lag counts from here.
        let learned = std::time::Instant::now();
        for mut logged in batch {
            memory.apply(&logged);
            logged.committed = Some(learned);
            // No receivers is fine.
            let _ = published.send(Arc::new(logged));
        }
    }
    Ok(())
}

/// Brings `memory` up to the database's head (`None`: look it up) if it is behind,
/// publishing what it was missing. The memory lock is taken only then: feeds connecting
/// all at once do not queue behind each other.
pub(super) async fn catch_up_to(
    db: &Db,
    memory: &RwLock<Memory>,
    published: &broadcast::Sender<Arc<Logged>>,
    head: Option<u64>,
) -> Result<u64, ServerError> {
    let head = match head {
        Some(head) => head,
        None => {
            let seq: i64 = on_pool!(db, p => {
                sqlx::query_scalar("SELECT seq FROM head").fetch_one(p).await?
            });
            u64::try_from(seq).unwrap_or(0)
        }
    };
    let known = memory.read().await.head;
    if head <= known {
        return Ok(known);
    }
    let mut memory = memory.write().await;
    catch_up(&mut memory, &mut Source::Pool(db), published, head).await?;
    Ok(memory.head)
}

/// What the following task needs of the store.
pub(super) struct Follower {
    pub(super) db: Db,
    pub(super) memory: Arc<RwLock<Memory>>,
    pub(super) published: broadcast::Sender<Arc<Logged>>,
    pub(super) revoked: broadcast::Sender<(Vec<u8>, String)>,
    /// Closed when the store is dropped: the task ends.
    pub(super) closed: watch::Receiver<()>,
}

impl Follower {
    /// Listens until the connection fails for good (then returns why).
    async fn listen(&self) -> Result<(), ServerError> {
        let Db::Postgres(pool) = &self.db else {
            return Err(ServerError::Invariant("only a shared database is followed"));
        };
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen_all([HEAD_CHANNEL, REVOKED_CHANNEL]).await?;
        // Whatever was committed while nobody listened.
        catch_up_to(&self.db, &self.memory, &self.published, None).await?;
        // Two loops side by side rather than one `select!` over both: a notification is
        // never read half-way and dropped for a tick.
        let hearing = async {
            loop {
                match listener.try_recv().await? {
                    Some(n) if n.channel() == HEAD_CHANNEL => {
                        catch_up_to(
                            &self.db,
                            &self.memory,
                            &self.published,
                            n.payload().parse().ok(),
                        )
                        .await?;
                    }
                    Some(n) => {
                        if let Some((why, hash)) = n.payload().split_once(':') {
                            if let Some(hash) = unhex(hash) {
                                let _ = self.revoked.send((hash, why.to_owned()));
                            }
                        }
                    }
                    // The connection was lost and made again: what was said meanwhile is
                    // lost, what was committed is in the log.
                    None => {
                        catch_up_to(&self.db, &self.memory, &self.published, None).await?;
                    }
                }
            }
        };
        let looking = async {
            let mut look = tokio::time::interval(LOOK_EVERY);
            look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                look.tick().await;
                catch_up_to(&self.db, &self.memory, &self.published, None).await?;
            }
        };
        tokio::select! {
            failed = hearing => failed,
            failed = looking => failed,
        }
    }
}

/// Follows the other instances until the store is dropped; a failure (the database gone)
/// is logged and listening starts again, soon, then less often.
pub(super) async fn follow(follower: Follower) {
    let mut closed = follower.closed.clone();
    let mut wait = Duration::from_millis(100);
    loop {
        let started = tokio::time::Instant::now();
        tokio::select! {
            ended = follower.listen() => {
                if let Err(e) = ended {
                    tracing::warn!("following the other instances: {e}; again in {wait:?}");
                }
            }
            _ = closed.changed() => return,
        }
        // A connection that held a while starts the backoff over.
        if started.elapsed() > Duration::from_secs(10) {
            wait = Duration::from_millis(100);
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = closed.changed() => return,
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
