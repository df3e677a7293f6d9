//! Watching a server: `/readyz` and `/livez`, `/metrics` and the JSON log, against the real
//! server on loopback (the test kit's, or the `clinic-server` binary for its log), over
//! real HTTP and WebSockets. Waits are polls with a deadline, never sleeps.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{Local, NaiveTime};
use clinic_protocol::wire::paths;
use clinic_protocol::{
    ApiError, ClientFrame, ErrorCode, LoginRequest, Mutation, MutationOutcome, NewBooking,
    ResyncReason, ServerFrame, PROTOCOL_VERSION,
};
use clinic_test_kit::{poll_until, staff_id, Staffer, TestServer, TestStore, DEADLINE};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `who`'s feed at `cursor` and says hello.
async fn feed(who: &Staffer, cursor: u64) -> Ws {
    let url = format!(
        "{}{}",
        who.server().replace("http://", "ws://"),
        paths::FEED
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = ClientFrame::Hello {
        protocol: PROTOCOL_VERSION,
        token: who.login.token.clone(),
        cursor,
    };
    ws.send(Message::text(serde_json::to_string(&hello).unwrap()))
        .await
        .unwrap();
    ws
}

/// The next frame on `ws` (`None` once it closes).
async fn frame(ws: &mut Ws) -> Option<ServerFrame> {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a frame in time")?;
        match msg.ok()? {
            Message::Text(t) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

fn booking(therapist: Uuid) -> NewBooking {
    NewBooking {
        id: Uuid::new_v4(),
        client_name: "Watched Client".into(),
        client_phone: "555".into(),
        address: "Somewhere 1".into(),
        service: "Massage".into(),
        date: Local::now().date_naive(),
        start: NaiveTime::from_hms_opt(15, 0, 0).unwrap(),
        end: NaiveTime::from_hms_opt(15, 45, 0).unwrap(),
        therapist_id: Some(therapist),
        driver_id: None,
        notes: String::new(),
    }
}

/// `/readyz`'s status and body.
async fn readyz(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let res = http.get(format!("{url}/readyz")).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn readyz_answers_ready_and_not_while_another_process_holds_the_write_lock() {
    // The lock taken below is the SQLite file's.
    let s = TestServer::start_sqlite().await;
    let http = reqwest::Client::new();

    let (status, body) = readyz(&http, &s.url()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["head"], s.state().head().await, "{body}");
    let live = http.get(format!("{}/livez", s.url())).send().await.unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(
        live.json::<Value>().await.unwrap(),
        serde_json::json!({"live": true})
    );

    // Another process (as a sqlite3 shell or a stuck backup tool would) takes the
    // database's write lock and keeps it: no write can be committed now.
    let options = SqliteConnectOptions::new().filename(s.db_path());
    let mut other = SqliteConnection::connect_with(&options).await.unwrap();
    let held = other.begin_with("BEGIN IMMEDIATE").await.unwrap();
    // The last answer is reused for up to a second, so poll; every answer is bounded.
    let body = poll_until("/readyz to say not ready", || {
        let http = http.clone();
        let url = s.url();
        async move {
            let asked = Instant::now();
            let (status, body) = readyz(&http, &url).await;
            // Under the 5 s SQLite would wait by itself: the probe gives up after 1 s.
            assert!(
                asked.elapsed() < Duration::from_secs(4),
                "/readyz took {:?}",
                asked.elapsed()
            );
            (status == 503).then_some(body)
        }
    })
    .await;
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["code"], "database_busy", "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );

    // A flood of probes meanwhile shares one check: all answered, promptly.
    let asked = Instant::now();
    let flood: Vec<_> = (0..50)
        .map(|_| {
            let (http, url) = (http.clone(), s.url());
            tokio::spawn(async move { readyz(&http, &url).await.0 })
        })
        .collect();
    for probe in flood {
        assert_eq!(probe.await.unwrap(), 503);
    }
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "50 probes took {:?}",
        asked.elapsed()
    );

    held.rollback().await.unwrap();
    poll_until("/readyz to say ready again", || {
        let (http, url) = (http.clone(), s.url());
        async move { (readyz(&http, &url).await.0 == 200).then_some(()) }
    })
    .await;
    // The server took no harm: a write commits.
    let olivia = s.login("olivia").await;
    let reyes = staff_id(&olivia.snapshot().await, "reyes");
    let outcome = olivia
        .mutate(Mutation::CreateBooking {
            booking: booking(reyes),
        })
        .await;
    assert!(
        matches!(outcome, MutationOutcome::Applied { .. }),
        "{outcome:?}"
    );
}

/// A scrape of `/metrics`, checked line by line: every sample by its series
/// (`name{labels}`).
#[derive(Debug)]
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        *self
            .0
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in {:#?}", self.0))
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses the text exposition format (0.0.4) strictly enough to catch what Prometheus
/// would refuse: `# HELP`/`# TYPE` lines before their samples, one type per family, valid
/// names and quoted label values, numeric values, counters ending in `_total`, histograms
/// cumulative with `+Inf` equal to `_count`.
fn parse(text: &str) -> Scrape {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = BTreeMap::new();
    let mut buckets: HashMap<String, Vec<f64>> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("# HELP name text");
            assert!(is_name(name) && !help.is_empty(), "{line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            assert!(is_name(name), "{line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{name} declared twice"
            );
            continue;
        }
        assert!(
            !line.is_empty() && !line.starts_with('#'),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("a sample: series value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(value.is_finite() && value >= 0.0, "{line}");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect("labels end with }")),
            None => (series, ""),
        };
        assert!(is_name(name), "{line}");
        let mut le = None;
        for label in labels.split(',').filter(|l| !l.is_empty()) {
            let (key, quoted) = label.split_once('=').expect("label=\"value\"");
            assert!(is_name(key), "{line}");
            let inner = quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .unwrap_or_else(|| panic!("unquoted label value in {line}"));
            assert!(!inner.contains(['"', '\\', '\n']), "{line}");
            if key == "le" {
                le = Some(inner.to_owned());
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
            })
            .unwrap_or(name);
        let kind = types
            .get(family)
            .unwrap_or_else(|| panic!("{name} has no # TYPE before it"));
        if kind == "counter" {
            assert!(name.ends_with("_total"), "counter {name}");
        }
        if name.ends_with("_bucket") {
            let le = le.expect("a bucket has le");
            let seen = buckets.entry(family.to_owned()).or_default();
            assert!(
                seen.last().is_none_or(|last| *last <= value),
                "not cumulative: {line}"
            );
            seen.push(value);
            if le == "+Inf" {
                samples.insert(format!("{family}_inf"), value);
            }
        }
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "{series} twice"
        );
    }
    for (family, kind) in &types {
        if kind == "histogram" {
            assert_eq!(
                samples.get(&format!("{family}_inf")),
                samples.get(&format!("{family}_count")),
                "{family}: +Inf bucket and count"
            );
        }
    }
    Scrape(samples)
}

async fn scrape(http: &reqwest::Client, url: &str) -> Scrape {
    let res = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let kind = res.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    parse(&res.text().await.unwrap())
}

#[tokio::test]
async fn metrics_parse_and_move_with_sign_ins_mutations_and_feeds() {
    let s = TestServer::start().await;
    let http = reqwest::Client::new();
    let url = s.url();
    let before = scrape(&http, &url).await;
    assert_eq!(before.get("clinic_feeds_open"), 0.0);
    assert_eq!(before.get("clinic_head_seq"), s.state().head().await as f64);

    // Sign-ins: one right, one wrong.
    let olivia = s.login("olivia").await;
    let wrong = http
        .post(format!("{url}{}", paths::LOGIN))
        .json(&LoginRequest {
            username: "olivia".into(),
            password: "not the password".into(),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // Mutations: applied, rejected by the rules, refused before the rules.
    let reyes = staff_id(&olivia.snapshot().await, "reyes");
    let new = booking(reyes);
    let outcome = olivia
        .mutate(Mutation::CreateBooking {
            booking: new.clone(),
        })
        .await;
    assert!(
        matches!(outcome, MutationOutcome::Applied { .. }),
        "{outcome:?}"
    );
    let again = olivia
        .mutate(Mutation::CreateBooking { booking: new })
        .await;
    assert!(
        matches!(
            again,
            MutationOutcome::Rejected {
                code: ErrorCode::Conflict,
                ..
            }
        ),
        "{again:?}"
    );
    let anonymous = http
        .post(format!("{url}{}", paths::MUTATIONS))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.json::<ApiError>().await.unwrap().code,
        ErrorCode::Unauthorized
    );

    let after = scrape(&http, &url).await;
    let moved = |series: &str| after.get(series) - before.get(series);
    assert_eq!(moved("clinic_sign_ins_total{result=\"ok\"}"), 1.0);
    assert_eq!(
        moved("clinic_sign_ins_total{result=\"wrong_credentials\"}"),
        1.0
    );
    assert_eq!(moved("clinic_mutations_total{outcome=\"applied\"}"), 1.0);
    assert_eq!(
        moved("clinic_mutations_total{outcome=\"rejected\",code=\"conflict\"}"),
        1.0
    );
    assert_eq!(
        moved("clinic_mutations_total{outcome=\"error\",code=\"unauthorized\"}"),
        1.0
    );
    // Each write of the two was a commit (the refusal's outcome is committed too).
    assert!(moved("clinic_commit_seconds_count") >= 2.0);
    assert!(after.get("clinic_commit_seconds_sum") > before.get("clinic_commit_seconds_sum"));
    assert_eq!(after.get("clinic_head_seq"), s.state().head().await as f64);
    // login, snapshot, 2 mutations and the first scrape: 2xx; wrong login, anonymous: 4xx.
    assert!(moved("clinic_http_responses_total{class=\"2xx\"}") >= 5.0);
    assert_eq!(moved("clinic_http_responses_total{class=\"4xx\"}"), 2.0);

    // A feed opens, carries a change live, closes.
    let head = s.state().head().await;
    let mut ws = feed(&olivia, head).await;
    assert!(matches!(
        frame(&mut ws).await,
        Some(ServerFrame::Welcome { .. })
    ));
    let open = poll_until("the feed to be counted", || {
        let http = http.clone();
        let url = url.clone();
        async move {
            let now = scrape(&http, &url).await;
            (now.get("clinic_feeds_open") == 1.0).then_some(now)
        }
    })
    .await;
    assert!(open.get("clinic_http_responses_total{class=\"1xx\"}") >= 1.0);
    let lag_before = open.get("clinic_feed_send_lag_seconds_count");
    olivia
        .mutate(Mutation::CreateBooking {
            booking: booking(reyes),
        })
        .await;
    loop {
        match frame(&mut ws).await.expect("the feed stays open") {
            ServerFrame::Changes { .. } => break,
            ServerFrame::Heartbeat { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Observed right after the frame went out, which may be a moment after it arrived.
    poll_until("the send lag to be observed", || {
        let http = http.clone();
        let url = url.clone();
        async move {
            let now = scrape(&http, &url).await;
            (now.get("clinic_feed_send_lag_seconds_count") > lag_before).then_some(())
        }
    })
    .await;
    ws.close(None).await.unwrap();
    drop(ws);
    poll_until("the feed to be counted out", || {
        let http = http.clone();
        let url = url.clone();
        async move { (scrape(&http, &url).await.get("clinic_feeds_open") == 0.0).then_some(()) }
    })
    .await;

    // A cursor from another history is told to resync, and counted before it is sent.
    let resyncs = scrape(&http, &url)
        .await
        .get("clinic_feed_resyncs_total{reason=\"cursor_ahead\"}");
    let mut ws = feed(&olivia, s.state().head().await + 1_000).await;
    assert!(matches!(
        frame(&mut ws).await,
        Some(ServerFrame::Resync {
            reason: ResyncReason::CursorAhead,
            ..
        })
    ));
    assert_eq!(
        scrape(&http, &url)
            .await
            .get("clinic_feed_resyncs_total{reason=\"cursor_ahead\"}"),
        resyncs + 1.0
    );
}

#[tokio::test]
async fn a_metrics_token_keeps_the_metrics_to_its_holder() {
    let s = TestServer::start_with(|c| c.metrics_token = Some("scrape-me".into())).await;
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", s.url());
    for token in [None, Some("wrong"), Some("scrape-me-not")] {
        let mut request = http.get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let res = request.send().await.unwrap();
        assert_eq!(res.status(), 401, "{token:?}");
        assert_eq!(
            res.json::<ApiError>().await.unwrap().code,
            ErrorCode::Unauthorized
        );
    }
    let res = http
        .get(&url)
        .bearer_auth("scrape-me")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    parse(&res.text().await.unwrap());
    // The probes stay open: a load balancer has no token.
    assert_eq!(readyz(&http, &s.url()).await.0, 200);
}

/// The `clinic-server` binary on a free loopback port, logging JSON into `log`.
struct Binary {
    child: tokio::process::Child,
    url: String,
}

impl Binary {
    async fn start(db: &str, log: &std::path::Path) -> Binary {
        // Free a moment ago; the server binds it itself.
        let addr: SocketAddr = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .unwrap();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_clinic-server"))
            .arg("--db")
            .arg(db)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--demo")
            .env("CLINIC_LOG_FORMAT", "json")
            // Requests at info; every WebSocket frame at trace (a hello carries a token).
            .env("RUST_LOG", "info,tungstenite=trace")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://{addr}");
        let http = reqwest::Client::new();
        poll_until("the server binary to answer", || {
            let request = http.get(format!("{url}{}", paths::HEALTHZ)).send();
            async move { request.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
        Binary { child, url }
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_requests_and_no_secrets() {
    let store = TestStore::fresh().await;
    let log = store.dir().join("server.log");
    let mut server = Binary::start(&store.db_arg(), &log).await;
    let http = reqwest::Client::new();

    let olivia = Staffer::login(&server.url, "olivia").await;
    let token = olivia.login.token.clone();
    // A client that puts things in the query: the request log leaves the query out.
    let res = http
        .get(format!(
            "{}{}?note=query-secret-42",
            server.url,
            paths::SNAPSHOT
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut ws = feed(&olivia, 0).await;
    // The server has read the hello (and logged it) once it welcomes.
    assert!(matches!(
        frame(&mut ws).await,
        Some(ServerFrame::Welcome { .. })
    ));
    // A request's line is written before its answer leaves: all are in the file now.
    server.child.kill().await.unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(&token), "a token in the log:\n{text}");
    assert!(
        !text.contains("query-secret-42"),
        "a query in the log:\n{text}"
    );
    let mut requests = Vec::new();
    let mut redacted = 0;
    for line in text.lines() {
        let event: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            event["timestamp"].is_string() && event["level"].is_string(),
            "{line}"
        );
        if line.contains("[redacted]") {
            redacted += 1;
        }
        if event["message"] == "answered" {
            requests.push(event);
        }
    }
    assert!(
        redacted >= 1,
        "the hello frame was logged, redacted:\n{text}"
    );
    let snapshot = requests
        .iter()
        .find(|e| e["span"]["path"] == paths::SNAPSHOT)
        .unwrap_or_else(|| panic!("no request line for the snapshot:\n{text}"));
    assert_eq!(snapshot["span"]["method"], "GET", "{snapshot}");
    assert_eq!(snapshot["status"], 200, "{snapshot}");
    assert!(snapshot["latency_us"].is_u64(), "{snapshot}");
    assert_eq!(snapshot["level"], "INFO", "{snapshot}");
    assert!(
        requests
            .iter()
            .any(|e| e["span"]["path"] == paths::LOGIN && e["status"] == 200),
        "{text}"
    );
    // Health probes are logged at debug level only: not at the default level.
    assert!(
        !requests.iter().any(|e| e["span"]["path"] == paths::HEALTHZ),
        "{text}"
    );
}
