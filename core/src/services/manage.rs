//! Creating, reading, listing, changing, scaling and deleting services: the front the
//! API calls. It records what the caller asked for and wakes the reconciler; it starts
//! and stops no container itself.

use std::collections::BTreeMap;

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::services::{CreateInput, ServiceManager, ServiceRef, ServiceView, UpdateInput};

impl ServiceManager {
    /// `CreateService`.
    pub async fn create(&self, caller: &Identity, input: CreateInput) -> Result<ServiceView> {
        let _ = (caller, input);
        Err(Error::internal("services::manage::create is not built yet"))
    }

    /// `GetService`.
    pub async fn get(&self, caller: &Identity, service: &ServiceRef) -> Result<ServiceView> {
        let _ = (caller, service);
        Err(Error::internal("services::manage::get is not built yet"))
    }

    /// `ListServices`: the workspace's services ('' for `default`) by name.
    pub async fn list(&self, caller: &Identity, workspace: &str) -> Result<Vec<ServiceView>> {
        let _ = (caller, workspace);
        Err(Error::internal("services::manage::list is not built yet"))
    }

    /// `UpdateService`.
    pub async fn update(&self, caller: &Identity, input: UpdateInput) -> Result<ServiceView> {
        let _ = (caller, input);
        Err(Error::internal("services::manage::update is not built yet"))
    }

    /// `ScaleService`: process type → desired replicas.
    pub async fn scale(
        &self,
        caller: &Identity,
        service: &ServiceRef,
        replicas: &BTreeMap<String, u32>,
    ) -> Result<ServiceView> {
        let _ = (caller, service, replicas);
        Err(Error::internal("services::manage::scale is not built yet"))
    }

    /// `DeleteService`.
    pub async fn delete(&self, caller: &Identity, service: &ServiceRef) -> Result<()> {
        let _ = (caller, service);
        Err(Error::internal("services::manage::delete is not built yet"))
    }
}
