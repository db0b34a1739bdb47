//! Berth's own events: every committed state change of work requests, workflows,
//! workers, artifacts, templates, services and trigger rules, written to an outbox in the
//! same transaction as the change, then relayed in order onto the system topics and to
//! the notification channels.
//!
//! (Being built.)
//!
//! What it must not touch: the rows it reports on (it only reads what the outbox holds),
//! and the wire protocol.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

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
