//! `berth.v1.WorkRequestService` on the wire; `work::requests` does the work.
//!
//! Conversions both ways live here: wire messages become the domain's plain inputs
//! (`SubmitInput`, `SpecInput`, `WorkflowInput`), and `RequestView`s become
//! `WorkRequest`s. Enum numbers the protocol does not know are refused here with
//! INVALID_ARGUMENT naming the field.

use berth_common::proto::work_request_service_server::WorkRequestService;
use berth_common::proto::{
    self, AdjustPriorityRequest, CancelWorkRequestRequest, ContainerSpec, GetWorkRequestRequest,
    ListQueueRequest, ListQueueResponse, ListWorkRequestsRequest, ListWorkRequestsResponse,
    LogChunk, QueueEntry, RetryWorkRequestRequest, StreamLogsRequest, SubmitWorkRequestRequest,
    SubmitWorkflowRequest, UnblockWorkRequestRequest, WorkRequest, WorkRequestStatus,
};
use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::api::auth::identity;
use crate::api::error::{respond, to_status};
use crate::api::{duration_ms, raw_from_proto, raw_to_proto, string_map, timestamp, timestamp_opt};
use berth_core::error::{Error, Result};
use berth_core::store::models::AttemptRow;
use berth_core::templates::Templates;
use berth_core::work::ids::WorkRequestId;
use berth_core::work::logs::Chunk;
use berth_core::work::requests::{ListQuery, LogQuery, PriorityChange, RequestView, WorkRequests};
use berth_core::work::spec::{
    InputInput, NetworkAttachment, OutputSpec, OutputWhen, PortMapping, PullPolicy, SpecInput,
    StoredSpec, SubmitInput,
};
use berth_core::work::state::{Status as WrStatus, UnblockStrategy, WorkResult};
use berth_core::work::workflow::{StepInput, WorkflowInput};

/// The WorkRequestService implementation.
#[derive(Clone)]
pub struct WorkRequestApi {
    requests: WorkRequests,
    /// Workflows go through templates, which resolve the steps that name one.
    templates: Templates,
}

impl WorkRequestApi {
    /// The service over `requests`, with workflow steps naming templates resolved by
    /// `templates`.
    pub fn new(requests: WorkRequests, templates: Templates) -> WorkRequestApi {
        WorkRequestApi {
            requests,
            templates,
        }
    }
}

// ----- from the wire -----

pub(crate) fn pull_policy_from_proto(value: i32) -> Result<Option<PullPolicy>> {
    match proto::PullPolicy::try_from(value) {
        Ok(proto::PullPolicy::Unspecified) => Ok(None),
        Ok(proto::PullPolicy::Always) => Ok(Some(PullPolicy::Always)),
        Ok(proto::PullPolicy::IfNotPresent) => Ok(Some(PullPolicy::IfNotPresent)),
        Ok(proto::PullPolicy::Never) => Ok(Some(PullPolicy::Never)),
        Err(_) => Err(Error::InvalidArgument(format!(
            "spec.pull_policy: unknown value {value}; use PULL_POLICY_ALWAYS, PULL_POLICY_IF_NOT_PRESENT or PULL_POLICY_NEVER, or leave it unset"
        ))),
    }
}

/// A container spec as sent.
pub fn spec_from_proto(spec: ContainerSpec) -> Result<SpecInput> {
    Ok(SpecInput {
        ports: spec
            .ports
            .into_iter()
            .map(|p| PortMapping {
                // Out of range saturates; the submission is refused for any port anyway.
                container_port: u16::try_from(p.container_port).unwrap_or(u16::MAX),
                host_port: u16::try_from(p.host_port).unwrap_or(u16::MAX),
                protocol: p.protocol,
            })
            .collect(),
        pull_policy: pull_policy_from_proto(spec.pull_policy)?,
        image: spec.image,
        command: spec.command,
        env: spec.env,
        secret_env: spec.secret_env,
        working_dir: spec.working_dir,
        memory_bytes: spec.memory_bytes,
        cpus: spec.cpus,
        pids_limit: spec.pids_limit,
        timeout: spec.timeout.as_ref().map(raw_from_proto),
        stop_grace_period: spec.stop_grace_period.as_ref().map(raw_from_proto),
        network: spec.network,
        networks: spec
            .networks
            .into_iter()
            .map(|n| NetworkAttachment {
                name: n.name,
                aliases: n.aliases,
            })
            .collect(),
    })
}

fn submit_from_proto(req: SubmitWorkRequestRequest) -> Result<SubmitInput> {
    let unblock = match proto::UnblockStrategy::try_from(req.unblock) {
        Ok(proto::UnblockStrategy::Unspecified | proto::UnblockStrategy::Deps) => {
            UnblockStrategy::Deps
        }
        Ok(proto::UnblockStrategy::Manual) => UnblockStrategy::Manual,
        Err(_) => {
            return Err(Error::InvalidArgument(format!(
                "unblock: unknown strategy {}; use UNBLOCK_STRATEGY_DEPS or UNBLOCK_STRATEGY_MANUAL",
                req.unblock
            )));
        }
    };
    Ok(SubmitInput {
        spec: req.spec.map(spec_from_proto).transpose()?,
        requirements: req.requirements,
        priority: req.priority,
        workspace: req.workspace,
        after: req.after,
        unblock,
        allow_failure: req.allow_failure,
        retries: req.retries,
        retry_backoff: req.retry_backoff.as_ref().map(raw_from_proto),
        inputs: req.inputs.into_iter().map(input_from_proto).collect(),
        outputs: outputs_from_proto("outputs", req.outputs)?,
        output_category: req.output_category,
    })
}

pub(crate) fn input_from_proto(input: proto::Input) -> InputInput {
    InputInput {
        artifact: input.artifact,
        mount: input.mount,
        from: input.from,
    }
}

pub(crate) fn outputs_from_proto(
    field: &str,
    outputs: Vec<proto::Output>,
) -> Result<Vec<OutputSpec>> {
    outputs
        .into_iter()
        .enumerate()
        .map(|(i, output)| {
            let when = match proto::OutputWhen::try_from(output.when) {
                Ok(proto::OutputWhen::Unspecified | proto::OutputWhen::Success) => {
                    OutputWhen::Success
                }
                Ok(proto::OutputWhen::Always) => OutputWhen::Always,
                Err(_) => {
                    return Err(Error::InvalidArgument(format!(
                        "{field}[{i}].when: unknown value {}; use OUTPUT_WHEN_SUCCESS or OUTPUT_WHEN_ALWAYS",
                        output.when
                    )));
                }
            };
            Ok(OutputSpec {
                path: output.path,
                when,
            })
        })
        .collect()
}

/// The outputs as the API (and Assign) sends them.
pub fn outputs_to_proto(outputs: &[OutputSpec]) -> Vec<proto::Output> {
    outputs
        .iter()
        .map(|output| proto::Output {
            path: output.path.clone(),
            when: match output.when {
                OutputWhen::Success => proto::OutputWhen::Success,
                OutputWhen::Always => proto::OutputWhen::Always,
            } as i32,
        })
        .collect()
}

fn workflow_from_proto(req: SubmitWorkflowRequest) -> Result<WorkflowInput> {
    let steps = req
        .steps
        .into_iter()
        .map(step_from_proto)
        .collect::<Result<Vec<_>>>()?;
    Ok(WorkflowInput {
        name: req.name,
        workspace: req.workspace,
        steps,
        origin: None,
        id: None,
    })
}

/// One workflow step as sent; errors name the step.
pub(crate) fn step_from_proto(step: proto::WorkflowStep) -> Result<StepInput> {
    let spec = step
        .spec
        .map(spec_from_proto)
        .transpose()
        .map_err(|e| Error::InvalidArgument(format!("steps[{:?}].{e}", step.name)))?;
    let outputs = outputs_from_proto("outputs", step.outputs).map_err(|e| {
        Error::InvalidArgument(format!("steps[{:?}].{}", step.name, e.public_message()))
    })?;
    Ok(StepInput {
        name: step.name,
        spec,
        needs: step.needs,
        requirements: step.requirements,
        priority: step.priority,
        allow_failure: step.allow_failure,
        inputs: step.inputs.into_iter().map(input_from_proto).collect(),
        outputs,
        output_category: step.output_category,
        template: step.template,
        origin: None,
    })
}

fn status_from_proto(value: i32) -> Result<Option<WrStatus>> {
    match WorkRequestStatus::try_from(value) {
        Ok(WorkRequestStatus::Unspecified) => Ok(None),
        Ok(WorkRequestStatus::Blocked) => Ok(Some(WrStatus::Blocked)),
        Ok(WorkRequestStatus::Pending) => Ok(Some(WrStatus::Pending)),
        Ok(WorkRequestStatus::Running) => Ok(Some(WrStatus::Running)),
        Ok(WorkRequestStatus::Completed) => Ok(Some(WrStatus::Completed)),
        Ok(WorkRequestStatus::Aborted) => Ok(Some(WrStatus::Aborted)),
        Err(_) => Err(Error::InvalidArgument(format!(
            "status: unknown status {value}"
        ))),
    }
}

// ----- to the wire -----

/// The spec as the API returns it (and, with secret values added, as Assign sends it).
pub fn spec_to_proto(spec: &StoredSpec) -> ContainerSpec {
    let input = spec.to_input();
    ContainerSpec {
        ports: input
            .ports
            .into_iter()
            .map(|p| proto::PortMapping {
                container_port: u32::from(p.container_port),
                host_port: u32::from(p.host_port),
                protocol: p.protocol,
            })
            .collect(),
        image: input.image,
        command: input.command,
        env: input.env,
        secret_env: input.secret_env,
        working_dir: input.working_dir,
        memory_bytes: input.memory_bytes,
        cpus: input.cpus,
        pids_limit: input.pids_limit,
        timeout: input.timeout.map(raw_to_proto),
        network: input.network,
        networks: input
            .networks
            .into_iter()
            .map(|n| proto::NetworkAttachment {
                name: n.name,
                aliases: n.aliases,
            })
            .collect(),
        pull_policy: match spec.pull_policy {
            PullPolicy::Always => proto::PullPolicy::Always,
            PullPolicy::IfNotPresent => proto::PullPolicy::IfNotPresent,
            PullPolicy::Never => proto::PullPolicy::Never,
        } as i32,
        stop_grace_period: input.stop_grace_period.map(raw_to_proto),
    }
}

fn status_to_proto(status: WrStatus) -> WorkRequestStatus {
    match status {
        WrStatus::Blocked => WorkRequestStatus::Blocked,
        WrStatus::Pending => WorkRequestStatus::Pending,
        WrStatus::Running => WorkRequestStatus::Running,
        WrStatus::Completed => WorkRequestStatus::Completed,
        WrStatus::Aborted => WorkRequestStatus::Aborted,
    }
}

fn result_to_proto(result: Option<WorkResult>) -> proto::WorkResult {
    match result {
        Some(WorkResult::Success) => proto::WorkResult::Success,
        Some(WorkResult::Failure) => proto::WorkResult::Failure,
        Some(WorkResult::Error) => proto::WorkResult::Error,
        None => proto::WorkResult::Unspecified,
    }
}

fn attempt_to_proto(row: AttemptRow) -> proto::Attempt {
    let ms = |value: Option<i64>| value.and_then(|ms| u64::try_from(ms).ok()).map(duration_ms);
    proto::Attempt {
        number: u32::try_from(row.number).unwrap_or(0),
        worker: row.worker_name,
        container_id: row.container_id,
        exit_code: row.exit_code,
        reason: row.reason.as_str().to_owned(),
        assigned_at: Some(timestamp(row.assigned_at)),
        started_at: timestamp_opt(row.started_at),
        finished_at: timestamp_opt(row.finished_at),
        peak_memory_bytes: row.peak_memory_bytes.and_then(|b| u64::try_from(b).ok()),
        cpu_time: row.cpu_time_ns.map(|ns| prost_types::Duration {
            seconds: ns / 1_000_000_000,
            nanos: i32::try_from(ns % 1_000_000_000).unwrap_or(0),
        }),
        message: row.message,
        pull_duration: ms(row.pull_ms),
        run_duration: ms(row.run_ms),
        log_incomplete: row.log_incomplete,
        output_artifact_id: row
            .output_artifact_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}

/// A request as the API returns it.
pub(crate) fn to_proto(view: RequestView) -> Result<WorkRequest> {
    let stored = view.spec()?;
    let spec = stored.as_ref().map(spec_to_proto);
    let outputs = stored
        .as_ref()
        .map(|s| outputs_to_proto(&s.outputs))
        .unwrap_or_default();
    let output_category = stored.and_then(|s| s.output_category).unwrap_or_default();
    let output_artifact_id = view
        .attempts
        .last()
        .and_then(|a| a.output_artifact_id)
        .map(|id| id.to_string())
        .unwrap_or_default();
    let RequestView {
        row,
        workspace,
        created_by,
        attempts,
        depends_on,
        children,
        pending_reason,
        queue_position,
        inputs,
        template,
        service,
        trigger,
    } = view;
    let (service, service_replica) = service.unzip();
    let (trigger_rule, trigger_event_id) = trigger.unzip();
    Ok(WorkRequest {
        id: row.id.to_string(),
        workspace,
        status: status_to_proto(row.status) as i32,
        result: result_to_proto(row.result) as i32,
        spec,
        secret_env_keys: row.secret_env_keys,
        requirements: string_map(&row.requirements),
        priority_base: row.priority_base,
        priority_adjustment: row.priority_adjustment,
        priority: row.priority_base.saturating_add(row.priority_adjustment),
        created_by,
        created_at: Some(timestamp(row.created_at)),
        started_at: timestamp_opt(row.started_at),
        completed_at: timestamp_opt(row.completed_at),
        exit_code: row.exit_code,
        reason: row.reason.as_str().to_owned(),
        attempt_count: u32::try_from(row.attempt_count).unwrap_or(0),
        attempts: attempts.into_iter().map(attempt_to_proto).collect(),
        message: row.message,
        log_truncated: row.log_truncated,
        pending_reason,
        queue_position,
        depends_on: depends_on.iter().map(WorkRequestId::to_string).collect(),
        parent_id: row.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        children: children.into_iter().map(to_proto).collect::<Result<_>>()?,
        unblock: match row.unblock_strategy {
            UnblockStrategy::Manual => proto::UnblockStrategy::Manual,
            UnblockStrategy::Deps => proto::UnblockStrategy::Deps,
        } as i32,
        allow_failure: row.allow_failure,
        retries_left: u32::try_from(row.retries_left).unwrap_or(0),
        name: row.name,
        inputs: inputs
            .into_iter()
            .map(|input| proto::InputPin {
                mount: input.mount,
                artifact_id: input
                    .artifact_id
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                from_work_request_id: input.from.map(|id| id.to_string()).unwrap_or_default(),
            })
            .collect(),
        outputs,
        output_category,
        output_artifact_id,
        template: template.unwrap_or_default(),
        template_version: row
            .template_version
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        service: service.unwrap_or_default(),
        service_replica: service_replica.unwrap_or_default(),
        trigger_rule: trigger_rule.unwrap_or_default(),
        trigger_event_id: trigger_event_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
    })
}

fn chunk_to_proto(chunk: Chunk) -> LogChunk {
    LogChunk {
        attempt: u32::try_from(chunk.attempt).unwrap_or(0),
        stream: u32::try_from(chunk.stream.code()).unwrap_or(0),
        offset: chunk.offset,
        data: chunk.data,
    }
}

fn id(text: &str) -> Result<WorkRequestId> {
    WorkRequestId::parse("id", text)
}

#[tonic::async_trait]
impl WorkRequestService for WorkRequestApi {
    type StreamLogsStream = futures::stream::BoxStream<'static, Result<LogChunk, Status>>;

    async fn submit_work_request(
        &self,
        request: Request<SubmitWorkRequestRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let caller = identity(&request)?;
        let submitted = async {
            let input = submit_from_proto(request.into_inner())?;
            to_proto(self.requests.submit(&caller, input).await?)
        };
        respond(submitted.await)
    }

    async fn get_work_request(
        &self,
        request: Request<GetWorkRequestRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let caller = identity(&request)?;
        let found = async {
            to_proto(
                self.requests
                    .get(&caller, id(&request.get_ref().id)?)
                    .await?,
            )
        };
        respond(found.await)
    }

    async fn list_work_requests(
        &self,
        request: Request<ListWorkRequestsRequest>,
    ) -> Result<Response<ListWorkRequestsResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let listed = async {
            let page = self
                .requests
                .list(
                    &caller,
                    ListQuery {
                        status: status_from_proto(req.status)?,
                        workspace: req.workspace,
                        page_size: req.page_size,
                        page_token: req.page_token,
                    },
                )
                .await?;
            Ok(ListWorkRequestsResponse {
                work_requests: page
                    .requests
                    .into_iter()
                    .map(to_proto)
                    .collect::<Result<_>>()?,
                next_page_token: page.next_page_token,
            })
        };
        respond(listed.await)
    }

    async fn cancel_work_request(
        &self,
        request: Request<CancelWorkRequestRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let caller = identity(&request)?;
        let cancelled = async {
            to_proto(
                self.requests
                    .cancel(&caller, id(&request.get_ref().id)?)
                    .await?,
            )
        };
        respond(cancelled.await)
    }

    async fn stream_logs(
        &self,
        request: Request<StreamLogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let chunks = async {
            self.requests
                .logs(
                    &caller,
                    id(&req.id)?,
                    LogQuery {
                        attempt: req.attempt,
                        follow: req.follow,
                        stdout_offset: req.stdout_offset,
                        stderr_offset: req.stderr_offset,
                    },
                )
                .await
        }
        .await
        .map_err(to_status)?;
        let stream =
            ReceiverStream::new(chunks).map(|chunk| chunk.map(chunk_to_proto).map_err(to_status));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn adjust_priority(
        &self,
        request: Request<AdjustPriorityRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let change = PriorityChange {
            delta: req.delta,
            set: req.set,
        };
        let adjusted = async {
            to_proto(
                self.requests
                    .adjust_priority(&caller, id(&req.id)?, change)
                    .await?,
            )
        };
        respond(adjusted.await)
    }

    async fn list_queue(
        &self,
        request: Request<ListQueueRequest>,
    ) -> Result<Response<ListQueueResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let listed = async {
            let views = self
                .requests
                .queue(&caller, &req.workspace, req.limit)
                .await?;
            let entries = views
                .into_iter()
                .map(|view| {
                    let (position, reason) = (view.queue_position, view.pending_reason.clone());
                    Ok(QueueEntry {
                        work_request: Some(to_proto(view)?),
                        position,
                        pending_reason: reason,
                    })
                })
                .collect::<Result<_>>()?;
            Ok(ListQueueResponse { entries })
        };
        respond(listed.await)
    }

    async fn unblock_work_request(
        &self,
        request: Request<UnblockWorkRequestRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let decided = async {
            to_proto(
                self.requests
                    .unblock(&caller, id(&req.id)?, req.accept)
                    .await?,
            )
        };
        respond(decided.await)
    }

    async fn retry_work_request(
        &self,
        request: Request<RetryWorkRequestRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let caller = identity(&request)?;
        let retried = async {
            to_proto(
                self.requests
                    .retry(&caller, id(&request.get_ref().id)?)
                    .await?,
            )
        };
        respond(retried.await)
    }

    async fn submit_workflow(
        &self,
        request: Request<SubmitWorkflowRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let caller = identity(&request)?;
        let submitted = async {
            let input = workflow_from_proto(request.into_inner())?;
            to_proto(self.templates.submit_workflow(&caller, input).await?)
        };
        respond(submitted.await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_both_ways() {
        for &status in WrStatus::ALL {
            assert_eq!(
                status_from_proto(status_to_proto(status) as i32).expect("known"),
                Some(status)
            );
        }
        assert!(matches!(
            status_from_proto(99),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn unknown_pull_policy_numbers_are_refused_naming_the_field() {
        for bad in [4, 99, -1] {
            let spec = ContainerSpec {
                image: "busybox".into(),
                pull_policy: bad,
                ..Default::default()
            };
            match spec_from_proto(spec) {
                Err(Error::InvalidArgument(m)) => {
                    assert!(m.starts_with("spec.pull_policy: unknown value"), "{m}");
                }
                other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_spec_returned_by_the_api_reads_back_as_the_same_input() {
        let input = SpecInput {
            image: "busybox:1.36".into(),
            command: vec!["true".into()],
            env: [("A".to_owned(), "1".to_owned())].into(),
            working_dir: "/w".into(),
            memory_bytes: Some(100 << 20),
            cpus: Some(1.5),
            pids_limit: Some(10),
            timeout: Some(berth_core::work::spec::RawDuration {
                seconds: 61,
                nanos: 250_000_000,
            }),
            stop_grace_period: Some(berth_core::work::spec::RawDuration {
                seconds: 3,
                nanos: 0,
            }),
            network: "bridge".into(),
            pull_policy: Some(PullPolicy::Never),
            ..Default::default()
        };
        let stored = berth_core::work::spec::validate_spec(&input, &Default::default())
            .expect("valid")
            .spec;
        let wire = spec_to_proto(&stored);
        assert!(wire.secret_env.is_empty());
        assert_eq!(spec_from_proto(wire).expect("valid"), input);
    }
}
