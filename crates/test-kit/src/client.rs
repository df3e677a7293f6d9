//! A staff member using the server's HTTP API (HTTPS too, given a client that trusts the
//! server's certificate: [`Staffer::login_with`]): the "other client" of the end-to-end
//! tests, every user of the server's tests, the judge of what a user may see in the sync
//! engine's tests. Any failure panics with the server's answer, so a test reads as a
//! sequence of steps and a broken step says why.

use clinic_protocol::wire::paths;
use clinic_protocol::{
    Booking, BookingAction, LoginRequest, LoginResponse, Mutation, MutationOutcome,
    MutationRequest, PaymentMethod, Record, Snapshot,
};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::PASSWORD;

/// A signed-in staff member. Cloning shares the HTTP connections and the token.
#[derive(Debug, Clone)]
pub struct Staffer {
    http: reqwest::Client,
    server: String,
    /// The token and the user, as the server answered the login.
    pub login: LoginResponse,
}

impl Staffer {
    /// Signs `username` in to the server at `server` (`http://host:port`) with the demo
    /// password.
    pub async fn login(server: &str, username: &str) -> Staffer {
        Staffer::login_with(reqwest::Client::new(), server, username).await
    }

    /// [`Staffer::login`] through `http`: for an `https://` server, a client that trusts
    /// its certificate.
    pub async fn login_with(http: reqwest::Client, server: &str, username: &str) -> Staffer {
        Staffer::login_password(http, server, username, PASSWORD).await
    }

    /// Signs `username` in with `password` (an account made by a test, not the demo's).
    pub async fn login_password(
        http: reqwest::Client,
        server: &str,
        username: &str,
        password: &str,
    ) -> Staffer {
        let request = LoginRequest {
            username: username.into(),
            password: password.into(),
        };
        let res = http
            .post(format!("{server}{}", paths::LOGIN))
            .json(&request)
            .send()
            .await;
        let login = answer(res, &format!("login of {username}")).await;
        Staffer {
            http,
            server: server.to_owned(),
            login,
        }
    }

    /// The server this staff member is signed in to, `http://host:port`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The HTTP client the session's requests go through, for requests of a test's own.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Everything this user may see, and the seq it is consistent at.
    pub async fn snapshot(&self) -> Snapshot {
        let res = self
            .http
            .get(format!("{}{}", self.server, paths::SNAPSHOT))
            .bearer_auth(&self.login.token)
            .send()
            .await;
        answer(res, "snapshot").await
    }

    /// Sends `mutation` under the id `mutation_id` (to replay it, send the same id again).
    pub async fn send(&self, mutation_id: Uuid, mutation: Mutation) -> MutationOutcome {
        answer(self.post_mutation(mutation_id, mutation).await, "mutation").await
    }

    /// `POST /v1/mutations` with this session's token.
    async fn post_mutation(
        &self,
        mutation_id: Uuid,
        mutation: Mutation,
    ) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(format!("{}{}", self.server, paths::MUTATIONS))
            .bearer_auth(&self.login.token)
            .json(&MutationRequest {
                mutation_id,
                mutation,
            })
            .send()
            .await
    }

    /// [`Staffer::send`] that says what went wrong instead of panicking: the request did
    /// not get an answer (the server is gone, the connection was cut) or the server
    /// answered with an error status. What a client that retries sees.
    pub async fn try_send(
        &self,
        mutation_id: Uuid,
        mutation: &Mutation,
    ) -> Result<MutationOutcome, String> {
        let res = self
            .post_mutation(mutation_id, mutation.clone())
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let status = res.status();
        if !status.is_success() {
            let body = res.text().await.unwrap_or_default();
            return Err(format!("{status}: {body}"));
        }
        res.json()
            .await
            .map_err(|e| format!("the answer does not decode: {e}"))
    }

    /// The same session through another server instance on the same database (sessions
    /// live in the database): what a client that fails over to the next address keeps.
    pub fn via(&self, server: &str) -> Staffer {
        Staffer {
            http: self.http.clone(),
            server: server.to_owned(),
            login: self.login.clone(),
        }
    }

    /// Sends `mutation` under a new id.
    pub async fn mutate(&self, mutation: Mutation) -> MutationOutcome {
        self.send(Uuid::new_v4(), mutation).await
    }

    /// Takes `action` on the booking as this user sees it (its id and version). Cancelling
    /// and verifying a payment go as their own mutations, with a stock reason ("Cancelled
    /// in a test.") and payment (80.00 in cash, no reference): see [`Staffer::cancel`] and
    /// [`Staffer::verify_payment`] for other values.
    pub async fn act(&self, booking: &Booking, action: BookingAction) -> MutationOutcome {
        match action {
            BookingAction::Cancel => self.cancel(booking, "Cancelled in a test.").await,
            BookingAction::VerifyPayment => {
                self.verify_payment(booking, 8_000, PaymentMethod::Cash, "")
                    .await
            }
            _ => {
                self.mutate(Mutation::BookingAction {
                    id: booking.id,
                    version: booking.version,
                    action,
                })
                .await
            }
        }
    }

    /// Cancels the booking as this user sees it, for `reason`.
    pub async fn cancel(&self, booking: &Booking, reason: &str) -> MutationOutcome {
        self.mutate(Mutation::CancelBooking {
            id: booking.id,
            version: booking.version,
            reason: reason.into(),
        })
        .await
    }

    /// Records the payment of the booking as this user sees it.
    pub async fn verify_payment(
        &self,
        booking: &Booking,
        amount_cents: i64,
        method: PaymentMethod,
        reference: &str,
    ) -> MutationOutcome {
        self.mutate(Mutation::VerifyPayment {
            id: booking.id,
            version: booking.version,
            amount_cents,
            method,
            reference: reference.into(),
        })
        .await
    }

    /// Puts this user on or off duty (drivers only).
    pub async fn set_on_duty(&self, on_duty: bool) -> MutationOutcome {
        self.mutate(Mutation::SetOnDuty {
            staff_id: self.login.user.id,
            on_duty,
        })
        .await
    }

    /// The booking `id` as the server has it now, if this user may see it.
    pub async fn booking(&self, id: Uuid) -> Option<Booking> {
        bookings(&self.snapshot().await)
            .into_iter()
            .find(|b| b.id == id)
    }

    /// Signs out; the status of the answer (204 when the token is revoked).
    pub async fn logout(&self) -> reqwest::StatusCode {
        self.http
            .post(format!("{}{}", self.server, paths::LOGOUT))
            .bearer_auth(&self.login.token)
            .send()
            .await
            .expect("the logout request reaches the server")
            .status()
    }
}

/// The id of the staff member `username` in `snapshot`.
pub fn staff_id(snapshot: &Snapshot, username: &str) -> Uuid {
    snapshot
        .records
        .iter()
        .find_map(|r| match r {
            Record::Staff(s) if s.username == username => Some(s.id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no staff member {username} in the snapshot"))
}

/// The bookings in `snapshot`.
pub fn bookings(snapshot: &Snapshot) -> Vec<Booking> {
    snapshot
        .records
        .iter()
        .filter_map(|r| r.clone().into_booking())
        .collect()
}

/// The body of a successful answer; otherwise a panic with the status and the body (the
/// server's error code and sentence), which say more than a status alone.
pub(crate) async fn answer<T: DeserializeOwned>(
    res: reqwest::Result<reqwest::Response>,
    what: &str,
) -> T {
    let res = res.unwrap_or_else(|e| panic!("{what}: the request failed: {e}"));
    let status = res.status();
    if !status.is_success() {
        let body = res.text().await.unwrap_or_default();
        panic!("{what}: the server answered {status}: {body}");
    }
    res.json()
        .await
        .unwrap_or_else(|e| panic!("{what}: the answer does not decode: {e}"))
}
