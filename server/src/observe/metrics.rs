//! `/metrics`: the server's Prometheus text, and the tower layer that counts gRPC calls.
//!
//! It owns the scrape: the process recorder's families (the domain's counters and
//! histograms, and the gRPC call metrics recorded here) followed by the gauges this
//! server computes at scrape time from its own pool (`berth_core::observe::gauges`), so
//! two servers in one process each show their own database and pool. It does not record
//! domain events (the domain does, through `berth_core::observe`) and never shows job,
//! worker or token ids.
//!
//! Database-wide gauges (requests, workers, slots, topic backlog) read the same rows on
//! every replica, so every replica exports the same values. They are exported by every
//! replica rather than by one holding a lock, so a scrape of any live replica shows them
//! and no hand-over is needed when a replica dies; aggregate them with `max by (...)`,
//! never `sum`. The pool gauges and the counters are per replica: `sum` those.

use std::fmt::Write as _;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use berth_common::metrics::escape_label;
use berth_core::observe::gauges;
use berth_core::store::db::DbPool;
use futures::future::BoxFuture;

use crate::api::auth::{is_http_path, rule_for};

/// `berth_grpc_requests_total{method,code}`.
const GRPC_REQUESTS: &str = "berth_grpc_requests_total";
/// `berth_grpc_request_duration_seconds{method}`.
const GRPC_DURATION: &str = "berth_grpc_request_duration_seconds";

/// What a scrape reads.
#[derive(Clone)]
pub struct Scrape {
    pub pool: DbPool,
}

/// Installs the process recorder (once) and describes every family, so the first
/// scrape already lists them.
pub fn install() {
    if berth_common::metrics::handle().is_some() {
        berth_core::observe::describe();
        metrics::describe_counter!(
            GRPC_REQUESTS,
            metrics::Unit::Count,
            "gRPC calls answered by this replica, by method and status code (the code of \
             the response headers; a streaming call failing after its first message counts \
             as OK)."
        );
        metrics::describe_histogram!(
            GRPC_DURATION,
            metrics::Unit::Seconds,
            "Time from a gRPC call's arrival to its response headers (a whole unary call; \
             the start of a streaming one), by method."
        );
    }
}

/// The `/metrics` route.
pub fn routes(scrape: Scrape) -> Router {
    install();
    Router::new()
        .route("/metrics", get(metrics_page))
        .with_state(scrape)
}

/// Families the worker exports; a server in the same process leaves them out.
fn is_server_family(name: &str) -> bool {
    !name.starts_with("berth_worker_")
}

async fn metrics_page(State(scrape): State<Scrape>) -> impl IntoResponse {
    let mut text = berth_common::metrics::render(is_server_family);
    let db = gauges::read(&scrape.pool).await;
    render_gauges(&mut text, db.as_ref().ok(), &gauges::pool(&scrape.pool));
    if let Err(e) = &db {
        tracing::warn!(error = %e, "metrics: the database gauges could not be read");
    }
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        text,
    )
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

const SAME_ON_EVERY_REPLICA: &str = "Read from the database at scrape time: the same on every \
     replica, aggregate with max by (...), not sum.";

/// Appends the scrape-time gauges. `db` is `None` when the database could not be read:
/// the families are still listed (without samples) and `berth_metrics_database_up` says 0.
fn render_gauges(out: &mut String, db: Option<&gauges::Gauges>, pool: &gauges::PoolGauges) {
    family(
        out,
        "berth_metrics_database_up",
        "gauge",
        "1 when this scrape could read the database gauges, 0 when not.",
    );
    let _ = writeln!(out, "berth_metrics_database_up {}", u8::from(db.is_some()));
    family(
        out,
        "berth_work_requests",
        "gauge",
        &format!(
            "Work requests by state and workspace, every state listed for every workspace. \
             {SAME_ON_EVERY_REPLICA}"
        ),
    );
    if let Some(db) = db {
        for (workspace, state, n) in &db.requests {
            let _ = writeln!(
                out,
                "berth_work_requests{{state=\"{state}\",workspace=\"{}\"}} {n}",
                escape_label(workspace)
            );
        }
    }
    family(
        out,
        "berth_workers",
        "gauge",
        &format!(
            "Registered workers by state (connected, idle, busy, draining, disabled; a worker \
             can be in several). {SAME_ON_EVERY_REPLICA}"
        ),
    );
    if let Some(db) = db {
        for (state, n) in &db.workers {
            let _ = writeln!(out, "berth_workers{{state=\"{state}\"}} {n}");
        }
    }
    family(
        out,
        "berth_worker_slots",
        "gauge",
        &format!(
            "Slots of connected workers: used (live attempts), free (on enabled, not draining \
             workers). {SAME_ON_EVERY_REPLICA}"
        ),
    );
    if let Some(db) = db {
        for (state, n) in &db.slots {
            let _ = writeln!(out, "berth_worker_slots{{state=\"{state}\"}} {n}");
        }
    }
    family(
        out,
        "berth_topic_backlog_messages",
        "gauge",
        &format!(
            "Messages waiting in topic subscriptions, not yet acknowledged. {SAME_ON_EVERY_REPLICA}"
        ),
    );
    if let Some(db) = db {
        let _ = writeln!(out, "berth_topic_backlog_messages {}", db.topic_backlog);
    }
    family(
        out,
        "berth_db_pool_connections",
        "gauge",
        "This replica's database pool: idle, in_use and max connections. Per replica: sum.",
    );
    for (state, n) in &pool.connections {
        let _ = writeln!(out, "berth_db_pool_connections{{state=\"{state}\"}} {n}");
    }
    family(
        out,
        "berth_db_pool_waiters",
        "gauge",
        "Tasks of this replica waiting for a database connection.",
    );
    let _ = writeln!(out, "berth_db_pool_waiters {}", pool.waiting);
}

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
