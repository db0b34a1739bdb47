//! The operators' view of workers, and switching them on and off for new work.
//!
//! Disabling and draining both stop new assignments (the scheduler skips such workers);
//! what a worker runs goes on either way. Draining is the worker's own state too: a worker
//! shutting down on SIGTERM says GoingAway and takes nothing new on that stream.
//! Enabling ends both.
//!
//! A worker may also be restricted to some workspaces (`restrict`): the claim then offers
//! it only their requests (`workers.workspaces`; NULL serves every workspace). This module
//! only records the restriction and names its workspaces in the view; the scheduler
//! applies it.

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
use crate::store::schema::{attempts, workers, workspaces};
use crate::work::state::AttemptState;

/// A worker with how many attempts it runs now.
#[derive(Clone, Debug)]
pub struct WorkerView {
    /// The stored worker.
    pub row: WorkerRow,
    /// Its unfinished attempts.
    pub running: i64,
    /// The names of the only workspaces it serves, sorted; empty when it serves all.
    pub workspaces: Vec<String>,
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
        let mut served = served_workspaces(&mut conn, &ids).await?;
        Ok(rows
            .into_iter()
            .map(|row| WorkerView {
                running: running.get(&row.id).copied().unwrap_or(0),
                workspaces: served.remove(&row.id).unwrap_or_default(),
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
        let mut served = served_workspaces(&mut conn, &[row.id]).await?;
        Ok(WorkerView {
            running: running.get(&row.id).copied().unwrap_or(0),
            workspaces: served.remove(&row.id).unwrap_or_default(),
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

impl Workers {
    /// `RestrictWorker`: the worker takes only the requests of the workspaces named in
    /// `names` from its next claim on; an empty list lets it serve every workspace again.
    pub async fn restrict(&self, name: &str, names: &[String], by: &str) -> Result<WorkerView> {
        let name = required_name(name)?;
        let mut wanted: Vec<&str> = names.iter().map(String::as_str).collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.iter().any(|w| w.is_empty()) {
            return Err(Error::InvalidArgument(
                "workspaces: a workspace name is empty; name each workspace, or send none to \
                 let the worker serve every workspace"
                    .into(),
            ));
        }
        let mut conn = self.pool.get().await?;
        let found: Vec<(Uuid, String)> = workspaces::table
            .filter(workspaces::name.eq_any(&wanted))
            .select((workspaces::id, workspaces::name))
            .load(&mut conn)
            .await?;
        if let Some(unknown) = wanted
            .iter()
            .find(|w| !found.iter().any(|(_, name)| name == *w))
        {
            return Err(Error::NotFound(format!(
                "workspaces: no workspace named {unknown:?}"
            )));
        }
        let ids: Option<Vec<Uuid>> = if found.is_empty() {
            None
        } else {
            let mut ids: Vec<Uuid> = found.iter().map(|(id, _)| *id).collect();
            ids.sort_unstable();
            Some(ids)
        };
        let updated = diesel::update(workers::table.filter(workers::name.eq(name)))
            .set(workers::workspaces.eq(&ids))
            .execute(&mut conn)
            .await?;
        if updated == 0 {
            return Err(not_found(name));
        }
        tracing::info!(worker = name, workspaces = ?wanted, by, "worker restriction changed");
        // A lifted or widened restriction may let it take waiting work now.
        self.hub.wake_scheduler();
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

/// The workspace names each restricted worker of `ids` serves, sorted. Workers that
/// serve every workspace are absent.
async fn served_workspaces(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<String>>> {
    let rows: Vec<(Uuid, Option<Vec<Uuid>>)> = workers::table
        .filter(workers::id.eq_any(ids))
        .filter(workers::workspaces.is_not_null())
        .select((workers::id, workers::workspaces))
        .load(conn)
        .await?;
    let mut all: Vec<Uuid> = rows
        .iter()
        .flat_map(|(_, ws)| ws.iter().flatten())
        .copied()
        .collect();
    if all.is_empty() {
        return Ok(HashMap::new());
    }
    all.sort_unstable();
    all.dedup();
    let names: HashMap<Uuid, String> = workspaces::table
        .filter(workspaces::id.eq_any(&all))
        .select((workspaces::id, workspaces::name))
        .load::<(Uuid, String)>(conn)
        .await?
        .into_iter()
        .collect();
    Ok(rows
        .into_iter()
        .map(|(id, served)| {
            let mut served: Vec<String> = served
                .into_iter()
                .flatten()
                .filter_map(|ws| names.get(&ws).cloned())
                .collect();
            served.sort();
            (id, served)
        })
        .collect())
}
