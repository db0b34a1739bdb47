//! Workflows: a parent request and one child request per step, forming a DAG.
//!
//! `SubmitWorkflow` checks the whole workflow before anything is stored: 1 to 1,000
//! steps, unique step names, every step's spec as `SubmitWorkRequest` would check it
//! (errors name the step: `steps["build"].spec.image: ...`), every `needs` naming a step
//! of the workflow, and no cycle (`steps["a"].needs: steps form a cycle: a -> b -> a`).
//! Then one transaction stores the parent, the children and their dependency rows, so a
//! workflow exists completely or not at all.
//!
//! The parent (`kind = 'workflow'`) is never claimed by a worker: its spec column holds an
//! empty object and the API returns no spec for it. Children are ordinary jobs with
//! `parent_id` and `name` set, stored in dependency order (a step after the steps it
//! needs, otherwise in the submitted order), so ordering children by creation lists
//! them in an order they can run in. A step without needs starts `pending`, the others
//! `blocked`; when a step ends, `lifecycle::end` releases the steps that needed it (or
//! aborts them when a need failed).
//!
//! # How the parent's status follows its steps
//!
//! [`refresh_parent`] recomputes the parent whenever a step changes status, in the same
//! transaction as the change (`lifecycle` calls it, and ends a parent that is done
//! through its one door). A step with `allow_failure` that failed, erred or was
//! aborted does not count against the workflow. With that:
//!
//! - while some step has not ended: `running` once any step is running, has started or
//!   has ended; otherwise `pending` if a step is queued; otherwise `blocked`;
//! - once every step has ended: `completed` with result `error` if a step ended in
//!   error, else `failure` if a step failed, else `aborted` if a step was aborted
//!   (cancelled, or aborted because a step it needed failed), else `success`. The
//!   parent's message names the step that decided it.
//!
//! A parent is created `pending` (every DAG has a step without needs). Like every
//! request, a parent that ended never changes again. Cancelling the parent aborts every
//! step that has not ended (`lifecycle::cancel`); running containers are stopped by
//! their workers.
//!
//! Locking: a step's change locks the step's row and then the parent's. Cancelling a
//! parent locks the steps first (in id order, see [`lock_children`]) and then the
//! parent, so the two never wait on each other in opposite orders.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::artifacts::inputs;
use crate::error::{Error, Result};
use crate::observe::traces;
use crate::store::schema::{work_request_dependencies, work_requests, workspaces};
use crate::store::secrets::SecretBox;
use crate::work::ids::{Origin, WorkRequestId};
use crate::work::limits;
use crate::work::spec::{
    InputInput, InputSource, OutputSpec, SpecDefaults, SpecInput, Submission, SubmitInput,
    validate_inputs, validate_name, validate_submission,
};
use crate::work::state::{Closing, Ending, Kind, Reason, Status, WorkResult};

/// The most steps one workflow may have.
pub const MAX_STEPS: usize = 1000;
const DEFAULT_WORKSPACE: &str = "default";
/// Rows per INSERT, well under PostgreSQL's 65,535 bind parameters.
const INSERT_CHUNK: usize = 1000;

/// A workflow as a caller submitted it, before any check.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkflowInput {
    pub name: String,
    /// Empty means `default`.
    pub workspace: String,
    pub steps: Vec<StepInput>,
    /// The workflow template release it is made from, if any (recorded on the parent).
    pub origin: Option<Origin>,
    /// The parent's id, reserved by the caller (a trigger's firing, so that a retried
    /// firing finds its workflow instead of making a second); `None`: a new one.
    pub id: Option<WorkRequestId>,
}

/// One step as submitted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepInput {
    pub name: String,
    pub spec: Option<SpecInput>,
    /// Names of the steps it needs.
    pub needs: Vec<String>,
    pub requirements: HashMap<String, String>,
    pub priority: i32,
    pub allow_failure: bool,
    /// Artifacts to mount; `from` takes the output of a step in `needs`.
    pub inputs: Vec<InputInput>,
    /// Files to collect.
    pub outputs: Vec<OutputSpec>,
    /// The collected artifact's category ('' for `output`).
    pub output_category: String,
    /// A job template to run, `NAME` or `NAME@vK`, as sent ('' for none). It is
    /// resolved into `spec` (and `origin`) before the workflow is checked.
    pub template: String,
    /// The job template release the step's spec came from, once resolved.
    pub origin: Option<Origin>,
}

/// A checked workflow, ready to store.
#[derive(Debug)]
pub struct Workflow {
    pub name: String,
    pub workspace: String,
    /// In dependency order: every step comes after the steps it needs.
    pub steps: Vec<Step>,
    /// The workflow template release it is made from, if any.
    pub origin: Option<Origin>,
}

/// One checked step.
#[derive(Debug)]
pub struct Step {
    pub name: String,
    pub submission: Submission,
    /// Indexes into [`Workflow::steps`] of the steps it needs; all smaller than its own.
    pub needs: Vec<usize>,
    pub allow_failure: bool,
    /// The job template release its spec came from, if any.
    pub origin: Option<Origin>,
}

fn invalid(message: String) -> Error {
    Error::InvalidArgument(message)
}

/// Checks a workflow and fills in each step's defaults. The first problem found is
/// returned as INVALID_ARGUMENT naming the step.
pub fn validate(req: &WorkflowInput, defaults: &SpecDefaults) -> Result<Workflow> {
    validate_name("name", &req.name).map_err(|m| invalid(format!("name: {m}")))?;
    let workspace = if req.workspace.is_empty() {
        DEFAULT_WORKSPACE.to_owned()
    } else {
        validate_name("workspace", &req.workspace)
            .map_err(|m| invalid(format!("workspace: {m}")))?;
        req.workspace.clone()
    };
    if req.steps.is_empty() {
        return Err(invalid(
            "steps: a workflow needs at least one step".to_owned(),
        ));
    }
    if req.steps.len() > MAX_STEPS {
        return Err(invalid(format!(
            "steps: {} steps; at most {MAX_STEPS} are allowed",
            req.steps.len()
        )));
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, step) in req.steps.iter().enumerate() {
        let what = format!("steps[{i}].name");
        validate_name(&what, &step.name).map_err(|m| invalid(format!("{what}: {m}")))?;
        if let Some(first) = index.insert(step.name.as_str(), i) {
            return Err(invalid(format!(
                "{what}: {:?} is also the name of steps[{first}]; step names must be unique",
                step.name
            )));
        }
    }
    let mut submissions = Vec::with_capacity(req.steps.len());
    let mut needs: Vec<Vec<usize>> = Vec::with_capacity(req.steps.len());
    for step in &req.steps {
        // `Templates::submit_workflow` turns a step naming a template into a spec and an
        // origin before the workflow reaches here; one that did not is a bug of the
        // caller, never something a user sent.
        if !step.template.is_empty() && step.origin.is_none() {
            return Err(Error::internal(format!(
                "workflow step {:?} names template {:?} but was not resolved; submit workflows through Templates::submit_workflow",
                step.name, step.template
            )));
        }
        let single = SubmitInput {
            spec: step.spec.clone(),
            requirements: step.requirements.clone(),
            priority: step.priority,
            workspace: workspace.clone(),
            allow_failure: step.allow_failure,
            outputs: step.outputs.clone(),
            output_category: step.output_category.clone(),
            ..Default::default()
        };
        let mut submission = validate_submission(&single, defaults)
            .map_err(|e| invalid(format!("steps[{:?}].{e}", step.name)))?;
        submission.inputs = validate_inputs("inputs", &step.inputs, true)
            .map_err(|e| invalid(format!("steps[{:?}].{e}", step.name)))?;
        for (k, input) in submission.inputs.iter().enumerate() {
            if let InputSource::Step(from) = &input.source
                && !step.needs.contains(from)
            {
                return Err(invalid(format!(
                    "steps[{:?}].inputs[{k}].from: {from:?} is not in this step's needs; a step may take the output only of a step it needs",
                    step.name
                )));
            }
        }
        submissions.push(submission);
        let mut own = BTreeSet::new();
        for need in &step.needs {
            let Some(&j) = index.get(need.as_str()) else {
                return Err(invalid(format!(
                    "steps[{:?}].needs: no step is named {need:?}",
                    step.name
                )));
            };
            own.insert(j);
        }
        needs.push(own.into_iter().collect());
    }
    // A step's output can be taken only from a step that declares outputs.
    for (i, submission) in submissions.iter().enumerate() {
        for (k, input) in submission.inputs.iter().enumerate() {
            if let InputSource::Step(from) = &input.source
                && let Some(&j) = index.get(from.as_str())
                && submissions[j].spec.outputs.is_empty()
            {
                return Err(invalid(format!(
                    "steps[{:?}].inputs[{k}].from: step {from:?} declares no outputs, so it makes no artifact to take; give it `outputs`",
                    req.steps[i].name
                )));
            }
        }
    }
    let order = dependency_order(&needs).map_err(|cycle| {
        let names: Vec<&str> = cycle.iter().map(|&i| req.steps[i].name.as_str()).collect();
        invalid(format!(
            "steps[{:?}].needs: steps form a cycle: {}",
            names[0],
            names.join(" -> ")
        ))
    })?;
    // Renumber `needs` into positions of the new order.
    let mut position = vec![0; order.len()];
    for (pos, &i) in order.iter().enumerate() {
        position[i] = pos;
    }
    let mut submissions: Vec<Option<Submission>> = submissions.into_iter().map(Some).collect();
    let mut steps = Vec::with_capacity(order.len());
    for &i in &order {
        let submission = submissions[i]
            .take()
            .ok_or_else(|| Error::internal("a step appears twice in the dependency order"))?;
        steps.push(Step {
            name: req.steps[i].name.clone(),
            submission,
            needs: needs[i].iter().map(|&j| position[j]).collect(),
            allow_failure: req.steps[i].allow_failure,
            origin: req.steps[i].origin,
        });
    }
    Ok(Workflow {
        name: req.name.clone(),
        workspace,
        steps,
        origin: req.origin,
    })
}

/// A topological order of the steps (each after what it needs; ties in submitted order),
/// or one cycle as a list of step indexes that starts and ends with the same step.
fn dependency_order(needs: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = needs.len();
    let mut waiting: Vec<usize> = needs.iter().map(Vec::len).collect();
    let mut needed_by: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, own) in needs.iter().enumerate() {
        for &j in own {
            needed_by[j].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| waiting[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &k in &needed_by[i] {
            waiting[k] -= 1;
            if waiting[k] == 0 {
                ready.push(Reverse(k));
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Every step left over needs another step left over: walk those needs until a step
    // repeats; the walk from its first visit is a cycle.
    let left: Vec<bool> = waiting.iter().map(|&w| w > 0).collect();
    let start = left.iter().position(|&l| l).unwrap_or(0);
    let mut path = vec![start];
    let mut seen = HashMap::from([(start, 0usize)]);
    let mut at = start;
    loop {
        let Some(&next) = needs[at].iter().find(|&&j| left[j]) else {
            return Err(path);
        };
        if let Some(&first) = seen.get(&next) {
            let mut cycle = path.split_off(first);
            cycle.push(next);
            return Err(cycle);
        }
        seen.insert(next, path.len());
        path.push(next);
        at = next;
    }
}

/// Stores a checked workflow in one transaction; returns the parent's id. Secret env
/// values are sealed with `secrets` as for a single submission.
pub async fn create(
    conn: &mut AsyncPgConnection,
    secrets: &SecretBox,
    creator: Uuid,
    workflow: &Workflow,
    id: Option<WorkRequestId>,
) -> Result<WorkRequestId> {
    // Everything that cannot touch the database is prepared before the transaction.
    let parent = id.unwrap_or_default();
    let mut children = Vec::with_capacity(workflow.steps.len());
    let mut ids = Vec::with_capacity(workflow.steps.len());
    for step in &workflow.steps {
        let s = &step.submission;
        let sealed = if s.secret_env.is_empty() {
            None
        } else {
            Some(secrets.seal(&s.secret_env).map_err(Error::internal)?)
        };
        let id = WorkRequestId::new();
        ids.push(id);
        let status = if step.needs.is_empty() {
            Status::Pending
        } else {
            Status::Blocked
        };
        children.push((
            work_requests::id.eq(id),
            work_requests::status.eq(status),
            work_requests::spec.eq(serde_json::to_value(&s.spec).map_err(Error::internal)?),
            work_requests::secret_env.eq(sealed),
            work_requests::secret_env_keys.eq(s.secret_env.keys().cloned().collect::<Vec<_>>()),
            work_requests::requirements
                .eq(serde_json::to_value(&s.requirements).map_err(Error::internal)?),
            work_requests::priority_base.eq(s.priority),
            work_requests::allow_failure.eq(step.allow_failure),
            work_requests::name.eq(step.name.clone()),
            work_requests::template_id.eq(step.origin.map(|o| o.template_id)),
            work_requests::template_version.eq(step.origin.map(|o| o.version)),
        ));
    }
    let dependencies: Vec<_> = workflow
        .steps
        .iter()
        .enumerate()
        .flat_map(|(i, step)| {
            let ids = &ids;
            step.needs.iter().map(move |&j| {
                (
                    work_request_dependencies::work_request_id.eq(ids[i]),
                    work_request_dependencies::depends_on_id.eq(ids[j]),
                )
            })
        })
        .collect();
    conn.transaction::<_, Error, _>(async |conn| {
        let workspace_id: Uuid = workspaces::table
            .filter(workspaces::name.eq(&workflow.workspace))
            .select(workspaces::id)
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "workspace: no workspace named {:?}",
                    workflow.workspace
                ))
            })?;
        let steps = i64::try_from(workflow.steps.len()).unwrap_or(i64::MAX);
        limits::admit_one(conn, workspace_id, steps).await?;
        // The workflow and its steps are one trace: the submit call's.
        let traceparent = traces::current_traceparent();
        diesel::insert_into(work_requests::table)
            .values((
                work_requests::id.eq(parent),
                work_requests::workspace_id.eq(workspace_id),
                work_requests::kind.eq(Kind::Workflow),
                work_requests::status.eq(Status::Pending),
                work_requests::spec.eq(serde_json::json!({})),
                work_requests::name.eq(&workflow.name),
                work_requests::created_by.eq(creator),
                work_requests::template_id.eq(workflow.origin.map(|o| o.template_id)),
                work_requests::template_version.eq(workflow.origin.map(|o| o.version)),
                work_requests::traceparent.eq(&traceparent),
            ))
            .execute(conn)
            .await?;
        for chunk in children.chunks(INSERT_CHUNK) {
            let rows: Vec<_> = chunk
                .iter()
                .cloned()
                .map(|child| {
                    (
                        child,
                        work_requests::workspace_id.eq(workspace_id),
                        work_requests::parent_id.eq(parent),
                        work_requests::kind.eq(Kind::Job),
                        work_requests::created_by.eq(creator),
                        work_requests::traceparent.eq(traceparent.clone()),
                    )
                })
                .collect();
            diesel::insert_into(work_requests::table)
                .values(rows)
                .execute(conn)
                .await?;
        }
        for chunk in dependencies.chunks(INSERT_CHUNK * 10) {
            diesel::insert_into(work_request_dependencies::table)
                .values(chunk.to_vec())
                .execute(conn)
                .await?;
        }
        // Inputs: artifacts resolved and pinned now, a needed step's output named by
        // that step's id (pinned when it finishes).
        for (i, step) in workflow.steps.iter().enumerate() {
            if step.submission.inputs.is_empty() {
                continue;
            }
            let needed: HashMap<String, WorkRequestId> = step
                .needs
                .iter()
                .map(|&j| (workflow.steps[j].name.clone(), ids[j]))
                .collect();
            let field = format!("steps[{:?}].inputs", step.name);
            let pinned =
                inputs::resolve(conn, workspace_id, &step.submission.inputs, &needed, &field)
                    .await?;
            inputs::insert(conn, ids[i], &pinned).await?;
        }
        Ok(())
    })
    .await?;
    Ok(parent)
}

/// What [`parent_state`] needs to know of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StepState {
    pub name: String,
    pub status: Status,
    pub result: Option<WorkResult>,
    pub reason: Reason,
    pub allow_failure: bool,
    pub started: bool,
}

/// What the parent's steps make of it: a status while some step has not ended, else how
/// it ends; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ParentState {
    /// Some step has not ended.
    Open(Status),
    /// Every step has ended.
    Done(Closing),
}

/// The parent's state given its steps; see the module docs.
pub(crate) fn parent_state(steps: &[StepState]) -> ParentState {
    if steps.iter().any(|s| !s.status.is_terminal()) {
        let status = if steps
            .iter()
            .any(|s| s.status == Status::Running || s.started || s.status.is_terminal())
        {
            Status::Running
        } else if steps.iter().any(|s| s.status == Status::Pending) {
            Status::Pending
        } else {
            Status::Blocked
        };
        return ParentState::Open(status);
    }
    let counted = || steps.iter().filter(|s| !s.allow_failure);
    let with_result = |result: WorkResult| {
        counted().find(|s| s.status == Status::Completed && s.result == Some(result))
    };
    let done = |ending: Ending, message: String| ParentState::Done(Closing::new(ending, message));
    if let Some(step) = with_result(WorkResult::Error) {
        return done(
            Ending::completed(WorkResult::Error, Reason::None),
            format!("step {:?} ended in error", step.name),
        );
    }
    if let Some(step) = with_result(WorkResult::Failure) {
        return done(
            Ending::completed(WorkResult::Failure, Reason::None),
            format!("step {:?} failed", step.name),
        );
    }
    if let Some(step) = counted().find(|s| s.status == Status::Aborted) {
        let why = if step.reason == Reason::None {
            String::new()
        } else {
            format!(" ({})", step.reason)
        };
        return done(
            Ending::aborted(Reason::None),
            format!("step {:?} was aborted{why}", step.name),
        );
    }
    done(
        Ending::completed(WorkResult::Success, Reason::None),
        String::new(),
    )
}

/// Recomputes a workflow parent from its steps (see the module docs), in the transaction
/// that changed a step. A parent that is still open gets its status (and first start
/// time) stored here; for one that is now done the ending is returned, and
/// `lifecycle` ends the parent through its door. Nothing for a parent that has ended or
/// an id that is not a workflow.
pub(crate) async fn refresh_parent(
    conn: &mut AsyncPgConnection,
    parent_id: WorkRequestId,
) -> Result<Option<Closing>> {
    let parent: Option<Status> = work_requests::table
        .find(parent_id)
        .filter(work_requests::kind.eq(Kind::Workflow))
        .select(work_requests::status)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let Some(current) = parent else {
        return Ok(None);
    };
    if current.is_terminal() {
        return Ok(None);
    }
    type Row = (
        String,
        Status,
        Option<WorkResult>,
        Reason,
        bool,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = work_requests::table
        .filter(work_requests::parent_id.eq(parent_id))
        .select((
            work_requests::name,
            work_requests::status,
            work_requests::result,
            work_requests::reason,
            work_requests::allow_failure,
            work_requests::started_at,
        ))
        .order((work_requests::created_at, work_requests::id))
        .load(conn)
        .await?;
    let first_start = rows.iter().filter_map(|r| r.5).min();
    let steps: Vec<StepState> = rows
        .into_iter()
        .map(
            |(name, status, result, reason, allow_failure, started_at)| StepState {
                name,
                status,
                result,
                reason,
                allow_failure,
                started: started_at.is_some(),
            },
        )
        .collect();
    let state = parent_state(&steps);
    if let ParentState::Open(status) = state {
        diesel::update(work_requests::table.find(parent_id))
            .set(work_requests::status.eq(status))
            .execute(conn)
            .await?;
    }
    if let Some(at) = first_start {
        diesel::update(work_requests::table.find(parent_id))
            .filter(work_requests::started_at.is_null())
            .set(work_requests::started_at.eq(at))
            .execute(conn)
            .await?;
    }
    Ok(match state {
        ParentState::Open(_) => None,
        ParentState::Done(closing) => Some(closing),
    })
}

/// Locks the steps of `parent_id` in id order and returns them with their statuses
/// (nothing for a request without steps). Cancelling a request takes these locks before
/// the request's own; see the module docs.
pub async fn lock_children(
    conn: &mut AsyncPgConnection,
    parent_id: WorkRequestId,
) -> Result<Vec<(WorkRequestId, Status)>> {
    Ok(work_requests::table
        .filter(work_requests::parent_id.eq(parent_id))
        .select((work_requests::id, work_requests::status))
        .order(work_requests::id)
        .for_update()
        .load(conn)
        .await?)
}

#[cfg(test)]
mod tests {

    use super::*;

    fn step(name: &str, needs: &[&str]) -> StepInput {
        StepInput {
            name: name.into(),
            spec: Some(SpecInput {
                image: "busybox".into(),
                ..Default::default()
            }),
            needs: needs.iter().map(|n| (*n).to_owned()).collect(),
            ..Default::default()
        }
    }

    fn workflow(steps: Vec<StepInput>) -> WorkflowInput {
        WorkflowInput {
            name: "wf".into(),
            steps,
            workspace: String::new(),
            origin: None,
            id: None,
        }
    }

    fn refused(req: &WorkflowInput) -> String {
        match validate(req, &SpecDefaults::default()) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn steps_are_ordered_after_what_they_need() {
        let req = workflow(vec![
            step("d", &["b", "c"]),
            step("b", &["a"]),
            step("a", &[]),
            step("c", &["a", "a"]),
        ]);
        let wf = validate(&req, &SpecDefaults::default()).expect("valid");
        let names: Vec<&str> = wf.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(wf.steps[3].needs, [1, 2]);
        assert_eq!(wf.steps[2].needs, [0], "duplicate needs collapse");
        assert_eq!(wf.workspace, "default");
    }

    #[test]
    fn cycles_are_refused_naming_the_steps() {
        let message = refused(&workflow(vec![
            step("x", &[]),
            step("a", &["b"]),
            step("b", &["a"]),
        ]));
        assert_eq!(
            message,
            "steps[\"a\"].needs: steps form a cycle: a -> b -> a"
        );
        let message = refused(&workflow(vec![step("self", &["self"])]));
        assert_eq!(
            message,
            "steps[\"self\"].needs: steps form a cycle: self -> self"
        );
        // A step that only leads into a cycle is not reported as part of it.
        let message = refused(&workflow(vec![
            step("tail", &["p"]),
            step("p", &["q"]),
            step("q", &["p"]),
        ]));
        assert!(message.ends_with("cycle: p -> q -> p"), "{message}");
    }

    #[test]
    fn unknown_needs_and_bad_names_are_refused_naming_the_step() {
        assert_eq!(
            refused(&workflow(vec![step("a", &["nope"])])),
            "steps[\"a\"].needs: no step is named \"nope\""
        );
        assert!(
            refused(&workflow(vec![step("a", &[]), step("a", &[])])).starts_with("steps[1].name:")
        );
        assert!(refused(&workflow(vec![step("bad name", &[])])).starts_with("steps[0].name:"));
        assert!(refused(&workflow(Vec::new())).starts_with("steps:"));
        let mut no_name = workflow(vec![step("a", &[])]);
        no_name.name.clear();
        assert!(refused(&no_name).starts_with("name:"));
    }

    #[test]
    fn a_bad_spec_is_refused_naming_the_step() {
        let mut bad = step("build", &[]);
        bad.spec = Some(SpecInput {
            image: "Not An Image".into(),
            ..Default::default()
        });
        let message = refused(&workflow(vec![step("a", &[]), bad]));
        assert!(
            message.starts_with("steps[\"build\"].spec.image: "),
            "{message}"
        );
        let mut bad = step("p", &[]);
        bad.priority = 5000;
        assert!(refused(&workflow(vec![bad])).starts_with("steps[\"p\"].priority: "));
    }

    fn state(
        name: &str,
        status: Status,
        result: Option<WorkResult>,
        allow_failure: bool,
    ) -> StepState {
        StepState {
            name: name.into(),
            status,
            result,
            reason: Reason::None,
            allow_failure,
            started: false,
        }
    }

    #[test]
    fn the_parent_follows_its_steps() {
        use Status::*;
        let s = |steps: &[StepState]| match parent_state(steps) {
            ParentState::Open(status) => (status, None),
            ParentState::Done(closing) => (closing.ending.status, closing.ending.result),
        };
        assert_eq!(
            s(&[
                state("a", Pending, None, false),
                state("b", Blocked, None, false)
            ]),
            (Pending, None)
        );
        assert_eq!(s(&[state("a", Blocked, None, false)]), (Blocked, None));
        assert_eq!(
            s(&[
                state("a", Completed, Some(WorkResult::Success), false),
                state("b", Pending, None, false)
            ]),
            (Running, None)
        );
        assert_eq!(
            s(&[
                state("a", Running, None, false),
                state("b", Blocked, None, false)
            ]),
            (Running, None)
        );
        assert_eq!(
            s(&[
                state("a", Completed, Some(WorkResult::Success), false),
                state("b", Completed, Some(WorkResult::Success), false)
            ]),
            (Completed, Some(WorkResult::Success))
        );
        assert_eq!(
            s(&[
                state("a", Completed, Some(WorkResult::Failure), false),
                state("b", Aborted, None, false)
            ]),
            (Completed, Some(WorkResult::Failure))
        );
        assert_eq!(
            s(&[
                state("a", Completed, Some(WorkResult::Failure), false),
                state("b", Completed, Some(WorkResult::Error), false)
            ]),
            (Completed, Some(WorkResult::Error))
        );
        assert_eq!(
            s(&[
                state("a", Completed, Some(WorkResult::Failure), true),
                state("b", Completed, Some(WorkResult::Success), false)
            ]),
            (Completed, Some(WorkResult::Success))
        );
        assert_eq!(
            s(&[
                state("a", Aborted, None, false),
                state("b", Completed, Some(WorkResult::Success), false)
            ]),
            (Aborted, None)
        );
        let ParentState::Done(closing) =
            parent_state(&[state("lint", Completed, Some(WorkResult::Failure), false)])
        else {
            panic!("every step ended");
        };
        assert_eq!(closing.message.as_deref(), Some("step \"lint\" failed"));
    }
}
