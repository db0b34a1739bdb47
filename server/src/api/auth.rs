//! Which roles may call each method, and the tower layer that checks every call.
//!
//! The layer in front of all services reads `authorization: Bearer <token>`, has
//! `access::auth::Authenticator` turn it into an `Identity` (UNAUTHENTICATED for a
//! missing, malformed, unknown, disabled or expired token), and then checks the method
//! against [`RULES`]: a token whose role is not listed for the method is refused with
//! PERMISSION_DENIED. The caller's identity is put into the request's extensions for the
//! handler.
//!
//! Architecture invariant: a method with no rule is refused for everybody (fail closed);
//! the authorization matrix test walks every method in the descriptor set so a new RPC
//! without a rule fails the suite. Only health checks and reflection are open.

use std::sync::Arc;
use std::task::{Context, Poll};

use berth_common::token::TokenKind;
use futures::future::BoxFuture;
use tonic::Status;

use crate::api::error::to_status;
use berth_core::access::auth::{Authenticator, Identity};
use berth_core::error::{Error, Result};

use TokenKind::{Admin, User, Worker};

/// Which roles may call each method. Every method of every Berth service must be here.
pub const RULES: &[(&str, &[TokenKind])] = &[
    ("/berth.v1.TemplateService/CreateTemplate", &[Admin, User]),
    ("/berth.v1.TemplateService/GetTemplate", &[Admin, User]),
    ("/berth.v1.TemplateService/ListTemplates", &[Admin, User]),
    ("/berth.v1.TemplateService/UpdateTemplate", &[Admin, User]),
    ("/berth.v1.TemplateService/RollbackTemplate", &[Admin, User]),
    ("/berth.v1.TemplateService/ListReleases", &[Admin, User]),
    ("/berth.v1.TemplateService/GetRelease", &[Admin, User]),
    ("/berth.v1.TemplateService/RunTemplate", &[Admin, User]),
    ("/berth.v1.TemplateService/GetTemplateStats", &[Admin, User]),
    ("/berth.v1.TemplateService/ArchiveTemplate", &[Admin, User]),
    ("/berth.v1.TemplateService/DeleteTemplate", &[Admin, User]),
    ("/berth.v1.ServiceService/CreateService", &[Admin, User]),
    ("/berth.v1.ServiceService/GetService", &[Admin, User]),
    ("/berth.v1.ServiceService/ListServices", &[Admin, User]),
    ("/berth.v1.ServiceService/UpdateService", &[Admin, User]),
    ("/berth.v1.ServiceService/ScaleService", &[Admin, User]),
    ("/berth.v1.ServiceService/DeployService", &[Admin, User]),
    ("/berth.v1.ServiceService/GetServiceHistory", &[Admin, User]),
    (
        "/berth.v1.ServiceService/ListServiceEndpoints",
        &[Admin, User],
    ),
    ("/berth.v1.ServiceService/StreamServiceLogs", &[Admin, User]),
    ("/berth.v1.ServiceService/RunServiceCommand", &[Admin, User]),
    ("/berth.v1.ServiceService/DeleteService", &[Admin, User]),
    ("/berth.v1.TriggerService/CreateTriggerRule", &[Admin, User]),
    ("/berth.v1.TriggerService/GetTriggerRule", &[Admin, User]),
    ("/berth.v1.TriggerService/ListTriggerRules", &[Admin, User]),
    ("/berth.v1.TriggerService/UpdateTriggerRule", &[Admin, User]),
    ("/berth.v1.TriggerService/PauseTriggerRule", &[Admin, User]),
    ("/berth.v1.TriggerService/ResumeTriggerRule", &[Admin, User]),
    (
        "/berth.v1.TriggerService/ArchiveTriggerRule",
        &[Admin, User],
    ),
    ("/berth.v1.TriggerService/FireTriggerRule", &[Admin, User]),
    ("/berth.v1.TriggerService/ListTriggerEvents", &[Admin, User]),
    (
        "/berth.v1.TriggerService/PreviewTriggerSchedule",
        &[Admin, User],
    ),
    (
        "/berth.v1.NotificationService/CreateChannel",
        &[Admin, User],
    ),
    ("/berth.v1.NotificationService/GetChannel", &[Admin, User]),
    ("/berth.v1.NotificationService/ListChannels", &[Admin, User]),
    (
        "/berth.v1.NotificationService/UpdateChannel",
        &[Admin, User],
    ),
    (
        "/berth.v1.NotificationService/RotateChannelSecret",
        &[Admin, User],
    ),
    (
        "/berth.v1.NotificationService/DeleteChannel",
        &[Admin, User],
    ),
    ("/berth.v1.NotificationService/TestChannel", &[Admin, User]),
    (
        "/berth.v1.NotificationService/ListDeliveries",
        &[Admin, User],
    ),
    (
        "/berth.v1.NotificationService/RedeliverDelivery",
        &[Admin, User],
    ),
    (
        "/berth.v1.NotificationService/CreateReaction",
        &[Admin, User],
    ),
    (
        "/berth.v1.NotificationService/ListReactions",
        &[Admin, User],
    ),
    (
        "/berth.v1.NotificationService/DeleteReaction",
        &[Admin, User],
    ),
    ("/berth.v1.TopicService/CreateTopic", &[Admin, User]),
    ("/berth.v1.TopicService/GetTopic", &[Admin, User]),
    ("/berth.v1.TopicService/ListTopics", &[Admin, User]),
    ("/berth.v1.TopicService/UpdateTopic", &[Admin, User]),
    ("/berth.v1.TopicService/DeleteTopic", &[Admin, User]),
    ("/berth.v1.TopicService/Publish", &[Admin, User]),
    ("/berth.v1.TopicService/Subscribe", &[Admin, User]),
    ("/berth.v1.TopicService/Ping", &[Admin, User]),
    ("/berth.v1.TopicService/CreateSubscription", &[Admin, User]),
    ("/berth.v1.TopicService/GetSubscription", &[Admin, User]),
    ("/berth.v1.TopicService/ListSubscriptions", &[Admin, User]),
    ("/berth.v1.TopicService/DeleteSubscription", &[Admin, User]),
    ("/berth.v1.TopicService/SeekSubscription", &[Admin, User]),
    ("/berth.v1.TokenService/CreateToken", &[Admin, User]),
    ("/berth.v1.TokenService/ListTokens", &[Admin, User]),
    ("/berth.v1.TokenService/EnableToken", &[Admin, User]),
    ("/berth.v1.TokenService/DisableToken", &[Admin, User]),
    ("/berth.v1.TokenService/DeleteToken", &[Admin, User]),
    ("/berth.v1.WorkerService/ListWorkers", &[Admin, User]),
    ("/berth.v1.WorkerService/GetWorker", &[Admin, User]),
    ("/berth.v1.WorkerService/EnableWorker", &[Admin]),
    ("/berth.v1.WorkerService/DisableWorker", &[Admin]),
    ("/berth.v1.WorkerService/DrainWorker", &[Admin]),
    ("/berth.v1.WorkerService/RestrictWorker", &[Admin]),
    (
        "/berth.v1.ArtifactService/CreateArtifact",
        &[Admin, User, Worker],
    ),
    (
        "/berth.v1.ArtifactService/UploadFile",
        &[Admin, User, Worker],
    ),
    (
        "/berth.v1.ArtifactService/QueryUpload",
        &[Admin, User, Worker],
    ),
    ("/berth.v1.ArtifactService/ReadFile", &[Admin, User, Worker]),
    (
        "/berth.v1.ArtifactService/GetArtifact",
        &[Admin, User, Worker],
    ),
    ("/berth.v1.ArtifactService/ListArtifacts", &[Admin, User]),
    ("/berth.v1.ArtifactService/RelateArtifacts", &[Admin, User]),
    ("/berth.v1.ArtifactService/DeleteArtifact", &[Admin, User]),
    ("/berth.v1.ArtifactService/SetExpiry", &[Admin, User]),
    (
        "/berth.v1.CollectionService/CreateCollection",
        &[Admin, User],
    ),
    ("/berth.v1.CollectionService/GetCollection", &[Admin, User]),
    (
        "/berth.v1.CollectionService/ListCollections",
        &[Admin, User],
    ),
    (
        "/berth.v1.CollectionService/UpdateCollection",
        &[Admin, User],
    ),
    (
        "/berth.v1.CollectionService/AddToCollection",
        &[Admin, User],
    ),
    (
        "/berth.v1.CollectionService/RemoveFromCollection",
        &[Admin, User],
    ),
    ("/berth.v1.CollectionService/LookupItem", &[Admin, User]),
    ("/berth.v1.UserService/CreateUser", &[Admin]),
    ("/berth.v1.UserService/ListUsers", &[Admin]),
    ("/berth.v1.UserService/GetUser", &[Admin, User]),
    ("/berth.v1.UserService/DisableUser", &[Admin]),
    ("/berth.v1.UserService/EnableUser", &[Admin]),
    ("/berth.v1.UserService/DeleteUser", &[Admin]),
    ("/berth.v1.WorkspaceService/CreateWorkspace", &[Admin]),
    ("/berth.v1.WorkspaceService/ListWorkspaces", &[Admin, User]),
    ("/berth.v1.WorkspaceService/GetWorkspace", &[Admin, User]),
    ("/berth.v1.WorkspaceService/UpdateWorkspace", &[Admin, User]),
    (
        "/berth.v1.WorkspaceService/ArchiveWorkspace",
        &[Admin, User],
    ),
    ("/berth.v1.WorkspaceService/AddMember", &[Admin, User]),
    ("/berth.v1.WorkspaceService/RemoveMember", &[Admin, User]),
    ("/berth.v1.WorkspaceService/ListMembers", &[Admin, User]),
    (
        "/berth.v1.WorkRequestService/SubmitWorkRequest",
        &[Admin, User],
    ),
    (
        "/berth.v1.WorkRequestService/GetWorkRequest",
        &[Admin, User],
    ),
    (
        "/berth.v1.WorkRequestService/ListWorkRequests",
        &[Admin, User],
    ),
    (
        "/berth.v1.WorkRequestService/CancelWorkRequest",
        &[Admin, User],
    ),
    ("/berth.v1.WorkRequestService/StreamLogs", &[Admin, User]),
    ("/berth.v1.WorkRequestService/AdjustPriority", &[Admin]),
    ("/berth.v1.WorkRequestService/ListQueue", &[Admin, User]),
    (
        "/berth.v1.WorkRequestService/UnblockWorkRequest",
        &[Admin, User],
    ),
    (
        "/berth.v1.WorkRequestService/RetryWorkRequest",
        &[Admin, User],
    ),
    (
        "/berth.v1.WorkRequestService/SubmitWorkflow",
        &[Admin, User],
    ),
    ("/berth.v1.AgentService/Connect", &[Worker]),
    ("/berth.v1.AgentService/AppendLog", &[Worker]),
    ("/berth.v1.AgentService/KeepContainers", &[Worker]),
];

/// Services anyone may call without a token: health checks and reflection carry no data.
pub const OPEN_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Paths that are not gRPC at all: the dashboard (its own sessions, `web::session`), the
/// health pair and metrics (open, no data about jobs or tokens). The layer passes them
/// through untouched; every other path is a gRPC method and is checked. No gRPC method
/// can begin with these, since a gRPC path is `/package.Service/Method`.
pub const HTTP_PATHS: &[&str] = &["/ui/", "/healthz", "/readyz", "/metrics"];

/// Whether `path` is served by the HTTP side (see [`HTTP_PATHS`]); `/` and `/ui` only
/// redirect to the dashboard.
pub fn is_http_path(path: &str) -> bool {
    path == "/"
        || path == "/ui"
        || HTTP_PATHS.iter().any(|prefix| {
            path.starts_with(prefix) && (prefix.ends_with('/') || path.len() == prefix.len())
        })
}

/// The roles allowed to call `path` (`/package.Service/Method`), if it has a rule.
pub fn rule_for(path: &str) -> Option<&'static [TokenKind]> {
    RULES
        .iter()
        .find(|(method, _)| *method == path)
        .map(|(_, roles)| *roles)
}

/// Authenticates a bearer header value and authorizes `path`. `Ok(None)` for open
/// services.
pub async fn check(
    auth: &Authenticator,
    path: &str,
    authorization: Option<&http::HeaderValue>,
) -> Result<Option<Identity>> {
    if OPEN_SERVICES.iter().any(|prefix| path.starts_with(prefix)) {
        return Ok(None);
    }
    let header = authorization.ok_or_else(|| {
        Error::Unauthenticated("missing `authorization: Bearer <token>` header".into())
    })?;
    let text = header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .ok_or_else(|| {
            Error::Unauthenticated("the authorization header must be `Bearer <token>`".into())
        })?;
    let identity = auth.authenticate(text).await?;
    match rule_for(path) {
        None => Err(Error::PermissionDenied(format!(
            "{path} has no authorization rule; refused for every caller"
        ))),
        Some(roles) if roles.contains(&identity.role) => Ok(Some(identity)),
        Some(roles) => Err(Error::PermissionDenied(format!(
            "a {} token may not call {path} (allowed: {})",
            identity.role,
            roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Takes the identity the auth layer put on a request. Its absence is a server bug (a
/// service mounted without the layer), reported as INTERNAL rather than a panic.
pub fn identity<T>(request: &tonic::Request<T>) -> Result<Identity, Status> {
    request
        .extensions()
        .get::<Identity>()
        .cloned()
        .ok_or_else(|| {
            to_status(Error::internal(
                "a request reached a handler without authentication",
            ))
        })
}

/// The tower layer that runs [`check`] before every call.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer using `auth`.
    pub fn new(auth: Authenticator) -> AuthLayer {
        AuthLayer {
            auth: Arc::new(auth),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for AuthService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The ready service is the one we were polled with; leave a clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            if is_http_path(&path) {
                return inner.call(request).await;
            }
            let verdict = check(
                &auth,
                &path,
                request.headers().get(http::header::AUTHORIZATION),
            )
            .await;
            match verdict {
                Ok(Some(identity)) => {
                    request.extensions_mut().insert(identity);
                    inner.call(request).await
                }
                Ok(None) => inner.call(request).await,
                Err(error) => {
                    tracing::debug!(path, %error, "call refused");
                    Ok(to_status(error).into_http())
                }
            }
        })
    }
}
