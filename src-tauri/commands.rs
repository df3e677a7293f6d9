//! Tauri commands: thin wrappers over the session. Every command here is also listed in
//! `build.rs` (which generates its permission) and granted to the window kinds that need it
//! in `src-tauri/capabilities/`: the login window can only sign in, dashboards cannot.

use clinic_protocol::{Mutation, Staff};
use serde::Serialize;
use tauri::{AppHandle, State, WebviewWindow};

use crate::backend::Backend;
use crate::error::UiError;
use crate::session::ViewDto;
use crate::windows::WindowKind;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionDto {
    pub user: Option<Staff>,
    pub server: String,
    /// The dashboards this user may open.
    pub dashboards: Vec<&'static str>,
    pub window: WindowDto,
    /// The last username signed in with, to prefill the login form (never a password).
    pub last_username: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowDto {
    pub label: String,
    pub kind: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitDto {
    pub mutation_id: uuid::Uuid,
}

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
    backend
        .login(&app, server.trim(), username.trim(), &password)
        .await?;
    Ok(backend.session_dto(window.label()).await)
}

#[tauri::command]
pub async fn logout(app: AppHandle, backend: State<'_, Backend>) -> Result<(), UiError> {
    backend.logout(&app).await
}

#[tauri::command]
pub async fn load_view(backend: State<'_, Backend>) -> Result<ViewDto, UiError> {
    let session = backend.session.read().await;
    session
        .as_ref()
        .ok_or_else(UiError::not_signed_in)?
        .view()
        .await
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
