//! `berth.v1.TriggerService` on the wire; `triggers` does the work.

use berth_common::proto::trigger_service_server::TriggerService;
use berth_common::proto::{
    ArchiveTriggerRuleRequest, CreateTriggerRuleRequest, FireTriggerRuleRequest,
    GetTriggerRuleRequest, ListTriggerEventsRequest, ListTriggerEventsResponse,
    ListTriggerRulesRequest, ListTriggerRulesResponse, PauseTriggerRuleRequest,
    PreviewTriggerScheduleRequest, PreviewTriggerScheduleResponse, ResumeTriggerRuleRequest,
    TriggerEvent, TriggerRule, UpdateTriggerRuleRequest,
};
use tonic::{Request, Response, Status};

use berth_core::triggers::Triggers;

/// The TriggerService implementation.
#[derive(Clone)]
pub struct TriggerApi {
    triggers: Triggers,
}

impl TriggerApi {
    /// The service over `triggers`.
    pub fn new(triggers: Triggers) -> TriggerApi {
        TriggerApi { triggers }
    }
}

fn unbuilt() -> Status {
    Status::unimplemented("trigger rules are not built yet")
}

#[tonic::async_trait]
impl TriggerService for TriggerApi {
    async fn create_trigger_rule(
        &self,
        _request: Request<CreateTriggerRuleRequest>,
    ) -> Result<Response<TriggerRule>, Status> {
        let _ = &self.triggers;
        Err(unbuilt())
    }

    async fn get_trigger_rule(
        &self,
        _request: Request<GetTriggerRuleRequest>,
    ) -> Result<Response<TriggerRule>, Status> {
        Err(unbuilt())
    }

    async fn list_trigger_rules(
        &self,
        _request: Request<ListTriggerRulesRequest>,
    ) -> Result<Response<ListTriggerRulesResponse>, Status> {
        Err(unbuilt())
    }

    async fn update_trigger_rule(
        &self,
        _request: Request<UpdateTriggerRuleRequest>,
    ) -> Result<Response<TriggerRule>, Status> {
        Err(unbuilt())
    }

    async fn pause_trigger_rule(
        &self,
        _request: Request<PauseTriggerRuleRequest>,
    ) -> Result<Response<TriggerRule>, Status> {
        Err(unbuilt())
    }

    async fn resume_trigger_rule(
        &self,
        _request: Request<ResumeTriggerRuleRequest>,
    ) -> Result<Response<TriggerRule>, Status> {
        Err(unbuilt())
    }

    async fn archive_trigger_rule(
        &self,
        _request: Request<ArchiveTriggerRuleRequest>,
    ) -> Result<Response<TriggerRule>, Status> {
        Err(unbuilt())
    }

    async fn fire_trigger_rule(
        &self,
        _request: Request<FireTriggerRuleRequest>,
    ) -> Result<Response<TriggerEvent>, Status> {
        Err(unbuilt())
    }

    async fn list_trigger_events(
        &self,
        _request: Request<ListTriggerEventsRequest>,
    ) -> Result<Response<ListTriggerEventsResponse>, Status> {
        Err(unbuilt())
    }

    async fn preview_trigger_schedule(
        &self,
        _request: Request<PreviewTriggerScheduleRequest>,
    ) -> Result<Response<PreviewTriggerScheduleResponse>, Status> {
        Err(unbuilt())
    }
}
