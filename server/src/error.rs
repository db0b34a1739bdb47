//! The server's one error type and the one place it becomes a gRPC status.
//!
//! Handlers return [`ApiError`]; `From<ApiError> for tonic::Status` decides the code.
//! Bad input says what to change; internal failures are logged here with their context and
//! reach the caller only as a short, generic message, so no SQL, path or secret leaks.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tonic::Status;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The caller sent something malformed; the message names the field and the fix.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named thing does not exist (or is not visible to the caller).
    #[error("{0}")]
    NotFound(String),
    /// The thing exists but is in a state that refuses the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A unique name is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller's role may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The database cannot be reached right now; the caller may retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// An internal error with context for the log.
    pub fn internal(context: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(context.to_string())
    }
}

impl From<DieselError> for ApiError {
    fn from(error: DieselError) -> ApiError {
        match &error {
            DieselError::NotFound => ApiError::NotFound("not found".into()),
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                ApiError::AlreadyExists(format!(
                    "already exists ({})",
                    info.constraint_name().unwrap_or("unique constraint")
                ))
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
            | DieselError::BrokenTransactionManager => ApiError::Unavailable(error.to_string()),
            _ => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for ApiError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> ApiError {
        ApiError::Unavailable(error.to_string())
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        match error {
            ApiError::InvalidArgument(m) => Status::invalid_argument(m),
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::AlreadyExists(m) => Status::already_exists(m),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                Status::unavailable("the database is unavailable; try again shortly")
            }
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error; the server log has details")
            }
        }
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;
