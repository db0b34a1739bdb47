//! What the requests made from a template did, over a window.
//!
//! Counted from the requests themselves (`work_requests.template_id`, indexed with
//! `created_at`), so the figures are what the requests' own rows say and need no
//! bookkeeping of their own: a request counts in the window when it was made in it,
//! whatever its state now. A workflow template's runs are its workflows (the parents);
//! a job template's runs include the workflow steps that named it.
//!
//! Durations are from start to completion of the requests that completed after they
//! started (an aborted or never-started request has no run time); the 95th percentile
//! is PostgreSQL's `percentile_cont`, interpolated.
//!
//! What it must not touch: anything but reading; roles are decided by `access::roles`
//! (a viewer of the workspace may read the figures).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Double, Integer, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;

use crate::access::auth::Identity;
use crate::access::roles::WorkspaceRole;
use crate::error::{Error, Result};
use crate::templates::{TemplateRef, Templates, store, workspace_name};
use crate::work::spec::RawDuration;

/// The window when none is asked for.
const DEFAULT_WINDOW: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The longest window: older than this is a typo, not a question.
const MAX_WINDOW: Duration = Duration::from_secs(10 * 366 * 24 * 60 * 60);

/// Counts and times of a template's runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub template: String,
    pub since: DateTime<Utc>,
    pub runs: u64,
    pub successes: u64,
    pub failures: u64,
    pub errors: u64,
    pub aborted: u64,
    pub unfinished: u64,
    /// `None` when no run has both started and completed.
    pub average: Option<Duration>,
    pub p95: Option<Duration>,
    /// Newest version first.
    pub by_version: Vec<VersionStats>,
}

/// Runs of one release.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionStats {
    pub version: i32,
    pub runs: u64,
    pub successes: u64,
}

#[derive(QueryableByName)]
struct Totals {
    #[diesel(sql_type = BigInt)]
    runs: i64,
    #[diesel(sql_type = BigInt)]
    successes: i64,
    #[diesel(sql_type = BigInt)]
    failures: i64,
    #[diesel(sql_type = BigInt)]
    errors: i64,
    #[diesel(sql_type = BigInt)]
    aborted: i64,
    #[diesel(sql_type = BigInt)]
    unfinished: i64,
    #[diesel(sql_type = Nullable<Double>)]
    average_seconds: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    p95_seconds: Option<f64>,
}

#[derive(QueryableByName)]
struct ByVersion {
    #[diesel(sql_type = Integer)]
    version: i32,
    #[diesel(sql_type = BigInt)]
    runs: i64,
    #[diesel(sql_type = BigInt)]
    successes: i64,
}

const TOTALS: &str = "\
    SELECT count(*) AS runs, \
      count(*) FILTER (WHERE status = 'completed' AND result = 'success') AS successes, \
      count(*) FILTER (WHERE status = 'completed' AND result = 'failure') AS failures, \
      count(*) FILTER (WHERE status = 'completed' AND result = 'error') AS errors, \
      count(*) FILTER (WHERE status = 'aborted') AS aborted, \
      count(*) FILTER (WHERE status NOT IN ('completed', 'aborted')) AS unfinished, \
      avg(EXTRACT(EPOCH FROM completed_at - started_at)::float8) \
        FILTER (WHERE status = 'completed' AND started_at IS NOT NULL) AS average_seconds, \
      percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM completed_at - started_at)::float8) \
        FILTER (WHERE status = 'completed' AND started_at IS NOT NULL) AS p95_seconds \
    FROM work_requests WHERE template_id = $1 AND created_at >= $2";

const BY_VERSION: &str = "\
    SELECT template_version AS version, count(*) AS runs, \
      count(*) FILTER (WHERE status = 'completed' AND result = 'success') AS successes \
    FROM work_requests WHERE template_id = $1 AND created_at >= $2 \
    GROUP BY template_version ORDER BY template_version DESC";

/// The window asked for, checked: unset is 7 days; negative or beyond 10 years refused.
fn window(since: Option<RawDuration>) -> Result<Duration> {
    let Some(raw) = since else {
        return Ok(DEFAULT_WINDOW);
    };
    let window = raw
        .to_std("since")
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    if window > MAX_WINDOW {
        return Err(Error::InvalidArgument(format!(
            "since: {} is longer than the longest window of 10 years; ask for less",
            humantime::format_duration(window)
        )));
    }
    Ok(window)
}

/// Seconds as the database computed them (never negative in practice; clamped so a
/// clock step on a worker cannot make a duration fail).
fn seconds(value: Option<f64>) -> Option<Duration> {
    value.map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Templates {
    /// `GetTemplateStats`: `since` unset means 7 days.
    pub async fn stats(
        &self,
        caller: &Identity,
        template: TemplateRef,
        since: Option<RawDuration>,
    ) -> Result<Stats> {
        let window = window(since)?;
        let since = Utc::now()
            - chrono::Duration::from_std(window)
                .map_err(|_| Error::InvalidArgument("since: out of range".into()))?;
        let mut conn = self.pool.get().await?;
        let workspace = workspace_name(&template.workspace);
        let standing = crate::access::roles::in_workspace(&mut conn, caller, workspace).await?;
        standing.require(WorkspaceRole::Viewer, "read the templates of")?;
        let row = store::find(
            &mut conn,
            standing.workspace.id,
            workspace,
            &template.name,
            template.kind,
        )
        .await?;
        let totals: Totals = diesel::sql_query(TOTALS)
            .bind::<SqlUuid, _>(row.id)
            .bind::<Timestamptz, _>(since)
            .get_result(&mut conn)
            .await?;
        let versions: Vec<ByVersion> = diesel::sql_query(BY_VERSION)
            .bind::<SqlUuid, _>(row.id)
            .bind::<Timestamptz, _>(since)
            .load(&mut conn)
            .await?;
        Ok(Stats {
            template: row.name,
            since,
            runs: count(totals.runs),
            successes: count(totals.successes),
            failures: count(totals.failures),
            errors: count(totals.errors),
            aborted: count(totals.aborted),
            unfinished: count(totals.unfinished),
            average: seconds(totals.average_seconds),
            p95: seconds(totals.p95_seconds),
            by_version: versions
                .into_iter()
                .map(|v| VersionStats {
                    version: v.version,
                    runs: count(v.runs),
                    successes: count(v.successes),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_defaults_to_a_week_and_is_bounded() {
        assert_eq!(window(None).expect("default"), DEFAULT_WINDOW);
        assert_eq!(
            window(Some(RawDuration {
                seconds: 3600,
                nanos: 0
            }))
            .expect("an hour"),
            Duration::from_secs(3600)
        );
        let negative = window(Some(RawDuration {
            seconds: -1,
            nanos: 0,
        }));
        assert!(matches!(negative, Err(Error::InvalidArgument(m)) if m.starts_with("since")));
        let long = window(Some(RawDuration {
            seconds: 11 * 366 * 24 * 3600,
            nanos: 0,
        }));
        assert!(matches!(long, Err(Error::InvalidArgument(m)) if m.contains("10 years")));
    }

    #[test]
    fn database_seconds_become_durations() {
        assert_eq!(seconds(None), None);
        assert_eq!(seconds(Some(1.5)), Some(Duration::from_millis(1500)));
        assert_eq!(seconds(Some(-0.1)), Some(Duration::ZERO));
    }
}
