//! The HTTP half of talking to the server: sign in, fetch a snapshot, send one mutation,
//! change a password, manage staff accounts (administrators), revoke the token. (The
//! feed's WebSocket is the driver's.)
//!
//! A clinic server may have several addresses (instances sharing one database): the
//! client holds them all and the one in use, shared by its clones, so the feed, the
//! outbox's mutations and the app's own calls go to the same instance. The sync machine
//! decides when to move on ([`Client::use_server`]); signing in tries the next address by
//! itself, because there is no machine yet then.
//!
//! Every answer is turned into our own terms here: a [`SyncError`] with the server's code
//! and message, or for a mutation the machine's [`Sent`], so no other module looks at an
//! HTTP status.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clinic_protocol::wire::paths;
use clinic_protocol::{
    ApiError, ErrorCode, Id, IssuedPassword, LoginRequest, LoginResponse, MutationOutcome,
    MutationRequest, NewStaff, Snapshot, Staff, StaffPatch,
};
use serde::de::DeserializeOwned;

use crate::error::SyncError;
use crate::machine::Sent;

/// The clinic server's addresses and the one in use.
#[derive(Debug)]
struct Addresses {
    /// `http://host:port` or `https://host:port`, without a trailing slash; never empty.
    list: Vec<String>,
    /// An index into `list`.
    current: AtomicUsize,
}

/// The clinic server's HTTP API. Cheap to clone: reqwest shares its connection pool, and
/// the clones share the address in use.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    servers: Arc<Addresses>,
    /// The TLS settings the HTTP calls use, for the feed's WebSocket too (`tls.rs`).
    tls: Arc<rustls::ClientConfig>,
}

impl Client {
    /// `timeout` bounds every request, so that one caught in a cut connection fails
    /// instead of holding up the outbox. `tls` is used for `https://` (and the feed's
    /// `wss://`); an `https://` client refuses anything but https, redirects included.
    /// `servers` is the list of addresses, the first in use; an empty list is refused.
    pub(crate) fn new(
        servers: &[String],
        timeout: Duration,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Client, SyncError> {
        if servers.is_empty() {
            return Err(SyncError::Refused {
                code: ErrorCode::InvalidValue,
                message: "No clinic server address was given.".into(),
            });
        }
        // All https or not at all: a list that mixes them is as safe as its http address.
        let https = servers.iter().all(|s| s.starts_with("https://"));
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .use_preconfigured_tls(rustls::ClientConfig::clone(&tls))
            .https_only(https)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SyncError::Tls(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client {
            http,
            servers: Arc::new(Addresses {
                list: servers.to_vec(),
                current: AtomicUsize::new(0),
            }),
            tls,
        })
    }

    /// The address in use.
    pub(crate) fn server_url(&self) -> &str {
        &self.servers.list[self.current()]
    }

    /// How many addresses there are (at least one).
    pub(crate) fn server_count(&self) -> usize {
        self.servers.list.len()
    }

    /// The index of the address in use.
    pub(crate) fn current(&self) -> usize {
        self.servers.current.load(Ordering::Relaxed) % self.servers.list.len()
    }

    /// Talks to the address at `index` (modulo their number) from now on.
    pub(crate) fn use_server(&self, index: usize) {
        let index = index % self.servers.list.len();
        if self.servers.current.swap(index, Ordering::Relaxed) != index {
            tracing::info!("using the clinic server at {}", self.servers.list[index]);
        }
    }

    /// The TLS settings, for the feed's WebSocket.
    pub(crate) fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server_url())
    }

    /// The feed's WebSocket address: the same host, `ws` for `http` and `wss` for `https`.
    pub(crate) fn feed_url(&self) -> String {
        let base = self.server_url();
        if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}{}", paths::FEED)
        } else {
            format!("ws://{}{}", base.trim_start_matches("http://"), paths::FEED)
        }
    }

    /// Signs in at the address in use, or, if nobody answers there, at the next ones in
    /// turn (each once); the address that answered stays in use.
    pub(crate) async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<LoginResponse, SyncError> {
        let mut tried = 1;
        loop {
            match self.login_here(username, password).await {
                Err(SyncError::Unreachable(e)) if tried < self.server_count() => {
                    tracing::info!(
                        "{} does not answer ({e}): trying the next",
                        self.server_url()
                    );
                    self.use_server(self.current() + 1);
                    tried += 1;
                }
                answer => return answer,
            }
        }
    }

    async fn login_here(&self, username: &str, password: &str) -> Result<LoginResponse, SyncError> {
        let response = self
            .http
            .post(self.url(paths::LOGIN))
            .json(&LoginRequest {
                username: username.into(),
                password: password.into(),
            })
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(api_error(response).await);
        }
        Ok(response.json().await?)
    }

    /// Everything `token`'s user may see, at one server seq.
    pub(crate) async fn snapshot(&self, token: &str) -> Result<Snapshot, SyncError> {
        let response = self
            .http
            .get(self.url(paths::SNAPSHOT))
            .bearer_auth(token)
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Err(SyncError::SessionExpired);
        }
        if !response.status().is_success() {
            return Err(api_error(response).await);
        }
        Ok(response.json().await?)
    }

    /// POSTs one mutation and says how it went.
    pub(crate) async fn send(&self, token: &str, request: &MutationRequest) -> Sent {
        let sent = self
            .http
            .post(self.url(paths::MUTATIONS))
            .bearer_auth(token)
            .json(request)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => match r.json::<MutationOutcome>().await {
                Ok(outcome) => Sent::Outcome(outcome),
                Err(e) => Sent::Failed(e.to_string()),
            },
            Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => Sent::Expired,
            Ok(r) if r.status().is_client_error() && r.status() != 429 => {
                match api_error(r).await {
                    // Refusals of the session, not of the change: it stays queued.
                    SyncError::Refused {
                        code: ErrorCode::AccountDisabled,
                        ..
                    } => Sent::Disabled,
                    SyncError::Refused {
                        code: ErrorCode::PasswordChangeRequired,
                        message,
                    } => Sent::Failed(message),
                    // The server understood and refused the request itself: drop it, or it
                    // would block every later change.
                    SyncError::Refused { code, message } => {
                        Sent::Outcome(MutationOutcome::Rejected {
                            code,
                            message,
                            current: None,
                        })
                    }
                    other => Sent::Failed(other.to_string()),
                }
            }
            // A gateway in front of instances says the one behind it is away.
            Ok(r) if GATEWAY_AWAY.contains(&r.status().as_u16()) => {
                Sent::Unreachable(format!("the server answered {}", r.status()))
            }
            Ok(r) => Sent::Failed(format!("the server answered {}", r.status())),
            Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => {
                Sent::Unreachable(e.to_string())
            }
            Err(e) => Sent::Failed(e.to_string()),
        }
    }

    /// Changes the password of `token`'s user from `current` to `new`.
    pub(crate) async fn change_password(
        &self,
        token: &str,
        current: &str,
        new: &str,
    ) -> Result<(), SyncError> {
        let response = self
            .http
            .post(self.url(paths::PASSWORD))
            .bearer_auth(token)
            .json(&clinic_protocol::PasswordChange {
                current: current.into(),
                new: new.into(),
            })
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(api_error(response).await);
        }
        Ok(())
    }

    /// Makes a staff account (administrators only): the account and its one-time password.
    pub(crate) async fn create_staff(
        &self,
        token: &str,
        new: &NewStaff,
    ) -> Result<IssuedPassword, SyncError> {
        let request = self.http.post(self.url(paths::STAFF)).json(new);
        answer(request.bearer_auth(token)).await
    }

    /// Changes staff account `id` (administrators only): the account as it is now.
    pub(crate) async fn patch_staff(
        &self,
        token: &str,
        id: Id,
        patch: &StaffPatch,
    ) -> Result<Staff, SyncError> {
        let request = self
            .http
            .patch(self.url(&paths::staff_member(id)))
            .json(patch);
        answer(request.bearer_auth(token)).await
    }

    /// Gives staff account `id` a new one-time password (administrators only); every
    /// session of that account ends.
    pub(crate) async fn reset_password(
        &self,
        token: &str,
        id: Id,
    ) -> Result<IssuedPassword, SyncError> {
        let request = self.http.post(self.url(&paths::staff_password(id)));
        answer(request.bearer_auth(token)).await
    }

    /// Revokes `token`. Short: signing out must not hang on a server that is away.
    pub(crate) async fn revoke(&self, token: &str) -> Result<(), SyncError> {
        self.http
            .post(self.url(paths::LOGOUT))
            .bearer_auth(token)
            .timeout(Duration::from_secs(3))
            .send()
            .await?;
        Ok(())
    }
}

/// Bad gateway, service unavailable, gateway timeout: a load balancer's (or a stopping
/// server's) way of saying that nobody answers behind this address.
const GATEWAY_AWAY: [u16; 3] = [502, 503, 504];

/// Sends `request` and reads its JSON answer, or the server's refusal in our terms. A
/// token the server no longer takes is [`SyncError::SessionExpired`], as everywhere.
async fn answer<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, SyncError> {
    let response = request.send().await?;
    if response.status() == reqwest::StatusCode::UNAUTHORIZED {
        return Err(SyncError::SessionExpired);
    }
    if !response.status().is_success() {
        return Err(api_error(response).await);
    }
    Ok(response.json().await?)
}

/// An HTTP error answer: the server's code and message, or what we can say without one.
async fn api_error(response: reqwest::Response) -> SyncError {
    let status = response.status();
    match response.json::<ApiError>().await {
        Ok(e) => SyncError::Refused {
            code: e.code,
            message: e.message,
        },
        Err(_) => SyncError::Unreachable(format!("the server answered {status}")),
    }
}
