//! Where each running replica's published ports are reached: the worker's advertised
//! address (its `address` fact, else its name) and the host port Docker bound.

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::services::{EndpointView, ServiceManager, ServiceRef};

impl ServiceManager {
    /// `ListServiceEndpoints`.
    pub async fn endpoints(
        &self,
        caller: &Identity,
        service: &ServiceRef,
    ) -> Result<Vec<EndpointView>> {
        let _ = (caller, service);
        Err(Error::internal("services::endpoints is not built yet"))
    }
}
