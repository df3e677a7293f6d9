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
        dto.server_warning = clinic_sync::insecure_address_warning(&server);
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
