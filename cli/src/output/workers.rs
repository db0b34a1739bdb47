//! Views of worker daemons: one worker (`worker get`, `enable`, `disable`, `drain`,
//! `restrict`) and `worker list`.

use std::collections::BTreeMap;

use berth_common::proto;
use serde::Serialize;

use super::{Answer, Render, Table, Time, fields, pairs, sorted, time, yes_no};

/// A worker daemon as the server knows it.
#[derive(Debug, Serialize)]
pub struct WorkerView {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub draining: bool,
    pub connected: bool,
    pub concurrency: u32,
    pub running: u32,
    pub labels: BTreeMap<String, String>,
    pub metadata: BTreeMap<String, String>,
    /// The only workspaces it serves; empty when it serves every workspace.
    pub workspaces: Vec<String>,
    pub connected_at: Option<Time>,
    pub last_heartbeat_at: Option<Time>,
    pub created_at: Option<Time>,
}

impl From<proto::Worker> for WorkerView {
    fn from(worker: proto::Worker) -> WorkerView {
        WorkerView {
            id: worker.id,
            name: worker.name,
            enabled: worker.enabled,
            draining: worker.draining,
            connected: worker.connected,
            concurrency: worker.concurrency,
            running: worker.running,
            labels: sorted(worker.labels),
            metadata: sorted(worker.metadata),
            workspaces: worker.workspaces,
            connected_at: Time::from_proto(worker.connected_at.as_ref()),
            last_heartbeat_at: Time::from_proto(worker.last_heartbeat_at.as_ref()),
            created_at: Time::from_proto(worker.created_at.as_ref()),
        }
    }
}

impl Answer for proto::Worker {
    type View = WorkerView;
}

impl Render for WorkerView {
    fn table(&self) -> String {
        fields(&[
            ("id", self.id.clone()),
            ("name", self.name.clone()),
            ("enabled", yes_no(self.enabled)),
            ("draining", yes_no(self.draining)),
            ("connected", yes_no(self.connected)),
            ("running", format!("{}/{}", self.running, self.concurrency)),
            ("labels", pairs(&self.labels)),
            ("metadata", pairs(&self.metadata)),
            ("workspaces", served(&self.workspaces)),
            ("connected_at", time(self.connected_at)),
            ("last_heartbeat_at", time(self.last_heartbeat_at)),
            ("created_at", time(self.created_at)),
        ])
    }
}

/// `worker list`.
#[derive(Debug, Serialize)]
pub struct WorkerListView {
    pub workers: Vec<WorkerView>,
}

impl From<proto::ListWorkersResponse> for WorkerListView {
    fn from(response: proto::ListWorkersResponse) -> WorkerListView {
        WorkerListView {
            workers: response.workers.into_iter().map(WorkerView::from).collect(),
        }
    }
}

impl Answer for proto::ListWorkersResponse {
    type View = WorkerListView;
}

impl Render for WorkerListView {
    fn table(&self) -> String {
        let mut table = Table::new([
            "NAME",
            "ENABLED",
            "CONNECTED",
            "DRAINING",
            "RUNNING",
            "LAST_HEARTBEAT",
            "WORKSPACES",
            "LABELS",
        ]);
        for worker in &self.workers {
            table.row([
                worker.name.clone(),
                yes_no(worker.enabled),
                yes_no(worker.connected),
                yes_no(worker.draining),
                format!("{}/{}", worker.running, worker.concurrency),
                time(worker.last_heartbeat_at),
                served(&worker.workspaces),
                pairs(&worker.labels),
            ]);
        }
        table.render()
    }
}

/// The workspaces a worker serves, for a table: `*` when it serves every workspace.
fn served(workspaces: &[String]) -> String {
    if workspaces.is_empty() {
        "*".into()
    } else {
        workspaces.join(",")
    }
}
