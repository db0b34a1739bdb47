//! Whether this replica can reach its database, watched in the background.
//!
//! Everything the server does goes through PostgreSQL, so when the database is away
//! (the embedded postmaster was killed and is being restarted, an external server is
//! down or unreachable) the server can serve nothing but errors. [`watch`] pings the
//! database through the pool every half second with a short timeout and records the
//! answer in [`DbHealth`], logging each change once. Readers:
//!
//! - the gRPC health service (`api::server`) answers NOT_SERVING while the database is
//!   unreachable, so load balancers and orchestrators see the outage;
//! - the recorder (`work::recorder`) holds worker reports it could not apply for a
//!   database reason and applies them again once the database answers;
//! - the lease sweep (`Scheduler::sweep_forever`) holds off after an outage until the
//!   database has been reachable for a full lease TTL: no lease could be renewed while it
//!   was away, so every worker's `last_heartbeat_at` is old, and sweeping at once would
//!   take every live worker for lost.
//!
//! The state starts as reachable and *settled*: the server only starts serving after it
//! connected, and a server that never saw an outage has nothing to wait for.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::db::{self, DbPool};

/// How often [`watch`] pings the database.
pub const PING_INTERVAL: Duration = Duration::from_millis(500);
/// How long one ping may take before the database counts as unreachable.
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// What is known about the database at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reachability {
    /// Whether the last ping succeeded.
    pub reachable: bool,
    /// When the database last became reachable after an outage; `None` if this replica
    /// never saw one.
    pub back_since: Option<Instant>,
}

impl Reachability {
    /// Reachable, with no outage seen.
    const fn up() -> Reachability {
        Reachability {
            reachable: true,
            back_since: None,
        }
    }

    /// The state after a ping at `now` that succeeded or not.
    fn after_ping(self, reachable: bool, now: Instant) -> Reachability {
        match (self.reachable, reachable) {
            (true, false) => Reachability {
                reachable: false,
                back_since: self.back_since,
            },
            (false, true) => Reachability {
                reachable: true,
                back_since: Some(now),
            },
            _ => self,
        }
    }

    /// Whether the database is reachable and, if there was an outage, has been back for
    /// at least `hold` at `now`.
    pub fn settled(&self, hold: Duration, now: Instant) -> bool {
        self.reachable
            && self
                .back_since
                .is_none_or(|since| now.saturating_duration_since(since) >= hold)
    }
}

/// The shared state; see the module docs.
#[derive(Debug)]
pub struct DbHealth {
    state: watch::Sender<Reachability>,
}

impl Default for DbHealth {
    fn default() -> Self {
        DbHealth {
            state: watch::Sender::new(Reachability::up()),
        }
    }
}

impl DbHealth {
    /// A new state: reachable, no outage seen.
    pub fn new() -> Arc<DbHealth> {
        Arc::new(DbHealth::default())
    }

    /// The state now.
    pub fn now(&self) -> Reachability {
        *self.state.borrow()
    }

    /// Whether the last ping succeeded.
    pub fn reachable(&self) -> bool {
        self.now().reachable
    }

    /// See [`Reachability::settled`].
    pub fn settled(&self, hold: Duration) -> bool {
        self.now().settled(hold, Instant::now())
    }

    /// Follows every change.
    pub fn subscribe(&self) -> watch::Receiver<Reachability> {
        self.state.subscribe()
    }

    /// Waits until the database is reachable (at once if it is).
    pub async fn until_reachable(&self) {
        let mut rx = self.state.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|state| state.reachable).await;
    }

    /// Records a ping's answer at `now`; returns the new state if it changed.
    pub fn record(&self, reachable: bool, now: Instant) -> Option<Reachability> {
        let mut changed = None;
        self.state.send_if_modified(|state| {
            let next = state.after_ping(reachable, now);
            if next.reachable != state.reachable {
                *state = next;
                changed = Some(next);
                true
            } else {
                false
            }
        });
        changed
    }
}

/// Pings the database every [`PING_INTERVAL`] until `shutdown`, recording the answers in
/// `health` and logging each change once.
pub async fn watch(pool: DbPool, health: Arc<DbHealth>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PING_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut down_since = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ping = async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            db::ping(&mut conn).await.map_err(|e| e.to_string())
        };
        let answer = match tokio::time::timeout(PING_TIMEOUT, ping).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {PING_TIMEOUT:?}")),
        };
        let now = Instant::now();
        match (health.record(answer.is_ok(), now), answer) {
            (Some(_), Err(error)) => {
                down_since = Some(now);
                tracing::error!(%error, "the database is unreachable; calls answer UNAVAILABLE and health NOT_SERVING until it is back");
            }
            (Some(_), Ok(())) => {
                let outage = down_since.take().map(|since| now - since);
                tracing::info!(?outage, "the database is reachable again; serving");
            }
            (None, _) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settles_only_after_being_back_for_the_hold() {
        let start = Instant::now();
        let hold = Duration::from_secs(30);
        let up = Reachability::up();
        assert!(
            up.settled(hold, start),
            "no outage seen: nothing to wait for"
        );
        let down = up.after_ping(false, start);
        assert!(!down.reachable);
        assert!(!down.settled(hold, start + hold * 2));
        let back = down.after_ping(true, start + Duration::from_secs(10));
        assert!(back.reachable);
        assert!(!back.settled(hold, start + Duration::from_secs(39)));
        assert!(back.settled(hold, start + Duration::from_secs(40)));
        // More good pings do not move the moment it came back.
        let still = back.after_ping(true, start + Duration::from_secs(20));
        assert_eq!(still, back);
    }

    #[test]
    fn only_changes_are_reported() {
        let health = DbHealth::default();
        let now = Instant::now();
        assert_eq!(health.record(true, now), None);
        let down = health.record(false, now).expect("went down");
        assert!(!down.reachable);
        assert_eq!(health.record(false, now), None);
        let back = health.record(true, now).expect("came back");
        assert_eq!(back.back_since, Some(now));
        assert!(health.reachable());
    }
}
