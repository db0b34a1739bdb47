//! Where each running replica's published ports are reached: the worker's advertised
//! address (its `address` fact, else its name) and the host port Docker bound.
//!
//! Read from what the workers reported (`attempts.ports`, set by Started) for the
//! containers that run now: a replica that is pending, restarting or ended has no
//! endpoint, and during a deploy both the old container and its replacement may be
//! listed (each under its own request id).

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::WorkspaceRole;
use crate::error::Result;
use crate::services::deploy::find_for;
use crate::services::state::{self, RunState};
use crate::services::{EndpointView, ReplicaName, ServiceManager, ServiceRef};
use crate::store::schema::workers;
use crate::work::state::Status;

impl ServiceManager {
    /// `ListServiceEndpoints`: viewers may read.
    pub async fn endpoints(
        &self,
        caller: &Identity,
        service: &ServiceRef,
    ) -> Result<Vec<EndpointView>> {
        let mut conn = self.pool.get().await?;
        let (_, row) = find_for(
            &mut conn,
            caller,
            service,
            WorkspaceRole::Viewer,
            "read services of",
        )
        .await?;
        let state = state::load(&mut conn, row).await?;
        let running: Vec<(ReplicaName, &RunState)> = state
            .slots
            .iter()
            .flat_map(|slot| {
                let name = ReplicaName {
                    process: slot.row.process.clone(),
                    index: u32::try_from(slot.row.slot_index).unwrap_or_default(),
                };
                [slot.current.as_ref(), slot.next.as_ref()]
                    .into_iter()
                    .flatten()
                    .filter(|run| run.status == Status::Running && !run.ports.is_empty())
                    .map(move |run| (name.clone(), run))
            })
            .collect();
        let ids: Vec<Uuid> = running
            .iter()
            .filter_map(|(_, run)| run.worker_id)
            .collect();
        let hosts: HashMap<Uuid, String> = workers::table
            .filter(workers::id.eq_any(&ids))
            .select((workers::id, workers::name, workers::metadata))
            .load::<(Uuid, String, serde_json::Value)>(&mut conn)
            .await?
            .into_iter()
            .map(|(id, name, metadata)| (id, advertised(&name, &metadata)))
            .collect();
        let mut out = Vec::new();
        for (replica, run) in running {
            let host = run
                .worker_id
                .and_then(|id| hosts.get(&id).cloned())
                .unwrap_or_else(|| run.worker_name.clone());
            for port in &run.ports {
                out.push(EndpointView {
                    replica: replica.clone(),
                    worker: run.worker_name.clone(),
                    host: host.clone(),
                    host_port: port.host_port,
                    container_port: port.container_port,
                    protocol: port.protocol.clone(),
                    request_id: run.request_id,
                });
            }
        }
        Ok(out)
    }
}

/// The worker's `address` fact when it has a non-empty one, else its name.
fn advertised(name: &str, metadata: &serde_json::Value) -> String {
    metadata
        .get("address")
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map_or_else(|| name.to_owned(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_fact_wins_over_the_name_unless_empty() {
        let named = serde_json::json!({"address": "10.0.0.5"});
        assert_eq!(advertised("w1", &named), "10.0.0.5");
        assert_eq!(advertised("w1", &serde_json::json!({"address": " "})), "w1");
        assert_eq!(advertised("w1", &serde_json::json!({})), "w1");
    }
}
