//! `berth.v1.WorkerService`: the operators' view of workers, and switching them on and off
//! for new work.
//!
//! Disabling and draining both stop new assignments (the scheduler skips such workers);
//! what a worker runs goes on either way. Draining is the worker's own state too: a worker
//! shutting down on SIGTERM says GoingAway and is marked draining. EnableWorker ends both.

use berth_common::proto::worker_service_server::WorkerService;
use berth_common::proto::{
    DisableWorkerRequest, DrainWorkerRequest, EnableWorkerRequest, GetWorkerRequest,
    ListWorkersRequest, ListWorkersResponse, Worker,
};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{string_map, timestamp, timestamp_opt};
use std::sync::Arc;

use crate::access::auth::identity;
use crate::error::{ApiError, ApiResult};
use crate::live::hub::Hub;
use crate::store::db::DbPool;
use crate::store::models::WorkerRow;
use crate::store::schema::{attempts, workers};

/// The WorkerService implementation.
#[derive(Clone)]
pub struct WorkerApi {
    pool: DbPool,
    hub: Arc<Hub>,
}

impl WorkerApi {
    /// A service over `pool`; `hub` wakes the scheduler when a worker is enabled.
    pub fn new(pool: DbPool, hub: Arc<Hub>) -> WorkerApi {
        WorkerApi { pool, hub }
    }
}

/// How many attempts each worker runs now.
async fn running_counts(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> ApiResult<std::collections::HashMap<Uuid, i64>> {
    let rows: Vec<(Option<Uuid>, i64)> = attempts::table
        .filter(attempts::worker_id.eq_any(ids))
        .filter(attempts::state.ne("finished"))
        .group_by(attempts::worker_id)
        .select((attempts::worker_id, count_star()))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, n)| id.map(|id| (id, n)))
        .collect())
}

fn to_proto(row: WorkerRow, running: i64) -> Worker {
    Worker {
        id: row.id.to_string(),
        name: row.name,
        labels: string_map(&row.labels),
        metadata: string_map(&row.metadata),
        concurrency: u32::try_from(row.concurrency).unwrap_or(0),
        running: u32::try_from(running).unwrap_or(0),
        enabled: row.enabled,
        draining: row.draining,
        connected: row.connected_at.is_some(),
        connected_at: timestamp_opt(row.connected_at),
        last_heartbeat_at: timestamp_opt(row.last_heartbeat_at),
        created_at: Some(timestamp(row.created_at)),
    }
}

impl WorkerApi {
    async fn by_name(&self, name: &str) -> ApiResult<Worker> {
        if name.is_empty() {
            return Err(ApiError::InvalidArgument("name: is required".into()));
        }
        let mut conn = self.pool.get().await?;
        let row: WorkerRow = workers::table
            .filter(workers::name.eq(name))
            .select(WorkerRow::as_select())
            .first(&mut conn)
            .await
            .optional()?
            .ok_or_else(|| ApiError::NotFound(format!("no worker named {name:?}")))?;
        let running = running_counts(&mut conn, &[row.id]).await?;
        let n = running.get(&row.id).copied().unwrap_or(0);
        Ok(to_proto(row, n))
    }

    async fn set_enabled(&self, name: &str, enabled: bool, by: &str) -> ApiResult<Worker> {
        if name.is_empty() {
            return Err(ApiError::InvalidArgument("name: is required".into()));
        }
        let mut conn = self.pool.get().await?;
        let updated = if enabled {
            // Enabling also ends a drain.
            diesel::update(workers::table.filter(workers::name.eq(name)))
                .set((workers::enabled.eq(true), workers::draining.eq(false)))
                .execute(&mut conn)
                .await?
        } else {
            diesel::update(workers::table.filter(workers::name.eq(name)))
                .set(workers::enabled.eq(false))
                .execute(&mut conn)
                .await?
        };
        if updated == 0 {
            return Err(ApiError::NotFound(format!("no worker named {name:?}")));
        }
        tracing::info!(worker = name, enabled, by, "worker updated");
        if enabled {
            self.hub.wake_scheduler();
        }
        drop(conn);
        self.by_name(name).await
    }

    async fn drain(&self, name: &str, by: &str) -> ApiResult<Worker> {
        if name.is_empty() {
            return Err(ApiError::InvalidArgument("name: is required".into()));
        }
        let mut conn = self.pool.get().await?;
        let updated = diesel::update(workers::table.filter(workers::name.eq(name)))
            .set(workers::draining.eq(true))
            .execute(&mut conn)
            .await?;
        if updated == 0 {
            return Err(ApiError::NotFound(format!("no worker named {name:?}")));
        }
        tracing::info!(
            worker = name,
            by,
            "worker draining: it finishes what it runs and takes nothing new"
        );
        drop(conn);
        self.by_name(name).await
    }
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    async fn list_workers(
        &self,
        _request: Request<ListWorkersRequest>,
    ) -> Result<Response<ListWorkersResponse>, Status> {
        let mut conn = self.pool.get().await.map_err(ApiError::from)?;
        let rows: Vec<WorkerRow> = workers::table
            .select(WorkerRow::as_select())
            .order(workers::name)
            .load(&mut conn)
            .await
            .map_err(ApiError::from)?;
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let running = running_counts(&mut conn, &ids).await?;
        Ok(Response::new(ListWorkersResponse {
            workers: rows
                .into_iter()
                .map(|row| {
                    let n = running.get(&row.id).copied().unwrap_or(0);
                    to_proto(row, n)
                })
                .collect(),
        }))
    }

    async fn get_worker(
        &self,
        request: Request<GetWorkerRequest>,
    ) -> Result<Response<Worker>, Status> {
        Ok(Response::new(self.by_name(&request.get_ref().name).await?))
    }

    async fn enable_worker(
        &self,
        request: Request<EnableWorkerRequest>,
    ) -> Result<Response<Worker>, Status> {
        let caller = identity(&request)?;
        Ok(Response::new(
            self.set_enabled(&request.get_ref().name, true, &caller.name)
                .await?,
        ))
    }

    async fn drain_worker(
        &self,
        request: Request<DrainWorkerRequest>,
    ) -> Result<Response<Worker>, Status> {
        let caller = identity(&request)?;
        Ok(Response::new(
            self.drain(&request.get_ref().name, &caller.name).await?,
        ))
    }

    async fn disable_worker(
        &self,
        request: Request<DisableWorkerRequest>,
    ) -> Result<Response<Worker>, Status> {
        let caller = identity(&request)?;
        Ok(Response::new(
            self.set_enabled(&request.get_ref().name, false, &caller.name)
                .await?,
        ))
    }
}
