//! Start-up and shutdown: everything between `main` and the gRPC services.
//!
//! [`prepare`] makes the server ready to serve: data dir, database (the embedded
//! PostgreSQL when no URL is given), migrations, pool, secret key and the first admin token.
//! [`serve`] runs the gRPC server on a listener it is handed (so tests bind port 0) until
//! the `shutdown` future completes, then drains: health turns NOT_SERVING, no new
//! connections are taken, in-flight calls get `shutdown_grace` to finish, and the embedded
//! PostgreSQL is stopped last.

pub mod cli;
pub mod config;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use berth_common::proto::agent_service_server::AgentServiceServer;
use berth_common::proto::token_service_server::TokenServiceServer;
use berth_common::proto::work_request_service_server::WorkRequestServiceServer;
use berth_common::proto::worker_service_server::WorkerServiceServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity as TlsIdentity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::access::auth::Authenticator;
use crate::access::tokens::Tokens;
use crate::api::agent::AgentApi;
use crate::api::auth::AuthLayer;
use crate::api::tokens::TokenApi;
use crate::api::work_requests::WorkRequestApi;
use crate::api::workers::WorkerApi;
use crate::app::config::{Config, ConfigError};
use crate::embedded_pg::{EmbeddedOptions, EmbeddedPgError, EmbeddedPostgres};
use crate::fleet::agents::Agents;
use crate::fleet::workers::Workers;
use crate::live::hub::Hub;
use crate::live::leases;
use crate::live::notify;
use crate::store::db::{self, DbError, DbPool, DbSettings};
use crate::store::secrets::{SecretBox, SecretError};
use crate::work::recorder::{self, Recorder};
use crate::work::requests::WorkRequests;
use crate::work::scheduler::Scheduler;

/// Why the server could not start or stopped badly. Each says what to do in one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database cannot be used.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The embedded PostgreSQL cannot be started.
    #[error(transparent)]
    Embedded(#[from] EmbeddedPgError),
    /// The secret key cannot be loaded.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The data directory cannot be used.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {reason}; stop the other process or choose another --listen")]
    Bind {
        /// The address.
        addr: String,
        /// The error.
        reason: String,
    },
    /// The TLS certificate or key is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// Bootstrapping the first admin token failed.
    #[error("creating the first admin token failed: {0}")]
    Bootstrap(String),
    /// The gRPC server failed while serving.
    #[error("gRPC server failed: {0}")]
    Serve(String),
}

/// A server ready to serve.
pub struct Prepared {
    /// The resolved configuration.
    pub config: Config,
    /// The database pool.
    pub pool: DbPool,
    /// How the pool connects (the embedded cluster's URL when embedded).
    pub db: DbSettings,
    /// The key sealing secret env values.
    pub secrets: SecretBox,
    embedded: Option<EmbeddedPostgres>,
}

impl Prepared {
    /// Stops the embedded PostgreSQL, if any. Safe to call twice.
    pub async fn stop_database(&mut self) {
        if let Some(mut embedded) = self.embedded.take()
            && let Err(e) = embedded.stop().await
        {
            tracing::warn!(error = %e, "stopping the embedded PostgreSQL failed");
        }
    }
}

/// Creates the data directory (mode 0700 for a new one).
fn ensure_data_dir(config: &Config) -> Result<(), StartError> {
    let dir = &config.data_dir;
    let bad = |reason: String| StartError::DataDir {
        path: dir.display().to_string(),
        reason,
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create it: {e}")))?;
        // Traversable (not readable) by others, so an unprivileged embedded PostgreSQL can
        // reach its own subdirectory; the files in it are private.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| bad(format!("cannot set its permissions: {e}")))?;
    } else if !dir.is_dir() {
        return Err(bad("exists but is not a directory".into()));
    }
    Ok(())
}

/// Connects to (or starts) the database and applies migrations; no bootstrap, no key.
pub async fn open_database(
    config: &Config,
) -> Result<(DbSettings, Option<EmbeddedPostgres>), StartError> {
    ensure_data_dir(config)?;
    let (url, embedded) = match &config.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let options = EmbeddedOptions {
                bin_dir: config.pg_bin_dir.clone(),
                ..EmbeddedOptions::default()
            };
            let embedded =
                EmbeddedPostgres::start(&config.data_dir.join("postgres"), options).await?;
            (embedded.url("berth"), Some(embedded))
        }
    };
    let settings = DbSettings {
        url,
        ca_cert: config.database_ca_cert.clone(),
        pool_size: config.database_pool_size,
    };
    db::migrate(&settings).await?;
    Ok((settings, embedded))
}

/// Makes the server ready: database, migrations, pool, secret key, first admin token.
pub async fn prepare(config: Config) -> Result<Prepared, StartError> {
    // A bad certificate or key is found before the database is started, not after the
    // first admin token was made.
    server_builder(&config)?;
    let (settings, embedded) = open_database(&config).await?;
    let mut prepared = Prepared {
        pool: db::connect_pool(&settings).await?,
        db: settings,
        secrets: SecretBox::load_or_create(&config.secret_key_file)?,
        config,
        embedded,
    };
    let bootstrap = async {
        let mut conn = db::connect_once(&prepared.db).await?;
        crate::access::bootstrap::first_admin_token(&mut conn, &prepared.config.data_dir)
            .await
            .map_err(|e| StartError::Bootstrap(e.to_string()))
    }
    .await;
    match bootstrap {
        Ok(Some(path)) => {
            tracing::info!(path = %path.display(), "created the first admin token; it is in this file")
        }
        Ok(None) => {}
        Err(e) => {
            prepared.stop_database().await;
            return Err(e);
        }
    }
    Ok(prepared)
}

/// Binds the listen address, with a clear error for a port in use.
pub async fn bind(config: &Config) -> Result<TcpListener, StartError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|e| StartError::Bind {
            addr: config.listen.to_string(),
            reason: e.to_string(),
        })
}

fn tls_config(config: &Config) -> Result<Option<ServerTlsConfig>, StartError> {
    let Some((cert, key)) = &config.tls else {
        return Ok(None);
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| StartError::Tls(format!("cannot read {}: {e}", path.display())))
    };
    let identity = TlsIdentity::from_pem(read(cert)?, read(key)?);
    Ok(Some(ServerTlsConfig::new().identity(identity)))
}

/// A server builder, with TLS when configured (the certificate and key are parsed here).
fn server_builder(config: &Config) -> Result<Server, StartError> {
    let builder = Server::builder();
    match tls_config(config)? {
        Some(tls) => builder
            .tls_config(tls)
            .map_err(|e| StartError::Tls(db::with_causes(&e))),
        None => Ok(builder),
    }
}

/// Serves gRPC on `listener` until `shutdown` completes, then drains and stops.
pub async fn serve(
    prepared: Prepared,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    serve_until(prepared, listener, shutdown, CancellationToken::new()).await
}

/// Like [`serve`]; cancelling `force` during the drain closes open calls at once.
pub async fn serve_until(
    mut prepared: Prepared,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    force: CancellationToken,
) -> Result<(), StartError> {
    let result = serve_inner(&prepared, listener, shutdown, force).await;
    prepared.stop_database().await;
    result
}

async fn serve_inner(
    prepared: &Prepared,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    force: CancellationToken,
) -> Result<(), StartError> {
    let config = &prepared.config;
    let pool = prepared.pool.clone();
    let hub = Arc::new(Hub::new(&config.agent));
    // Ends worker streams and background tasks when the server shuts down.
    let background = CancellationToken::new();
    let scheduler = Scheduler::new(
        pool.clone(),
        hub.clone(),
        prepared.secrets.clone(),
        config.agent.lease_ttl,
        config.agent.handoff_deadline,
    )
    .with_sweep_interval(config.agent.sweep_interval);
    let mut tasks = JoinSet::new();
    tasks.spawn(scheduler.clone().run(background.clone()));
    tasks.spawn(scheduler.clone().sweep_forever(background.clone()));
    let (recorder, reports) = Recorder::channel();
    tasks.spawn(recorder::run(
        pool.clone(),
        hub.clone(),
        reports,
        background.clone(),
    ));
    tasks.spawn(leases::run(
        pool.clone(),
        hub.clone(),
        config.agent.heartbeat_interval,
        config.agent.lease_ttl,
        background.clone(),
    ));
    // Wake-ups to and from the other replicas on the same database.
    let (outbox, events) = tokio::sync::mpsc::channel(notify::OUTBOX_CAPACITY);
    hub.set_outbox(outbox);
    tasks.spawn(notify::publish(pool.clone(), events, background.clone()));
    tasks.spawn(notify::listen(
        prepared.db.clone(),
        hub.clone(),
        background.clone(),
    ));

    let (health, health_service) = tonic_health::server::health_reporter();
    let service_names = [
        "",
        "berth.v1.TokenService",
        "berth.v1.WorkerService",
        "berth.v1.WorkRequestService",
        "berth.v1.AgentService",
    ];
    for name in service_names {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(berth_common::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| StartError::Serve(format!("reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(berth_common::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| StartError::Serve(format!("reflection: {e}")))?;

    let router = server_builder(config)?
        .layer(AuthLayer::new(
            Authenticator::new(pool.clone()).with_cache(hub.token_cache()),
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(TokenServiceServer::new(TokenApi::new(Tokens::new(
            pool.clone(),
            hub.clone(),
        ))))
        .add_service(WorkerServiceServer::new(WorkerApi::new(Workers::new(
            pool.clone(),
            hub.clone(),
        ))))
        .add_service(WorkRequestServiceServer::new(WorkRequestApi::new(
            WorkRequests::new(
                pool.clone(),
                prepared.secrets.clone(),
                config.spec_defaults.clone(),
                hub.clone(),
            ),
        )))
        .add_service(AgentServiceServer::new(AgentApi::new(
            Agents::new(
                pool.clone(),
                hub.clone(),
                scheduler,
                recorder,
                config.agent.clone(),
            ),
            background.clone(),
        )));

    let local = listener
        .local_addr()
        .map_err(|e| StartError::Serve(e.to_string()))?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rx.await;
    }));
    tracing::info!(
        addr = %local,
        tls = config.tls.is_some(),
        embedded_database = config.database_url.is_none(),
        "berth-server listening"
    );

    tokio::select! {
        () = shutdown => {}
        finished = &mut server => {
            // The server ended on its own: that is a failure, not a shutdown.
            return match finished {
                Ok(Ok(())) => Err(StartError::Serve("stopped unexpectedly".into())),
                Ok(Err(e)) => Err(StartError::Serve(e.to_string())),
                Err(e) => Err(StartError::Serve(e.to_string())),
            };
        }
    }

    tracing::info!(grace = ?config.shutdown_grace, "shutting down: refusing new connections, letting in-flight calls finish");
    for name in service_names {
        health
            .set_service_status(name, ServingStatus::NotServing)
            .await;
    }
    // Worker streams would hold the drain open forever: end them now (workers reconnect,
    // to another replica or to this one after its restart) and stop background tasks.
    background.cancel();
    while tasks.join_next().await.is_some() {}
    let _ = stop_tx.send(());
    let drained = tokio::select! {
        drained = tokio::time::timeout(config.shutdown_grace, &mut server) => drained,
        () = force.cancelled() => {
            tracing::warn!("closing open calls now");
            server.abort();
            return Ok(());
        }
    };
    match drained {
        Ok(Ok(Ok(()))) => tracing::info!("all calls finished"),
        Ok(Ok(Err(e))) => return Err(StartError::Serve(e.to_string())),
        Ok(Err(e)) => return Err(StartError::Serve(e.to_string())),
        Err(_) => {
            tracing::warn!("calls still open after the shutdown grace period; closing them");
            server.abort();
        }
    }
    Ok(())
}
