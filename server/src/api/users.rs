//! `berth.v1.UserService` on the wire; `access::users` does the work.

use berth_common::proto::user_service_server::UserService;
use berth_common::proto::{
    CreateUserRequest, DeleteUserRequest, DeleteUserResponse, DisableUserRequest,
    EnableUserRequest, GetUserRequest, ListUsersRequest, ListUsersResponse, Membership, User,
};
use tonic::{Request, Response, Status};

use crate::api::auth::identity;
use crate::api::error::respond;
use crate::api::timestamp;
use crate::api::workspaces::role_to_proto;
use berth_core::access::users::{UserView, Users};

/// The UserService implementation.
#[derive(Clone)]
pub struct UserApi {
    users: Users,
}

impl UserApi {
    /// The service over `users`.
    pub fn new(users: Users) -> UserApi {
        UserApi { users }
    }
}

fn user(view: UserView) -> User {
    User {
        name: view.name,
        admin: view.admin,
        enabled: view.enabled,
        created_at: Some(timestamp(view.created_at)),
        memberships: view
            .memberships
            .into_iter()
            .map(|(workspace, role)| Membership {
                workspace,
                role: role_to_proto(Some(role)) as i32,
            })
            .collect(),
        tokens: view.tokens,
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<User>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        respond(
            self.users
                .create(&caller, &req.name, req.admin)
                .await
                .map(user),
        )
    }

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let caller = identity(&request)?;
        respond(
            self.users
                .list(&caller)
                .await
                .map(|views| ListUsersResponse {
                    users: views.into_iter().map(user).collect(),
                }),
        )
    }

    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let caller = identity(&request)?;
        respond(
            self.users
                .get(&caller, &request.get_ref().name)
                .await
                .map(user),
        )
    }

    async fn disable_user(
        &self,
        request: Request<DisableUserRequest>,
    ) -> Result<Response<User>, Status> {
        let caller = identity(&request)?;
        respond(
            self.users
                .set_enabled(&caller, &request.get_ref().name, false)
                .await
                .map(user),
        )
    }

    async fn enable_user(
        &self,
        request: Request<EnableUserRequest>,
    ) -> Result<Response<User>, Status> {
        let caller = identity(&request)?;
        respond(
            self.users
                .set_enabled(&caller, &request.get_ref().name, true)
                .await
                .map(user),
        )
    }

    async fn delete_user(
        &self,
        request: Request<DeleteUserRequest>,
    ) -> Result<Response<DeleteUserResponse>, Status> {
        let caller = identity(&request)?;
        respond(
            self.users
                .delete(&caller, &request.get_ref().name)
                .await
                .map(|()| DeleteUserResponse {}),
        )
    }
}
