//! Dependencies between work requests, and the rules of manual approval and retries.
//! This module reads and decides; `lifecycle` changes states with its decisions.
//!
//! A request submitted with `after` ids starts `blocked` and waits in
//! `work_request_dependencies` until every dependency is *satisfied*: completed with
//! `success`, or ended any other way (failure, error, aborted) while the dependency was
//! submitted with `allow_failure`. A dependency that ends unsatisfied aborts its blocked
//! dependants (reason `dependency-failed`), and that abort travels on to their own
//! dependants. A request with the `manual` unblock strategy also starts `blocked`, and
//! leaves it only through `lifecycle::unblock`, which is allowed once its dependencies are
//! satisfied.
//!
//! [`fates_of_dependants`] says what becomes of the blocked dependants of a request that
//! just ended; `lifecycle::end` applies it in the same transaction that made the request
//! terminal, after that request's row was locked: the submit path takes its dependencies
//! `FOR SHARE` ([`initial_status`]), so either the submitter sees the terminal status, or
//! the terminal transition waits for the submit to commit and then sees the new
//! dependency rows. Either way no dependant is left blocked forever.
//!
//! Retries come in two kinds. `lifecycle::retry` is the user's `berth retry`: a failed
//! or aborted request goes back to the queue (or to `blocked`, if its dependencies or its
//! approval are still outstanding), and its next attempt continues the numbering.
//! Automatic retries ([`retry_plan`]) happen when an attempt ends with result `failure`
//! while the request has `retries_left`: the request goes back to pending, and the claim
//! query does not offer it before `not_before` (the backoff, doubling with every retry
//! used).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::{Error, Result};
use crate::store::schema::{attempts, work_request_dependencies, work_requests};
use crate::work::ids::{AttemptKey, WorkRequestId};
use crate::work::report::Finished;
use crate::work::spec::RawDuration;
use crate::work::state::{Outcome, Status, UnblockStrategy, WorkResult};

/// The most dependencies one request may name.
pub const MAX_DEPENDENCIES: usize = 100;
/// The most automatic retries one request may ask for.
pub const MAX_RETRIES: u32 = 10;
/// The automatic retry backoff when none is given.
pub const DEFAULT_RETRY_BACKOFF_MS: i64 = 1000;
/// The longest automatic retry backoff a request may ask for.
pub const MAX_RETRY_BACKOFF_MS: i64 = 3_600_000;

/// The scheduling part of a submission, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduling {
    /// The dependencies, without duplicates, in the order given.
    pub after: Vec<WorkRequestId>,
    /// How it leaves `blocked`: manual means only by `lifecycle::unblock`.
    pub unblock: UnblockStrategy,
    /// Dependants run even if this request fails.
    pub allow_failure: bool,
    /// Automatic retries on result `failure`.
    pub retries: i32,
    /// Wait before the first automatic retry; doubles each time.
    pub retry_backoff_ms: i64,
}

impl Scheduling {
    /// Checks the scheduling fields of a submission. `after` are ids as sent; the
    /// backoff is as sent, or None for the default.
    pub fn check(
        after: &[String],
        unblock: UnblockStrategy,
        allow_failure: bool,
        retries: u32,
        retry_backoff: Option<RawDuration>,
    ) -> Result<Scheduling> {
        if after.len() > MAX_DEPENDENCIES {
            return Err(Error::InvalidArgument(format!(
                "after: {} dependencies given; at most {MAX_DEPENDENCIES} are allowed",
                after.len()
            )));
        }
        let mut ids = Vec::with_capacity(after.len());
        for (i, text) in after.iter().enumerate() {
            let id = WorkRequestId::parse(&format!("after[{i}]"), text)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if retries > MAX_RETRIES {
            return Err(Error::InvalidArgument(format!(
                "retries: {retries} is too many; give 0 to {MAX_RETRIES}"
            )));
        }
        let retry_backoff_ms = match retry_backoff {
            None => DEFAULT_RETRY_BACKOFF_MS,
            Some(RawDuration { seconds, nanos }) => backoff_ms(seconds, nanos)?,
        };
        Ok(Scheduling {
            after: ids,
            unblock,
            allow_failure,
            retries: i32::try_from(retries).unwrap_or(0),
            retry_backoff_ms,
        })
    }
}

/// A retry backoff in milliseconds (rounded up), or why it is refused.
fn backoff_ms(seconds: i64, nanos: i32) -> Result<i64> {
    let refuse = || {
        Error::InvalidArgument(
            "retry_backoff: must be more than 0 and at most 1 hour, e.g. 5s".into(),
        )
    };
    if seconds < 0 || nanos < 0 || (seconds == 0 && nanos == 0) {
        return Err(refuse());
    }
    let ms = seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add((i64::from(nanos) + 999_999) / 1_000_000))
        .ok_or_else(refuse)?;
    if ms > MAX_RETRY_BACKOFF_MS {
        return Err(refuse());
    }
    Ok(ms)
}

/// Where one dependency stands for its dependants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DepState {
    /// Completed successfully, or ended otherwise with `allow_failure`.
    Satisfied,
    /// Not terminal yet.
    Waiting,
    /// Ended without success and without `allow_failure`: dependants are aborted.
    Failed,
}

/// Classifies a dependency by its status, result and `allow_failure`.
pub(crate) fn dep_state(
    status: Status,
    result: Option<WorkResult>,
    allow_failure: bool,
) -> DepState {
    match status {
        Status::Completed if result == Some(WorkResult::Success) => DepState::Satisfied,
        Status::Completed | Status::Aborted if allow_failure => DepState::Satisfied,
        Status::Completed | Status::Aborted => DepState::Failed,
        _ => DepState::Waiting,
    }
}

/// A dependency of some request, as read for a decision.
#[derive(Clone, Debug)]
pub(crate) struct Dep {
    /// The request depended on.
    pub id: WorkRequestId,
    /// Its status.
    pub status: Status,
    /// Its result.
    pub result: Option<WorkResult>,
    /// What it means for the dependant.
    pub state: DepState,
}

impl Dep {
    /// How it ended, for messages: `failed`, `ended in error`, `was aborted`.
    pub(crate) fn ending(&self) -> &'static str {
        match (self.status, self.result) {
            (Status::Aborted, _) => "was aborted",
            (_, Some(WorkResult::Error)) => "ended in error",
            _ => "failed",
        }
    }
}

/// The dependencies of `id`, oldest first.
pub(crate) async fn dependencies_of(
    conn: &mut AsyncPgConnection,
    id: WorkRequestId,
) -> Result<Vec<Dep>> {
    let rows: Vec<(WorkRequestId, Status, Option<WorkResult>, bool)> =
        work_request_dependencies::table
            .inner_join(
                work_requests::table
                    .on(work_requests::id.eq(work_request_dependencies::depends_on_id)),
            )
            .filter(work_request_dependencies::work_request_id.eq(id))
            .select((
                work_requests::id,
                work_requests::status,
                work_requests::result,
                work_requests::allow_failure,
            ))
            .order((work_requests::created_at, work_requests::id))
            .load(conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, status, result, allow_failure)| Dep {
            state: dep_state(status, result, allow_failure),
            id,
            status,
            result,
        })
        .collect())
}

/// The ids `id` depends on (for `WorkRequest.depends_on`), in one query.
pub async fn depends_on(
    conn: &mut AsyncPgConnection,
    id: WorkRequestId,
) -> Result<Vec<WorkRequestId>> {
    Ok(work_request_dependencies::table
        .filter(work_request_dependencies::work_request_id.eq(id))
        .select(work_request_dependencies::depends_on_id)
        .order(work_request_dependencies::depends_on_id)
        .load(conn)
        .await?)
}

/// At submission, inside the submit transaction: locks the dependencies (`FOR SHARE`,
/// see the module docs), checks that each exists and has not already failed, and says
/// which status the new request starts in. Dependencies must be in the new request's
/// workspace, `workspace_id`.
pub async fn initial_status(
    conn: &mut AsyncPgConnection,
    workspace_id: uuid::Uuid,
    scheduling: &Scheduling,
) -> Result<Status> {
    let mut all_satisfied = true;
    let mut ordered = scheduling.after.clone();
    // A fixed lock order keeps concurrent submitters from deadlocking on each other.
    ordered.sort();
    for dep in ordered {
        let row: Option<(Status, Option<WorkResult>, bool)> = work_requests::table
            .find(dep)
            // A request of another workspace is not there as far as the submitter knows:
            // saying more would tell a stranger that it exists.
            .filter(work_requests::workspace_id.eq(workspace_id))
            .select((
                work_requests::status,
                work_requests::result,
                work_requests::allow_failure,
            ))
            .for_share()
            .first(conn)
            .await
            .optional()?;
        let Some((status, result, allow_failure)) = row else {
            return Err(Error::NotFound(format!(
                "after: work request {dep} not found in this workspace; depend only on requests of the same workspace that exist"
            )));
        };
        match dep_state(status, result, allow_failure) {
            DepState::Satisfied => {}
            DepState::Waiting => all_satisfied = false,
            DepState::Failed => {
                let ended = Dep {
                    id: dep,
                    state: DepState::Failed,
                    status,
                    result,
                };
                return Err(Error::FailedPrecondition(format!(
                    "dependency {dep} already {}; retry it first (berth retry {dep}) or leave it out of --after",
                    ended.ending()
                )));
            }
        }
    }
    Ok(
        if all_satisfied && scheduling.unblock == UnblockStrategy::Deps {
            Status::Pending
        } else {
            Status::Blocked
        },
    )
}

/// At submission, inside the submit transaction, after the request row: records its
/// dependencies.
pub async fn insert_dependencies(
    conn: &mut AsyncPgConnection,
    id: WorkRequestId,
    scheduling: &Scheduling,
) -> Result<()> {
    if scheduling.after.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = scheduling
        .after
        .iter()
        .map(|dep| {
            (
                work_request_dependencies::work_request_id.eq(id),
                work_request_dependencies::depends_on_id.eq(*dep),
            )
        })
        .collect();
    diesel::insert_into(work_request_dependencies::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(())
}

/// What becomes of a blocked dependant when one of its dependencies ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// A dependency failed: it is aborted, with this message.
    Abort(String),
    /// Every dependency is satisfied and it waits for nothing else: it is queued.
    Release,
    /// It still waits (on other dependencies, or for manual approval).
    Wait,
}

/// The blocked dependants of `done`, which just ended, each with its workflow parent and
/// its fate, in id order. Locks them (`FOR UPDATE`) for the caller's transaction, after
/// `done`'s row was locked and updated (see the module docs); `lifecycle::end` applies
/// the fates.
pub(crate) async fn fates_of_dependants(
    conn: &mut AsyncPgConnection,
    done: WorkRequestId,
) -> Result<Vec<(WorkRequestId, Option<WorkRequestId>, Fate)>> {
    // Two steps rather than one `IN (subquery)`: most requests have no dependants, and
    // this index lookup is all they cost (the planner's generic plan for the combined
    // query scanned the blocked requests).
    let ids: Vec<WorkRequestId> = work_request_dependencies::table
        .filter(work_request_dependencies::depends_on_id.eq(done))
        .select(work_request_dependencies::work_request_id)
        .load(conn)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let dependants: Vec<(WorkRequestId, UnblockStrategy, Option<WorkRequestId>)> =
        work_requests::table
            .filter(work_requests::id.eq_any(&ids))
            .filter(work_requests::status.eq(Status::Blocked))
            .select((
                work_requests::id,
                work_requests::unblock_strategy,
                work_requests::parent_id,
            ))
            .order(work_requests::id)
            .for_update()
            .load(conn)
            .await?;
    let mut fates = Vec::with_capacity(dependants.len());
    for (dependant, strategy, parent) in dependants {
        let deps = dependencies_of(conn, dependant).await?;
        let fate = if let Some(failed) = deps.iter().find(|d| d.state == DepState::Failed) {
            Fate::Abort(format!("dependency {} {}", failed.id, failed.ending()))
        } else if strategy == UnblockStrategy::Deps
            && deps.iter().all(|d| d.state == DepState::Satisfied)
        {
            Fate::Release
        } else {
            Fate::Wait
        };
        fates.push((dependant, parent, fate));
    }
    Ok(fates)
}

/// Why a blocked request waits, for `WorkRequest.pending_reason`; empty for a request
/// that is not blocked.
pub async fn blocked_reason(conn: &mut AsyncPgConnection, id: WorkRequestId) -> Result<String> {
    let row: Option<(Status, UnblockStrategy)> = work_requests::table
        .find(id)
        .select((work_requests::status, work_requests::unblock_strategy))
        .first(conn)
        .await
        .optional()?;
    let Some((status, strategy)) = row else {
        return Err(Error::NotFound(format!("work request {id} not found")));
    };
    if status != Status::Blocked {
        return Ok(String::new());
    }
    let deps = dependencies_of(conn, id).await?;
    let waiting: Vec<String> = deps
        .iter()
        .filter(|d| d.state != DepState::Satisfied)
        .map(|d| format!("{} ({})", d.id, d.status))
        .collect();
    let manual = strategy == UnblockStrategy::Manual;
    Ok(match (waiting.as_slice(), manual) {
        ([], true) => format!("blocked for manual approval: berth unblock {id} --accept"),
        ([], false) => "dependencies done; about to be queued".to_owned(),
        ([one], _) => format!(
            "waiting on dependency {one}{}",
            if manual { ", then manual approval" } else { "" }
        ),
        (many, _) => format!(
            "waiting on dependencies {}{}",
            many.join(", "),
            if manual { ", then manual approval" } else { "" }
        ),
    })
}

/// Failed attempt outcomes that count as retries used, besides a non-zero exit.
const FAILURE_OUTCOMES: [Outcome; 2] = [Outcome::TimedOut, Outcome::OomKilled];

/// The wait before the next automatic retry: the base doubled for every retry used.
pub(crate) fn backoff_after(base_ms: i64, used: i64) -> i64 {
    let doublings = u32::try_from(used.clamp(0, 20)).unwrap_or(0);
    base_ms.saturating_mul(1_i64 << doublings)
}

/// An automatic retry that is due: when the request may next be offered, and what it
/// says meanwhile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RetryPlan {
    /// Not offered before this.
    pub not_before: DateTime<Utc>,
    /// Said to the user.
    pub message: String,
}

/// For a running request whose attempt `key` just ended with result `failure`: the
/// automatic retry, when it has retries left (`lifecycle::finish` applies it); `None`
/// otherwise. Reads only.
pub(crate) async fn retry_plan(
    conn: &mut AsyncPgConnection,
    key: AttemptKey,
    report: &Finished,
) -> Result<Option<RetryPlan>> {
    let (retries_left, base_ms): (i32, i64) = work_requests::table
        .find(key.id)
        .select((work_requests::retries_left, work_requests::retry_backoff_ms))
        .first(conn)
        .await?;
    if retries_left <= 0 {
        return Ok(None);
    }
    // Earlier attempts that ended in failure are the automatic retries already used.
    let used: i64 = attempts::table
        .filter(attempts::work_request_id.eq(key.id))
        .filter(attempts::number.lt(key.attempt))
        .filter(
            attempts::outcome
                .eq_any(FAILURE_OUTCOMES)
                .or(attempts::outcome
                    .eq(Outcome::Exited)
                    .and(attempts::exit_code.ne(0))),
        )
        .count()
        .get_result(conn)
        .await?;
    let wait_ms = backoff_after(base_ms, used);
    let exit = report
        .exit_code
        .map_or_else(String::new, |c| format!(" with exit code {c}"));
    let detail = if report.message.is_empty() {
        String::new()
    } else {
        format!(" ({})", report.message)
    };
    tracing::info!(work_request = %key.id, attempt = key.attempt, wait_ms, retries_left = retries_left - 1, "attempt failed; automatic retry scheduled");
    Ok(Some(RetryPlan {
        not_before: Utc::now() + chrono::TimeDelta::milliseconds(wait_ms),
        message: format!(
            "attempt {} failed{exit}{detail}; retrying automatically in {:.1}s ({} retries left after this one)",
            key.attempt,
            wait_ms as f64 / 1000.0,
            retries_left - 1
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_states_follow_status_result_and_allow_failure() {
        assert_eq!(
            dep_state(Status::Completed, Some(WorkResult::Success), false),
            DepState::Satisfied
        );
        assert_eq!(
            dep_state(Status::Completed, Some(WorkResult::Failure), false),
            DepState::Failed
        );
        assert_eq!(
            dep_state(Status::Completed, Some(WorkResult::Error), false),
            DepState::Failed
        );
        assert_eq!(dep_state(Status::Aborted, None, false), DepState::Failed);
        assert_eq!(
            dep_state(Status::Completed, Some(WorkResult::Failure), true),
            DepState::Satisfied
        );
        assert_eq!(dep_state(Status::Aborted, None, true), DepState::Satisfied);
        for waiting in [Status::Blocked, Status::Pending, Status::Running] {
            assert_eq!(dep_state(waiting, None, false), DepState::Waiting);
            assert_eq!(dep_state(waiting, None, true), DepState::Waiting);
        }
    }

    fn raw((seconds, nanos): (i64, i32)) -> RawDuration {
        RawDuration { seconds, nanos }
    }

    #[test]
    fn scheduling_checks_counts_ids_retries_and_backoff() {
        let id = WorkRequestId::new().to_string();
        let ok = Scheduling::check(
            &[id.clone(), id.clone()],
            UnblockStrategy::Manual,
            false,
            3,
            None,
        )
        .expect("valid");
        assert_eq!(ok.after.len(), 1, "duplicates are dropped");
        assert_eq!(ok.retries, 3);
        assert_eq!(ok.retry_backoff_ms, DEFAULT_RETRY_BACKOFF_MS);

        let too_many = vec![id.clone(); MAX_DEPENDENCIES + 1];
        assert!(matches!(
            Scheduling::check(&too_many, UnblockStrategy::Deps, false, 0, None),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            Scheduling::check(&["nope".into()], UnblockStrategy::Deps, false, 0, None),
            Err(Error::InvalidArgument(m)) if m.starts_with("after[0]")
        ));
        assert!(matches!(
            Scheduling::check(&[], UnblockStrategy::Deps, false, 11, None),
            Err(Error::InvalidArgument(m)) if m.starts_with("retries")
        ));
        for bad in [(0, 0), (-1, 0), (0, -5), (3601, 0)] {
            assert!(
                matches!(
                    Scheduling::check(&[], UnblockStrategy::Deps, false, 1, Some(raw(bad))),
                    Err(Error::InvalidArgument(_))
                ),
                "{bad:?}"
            );
        }
        let fine = Scheduling::check(
            &[],
            UnblockStrategy::Deps,
            false,
            1,
            Some(raw((2, 500_000_001))),
        )
        .expect("ok");
        assert_eq!(fine.retry_backoff_ms, 2501);
        let hour = Scheduling::check(&[], UnblockStrategy::Deps, false, 1, Some(raw((3600, 0))))
            .expect("ok");
        assert_eq!(hour.retry_backoff_ms, MAX_RETRY_BACKOFF_MS);
    }

    #[test]
    fn backoff_doubles_with_every_retry_used() {
        assert_eq!(backoff_after(1000, 0), 1000);
        assert_eq!(backoff_after(1000, 1), 2000);
        assert_eq!(backoff_after(1000, 3), 8000);
        assert_eq!(backoff_after(i64::MAX, 5), i64::MAX);
    }
}
