//! Workspace limits at submission: `max_pending`, the most waiting requests (pending or
//! blocked jobs, workflow steps included) a workspace may hold.
//!
//! [`admit`] is the one check; every way of storing new work calls it in the transaction
//! that inserts the rows: `intake` for a batch of plain jobs, `requests` for a job with
//! dependencies, `workflow::create` for a workflow (all its steps count, the parent does
//! not: it runs nothing). A refused submission stores nothing.
//!
//! To keep concurrent submitters (on any replica) from passing the limit together, the
//! rows of the limited workspaces among those submitted to are locked for the rest of the
//! transaction, so the count and the insert are one step. Workspaces without a limit are
//! neither locked nor counted: their submissions cost one indexed read more, nothing else
//! (`intake` asks [`any_limited`] first and then needs no transaction).
//!
//! The limit on running work (`max_running`) is the claim's (`scheduler`); this module
//! never looks at running work and never changes anything but by refusing.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::store::schema::{work_requests, workspaces};
use crate::work::state::{Kind, Status};

/// Whether each submission of `submissions` (a workspace and how many waiting jobs it
/// adds), taken in order, fits its workspace's `max_pending`: `Ok` for those admitted,
/// the refusal for the others. Earlier admitted submissions count against later ones.
/// Runs in the caller's inserting transaction, whose lock on the limited workspaces'
/// rows it leaves held until that transaction ends.
pub(crate) async fn admit(
    conn: &mut AsyncPgConnection,
    submissions: &[(Uuid, i64)],
) -> Result<Vec<Result<()>>> {
    let mut ids: Vec<Uuid> = submissions.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    // `FOR NO KEY UPDATE` serializes submitters to (and claimers in) a limited workspace,
    // and still lets the foreign-key checks of other inserts (a key-share lock) pass.
    // Id order, like every other taker of workspace locks, so two batches never deadlock.
    let limited: Vec<(Uuid, String, Option<i32>)> = workspaces::table
        .filter(workspaces::id.eq_any(&ids))
        .filter(workspaces::max_pending.is_not_null())
        .order(workspaces::id)
        .select((workspaces::id, workspaces::name, workspaces::max_pending))
        .for_no_key_update()
        .load(conn)
        .await?;
    if limited.is_empty() {
        return Ok(submissions.iter().map(|_| Ok(())).collect());
    }
    let limited_ids: Vec<Uuid> = limited.iter().map(|(id, _, _)| *id).collect();
    let waiting: BTreeMap<Uuid, i64> = work_requests::table
        .filter(work_requests::workspace_id.eq_any(&limited_ids))
        .filter(work_requests::status.eq_any([Status::Pending, Status::Blocked]))
        .filter(work_requests::kind.eq(Kind::Job))
        .group_by(work_requests::workspace_id)
        .select((work_requests::workspace_id, diesel::dsl::count_star()))
        .load::<(Uuid, i64)>(conn)
        .await?
        .into_iter()
        .collect();
    let mut budget: BTreeMap<Uuid, Budget> = limited
        .into_iter()
        .map(|(id, name, limit)| {
            let budget = Budget {
                name,
                limit: i64::from(limit.unwrap_or(i32::MAX)),
                waiting: waiting.get(&id).copied().unwrap_or(0),
            };
            (id, budget)
        })
        .collect();
    Ok(submissions
        .iter()
        .map(|(workspace, adding)| match budget.get_mut(workspace) {
            Some(budget) => budget.take(*adding),
            None => Ok(()),
        })
        .collect())
}

/// Whether any of `workspaces` has a `max_pending`, without locking anything: a caller
/// that learns none has may insert without [`admit`].
pub(crate) async fn any_limited(conn: &mut AsyncPgConnection, workspaces: &[Uuid]) -> Result<bool> {
    let limited: bool = diesel::select(diesel::dsl::exists(
        workspaces::table
            .filter(workspaces::id.eq_any(workspaces))
            .filter(workspaces::max_pending.is_not_null()),
    ))
    .get_result(conn)
    .await?;
    Ok(limited)
}

/// [`admit`] for one submission: `Ok` when `adding` waiting jobs fit into `workspace`.
pub(crate) async fn admit_one(
    conn: &mut AsyncPgConnection,
    workspace: Uuid,
    adding: i64,
) -> Result<()> {
    admit(conn, &[(workspace, adding)])
        .await?
        .into_iter()
        .next()
        .unwrap_or(Ok(()))
}

/// What is left of one limited workspace's `max_pending` while a batch is judged.
#[derive(Debug)]
struct Budget {
    name: String,
    limit: i64,
    waiting: i64,
}

impl Budget {
    /// Takes `adding` waiting requests if they fit, else says why not (and takes none).
    fn take(&mut self, adding: i64) -> Result<()> {
        if self.waiting + adding <= self.limit {
            self.waiting += adding;
            return Ok(());
        }
        let Budget {
            name,
            limit,
            waiting,
        } = self;
        let fix = "wait for some to run or ask an admin to raise it";
        Err(Error::ResourceExhausted(if *waiting >= *limit {
            format!(
                "workspace {name} has {waiting} waiting requests, its limit (max_pending); {fix}"
            )
        } else {
            format!(
                "workspace {name} has {waiting} waiting requests and this submission adds \
                 {adding}, over its limit of {limit} (max_pending); {fix}"
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: i64, waiting: i64) -> Budget {
        Budget {
            name: "team-a".into(),
            limit,
            waiting,
        }
    }

    #[test]
    fn a_full_workspace_refuses_naming_itself_and_the_limit() {
        let refused = budget(100, 100).take(1);
        assert!(matches!(
            refused,
            Err(Error::ResourceExhausted(m)) if m == "workspace team-a has 100 waiting requests, \
                its limit (max_pending); wait for some to run or ask an admin to raise it"
        ));
    }

    #[test]
    fn admitted_submissions_count_against_later_ones_and_refused_ones_do_not() {
        let mut b = budget(3, 1);
        assert!(b.take(1).is_ok());
        assert!(matches!(
            b.take(2),
            Err(Error::ResourceExhausted(m)) if m.contains("has 2 waiting requests and this submission adds 2, over its limit of 3")
        ));
        assert!(b.take(1).is_ok());
        assert!(b.take(1).is_err());
    }
}
