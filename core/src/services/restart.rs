//! When and where a replica whose container ended starts again: the restart policy,
//! the backoff (doubling from `initial` to `max`, reset after `stable_after` of uptime,
//! a flat `success_delay` after exit 0 under `always`), and moving off a worker the slot
//! keeps failing on after `max_local_restarts`. Pure decisions; [`crate::services::reconcile`]
//! applies them.
//!
//! The reconciler records an ending ([`Ending`]) and asks [`decide`] what follows: no
//! restart (the policy says so), or a restart after a delay on a placement. The delay is
//! carried by the next request's `not_before`, so a restarting replica is simply a
//! pending request that is not offered yet, and a server restart loses nothing.

use std::time::Duration;

use uuid::Uuid;

use crate::services::{Backoff, RestartPolicy};
use crate::work::own::Placement;

/// How a replica's container ended, as the reconciler read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ending {
    /// It exited with code 0.
    pub success: bool,
    /// Its worker was lost: it did not end, it was cut off.
    pub lost: bool,
    /// How long it ran (0 when it never started).
    pub uptime: Duration,
    /// The worker it ran on, with its name.
    pub worker: Option<(Uuid, String)>,
    /// Whether that worker is connected now.
    pub worker_connected: bool,
}

/// The slot's counters before the ending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub failures: i32,
    pub local_failures: i32,
    pub last_worker: Option<Uuid>,
}

/// What follows an ending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not restarted: the policy says so.
    Stay { counters: Counters },
    /// Restarted after `delay`, placed by `placement`; `moved` is the reason of a move
    /// off a worker the slot kept failing on.
    Restart {
        delay: Duration,
        placement: Placement,
        counters: Counters,
        moved: Option<String>,
    },
}

/// The backoff before the restart after `failures` failures in a row (1: `initial`),
/// doubling up to `max`, without jitter.
pub fn backoff(backoff: &Backoff, failures: i32) -> Duration {
    let exponent = u32::try_from(failures.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    backoff
        .initial
        .checked_mul(1u32 << exponent)
        .map_or(backoff.max, |d| d.min(backoff.max))
}

/// Adds up to 10 % of `delay`, from `unit` in [0, 1), so that replicas crashing together
/// do not restart in lockstep.
pub fn jitter(delay: Duration, unit: f64) -> Duration {
    delay + delay.mul_f64(unit.clamp(0.0, 1.0) / 10.0)
}

/// Decides what follows `ending` of a slot with `counters`, under `policy` and `backoff`;
/// `unit` (in [0, 1)) draws the jitter.
pub fn decide(
    policy: RestartPolicy,
    backoff: &Backoff,
    counters: Counters,
    ending: &Ending,
    unit: f64,
) -> Decision {
    let mut counters = counters;
    // A replica that ran long enough is stable again: its failures are forgotten.
    if ending.uptime >= backoff.stable_after {
        counters.failures = 0;
        counters.local_failures = 0;
    }
    if ending.lost {
        // Lost, not ended: placed again on any worker at once, whatever the policy.
        counters.local_failures = 0;
        return Decision::Restart {
            delay: Duration::ZERO,
            placement: Placement::Any,
            counters,
            moved: None,
        };
    }
    let restart = match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => !ending.success,
        RestartPolicy::Never => false,
    };
    if !restart {
        return Decision::Stay { counters };
    }
    if ending.success {
        counters.failures = 0;
        counters.local_failures = 0;
        return Decision::Restart {
            delay: backoff.success_delay,
            placement: Placement::Any,
            counters,
            moved: None,
        };
    }
    counters.failures = counters.failures.saturating_add(1);
    let worker = ending.worker.as_ref();
    let same = worker.is_some_and(|(id, _)| counters.last_worker == Some(*id));
    counters.local_failures = if same {
        counters.local_failures.saturating_add(1)
    } else {
        1
    };
    counters.last_worker = worker.map(|(id, _)| *id);
    let delay = jitter(self::backoff(backoff, counters.failures), unit);
    let max_local = i32::try_from(backoff.max_local_restarts).unwrap_or(i32::MAX);
    let (placement, moved) = match worker {
        Some((id, name)) if max_local > 0 && counters.local_failures >= max_local => {
            let why = format!(
                "crashed {} times in a row on {name}; moving",
                counters.local_failures
            );
            counters.local_failures = 0;
            (
                Placement::Avoid {
                    worker_id: *id,
                    why: format!("keeps off worker {name}: {why}"),
                },
                Some(why),
            )
        }
        Some((id, name)) if ending.worker_connected && max_local > 0 => (
            Placement::Pin {
                worker_id: *id,
                why: format!(
                    "pinned to worker {name} for a local restart ({} of {max_local})",
                    counters.local_failures
                ),
            },
            None,
        ),
        _ => (Placement::Any, None),
    };
    Decision::Restart {
        delay,
        placement,
        counters,
        moved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(success: bool, uptime: u64, worker: Option<Uuid>) -> Ending {
        Ending {
            success,
            lost: false,
            uptime: Duration::from_secs(uptime),
            worker: worker.map(|id| (id, "w1".to_owned())),
            worker_connected: true,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_max() {
        let b = Backoff::default();
        let got: Vec<u64> = (1..=9).map(|f| backoff(&b, f).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(&b, 1000), Duration::from_secs(60));
        assert_eq!(backoff(&b, 0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_adds_at_most_a_tenth() {
        let d = Duration::from_secs(10);
        assert_eq!(jitter(d, 0.0), d);
        assert!(jitter(d, 0.999) < Duration::from_secs(11));
        assert!(jitter(d, 0.5) > d);
    }

    #[test]
    fn failures_grow_the_delay_and_pin_to_the_worker() {
        let b = Backoff::default();
        let w = Uuid::now_v7();
        let mut counters = Counters::default();
        let mut delays = Vec::new();
        for _ in 0..2 {
            match decide(RestartPolicy::Always, &b, counters, &ending(false, 1, Some(w)), 0.0) {
                Decision::Restart {
                    delay,
                    placement,
                    counters: next,
                    moved,
                } => {
                    assert!(matches!(placement, Placement::Pin { worker_id, .. } if worker_id == w));
                    assert_eq!(moved, None);
                    delays.push(delay);
                    counters = next;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(delays, vec![Duration::from_secs(1), Duration::from_secs(2)]);
        assert_eq!(counters.failures, 2);
        assert_eq!(counters.local_failures, 2);
    }

    #[test]
    fn after_max_local_restarts_the_slot_avoids_the_worker() {
        let b = Backoff::default();
        let w = Uuid::now_v7();
        let counters = Counters {
            failures: 2,
            local_failures: 2,
            last_worker: Some(w),
        };
        match decide(RestartPolicy::Always, &b, counters, &ending(false, 1, Some(w)), 0.0) {
            Decision::Restart {
                placement,
                moved,
                counters,
                ..
            } => {
                assert!(matches!(placement, Placement::Avoid { worker_id, .. } if worker_id == w));
                assert_eq!(
                    moved.as_deref(),
                    Some("crashed 3 times in a row on w1; moving")
                );
                assert_eq!(counters.local_failures, 0);
                assert_eq!(counters.failures, 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_disconnected_worker_is_not_pinned() {
        let b = Backoff::default();
        let mut e = ending(false, 1, Some(Uuid::now_v7()));
        e.worker_connected = false;
        match decide(RestartPolicy::Always, &b, Counters::default(), &e, 0.0) {
            Decision::Restart { placement, .. } => assert_eq!(placement, Placement::Any),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exit_zero_under_always_restarts_after_the_flat_delay() {
        let b = Backoff {
            success_delay: Duration::from_millis(500),
            ..Backoff::default()
        };
        let counters = Counters {
            failures: 5,
            local_failures: 1,
            last_worker: None,
        };
        match decide(RestartPolicy::Always, &b, counters, &ending(true, 1, None), 0.9) {
            Decision::Restart {
                delay, counters, ..
            } => {
                assert_eq!(delay, Duration::from_millis(500));
                assert_eq!(counters.failures, 0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn policies_decide_whether_to_restart() {
        let b = Backoff::default();
        let c = Counters::default();
        let stays = |policy, success| {
            matches!(
                decide(policy, &b, c, &ending(success, 1, None), 0.0),
                Decision::Stay { .. }
            )
        };
        assert!(!stays(RestartPolicy::Always, true));
        assert!(!stays(RestartPolicy::Always, false));
        assert!(stays(RestartPolicy::OnFailure, true));
        assert!(!stays(RestartPolicy::OnFailure, false));
        assert!(stays(RestartPolicy::Never, true));
        assert!(stays(RestartPolicy::Never, false));
    }

    #[test]
    fn a_lost_replica_moves_at_once_whatever_the_policy() {
        let b = Backoff::default();
        let mut e = ending(false, 1, Some(Uuid::now_v7()));
        e.lost = true;
        match decide(RestartPolicy::Never, &b, Counters::default(), &e, 0.5) {
            Decision::Restart {
                delay, placement, ..
            } => {
                assert_eq!(delay, Duration::ZERO);
                assert_eq!(placement, Placement::Any);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stable_run_resets_the_backoff() {
        let b = Backoff::default();
        let counters = Counters {
            failures: 6,
            local_failures: 2,
            last_worker: None,
        };
        match decide(RestartPolicy::Always, &b, counters, &ending(false, 3600, None), 0.0) {
            Decision::Restart {
                delay, counters, ..
            } => {
                assert_eq!(delay, Duration::from_secs(1));
                assert_eq!(counters.failures, 1);
            }
            other => panic!("{other:?}"),
        }
    }
}
