//! The error every command returns to a window: a stable code to branch on and a sentence
//! for the user. Windows never match on the message.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct UiError {
    pub code: &'static str,
    pub message: String,
}

impl UiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> UiError {
        UiError {
            code,
            message: message.into(),
        }
    }

    pub fn not_signed_in() -> UiError {
        UiError::new("not_signed_in", "You are not signed in.")
    }

    pub fn forbidden_window(kind: &str) -> UiError {
        UiError::new(
            "forbidden",
            format!("Your roles do not include the {kind} dashboard."),
        )
    }

    /// For failures of the app itself (a window that cannot open, a file that cannot be
    /// written): logged in full, shown briefly.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> UiError {
        tracing::error!("{context}: {error}");
        UiError::new(
            "internal",
            format!("{context}. {}", crate::logs::see_the_log()),
        )
    }
}

impl From<clinic_sync::SyncError> for UiError {
    fn from(e: clinic_sync::SyncError) -> UiError {
        UiError::new(e.code(), e.to_string())
    }
}
