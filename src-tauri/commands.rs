//! Tauri commands: thin wrappers over the backend. Every command here is also listed in
//! `ipc::COMMANDS` (from which `build.rs` generates its permission) and granted to the window
//! kinds that need it in `src-tauri/capabilities/`: the login window can only sign in,
//! dashboards cannot. Its arguments and answers are in [`crate::ipc`].

use clinic_protocol::Mutation;
use tauri::ipc::{InvokeResponseBody, Response};
use tauri::{AppHandle, State, WebviewWindow};

use crate::backend::Backend;
use crate::error::UiError;
use crate::ipc::{SessionDto, SubmitDto, ViewRequest};
use crate::menu;
use crate::windows::WindowKind;

#[tauri::command]
pub async fn session(
    window: WebviewWindow,
    backend: State<'_, Backend>,
) -> Result<SessionDto, UiError> {
    Ok(backend.session_dto(window.label()).await)
}

#[tauri::command]
pub async fn login(
    app: AppHandle,
    window: WebviewWindow,
    backend: State<'_, Backend>,
    server: String,
    username: String,
    password: String,
) -> Result<SessionDto, UiError> {
    let roles = backend
        .login(&app, server.trim(), username.trim(), &password)
        .await?;
    menu::enable_for(&app, &roles);
    Ok(backend.session_dto(window.label()).await)
}

#[tauri::command]
pub async fn logout(app: AppHandle, backend: State<'_, Backend>) -> Result<(), UiError> {
    menu::enable_for(&app, &[]);
    backend.logout(&app).await
}

/// What the calling window's dashboard shows now ([`crate::ipc::ViewData`], serialised once
/// for every window that shows the same view).
#[tauri::command]
pub async fn load(
    window: WebviewWindow,
    backend: State<'_, Backend>,
    view: ViewRequest,
) -> Result<Response, UiError> {
    let json = backend.load(window.label(), &view).await?;
    Ok(Response::new(InvokeResponseBody::Json(json.to_string())))
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
