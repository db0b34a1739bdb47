//! The tower layer that observes each gRPC call, outside the auth layer so refused calls
//! are seen too. It is part of the gRPC edge because it reads gRPC status codes.
//!
//! - Metrics: `berth_grpc_requests_total{method,code}` and
//!   `berth_grpc_request_duration_seconds{method}`; `/metrics` (in `observe`) only renders
//!   what it recorded.
//! - A span for each Berth RPC: `rpc`, with the OpenTelemetry names (`otel.name` = the
//!   method path, `otel.kind` = server, `rpc.system` = grpc, `rpc.service`, `rpc.method`,
//!   `rpc.grpc.status_code`), continuing the caller's trace when the call carries a W3C
//!   `traceparent` header. The handler runs inside it, so what it stores (a submitted
//!   request's trace context, see `berth_core::observe::traces`) belongs to the caller's
//!   trace. Health checks and reflection get none. When the process exports no traces
//!   the spans are plain `tracing` spans and go nowhere.

use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use tracing::Instrument;

use crate::api::auth::{is_http_path, rule_for};
use crate::observe::metrics::{GRPC_DURATION, GRPC_REQUESTS};

/// The method label: the RPC path when it is one of Berth's (or health or reflection),
/// else `unknown`, so a caller cannot make up label values.
fn method_label(path: &str) -> &str {
    let open = path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/");
    if open || rule_for(path).is_some() {
        path
    } else {
        "unknown"
    }
}

/// The gRPC status code of an answer: from its headers for a call that failed at once
/// (a unary call's OK comes in the trailers, after this layer has let go), 2 (UNKNOWN)
/// for a transport error.
fn code_of<B, E>(answer: &Result<http::Response<B>, E>) -> i32 {
    match answer {
        Ok(response) => response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(0),
        Err(_) => 2,
    }
}

/// The name of a gRPC status code, as the text format shows it.
fn code_label(n: i32) -> &'static str {
    match tonic::Code::from_i32(n) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The span of a Berth RPC at `path`, continuing the caller's `traceparent` if any; none
/// for health checks, reflection and unknown paths.
fn call_span(path: &str, headers: &http::HeaderMap) -> tracing::Span {
    if rule_for(path).is_none() {
        return tracing::Span::none();
    }
    let name = path.trim_start_matches('/');
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    let span = tracing::info_span!(
        "rpc",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    if let Some(parent) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        berth_common::telemetry::continue_trace(&span, parent);
    }
    span
}

/// Counts, times and traces gRPC calls; HTTP paths pass untouched.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcCallsLayer;

impl<S> tower::Layer<S> for GrpcCallsLayer {
    type Service = GrpcCalls<S>;

    fn layer(&self, inner: S) -> GrpcCalls<S> {
        GrpcCalls { inner }
    }
}

/// The service [`GrpcCallsLayer`] makes.
#[derive(Clone, Debug)]
pub struct GrpcCalls<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcCalls<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path();
        if is_http_path(path) {
            return Box::pin(inner.call(request));
        }
        let method = method_label(path).to_owned();
        let span = call_span(path, request.headers());
        let recorded = span.clone();
        Box::pin(
            async move {
                let began = Instant::now();
                let answer = inner.call(request).await;
                let code = code_of(&answer);
                metrics::histogram!(GRPC_DURATION, "method" => method.clone())
                    .record(began.elapsed().as_secs_f64());
                metrics::counter!(GRPC_REQUESTS, "method" => method, "code" => code_label(code))
                    .increment(1);
                recorded.record("rpc.grpc.status_code", code);
                if code != 0 {
                    recorded.record("otel.status_code", "ERROR");
                }
                answer
            }
            .instrument(span),
        )
    }
}
