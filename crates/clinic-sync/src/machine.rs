//! The sync protocol as a state machine without IO: [`Event`]s in, [`Instruction`]s out.
//!
//! It decides when to connect, what to say, what a frame means, when a connection is dead,
//! how long to back off, when to fetch a snapshot and when to send the next queued change.
//! It owns no socket, no database and no clock: the driver (`driver.rs`) does the IO and
//! hands in `now` with every event, so tests drive it deterministically (see
//! `machine/tests.rs`, which replays whole sessions in microseconds).
//!
//! It also checks everything a server could get wrong or a hostile peer could send
//! (garbage, another protocol version, an unknown frame, sequence numbers that go
//! backwards, repeat or skip the cursor) and answers with an error and a resync instead
//! of letting a bad frame near the cache.
//!
//! Life of a connection:
//! `Connect` -> [`Event::Connected`] -> `SendHello` -> welcome -> changes and heartbeats
//! (each an `Apply`/`Advance`) ... -> [`Event::Disconnected`] or a missed heartbeat ->
//! `Close`, back off (`WakeAt`) -> [`Event::Tick`] -> `Connect` again from the cursor.
//! A resync frame, a hostile frame or a batch the cache could not apply leads to
//! `FetchSnapshot` -> [`Event::SnapshotFetched`] -> `Connect` from the snapshot's seq.
//! (A resync for `account_changed` is one of these: the user's roles changed, and the new
//! snapshot, filtered by them, replaces the cache and the user.)
//!
//! **Several addresses** (instances of one clinic server sharing one database, see
//! [`SyncMachine::with_servers`]): every failure of the connection, of a snapshot, or a
//! mutation that found no one listening moves to the next address (`UseServer`) and tries
//! it at once; the backoff applies once per full round of addresses that all failed, so a
//! dead instance costs one attempt and a dead clinic does not get a tight loop. The cursor
//! goes along: the next instance's feed resumes from it, and the outbox replays its head by
//! mutation id (the server deduplicates), so nothing is lost or applied twice. The machine
//! stays on the address that works (no flapping back to the first).
//!
//! Two ends wait for the app: the session expired or was revoked (`unauthorized`: sign in
//! again), or an administrator disabled the account (`account_disabled`: signing in again
//! will not help). Either way the machine stops connecting and sending, and says so in its
//! report; nothing is dropped, the outbox stays as it is on disk.

use std::time::{Duration, Instant};

use clinic_protocol::{Change, ErrorCode, MutationOutcome, ServerFrame, PROTOCOL_VERSION};
use uuid::Uuid;

/// Timing of the machine. The defaults suit a clinic's LAN server; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// With no frame (not even a heartbeat) for this long, the connection is dead; also the
    /// longest wait for a connection or a welcome.
    pub dead_after: Duration,
    /// The first retry delay; doubled per failed attempt up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            dead_after: Duration::from_secs(30),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Something that happened, reported by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The WebSocket to the feed is open.
    Connected,
    /// Connecting failed, or the socket closed or broke.
    Disconnected { error: String },
    /// A frame arrived (binary frames are passed as their lossy text: they are refused).
    Frame(String),
    /// The cache could not apply a batch the machine asked for.
    ApplyFailed { error: String },
    /// A snapshot replaced the cache; its seq is the new cursor.
    SnapshotFetched { seq: u64 },
    /// Fetching a snapshot failed; `expired` when the server refused the token.
    SnapshotFailed { error: String, expired: bool },
    /// The server refused a request because an administrator disabled the account
    /// (`account_disabled`: a snapshot; a mutation reports [`Sent::Disabled`]).
    AccountDisabled,
    /// The first entry of the outbox now (`None`: empty), after any change to it.
    OutboxHead(Option<Uuid>),
    /// The answer to a [`Instruction::Send`].
    MutationDone { mutation_id: Uuid, result: Sent },
    /// Time passed (a [`Instruction::WakeAt`] fired).
    Tick,
}

/// How sending one mutation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The server's verdict (a refused request counts as a rejection).
    Outcome(MutationOutcome),
    /// The server refused the token.
    Expired,
    /// The account is disabled (`account_disabled`): the mutation stays queued.
    Disabled,
    /// No answer (a server error, an unreadable answer): try again later.
    Failed(String),
    /// Nobody answered at this address (connection refused or broken, timeout, a gateway
    /// saying the instance behind it is down): try again later, at the next address when
    /// there are several.
    Unreachable(String),
    /// The mutation had already left the outbox (the feed confirmed it first).
    Gone,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// Open the feed's WebSocket; report [`Event::Connected`] or [`Event::Disconnected`].
    Connect,
    /// From now on, talk to the server at this index of the address list (the feed, the
    /// snapshots, the mutations and the app's own calls alike).
    UseServer { index: usize },
    /// Send `{"type":"hello",...}` with this cursor.
    SendHello { cursor: u64 },
    /// Drop the WebSocket.
    Close,
    /// Fetch a snapshot and replace the cache with it; report [`Event::SnapshotFetched`]
    /// or [`Event::SnapshotFailed`].
    FetchSnapshot,
    /// Apply these changes and set the cursor to `upto`, in one transaction. `live` is
    /// false while catching up on what happened before the welcome.
    Apply {
        changes: Vec<Change>,
        upto: u64,
        live: bool,
    },
    /// Nothing for us up to `cursor`: store it.
    Advance { cursor: u64 },
    /// POST this outbox entry; report [`Event::MutationDone`].
    Send { mutation_id: Uuid },
    /// Apply the server's verdict on this mutation to the cache.
    Settle {
        mutation_id: Uuid,
        outcome: MutationOutcome,
    },
    /// Report [`Event::Tick`] at this time (replaces any earlier wake-up).
    WakeAt(Instant),
    /// The status changed.
    Report(Report),
}

/// Connection state as the status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// Connected, caught up, nothing queued.
    Online,
    /// Connected (or fetching a snapshot) and catching up or sending queued changes.
    Syncing,
    /// Not connected: waiting to retry, connecting, or signed out.
    Offline,
}

/// The machine's part of the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub state: SyncState,
    /// Server head minus cursor.
    pub lag: u64,
    /// The last error since the engine was last caught up; `None` once it is.
    pub error: Option<String>,
    /// The server refused the session: the app must sign in again.
    pub session_expired: bool,
    /// An administrator disabled the account: nothing more is sent or received (signing
    /// in again is refused too); the outbox is kept.
    pub account_disabled: bool,
    /// A frame was applied just now (the driver stamps the last sync time).
    pub synced: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Connect,
    Snapshot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting before the next attempt.
    Backoff {
        until: Instant,
        next: Next,
    },
    Connecting {
        since: Instant,
    },
    AwaitWelcome {
        since: Instant,
    },
    Open {
        welcome_head: u64,
        last_frame: Instant,
    },
    Snapshotting,
    /// The server refused the session; nothing more until the app signs in again.
    Expired,
    /// The account is disabled; nothing more until an administrator enables it and the
    /// app signs in again.
    Disabled,
}

/// The sync state machine. See the module docs.
#[derive(Debug, Clone)]
pub struct SyncMachine {
    timing: Timing,
    phase: Phase,
    /// The last server seq the cache holds; `None` before the first snapshot.
    cursor: Option<u64>,
    head: u64,
    /// Failed attempts since the last healthy frame, for the backoff.
    attempt: u32,
    error: Option<String>,
    outbox_head: Option<Uuid>,
    in_flight: Option<Uuid>,
    send_attempt: u32,
    send_after: Option<Instant>,
    rng: u64,
    reported: Option<Report>,
    synced: bool,
    /// How many addresses the clinic server has (at least one), and the one in use.
    servers: usize,
    server: usize,
    /// Addresses that failed in a row since the last healthy frame, for the round backoff.
    tried: usize,
}

impl SyncMachine {
    /// A machine for a cache at `cursor`. `seed` feeds the backoff jitter (so that a
    /// clinic's worth of apps does not reconnect in lockstep after a server restart).
    pub fn new(timing: Timing, cursor: Option<u64>, seed: u64) -> SyncMachine {
        SyncMachine {
            timing,
            phase: Phase::Snapshotting,
            cursor,
            head: cursor.unwrap_or(0),
            attempt: 0,
            error: None,
            outbox_head: None,
            in_flight: None,
            send_attempt: 0,
            send_after: None,
            rng: seed | 1,
            reported: None,
            synced: false,
            servers: 1,
            server: 0,
            tried: 0,
        }
    }

    /// The same machine for a clinic server with `count` addresses, starting at `current`
    /// (an index into them). One address is the default and behaves exactly as before.
    pub fn with_servers(mut self, count: usize, current: usize) -> SyncMachine {
        self.servers = count.max(1);
        self.server = current % self.servers;
        self
    }

    /// The index of the address in use.
    pub fn server(&self) -> usize {
        self.server
    }

    /// The first instructions: connect from the cursor, or fetch a snapshot without one.
    pub fn start(&mut self, now: Instant) -> Vec<Instruction> {
        let mut out = Vec::new();
        match self.cursor {
            Some(_) => self.connect(now, &mut out),
            None => self.snapshot(&mut out),
        }
        self.finish(now, out)
    }

    pub fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    pub fn lag(&self) -> u64 {
        self.head.saturating_sub(self.cursor.unwrap_or(0))
    }

    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Instruction> {
        let mut out = Vec::new();
        match event {
            Event::Connected => {
                if let Phase::Connecting { .. } = self.phase {
                    self.phase = Phase::AwaitWelcome { since: now };
                    out.push(Instruction::SendHello {
                        cursor: self.cursor.unwrap_or(0),
                    });
                }
            }
            Event::Disconnected { error } => {
                if self.connected_or_connecting() {
                    self.fail(now, error, Next::Connect, &mut out);
                }
            }
            Event::Frame(text) => self.on_frame(&text, now, &mut out),
            Event::ApplyFailed { error } => {
                self.fail(
                    now,
                    format!("could not apply changes: {error}"),
                    Next::Snapshot,
                    &mut out,
                );
            }
            Event::SnapshotFetched { seq } => {
                if self.phase == Phase::Snapshotting {
                    self.cursor = Some(seq);
                    self.head = seq;
                    self.connect(now, &mut out);
                }
            }
            Event::SnapshotFailed { error, expired } => {
                if expired {
                    self.expire(&mut out);
                } else if self.phase == Phase::Snapshotting {
                    self.fail(now, error, Next::Snapshot, &mut out);
                }
            }
            Event::AccountDisabled => self.disable(&mut out),
            Event::OutboxHead(head) => self.outbox_head = head,
            Event::MutationDone {
                mutation_id,
                result,
            } => {
                if self.in_flight == Some(mutation_id) {
                    self.in_flight = None;
                }
                match result {
                    Sent::Outcome(outcome) => {
                        self.send_attempt = 0;
                        self.send_after = None;
                        // Unknown until the driver has settled it and reports the next.
                        self.outbox_head = None;
                        out.push(Instruction::Settle {
                            mutation_id,
                            outcome,
                        });
                    }
                    Sent::Gone => self.outbox_head = None,
                    Sent::Expired => self.expire(&mut out),
                    // Not settled: the change stays first in the outbox.
                    Sent::Disabled => self.disable(&mut out),
                    // The feed may not have noticed yet: leave this instance now, and
                    // replay the change (same mutation id) on the next one.
                    Sent::Unreachable(error)
                        if self.servers > 1 && matches!(self.phase, Phase::Open { .. }) =>
                    {
                        self.fail(
                            now,
                            format!("cannot send changes: {error}"),
                            Next::Connect,
                            &mut out,
                        );
                    }
                    Sent::Failed(error) | Sent::Unreachable(error) => {
                        self.send_attempt = self.send_attempt.saturating_add(1);
                        let delay = self.backoff_delay(self.send_attempt);
                        self.send_after = Some(now + delay);
                        self.error = Some(format!("cannot send changes: {error}"));
                    }
                }
            }
            Event::Tick => self.on_tick(now, &mut out),
        }
        self.maybe_send(now, &mut out);
        self.finish(now, out)
    }

    fn connected_or_connecting(&self) -> bool {
        matches!(
            self.phase,
            Phase::Connecting { .. } | Phase::AwaitWelcome { .. } | Phase::Open { .. }
        )
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Instruction>) {
        let dead = self.timing.dead_after;
        match self.phase {
            Phase::Backoff { until, next } if now >= until => match next {
                Next::Connect => self.connect(now, out),
                Next::Snapshot => self.snapshot(out),
            },
            Phase::Connecting { since } | Phase::AwaitWelcome { since } if now >= since + dead => {
                self.fail(now, "connecting timed out".into(), Next::Connect, out);
            }
            Phase::Open { last_frame, .. } if now >= last_frame + dead => {
                self.fail(
                    now,
                    format!("no heartbeat from the server for {} s", dead.as_secs_f32()),
                    Next::Connect,
                    out,
                );
            }
            _ => {}
        }
    }

    fn on_frame(&mut self, text: &str, now: Instant, out: &mut Vec<Instruction>) {
        let welcome_head = match self.phase {
            Phase::Open { welcome_head, .. } => Some(welcome_head),
            Phase::AwaitWelcome { .. } => None,
            // A frame from a socket we already gave up on.
            _ => return,
        };
        let frame = match serde_json::from_str::<ServerFrame>(text) {
            Ok(frame) => frame,
            Err(e) => {
                let shown: String = text.chars().take(80).collect();
                return self.hostile(now, format!("unreadable frame {shown:?}: {e}"), out);
            }
        };
        let cursor = self.cursor.unwrap_or(0);
        match (frame, welcome_head) {
            (ServerFrame::Welcome { protocol, head, .. }, None) => {
                if protocol != PROTOCOL_VERSION {
                    return self.hostile(
                        now,
                        format!("the server speaks protocol {protocol}, not {PROTOCOL_VERSION}"),
                        out,
                    );
                }
                if head < cursor {
                    return self.hostile(
                        now,
                        format!("the server's head {head} is behind our cursor {cursor}"),
                        out,
                    );
                }
                self.head = head;
                self.phase = Phase::Open {
                    welcome_head: head,
                    last_frame: now,
                };
            }
            (ServerFrame::Welcome { .. }, Some(_)) => {
                self.hostile(now, "a second welcome".into(), out);
            }
            (ServerFrame::Resync { message, .. }, _) => {
                // The server's own decision (cursor too old, client too slow): no error.
                out.push(Instruction::Close);
                self.snapshot(out);
                tracing::info!("the server asks for a resync: {message}");
            }
            (ServerFrame::Error { code, message }, _) => {
                if code == ErrorCode::Unauthorized {
                    self.expire(out);
                } else if code == ErrorCode::AccountDisabled {
                    self.disable(out);
                } else {
                    self.fail(
                        now,
                        format!("the server refused the feed ({code:?}): {message}"),
                        Next::Connect,
                        out,
                    );
                }
            }
            (_, None) => self.hostile(now, "a frame before the welcome".into(), out),
            (ServerFrame::Changes { changes, upto }, Some(welcome_head)) => {
                let mut last = cursor;
                for change in &changes {
                    if change.seq <= last {
                        return self.hostile(
                            now,
                            format!(
                                "change {} after {last} (out of order or repeated)",
                                change.seq
                            ),
                            out,
                        );
                    }
                    last = change.seq;
                }
                if upto < last || upto < cursor {
                    return self.hostile(
                        now,
                        format!("a batch up to {upto} holding change {last} at cursor {cursor}"),
                        out,
                    );
                }
                self.healthy(now, welcome_head);
                self.cursor = Some(upto);
                self.head = self.head.max(upto);
                out.push(Instruction::Apply {
                    changes,
                    upto,
                    live: upto > welcome_head,
                });
            }
            (ServerFrame::Heartbeat { head }, Some(welcome_head)) => {
                if head < cursor {
                    return self.hostile(
                        now,
                        format!("a heartbeat at {head} behind our cursor {cursor}"),
                        out,
                    );
                }
                self.healthy(now, welcome_head);
                self.head = head;
                if head > cursor {
                    self.cursor = Some(head);
                    out.push(Instruction::Advance { cursor: head });
                }
            }
        }
    }

    /// A valid frame on an open connection.
    fn healthy(&mut self, now: Instant, welcome_head: u64) {
        self.phase = Phase::Open {
            welcome_head,
            last_frame: now,
        };
        self.attempt = 0;
        self.tried = 0;
        self.synced = true;
    }

    /// The peer sent something no correct server sends: report it, and do not trust the
    /// cursor's neighbourhood any more: resync from a snapshot after a backoff (a server
    /// that keeps doing it must not get a tight loop).
    fn hostile(&mut self, now: Instant, why: String, out: &mut Vec<Instruction>) {
        tracing::warn!("bad frame from the server: {why}");
        self.fail(
            now,
            format!("the server sent a bad frame: {why}"),
            Next::Snapshot,
            out,
        );
    }

    fn fail(&mut self, now: Instant, error: String, next: Next, out: &mut Vec<Instruction>) {
        if matches!(self.phase, Phase::Expired | Phase::Disabled) {
            return;
        }
        if self.connected_or_connecting() {
            out.push(Instruction::Close);
        }
        self.error = Some(error);
        if self.servers > 1 {
            // Another instance may well answer: go there at once, and back off only after
            // a whole round of addresses failed in a row. A send waiting out a failure at
            // the old address need not wait at the new one.
            self.server = (self.server + 1) % self.servers;
            self.tried += 1;
            self.send_attempt = 0;
            self.send_after = None;
            out.push(Instruction::UseServer { index: self.server });
            if self.tried < self.servers {
                return match next {
                    Next::Connect => self.connect(now, out),
                    Next::Snapshot => self.snapshot(out),
                };
            }
            self.tried = 0;
        }
        let delay = self.backoff_delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        self.phase = Phase::Backoff {
            until: now + delay,
            next,
        };
    }

    fn expire(&mut self, out: &mut Vec<Instruction>) {
        // Disabled says more: signing in again would be refused.
        if self.phase == Phase::Disabled {
            return;
        }
        if self.connected_or_connecting() {
            out.push(Instruction::Close);
        }
        self.error = Some("The session has expired; sign in again.".into());
        self.phase = Phase::Expired;
    }

    fn disable(&mut self, out: &mut Vec<Instruction>) {
        if self.connected_or_connecting() {
            out.push(Instruction::Close);
        }
        self.error =
            Some("An administrator disabled this account; changes not yet sent are kept.".into());
        self.phase = Phase::Disabled;
    }

    fn connect(&mut self, now: Instant, out: &mut Vec<Instruction>) {
        self.phase = Phase::Connecting { since: now };
        out.push(Instruction::Connect);
    }

    fn snapshot(&mut self, out: &mut Vec<Instruction>) {
        self.phase = Phase::Snapshotting;
        out.push(Instruction::FetchSnapshot);
    }

    /// One change at a time, only on an open feed (so "online" means one thing), in
    /// outbox order: the next goes when the previous is settled.
    fn maybe_send(&mut self, now: Instant, out: &mut Vec<Instruction>) {
        if !matches!(self.phase, Phase::Open { .. }) || self.in_flight.is_some() {
            return;
        }
        if self.send_after.is_some_and(|t| now < t) {
            return;
        }
        if let Some(mutation_id) = self.outbox_head {
            self.in_flight = Some(mutation_id);
            out.push(Instruction::Send { mutation_id });
        }
    }

    /// Exponential backoff with "equal jitter": half fixed, half random.
    fn backoff_delay(&mut self, attempt: u32) -> Duration {
        let base = self
            .timing
            .min_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.timing.max_backoff);
        // xorshift64: plenty for jitter, and deterministic under a fixed seed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        base / 2 + (base / 2).mul_f64(unit)
    }

    fn deadline(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::Backoff { until, .. } => Some(until),
            Phase::Connecting { since } | Phase::AwaitWelcome { since } => {
                Some(since + self.timing.dead_after)
            }
            Phase::Open { last_frame, .. } => Some(last_frame + self.timing.dead_after),
            Phase::Snapshotting | Phase::Expired | Phase::Disabled => None,
        };
        let send = self.send_after.filter(|_| self.outbox_head.is_some());
        match (phase, send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn report(&self) -> Report {
        let open = matches!(self.phase, Phase::Open { .. });
        let busy = self.outbox_head.is_some() || self.in_flight.is_some();
        let state = match self.phase {
            Phase::Open { .. } if self.lag() == 0 && !busy => SyncState::Online,
            Phase::Open { .. } | Phase::AwaitWelcome { .. } | Phase::Snapshotting => {
                SyncState::Syncing
            }
            Phase::Backoff { .. } | Phase::Connecting { .. } | Phase::Expired | Phase::Disabled => {
                SyncState::Offline
            }
        };
        Report {
            state,
            lag: self.lag(),
            error: self.error.clone(),
            session_expired: self.phase == Phase::Expired,
            account_disabled: self.phase == Phase::Disabled,
            synced: self.synced && open,
        }
    }

    /// Appends the wake-up and, if anything changed, the status.
    fn finish(&mut self, _now: Instant, mut out: Vec<Instruction>) -> Vec<Instruction> {
        // Caught up and healthy: the last error is history.
        if matches!(self.phase, Phase::Open { .. })
            && self.lag() == 0
            && self.synced
            && self.send_attempt == 0
        {
            self.error = None;
        }
        if let Some(at) = self.deadline() {
            out.push(Instruction::WakeAt(at));
        }
        let report = self.report();
        if report.synced || self.reported.as_ref() != Some(&report) {
            out.push(Instruction::Report(report.clone()));
            self.reported = Some(report);
        }
        self.synced = false;
        out
    }
}

#[cfg(test)]
mod tests;
