//! The domain's one error type, and the one table of what each error means to a caller.
//!
//! Everything below the API edge returns [`Error`]. Each variant has an [`ErrorCode`], and
//! [`ErrorCode`] is the only table that says what a code means on the wire: its gRPC status
//! code and its HTTP status (for the dashboard to come). The edge turns an `Error` into a
//! `tonic::Status` with that table and nothing else.
//!
//! Messages of the caller-facing variants name the field or the thing and say what to
//! change. Two variants carry detail that is only for the server's log: [`Error::Database`]
//! (the database cannot be reached; the caller may retry) and [`Error::Internal`] (a bug
//! or an unexpected failure). Their [`Error::public_message`] is generic, so no SQL, path
//! or secret reaches a caller; their `Display` carries the detail, for logs.
//!
//! Logging: the edge logs an error once, when it answers a call with it, at the level
//! [`Error::log_level`] gives (internal errors at ERROR, an unreachable database at WARN,
//! everything the caller caused at DEBUG). Background tasks log errors they cannot hand to
//! a caller themselves, at the level their situation deserves, and never convert them to
//! a wire status to do so.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// What an error means to a caller, independent of the protocol it is told in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request was malformed.
    InvalidArgument,
    /// The named thing does not exist (or is not visible to the caller).
    NotFound,
    /// A unique name or id is taken.
    AlreadyExists,
    /// The thing is in a state that refuses the operation.
    FailedPrecondition,
    /// The caller is known but may not do this.
    PermissionDenied,
    /// The caller could not be identified (no token, a bad, disabled or expired one).
    Unauthenticated,
    /// A limit was reached (a full queue, a quota).
    ResourceExhausted,
    /// Something did not happen in time.
    DeadlineExceeded,
    /// A position past the end of the thing (an offset beyond a file's size).
    OutOfRange,
    /// A conditional change lost to another change (the version it expected is gone).
    Aborted,
    /// The server cannot serve this now; the caller may retry.
    Unavailable,
    /// A bug or an unexpected failure.
    Internal,
}

impl ErrorCode {
    /// Every code, for tests that walk the table.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::InvalidArgument,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::FailedPrecondition,
        ErrorCode::PermissionDenied,
        ErrorCode::Unauthenticated,
        ErrorCode::ResourceExhausted,
        ErrorCode::DeadlineExceeded,
        ErrorCode::OutOfRange,
        ErrorCode::Aborted,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The table: (gRPC status code number, HTTP status). The gRPC numbers are the ones
    /// every gRPC implementation shares (`google.rpc.Code`).
    const fn table(self) -> (i32, u16) {
        match self {
            ErrorCode::InvalidArgument => (3, 400),
            ErrorCode::NotFound => (5, 404),
            ErrorCode::AlreadyExists => (6, 409),
            ErrorCode::FailedPrecondition => (9, 409),
            ErrorCode::PermissionDenied => (7, 403),
            ErrorCode::Unauthenticated => (16, 401),
            ErrorCode::ResourceExhausted => (8, 429),
            ErrorCode::DeadlineExceeded => (4, 504),
            ErrorCode::OutOfRange => (11, 416),
            ErrorCode::Aborted => (10, 409),
            ErrorCode::Unavailable => (14, 503),
            ErrorCode::Internal => (13, 500),
        }
    }

    /// The gRPC status code number.
    pub const fn grpc(self) -> i32 {
        self.table().0
    }

    /// The HTTP status.
    pub const fn http(self) -> u16 {
        self.table().1
    }
}

/// Everything an operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something malformed; the message names the field and the fix.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named thing does not exist (or is not visible to the caller).
    #[error("{0}")]
    NotFound(String),
    /// A unique name is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The thing exists but is in a state that refuses the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller's role may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// No usable token.
    #[error("{0}")]
    Unauthenticated(String),
    /// A limit was reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Something did not happen in time.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A position past the end of the thing; the message says where the end is.
    #[error("{0}")]
    OutOfRange(String),
    /// A conditional change found another change had come first; the message says what
    /// the caller expected and what it found.
    #[error("{0}")]
    Aborted(String),
    /// The server cannot serve this now (it is shutting down, say); the message is for
    /// the caller.
    #[error("{0}")]
    Unavailable(String),
    /// The database cannot be reached right now; the detail is for the log only.
    #[error("database unavailable: {0}")]
    Database(String),
    /// A bug or an unexpected failure; the detail is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a caller is told while the database cannot be reached. It says that the outage is
/// the server's to recover from and that retrying is right, and nothing of where the
/// database is or why it cannot be reached.
pub const DATABASE_UNAVAILABLE: &str =
    "the database is unavailable and is being recovered; try again shortly";

/// Shorthand for results of the domain.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An internal error with context for the log.
    pub fn internal(context: impl std::fmt::Display) -> Error {
        Error::Internal(context.to_string())
    }

    /// What this error means to a caller.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Error::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            Error::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Error::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            Error::DeadlineExceeded(_) => ErrorCode::DeadlineExceeded,
            Error::OutOfRange(_) => ErrorCode::OutOfRange,
            Error::Aborted(_) => ErrorCode::Aborted,
            Error::Unavailable(_) | Error::Database(_) => ErrorCode::Unavailable,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The message a caller gets: the whole message for what the caller can act on, a
    /// generic one for failures whose detail belongs in the log.
    pub fn public_message(&self) -> String {
        match self {
            Error::Database(_) => DATABASE_UNAVAILABLE.to_owned(),
            Error::Internal(_) => "internal error; the server log has details".to_owned(),
            other => other.to_string(),
        }
    }

    /// How loud a log line about this error, answered to a caller, should be.
    pub fn log_level(&self) -> tracing::Level {
        match self {
            Error::Internal(_) => tracing::Level::ERROR,
            Error::Database(_) => tracing::Level::WARN,
            _ => tracing::Level::DEBUG,
        }
    }
}

impl From<DieselError> for Error {
    fn from(error: DieselError) -> Error {
        match &error {
            DieselError::NotFound => Error::NotFound("not found".into()),
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                Error::AlreadyExists(format!(
                    "already exists ({})",
                    info.constraint_name().unwrap_or("unique constraint")
                ))
            }
            // No SQLSTATE at all: the connection broke (the server went away mid-call).
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )
            | DieselError::BrokenTransactionManager => Error::Database(error.to_string()),
            // The server is shutting down, crashed or still recovering (SQLSTATE class 57);
            // diesel keeps only the message of these.
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
                if is_server_going_away(info.message()) =>
            {
                Error::Database(error.to_string())
            }
            _ => Error::Internal(error.to_string()),
        }
    }
}

/// Whether a server error says the server is going away or not there yet: it shut down
/// or crashed under the session, or it is still starting or recovering.
fn is_server_going_away(message: &str) -> bool {
    message.starts_with("terminating connection")
        || message.starts_with("the database system is")
        || message.starts_with("server closed the connection")
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for Error {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Error {
        Error::Database(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_grpc_code_and_an_http_error_status() {
        let mut grpc: Vec<i32> = ErrorCode::ALL.iter().map(|c| c.grpc()).collect();
        grpc.sort_unstable();
        grpc.dedup();
        assert_eq!(grpc.len(), ErrorCode::ALL.len());
        assert!(grpc.iter().all(|&c| (1..=16).contains(&c)));
        assert!(
            ErrorCode::ALL
                .iter()
                .all(|c| (400..600).contains(&c.http()))
        );
    }

    #[test]
    fn a_broken_connection_is_the_database_being_away() {
        let broken = DieselError::DatabaseError(
            DatabaseErrorKind::UnableToSendCommand,
            Box::new("connection closed".to_owned()),
        );
        assert_eq!(Error::from(broken).code(), ErrorCode::Unavailable);
        let crashed = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new(
                "terminating connection because of crash of another server process".to_owned(),
            ),
        );
        assert!(matches!(Error::from(crashed), Error::Database(_)));
        let bug = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("relation \"x\" does not exist".to_owned()),
        );
        assert!(matches!(Error::from(bug), Error::Internal(_)));
    }

    #[test]
    fn log_only_details_never_reach_the_caller() {
        let db = Error::Database("connection to 10.0.0.5 refused".into());
        assert_eq!(db.code(), ErrorCode::Unavailable);
        assert!(!db.public_message().contains("10.0.0.5"));
        assert!(db.to_string().contains("10.0.0.5"));
        assert!(db.public_message().contains("being recovered"));
        let bug = Error::internal("SELECT secret FROM x");
        assert!(!bug.public_message().contains("SELECT"));
        let bad = Error::InvalidArgument("spec.image: is required".into());
        assert_eq!(bad.public_message(), "spec.image: is required");
    }
}
