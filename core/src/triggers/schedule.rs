//! `schedule` rules: a 5-field cron expression in an IANA time zone, or an ISO-8601
//! interval from an anchor; their next times, DST behaviour and previews.
//!
//! Everything here is pure: the time a function reasons about is always a parameter
//! (the pass gives the database's clock, tests give fixed times), so a DST day or a
//! week-long outage is tested without waiting for one.
//!
//! DST follows Vixie cron, as croner implements it. A *fixed-time* expression (one
//! minute and one hour, such as `30 2 * * *`) whose wall time falls in the spring-forward
//! gap runs at the first instant after the gap, and in the repeated fall-back hour runs
//! once, at the first of the two instants. An expression with a wildcard or range in the
//! minute or hour (`0 * * * *`) runs on the wall clock as it is: the gap's hour has no
//! run and the repeated hour runs twice. So an hourly rule in Europe/Berlin runs 23
//! times on the spring-forward day and 25 on the fall-back day, while a daily one runs
//! once on each.
//!
//! What it must not touch: rows (the pass in [`super::fire`] stores what this computes).

use std::fmt::Write as _;
use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, DurationRound as _, LocalResult, SecondsFormat, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, JobType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::triggers::{Catchup, FireTime, Overlap, ScheduleInput};

/// The catch-up window when none is given.
pub const DEFAULT_CATCHUP_WINDOW: Duration = Duration::from_secs(60);

/// The longest catch-up window: a year of missed times may still run.
pub const MAX_CATCHUP_WINDOW: Duration = Duration::from_secs(365 * 24 * 3600);

/// The longest interval (about ten years); longer ones are almost surely a typo, and the
/// bound keeps `anchor + k × interval` far inside the representable range.
const MAX_INTERVAL_MS: u64 = 3650 * 24 * 3600 * 1000;

/// The most times of a cron expression [`times_in`] walks: a year of minutes and some.
/// Past it the count is a lower bound, so a long outage costs a bounded pass.
pub const CRON_WALK_LIMIT: u64 = 600_000;

/// The most times a preview shows.
const MAX_PREVIEW: usize = 1000;

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

/// How a stored schedule makes its times, ready to compute with.
enum Timing {
    Cron {
        cron: Cron,
        zone: Tz,
    },
    Interval {
        anchor: DateTime<Utc>,
        every: TimeDelta,
    },
}

/// The nominal times of a range, as [`times_in`] lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// The oldest of them, at most the cap asked for.
    pub times: Vec<DateTime<Utc>>,
    /// How many there are in all.
    pub total: u64,
    /// The newest of them (of those counted, when not `exact`).
    pub last: Option<DateTime<Utc>>,
    /// False when a cron walk stopped counting at [`CRON_WALK_LIMIT`]: there are more
    /// than `total`, after `last`.
    pub exact: bool,
}

impl Span {
    fn empty() -> Span {
        Span {
            exact: true,
            ..Span::default()
        }
    }
}

impl ScheduleConfig {
    /// Reads a stored configuration.
    pub fn from_value(value: &serde_json::Value) -> Result<ScheduleConfig> {
        serde_json::from_value(value.clone())
            .map_err(|e| Error::internal(format!("stored schedule unreadable: {e}")))
    }

    /// The first nominal time strictly after `after`; `None` when there is none.
    pub fn next_after(&self, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        match self.timing()? {
            Timing::Cron { cron, zone } => cron_next(&cron, zone, after),
            Timing::Interval { anchor, every } => Ok(interval_next(anchor, every, after)),
        }
    }

    /// How long after a missed time it may still fire (see [`Catchup`]).
    pub fn catchup_window(&self) -> Duration {
        Duration::from_millis(self.catchup_window_ms)
    }

    /// The zone its times are shown in.
    pub fn zone(&self) -> Result<Tz> {
        if self.time_zone.is_empty() {
            return Ok(Tz::UTC);
        }
        self.time_zone
            .parse::<Tz>()
            .map_err(|_| Error::internal(format!("stored time zone {:?} unknown", self.time_zone)))
    }

    fn timing(&self) -> Result<Timing> {
        if !self.cron.is_empty() {
            let cron = parse_cron(&self.cron)
                .map_err(|e| Error::internal(format!("stored cron {:?}: {e}", self.cron)))?;
            return Ok(Timing::Cron {
                cron,
                zone: self.zone()?,
            });
        }
        let anchor = self
            .anchor
            .ok_or_else(|| Error::internal("stored interval schedule has no anchor"))?;
        let every = i64::try_from(self.interval_ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map(TimeDelta::milliseconds)
            .ok_or_else(|| {
                Error::internal(format!("stored interval of {} ms", self.interval_ms))
            })?;
        Ok(Timing::Interval { anchor, every })
    }
}

/// Checks a new schedule at `now`; errors name the field (`schedule.cron`…).
pub fn check(input: &ScheduleInput, now: DateTime<Utc>) -> Result<ScheduleConfig> {
    let mut config = timing(input, now, None)?;
    config.overlap = input.overlap.unwrap_or_default();
    config.catchup = input.catchup.unwrap_or_default();
    config.catchup_window_ms = window_ms(input.catchup_window.unwrap_or(DEFAULT_CATCHUP_WINDOW))?;
    Ok(config)
}

/// Checks a changed schedule: unset overlap, catch-up window and catch-up keep the
/// current values. A change that gives no timing at all (no cron, interval, zone or
/// anchor) keeps the current one; an interval given without an anchor keeps the current
/// anchor, so its times keep their phase.
pub fn merge(
    current: &ScheduleConfig,
    input: &ScheduleInput,
    now: DateTime<Utc>,
) -> Result<ScheduleConfig> {
    let keeps_timing = input.cron.trim().is_empty()
        && input.interval.trim().is_empty()
        && input.time_zone.trim().is_empty()
        && input.anchor.is_none();
    let mut config = if keeps_timing {
        current.clone()
    } else {
        let anchor = if current.interval.is_empty() {
            None
        } else {
            current.anchor
        };
        timing(input, now, anchor)?
    };
    config.overlap = input.overlap.unwrap_or(current.overlap);
    config.catchup = input.catchup.unwrap_or(current.catchup);
    config.catchup_window_ms = match input.catchup_window {
        Some(window) => window_ms(window)?,
        None => current.catchup_window_ms,
    };
    Ok(config)
}

/// The next `count` times after `after` (at most 1000), in the schedule's zone, with
/// DST notes.
pub fn preview(
    config: &ScheduleConfig,
    after: DateTime<Utc>,
    count: usize,
) -> Result<Vec<FireTime>> {
    let timing = config.timing()?;
    let zone = config.zone()?;
    let mut times = Vec::new();
    let mut at = after;
    while times.len() < count.min(MAX_PREVIEW) {
        let Some(next) = config.next_after(at)? else {
            break;
        };
        let local = next.with_timezone(&zone);
        let note = match &timing {
            Timing::Cron { cron, zone } => dst_note(cron, *zone, next)?,
            Timing::Interval { .. } => String::new(),
        };
        times.push(FireTime {
            at: next,
            local: local.to_rfc3339_opts(SecondsFormat::Secs, false),
            note,
        });
        at = next;
    }
    Ok(times)
}

/// The nominal times in (`after`, `until`]: the oldest `cap` of them, how many there are
/// and the newest. An interval's are counted arithmetically, so a week of 1-second times
/// costs no more than one; a cron expression's are walked (at most one a minute).
pub fn times_in(
    config: &ScheduleConfig,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
    cap: usize,
) -> Result<Span> {
    if until <= after {
        return Ok(Span::empty());
    }
    match config.timing()? {
        Timing::Interval { anchor, every } => Ok(interval_span(anchor, every, after, until, cap)),
        Timing::Cron { cron, zone } => {
            let mut span = Span {
                exact: true,
                ..Span::default()
            };
            let mut at = after;
            while let Some(next) = cron_next(&cron, zone, at)? {
                if next > until {
                    break;
                }
                if span.total == CRON_WALK_LIMIT {
                    span.exact = false;
                    break;
                }
                if span.times.len() < cap {
                    span.times.push(next);
                }
                span.total += 1;
                span.last = Some(next);
                at = next;
            }
            Ok(span)
        }
    }
}

/// The timing part of a schedule (cron and zone, or interval and anchor), with the other
/// fields at their defaults. `keep_anchor` is the anchor an interval without one gets
/// (otherwise `now`, to the minute).
fn timing(
    input: &ScheduleInput,
    now: DateTime<Utc>,
    keep_anchor: Option<DateTime<Utc>>,
) -> Result<ScheduleConfig> {
    let cron = input.cron.trim();
    let interval = input.interval.trim();
    let zone_text = input.time_zone.trim();
    let mut config = ScheduleConfig {
        cron: String::new(),
        time_zone: Tz::UTC.name().to_owned(),
        interval: String::new(),
        interval_ms: 0,
        anchor: None,
        overlap: Overlap::default(),
        catchup_window_ms: window_ms(DEFAULT_CATCHUP_WINDOW)?,
        catchup: Catchup::default(),
    };
    match (cron.is_empty(), interval.is_empty()) {
        (false, false) => Err(Error::InvalidArgument(
            "schedule: give either cron or interval, not both".into(),
        )),
        (true, true) => Err(Error::InvalidArgument(
            "schedule: give either cron (such as \"0 3 * * *\") or interval (such as PT15M); \
             neither was given"
                .into(),
        )),
        (false, true) => {
            if input.anchor.is_some() {
                return Err(Error::InvalidArgument(
                    "schedule.anchor: only an interval has an anchor; a cron expression's \
                     times are its own"
                        .into(),
                ));
            }
            let parsed = parse_cron(cron).map_err(|e| cron_refused(cron, &e))?;
            let zone = if zone_text.is_empty() {
                Tz::UTC
            } else {
                zone_text.parse::<Tz>().map_err(|_| {
                    Error::InvalidArgument(format!(
                        "schedule.time_zone: unknown time zone {zone_text:?}; use an IANA name \
                         such as Europe/Berlin"
                    ))
                })?
            };
            match cron_next(&parsed, zone, now) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    return Err(Error::InvalidArgument(format!(
                        "schedule.cron: {cron:?} never comes (no date matches it); check the \
                         day of month and month fields"
                    )));
                }
            }
            config.cron = cron.to_owned();
            config.time_zone = zone.name().to_owned();
            Ok(config)
        }
        (true, false) => {
            if !zone_text.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "schedule.time_zone: an interval is absolute and takes no time zone (got \
                     {zone_text:?}); use cron for times on a zone's wall clock"
                )));
            }
            config.interval_ms = parse_interval(interval)?;
            config.interval = interval.to_ascii_uppercase();
            config.anchor = Some(match input.anchor.or(keep_anchor) {
                Some(anchor) => anchor,
                None => now
                    .duration_trunc(TimeDelta::minutes(1))
                    .map_err(Error::internal)?,
            });
            Ok(config)
        }
    }
}

fn window_ms(window: Duration) -> Result<u64> {
    if window > MAX_CATCHUP_WINDOW {
        return Err(Error::InvalidArgument(format!(
            "schedule.catchup_window: at most 365 days (got {})",
            humantime::format_duration(window)
        )));
    }
    u64::try_from(window.as_millis()).map_err(Error::internal)
}

/// A 5-field expression (minute hour day-of-month month day-of-week) as croner reads it:
/// no seconds and no year field.
fn parse_cron(text: &str) -> std::result::Result<Cron, CronError> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
}

fn cron_refused(text: &str, error: &CronError) -> Error {
    let fields = text.split_whitespace().count();
    let what = if !text.starts_with('@') && fields != 5 {
        format!("has {fields} fields")
    } else {
        match error {
            CronError::InvalidPattern(m)
            | CronError::IllegalCharacters(m)
            | CronError::ComponentError(m) => m.trim_end_matches('.').to_owned(),
            other => other.to_string(),
        }
    };
    Error::InvalidArgument(format!(
        "schedule.cron: {text:?} {}; write 5 fields: minute hour day-of-month month \
         day-of-week, such as \"0 3 * * *\" (03:00 every day) or \"*/15 * * * 1-5\"",
        if what.starts_with("has ") {
            what
        } else {
            format!("is not a cron expression ({what})")
        }
    ))
}

fn cron_next(cron: &Cron, zone: Tz, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    let mut from = after.with_timezone(&zone);
    // croner searches from whole seconds; a result at or before `after` (never seen,
    // but the contract here is "strictly after") searches on from it.
    for _ in 0..3 {
        match cron.find_next_occurrence(&from, false) {
            Ok(next) if next.with_timezone(&Utc) > after => {
                return Ok(Some(next.with_timezone(&Utc)));
            }
            Ok(next) => from = next,
            Err(CronError::TimeSearchLimitExceeded) => return Ok(None),
            Err(e) => return Err(Error::internal(format!("cron search: {e}"))),
        }
    }
    Err(Error::internal("cron search did not move past its start"))
}

/// The `k` with `anchor + k × every` the latest time at or before `t` (negative before
/// the anchor); `None` past the representable range.
fn interval_index(anchor: DateTime<Utc>, every: TimeDelta, t: DateTime<Utc>) -> Option<i64> {
    let since = t.signed_duration_since(anchor).num_microseconds()?;
    let every = every.num_microseconds()?;
    Some(since.div_euclid(every))
}

fn interval_at(anchor: DateTime<Utc>, every: TimeDelta, k: i64) -> Option<DateTime<Utc>> {
    let offset = every.num_microseconds()?.checked_mul(k)?;
    anchor.checked_add_signed(TimeDelta::microseconds(offset))
}

fn interval_next(
    anchor: DateTime<Utc>,
    every: TimeDelta,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    interval_at(
        anchor,
        every,
        interval_index(anchor, every, after)?.checked_add(1)?,
    )
}

fn interval_span(
    anchor: DateTime<Utc>,
    every: TimeDelta,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
    cap: usize,
) -> Span {
    let (Some(first), Some(last)) = (
        interval_index(anchor, every, after).and_then(|k| k.checked_add(1)),
        interval_index(anchor, every, until),
    ) else {
        return Span::empty();
    };
    if last < first {
        return Span::empty();
    }
    let total = u64::try_from(last - first).unwrap_or(0) + 1;
    let times = (first..=last)
        .take(cap)
        .filter_map(|k| interval_at(anchor, every, k))
        .collect();
    Span {
        times,
        total,
        last: interval_at(anchor, every, last),
        exact: true,
    }
}

/// Reads an ISO-8601 duration of fixed length: `PnW`, `PnD` and `PTnHnMnS`, combined in
/// that order (`P1DT12H`), whole numbers only. Returns milliseconds.
fn parse_interval(text: &str) -> Result<u64> {
    let refuse = |what: &str| {
        Error::InvalidArgument(format!(
            "schedule.interval: {text:?} {what}; write an ISO-8601 duration such as PT15M, \
             PT1H30M, P1D or P2W"
        ))
    };
    let upper = text.to_ascii_uppercase();
    let Some(rest) = upper.strip_prefix('P') else {
        return Err(refuse("does not start with P"));
    };
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (rest, None),
    };
    if date.contains(['Y', 'M']) {
        return Err(Error::InvalidArgument(format!(
            "schedule.interval: {text:?} counts in calendar months and years, which have no \
             fixed length: use cron (such as \"0 0 1 * *\" for the 1st of each month)"
        )));
    }
    if text.contains(['.', ',']) {
        return Err(refuse("has a fraction"));
    }
    if time == Some("") {
        return Err(refuse("has a T with no hours, minutes or seconds after it"));
    }
    let mut seconds: u64 = 0;
    let mut parts = 0;
    for (part, units) in [
        (date, &[('W', 7 * 86_400), ('D', 86_400)][..]),
        (time.unwrap_or(""), &[('H', 3600), ('M', 60), ('S', 1)][..]),
    ] {
        let mut digits = String::new();
        let mut next_unit = 0;
        for c in part.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let Some(at) = units.iter().position(|(u, _)| *u == c) else {
                return Err(refuse(&format!("has {c:?} where a unit belongs")));
            };
            if at < next_unit {
                return Err(refuse("has its units out of order"));
            }
            if digits.is_empty() {
                return Err(refuse(&format!("has no number before {c}")));
            }
            let n: u64 = digits.parse().map_err(|_| refuse("is too long"))?;
            seconds = n
                .checked_mul(units[at].1)
                .and_then(|s| s.checked_add(seconds))
                .ok_or_else(|| refuse("is too long"))?;
            digits.clear();
            next_unit = at + 1;
            parts += 1;
        }
        if !digits.is_empty() {
            return Err(refuse("ends in a number without a unit"));
        }
    }
    if parts == 0 {
        return Err(refuse("has no length"));
    }
    if seconds == 0 {
        return Err(refuse("is shorter than 1 second"));
    }
    let ms = seconds
        .checked_mul(1000)
        .ok_or_else(|| refuse("is too long"))?;
    if ms > MAX_INTERVAL_MS {
        return Err(refuse("is longer than P3650D"));
    }
    Ok(ms)
}

/// What a DST change did to the cron time `at` in `zone`: '' when nothing.
fn dst_note(cron: &Cron, zone: Tz, at: DateTime<Utc>) -> Result<String> {
    let local = at.with_timezone(&zone);
    let matches = cron
        .is_time_matching(&local)
        .map_err(|e| Error::internal(format!("cron match: {e}")))?;
    let mut note = String::new();
    if !matches {
        // Only a time carried past a spring-forward gap runs off its pattern.
        let _ = write!(
            note,
            "moved: its wall time does not exist on {} in {} (the clocks spring forward); it \
             runs right after the gap, at {}",
            local.format("%Y-%m-%d"),
            zone.name(),
            local.format("%H:%M"),
        );
        return Ok(note);
    }
    if let LocalResult::Ambiguous(earlier, _) = zone.from_local_datetime(&local.naive_local()) {
        let first = earlier.with_timezone(&Utc) == at;
        let wall = local.format("%H:%M");
        let _ = if cron.determine_job_type() == JobType::FixedTime {
            write!(
                note,
                "{wall} comes twice on {} (the clocks fall back); it runs once, at the first",
                local.format("%Y-%m-%d")
            )
        } else if first {
            write!(
                note,
                "the first {wall} of the repeated hour (the clocks fall back); every time in \
                 it runs twice"
            )
        } else {
            write!(
                note,
                "the second {wall} of the repeated hour (the clocks fell back); every time in \
                 it runs twice"
            )
        };
    }
    Ok(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn cron(expr: &str, zone: &str) -> ScheduleConfig {
        check(
            &ScheduleInput {
                cron: expr.into(),
                time_zone: zone.into(),
                ..ScheduleInput::default()
            },
            utc("2026-01-01T00:00:00Z"),
        )
        .unwrap()
    }

    fn every(interval: &str, anchor: Option<&str>) -> ScheduleConfig {
        check(
            &ScheduleInput {
                interval: interval.into(),
                anchor: anchor.map(utc),
                ..ScheduleInput::default()
            },
            utc("2026-01-01T00:00:30.5Z"),
        )
        .unwrap()
    }

    fn refused(input: ScheduleInput) -> String {
        match check(&input, utc("2026-01-01T00:00:00Z")) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("{input:?} was not refused: {other:?}"),
        }
    }

    /// The times of `config` on the local day `date` of its zone.
    fn day(config: &ScheduleConfig, date: &str) -> Vec<String> {
        let zone = config.zone().unwrap();
        let naive = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
        let start = zone
            .from_local_datetime(&naive.and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc);
        let next_day = naive.succ_opt().unwrap().and_hms_opt(0, 0, 0).unwrap();
        let end = zone
            .from_local_datetime(&next_day)
            .earliest()
            .unwrap()
            .with_timezone(&Utc);
        let span = times_in(
            config,
            start - TimeDelta::microseconds(1),
            end - TimeDelta::microseconds(1),
            100,
        )
        .unwrap();
        assert_eq!(span.total, span.times.len() as u64);
        span.times
            .iter()
            .map(|t| t.with_timezone(&zone).to_rfc3339())
            .collect()
    }

    #[test]
    fn daily_time_in_the_spring_gap_runs_right_after_it_once() {
        let two = cron("0 2 * * *", "Europe/Berlin");
        assert_eq!(day(&two, "2026-03-29"), ["2026-03-29T03:00:00+02:00"]);
        assert_eq!(day(&two, "2026-03-28"), ["2026-03-28T02:00:00+01:00"]);
        assert_eq!(day(&two, "2026-03-30"), ["2026-03-30T02:00:00+02:00"]);
        let half = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(day(&half, "2026-03-29"), ["2026-03-29T03:00:00+02:00"]);
    }

    #[test]
    fn daily_time_in_the_repeated_hour_runs_once_at_the_first() {
        let half = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(day(&half, "2026-10-25"), ["2026-10-25T02:30:00+02:00"]);
        let two = cron("0 2 * * *", "Europe/Berlin");
        assert_eq!(day(&two, "2026-10-25"), ["2026-10-25T02:00:00+02:00"]);
        // Walking one time at a time through the fold does not bring the second 02:30.
        let first = utc("2026-10-25T00:30:00Z");
        assert_eq!(
            half.next_after(first).unwrap(),
            Some(utc("2026-10-26T01:30:00Z"))
        );
    }

    #[test]
    fn hourly_runs_on_the_wall_clock_23_and_25_times() {
        // A wildcard hour is not a fixed time: Vixie cron runs it per wall-clock hour,
        // so the hour the clocks skip has no run and the repeated hour runs twice.
        let hourly = cron("0 * * * *", "Europe/Berlin");
        let spring = day(&hourly, "2026-03-29");
        assert_eq!(spring.len(), 23);
        assert!(spring.contains(&"2026-03-29T01:00:00+01:00".to_owned()));
        assert!(spring.contains(&"2026-03-29T03:00:00+02:00".to_owned()));
        assert!(!spring.iter().any(|t| t.contains("T02:")));
        let autumn = day(&hourly, "2026-10-25");
        assert_eq!(autumn.len(), 25);
        assert!(autumn.contains(&"2026-10-25T02:00:00+02:00".to_owned()));
        assert!(autumn.contains(&"2026-10-25T02:00:00+01:00".to_owned()));
        assert_eq!(day(&hourly, "2026-06-01").len(), 24);
        // Every time is distinct and in order.
        let mut sorted = autumn.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 25);
    }

    #[test]
    fn new_york_changes_on_its_own_days() {
        let half = cron("30 2 * * *", "America/New_York");
        assert_eq!(day(&half, "2026-03-08"), ["2026-03-08T03:00:00-04:00"]);
        assert_eq!(day(&half, "2026-11-01"), ["2026-11-01T02:30:00-05:00"]);
        let one = cron("30 1 * * *", "America/New_York");
        // 01:30 comes twice on 1 November; it runs at the first (still daylight time).
        assert_eq!(day(&one, "2026-11-01"), ["2026-11-01T01:30:00-04:00"]);
        let hourly = cron("0 * * * *", "America/New_York");
        assert_eq!(day(&hourly, "2026-03-08").len(), 23);
        assert_eq!(day(&hourly, "2026-11-01").len(), 25);
        // Berlin's days are ordinary days in New York.
        assert_eq!(day(&hourly, "2026-03-29").len(), 24);
    }

    #[test]
    fn utc_is_the_default_zone() {
        let three = cron("0 3 * * *", "");
        assert_eq!(three.time_zone, "UTC");
        assert_eq!(
            three.next_after(utc("2026-03-29T02:59:59.999Z")).unwrap(),
            Some(utc("2026-03-29T03:00:00Z"))
        );
        // Strictly after: a time is not its own next.
        assert_eq!(
            three.next_after(utc("2026-03-29T03:00:00Z")).unwrap(),
            Some(utc("2026-03-30T03:00:00Z"))
        );
    }

    #[test]
    fn preview_notes_the_dst_days() {
        let half = cron("30 2 * * *", "Europe/Berlin");
        let times = preview(&half, utc("2026-03-27T12:00:00Z"), 3).unwrap();
        let shown: Vec<(&str, bool)> = times
            .iter()
            .map(|t| (t.local.as_str(), !t.note.is_empty()))
            .collect();
        assert_eq!(
            shown,
            [
                ("2026-03-28T02:30:00+01:00", false),
                ("2026-03-29T03:00:00+02:00", true),
                ("2026-03-30T02:30:00+02:00", false),
            ]
        );
        assert!(
            times[1].note.contains("spring forward"),
            "{}",
            times[1].note
        );
        let autumn = preview(&half, utc("2026-10-24T12:00:00Z"), 1).unwrap();
        assert!(autumn[0].note.contains("runs once"), "{}", autumn[0].note);

        let hourly = cron("0 * * * *", "Europe/Berlin");
        let fold = preview(&hourly, utc("2026-10-24T23:30:00Z"), 3).unwrap();
        let local: Vec<&str> = fold.iter().map(|t| t.local.as_str()).collect();
        assert_eq!(
            local,
            [
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T03:00:00+01:00"
            ]
        );
        assert!(fold[0].note.contains("first"), "{}", fold[0].note);
        assert!(fold[1].note.contains("second"), "{}", fold[1].note);
        assert!(fold[2].note.is_empty());
    }

    #[test]
    fn preview_of_an_interval_is_in_utc_without_notes() {
        let quarter = every("PT15M", Some("2026-01-01T00:05:00Z"));
        let times = preview(&quarter, utc("2026-03-29T00:59:00Z"), 2).unwrap();
        assert_eq!(times[0].local, "2026-03-29T01:05:00+00:00");
        assert_eq!(times[1].local, "2026-03-29T01:20:00+00:00");
        assert!(times.iter().all(|t| t.note.is_empty()));
    }

    #[test]
    fn intervals_count_from_their_anchor_both_ways() {
        let quarter = every("PT15M", Some("2026-01-01T00:05:00Z"));
        assert_eq!(quarter.interval_ms, 15 * 60 * 1000);
        let next = |t: &str| quarter.next_after(utc(t)).unwrap().unwrap();
        assert_eq!(next("2026-01-01T00:05:00Z"), utc("2026-01-01T00:20:00Z"));
        assert_eq!(next("2026-01-01T00:04:59Z"), utc("2026-01-01T00:05:00Z"));
        // Before the anchor, k is negative: the phase holds.
        assert_eq!(next("2025-12-31T23:00:00Z"), utc("2025-12-31T23:05:00Z"));
        assert_eq!(
            next("2026-05-05T10:19:59.999999Z"),
            utc("2026-05-05T10:20:00Z")
        );
        // DST means nothing to an interval: P1D is 24 hours, in UTC.
        let daily = every("P1D", Some("2026-03-28T02:30:00Z"));
        assert_eq!(
            daily.next_after(utc("2026-03-28T02:30:00Z")).unwrap(),
            Some(utc("2026-03-29T02:30:00Z"))
        );
    }

    #[test]
    fn an_interval_without_anchor_starts_at_the_minute_of_its_creation() {
        let ten = every("PT10S", None);
        assert_eq!(ten.anchor, Some(utc("2026-01-01T00:00:00Z")));
        assert_eq!(
            ten.next_after(utc("2026-01-01T00:00:30.5Z")).unwrap(),
            Some(utc("2026-01-01T00:00:40Z"))
        );
    }

    #[test]
    fn interval_forms_and_lengths() {
        for (text, ms) in [
            ("PT15M", 900_000),
            ("pt1h30m", 5_400_000),
            ("P1D", 86_400_000),
            ("P1DT12H", 129_600_000),
            ("P2W", 1_209_600_000),
            ("P1W1D", 691_200_000),
            ("PT1S", 1000),
            ("PT90S", 90_000),
            ("P3650D", MAX_INTERVAL_MS),
        ] {
            assert_eq!(parse_interval(text).unwrap(), ms, "{text}");
        }
    }

    #[test]
    fn a_week_of_seconds_is_counted_not_walked() {
        let second = every("PT1S", Some("2026-01-01T00:00:00Z"));
        let span = times_in(
            &second,
            utc("2026-01-01T00:00:00Z"),
            utc("2026-01-08T00:00:00Z"),
            3,
        )
        .unwrap();
        assert_eq!(span.total, 7 * 86_400);
        assert_eq!(
            span.times,
            [
                utc("2026-01-01T00:00:01Z"),
                utc("2026-01-01T00:00:02Z"),
                utc("2026-01-01T00:00:03Z")
            ]
        );
        assert_eq!(span.last, Some(utc("2026-01-08T00:00:00Z")));
        let none = times_in(
            &second,
            utc("2026-01-01T00:00:00.2Z"),
            utc("2026-01-01T00:00:00.9Z"),
            3,
        )
        .unwrap();
        assert_eq!(none, Span::empty());
    }

    #[test]
    fn cron_spans_are_walked_and_counted() {
        let minutely = cron("* * * * *", "UTC");
        let span = times_in(
            &minutely,
            utc("2026-01-01T00:00:00Z"),
            utc("2026-01-01T01:00:00Z"),
            2,
        )
        .unwrap();
        assert_eq!(span.total, 60);
        assert_eq!(span.times.len(), 2);
        assert_eq!(span.last, Some(utc("2026-01-01T01:00:00Z")));
        assert!(span.exact);
    }

    #[test]
    fn bad_schedules_are_refused_naming_the_field() {
        let cases = [
            (ScheduleInput::default(), "schedule: give either cron"),
            (
                ScheduleInput {
                    cron: "0 3 * * *".into(),
                    interval: "PT1H".into(),
                    ..ScheduleInput::default()
                },
                "schedule: give either cron or interval, not both",
            ),
            (
                ScheduleInput {
                    cron: "0 3 * *".into(),
                    ..ScheduleInput::default()
                },
                "schedule.cron: \"0 3 * *\" has 4 fields; write 5 fields",
            ),
            (
                ScheduleInput {
                    cron: "0 0 3 * * *".into(),
                    ..ScheduleInput::default()
                },
                "schedule.cron: \"0 0 3 * * *\" has 6 fields",
            ),
            (
                ScheduleInput {
                    cron: "61 3 * * *".into(),
                    ..ScheduleInput::default()
                },
                "schedule.cron: \"61 3 * * *\" is not a cron expression",
            ),
            (
                ScheduleInput {
                    cron: "0 0 31 2 *".into(),
                    ..ScheduleInput::default()
                },
                "schedule.cron: \"0 0 31 2 *\" never comes",
            ),
            (
                ScheduleInput {
                    cron: "0 3 * * *".into(),
                    time_zone: "Europe/Berlinn".into(),
                    ..ScheduleInput::default()
                },
                "schedule.time_zone: unknown time zone \"Europe/Berlinn\"; use an IANA name \
                 such as Europe/Berlin",
            ),
            (
                ScheduleInput {
                    cron: "0 3 * * *".into(),
                    anchor: Some(utc("2026-01-01T00:00:00Z")),
                    ..ScheduleInput::default()
                },
                "schedule.anchor:",
            ),
            (
                ScheduleInput {
                    interval: "PT1H".into(),
                    time_zone: "Europe/Berlin".into(),
                    ..ScheduleInput::default()
                },
                "schedule.time_zone: an interval is absolute",
            ),
            (
                ScheduleInput {
                    interval: "P1M".into(),
                    ..ScheduleInput::default()
                },
                "schedule.interval: \"P1M\" counts in calendar months and years",
            ),
            (
                ScheduleInput {
                    interval: "P1Y".into(),
                    ..ScheduleInput::default()
                },
                "use cron",
            ),
            (
                ScheduleInput {
                    interval: "PT0S".into(),
                    ..ScheduleInput::default()
                },
                "schedule.interval: \"PT0S\" is shorter than 1 second",
            ),
            (
                ScheduleInput {
                    interval: "PT0.5S".into(),
                    ..ScheduleInput::default()
                },
                "schedule.interval: \"PT0.5S\" has a fraction",
            ),
            (
                ScheduleInput {
                    interval: "15M".into(),
                    ..ScheduleInput::default()
                },
                "does not start with P",
            ),
            (
                ScheduleInput {
                    interval: "PT".into(),
                    ..ScheduleInput::default()
                },
                "has a T with no hours",
            ),
            (
                ScheduleInput {
                    interval: "P".into(),
                    ..ScheduleInput::default()
                },
                "has no length",
            ),
            (
                ScheduleInput {
                    interval: "PT15".into(),
                    ..ScheduleInput::default()
                },
                "ends in a number without a unit",
            ),
            (
                ScheduleInput {
                    interval: "PT1M1H".into(),
                    ..ScheduleInput::default()
                },
                "out of order",
            ),
            (
                ScheduleInput {
                    interval: "PT1X".into(),
                    ..ScheduleInput::default()
                },
                "where a unit belongs",
            ),
            (
                ScheduleInput {
                    interval: "P3651D".into(),
                    ..ScheduleInput::default()
                },
                "longer than P3650D",
            ),
            (
                ScheduleInput {
                    interval: "PT99999999999999999999S".into(),
                    ..ScheduleInput::default()
                },
                "too long",
            ),
            (
                ScheduleInput {
                    interval: "PT1M".into(),
                    catchup_window: Some(MAX_CATCHUP_WINDOW + Duration::from_secs(1)),
                    ..ScheduleInput::default()
                },
                "schedule.catchup_window: at most 365 days",
            ),
        ];
        for (input, expected) in cases {
            let message = refused(input);
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn defaults_and_merges() {
        let made = every("PT1M", Some("2026-01-01T00:00:10Z"));
        assert_eq!(made.overlap, Overlap::Skip);
        assert_eq!(made.catchup, Catchup::Latest);
        assert_eq!(made.catchup_window(), DEFAULT_CATCHUP_WINDOW);
        let now = utc("2026-02-01T00:00:00Z");
        let policy_only = ScheduleInput {
            overlap: Some(Overlap::BufferOne),
            catchup_window: Some(Duration::ZERO),
            ..ScheduleInput::default()
        };
        let merged = merge(&made, &policy_only, now).unwrap();
        assert_eq!(merged.interval, "PT1M");
        assert_eq!(merged.anchor, made.anchor);
        assert_eq!(merged.overlap, Overlap::BufferOne);
        assert_eq!(merged.catchup_window(), Duration::ZERO);
        assert_eq!(merged.catchup, Catchup::Latest);
        // A new interval keeps the anchor's phase; unset policies stay.
        let longer = ScheduleInput {
            interval: "PT5M".into(),
            ..ScheduleInput::default()
        };
        let merged = merge(&merged, &longer, now).unwrap();
        assert_eq!(merged.interval_ms, 300_000);
        assert_eq!(merged.anchor, made.anchor);
        assert_eq!(merged.overlap, Overlap::BufferOne);
        // A cron replaces the interval and drops the anchor.
        let to_cron = ScheduleInput {
            cron: "0 3 * * *".into(),
            time_zone: "Europe/Berlin".into(),
            catchup: Some(Catchup::All),
            ..ScheduleInput::default()
        };
        let merged = merge(&merged, &to_cron, now).unwrap();
        assert_eq!(merged.cron, "0 3 * * *");
        assert_eq!(merged.interval, "");
        assert_eq!(merged.anchor, None);
        assert_eq!(merged.catchup, Catchup::All);
        assert_eq!(merged.catchup_window(), Duration::ZERO);
        // And a merge checks what it is given.
        let bad = ScheduleInput {
            time_zone: "Mars/Olympus".into(),
            ..ScheduleInput::default()
        };
        assert!(matches!(
            merge(&merged, &bad, now),
            Err(Error::InvalidArgument(_))
        ));
        // A stored schedule reads back as it was.
        let stored = serde_json::to_value(&merged).unwrap();
        assert_eq!(ScheduleConfig::from_value(&stored).unwrap(), merged);
    }
}
