//! Runs from a template: an ordinary work request (or workflow) made from a release.
//!
//! A run copies the release's whole spec into a [`SubmitInput`], lays the run's
//! overrides over it and submits it through [`WorkRequests`](crate::work::requests::WorkRequests)
//! like any `SubmitWorkRequest`, so it is validated exactly like `berth run` and the
//! request holds the resolved spec from then on: later releases, rollbacks or archiving
//! of the template change nothing it runs, nor its retries. The request records the
//! release it came from ([`Origin`]), never reads it again.
//!
//! Workflow steps may name a job template too (`NAME`, `NAME@vK` or `NAME@K`);
//! [`Templates::submit_workflow`] resolves each such step into a spec the same way before
//! the workflow is checked as a whole. A step's own `spec` may then set only what a run
//! may override (command, env, secret env, memory, CPUs, timeout); its requirements are
//! laid over the template's, its inputs added to the template's (a step input replaces
//! a template input with the same mount), its outputs replace the template's when it
//! declares any, and a non-zero step priority replaces the template's. A template's
//! retries do not apply to workflow steps, which have none.
//!
//! What it must not touch: the request's rows (stored by `work::requests`), roles (decided
//! by `access::roles` through [`Templates::resolve`]). Secret values of the release go
//! into the submission only; they are never in an error or a log line.

use std::collections::{BTreeMap, HashMap};

use diesel_async::AsyncPgConnection;

use crate::access::auth::Identity;
use crate::access::roles::WorkspaceRole;
use crate::error::{Error, Result};
use crate::templates::spec::{JobSpec, ReleaseSpec};
use crate::templates::store::TemplateRow;
use crate::templates::{Resolved, TemplateRef, Templates, workspace_name};
use crate::work::ids::WorkRequestId;
use crate::work::requests::{Origin, RequestView};
use crate::work::spec::{InputInput, RawDuration, SpecInput, SubmitInput, validate_submission};
use crate::work::state::Kind;
use crate::work::workflow::{StepInput, WorkflowInput};

/// What a run from a job template may change of the release's spec.
#[derive(Clone, Default, PartialEq)]
pub struct Overrides {
    /// Replaces the command when non-empty.
    pub command: Vec<String>,
    pub env: HashMap<String, String>,
    /// Write-only values.
    pub secret_env: HashMap<String, String>,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub timeout: Option<RawDuration>,
    pub priority: Option<i32>,
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides")
            .field("command", &self.command)
            .field("env", &self.env)
            .field(
                "secret_env_keys",
                &self.secret_env.keys().collect::<Vec<_>>(),
            )
            .field("memory_bytes", &self.memory_bytes)
            .field("cpus", &self.cpus)
            .field("timeout", &self.timeout)
            .field("priority", &self.priority)
            .finish()
    }
}

/// A run as a caller asked for it.
#[derive(Clone, Debug, Default)]
pub struct RunInput {
    pub template: TemplateRef,
    /// `None` runs the latest release.
    pub version: Option<i32>,
    /// Job templates.
    pub overrides: Overrides,
    /// Workflow templates: parameter values as text.
    pub params: BTreeMap<String, String>,
    /// Job templates: inputs mounted besides the release's (a trigger's artifact).
    pub inputs: Vec<InputInput>,
    /// The id the request (or workflow parent) gets, reserved by the caller (a trigger's
    /// firing, so a retried firing cannot make a second); `None`: a new one.
    pub id: Option<WorkRequestId>,
}

/// What a caller needs to run a template.
const RUN_ROLE: WorkspaceRole = WorkspaceRole::Contributor;
const RUN_ACTION: &str = "run templates of";

/// Splits a template reference as a workflow step (or the CLI) writes it: `NAME`,
/// `NAME@vK` or `NAME@K`, K ≥ 1. The error says what is wrong, without a field name.
pub fn parse_reference(text: &str) -> std::result::Result<(&str, Option<i32>), String> {
    let Some((name, version)) = text.split_once('@') else {
        return Ok((text, None));
    };
    let digits = version.strip_prefix('v').unwrap_or(version);
    match digits.parse::<i32>() {
        Ok(k) if k >= 1 && !name.is_empty() => Ok((name, Some(k))),
        _ => Err(format!(
            "{text:?} is not a template reference: write NAME, NAME@vK or NAME@K with K a release number from 1"
        )),
    }
}

/// Refuses a template that may not be run now: archived or inactive.
fn check_runnable(template: &TemplateRow) -> Result<()> {
    if template.archived_at.is_some() {
        return Err(Error::FailedPrecondition(format!(
            "template {} is archived: it cannot be run any more (its releases stay readable); use another template",
            template.name
        )));
    }
    if !template.active {
        return Err(Error::FailedPrecondition(format!(
            "template {} is inactive: make it active again (berth template set {} --active) to run it",
            template.name, template.name
        )));
    }
    Ok(())
}

/// The submission a job release makes, before any override: the whole stored spec, its
/// opened secrets and its scheduling fields.
pub(crate) fn job_submission(
    job: &JobSpec,
    secrets: &BTreeMap<String, String>,
    workspace: &str,
) -> SubmitInput {
    let mut spec = job.spec.to_input();
    spec.secret_env = secrets
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    SubmitInput {
        spec: Some(spec),
        requirements: job
            .requirements
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        priority: job.priority,
        workspace: workspace.to_owned(),
        retries: job.retries,
        retry_backoff: job.retry_backoff_ms.map(RawDuration::from_millis),
        inputs: job
            .inputs
            .iter()
            .map(|input| InputInput {
                artifact: input.artifact.clone(),
                mount: input.mount.clone(),
                from: String::new(),
            })
            .collect(),
        outputs: job.spec.outputs.clone(),
        output_category: job.spec.output_category.clone().unwrap_or_default(),
        ..SubmitInput::default()
    }
}

/// Lays a run's overrides over a spec (command replaced when given, env and secret env
/// set over, limits replaced).
fn apply(spec: &mut SpecInput, overrides: &Overrides) {
    if !overrides.command.is_empty() {
        spec.command.clone_from(&overrides.command);
    }
    for (k, v) in &overrides.env {
        spec.env.insert(k.clone(), v.clone());
    }
    for (k, v) in &overrides.secret_env {
        spec.secret_env.insert(k.clone(), v.clone());
    }
    if let Some(memory) = overrides.memory_bytes {
        spec.memory_bytes = Some(memory);
    }
    if let Some(cpus) = overrides.cpus {
        spec.cpus = Some(cpus);
    }
    if let Some(timeout) = overrides.timeout {
        spec.timeout = Some(timeout);
    }
}

/// Whether `field` (as `validate_submission` names it) is one the run's overrides set,
/// so that the error names `overrides.<field>` instead of the release's `spec.<field>`.
fn overridden(field: &str, overrides: &Overrides) -> Option<String> {
    let (base, entry) = match field.find('[') {
        Some(at) => (&field[..at], Some(&field[at..])),
        None => (field, None),
    };
    let key_given = |map: &HashMap<String, String>| {
        entry.is_some_and(|e| map.keys().any(|k| e == format!("[{k:?}]")))
    };
    let set = match base {
        "spec.command" => !overrides.command.is_empty(),
        "spec.env" => key_given(&overrides.env),
        "spec.secret_env" => key_given(&overrides.secret_env),
        "spec.memory_bytes" => overrides.memory_bytes.is_some(),
        "spec.cpus" => overrides.cpus.is_some(),
        "spec.timeout" => overrides.timeout.is_some(),
        "priority" => overrides.priority.is_some(),
        _ => false,
    };
    set.then(|| format!("overrides.{}", field.trim_start_matches("spec.")))
}

impl Templates {
    /// `RunTemplate`: submits a work request (job templates) or a workflow (workflow
    /// templates) from release `input.version` (`None`: the latest) of the template.
    pub async fn run(&self, caller: &Identity, input: RunInput) -> Result<RequestView> {
        let resolved = {
            let mut conn = self.pool.get().await?;
            self.resolve(
                &mut conn,
                caller,
                &input.template,
                input.version,
                RUN_ROLE,
                RUN_ACTION,
            )
            .await?
        };
        resolved.standing.require_open()?;
        check_runnable(&resolved.template)?;
        let Resolved {
            standing,
            template,
            release,
            spec,
            secrets,
        } = resolved;
        let workspace = standing.workspace.name.clone();
        match spec {
            ReleaseSpec::Workflow(_) => {
                if input.overrides != Overrides::default() || !input.inputs.is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "overrides: {} is a workflow template, which takes parameters (params), not overrides",
                        template.name
                    )));
                }
                crate::templates::workflows::run(
                    self,
                    caller,
                    &template,
                    &workspace,
                    &release,
                    secrets,
                    &input.params,
                    input.id,
                )
                .await
            }
            ReleaseSpec::Job(job) => {
                if let Some(name) = input.params.keys().next() {
                    return Err(Error::InvalidArgument(format!(
                        "params[{name:?}]: {} is a job template, which takes overrides, not parameters",
                        template.name
                    )));
                }
                let mut submit = job_submission(&job, &secrets, &workspace);
                if let Some(spec) = submit.spec.as_mut() {
                    apply(spec, &input.overrides);
                }
                if let Some(priority) = input.overrides.priority {
                    submit.priority = priority;
                }
                submit.inputs.extend(input.inputs);
                // Checked here first only to name the override that is wrong; the
                // submission checks it again, as every submission.
                if let Err(e) = validate_submission(&submit, &self.defaults) {
                    let field = overridden(&e.field, &input.overrides).unwrap_or(e.field);
                    return Err(Error::InvalidArgument(format!("{field}: {}", e.message)));
                }
                let origin = Origin {
                    template_id: template.id,
                    version: release.version,
                };
                let mut view = self
                    .requests
                    .submit_from(caller, submit, Some(origin), input.id)
                    .await?;
                tracing::info!(work_request = %view.row.id, template = %template.name, version = release.version, by = %caller.name, "template run submitted");
                view.template = Some(template.name);
                Ok(view)
            }
        }
    }

    /// `SubmitWorkflow`: resolves every step that names a job template into its spec
    /// (see the module docs), then submits the workflow as a whole.
    pub async fn submit_workflow(
        &self,
        caller: &Identity,
        input: WorkflowInput,
    ) -> Result<RequestView> {
        let mut input = input;
        if input
            .steps
            .iter()
            .any(|s| !s.template.is_empty() && s.origin.is_none())
        {
            let workspace = workspace_name(&input.workspace).to_owned();
            let mut conn = self.pool.get().await?;
            for step in &mut input.steps {
                if !step.template.is_empty() && step.origin.is_none() {
                    self.resolve_step(&mut conn, caller, &workspace, step)
                        .await?;
                }
            }
        }
        self.requests.submit_workflow(caller, &input).await
    }

    /// Replaces `step`'s spec by its template's release with the step's overrides laid
    /// over, and records the origin. Errors name the step.
    async fn resolve_step(
        &self,
        conn: &mut AsyncPgConnection,
        caller: &Identity,
        workspace: &str,
        step: &mut StepInput,
    ) -> Result<()> {
        let at = format!("steps[{:?}]", step.name);
        let (name, version) = parse_reference(&step.template)
            .map_err(|m| Error::InvalidArgument(format!("{at}.template: {m}")))?;
        let template = TemplateRef {
            workspace: workspace.to_owned(),
            name: name.to_owned(),
            kind: Some(Kind::Job),
        };
        let named = |e: Error| match e {
            Error::NotFound(m) => Error::NotFound(format!("{at}.template: {m}")),
            Error::FailedPrecondition(m) => {
                Error::FailedPrecondition(format!("{at}.template: {m}"))
            }
            other => other,
        };
        let resolved = self
            .resolve(conn, caller, &template, version, RUN_ROLE, RUN_ACTION)
            .await
            .map_err(named)?;
        check_runnable(&resolved.template).map_err(named)?;
        let ReleaseSpec::Job(job) = &resolved.spec else {
            return Err(Error::internal(format!(
                "job template {} holds a workflow spec",
                resolved.template.name
            )));
        };
        let own = step.spec.take().unwrap_or_default();
        let fixed = [
            ("image", !own.image.is_empty()),
            ("working_dir", !own.working_dir.is_empty()),
            ("pids_limit", own.pids_limit.is_some()),
            ("stop_grace_period", own.stop_grace_period.is_some()),
            ("network", !own.network.is_empty()),
            ("networks", !own.networks.is_empty()),
            ("pull_policy", own.pull_policy.is_some()),
        ];
        if let Some((field, _)) = fixed.iter().find(|(_, set)| *set) {
            return Err(Error::InvalidArgument(format!(
                "{at}.spec.{field}: is set by template {}; remove it or drop the template",
                resolved.template.name
            )));
        }
        let base = job_submission(job, &resolved.secrets, workspace);
        let mut spec = base.spec.unwrap_or_default();
        apply(
            &mut spec,
            &Overrides {
                command: own.command,
                env: own.env,
                secret_env: own.secret_env,
                memory_bytes: own.memory_bytes,
                cpus: own.cpus,
                timeout: own.timeout,
                priority: None,
            },
        );
        step.spec = Some(spec);
        let mut requirements = base.requirements;
        requirements.extend(step.requirements.drain());
        step.requirements = requirements;
        if step.priority == 0 {
            step.priority = base.priority;
        }
        let mut inputs: Vec<InputInput> = base
            .inputs
            .into_iter()
            .filter(|t| !step.inputs.iter().any(|s| s.mount == t.mount))
            .collect();
        inputs.append(&mut step.inputs);
        step.inputs = inputs;
        if step.outputs.is_empty() {
            step.outputs = base.outputs;
            if step.output_category.is_empty() {
                step.output_category = base.output_category;
            }
        }
        step.origin = Some(Origin {
            template_id: resolved.template.id,
            version: resolved.release.version,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::spec::StoredInput;
    use crate::work::spec::{OutputSpec, OutputWhen, PullPolicy, SpecDefaults, StoredSpec};

    fn job() -> JobSpec {
        JobSpec {
            spec: StoredSpec {
                image: "busybox:1.36".to_owned(),
                command: vec!["true".to_owned()],
                env: BTreeMap::from([("A".to_owned(), "1".to_owned())]),
                working_dir: Some("/work".to_owned()),
                memory_bytes: 512 << 20,
                cpus: 1.0,
                pids_limit: 64,
                timeout_ms: 60_000,
                stop_grace_period_ms: 5_000,
                network: "none".to_owned(),
                networks: Vec::new(),
                pull_policy: PullPolicy::Never,
                outputs: vec![OutputSpec {
                    path: "out.txt".to_owned(),
                    when: OutputWhen::Success,
                }],
                output_category: Some("report".to_owned()),
                ports: Vec::new(),
            },
            requirements: BTreeMap::from([("gpu".to_owned(), "no".to_owned())]),
            priority: 7,
            retries: 2,
            retry_backoff_ms: Some(1500),
            inputs: vec![StoredInput {
                artifact: "data/latest".to_owned(),
                mount: "data".to_owned(),
            }],
        }
    }

    #[test]
    fn references_take_an_optional_version() {
        assert_eq!(parse_reference("build"), Ok(("build", None)));
        assert_eq!(parse_reference("build@v3"), Ok(("build", Some(3))));
        assert_eq!(parse_reference("build@3"), Ok(("build", Some(3))));
        for bad in ["build@", "build@v0", "build@vx", "@v2", "build@-1"] {
            assert!(parse_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_release_submits_its_whole_spec_and_overrides_replace_or_merge() {
        let secrets = BTreeMap::from([("TOKEN".to_owned(), "s3cret".to_owned())]);
        let mut submit = job_submission(&job(), &secrets, "team");
        let spec = submit.spec.as_mut().expect("spec");
        apply(
            spec,
            &Overrides {
                env: HashMap::from([("B".to_owned(), "2".to_owned())]),
                memory_bytes: Some(2 << 30),
                ..Overrides::default()
            },
        );
        let checked = validate_submission(&submit, &SpecDefaults::default()).expect("valid");
        assert_eq!(checked.spec.memory_bytes, 2 << 30);
        assert_eq!(checked.spec.command, vec!["true".to_owned()]);
        assert_eq!(checked.spec.env.len(), 2);
        assert_eq!(checked.spec.pids_limit, 64);
        assert_eq!(checked.spec.pull_policy, PullPolicy::Never);
        assert_eq!(checked.spec.output_category.as_deref(), Some("report"));
        assert_eq!(checked.secret_env, secrets);
        assert_eq!(
            checked.requirements.get("gpu").map(String::as_str),
            Some("no")
        );
        assert_eq!(checked.priority, 7);
        assert_eq!(checked.workspace, "team");
        assert_eq!(submit.retries, 2);
        assert_eq!(submit.inputs[0].artifact, "data/latest");
    }

    #[test]
    fn a_bad_override_is_named_as_an_override() {
        let overrides = Overrides {
            memory_bytes: Some(1),
            env: HashMap::from([("1BAD".to_owned(), "x".to_owned())]),
            ..Overrides::default()
        };
        assert_eq!(
            overridden("spec.memory_bytes", &overrides).as_deref(),
            Some("overrides.memory_bytes")
        );
        assert_eq!(
            overridden("spec.env[\"1BAD\"]", &overrides).as_deref(),
            Some("overrides.env[\"1BAD\"]")
        );
        // A field of the release the run did not touch keeps its own name.
        assert_eq!(overridden("spec.env[\"A\"]", &overrides), None);
        assert_eq!(overridden("spec.cpus", &overrides), None);
    }

    #[test]
    fn overrides_debug_shows_secret_names_only() {
        let overrides = Overrides {
            secret_env: HashMap::from([("TOKEN".to_owned(), "s3cret".to_owned())]),
            ..Overrides::default()
        };
        let shown = format!("{overrides:?}");
        assert!(shown.contains("TOKEN"));
        assert!(!shown.contains("s3cret"));
    }
}
