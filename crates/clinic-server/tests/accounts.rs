//! Accounts (issue 11): the first administrator made at the console (`clinic-server staff
//! add`, the server running or stopped), one-time passwords and password changes, the
//! administrators' HTTP API, and what disabling an account or changing its roles does to
//! its sessions and feeds. The real server on loopback (the real binary for the console),
//! the suite's store (SQLite files; PostgreSQL with `CLINIC_TEST_POSTGRES`; the console on a
//! stopped server's SQLite file); every wait is a poll or a read with a deadline, never a
//! sleep.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use chrono::{Days, Local, NaiveTime};
use clinic_protocol::rules::visible_to;
use clinic_protocol::wire::paths;
use clinic_protocol::{
    Change, ChangeOp, ClientFrame, ErrorCode, Mutation, MutationOutcome, NewBooking, Record,
    ResyncReason, Role, ServerFrame, Snapshot, Staff, PROTOCOL_VERSION,
};
use clinic_server::{AppState, Embedded};
use clinic_test_kit::process::ServerProcess;
use clinic_test_kit::{bookings, poll_until, Staffer, TestServer, TestStore, DEADLINE, PASSWORD};
use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

/// How soon a disabled account's open feed must have ended.
const DISABLED_WITHIN: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// HTTP, raw: the status and the JSON body, whatever they are.

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http.request(method, &url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status();
    let text = response.text().await.expect("a body");
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
    };
    (status, json)
}

/// A request of `who`'s session.
async fn api(
    who: &Staffer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call(
        who.http(),
        method,
        format!("{}{path}", who.server()),
        Some(&who.login.token),
        body,
    )
    .await
}

/// A sign-in, raw.
async fn sign_in(server: &str, username: &str, password: &str) -> (StatusCode, Value) {
    call(
        &reqwest::Client::new(),
        Method::POST,
        format!("{server}{}", paths::LOGIN),
        None,
        Some(json!({"username": username, "password": password})),
    )
    .await
}

/// An error answer's code.
fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or("<no code>")
}

/// Expects a refusal with this status and code.
#[track_caller]
fn refused((status, body): &(StatusCode, Value), want: ErrorCode) {
    assert_eq!(code(body), want.as_str(), "{status}: {body}");
    assert_eq!(status.as_u16(), want.http_status(), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a sentence for a person: {body}"
    );
}

fn staff_of(body: &Value) -> Staff {
    serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("a staff record: {e}: {body}"))
}

/// `username`'s account as the administrators' list has it.
async fn account(admin: &Staffer, username: &str) -> Staff {
    let (status, body) = api(admin, Method::GET, paths::STAFF, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["staff"]
        .as_array()
        .expect("a list")
        .iter()
        .map(staff_of)
        .find(|s| s.username == username)
        .unwrap_or_else(|| panic!("no account {username}"))
}

async fn patch(admin: &Staffer, who: &Staff, body: Value) -> (StatusCode, Value) {
    api(
        admin,
        Method::PATCH,
        &paths::staff_member(who.id),
        Some(body),
    )
    .await
}

// ---------------------------------------------------------------------------------------
// The feed.

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A feed of `token` from `cursor`, hello sent.
async fn feed(server: &str, token: &str, cursor: u64) -> Ws {
    let url = format!("{}{}", server.replace("http://", "ws://"), paths::FEED);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the feed opens");
    let hello = ClientFrame::Hello {
        protocol: PROTOCOL_VERSION,
        token: token.to_owned(),
        cursor,
    };
    ws.send(WsMessage::text(serde_json::to_string(&hello).unwrap()))
        .await
        .expect("the hello goes out");
    ws
}

/// The next frame, `None` once the feed has closed; within the deadline.
async fn frame(ws: &mut Ws) -> Option<ServerFrame> {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a frame in time");
        match msg {
            None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return None,
            Some(Ok(WsMessage::Text(text))) => {
                return Some(serde_json::from_str(text.as_str()).expect("a valid frame"))
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Reads the welcome and the catch-up, up to the first heartbeat; the changes read.
async fn caught_up(ws: &mut Ws) -> Vec<Change> {
    let mut changes = Vec::new();
    loop {
        match frame(ws).await {
            Some(ServerFrame::Welcome { .. }) => {}
            Some(ServerFrame::Changes { changes: c, .. }) => changes.extend(c),
            Some(ServerFrame::Heartbeat { .. }) => return changes,
            other => panic!("the feed ended while catching up: {other:?}"),
        }
    }
}

/// Reads past heartbeats and changes to the frame that ends the feed; the changes read.
async fn last_frame(ws: &mut Ws) -> (ServerFrame, Vec<Change>) {
    let mut changes = Vec::new();
    loop {
        match frame(ws).await {
            Some(ServerFrame::Heartbeat { .. }) => {}
            Some(ServerFrame::Changes { changes: c, .. }) => changes.extend(c),
            Some(last) => return (last, changes),
            None => panic!("the feed closed without a last frame"),
        }
    }
}

/// Reads the live feed until a change upserts `username`'s account; that account.
async fn staff_change(ws: &mut Ws, username: &str) -> Staff {
    loop {
        match frame(ws).await {
            Some(ServerFrame::Changes { changes, .. }) => {
                let found = changes.into_iter().find_map(|c| match c.op {
                    ChangeOp::Upsert {
                        record: Record::Staff(s),
                    } if s.username == username => Some(s),
                    _ => None,
                });
                if let Some(staff) = found {
                    return staff;
                }
            }
            Some(ServerFrame::Heartbeat { .. } | ServerFrame::Welcome { .. }) => {}
            other => panic!("the feed ended before {username}'s account changed: {other:?}"),
        }
    }
}

#[track_caller]
fn error_frame(frame: &ServerFrame, want: ErrorCode) {
    match frame {
        ServerFrame::Error { code, message } => {
            assert_eq!(*code, want, "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected an error frame {want:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The console.

/// Runs `clinic-server staff add ARGS --db DB`, with `stdin` on its stdin if given.
async fn staff_add(bin: &Path, db: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(bin);
    command
        .args(["staff", "add"])
        .args(args)
        .arg("--db")
        .arg(db)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("run clinic-server staff add");
    let mut input = child.stdin.take().expect("its stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .await
        .expect("write its stdin");
    drop(input);
    tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("staff add ends in time")
        .expect("its output")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The one-time password `staff add` printed.
#[track_caller]
fn printed_password(out: &Output) -> String {
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("One-time password: "))
        .unwrap_or_else(|| panic!("no one-time password in {stdout}"))
        .trim()
        .to_owned()
}

#[track_caller]
fn failed_with(out: &Output, code: &str) {
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a refusal: {}",
        text(&out.stdout)
    );
    assert!(stderr.contains(code), "expected {code} in: {stderr}");
}

fn admin_socket(db: &Path) -> std::path::PathBuf {
    clinic_server::admin::socket_path(db)
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn a_server_without_staff_tells_every_sign_in_how_to_make_the_first_admin() {
    let store = TestStore::fresh().await;
    let state = AppState::open(store.config()).await.unwrap();
    let server = Embedded::spawn(([127, 0, 0, 1], 0).into(), state)
        .await
        .unwrap();
    let answer = sign_in(&server.url(), "anyone", "anything at all").await;
    refused(&answer, ErrorCode::NoStaff);
    let message = answer.1["message"].as_str().unwrap();
    assert!(
        message.contains("clinic-server staff add --username")
            && message.contains("--name")
            && message.contains("--roles admin"),
        "{message}"
    );
}

#[tokio::test]
async fn staff_add_makes_accounts_through_a_running_server_and_into_a_stopped_ones_database() {
    let mut server = ServerProcess::start_empty().await;
    let (bin, db) = (server.bin().to_path_buf(), server.db_path());
    let url = server.url();
    poll_until("the start-up hint in the server's log", || {
        let log = server.log_tail(100);
        async move {
            (log.contains("no staff accounts yet") && log.contains("--roles admin")).then_some(())
        }
    })
    .await;
    refused(
        &sign_in(&url, "boss", "whatever it is").await,
        ErrorCode::NoStaff,
    );

    // Running: the server makes the account itself, on its socket (0600, its user only).
    {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let socket = std::fs::metadata(admin_socket(&db)).expect("the admin socket");
        assert!(socket.file_type().is_socket());
        assert_eq!(socket.permissions().mode() & 0o777, 0o600);
    }
    let out = staff_add(
        &bin,
        &db,
        &[
            "--username",
            "boss",
            "--name",
            "Clinic Boss",
            "--roles",
            "admin",
        ],
        None,
    )
    .await;
    let one_time = printed_password(&out);
    assert!(
        text(&out.stdout).contains("by the running server"),
        "{}",
        text(&out.stdout)
    );
    assert!(one_time.chars().count() >= clinic_protocol::wire::MIN_PASSWORD_CHARS);

    // No restart: the running server knows the account at once.
    let (status, login) = sign_in(&url, "boss", &one_time).await;
    assert_eq!(status, StatusCode::OK, "{login}");
    assert_eq!(login["must_change_password"], json!(true));
    let boss: Staffer =
        Staffer::login_password(reqwest::Client::new(), &url, "boss", &one_time).await;
    assert!(boss.login.must_change_password);
    refused(
        &api(&boss, Method::GET, paths::SNAPSHOT, None).await,
        ErrorCode::PasswordChangeRequired,
    );
    let (status, _) = api(
        &boss,
        Method::POST,
        paths::PASSWORD,
        Some(json!({"current": one_time, "new": "boss's own passphrase"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let before = boss.snapshot().await;
    assert_eq!(before.user.roles, vec![Role::Admin]);
    let mut boss_feed = feed(&url, &boss.login.token, before.seq).await;
    caught_up(&mut boss_feed).await;

    // A password on stdin: checked like any new password, then used as given.
    failed_with(
        &staff_add(
            &bin,
            &db,
            &[
                "--username",
                "kim",
                "--name",
                "Dr. Jun Kim",
                "--roles",
                "therapist",
                "--password-stdin",
            ],
            Some("short\n"),
        )
        .await,
        "password_too_short",
    );
    let out = staff_add(
        &bin,
        &db,
        &[
            "--username",
            "kim",
            "--name",
            "Dr. Jun Kim",
            "--roles",
            "therapist,driver",
            "--password-stdin",
        ],
        Some("kim's long password\n"),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("One-time password"));
    // The account is in the change log: it reaches the administrator's feed, live.
    let kim = staff_change(&mut boss_feed, "kim").await;
    assert_eq!(kim.roles, vec![Role::Therapist, Role::Driver]);
    assert!(!kim.must_change_password && !kim.disabled);
    let (status, login) = sign_in(&url, "kim", "kim's long password").await;
    assert_eq!(status, StatusCode::OK, "{login}");
    assert!(login.get("must_change_password").is_none(), "{login}");

    // Refusals, each with its code.
    failed_with(
        &staff_add(
            &bin,
            &db,
            &[
                "--username",
                "kim",
                "--name",
                "Kim Again",
                "--roles",
                "driver",
            ],
            None,
        )
        .await,
        "username_taken",
    );
    let out = staff_add(
        &bin,
        &db,
        &["--username", "nell", "--name", "Nell", "--roles", "nurse"],
        None,
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("roles are"),
        "{}",
        text(&out.stderr)
    );

    // A second server on the same database is refused: nobody writes behind the first.
    let second = tokio::process::Command::new(&bin)
        .arg("--db")
        .arg(&db)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let second = tokio::time::timeout(DEADLINE, second)
        .await
        .expect("the second server gives up at once")
        .expect("its output");
    assert!(!second.status.success());
    assert!(
        text(&second.stderr).contains("in use"),
        "{}",
        text(&second.stderr)
    );

    // Stopped: the socket is gone, and the command writes the database itself.
    server.terminate().await;
    assert!(!admin_socket(&db).exists(), "removed at shutdown");
    let out = staff_add(
        &bin,
        &db,
        &[
            "--username",
            "dan",
            "--name",
            "Dan Cole",
            "--roles",
            "driver",
        ],
        None,
    )
    .await;
    let dans = printed_password(&out);
    assert!(
        text(&out.stdout).contains("in the database"),
        "{}",
        text(&out.stdout)
    );
    server.restart().await;
    let (status, login) = sign_in(&url, "dan", &dans).await;
    assert_eq!(status, StatusCode::OK, "{login}");
    assert_eq!(login["must_change_password"], json!(true));
    // Through the normal write path: the change log has dan, so a feed resuming from
    // before carries him.
    let mut resumed = feed(&url, &boss.login.token, before.seq).await;
    let changes = caught_up(&mut resumed).await;
    assert!(
        changes.iter().any(|c| matches!(&c.op, ChangeOp::Upsert { record: Record::Staff(s) } if s.username == "dan")),
        "{changes:?}"
    );

    // Killed: its socket is left behind, and the command sees through it.
    server.kill().await;
    assert!(
        admin_socket(&db).exists(),
        "a killed server cleans nothing up"
    );
    let out = staff_add(
        &bin,
        &db,
        &[
            "--username",
            "lee",
            "--name",
            "Lee Park",
            "--roles",
            "driver",
        ],
        None,
    )
    .await;
    let lees = printed_password(&out);
    assert!(
        text(&out.stdout).contains("in the database"),
        "{}",
        text(&out.stdout)
    );
    server.restart().await;
    assert_eq!(sign_in(&url, "lee", &lees).await.0, StatusCode::OK);
    // And the restarted server listens again, for the next command.
    let out = staff_add(
        &bin,
        &db,
        &[
            "--username",
            "sam",
            "--name",
            "Sam Okafor",
            "--roles",
            "scheduler",
        ],
        None,
    )
    .await;
    assert!(
        text(&out.stdout).contains("by the running server"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test]
async fn a_one_time_password_opens_only_the_password_change_and_other_sessions_end_with_it() {
    let server = TestServer::start().await;
    let url = server.url();
    let admin = server.login("admin").await;
    let (status, made) = api(
        &admin,
        Method::POST,
        paths::STAFF,
        Some(json!({"username": "nova", "display_name": " Nova Reed ", "roles": ["operator"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let nova = staff_of(&made["staff"]);
    assert_eq!(nova.display_name, "Nova Reed");
    assert!(nova.must_change_password);
    let one_time = made["one_time_password"].as_str().unwrap().to_owned();

    let session = Staffer::login_password(reqwest::Client::new(), &url, "nova", &one_time).await;
    assert!(session.login.must_change_password);
    refused(
        &api(&session, Method::GET, paths::SNAPSHOT, None).await,
        ErrorCode::PasswordChangeRequired,
    );
    refused(
        &api(
            &session,
            Method::POST,
            paths::MUTATIONS,
            Some(json!({"mutation_id": Uuid::new_v4(), "mutation": {"op": "mark_read", "id": Uuid::new_v4()}})),
        )
        .await,
        ErrorCode::PasswordChangeRequired,
    );
    let mut refused_feed = feed(&url, &session.login.token, 0).await;
    let (last, changes) = last_frame(&mut refused_feed).await;
    error_frame(&last, ErrorCode::PasswordChangeRequired);
    assert!(changes.is_empty(), "nothing before the refusal");

    let change = |current: &str, new: &str| json!({"current": current, "new": new});
    refused(
        &api(
            &session,
            Method::POST,
            paths::PASSWORD,
            Some(change(&one_time, "too short")),
        )
        .await,
        ErrorCode::PasswordTooShort,
    );
    refused(
        &api(
            &session,
            Method::POST,
            paths::PASSWORD,
            Some(change("not the password", "nova's own words")),
        )
        .await,
        ErrorCode::WrongPassword,
    );
    refused(
        &api(
            &session,
            Method::POST,
            paths::PASSWORD,
            Some(change(&one_time, &one_time)),
        )
        .await,
        ErrorCode::InvalidValue,
    );
    let (status, body) = api(
        &session,
        Method::POST,
        paths::PASSWORD,
        Some(change(&one_time, "nova's own words")),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // The same session goes on, no longer limited; the one-time password is spent.
    assert_eq!(session.snapshot().await.user.username, "nova");
    assert!(!account(&admin, "nova").await.must_change_password);
    refused(
        &sign_in(&url, "nova", &one_time).await,
        ErrorCode::Unauthorized,
    );
    let (status, login) = sign_in(&url, "nova", "nova's own words").await;
    assert_eq!(status, StatusCode::OK);
    assert!(login.get("must_change_password").is_none(), "{login}");

    // A change of password ends the user's OTHER sessions, their feeds included.
    let here = server.login("olivia").await;
    let there = server.login("olivia").await;
    let mut there_feed = feed(&url, &there.login.token, there.snapshot().await.seq).await;
    caught_up(&mut there_feed).await;
    let (status, _) = api(
        &here,
        Method::POST,
        paths::PASSWORD,
        Some(change(PASSWORD, "olivia's new password")),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (last, _) = last_frame(&mut there_feed).await;
    error_frame(&last, ErrorCode::Unauthorized);
    refused(
        &api(&there, Method::GET, paths::SNAPSHOT, None).await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(here.snapshot().await.user.username, "olivia");
}

#[tokio::test]
async fn only_administrators_manage_accounts_and_every_refusal_has_its_code() {
    let server = TestServer::start().await;
    let admin = server.login("admin").await;
    let olivia = account(&admin, "olivia").await;
    for username in ["olivia", "maria", "reyes", "dan", "sam"] {
        let user = server.login(username).await;
        refused(
            &api(&user, Method::GET, paths::STAFF, None).await,
            ErrorCode::Forbidden,
        );
        refused(
            &api(
                &user,
                Method::POST,
                paths::STAFF,
                Some(json!({"username": "x", "display_name": "X", "roles": ["admin"]})),
            )
            .await,
            ErrorCode::Forbidden,
        );
        refused(
            &api(
                &user,
                Method::PATCH,
                &paths::staff_member(olivia.id),
                Some(json!({"disabled": true, "version": olivia.version})),
            )
            .await,
            ErrorCode::Forbidden,
        );
        refused(
            &api(&user, Method::POST, &paths::staff_password(olivia.id), None).await,
            ErrorCode::Forbidden,
        );
    }
    refused(
        &call(
            &reqwest::Client::new(),
            Method::GET,
            format!("{}{}", server.url(), paths::STAFF),
            None,
            None,
        )
        .await,
        ErrorCode::Unauthorized,
    );
    assert!(
        !account(&admin, "olivia").await.disabled,
        "nothing was changed"
    );

    // The list: every account, by username.
    let (status, list) = api(&admin, Method::GET, paths::STAFF, None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["staff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["username"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    assert!(names.len() >= 8 && names.contains(&"admin"));
    assert_eq!(list["seq"], json!(server.state().head().await));

    // What a new account may be.
    let new = |username: &str, name: &str, roles: Value| json!({"username": username, "display_name": name, "roles": roles});
    for (body, want) in [
        (
            new("Bad Name", "Bad", json!(["driver"])),
            ErrorCode::InvalidValue,
        ),
        (
            new("blank", "   ", json!(["driver"])),
            ErrorCode::InvalidValue,
        ),
        (
            new("noroles", "No Roles", json!([])),
            ErrorCode::InvalidValue,
        ),
        (
            new("nurse", "Nurse", json!(["nurse"])),
            ErrorCode::Malformed,
        ),
        (
            new("olivia", "Another Olivia", json!(["driver"])),
            ErrorCode::UsernameTaken,
        ),
    ] {
        refused(
            &api(&admin, Method::POST, paths::STAFF, Some(body)).await,
            want,
        );
    }
    refused(
        &api(&admin, Method::POST, paths::STAFF, Some(json!({"username": "x", "display_name": "X", "roles": ["driver"], "password": "mine"}))).await,
        ErrorCode::Malformed,
    );

    // What a change may be.
    let me = account(&admin, "admin").await;
    for (path, body, want) in [
        (
            format!("{}/not-an-id", paths::STAFF),
            json!({"version": 1}),
            ErrorCode::NotFound,
        ),
        (
            paths::staff_member(Uuid::new_v4()),
            json!({"version": 1}),
            ErrorCode::NotFound,
        ),
        (
            paths::staff_member(olivia.id),
            json!({"disabled": true, "version": olivia.version + 7}),
            ErrorCode::Conflict,
        ),
        (
            paths::staff_member(olivia.id),
            json!({"roles": [], "version": olivia.version}),
            ErrorCode::InvalidValue,
        ),
        // The clinic's only administrator cannot lock everyone out of account management.
        (
            paths::staff_member(me.id),
            json!({"disabled": true, "version": me.version}),
            ErrorCode::LastAdmin,
        ),
        (
            paths::staff_member(me.id),
            json!({"roles": ["operator"], "version": me.version}),
            ErrorCode::LastAdmin,
        ),
    ] {
        refused(&api(&admin, Method::PATCH, &path, Some(body)).await, want);
    }
    refused(
        &api(
            &admin,
            Method::POST,
            &paths::staff_password(Uuid::new_v4()),
            None,
        )
        .await,
        ErrorCode::NotFound,
    );
    // Nothing to change is no change: the same version.
    let (status, same) = patch(
        &admin,
        &olivia,
        json!({"display_name": olivia.display_name, "version": olivia.version}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(staff_of(&same), olivia);
}

#[tokio::test]
async fn a_disabled_account_loses_its_feed_within_a_second_and_cannot_sign_in() {
    let server = TestServer::start().await;
    let url = server.url();
    let admin = server.login("admin").await;
    let reyes = server.login("reyes").await;
    let mut admin_feed = feed(&url, &admin.login.token, admin.snapshot().await.seq).await;
    caught_up(&mut admin_feed).await;
    let mut reyes_feed = feed(&url, &reyes.login.token, reyes.snapshot().await.seq).await;
    caught_up(&mut reyes_feed).await;
    let account = account(&admin, "reyes").await;

    let asked = Instant::now();
    let (status, body) = patch(
        &admin,
        &account,
        json!({"disabled": true, "version": account.version}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let disabled = staff_of(&body);
    assert!(disabled.disabled);
    assert_eq!(disabled.version, account.version + 1);
    let (last, changes) = last_frame(&mut reyes_feed).await;
    let took = asked.elapsed();
    error_frame(&last, ErrorCode::AccountDisabled);
    assert!(
        took < DISABLED_WITHIN,
        "the feed ended {took:?} after the change was asked"
    );
    assert!(
        changes.is_empty(),
        "nothing more for a disabled account: {changes:?}"
    );
    assert!(
        frame(&mut reyes_feed).await.is_none(),
        "and the feed closes"
    );

    // Every administrator's feed carries the change.
    assert_eq!(staff_change(&mut admin_feed, "reyes").await, disabled);

    // Told apart from a sign-out everywhere: sign-in, the old token, a new feed.
    refused(
        &sign_in(&url, "reyes", PASSWORD).await,
        ErrorCode::AccountDisabled,
    );
    refused(
        &sign_in(&url, "reyes", "a wrong password").await,
        ErrorCode::Unauthorized,
    );
    refused(
        &api(&reyes, Method::GET, paths::SNAPSHOT, None).await,
        ErrorCode::AccountDisabled,
    );
    let mut again = feed(&url, &reyes.login.token, 0).await;
    error_frame(&last_frame(&mut again).await.0, ErrorCode::AccountDisabled);

    // Nobody is given work under a disabled account.
    let olivia = server.login("olivia").await;
    let booking = NewBooking {
        id: Uuid::new_v4(),
        client_name: "Ana Lopez".into(),
        client_phone: "555-0101".into(),
        address: "Main St 1".into(),
        service: "Massage".into(),
        date: Local::now().date_naive() + Days::new(3),
        start: NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
        end: NaiveTime::from_hms_opt(11, 0, 0).unwrap(),
        therapist_id: Some(disabled.id),
        driver_id: None,
        notes: String::new(),
    };
    match olivia.mutate(Mutation::CreateBooking { booking }).await {
        MutationOutcome::Rejected { code, message, .. } => {
            assert_eq!(code, ErrorCode::InvalidValue);
            assert!(message.contains("disabled"), "{message}");
        }
        other => panic!("a booking for a disabled therapist: {other:?}"),
    }

    // Enabled again, the account signs in as before.
    let (status, _) = patch(
        &admin,
        &disabled,
        json!({"disabled": false, "version": disabled.version}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sign_in(&url, "reyes", PASSWORD).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_role_change_resyncs_the_users_feed_and_their_snapshot_follows_the_new_roles() {
    let server = TestServer::start().await;
    let url = server.url();
    let admin = server.login("admin").await;
    let olivia = server.login("olivia").await;
    let before = olivia.snapshot().await;
    let seen_before = bookings(&before);
    assert!(
        !seen_before.is_empty(),
        "an operator sees the clinic's bookings"
    );
    let mut olivia_feed = feed(&url, &olivia.login.token, before.seq).await;
    caught_up(&mut olivia_feed).await;

    let account = account(&admin, "olivia").await;
    let (status, body) = patch(
        &admin,
        &account,
        json!({"roles": ["driver"], "version": account.version}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (last, changes) = last_frame(&mut olivia_feed).await;
    match last {
        ServerFrame::Resync { reason, .. } => assert_eq!(reason, ResyncReason::AccountChanged),
        other => panic!("expected a resync, got {other:?}"),
    }
    assert!(
        changes.is_empty(),
        "nothing sent under the old roles: {changes:?}"
    );

    // The same session, judged by the new roles: what she may no longer see is gone.
    let after: Snapshot = olivia.snapshot().await;
    assert_eq!(after.user.roles, vec![Role::Driver]);
    assert!(after.seq > before.seq);
    let seen_after = bookings(&after);
    assert!(seen_after.len() < seen_before.len());
    for record in &after.records {
        assert!(visible_to(&after.user, record), "{record:?}");
    }
    // Her resumed feed goes on from the new snapshot.
    let mut resumed = feed(&url, &olivia.login.token, after.seq).await;
    caught_up(&mut resumed).await;

    // And what someone may newly see arrives: a therapist made operator sees every booking.
    let kim = server.login("kim").await;
    let kims_before = bookings(&kim.snapshot().await).len();
    let account = self::account(&admin, "kim").await;
    let (status, _) = patch(
        &admin,
        &account,
        json!({"roles": ["operator", "therapist"], "version": account.version}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let kims_after = kim.snapshot().await;
    assert_eq!(kims_after.user.roles, vec![Role::Operator, Role::Therapist]);
    assert_eq!(bookings(&kims_after).len(), seen_before.len());
    assert!(bookings(&kims_after).len() > kims_before);

    // A resumed feed that missed a change to its own account resyncs too: its copy was
    // filtered by the roles before it.
    let mut stale = feed(&url, &olivia.login.token, before.seq).await;
    match last_frame(&mut stale).await.0 {
        ServerFrame::Welcome { .. } => {
            // The welcome comes first; the resync right after it.
            match last_frame(&mut stale).await.0 {
                ServerFrame::Resync { reason, .. } => {
                    assert_eq!(reason, ResyncReason::AccountChanged);
                }
                other => panic!("expected a resync, got {other:?}"),
            }
        }
        other => panic!("expected a welcome, got {other:?}"),
    }
}

#[tokio::test]
async fn a_password_reset_ends_every_session_of_the_account_with_a_new_one_time_password() {
    let server = TestServer::start().await;
    let url = server.url();
    let admin = server.login("admin").await;
    let olivia = server.login("olivia").await;
    let mut admin_feed = feed(&url, &admin.login.token, admin.snapshot().await.seq).await;
    caught_up(&mut admin_feed).await;
    let mut olivia_feed = feed(&url, &olivia.login.token, olivia.snapshot().await.seq).await;
    caught_up(&mut olivia_feed).await;

    let id = olivia.login.user.id;
    let (status, body) = api(&admin, Method::POST, &paths::staff_password(id), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reset = staff_of(&body["staff"]);
    assert!(reset.must_change_password);
    let one_time = body["one_time_password"].as_str().unwrap().to_owned();

    error_frame(
        &last_frame(&mut olivia_feed).await.0,
        ErrorCode::Unauthorized,
    );
    refused(
        &api(&olivia, Method::GET, paths::SNAPSHOT, None).await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(staff_change(&mut admin_feed, "olivia").await, reset);
    refused(
        &sign_in(&url, "olivia", PASSWORD).await,
        ErrorCode::Unauthorized,
    );
    let (status, login) = sign_in(&url, "olivia", &one_time).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(login["must_change_password"], json!(true));
}
