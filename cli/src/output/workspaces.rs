//! Views of workspaces: one workspace (`workspace create`, `get`, `set`, `archive`),
//! `workspace list`, one member (`member add`), the answer to `member rm`, and `member
//! list`.

use berth_common::proto;
use serde::Serialize;

use super::{Answer, Render, Span, Table, Time, fields, opt, time, workspace_role_name, yes_no};

/// A workspace as the caller sees it.
#[derive(Debug, Serialize)]
pub struct WorkspaceView {
    pub name: String,
    pub public: bool,
    /// `None`: artifacts are kept for ever.
    pub default_expiry: Option<Span>,
    pub max_running: Option<u32>,
    pub max_pending: Option<u32>,
    pub weight: u32,
    /// The caller's role there; `none` when not a member.
    pub role: String,
    pub waiting: u64,
    pub running: u64,
    pub archived: bool,
    pub archived_at: Option<Time>,
    pub created_at: Option<Time>,
}

impl From<proto::Workspace> for WorkspaceView {
    fn from(workspace: proto::Workspace) -> WorkspaceView {
        WorkspaceView {
            name: workspace.name,
            public: workspace.public,
            default_expiry: Span::from_proto(workspace.default_expiry.as_ref()),
            max_running: workspace.max_running,
            max_pending: workspace.max_pending,
            weight: workspace.weight,
            role: workspace_role_name(workspace.role),
            waiting: workspace.waiting,
            running: workspace.running,
            archived: workspace.archived_at.is_some(),
            archived_at: Time::from_proto(workspace.archived_at.as_ref()),
            created_at: Time::from_proto(workspace.created_at.as_ref()),
        }
    }
}

impl Answer for proto::Workspace {
    type View = WorkspaceView;
}

/// A limit for a table: the number, or `none`.
fn limit(value: Option<u32>) -> String {
    value.map_or_else(|| "none".to_owned(), |n| n.to_string())
}

/// A default expiry for a table: the span, or `never`.
fn expiry(value: Option<Span>) -> String {
    value.map_or_else(|| "never".to_owned(), |span| span.to_string())
}

impl Render for WorkspaceView {
    fn table(&self) -> String {
        fields(&[
            ("name", self.name.clone()),
            ("public", yes_no(self.public)),
            ("default_expiry", expiry(self.default_expiry)),
            ("max_running", limit(self.max_running)),
            ("max_pending", limit(self.max_pending)),
            ("weight", self.weight.to_string()),
            ("role", self.role.clone()),
            ("waiting", self.waiting.to_string()),
            ("running", self.running.to_string()),
            ("archived_at", time(self.archived_at)),
            ("created_at", time(self.created_at)),
        ])
    }
}

/// `workspace list`.
#[derive(Debug, Serialize)]
pub struct WorkspaceListView {
    pub workspaces: Vec<WorkspaceView>,
}

impl From<proto::ListWorkspacesResponse> for WorkspaceListView {
    fn from(response: proto::ListWorkspacesResponse) -> WorkspaceListView {
        WorkspaceListView {
            workspaces: response
                .workspaces
                .into_iter()
                .map(WorkspaceView::from)
                .collect(),
        }
    }
}

impl Answer for proto::ListWorkspacesResponse {
    type View = WorkspaceListView;
}

impl Render for WorkspaceListView {
    fn table(&self) -> String {
        let mut table = Table::new([
            "NAME", "ROLE", "PUBLIC", "WAITING", "RUNNING", "WEIGHT", "ARCHIVED",
        ]);
        for workspace in &self.workspaces {
            table.row([
                workspace.name.clone(),
                workspace.role.clone(),
                yes_no(workspace.public),
                workspace.waiting.to_string(),
                workspace.running.to_string(),
                workspace.weight.to_string(),
                opt(workspace.archived_at.map(Time::short)),
            ]);
        }
        table.render()
    }
}

/// A member of a workspace.
#[derive(Debug, Serialize)]
pub struct MemberView {
    pub workspace: String,
    pub user: String,
    pub role: String,
    pub since: Option<Time>,
}

impl From<proto::Member> for MemberView {
    fn from(member: proto::Member) -> MemberView {
        MemberView {
            workspace: member.workspace,
            user: member.user,
            role: workspace_role_name(member.role),
            since: Time::from_proto(member.since.as_ref()),
        }
    }
}

impl Answer for proto::Member {
    type View = MemberView;
}

impl Render for MemberView {
    fn table(&self) -> String {
        fields(&[
            ("workspace", self.workspace.clone()),
            ("user", self.user.clone()),
            ("role", self.role.clone()),
            ("since", time(self.since)),
        ])
    }
}

/// The answer to `member rm`.
#[derive(Debug, Serialize)]
pub struct RemovedMemberView {
    pub workspace: String,
    pub user: String,
    pub removed: bool,
}

impl Render for RemovedMemberView {
    fn table(&self) -> String {
        fields(&[
            ("workspace", self.workspace.clone()),
            ("user", self.user.clone()),
            ("removed", yes_no(self.removed)),
        ])
    }
}

/// `member list`.
#[derive(Debug, Serialize)]
pub struct MemberListView {
    pub members: Vec<MemberView>,
}

impl From<proto::ListMembersResponse> for MemberListView {
    fn from(response: proto::ListMembersResponse) -> MemberListView {
        MemberListView {
            members: response.members.into_iter().map(MemberView::from).collect(),
        }
    }
}

impl Answer for proto::ListMembersResponse {
    type View = MemberListView;
}

impl Render for MemberListView {
    fn table(&self) -> String {
        let mut table = Table::new(["USER", "ROLE", "SINCE"]);
        for member in &self.members {
            table.row([member.user.clone(), member.role.clone(), time(member.since)]);
        }
        table.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::to_json;

    #[test]
    fn a_workspace_shows_limits_expiry_and_role() {
        let view = WorkspaceView::from(proto::Workspace {
            name: "team-a".into(),
            default_expiry: Some(prost_types::Duration {
                seconds: 86_400,
                nanos: 0,
            }),
            max_running: Some(4),
            weight: 3,
            role: proto::WorkspaceRole::Contributor as i32,
            waiting: 2,
            ..Default::default()
        });
        let json = to_json(&view);
        assert_eq!(json["name"], "team-a");
        assert_eq!(json["default_expiry"], "1day");
        assert_eq!(json["max_running"], 4);
        assert_eq!(json["max_pending"], serde_json::Value::Null);
        assert_eq!(json["role"], "contributor");
        assert_eq!(json["waiting"], 2);
        assert_eq!(json["archived"], false);
        let line = |table: &str, key: &str| {
            table
                .lines()
                .find(|line| line.starts_with(&format!("{key}:")))
                .map(|line| line[key.len() + 1..].trim().to_owned())
        };
        let table = view.table();
        assert_eq!(
            line(&table, "max_pending").as_deref(),
            Some("none"),
            "{table}"
        );
        let unset = WorkspaceView::from(proto::Workspace::default());
        assert_eq!(unset.role, "none");
        assert_eq!(
            line(&unset.table(), "default_expiry").as_deref(),
            Some("never")
        );
    }
}
