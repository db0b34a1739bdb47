//! Berth's own events: every committed state change of work requests, workflows,
//! workers, artifacts, templates, services and trigger rules, written to an outbox in the
//! same transaction as the change, then relayed in order onto the system topics and to
//! the notification channels.
//!
//! **The outbox is written by the database.** Triggers of migration
//! `2026-12-02-000021_system_events` write one `system_events` row for each state change
//! of the tables above, inside the changing transaction (constraint triggers deferred to
//! its commit), so no code path can forget an event and a change that rolls back leaves
//! none. Their `WHEN` clauses keep out what is not a state change (heartbeats, lease
//! renewals, log offsets, the passes' cursors). Code that has an event of its own to
//! report (a notification channel disabled, say) records it with [`emit`], in its
//! transaction, the same way.
//!
//! **Order.** `seq` is taken at commit while the writer still holds the object's row
//! lock, so for one object `seq` order is commit order; the relay publishes in `seq`
//! order, so a subscriber sees one object's events in the order they happened.
//!
//! **Exactly once.** [`relay`] publishes each event under its own id as the message id
//! and marks it relayed in one transaction; a relay that dies before committing left
//! nothing, and one that committed is never repeated. Only one replica relays at a time
//! (an advisory lock), so two never interleave.
//!
//! The vocabulary (`<kind>.<word>`; see the migration for what each word means):
//!
//! | topic | types |
//! |---|---|
//! | `berth.work-requests` | `work_request.created`, `blocked`, `pending`, `running`, `succeeded`, `failed`, `errored`, `cancelled`, `aborted`, `updated` (priority), `deleted` |
//! | `berth.workflows` | `workflow.` and the same words |
//! | `berth.workers` (in `default`) | `worker.created`, `connected`, `disconnected`, `enabled`, `disabled`, `draining`, `updated`, `deleted` |
//! | `berth.artifacts` | `artifact.created`, `completed`, `updated` (expiry), `deleted`, `collected` |
//! | `berth.templates` | `template.created`, `released`, `archived`, `restored`, `updated`, `deleted` |
//! | `berth.services` | `service.created`, `started`, `healthy`, `exited`, `restarting`, `moved`, `lost`, `stopping`, `scaled`, `updated`, `deploy_started`, `deploy_step`, `deploy_done`, `deploy_failed`, `reverting`, `deleted` |
//! | `berth.triggers` | `trigger_rule.created`, `updated`, `paused`, `resumed`, `archived`, `deleted`; `trigger_event.pending`, `fired`, `skipped`, `missed`, `paused`, `buffered`, `error` |
//!
//! An event's `data` is the object's new state from an allow-list of its columns: never a
//! secret value, a sealed secret or a token, and nothing a viewer of the workspace could
//! not read through the API. Objects that rules' firings made (requests, their steps and
//! outputs, firings) carry `trigger: {rule_id, event_id, rules}`, `rules` being every rule
//! whose firings led to it, so a topic rule can tell what its own firings caused.
//!
//! What it must not touch: the rows it reports on (it only reads what the outbox holds),
//! and the wire protocol.

pub mod relay;

use chrono::{DateTime, SecondsFormat, Utc};
use diesel::sql_types::{Jsonb, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use crate::error::Result;

/// The workspace that events of objects outside any workspace (workers) belong to.
pub const DEFAULT_WORKSPACE_ID: Uuid = Uuid::from_u128(1);

/// One event as the relay hands it on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SystemEvent {
    /// Stable: the same in the system topic's message id, every webhook delivery's
    /// `webhook-id` and every retry.
    pub id: Uuid,
    /// The outbox's order (commit order for one object).
    pub seq: i64,
    pub workspace_id: Uuid,
    /// The system topic it goes on, e.g. `berth.work-requests`.
    pub topic: String,
    /// E.g. `work_request.succeeded`.
    pub event_type: String,
    /// The changed object.
    pub object_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// The object's new state (never a secret value).
    pub data: serde_json::Value,
}

impl SystemEvent {
    /// The message published on the system topic: `{id, type, time, object_id,
    /// workspace, data}`, `workspace` being the workspace's name.
    pub fn content(&self, workspace: &str) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "type": self.event_type,
            "time": self.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "object_id": self.object_id,
            "workspace": workspace,
            "data": self.data,
        })
    }
}

/// Records an event of the caller's own in the outbox, in the caller's transaction (it
/// is relayed only if that commits): for changes no table trigger sees. `topic` should
/// be one of [`crate::topics::SYSTEM_TOPICS`]; `data` must hold no secret value.
pub async fn emit(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    topic: &str,
    event_type: &str,
    object_id: Uuid,
    data: &serde_json::Value,
) -> Result<()> {
    diesel::sql_query("SELECT berth_emit($1, $2, $3, $4, $5)")
        .bind::<SqlUuid, _>(workspace_id)
        .bind::<Text, _>(topic)
        .bind::<Text, _>(event_type)
        .bind::<SqlUuid, _>(object_id)
        .bind::<Jsonb, _>(data)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_message_carries_the_event_and_the_workspace_name() {
        let event = SystemEvent {
            id: Uuid::from_u128(7),
            seq: 3,
            workspace_id: DEFAULT_WORKSPACE_ID,
            topic: "berth.work-requests".into(),
            event_type: "work_request.succeeded".into(),
            object_id: Uuid::from_u128(9),
            occurred_at: Utc.with_ymd_and_hms(2026, 12, 2, 5, 0, 0).unwrap(),
            data: serde_json::json!({"status": "completed"}),
        };
        assert_eq!(
            event.content("default"),
            serde_json::json!({
                "id": "00000000-0000-0000-0000-000000000007",
                "type": "work_request.succeeded",
                "time": "2026-12-02T05:00:00.000000Z",
                "object_id": "00000000-0000-0000-0000-000000000009",
                "workspace": "default",
                "data": {"status": "completed"},
            })
        );
    }

    #[test]
    fn workers_report_in_the_default_workspace() {
        assert_eq!(
            DEFAULT_WORKSPACE_ID.to_string(),
            "00000000-0000-0000-0000-000000000001"
        );
    }
}
