//! Staff accounts: making one (`POST /v1/staff`, and `clinic-server staff add` through
//! [`crate::admin`]), changing one, resetting its password (administrators only), and
//! changing one's own password (`POST /v1/password`). The endpoints are documented with
//! the others in `http.rs`.
//!
//! Every change is a new version of the staff record, written by the store's one writer
//! with its log row (so it reaches every feed), together with whatever it revokes: the
//! tokens of an account being disabled, the other tokens of a user changing their
//! password, every token of an account whose password an administrator resets. Once
//! committed, the feeds of the revoked tokens are told ([`auth::Sessions::end`]), and the
//! change is answered only once they have ended.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use clinic_protocol::rules::{self, Rejection};
use clinic_protocol::{
    ErrorCode, Id, IssuedPassword, NewStaff, PasswordChange, Staff, StaffList, StaffPatch,
};

use crate::auth::{self, Ending};
use crate::error::{HttpError, ServerError};
use crate::http::{parse, session, user};
use crate::store::{NewAccount, PasswordSet, StaffEdit};
use crate::AppState;

/// What a server with no staff says, at start-up in its log and to every sign-in: who can
/// do something about it, and what.
pub(crate) const NO_STAFF_HINT: &str = "This clinic server has no staff accounts yet. At \
     the server's console, create the first administrator with `clinic-server staff add \
     --username USERNAME --name \"FULL NAME\" --roles admin` (give it the server's --db), \
     then sign in with the one-time password it prints.";

/// Hashes `password` off the async workers (argon2 is deliberately slow).
pub(crate) async fn hash(password: String) -> Result<String, ServerError> {
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| ServerError::Hash(e.to_string()))?
}

impl AppState {
    /// Makes an account from `new`: username, name and roles checked, the password given
    /// (checked too) or a one-time password made here and answered, which its owner must
    /// change at their first sign-in. `actor` is the administrator, `None` at the console.
    pub(crate) async fn add_account(
        &self,
        new: NewStaff,
        password: Option<String>,
        actor: Option<Id>,
    ) -> Result<(Staff, Option<String>), ServerError> {
        rules::check_username(&new.username).map_err(ServerError::Refused)?;
        let display_name =
            rules::check_display_name(&new.display_name).map_err(ServerError::Refused)?;
        let roles = rules::check_roles(&new.roles).map_err(ServerError::Refused)?;
        if let Some(password) = &password {
            rules::check_new_password(password).map_err(ServerError::Refused)?;
        }
        let one_time = password.is_none().then(auth::one_time_password);
        let password_hash = hash(password.or_else(|| one_time.clone()).unwrap_or_default()).await?;
        let staff = self
            .store
            .add_staff(NewAccount {
                username: new.username,
                display_name,
                roles,
                password_hash,
                must_change_password: one_time.is_some(),
                actor,
            })
            .await?;
        Ok((staff, one_time))
    }
}

/// The signed-in administrator of a request; anyone else is `forbidden`.
async fn admin(state: &AppState, headers: &HeaderMap) -> Result<Staff, HttpError> {
    let user = user(state, headers).await?;
    if !rules::may_manage_staff(&user) {
        return Err(HttpError::new(
            ErrorCode::Forbidden,
            "Only an administrator manages staff accounts.",
        ));
    }
    Ok(user)
}

/// The account id in a path; anything that is not one is no account.
fn account_id(path: Result<Path<String>, PathRejection>) -> Result<Id, HttpError> {
    path.ok()
        .and_then(|Path(id)| id.parse().ok())
        .ok_or_else(|| HttpError::new(ErrorCode::NotFound, "There is no such staff account."))
}

/// `GET /v1/staff`.
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<StaffList>, HttpError> {
    admin(&state, &headers).await?;
    let (seq, staff) = state.store.staff_list().await;
    Ok(Json(StaffList { seq, staff }))
}

/// `POST /v1/staff`: 201 with the account and its one-time password.
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<IssuedPassword>), HttpError> {
    let admin = admin(&state, &headers).await?;
    let new: NewStaff = parse(body)?;
    let (staff, one_time) = state.add_account(new, None, Some(admin.id)).await?;
    let one_time_password = one_time.ok_or(ServerError::Invariant("no one-time password"))?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedPassword {
            staff,
            one_time_password,
        }),
    ))
}

/// `PATCH /v1/staff/{id}`: the account as it is now.
pub(crate) async fn patch(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Staff>, HttpError> {
    let admin = admin(&state, &headers).await?;
    let id = account_id(path)?;
    let patch: StaffPatch = parse(body)?;
    let refused = |r: Rejection| HttpError::new(r.code, r.message);
    let display_name = patch
        .display_name
        .as_deref()
        .map(rules::check_display_name)
        .transpose()
        .map_err(refused)?;
    let roles = patch
        .roles
        .as_deref()
        .map(rules::check_roles)
        .transpose()
        .map_err(refused)?;
    let changed = state
        .store
        .edit_staff(StaffEdit {
            id,
            version: patch.version,
            display_name,
            roles,
            disabled: patch.disabled,
            actor: admin.id,
        })
        .await?;
    // Tokens are revoked only when the account was disabled just now.
    state.end_sessions(&changed.revoked, Ending::Disabled).await;
    Ok(Json(changed.staff))
}

/// `POST /v1/staff/{id}/password`: a new one-time password; every session of the account
/// ends.
pub(crate) async fn reset_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<IssuedPassword>, HttpError> {
    let admin = admin(&state, &headers).await?;
    let id = account_id(path)?;
    let one_time_password = auth::one_time_password();
    let password_hash = hash(one_time_password.clone()).await?;
    let changed = state
        .store
        .set_password(PasswordSet {
            id,
            password_hash,
            must_change_password: true,
            keep: None,
            actor: admin.id,
        })
        .await?;
    state
        .end_sessions(&changed.revoked, Ending::PasswordReset)
        .await;
    Ok(Json(IssuedPassword {
        staff: changed.staff,
        one_time_password,
    }))
}

/// `POST /v1/password`: the signed-in user's new password (a session with a one-time
/// password may call this, and only this). The current password is checked like a
/// sign-in's, under the same limits: a stolen session cannot guess the password faster
/// than a sign-in could. 204; every other session of the user ends.
pub(crate) async fn change_password(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, HttpError> {
    let (user, token) = session(&state, &headers).await?;
    let change: PasswordChange = parse(body)?;
    rules::check_new_password(&change.new).map_err(|r| HttpError::new(r.code, r.message))?;
    if user.must_change_password && change.new == change.current {
        return Err(HttpError::new(
            ErrorCode::InvalidValue,
            "Choose a new password of your own, not the one-time password.",
        ));
    }
    let from = peer.map_or(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        |Extension(ConnectInfo(a))| a.ip(),
    );
    let attempt = state.logins.admit(from, &user.username).map_err(|_| {
        HttpError::new(
            ErrorCode::RateLimited,
            "Too many wrong passwords; wait a minute.",
        )
    })?;
    let stored = state.store.password_hash(user.id).await?;
    let Ok(right) = state.logins.check(change.current, stored).await else {
        attempt.not_tried();
        return Err(HttpError::new(
            ErrorCode::RateLimited,
            "The server is busy with sign-ins; try again in a moment.",
        ));
    };
    if !right {
        // Dropped as it is, the attempt counts as a failure.
        drop(attempt);
        return Err(HttpError::new(
            ErrorCode::WrongPassword,
            "Your current password is not right.",
        ));
    }
    attempt.succeeded();
    let password_hash = hash(change.new).await?;
    let changed = state
        .store
        .set_password(PasswordSet {
            id: user.id,
            password_hash,
            must_change_password: false,
            keep: Some(auth::token_hash(&token)),
            actor: user.id,
        })
        .await?;
    state
        .end_sessions(&changed.revoked, Ending::PasswordChanged)
        .await;
    Ok(StatusCode::NO_CONTENT)
}
