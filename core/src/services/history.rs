//! Every event of a service and its replicas, with its reason: recorded in the
//! transaction that caused it ([`record`]) and read back newest first.

use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::Result;
use crate::services::store::NewEvent;
use crate::store::schema::service_events;

/// Records `event` in the caller's transaction.
pub async fn record(conn: &mut AsyncPgConnection, event: NewEvent) -> Result<()> {
    diesel::insert_into(service_events::table)
        .values(event)
        .execute(conn)
        .await?;
    Ok(())
}

use std::collections::HashMap;

use diesel::prelude::*;
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::{self, WorkspaceRole};
use crate::error::Error;
use crate::services::store::{self as rows, EventRow};
use crate::services::{EventView, HistoryPage, HistoryQuery, ReplicaName, ServiceManager};
use crate::store::schema::{services, users, workers};
use crate::templates::workspace_name;

/// Events a page holds when no limit is given, and at most.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

impl ServiceManager {
    /// `GetServiceHistory`: newest first, `limit` at a time, from before `before`; with a
    /// replica, only its events. Viewers may read it. A deleted service's history is
    /// read by its name only while no live service took the name (the newest such).
    pub async fn history(&self, caller: &Identity, query: &HistoryQuery) -> Result<HistoryPage> {
        let replica = if query.replica.is_empty() {
            None
        } else {
            Some(
                ReplicaName::parse(&query.replica)
                    .map_err(|m| Error::InvalidArgument(format!("replica: {m}")))?,
            )
        };
        if query.limit > MAX_LIMIT {
            return Err(Error::InvalidArgument(format!(
                "limit: {}; at most {MAX_LIMIT} (0 for {DEFAULT_LIMIT})",
                query.limit
            )));
        }
        let limit = if query.limit == 0 {
            DEFAULT_LIMIT
        } else {
            query.limit
        };
        let mut conn = self.pool.get().await?;
        let workspace = workspace_name(&query.service.workspace);
        let standing = roles::in_workspace(&mut conn, caller, workspace).await?;
        standing.require(WorkspaceRole::Viewer, "read services of")?;
        let service = match rows::find(
            &mut conn,
            standing.workspace.id,
            workspace,
            &query.service.name,
        )
        .await
        {
            Ok(row) => row.id,
            Err(Error::NotFound(m)) => services::table
                .filter(services::workspace_id.eq(standing.workspace.id))
                .filter(services::name.eq(&query.service.name))
                .order(services::created_at.desc())
                .select(services::id)
                .first::<Uuid>(&mut conn)
                .await
                .optional()?
                .ok_or(Error::NotFound(m))?,
            Err(e) => return Err(e),
        };
        let mut select = service_events::table
            .filter(service_events::service_id.eq(service))
            .order(service_events::id.desc())
            .limit(i64::from(limit) + 1)
            .select(EventRow::as_select())
            .into_boxed();
        if query.before > 0 {
            select = select.filter(service_events::id.lt(query.before));
        }
        if let Some(replica) = &replica {
            select = select
                .filter(service_events::process.eq(replica.process.clone()))
                .filter(service_events::slot_index.eq(i32::try_from(replica.index).unwrap_or(i32::MAX)));
        }
        let mut found: Vec<EventRow> = select.load(&mut conn).await?;
        let more = found.len() > limit as usize;
        found.truncate(limit as usize);
        let worker_ids: Vec<Uuid> = found.iter().filter_map(|e| e.worker_id).collect();
        let user_ids: Vec<Uuid> = found.iter().filter_map(|e| e.by_user).collect();
        let worker_names: HashMap<Uuid, String> = workers::table
            .filter(workers::id.eq_any(&worker_ids))
            .select((workers::id, workers::name))
            .load::<(Uuid, String)>(&mut conn)
            .await?
            .into_iter()
            .collect();
        let user_names: HashMap<Uuid, String> = users::table
            .filter(users::id.eq_any(&user_ids))
            .select((users::id, users::name))
            .load::<(Uuid, String)>(&mut conn)
            .await?
            .into_iter()
            .collect();
        let next_before = if more {
            found.last().map(|e| e.id)
        } else {
            None
        };
        let events = found
            .into_iter()
            .map(|row| EventView {
                worker: row.worker_id.and_then(|id| worker_names.get(&id).cloned()),
                by: row.by_user.and_then(|id| user_names.get(&id).cloned()),
                row,
            })
            .collect();
        Ok(HistoryPage {
            events,
            next_before,
        })
    }
}
