//! Channel, reaction, delivery and attempt rows, and what the rows store in plain text.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::notifications::{ChannelKind, DeliveryState, ObjectKind, On};
use crate::store::schema::{
    notification_attempts, notification_channels, notification_deliveries, notification_reactions,
};

/// A channel row. `sealed` holds the signing secret and header values; it is never shown.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = notification_channels)]
pub struct ChannelRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    /// A [`ChannelKind`] as text.
    pub kind: String,
    pub url: String,
    pub header_names: Vec<String>,
    pub sealed: Option<Vec<u8>>,
    pub recipients: Vec<String>,
    pub subject_prefix: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: String,
    pub disabled_at: Option<DateTime<Utc>>,
    pub failures_in_row: i32,
    pub last_error: String,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

impl std::fmt::Debug for ChannelRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("enabled", &self.enabled)
            .field("sealed", &self.sealed.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

impl ChannelRow {
    /// Its kind (a stored kind is always one of them).
    pub fn kind(&self) -> Result<ChannelKind> {
        ChannelKind::parse(&self.kind).ok_or_else(|| {
            Error::internal(format!(
                "channel {} has unknown kind {:?}",
                self.id, self.kind
            ))
        })
    }
}

/// A new channel.
#[derive(Clone, Insertable)]
#[diesel(table_name = notification_channels)]
pub struct NewChannel {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub kind: String,
    pub url: String,
    pub header_names: Vec<String>,
    pub sealed: Option<Vec<u8>>,
    pub recipients: Vec<String>,
    pub subject_prefix: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: String,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
}

/// A reaction row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = notification_reactions)]
pub struct ReactionRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    /// An [`ObjectKind`] as text.
    pub object_kind: String,
    pub object_id: Uuid,
    /// An [`On`] as text.
    pub on_event: String,
    pub channel_id: Uuid,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl ReactionRow {
    /// What it is on.
    pub fn object_kind(&self) -> Result<ObjectKind> {
        ObjectKind::parse(&self.object_kind).ok_or_else(|| {
            Error::internal(format!(
                "reaction {} has unknown object kind {:?}",
                self.id, self.object_kind
            ))
        })
    }

    /// What it waits for.
    pub fn on(&self) -> Result<On> {
        On::parse(&self.on_event).ok_or_else(|| {
            Error::internal(format!(
                "reaction {} has unknown trigger {:?}",
                self.id, self.on_event
            ))
        })
    }
}

/// A new reaction.
#[derive(Clone, Debug, Insertable)]
#[diesel(table_name = notification_reactions)]
pub struct NewReaction {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub object_kind: String,
    pub object_id: Uuid,
    pub on_event: String,
    pub channel_id: Uuid,
    pub created_by: Option<Uuid>,
}

/// A delivery row.
#[derive(Clone, Debug, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = notification_deliveries)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub channel_id: Uuid,
    /// The event's id: the webhook's `webhook-id`.
    pub event_id: Uuid,
    pub event_type: String,
    pub object_id: Uuid,
    /// The exact JSON body sent.
    pub body: String,
    /// A [`DeliveryState`] as text.
    pub state: String,
    pub test: bool,
    pub attempts: i32,
    pub series_attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub claim: Option<Uuid>,
    pub leased_until: Option<DateTime<Utc>>,
    pub last_error: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl DeliveryRow {
    /// Its state (a stored state is always one of them).
    pub fn state(&self) -> Result<DeliveryState> {
        DeliveryState::parse(&self.state).ok_or_else(|| {
            Error::internal(format!(
                "delivery {} has unknown state {:?}",
                self.id, self.state
            ))
        })
    }
}

/// A new delivery; queued by [`crate::notifications::fanout`] or a test ping.
#[derive(Clone, Debug, Insertable)]
#[diesel(table_name = notification_deliveries)]
pub struct NewDelivery {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub channel_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub object_id: Uuid,
    pub body: String,
    pub test: bool,
}

/// An attempt row (the delivery log).
#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = notification_attempts)]
pub struct AttemptRow {
    pub delivery_id: Uuid,
    pub number: i32,
    pub at: DateTime<Utc>,
    /// The HTTP status; 0 when there was none.
    pub status_code: i32,
    /// '' when it succeeded.
    pub error: String,
    pub latency_ms: i64,
    /// The first 4 KiB of the response.
    pub response: String,
    /// The headers sent, secrets hidden.
    pub request_headers: serde_json::Value,
    pub will_retry: bool,
}
