//! `/healthz` and `/readyz` for orchestrators, next to gRPC health.
//!
//! - `/healthz` (liveness): 200 while the process serves HTTP at all. It does not follow
//!   the database, so an outage does not get every replica restarted.
//! - `/readyz` (readiness): 200 while the database answers and the server is not shutting
//!   down; 503 otherwise, with the reason, so a load balancer stops sending work. It
//!   follows the same state gRPC health does (`live::health`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CACHE_CONTROL;
use axum::response::IntoResponse;
use axum::routing::get;
use berth_core::live::health::DbHealth;

/// What readiness looks at.
#[derive(Clone)]
pub struct Probe {
    pub database: Arc<DbHealth>,
    /// Cleared for good when shutdown begins.
    pub accepting: Arc<AtomicBool>,
}

impl Probe {
    /// A probe following `database`, accepting until told otherwise.
    pub fn new(database: Arc<DbHealth>) -> Probe {
        Probe {
            database,
            accepting: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Readiness from now on answers 503 (shutdown began).
    pub fn stop(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// `Ok` when ready, else why not.
    pub fn ready(&self) -> Result<(), &'static str> {
        if !self.accepting.load(Ordering::SeqCst) {
            Err("shutting down")
        } else if !self.database.reachable() {
            Err("the database cannot be reached")
        } else {
            Ok(())
        }
    }
}

/// The health routes.
pub fn routes(probe: Probe) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(probe)
}

async fn healthz() -> impl IntoResponse {
    ([(CACHE_CONTROL, "no-store")], "ok\n")
}

async fn readyz(State(probe): State<Probe>) -> impl IntoResponse {
    match probe.ready() {
        Ok(()) => (
            StatusCode::OK,
            [(CACHE_CONTROL, "no-store")],
            "ready\n".to_owned(),
        ),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(CACHE_CONTROL, "no-store")],
            format!("not ready: {why}\n"),
        ),
    }
}
