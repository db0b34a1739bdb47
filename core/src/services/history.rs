//! Every event of a service and its replicas, with its reason: recorded in the
//! transaction that caused it ([`record`]) and read back newest first.

use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::Result;
use crate::services::store::NewEvent;
use crate::store::schema::service_events;

/// Records `event` in the caller's transaction.
pub async fn record(conn: &mut AsyncPgConnection, event: NewEvent) -> Result<()> {
    diesel::insert_into(service_events::table)
        .values(event)
        .execute(conn)
        .await?;
    Ok(())
}

use crate::access::auth::Identity;
use crate::error::Error;
use crate::services::{HistoryPage, HistoryQuery, ServiceManager};

impl ServiceManager {
    /// `GetServiceHistory`.
    pub async fn history(&self, caller: &Identity, query: &HistoryQuery) -> Result<HistoryPage> {
        let _ = (caller, query);
        Err(Error::internal("services::history is not built yet"))
    }
}
