//! Tauri commands: thin wrappers over the backend. Every command here is also listed in
//! `ipc::COMMANDS` (from which `build.rs` generates its permission) and granted to the window
//! kinds that need it in `src-tauri/capabilities/`: the login window can only sign in,
//! dashboards cannot. Its arguments and answers are in [`crate::ipc`].

use clinic_protocol::Mutation;
use tauri::ipc::{Channel, InvokeResponseBody, Response};
use tauri::{AppHandle, State, WebviewWindow};

use crate::backend::Backend;
use crate::error::UiError;
use crate::ipc::{SessionDto, SubmitDto, ViewRequest};
use crate::menu;
use crate::windows::WindowKind;

/// `server`, when given, is an address the login form is about to use: the answer's
/// `serverWarning` is about that one.
#[tauri::command]
pub async fn session(
    window: WebviewWindow,
    backend: State<'_, Backend>,
    server: Option<String>,
) -> Result<SessionDto, UiError> {
    let mut dto = backend.session_dto(window.label()).await;
    if let Some(server) = server {
        dto.server_warning = crate::config::server_warning(&server);
    }
    Ok(dto)
}

#[tauri::command]
pub async fn login(
    app: AppHandle,
    window: WebviewWindow,
    backend: State<'_, Backend>,
    server: String,
    username: String,
    password: String,
    new_password: Option<String>,
) -> Result<SessionDto, UiError> {
    let roles = backend
        .login(
            &app,
            server.trim(),
            username.trim(),
            &password,
            new_password.as_deref(),
        )
        .await?;
    menu::enable_for(&app, &roles);
    Ok(backend.session_dto(window.label()).await)
}

/// Signs the same user in again after the session ended, keeping every window open; see
/// [`Backend::sign_in_again`].
#[tauri::command]
pub async fn sign_in_again(
    backend: State<'_, Backend>,
    password: String,
    new_password: Option<String>,
) -> Result<(), UiError> {
    backend
        .sign_in_again(&password, new_password.as_deref())
        .await
}

#[tauri::command]
pub async fn logout(app: AppHandle, backend: State<'_, Backend>) -> Result<(), UiError> {
    menu::enable_for(&app, &[]);
    backend.logout(&app).await
}

/// What the calling window's dashboard shows now ([`crate::ipc::ViewData`]), or, when the
/// window holds read `base` of the same view, what changed since; every later change
/// batch reaches the window on `updates`, with what changed in its view (see
/// [`crate::watch`]).
#[tauri::command]
pub async fn load(
    window: WebviewWindow,
    backend: State<'_, Backend>,
    view: ViewRequest,
    base: Option<u64>,
    updates: Channel<InvokeResponseBody>,
) -> Result<Response, UiError> {
    let json = backend.load(window.label(), &view, base, updates).await?;
    Ok(Response::new(InvokeResponseBody::Json(json.to_string())))
}

/// The refusals this window has to tell that the user has not seen yet (after a restart,
/// say): see [`crate::session::Session::rejections`].
#[tauri::command]
pub async fn rejections(
    app: AppHandle,
    window: WebviewWindow,
    backend: State<'_, Backend>,
) -> Result<Vec<crate::ipc::RejectionPayload>, UiError> {
    let engine = signed_in_engine(&backend).await?;
    crate::session::rejections(&app, &engine, window.label()).await
}

/// The user saw a refusal (dismissed it, or reopened its form): it is not told again.
#[tauri::command]
pub async fn seen_rejection(
    backend: State<'_, Backend>,
    mutation_id: uuid::Uuid,
) -> Result<(), UiError> {
    let engine = signed_in_engine(&backend).await?;
    Ok(engine.seen_rejection(mutation_id).await?)
}

/// The signed-in session's engine, cloned so that the session lock is not held across a
/// cache call (signing out waits for the write lock).
async fn signed_in_engine(backend: &Backend) -> Result<clinic_sync::Engine, UiError> {
    let session = backend.session.read().await;
    let session = session.as_ref().ok_or_else(UiError::not_signed_in)?;
    Ok(session.engine.clone())
}

#[tauri::command]
pub async fn submit(
    window: WebviewWindow,
    backend: State<'_, Backend>,
    mutation: Mutation,
) -> Result<SubmitDto, UiError> {
    let session = backend.session.read().await;
    let session = session.as_ref().ok_or_else(UiError::not_signed_in)?;
    let mutation_id = session.submit(window.label(), mutation).await?;
    Ok(SubmitDto { mutation_id })
}

#[tauri::command]
pub async fn open_window(
    app: AppHandle,
    backend: State<'_, Backend>,
    kind: String,
) -> Result<(), UiError> {
    let kind: WindowKind = kind
        .parse()
        .map_err(|_| UiError::new("invalid_value", format!("There is no {kind} dashboard.")))?;
    backend.open_dashboard(&app, kind).await
}
