//! `berth.v1.AgentService`: the worker-facing protocol on the wire.
//!
//! `Connect` is one long-lived stream per worker. This module only speaks the protocol:
//! it waits for the Hello, checks the protocol version, decodes the worker's messages
//! into `fleet::agents` types and encodes what the hub queues for the worker
//! (`ToWorker`) as `ServerMessage`s, and it ends the stream when the server shuts down,
//! when the worker's token is disabled or deleted, when `leases` finds the worker silent
//! for the lease TTL, or when the worker stops reading its stream. What each message
//! does is `fleet::agents`' business. `AppendLog` carries the bulk log bytes.

use std::time::Duration;

use berth_common::PROTOCOL_VERSION;
use berth_common::proto::agent_service_server::AgentService;
use berth_common::proto::{
    self, AppendLogRequest, AppendLogResponse, AttemptRef, KeepContainersRequest,
    KeepContainersResponse, ServerMessage, WorkerMessage, server_message, worker_message,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::api::auth::identity;
use crate::api::error::{respond, to_status};
use crate::api::work_requests::{outputs_to_proto, spec_to_proto};
use crate::api::{millis, nanos};
use berth_core::error::{Error, Result};
use berth_core::fleet::agents::{Agents, Hello, MAX_KEEP_QUERY, Report};
use berth_core::live::hub::{Session, ToWorker};
use berth_core::work::ids::AttemptKey;
use berth_core::work::logs::LogStream;
use berth_core::work::report::{Finished, Health, HealthStatus, Started};
use berth_core::work::spec::PortMapping;
use berth_core::work::state::Outcome;

/// How long a new stream may take to send its Hello.
const HELLO_WITHIN: Duration = Duration::from_secs(30);

/// The AgentService implementation.
#[derive(Clone)]
pub struct AgentApi {
    agents: Agents,
    shutdown: CancellationToken,
}

impl AgentApi {
    /// The service; streams end when `shutdown` is cancelled.
    pub fn new(agents: Agents, shutdown: CancellationToken) -> AgentApi {
        AgentApi { agents, shutdown }
    }
}

/// The attempt a worker message names.
fn key(reference: Option<&AttemptRef>) -> Result<AttemptKey> {
    AttemptKey::parse(reference.map(|r| (r.work_request_id.as_str(), r.attempt)))
}

/// The attempts a worker names in a list field; the error names the field and the entry.
fn keys(field: &str, references: &[AttemptRef]) -> Result<Vec<AttemptKey>> {
    if references.len() > MAX_KEEP_QUERY {
        return Err(Error::InvalidArgument(format!(
            "{field}: at most {MAX_KEEP_QUERY} attempts per message, got {}; send them in batches",
            references.len()
        )));
    }
    references
        .iter()
        .enumerate()
        .map(|(i, r)| {
            key(Some(r)).map_err(|e| match e {
                Error::InvalidArgument(why) => {
                    Error::InvalidArgument(format!("{field}[{i}]: {why}"))
                }
                e => e,
            })
        })
        .collect()
}

fn attempt_ref(key: AttemptKey) -> AttemptRef {
    AttemptRef {
        work_request_id: key.id.to_string(),
        attempt: key.number(),
    }
}

fn hello_from_proto(hello: proto::Hello) -> Result<Hello> {
    Ok(Hello {
        name: hello.name,
        labels: hello.labels,
        metadata: hello.metadata,
        concurrency: hello.concurrency,
        running: hello
            .running
            .iter()
            .map(|r| key(Some(r)))
            .collect::<Result<_>>()?,
    })
}

fn outcome_from_proto(value: i32) -> Outcome {
    match proto::Outcome::try_from(value).unwrap_or(proto::Outcome::Unspecified) {
        proto::Outcome::Unspecified => Outcome::Unspecified,
        proto::Outcome::Exited => Outcome::Exited,
        proto::Outcome::TimedOut => Outcome::TimedOut,
        proto::Outcome::Cancelled => Outcome::Cancelled,
        proto::Outcome::OomKilled => Outcome::OomKilled,
        proto::Outcome::ImagePullFailed => Outcome::ImagePullFailed,
        proto::Outcome::StartFailed => Outcome::StartFailed,
        proto::Outcome::Interrupted => Outcome::Interrupted,
    }
}

/// A worker's message after its Hello, in domain terms; `None` for an empty message.
fn report_from_proto(message: WorkerMessage) -> Result<Option<Report>> {
    let Some(msg) = message.msg else {
        return Ok(None);
    };
    Ok(Some(match msg {
        worker_message::Msg::Hello(_) => {
            return Err(Error::InvalidArgument("Hello may only be sent once".into()));
        }
        worker_message::Msg::Heartbeat(_) => Report::Heartbeat,
        worker_message::Msg::HealthChanged(changed) => Report::Health(
            key(changed.attempt.as_ref())?,
            Health {
                status: HealthStatus::parse(&changed.status).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "health_changed.status: unknown status {:?}; send starting, healthy or unhealthy",
                        changed.status
                    ))
                })?,
                // The worker cuts it to 1 KiB; a longer one is cut here too, so a
                // misbehaving worker cannot fill the attempts table.
                output: cut_output(changed.output),
            },
        ),
        worker_message::Msg::GoingAway(going) => Report::GoingAway {
            reason: going.reason,
        },
        worker_message::Msg::Accept(accept) => Report::Accept(key(accept.attempt.as_ref())?),
        worker_message::Msg::Reject(reject) => Report::Reject {
            key: key(reject.attempt.as_ref())?,
            reason: reject.reason,
        },
        worker_message::Msg::Started(started) => Report::Started(
            key(started.attempt.as_ref())?,
            Started {
                container_id: started.container_id,
                pull_ms: started.pull_duration.as_ref().map(millis),
                ports: started
                    .ports
                    .into_iter()
                    .filter_map(|p| {
                        // A port out of range cannot have been bound: dropped.
                        Some(PortMapping {
                            container_port: u16::try_from(p.container_port).ok()?,
                            host_port: u16::try_from(p.host_port).ok()?,
                            protocol: p.protocol,
                        })
                    })
                    .collect(),
                has_healthcheck: started.has_healthcheck,
            },
        ),
        worker_message::Msg::ContainersStopped(stopped) => Report::ContainersStopped {
            stopped: keys("containers_stopped.attempts", &stopped.attempts)?,
            none_found: keys("containers_stopped.none_found", &stopped.none_found)?,
        },
        worker_message::Msg::Finished(finished) => Report::Finished(
            key(finished.attempt.as_ref())?,
            Finished {
                outcome: outcome_from_proto(finished.outcome),
                exit_code: finished.exit_code,
                message: finished.message,
                container_id: finished.container_id,
                peak_memory_bytes: finished
                    .peak_memory_bytes
                    .and_then(|b| i64::try_from(b).ok()),
                cpu_time_ns: finished.cpu_time.as_ref().map(nanos),
                pull_ms: finished.pull_duration.as_ref().map(millis),
                run_ms: finished.run_duration.as_ref().map(millis),
                log_incomplete: finished.log_incomplete,
                // A malformed id names no artifact; the recorder records none.
                output_artifact_id: uuid::Uuid::parse_str(&finished.output_artifact_id).ok(),
                output_error: finished.output_error,
            },
        ),
    }))
}

/// The most of a probe's output kept from a HealthChanged.
const HEALTH_OUTPUT_MAX: usize = 1024;

fn cut_output(mut output: String) -> String {
    if output.len() > HEALTH_OUTPUT_MAX {
        let mut end = HEALTH_OUTPUT_MAX;
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        output.truncate(end);
    }
    output
}

/// What the hub queued for a worker, on the wire.
fn to_server_message(message: ToWorker) -> ServerMessage {
    let msg = match message {
        ToWorker::Assign(assignment) => {
            let mut spec = spec_to_proto(&assignment.spec);
            spec.secret_env = assignment.secret_env.into_iter().collect();
            server_message::Msg::Assign(proto::Assign {
                attempt: Some(attempt_ref(assignment.key)),
                spec: Some(spec),
                outputs: outputs_to_proto(&assignment.spec.outputs),
                output_category: assignment.spec.output_category.clone().unwrap_or_default(),
                traceparent: assignment.traceparent.unwrap_or_default(),
                inputs: assignment
                    .inputs
                    .into_iter()
                    .map(|input| proto::AssignedInput {
                        artifact_id: input.artifact_id.to_string(),
                        mount: input.mount,
                        files: input
                            .files
                            .into_iter()
                            .map(|file| proto::ArtifactFile {
                                uploaded: true,
                                path: file.path,
                                sha256: file.sha256,
                                size: file.size,
                                mode: file.mode,
                                symlink: file.symlink,
                            })
                            .collect(),
                    })
                    .collect(),
            })
        }
        ToWorker::Cancel(key) => server_message::Msg::Cancel(proto::Cancel {
            attempt: Some(attempt_ref(key)),
        }),
        ToWorker::StopContainers(keys) => {
            server_message::Msg::StopContainers(proto::StopContainers {
                attempts: keys.into_iter().map(attempt_ref).collect(),
            })
        }
        ToWorker::Heartbeat => server_message::Msg::Heartbeat(proto::Heartbeat {}),
        ToWorker::Recorded(keys) => server_message::Msg::Recorded(proto::Recorded {
            attempts: keys.into_iter().map(attempt_ref).collect(),
        }),
    };
    ServerMessage { msg: Some(msg) }
}

fn log_stream_from_proto(value: i32) -> Result<LogStream> {
    match proto::LogStream::try_from(value) {
        Ok(proto::LogStream::Stdout) => Ok(LogStream::Stdout),
        Ok(proto::LogStream::Stderr) => Ok(LogStream::Stderr),
        Ok(proto::LogStream::System) => Ok(LogStream::System),
        Ok(proto::LogStream::Unspecified) | Err(_) => Err(Error::InvalidArgument(
            "stream: must be STDOUT, STDERR or SYSTEM".into(),
        )),
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    type ConnectStream = BoxStream<'static, Result<ServerMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let caller = identity(&request)?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_WITHIN, inbound.message())
            .await
            .map_err(|_| {
                to_status(Error::DeadlineExceeded(format!(
                    "no Hello within {} s of opening the stream",
                    HELLO_WITHIN.as_secs()
                )))
            })??;
        let Some(WorkerMessage {
            msg: Some(worker_message::Msg::Hello(hello)),
        }) = first
        else {
            return Err(to_status(Error::InvalidArgument(
                "the first message on the stream must be a Hello".into(),
            )));
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(to_status(Error::FailedPrecondition(format!(
                "this worker speaks protocol version {}, the server speaks {PROTOCOL_VERSION}; run matching versions of berth-worker and berth-server",
                hello.protocol_version
            ))));
        }
        let hello = hello_from_proto(hello).map_err(to_status)?;
        let connected = self.agents.hello(&caller, hello).await.map_err(to_status)?;
        let settings = self.agents.settings();
        let welcome = ServerMessage {
            msg: Some(server_message::Msg::Welcome(proto::Welcome {
                worker_id: connected.welcome.worker_id.to_string(),
                name: connected.welcome.name.clone(),
                heartbeat_interval_seconds: u32::try_from(settings.heartbeat_interval.as_secs())
                    .unwrap_or(5),
                lease_ttl_seconds: u32::try_from(settings.lease_ttl.as_secs()).unwrap_or(30),
                abandon: connected
                    .welcome
                    .abandon
                    .iter()
                    .copied()
                    .map(attempt_ref)
                    .collect(),
            })),
        };

        let this = self.clone();
        let session = connected.session;
        let name = connected.welcome.name;
        let (end_tx, end_rx) = tokio::sync::oneshot::channel::<Status>();
        tokio::spawn(async move {
            let reason = this.run_session(&session, inbound).await;
            this.agents.disconnected(&session).await;
            tracing::info!(worker = %name, worker_id = %session.worker_id, reason = %reason.message(), "worker disconnected");
            drop(session);
            // Tell the worker why, if it is still listening.
            let _ = end_tx.send(reason);
        });
        // The worker sees its Welcome, every queued message, then why the stream ended.
        let ending = futures::stream::once(async move {
            match end_rx.await {
                Ok(status) if status.code() == tonic::Code::Ok => None,
                Ok(status) => Some(Err(status)),
                Err(_) => Some(Err(Status::unavailable("the stream ended"))),
            }
        })
        .filter_map(|end| async move { end });
        let outbound = futures::stream::once(async move { Ok(welcome) })
            .chain(ReceiverStream::new(connected.outbox).map(|m| Ok(to_server_message(m))))
            .chain(ending);
        Ok(Response::new(Box::pin(outbound)))
    }

    async fn append_log(
        &self,
        request: Request<AppendLogRequest>,
    ) -> Result<Response<AppendLogResponse>, Status> {
        let caller = identity(&request)?;
        let append = request.into_inner();
        let appended = async {
            let key = key(append.attempt.as_ref())?;
            let stream = log_stream_from_proto(append.stream)?;
            self.agents
                .append_log(&caller, key, stream, append.offset, &append.data)
                .await
        }
        .await;
        respond(appended.map(|acknowledged| AppendLogResponse { acknowledged }))
    }

    async fn keep_containers(
        &self,
        request: Request<KeepContainersRequest>,
    ) -> Result<Response<KeepContainersResponse>, Status> {
        let asked = request.into_inner();
        let judged = async {
            let attempts = keys("attempts", &asked.attempts)?;
            self.agents.keep_containers(&attempts).await
        }
        .await;
        respond(judged.map(|verdict| KeepContainersResponse {
            keep: verdict.keep.into_iter().map(attempt_ref).collect(),
            unknown: verdict.unknown.into_iter().map(attempt_ref).collect(),
        }))
    }
}

impl AgentApi {
    /// Drives one worker stream until it ends; returns why it ended.
    async fn run_session(
        &self,
        session: &Session,
        mut inbound: Streaming<WorkerMessage>,
    ) -> Status {
        loop {
            let message = tokio::select! {
                () = self.shutdown.cancelled() => {
                    return to_status(Error::Unavailable("the server is shutting down".into()));
                }
                () = session.close.cancelled() => {
                    return to_status(Error::Unauthenticated("the stream was closed: its token was disabled or deleted, or the worker connected again".into()));
                }
                // Heartbeats to the worker, and this check, are `leases`'s: one timer for
                // all streams rather than one each.
                () = session.lapsed.cancelled() => {
                    return to_status(Error::DeadlineExceeded("no message from the worker within the lease TTL".into()));
                }
                () = session.overflowed.cancelled() => {
                    return to_status(Error::ResourceExhausted("the worker did not read its stream and its queue of messages is full; reconnect".into()));
                }
                message = inbound.message() => message,
            };
            let message = match message {
                Ok(Some(message)) => message,
                Ok(None) => return Status::ok("the worker closed the stream"),
                Err(status) => return status,
            };
            // Any message renews the lease (`leases` writes it in bulk).
            session.heard();
            let applied = match report_from_proto(message) {
                Ok(Some(report)) => self.agents.report(session, report).await,
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = applied {
                tracing::warn!(worker_id = %session.worker_id, error = %e, "worker message not applied");
            }
        }
    }
}
