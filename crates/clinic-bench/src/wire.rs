//! The load generator's side of both wire formats: a WebSocket from a chosen loopback
//! source address (so that tens of thousands of connections do not run out of ports) with
//! a small read buffer, our feed's hello, and Socket.IO's Engine.IO framing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub(crate) type Ws = WebSocketStream<TcpStream>;

const HANDSHAKE: Duration = Duration::from_secs(60);

/// Spreads connection `i` over 127.0.0.2..=127.0.0.251, 64k ports each.
pub(crate) fn source(i: usize) -> IpAddr {
    #[allow(clippy::cast_possible_truncation)]
    let last = 2 + (i % 250) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

pub(crate) async fn connect(server: SocketAddr, from: IpAddr, path: &str) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let stream = socket.connect(server).await.context("connecting")?;
    stream.set_nodelay(true)?;
    let mut config = WebSocketConfig::default();
    // tungstenite's default read buffer is 128 KiB per connection.
    config.read_buffer_size = 4096;
    let url = format!("ws://{server}{path}");
    let (ws, _) = tokio::time::timeout(
        HANDSHAKE,
        tokio_tungstenite::client_async_with_config(url, stream, Some(config)),
    )
    .await
    .context("WebSocket handshake timed out")??;
    Ok(ws)
}

pub(crate) async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match ws.next().await.context("the server closed the socket")?? {
            Message::Text(t) => return Ok(t.as_str().to_owned()),
            Message::Close(c) => bail!("the server closed the socket: {c:?}"),
            _ => {}
        }
    }
}

pub(crate) async fn send_text(ws: &mut Ws, text: String) -> anyhow::Result<()> {
    ws.send(Message::Text(text.into())).await?;
    Ok(())
}

/// Our feed, past its welcome, resuming after `cursor`.
pub(crate) async fn our_feed(
    server: SocketAddr,
    from: IpAddr,
    token: &str,
    cursor: u64,
) -> anyhow::Result<Ws> {
    use clinic_protocol::{ClientFrame, ServerFrame, PROTOCOL_VERSION};
    let mut ws = connect(server, from, clinic_protocol::wire::paths::FEED).await?;
    let hello = ClientFrame::Hello {
        protocol: PROTOCOL_VERSION,
        token: token.to_owned(),
        cursor,
    };
    send_text(&mut ws, serde_json::to_string(&hello)?).await?;
    match serde_json::from_str(&next_text(&mut ws).await?)? {
        ServerFrame::Welcome { .. } => Ok(ws),
        other => bail!("expected a welcome, got {other:?}"),
    }
}

/// A Socket.IO connection to the default namespace, past its CONNECT.
#[derive(Debug)]
pub(crate) struct PeerSocket {
    pub(crate) ws: Ws,
    /// The session id to recover with later.
    pub(crate) pid: String,
    /// Packets that came before the CONNECT answer: a recovered session's missed events
    /// are sent ahead of it.
    pub(crate) early: Vec<String>,
}

/// Connects to the peer; `recover` is the session id and last offset of an earlier
/// connection (connection state recovery).
pub(crate) async fn peer_socket(
    server: SocketAddr,
    from: IpAddr,
    recover: Option<(&str, &str)>,
) -> anyhow::Result<PeerSocket> {
    let mut ws = connect(server, from, "/socket.io/?EIO=4&transport=websocket").await?;
    let open = next_text(&mut ws).await?;
    if !open.starts_with('0') {
        bail!("expected an Engine.IO open packet, got {open:?}");
    }
    let connect = match recover {
        Some((pid, offset)) => {
            format!("40{}", serde_json::json!({"pid": pid, "offset": offset}))
        }
        None => "40".to_owned(),
    };
    send_text(&mut ws, connect).await?;
    let mut early = Vec::new();
    loop {
        let packet = next_text(&mut ws).await?;
        if let Some(body) = packet.strip_prefix("40") {
            let v: serde_json::Value = serde_json::from_str(body)?;
            let pid = v["pid"].as_str().unwrap_or_default().to_owned();
            return Ok(PeerSocket { ws, pid, early });
        }
        if packet == "2" {
            send_text(&mut ws, "3".into()).await?;
        } else {
            early.push(packet);
        }
    }
}

/// A Socket.IO packet as the load generator cares about it.
#[derive(Debug)]
pub(crate) enum PeerPacket {
    /// `42["change", payload, offset?]`, the payload decoded.
    Change {
        change: Box<clinic_protocol::Change>,
        offset: Option<String>,
    },
    /// Another event (`gone`...).
    Event(String),
    /// Engine.IO ping: answer "3".
    Ping,
    Other,
}

pub(crate) fn peer_packet(text: &str) -> anyhow::Result<PeerPacket> {
    if text == "2" {
        return Ok(PeerPacket::Ping);
    }
    let Some(body) = text.strip_prefix("42") else {
        return Ok(PeerPacket::Other);
    };
    let mut args: Vec<serde_json::Value> = serde_json::from_str(body)?;
    if args.is_empty() {
        bail!("an event without a name");
    }
    let name = args.remove(0);
    if name != "change" {
        return Ok(PeerPacket::Event(
            name.as_str().unwrap_or_default().to_owned(),
        ));
    }
    let mut args = args.into_iter();
    let payload = args.next().context("a change without a payload")?;
    let offset = args.next().and_then(|o| o.as_str().map(str::to_owned));
    let change = serde_json::from_value(payload).context("a peer change")?;
    Ok(PeerPacket::Change { change, offset })
}
