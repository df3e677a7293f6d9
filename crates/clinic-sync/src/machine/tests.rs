use super::*;
use clinic_protocol::{ChangeOp, RecordKind};

const DEAD: Duration = Duration::from_secs(10);

fn machine(cursor: Option<u64>) -> SyncMachine {
    SyncMachine::new(
        Timing {
            dead_after: DEAD,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        },
        cursor,
        42,
    )
}

fn change(seq: u64) -> Change {
    Change {
        seq,
        actor: None,
        mutation_id: None,
        op: ChangeOp::Remove {
            kind: RecordKind::Slot,
            id: Uuid::nil(),
        },
    }
}

fn frame(f: &ServerFrame) -> Event {
    Event::Frame(serde_json::to_string(f).unwrap())
}

fn welcome(head: u64) -> Event {
    frame(&ServerFrame::Welcome {
        protocol: PROTOCOL_VERSION,
        user_id: Uuid::nil(),
        head,
    })
}

fn has(out: &[Instruction], f: impl Fn(&Instruction) -> bool) -> bool {
    out.iter().any(f)
}

fn report(out: &[Instruction]) -> Option<&Report> {
    out.iter().rev().find_map(|i| match i {
        Instruction::Report(r) => Some(r),
        _ => None,
    })
}

fn wake(out: &[Instruction]) -> Instant {
    out.iter()
        .find_map(|i| match i {
            Instruction::WakeAt(t) => Some(*t),
            _ => None,
        })
        .expect("a wake-up")
}

/// A machine with an open feed at `cursor`, welcomed with `head`.
fn open(cursor: u64, head: u64, t0: Instant) -> SyncMachine {
    let mut m = machine(Some(cursor));
    assert_eq!(m.start(t0)[0], Instruction::Connect);
    let out = m.handle(Event::Connected, t0);
    assert_eq!(out[0], Instruction::SendHello { cursor });
    m.handle(welcome(head), t0);
    let expected = if head == cursor {
        SyncState::Online
    } else {
        SyncState::Syncing
    };
    assert_eq!(m.report().state, expected);
    m
}

#[test]
fn a_session_catches_up_goes_live_and_advances_on_heartbeats() {
    let t0 = Instant::now();
    let mut m = open(10, 15, t0);
    assert_eq!(m.lag(), 5);
    let out = m.handle(
        frame(&ServerFrame::Changes {
            changes: vec![change(11), change(13)],
            upto: 15,
        }),
        t0,
    );
    assert!(has(&out, |i| matches!(
        i,
        Instruction::Apply {
            upto: 15,
            live: false,
            ..
        }
    )));
    let r = report(&out).unwrap();
    assert_eq!((r.state, r.lag, r.synced), (SyncState::Online, 0, true));
    let out = m.handle(
        frame(&ServerFrame::Changes {
            changes: vec![change(16)],
            upto: 16,
        }),
        t0,
    );
    assert!(has(&out, |i| matches!(
        i,
        Instruction::Apply { live: true, .. }
    )));
    let out = m.handle(frame(&ServerFrame::Heartbeat { head: 20 }), t0);
    assert!(has(&out, |i| *i == Instruction::Advance { cursor: 20 }));
    assert_eq!(m.cursor(), Some(20));
}

#[test]
fn a_missed_heartbeat_closes_and_reconnects_with_growing_jittered_backoff() {
    let t0 = Instant::now();
    let mut m = open(10, 10, t0);
    let out = m.handle(Event::Tick, t0 + DEAD / 2);
    assert!(!has(&out, |i| *i == Instruction::Close), "still alive");
    let out = m.handle(Event::Tick, t0 + DEAD);
    assert!(has(&out, |i| *i == Instruction::Close));
    let r = report(&out).unwrap();
    assert_eq!(r.state, SyncState::Offline);
    assert!(r.error.as_deref().unwrap().contains("heartbeat"));

    // Retry delays grow (within jitter) and are capped.
    let mut now = t0 + DEAD;
    let mut delays = Vec::new();
    let mut out = out;
    for _ in 0..8 {
        let at = wake(&out);
        delays.push(at - now);
        now = at;
        let connect = m.handle(Event::Tick, now);
        assert!(has(&connect, |i| *i == Instruction::Connect));
        out = m.handle(
            Event::Disconnected {
                error: "refused".into(),
            },
            now,
        );
    }
    assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
    assert!(delays[3] > delays[0]);
    assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
    // A healthy frame resets the backoff; the cursor was kept throughout.
    m.handle(Event::Tick, wake(&out));
    m.handle(Event::Connected, wake(&out));
    let out = m.handle(welcome(12), wake(&out));
    assert_eq!(m.cursor(), Some(10));
    assert!(report(&out).is_some());
}

#[test]
fn hostile_frames_report_an_error_and_resync_after_a_backoff() {
    let hostile = [
        "garbage".to_owned(),
        r#"{"type":"changes","changes":[],"upto":12,"extra":true}"#.to_owned(),
        r#"{"type":"teleport"}"#.to_owned(),
        serde_json::to_string(&ServerFrame::Changes {
            changes: vec![change(10)],
            upto: 10,
        })
        .unwrap(),
        serde_json::to_string(&ServerFrame::Changes {
            changes: vec![change(12), change(11)],
            upto: 12,
        })
        .unwrap(),
        serde_json::to_string(&ServerFrame::Changes {
            changes: vec![change(12)],
            upto: 11,
        })
        .unwrap(),
        serde_json::to_string(&ServerFrame::Heartbeat { head: 3 }).unwrap(),
        serde_json::to_string(&ServerFrame::Welcome {
            protocol: PROTOCOL_VERSION,
            user_id: Uuid::nil(),
            head: 12,
        })
        .unwrap(),
    ];
    let t0 = Instant::now();
    for bad in hostile {
        let mut m = open(10, 12, t0);
        let out = m.handle(Event::Frame(bad.clone()), t0);
        assert!(
            !has(&out, |i| matches!(i, Instruction::Apply { .. })),
            "{bad}"
        );
        assert!(has(&out, |i| *i == Instruction::Close), "{bad}");
        let r = report(&out).unwrap();
        assert!(r.error.is_some() && r.state == SyncState::Offline, "{bad}");
        assert_eq!(m.cursor(), Some(10), "{bad}");
        let out = m.handle(Event::Tick, wake(&out));
        assert_eq!(out[0], Instruction::FetchSnapshot, "{bad}");
        let out = m.handle(Event::SnapshotFetched { seq: 30 }, t0);
        assert_eq!(out[0], Instruction::Connect);
        assert_eq!(m.cursor(), Some(30));
    }

    // Another protocol version, or anything before the welcome.
    for first in [
        serde_json::to_string(&ServerFrame::Welcome {
            protocol: 99,
            user_id: Uuid::nil(),
            head: 0,
        })
        .unwrap(),
        serde_json::to_string(&ServerFrame::Heartbeat { head: 1 }).unwrap(),
    ] {
        let mut m = machine(Some(0));
        m.start(t0);
        m.handle(Event::Connected, t0);
        let out = m.handle(Event::Frame(first), t0);
        assert!(report(&out).unwrap().error.is_some());
    }
}

#[test]
fn a_server_resync_fetches_a_snapshot_at_once_and_an_expired_token_stops() {
    let t0 = Instant::now();
    let mut m = open(10, 10, t0);
    let out = m.handle(
        frame(&ServerFrame::Resync {
            reason: clinic_protocol::ResyncReason::CursorTooOld,
            message: "old".into(),
        }),
        t0,
    );
    assert_eq!(out[..2], [Instruction::Close, Instruction::FetchSnapshot]);
    assert_eq!(report(&out).unwrap().error, None);

    let mut m = machine(None);
    assert_eq!(m.start(t0)[0], Instruction::FetchSnapshot);
    let out = m.handle(
        Event::SnapshotFailed {
            error: "401".into(),
            expired: true,
        },
        t0,
    );
    let r = report(&out).unwrap();
    assert!(r.session_expired && r.state == SyncState::Offline);
    assert!(!has(&out, |i| matches!(i, Instruction::WakeAt(_))));
}

#[test]
fn the_outbox_goes_one_at_a_time_in_order_and_retries_after_failures() {
    let t0 = Instant::now();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut m = machine(Some(5));
    m.start(t0);
    // Queued while offline: nothing is sent before the feed is open.
    assert!(m
        .handle(Event::OutboxHead(Some(a)), t0)
        .iter()
        .all(|i| !matches!(i, Instruction::Send { .. })));
    m.handle(Event::Connected, t0);
    let out = m.handle(welcome(5), t0);
    assert!(has(&out, |i| *i == Instruction::Send { mutation_id: a }));
    assert_eq!(m.report().state, SyncState::Syncing);
    // No second send while one is in flight.
    assert!(!has(
        &m.handle(Event::OutboxHead(Some(a)), t0),
        |i| matches!(i, Instruction::Send { .. })
    ));
    let out = m.handle(
        Event::MutationDone {
            mutation_id: a,
            result: Sent::Failed("timeout".into()),
        },
        t0,
    );
    assert!(
        !has(&out, |i| matches!(i, Instruction::Send { .. })),
        "waits first"
    );
    let retry = wake(&out);
    let out = m.handle(Event::Tick, retry);
    assert!(has(&out, |i| *i == Instruction::Send { mutation_id: a }));
    let applied = MutationOutcome::Applied {
        seq: 6,
        record: None,
    };
    let out = m.handle(
        Event::MutationDone {
            mutation_id: a,
            result: Sent::Outcome(applied.clone()),
        },
        retry,
    );
    assert_eq!(
        out[0],
        Instruction::Settle {
            mutation_id: a,
            outcome: applied
        }
    );
    assert!(
        !has(&out, |i| matches!(i, Instruction::Send { .. })),
        "settle first"
    );
    let out = m.handle(Event::OutboxHead(Some(b)), retry);
    assert!(has(&out, |i| *i == Instruction::Send { mutation_id: b }));
    m.handle(
        Event::MutationDone {
            mutation_id: b,
            result: Sent::Gone,
        },
        retry,
    );
    m.handle(Event::OutboxHead(None), retry);
    assert_eq!(m.report().state, SyncState::Online);
}

#[test]
fn a_disabled_account_stops_everything_and_keeps_the_outbox() {
    let t0 = Instant::now();
    let queued = Uuid::new_v4();
    let mut m = open(10, 10, t0);
    let out = m.handle(Event::OutboxHead(Some(queued)), t0);
    assert!(has(&out, |i| *i
        == Instruction::Send {
            mutation_id: queued
        }));
    // The feed ends with account_disabled while the change is in flight.
    let out = m.handle(
        frame(&ServerFrame::Error {
            code: ErrorCode::AccountDisabled,
            message: "An administrator disabled your account.".into(),
        }),
        t0,
    );
    assert_eq!(out[0], Instruction::Close);
    let r = report(&out).unwrap();
    assert!(
        r.account_disabled && !r.session_expired,
        "told apart from a sign-out"
    );
    assert_eq!(r.state, SyncState::Offline);
    assert!(r.error.as_deref().is_some_and(|e| e.contains("disabled")));
    assert!(
        !has(&out, |i| matches!(i, Instruction::WakeAt(_))),
        "no retry"
    );
    // The request in flight is refused for the same reason: nothing is settled, so the
    // change stays in the outbox; nothing is sent, nothing reconnects, whatever happens.
    let out = m.handle(
        Event::MutationDone {
            mutation_id: queued,
            result: Sent::Disabled,
        },
        t0,
    );
    assert!(!has(&out, |i| matches!(
        i,
        Instruction::Settle { .. } | Instruction::Send { .. } | Instruction::Connect
    )));
    let later = t0 + 10 * DEAD;
    for event in [
        Event::Tick,
        Event::OutboxHead(Some(queued)),
        Event::Disconnected {
            error: "gone".into(),
        },
        Event::SnapshotFailed {
            error: "401".into(),
            expired: true,
        },
    ] {
        let out = m.handle(event, later);
        assert!(
            !has(&out, |i| matches!(
                i,
                Instruction::Settle { .. }
                    | Instruction::Send { .. }
                    | Instruction::Connect
                    | Instruction::FetchSnapshot
                    | Instruction::WakeAt(_)
            )),
            "{out:?}"
        );
    }
    let r = m.report();
    assert!(r.account_disabled && !r.session_expired);

    // Found out by a snapshot instead (the engine was offline when it happened): the same.
    let mut m = machine(None);
    assert_eq!(m.start(t0)[0], Instruction::FetchSnapshot);
    let out = m.handle(Event::AccountDisabled, t0);
    assert!(report(&out).unwrap().account_disabled);
    assert!(!has(&out, |i| matches!(i, Instruction::WakeAt(_))));
}

#[test]
fn a_changed_account_refetches_the_snapshot_at_once() {
    let t0 = Instant::now();
    let mut m = open(10, 12, t0);
    let out = m.handle(
        frame(&ServerFrame::Resync {
            reason: clinic_protocol::ResyncReason::AccountChanged,
            message: "Your account was changed; fetch a new snapshot.".into(),
        }),
        t0,
    );
    // No backoff, no error: the server's own decision, taken right away.
    assert_eq!(out[..2], [Instruction::Close, Instruction::FetchSnapshot]);
    let r = m.report();
    assert_eq!(r.error, None);
    assert!(!r.session_expired && !r.account_disabled);
    // The new snapshot (filtered by the new roles) becomes the cursor to resume from.
    let out = m.handle(Event::SnapshotFetched { seq: 15 }, t0);
    assert_eq!(out[0], Instruction::Connect);
    m.handle(Event::Connected, t0);
    assert_eq!(m.cursor(), Some(15));
    let out = m.handle(welcome(15), t0);
    assert_eq!(report(&out).unwrap().state, SyncState::Online);
}

/// A machine for a clinic server with `count` addresses, open on the first at `cursor`.
fn open_on_one_of(count: usize, cursor: u64, t0: Instant) -> SyncMachine {
    let mut m = machine(Some(cursor)).with_servers(count, 0);
    assert_eq!(m.start(t0)[0], Instruction::Connect);
    m.handle(Event::Connected, t0);
    m.handle(welcome(cursor), t0);
    assert_eq!(m.report().state, SyncState::Online);
    m
}

fn uses(out: &[Instruction]) -> Option<usize> {
    out.iter().find_map(|i| match i {
        Instruction::UseServer { index } => Some(*index),
        _ => None,
    })
}

fn lost(error: &str) -> Event {
    Event::Disconnected {
        error: error.into(),
    }
}

#[test]
fn a_lost_server_moves_to_the_next_address_at_once_and_backs_off_per_round() {
    let t0 = Instant::now();
    let mut m = open_on_one_of(3, 7, t0);

    // The first address stops answering: the next one is tried at once.
    let out = m.handle(lost("connection reset"), t0);
    assert_eq!(out[0], Instruction::Close);
    assert_eq!(uses(&out), Some(1));
    assert!(has(&out, |i| *i == Instruction::Connect), "{out:?}");
    assert_eq!(m.server(), 1);
    // Refused there too: the third, still at once.
    let out = m.handle(lost("refused"), t0);
    assert_eq!(uses(&out), Some(2));
    assert!(has(&out, |i| *i == Instruction::Connect));
    // A whole round failed: back to the first, after a backoff this time.
    let out = m.handle(lost("refused"), t0);
    assert_eq!(uses(&out), Some(0));
    assert!(!has(&out, |i| *i == Instruction::Connect), "{out:?}");
    let at = wake(&out);
    assert!(at > t0, "a full round of failures backs off");
    assert_eq!(m.report().state, SyncState::Offline);
    let out = m.handle(Event::Tick, at);
    assert_eq!(out[0], Instruction::Connect);
    assert_eq!(m.server(), 0);

    // The next round goes to the second at once again; it answers, with the same cursor.
    let out = m.handle(lost("refused"), at);
    assert_eq!(uses(&out), Some(1));
    let out = m.handle(Event::Connected, at);
    assert_eq!(out[0], Instruction::SendHello { cursor: 7 });
    m.handle(welcome(9), at);
    m.handle(
        frame(&ServerFrame::Changes {
            changes: vec![change(8), change(9)],
            upto: 9,
        }),
        at,
    );
    assert_eq!(m.cursor(), Some(9));
    assert_eq!(m.report().state, SyncState::Online);

    // It stays there (no flapping back to the first); a healthy frame starts a new round:
    // losing this one tries the third at once.
    let out = m.handle(lost("gone"), at);
    assert_eq!(uses(&out), Some(2));
    assert!(has(&out, |i| *i == Instruction::Connect));
}

#[test]
fn one_address_never_rotates() {
    let t0 = Instant::now();
    let mut m = open_on_one_of(1, 3, t0);
    let out = m.handle(lost("refused"), t0);
    assert_eq!(uses(&out), None);
    assert!(!has(&out, |i| *i == Instruction::Connect));
    assert!(wake(&out) > t0);
    // An unreachable server on a send is a failed send, as it always was.
    let a = Uuid::from_u128(1);
    let t1 = wake(&out);
    let out = m.handle(Event::Tick, t1);
    assert_eq!(out[0], Instruction::Connect);
    m.handle(Event::Connected, t1);
    m.handle(welcome(3), t1);
    m.handle(Event::OutboxHead(Some(a)), t1);
    let out = m.handle(
        Event::MutationDone {
            mutation_id: a,
            result: Sent::Unreachable("refused".into()),
        },
        t1,
    );
    assert_eq!(uses(&out), None);
    assert!(!has(&out, |i| *i == Instruction::Close));
}

#[test]
fn a_send_nobody_answers_fails_over_and_replays_the_same_mutation() {
    let t0 = Instant::now();
    let mut m = open_on_one_of(2, 5, t0);
    let a = Uuid::from_u128(0xa);
    let out = m.handle(Event::OutboxHead(Some(a)), t0);
    assert!(has(&out, |i| *i == Instruction::Send { mutation_id: a }));
    let out = m.handle(
        Event::MutationDone {
            mutation_id: a,
            result: Sent::Unreachable("connection refused".into()),
        },
        t0,
    );
    assert_eq!(out[0], Instruction::Close, "the feed there is left too");
    assert_eq!(uses(&out), Some(1));
    assert!(has(&out, |i| *i == Instruction::Connect));
    assert!(!has(&out, |i| matches!(i, Instruction::Send { .. })));
    m.handle(Event::OutboxHead(Some(a)), t0);
    let out = m.handle(Event::Connected, t0);
    assert_eq!(out[0], Instruction::SendHello { cursor: 5 });
    // Welcomed at the next address: the same mutation goes again, at once.
    let out = m.handle(welcome(5), t0);
    assert!(
        has(&out, |i| *i == Instruction::Send { mutation_id: a }),
        "{out:?}"
    );
}

#[test]
fn a_snapshot_that_fails_is_fetched_from_the_next_address() {
    let t0 = Instant::now();
    let mut m = machine(None).with_servers(2, 1);
    assert_eq!(m.server(), 1);
    assert_eq!(m.start(t0)[0], Instruction::FetchSnapshot);
    let out = m.handle(
        Event::SnapshotFailed {
            error: "refused".into(),
            expired: false,
        },
        t0,
    );
    assert_eq!(uses(&out), Some(0));
    assert_eq!(out[1], Instruction::FetchSnapshot, "{out:?}");
    // An expired session is the same everywhere: no rotation, it waits for the app.
    let out = m.handle(
        Event::SnapshotFailed {
            error: "unauthorized".into(),
            expired: true,
        },
        t0,
    );
    assert_eq!(uses(&out), None);
    assert!(m.report().session_expired);
}

#[test]
fn a_silent_server_is_left_for_the_next_address_after_dead_after() {
    let t0 = Instant::now();
    let mut m = open_on_one_of(2, 4, t0);
    assert_eq!(uses(&m.handle(Event::Tick, t0 + DEAD / 2)), None);
    let out = m.handle(Event::Tick, t0 + DEAD);
    assert_eq!(out[0], Instruction::Close);
    assert_eq!(uses(&out), Some(1));
    assert!(has(&out, |i| *i == Instruction::Connect));
    // Connecting that hangs is given up on after dead_after too: a full round, backoff.
    let out = m.handle(Event::Tick, t0 + DEAD * 2);
    assert_eq!(uses(&out), Some(0));
    assert!(!has(&out, |i| *i == Instruction::Connect));
    assert_eq!(m.cursor(), Some(4), "the cursor goes along");
}
