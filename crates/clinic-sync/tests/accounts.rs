//! The engine's account calls against a real server (loopback, real SQLite, real feed):
//! an administrator makes, changes and resets accounts over HTTP and sees each change come
//! back through the feed into the cache; refusals keep the server's stable code; a change
//! of one's own password keeps this engine signed in; with the network cut, nothing is
//! changed and the failure says the server cannot be reached.

use std::time::Duration;

use clinic_protocol::{ErrorCode, NewStaff, Role, Staff, StaffPatch};
use clinic_sync::{Engine, EngineConfig, SyncError, Timing};
use clinic_test_kit::{eventually, Proxy, TestServer};

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

async fn cached(engine: &Engine, username: &str) -> Option<Staff> {
    engine
        .queries()
        .staff()
        .await
        .expect("the cache answers")
        .into_iter()
        .find(|s| s.username == username)
}

fn refused_with(result: Result<impl std::fmt::Debug, SyncError>, want: ErrorCode) {
    match result {
        Err(SyncError::Refused { code, message }) => {
            assert_eq!(code, want, "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected {want:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_manages_accounts_and_sees_them_through_the_feed() {
    let server = TestServer::start().await;
    let link = Proxy::start(server.addr()).await;
    let data = tempfile::tempdir().expect("tempdir");
    let admin = Engine::login(config(&link.url(), data.path()), "admin", "demo")
        .await
        .expect("admin signs in");

    let new = NewStaff {
        username: "nova".into(),
        display_name: "Nova Reed".into(),
        roles: vec![Role::Operator, Role::Therapist],
    };
    let issued = admin.create_staff(&new).await.expect("nova is made");
    assert!(issued.staff.must_change_password);
    assert!(issued.one_time_password.chars().count() >= 10);
    eventually("nova reaches the cache through the feed", || async {
        cached(&admin, "nova")
            .await
            .is_some_and(|s| s.must_change_password)
    })
    .await;
    refused_with(admin.create_staff(&new).await, ErrorCode::UsernameTaken);

    // Roles, on the version the cache holds; the same version again is stale.
    let nova = cached(&admin, "nova").await.expect("nova");
    let patch = StaffPatch {
        display_name: None,
        roles: Some(vec![Role::Therapist]),
        disabled: None,
        version: nova.version,
    };
    let changed = admin.change_staff(nova.id, &patch).await.expect("roles");
    assert_eq!(changed.roles, [Role::Therapist]);
    // (The server calls an account changed meanwhile a conflict.)
    refused_with(
        admin.change_staff(nova.id, &patch).await,
        ErrorCode::Conflict,
    );
    eventually("nova's new roles reach the cache", || async {
        cached(&admin, "nova")
            .await
            .is_some_and(|s| s.roles == [Role::Therapist])
    })
    .await;

    // Disabled, and a new one-time password: both show in the cache.
    let disable = StaffPatch {
        roles: None,
        disabled: Some(true),
        version: changed.version,
        display_name: None,
    };
    let disabled = admin.change_staff(nova.id, &disable).await.expect("off");
    assert!(disabled.disabled);
    let reset = admin.reset_password(nova.id).await.expect("reset");
    assert_ne!(reset.one_time_password, issued.one_time_password);
    eventually("nova disabled in the cache", || async {
        cached(&admin, "nova").await.is_some_and(|s| s.disabled)
    })
    .await;

    // The last enabled administrator cannot be disabled.
    let me = admin.user();
    refused_with(
        admin
            .change_staff(
                me.id,
                &StaffPatch {
                    roles: None,
                    disabled: Some(true),
                    version: cached(&admin, "admin").await.expect("admin").version,
                    display_name: None,
                },
            )
            .await,
        ErrorCode::LastAdmin,
    );

    // Not an administrator: forbidden.
    let other = tempfile::tempdir().expect("tempdir");
    let olivia = Engine::login(config(&server.url(), other.path()), "olivia", "demo")
        .await
        .expect("olivia signs in");
    refused_with(olivia.reset_password(nova.id).await, ErrorCode::Forbidden);

    // Offline: nothing changes, and the failure says the server cannot be reached.
    link.cut();
    let offline = admin
        .create_staff(&NewStaff {
            username: "otto".into(),
            display_name: "Otto".into(),
            roles: vec![Role::Driver],
        })
        .await;
    assert!(
        matches!(offline, Err(SyncError::Unreachable(_))),
        "{offline:?}"
    );
    link.restore();
    assert!(!server
        .login("admin")
        .await
        .snapshot()
        .await
        .records
        .into_iter()
        .filter_map(clinic_protocol::Record::into_staff)
        .any(|s| s.username == "otto"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_ones_password_keeps_this_engine_signed_in() {
    let server = TestServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let olivia = Engine::login(config(&server.url(), data.path()), "olivia", "demo")
        .await
        .expect("olivia signs in");
    // Another session of hers, which the change ends.
    let elsewhere = server.login("olivia").await;

    refused_with(
        olivia
            .change_password("not it", "a long new password")
            .await,
        ErrorCode::WrongPassword,
    );
    refused_with(
        olivia.change_password("demo", "short").await,
        ErrorCode::PasswordTooShort,
    );
    olivia
        .change_password("demo", "a long new password")
        .await
        .expect("changed");

    // The other session is over; this engine goes on syncing with its token.
    let status = elsewhere
        .http()
        .get(format!(
            "{}{}",
            server.url(),
            clinic_protocol::wire::paths::SNAPSHOT
        ))
        .bearer_auth(&elsewhere.login.token)
        .send()
        .await
        .expect("a snapshot request")
        .status();
    assert_eq!(status.as_u16(), 401);
    // A change of hers still goes through: it reaches Maria on the server, which only a
    // token the server still honours can do.
    let maria = cached_id(&olivia, "maria").await;
    let id = uuid::Uuid::new_v4();
    olivia
        .submit(clinic_protocol::Mutation::SendMessage {
            message: clinic_protocol::NewMessage {
                id,
                recipient_id: maria,
                body: "still here".into(),
            },
        })
        .await
        .expect("queued");
    clinic_test_kit::poll_until("olivia's message to reach maria on the server", || async {
        server
            .snapshot("maria")
            .await
            .records
            .iter()
            .any(|r| matches!(r, clinic_protocol::Record::Message(m) if m.id == id))
            .then_some(())
    })
    .await;
    // And this engine was never told its session ended.
    let s = olivia.status().borrow().clone();
    assert!(!s.session_expired && !s.account_disabled, "{s:?}");
}

async fn cached_id(engine: &Engine, username: &str) -> clinic_protocol::Id {
    cached(engine, username).await.expect(username).id
}
