//! The real clinic server, in the test process on loopback, and a plain HTTP client that
//! plays a second staff member.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clinic_protocol::wire::paths;
use clinic_protocol::{
    IntakeRequest, LoginRequest, LoginResponse, Mutation, MutationOutcome, MutationRequest,
    Snapshot,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const INTAKE_KEY: &str = "e2e-intake-key";
pub const PASSWORD: &str = "demo";

/// A clinic server with the demo clinic, stoppable and restartable on the same port and
/// database file.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = clinic_server::AppState::open(config(&dir.path().join("clinic.db")))
            .await
            .expect("open the server database");
        clinic_server::demo::seed(&state)
            .await
            .expect("seed the demo clinic");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut server = TestServer {
            dir,
            addr,
            stop: None,
            task: None,
        };
        server.serve(listener, state);
        server
    }

    fn serve(&mut self, listener: tokio::net::TcpListener, state: clinic_server::AppState) {
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            clinic_server::serve(listener, state, shutdown)
                .await
                .expect("serve");
        }));
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("clinic.db")
    }

    /// Stops the server gracefully; its feeds close.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }

    /// Starts the server again on the same port and database.
    pub async fn restart(&mut self) {
        let state = clinic_server::AppState::open(config(&self.db_path()))
            .await
            .expect("reopen the server database");
        let deadline = Instant::now() + super::DEADLINE;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot rebind {}: {e}",
                        self.addr
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.serve(listener, state);
    }
}

fn config(db: &std::path::Path) -> clinic_server::Config {
    let mut config = clinic_server::Config::new(db);
    config.intake_key = Some(INTAKE_KEY.to_owned());
    // Short heartbeats, so that clients notice a dead server quickly in tests.
    config.heartbeat = Duration::from_millis(500);
    config
}

/// A staff member using the server over plain HTTP (the "other client").
pub struct Staffer {
    http: reqwest::Client,
    base: String,
    pub login: LoginResponse,
}

impl Staffer {
    pub async fn login(base: &str, username: &str) -> Staffer {
        let http = reqwest::Client::new();
        let login: LoginResponse = http
            .post(format!("{base}{}", paths::LOGIN))
            .json(&LoginRequest {
                username: username.into(),
                password: PASSWORD.into(),
            })
            .send()
            .await
            .expect("login request")
            .error_for_status()
            .expect("login accepted")
            .json()
            .await
            .expect("login body");
        Staffer {
            http,
            base: base.to_owned(),
            login,
        }
    }

    pub async fn snapshot(&self) -> Snapshot {
        self.http
            .get(format!("{}{}", self.base, paths::SNAPSHOT))
            .bearer_auth(&self.login.token)
            .send()
            .await
            .expect("snapshot request")
            .error_for_status()
            .expect("snapshot accepted")
            .json()
            .await
            .expect("snapshot body")
    }

    pub async fn mutate(&self, mutation: Mutation) -> MutationOutcome {
        self.http
            .post(format!("{}{}", self.base, paths::MUTATIONS))
            .bearer_auth(&self.login.token)
            .json(&MutationRequest {
                mutation_id: uuid::Uuid::new_v4(),
                mutation,
            })
            .send()
            .await
            .expect("mutation request")
            .error_for_status()
            .expect("mutation understood")
            .json()
            .await
            .expect("mutation body")
    }

    pub fn staff_id(&self, snapshot: &Snapshot, username: &str) -> uuid::Uuid {
        snapshot
            .records
            .iter()
            .find_map(|r| match r {
                clinic_protocol::Record::Staff(s) if s.username == username => Some(s.id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no staff member {username}"))
    }
}

/// Posts a booking through the web intake form's endpoint.
pub async fn intake(base: &str, request: &IntakeRequest) -> clinic_protocol::Booking {
    reqwest::Client::new()
        .post(format!("{base}{}", paths::INTAKE))
        .header(paths::INTAKE_KEY_HEADER, INTAKE_KEY)
        .json(request)
        .send()
        .await
        .expect("intake request")
        .error_for_status()
        .expect("intake accepted")
        .json()
        .await
        .expect("intake body")
}
