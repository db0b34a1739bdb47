//! `berth.v1.ServiceService` on the wire; `services` does the work.
//!
//! Conversions both ways for services, replicas, events, endpoints and log chunks. What
//! the wire can say but the domain cannot hold is refused here with INVALID_ARGUMENT
//! naming the field: an enum number the protocol does not know, a port beyond 65535, a
//! version beyond `i32`. Everything else (names, process types, durations, replica names)
//! is the domain's to check, so the rules live in one place.

use std::collections::BTreeMap;

use berth_common::proto::service_service_server::ServiceService;
use berth_common::proto::{
    self, CreateServiceRequest, DeleteServiceRequest, DeleteServiceResponse, DeployServiceRequest,
    GetServiceHistoryRequest, GetServiceHistoryResponse, GetServiceRequest,
    ListServiceEndpointsRequest, ListServiceEndpointsResponse, ListServicesRequest,
    ListServicesResponse, RunServiceCommandRequest, ScaleServiceRequest, Service, ServiceLogChunk,
    StreamServiceLogsRequest, UpdateServiceRequest, WorkRequest,
};
use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::api::auth::identity;
use crate::api::error::{respond, to_status};
use crate::api::work_requests::to_proto as request_to_proto;
use crate::api::{duration_ms, raw_from_proto, timestamp, timestamp_opt};
use berth_core::error::{Error, Result};
use berth_core::services::{
    self as domain, BackoffInput, CreateInput, DeployInput, EndpointView, EventView, HealthInput,
    HistoryQuery, LogsQuery, ReplicaView, RestartPolicy, RunInput, ServiceManager, ServiceRef,
    ServiceView, UpdateInput,
};
use berth_core::work::spec::PortMapping;

/// The ServiceService implementation.
#[derive(Clone)]
pub struct ServiceApi {
    services: ServiceManager,
}

impl ServiceApi {
    /// The service over `services`.
    pub fn new(services: ServiceManager) -> ServiceApi {
        ServiceApi { services }
    }
}

// ----- from the wire -----

fn service_ref(workspace: &str, name: &str) -> ServiceRef {
    ServiceRef {
        workspace: workspace.to_owned(),
        name: name.to_owned(),
    }
}

/// A restart policy as sent: UNSPECIFIED is `None` (the default, or unchanged).
fn policy_from_proto(value: i32) -> Result<Option<RestartPolicy>> {
    match proto::RestartPolicy::try_from(value) {
        Ok(proto::RestartPolicy::Unspecified) => Ok(None),
        Ok(proto::RestartPolicy::Always) => Ok(Some(RestartPolicy::Always)),
        Ok(proto::RestartPolicy::OnFailure) => Ok(Some(RestartPolicy::OnFailure)),
        Ok(proto::RestartPolicy::Never) => Ok(Some(RestartPolicy::Never)),
        Err(_) => Err(Error::InvalidArgument(format!(
            "restart_policy: unknown value {value}; use RESTART_POLICY_ALWAYS, \
             RESTART_POLICY_ON_FAILURE or RESTART_POLICY_NEVER, or leave it unset"
        ))),
    }
}

/// A release number as sent: 0 means "none given" (the latest).
fn version_from_proto(field: &str, value: u32) -> Result<Option<i32>> {
    if value == 0 {
        return Ok(None);
    }
    i32::try_from(value)
        .map(Some)
        .map_err(|_| Error::InvalidArgument(format!("{field}: v{value} is out of range")))
}

fn backoff_from_proto(backoff: Option<proto::Backoff>) -> BackoffInput {
    let Some(b) = backoff else {
        return BackoffInput::default();
    };
    BackoffInput {
        initial: b.initial.as_ref().map(raw_from_proto),
        max: b.max.as_ref().map(raw_from_proto),
        stable_after: b.stable_after.as_ref().map(raw_from_proto),
        success_delay: b.success_delay.as_ref().map(raw_from_proto),
        // 0 is proto3's "unset": a service always allows at least one local restart.
        max_local_restarts: (b.max_local_restarts != 0).then_some(b.max_local_restarts),
    }
}

fn health_from_proto(health: Option<proto::Health>) -> HealthInput {
    let Some(h) = health else {
        return HealthInput::default();
    };
    HealthInput {
        min_healthy: h.min_healthy.as_ref().map(raw_from_proto),
        deploy_deadline: h.deploy_deadline.as_ref().map(raw_from_proto),
    }
}

/// A port number as sent, named `field` when it does not fit.
fn port(field: &str, value: u32) -> Result<u16> {
    u16::try_from(value).map_err(|_| {
        Error::InvalidArgument(format!(
            "{field}: {value} is not a port; use 1 to 65535 (a host port of 0 lets Docker pick one)"
        ))
    })
}

/// Published ports as sent; the protocol's name and the range of container ports are
/// the domain's to check.
pub(crate) fn ports_from_proto(ports: Vec<proto::PortMapping>) -> Result<Vec<PortMapping>> {
    ports
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(PortMapping {
                container_port: port(&format!("ports[{i}].container_port"), p.container_port)?,
                host_port: port(&format!("ports[{i}].host_port"), p.host_port)?,
                protocol: p.protocol,
            })
        })
        .collect()
}

fn processes_from_proto(
    processes: std::collections::HashMap<String, proto::Process>,
) -> BTreeMap<String, domain::Process> {
    processes
        .into_iter()
        .map(|(name, p)| {
            (
                name,
                domain::Process {
                    replicas: p.replicas,
                    command: p.command,
                },
            )
        })
        .collect()
}

fn create_from_proto(req: CreateServiceRequest) -> Result<CreateInput> {
    Ok(CreateInput {
        version: version_from_proto("version", req.version)?,
        restart_policy: policy_from_proto(req.restart_policy)?,
        ports: ports_from_proto(req.ports)?,
        processes: processes_from_proto(req.processes),
        backoff: backoff_from_proto(req.backoff),
        health: health_from_proto(req.health),
        workspace: req.workspace,
        name: req.name,
        template: req.template,
    })
}

fn update_from_proto(req: UpdateServiceRequest) -> Result<UpdateInput> {
    let ports = if req.set_ports {
        Some(ports_from_proto(req.ports)?)
    } else if req.ports.is_empty() {
        None
    } else {
        return Err(Error::InvalidArgument(
            "ports: given without set_ports; set set_ports to replace the service's ports".into(),
        ));
    };
    Ok(UpdateInput {
        service: service_ref(&req.workspace, &req.name),
        restart_policy: policy_from_proto(req.restart_policy)?,
        backoff: backoff_from_proto(req.backoff),
        health: health_from_proto(req.health),
        ports,
        commands: req
            .commands
            .into_iter()
            .map(|(name, c)| (name, c.command))
            .collect(),
    })
}

fn deploy_from_proto(req: DeployServiceRequest) -> Result<DeployInput> {
    Ok(DeployInput {
        service: service_ref(&req.workspace, &req.name),
        version: version_from_proto("version", req.version)?,
        auto_revert: req.auto_revert,
        deadline: req.deadline.as_ref().map(raw_from_proto),
    })
}

fn history_from_proto(req: GetServiceHistoryRequest) -> Result<HistoryQuery> {
    Ok(HistoryQuery {
        service: service_ref(&req.workspace, &req.name),
        replica: req.replica,
        limit: req.limit,
        before: i64::try_from(req.before).map_err(|_| {
            Error::InvalidArgument(format!(
                "before: {} is not an event id; pass the next_before of the previous page",
                req.before
            ))
        })?,
    })
}

// ----- to the wire -----

fn version_to_proto(version: i32) -> u32 {
    u32::try_from(version).unwrap_or(0)
}

fn millis_to_proto(ms: i64) -> prost_types::Duration {
    duration_ms(u64::try_from(ms).unwrap_or(0))
}

fn policy_to_proto(policy: RestartPolicy) -> proto::RestartPolicy {
    match policy {
        RestartPolicy::Always => proto::RestartPolicy::Always,
        RestartPolicy::OnFailure => proto::RestartPolicy::OnFailure,
        RestartPolicy::Never => proto::RestartPolicy::Never,
    }
}

pub(crate) fn port_to_proto(p: &PortMapping) -> proto::PortMapping {
    proto::PortMapping {
        container_port: u32::from(p.container_port),
        host_port: u32::from(p.host_port),
        protocol: p.protocol.clone(),
    }
}

fn replica_to_proto(replica: ReplicaView) -> proto::Replica {
    proto::Replica {
        process: replica.name.process,
        index: replica.name.index,
        state: replica.state.as_str().to_owned(),
        version: version_to_proto(replica.version),
        work_request_id: replica
            .request_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        worker: replica.worker.unwrap_or_default(),
        failures: u32::try_from(replica.failures).unwrap_or(0),
        restart_at: timestamp_opt(replica.restart_at),
        healthy_since: timestamp_opt(replica.healthy_since),
        next_work_request_id: replica
            .next_request_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}

fn service_to_proto(view: ServiceView) -> Result<Service> {
    let row = view.row;
    let bad = |what: &str, e: serde_json::Error| {
        Error::internal(format!(
            "stored {what} of service {} unreadable: {e}",
            row.id
        ))
    };
    let processes: BTreeMap<String, domain::Process> =
        serde_json::from_value(row.processes.clone()).map_err(|e| bad("processes", e))?;
    let ports: Vec<PortMapping> =
        serde_json::from_value(row.ports.clone()).map_err(|e| bad("ports", e))?;
    let policy = RestartPolicy::parse(&row.restart_policy).ok_or_else(|| {
        Error::internal(format!(
            "stored restart policy {:?} of service {} unknown",
            row.restart_policy, row.id
        ))
    })?;
    // A service never deployed since it was created has no deploy to show.
    let deploy = (!row.deploy_state.is_empty()).then(|| proto::Deploy {
        state: row.deploy_state.clone(),
        to_version: version_to_proto(row.version),
        from_version: row.deploy_from.map(version_to_proto).unwrap_or(0),
        auto_revert: row.deploy_auto_revert,
        started_at: timestamp_opt(row.deploy_started_at),
        deadline: timestamp_opt(row.deploy_deadline_at),
        message: row.deploy_message.clone(),
    });
    Ok(Service {
        id: row.id.to_string(),
        workspace: view.workspace,
        name: row.name,
        template: view.template,
        version: version_to_proto(row.version),
        stable_version: row.stable_version.map(version_to_proto).unwrap_or(0),
        processes: processes
            .into_iter()
            .map(|(name, p)| {
                (
                    name,
                    proto::Process {
                        replicas: p.replicas,
                        command: p.command,
                    },
                )
            })
            .collect(),
        restart_policy: policy_to_proto(policy) as i32,
        backoff: Some(proto::Backoff {
            initial: Some(millis_to_proto(row.backoff_initial_ms)),
            max: Some(millis_to_proto(row.backoff_max_ms)),
            stable_after: Some(millis_to_proto(row.stable_after_ms)),
            success_delay: Some(millis_to_proto(row.success_delay_ms)),
            max_local_restarts: u32::try_from(row.max_local_restarts).unwrap_or(0),
        }),
        health: Some(proto::Health {
            min_healthy: Some(millis_to_proto(row.min_healthy_ms)),
            deploy_deadline: Some(millis_to_proto(row.deploy_deadline_ms)),
        }),
        ports: ports.iter().map(port_to_proto).collect(),
        deploy,
        replicas: view.replicas.into_iter().map(replica_to_proto).collect(),
        created_by: view.created_by,
        created_at: Some(timestamp(row.created_at)),
        updated_at: Some(timestamp(row.updated_at)),
    })
}

fn event_to_proto(event: EventView) -> proto::ServiceEvent {
    let row = event.row;
    let replica = match (row.process, row.slot_index) {
        (Some(process), Some(index)) => format!("{process}.{index}"),
        _ => String::new(),
    };
    proto::ServiceEvent {
        id: u64::try_from(row.id).unwrap_or(0),
        at: Some(timestamp(row.at)),
        kind: row.kind,
        replica,
        reason: row.reason,
        version: row.version.map(version_to_proto).unwrap_or(0),
        work_request_id: row.request_id.map(|id| id.to_string()).unwrap_or_default(),
        worker: event.worker.unwrap_or_default(),
        exit_code: row.exit_code,
        by: event.by.unwrap_or_default(),
    }
}

fn endpoint_to_proto(endpoint: EndpointView) -> proto::Endpoint {
    proto::Endpoint {
        replica: endpoint.replica.to_string(),
        worker: endpoint.worker,
        host: endpoint.host,
        host_port: u32::from(endpoint.host_port),
        container_port: u32::from(endpoint.container_port),
        protocol: endpoint.protocol,
        work_request_id: endpoint.request_id.to_string(),
    }
}

fn chunk_to_proto(chunk: domain::ServiceLogChunk) -> ServiceLogChunk {
    ServiceLogChunk {
        replica: chunk.replica.to_string(),
        work_request_id: chunk.request_id.to_string(),
        attempt: chunk.attempt,
        stream: chunk.stream,
        offset: chunk.offset,
        data: chunk.data,
    }
}

#[tonic::async_trait]
impl ServiceService for ServiceApi {
    type StreamServiceLogsStream =
        futures::stream::BoxStream<'static, Result<ServiceLogChunk, Status>>;

    async fn create_service(
        &self,
        request: Request<CreateServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        let caller = identity(&request)?;
        let answer = async {
            let input = create_from_proto(request.into_inner())?;
            service_to_proto(self.services.create(&caller, input).await?)
        };
        respond(answer.await)
    }

    async fn get_service(
        &self,
        request: Request<GetServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let service = service_ref(&req.workspace, &req.name);
            service_to_proto(self.services.get(&caller, &service).await?)
        };
        respond(answer.await)
    }

    async fn list_services(
        &self,
        request: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let services = self
                .services
                .list(&caller, &req.workspace)
                .await?
                .into_iter()
                .map(service_to_proto)
                .collect::<Result<Vec<_>>>()?;
            Ok(ListServicesResponse { services })
        };
        respond(answer.await)
    }

    async fn update_service(
        &self,
        request: Request<UpdateServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        let caller = identity(&request)?;
        let answer = async {
            let input = update_from_proto(request.into_inner())?;
            service_to_proto(self.services.update(&caller, input).await?)
        };
        respond(answer.await)
    }

    async fn scale_service(
        &self,
        request: Request<ScaleServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let service = service_ref(&req.workspace, &req.name);
            let replicas: BTreeMap<String, u32> = req.replicas.into_iter().collect();
            service_to_proto(self.services.scale(&caller, &service, &replicas).await?)
        };
        respond(answer.await)
    }

    async fn deploy_service(
        &self,
        request: Request<DeployServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        let caller = identity(&request)?;
        let answer = async {
            let input = deploy_from_proto(request.into_inner())?;
            service_to_proto(self.services.deploy(&caller, input).await?)
        };
        respond(answer.await)
    }

    async fn get_service_history(
        &self,
        request: Request<GetServiceHistoryRequest>,
    ) -> Result<Response<GetServiceHistoryResponse>, Status> {
        let caller = identity(&request)?;
        let answer = async {
            let query = history_from_proto(request.into_inner())?;
            let page = self.services.history(&caller, &query).await?;
            Ok(GetServiceHistoryResponse {
                events: page.events.into_iter().map(event_to_proto).collect(),
                next_before: page
                    .next_before
                    .and_then(|id| u64::try_from(id).ok())
                    .unwrap_or(0),
            })
        };
        respond(answer.await)
    }

    async fn list_service_endpoints(
        &self,
        request: Request<ListServiceEndpointsRequest>,
    ) -> Result<Response<ListServiceEndpointsResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let service = service_ref(&req.workspace, &req.name);
            let endpoints = self.services.endpoints(&caller, &service).await?;
            Ok(ListServiceEndpointsResponse {
                endpoints: endpoints.into_iter().map(endpoint_to_proto).collect(),
            })
        };
        respond(answer.await)
    }

    async fn stream_service_logs(
        &self,
        request: Request<StreamServiceLogsRequest>,
    ) -> Result<Response<Self::StreamServiceLogsStream>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let query = LogsQuery {
            service: service_ref(&req.workspace, &req.name),
            replica: req.replica,
            follow: req.follow,
            all: req.all,
        };
        let chunks = self
            .services
            .logs(&caller, query)
            .await
            .map_err(to_status)?;
        let stream =
            ReceiverStream::new(chunks).map(|chunk| chunk.map(chunk_to_proto).map_err(to_status));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn run_service_command(
        &self,
        request: Request<RunServiceCommandRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let input = RunInput {
                service: service_ref(&req.workspace, &req.name),
                command: req.command,
                process: req.process,
            };
            request_to_proto(self.services.run(&caller, input).await?)
        };
        respond(answer.await)
    }

    async fn delete_service(
        &self,
        request: Request<DeleteServiceRequest>,
    ) -> Result<Response<DeleteServiceResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let service = service_ref(&req.workspace, &req.name);
            self.services.delete(&caller, &service).await?;
            Ok(DeleteServiceResponse {})
        };
        respond(answer.await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::InvalidArgument(message)) => message,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn ports_beyond_u16_are_refused_naming_the_entry_and_field() {
        let ports = vec![
            proto::PortMapping {
                container_port: 8080,
                host_port: 18080,
                protocol: "tcp".into(),
            },
            proto::PortMapping {
                container_port: 70000,
                host_port: 0,
                protocol: String::new(),
            },
        ];
        let message = invalid(ports_from_proto(ports));
        assert!(
            message.starts_with("ports[1].container_port: 70000 is not a port"),
            "{message}"
        );
        let message = invalid(ports_from_proto(vec![proto::PortMapping {
            container_port: 80,
            host_port: 65536,
            protocol: "udp".into(),
        }]));
        assert!(
            message.starts_with("ports[0].host_port: 65536"),
            "{message}"
        );
        let ok = ports_from_proto(vec![proto::PortMapping {
            container_port: 53,
            host_port: 0,
            protocol: "udp".into(),
        }])
        .expect("valid");
        assert_eq!(
            ok,
            [PortMapping {
                container_port: 53,
                host_port: 0,
                protocol: "udp".into()
            }]
        );
        assert_eq!(port_to_proto(&ok[0]).container_port, 53);
    }

    #[test]
    fn restart_policies_map_both_ways_and_unknown_numbers_name_the_field() {
        for policy in [
            RestartPolicy::Always,
            RestartPolicy::OnFailure,
            RestartPolicy::Never,
        ] {
            let wire = policy_to_proto(policy) as i32;
            assert_eq!(policy_from_proto(wire).expect("known"), Some(policy));
        }
        assert_eq!(policy_from_proto(0).expect("unset"), None);
        let message = invalid(policy_from_proto(9));
        assert!(
            message.starts_with("restart_policy: unknown value 9"),
            "{message}"
        );
    }

    #[test]
    fn versions_beyond_i32_and_ports_without_set_ports_are_refused() {
        assert_eq!(version_from_proto("version", 0).expect("latest"), None);
        assert_eq!(version_from_proto("version", 3).expect("v3"), Some(3));
        let message = invalid(version_from_proto("version", u32::MAX));
        assert!(message.starts_with("version: "), "{message}");
        let message = invalid(update_from_proto(UpdateServiceRequest {
            ports: vec![proto::PortMapping {
                container_port: 80,
                ..Default::default()
            }],
            ..Default::default()
        }));
        assert!(message.starts_with("ports: "), "{message}");
        let cleared = update_from_proto(UpdateServiceRequest {
            set_ports: true,
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(cleared.ports, Some(Vec::new()));
    }

    #[test]
    fn unset_backoff_and_health_fields_stay_unset() {
        let input = create_from_proto(CreateServiceRequest {
            backoff: Some(proto::Backoff {
                initial: Some(prost_types::Duration {
                    seconds: 2,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(input.backoff.initial.map(|d| d.seconds), Some(2));
        assert_eq!(input.backoff.max, None);
        assert_eq!(input.backoff.max_local_restarts, None);
        assert_eq!(input.health, HealthInput::default());
        assert_eq!(input.restart_policy, None);
        assert_eq!(input.version, None);
    }
}
