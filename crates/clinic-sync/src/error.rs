//! The engine's errors, each with a stable code the app shows and branches on.

use clinic_protocol::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("Cannot reach the clinic server: {0}")]
    Unreachable(String),
    /// The server's TLS certificate does not check out (unknown authority, expired, made
    /// for another address...). Never retried in clear text.
    #[error(
        "The clinic server's certificate is not trusted: {0}. If your clinic has its own \
         certificate authority, start the app with --ca-file pointing at its PEM file."
    )]
    Certificate(String),
    /// Another TLS failure: the handshake broke off, or the server does not speak TLS.
    #[error("Cannot set up an encrypted connection to the clinic server: {0}")]
    Tls(String),
    /// The clinic CA file given (`--ca-file`) cannot be read or holds no certificate.
    #[error("The clinic CA file cannot be used: {0}")]
    CaFile(String),
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    #[error("The session has expired; sign in again.")]
    SessionExpired,
    #[error("There is no saved session to resume.")]
    NoSession,
    #[error("The local cache failed: {0}")]
    Storage(String),
    #[error("The sync engine has stopped.")]
    Stopped,
}

impl SyncError {
    /// A stable, snake_case code: the protocol's code for refusals, our own otherwise.
    pub fn code(&self) -> &'static str {
        match self {
            SyncError::Unreachable(_) => "unreachable",
            SyncError::Certificate(_) => "untrusted_certificate",
            SyncError::Tls(_) => "tls_failed",
            SyncError::CaFile(_) => "ca_file",
            SyncError::Refused { code, .. } => code.as_str(),
            SyncError::SessionExpired => "session_expired",
            SyncError::NoSession => "no_session",
            SyncError::Storage(_) => "storage",
            SyncError::Stopped => "stopped",
        }
    }
}

impl From<sqlx::Error> for SyncError {
    fn from(e: sqlx::Error) -> SyncError {
        SyncError::Storage(e.to_string())
    }
}

impl From<serde_json::Error> for SyncError {
    fn from(e: serde_json::Error) -> SyncError {
        SyncError::Storage(format!("cached data does not decode: {e}"))
    }
}

impl From<reqwest::Error> for SyncError {
    fn from(e: reqwest::Error) -> SyncError {
        crate::tls::tls_failure(&e).unwrap_or_else(|| SyncError::Unreachable(e.to_string()))
    }
}
