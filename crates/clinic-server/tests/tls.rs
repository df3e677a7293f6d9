//! The server serving TLS itself (`--tls-cert`, `--tls-key`), end to end: real sockets on
//! loopback, certificates from a CA made at test time (`clinic_test_kit::TestCa`). HTTPS
//! and the feed over WSS, each client's own address still seen (the sign-in limits count
//! by it), a graceful stop still closing feeds, clear text refused; and the binary
//! refusing half a configuration or a key that is not the certificate's. Waits are
//! bounded by deadlines, never sleeps.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use clinic_protocol::wire::paths;
use clinic_protocol::{ClientFrame, ErrorCode, LoginRequest, ServerFrame, PROTOCOL_VERSION};
use clinic_test_kit::{poll_within, TestCa, TestServer, DEADLINE};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

/// An HTTP client on `127.0.0.<n>` that trusts the CA in `ca_file`.
fn https_client(ca_file: &Path, n: u8) -> reqwest::Client {
    let pem = std::fs::read(ca_file).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .build()
        .unwrap()
}

/// What a WebSocket client needs to trust the CA in `ca_file`.
fn ws_connector(ca_file: &Path) -> Connector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Connector::Rustls(Arc::new(config))
}

async fn sign_in(
    client: &reqwest::Client,
    url: &str,
    username: &str,
    password: &str,
) -> Result<String, ErrorCode> {
    let res = client
        .post(format!("{url}{}", paths::LOGIN))
        .json(&LoginRequest {
            username: username.into(),
            password: password.into(),
        })
        .send()
        .await
        .expect("the sign-in reaches the server over https");
    if res.status().is_success() {
        let login: clinic_protocol::LoginResponse = res.json().await.unwrap();
        return Ok(login.token);
    }
    Err(res.json::<clinic_protocol::ApiError>().await.unwrap().code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_serves_https_and_wss_sees_each_address_and_stops_gracefully() {
    let limit = 2;
    let mut server = TestServer::start_tls_with(|c| c.login_attempts_per_minute = limit).await;
    let url = server.url();
    assert!(url.starts_with("https://"), "{url}");
    let ca_file = server.ca_file().expect("a TLS server has a CA file");

    // Each client's own address reaches the handlers through TLS: the guesser at
    // 127.0.0.2 is limited, the desk at 127.0.0.1 is not.
    let guesser = https_client(ca_file, 2);
    for _ in 0..limit {
        let answer = sign_in(&guesser, &url, "olivia", "guess").await;
        assert_eq!(answer, Err(ErrorCode::Unauthorized));
    }
    let answer = sign_in(&guesser, &url, "olivia", "guess").await;
    assert_eq!(answer, Err(ErrorCode::RateLimited));
    let desk = https_client(ca_file, 1);
    let token = sign_in(&desk, &url, "olivia", clinic_test_kit::PASSWORD)
        .await
        .expect("another address signs in");

    // Plain HTTP on the TLS port gets no answer, and the server carries on.
    let plain = reqwest::Client::new()
        .get(format!("http://{}{}", server.addr(), paths::HEALTHZ))
        .timeout(DEADLINE)
        .send()
        .await;
    assert!(plain.is_err(), "clear text is not served: {plain:?}");
    let health = desk
        .get(format!("{url}{}", paths::HEALTHZ))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());

    // The feed over wss.
    let feed_url = format!("{}{}", url.replacen("https://", "wss://", 1), paths::FEED);
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        feed_url,
        None,
        true,
        Some(ws_connector(ca_file)),
    )
    .await
    .expect("the feed opens over wss");
    let hello = ClientFrame::Hello {
        protocol: PROTOCOL_VERSION,
        token,
        cursor: 0,
    };
    ws.send(Message::text(serde_json::to_string(&hello).unwrap()))
        .await
        .unwrap();
    let first = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("a first frame in time")
        .expect("a frame")
        .expect("a good frame");
    let first: ServerFrame = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert!(
        matches!(first, ServerFrame::Welcome { .. }),
        "welcomed: {first:?}"
    );

    // A graceful stop still sends the feed its close frame through TLS.
    let (stopped, closed) = tokio::join!(server.stop(), async {
        tokio::time::timeout(DEADLINE, async {
            while let Some(frame) = ws.next().await {
                if let Ok(Message::Close(_)) = frame {
                    return true;
                }
            }
            false
        })
        .await
    });
    let () = stopped;
    assert_eq!(closed, Ok(true), "the feed got its close frame");
}

/// The binary run on `db` with the TLS flags `tls`, which must refuse to start: what it
/// said on stderr.
async fn refused(db: &Path, tls: &[(&str, &Path)]) -> String {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_clinic-server"));
    command
        .arg("--db")
        .arg(db)
        .args(["--listen", "127.0.0.1:0"]);
    for (flag, path) in tls {
        command.arg(flag).arg(path);
    }
    let out = command
        .env_remove("CLINIC_TLS_CERT")
        .env_remove("CLINIC_TLS_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(DEADLINE, out)
        .await
        .expect("the binary ends by itself")
        .unwrap();
    assert!(!out.status.success(), "the binary refused to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_tls_and_refuses_half_a_configuration_or_a_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Binary test CA");
    let (cert, key) = ca.server_pem(&["127.0.0.1", "localhost"]);
    let (_, other_key) = ca.server_pem(&["127.0.0.1"]);
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (cert, key, other_key) = (
        file("cert.pem", &cert),
        file("key.pem", &key),
        file("other-key.pem", &other_key),
    );
    let ca_file = file("ca.pem", ca.pem());
    let missing = dir.path().join("missing.pem");
    let db = dir.path().join("clinic.db");
    // A certificate without its key, or a key without its certificate.
    let said = refused(&db, &[("--tls-cert", &cert)]).await;
    assert!(said.contains("--tls-key"), "{said}");
    let said = refused(&db, &[("--tls-key", &key)]).await;
    assert!(said.contains("--tls-cert"), "{said}");
    // A key that is not the certificate's, and a file that is not there.
    let said = refused(&db, &[("--tls-cert", &cert), ("--tls-key", &other_key)]).await;
    assert!(
        said.contains("do not make a certificate to serve"),
        "{said}"
    );
    let said = refused(&db, &[("--tls-cert", &missing), ("--tls-key", &key)]).await;
    assert!(
        said.contains("cannot read") && said.contains("missing.pem"),
        "{said}"
    );
    assert!(!db.exists(), "nothing was started on a bad configuration");

    // Both, right: the binary answers over https.
    let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let _server = tokio::process::Command::new(env!("CARGO_BIN_EXE_clinic-server"))
        .arg("--db")
        .arg(&db)
        .args(["--listen", &listen, "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = https_client(&ca_file, 1);
    let health = format!("https://{listen}{}", paths::HEALTHZ);
    poll_within(
        Duration::from_secs(60),
        "the binary answers over https",
        || {
            let request = client.get(&health).send();
            async move { request.await.ok().filter(|r| r.status().is_success()) }
        },
    )
    .await;
}
