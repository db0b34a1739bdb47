//! What operators and orchestrators look at besides the API: the HTTP health pair
//! ([`health`]: `/healthz` and `/readyz`) and `/metrics` ([`metrics`]).
//!
//! These routes are open (no token), like gRPC health, and carry no data about jobs,
//! tokens or secrets.

pub mod health;
pub mod metrics;

use axum::Router;

pub use health::Probe;
pub use metrics::Scrape;

/// The open operator routes, ready to merge into the server's router.
pub fn router(probe: Probe, scrape: Scrape) -> Router {
    Router::new()
        .merge(health::routes(probe))
        .merge(metrics::routes(scrape))
}
