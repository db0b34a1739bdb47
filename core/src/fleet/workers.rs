//! The operators' view of workers, and switching them on and off for new work.
//!
//! Disabling and draining both stop new assignments (the scheduler skips such workers);
//! what a worker runs goes on either way. Draining is the worker's own state too: a worker
//! shutting down on SIGTERM says GoingAway and takes nothing new on that stream.
//! Enabling ends both.

use std::collections::HashMap;
use std::sync::Arc;

use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::live::hub::Hub;
use crate::store::db::DbPool;
use crate::store::models::WorkerRow;
use crate::store::schema::{attempts, workers};
use crate::work::state::AttemptState;

/// A worker with how many attempts it runs now.
#[derive(Clone, Debug)]
pub struct WorkerView {
    /// The stored worker.
    pub row: WorkerRow,
    /// Its unfinished attempts.
    pub running: i64,
}

/// See the module docs.
#[derive(Clone)]
pub struct Workers {
    pool: DbPool,
    hub: Arc<Hub>,
}

impl Workers {
    /// Workers stored in `pool`; `hub` wakes the scheduler when a worker is enabled.
    pub fn new(pool: DbPool, hub: Arc<Hub>) -> Workers {
        Workers { pool, hub }
    }

    /// `ListWorkers`, by name.
    pub async fn list(&self) -> Result<Vec<WorkerView>> {
        let mut conn = self.pool.get().await?;
        let rows: Vec<WorkerRow> = workers::table
            .select(WorkerRow::as_select())
            .order(workers::name)
            .load(&mut conn)
            .await?;
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let running = running_counts(&mut conn, &ids).await?;
        Ok(rows
            .into_iter()
            .map(|row| WorkerView {
                running: running.get(&row.id).copied().unwrap_or(0),
                row,
            })
            .collect())
    }

    /// `GetWorker`.
    pub async fn get(&self, name: &str) -> Result<WorkerView> {
        let name = required_name(name)?;
        let mut conn = self.pool.get().await?;
        let row: WorkerRow = workers::table
            .filter(workers::name.eq(name))
            .select(WorkerRow::as_select())
            .first(&mut conn)
            .await
            .optional()?
            .ok_or_else(|| not_found(name))?;
        let running = running_counts(&mut conn, &[row.id]).await?;
        Ok(WorkerView {
            running: running.get(&row.id).copied().unwrap_or(0),
            row,
        })
    }

    /// `EnableWorker` (which also ends a drain) and `DisableWorker`.
    pub async fn set_enabled(&self, name: &str, enabled: bool, by: &str) -> Result<WorkerView> {
        let name = required_name(name)?;
        let mut conn = self.pool.get().await?;
        let updated = if enabled {
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
            return Err(not_found(name));
        }
        tracing::info!(worker = name, enabled, by, "worker updated");
        if enabled {
            self.hub.wake_scheduler();
        }
        drop(conn);
        self.get(name).await
    }

    /// `DrainWorker`: it finishes what it runs and takes nothing new, until enabled.
    pub async fn drain(&self, name: &str, by: &str) -> Result<WorkerView> {
        let name = required_name(name)?;
        let mut conn = self.pool.get().await?;
        let updated = diesel::update(workers::table.filter(workers::name.eq(name)))
            .set(workers::draining.eq(true))
            .execute(&mut conn)
            .await?;
        if updated == 0 {
            return Err(not_found(name));
        }
        tracing::info!(
            worker = name,
            by,
            "worker draining: it finishes what it runs and takes nothing new"
        );
        drop(conn);
        self.get(name).await
    }
}

fn required_name(name: &str) -> Result<&str> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("name: is required".into()));
    }
    Ok(name)
}

fn not_found(name: &str) -> Error {
    Error::NotFound(format!("no worker named {name:?}"))
}

/// How many attempts each worker runs now.
async fn running_counts(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> Result<HashMap<Uuid, i64>> {
    let rows: Vec<(Option<Uuid>, i64)> = attempts::table
        .filter(attempts::worker_id.eq_any(ids))
        .filter(attempts::state.ne(AttemptState::Finished))
        .group_by(attempts::worker_id)
        .select((attempts::worker_id, count_star()))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, n)| id.map(|id| (id, n)))
        .collect())
}
