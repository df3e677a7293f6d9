//! Fuzz targets for every decoder of the engine that takes outside bytes, run as property
//! tests on stable Rust:
//! - `machine_frames`: the sync state machine (`clinic_sync::machine`) fed whole sessions of
//!   generated feed frames (random text and bytes, random JSON, valid frames with their
//!   JSON edited, structured frames with sequence numbers around the cursor) by a fake
//!   driver that carries out its instructions. A refused frame closes the connection,
//!   reports the error and leads to a resync from a snapshot (an error frame to a
//!   reconnect, `unauthorized` to an expired session); a batch is applied whole or not at
//!   all, in order, after the cursor; the machine never panics.
//! - `engine_hostile_feeds`: a real [`Engine`] against a fake feed (a WebSocket server in
//!   the test; HTTP goes through to the real server) that sends one generated script per
//!   case ending in a hostile frame: the status reports the error, the engine resyncs, and
//!   its cache equals the server's snapshot again; nothing of a refused batch is ever
//!   applied (its records carry a marker no event may show).
//! - `cache_rows`: corrupt cells of the cache's SQLite file (random JSON bodies, wrong types
//!   in typed columns, truncated and edited values, another row's value), then every read
//!   of [`Queries`] and an engine resumed from the file: an error with a code, never a
//!   panic; restored, the cache reads as before.
//!
//! Case counts: `CLINIC_FUZZ_CASES=N` runs N cases in every target; the default is sized
//! so that this suite and clinic-server's `tests/fuzz.rs` take about 30 s of a debug
//! `cargo test` on two cores. `CLINIC_FUZZ_CASES=1000000 cargo test -p clinic-sync --test
//! fuzz` is the long run. A failure is shrunk to a minimal input, which is printed, and its
//! seed is kept in `tests/fuzz-regressions/<target>.txt`, replayed first on the next run;
//! fix the cause and keep the minimal input as a named regression test at the end of this
//! file.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Local, NaiveDate, NaiveTime};
use clinic_protocol::{
    BookingStatus, Change, ChangeOp, ErrorCode, Id, Mutation, NewMessage, NewSlot, Record,
    RecordKind, ResyncReason, ServerFrame, Slot, Snapshot, PROTOCOL_VERSION,
};
use clinic_sync::machine::{Event, Instruction, Report, SyncMachine, SyncState, Timing};
use clinic_sync::{
    BookingOrder, BookingQuery, CacheEvent, ChangeKind, Engine, EngineConfig, Queries,
    Subscription, SyncError, View,
};
use clinic_test_kit::TestServer;
use futures_util::{FutureExt, SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError, TestRunner};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use clinic_test_kit::fuzz_json::{edits, json, text, Edit, J};

// ---------------------------------------------------------------------------------------
// Running a target.

/// The cases of one target: `CLINIC_FUZZ_CASES`, or the target's default.
fn cases(default: u32) -> u32 {
    std::env::var("CLINIC_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Where a target keeps the seeds of its failures (only written when one fails).
macro_rules! regressions {
    ($target:literal) => {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fuzz-regressions/",
            $target,
            ".txt"
        )
    };
}

/// Runs `check` on `cases(default)` inputs from `strategy`; a failure is shrunk and
/// reported with its minimal input.
fn fuzz<S>(
    target: &str,
    regressions: &'static str,
    default: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let cases = cases(default);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        // Network cases shrink slowly; two minutes of shrinking is plenty.
        max_shrink_time: 120_000,
        ..ProptestConfig::default()
    });
    let started = Instant::now();
    if let Err(e) = runner.run(&strategy, check) {
        panic!("fuzz target {target}: {e}");
    }
    eprintln!(
        "fuzz target {target}: {cases} cases in {:?}",
        started.elapsed()
    );
}

fn fail(why: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(why.into())
}

/// How the cases went, printed after a run: evidence that they reach past the first
/// refusal.
#[derive(Debug, Default)]
struct Tally(Mutex<BTreeMap<String, u32>>);

impl Tally {
    fn count(&self, what: impl Into<String>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(what.into())
            .or_default() += 1;
    }

    fn print(&self, target: &str) {
        eprintln!(
            "fuzz target {target}: {:?}",
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

// ---------------------------------------------------------------------------------------
// Generators.
//
// Every strategy is boxed: unboxed, the nested value trees of a debug build are big enough
// to overflow a test thread's stack.

// ---------------------------------------------------------------------------------------
// Feed frames as a server (or a hostile peer) could send them.

/// A sequence number relative to the client's cursor, or anywhere.
#[derive(Debug, Clone, Copy)]
enum Rel {
    Cursor(i8),
    Abs(u64),
}

impl Rel {
    fn at(self, cursor: u64) -> u64 {
        match self {
            Rel::Cursor(d) => cursor.saturating_add_signed(i64::from(d)),
            Rel::Abs(n) => n,
        }
    }
}

fn rel() -> BoxedStrategy<Rel> {
    prop_oneof![
        6 => (-3i8..=5).prop_map(Rel::Cursor),
        1 => prop_oneof![Just(0), Just(u64::MAX), any::<u64>()].prop_map(Rel::Abs),
    ]
    .boxed()
}

/// What a change does: remove a record (a known one by index, or any), or upsert a slot
/// carrying `note` (a marker the tests look for).
#[derive(Debug, Clone)]
enum Op {
    Remove(RecordKind, u128),
    RemoveKnown(usize),
    Slot { id: u128, day: i64, note: String },
}

fn op() -> BoxedStrategy<Op> {
    let kind = prop::sample::select(
        &[
            RecordKind::Staff,
            RecordKind::Booking,
            RecordKind::Slot,
            RecordKind::Message,
        ][..],
    );
    prop_oneof![
        2 => (kind, any::<u128>()).prop_map(|(k, id)| Op::Remove(k, id)),
        2 => any::<usize>().prop_map(Op::RemoveKnown),
        3 => (any::<u128>(), -5i64..400, text())
            .prop_map(|(id, day, note)| Op::Slot { id, day, note }),
    ]
    .boxed()
}

/// What the frames are rendered against: the cursor, the records the client holds, and
/// the note that marks this frame's upserts.
struct Context<'a> {
    cursor: u64,
    known: &'a [(RecordKind, Id)],
    marker: &'a str,
}

impl Op {
    fn change(&self, seq: u64, cx: &Context<'_>) -> Change {
        let op = match self {
            Op::Remove(kind, id) => ChangeOp::Remove {
                kind: *kind,
                id: Uuid::from_u128(*id),
            },
            Op::RemoveKnown(n) => {
                let (kind, id) = cx
                    .known
                    .get(n % cx.known.len().max(1))
                    .copied()
                    .unwrap_or((RecordKind::Slot, Uuid::from_u128(*n as u128)));
                ChangeOp::Remove { kind, id }
            }
            Op::Slot { id, day, note } => ChangeOp::Upsert {
                record: Record::Slot(Slot {
                    id: Uuid::from_u128(*id),
                    staff_id: Uuid::from_u128(id.rotate_left(64)),
                    date: Local::now().date_naive() + chrono::Duration::days(*day),
                    start: NaiveTime::from_hms_opt(9, 0, 0).expect("a time"),
                    end: NaiveTime::from_hms_opt(10, 0, 0).expect("a time"),
                    note: format!("{} {note}", cx.marker),
                    version: 1,
                }),
            },
        };
        Change {
            seq,
            actor: None,
            mutation_id: None,
            op,
        }
    }
}

#[derive(Debug, Clone)]
enum Frame {
    Text(String),
    /// A binary frame (the driver passes its lossy text on).
    Bytes(Vec<u8>),
    Json(J),
    Welcome {
        protocol: u32,
        head: Rel,
    },
    /// Changes at any sequence numbers.
    Changes {
        changes: Vec<(Rel, Op)>,
        upto: Rel,
    },
    /// Changes in ascending order after the cursor: valid unless `upto` says otherwise.
    Batch {
        gap: u8,
        steps: Vec<(u8, Op)>,
        upto: i8,
    },
    Heartbeat {
        head: Rel,
    },
    Resync {
        reason: ResyncReason,
        message: String,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    /// A structured frame with its JSON edited.
    Edited(Box<Frame>, Vec<Edit>),
}

impl Frame {
    /// The frame as it would be parsed, for the structured kinds.
    fn structured(&self, cx: &Context<'_>) -> Option<ServerFrame> {
        let c = cx.cursor;
        Some(match self {
            Frame::Welcome { protocol, head } => ServerFrame::Welcome {
                protocol: *protocol,
                user_id: Uuid::nil(),
                head: head.at(c),
            },
            Frame::Changes { changes, upto } => ServerFrame::Changes {
                changes: changes
                    .iter()
                    .map(|(seq, op)| op.change(seq.at(c), cx))
                    .collect(),
                upto: upto.at(c),
            },
            Frame::Batch { gap, steps, upto } => {
                let mut seq = c.saturating_add(u64::from(*gap));
                let changes: Vec<Change> = steps
                    .iter()
                    .map(|(step, op)| {
                        seq = seq.saturating_add(u64::from(*step) + 1);
                        op.change(seq, cx)
                    })
                    .collect();
                ServerFrame::Changes {
                    changes,
                    upto: seq.saturating_add_signed(i64::from(*upto)),
                }
            }
            Frame::Heartbeat { head } => ServerFrame::Heartbeat { head: head.at(c) },
            Frame::Resync { reason, message } => ServerFrame::Resync {
                reason: *reason,
                message: message.clone(),
            },
            Frame::Error { code, message } => ServerFrame::Error {
                code: *code,
                message: message.clone(),
            },
            Frame::Text(_) | Frame::Bytes(_) | Frame::Json(_) | Frame::Edited(..) => return None,
        })
    }

    /// The text the machine gets.
    fn text(&self, cx: &Context<'_>) -> String {
        match self {
            Frame::Text(t) => t.clone(),
            Frame::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Frame::Json(j) => j.render(),
            Frame::Edited(frame, edits) => {
                let mut j = J::of(&serde_json::from_str(&frame.text(cx)).unwrap_or_default());
                for edit in edits {
                    j.edit(edit);
                }
                j.render()
            }
            structured => serde_json::to_string(&structured.structured(cx).expect("structured"))
                .expect("a frame serializes"),
        }
    }

    /// The WebSocket message a fake feed sends.
    fn message(&self, cx: &Context<'_>) -> Message {
        match self {
            Frame::Bytes(b) => Message::binary(b.clone()),
            other => Message::text(other.text(cx)),
        }
    }
}

const ERROR_CODES: [ErrorCode; 23] = ErrorCode::ALL;

fn structured_frame(control: bool) -> BoxedStrategy<Frame> {
    let protocol = prop_oneof![6 => Just(PROTOCOL_VERSION), 1 => any::<u32>()];
    let changes = prop::collection::vec((rel(), op()), 0..5);
    let steps = prop::collection::vec((prop_oneof![4 => Just(0u8), 1 => 0u8..4], op()), 0..6);
    let upto = prop_oneof![6 => 0i8..3, 1 => -3i8..0];
    let mut arms = vec![
        (
            1,
            (protocol, rel())
                .prop_map(|(protocol, head)| Frame::Welcome { protocol, head })
                .boxed(),
        ),
        (
            2,
            (changes, rel())
                .prop_map(|(changes, upto)| Frame::Changes { changes, upto })
                .boxed(),
        ),
        (
            5,
            (0u8..3, steps, upto)
                .prop_map(|(gap, steps, upto)| Frame::Batch { gap, steps, upto })
                .boxed(),
        ),
        (3, rel().prop_map(|head| Frame::Heartbeat { head }).boxed()),
    ];
    if control {
        let reason = prop::sample::select(
            &[
                ResyncReason::CursorTooOld,
                ResyncReason::CursorAhead,
                ResyncReason::TooSlow,
                ResyncReason::AccountChanged,
            ][..],
        );
        arms.push((
            1,
            (reason, text())
                .prop_map(|(reason, message)| Frame::Resync { reason, message })
                .boxed(),
        ));
        arms.push((
            1,
            (prop::sample::select(&ERROR_CODES[..]), text())
                .prop_map(|(code, message)| Frame::Error { code, message })
                .boxed(),
        ));
    }
    proptest::strategy::Union::new_weighted(arms).boxed()
}

/// Any frame; `control`: resyncs and error frames too.
fn frame(control: bool) -> BoxedStrategy<Frame> {
    prop_oneof![
        2 => text().prop_map(Frame::Text),
        1 => prop::collection::vec(any::<u8>(), 0..128).prop_map(Frame::Bytes),
        2 => json().prop_map(Frame::Json),
        10 => structured_frame(control),
        4 => (structured_frame(control), edits()).prop_map(|(f, e)| Frame::Edited(Box::new(f), e)),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------
// Target: the state machine, driven through whole sessions by a fake driver.

/// Something the network or the cache does next.
#[derive(Debug, Clone)]
enum Step {
    Frame(Frame),
    /// The cache fails to apply the next batch.
    FailNextApply,
    /// Time passes.
    Wait(u16),
    /// The connection breaks.
    Drop,
    /// The next snapshot is at this seq.
    SnapshotAt(Rel),
}

#[derive(Debug, Clone)]
struct Connection {
    /// A valid welcome `ahead` of the cursor, or any frame first.
    welcome: Result<u8, Frame>,
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
struct Session {
    cursor: Option<u8>,
    seed: u64,
    connections: Vec<Connection>,
}

fn session() -> BoxedStrategy<Session> {
    let step = prop_oneof![
        12 => frame(true).prop_map(Step::Frame),
        1 => Just(Step::FailNextApply),
        1 => (0u16..15_000).prop_map(Step::Wait),
        1 => Just(Step::Drop),
        1 => rel().prop_map(Step::SnapshotAt),
    ];
    let connection = (
        prop_oneof![5 => (0u8..4).prop_map(Ok), 1 => frame(true).prop_map(Err)],
        prop::collection::vec(step, 0..10),
    )
        .prop_map(|(welcome, steps)| Connection { welcome, steps });
    (
        proptest::option::weighted(0.9, 0u8..50),
        any::<u64>(),
        prop::collection::vec(connection, 1..6),
    )
        .prop_map(|(cursor, seed, connections)| Session {
            cursor,
            seed,
            connections,
        })
        .boxed()
}

/// What the protocol says of a frame, given the machine's state.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    /// A welcome, accepted.
    Welcome(u64),
    Apply(Vec<Change>, u64),
    Advance(u64),
    /// A heartbeat at the cursor: nothing to do.
    Nothing,
    /// Garbage or a broken promise: close, report, resync from a snapshot.
    Hostile,
    /// The server asks for a resync.
    Resync,
    /// An error frame: close, report, reconnect.
    Refused,
    /// `unauthorized`: the session is over.
    Expire,
    /// `account_disabled`: nothing more until an administrator enables the account.
    Disabled,
}

/// What must come next: a snapshot (after a refused frame) or a plain reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Snapshot,
    Connect,
}

/// A driver that does what the machine says, at once, and a model of the cache.
struct Driver {
    machine: SyncMachine,
    now: Instant,
    wake: Option<Instant>,
    /// Connected and hello sent.
    open: bool,
    welcome_head: Option<u64>,
    /// The cache's cursor: what was applied (None before the first snapshot).
    cursor: Option<u64>,
    next_snapshot: Rel,
    fail_apply: bool,
    /// What the last refusal calls for.
    expect: Option<Next>,
    /// The frame being handled, as the machine should take it.
    verdict: Option<Verdict>,
    report: Option<Report>,
    events: VecDeque<Event>,
    expired: bool,
}

impl Driver {
    fn cursor(&self) -> u64 {
        self.cursor.unwrap_or(0)
    }

    fn handle(&mut self, event: Event) -> Result<Vec<Instruction>, TestCaseError> {
        let out = self.machine.handle(event, self.now);
        self.carry_out(&out)?;
        Ok(out)
    }

    /// Carries out the instructions, checking each against the model.
    fn carry_out(&mut self, out: &[Instruction]) -> Result<(), TestCaseError> {
        for instruction in out {
            match instruction {
                Instruction::Connect => {
                    prop_assert!(
                        self.expect != Some(Next::Snapshot),
                        "reconnected without the resync a refused frame calls for"
                    );
                    prop_assert!(!self.expired, "connected after the session expired");
                    self.expect = None;
                    self.events.push_back(Event::Connected);
                }
                Instruction::SendHello { cursor } => {
                    prop_assert_eq!(*cursor, self.cursor(), "hello from another cursor");
                    self.open = true;
                    self.welcome_head = None;
                }
                Instruction::Close => self.open = false,
                Instruction::FetchSnapshot => {
                    prop_assert!(
                        self.expect != Some(Next::Connect),
                        "a snapshot where a reconnect was due"
                    );
                    prop_assert!(!self.expired, "a snapshot after the session expired");
                    self.expect = None;
                    let seq = self.next_snapshot.at(self.cursor());
                    self.cursor = Some(seq);
                    self.events.push_back(Event::SnapshotFetched { seq });
                }
                Instruction::Apply {
                    changes,
                    upto,
                    live,
                } => {
                    let Some(Verdict::Apply(want, want_upto)) = &self.verdict else {
                        return Err(fail(format!(
                            "applied {changes:?} up to {upto} for {:?}",
                            self.verdict
                        )));
                    };
                    prop_assert_eq!(changes, want, "not the whole batch, or not as sent");
                    prop_assert_eq!(upto, want_upto);
                    let welcome = self
                        .welcome_head
                        .ok_or_else(|| fail("applied before a welcome"))?;
                    prop_assert_eq!(*live, *upto > welcome);
                    // In order, after the cursor, up to at least the last change.
                    let mut last = self.cursor();
                    for change in changes {
                        prop_assert!(change.seq > last, "change {} after {last}", change.seq);
                        last = change.seq;
                    }
                    prop_assert!(*upto >= last);
                    if self.fail_apply {
                        self.fail_apply = false;
                        self.expect = Some(Next::Snapshot);
                        self.events.push_back(Event::ApplyFailed {
                            error: "the disk is full".into(),
                        });
                    } else {
                        self.cursor = Some(*upto);
                    }
                }
                Instruction::Advance { cursor } => {
                    prop_assert_eq!(self.verdict.as_ref(), Some(&Verdict::Advance(*cursor)));
                    self.cursor = Some(*cursor);
                }
                Instruction::Send { .. } | Instruction::Settle { .. } => {
                    return Err(fail(format!("{instruction:?} with an empty outbox")));
                }
                Instruction::UseServer { index } => {
                    return Err(fail(format!("moved to address {index} of one")));
                }
                Instruction::WakeAt(at) => self.wake = Some(*at),
                Instruction::Report(report) => self.report = Some(report.clone()),
            }
        }
        Ok(())
    }

    /// Handles what the instructions reported, until nothing is left.
    fn settle(&mut self) -> Result<(), TestCaseError> {
        let mut rounds = 0;
        while let Some(event) = self.events.pop_front() {
            rounds += 1;
            prop_assert!(rounds < 100, "the machine and its driver loop");
            self.verdict = None;
            self.handle(event)?;
        }
        Ok(())
    }

    /// Lets time pass until the machine has reconnected (hello sent).
    fn reconnect(&mut self) -> Result<bool, TestCaseError> {
        for _ in 0..40 {
            if self.open || self.expired {
                return Ok(self.open);
            }
            self.now = match self.wake {
                Some(at) if at > self.now => at,
                _ => self.now + Duration::from_millis(100),
            };
            self.verdict = None;
            self.handle(Event::Tick)?;
            self.settle()?;
        }
        Err(fail("the machine never reconnected"))
    }

    fn judge(&self, frame: Option<&ServerFrame>) -> Verdict {
        let c = self.cursor();
        let Some(frame) = frame else {
            return Verdict::Hostile;
        };
        match (frame, self.welcome_head) {
            (ServerFrame::Resync { .. }, _) => Verdict::Resync,
            (
                ServerFrame::Error {
                    code: ErrorCode::Unauthorized,
                    ..
                },
                _,
            ) => Verdict::Expire,
            (
                ServerFrame::Error {
                    code: ErrorCode::AccountDisabled,
                    ..
                },
                _,
            ) => Verdict::Disabled,
            (ServerFrame::Error { .. }, _) => Verdict::Refused,
            (ServerFrame::Welcome { protocol, head, .. }, None) => {
                if *protocol != PROTOCOL_VERSION || *head < c {
                    Verdict::Hostile
                } else {
                    Verdict::Welcome(*head)
                }
            }
            (_, None) | (ServerFrame::Welcome { .. }, Some(_)) => Verdict::Hostile,
            (ServerFrame::Changes { changes, upto }, Some(_)) => {
                let mut last = c;
                for change in changes {
                    if change.seq <= last {
                        return Verdict::Hostile;
                    }
                    last = change.seq;
                }
                if *upto < last || *upto < c {
                    Verdict::Hostile
                } else {
                    Verdict::Apply(changes.clone(), *upto)
                }
            }
            (ServerFrame::Heartbeat { head }, Some(_)) => match head.cmp(&c) {
                std::cmp::Ordering::Less => Verdict::Hostile,
                std::cmp::Ordering::Equal => Verdict::Nothing,
                std::cmp::Ordering::Greater => Verdict::Advance(*head),
            },
        }
    }

    /// Delivers one frame and checks what the machine made of it.
    fn deliver(&mut self, text: String) -> Result<Verdict, TestCaseError> {
        let parsed = serde_json::from_str::<ServerFrame>(&text).ok();
        let verdict = self.judge(parsed.as_ref());
        self.verdict = Some(verdict.clone());
        let out = self.handle(Event::Frame(text))?;
        let count = |f: fn(&Instruction) -> bool| out.iter().filter(|i| f(i)).count();
        let applies = count(|i| matches!(i, Instruction::Apply { .. }));
        let advances = count(|i| matches!(i, Instruction::Advance { .. }));
        let closes = count(|i| matches!(i, Instruction::Close)) > 0;
        let fetches = count(|i| matches!(i, Instruction::FetchSnapshot)) > 0;
        let report = self.report.clone();
        let error = report.as_ref().and_then(|r| r.error.clone());
        match &verdict {
            Verdict::Welcome(head) => {
                prop_assert!(!closes && applies + advances == 0, "{out:?}");
                self.welcome_head = Some(*head);
            }
            Verdict::Apply(..) => prop_assert!(applies == 1 && !closes, "{out:?}"),
            Verdict::Advance(_) => prop_assert!(advances == 1 && !closes, "{out:?}"),
            Verdict::Nothing => prop_assert!(applies + advances == 0 && !closes, "{out:?}"),
            Verdict::Hostile => {
                prop_assert!(closes && applies + advances == 0, "{out:?}");
                let error = error.ok_or_else(|| fail("a refused frame without an error"))?;
                prop_assert!(error.contains("bad frame"), "{error}");
                prop_assert_ne!(report.map(|r| r.state), Some(SyncState::Online));
                self.expect = Some(Next::Snapshot);
            }
            Verdict::Resync => {
                prop_assert!(closes && fetches && applies + advances == 0, "{out:?}");
            }
            Verdict::Refused => {
                prop_assert!(closes && applies + advances == 0, "{out:?}");
                prop_assert!(error.is_some(), "an error frame without an error");
                self.expect = Some(Next::Connect);
            }
            Verdict::Expire => {
                prop_assert!(closes && applies + advances == 0, "{out:?}");
                prop_assert!(report.is_some_and(|r| r.session_expired));
                self.expired = true;
            }
            Verdict::Disabled => {
                prop_assert!(closes && applies + advances == 0, "{out:?}");
                prop_assert!(report.is_some_and(|r| r.account_disabled));
                // Like an expired session, the machine connects no more.
                self.expired = true;
            }
        }
        self.settle()?;
        self.verdict = None;
        if self.open {
            prop_assert_eq!(self.machine.cursor(), self.cursor, "the machine's cursor");
        }
        Ok(verdict)
    }
}

fn machine_session(session: Session, tally: &Tally) -> Result<(), TestCaseError> {
    let now = Instant::now();
    let timing = Timing {
        dead_after: Duration::from_secs(10),
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
    };
    let cursor = session.cursor.map(u64::from);
    let mut machine = SyncMachine::new(timing, cursor, session.seed);
    let start = machine.start(now);
    let mut d = Driver {
        machine,
        now,
        wake: None,
        open: false,
        welcome_head: None,
        cursor,
        next_snapshot: Rel::Cursor(0),
        fail_apply: false,
        expect: None,
        verdict: None,
        report: None,
        events: VecDeque::new(),
        expired: false,
    };
    d.carry_out(&start)?;
    d.settle()?;
    let known = [];
    for connection in session.connections {
        if !d.reconnect()? {
            break;
        }
        let cx = |d: &Driver| Context {
            cursor: d.cursor(),
            known: &known,
            marker: "fuzz",
        };
        let welcome = match &connection.welcome {
            Ok(ahead) => Frame::Welcome {
                protocol: PROTOCOL_VERSION,
                head: Rel::Cursor(*ahead as i8),
            },
            Err(frame) => frame.clone(),
        };
        let verdict = d.deliver(welcome.text(&cx(&d)))?;
        tally.count(format!("{verdict:?}").split('(').next().unwrap_or_default());
        for step in connection.steps {
            if !d.open {
                break;
            }
            match step {
                Step::Frame(frame) => {
                    let verdict = d.deliver(frame.text(&cx(&d)))?;
                    tally.count(format!("{verdict:?}").split('(').next().unwrap_or_default());
                }
                Step::FailNextApply => d.fail_apply = true,
                Step::Wait(ms) => {
                    d.now += Duration::from_millis(u64::from(ms));
                    let out = d.handle(Event::Tick)?;
                    if out.iter().any(|i| matches!(i, Instruction::Close)) {
                        // No frame for too long: a reconnect, not a resync.
                        d.expect = Some(Next::Connect);
                        tally.count("timed out");
                    }
                    d.settle()?;
                }
                Step::Drop => {
                    d.handle(Event::Disconnected {
                        error: "connection reset".into(),
                    })?;
                    d.expect = Some(Next::Connect);
                    d.settle()?;
                }
                Step::SnapshotAt(at) => d.next_snapshot = at,
            }
        }
        if d.expired {
            break;
        }
    }
    if d.expired {
        // Nothing more until the app signs in again.
        for _ in 0..3 {
            d.now += Duration::from_secs(60);
            d.handle(Event::Tick)?;
            d.settle()?;
        }
        prop_assert!(!d.open);
    }
    Ok(())
}

#[test]
fn fuzz_machine_frames() {
    let tally = Tally::default();
    fuzz(
        "machine_frames",
        regressions!("machine_frames"),
        2500,
        session(),
        |s| machine_session(s, &tally),
    );
    tally.print("machine_frames");
}

// ---------------------------------------------------------------------------------------
// Target: a real engine against a fake feed that sends hostile scripts.

/// The last frame of a script: refused whatever came before it.
#[derive(Debug, Clone)]
enum Poison {
    Garbage(String),
    Binary(Vec<u8>),
    UnknownType,
    /// Upserts of marked slots, then a change that repeats the first seq.
    Backwards(Vec<u128>),
    /// Upserts of marked slots, with `upto` behind them.
    UptoBehind(Vec<u128>),
    HeartbeatBehind,
    SecondWelcome,
}

impl Poison {
    fn message(&self, head: u64) -> Message {
        let marked = |ids: &[u128]| -> Vec<Change> {
            let cx = Context {
                cursor: head,
                known: &[],
                marker: HOSTILE,
            };
            ids.iter()
                .enumerate()
                .map(|(i, id)| {
                    Op::Slot {
                        id: *id,
                        day: 3,
                        note: String::new(),
                    }
                    .change(head + 1 + i as u64, &cx)
                })
                .collect()
        };
        let frame = |f: &ServerFrame| Message::text(serde_json::to_string(f).expect("serializes"));
        match self {
            Poison::Garbage(t) => Message::text(format!("!{t}")),
            Poison::Binary(b) => Message::binary([&[0xff][..], b].concat()),
            Poison::UnknownType => Message::text(r#"{"type":"teleport","to":"mars"}"#),
            Poison::Backwards(ids) => {
                let mut changes = marked(ids);
                let mut again = changes[0].clone();
                again.op = ChangeOp::Remove {
                    kind: RecordKind::Slot,
                    id: Uuid::nil(),
                };
                changes.push(again);
                let upto = head + 1 + ids.len() as u64;
                frame(&ServerFrame::Changes { changes, upto })
            }
            Poison::UptoBehind(ids) => frame(&ServerFrame::Changes {
                changes: marked(ids),
                upto: head,
            }),
            Poison::HeartbeatBehind => frame(&ServerFrame::Heartbeat { head: 0 }),
            Poison::SecondWelcome => frame(&ServerFrame::Welcome {
                protocol: PROTOCOL_VERSION,
                user_id: Uuid::nil(),
                head: u64::MAX,
            }),
        }
    }
}

fn poison() -> BoxedStrategy<Poison> {
    let ids = prop::collection::vec(any::<u128>(), 1..4);
    prop_oneof![
        2 => text().prop_map(Poison::Garbage),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Poison::Binary),
        1 => Just(Poison::UnknownType),
        3 => ids.clone().prop_map(Poison::Backwards),
        2 => ids.prop_map(Poison::UptoBehind),
        1 => Just(Poison::HeartbeatBehind),
        1 => Just(Poison::SecondWelcome),
    ]
    .boxed()
}

/// The note of slots in a refused batch: no event and no view may ever show one.
const HOSTILE: &str = "fuzz-hostile";
/// The note of slots in frames that may be valid (applied, then undone by the resync).
const VALID: &str = "fuzz-valid";

#[derive(Debug, Clone)]
struct Script {
    /// A valid welcome `ahead` of the cursor, or any frame first.
    welcome: Result<u8, Frame>,
    frames: Vec<Frame>,
    poison: Poison,
}

fn script() -> BoxedStrategy<Script> {
    (
        prop_oneof![6 => (0u8..4).prop_map(Ok), 1 => frame(false).prop_map(Err)],
        prop::collection::vec(
            prop_oneof![2 => structured_frame(false), 1 => frame(false)],
            0..5,
        ),
        poison(),
    )
        .prop_map(|(welcome, frames, poison)| Script {
            welcome,
            frames,
            poison,
        })
        .boxed()
}

impl Script {
    /// The frames, each rendered against the cursor the engine has if the frames before
    /// it were valid (so that several valid frames can follow one another).
    fn messages(&self, head: u64, known: &[(RecordKind, Id)]) -> Vec<Message> {
        let welcome = match &self.welcome {
            Ok(ahead) => Frame::Welcome {
                protocol: PROTOCOL_VERSION,
                head: Rel::Cursor(*ahead as i8),
            },
            Err(frame) => frame.clone(),
        };
        let mut cursor = head;
        let mut messages = Vec::new();
        for frame in std::iter::once(&welcome).chain(&self.frames) {
            let cx = Context {
                cursor,
                known,
                marker: VALID,
            };
            messages.push(frame.message(&cx));
            match frame.structured(&cx) {
                Some(ServerFrame::Changes { changes, upto })
                    if changes.first().is_none_or(|c| c.seq > cursor) =>
                {
                    cursor = cursor.max(upto);
                }
                Some(ServerFrame::Heartbeat { head }) => cursor = cursor.max(head),
                _ => {}
            }
        }
        messages.push(self.poison.message(head));
        messages
    }
}

/// What the fake feed serves on its next connection, and who to tell once it has.
type Served = (Vec<Message>, oneshot::Sender<()>);

/// A fake server in front of the real one: HTTP goes through, the feed is ours. Each feed
/// connection gets the next script (waiting for one), then is read until the engine
/// leaves.
async fn fake_feed(upstream: std::net::SocketAddr) -> (String, mpsc::UnboundedSender<Served>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fake feed");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    let (tx, rx) = mpsc::unbounded_channel::<Served>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let mut peek = [0u8; 512];
            let Ok(n) = stream.peek(&mut peek).await else {
                continue;
            };
            if !String::from_utf8_lossy(&peek[..n]).contains(clinic_protocol::wire::paths::FEED) {
                tokio::spawn(async move {
                    let mut client = stream;
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                continue;
            }
            let rx = rx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let _hello = ws.next().await;
                let Some((messages, served)) = rx.lock().await.recv().await else {
                    return;
                };
                for message in messages {
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
                let _ = served.send(());
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (url, tx)
}

/// The records of a view or a snapshot, comparable: sorted JSON.
fn view_records(view: &View) -> Vec<String> {
    let mut v: Vec<String> = view
        .records
        .iter()
        .map(|r| serde_json::to_string(&r.record).expect("serializes"))
        .collect();
    v.sort();
    v
}

fn snapshot_records(s: &Snapshot) -> Vec<String> {
    let mut v: Vec<String> = s
        .records
        .iter()
        .map(|r| serde_json::to_string(r).expect("serializes"))
        .collect();
    v.sort();
    v
}

fn marked(record: &Record) -> bool {
    matches!(record, Record::Slot(s) if s.note.starts_with(HOSTILE))
}

struct Hostile {
    engine: Engine,
    /// The real server behind the fake feed (snapshots, logins), alive while this is.
    _server: TestServer,
    feed: mpsc::UnboundedSender<Served>,
    events: tokio::sync::Mutex<Subscription>,
    head: u64,
    known: Vec<(RecordKind, Id)>,
    expected: Vec<String>,
    /// The engine's cache directory: dropped last.
    _data: tempfile::TempDir,
}

async fn hostile_case(h: &Hostile, script: Script, tally: &Tally) -> Result<(), TestCaseError> {
    let (served, done) = oneshot::channel();
    h.feed
        .send((script.messages(h.head, &h.known), served))
        .map_err(|_| fail("the fake feed is gone"))?;
    let deadline = Duration::from_secs(20);
    tokio::time::timeout(deadline, done)
        .await
        .map_err(|_| fail("the engine never took the script"))?
        .map_err(|_| fail("the fake feed dropped the script"))?;
    // Up to the resync: changes of frames that were valid, never one of a refused batch.
    let mut events = h.events.lock().await;
    let mut applied = 0;
    loop {
        let event = tokio::time::timeout(deadline, events.recv())
            .await
            .map_err(|_| fail("no resync after a hostile frame"))?
            .ok_or_else(|| fail("the engine stopped"))?;
        match event {
            CacheEvent::Change(change) => match &change.kind {
                ChangeKind::Reset => break,
                ChangeKind::Upsert { record, .. } => {
                    prop_assert!(!marked(record), "a refused batch was applied: {record:?}");
                    applied += 1;
                }
                ChangeKind::Remove { .. } => applied += 1,
            },
            other => return Err(fail(format!("{other:?} with an empty outbox"))),
        }
    }
    tally.count(if applied > 0 {
        "valid frames applied, then resynced"
    } else {
        "resynced"
    });
    let view = h
        .engine
        .view_at()
        .await
        .map_err(|e| fail(format!("the view: {e}")))?;
    prop_assert!(view.records.iter().all(|r| !marked(&r.record)));
    prop_assert_eq!(
        view_records(&view),
        h.expected.clone(),
        "the cache after the resync"
    );
    let status = h.engine.status().borrow().clone();
    prop_assert_ne!(status.state, SyncState::Online);
    let error = status
        .last_error
        .ok_or_else(|| fail("the status shows no error"))?;
    prop_assert!(
        error.contains("bad frame") || error.contains("could not apply"),
        "{error}"
    );
    Ok(())
}

#[test]
fn fuzz_engine_hostile_feeds() {
    let rt = runtime();
    let h = rt.block_on(async {
        let server = TestServer::start().await;
        let (url, feed) = fake_feed(server.addr()).await;
        let data = tempfile::tempdir().expect("a temporary directory");
        let mut config = EngineConfig::new(&url, data.path());
        config.timing = Timing {
            // Long: the fake feed holds a connection until the next case's script.
            dead_after: Duration::from_secs(60),
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(10),
        };
        let engine = Engine::login(config, "olivia", "demo")
            .await
            .expect("olivia signs in");
        let events = engine.subscribe();
        let snapshot = server.snapshot("olivia").await;
        let known = snapshot
            .records
            .iter()
            .map(|r| (r.kind(), r.id()))
            .collect();
        Hostile {
            expected: snapshot_records(&snapshot),
            head: snapshot.seq,
            engine,
            _server: server,
            feed,
            events: tokio::sync::Mutex::new(events),
            known,
            _data: data,
        }
    });
    let tally = Tally::default();
    fuzz(
        "engine_hostile_feeds",
        regressions!("engine_hostile_feeds"),
        80,
        script(),
        |s| rt.block_on(hostile_case(&h, s, &tally)),
    );
    tally.print("engine_hostile_feeds");
    // And a good feed brings it back online, its error history.
    rt.block_on(async {
        let welcome = ServerFrame::Welcome {
            protocol: PROTOCOL_VERSION,
            user_id: Uuid::nil(),
            head: h.head,
        };
        let beat = ServerFrame::Heartbeat { head: h.head };
        let frames = [welcome, beat]
            .iter()
            .map(|f| Message::text(serde_json::to_string(f).expect("serializes")))
            .collect();
        let (served, _done) = oneshot::channel();
        h.feed.send((frames, served)).expect("the fake feed");
        let mut status = h.engine.status();
        tokio::time::timeout(
            Duration::from_secs(20),
            status.wait_for(|s| s.state == SyncState::Online && s.last_error.is_none()),
        )
        .await
        .expect("online again")
        .expect("the engine runs");
        h.engine.shutdown().await;
    });
}

// ---------------------------------------------------------------------------------------
// Target: corrupt rows in the cache's SQLite file, read back.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Records,
    Overlay,
    Outbox,
    Meta,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Records => "records",
            Table::Overlay => "overlay",
            Table::Outbox => "outbox",
            Table::Meta => "meta",
        }
    }

    fn columns(self) -> &'static [&'static str] {
        match self {
            Table::Records | Table::Overlay => &[
                "body",
                "body",
                "body",
                "kind",
                "id",
                "day",
                "start_time",
                "status",
                "therapist_id",
                "driver_id",
                "staff_id",
                "sender_id",
                "recipient_id",
                "at",
                "unread",
                "payment",
            ],
            Table::Outbox => &["body", "body", "mutation_id", "queued_at", "tag"],
            Table::Meta => &["value", "value", "value", "key"],
        }
    }
}

/// What a cell becomes.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Json(J),
    /// The value cut at this many characters (modulo its length).
    Truncated(usize),
    /// The value, as JSON, edited.
    Edited(Vec<Edit>),
    /// The same column's value in another row.
    Other(usize),
}

#[derive(Debug, Clone)]
struct Corruption {
    table: Table,
    row: usize,
    column: usize,
    cell: Cell,
}

fn corruption() -> BoxedStrategy<Corruption> {
    let table = prop_oneof![
        4 => Just(Table::Records),
        2 => Just(Table::Overlay),
        2 => Just(Table::Outbox),
        2 => Just(Table::Meta),
    ];
    let cell = prop_oneof![
        1 => Just(Cell::Null),
        2 => prop_oneof![Just(0i64), Just(1), Just(-1), Just(i64::MAX), any::<i64>()]
            .prop_map(Cell::Int),
        1 => any::<f64>().prop_map(Cell::Real),
        2 => text().prop_map(Cell::Text),
        2 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Cell::Blob),
        3 => json().prop_map(Cell::Json),
        3 => any::<usize>().prop_map(Cell::Truncated),
        4 => edits().prop_map(Cell::Edited),
        2 => any::<usize>().prop_map(Cell::Other),
    ];
    (table, any::<usize>(), any::<usize>(), cell)
        .prop_map(|(table, row, column, cell)| Corruption {
            table,
            row,
            column,
            cell,
        })
        .boxed()
}

/// A changed cell and how to put it back.
struct Changed {
    table: &'static str,
    column: &'static str,
    rowid: i64,
    /// The old value as an SQL literal (`quote()`), so that it comes back with its type.
    literal: String,
}

async fn corrupt(pool: &sqlx::SqlitePool, c: &Corruption) -> Result<Option<Changed>, sqlx::Error> {
    let table = c.table.name();
    let column = c.table.columns()[c.column % c.table.columns().len()];
    let rowids: Vec<i64> = sqlx::query_scalar(&format!("SELECT rowid FROM {table} ORDER BY rowid"))
        .fetch_all(pool)
        .await?;
    if rowids.is_empty() {
        return Ok(None);
    }
    let rowid = rowids[c.row % rowids.len()];
    let (literal, old): (String, Option<Vec<u8>>) = sqlx::query_as(&format!(
        "SELECT quote({column}), CAST({column} AS BLOB) FROM {table} WHERE rowid = ?"
    ))
    .bind(rowid)
    .fetch_one(pool)
    .await?;
    let old = String::from_utf8_lossy(&old.unwrap_or_default()).into_owned();
    let update = format!("UPDATE {table} SET {column} = ? WHERE rowid = ?");
    let query = sqlx::query(&update);
    let query = match &c.cell {
        Cell::Null => query.bind(None::<String>),
        Cell::Int(n) => query.bind(*n),
        Cell::Real(f) => query.bind(*f),
        Cell::Text(t) => query.bind(t.clone()),
        Cell::Blob(b) => query.bind(b.clone()),
        Cell::Json(j) => query.bind(j.render()),
        Cell::Truncated(n) => {
            let chars = old.chars().count();
            let keep = if chars == 0 { 0 } else { n % chars };
            query.bind(old.chars().take(keep).collect::<String>())
        }
        Cell::Edited(edits) => {
            let mut j = J::of(
                &serde_json::from_str(&old).unwrap_or(serde_json::Value::String(old.clone())),
            );
            for edit in edits {
                j.edit(edit);
            }
            query.bind(j.render())
        }
        Cell::Other(n) => {
            return copy(
                pool,
                table,
                column,
                rowids[n % rowids.len()],
                rowid,
                literal,
            )
            .await;
        }
    };
    // A value a constraint refuses (NOT NULL, a key taken) changes nothing.
    match query.bind(rowid).execute(pool).await {
        Ok(_) => Ok(Some(Changed {
            table,
            column,
            rowid,
            literal,
        })),
        Err(_) => Ok(None),
    }
}

/// Copies the cell of row `from` into row `to`, type and all.
async fn copy(
    pool: &sqlx::SqlitePool,
    table: &'static str,
    column: &'static str,
    from: i64,
    to: i64,
    literal: String,
) -> Result<Option<Changed>, sqlx::Error> {
    let copied = sqlx::query(&format!(
        "UPDATE {table} SET {column} = (SELECT {column} FROM {table} WHERE rowid = ?) \
         WHERE rowid = ?"
    ))
    .bind(from)
    .bind(to)
    .execute(pool)
    .await;
    Ok(copied.ok().map(|_| Changed {
        table,
        column,
        rowid: to,
        literal,
    }))
}

async fn restore(pool: &sqlx::SqlitePool, changed: &Changed) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE {} SET {} = {} WHERE rowid = ?",
        changed.table, changed.column, changed.literal
    ))
    .bind(changed.rowid)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every read of `queries`, and what became of it.
async fn read_everything(
    q: &Queries,
    me: Id,
    peer: Id,
) -> Vec<(&'static str, Result<(), SyncError>)> {
    let today = Local::now().date_naive();
    let statuses = Some(vec![BookingStatus::Requested, BookingStatus::Completed]);
    let attention = BookingQuery {
        needs_attention: true,
        order: BookingOrder::NewestFirst,
        limit: Some(5),
        ..BookingQuery::default()
    };
    let filtered = BookingQuery {
        therapist: Some(me),
        statuses,
        from: Some(today - chrono::Duration::days(1)),
        to: Some(today + chrono::Duration::days(30)),
        assigned_only: true,
        order: BookingOrder::ByTimeDesc,
        ..BookingQuery::default()
    };
    vec![
        ("seq", q.seq().await.map(drop)),
        ("all", q.all().await.map(drop)),
        (
            "bookings",
            q.bookings(&BookingQuery::default()).await.map(drop),
        ),
        (
            "bookings needing attention",
            q.bookings(&attention).await.map(drop),
        ),
        ("bookings filtered", q.bookings(&filtered).await.map(drop)),
        ("bookings_on", q.bookings_on(today).await.map(drop)),
        (
            "bookings_of_therapist",
            q.bookings_of_therapist(me).await.map(drop),
        ),
        (
            "bookings_with_status",
            q.bookings_with_status(BookingStatus::Confirmed)
                .await
                .map(drop),
        ),
        ("recent_bookings", q.recent_bookings(10).await.map(drop)),
        ("counts", q.counts(today).await.map(drop)),
        ("slots", q.slots(None, NaiveDate::MIN, None).await.map(drop)),
        (
            "slots of one",
            q.slots(Some(me), today, Some(today)).await.map(drop),
        ),
        ("conversations", q.conversations().await.map(drop)),
        ("messages_with", q.messages_with(peer).await.map(drop)),
        ("staff", q.staff().await.map(drop)),
    ]
}

/// A read failed as a read of a corrupt cache should: a storage error, said in words.
fn storage_error(what: &str, e: &SyncError) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.code(), "storage", "{}: {}", what, e);
    prop_assert!(!e.to_string().is_empty());
    Ok(())
}

struct Corrupted {
    config: EngineConfig,
    queries: Queries,
    pool: sqlx::SqlitePool,
    me: Id,
    peer: Id,
    clean: Vec<String>,
}

async fn cache_case(
    c: &Corrupted,
    corruptions: Vec<Corruption>,
    tally: &Tally,
) -> Result<(), TestCaseError> {
    let mut changed = Vec::new();
    let mut trouble = None;
    for corruption in &corruptions {
        match corrupt(&c.pool, corruption).await {
            Ok(Some(done)) => changed.push(done),
            Ok(None) => {}
            Err(e) => trouble = Some(format!("corrupting: {e}")),
        }
    }
    // Whatever happens, the cells are put back: the next case starts from a clean cache.
    let read = AssertUnwindSafe(read_back(c, tally)).catch_unwind().await;
    for done in changed.iter().rev() {
        restore(&c.pool, done)
            .await
            .map_err(|e| fail(format!("restoring: {e}")))?;
    }
    if let Some(trouble) = trouble {
        return Err(fail(trouble));
    }
    match read {
        Ok(result) => result?,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            return Err(fail(format!("reading a corrupt cache panicked: {why}")));
        }
    }
    let all = c
        .queries
        .all()
        .await
        .map_err(|e| fail(format!("the restored cache: {e}")))?;
    let mut records: Vec<String> = all
        .iter()
        .map(|r| serde_json::to_string(r).expect("serializes"))
        .collect();
    records.sort();
    prop_assert_eq!(records, c.clean.clone(), "the restored cache");
    Ok(())
}

/// Every query on the corrupt cache, then an engine resumed from it.
async fn read_back(c: &Corrupted, tally: &Tally) -> Result<(), TestCaseError> {
    for (what, result) in read_everything(&c.queries, c.me, c.peer).await {
        match result {
            Ok(()) => tally.count("read"),
            Err(e) => {
                storage_error(what, &e)?;
                tally.count("refused to read");
            }
        }
    }
    match Engine::resume(c.config.clone()).await {
        Ok(engine) => {
            tally.count("resumed");
            let reads = read_everything(&engine.queries(), c.me, c.peer).await;
            let view = engine.view_at().await.map(drop);
            engine.shutdown().await;
            for (what, result) in reads.into_iter().chain([("view_at", view)]) {
                if let Err(e) = result {
                    storage_error(what, &e)?;
                }
            }
        }
        Err(e) => {
            tally.count(format!("not resumed: {}", e.code()));
            prop_assert!(
                matches!(e.code(), "storage" | "no_session" | "session_expired"),
                "resume: {e}"
            );
        }
    }
    Ok(())
}

/// The cache file of the one user signed in under `data`.
fn cache_file(data: &Path) -> PathBuf {
    let mut found = Vec::new();
    let mut dirs = vec![data.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("a readable directory")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "db") {
                found.push(path);
            }
        }
    }
    assert_eq!(found.len(), 1, "one cache: {found:?}");
    found.remove(0)
}

/// Maria's cache, signed in and then offline (the server stopped, returned to be dropped
/// last) with two changes pending (a slot and a message: rows in the overlay and the
/// outbox), and a connection of the test's own to its file.
async fn pending_cache(data: &Path) -> (Corrupted, TestServer) {
    let mut server = TestServer::start().await;
    let olivia = server.snapshot("olivia").await.user.id;
    let config = EngineConfig::new(&server.url(), data);
    let engine = Engine::login(config.clone(), "maria", "demo")
        .await
        .expect("maria signs in");
    let me = engine.user().id;
    // Offline from here: the pending changes stay pending, nothing replaces the rows.
    server.stop().await;
    let today = Local::now().date_naive();
    engine
        .submit(Mutation::CreateSlot {
            slot: NewSlot {
                id: Uuid::new_v4(),
                staff_id: me,
                date: today + chrono::Duration::days(20),
                start: NaiveTime::from_hms_opt(9, 0, 0).expect("a time"),
                end: NaiveTime::from_hms_opt(12, 0, 0).expect("a time"),
                note: "pending".into(),
            },
        })
        .await
        .expect("a slot, pending");
    engine
        .submit(Mutation::SendMessage {
            message: NewMessage {
                id: Uuid::new_v4(),
                recipient_id: olivia,
                body: "pending".into(),
            },
        })
        .await
        .expect("a message, pending");
    engine.shutdown().await;
    let queries = engine.queries();
    let mut clean: Vec<String> = queries
        .all()
        .await
        .expect("the clean cache")
        .iter()
        .map(|r| serde_json::to_string(r).expect("serializes"))
        .collect();
    clean.sort();
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(cache_file(data))
                .busy_timeout(Duration::from_secs(10)),
        )
        .await
        .expect("open the cache file");
    let c = Corrupted {
        config,
        queries,
        pool,
        me,
        peer: olivia,
        clean,
    };
    (c, server)
}

#[test]
fn fuzz_cache_rows() {
    let rt = runtime();
    let data = tempfile::tempdir().expect("a temporary directory");
    let (c, mut server) = rt.block_on(pending_cache(data.path()));
    let tally = Tally::default();
    fuzz(
        "cache_rows",
        regressions!("cache_rows"),
        300,
        prop::collection::vec(corruption(), 1..4),
        |cs| rt.block_on(cache_case(&c, cs, &tally)),
    );
    tally.print("cache_rows");
    rt.block_on(server.stop());
}

// ---------------------------------------------------------------------------------------
// Regressions found by these targets.
//
// `cache_rows` found that a cell of the wrong type panicked the engine: `sqlx::Row::get`
// unwraps a decode error. Its minimal input was one corruption, `Corruption { table:
// Overlay, column: sender_id, cell: Blob([]) }` (conversations), and before it an outbox
// body as a BLOB (`Engine::resume`). The cache's reads use `try_get` since, and a corrupt
// cell is a storage error. (Conversations no longer read `sender_id` as a value since
// they are looked up per colleague, so the regression corrupts a cell they do read, the
// pending message's body.)

/// Runs `check` on a fresh pending cache (see [`pending_cache`]).
fn with_pending_cache(check: impl AsyncFnOnce(&Corrupted)) {
    let rt = runtime();
    let data = tempfile::tempdir().expect("a temporary directory");
    rt.block_on(async {
        let (c, mut server) = pending_cache(data.path()).await;
        check(&c).await;
        server.stop().await;
    });
}

async fn corrupt_with(c: &Corrupted, sql: &str) {
    let done = sqlx::query(sql)
        .execute(&c.pool)
        .await
        .expect("the corruption");
    assert!(done.rows_affected() > 0, "{sql} changed nothing");
}

#[test]
fn regression_a_cell_of_the_wrong_type_is_a_storage_error_not_a_panic_in_queries() {
    with_pending_cache(async |c| {
        corrupt_with(
            c,
            "UPDATE overlay SET body = x'7b7d' WHERE kind = 'message'",
        )
        .await;
        let e = c.queries.conversations().await.expect_err("a corrupt row");
        assert_eq!(e.code(), "storage", "{e}");
        // A BLOB: TEXT affinity would turn a number into text, not a blob.
        corrupt_with(
            c,
            "UPDATE records SET body = x'7b7d' WHERE kind = 'booking'",
        )
        .await;
        let e = c.queries.all().await.expect_err("a corrupt row");
        assert_eq!(e.code(), "storage", "{e}");
        let e = c
            .queries
            .bookings(&BookingQuery::default())
            .await
            .expect_err("a corrupt row");
        assert_eq!(e.code(), "storage", "{e}");
    });
}

#[test]
fn regression_a_cell_of_the_wrong_type_is_a_storage_error_not_a_panic_on_resume() {
    with_pending_cache(async |c| {
        corrupt_with(c, "UPDATE outbox SET tag = x'ff'").await;
        let e = Engine::resume(c.config.clone())
            .await
            .expect_err("a corrupt outbox");
        assert_eq!(e.code(), "storage", "{e}");
        corrupt_with(c, "UPDATE outbox SET tag = NULL, body = x'00'").await;
        let e = Engine::resume(c.config.clone())
            .await
            .expect_err("a corrupt outbox");
        assert_eq!(e.code(), "storage", "{e}");
    });
}
