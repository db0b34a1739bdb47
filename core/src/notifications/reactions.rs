//! Event reactions: "when this work request, workflow, template or service starts,
//! succeeds, fails or completes, notify that channel".
//!
//! A reaction names its object by id (requests, workflows) or by name (templates,
//! services), checked to be in the workspace when it is made, and stores the object's
//! id. Roles as for channels: viewers list, contributors add and remove.
//!
//! Which reactions an event meets is [`crate::notifications::fanout`]'s to decide; what
//! an event means for them ([`on_of`]) is here.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::notifications::channels::{find_channel, standing_to_manage, standing_to_read};
use crate::notifications::store::{NewReaction, ReactionRow};
use crate::notifications::{
    Notifications, ObjectKind, On, ReactionInput, ReactionQuery, ReactionView,
};
use crate::store::schema::{
    notification_channels, notification_reactions, services, templates, users, work_requests,
};
use crate::templates::store as template_store;

/// What an event of type `event_type` with `data` means for reactions: the moments it
/// is (a success is also a completion). Read from the type's last word and, when the
/// data says so, the object's `status` and `result`.
pub fn on_of(event_type: &str, data: &serde_json::Value) -> Vec<On> {
    let last = event_type.rsplit('.').next().unwrap_or_default();
    let status = data.get("status").and_then(|v| v.as_str()).unwrap_or("");
    let result = data.get("result").and_then(|v| v.as_str()).unwrap_or("");
    let mut out = Vec::new();
    let started =
        matches!(last, "started" | "running") || (last == "changed" && status == "running");
    if started {
        out.push(On::Start);
        return out;
    }
    let success = matches!(last, "succeeded" | "success" | "deploy_done")
        || (matches!(last, "completed" | "finished" | "ended" | "changed") && result == "success");
    let failure = matches!(
        last,
        "failed" | "failure" | "errored" | "error" | "deploy_failed"
    ) || (matches!(last, "completed" | "finished" | "ended" | "changed")
        && matches!(result, "failure" | "error"));
    let ended = success
        || failure
        || matches!(
            last,
            "completed" | "finished" | "ended" | "aborted" | "cancelled"
        )
        || (last == "changed" && matches!(status, "completed" | "aborted"));
    if success {
        out.push(On::Success);
    }
    if failure {
        out.push(On::Failure);
    }
    if ended {
        out.push(On::Completion);
    }
    out
}

fn parse_kind(text: &str) -> Result<ObjectKind> {
    ObjectKind::parse(text).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "object_kind: {text:?} is not a kind of object; use one of {}",
            ObjectKind::words()
        ))
    })
}

fn parse_on(text: &str) -> Result<On> {
    On::parse(text).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "on: {text:?} is not a moment to react to; use one of {}",
            On::words()
        ))
    })
}

/// The id of `object` (of `kind`) in the workspace, or NOT_FOUND naming it.
async fn resolve_object(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    workspace: &str,
    kind: ObjectKind,
    object: &str,
) -> Result<Uuid> {
    if object.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "object: is required; name the {kind} (an id for requests and workflows, a name for templates and services)"
        )));
    }
    match kind {
        ObjectKind::WorkRequest | ObjectKind::Workflow => {
            let id = Uuid::parse_str(object).map_err(|_| {
                Error::InvalidArgument(format!("object: {object:?} is not a {kind} id"))
            })?;
            let wanted = if kind == ObjectKind::Workflow {
                "workflow"
            } else {
                "job"
            };
            let found: Option<String> = work_requests::table
                .filter(work_requests::id.eq(id))
                .filter(work_requests::workspace_id.eq(workspace_id))
                .select(work_requests::kind)
                .first(conn)
                .await
                .optional()?;
            match found {
                None => Err(Error::NotFound(format!(
                    "workspace {workspace} has no {kind} {id}"
                ))),
                Some(k) if k != wanted => Err(Error::InvalidArgument(format!(
                    "object: {id} is a {}, not a {kind}; say object_kind {}",
                    if k == "workflow" {
                        "workflow"
                    } else {
                        "work request"
                    },
                    if k == "workflow" {
                        "workflow"
                    } else {
                        "work_request"
                    },
                ))),
                Some(_) => Ok(id),
            }
        }
        ObjectKind::Template => {
            Ok(
                template_store::find(conn, workspace_id, workspace, object, None)
                    .await?
                    .id,
            )
        }
        ObjectKind::Service => {
            let found: Option<Uuid> = services::table
                .filter(services::workspace_id.eq(workspace_id))
                .filter(services::name.eq(object))
                .filter(services::deleted_at.is_null())
                .select(services::id)
                .first(conn)
                .await
                .optional()?;
            found.ok_or_else(|| {
                Error::NotFound(format!(
                    "workspace {workspace} has no service named {object:?}"
                ))
            })
        }
    }
}

/// How a reaction's object is shown: a template's or service's name, else the id.
async fn object_name(conn: &mut AsyncPgConnection, row: &ReactionRow) -> Result<String> {
    let name: Option<String> = match row.object_kind()? {
        ObjectKind::Template => templates::table
            .find(row.object_id)
            .select(templates::name)
            .first(conn)
            .await
            .optional()?,
        ObjectKind::Service => services::table
            .find(row.object_id)
            .select(services::name)
            .first(conn)
            .await
            .optional()?,
        ObjectKind::WorkRequest | ObjectKind::Workflow => None,
    };
    Ok(name.unwrap_or_else(|| row.object_id.to_string()))
}

async fn view_of(
    conn: &mut AsyncPgConnection,
    row: ReactionRow,
    workspace: &str,
) -> Result<ReactionView> {
    let channel: String = notification_channels::table
        .find(row.channel_id)
        .select(notification_channels::name)
        .first(conn)
        .await?;
    let created_by: Option<String> = match row.created_by {
        Some(id) => users::table
            .find(id)
            .select(users::name)
            .first(conn)
            .await
            .optional()?,
        None => None,
    };
    Ok(ReactionView {
        object: object_name(conn, &row).await?,
        workspace: workspace.to_owned(),
        channel,
        created_by: created_by.unwrap_or_default(),
        row,
    })
}

impl Notifications {
    /// `CreateReaction`. The same (object, moment, channel) twice is ALREADY_EXISTS.
    pub async fn create_reaction(
        &self,
        caller: &Identity,
        input: ReactionInput,
    ) -> Result<ReactionView> {
        let kind = parse_kind(&input.object_kind)?;
        let on = parse_on(&input.on)?;
        if input.channel.is_empty() {
            return Err(Error::InvalidArgument(
                "channel: is required; name a channel of the workspace".into(),
            ));
        }
        let mut conn = self.pool.get().await?;
        let standing = standing_to_manage(&mut conn, caller, &input.workspace).await?;
        let channel = find_channel(&mut conn, &standing, &input.channel, false).await?;
        let object_id = resolve_object(
            &mut conn,
            standing.workspace.id,
            &standing.workspace.name,
            kind,
            &input.object,
        )
        .await?;
        let row = NewReaction {
            id: Uuid::now_v7(),
            workspace_id: standing.workspace.id,
            object_kind: kind.as_str().to_owned(),
            object_id,
            on_event: on.as_str().to_owned(),
            channel_id: channel.id,
            created_by: caller.user_id,
        };
        let inserted: Option<ReactionRow> = diesel::insert_into(notification_reactions::table)
            .values(&row)
            .on_conflict_do_nothing()
            .returning(ReactionRow::as_returning())
            .get_result(&mut conn)
            .await
            .optional()?;
        let Some(inserted) = inserted else {
            return Err(Error::AlreadyExists(format!(
                "channel {} already reacts to {on} of {kind} {}",
                channel.name, input.object
            )));
        };
        view_of(&mut conn, inserted, &standing.workspace.name).await
    }

    /// `ListReactions`, oldest first.
    pub async fn list_reactions(
        &self,
        caller: &Identity,
        query: ReactionQuery,
    ) -> Result<Vec<ReactionView>> {
        let mut conn = self.pool.get().await?;
        let standing = standing_to_read(&mut conn, caller, &query.workspace).await?;
        let mut select = notification_reactions::table
            .filter(notification_reactions::workspace_id.eq(standing.workspace.id))
            .order(notification_reactions::id.asc())
            .select(ReactionRow::as_select())
            .into_boxed();
        if !query.object.is_empty() || !query.object_kind.is_empty() {
            if query.object.is_empty() || query.object_kind.is_empty() {
                return Err(Error::InvalidArgument(
                    "object, object_kind: give both to list one object's reactions, or neither"
                        .into(),
                ));
            }
            let kind = parse_kind(&query.object_kind)?;
            let id = resolve_object(
                &mut conn,
                standing.workspace.id,
                &standing.workspace.name,
                kind,
                &query.object,
            )
            .await?;
            select = select.filter(notification_reactions::object_id.eq(id));
        }
        if !query.channel.is_empty() {
            let channel = find_channel(&mut conn, &standing, &query.channel, false).await?;
            select = select.filter(notification_reactions::channel_id.eq(channel.id));
        }
        let rows: Vec<ReactionRow> = select.load(&mut conn).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(view_of(&mut conn, row, &standing.workspace.name).await?);
        }
        Ok(out)
    }

    /// `DeleteReaction`.
    pub async fn delete_reaction(
        &self,
        caller: &Identity,
        workspace: &str,
        id: &str,
    ) -> Result<()> {
        let id = Uuid::parse_str(id)
            .map_err(|_| Error::InvalidArgument(format!("id: {id:?} is not a reaction id")))?;
        let mut conn = self.pool.get().await?;
        let standing = standing_to_manage(&mut conn, caller, workspace).await?;
        let deleted = diesel::delete(
            notification_reactions::table
                .filter(notification_reactions::id.eq(id))
                .filter(notification_reactions::workspace_id.eq(standing.workspace.id)),
        )
        .execute(&mut conn)
        .await?;
        if deleted == 0 {
            return Err(Error::NotFound(format!(
                "workspace {} has no reaction {id}",
                standing.workspace.name
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_read_as_moments() {
        assert_eq!(on_of("work_request.started", &json!({})), vec![On::Start]);
        assert_eq!(
            on_of("work_request.succeeded", &json!({})),
            vec![On::Success, On::Completion]
        );
        assert_eq!(
            on_of("work_request.failed", &json!({})),
            vec![On::Failure, On::Completion]
        );
        assert_eq!(
            on_of("work_request.completed", &json!({"result": "error"})),
            vec![On::Failure, On::Completion]
        );
        assert_eq!(
            on_of("work_request.aborted", &json!({})),
            vec![On::Completion]
        );
        assert_eq!(
            on_of("work_request.changed", &json!({"status": "running"})),
            vec![On::Start]
        );
        assert!(on_of("work_request.created", &json!({})).is_empty());
        assert_eq!(on_of("work_request.running", &json!({})), vec![On::Start]);
        assert_eq!(
            on_of("work_request.errored", &json!({})),
            vec![On::Failure, On::Completion]
        );
        assert_eq!(
            on_of("work_request.cancelled", &json!({})),
            vec![On::Completion]
        );
        assert_eq!(on_of("service.started", &json!({})), vec![On::Start]);
        assert_eq!(
            on_of("service.deploy_failed", &json!({})),
            vec![On::Failure, On::Completion]
        );
        assert!(on_of("notification.ping", &json!({})).is_empty());
    }
}
