//! The two systems under test as the benchmarks drive them: a way to connect a receiving
//! client, and a writer. Ours: the feed WebSocket and HTTP mutations, as an operator (who
//! sees every booking). The peer: Socket.IO events carrying the same change JSON.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{Local, NaiveTime};
use clinic_protocol::wire::paths;
use clinic_protocol::{
    Change, ChangeOp, LoginResponse, Mutation, MutationOutcome, MutationRequest, NewBooking,
    Record, ServerFrame,
};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::probe::Probe;
use crate::wire::{self, PeerPacket};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    Ours,
    Peer,
}

impl Which {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Which::Ours => "ours",
            Which::Peer => "peer",
        }
    }
}

/// The operator every benchmark client is (operators see every booking).
pub(crate) const OPERATOR: &str = "olivia";
pub(crate) const PASSWORD: &str = "demo";

pub(crate) async fn login(server: SocketAddr, username: &str) -> anyhow::Result<String> {
    let response: LoginResponse = reqwest::Client::new()
        .post(format!("http://{server}{}", paths::LOGIN))
        .json(&serde_json::json!({"username": username, "password": PASSWORD}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(response.token)
}

/// The booking every benchmark change creates (unassigned, so that none can conflict).
pub(crate) fn new_booking(marker: String) -> NewBooking {
    NewBooking {
        id: Uuid::new_v4(),
        client_name: "Bench Client".into(),
        client_phone: "+1 555 0100".into(),
        address: "1 Main Street".into(),
        service: "Massage 60".into(),
        date: Local::now().date_naive() + chrono::Duration::days(30),
        start: NaiveTime::from_hms_opt(9, 0, 0).expect("a time"),
        end: NaiveTime::from_hms_opt(10, 0, 0).expect("a time"),
        therapist_id: None,
        driver_id: None,
        notes: marker,
    }
}

/// Writes changes to one side; cloning shares the connection.
#[derive(Debug, Clone)]
pub(crate) enum Writer {
    Ours {
        http: reqwest::Client,
        url: String,
        token: String,
    },
    Peer {
        sink: Arc<Mutex<SplitSink<wire::Ws, Message>>>,
        /// Our change JSON, as our server sends it; each send gets a new id and marker.
        template: Arc<Change>,
        /// Counts the peer's "gone" events (another client disconnected).
        gone: watch::Receiver<u64>,
    },
}

impl Writer {
    pub(crate) async fn ours(server: SocketAddr) -> anyhow::Result<Writer> {
        Ok(Writer::Ours {
            http: reqwest::Client::new(),
            url: format!("http://{server}{}", paths::MUTATIONS),
            token: login(server, OPERATOR).await?,
        })
    }

    pub(crate) async fn peer(server: SocketAddr, template: Change) -> anyhow::Result<Writer> {
        let socket = wire::peer_socket(server, wire::source(usize::MAX / 2), None).await?;
        let (sink, mut stream) = socket.ws.split();
        let sink = Arc::new(Mutex::new(sink));
        let (gone_tx, gone) = watch::channel(0u64);
        // The writer's socket must answer the peer's pings, or it is dropped after 45 s.
        let pong = Arc::clone(&sink);
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = stream.next().await {
                match wire::peer_packet(text.as_str()) {
                    Ok(PeerPacket::Ping) => {
                        let answered = pong.lock().await.send(Message::Text("3".into())).await;
                        if answered.is_err() {
                            return;
                        }
                    }
                    Ok(PeerPacket::Event(name)) if name == "gone" => {
                        gone_tx.send_modify(|n| *n += 1);
                    }
                    _ => {}
                }
            }
        });
        Ok(Writer::Peer {
            sink,
            template: Arc::new(template),
            gone,
        })
    }

    /// Sends one change of `phase`.
    pub(crate) async fn send(&self, probe: &Probe, phase: usize) -> anyhow::Result<()> {
        match self {
            Writer::Ours { .. } => self.create(probe.send(phase)).await,
            Writer::Peer { sink, template, .. } => {
                let mut change = (**template).clone();
                if let ChangeOp::Upsert {
                    record: Record::Booking(b),
                } = &mut change.op
                {
                    b.id = Uuid::new_v4();
                    b.notes = probe.send(phase);
                }
                let packet = format!("42[\"change\",{}]", serde_json::to_string(&change)?);
                sink.lock().await.send(Message::Text(packet.into())).await?;
                Ok(())
            }
        }
    }

    /// Ours only: creates one booking with `notes` and waits until it is applied.
    pub(crate) async fn create(&self, notes: String) -> anyhow::Result<()> {
        match self {
            Writer::Ours { http, url, token } => {
                let body = MutationRequest {
                    mutation_id: Uuid::new_v4(),
                    mutation: Mutation::CreateBooking {
                        booking: new_booking(notes),
                    },
                };
                let outcome: MutationOutcome = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                if !matches!(outcome, MutationOutcome::Applied { .. }) {
                    bail!("our server refused a benchmark change: {outcome:?}");
                }
                Ok(())
            }
            Writer::Peer { .. } => bail!("the peer has no bookings to create"),
        }
    }

    /// Peer only: waits until the peer has seen `n` clients disconnect in all.
    pub(crate) async fn wait_gone(&self, n: u64) -> anyhow::Result<()> {
        if let Writer::Peer { gone, .. } = self {
            let mut gone = gone.clone();
            tokio::time::timeout(
                std::time::Duration::from_secs(30),
                gone.wait_for(|g| *g >= n),
            )
            .await
            .context("the peer did not notice the client leave")??;
        }
        Ok(())
    }
}

/// A receiving client, connected; it records every marked change it gets until `stop`.
#[derive(Debug)]
pub(crate) struct Receiver {
    pub(crate) task: JoinHandle<anyhow::Result<()>>,
}

/// Connects receiver `i` to `which` and starts recording.
pub(crate) async fn receiver(
    which: Which,
    server: SocketAddr,
    token: &str,
    i: usize,
    probe: Arc<Probe>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Receiver> {
    let task = match which {
        Which::Ours => {
            let ws = wire::our_feed(server, wire::source(i), token, 0).await?;
            tokio::spawn(our_receiver(ws, probe, stop))
        }
        Which::Peer => {
            let socket = wire::peer_socket(server, wire::source(i), None).await?;
            tokio::spawn(peer_receiver(socket.ws, probe, stop))
        }
    };
    Ok(Receiver { task })
}

async fn our_receiver(
    mut ws: wire::Ws,
    probe: Arc<Probe>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        let text = tokio::select! {
            text = wire::next_text(&mut ws) => text?,
            _ = stop.changed() => return Ok(()),
        };
        match serde_json::from_str::<ServerFrame>(&text).context("a feed frame")? {
            ServerFrame::Changes { changes, .. } => {
                for change in &changes {
                    if let Some(marker) = Probe::marker(change) {
                        probe.received(marker);
                    }
                }
            }
            ServerFrame::Resync { reason, .. } => {
                bail!("our server asked for a resync: {reason:?}")
            }
            ServerFrame::Error { message, .. } => bail!("our server: {message}"),
            ServerFrame::Welcome { .. } | ServerFrame::Heartbeat { .. } => {}
        }
    }
}

async fn peer_receiver(
    mut ws: wire::Ws,
    probe: Arc<Probe>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        let text = tokio::select! {
            text = wire::next_text(&mut ws) => text?,
            _ = stop.changed() => return Ok(()),
        };
        match wire::peer_packet(&text)? {
            PeerPacket::Change { change, .. } => {
                if let Some(marker) = Probe::marker(&change) {
                    probe.received(marker);
                }
            }
            PeerPacket::Ping => wire::send_text(&mut ws, "3".into()).await?,
            PeerPacket::Event(_) | PeerPacket::Other => {}
        }
    }
}
