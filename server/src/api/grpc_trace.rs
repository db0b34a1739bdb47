//! The tower layer that gives every Berth RPC a span: `rpc` with the OpenTelemetry names
//! (`otel.name` = the method path, `otel.kind` = server, `rpc.system` = grpc,
//! `rpc.service`, `rpc.method`, `rpc.grpc.status_code`), continuing the caller's trace
//! when the call carries a W3C `traceparent` header. The handler runs inside it, so what
//! it stores (a submitted request's trace context, see `berth_core::observe::traces`)
//! belongs to the caller's trace.
//!
//! Health checks, reflection and the HTTP paths get no span. When the process exports no
//! traces the spans are plain `tracing` spans and go nowhere.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tracing::Instrument;

use crate::api::auth::{is_http_path, rule_for};

/// Opens a span around each Berth RPC.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcTraceLayer;

impl<S> tower::Layer<S> for GrpcTraceLayer {
    type Service = GrpcTrace<S>;

    fn layer(&self, inner: S) -> GrpcTrace<S> {
        GrpcTrace { inner }
    }
}

/// The service [`GrpcTraceLayer`] makes.
#[derive(Clone, Debug)]
pub struct GrpcTrace<S> {
    inner: S,
}

/// The `traceparent` header of a call, when it has one that is text.
fn traceparent(headers: &http::HeaderMap) -> Option<&str> {
    headers.get("traceparent")?.to_str().ok()
}

/// `/berth.v1.WorkRequestService/SubmitWorkRequest` → (`berth.v1.WorkRequestService`,
/// `SubmitWorkRequest`).
fn service_and_method(path: &str) -> (&str, &str) {
    let path = path.trim_start_matches('/');
    path.split_once('/').unwrap_or((path, ""))
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcTrace<S>
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
        if is_http_path(path) || rule_for(path).is_none() {
            return Box::pin(inner.call(request));
        }
        let (service, method) = service_and_method(path);
        let span = tracing::info_span!(
            "rpc",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        if let Some(parent) = traceparent(request.headers()) {
            berth_common::telemetry::continue_trace(&span, parent);
        }
        let recorded = span.clone();
        Box::pin(
            async move {
                let answer = inner.call(request).await;
                // A unary call's status is in its headers; a stream's comes in its trailers,
                // after this span (which covers the handler) has ended.
                let code = match &answer {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(0),
                    Err(_) => 2,
                };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_split_into_service_and_method() {
        assert_eq!(
            service_and_method("/berth.v1.WorkRequestService/SubmitWorkRequest"),
            ("berth.v1.WorkRequestService", "SubmitWorkRequest")
        );
        assert_eq!(service_and_method("/odd"), ("odd", ""));
    }
}
