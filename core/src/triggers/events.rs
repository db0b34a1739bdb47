//! Reading events: a workspace's or a rule's, newest first, a page at a time.

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::triggers::{EventPage, EventQuery, Triggers};

impl Triggers {
    /// `ListTriggerEvents`.
    pub async fn list_events(&self, caller: &Identity, query: EventQuery) -> Result<EventPage> {
        let _ = (caller, query);
        Err(Error::internal("trigger events are not built yet"))
    }
}
