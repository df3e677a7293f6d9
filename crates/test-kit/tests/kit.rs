//! The kit keeps its promises: a restart is on the same port with the same data, a cut
//! proxy drops live connections and refuses new ones until restored.

use std::time::Duration;

use clinic_protocol::wire::paths;
use clinic_protocol::Snapshot;
use clinic_test_kit::{eventually, staff_id, Proxy, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_restarted_server_keeps_its_port_its_data_and_its_sessions() {
    let mut server = TestServer::start().await;
    let (url, addr) = (server.url(), server.addr());
    let before = server.snapshot("olivia").await;
    let olivia = server.login("olivia").await;
    server.stop().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens while stopped"
    );
    server.restart().await;
    assert_eq!(server.url(), url);
    assert!(same(&server.snapshot("olivia").await, &before));
    assert!(
        same(&olivia.snapshot().await, &before),
        "the token is still good"
    );
    assert_eq!(
        staff_id(&before, "maria"),
        staff_id(&server.login("maria").await.snapshot().await, "maria")
    );
    // Restarting a running server stops it first.
    server.restart().await;
    assert_eq!(server.state().head().await, before.seq);
}

#[tokio::test]
async fn a_cut_proxy_drops_live_connections_and_refuses_new_ones_until_restored() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr()).await;
    let mut live = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(healthz(&mut live).await, Some("ok".into()));

    proxy.cut();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), live.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the live connection is dropped: {read:?}"
    );
    let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        healthz(&mut refused).await,
        None,
        "a new one is closed at once"
    );

    proxy.restore();
    let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(healthz(&mut again).await, Some("ok".into()));
}

#[tokio::test]
async fn eventually_waits_for_a_state_that_comes() {
    let started = std::time::Instant::now();
    eventually("100 ms to pass", || async {
        started.elapsed() > Duration::from_millis(100)
    })
    .await;
}

/// The same records at the same seq, in whatever order the server lists them.
fn same(a: &Snapshot, b: &Snapshot) -> bool {
    a.seq == b.seq
        && a.records.len() == b.records.len()
        && a.records.iter().all(|r| b.records.contains(r))
}

/// The health check over a raw connection (kept open): the body, or `None` if the
/// connection closes without an answer.
async fn healthz(stream: &mut TcpStream) -> Option<String> {
    let request = format!("GET {} HTTP/1.1\r\nhost: x\r\n\r\n", paths::HEALTHZ);
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).ends_with("ok") {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
            .await
            .expect("an answer or a close in time")
            .ok()?;
        if n == 0 {
            return None;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    Some("ok".into())
}
