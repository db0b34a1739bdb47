//! `berth.v1.WorkerService` on the wire; `fleet::workers` does the work.

use berth_common::proto::worker_service_server::WorkerService;
use berth_common::proto::{
    DisableWorkerRequest, DrainWorkerRequest, EnableWorkerRequest, GetWorkerRequest,
    ListWorkersRequest, ListWorkersResponse, RestrictWorkerRequest, Worker,
};
use tonic::{Request, Response, Status};

use crate::api::auth::identity;
use crate::api::error::respond;
use crate::api::{string_map, timestamp, timestamp_opt};
use berth_core::fleet::workers::{WorkerView, Workers};

/// The WorkerService implementation.
#[derive(Clone)]
pub struct WorkerApi {
    workers: Workers,
}

impl WorkerApi {
    /// The service over `workers`.
    pub fn new(workers: Workers) -> WorkerApi {
        WorkerApi { workers }
    }
}

fn to_proto(view: WorkerView) -> Worker {
    let row = view.row;
    Worker {
        id: row.id.to_string(),
        name: row.name,
        labels: string_map(&row.labels),
        metadata: string_map(&row.metadata),
        concurrency: u32::try_from(row.concurrency).unwrap_or(0),
        running: u32::try_from(view.running).unwrap_or(0),
        enabled: row.enabled,
        draining: row.draining,
        connected: row.connected_at.is_some(),
        connected_at: timestamp_opt(row.connected_at),
        last_heartbeat_at: timestamp_opt(row.last_heartbeat_at),
        created_at: Some(timestamp(row.created_at)),
        workspaces: view.workspaces,
    }
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    async fn list_workers(
        &self,
        _request: Request<ListWorkersRequest>,
    ) -> Result<Response<ListWorkersResponse>, Status> {
        respond(self.workers.list().await.map(|views| ListWorkersResponse {
            workers: views.into_iter().map(to_proto).collect(),
        }))
    }

    async fn get_worker(
        &self,
        request: Request<GetWorkerRequest>,
    ) -> Result<Response<Worker>, Status> {
        respond(
            self.workers
                .get(&request.get_ref().name)
                .await
                .map(to_proto),
        )
    }

    async fn enable_worker(
        &self,
        request: Request<EnableWorkerRequest>,
    ) -> Result<Response<Worker>, Status> {
        let caller = identity(&request)?;
        respond(
            self.workers
                .set_enabled(&request.get_ref().name, true, &caller.name)
                .await
                .map(to_proto),
        )
    }

    async fn drain_worker(
        &self,
        request: Request<DrainWorkerRequest>,
    ) -> Result<Response<Worker>, Status> {
        let caller = identity(&request)?;
        respond(
            self.workers
                .drain(&request.get_ref().name, &caller.name)
                .await
                .map(to_proto),
        )
    }

    async fn disable_worker(
        &self,
        request: Request<DisableWorkerRequest>,
    ) -> Result<Response<Worker>, Status> {
        let caller = identity(&request)?;
        respond(
            self.workers
                .set_enabled(&request.get_ref().name, false, &caller.name)
                .await
                .map(to_proto),
        )
    }

    async fn restrict_worker(
        &self,
        request: Request<RestrictWorkerRequest>,
    ) -> Result<Response<Worker>, Status> {
        let caller = identity(&request)?;
        let restrict = request.get_ref();
        respond(
            self.workers
                .restrict(&restrict.name, &restrict.workspaces, &caller.name)
                .await
                .map(to_proto),
        )
    }
}
