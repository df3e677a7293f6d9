//! Every change to what queries return: a submitted change, a feed batch, the server's
//! verdict on a queued change, a snapshot replacing everything.
//!
//! Each write path runs under ONE lock ([`Writer`]'s state) and is ONE SQLite transaction
//! (a [`Write`]) that also stores the cache sequence number; its events are published after
//! the commit, still under the lock. So a reader that takes the lock (see
//! [`Writer::at_rest`]) sees the cache between two writes, at a seq no event has passed, and
//! the change stream after it has neither a gap nor a repeat.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use chrono::Utc;
use clinic_protocol::rules;
use clinic_protocol::{ChangeOp, Mutation, MutationOutcome, Record, Snapshot, Staff};
use tokio::sync::{watch, Mutex, Notify};
use uuid::Uuid;

use crate::cache::{Cache, Key, Loaded, Queued, Write};
use crate::error::SyncError;
use crate::events::{
    CacheChange, CacheEvent, ChangeKind, Origin, Rejected, Status, StatusBoard, Subscribers,
    Subscription,
};
use crate::machine::Report;
use crate::overlay::rebase;

#[derive(Debug)]
struct State {
    /// The last cache sequence number published.
    seq: u64,
    /// The outbox, in order (a copy of the table, for rebasing without reads).
    outbox: Vec<Queued>,
}

/// The cache's write side and what it publishes: the change stream and the status.
#[derive(Debug)]
pub(crate) struct Writer {
    cache: Cache,
    /// The signed-in user, as of the last snapshot (roles can change on the server).
    user: std::sync::RwLock<Staff>,
    /// Serialises every write to the cache and the publication of its events.
    state: Mutex<State>,
    subscribers: Subscribers,
    status: StatusBoard,
    /// Something was queued: wakes the driver, which sends the outbox.
    queued: Notify,
}

impl Writer {
    pub(crate) fn new(cache: Cache, user: Staff, loaded: Loaded) -> Writer {
        Writer {
            cache,
            user: std::sync::RwLock::new(user),
            status: StatusBoard::new(&loaded.outbox),
            state: Mutex::new(State {
                seq: loaded.cache_seq,
                outbox: loaded.outbox,
            }),
            subscribers: Subscribers::default(),
            queued: Notify::new(),
        }
    }

    pub(crate) fn cache(&self) -> &Cache {
        &self.cache
    }

    pub(crate) fn user(&self) -> Staff {
        self.user
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn subscribe(&self) -> Subscription {
        self.subscribers.subscribe()
    }

    pub(crate) fn status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// The machine's new report, published with the outbox's figures.
    pub(crate) fn report(&self, report: Report) {
        self.status.report(report);
    }

    /// What the server calls itself (the feed's handshake), for the status.
    pub(crate) fn server_version(&self, version: Option<String>) {
        self.status.server_version(version);
    }

    /// Resolves when a change is queued (or was, since the last call).
    pub(crate) async fn wait_queued(&self) {
        self.queued.notified().await;
    }

    /// Runs `read` while no write can commit, and returns its result with the cache seq
    /// it is consistent at.
    pub(crate) async fn at_rest<F: Future>(&self, read: F) -> (u64, F::Output) {
        let state = self.state.lock().await;
        let out = read.await;
        (state.seq, out)
    }

    /// A copy of the outbox entry `mutation_id`, if it is still queued.
    pub(crate) async fn queued(&self, mutation_id: Uuid) -> Option<Queued> {
        self.state
            .lock()
            .await
            .outbox
            .iter()
            .find(|q| q.mutation_id == mutation_id)
            .cloned()
    }

    pub(crate) async fn outbox_head(&self) -> Option<Uuid> {
        self.state
            .lock()
            .await
            .outbox
            .first()
            .map(|q| q.mutation_id)
    }

    /// Queues a change (with the caller's `tag`) and applies it optimistically, in one
    /// transaction; refused here if the rules already forbid it on the record as shown.
    pub(crate) async fn submit(
        &self,
        mutation: Mutation,
        tag: Option<&str>,
    ) -> Result<Uuid, SyncError> {
        let mut state = self.state.lock().await;
        let user = self.user();
        let key = mutation.target();
        let server = self.cache.server_record(key).await?;
        let current = rebase(&user, key, server.as_ref(), &state.outbox);
        let now = Utc::now();
        rules::apply(&user, &mutation, current.as_ref(), now).map_err(|r| SyncError::Refused {
            code: r.code,
            message: r.message,
        })?;
        let queued = Queued {
            mutation_id: Uuid::new_v4(),
            mutation,
            queued_at: now,
            tag: tag.map(str::to_owned),
        };
        let shown = rebase(
            &user,
            key,
            server.as_ref(),
            state.outbox.iter().chain([&queued]),
        );
        let seq = state.seq + 1;
        // Committed with a sync to disk (the cache's FULL connection, see cache.rs): once
        // this returns and the change shows as queued, it survives a power cut.
        self.cache
            .write(&Write {
                overlay: vec![(key, shown.clone())],
                enqueue: Some(&queued),
                cache_seq: Some(seq),
                ..Write::default()
            })
            .await?;
        let id = queued.mutation_id;
        state.outbox.push(queued);
        state.seq = seq;
        self.subscribers
            .broadcast(vec![CacheEvent::Change(CacheChange {
                seq,
                kind: ChangeKind::of(key, shown.as_ref(), true),
                origin: Origin::Local,
            })]);
        self.status.publish(Some(&state.outbox));
        self.queued.notify_one();
        Ok(id)
    }

    /// One feed batch: server records, rebased overlays, confirmed mutations, cursor and
    /// cache seq, in one transaction of a handful of statements.
    pub(crate) async fn apply_batch(
        &self,
        changes: &[clinic_protocol::Change],
        upto: u64,
        live: bool,
    ) -> Result<(), SyncError> {
        let mut state = self.state.lock().await;
        let user = self.user();
        let mut outbox = state.outbox.clone();
        let mut seq = state.seq;
        let mut events = Vec::with_capacity(changes.len());
        let mut last: HashMap<Key, Option<&Record>> = HashMap::new();
        let mut overlay: HashMap<Key, Option<Record>> = HashMap::new();
        let mut overlay_clear: HashSet<Key> = HashSet::new();
        let mut dequeue = Vec::new();
        for change in changes {
            let key = change.op.target();
            let server = match &change.op {
                ChangeOp::Upsert { record } => Some(record),
                ChangeOp::Remove { .. } => None,
            };
            last.insert(key, server);
            // A change caused by one of our queued mutations confirms it.
            let confirmed = change
                .mutation_id
                .and_then(|id| outbox.iter().position(|q| q.mutation_id == id))
                .map(|pos| outbox.remove(pos));
            let pending = outbox.iter().any(|q| q.mutation.target() == key);
            seq += 1;
            let kind = if pending {
                // Rebase: the server's new version, our pending changes on top.
                let shown = rebase(&user, key, server, &outbox);
                let kind = ChangeKind::of(key, shown.as_ref(), true);
                overlay_clear.remove(&key);
                overlay.insert(key, shown);
                kind
            } else {
                if confirmed.is_some() || overlay.contains_key(&key) {
                    overlay.remove(&key);
                    overlay_clear.insert(key);
                }
                ChangeKind::of(key, server, false)
            };
            events.push(CacheEvent::Change(CacheChange {
                seq,
                kind,
                origin: Origin::Server {
                    actor: change.actor,
                    mutation_id: change.mutation_id,
                    live,
                },
            }));
            if let Some(q) = confirmed {
                dequeue.push(q.mutation_id);
                events.push(CacheEvent::Confirmed {
                    mutation_id: q.mutation_id,
                    tag: q.tag,
                });
            }
        }
        let (upserts, removes): (Vec<_>, Vec<_>) = last.into_iter().partition(|(_, r)| r.is_some());
        self.cache
            .write(&Write {
                upserts: upserts.into_iter().filter_map(|(_, r)| r).collect(),
                removes: removes.into_iter().map(|(k, _)| k).collect(),
                overlay: overlay.into_iter().collect(),
                overlay_clear: overlay_clear.into_iter().collect(),
                dequeue,
                cursor: Some(upto),
                cache_seq: Some(seq),
                ..Write::default()
            })
            .await?;
        let outbox_changed = outbox.len() != state.outbox.len();
        state.outbox = outbox;
        state.seq = seq;
        self.subscribers.broadcast(events);
        if outbox_changed {
            self.status.publish(Some(&state.outbox));
        }
        Ok(())
    }

    /// Nothing for us up to `cursor`: only the cursor moves.
    pub(crate) async fn advance(&self, cursor: u64) -> Result<(), SyncError> {
        let _state = self.state.lock().await;
        self.cache
            .write(&Write {
                cursor: Some(cursor),
                ..Write::default()
            })
            .await
    }

    /// Replaces the cache with a snapshot (overlay recomputed on top), all in one
    /// transaction; subscribers get one [`ChangeKind::Reset`]. Returns the snapshot's
    /// server seq, the new cursor.
    pub(crate) async fn replace(&self, snapshot: Snapshot) -> Result<u64, SyncError> {
        let mut state = self.state.lock().await;
        *self
            .user
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = snapshot.user.clone();
        let by_key: HashMap<Key, &Record> = snapshot
            .records
            .iter()
            .map(|r| ((r.kind(), r.id()), r))
            .collect();
        let pending: HashSet<Key> = state.outbox.iter().map(|q| q.mutation.target()).collect();
        let overlay = pending
            .into_iter()
            .map(|key| {
                let shown = rebase(
                    &snapshot.user,
                    key,
                    by_key.get(&key).copied(),
                    &state.outbox,
                );
                (key, shown)
            })
            .collect();
        let seq = state.seq + 1;
        self.cache
            .write(&Write {
                replace_all: true,
                upserts: snapshot.records.iter().collect(),
                overlay,
                cursor: Some(snapshot.seq),
                cache_seq: Some(seq),
                ..Write::default()
            })
            .await?;
        self.cache.save_user(&snapshot.user).await?;
        state.seq = seq;
        self.subscribers
            .broadcast(vec![CacheEvent::Change(CacheChange {
                seq,
                kind: ChangeKind::Reset,
                origin: Origin::Snapshot,
            })]);
        Ok(snapshot.seq)
    }

    /// The server's verdict on a queued mutation. Applied: it leaves the outbox and the
    /// server's record wins. Rejected: it leaves the outbox, the overlay is recomputed
    /// without it (the rollback) and the rejection is reported with the change's tag.
    pub(crate) async fn settle(
        &self,
        mutation_id: Uuid,
        outcome: MutationOutcome,
    ) -> Result<(), SyncError> {
        let mut state = self.state.lock().await;
        let Some(pos) = state
            .outbox
            .iter()
            .position(|q| q.mutation_id == mutation_id)
        else {
            // The feed confirmed it first; its change carried the record.
            return Ok(());
        };
        let user = self.user();
        let mut outbox = state.outbox.clone();
        let queued = outbox.remove(pos);
        let key = queued.mutation.target();
        let mut server = self.cache.server_record(key).await?;
        let (fresh, rejected) = match outcome {
            MutationOutcome::Applied { record, .. } => (Some(record), None),
            MutationOutcome::Rejected {
                code,
                message,
                current,
            } => (
                current.clone().map(Some),
                Some(Rejected {
                    mutation_id,
                    mutation: queued.mutation.clone(),
                    code,
                    message,
                    current,
                    tag: queued.tag.clone(),
                }),
            ),
        };
        let mut write = Write {
            dequeue: vec![mutation_id],
            // Kept with the dequeue: the change's values are in one table or the other.
            reject: rejected.as_ref(),
            ..Write::default()
        };
        // The server's record, unless the feed already brought a newer one.
        match fresh {
            Some(Some(record))
                if server
                    .as_ref()
                    .is_none_or(|have| have.version() < record.version()) =>
            {
                server = Some(record).filter(|r| rules::visible_to(&user, r));
            }
            Some(None) => server = None,
            _ => {}
        }
        match &server {
            Some(r) => write.upserts.push(r),
            None => write.removes.push(key),
        }
        let pending = outbox.iter().any(|q| q.mutation.target() == key);
        let shown = if pending {
            let shown = rebase(&user, key, server.as_ref(), &outbox);
            write.overlay.push((key, shown.clone()));
            shown
        } else {
            write.overlay_clear.push(key);
            server.clone()
        };
        let seq = state.seq + 1;
        write.cache_seq = Some(seq);
        self.cache.write(&write).await?;
        state.outbox = outbox;
        state.seq = seq;
        let origin = match &rejected {
            Some(_) => Origin::Local,
            None => Origin::Server {
                actor: Some(user.id),
                mutation_id: Some(mutation_id),
                live: true,
            },
        };
        let notice = match rejected {
            Some(r) => CacheEvent::Rejected(r),
            None => CacheEvent::Confirmed {
                mutation_id,
                tag: queued.tag,
            },
        };
        self.subscribers.broadcast(vec![
            CacheEvent::Change(CacheChange {
                seq,
                kind: ChangeKind::of(key, shown.as_ref(), pending),
                origin,
            }),
            notice,
        ]);
        self.status.publish(Some(&state.outbox));
        Ok(())
    }
}
