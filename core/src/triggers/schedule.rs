//! `schedule` rules: a 5-field cron expression in an IANA time zone, or an ISO-8601
//! interval from an anchor; their next times, DST behaviour and previews.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::triggers::{Catchup, FireTime, Overlap, ScheduleInput};

/// A schedule as stored (the rule's `config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// The cron expression as checked; '' for an interval rule.
    pub cron: String,
    /// The IANA zone of `cron` (`UTC` when none was given).
    pub time_zone: String,
    /// The interval as given (`PT15M`); '' for a cron rule.
    pub interval: String,
    /// The interval in milliseconds; 0 for a cron rule.
    pub interval_ms: u64,
    /// Interval rules: times are `anchor + k × interval`.
    pub anchor: Option<DateTime<Utc>>,
    pub overlap: Overlap,
    pub catchup_window_ms: u64,
    pub catchup: Catchup,
}

impl ScheduleConfig {
    /// Reads a stored configuration.
    pub fn from_value(value: &serde_json::Value) -> Result<ScheduleConfig> {
        serde_json::from_value(value.clone())
            .map_err(|e| Error::internal(format!("stored schedule unreadable: {e}")))
    }

    /// The first nominal time strictly after `after`; `None` when there is none.
    pub fn next_after(&self, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let _ = after;
        Err(Error::internal("schedule times are not built yet"))
    }
}

/// Checks a new schedule at `now`; errors name the field (`schedule.cron`…).
pub fn check(input: &ScheduleInput, now: DateTime<Utc>) -> Result<ScheduleConfig> {
    let _ = (input, now);
    Err(Error::internal("schedule rules are not built yet"))
}

/// Checks a changed schedule: unset overlap, catch-up window and catch-up keep the
/// current values.
pub fn merge(
    current: &ScheduleConfig,
    input: &ScheduleInput,
    now: DateTime<Utc>,
) -> Result<ScheduleConfig> {
    let _ = (current, input, now);
    Err(Error::internal("schedule rules are not built yet"))
}

/// The next `count` times after `after`, in the schedule's zone, with DST notes.
pub fn preview(
    config: &ScheduleConfig,
    after: DateTime<Utc>,
    count: usize,
) -> Result<Vec<FireTime>> {
    let _ = (config, after, count);
    Err(Error::internal("schedule previews are not built yet"))
}
