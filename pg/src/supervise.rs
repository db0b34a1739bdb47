//! How a program that owns a cluster restarts its postmaster after it died.
//!
//! The postmaster can die under its owner (the OOM killer, an operator's `kill -9`, a
//! crash). Its owner notices (see [`EmbeddedPostgres::postmaster_alive`]) and restarts it
//! with [`EmbeddedPostgres::restart`]; this module holds the part of that which is pure
//! decision, so it can be tested without a cluster: how long to wait before each attempt,
//! and when to stop trying.
//!
//! A restart right after the death often fails for a moment: the dead postmaster's
//! backends notice its death only at their next check, and until they exit a new
//! postmaster refuses to start on the shared memory they still hold. So attempts back off
//! (doubling, with a ceiling), and they are bounded: a cluster that cannot be started
//! (a full disk, a broken configuration, a deleted data directory) is not retried for
//! ever, so its owner can stop and say so rather than serve errors indefinitely.
//!
//! [`EmbeddedPostgres::postmaster_alive`]: crate::EmbeddedPostgres::postmaster_alive
//! [`EmbeddedPostgres::restart`]: crate::EmbeddedPostgres::restart

use std::time::Duration;

/// How often and how patiently a dead postmaster is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Attempts after one death before giving up (at least 1).
    pub attempts: u32,
    /// Wait before the first attempt.
    pub first_delay: Duration,
    /// Longest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for RestartPolicy {
    /// Five attempts over about 7.5 s: 0.25 s, 0.5 s, 1 s, 2 s, 4 s.
    fn default() -> Self {
        RestartPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
        }
    }
}

impl RestartPolicy {
    /// The wait before attempt `attempt` (1-based), or `None` once the attempts are
    /// used up.
    pub fn delay_before(&self, attempt: u32) -> Option<Duration> {
        if attempt == 0 || attempt > self.attempts.max(1) {
            return None;
        }
        let doublings = (attempt - 1).min(31);
        Some(
            self.first_delay
                .saturating_mul(1u32 << doublings)
                .min(self.max_delay),
        )
    }

    /// Every wait, in order: one per attempt.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + '_ {
        (1..).map_while(|attempt| self.delay_before(attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_ceiling_and_stop_after_the_last_attempt() {
        let policy = RestartPolicy {
            attempts: 6,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let delays: Vec<u128> = policy.delays().map(|d| d.as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500, 500]);
        assert_eq!(policy.delay_before(0), None);
        assert_eq!(policy.delay_before(7), None);
    }

    #[test]
    fn at_least_one_attempt_is_made() {
        let policy = RestartPolicy {
            attempts: 0,
            ..RestartPolicy::default()
        };
        assert_eq!(policy.delays().count(), 1);
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let policy = RestartPolicy {
            attempts: u32::MAX,
            ..RestartPolicy::default()
        };
        assert_eq!(policy.delay_before(1000), Some(policy.max_delay));
    }

    #[test]
    fn the_default_gives_up_within_ten_seconds() {
        let total: Duration = RestartPolicy::default().delays().sum();
        assert!(total <= Duration::from_secs(10), "{total:?}");
        assert_eq!(RestartPolicy::default().delays().count(), 5);
    }
}
