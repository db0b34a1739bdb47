//! `/metrics`: the server's Prometheus text. (The gRPC calls are counted at the gRPC edge,
//! `api::grpc_calls`.)
//!
//! It owns the scrape: the process recorder's families (the domain's counters and
//! histograms, and the gRPC call metrics) followed by the gauges this
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

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use berth_common::metrics::escape_label;
use berth_core::observe::gauges;
use berth_core::store::db::DbPool;

/// `berth_grpc_requests_total{method,code}`.
pub const GRPC_REQUESTS: &str = "berth_grpc_requests_total";
/// `berth_grpc_request_duration_seconds{method}`.
pub const GRPC_DURATION: &str = "berth_grpc_request_duration_seconds";

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
