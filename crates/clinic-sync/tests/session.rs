//! A session the server ends, and signing in again, against the real server (loopback,
//! real SQLite, real feed): the engine says the session ended, keeps what is queued, and
//! after `sign_in_again` syncs on from the same cache, sending the queue once, with its
//! subscribers and status untouched. The status lists what waits and names the server.

use std::time::Duration;

use chrono::{Local, NaiveTime};
use clinic_protocol::{Mutation, NewSlot, Record};
use clinic_sync::{CacheEvent, Engine, EngineConfig, SyncError, SyncState, Timing};
use clinic_test_kit::{eventually, TestServer};
use uuid::Uuid;

fn config(url: &str, data: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(url, data);
    c.timing = Timing {
        dead_after: Duration::from_secs(3),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
    };
    c.request_timeout = Duration::from_secs(3);
    c
}

fn code_of<T: std::fmt::Debug>(result: Result<T, SyncError>) -> String {
    match result {
        Err(e) => e.code().to_owned(),
        Ok(v) => panic!("expected a refusal, got {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_again_sends_what_was_queued_once_and_keeps_everything_else() {
    let server = TestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let sam = Engine::login(config(&server.url(), data.path()), "sam", "demo")
        .await
        .unwrap();
    let mut events = sam.subscribe();
    let mut status = sam.status();
    eventually("online", || {
        let s = status.borrow_and_update().state;
        async move { s == SyncState::Online }
    })
    .await;
    let version = status.borrow().server_version.clone().unwrap_or_default();
    assert!(
        version.starts_with("clinic-server/"),
        "the server names itself in the feed's handshake: {version:?}"
    );

    // An administrator resets Sam's password: every session of his ends.
    let admin = server.login("admin").await;
    let sam_id = server.snapshot("sam").await.user.id;
    let reset: serde_json::Value = admin
        .http()
        .post(format!(
            "{}{}",
            server.url(),
            clinic_protocol::wire::paths::staff_password(sam_id)
        ))
        .bearer_auth(&admin.login.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let one_time = reset["one_time_password"]
        .as_str()
        .expect("a one-time password")
        .to_owned();
    eventually("the engine is told the session ended", || {
        let s = status.borrow_and_update().clone();
        async move { s.session_expired && s.state == SyncState::Offline }
    })
    .await;

    // Queued meanwhile, from a window: listed in the status with its tag.
    let reyes = server.snapshot("reyes").await.user.id;
    let slot = Uuid::new_v4();
    let queued = sam
        .submit_tagged(
            Mutation::CreateSlot {
                slot: NewSlot {
                    id: slot,
                    staff_id: reyes,
                    date: Local::now().date_naive(),
                    start: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
                    end: NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
                    note: "queued while signed out".into(),
                },
            },
            "scheduling-1",
        )
        .await
        .unwrap();
    {
        let s = sam.status().borrow().clone();
        assert_eq!(s.pending, 1);
        assert_eq!(s.outbox.len(), 1);
        assert_eq!(s.outbox[0].mutation_id, queued);
        assert_eq!(s.outbox[0].tag.as_deref(), Some("scheduling-1"));
    }

    // A wrong password and the bare one-time password are refused, and nothing changes.
    assert_eq!(
        code_of(sam.sign_in_again("not it", None).await),
        "unauthorized"
    );
    assert_eq!(
        code_of(sam.sign_in_again(&one_time, None).await),
        "password_change_required"
    );
    assert!(sam.status().borrow().session_expired);

    let renewed = sam
        .sign_in_again(&one_time, Some("a long new password"))
        .await
        .unwrap();
    // The old handle has handed its driver over: a second sign-in through it is refused.
    assert_eq!(
        code_of(sam.sign_in_again("a long new password", None).await),
        "invalid_value"
    );

    // A second send of the queued slot would be refused (the slot exists): the server
    // keeping one copy cannot tell that apart, so no refusal of it may arrive either.
    let mut confirmed = false;
    let mut refused = Vec::new();
    let mut hear = |events: &mut clinic_sync::Subscription| {
        while let Some(event) = events.try_recv() {
            match event {
                CacheEvent::Confirmed { mutation_id, .. } if mutation_id == queued => {
                    confirmed = true;
                }
                CacheEvent::Rejected(r) if r.mutation_id == queued => refused.push(r),
                _ => {}
            }
        }
        confirmed
    };
    eventually(
        "the queued slot is confirmed to the same subscriber",
        || {
            let done = hear(&mut events);
            async move { done }
        },
    )
    .await;
    eventually("online again, nothing waiting", || {
        let s = status.borrow_and_update().clone();
        async move { s.state == SyncState::Online && !s.session_expired && s.outbox.is_empty() }
    })
    .await;
    hear(&mut events);
    assert!(
        refused.is_empty(),
        "the queued slot was sent again: {refused:?}"
    );
    let landed = server
        .snapshot("reyes")
        .await
        .records
        .iter()
        .filter(|r| matches!(r, Record::Slot(s) if s.id == slot))
        .count();
    assert_eq!(landed, 1, "sent once");

    // The new session is the one kept for the next start, even when the replaced handle
    // signs out late (as a renewal that lost a race with signing out would): only its own
    // session may be forgotten.
    assert!(sam.same(&sam.clone()) && !sam.same(&renewed));
    renewed.shutdown().await;
    sam.logout().await.unwrap();
    drop((renewed, sam));
    let resumed = Engine::resume(config(&server.url(), data.path()))
        .await
        .unwrap();
    let mut status = resumed.status();
    eventually("the resumed session syncs with the new token", || {
        let s = status.borrow_and_update().clone();
        async move { s.state == SyncState::Online && !s.session_expired }
    })
    .await;
    resumed.shutdown().await;
}
