//! The replicas' logs interleaved: every container of every (or one) slot, each chunk
//! naming its replica; following goes on through restarts and deploys.

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::services::{LogsQuery, ServiceLogChunk, ServiceManager};

impl ServiceManager {
    /// `StreamServiceLogs`: chunks as they are read, ending when the stream is done (or,
    /// following, when the receiver is dropped).
    pub async fn logs(
        &self,
        caller: &Identity,
        query: LogsQuery,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<ServiceLogChunk>>> {
        let _ = (caller, query);
        Err(Error::internal("services::logs is not built yet"))
    }
}
