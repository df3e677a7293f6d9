//! Encryption, end to end: the engine against the real server serving TLS with a
//! certificate from a clinic CA made at test time (`clinic_test_kit::TestCa`). Signed in
//! and synced over `https://` and `wss://` with the CA file given; refused, with a stable
//! code and nothing sent in clear text, without it; and the warning for an `http://`
//! address off this computer. Every wait polls with a deadline.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clinic_protocol::{BookingAction, BookingStatus, Record};
use clinic_sync::{insecure_address_warning, Engine, EngineConfig, SyncState, Timing, View};
use clinic_test_kit::{eventually, poll_until, TestCa, TestServer, PASSWORD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// Short timeouts, so that a refused or restarted server is noticed quickly.
fn config(url: &str, data: &Path, ca_file: Option<&Path>) -> EngineConfig {
    let mut c = EngineConfig::new(url, data);
    c.ca_file = ca_file.map(Path::to_path_buf);
    c.timing = Timing {
        dead_after: Duration::from_secs(3),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
    };
    c.request_timeout = Duration::from_secs(5);
    c
}

fn booking(view: &View, id: Uuid) -> Option<clinic_protocol::Booking> {
    view.records.iter().find_map(|r| match &r.record {
        Record::Booking(b) if b.id == id => Some(b.clone()),
        _ => None,
    })
}

async fn online(engine: &Engine) {
    let mut status = engine.status();
    eventually("the engine is online", || {
        let s = status.borrow_and_update().state;
        async move { s == SyncState::Online }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_signs_in_and_syncs_over_https_and_wss_with_the_clinic_ca_file() {
    let mut server = TestServer::start_tls().await;
    assert!(server.url().starts_with("https://"), "{}", server.url());
    let data = tempfile::tempdir().unwrap();
    let olivia = Engine::login(
        config(&server.url(), data.path(), server.ca_file()),
        "olivia",
        PASSWORD,
    )
    .await
    .expect("signed in over https with the clinic CA file");
    // The snapshot came over https; Online means the feed's wss:// connection is up.
    assert!(!olivia.view_at().await.unwrap().records.is_empty());
    online(&olivia).await;

    // Another client (over https too) accepts a booking; it reaches olivia over wss.
    let reyes = server.login("reyes").await;
    let requested = clinic_test_kit::bookings(&reyes.snapshot().await)
        .into_iter()
        .find(|b| b.status == BookingStatus::Requested)
        .expect("reyes has a requested booking");
    reyes.act(&requested, BookingAction::Accept).await;
    eventually("olivia sees the acceptance", || async {
        booking(&olivia.view_at().await.unwrap(), requested.id)
            .is_some_and(|b| b.status == BookingStatus::Confirmed)
    })
    .await;

    // A restart (graceful: the feed gets its close frame) serves TLS again on the same
    // address; the engine reconnects over wss and carries on.
    server.restart().await;
    assert!(server.url().starts_with("https://"));
    online(&olivia).await;

    // Olivia's own change goes out over https and is confirmed over wss, no longer pending.
    let confirmed = booking(&olivia.view_at().await.unwrap(), requested.id).unwrap();
    olivia
        .submit(clinic_protocol::Mutation::CancelBooking {
            id: confirmed.id,
            version: confirmed.version,
            reason: "The client called off.".into(),
        })
        .await
        .expect("queued");
    eventually("olivia's cancellation is the server's", || async {
        let view = olivia.view_at().await.unwrap();
        view.records.iter().any(|r| {
            !r.pending
                && matches!(&r.record, Record::Booking(b)
                    if b.id == requested.id && b.status == BookingStatus::Cancelled)
        })
    })
    .await;
    let seen_by_reyes = reyes
        .booking(requested.id)
        .await
        .expect("still his booking");
    assert_eq!(seen_by_reyes.status, BookingStatus::Cancelled);
    olivia.shutdown().await;
}

/// A loopback relay to `upstream` that keeps every byte clients send through it, per
/// connection.
struct Recorder {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Recorder {
    async fn start(upstream: SocketAddr) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let log = connections.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let index = {
                        let mut log = log.lock().unwrap();
                        log.push(Vec::new());
                        log.len() - 1
                    };
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let up = async {
                        let mut buf = [0u8; 4096];
                        while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                            log.lock().unwrap()[index].extend_from_slice(&buf[..n]);
                            if to_server.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = to_server.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                        let _ = to_client.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Recorder { addr, connections }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// How many connections so far: what [`Recorder::since`] starts after.
    fn mark(&self) -> usize {
        self.connections.lock().unwrap().len()
    }

    /// What clients sent on each connection opened since `mark`, so far.
    fn since(&self, mark: usize) -> Vec<Vec<u8>> {
        self.connections.lock().unwrap()[mark..].to_vec()
    }
}

/// Every connection's bytes are TLS records from the first byte on, and none of
/// `secrets`, nor any HTTP, crossed in clear text.
fn encrypted_only(connections: &[Vec<u8>], secrets: &[&str]) {
    assert!(
        connections.iter().any(|c| !c.is_empty()),
        "the client tried to connect"
    );
    let clear = [
        "POST ",
        "GET ",
        "HTTP/1.1",
        "websocket",
        "Bearer",
        "password",
        "\"hello\"",
    ];
    for sent in connections.iter().filter(|c| !c.is_empty()) {
        assert_eq!(
            sent[0], 0x16,
            "a connection starts with a TLS handshake record, not clear text"
        );
        for word in clear.iter().chain(secrets) {
            assert!(
                !sent
                    .windows(word.len())
                    .any(|w| w.eq_ignore_ascii_case(word.as_bytes())),
                "{word:?} crossed the network in clear text"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_unknown_ca_is_refused_and_nothing_is_sent_in_clear_text() {
    let server = TestServer::start_tls().await;
    let relay = Recorder::start(server.addr()).await;
    let data = tempfile::tempdir().unwrap();

    // Neither the system's roots nor another clinic's CA vouch for this server.
    let other_ca = TestCa::new("Another clinic's CA");
    let other_ca_file = data.path().join("other-ca.pem");
    other_ca.write_pem(&other_ca_file);
    for ca_file in [None, Some(other_ca_file.as_path())] {
        let mark = relay.mark();
        let refused = Engine::login(
            config(&relay.url(), data.path(), ca_file),
            "olivia",
            "a secret password",
        )
        .await
        .expect_err("an untrusted certificate is refused");
        assert_eq!(refused.code(), "untrusted_certificate", "{refused}");
        assert!(refused.to_string().contains("not trusted"), "{refused}");
        assert!(refused.to_string().contains("--ca-file"), "{refused}");
        encrypted_only(&relay.since(mark), &["olivia", "a secret password"]);
    }

    // The feed too: a session saved with the CA file, resumed without it, never opens
    // its wss:// feed and says why; its token and hello never cross in clear.
    let trusted = Engine::login(
        config(&relay.url(), data.path(), server.ca_file()),
        "olivia",
        PASSWORD,
    )
    .await
    .expect("signed in with the clinic CA file");
    online(&trusted).await;
    trusted.shutdown().await;
    drop(trusted);
    let mark = relay.mark();
    let resumed = Engine::resume(config(&relay.url(), data.path(), None))
        .await
        .expect("a saved session resumes offline");
    let mut status = resumed.status();
    let error = poll_until("the feed is refused", || {
        let s = status.borrow_and_update().clone();
        async move {
            assert_ne!(s.state, SyncState::Online, "no feed without trust");
            s.last_error.filter(|e| e.contains("untrusted_certificate"))
        }
    })
    .await;
    assert!(error.contains("not trusted"), "{error}");
    resumed.shutdown().await;
    encrypted_only(&relay.since(mark), &["olivia"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_server_without_tls_fails_and_never_falls_back_to_clear_text() {
    let server = TestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let https = format!("https://{}", server.addr());
    let refused = Engine::login(config(&https, data.path(), None), "olivia", PASSWORD)
        .await
        .expect_err("a plain server cannot answer https");
    assert_eq!(refused.code(), "tls_failed", "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_ca_file_is_an_error_of_its_own() {
    let server = TestServer::start_tls().await;
    let data = tempfile::tempdir().unwrap();
    let not_pem = data.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "just some text\n").unwrap();
    for ca_file in [data.path().join("missing.pem"), not_pem] {
        let refused = Engine::login(
            config(&server.url(), data.path(), Some(&ca_file)),
            "olivia",
            PASSWORD,
        )
        .await
        .expect_err("an unusable CA file is refused");
        assert_eq!(refused.code(), "ca_file", "{refused}");
        assert!(
            refused.to_string().contains(&*ca_file.to_string_lossy()),
            "{refused}"
        );
    }
}

#[test]
fn http_off_this_computer_is_warned_about_in_words() {
    for insecure in [
        "http://192.168.1.20:7420",
        "http://clinic.example.org",
        "HTTP://Clinic.Example.org:7420/",
        "http://10.0.0.5",
        "http://[fe80::1]:7420",
    ] {
        let warning = insecure_address_warning(insecure)
            .unwrap_or_else(|| panic!("{insecure} is warned about"));
        assert!(warning.contains("not encrypted"), "{warning}");
        assert!(warning.contains("https://"), "{warning}");
    }
    for fine in [
        "https://clinic.example.org",
        "https://192.168.1.20:7420",
        "http://127.0.0.1:7420",
        "http://127.0.0.2:7420",
        "http://localhost:7420",
        "http://LOCALHOST",
        "http://[::1]:7420",
        "not an address",
    ] {
        assert_eq!(insecure_address_warning(fine), None, "{fine}");
    }
}
