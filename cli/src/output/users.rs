//! Views of users: one user (`user create`, `get`, `disable`, `enable`), the answer to
//! `user delete`, and `user list`.

use berth_common::proto;
use serde::Serialize;

use super::{Answer, Render, Table, Time, fields, time, workspace_role_name, yes_no};

/// One of a user's workspace roles.
#[derive(Debug, Serialize)]
pub struct MembershipView {
    pub workspace: String,
    pub role: String,
}

/// A user as admins see them.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub name: String,
    pub admin: bool,
    pub enabled: bool,
    pub tokens: u32,
    pub memberships: Vec<MembershipView>,
    pub created_at: Option<Time>,
}

impl From<proto::User> for UserView {
    fn from(user: proto::User) -> UserView {
        UserView {
            name: user.name,
            admin: user.admin,
            enabled: user.enabled,
            tokens: user.tokens,
            memberships: user
                .memberships
                .into_iter()
                .map(|m| MembershipView {
                    workspace: m.workspace,
                    role: workspace_role_name(m.role),
                })
                .collect(),
            created_at: Time::from_proto(user.created_at.as_ref()),
        }
    }
}

impl UserView {
    /// `team-a=owner,default=viewer`, or `-` for none.
    fn roles(&self) -> String {
        if self.memberships.is_empty() {
            return super::NONE.to_owned();
        }
        let roles: Vec<String> = self
            .memberships
            .iter()
            .map(|m| format!("{}={}", m.workspace, m.role))
            .collect();
        roles.join(",")
    }
}

impl Answer for proto::User {
    type View = UserView;
}

impl Render for UserView {
    fn table(&self) -> String {
        fields(&[
            ("name", self.name.clone()),
            ("admin", yes_no(self.admin)),
            ("enabled", yes_no(self.enabled)),
            ("tokens", self.tokens.to_string()),
            ("memberships", self.roles()),
            ("created_at", time(self.created_at)),
        ])
    }
}

/// The answer to `user delete`.
#[derive(Debug, Serialize)]
pub struct DeletedUserView {
    pub name: String,
    pub deleted: bool,
}

impl Render for DeletedUserView {
    fn table(&self) -> String {
        fields(&[
            ("name", self.name.clone()),
            ("deleted", yes_no(self.deleted)),
        ])
    }
}

/// `user list`.
#[derive(Debug, Serialize)]
pub struct UserListView {
    pub users: Vec<UserView>,
}

impl From<proto::ListUsersResponse> for UserListView {
    fn from(response: proto::ListUsersResponse) -> UserListView {
        UserListView {
            users: response.users.into_iter().map(UserView::from).collect(),
        }
    }
}

impl Answer for proto::ListUsersResponse {
    type View = UserListView;
}

impl Render for UserListView {
    fn table(&self) -> String {
        let mut table = Table::new(["NAME", "ADMIN", "ENABLED", "TOKENS", "CREATED", "ROLES"]);
        for user in &self.users {
            table.row([
                user.name.clone(),
                yes_no(user.admin),
                yes_no(user.enabled),
                user.tokens.to_string(),
                time(user.created_at),
                user.roles(),
            ]);
        }
        table.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::to_json;

    #[test]
    fn a_user_shows_roles_by_name_in_both_formats() {
        let view = UserView::from(proto::User {
            name: "bob".into(),
            enabled: true,
            tokens: 2,
            memberships: vec![proto::Membership {
                workspace: "team-a".into(),
                role: proto::WorkspaceRole::Owner as i32,
            }],
            ..Default::default()
        });
        let json = to_json(&view);
        assert_eq!(json["name"], "bob");
        assert_eq!(json["admin"], false);
        assert_eq!(json["tokens"], 2);
        assert_eq!(json["memberships"][0]["workspace"], "team-a");
        assert_eq!(json["memberships"][0]["role"], "owner");
        assert!(view.table().contains("team-a=owner"), "{}", view.table());
    }
}
