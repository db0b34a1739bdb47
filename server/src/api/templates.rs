//! `berth.v1.TemplateService` on the wire; `templates` does the work.
//!
//! Conversions both ways live here for job templates and releases; workflow template
//! specs are converted in `api::workflow_templates`. Enum numbers the protocol does not
//! know are refused with INVALID_ARGUMENT naming the field.

use berth_common::proto::template_service_server::TemplateService;
use berth_common::proto::{
    self, ArchiveTemplateRequest, CreateTemplateRequest, DeleteTemplateRequest,
    DeleteTemplateResponse, GetReleaseRequest, GetTemplateRequest, GetTemplateStatsRequest,
    JobTemplateSpec, ListReleasesRequest, ListReleasesResponse, ListTemplatesRequest,
    ListTemplatesResponse, Release, ReleaseChange, RollbackTemplateRequest, RunTemplateRequest,
    Template, TemplateStats, UpdateTemplateRequest, WorkRequest,
};
use tonic::{Request, Response, Status};

use crate::api::auth::identity;
use crate::api::error::respond;
use crate::api::work_requests::{
    input_from_proto, outputs_from_proto, outputs_to_proto, pull_policy_from_proto,
    spec_from_proto, spec_to_proto, to_proto as request_to_proto,
};
use crate::api::workflow_templates;
use crate::api::{duration_ms, raw_from_proto, timestamp};
use berth_core::error::{Error, Result};
use berth_core::templates::diff::{Change, ChangeKind};
use berth_core::templates::jobs::{JobChange, JobSpecInput};
use berth_core::templates::manage::{
    CreateInput, Deleted, ListQuery, NewSpec, RollbackInput, SpecChange, UpdateInput,
};
use berth_core::templates::runs::{Overrides, RunInput};
use berth_core::templates::spec::{JobSpec, ReleaseSpec};
use berth_core::templates::stats::Stats;
use berth_core::templates::{ReleaseView, TemplateRef, TemplateView, Templates};
use berth_core::work::spec::NetworkAttachment;
use berth_core::work::state::Kind;

/// The TemplateService implementation.
#[derive(Clone)]
pub struct TemplateApi {
    templates: Templates,
}

impl TemplateApi {
    /// The service over `templates`.
    pub fn new(templates: Templates) -> TemplateApi {
        TemplateApi { templates }
    }
}

// ----- from the wire -----

fn kind_from_proto(value: i32) -> Result<Option<Kind>> {
    match proto::TemplateKind::try_from(value) {
        Ok(proto::TemplateKind::Unspecified) => Ok(None),
        Ok(proto::TemplateKind::Job) => Ok(Some(Kind::Job)),
        Ok(proto::TemplateKind::Workflow) => Ok(Some(Kind::Workflow)),
        Err(_) => Err(Error::InvalidArgument(format!(
            "kind: unknown value {value}; use TEMPLATE_KIND_JOB or TEMPLATE_KIND_WORKFLOW, or leave it unset"
        ))),
    }
}

fn template_ref(workspace: &str, name: &str, kind: i32) -> Result<TemplateRef> {
    Ok(TemplateRef {
        workspace: workspace.to_owned(),
        name: name.to_owned(),
        kind: kind_from_proto(kind)?,
    })
}

/// A version as sent: 0 means "none given".
fn version(field: &str, value: u32) -> Result<Option<i32>> {
    if value == 0 {
        return Ok(None);
    }
    i32::try_from(value)
        .map(Some)
        .map_err(|_| Error::InvalidArgument(format!("{field}: v{value} is out of range")))
}

fn required_version(field: &str, value: Option<u32>) -> Result<Option<i32>> {
    match value {
        None => Ok(None),
        Some(0) => Err(Error::InvalidArgument(format!(
            "{field}: versions start at 1"
        ))),
        Some(v) => version(field, v),
    }
}

fn networks_from_proto(networks: Vec<proto::NetworkAttachment>) -> Vec<NetworkAttachment> {
    networks
        .into_iter()
        .map(|n| NetworkAttachment {
            name: n.name,
            aliases: n.aliases,
        })
        .collect()
}

fn job_spec_from_proto(spec: JobTemplateSpec) -> Result<JobSpecInput> {
    Ok(JobSpecInput {
        spec: spec
            .spec
            .map(spec_from_proto)
            .transpose()?
            .unwrap_or_default(),
        requirements: spec.requirements,
        priority: spec.priority,
        retries: spec.retries,
        retry_backoff: spec.retry_backoff.as_ref().map(raw_from_proto),
        inputs: spec.inputs.into_iter().map(input_from_proto).collect(),
        outputs: outputs_from_proto("outputs", spec.outputs)?,
        output_category: spec.output_category,
    })
}

fn job_change_from_proto(change: proto::JobTemplateChange) -> Result<JobChange> {
    let pull_policy = pull_policy_from_proto(change.pull_policy)?;
    Ok(JobChange {
        image: change.image,
        command: change.command.map(|c| c.args),
        env: change.env,
        unset_env: change.unset_env,
        secret_env: change.secret_env,
        unset_secret_env: change.unset_secret_env,
        working_dir: change.working_dir,
        memory_bytes: change.memory_bytes,
        cpus: change.cpus,
        pids_limit: change.pids_limit,
        timeout: change.timeout.as_ref().map(raw_from_proto),
        stop_grace_period: change.stop_grace_period.as_ref().map(raw_from_proto),
        networks: change.networks.map(|n| networks_from_proto(n.networks)),
        pull_policy,
        requirements: change.requirements,
        unset_requirements: change.unset_requirements,
        priority: change.priority,
        retries: change.retries,
        retry_backoff: change.retry_backoff.as_ref().map(raw_from_proto),
        inputs: change
            .inputs
            .map(|i| i.inputs.into_iter().map(input_from_proto).collect()),
        outputs: change
            .outputs
            .map(|o| outputs_from_proto("outputs", o.outputs))
            .transpose()?,
        output_category: change.output_category,
        reset: change.reset,
    })
}

fn create_from_proto(req: CreateTemplateRequest) -> Result<CreateInput> {
    let spec = match req.spec {
        Some(proto::create_template_request::Spec::Job(job)) => {
            NewSpec::Job(job_spec_from_proto(job)?)
        }
        Some(proto::create_template_request::Spec::Workflow(workflow)) => {
            NewSpec::Workflow(workflow_templates::spec_from_proto(workflow)?)
        }
        None => {
            return Err(Error::InvalidArgument(
                "spec: is required; give `job` (a container spec) or `workflow` (steps)".into(),
            ));
        }
    };
    Ok(CreateInput {
        workspace: req.workspace,
        name: req.name,
        description: req.description,
        inactive: req.inactive,
        spec,
        note: req.note,
    })
}

fn update_from_proto(req: UpdateTemplateRequest) -> Result<UpdateInput> {
    let change = match req.change {
        Some(proto::update_template_request::Change::Job(job)) => {
            Some(SpecChange::Job(job_change_from_proto(job)?))
        }
        Some(proto::update_template_request::Change::Workflow(workflow)) => Some(
            SpecChange::Workflow(workflow_templates::spec_from_proto(workflow)?),
        ),
        None => None,
    };
    Ok(UpdateInput {
        template: template_ref(&req.workspace, &req.name, req.kind)?,
        expect_version: required_version("expect_version", req.expect_version)?,
        description: req.description,
        active: req.active,
        change,
        note: req.note,
    })
}

/// A run's overrides as sent (a trigger rule's action holds them too).
pub(crate) fn overrides_from_proto(overrides: proto::TemplateOverrides) -> Overrides {
    Overrides {
        command: overrides.command,
        env: overrides.env,
        secret_env: overrides.secret_env,
        memory_bytes: overrides.memory_bytes,
        cpus: overrides.cpus,
        timeout: overrides.timeout.as_ref().map(raw_from_proto),
        priority: overrides.priority,
    }
}

fn run_from_proto(req: RunTemplateRequest) -> Result<RunInput> {
    Ok(RunInput {
        template: template_ref(&req.workspace, &req.name, req.kind)?,
        version: version("version", req.version)?,
        overrides: overrides_from_proto(req.overrides.unwrap_or_default()),
        params: req.params.into_iter().collect(),
        inputs: Vec::new(),
        id: None,
    })
}

// ----- to the wire -----

fn kind_to_proto(kind: Kind) -> proto::TemplateKind {
    match kind {
        Kind::Job => proto::TemplateKind::Job,
        Kind::Workflow => proto::TemplateKind::Workflow,
    }
}

fn version_to_proto(version: i32) -> u32 {
    u32::try_from(version).unwrap_or(0)
}

/// A job release's spec as the API returns it: defaults filled in, no secret values.
pub(crate) fn job_spec_to_proto(job: &JobSpec) -> JobTemplateSpec {
    JobTemplateSpec {
        spec: Some(spec_to_proto(&job.spec)),
        requirements: job
            .requirements
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        priority: job.priority,
        retries: job.retries,
        retry_backoff: job.retry_backoff_ms.map(duration_ms),
        inputs: job
            .inputs
            .iter()
            .map(|i| proto::Input {
                artifact: i.artifact.clone(),
                mount: i.mount.clone(),
                from: String::new(),
            })
            .collect(),
        outputs: outputs_to_proto(&job.spec.outputs),
        output_category: job.spec.output_category.clone().unwrap_or_default(),
    }
}

fn change_to_proto(change: Change) -> ReleaseChange {
    ReleaseChange {
        field: change.field,
        kind: match change.kind {
            ChangeKind::Added => proto::ChangeKind::Added,
            ChangeKind::Changed => proto::ChangeKind::Changed,
            ChangeKind::Removed => proto::ChangeKind::Removed,
        } as i32,
        // Belt and braces: a secret's values never leave, whatever the domain put there.
        before: if change.secret {
            String::new()
        } else {
            change.before
        },
        after: if change.secret {
            String::new()
        } else {
            change.after
        },
        secret: change.secret,
    }
}

fn release_to_proto(view: ReleaseView) -> Result<Release> {
    let changes = view.row.changes()?;
    let spec = match &view.spec {
        ReleaseSpec::Job(job) => proto::release::Spec::Job(job_spec_to_proto(job)),
        ReleaseSpec::Workflow(workflow) => {
            proto::release::Spec::Workflow(workflow_templates::spec_to_proto(workflow))
        }
    };
    Ok(Release {
        template: view.template,
        workspace: view.workspace,
        version: version_to_proto(view.row.version),
        spec: Some(spec),
        secret_env_keys: view.row.secret_env_keys,
        summary: view.row.summary,
        note: view.row.note,
        changes: changes.into_iter().map(change_to_proto).collect(),
        rolled_back_from: view.row.rolled_back_from.map(version_to_proto),
        created_by: view.created_by,
        created_at: Some(timestamp(view.row.created_at)),
        diff_against: view.diff_against.map(version_to_proto).unwrap_or(0),
        diff: view.diff.into_iter().map(change_to_proto).collect(),
    })
}

fn template_to_proto(view: TemplateView) -> Result<Template> {
    let row = &view.row;
    Ok(Template {
        id: row.id.to_string(),
        workspace: view.workspace.clone(),
        name: row.name.clone(),
        kind: kind_to_proto(row.kind) as i32,
        description: row.description.clone(),
        active: row.active,
        archived: row.archived_at.is_some(),
        latest_version: version_to_proto(row.latest_version),
        created_by: view.created_by.clone(),
        created_at: Some(timestamp(row.created_at)),
        updated_at: Some(timestamp(row.updated_at)),
        latest: Some(release_to_proto(view.latest)?),
    })
}

fn std_duration(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn stats_to_proto(stats: Stats) -> TemplateStats {
    TemplateStats {
        template: stats.template,
        since: Some(timestamp(stats.since)),
        runs: stats.runs,
        successes: stats.successes,
        failures: stats.failures,
        errors: stats.errors,
        aborted: stats.aborted,
        unfinished: stats.unfinished,
        average_duration: stats.average.map(std_duration),
        p95_duration: stats.p95.map(std_duration),
        by_version: stats
            .by_version
            .into_iter()
            .map(|v| proto::VersionStats {
                version: version_to_proto(v.version),
                runs: v.runs,
                successes: v.successes,
            })
            .collect(),
    }
}

fn deleted_to_proto(deleted: Deleted) -> DeleteTemplateResponse {
    DeleteTemplateResponse {
        deleted: deleted.deleted,
        archived: deleted.archived,
        message: deleted.message,
    }
}

#[tonic::async_trait]
impl TemplateService for TemplateApi {
    async fn create_template(
        &self,
        request: Request<CreateTemplateRequest>,
    ) -> Result<Response<Template>, Status> {
        let caller = identity(&request)?;
        let answer = async {
            let input = create_from_proto(request.into_inner())?;
            template_to_proto(self.templates.create(&caller, input).await?)
        };
        respond(answer.await)
    }

    async fn get_template(
        &self,
        request: Request<GetTemplateRequest>,
    ) -> Result<Response<Template>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let template = template_ref(&req.workspace, &req.name, req.kind)?;
            template_to_proto(self.templates.get(&caller, template).await?)
        };
        respond(answer.await)
    }

    async fn list_templates(
        &self,
        request: Request<ListTemplatesRequest>,
    ) -> Result<Response<ListTemplatesResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let query = ListQuery {
                workspace: req.workspace,
                kind: kind_from_proto(req.kind)?,
                include_archived: req.include_archived,
            };
            let templates = self
                .templates
                .list(&caller, query)
                .await?
                .into_iter()
                .map(template_to_proto)
                .collect::<Result<Vec<_>>>()?;
            Ok(ListTemplatesResponse { templates })
        };
        respond(answer.await)
    }

    async fn update_template(
        &self,
        request: Request<UpdateTemplateRequest>,
    ) -> Result<Response<Template>, Status> {
        let caller = identity(&request)?;
        let answer = async {
            let input = update_from_proto(request.into_inner())?;
            template_to_proto(self.templates.update(&caller, input).await?)
        };
        respond(answer.await)
    }

    async fn rollback_template(
        &self,
        request: Request<RollbackTemplateRequest>,
    ) -> Result<Response<Template>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let input = RollbackInput {
                template: template_ref(&req.workspace, &req.name, req.kind)?,
                version: version("version", req.version)?.ok_or_else(|| {
                    Error::InvalidArgument(
                        "version: is required; give the version whose spec to restore".into(),
                    )
                })?,
                expect_version: required_version("expect_version", req.expect_version)?,
                note: req.note,
            };
            template_to_proto(self.templates.rollback(&caller, input).await?)
        };
        respond(answer.await)
    }

    async fn list_releases(
        &self,
        request: Request<ListReleasesRequest>,
    ) -> Result<Response<ListReleasesResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let template = template_ref(&req.workspace, &req.name, req.kind)?;
            let before = version("before_version", req.before_version)?;
            let releases = self
                .templates
                .releases(&caller, template, req.limit, before)
                .await?
                .into_iter()
                .map(release_to_proto)
                .collect::<Result<Vec<_>>>()?;
            Ok(ListReleasesResponse { releases })
        };
        respond(answer.await)
    }

    async fn get_release(
        &self,
        request: Request<GetReleaseRequest>,
    ) -> Result<Response<Release>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let template = template_ref(&req.workspace, &req.name, req.kind)?;
            let wanted = version("version", req.version)?;
            let against = version("diff_against", req.diff_against)?;
            release_to_proto(
                self.templates
                    .release(&caller, template, wanted, against)
                    .await?,
            )
        };
        respond(answer.await)
    }

    async fn run_template(
        &self,
        request: Request<RunTemplateRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let caller = identity(&request)?;
        let answer = async {
            let input = run_from_proto(request.into_inner())?;
            request_to_proto(self.templates.run(&caller, input).await?)
        };
        respond(answer.await)
    }

    async fn get_template_stats(
        &self,
        request: Request<GetTemplateStatsRequest>,
    ) -> Result<Response<TemplateStats>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let template = template_ref(&req.workspace, &req.name, req.kind)?;
            let since = req.since.as_ref().map(raw_from_proto);
            Ok(stats_to_proto(
                self.templates.stats(&caller, template, since).await?,
            ))
        };
        respond(answer.await)
    }

    async fn archive_template(
        &self,
        request: Request<ArchiveTemplateRequest>,
    ) -> Result<Response<Template>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let template = template_ref(&req.workspace, &req.name, req.kind)?;
            template_to_proto(
                self.templates
                    .archive(&caller, template, req.restore)
                    .await?,
            )
        };
        respond(answer.await)
    }

    async fn delete_template(
        &self,
        request: Request<DeleteTemplateRequest>,
    ) -> Result<Response<DeleteTemplateResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let template = template_ref(&req.workspace, &req.name, req.kind)?;
            Ok(deleted_to_proto(
                self.templates.delete(&caller, template).await?,
            ))
        };
        respond(answer.await)
    }
}
