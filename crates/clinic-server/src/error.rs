//! The server's errors. Database and serialization details are logged, never sent: clients
//! get `internal` and a sentence.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use clinic_protocol::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data does not decode: {0}")]
    Json(#[from] serde_json::Error),
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("broken invariant: {0}")]
    Invariant(&'static str),
    /// A certificate or key that cannot be served (`--tls-cert`, `--tls-key`).
    #[error("TLS: {0}")]
    Tls(String),
    /// Binding or serving a socket (an embedded server's), or a backup's file.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// A backup that cannot be taken (its file exists, the database is not there...).
    #[error("backup: {0}")]
    Backup(String),
    /// Settings that cannot work (a `--db` address of an unknown kind...).
    #[error("settings: {0}")]
    Config(String),
    /// The database is another process's to write (see `lock.rs`).
    #[error("the database is in use: {0}")]
    Locked(String),
    /// A request the server understood and refuses, with a stable code (an account that
    /// cannot be made or changed as asked): answered as that code, never as `internal`.
    #[error("{}", .0.message)]
    Refused(clinic_protocol::rules::Rejection),
}

/// An HTTP error answer: a stable code and a sentence, as [`ApiError`] JSON.
#[derive(Debug)]
pub(crate) struct HttpError(pub(crate) ErrorCode, pub(crate) String);

impl HttpError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> HttpError {
        HttpError(code, message.into())
    }
}

impl From<ServerError> for HttpError {
    fn from(e: ServerError) -> HttpError {
        if let ServerError::Refused(r) = e {
            return HttpError::new(r.code, r.message);
        }
        tracing::error!("internal error: {e}");
        HttpError::new(
            ErrorCode::Internal,
            "The server could not do this; it has logged why.",
        )
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            Json(ApiError {
                code: self.0,
                message: self.1,
            }),
        )
            .into_response()
    }
}
