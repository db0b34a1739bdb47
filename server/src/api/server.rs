//! The gRPC server itself: TLS, the auth layer, health, reflection and the Berth
//! services on one listener, with the dashboard (`web`) and the operator routes
//! (`observe`) merged into the same router for HTTP/1.1 and h2 callers.
//!
//! `app` decides when to start and stop; this module knows how, in tonic's terms.
//! [`Serving`] is the running server: health can be turned to NOT_SERVING, new
//! connections refused, and the in-flight calls awaited or cut off.
//!
//! Health follows the database: while `live::health` says it cannot be reached, every
//! name (`""` and each service) answers NOT_SERVING, and SERVING again once it can, until
//! shutdown turns them NOT_SERVING for good.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use berth_common::proto::agent_service_server::AgentServiceServer;
use berth_common::proto::artifact_service_server::ArtifactServiceServer;
use berth_common::proto::collection_service_server::CollectionServiceServer;
use berth_common::proto::notification_service_server::NotificationServiceServer;
use berth_common::proto::service_service_server::ServiceServiceServer;
use berth_common::proto::template_service_server::TemplateServiceServer;
use berth_common::proto::token_service_server::TokenServiceServer;
use berth_common::proto::topic_service_server::TopicServiceServer;
use berth_common::proto::trigger_service_server::TriggerServiceServer;
use berth_common::proto::user_service_server::UserServiceServer;
use berth_common::proto::work_request_service_server::WorkRequestServiceServer;
use berth_common::proto::worker_service_server::WorkerServiceServer;
use berth_common::proto::workspace_service_server::WorkspaceServiceServer;
use berth_core::access::auth::Authenticator;
use berth_core::access::tokens::Tokens;
use berth_core::access::users::Users;
use berth_core::access::workspaces::Workspaces;
use berth_core::artifacts::Artifacts;
use berth_core::artifacts::collections::Collections;
use berth_core::fleet::agents::Agents;
use berth_core::fleet::workers::Workers;
use berth_core::live::health::{DbHealth, Reachability};
use berth_core::notifications::Notifications;
use berth_core::services::ServiceManager;
use berth_core::store::db;
use berth_core::templates::Templates;
use berth_core::topics::Topics;
use berth_core::triggers::Triggers;
use berth_core::work::requests::WorkRequests;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity as TlsIdentity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::api::agent::AgentApi;
use crate::api::artifacts::ArtifactApi;
use crate::api::auth::AuthLayer;
use crate::api::collections::CollectionApi;
use crate::api::limits::{MAX_MESSAGE_BYTES, MessageLimitLayer};
use crate::api::notifications::NotificationApi;
use crate::api::services::ServiceApi;
use crate::api::templates::TemplateApi;
use crate::api::tokens::TokenApi;
use crate::api::topics::TopicApi;
use crate::api::triggers::TriggerApi;
use crate::api::users::UserApi;
use crate::api::work_requests::WorkRequestApi;
use crate::api::workers::WorkerApi;
use crate::api::workspaces::WorkspaceApi;
use crate::observe::Probe;
use crate::web::Dashboard;

/// Every name health answers for: the whole server and each service.
const SERVICE_NAMES: [&str; 14] = [
    "",
    "berth.v1.TokenService",
    "berth.v1.UserService",
    "berth.v1.WorkspaceService",
    "berth.v1.WorkerService",
    "berth.v1.WorkRequestService",
    "berth.v1.AgentService",
    "berth.v1.CollectionService",
    "berth.v1.ArtifactService",
    "berth.v1.TemplateService",
    "berth.v1.ServiceService",
    "berth.v1.TriggerService",
    "berth.v1.TopicService",
    "berth.v1.NotificationService",
];

/// What the server serves.
pub struct Services {
    /// Turns tokens into identities for the auth layer.
    pub authenticator: Authenticator,
    pub tokens: Tokens,
    pub users: Users,
    pub workspaces: Workspaces,
    pub workers: Workers,
    pub requests: WorkRequests,
    pub agents: Agents,
    pub collections: Collections,
    pub artifacts: Artifacts,
    pub templates: Templates,
    pub service_manager: ServiceManager,
    pub triggers: Triggers,
    pub notifications: Notifications,
    pub topics: Topics,
    /// Ends the worker streams (and topic consumer streams) when cancelled.
    pub streams_end: CancellationToken,
    /// Whether the database answers; health follows it.
    pub database: Arc<DbHealth>,
    /// The dashboard's sign-ins.
    pub sessions: berth_core::access::sessions::Sessions,
    /// What `/metrics` reads at scrape time.
    pub scrape: crate::observe::Scrape,
}

/// A certificate chain and key file (PEM), for serving TLS.
pub type TlsFiles = (PathBuf, PathBuf);

/// Why the server cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS certificate or key is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server failed.
    #[error("gRPC server failed: {0}")]
    Serve(String),
}

fn builder(tls: Option<&TlsFiles>) -> Result<Server, ServeError> {
    let builder = Server::builder();
    let Some((cert, key)) = tls else {
        return Ok(builder);
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| ServeError::Tls(format!("cannot read {}: {e}", path.display())))
    };
    let identity = TlsIdentity::from_pem(read(cert)?, read(key)?);
    builder
        .tls_config(ServerTlsConfig::new().identity(identity))
        .map_err(|e| ServeError::Tls(db::with_causes(&e)))
}

/// Reads and parses the TLS files, so a bad certificate or key is found before anything
/// else starts.
pub fn check_tls(tls: Option<&TlsFiles>) -> Result<(), ServeError> {
    builder(tls).map(|_| ())
}

/// A running server; see the module docs.
pub struct Serving {
    local: SocketAddr,
    health: HealthReporter,
    /// `/readyz` follows it.
    probe: Probe,
    /// Keeps health in step with the database until shutdown.
    follower: JoinHandle<()>,
    /// Set once shutdown turned health NOT_SERVING for good; the follower changes
    /// nothing once it is set.
    stopped: Arc<tokio::sync::Mutex<bool>>,
    stop_accepting: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    /// The dashboard's own listener (`--ui-listen`), if any.
    ui: Option<UiServing>,
}

/// Starts serving `services` on `listener`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<&TlsFiles>,
    services: Services,
) -> Result<Serving, ServeError> {
    serve_with_ui(listener, None, tls, services).await
}

/// Starts serving `services` on `listener` and, when `ui` is given, the dashboard alone
/// (no gRPC, no operator routes) on that listener too, with the same TLS.
pub async fn serve_with_ui(
    listener: TcpListener,
    ui: Option<TcpListener>,
    tls: Option<&TlsFiles>,
    services: Services,
) -> Result<Serving, ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let mut database = services.database.subscribe();
    let reachable = database.borrow_and_update().reachable;
    set_all(&health, reachable).await;
    let stopped = Arc::new(tokio::sync::Mutex::new(false));
    let follower = tokio::spawn(follow_database(health.clone(), database, stopped.clone()));
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(berth_common::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| ServeError::Serve(format!("reflection: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| ServeError::Serve(format!("reflection: {e}")))?;
    let Services {
        authenticator,
        tokens,
        users,
        workspaces,
        workers,
        requests,
        agents,
        collections,
        artifacts,
        templates,
        service_manager,
        triggers,
        topics,
        notifications,
        streams_end,
        database,
        sessions,
        scrape,
    } = services;
    let probe = Probe::new(database);
    let dashboard = Dashboard {
        sessions,
        workspaces: workspaces.clone(),
        workers: workers.clone(),
        requests: requests.clone(),
        collections: collections.clone(),
        artifacts: artifacts.clone(),
        templates: templates.clone(),
        service_manager: service_manager.clone(),
        triggers: triggers.clone(),
        topics: topics.clone(),
        notifications: notifications.clone(),
        secure_cookies: tls.is_some(),
    };
    let grpc = tonic::service::Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            TokenServiceServer::new(TokenApi::new(tokens))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            UserServiceServer::new(UserApi::new(users))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            WorkspaceServiceServer::new(WorkspaceApi::new(workspaces))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            WorkerServiceServer::new(WorkerApi::new(workers))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            WorkRequestServiceServer::new(WorkRequestApi::new(requests, templates.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            AgentServiceServer::new(AgentApi::new(agents, streams_end.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            CollectionServiceServer::new(CollectionApi::new(collections))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            ArtifactServiceServer::new(ArtifactApi::new(artifacts))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            TemplateServiceServer::new(TemplateApi::new(templates))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            ServiceServiceServer::new(ServiceApi::new(service_manager))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            TriggerServiceServer::new(TriggerApi::new(triggers))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            NotificationServiceServer::new(NotificationApi::new(notifications))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            TopicServiceServer::new(TopicApi::new(topics, streams_end))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        );
    // Browsers and scrapers speak HTTP/1.1 (or h2) to the same listener; gRPC stays h2.
    let ui = match ui {
        None => None,
        Some(listener) => Some(serve_dashboard(listener, tls, dashboard.clone())?),
    };
    let http = crate::web::router(dashboard).merge(crate::observe::router(probe.clone(), scrape));
    let routes = tonic::service::Routes::from(grpc.into_axum_router().merge(http));
    let mut server = builder(tls)?
        .accept_http1(true)
        .layer(crate::api::grpc_calls::GrpcCallsLayer)
        .layer(AuthLayer::new(authenticator))
        .layer(MessageLimitLayer);
    let router = server.add_routes(routes);
    let local = listener
        .local_addr()
        .map_err(|e| ServeError::Serve(e.to_string()))?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rx.await;
    }));
    Ok(Serving {
        local,
        health,
        probe,
        follower,
        stopped,
        stop_accepting: Some(stop_tx),
        server,
        ui,
    })
}

/// The dashboard on a listener of its own.
struct UiServing {
    local: SocketAddr,
    stop_accepting: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

fn serve_dashboard(
    listener: TcpListener,
    tls: Option<&TlsFiles>,
    dashboard: Dashboard,
) -> Result<UiServing, ServeError> {
    let local = listener
        .local_addr()
        .map_err(|e| ServeError::Serve(e.to_string()))?;
    let routes = tonic::service::Routes::from(crate::web::router(dashboard));
    let router = builder(tls)?.accept_http1(true).add_routes(routes);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rx.await;
    }));
    Ok(UiServing {
        local,
        stop_accepting: Some(stop_tx),
        server,
    })
}

/// Every health name SERVING, or NOT_SERVING.
async fn set_all(health: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// Keeps every health name SERVING while the database is reachable and NOT_SERVING
/// while it is not, until aborted.
async fn follow_database(
    health: HealthReporter,
    mut database: watch::Receiver<Reachability>,
    stopped: Arc<tokio::sync::Mutex<bool>>,
) {
    while database.changed().await.is_ok() {
        let reachable = database.borrow_and_update().reachable;
        let stopped = stopped.lock().await;
        if *stopped {
            return;
        }
        set_all(&health, reachable).await;
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.follower.abort();
        if let Some(ui) = &self.ui {
            ui.server.abort();
        }
    }
}

impl Serving {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The dashboard's own address, when it has one.
    pub fn ui_addr(&self) -> Option<SocketAddr> {
        self.ui.as_ref().map(|ui| ui.local)
    }

    /// Completes if the server stops on its own, which is always a failure.
    pub async fn failed(&mut self) -> ServeError {
        match (&mut self.server).await {
            Ok(Ok(())) => ServeError::Serve("stopped unexpectedly".into()),
            Ok(Err(e)) => ServeError::Serve(e.to_string()),
            Err(e) => ServeError::Serve(e.to_string()),
        }
    }

    /// Health answers NOT_SERVING from now on, so load balancers stop sending calls.
    pub async fn not_serving(&self) {
        // The database coming back must not turn it SERVING again.
        let mut stopped = self.stopped.lock().await;
        *stopped = true;
        self.probe.stop();
        self.follower.abort();
        set_all(&self.health, false).await;
    }

    /// Refuses new connections; the calls in flight go on.
    pub fn stop_accepting(&mut self) {
        if let Some(stop) = self.stop_accepting.take() {
            let _ = stop.send(());
        }
        if let Some(stop) = self.ui.as_mut().and_then(|ui| ui.stop_accepting.take()) {
            let _ = stop.send(());
        }
    }

    /// Waits for the calls in flight to finish: `Ok(true)` when they all did within
    /// `grace`, `Ok(false)` when some were still open and were closed.
    pub async fn drain(&mut self, grace: std::time::Duration) -> Result<bool, ServeError> {
        // Dashboard pages are short; a live log would hold the drain open, so the
        // dashboard's own listener is closed once the main one has drained.
        let drained = self.drain_main(grace).await;
        if let Some(ui) = &self.ui {
            ui.server.abort();
        }
        drained
    }

    async fn drain_main(&mut self, grace: std::time::Duration) -> Result<bool, ServeError> {
        match tokio::time::timeout(grace, &mut self.server).await {
            Ok(Ok(Ok(()))) => Ok(true),
            Ok(Ok(Err(e))) => Err(ServeError::Serve(e.to_string())),
            Ok(Err(e)) => Err(ServeError::Serve(e.to_string())),
            Err(_) => {
                self.server.abort();
                Ok(false)
            }
        }
    }

    /// Closes every open call now.
    pub fn abort(&self) {
        self.server.abort();
        if let Some(ui) = &self.ui {
            ui.server.abort();
        }
    }
}
