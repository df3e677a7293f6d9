//! The IO loop around the [`SyncMachine`]: one tokio task that owns the feed's WebSocket
//! and the one mutation request in flight, turns socket frames, timers and HTTP answers
//! into machine events, and carries out the machine's instructions through the write
//! paths and the HTTP client.
//!
//! All decisions are the machine's; this file only waits for whatever comes first.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clinic_protocol::wire::MAX_SERVER_FRAME_BYTES;
use clinic_protocol::{ClientFrame, ErrorCode, MutationRequest, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

use crate::cache::Queued;
use crate::client::Client;
use crate::error::SyncError;
use crate::machine::{Event, Instruction, Sent, SyncMachine};
use crate::tls::tls_failure;
use crate::writes::Writer;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type Sending = Pin<Box<dyn Future<Output = Event> + Send>>;

/// What the driver talks to: the cache's write side and the server.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) writer: Arc<Writer>,
    pub(crate) client: Client,
    pub(crate) token: String,
    /// The longest wait for a connection (the machine's `dead_after`).
    pub(crate) connect_timeout: Duration,
}

impl Link {
    /// Fetches a snapshot and replaces the cache with it; returns its server seq.
    pub(crate) async fn fetch_snapshot(&self) -> Result<u64, SyncError> {
        let snapshot = self.client.snapshot(&self.token).await?;
        self.writer.replace(snapshot).await
    }

    /// Opens the feed; with the socket, what the server calls itself (its `Server` header
    /// in the handshake's answer), for the status.
    async fn connect(&self) -> Result<(Socket, Option<String>), String> {
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(MAX_SERVER_FRAME_BYTES))
            .max_frame_size(Some(MAX_SERVER_FRAME_BYTES));
        // The HTTP calls' TLS settings: `wss://` trusts exactly what `https://` does. (The
        // connector is only used for `wss://`; `ws://` stays plain, as its address says.)
        let connecting = tokio_tungstenite::connect_async_tls_with_config(
            self.client.feed_url(),
            Some(ws_config),
            true,
            Some(Connector::Rustls(self.client.tls())),
        );
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok((socket, response))) => {
                let server = response
                    .headers()
                    .get(tokio_tungstenite::tungstenite::http::header::SERVER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Ok((socket, server))
            }
            Ok(Err(e)) => Err(match tls_failure(&e) {
                Some(tls) => format!("cannot connect ({}): {tls}", tls.code()),
                None => format!("cannot connect: {e}"),
            }),
            Err(_) => Err("connecting timed out".into()),
        }
    }

    /// POSTs one outbox entry; a future of its own (owning what it needs), so that the
    /// loop keeps reading the feed while the request is in flight.
    fn send_mutation(&self, queued: Queued) -> Sending {
        let (client, token) = (self.client.clone(), self.token.clone());
        let request = MutationRequest {
            mutation_id: queued.mutation_id,
            mutation: queued.mutation,
        };
        Box::pin(async move {
            let result = client.send(&token, &request).await;
            Event::MutationDone {
                mutation_id: request.mutation_id,
                result,
            }
        })
    }
}

/// The next frame of the feed as a machine event; never resolves without a socket.
async fn next_frame(socket: &mut Option<Socket>) -> Event {
    let Some(ws) = socket.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        return match ws.next().await {
            None => Event::Disconnected {
                error: "the server closed the connection".into(),
            },
            Some(Err(e)) => Event::Disconnected {
                error: format!("connection lost: {e}"),
            },
            Some(Ok(Message::Text(t))) => Event::Frame(t.as_str().to_owned()),
            Some(Ok(Message::Binary(b))) => Event::Frame(String::from_utf8_lossy(&b).into_owned()),
            Some(Ok(Message::Close(_))) => Event::Disconnected {
                error: "the server closed the feed".into(),
            },
            // Pings are answered by tungstenite while reading.
            Some(Ok(_)) => continue,
        };
    }
}

/// Resolves once the engine is told to stop, or is gone. (A unit output: the watch's read
/// guard must not live inside `select!`'s output across an await.)
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs the machine until stopped.
pub(crate) async fn drive(link: Link, mut machine: SyncMachine, mut stop: watch::Receiver<bool>) {
    let writer = &link.writer;
    let mut socket: Option<Socket> = None;
    let mut wake: Option<tokio::time::Instant> = None;
    let mut sending: Option<Sending> = None;
    let mut events: VecDeque<Event> = VecDeque::new();
    events.push_back(Event::OutboxHead(writer.outbox_head().await));
    let mut todo: VecDeque<Instruction> = machine.start(Instant::now()).into();
    loop {
        while let Some(instruction) = todo.pop_front() {
            match instruction {
                Instruction::Connect => {
                    let connected = tokio::select! {
                        c = link.connect() => c,
                        () = stopped(&mut stop) => return,
                    };
                    events.push_back(match connected {
                        Ok((ws, server)) => {
                            socket = Some(ws);
                            writer.server_version(server);
                            Event::Connected
                        }
                        Err(error) => Event::Disconnected { error },
                    });
                }
                Instruction::SendHello { cursor } => {
                    let hello = ClientFrame::Hello {
                        protocol: PROTOCOL_VERSION,
                        token: link.token.clone(),
                        cursor,
                    };
                    let sent = match (socket.as_mut(), serde_json::to_string(&hello)) {
                        (Some(ws), Ok(text)) => ws
                            .send(Message::text(text))
                            .await
                            .map_err(|e| e.to_string()),
                        (None, _) => Err("no connection".into()),
                        (_, Err(e)) => Err(e.to_string()),
                    };
                    if let Err(e) = sent {
                        events.push_back(Event::Disconnected {
                            error: format!("cannot say hello: {e}"),
                        });
                    }
                }
                Instruction::UseServer { index } => link.client.use_server(index),
                Instruction::Close => socket = None,
                Instruction::FetchSnapshot => {
                    let fetched = tokio::select! {
                        f = link.fetch_snapshot() => f,
                        () = stopped(&mut stop) => return,
                    };
                    events.push_back(match fetched {
                        Ok(seq) => Event::SnapshotFetched { seq },
                        Err(SyncError::Refused {
                            code: ErrorCode::AccountDisabled,
                            ..
                        }) => Event::AccountDisabled,
                        Err(e) => Event::SnapshotFailed {
                            expired: matches!(e, SyncError::SessionExpired),
                            error: format!("cannot fetch a snapshot: {e}"),
                        },
                    });
                }
                Instruction::Apply {
                    changes,
                    upto,
                    live,
                } => {
                    if let Err(e) = writer.apply_batch(&changes, upto, live).await {
                        events.push_back(Event::ApplyFailed {
                            error: e.to_string(),
                        });
                    }
                }
                Instruction::Advance { cursor } => {
                    if let Err(e) = writer.advance(cursor).await {
                        events.push_back(Event::ApplyFailed {
                            error: e.to_string(),
                        });
                    }
                }
                Instruction::Send { mutation_id } => match writer.queued(mutation_id).await {
                    Some(q) => sending = Some(link.send_mutation(q)),
                    None => {
                        events.push_back(Event::MutationDone {
                            mutation_id,
                            result: Sent::Gone,
                        });
                        events.push_back(Event::OutboxHead(writer.outbox_head().await));
                    }
                },
                Instruction::Settle {
                    mutation_id,
                    outcome,
                } => {
                    if let Err(e) = writer.settle(mutation_id, outcome).await {
                        tracing::error!("could not record the server's verdict: {e}");
                    }
                    events.push_back(Event::OutboxHead(writer.outbox_head().await));
                }
                Instruction::WakeAt(at) => wake = Some(at.into()),
                Instruction::Report(report) => writer.report(report),
            }
        }
        let event = match events.pop_front() {
            Some(event) => event,
            None => tokio::select! {
                () = stopped(&mut stop) => return,
                event = next_frame(&mut socket) => event,
                () = async {
                    match wake {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    wake = None;
                    Event::Tick
                }
                event = async {
                    match sending.as_mut() {
                        Some(f) => f.await,
                        None => std::future::pending().await,
                    }
                } => {
                    sending = None;
                    event
                }
                () = writer.wait_queued() => Event::OutboxHead(writer.outbox_head().await),
            },
        };
        todo.extend(machine.handle(event, Instant::now()));
    }
}
