//! Fuzz targets for every decoder of the server that takes outside bytes, run as property
//! tests on stable Rust against the real server (`clinic-test-kit`'s `TestServer`, real
//! sockets, real SQLite): the feed's first frames over a real WebSocket, and every HTTP
//! body (login, logout, snapshot, mutations, intake). Each target mixes raw inputs (random
//! bytes and text, random JSON with huge numbers and deep nesting, oversized bodies and
//! frames, hostile WebSocket framing) with structured ones (valid bodies with a field
//! edited, every mutation with random field values). The properties: never a panic and
//! never a 500; every refusal is an `ApiError` (or an error frame) with the stable code the
//! protocol gives it; a refusal changes nothing (the change-log head and the snapshots are
//! as they were); the server keeps serving (a health check, a login and a snapshot work
//! after the run).
//!
//! Case counts: `CLINIC_FUZZ_CASES=N` runs N cases in every target; the default is sized
//! so that this suite and clinic-sync's `tests/fuzz.rs` take about 30 s of a debug
//! `cargo test` on two cores. `CLINIC_FUZZ_CASES=1000000 cargo test -p clinic-server --test
//! fuzz` is the long run. A failure is shrunk to a minimal input, which is printed, and its
//! seed is kept in `tests/fuzz-regressions/<target>.txt`, replayed first on the next run;
//! fix the cause and keep the minimal input as a named regression test at the end of this
//! file.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{Local, NaiveDate, NaiveTime};
use clinic_protocol::wire::{
    paths, MAX_CLIENT_FRAME_BYTES, MAX_MESSAGE_TEXT, MAX_NOTE_TEXT, MAX_PAYMENT_CENTS,
    MAX_REQUEST_BODY_BYTES, MAX_SHORT_TEXT,
};
use clinic_protocol::{
    ApiError, Booking, BookingAction, ClientFrame, ErrorCode, Id, IntakeRequest, LoginRequest,
    LoginResponse, Mutation, MutationOutcome, MutationRequest, NewBooking, NewMessage, NewSlot,
    PaymentMethod, Record, ResyncReason, ServerFrame, Snapshot, PROTOCOL_VERSION,
};
use clinic_test_kit::{Staffer, TestServer, INTAKE_KEY, PASSWORD};
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError, TestRunner};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use uuid::Uuid;

use clinic_test_kit::fuzz_json::{self as gen, edits, json, raw, text, Edit, Raw, J};

// ---------------------------------------------------------------------------------------
// Running a target.

/// The cases of one target: `CLINIC_FUZZ_CASES`, or the target's default.
fn cases(default: u32) -> u32 {
    std::env::var("CLINIC_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Where a target keeps the seeds of its failures (only written when one fails).
macro_rules! regressions {
    ($target:literal) => {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fuzz-regressions/",
            $target,
            ".txt"
        )
    };
}

/// Runs `check` on `cases(default)` inputs from `strategy`; a failure is shrunk and
/// reported with its minimal input.
fn fuzz<S>(
    target: &str,
    regressions: &'static str,
    default: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let cases = cases(default);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        // Network cases shrink slowly; two minutes of shrinking is plenty.
        max_shrink_time: 120_000,
        ..ProptestConfig::default()
    });
    let started = Instant::now();
    if let Err(e) = runner.run(&strategy, check) {
        panic!("fuzz target {target}: {e}");
    }
    eprintln!(
        "fuzz target {target}: {cases} cases in {:?}",
        started.elapsed()
    );
}

/// A real server on loopback, with its own runtime so that proptest's synchronous cases
/// can drive it. The sign-in and web-form limits are lifted: hostile cases must reach the
/// decoders, and a login must still work after thousands of failed ones.
struct Harness {
    rt: tokio::runtime::Runtime,
    server: TestServer,
    http: reqwest::Client,
    /// How the cases were answered, printed after the run: evidence that the cases reach
    /// past the first refusal.
    tally: Mutex<BTreeMap<String, u32>>,
}

impl Harness {
    fn start() -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let server = rt.block_on(TestServer::start_with(|c| {
            c.login_attempts_per_minute = u32::MAX;
            c.login_failures_per_username = u32::MAX;
            c.intake_per_minute = u32::MAX;
        }));
        Harness {
            rt,
            server,
            // A connection per request: every case stands alone (a case that leaves a
            // connection for the server to close cannot fail the next one).
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("an HTTP client"),
            tally: Mutex::default(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    fn count(&self, outcome: impl Into<String>) {
        *self
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(outcome.into())
            .or_default() += 1;
    }

    /// After a run: the server still answers its health check, a login and a snapshot.
    fn still_serving(mut self, target: &str) {
        eprintln!(
            "fuzz target {target}: answers {:?}",
            self.tally
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        );
        self.rt.block_on(async {
            healthy(&self.http, &self.server.url())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let olivia = self.server.login("olivia").await;
            let snapshot = olivia.snapshot().await;
            assert_eq!(snapshot.seq, self.server.state().head().await);
            self.server.stop().await;
        });
    }
}

fn fail(why: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(why.into())
}

async fn healthy(http: &reqwest::Client, url: &str) -> Result<(), TestCaseError> {
    let res = http
        .get(format!("{url}{}", paths::HEALTHZ))
        .send()
        .await
        .map_err(|e| fail(format!("the health check got no answer: {e}")))?;
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    prop_assert!(
        status == 200 && body == "ok",
        "the health check answered {status}: {body:?}"
    );
    Ok(())
}

/// What the server holds: its head and what each of `who` may see (sorted JSON).
async fn state(server: &TestServer, who: &[&Staffer]) -> (u64, Vec<Vec<String>>) {
    let head = server.state().head().await;
    let mut seen = Vec::new();
    for staffer in who {
        seen.push(sorted(&staffer.snapshot().await));
    }
    (head, seen)
}

fn sorted(snapshot: &Snapshot) -> Vec<String> {
    let mut records: Vec<String> = snapshot
        .records
        .iter()
        .map(|r| serde_json::to_string(r).expect("a record serializes"))
        .collect();
    records.sort();
    records
}

// ---------------------------------------------------------------------------------------
// Generators shared by the targets.
//
// Every strategy is boxed: unboxed, the nested value trees of a debug build are big enough
// to overflow a test thread's stack.

// ---------------------------------------------------------------------------------------
// The feed: the first frames of a connection, and WebSocket framing itself.

const ANSWER_WITHIN: Duration = Duration::from_secs(5);

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// The token a hello carries.
#[derive(Debug, Clone)]
enum Token {
    /// A signed-in session's.
    Live,
    /// A session's that signed out.
    Revoked,
    Other(String),
    /// The live token cut at `keep` characters, `then` appended.
    Mangled {
        keep: usize,
        then: String,
    },
}

impl Token {
    fn text(&self, tokens: &Tokens) -> String {
        match self {
            Token::Live => tokens.live.clone(),
            Token::Revoked => tokens.revoked.clone(),
            Token::Other(t) => t.clone(),
            Token::Mangled { keep, then } => {
                let keep = keep % (tokens.live.len() + 1);
                format!("{}{then}", &tokens.live[..keep])
            }
        }
    }
}

fn token() -> BoxedStrategy<Token> {
    prop_oneof![
        4 => Just(Token::Live),
        1 => Just(Token::Revoked),
        1 => text().prop_map(Token::Other),
        1 => (any::<usize>(), text()).prop_map(|(keep, then)| Token::Mangled { keep, then }),
    ]
    .boxed()
}

struct Tokens {
    live: String,
    revoked: String,
}

/// One message a client sends on the feed.
#[derive(Debug, Clone)]
enum Say {
    Text(String),
    Binary(Vec<u8>),
    Json(J),
    Hello {
        protocol: u32,
        token: Token,
        cursor: u64,
    },
    /// A valid hello with its JSON edited.
    Edited {
        token: Token,
        cursor: u64,
        edits: Vec<Edit>,
    },
    /// Deep nesting, alone or as a hello's token.
    Deep {
        depth: usize,
        object: bool,
        in_hello: bool,
    },
    /// A frame around the size limit or far over it.
    Sized {
        len: usize,
        binary: bool,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

impl Say {
    fn message(&self, tokens: &Tokens) -> Message {
        let hello = |token: &Token, cursor: u64| ClientFrame::Hello {
            protocol: PROTOCOL_VERSION,
            token: token.text(tokens),
            cursor,
        };
        match self {
            Say::Text(t) => Message::text(t.clone()),
            Say::Binary(b) => Message::binary(b.clone()),
            Say::Json(j) => Message::text(j.render()),
            Say::Hello {
                protocol,
                token,
                cursor,
            } => Message::text(
                serde_json::to_string(&ClientFrame::Hello {
                    protocol: *protocol,
                    token: token.text(tokens),
                    cursor: *cursor,
                })
                .expect("a hello serializes"),
            ),
            Say::Edited {
                token,
                cursor,
                edits,
            } => Message::text(J::edited(&hello(token, *cursor), edits)),
            Say::Deep {
                depth,
                object,
                in_hello,
            } => {
                let deep = gen::deep(*depth, *object);
                Message::text(if *in_hello {
                    format!(
                        r#"{{"type":"hello","protocol":{PROTOCOL_VERSION},"token":{deep},"cursor":0}}"#
                    )
                } else {
                    deep
                })
            }
            Say::Sized { len, binary } => {
                if *binary {
                    Message::binary(vec![b'{'; *len])
                } else {
                    // A hello with a token that makes the frame `len` bytes long.
                    let shell = format!(
                        r#"{{"type":"hello","protocol":{PROTOCOL_VERSION},"token":"","cursor":0}}"#
                    );
                    let token = "t".repeat(len.saturating_sub(shell.len()));
                    Message::text(format!(
                        r#"{{"type":"hello","protocol":{PROTOCOL_VERSION},"token":"{token}","cursor":0}}"#
                    ))
                }
            }
            Say::Ping(p) => Message::Ping(Bytes::from(p.clone())),
            Say::Pong(p) => Message::Pong(Bytes::from(p.clone())),
            Say::Close(frame) => Message::Close(frame.as_ref().map(|(code, reason)| CloseFrame {
                code: (*code).into(),
                reason: reason.clone().into(),
            })),
        }
    }
}

fn say(head: u64) -> BoxedStrategy<Say> {
    let cursor = prop_oneof![3 => 0..=head + 1, 1 => any::<u64>()];
    prop_oneof![
        2 => text().prop_map(Say::Text),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Say::Binary),
        2 => json().prop_map(Say::Json),
        4 => (prop_oneof![3 => Just(PROTOCOL_VERSION), 1 => any::<u32>()], token(), cursor.clone())
            .prop_map(|(protocol, token, cursor)| Say::Hello { protocol, token, cursor }),
        3 => (token(), cursor, edits())
            .prop_map(|(token, cursor, edits)| Say::Edited { token, cursor, edits }),
        1 => (1usize..8_000, any::<bool>(), any::<bool>())
            .prop_map(|(depth, object, in_hello)| Say::Deep { depth, object, in_hello }),
        1 => (
            prop_oneof![
                MAX_CLIENT_FRAME_BYTES - 2..MAX_CLIENT_FRAME_BYTES + 3,
                MAX_CLIENT_FRAME_BYTES..MAX_CLIENT_FRAME_BYTES * 6,
            ],
            any::<bool>()
        )
            .prop_map(|(len, binary)| Say::Sized { len, binary }),
        1 => prop::collection::vec(any::<u8>(), 0..125).prop_map(Say::Ping),
        1 => prop::collection::vec(any::<u8>(), 0..125).prop_map(Say::Pong),
        1 => proptest::option::of((any::<u16>(), "[ -~]{0,40}")).prop_map(Say::Close),
    ]
    .boxed()
}

/// One WebSocket frame written byte by byte, so that it can be anything: reserved bits
/// and opcodes, unmasked, a length that is not the payload's, a fragment out of place.
#[derive(Debug, Clone)]
struct WireFrame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    masked: bool,
    /// The length the header states; `None`: the payload's.
    stated: Option<u64>,
    key: [u8; 4],
    payload: WirePayload,
}

#[derive(Debug, Clone)]
enum WirePayload {
    Bytes(Vec<u8>),
    /// A valid hello with the live token (so that fragments of one can be valid).
    Hello,
    Text(String),
}

#[derive(Debug, Clone)]
enum Wire {
    Frame(WireFrame),
    Bytes(Vec<u8>),
}

impl Wire {
    fn encode(&self, tokens: &Tokens, out: &mut Vec<u8>) {
        let frame = match self {
            Wire::Bytes(b) => return out.extend_from_slice(b),
            Wire::Frame(f) => f,
        };
        let payload = match &frame.payload {
            WirePayload::Bytes(b) => b.clone(),
            WirePayload::Hello => serde_json::to_vec(&ClientFrame::Hello {
                protocol: PROTOCOL_VERSION,
                token: tokens.live.clone(),
                cursor: 0,
            })
            .expect("a hello serializes"),
            WirePayload::Text(t) => t.clone().into_bytes(),
        };
        out.push(u8::from(frame.fin) << 7 | (frame.rsv & 7) << 4 | (frame.opcode & 15));
        let len = frame.stated.unwrap_or(payload.len() as u64);
        let mask = if frame.masked { 0x80 } else { 0 };
        if len < 126 {
            out.push(mask | len as u8);
        } else if let Ok(short) = u16::try_from(len) {
            out.push(mask | 126);
            out.extend_from_slice(&short.to_be_bytes());
        } else {
            out.push(mask | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
        if frame.masked {
            out.extend_from_slice(&frame.key);
            out.extend(
                payload
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ frame.key[i % 4]),
            );
        } else {
            out.extend_from_slice(&payload);
        }
    }
}

fn wire() -> BoxedStrategy<Wire> {
    let payload = prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..300).prop_map(WirePayload::Bytes),
        2 => Just(WirePayload::Hello),
        1 => text().prop_map(WirePayload::Text),
    ];
    let stated = prop_oneof![
        4 => Just(None),
        1 => (0u64..200).prop_map(Some),
        1 => any::<u64>().prop_map(Some),
        1 => (MAX_CLIENT_FRAME_BYTES as u64 - 2..MAX_CLIENT_FRAME_BYTES as u64 + 3).prop_map(Some),
    ];
    let frame = (
        prop_oneof![3 => Just(true), 1 => Just(false)],
        prop_oneof![4 => Just(0u8), 1 => 0u8..8],
        prop_oneof![3 => Just(1u8), 1 => Just(0u8), 1 => Just(2u8), 1 => 0u8..16],
        prop_oneof![4 => Just(true), 1 => Just(false)],
        stated,
        any::<[u8; 4]>(),
        payload,
    )
        .prop_map(|(fin, rsv, opcode, masked, stated, key, payload)| {
            Wire::Frame(WireFrame {
                fin,
                rsv,
                opcode,
                masked,
                stated,
                key,
                payload,
            })
        });
    prop_oneof![
        4 => frame,
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Wire::Bytes),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
enum FeedCase {
    /// Messages one after the other, each answered before the next is sent.
    Messages(Vec<Say>),
    /// Bytes written on the upgraded socket, then the client's half closed.
    Wire(Vec<Wire>),
}

/// How the feed answers a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Welcome, the catch-up, a heartbeat.
    Welcome,
    /// The message was ignored: the next heartbeat came.
    Alive,
    Resync(ResyncReason),
    /// An error frame, then the close.
    Error(ErrorCode),
    /// Closed without an error frame.
    Closed,
}

fn oversized(message: &Message) -> bool {
    match message {
        Message::Text(t) => t.len() > MAX_CLIENT_FRAME_BYTES,
        Message::Binary(b) => b.len() > MAX_CLIENT_FRAME_BYTES,
        _ => false,
    }
}

/// What the protocol says the feed answers to `message`, as the first message of a
/// connection or after the welcome. An oversized frame may also just be cut off: the server
/// closes while the client is still writing it, and the error frame can be lost with the
/// connection's reset.
fn expected(message: &Message, welcomed: bool, tokens: &Tokens, head: u64) -> Vec<Outcome> {
    use Outcome::*;
    if oversized(message) {
        return vec![Error(ErrorCode::TooLarge), Closed];
    }
    match (message, welcomed) {
        (Message::Close(_), _) => vec![Closed, Error(ErrorCode::Malformed)],
        (Message::Ping(_) | Message::Pong(_), true) => vec![Alive],
        (Message::Text(text), false) => match serde_json::from_str::<ClientFrame>(text) {
            Err(_) => vec![Error(ErrorCode::Malformed)],
            Ok(ClientFrame::Hello {
                protocol,
                token,
                cursor,
            }) => {
                if protocol != PROTOCOL_VERSION {
                    vec![Error(ErrorCode::UnsupportedVersion)]
                } else if token != tokens.live {
                    vec![Error(ErrorCode::Unauthorized)]
                } else if cursor > head {
                    vec![Resync(ResyncReason::CursorAhead)]
                } else {
                    vec![Welcome]
                }
            }
        },
        _ => vec![Error(ErrorCode::Malformed)],
    }
}

/// Reads the feed's answer to what was just sent.
async fn answer(ws: &mut Ws, welcomed: bool, head: u64) -> Result<Outcome, String> {
    let mut welcome = welcomed;
    loop {
        let next = tokio::time::timeout(ANSWER_WITHIN, ws.next())
            .await
            .map_err(|_| format!("no answer within {ANSWER_WITHIN:?}"))?;
        let text = match next {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(Outcome::Closed),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(b))) => return Err(format!("a binary frame: {b:?}")),
            Some(Ok(_)) => continue,
        };
        let frame: ServerFrame = serde_json::from_str(text.as_str())
            .map_err(|e| format!("a frame that is no ServerFrame ({e}): {text}"))?;
        match frame {
            ServerFrame::Error { code, message } => {
                if message.is_empty() {
                    return Err(format!("an error frame {code:?} without a message"));
                }
                closes(ws).await?;
                return Ok(Outcome::Error(code));
            }
            ServerFrame::Resync { reason, message } => {
                if message.is_empty() {
                    return Err("a resync without a message".into());
                }
                closes(ws).await?;
                return Ok(Outcome::Resync(reason));
            }
            ServerFrame::Welcome {
                protocol, head: h, ..
            } if !welcome => {
                if protocol != PROTOCOL_VERSION || h != head {
                    return Err(format!("welcome with protocol {protocol}, head {h}"));
                }
                welcome = true;
            }
            ServerFrame::Changes { .. } if welcome => {}
            ServerFrame::Heartbeat { head: h } if welcome => {
                if h != head {
                    return Err(format!("a heartbeat at {h}, not {head}"));
                }
                return Ok(if welcomed {
                    Outcome::Alive
                } else {
                    Outcome::Welcome
                });
            }
            other => return Err(format!("{other:?} out of place")),
        }
    }
}

/// The connection must end now: nothing but the close.
async fn closes(ws: &mut Ws) -> Result<(), String> {
    loop {
        let next = tokio::time::timeout(ANSWER_WITHIN, ws.next())
            .await
            .map_err(|_| "the connection stays open after its last frame".to_owned())?;
        match next {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
            Some(Ok(Message::Text(t))) => return Err(format!("a frame after the last: {t}")),
            Some(Ok(Message::Binary(b))) => return Err(format!("a frame after the last: {b:?}")),
            Some(Ok(_)) => {}
        }
    }
}

async fn open_feed(server: &TestServer) -> Result<Ws, TestCaseError> {
    let tcp = tokio::net::TcpStream::connect(server.addr())
        .await
        .map_err(|e| fail(format!("cannot connect: {e}")))?;
    let url = format!("ws://{}{}", server.addr(), paths::FEED);
    let (ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .map_err(|e| fail(format!("the upgrade failed: {e}")))?;
    Ok(ws)
}

async fn feed_case(
    h: &Harness,
    tokens: &Tokens,
    head: u64,
    case: FeedCase,
) -> Result<(), TestCaseError> {
    let mut ws = open_feed(&h.server).await?;
    match case {
        FeedCase::Messages(messages) => {
            let mut welcomed = false;
            for say in messages {
                let message = say.message(tokens);
                let want = expected(&message, welcomed, tokens, head);
                // The server may have closed already (an oversized frame): it answers anyway.
                let _ = ws.send(message).await;
                let got = answer(&mut ws, welcomed, head).await.map_err(fail)?;
                h.count(format!("{got:?}"));
                prop_assert!(
                    want.contains(&got),
                    "the feed answered {got:?}; the protocol says {want:?}"
                );
                match got {
                    Outcome::Welcome => welcomed = true,
                    Outcome::Alive => {}
                    _ => break,
                }
            }
        }
        FeedCase::Wire(pieces) => {
            let mut bytes = Vec::new();
            for piece in &pieces {
                piece.encode(tokens, &mut bytes);
            }
            let _ = ws.get_mut().write_all(&bytes).await;
            let _ = ws.get_mut().shutdown().await;
            // Whatever it made of the bytes, the feed ends, with a stable code if any.
            let mut welcomed = false;
            loop {
                let got = answer(&mut ws, welcomed, head).await.map_err(fail)?;
                h.count(format!("wire: {got:?}"));
                match got {
                    Outcome::Welcome | Outcome::Alive => welcomed = true,
                    Outcome::Error(code) => {
                        prop_assert!(
                            matches!(
                                code,
                                ErrorCode::Malformed
                                    | ErrorCode::TooLarge
                                    | ErrorCode::UnsupportedVersion
                                    | ErrorCode::Unauthorized
                            ),
                            "error {code:?}"
                        );
                        break;
                    }
                    Outcome::Resync(_) | Outcome::Closed => break,
                }
            }
        }
    }
    let _ = ws.close(None).await;
    prop_assert_eq!(h.server.state().head().await, head, "the head moved");
    healthy(&h.http, &h.server.url()).await
}

#[test]
fn fuzz_feed_first_frames() {
    let h = Harness::start();
    let (tokens, head) = h.rt.block_on(async {
        let live = h.server.login("olivia").await;
        let gone = h.server.login("sam").await;
        assert_eq!(gone.logout().await, 204);
        let tokens = Tokens {
            live: live.login.token.clone(),
            revoked: gone.login.token.clone(),
        };
        (tokens, h.server.state().head().await)
    });
    let strategy = prop_oneof![
        4 => prop::collection::vec(say(head), 1..4).prop_map(FeedCase::Messages),
        1 => prop::collection::vec(wire(), 1..4).prop_map(FeedCase::Wire),
    ];
    fuzz(
        "feed_first_frames",
        regressions!("feed_first_frames"),
        500,
        strategy,
        |case| h.rt.block_on(feed_case(&h, &tokens, head, case)),
    );
    h.still_serving("feed_first_frames");
}

// ---------------------------------------------------------------------------------------
// HTTP: one request and what the protocol says of its answer.

#[derive(Debug, Clone)]
enum ContentType {
    None,
    Json,
    Text,
    Other(String),
}

fn content_type() -> BoxedStrategy<ContentType> {
    prop_oneof![
        2 => Just(ContentType::None),
        4 => Just(ContentType::Json),
        1 => Just(ContentType::Text),
        1 => "[ -~]{0,40}".prop_map(ContentType::Other),
    ]
    .boxed()
}

/// The `Authorization` header.
#[derive(Debug, Clone)]
enum Auth {
    None,
    /// `Bearer` and the token of the `n`th signed-in user (modulo their number).
    Live(usize),
    /// `Bearer` and a token that signed out.
    Revoked,
    Bearer(String),
    /// The live token with something appended or cut.
    Mangled(usize, String),
    Raw(String),
}

fn auth() -> BoxedStrategy<Auth> {
    prop_oneof![
        1 => Just(Auth::None),
        6 => any::<usize>().prop_map(Auth::Live),
        1 => Just(Auth::Revoked),
        1 => "[ -~]{0,80}".prop_map(Auth::Bearer),
        1 => (any::<usize>(), "[ -~]{0,8}").prop_map(|(n, s)| Auth::Mangled(n, s)),
        1 => "[ -~]{0,80}".prop_map(Auth::Raw),
    ]
    .boxed()
}

/// The users a target signs in, and a signed-out token.
struct Users {
    staff: Vec<Staffer>,
    revoked: String,
}

impl Users {
    async fn sign_in(server: &TestServer, names: &[&str]) -> Users {
        let mut staff = Vec::new();
        for name in names {
            staff.push(server.login(name).await);
        }
        let gone = server.login(names[0]).await;
        assert_eq!(gone.logout().await, 204);
        Users {
            staff,
            revoked: gone.login.token,
        }
    }

    fn get(&self, n: usize) -> &Staffer {
        &self.staff[n % self.staff.len()]
    }

    /// The header value, and the user it signs in (if any: a mangled token can come out
    /// whole, and header values lose their surrounding whitespace on the way).
    fn header(&self, auth: &Auth) -> (Option<String>, Option<&Staffer>) {
        let value = match auth {
            Auth::None => None,
            Auth::Live(n) => Some(format!("Bearer {}", self.get(*n).login.token)),
            Auth::Revoked => Some(format!("Bearer {}", self.revoked)),
            Auth::Bearer(t) => Some(format!("Bearer {t}")),
            Auth::Mangled(n, s) => {
                let token = &self.get(*n).login.token;
                let cut = &token[..n % token.len()];
                Some(format!("Bearer {cut}{s}"))
            }
            Auth::Raw(r) => Some(r.clone()),
        };
        let user = value.as_deref().and_then(|v| {
            let v = v.trim_matches([' ', '\t']);
            self.staff
                .iter()
                .find(|s| v.strip_prefix("Bearer ") == Some(s.login.token.as_str()))
        });
        (value, user)
    }
}

/// An HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    replayed: bool,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The refusal in the body: an `ApiError` with the status its code has, never internal.
    fn refusal(&self) -> Result<ErrorCode, TestCaseError> {
        let error: ApiError = serde_json::from_slice(&self.body).map_err(|e| {
            fail(format!(
                "status {} with a body that is no ApiError ({e}): {}",
                self.status,
                self.text()
            ))
        })?;
        prop_assert_ne!(error.code, ErrorCode::Internal, "{}", error.message);
        prop_assert_eq!(error.code.http_status(), self.status, "{:?}", error);
        prop_assert!(
            !error.message.is_empty(),
            "{:?} without a message",
            error.code
        );
        Ok(error.code)
    }

    fn success<T: serde::de::DeserializeOwned>(&self, status: u16) -> Result<T, TestCaseError> {
        prop_assert_eq!(self.status, status, "{}", self.text());
        serde_json::from_slice(&self.body)
            .map_err(|e| fail(format!("the answer does not decode ({e}): {}", self.text())))
    }
}

/// Sends one request. A header value that is not a valid header value is left out (no
/// client could send it).
async fn send(
    h: &Harness,
    method: Method,
    path: &str,
    headers: &[(&str, Option<String>)],
    body: Vec<u8>,
) -> Result<Answer, TestCaseError> {
    let mut request = h.http.request(method, h.url(path)).body(body);
    for (name, value) in headers {
        if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            request = request.header(*name, value);
        }
    }
    let res = request.send().await.map_err(|e| {
        fail(format!(
            "no answer (a panic or a dropped connection?): {e:?}"
        ))
    })?;
    let status = res.status().as_u16();
    let replayed = res
        .headers()
        .get(paths::IDEMPOTENT_REPLAYED_HEADER)
        .is_some();
    let body = res
        .bytes()
        .await
        .map_err(|e| fail(format!("the answer was cut off: {e}")))?
        .to_vec();
    prop_assert_ne!(status, 500, "{}", String::from_utf8_lossy(&body));
    Ok(Answer {
        status,
        replayed,
        body,
    })
}

fn content_type_header(ct: &ContentType) -> (&'static str, Option<String>) {
    let value = match ct {
        ContentType::None => None,
        ContentType::Json => Some("application/json".to_owned()),
        ContentType::Text => Some("text/plain".to_owned()),
        ContentType::Other(v) => Some(v.clone()),
    };
    (CONTENT_TYPE.as_str(), value)
}

/// What a body that is not `T` gets: too large over the limit, malformed otherwise.
fn unreadable(len: usize) -> ErrorCode {
    if len > MAX_REQUEST_BODY_BYTES {
        ErrorCode::TooLarge
    } else {
        ErrorCode::Malformed
    }
}

/// The request's body parsed as the server parses it, if it fits the limit.
fn parsed<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    (body.len() <= MAX_REQUEST_BODY_BYTES)
        .then(|| serde_json::from_slice(body).ok())
        .flatten()
}

// ---------------------------------------------------------------------------------------
// POST /v1/login

#[derive(Debug, Clone)]
enum Name {
    Demo(usize),
    Other(String),
}

#[derive(Debug, Clone)]
enum LoginBody {
    Raw(Raw),
    Typed {
        name: Name,
        right: bool,
        password: String,
    },
    Edited {
        name: Name,
        right: bool,
        edits: Vec<Edit>,
    },
}

const DEMO: [&str; 8] = [
    "maria", "olivia", "sam", "reyes", "kim", "dan", "lee", "admin",
];

fn login_request(name: &Name, right: bool, password: &str) -> LoginRequest {
    LoginRequest {
        username: match name {
            Name::Demo(n) => DEMO[n % DEMO.len()].to_owned(),
            Name::Other(s) => s.clone(),
        },
        password: if right {
            PASSWORD.to_owned()
        } else {
            password.to_owned()
        },
    }
}

fn login_body() -> BoxedStrategy<LoginBody> {
    let name = prop_oneof![
        3 => any::<usize>().prop_map(Name::Demo),
        1 => text().prop_map(Name::Other),
    ];
    prop_oneof![
        5 => raw(MAX_REQUEST_BODY_BYTES).prop_map(LoginBody::Raw),
        2 => (name.clone(), any::<bool>(), text())
            .prop_map(|(name, right, password)| LoginBody::Typed { name, right, password }),
        4 => (name, any::<bool>(), edits())
            .prop_map(|(name, right, edits)| LoginBody::Edited { name, right, edits }),
    ]
    .boxed()
}

async fn login_case(
    h: &Harness,
    olivia: &Staffer,
    (body, ct): (LoginBody, ContentType),
) -> Result<(), TestCaseError> {
    let bytes = match &body {
        LoginBody::Raw(raw) => raw.bytes(),
        LoginBody::Typed {
            name,
            right,
            password,
        } => serde_json::to_vec(&login_request(name, *right, password)).expect("serializes"),
        LoginBody::Edited { name, right, edits } => {
            J::edited(&login_request(name, *right, "wrong"), edits).into_bytes()
        }
    };
    let before = state(&h.server, &[olivia]).await;
    let request = parsed::<LoginRequest>(&bytes);
    let len = bytes.len();
    let answer = send(
        h,
        Method::POST,
        paths::LOGIN,
        &[content_type_header(&ct)],
        bytes,
    )
    .await?;
    match request {
        Some(r) if DEMO.contains(&r.username.as_str()) && r.password == PASSWORD => {
            let login: LoginResponse = answer.success(200)?;
            prop_assert_eq!(login.user.username, r.username);
            h.count("signed in");
        }
        Some(_) => {
            let code = answer.refusal()?;
            prop_assert_eq!(code, ErrorCode::Unauthorized);
            h.count("wrong credentials");
        }
        None => {
            let code = answer.refusal()?;
            prop_assert_eq!(code, unreadable(len));
            h.count(format!("{code:?}"));
        }
    }
    prop_assert_eq!(
        state(&h.server, &[olivia]).await,
        before,
        "a login changed state"
    );
    Ok(())
}

#[test]
fn fuzz_login_bodies() {
    let h = Harness::start();
    let olivia = h.rt.block_on(h.server.login("olivia"));
    fuzz(
        "login_bodies",
        regressions!("login_bodies"),
        100,
        (login_body(), content_type()),
        |case| h.rt.block_on(login_case(&h, &olivia, case)),
    );
    h.still_serving("login_bodies");
}

// ---------------------------------------------------------------------------------------
// POST /v1/logout and GET /v1/snapshot

#[derive(Debug, Clone)]
enum LogoutAuth {
    /// A session signed in for this case: the logout must work, and end it.
    Fresh,
    Other(Auth),
}

async fn logout_case(
    h: &Harness,
    users: &Users,
    (auth, body, ct): (LogoutAuth, Raw, ContentType),
) -> Result<(), TestCaseError> {
    let olivia = users.get(1);
    let before = state(&h.server, &[olivia]).await;
    let fresh = match &auth {
        LogoutAuth::Fresh => Some(h.server.login("dan").await),
        LogoutAuth::Other(_) => None,
    };
    let header = match (&auth, &fresh) {
        (LogoutAuth::Other(a), _) => match users.header(a) {
            // Signing out a session the other cases use would end them: a revoked one.
            (_, Some(_)) => Some(format!("Bearer {}", users.revoked)),
            (header, None) => header,
        },
        (LogoutAuth::Fresh, Some(s)) => Some(format!("Bearer {}", s.login.token)),
        (LogoutAuth::Fresh, None) => unreachable!("signed in above"),
    };
    let answer = send(
        h,
        Method::POST,
        paths::LOGOUT,
        &[(AUTHORIZATION.as_str(), header), content_type_header(&ct)],
        body.bytes(),
    )
    .await?;
    if let Some(session) = fresh {
        prop_assert_eq!(answer.status, 204, "{}", answer.text());
        let after = send(
            h,
            Method::GET,
            paths::SNAPSHOT,
            &[(
                AUTHORIZATION.as_str(),
                Some(format!("Bearer {}", session.login.token)),
            )],
            Vec::new(),
        )
        .await?;
        prop_assert_eq!(after.refusal()?, ErrorCode::Unauthorized);
        h.count("signed out");
    } else {
        prop_assert_eq!(answer.refusal()?, ErrorCode::Unauthorized);
        h.count("refused");
    }
    prop_assert_eq!(
        state(&h.server, &[olivia]).await,
        before,
        "a logout changed state"
    );
    Ok(())
}

#[test]
fn fuzz_logout_requests() {
    let h = Harness::start();
    let users =
        h.rt.block_on(Users::sign_in(&h.server, &["maria", "olivia"]));
    let auth = prop_oneof![
        1 => Just(LogoutAuth::Fresh),
        6 => auth().prop_map(LogoutAuth::Other),
    ];
    fuzz(
        "logout_requests",
        regressions!("logout_requests"),
        80,
        (auth, raw(MAX_REQUEST_BODY_BYTES), content_type()),
        |case| h.rt.block_on(logout_case(&h, &users, case)),
    );
    h.still_serving("logout_requests");
}

async fn snapshot_case(
    h: &Harness,
    users: &Users,
    (auth, body, ct): (Auth, Raw, ContentType),
) -> Result<(), TestCaseError> {
    let head = h.server.state().head().await;
    let (header, user) = users.header(&auth);
    let answer = send(
        h,
        Method::GET,
        paths::SNAPSHOT,
        &[(AUTHORIZATION.as_str(), header), content_type_header(&ct)],
        body.bytes(),
    )
    .await?;
    match user {
        Some(user) => {
            let snapshot: Snapshot = answer.success(200)?;
            prop_assert_eq!(snapshot.seq, head);
            prop_assert_eq!(&snapshot.user, &user.login.user);
            h.count("snapshot");
        }
        None => {
            prop_assert_eq!(answer.refusal()?, ErrorCode::Unauthorized);
            h.count("refused");
        }
    }
    prop_assert_eq!(h.server.state().head().await, head);
    Ok(())
}

#[test]
fn fuzz_snapshot_requests() {
    let h = Harness::start();
    let users = h.rt.block_on(Users::sign_in(
        &h.server,
        &["maria", "olivia", "reyes", "dan"],
    ));
    fuzz(
        "snapshot_requests",
        regressions!("snapshot_requests"),
        300,
        (auth(), raw(MAX_REQUEST_BODY_BYTES), content_type()),
        |case| h.rt.block_on(snapshot_case(&h, &users, case)),
    );
    h.still_serving("snapshot_requests");
}

// ---------------------------------------------------------------------------------------
// POST /v1/mutations: every mutation with random field values.

/// A record id: one the user may see (by index, modulo how many there are), or not.
#[derive(Debug, Clone)]
enum Pick {
    Booking(usize),
    Slot(usize),
    Message(usize),
    Staff(usize),
    Random(u128),
    Nil,
}

fn pick() -> BoxedStrategy<Pick> {
    prop_oneof![
        3 => any::<usize>().prop_map(Pick::Booking),
        2 => any::<usize>().prop_map(Pick::Slot),
        2 => any::<usize>().prop_map(Pick::Message),
        2 => any::<usize>().prop_map(Pick::Staff),
        1 => any::<u128>().prop_map(Pick::Random),
        1 => Just(Pick::Nil),
    ]
    .boxed()
}

/// The version a change names: the record's, near it, or anything.
#[derive(Debug, Clone)]
enum Ver {
    Current,
    Off(i64),
    Raw(i64),
}

fn ver() -> BoxedStrategy<Ver> {
    prop_oneof![
        4 => Just(Ver::Current),
        1 => (-2i64..3).prop_map(Ver::Off),
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64), any::<i64>()].prop_map(Ver::Raw),
    ]
    .boxed()
}

/// A date: days from today (inside and outside the window), or anywhere.
#[derive(Debug, Clone)]
enum Day {
    FromToday(i64),
    Ce(i32),
    Min,
    Max,
}

fn day() -> BoxedStrategy<Day> {
    prop_oneof![
        6 => (-3i64..800).prop_map(Day::FromToday),
        1 => any::<i32>().prop_map(Day::Ce),
        1 => Just(Day::Min),
        1 => Just(Day::Max),
    ]
    .boxed()
}

/// A time: on a quarter hour, or any second and nanosecond (leap seconds included).
#[derive(Debug, Clone)]
enum Time {
    Quarter(u32),
    Any(u32, u32),
}

fn time() -> BoxedStrategy<Time> {
    prop_oneof![
        4 => (0u32..96).prop_map(Time::Quarter),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(s, n)| Time::Any(s, n)),
    ]
    .boxed()
}

/// Text for a field: plausible, short, empty, right at a limit, or far over it.
fn field() -> BoxedStrategy<String> {
    let limits = prop::sample::select(&[MAX_SHORT_TEXT, MAX_NOTE_TEXT, MAX_MESSAGE_TEXT][..]);
    prop_oneof![
        20 => "[A-Za-z][A-Za-z .-]{0,30}",
        3 => text(),
        2 => (limits, -1i64..2, prop::sample::select(&['a', 'é', '🙂', ' '][..]))
            .prop_map(|(limit, off, c)| c.to_string().repeat((limit as i64 + off) as usize)),
        1 => (0usize..70_000).prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
enum Gen {
    CreateBooking {
        id: Pick,
        fields: [String; 4],
        date: Day,
        start: Time,
        end: Time,
        therapist: Option<Pick>,
        driver: Option<Pick>,
        notes: String,
    },
    Action {
        id: Pick,
        version: Ver,
        action: BookingAction,
    },
    Pay {
        id: Pick,
        version: Ver,
        amount_cents: i64,
        method: PaymentMethod,
        reference: String,
    },
    Cancel {
        id: Pick,
        version: Ver,
        reason: String,
    },
    Duty {
        staff: Pick,
        on_duty: bool,
    },
    Reschedule {
        id: Pick,
        version: Ver,
        date: Day,
        start: Time,
        end: Time,
    },
    Assign {
        id: Pick,
        version: Ver,
        therapist: Option<Pick>,
        driver: Option<Pick>,
    },
    CreateSlot {
        id: Pick,
        staff: Pick,
        date: Day,
        start: Time,
        end: Time,
        note: String,
    },
    UpdateSlot {
        id: Pick,
        version: Ver,
        date: Day,
        start: Time,
        end: Time,
        note: String,
    },
    DeleteSlot {
        id: Pick,
        version: Ver,
    },
    Send {
        id: Pick,
        to: Pick,
        body: String,
    },
    MarkRead {
        id: Pick,
    },
}

fn mutation() -> BoxedStrategy<Gen> {
    let new = prop_oneof![3 => any::<u128>().prop_map(Pick::Random), 1 => pick()];
    let person = prop_oneof![3 => any::<usize>().prop_map(Pick::Staff), 1 => pick()];
    let maybe = proptest::option::of(person.clone());
    prop_oneof![
        (
            new.clone(),
            [field(), field(), field(), field()],
            day(),
            time(),
            time(),
            (maybe.clone(), maybe.clone()),
            field()
        )
            .prop_map(
                |(id, fields, date, start, end, (therapist, driver), notes)| {
                    Gen::CreateBooking {
                        id,
                        fields,
                        date,
                        start,
                        end,
                        therapist,
                        driver,
                        notes,
                    }
                }
            ),
        (pick(), ver(), prop::sample::select(&BookingAction::ALL[..])).prop_map(
            |(id, version, action)| Gen::Action {
                id,
                version,
                action
            }
        ),
        (pick(), ver(), day(), time(), time()).prop_map(|(id, version, date, start, end)| {
            Gen::Reschedule {
                id,
                version,
                date,
                start,
                end,
            }
        }),
        (pick(), ver(), maybe.clone(), maybe).prop_map(|(id, version, therapist, driver)| {
            Gen::Assign {
                id,
                version,
                therapist,
                driver,
            }
        }),
        (new.clone(), person.clone(), day(), time(), time(), field()).prop_map(
            |(id, staff, date, start, end, note)| Gen::CreateSlot {
                id,
                staff,
                date,
                start,
                end,
                note
            }
        ),
        (pick(), ver(), day(), time(), time(), field()).prop_map(
            |(id, version, date, start, end, note)| Gen::UpdateSlot {
                id,
                version,
                date,
                start,
                end,
                note
            }
        ),
        (pick(), ver()).prop_map(|(id, version)| Gen::DeleteSlot { id, version }),
        (new, person.clone(), field()).prop_map(|(id, to, body)| Gen::Send { id, to, body }),
        pick().prop_map(|id| Gen::MarkRead { id }),
        (
            pick(),
            ver(),
            prop_oneof![
                3 => 1i64..MAX_PAYMENT_CENTS,
                1 => prop_oneof![Just(0i64), Just(-1i64), Just(MAX_PAYMENT_CENTS), Just(MAX_PAYMENT_CENTS + 1), Just(i64::MIN), Just(i64::MAX)],
            ],
            prop::sample::select(&PaymentMethod::ALL[..]),
            field()
        )
            .prop_map(|(id, version, amount_cents, method, reference)| Gen::Pay {
                id,
                version,
                amount_cents,
                method,
                reference
            }),
        (pick(), ver(), field()).prop_map(|(id, version, reason)| Gen::Cancel {
            id,
            version,
            reason
        }),
        (person, any::<bool>()).prop_map(|(staff, on_duty)| Gen::Duty { staff, on_duty }),
    ]
    .boxed()
}

/// The records a case's ids and versions are drawn from.
struct World {
    records: Vec<Record>,
    today: NaiveDate,
}

impl World {
    fn of(snapshots: &[Snapshot]) -> World {
        let mut records: Vec<Record> = snapshots
            .iter()
            .flat_map(|s| s.records.iter().cloned())
            .collect();
        records.sort_by_key(|r| (r.kind(), r.id()));
        records.dedup_by_key(|r| (r.kind(), r.id()));
        World {
            records,
            today: Local::now().date_naive(),
        }
    }

    fn nth(&self, kind: clinic_protocol::RecordKind, n: usize) -> Id {
        let of: Vec<&Record> = self.records.iter().filter(|r| r.kind() == kind).collect();
        if of.is_empty() {
            Uuid::from_u128(n as u128)
        } else {
            of[n % of.len()].id()
        }
    }

    fn id(&self, pick: &Pick) -> Id {
        use clinic_protocol::RecordKind;
        match pick {
            Pick::Booking(n) => self.nth(RecordKind::Booking, *n),
            Pick::Slot(n) => self.nth(RecordKind::Slot, *n),
            Pick::Message(n) => self.nth(RecordKind::Message, *n),
            Pick::Staff(n) => self.nth(RecordKind::Staff, *n),
            Pick::Random(r) => Uuid::from_u128(*r),
            Pick::Nil => Uuid::nil(),
        }
    }

    fn version(&self, id: Id, ver: &Ver) -> i64 {
        let current = self
            .records
            .iter()
            .find(|r| r.id() == id)
            .map_or(1, Record::version);
        match ver {
            Ver::Current => current,
            Ver::Off(d) => current.saturating_add(*d),
            Ver::Raw(v) => *v,
        }
    }

    fn date(&self, day: &Day) -> NaiveDate {
        match day {
            Day::FromToday(d) => self
                .today
                .checked_add_signed(chrono::Duration::days(*d))
                .unwrap_or(self.today),
            Day::Ce(n) => NaiveDate::from_num_days_from_ce_opt(*n).unwrap_or(NaiveDate::MIN),
            Day::Min => NaiveDate::MIN,
            Day::Max => NaiveDate::MAX,
        }
    }

    fn time(time: &Time) -> NaiveTime {
        match time {
            Time::Quarter(q) => NaiveTime::from_hms_opt(q / 4, (q % 4) * 15, 0).expect("a time"),
            Time::Any(s, n) => {
                NaiveTime::from_num_seconds_from_midnight_opt(s % 86_400, n % 2_000_000_000)
                    .unwrap_or(NaiveTime::MIN)
            }
        }
    }

    fn mutation(&self, g: &Gen) -> Mutation {
        let id = |p: &Pick| self.id(p);
        let t = World::time;
        match g {
            Gen::CreateBooking {
                id: p,
                fields: [client_name, client_phone, address, service],
                date,
                start,
                end,
                therapist,
                driver,
                notes,
            } => Mutation::CreateBooking {
                booking: NewBooking {
                    id: id(p),
                    client_name: client_name.clone(),
                    client_phone: client_phone.clone(),
                    address: address.clone(),
                    service: service.clone(),
                    date: self.date(date),
                    start: t(start),
                    end: t(end),
                    therapist_id: therapist.as_ref().map(id),
                    driver_id: driver.as_ref().map(id),
                    notes: notes.clone(),
                },
            },
            Gen::Action {
                id: p,
                version,
                action,
            } => Mutation::BookingAction {
                id: id(p),
                version: self.version(id(p), version),
                action: *action,
            },
            Gen::Reschedule {
                id: p,
                version,
                date,
                start,
                end,
            } => Mutation::RescheduleBooking {
                id: id(p),
                version: self.version(id(p), version),
                date: self.date(date),
                start: t(start),
                end: t(end),
            },
            Gen::Assign {
                id: p,
                version,
                therapist,
                driver,
            } => Mutation::AssignBooking {
                id: id(p),
                version: self.version(id(p), version),
                therapist_id: therapist.as_ref().map(id),
                driver_id: driver.as_ref().map(id),
            },
            Gen::CreateSlot {
                id: p,
                staff,
                date,
                start,
                end,
                note,
            } => Mutation::CreateSlot {
                slot: NewSlot {
                    id: id(p),
                    staff_id: id(staff),
                    date: self.date(date),
                    start: t(start),
                    end: t(end),
                    note: note.clone(),
                },
            },
            Gen::UpdateSlot {
                id: p,
                version,
                date,
                start,
                end,
                note,
            } => Mutation::UpdateSlot {
                id: id(p),
                version: self.version(id(p), version),
                date: self.date(date),
                start: t(start),
                end: t(end),
                note: note.clone(),
            },
            Gen::DeleteSlot { id: p, version } => Mutation::DeleteSlot {
                id: id(p),
                version: self.version(id(p), version),
            },
            Gen::Send { id: p, to, body } => Mutation::SendMessage {
                message: NewMessage {
                    id: id(p),
                    recipient_id: id(to),
                    body: body.clone(),
                },
            },
            Gen::MarkRead { id: p } => Mutation::MarkRead { id: id(p) },
            Gen::Pay {
                id: p,
                version,
                amount_cents,
                method,
                reference,
            } => Mutation::VerifyPayment {
                id: id(p),
                version: self.version(id(p), version),
                amount_cents: *amount_cents,
                method: *method,
                reference: reference.clone(),
            },
            Gen::Cancel {
                id: p,
                version,
                reason,
            } => Mutation::CancelBooking {
                id: id(p),
                version: self.version(id(p), version),
                reason: reason.clone(),
            },
            Gen::Duty { staff, on_duty } => Mutation::SetOnDuty {
                staff_id: id(staff),
                on_duty: *on_duty,
            },
        }
    }
}

/// The mutation id: a new one, or one sent before (by index into those sent).
#[derive(Debug, Clone)]
enum MutationId {
    New(u128),
    Again(usize),
}

#[derive(Debug, Clone)]
enum MutationBody {
    Raw(Raw),
    Typed(MutationId, Gen),
    Edited(MutationId, Gen, Vec<Edit>),
}

fn mutation_body() -> BoxedStrategy<MutationBody> {
    let id = prop_oneof![
        4 => any::<u128>().prop_map(MutationId::New),
        1 => any::<usize>().prop_map(MutationId::Again),
    ];
    prop_oneof![
        2 => raw(MAX_REQUEST_BODY_BYTES).prop_map(MutationBody::Raw),
        6 => (id.clone(), mutation()).prop_map(|(id, m)| MutationBody::Typed(id, m)),
        3 => (id, mutation(), edits()).prop_map(|(id, m, e)| MutationBody::Edited(id, m, e)),
    ]
    .boxed()
}

async fn mutation_case(
    h: &Harness,
    users: &Users,
    sent: &Mutex<Vec<Uuid>>,
    (auth, body, ct): (Auth, MutationBody, ContentType),
) -> Result<(), TestCaseError> {
    let (header, user) = users.header(&auth);
    let olivia = users.get(1);
    let watchers: Vec<&Staffer> = user.into_iter().chain([olivia]).collect();
    let head = h.server.state().head().await;
    let mut snapshots = Vec::new();
    for w in &watchers {
        snapshots.push(w.snapshot().await);
    }
    let before = (head, snapshots.iter().map(sorted).collect::<Vec<_>>());
    let world = World::of(&snapshots);
    let mutation_id = |id: &MutationId| match id {
        MutationId::New(n) => Uuid::from_u128(*n),
        MutationId::Again(n) => {
            let sent = sent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            sent.get(n % sent.len().max(1))
                .copied()
                .unwrap_or_else(|| Uuid::from_u128(*n as u128))
        }
    };
    let bytes = match &body {
        MutationBody::Raw(raw) => raw.bytes(),
        MutationBody::Typed(id, g) => serde_json::to_vec(&MutationRequest {
            mutation_id: mutation_id(id),
            mutation: world.mutation(g),
        })
        .expect("serializes"),
        MutationBody::Edited(id, g, edits) => J::edited(
            &MutationRequest {
                mutation_id: mutation_id(id),
                mutation: world.mutation(g),
            },
            edits,
        )
        .into_bytes(),
    };
    let request = parsed::<MutationRequest>(&bytes);
    let len = bytes.len();
    let answer = send(
        h,
        Method::POST,
        paths::MUTATIONS,
        &[(AUTHORIZATION.as_str(), header), content_type_header(&ct)],
        bytes,
    )
    .await?;
    let after = state(&h.server, &watchers).await;
    let applied = match (user, request) {
        (None, _) => {
            prop_assert_eq!(answer.refusal()?, ErrorCode::Unauthorized);
            h.count("Unauthorized");
            None
        }
        (Some(_), None) => {
            let code = answer.refusal()?;
            prop_assert_eq!(code, unreadable(len));
            h.count(format!("{code:?}"));
            None
        }
        (Some(_), Some(request)) => {
            sent.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(request.mutation_id);
            match answer.success::<MutationOutcome>(200)? {
                MutationOutcome::Applied { seq, .. } => {
                    h.count("applied");
                    Some(seq)
                }
                MutationOutcome::Rejected { code, message, .. } => {
                    h.count(format!("rejected: {code:?}"));
                    prop_assert_ne!(code, ErrorCode::Internal, "{}", message);
                    prop_assert!(!message.is_empty(), "{:?} without a message", code);
                    None
                }
            }
        }
    };
    match applied {
        None => prop_assert_eq!(after, before, "a refused mutation changed state"),
        Some(seq) => {
            // One change committed, or none (a replay, or nothing to do).
            let (was, is) = (before.0, after.0);
            prop_assert!(
                is == was && seq <= is || is == was + 1 && seq == is,
                "applied as {seq}; the head went from {was} to {is}"
            );
            if is == was {
                prop_assert_eq!(after, before, "applied without a change, yet changed");
            }
        }
    }
    Ok(())
}

#[test]
fn fuzz_mutation_bodies() {
    let h = Harness::start();
    let users = h.rt.block_on(Users::sign_in(
        &h.server,
        &["maria", "olivia", "sam", "reyes", "dan"],
    ));
    let sent = Mutex::new(Vec::new());
    fuzz(
        "mutation_bodies",
        regressions!("mutation_bodies"),
        400,
        (
            prop_oneof![8 => any::<usize>().prop_map(Auth::Live), 1 => auth()],
            mutation_body(),
            content_type(),
        ),
        |case| h.rt.block_on(mutation_case(&h, &users, &sent, case)),
    );
    h.still_serving("mutation_bodies");
}

// ---------------------------------------------------------------------------------------
// POST /v1/intake: the web form, with and without its key.

#[derive(Debug, Clone)]
enum IntakeKey {
    None,
    Right,
    Wrong(String),
}

#[derive(Debug, Clone)]
enum Idempotency {
    None,
    /// One of a few keys, so that keys are reused with the same and other bookings.
    Known(u8),
    Other(String),
}

#[derive(Debug, Clone)]
struct GenIntake {
    fields: [String; 4],
    date: Day,
    start: Time,
    end: Time,
    notes: String,
}

impl GenIntake {
    fn request(&self, world: &World) -> IntakeRequest {
        let [client_name, client_phone, address, service] = self.fields.clone();
        IntakeRequest {
            client_name,
            client_phone,
            address,
            service,
            date: world.date(&self.date),
            start: World::time(&self.start),
            end: World::time(&self.end),
            notes: self.notes.clone(),
        }
    }
}

#[derive(Debug, Clone)]
enum IntakeBody {
    Raw(Raw),
    Typed(GenIntake),
    Edited(GenIntake, Vec<Edit>),
}

fn form() -> BoxedStrategy<GenIntake> {
    (
        [field(), field(), field(), field()],
        day(),
        time(),
        time(),
        field(),
    )
        .prop_map(|(fields, date, start, end, notes)| GenIntake {
            fields,
            date,
            start,
            end,
            notes,
        })
        .boxed()
}

fn intake_body() -> BoxedStrategy<IntakeBody> {
    prop_oneof![
        2 => raw(MAX_REQUEST_BODY_BYTES).prop_map(IntakeBody::Raw),
        4 => form().prop_map(IntakeBody::Typed),
        3 => (form(), edits()).prop_map(|(f, e)| IntakeBody::Edited(f, e)),
    ]
    .boxed()
}

fn intake_case_strategy() -> impl Strategy<Value = (IntakeKey, Idempotency, IntakeBody, ContentType)>
{
    let key = prop_oneof![
        1 => Just(IntakeKey::None),
        6 => Just(IntakeKey::Right),
        1 => "[ -~]{0,40}".prop_map(IntakeKey::Wrong),
    ];
    let idempotency = prop_oneof![
        3 => Just(Idempotency::None),
        2 => (0u8..4).prop_map(Idempotency::Known),
        1 => "[ -~]{0,300}".prop_map(Idempotency::Other),
    ];
    (key, idempotency, intake_body(), content_type())
}

async fn intake_case(
    h: &Harness,
    olivia: &Staffer,
    (key, idempotency, body, ct): (IntakeKey, Idempotency, IntakeBody, ContentType),
) -> Result<(), TestCaseError> {
    let before = state(&h.server, &[olivia]).await;
    let world = World::of(&[]);
    let bytes = match &body {
        IntakeBody::Raw(raw) => raw.bytes(),
        IntakeBody::Typed(form) => serde_json::to_vec(&form.request(&world)).expect("serializes"),
        IntakeBody::Edited(form, edits) => J::edited(&form.request(&world), edits).into_bytes(),
    };
    let key_header = match &key {
        IntakeKey::None => None,
        IntakeKey::Right => Some(INTAKE_KEY.to_owned()),
        IntakeKey::Wrong(k) => Some(k.clone()),
    };
    let idempotency_header = match &idempotency {
        Idempotency::None => None,
        Idempotency::Known(n) => Some(format!("fuzz-form-{n}")),
        Idempotency::Other(k) => Some(k.clone()),
    };
    // What the server will see of the idempotency key (a value no client could send is
    // left out).
    let idempotency_sent = idempotency_header
        .as_deref()
        .filter(|v| HeaderValue::from_str(v).is_ok());
    let valid_key = idempotency_sent.is_none_or(|k| {
        // Header values lose their surrounding whitespace on the way.
        let k = k.trim_matches(|c| c == ' ' || c == '\t');
        !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic())
    });
    let request = parsed::<IntakeRequest>(&bytes);
    let len = bytes.len();
    let answer = send(
        h,
        Method::POST,
        paths::INTAKE,
        &[
            (paths::INTAKE_KEY_HEADER, key_header),
            (paths::IDEMPOTENCY_KEY_HEADER, idempotency_header.clone()),
            content_type_header(&ct),
        ],
        bytes,
    )
    .await?;
    let after = state(&h.server, &[olivia]).await;
    let booked = match (&key, request) {
        (IntakeKey::Right, Some(_)) if !valid_key => {
            prop_assert_eq!(answer.refusal()?, ErrorCode::InvalidValue);
            h.count("bad idempotency key");
            false
        }
        (IntakeKey::Right, Some(_)) if answer.status == 201 => {
            let booking: Booking = answer.success(201)?;
            prop_assert_eq!(booking.created_by, None);
            h.count(if answer.replayed {
                "booked again"
            } else {
                "booked"
            });
            !answer.replayed
        }
        (IntakeKey::Right, Some(_)) => {
            let code = answer.refusal()?;
            prop_assert!(
                matches!(code, ErrorCode::InvalidValue | ErrorCode::Conflict),
                "a web booking refused with {code:?}"
            );
            h.count(format!("{code:?}"));
            false
        }
        (IntakeKey::Right, None) => {
            let code = answer.refusal()?;
            prop_assert_eq!(code, unreadable(len));
            h.count(format!("{code:?}"));
            false
        }
        (_, _) => {
            prop_assert_eq!(answer.refusal()?, ErrorCode::BadIntakeKey);
            h.count("BadIntakeKey");
            false
        }
    };
    if booked {
        prop_assert_eq!(after.0, before.0 + 1, "a web booking is one change");
    } else {
        prop_assert_eq!(
            after,
            before,
            "a refused or replayed web booking changed state"
        );
    }
    Ok(())
}

#[test]
fn fuzz_intake_bodies() {
    let h = Harness::start();
    let olivia = h.rt.block_on(h.server.login("olivia"));
    fuzz(
        "intake_bodies",
        regressions!("intake_bodies"),
        300,
        intake_case_strategy(),
        |case| h.rt.block_on(intake_case(&h, &olivia, case)),
    );
    h.still_serving("intake_bodies");
}
