//! The one place where a domain error becomes a gRPC status.
//!
//! The code comes from the domain's one table (`ErrorCode::grpc`); the message is what
//! the caller may see (`Error::public_message`). Errors whose detail is for the log only
//! (an unreachable database, an internal failure) are logged here, once, at the level
//! they deserve; what a caller caused is not logged here (the caller is told).

use tonic::{Code, Response, Status};

use berth_core::error::Error;

/// The status a caller gets for `error`.
pub fn to_status(error: Error) -> Status {
    match error.log_level() {
        tracing::Level::ERROR => tracing::error!(error = %error, "internal error"),
        tracing::Level::WARN => tracing::warn!(error = %error, "call failed"),
        _ => {}
    }
    Status::new(Code::from(error.code().grpc()), error.public_message())
}

/// A handler's answer: the value, or the status for its error.
pub fn respond<T>(result: Result<T, Error>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(to_status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::error::ErrorCode;

    #[test]
    fn every_domain_code_maps_to_the_grpc_code_of_the_same_name() {
        let expected = [
            (ErrorCode::InvalidArgument, Code::InvalidArgument),
            (ErrorCode::NotFound, Code::NotFound),
            (ErrorCode::AlreadyExists, Code::AlreadyExists),
            (ErrorCode::FailedPrecondition, Code::FailedPrecondition),
            (ErrorCode::PermissionDenied, Code::PermissionDenied),
            (ErrorCode::Unauthenticated, Code::Unauthenticated),
            (ErrorCode::ResourceExhausted, Code::ResourceExhausted),
            (ErrorCode::DeadlineExceeded, Code::DeadlineExceeded),
            (ErrorCode::OutOfRange, Code::OutOfRange),
            (ErrorCode::Aborted, Code::Aborted),
            (ErrorCode::Unavailable, Code::Unavailable),
            (ErrorCode::Internal, Code::Internal),
        ];
        assert_eq!(expected.len(), ErrorCode::ALL.len());
        for (code, grpc) in expected {
            assert_eq!(Code::from(code.grpc()), grpc, "{code:?}");
        }
    }

    #[test]
    fn internal_details_stay_in_the_log() {
        let status = to_status(Error::internal("relation \"x\" does not exist"));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("relation"));
        let status = to_status(Error::NotFound("work request 42 not found".into()));
        assert_eq!(status.message(), "work request 42 not found");
    }
}
