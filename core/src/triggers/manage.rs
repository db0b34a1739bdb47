//! Creating, reading, listing, changing, pausing, resuming, archiving and firing rules
//! by hand, and previews of fire times: the front the API calls.

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::triggers::{
    ActionInput, ConfigInput, EventView, FireTime, PreviewOf, RuleChange, RuleRef, RuleView,
    Triggers,
};

impl Triggers {
    /// `CreateTriggerRule`.
    pub async fn create(
        &self,
        caller: &Identity,
        rule: RuleRef,
        config: ConfigInput,
        action: ActionInput,
        paused: bool,
    ) -> Result<RuleView> {
        let _ = (caller, rule, config, action, paused);
        Err(Error::internal("trigger rules are not built yet"))
    }

    /// `GetTriggerRule`.
    pub async fn get(&self, caller: &Identity, rule: &RuleRef) -> Result<RuleView> {
        let _ = (caller, rule);
        Err(Error::internal("trigger rules are not built yet"))
    }

    /// `ListTriggerRules`.
    pub async fn list(
        &self,
        caller: &Identity,
        workspace: &str,
        include_archived: bool,
    ) -> Result<Vec<RuleView>> {
        let _ = (caller, workspace, include_archived);
        Err(Error::internal("trigger rules are not built yet"))
    }

    /// `UpdateTriggerRule`.
    pub async fn update(
        &self,
        caller: &Identity,
        rule: &RuleRef,
        change: RuleChange,
    ) -> Result<RuleView> {
        let _ = (caller, rule, change);
        Err(Error::internal("trigger rules are not built yet"))
    }

    /// `PauseTriggerRule`.
    pub async fn pause(&self, caller: &Identity, rule: &RuleRef, note: &str) -> Result<RuleView> {
        let _ = (caller, rule, note);
        Err(Error::internal("trigger rules are not built yet"))
    }

    /// `ResumeTriggerRule`.
    pub async fn resume(&self, caller: &Identity, rule: &RuleRef) -> Result<RuleView> {
        let _ = (caller, rule);
        Err(Error::internal("trigger rules are not built yet"))
    }

    /// `ArchiveTriggerRule`.
    pub async fn archive(&self, caller: &Identity, rule: &RuleRef) -> Result<RuleView> {
        let _ = (caller, rule);
        Err(Error::internal("trigger rules are not built yet"))
    }

    /// `FireTriggerRule`.
    pub async fn fire_now(&self, caller: &Identity, rule: &RuleRef) -> Result<EventView> {
        let _ = (caller, rule);
        Err(Error::internal("trigger rules are not built yet"))
    }

    /// `PreviewTriggerSchedule`: the next `count` times and the zone they are shown in.
    pub async fn preview(
        &self,
        caller: &Identity,
        of: PreviewOf,
        count: u32,
    ) -> Result<(Vec<FireTime>, String)> {
        let _ = (caller, of, count);
        Err(Error::internal("trigger rules are not built yet"))
    }
}
