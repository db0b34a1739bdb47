//! The background task of the topics room, on every replica: the collector's pass
//! ([`crate::topics::policy`]) every `gc_interval`, with the dead letters of leases that
//! ran out on their last delivery ([`crate::topics::deliver`]) first; this replica's
//! consumers marked seen every heartbeat, ending any whose row is gone
//! ([`crate::topics::stream`]); and topics with live consumers pinged every
//! `ping_interval` ([`crate::topics::ping`]).

use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::topics::policy::PassReport;
use crate::topics::{Topics, deliver, ping, stream};

impl Topics {
    /// One whole pass: run-out leases to the dead letters, then the collector. Returns
    /// how many went to the dead letters, and what the collector did.
    pub async fn pass_once(&self) -> Result<(usize, PassReport)> {
        let dead_lettered = {
            let mut conn = self.pool.get().await?;
            deliver::dead_letter_run_out(&mut conn).await?
        };
        Ok((dead_lettered, self.collect_once().await?))
    }
}

/// The background task of the topics room on this replica, until `shutdown`: the pass
/// every `gc_interval`, consumers marked seen every heartbeat, topics with live
/// consumers pinged every `ping_interval`.
pub async fn run(topics: Topics, shutdown: CancellationToken) {
    let settings = topics.settings.clone();
    let mut gc = tokio::time::interval(settings.gc_interval);
    let mut seen = tokio::time::interval(settings.consumer_heartbeat);
    let mut pings = tokio::time::interval(settings.ping_interval);
    for timer in [&mut gc, &mut seen, &mut pings] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = gc.tick() => {
                match topics.pass_once().await {
                    Ok((dead_lettered, report)) if dead_lettered > 0 || report != PassReport::default() => {
                        tracing::debug!(dead_lettered, ?report, "topics pass");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "the topics pass failed; the next one tries again"),
                }
            }
            _ = seen.tick() => {
                if let Err(e) = stream::mark_seen(&topics).await {
                    tracing::warn!(error = %e, "could not mark this replica's topic consumers seen");
                }
            }
            _ = pings.tick() => {
                if let Err(e) = ping::ping_pass(&topics).await {
                    tracing::warn!(error = %e, "the topic ping pass failed");
                }
            }
        }
    }
}
