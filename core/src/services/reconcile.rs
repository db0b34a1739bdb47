//! The reconciler: makes each service's slots match what is desired.
//!
//! One task per server replica ([`run`]) passes over the services every `interval` and
//! whenever the hub says something changed (a replica's request ended, started, or
//! reported health). A pass takes each live or deleted-but-not-empty service with
//! `FOR UPDATE SKIP LOCKED`, so replicas of the server share the work and never handle
//! one service at once, loads its [`ServiceState`] and, in that one transaction:
//!
//! 1. makes the slots the processes ask for, and stops the ones beyond them (scaled
//!    down: the highest indices; deleted: all), removing a slot once its containers are
//!    gone;
//! 2. for each slot whose current container ended, records why and starts the next one
//!    when the restart policy says so ([`crate::services::restart`]);
//! 3. notes replicas that became healthy, and replaces a replica its HEALTHCHECK calls
//!    unhealthy;
//! 4. advances a deploy under way ([`crate::services::deploy::advance`]).
//!
//! What it works on and the primitives it changes containers with are in
//! [`crate::services::state`] (shared with deploys). What must reach workers (stops) and
//! the scheduler is collected in [`crate::services::state::AfterCommit`] and handed to the
//! hub only once the transaction commits.
//!
//! Imports go one way: `reconcile` → `deploy`, `health` → `state`; `state`, `health` and
//! `deploy` never import `reconcile` (`tests/tests/layers.rs` refuses cycles).

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::services::ServiceManager;

/// Passes over the services until `stop` is cancelled: every `manager.interval`, and
/// whenever the hub reports a change. A failed pass is logged and tried again next time.
pub async fn run(manager: ServiceManager, stop: CancellationToken) {
    let _ = (manager, stop);
}

/// One pass over every service that needs one. Returns how many services it handled.
pub async fn run_once(manager: &ServiceManager) -> Result<usize> {
    let _ = manager;
    Err(Error::internal(
        "services::reconcile::run_once is not built yet",
    ))
}
