//! `berth.v1.WorkspaceService` on the wire; `access::workspaces` does the work.

use berth_common::proto::workspace_service_server::WorkspaceService;
use berth_common::proto::{
    AddMemberRequest, ArchiveWorkspaceRequest, CreateWorkspaceRequest, GetWorkspaceRequest,
    ListMembersRequest, ListMembersResponse, ListWorkspacesRequest, ListWorkspacesResponse, Member,
    RemoveMemberRequest, RemoveMemberResponse, UpdateWorkspaceRequest, Workspace,
    WorkspaceRole as WireRole,
};
use tonic::{Request, Response, Status};

use crate::api::auth::identity;
use crate::api::error::respond;
use crate::api::{raw_from_proto, timestamp, timestamp_opt};
use berth_core::access::roles::WorkspaceRole;
use berth_core::access::workspaces::{
    Change, MemberView, NewWorkspace, WorkspaceChanges, WorkspaceView, Workspaces,
};
use berth_core::error::Error;

/// The WorkspaceService implementation.
#[derive(Clone)]
pub struct WorkspaceApi {
    workspaces: Workspaces,
}

impl WorkspaceApi {
    /// The service over `workspaces`.
    pub fn new(workspaces: Workspaces) -> WorkspaceApi {
        WorkspaceApi { workspaces }
    }
}

/// A role on the wire; `None` (no role) is UNSPECIFIED.
pub fn role_to_proto(role: Option<WorkspaceRole>) -> WireRole {
    match role {
        None => WireRole::Unspecified,
        Some(WorkspaceRole::Viewer) => WireRole::Viewer,
        Some(WorkspaceRole::Contributor) => WireRole::Contributor,
        Some(WorkspaceRole::Owner) => WireRole::Owner,
    }
}

/// A role as sent; `None` for UNSPECIFIED and for numbers the protocol does not know.
fn role_from_proto(value: i32) -> Option<WorkspaceRole> {
    match WireRole::try_from(value) {
        Ok(WireRole::Viewer) => Some(WorkspaceRole::Viewer),
        Ok(WireRole::Contributor) => Some(WorkspaceRole::Contributor),
        Ok(WireRole::Owner) => Some(WorkspaceRole::Owner),
        Ok(WireRole::Unspecified) | Err(_) => None,
    }
}

fn workspace(view: WorkspaceView) -> Workspace {
    Workspace {
        name: view.name,
        public: view.public,
        default_expiry: view
            .default_expiry_seconds
            .map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
        created_at: Some(timestamp(view.created_at)),
        archived_at: timestamp_opt(view.archived_at),
        max_running: view.max_running.and_then(|n| u32::try_from(n).ok()),
        max_pending: view.max_pending.and_then(|n| u32::try_from(n).ok()),
        weight: u32::try_from(view.weight).unwrap_or(1),
        role: role_to_proto(view.role) as i32,
        waiting: view.waiting,
        running: view.running,
    }
}

fn member(view: MemberView) -> Member {
    Member {
        workspace: view.workspace,
        user: view.user,
        role: role_to_proto(Some(view.role)) as i32,
        since: Some(timestamp(view.since)),
    }
}

/// A setting that may be given a value or cleared, but not both at once.
fn change<T>(field: &str, set: Option<T>, clear: bool) -> Result<Option<Change<T>>, Error> {
    match (set, clear) {
        (Some(_), true) => Err(Error::InvalidArgument(format!(
            "{field} and clear_{field}: give one or the other, not both"
        ))),
        (Some(value), false) => Ok(Some(Change::Set(value))),
        (None, true) => Ok(Some(Change::Clear)),
        (None, false) => Ok(None),
    }
}

fn changes(req: &UpdateWorkspaceRequest) -> Result<WorkspaceChanges, Error> {
    Ok(WorkspaceChanges {
        public: req.public,
        default_expiry: change(
            "default_expiry",
            req.default_expiry.as_ref().map(raw_from_proto),
            req.clear_default_expiry,
        )?,
        max_running: change("max_running", req.max_running, req.clear_max_running)?,
        max_pending: change("max_pending", req.max_pending, req.clear_max_pending)?,
        weight: req.weight,
    })
}

#[tonic::async_trait]
impl WorkspaceService for WorkspaceApi {
    async fn create_workspace(
        &self,
        request: Request<CreateWorkspaceRequest>,
    ) -> Result<Response<Workspace>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let new = NewWorkspace {
            name: req.name,
            public: req.public,
            default_expiry: req.default_expiry.as_ref().map(raw_from_proto),
        };
        respond(self.workspaces.create(&caller, new).await.map(workspace))
    }

    async fn list_workspaces(
        &self,
        request: Request<ListWorkspacesRequest>,
    ) -> Result<Response<ListWorkspacesResponse>, Status> {
        let caller = identity(&request)?;
        respond(
            self.workspaces
                .list(&caller, request.get_ref().include_archived)
                .await
                .map(|views| ListWorkspacesResponse {
                    workspaces: views.into_iter().map(workspace).collect(),
                }),
        )
    }

    async fn get_workspace(
        &self,
        request: Request<GetWorkspaceRequest>,
    ) -> Result<Response<Workspace>, Status> {
        let caller = identity(&request)?;
        respond(
            self.workspaces
                .get(&caller, &request.get_ref().name)
                .await
                .map(workspace),
        )
    }

    async fn update_workspace(
        &self,
        request: Request<UpdateWorkspaceRequest>,
    ) -> Result<Response<Workspace>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let result = match changes(req) {
            Ok(changes) => self.workspaces.update(&caller, &req.name, changes).await,
            Err(e) => Err(e),
        };
        respond(result.map(workspace))
    }

    async fn archive_workspace(
        &self,
        request: Request<ArchiveWorkspaceRequest>,
    ) -> Result<Response<Workspace>, Status> {
        let caller = identity(&request)?;
        respond(
            self.workspaces
                .archive(&caller, &request.get_ref().name)
                .await
                .map(workspace),
        )
    }

    async fn add_member(
        &self,
        request: Request<AddMemberRequest>,
    ) -> Result<Response<Member>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        respond(
            self.workspaces
                .add_member(
                    &caller,
                    &req.workspace,
                    &req.user,
                    role_from_proto(req.role),
                )
                .await
                .map(member),
        )
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<RemoveMemberResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        respond(
            self.workspaces
                .remove_member(&caller, &req.workspace, &req.user)
                .await
                .map(|()| RemoveMemberResponse {}),
        )
    }

    async fn list_members(
        &self,
        request: Request<ListMembersRequest>,
    ) -> Result<Response<ListMembersResponse>, Status> {
        let caller = identity(&request)?;
        respond(
            self.workspaces
                .members(&caller, &request.get_ref().workspace)
                .await
                .map(|views| ListMembersResponse {
                    members: views.into_iter().map(member).collect(),
                }),
        )
    }
}
