//! Views of services (with a table of their replicas), service lists, history events,
//! endpoints and deletions.

use std::collections::BTreeMap;

use berth_common::proto;
use serde::Serialize;

use super::work_requests::shell_words;
use super::{Answer, Render, Span, Table, Time, enum_name, fields, opt, time};

/// A published port, as `8080:18080/tcp` reads it.
#[derive(Debug, Serialize)]
pub struct PortView {
    pub container_port: u32,
    /// 0: Docker picks one.
    pub host_port: u32,
    pub protocol: String,
}

impl From<proto::PortMapping> for PortView {
    fn from(p: proto::PortMapping) -> PortView {
        PortView {
            container_port: p.container_port,
            host_port: p.host_port,
            protocol: if p.protocol.is_empty() {
                "tcp".to_owned()
            } else {
                p.protocol
            },
        }
    }
}

impl std::fmt::Display for PortView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.container_port)?;
        if self.host_port != 0 {
            write!(f, ":{}", self.host_port)?;
        }
        write!(f, "/{}", self.protocol)
    }
}

/// One process type.
#[derive(Debug, Serialize)]
pub struct ProcessView {
    pub replicas: u32,
    /// Empty: the release's own command.
    pub command: Vec<String>,
}

/// Restart timing.
#[derive(Debug, Serialize)]
pub struct BackoffView {
    pub initial: Option<Span>,
    pub max: Option<Span>,
    pub stable_after: Option<Span>,
    pub success_delay: Option<Span>,
    pub max_local_restarts: u32,
}

/// A deploy under way, or the last one.
#[derive(Debug, Serialize)]
pub struct DeployView {
    /// `rolling`, `done`, `failed` or `reverting`.
    pub state: String,
    pub to_version: u32,
    pub from_version: u32,
    pub auto_revert: bool,
    pub started_at: Option<Time>,
    pub deadline: Option<Time>,
    pub message: String,
}

/// One replica slot.
#[derive(Debug, Serialize)]
pub struct ReplicaView {
    /// `web.1`.
    pub replica: String,
    pub process: String,
    pub index: u32,
    pub state: String,
    pub version: u32,
    pub work_request_id: String,
    pub worker: String,
    pub failures: u32,
    pub restart_at: Option<Time>,
    pub healthy_since: Option<Time>,
    pub next_work_request_id: String,
}

impl From<proto::Replica> for ReplicaView {
    fn from(r: proto::Replica) -> ReplicaView {
        ReplicaView {
            replica: format!("{}.{}", r.process, r.index),
            process: r.process,
            index: r.index,
            state: r.state,
            version: r.version,
            work_request_id: r.work_request_id,
            worker: r.worker,
            failures: r.failures,
            restart_at: Time::from_proto(r.restart_at.as_ref()),
            healthy_since: Time::from_proto(r.healthy_since.as_ref()),
            next_work_request_id: r.next_work_request_id,
        }
    }
}

/// A service with its replicas.
#[derive(Debug, Serialize)]
pub struct ServiceView {
    pub id: String,
    pub workspace: String,
    pub name: String,
    pub template: String,
    pub version: u32,
    /// 0: no release has been healthy on every replica yet.
    pub stable_version: u32,
    pub processes: BTreeMap<String, ProcessView>,
    /// `always`, `on-failure` or `never`.
    pub restart_policy: String,
    pub backoff: Option<BackoffView>,
    pub min_healthy: Option<Span>,
    pub deploy_deadline: Option<Span>,
    pub ports: Vec<PortView>,
    pub deploy: Option<DeployView>,
    pub replicas: Vec<ReplicaView>,
    pub created_by: String,
    pub created_at: Option<Time>,
    pub updated_at: Option<Time>,
}

fn policy_name(value: i32) -> String {
    let name = proto::RestartPolicy::try_from(value)
        .ok()
        .map(|policy| match policy {
            proto::RestartPolicy::Unspecified => "unspecified",
            proto::RestartPolicy::Always => "always",
            proto::RestartPolicy::OnFailure => "on-failure",
            proto::RestartPolicy::Never => "never",
        });
    enum_name(value, name)
}

impl From<proto::Service> for ServiceView {
    fn from(s: proto::Service) -> ServiceView {
        let health = s.health.unwrap_or_default();
        ServiceView {
            id: s.id,
            workspace: s.workspace,
            name: s.name,
            template: s.template,
            version: s.version,
            stable_version: s.stable_version,
            processes: s
                .processes
                .into_iter()
                .map(|(name, p)| {
                    (
                        name,
                        ProcessView {
                            replicas: p.replicas,
                            command: p.command,
                        },
                    )
                })
                .collect(),
            restart_policy: policy_name(s.restart_policy),
            backoff: s.backoff.map(|b| BackoffView {
                initial: Span::from_proto(b.initial.as_ref()),
                max: Span::from_proto(b.max.as_ref()),
                stable_after: Span::from_proto(b.stable_after.as_ref()),
                success_delay: Span::from_proto(b.success_delay.as_ref()),
                max_local_restarts: b.max_local_restarts,
            }),
            min_healthy: Span::from_proto(health.min_healthy.as_ref()),
            deploy_deadline: Span::from_proto(health.deploy_deadline.as_ref()),
            ports: s.ports.into_iter().map(PortView::from).collect(),
            deploy: s.deploy.map(|d| DeployView {
                state: d.state,
                to_version: d.to_version,
                from_version: d.from_version,
                auto_revert: d.auto_revert,
                started_at: Time::from_proto(d.started_at.as_ref()),
                deadline: Time::from_proto(d.deadline.as_ref()),
                message: d.message,
            }),
            replicas: s.replicas.into_iter().map(ReplicaView::from).collect(),
            created_by: s.created_by,
            created_at: Time::from_proto(s.created_at.as_ref()),
            updated_at: Time::from_proto(s.updated_at.as_ref()),
        }
    }
}

impl Answer for proto::Service {
    type View = ServiceView;
}

/// `web=3,worker=1`.
fn process_counts(processes: &BTreeMap<String, ProcessView>) -> String {
    let counts: Vec<String> = processes
        .iter()
        .map(|(name, p)| format!("{name}={}", p.replicas))
        .collect();
    counts.join(",")
}

fn version(v: u32) -> String {
    if v == 0 {
        String::new()
    } else {
        format!("v{v}")
    }
}

fn deploy_line(deploy: Option<&DeployView>) -> String {
    let Some(d) = deploy else {
        return String::new();
    };
    let mut line = format!(
        "{} {} → {}",
        d.state,
        version(d.from_version),
        version(d.to_version)
    );
    if d.auto_revert {
        line.push_str(" (auto-revert)");
    }
    if !d.message.is_empty() {
        line.push_str(": ");
        line.push_str(&d.message);
    }
    line
}

impl Render for ServiceView {
    fn table(&self) -> String {
        let commands: Vec<String> = self
            .processes
            .iter()
            .filter(|(_, p)| !p.command.is_empty())
            .map(|(name, p)| format!("{name}: {}", shell_words(&p.command)))
            .collect();
        let ports: Vec<String> = self.ports.iter().map(PortView::to_string).collect();
        let backoff = self.backoff.as_ref().map(|b| {
            format!(
                "{} doubling to {} (stable after {}, {} after exit 0, move after {} local restarts)",
                opt(b.initial),
                opt(b.max),
                opt(b.stable_after),
                opt(b.success_delay),
                b.max_local_restarts
            )
        });
        let mut text = fields(&[
            ("name", self.name.clone()),
            ("id", self.id.clone()),
            ("workspace", self.workspace.clone()),
            (
                "template",
                format!("{}@{}", self.template, version(self.version)),
            ),
            ("stable_version", version(self.stable_version)),
            ("processes", process_counts(&self.processes)),
            ("commands", commands.join("; ")),
            ("restart_policy", self.restart_policy.clone()),
            ("backoff", backoff.unwrap_or_default()),
            ("min_healthy", opt(self.min_healthy)),
            ("deploy_deadline", opt(self.deploy_deadline)),
            ("ports", ports.join(", ")),
            ("deploy", deploy_line(self.deploy.as_ref())),
            ("created_by", self.created_by.clone()),
            ("created_at", time(self.created_at)),
            ("updated_at", time(self.updated_at)),
        ]);
        if self.replicas.is_empty() {
            text.push_str("replicas: -\n");
            return text;
        }
        text.push_str("replicas:\n");
        text.push_str(&replica_table(&self.replicas).render_indented());
        text
    }
}

fn replica_table(replicas: &[ReplicaView]) -> Table<6> {
    let mut table = Table::new([
        "REPLICA",
        "STATE",
        "VERSION",
        "WORKER",
        "FAILURES",
        "RESTART AT",
    ]);
    for r in replicas {
        table.row([
            r.replica.clone(),
            r.state.clone(),
            version(r.version),
            r.worker.clone(),
            r.failures.to_string(),
            time(r.restart_at),
        ]);
    }
    table
}

/// `service list`.
#[derive(Debug, Serialize)]
pub struct ServiceListView {
    pub services: Vec<ServiceView>,
}

impl From<proto::ListServicesResponse> for ServiceListView {
    fn from(r: proto::ListServicesResponse) -> ServiceListView {
        ServiceListView {
            services: r.services.into_iter().map(ServiceView::from).collect(),
        }
    }
}

impl Answer for proto::ListServicesResponse {
    type View = ServiceListView;
}

impl Render for ServiceListView {
    fn table(&self) -> String {
        let mut table = Table::new(["NAME", "TEMPLATE", "PROCESSES", "HEALTHY", "DEPLOY"]);
        for s in &self.services {
            let healthy = s.replicas.iter().filter(|r| r.state == "healthy").count();
            table.row([
                s.name.clone(),
                format!("{}@{}", s.template, version(s.version)),
                process_counts(&s.processes),
                format!("{healthy}/{}", s.replicas.len()),
                s.deploy
                    .as_ref()
                    .map(|d| d.state.clone())
                    .unwrap_or_default(),
            ]);
        }
        table.render()
    }
}

/// One event of a service's history.
#[derive(Debug, Serialize)]
pub struct ServiceEventView {
    pub id: u64,
    pub at: Option<Time>,
    pub kind: String,
    /// `web.1`; empty for service-wide events.
    pub replica: String,
    pub reason: String,
    pub version: u32,
    pub work_request_id: String,
    pub worker: String,
    pub exit_code: Option<i32>,
    pub by: String,
}

/// `service history`, newest first.
#[derive(Debug, Serialize)]
pub struct ServiceHistoryView {
    pub events: Vec<ServiceEventView>,
    /// Events older than this id are on the next page; 0 when there is none.
    pub next_before: u64,
}

impl From<proto::GetServiceHistoryResponse> for ServiceHistoryView {
    fn from(r: proto::GetServiceHistoryResponse) -> ServiceHistoryView {
        ServiceHistoryView {
            events: r
                .events
                .into_iter()
                .map(|e| ServiceEventView {
                    id: e.id,
                    at: Time::from_proto(e.at.as_ref()),
                    kind: e.kind,
                    replica: e.replica,
                    reason: e.reason,
                    version: e.version,
                    work_request_id: e.work_request_id,
                    worker: e.worker,
                    exit_code: e.exit_code,
                    by: e.by,
                })
                .collect(),
            next_before: r.next_before,
        }
    }
}

impl Answer for proto::GetServiceHistoryResponse {
    type View = ServiceHistoryView;
}

impl Render for ServiceHistoryView {
    fn table(&self) -> String {
        let mut table = Table::new(["AT", "REPLICA", "EVENT", "VERSION", "WORKER", "REASON"]);
        for e in &self.events {
            let mut reason = e.reason.clone();
            if !e.by.is_empty() {
                reason = if reason.is_empty() {
                    format!("by {}", e.by)
                } else {
                    format!("{reason} (by {})", e.by)
                };
            }
            table.row([
                time(e.at),
                e.replica.clone(),
                e.kind.clone(),
                version(e.version),
                e.worker.clone(),
                reason,
            ]);
        }
        table.render()
    }
}

/// Where one published port of one replica is reached.
#[derive(Debug, Serialize)]
pub struct EndpointView {
    pub replica: String,
    pub worker: String,
    pub host: String,
    pub host_port: u32,
    pub container_port: u32,
    pub protocol: String,
    pub work_request_id: String,
}

/// `service endpoints`.
#[derive(Debug, Serialize)]
pub struct EndpointListView {
    pub endpoints: Vec<EndpointView>,
}

impl From<proto::ListServiceEndpointsResponse> for EndpointListView {
    fn from(r: proto::ListServiceEndpointsResponse) -> EndpointListView {
        EndpointListView {
            endpoints: r
                .endpoints
                .into_iter()
                .map(|e| EndpointView {
                    replica: e.replica,
                    worker: e.worker,
                    host: e.host,
                    host_port: e.host_port,
                    container_port: e.container_port,
                    protocol: e.protocol,
                    work_request_id: e.work_request_id,
                })
                .collect(),
        }
    }
}

impl Answer for proto::ListServiceEndpointsResponse {
    type View = EndpointListView;
}

impl Render for EndpointListView {
    fn table(&self) -> String {
        let mut table = Table::new(["REPLICA", "ADDRESS", "PORT", "WORKER"]);
        for e in &self.endpoints {
            table.row([
                e.replica.clone(),
                format!("{}:{}", e.host, e.host_port),
                format!("{}/{}", e.container_port, e.protocol),
                e.worker.clone(),
            ]);
        }
        table.render()
    }
}

/// `service delete`: the answer carries nothing, so the view says what was asked.
#[derive(Debug, Serialize)]
pub struct DeletedServiceView {
    pub name: String,
    pub workspace: String,
    pub deleted: bool,
}

impl Render for DeletedServiceView {
    fn table(&self) -> String {
        format!(
            "deleted service {}; its replicas are being stopped\n",
            self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_shows_its_replicas_as_a_table() {
        let view = ServiceView::from(proto::Service {
            name: "shop".into(),
            template: "srv".into(),
            version: 2,
            processes: [(
                "web".to_owned(),
                proto::Process {
                    replicas: 2,
                    command: vec!["sh".into(), "-c".into(), "echo hi".into()],
                },
            )]
            .into(),
            restart_policy: proto::RestartPolicy::OnFailure as i32,
            ports: vec![proto::PortMapping {
                container_port: 8080,
                host_port: 18080,
                protocol: "tcp".into(),
            }],
            replicas: vec![
                proto::Replica {
                    process: "web".into(),
                    index: 0,
                    state: "healthy".into(),
                    version: 2,
                    worker: "w1".into(),
                    ..Default::default()
                },
                proto::Replica {
                    process: "web".into(),
                    index: 1,
                    state: "restarting".into(),
                    version: 2,
                    failures: 3,
                    restart_at: Some(prost_types::Timestamp {
                        seconds: 1_800_000_000,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        let table = view.table();
        assert!(table.contains("template:"), "{table}");
        assert!(table.contains("srv@v2"), "{table}");
        assert!(table.contains("on-failure"), "{table}");
        assert!(table.contains("8080:18080/tcp"), "{table}");
        assert!(table.contains("web: sh -c 'echo hi'"), "{table}");
        let lines: Vec<&str> = table.lines().collect();
        let header = lines
            .iter()
            .position(|l| l.trim_start().starts_with("REPLICA"))
            .expect("a replica table");
        assert!(lines[header].contains("RESTART AT"), "{table}");
        let first: Vec<&str> = lines[header + 1].split_whitespace().collect();
        assert_eq!(first, ["web.0", "healthy", "v2", "w1", "0", "-"], "{table}");
        assert!(
            lines[header + 2].contains("2027-01-15T08:00:00Z"),
            "{table}"
        );
        let json = super::super::to_json(&view);
        assert_eq!(json["replicas"][1]["replica"], "web.1");
        assert_eq!(json["ports"][0]["host_port"], 18080);
    }
}
