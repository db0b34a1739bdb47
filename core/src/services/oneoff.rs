//! One-off commands in an ephemeral container of a service's current release: a plain
//! work request, submitted for the caller like a template run.

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::services::{RunInput, ServiceManager};
use crate::work::requests::RequestView;

impl ServiceManager {
    /// `RunServiceCommand`.
    pub async fn run(&self, caller: &Identity, input: RunInput) -> Result<RequestView> {
        let _ = (caller, input);
        Err(Error::internal("services::oneoff is not built yet"))
    }
}
