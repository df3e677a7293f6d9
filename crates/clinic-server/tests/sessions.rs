//! A feed lives no longer than its session: once its token is revoked (logout) or expires,
//! the feed gets an `unauthorized` error frame and closes, and sends nothing else. Real
//! sockets on 127.0.0.1:0, the suite's store; waits are bounded by deadlines, never sleeps.

use std::time::Duration;

use chrono::{Local, NaiveTime, Utc};
use clinic_protocol::wire::paths;
use clinic_protocol::{
    Booking, ChangeOp, ClientFrame, ErrorCode, Id, IntakeRequest, LoginResponse, Mutation,
    MutationOutcome, MutationRequest, NewMessage, Record, ServerFrame, PROTOCOL_VERSION,
};
use clinic_server::{AppState, Config};
use clinic_test_kit::TestStore;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);
const INTAKE_KEY: &str = "test-key";
/// So long that no heartbeat comes during a test: every frame a feed gets is then one the
/// test expects, in a known order.
const NO_HEARTBEAT: Duration = Duration::from_secs(3600);

struct Server {
    _store: TestStore,
    url: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Server {
    async fn start(tune: impl FnOnce(&mut Config)) -> Server {
        let store = TestStore::fresh().await;
        let mut config = store.config();
        config.heartbeat = NO_HEARTBEAT;
        tune(&mut config);
        let state = AppState::open(config).await.unwrap();
        clinic_server::demo::seed(&state).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            clinic_server::serve(listener, state, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Server {
            _store: store,
            url,
            stop: Some(stop),
        }
    }

    /// A booking from the web form, which every operator sees; its id.
    async fn intake(&self) -> Id {
        let booking: Booking = reqwest::Client::new()
            .post(format!("{}{}", self.url, paths::INTAKE))
            .header(paths::INTAKE_KEY_HEADER, INTAKE_KEY)
            .json(&IntakeRequest {
                client_name: "Web Client".into(),
                client_phone: "1".into(),
                address: "A".into(),
                service: "Massage".into(),
                date: Local::now().date_naive(),
                start: NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
                end: NaiveTime::from_hms_opt(11, 0, 0).unwrap(),
                notes: String::new(),
            })
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        booking.id
    }

    async fn login(&self, user: &str) -> Client {
        let http = reqwest::Client::new();
        let login: LoginResponse = http
            .post(format!("{}{}", self.url, paths::LOGIN))
            .json(&serde_json::json!({"username": user, "password": "demo"}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        Client {
            http,
            url: self.url.clone(),
            login,
        }
    }
}

struct Client {
    http: reqwest::Client,
    url: String,
    login: LoginResponse,
}

impl Client {
    async fn logout(&self) {
        let res = self
            .http
            .post(format!("{}{}", self.url, paths::LOGOUT))
            .bearer_auth(&self.login.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
    }

    async fn mutate(&self, mutation: Mutation) -> MutationOutcome {
        self.http
            .post(format!("{}{}", self.url, paths::MUTATIONS))
            .bearer_auth(&self.login.token)
            .json(&MutationRequest {
                mutation_id: Uuid::new_v4(),
                mutation,
            })
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Sends `to` a message; its id and seq.
    async fn message(&self, to: Id, body: &str) -> (Id, u64) {
        let id = Uuid::new_v4();
        let outcome = self
            .mutate(Mutation::SendMessage {
                message: NewMessage {
                    id,
                    recipient_id: to,
                    body: body.into(),
                },
            })
            .await;
        match outcome {
            MutationOutcome::Applied { seq, .. } => (id, seq),
            other => panic!("not applied: {other:?}"),
        }
    }

    /// A feed from the current head, past its welcome and its first heartbeat.
    async fn feed(&self) -> Feed {
        let ws_url = format!("{}{}", self.url.replace("http://", "ws://"), paths::FEED);
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
        let hello = ClientFrame::Hello {
            protocol: PROTOCOL_VERSION,
            token: self.login.token.clone(),
            cursor: 0,
        };
        ws.send(Message::text(serde_json::to_string(&hello).unwrap()))
            .await
            .unwrap();
        let mut feed = Feed { ws };
        let Some(ServerFrame::Welcome { head, .. }) = feed.frame().await else {
            panic!("no welcome");
        };
        // Catch-up from 0 to the head, then the heartbeat that ends it.
        loop {
            match feed.frame().await {
                Some(ServerFrame::Changes { upto, .. }) => assert!(upto <= head),
                Some(ServerFrame::Heartbeat { head: at }) => {
                    assert_eq!(at, head);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        feed
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Feed {
    ws: Ws,
}

impl Feed {
    /// The next frame; `None` once the server has closed the feed.
    async fn frame(&mut self) -> Option<ServerFrame> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")?;
            match msg.ok()? {
                Message::Text(t) => return Some(serde_json::from_str(t.as_str()).unwrap()),
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// The next frame is an `unauthorized` error with `message`, and then the feed closes.
    async fn ends_with(&mut self, message: &str) {
        match self.frame().await {
            Some(ServerFrame::Error { code, message: got }) => {
                assert_eq!(code, ErrorCode::Unauthorized);
                assert_eq!(got, message);
            }
            other => panic!("expected the unauthorized error, got {other:?}"),
        }
        assert_eq!(self.frame().await, None, "closed after the error");
    }
}

const SIGNED_OUT: &str = "You signed out; sign in again.";
const EXPIRED: &str = "Your session has expired; sign in again.";

fn is_message(op: &ChangeOp, id: Id) -> bool {
    matches!(op, ChangeOp::Upsert { record: Record::Message(m) } if m.id == id)
}

fn is_booking(op: &ChangeOp, id: Id) -> bool {
    matches!(op, ChangeOp::Upsert { record: Record::Booking(b) } if b.id == id)
}

#[tokio::test]
async fn a_logout_ends_the_feeds_of_its_token_and_no_other() {
    let s = Server::start(|_| {}).await;
    let (a, b, maria) = (
        s.login("olivia").await,
        s.login("olivia").await,
        s.login("maria").await,
    );
    let (mut feed_a, mut feed_b) = (a.feed().await, b.feed().await);

    a.logout().await;
    // Made after the logout was answered: a private message to olivia.
    let (id, seq) = maria.message(a.login.user.id, "after you left").await;

    // The very next frame of A's feed is the error: no change, no heartbeat.
    feed_a.ends_with(SIGNED_OUT).await;
    // B's session is untouched and gets the message.
    match feed_b.frame().await {
        Some(ServerFrame::Changes { changes, upto }) => {
            assert_eq!(upto, seq);
            assert!(changes.iter().any(|c| is_message(&c.op, id)));
        }
        other => panic!("expected the message, got {other:?}"),
    }
    // And the revoked token opens no new feed.
    let ws_url = format!("{}{}", s.url.replace("http://", "ws://"), paths::FEED);
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let hello = ClientFrame::Hello {
        protocol: PROTOCOL_VERSION,
        token: a.login.token.clone(),
        cursor: 0,
    };
    ws.send(Message::text(serde_json::to_string(&hello).unwrap()))
        .await
        .unwrap();
    let mut again = Feed { ws };
    assert!(matches!(
        again.frame().await,
        Some(ServerFrame::Error {
            code: ErrorCode::Unauthorized,
            ..
        })
    ));
}

#[tokio::test]
async fn a_logout_ends_an_idle_feed_at_once() {
    // Nothing else happens after the logout: the feed must wake for it by itself.
    let s = Server::start(|_| {}).await;
    let olivia = s.login("olivia").await;
    let mut feed = olivia.feed().await;
    olivia.logout().await;
    feed.ends_with(SIGNED_OUT).await;
}

#[tokio::test]
async fn every_feed_of_a_revoked_token_ends_and_heartbeats_stop() {
    // Frequent heartbeats: the feeds are busy sending when the logout comes.
    let s = Server::start(|c| c.heartbeat = Duration::from_millis(20)).await;
    let olivia = s.login("olivia").await;
    let mut feeds = vec![olivia.feed().await, olivia.feed().await];
    olivia.logout().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    for feed in &mut feeds {
        // Heartbeats sent before the logout may still be on their way; then only the error.
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "heartbeats go on after the logout"
            );
            match feed.frame().await {
                Some(ServerFrame::Heartbeat { .. }) => {}
                Some(ServerFrame::Error { code, message }) => {
                    assert_eq!(code, ErrorCode::Unauthorized);
                    assert_eq!(message, SIGNED_OUT);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(feed.frame().await, None);
    }
}

#[tokio::test]
async fn a_feed_ends_when_its_token_expires() {
    let s = Server::start(|c| c.token_ttl = Duration::from_secs(2)).await;
    let olivia = s.login("olivia").await;
    let mut feed = olivia.feed().await;
    // No heartbeats and no changes: the expiry alone must end the feed, and not before.
    feed.ends_with(EXPIRED).await;
    let late = Utc::now() - olivia.login.expires_at;
    assert!(
        late > -chrono::Duration::milliseconds(100),
        "ended {late} after the expiry, which is early"
    );
}

#[tokio::test]
async fn an_expired_session_receives_no_change() {
    // Heartbeats every 20 ms: the feed keeps sending until the expiry, then only the error.
    let s = Server::start(|c| {
        c.token_ttl = Duration::from_secs(2);
        c.heartbeat = Duration::from_millis(20);
        c.intake_key = Some(INTAKE_KEY.into());
        // Web bookings as fast as the feed delivers them: far beyond the form's rate limit.
        c.intake_per_minute = u32::MAX;
    })
    .await;
    let olivia = s.login("olivia").await;
    let expires_at = olivia.login.expires_at;
    let mut feed = olivia.feed().await;
    // Web bookings (no token of their own to expire) for olivia, an operator, one after
    // another until her feed ends; each is made when the previous one has arrived.
    let mut after_expiry = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    'booking: loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feed outlives its session"
        );
        let made_at = Utc::now();
        let id = s.intake().await;
        // The server's timer and the wall clock may differ by a hair.
        if made_at > expires_at + chrono::Duration::milliseconds(50) {
            after_expiry.push(id);
        }
        loop {
            match feed.frame().await {
                Some(ServerFrame::Heartbeat { .. }) => {}
                Some(ServerFrame::Changes { changes, .. }) => {
                    for change in &changes {
                        if let ChangeOp::Upsert {
                            record: Record::Booking(b),
                        } = &change.op
                        {
                            assert!(
                                !after_expiry.contains(&b.id),
                                "a booking made after the expiry arrived"
                            );
                        }
                    }
                    if changes.iter().any(|c| is_booking(&c.op, id)) {
                        continue 'booking;
                    }
                }
                Some(ServerFrame::Error { code, message }) => {
                    assert_eq!(code, ErrorCode::Unauthorized);
                    assert_eq!(message, EXPIRED);
                    break 'booking;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(feed.frame().await, None);
    assert!(Utc::now() > expires_at, "the feed ended before the expiry");
}
