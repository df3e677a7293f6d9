//! The commands of accounts: the Staff dashboard's (make an account, change its roles,
//! disable or enable it, reset its password) and everyone's change of their own password.
//!
//! These go to the server at once over HTTP, through the engine, not through the outbox:
//! a one-time password exists only in the server's answer, and an administrator must know
//! at once whether a change was taken. So they need the network, and say so in words when
//! it is not there; what was typed stays in the dialog, which shows the server's reason for
//! a refusal (its stable code and its sentence). A change that is taken reaches every
//! administrator's Staff dashboard through the feed, like any change.

use clinic_protocol::{Id, NewStaff, Role, StaffPatch};
use clinic_sync::{Engine, SyncError};
use tauri::{State, WebviewWindow};

use crate::backend::Backend;
use crate::error::UiError;
use crate::ipc::{NewStaffArgs, StaffAnswer};
use crate::windows::{self, WindowKind};

/// A command's failure in words: the server's refusal as it gave it, and an unreachable
/// server as what it means here (nothing changed, try again when online), under the code
/// the engine gives it. A certificate or TLS failure is not a matter of being offline: it
/// is said as the engine says it.
fn refused(e: SyncError) -> UiError {
    match e {
        SyncError::Unreachable(_) => {
            tracing::info!("an account change could not reach the server: {e}");
            UiError::new(
                e.code(),
                "The clinic server cannot be reached, so nothing was changed. Accounts and \
                 passwords are changed on the server itself: try again when this computer \
                 is back online.",
            )
        }
        SyncError::SessionExpired => UiError::new(
            "session_expired",
            "Your session has ended, so nothing was changed. Use \"Sign in again\" in the sync \
             panel, then try again.",
        ),
        e => e.into(),
    }
}

/// The engine, for a call from `window` that only the Staff dashboard makes (by an
/// administrator: the server checks it too). The session's lock is not held across the
/// request.
async fn admin_engine(backend: &Backend, window: &WebviewWindow) -> Result<Engine, UiError> {
    let session = backend.session.read().await;
    let session = session.as_ref().ok_or_else(UiError::not_signed_in)?;
    let admin = WindowKind::Admin;
    if windows::kind_of(window.label()) != Some(admin) || !admin.allowed_for(&session.user().roles)
    {
        return Err(UiError::forbidden_window(admin.title()));
    }
    Ok(session.engine.clone())
}

/// Changes the signed-in user's own password. The server ends the user's other sessions
/// and keeps this one: the app stays signed in and goes on syncing.
#[tauri::command]
pub async fn change_password(
    backend: State<'_, Backend>,
    current: String,
    new: String,
) -> Result<(), UiError> {
    let engine = {
        let session = backend.session.read().await;
        session
            .as_ref()
            .ok_or_else(UiError::not_signed_in)?
            .engine
            .clone()
    };
    engine
        .change_password(&current, &new)
        .await
        .map_err(refused)
}

/// Makes a staff account; the answer carries its one-time password, shown once.
#[tauri::command]
pub async fn create_staff(
    window: WebviewWindow,
    backend: State<'_, Backend>,
    staff: NewStaffArgs,
) -> Result<StaffAnswer, UiError> {
    let engine = admin_engine(&backend, &window).await?;
    let new = NewStaff {
        username: staff.username.trim().to_owned(),
        display_name: staff.display_name.trim().to_owned(),
        roles: staff.roles,
    };
    let issued = engine.create_staff(&new).await.map_err(refused)?;
    Ok(StaffAnswer {
        staff: issued.staff,
        one_time_password: Some(issued.one_time_password),
    })
}

/// Changes an account's roles, or disables or enables it, based on `version` (the
/// account's as the dashboard shows it: `conflict` if it changed since).
#[tauri::command]
pub async fn change_staff(
    window: WebviewWindow,
    backend: State<'_, Backend>,
    id: Id,
    version: i64,
    roles: Option<Vec<Role>>,
    disabled: Option<bool>,
) -> Result<StaffAnswer, UiError> {
    let engine = admin_engine(&backend, &window).await?;
    let patch = StaffPatch {
        display_name: None,
        roles,
        disabled,
        version,
    };
    let staff = engine.change_staff(id, &patch).await.map_err(refused)?;
    Ok(StaffAnswer {
        staff,
        one_time_password: None,
    })
}

/// Gives an account a new one-time password (shown once); its sessions end.
#[tauri::command]
pub async fn reset_password(
    window: WebviewWindow,
    backend: State<'_, Backend>,
    id: Id,
) -> Result<StaffAnswer, UiError> {
    let engine = admin_engine(&backend, &window).await?;
    let issued = engine.reset_password(id).await.map_err(refused)?;
    Ok(StaffAnswer {
        staff: issued.staff,
        one_time_password: Some(issued.one_time_password),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clinic_protocol::ErrorCode;

    #[test]
    fn an_unreachable_server_is_said_in_words_and_a_refusal_keeps_its_code() {
        let offline = refused(SyncError::Unreachable("connection refused".into()));
        assert_eq!(offline.code, "unreachable");
        assert!(offline.message.contains("nothing was changed"), "{offline}");
        let taken = refused(SyncError::Refused {
            code: ErrorCode::UsernameTaken,
            message: "The username \"nova\" is taken; choose another.".into(),
        });
        assert_eq!(taken.code, "username_taken");
        assert!(taken.message.contains("nova"));
        let ended = refused(SyncError::SessionExpired);
        assert_eq!(ended.code, "session_expired");
        assert!(ended.message.contains("Sign in again"), "{ended}");
        // A certificate problem is not said as being offline.
        let tls = refused(SyncError::Tls("bad certificate".into()));
        assert_ne!(tls.code, "unreachable");
        assert!(!tls.message.contains("back online"), "{tls}");
    }

    #[test]
    fn a_one_time_password_is_not_written_in_a_log() {
        let staff: clinic_protocol::Staff = serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::nil(),
            "username": "nova",
            "display_name": "Nova Reed",
            "roles": ["driver"],
            "version": 1,
        }))
        .expect("a staff record");
        let issued = clinic_protocol::IssuedPassword {
            staff: staff.clone(),
            one_time_password: "secret-one-time".into(),
        };
        let answer = StaffAnswer {
            staff,
            one_time_password: Some("secret-one-time".into()),
        };
        for logged in [format!("{issued:?}"), format!("{answer:?}")] {
            assert!(!logged.contains("secret-one-time"), "{logged}");
            assert!(logged.contains("nova"), "{logged}");
        }
    }
}

#[cfg(test)]
mod capability_tests {
    /// The Staff window runs the same shell as every dashboard: it must be granted what
    /// the shell calls (everything the dashboards have but `submit`), or it breaks the day
    /// the shell calls a new command; and only it gets the account commands.
    #[test]
    fn the_staff_window_has_the_shells_commands_and_only_it_the_accounts() {
        let perms = |json: &str| -> Vec<String> {
            let v: serde_json::Value = serde_json::from_str(json).expect("a capability");
            v["permissions"]
                .as_array()
                .expect("permissions")
                .iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        };
        let admin = perms(include_str!("capabilities/admin.json"));
        let dashboards = perms(include_str!("capabilities/dashboards.json"));
        for p in dashboards.iter().filter(|p| *p != "allow-submit") {
            assert!(admin.contains(p), "capabilities/admin.json lacks {p}");
        }
        let has = |list: &[String], p: &str| list.iter().any(|q| q == p);
        for p in [
            "allow-create-staff",
            "allow-change-staff",
            "allow-reset-password",
        ] {
            assert!(has(&admin, p) && !has(&dashboards, p), "{p}");
        }
        assert!(!has(&admin, "allow-submit"));
    }
}
