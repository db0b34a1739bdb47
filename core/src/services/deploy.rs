//! Rolling deploys: one replica at a time, start the new release's container beside the
//! old one, wait until it has been healthy for `min_healthy`, stop the old one (TERM →
//! grace → KILL), go on; past the deadline, stop, and with `auto_revert` roll back to the
//! last release that was healthy.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;

use crate::error::Result;
use crate::services::ServiceManager;
use crate::services::state::{AfterCommit, ServiceState};

/// Advances the deploy under way on `state` (if any) by what can be done now, in the
/// pass's transaction.
pub async fn advance(
    manager: &ServiceManager,
    conn: &mut AsyncPgConnection,
    state: &mut ServiceState,
    now: DateTime<Utc>,
    after: &mut AfterCommit,
) -> Result<()> {
    let _ = (manager, conn, state, now, after);
    Ok(())
}

use crate::access::auth::Identity;
use crate::error::Error;
use crate::services::{DeployInput, ServiceView};

impl ServiceManager {
    /// `DeployService`.
    pub async fn deploy(&self, caller: &Identity, input: DeployInput) -> Result<ServiceView> {
        let _ = (caller, input);
        Err(Error::internal("services::deploy is not built yet"))
    }
}
