//! Workspace roles: what a caller may do in one workspace, decided in one place.
//!
//! A user's standing in a workspace is their membership role there ([`WorkspaceRole`]:
//! viewer < contributor < owner, each including the ones before it), or viewer in effect
//! when the workspace is public. Admins may do everything everywhere. Worker tokens have
//! no standing anywhere.
//!
//! Two kinds of refusal, on purpose:
//! - a caller who may not even see a workspace gets NOT_FOUND for it and for its things,
//!   worded exactly as for a workspace or request that does not exist, so names and ids
//!   cannot be probed;
//! - a caller who may see it but lacks the role for an action gets PERMISSION_DENIED
//!   naming the role needed and the role they have.
//!
//! Architecture invariant: every domain operation on a workspace's things asks
//! [`Standing`] (through [`in_workspace`], [`of_request`] or [`visible`]); nothing
//! compares user ids with submitters any more. This module reads memberships and never
//! changes them (that is `access::workspaces`).

use std::fmt;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::store::schema::{work_requests, workspace_members, workspaces};
use crate::work::ids::WorkRequestId;

/// A member's role in a workspace. Ordered: a higher role includes the lower ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkspaceRole {
    /// Reads requests, logs and settings.
    Viewer,
    /// Also submits, cancels, retries and decides any request in the workspace.
    Contributor,
    /// Also manages members and settings.
    Owner,
}

impl WorkspaceRole {
    /// Every role, lowest first.
    pub const ALL: [WorkspaceRole; 3] = [
        WorkspaceRole::Viewer,
        WorkspaceRole::Contributor,
        WorkspaceRole::Owner,
    ];

    /// The name stored in `workspace_members.role` and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceRole::Viewer => "viewer",
            WorkspaceRole::Contributor => "contributor",
            WorkspaceRole::Owner => "owner",
        }
    }

    /// The role stored as `name`.
    pub fn from_name(name: &str) -> Option<WorkspaceRole> {
        WorkspaceRole::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for WorkspaceRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parts of a workspace row that decide what may happen in it.
#[derive(Clone, Debug)]
pub struct WorkspaceRef {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Readable by every user.
    pub public: bool,
    /// Archived: takes no new submissions.
    pub archived: bool,
}

/// A caller's standing in one workspace.
#[derive(Clone, Debug)]
pub struct Standing {
    /// The workspace.
    pub workspace: WorkspaceRef,
    /// Whether the caller is an admin.
    pub admin: bool,
    /// The caller's membership role, if a member.
    pub role: Option<WorkspaceRole>,
}

impl Standing {
    /// Whether the caller may see the workspace at all.
    pub fn can_see(&self) -> bool {
        self.admin || self.role.is_some() || self.workspace.public
    }

    /// Whether the caller may do what `needed` allows.
    pub fn has(&self, needed: WorkspaceRole) -> bool {
        self.admin
            || self.role.is_some_and(|r| r >= needed)
            || (needed == WorkspaceRole::Viewer && self.workspace.public)
    }

    /// Refuses, with PERMISSION_DENIED naming the role needed, a caller who may see the
    /// workspace but lacks `needed` to `action` (e.g. "submit to"). A caller who may not
    /// see it must have been turned away with NOT_FOUND before this is asked.
    pub fn require(&self, needed: WorkspaceRole, action: &str) -> Result<()> {
        if self.has(needed) {
            return Ok(());
        }
        let have = match self.role {
            Some(role) => format!("you are {role} there"),
            None => "you are not a member (it is public, so you may read it)".to_owned(),
        };
        Err(Error::PermissionDenied(format!(
            "to {action} workspace {} needs the {needed} role; {have}",
            self.workspace.name
        )))
    }

    /// Refuses new submissions once the workspace is archived.
    pub fn require_open(&self) -> Result<()> {
        if self.workspace.archived {
            return Err(Error::FailedPrecondition(format!(
                "workspace {} is archived: it takes no new work requests (its history stays readable)",
                self.workspace.name
            )));
        }
        Ok(())
    }
}

/// The NOT_FOUND for a workspace that does not exist or that the caller may not see.
pub fn no_such_workspace(name: &str) -> Error {
    Error::NotFound(format!("workspace: no workspace named {name:?}"))
}

/// The NOT_FOUND for a request that does not exist or that the caller may not see.
pub fn no_such_request(id: WorkRequestId) -> Error {
    Error::NotFound(format!("work request {id} not found"))
}

/// A workspace's deciding columns and the caller's stored role there, if any.
type Found = (
    Uuid,
    String,
    bool,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<String>,
);

/// Builds the standing from one row of [`Found`].
fn standing_from(caller: &Identity, found: Found) -> Result<Standing> {
    let (id, name, public, archived_at, role) = found;
    let role = match role {
        // An admin's membership changes nothing; it is ignored rather than trusted.
        Some(_) if caller.is_admin() => None,
        None => None,
        Some(name) => Some(WorkspaceRole::from_name(&name).ok_or_else(|| {
            Error::internal(format!("unknown workspace role {name:?} in the database"))
        })?),
    };
    Ok(Standing {
        workspace: WorkspaceRef {
            id,
            name,
            public,
            archived: archived_at.is_some(),
        },
        admin: caller.is_admin(),
        role,
    })
}

/// The user whose memberships count: none for worker tokens (their standing is nil).
fn member_id(caller: &Identity) -> Uuid {
    caller.user_id.unwrap_or(Uuid::nil())
}

/// The caller's standing in the workspace named `name`; NOT_FOUND when there is none or
/// the caller may not see it. One query.
pub async fn in_workspace(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    name: &str,
) -> Result<Standing> {
    let found: Option<Found> = workspaces::table
        .left_join(
            workspace_members::table.on(workspace_members::workspace_id
                .eq(workspaces::id)
                .and(workspace_members::user_id.eq(member_id(caller)))),
        )
        .filter(workspaces::name.eq(name))
        .select((
            workspaces::id,
            workspaces::name,
            workspaces::public,
            workspaces::archived_at,
            workspace_members::role.nullable(),
        ))
        .first(conn)
        .await
        .optional()?;
    let Some(found) = found else {
        return Err(no_such_workspace(name));
    };
    let standing = standing_from(caller, found)?;
    if !standing.can_see() {
        return Err(no_such_workspace(name));
    }
    Ok(standing)
}

/// The caller's standing in the workspace of request `id`; NOT_FOUND (worded as for a
/// request that does not exist) when there is no such request or the caller may not see
/// its workspace. One query.
pub async fn of_request(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    id: WorkRequestId,
) -> Result<Standing> {
    let found: Option<Found> = work_requests::table
        .inner_join(workspaces::table)
        .left_join(
            workspace_members::table.on(workspace_members::workspace_id
                .eq(workspaces::id)
                .and(workspace_members::user_id.eq(member_id(caller)))),
        )
        .filter(work_requests::id.eq(id))
        .select((
            workspaces::id,
            workspaces::name,
            workspaces::public,
            workspaces::archived_at,
            workspace_members::role.nullable(),
        ))
        .first(conn)
        .await
        .optional()?;
    let Some(found) = found else {
        return Err(no_such_request(id));
    };
    let standing = standing_from(caller, found)?;
    if !standing.can_see() {
        return Err(no_such_request(id));
    }
    Ok(standing)
}

/// Refuses anyone but a caller with `needed` in request `id`'s workspace to `verb` it:
/// NOT_FOUND if they may not see it, PERMISSION_DENIED if they may see but not act.
pub async fn require_on_request(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    id: WorkRequestId,
    needed: WorkspaceRole,
    verb: &str,
) -> Result<Standing> {
    let standing = of_request(conn, caller, id).await?;
    standing.require(needed, &format!("{verb} work request {id}, its"))?;
    Ok(standing)
}

/// The workspaces the caller may see: `None` for an admin (all of them), else the ids of
/// the workspaces they are a member of and the public ones.
pub async fn visible(conn: &mut AsyncPgConnection, caller: &Identity) -> Result<Option<Vec<Uuid>>> {
    if caller.is_admin() {
        return Ok(None);
    }
    let Some(user_id) = caller.user_id else {
        return Ok(Some(Vec::new()));
    };
    let member_of = workspace_members::table
        .filter(workspace_members::user_id.eq(user_id))
        .select(workspace_members::workspace_id);
    let ids: Vec<Uuid> = workspaces::table
        .filter(
            workspaces::public
                .eq(true)
                .or(workspaces::id.eq_any(member_of)),
        )
        .select(workspaces::id)
        .load(conn)
        .await?;
    Ok(Some(ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(role: Option<WorkspaceRole>, public: bool, admin: bool) -> Standing {
        Standing {
            workspace: WorkspaceRef {
                id: Uuid::nil(),
                name: "team-a".into(),
                public,
                archived: false,
            },
            admin,
            role,
        }
    }

    #[test]
    fn roles_include_the_ones_below() {
        use WorkspaceRole::*;
        let owner = standing(Some(Owner), false, false);
        assert!(owner.has(Viewer) && owner.has(Contributor) && owner.has(Owner));
        let contributor = standing(Some(Contributor), false, false);
        assert!(contributor.has(Viewer) && contributor.has(Contributor));
        assert!(!contributor.has(Owner));
        let viewer = standing(Some(Viewer), false, false);
        assert!(viewer.has(Viewer) && !viewer.has(Contributor));
        for role in WorkspaceRole::ALL {
            assert_eq!(WorkspaceRole::from_name(role.as_str()), Some(role));
        }
        assert_eq!(WorkspaceRole::from_name("admin"), None);
    }

    #[test]
    fn public_reads_admin_does_everything_stranger_sees_nothing() {
        use WorkspaceRole::*;
        let public = standing(None, true, false);
        assert!(public.can_see() && public.has(Viewer) && !public.has(Contributor));
        let admin = standing(None, false, true);
        assert!(admin.can_see() && admin.has(Owner));
        let stranger = standing(None, false, false);
        assert!(!stranger.can_see() && !stranger.has(Viewer));
    }

    #[test]
    fn refusal_names_the_role_needed_and_the_role_held() {
        let viewer = standing(Some(WorkspaceRole::Viewer), false, false);
        let Err(Error::PermissionDenied(message)) =
            viewer.require(WorkspaceRole::Contributor, "submit to")
        else {
            panic!("a viewer may not submit");
        };
        assert!(
            message.contains("contributor role") && message.contains("you are viewer"),
            "{message}"
        );
        let public = standing(None, true, false);
        let Err(Error::PermissionDenied(message)) =
            public.require(WorkspaceRole::Contributor, "submit to")
        else {
            panic!("a non-member may not submit to a public workspace");
        };
        assert!(message.contains("not a member"), "{message}");
    }
}
