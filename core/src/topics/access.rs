//! Who may read, manage, produce on and consume from a topic: decided here and only here.
//!
//! On top of the caller's [`Standing`] in the topic's workspace (from
//! [`crate::access::roles`]):
//! - **read** (get and list topics and subscriptions): viewers (and readers of a public
//!   workspace);
//! - **manage** (create, change, grant, delete): contributors; never a system topic;
//! - **produce** and **consume**: owners of the workspace and admins always (except on
//!   system topics); on a public topic any member; otherwise a grant must name the
//!   caller (`user:<name>`) or a role they hold at least (`role:viewer`,
//!   `role:contributor`, `role:owner`);
//! - **system topics** (`berth.*`): anyone who may read the workspace consumes; nobody
//!   produces, changes or deletes them through the API;
//! - **response topics**: their owner (the requester), owners and admins consume; whoever
//!   may consume the topic it answers (and the owner) produces.
//!
//! A caller who may not see the workspace never gets here: [`crate::access::roles`]
//! answers NOT_FOUND first. A caller who may see the topic but not act gets
//! PERMISSION_DENIED saying what would let them.

use std::fmt;

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::access::roles::{Standing, WorkspaceRole};
use crate::error::{Error, Result};
use crate::topics::store::{self, GrantRow, TopicRow};

/// Whom a grant names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Principal {
    /// One user (their id; `user:<name>` on the wire).
    User(Uuid),
    /// Every member holding this role or a higher one.
    Role(WorkspaceRole),
}

impl Principal {
    /// As stored: `user:<uuid>` or `role:<role>`.
    pub fn stored(&self) -> String {
        match self {
            Principal::User(id) => format!("user:{id}"),
            Principal::Role(role) => format!("role:{role}"),
        }
    }

    /// The stored text back; `None` for anything else.
    pub fn parse_stored(text: &str) -> Option<Principal> {
        if let Some(id) = text.strip_prefix("user:") {
            return Uuid::parse_str(id).ok().map(Principal::User);
        }
        text.strip_prefix("role:")
            .and_then(WorkspaceRole::from_name)
            .map(Principal::Role)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.stored())
    }
}

/// What a caller wants to do with a topic's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    Produce,
    Consume,
}

impl Use {
    fn verb(self) -> &'static str {
        match self {
            Use::Produce => "publish on",
            Use::Consume => "consume from",
        }
    }

    fn grant(self) -> &'static str {
        match self {
            Use::Produce => "producer",
            Use::Consume => "consumer",
        }
    }
}

/// Refuses a caller who may not read topics of the workspace (they may see it, so this
/// is PERMISSION_DENIED; with a role below viewer there is none).
pub fn require_read(standing: &Standing) -> Result<()> {
    standing.require(WorkspaceRole::Viewer, "read topics of")
}

/// Refuses a caller who may not create, change or delete topics of the workspace.
pub fn require_manage(standing: &Standing) -> Result<()> {
    standing.require(WorkspaceRole::Contributor, "manage topics of")
}

/// Refuses any change of a system topic through the API.
pub fn refuse_system(topic: &TopicRow, what: &str) -> Result<()> {
    if topic.is_system {
        return Err(Error::PermissionDenied(format!(
            "topic {} is a system topic: only Berth publishes on it, and nobody may {what} it; subscribe to it instead",
            topic.slug
        )));
    }
    Ok(())
}

/// Whether the caller is an owner of the workspace or an admin.
fn owns(standing: &Standing) -> bool {
    standing.admin || standing.role == Some(WorkspaceRole::Owner)
}

/// Whether `grants` give `caller` the `use` of the topic.
fn granted(standing: &Standing, caller: Option<Uuid>, grants: &[GrantRow], use_: Use) -> bool {
    grants.iter().any(|g| {
        let allows = match use_ {
            Use::Produce => g.can_produce,
            Use::Consume => g.can_consume,
        };
        allows
            && match Principal::parse_stored(&g.principal) {
                Some(Principal::User(id)) => caller == Some(id),
                Some(Principal::Role(role)) => standing.role.is_some_and(|held| held >= role),
                None => false,
            }
    })
}

/// What the caller may do with a topic's messages, and the sentence that refuses them.
/// `source_consumer` is, for a response topic, whether the caller may consume the topic
/// it answers (who may publish the answers); it is not looked at otherwise.
pub fn require_use(
    standing: &Standing,
    caller: Option<Uuid>,
    topic: &TopicRow,
    grants: &[GrantRow],
    use_: Use,
    source_consumer: bool,
) -> Result<()> {
    if topic.is_system {
        return match use_ {
            // Anyone who got this far may read the workspace.
            Use::Consume => Ok(()),
            Use::Produce => refuse_system(topic, "publish on"),
        };
    }
    if owns(standing) {
        return Ok(());
    }
    if topic.response_for.is_some() {
        let requester = caller.is_some() && topic.owner_id == caller;
        let allowed = match use_ {
            Use::Consume => requester,
            Use::Produce => requester || source_consumer,
        };
        if allowed {
            return Ok(());
        }
        return Err(Error::PermissionDenied(match use_ {
            Use::Consume => format!(
                "topic {} is a response topic: only the user who asked (and owners of the workspace) may consume from it",
                topic.slug
            ),
            Use::Produce => format!(
                "topic {} is a response topic: only consumers of the topic it answers may publish on it",
                topic.slug
            ),
        }));
    }
    let member = standing.role.is_some();
    if topic.is_public && member {
        return Ok(());
    }
    if granted(standing, caller, grants, use_) {
        return Ok(());
    }
    let named: Vec<String> = grants
        .iter()
        .filter(|g| match use_ {
            Use::Produce => g.can_produce,
            Use::Consume => g.can_consume,
        })
        .filter_map(|g| match Principal::parse_stored(&g.principal)? {
            Principal::Role(role) => Some(format!("role:{role}")),
            Principal::User(_) => None,
        })
        .collect();
    let have = match standing.role {
        Some(role) => format!("you are {role} in workspace {}", standing.workspace.name),
        None => format!(
            "you are not a member of workspace {}",
            standing.workspace.name
        ),
    };
    let roles = if named.is_empty() {
        String::new()
    } else {
        format!(" (it grants {})", named.join(", "))
    };
    let public = if topic.is_public {
        "; it is public, which lets members"
    } else {
        ""
    };
    Err(Error::PermissionDenied(format!(
        "to {} topic {} you need a {} grant{roles} or the owner role{public}; {have}",
        use_.verb(),
        topic.slug,
        use_.grant(),
    )))
}

/// Whether the caller may consume the topic `source` (a response topic's source).
pub(crate) async fn may_consume_source(
    conn: &mut AsyncPgConnection,
    standing: &Standing,
    caller: Option<Uuid>,
    source: Uuid,
) -> Result<bool> {
    let Some(row) = store::topic_by_id(conn, source).await? else {
        return Ok(false);
    };
    let grants = store::grants_of(conn, row.id).await?;
    Ok(require_use(standing, caller, &row, &grants, Use::Consume, false).is_ok())
}

/// Refuses a caller who may not `use_` the topic, reading its grants (and, for a
/// response topic's producers, the topic it answers).
pub(crate) async fn require_use_in(
    conn: &mut AsyncPgConnection,
    standing: &Standing,
    caller: &crate::access::auth::Identity,
    topic: &TopicRow,
    use_: Use,
) -> Result<()> {
    let grants = store::grants_of(conn, topic.id).await?;
    let source_consumer = match (use_, topic.response_for) {
        (Use::Produce, Some(source)) => {
            may_consume_source(conn, standing, caller.user_id, source).await?
        }
        _ => false,
    };
    require_use(
        standing,
        caller.user_id,
        topic,
        &grants,
        use_,
        source_consumer,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::roles::WorkspaceRef;
    use chrono::Utc;

    fn standing(role: Option<WorkspaceRole>, admin: bool) -> Standing {
        Standing {
            workspace: WorkspaceRef {
                id: Uuid::nil(),
                name: "team".into(),
                public: true,
                archived: false,
            },
            admin,
            role,
        }
    }

    fn topic(public: bool) -> TopicRow {
        TopicRow {
            id: Uuid::now_v7(),
            workspace_id: Uuid::nil(),
            slug: "jobs".into(),
            description: String::new(),
            is_public: public,
            is_system: false,
            store_policy: "cache".into(),
            max_age_ms: None,
            max_messages: None,
            api_info: serde_json::json!({}),
            garbage_collect_at: None,
            response_for: None,
            owner_id: None,
            created_by: None,
            created_at: Utc::now(),
            last_ping_at: None,
            last_pong_at: None,
        }
    }

    fn grant(topic: &TopicRow, principal: Principal, produce: bool, consume: bool) -> GrantRow {
        GrantRow {
            topic_id: topic.id,
            principal: principal.stored(),
            can_produce: produce,
            can_consume: consume,
        }
    }

    use WorkspaceRole::*;

    #[test]
    fn principals_round_trip() {
        let user = Principal::User(Uuid::now_v7());
        assert_eq!(Principal::parse_stored(&user.stored()), Some(user));
        assert_eq!(
            Principal::parse_stored("role:contributor"),
            Some(Principal::Role(Contributor))
        );
        assert_eq!(Principal::parse_stored("role:admin"), None);
        assert_eq!(Principal::parse_stored("group:x"), None);
    }

    #[test]
    fn owners_and_admins_always_members_on_public_topics_grants_otherwise() {
        let private = topic(false);
        let me = Uuid::now_v7();
        for use_ in [Use::Produce, Use::Consume] {
            assert!(
                require_use(
                    &standing(Some(Owner), false),
                    None,
                    &private,
                    &[],
                    use_,
                    false
                )
                .is_ok()
            );
            assert!(require_use(&standing(None, true), None, &private, &[], use_, false).is_ok());
            let denied = require_use(
                &standing(Some(Contributor), false),
                Some(me),
                &private,
                &[],
                use_,
                false,
            );
            assert!(
                matches!(denied, Err(Error::PermissionDenied(_))),
                "{denied:?}"
            );
            let public = topic(true);
            assert!(
                require_use(
                    &standing(Some(Viewer), false),
                    Some(me),
                    &public,
                    &[],
                    use_,
                    false
                )
                .is_ok()
            );
            // A reader of a public workspace is no member.
            assert!(
                require_use(&standing(None, false), Some(me), &public, &[], use_, false).is_err()
            );
        }
        let grants = [
            grant(&private, Principal::Role(Contributor), true, false),
            grant(&private, Principal::User(me), false, true),
        ];
        let contributor = standing(Some(Contributor), false);
        assert!(require_use(&contributor, None, &private, &grants, Use::Produce, false).is_ok());
        assert!(
            require_use(
                &standing(Some(Viewer), false),
                None,
                &private,
                &grants,
                Use::Produce,
                false
            )
            .is_err()
        );
        assert!(
            require_use(
                &standing(Some(Viewer), false),
                Some(me),
                &private,
                &grants,
                Use::Consume,
                false
            )
            .is_ok()
        );
        let Err(Error::PermissionDenied(m)) = require_use(
            &standing(Some(Viewer), false),
            None,
            &private,
            &grants,
            Use::Produce,
            false,
        ) else {
            panic!("a viewer without a grant may not publish");
        };
        assert!(
            m.contains("role:contributor") && m.contains("you are viewer"),
            "{m}"
        );
    }

    #[test]
    fn system_topics_are_read_by_anyone_written_by_nobody() {
        let mut system = topic(false);
        system.is_system = true;
        system.slug = "berth.workers".into();
        assert!(
            require_use(
                &standing(None, false),
                None,
                &system,
                &[],
                Use::Consume,
                false
            )
            .is_ok()
        );
        for who in [standing(None, true), standing(Some(Owner), false)] {
            let refused = require_use(&who, None, &system, &[], Use::Produce, false);
            assert!(
                matches!(refused, Err(Error::PermissionDenied(_))),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn response_topics_are_consumed_by_their_requester_and_answered_by_the_source_consumers() {
        let requester = Uuid::now_v7();
        let mut response = topic(true);
        response.response_for = Some(Uuid::now_v7());
        response.owner_id = Some(requester);
        let member = standing(Some(Contributor), false);
        assert!(
            require_use(
                &member,
                Some(requester),
                &response,
                &[],
                Use::Consume,
                false
            )
            .is_ok()
        );
        let other = Uuid::now_v7();
        assert!(require_use(&member, Some(other), &response, &[], Use::Consume, true).is_err());
        assert!(require_use(&member, Some(other), &response, &[], Use::Produce, true).is_ok());
        assert!(require_use(&member, Some(other), &response, &[], Use::Produce, false).is_err());
        assert!(
            require_use(
                &standing(Some(Owner), false),
                Some(other),
                &response,
                &[],
                Use::Consume,
                false
            )
            .is_ok()
        );
    }
}
