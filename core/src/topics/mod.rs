//! Topics: publish/subscribe inside a workspace on PostgreSQL, with durable named
//! subscriptions, acknowledged and fenced deliveries, store policies, retention,
//! availability by ping/pong, and response topics.
//!
//! (Being built. The functions below are the contract other rooms use: the system
//! events relay publishes through [`publish_system`], and topic trigger rules consume
//! through an internal subscription with [`open_internal`], [`take_internal`] and
//! [`accept_internal`], all inside the caller's transaction.)
//!
//! What it must not touch: the rows of other rooms (it reads workspaces and roles through
//! [`crate::access`]), and the wire protocol.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::error::{Error, Result};

/// When a message row is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorePolicy {
    /// Never stored: delivered to consumers connected now, at most once.
    Disabled,
    /// Deleted at the first ack by any subscription.
    Cache,
    /// Deleted once every subscription that existed when it was published has acked it.
    CacheAll,
    /// Kept until retention removes it.
    Store,
}

impl StorePolicy {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            StorePolicy::Disabled => "disabled",
            StorePolicy::Cache => "cache",
            StorePolicy::CacheAll => "cacheall",
            StorePolicy::Store => "store",
        }
    }

    /// The stored text back; `None` for anything else.
    pub fn parse(text: &str) -> Option<StorePolicy> {
        match text {
            "disabled" => Some(StorePolicy::Disabled),
            "cache" => Some(StorePolicy::Cache),
            "cacheall" => Some(StorePolicy::CacheAll),
            "store" => Some(StorePolicy::Store),
            _ => None,
        }
    }
}

/// The system topics, one per kind of Berth object, in every workspace. Their slugs
/// start `berth.`, which no user topic may.
pub const SYSTEM_TOPICS: [&str; 8] = [
    "berth.work-requests",
    "berth.workflows",
    "berth.workers",
    "berth.artifacts",
    "berth.templates",
    "berth.services",
    "berth.triggers",
    "berth.notifications",
];

/// A message handed to an internal (server-side) subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct InternalMessage {
    /// Its place in its topic.
    pub seq: i64,
    /// The publisher's id for it (unique in its topic).
    pub message_id: Uuid,
    pub context: String,
    pub content: serde_json::Value,
    pub properties: serde_json::Value,
    /// Who published it (user name, or `berth` for system events).
    pub producer: String,
    pub published_at: DateTime<Utc>,
}

/// Publishes a system event on `slug` (one of [`SYSTEM_TOPICS`]) in `workspace_id`,
/// inside the caller's transaction, creating the topic (policy `store`) when it does not
/// exist yet. Returns the message's seq, or `None` when `message_id` was already
/// published there (nothing new is stored).
pub async fn publish_system(
    _conn: &mut AsyncPgConnection,
    _workspace_id: Uuid,
    _slug: &str,
    _message_id: Uuid,
    _content: &serde_json::Value,
) -> Result<Option<i64>> {
    Err(Error::internal("topics: publish_system is not built yet"))
}

/// Opens (creates, or finds again) the internal subscription `name` on topic `slug` of
/// `workspace_id`, starting at new messages, inside the caller's transaction. NOT_FOUND
/// when the topic does not exist; FAILED_PRECONDITION when it stores nothing
/// (`disabled`). Returns the subscription's id.
pub async fn open_internal(
    _conn: &mut AsyncPgConnection,
    _workspace_id: Uuid,
    _slug: &str,
    _name: &str,
) -> Result<Uuid> {
    Err(Error::internal("topics: open_internal is not built yet"))
}

/// Locks and returns up to `limit` messages the internal subscription may take now
/// (`FOR UPDATE SKIP LOCKED`, oldest first), inside the caller's transaction; the caller
/// acks them in the same transaction with [`accept_internal`].
pub async fn take_internal(
    _conn: &mut AsyncPgConnection,
    _subscription_id: Uuid,
    _limit: i64,
) -> Result<Vec<InternalMessage>> {
    Err(Error::internal("topics: take_internal is not built yet"))
}

/// Acks `seqs` on the internal subscription, applying the topic's store policy.
pub async fn accept_internal(
    _conn: &mut AsyncPgConnection,
    _subscription_id: Uuid,
    _seqs: &[i64],
) -> Result<()> {
    Err(Error::internal("topics: accept_internal is not built yet"))
}

/// Deletes the internal subscription (its rule was archived); gone already is fine.
pub async fn drop_internal(_conn: &mut AsyncPgConnection, _subscription_id: Uuid) -> Result<()> {
    Err(Error::internal("topics: drop_internal is not built yet"))
}
