//! Notifications: channels of a workspace (`webhook`, `email`), event reactions on work
//! requests, workflows, templates and services, and the deliveries that carry events to
//! them at least once, with retries, a delivery log and a guard against server-side
//! request forgery.
//!
//! (Being built. [`fanout_in`] is the contract the system events relay calls.)
//!
//! What it must not touch: the objects it reports on, topics' rows, and the wire
//! protocol. Signing secrets are sealed with the server's key and shown only once.

use diesel_async::AsyncPgConnection;

use crate::error::{Error, Result};
use crate::events::SystemEvent;

/// Queues a delivery of each event to every enabled channel that wants it (by event
/// type, or by a reaction on its object), inside the relay's transaction.
pub async fn fanout_in(_conn: &mut AsyncPgConnection, events: &[SystemEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    Err(Error::internal("notifications: fanout_in is not built yet"))
}
