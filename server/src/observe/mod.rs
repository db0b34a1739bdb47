//! What operators and orchestrators look at besides the API: the HTTP health pair
//! ([`health`]: `/healthz` and `/readyz`) and, beside it, metrics and traces.
//!
//! These routes are open (no token), like gRPC health, and carry no data about jobs,
//! tokens or secrets.

pub mod health;

use axum::Router;

pub use health::Probe;

/// The open operator routes, ready to merge into the server's router.
pub fn router(probe: Probe) -> Router {
    Router::new().merge(health::routes(probe))
}
