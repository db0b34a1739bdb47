//! The tower layer that counts gRPC calls: `berth_grpc_requests_total{method,code}` and
//! `berth_grpc_request_duration_seconds{method}`. It sits outside the auth layer, so
//! refused calls count too. It is part of the gRPC edge because it reads gRPC status
//! codes; `/metrics` (in `observe`) only renders what it recorded.

use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;

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

/// The name of a gRPC status code, as the text format shows it.
fn code_label(code: Option<&[u8]>) -> &'static str {
    let n = code
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
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

/// Counts and times gRPC calls; HTTP paths pass untouched.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

/// The service [`GrpcMetricsLayer`] makes.
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcMetrics<S>
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
        Box::pin(async move {
            let path = request.uri().path();
            if is_http_path(path) {
                return inner.call(request).await;
            }
            let method = method_label(path).to_owned();
            let began = Instant::now();
            let answer = inner.call(request).await;
            let code = match &answer {
                Ok(response) => {
                    code_label(response.headers().get("grpc-status").map(|v| v.as_bytes()))
                }
                Err(_) => "UNKNOWN",
            };
            metrics::histogram!(GRPC_DURATION, "method" => method.clone())
                .record(began.elapsed().as_secs_f64());
            metrics::counter!(GRPC_REQUESTS, "method" => method, "code" => code).increment(1);
            answer
        })
    }
}
