//! `berth.v1.AgentService`: the worker-facing protocol.
//!
//! The stream is defined in the protocol and authorized for worker tokens, but this
//! server does not run work yet: `Connect` answers UNIMPLEMENTED with a message saying
//! so, rather than accepting workers it cannot give anything to.

use berth_common::proto::agent_service_server::AgentService;
use berth_common::proto::{AppendLogRequest, AppendLogResponse, ServerMessage, WorkerMessage};
use futures::stream::BoxStream;
use tonic::{Request, Response, Status, Streaming};

/// The AgentService implementation.
#[derive(Clone, Default)]
pub struct AgentApi;

#[tonic::async_trait]
impl AgentService for AgentApi {
    type ConnectStream = BoxStream<'static, Result<ServerMessage, Status>>;

    async fn connect(
        &self,
        _request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        Err(Status::unimplemented(
            "this server does not run work yet: AgentService.Connect is not available in this version",
        ))
    }

    async fn append_log(
        &self,
        _request: Request<AppendLogRequest>,
    ) -> Result<Response<AppendLogResponse>, Status> {
        Err(Status::unimplemented(
            "this server does not run work yet: AgentService.AppendLog is not available in this version",
        ))
    }
}
