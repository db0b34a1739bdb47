//! `berth.v1.ServiceService` on the wire; `services` does the work.

use berth_common::proto::service_service_server::ServiceService;
use berth_common::proto::{
    CreateServiceRequest, DeleteServiceRequest, DeleteServiceResponse, DeployServiceRequest,
    GetServiceHistoryRequest, GetServiceHistoryResponse, GetServiceRequest,
    ListServiceEndpointsRequest, ListServiceEndpointsResponse, ListServicesRequest,
    ListServicesResponse, RunServiceCommandRequest, ScaleServiceRequest, Service, ServiceLogChunk,
    StreamServiceLogsRequest, UpdateServiceRequest, WorkRequest,
};
use tonic::{Request, Response, Status};

use berth_core::services::ServiceManager;

/// The ServiceService implementation.
#[derive(Clone)]
pub struct ServiceApi {
    services: ServiceManager,
}

impl ServiceApi {
    /// The service over `services`.
    pub fn new(services: ServiceManager) -> ServiceApi {
        ServiceApi { services }
    }
}

#[tonic::async_trait]
impl ServiceService for ServiceApi {
    type StreamServiceLogsStream =
        futures::stream::BoxStream<'static, Result<ServiceLogChunk, Status>>;

    async fn create_service(
        &self,
        request: Request<CreateServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        let _ = (&self.services, request);
        Err(Status::unimplemented("create_service is not built yet"))
    }

    async fn get_service(
        &self,
        request: Request<GetServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        let _ = (&self.services, request);
        Err(Status::unimplemented("get_service is not built yet"))
    }

    async fn list_services(
        &self,
        request: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        let _ = (&self.services, request);
        Err(Status::unimplemented("list_services is not built yet"))
    }

    async fn update_service(
        &self,
        request: Request<UpdateServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        let _ = (&self.services, request);
        Err(Status::unimplemented("update_service is not built yet"))
    }

    async fn scale_service(
        &self,
        request: Request<ScaleServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        let _ = (&self.services, request);
        Err(Status::unimplemented("scale_service is not built yet"))
    }

    async fn deploy_service(
        &self,
        request: Request<DeployServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        let _ = (&self.services, request);
        Err(Status::unimplemented("deploy_service is not built yet"))
    }

    async fn get_service_history(
        &self,
        request: Request<GetServiceHistoryRequest>,
    ) -> Result<Response<GetServiceHistoryResponse>, Status> {
        let _ = (&self.services, request);
        Err(Status::unimplemented(
            "get_service_history is not built yet",
        ))
    }

    async fn list_service_endpoints(
        &self,
        request: Request<ListServiceEndpointsRequest>,
    ) -> Result<Response<ListServiceEndpointsResponse>, Status> {
        let _ = (&self.services, request);
        Err(Status::unimplemented(
            "list_service_endpoints is not built yet",
        ))
    }

    async fn stream_service_logs(
        &self,
        request: Request<StreamServiceLogsRequest>,
    ) -> Result<Response<Self::StreamServiceLogsStream>, Status> {
        let _ = (&self.services, request);
        Err(Status::unimplemented(
            "stream_service_logs is not built yet",
        ))
    }

    async fn run_service_command(
        &self,
        request: Request<RunServiceCommandRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let _ = (&self.services, request);
        Err(Status::unimplemented(
            "run_service_command is not built yet",
        ))
    }

    async fn delete_service(
        &self,
        request: Request<DeleteServiceRequest>,
    ) -> Result<Response<DeleteServiceResponse>, Status> {
        let _ = (&self.services, request);
        Err(Status::unimplemented("delete_service is not built yet"))
    }
}
