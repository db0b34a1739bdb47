//! The size limit on a request message, and the answer a caller gets for breaking it.
//!
//! Every service decodes messages of at most [`MAX_MESSAGE_BYTES`]. tonic refuses a larger
//! one before any handler runs, with its own `OUT_OF_RANGE: Error, decoded message length too
//! large: ...`, which names neither Berth's limit nor what to do. [`MessageLimitLayer`]
//! rewrites exactly that answer into RESOURCE_EXHAUSTED (the code gRPC itself uses for a
//! message over the receiver's limit) with a message that names the size, the limit and
//! the way out. Every other answer passes through untouched.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::{Code, Status};

/// The largest request message any service decodes: 4 MiB, tonic's default, stated here so
/// that the limit the services use and the limit the error names are one number.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// How tonic's answer to an oversized message begins.
const TONIC_TOO_LARGE: &str = "decoded message length too large";

/// The tower layer that rewrites tonic's oversized-message answer (see the module docs).
#[derive(Clone, Copy, Default)]
pub struct MessageLimitLayer;

impl<S> tower::Layer<S> for MessageLimitLayer {
    type Service = MessageLimitService<S>;
    fn layer(&self, inner: S) -> MessageLimitService<S> {
        MessageLimitService { inner }
    }
}

/// See [`MessageLimitLayer`].
#[derive(Clone)]
pub struct MessageLimitService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for MessageLimitService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            // A message refused for its size is refused before the handler runs, so the
            // answer is trailers-only: the status is in the response headers.
            if let Some(status) = rewritten(&method, response.headers()) {
                let headers = response.headers_mut();
                headers.remove("grpc-status");
                headers.remove("grpc-message");
                headers.remove("grpc-status-details-bin");
                if status.add_header(headers).is_err() {
                    tracing::warn!(%method, "could not rewrite an oversized-message answer");
                }
            }
            Ok(response)
        })
    }
}

/// Berth's answer in place of tonic's oversized-message answer in `headers`, if that is
/// what they hold.
fn rewritten(method: &str, headers: &http::HeaderMap) -> Option<Status> {
    let code = headers.get("grpc-status")?.to_str().ok()?;
    if code.parse::<i32>().ok()? != Code::OutOfRange as i32 {
        return None;
    }
    let message = Status::from_header_map(headers)?.message().to_owned();
    if !message.contains(TONIC_TOO_LARGE) {
        return None;
    }
    Some(Status::resource_exhausted(too_large(method, &message)))
}

/// The message for a request to `method` that tonic described as `tonic_message`.
fn too_large(method: &str, tonic_message: &str) -> String {
    let found = found_bytes(tonic_message)
        .map(|bytes| format!(" is {bytes} bytes:"))
        .unwrap_or_else(|| " is".to_owned());
    format!(
        "the request to {method}{found} larger than the server's limit of {} MiB per message; \
         send less in one call (fewer or shorter command arguments and environment values, a \
         smaller workflow, or split the work into several requests)",
        MAX_MESSAGE_BYTES / (1024 * 1024)
    )
}

/// The size tonic found, from its `... found N bytes ...`.
fn found_bytes(tonic_message: &str) -> Option<u64> {
    let rest = &tonic_message[tonic_message.find("found ")? + "found ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(code: Code, message: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        Status::new(code, message)
            .add_header(&mut headers)
            .expect("a status fits in headers");
        headers
    }

    #[test]
    fn tonics_size_error_becomes_resource_exhausted_naming_the_limit() {
        let tonic = "Error, decoded message length too large: found 5242885 bytes, the limit is: 4194304 bytes";
        let status = rewritten(
            "/berth.v1.WorkRequestService/SubmitWorkRequest",
            &headers(Code::OutOfRange, tonic),
        )
        .expect("tonic's answer is rewritten");
        assert_eq!(status.code(), Code::ResourceExhausted);
        let message = status.message();
        assert!(message.contains("SubmitWorkRequest"), "{message}");
        assert!(message.contains("5242885 bytes"), "{message}");
        assert!(message.contains("4 MiB"), "{message}");
        assert!(message.contains("send less"), "{message}");
    }

    #[test]
    fn other_answers_pass_untouched() {
        let method = "/berth.v1.WorkRequestService/ListWorkRequests";
        assert!(rewritten(method, &headers(Code::OutOfRange, "page_token: too far")).is_none());
        assert!(rewritten(method, &headers(Code::InvalidArgument, TONIC_TOO_LARGE)).is_none());
        assert!(rewritten(method, &http::HeaderMap::new()).is_none());
    }

    #[test]
    fn a_message_without_a_size_still_names_the_limit() {
        let message = too_large("/m", TONIC_TOO_LARGE);
        assert!(message.contains("4 MiB"), "{message}");
    }
}
