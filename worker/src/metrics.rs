//! The worker's own `/metrics` (`--metrics-listen`): slots, running containers, log
//! bytes sent, reconnects and container start latency, in Prometheus text.
//!
//! It owns the names of the worker's families and the small HTTP listener that serves
//! them. It reads the attempts it is told about and never changes worker state; labels
//! carry no job or container ids.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// `berth_worker_log_bytes_sent_total`.
pub const LOG_BYTES_SENT: &str = "berth_worker_log_bytes_sent_total";
/// `berth_worker_reconnects_total`.
pub const RECONNECTS: &str = "berth_worker_reconnects_total";
/// `berth_worker_container_start_seconds`.
pub const CONTAINER_START: &str = "berth_worker_container_start_seconds";

/// How many attempts run now, and the worker's slots.
pub type Occupancy = Arc<dyn Fn() -> (usize, u32) + Send + Sync>;

/// Installs the recorder and describes the families.
pub fn install() {
    if berth_common::metrics::handle().is_none() {
        return;
    }
    metrics::describe_counter!(
        LOG_BYTES_SENT,
        metrics::Unit::Bytes,
        "Log bytes this worker sent in AppendLog calls the server answered (resends included)."
    );
    metrics::describe_counter!(
        RECONNECTS,
        metrics::Unit::Count,
        "Times this worker lost its stream to the server and connected again."
    );
    metrics::describe_histogram!(
        CONTAINER_START,
        metrics::Unit::Seconds,
        "Time Docker took to start a created container."
    );
    metrics::counter!(LOG_BYTES_SENT).increment(0);
    metrics::counter!(RECONNECTS).increment(0);
}

/// Serves `/metrics` on `addr` until `shutdown`. Fails when the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    occupancy: Occupancy,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    install();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(page))
        .with_state(occupancy);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(local)
}

async fn page(State(occupancy): State<Occupancy>) -> impl IntoResponse {
    let mut text = berth_common::metrics::render(|_| true);
    let (running, slots) = occupancy();
    let used = running.min(slots as usize);
    let free = (slots as usize).saturating_sub(running);
    let _ = writeln!(
        text,
        "# HELP berth_worker_slots This worker's slots: used and free.\n\
         # TYPE berth_worker_slots gauge\n\
         berth_worker_slots{{state=\"used\"}} {used}\n\
         berth_worker_slots{{state=\"free\"}} {free}"
    );
    let _ = writeln!(
        text,
        "# HELP berth_worker_running_containers Attempts this worker runs now.\n\
         # TYPE berth_worker_running_containers gauge\n\
         berth_worker_running_containers {running}"
    );
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
}
