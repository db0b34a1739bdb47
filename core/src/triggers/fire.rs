//! The pass over due schedule rules, and the loop that runs every pass of this room.

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::triggers::{Triggers, settle, watch};

/// Runs the passes (schedule rules, event rules, pending events) until `stop` is
/// cancelled. A failed pass is logged and tried again next time.
pub async fn run(triggers: Triggers, stop: CancellationToken) {
    loop {
        for (what, result) in [
            ("schedule", pass(&triggers).await),
            ("watch", watch::pass(&triggers).await),
            ("settle", settle::pass(&triggers).await),
        ] {
            if let Err(e) = result {
                tracing::warn!(error = %e, pass = what, "triggers: pass failed; trying again");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(triggers.interval) => {}
        }
    }
}

/// One pass over the due schedule rules. Returns how many rules it handled.
pub async fn pass(triggers: &Triggers) -> Result<usize> {
    let _ = triggers;
    Err(Error::internal("schedule passes are not built yet"))
}
