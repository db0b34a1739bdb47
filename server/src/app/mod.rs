//! Start-up and shutdown: everything between `main` and the gRPC services.
//!
//! [`prepare`] makes the server ready to serve: data dir, database (the embedded
//! PostgreSQL when no URL is given), migrations, pool, secret key and the first admin token.
//! [`serve`] runs the gRPC server on a listener it is handed (so tests bind port 0) until
//! the `shutdown` future completes, then drains: health turns NOT_SERVING, no new
//! connections are taken, in-flight calls get `shutdown_grace` to finish, and the embedded
//! PostgreSQL is stopped last. A stop that fails is an error: the process then exits
//! non-zero.
//!
//! While serving, the database is watched (`live::health`: health and the lease sweep
//! follow it) and the embedded PostgreSQL is supervised ([`supervise`]): restarted when
//! it dies, and the server stops with an error if it cannot be.

pub mod cli;
pub mod config;
pub mod supervise;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use berth_core::access::auth::Authenticator;
use berth_core::access::sessions::{DEFAULT_SESSION_TTL, Sessions};
use berth_core::access::tokens::Tokens;
use berth_core::access::users::Users;
use berth_core::access::workspaces::Workspaces;
use berth_core::artifacts::Artifacts;
use berth_core::artifacts::collections::Collections;
use berth_core::artifacts::gc;
use berth_core::artifacts::stores::Stores;
use berth_core::events::relay::{self, Relay};
use berth_core::fleet::agents::Agents;
use berth_core::fleet::workers::Workers;
use berth_core::live::health::{self, DbHealth};
use berth_core::live::hub::Hub;
use berth_core::live::{leases, notify};
use berth_core::notifications::{Notifications, deliver};
use berth_core::services::{ServiceManager, reconcile};
use berth_core::store::db::{self, DbError, DbPool, DbSettings};
use berth_core::store::secrets::{SecretBox, SecretError};
use berth_core::templates::Templates;
use berth_core::topics::{self, Topics};
use berth_core::triggers::{Triggers, fire};
use berth_core::work::recorder::{self, Recorder};
use berth_core::work::requests::WorkRequests;
use berth_core::work::scheduler::Scheduler;
use berth_pg::{EmbeddedOptions, EmbeddedPgError, EmbeddedPostgres, RestartPolicy};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::server::{self, ServeError, Services};
use crate::app::config::{Config, ConfigError};
use crate::app::supervise::{DatabaseLost, SharedCluster};

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
    #[error("{0} (or give --database-url to use a PostgreSQL of your own)")]
    Embedded(#[from] EmbeddedPgError),
    /// The secret key cannot be loaded.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The file stores cannot be opened.
    #[error("file stores: {0}")]
    Files(String),
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
    /// The dashboard's own listen address cannot be bound.
    #[error(
        "cannot listen on {addr} for the dashboard: {reason}; stop the other process or choose another --ui-listen"
    )]
    UiBind {
        /// The address.
        addr: String,
        /// The error.
        reason: String,
    },
    /// The TLS certificate or key is unusable, or the gRPC server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// Bootstrapping the first admin token failed.
    #[error("creating the first admin token failed: {0}")]
    Bootstrap(String),
    /// The embedded PostgreSQL died while serving and could not be restarted.
    #[error(transparent)]
    DatabaseLost(#[from] DatabaseLost),
    /// The embedded PostgreSQL could not be stopped at shutdown.
    #[error("stopping the embedded PostgreSQL failed: {0}")]
    StopFailed(EmbeddedPgError),
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
    /// The file stores, open and recorded in `file_stores`.
    pub stores: Stores,
    embedded: Option<SharedCluster>,
}

impl Prepared {
    /// Stops the embedded PostgreSQL, if any. Safe to call twice.
    pub async fn stop_database(&mut self) -> Result<(), StartError> {
        if let Some(embedded) = self.embedded.take() {
            embedded
                .lock()
                .await
                .stop()
                .await
                .map_err(StartError::StopFailed)?;
        }
        Ok(())
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
                pg_ctl_timeout: config.embedded_database_timeout,
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
    server::check_tls(config.tls.as_ref())?;
    let (settings, embedded) = open_database(&config).await?;
    let mut prepared = Prepared {
        pool: db::connect_pool(&settings).await?,
        db: settings,
        secrets: SecretBox::load_or_create(&config.secret_key_file)?,
        config,
        stores: Stores::empty(),
        embedded: embedded.map(|cluster| std::sync::Arc::new(tokio::sync::Mutex::new(cluster))),
    };
    let bootstrap = async {
        let mut conn = db::connect_once(&prepared.db).await?;
        let token =
            berth_core::access::bootstrap::first_admin_token(&mut conn, &prepared.config.data_dir)
                .await
                .map_err(|e| StartError::Bootstrap(e.to_string()))?;
        let mut pooled = prepared.pool.get().await.map_err(|e| {
            StartError::Files(format!(
                "no database connection to record the file stores: {e}"
            ))
        })?;
        let stores = Stores::open(&mut pooled, &prepared.config.files)
            .await
            .map_err(|e| StartError::Files(e.to_string()))?;
        Ok::<_, StartError>((token, stores))
    }
    .await;
    match bootstrap {
        Ok((token, stores)) => {
            prepared.stores = stores;
            if let Some(path) = token {
                tracing::info!(path = %path.display(), "created the first admin token; it is in this file");
            }
        }
        Err(e) => {
            if let Err(stop) = prepared.stop_database().await {
                tracing::error!(error = %stop, "and stopping the embedded PostgreSQL failed too");
            }
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
    let stopped = prepared.stop_database().await;
    match (result, stopped) {
        (Err(e), Err(stop)) => {
            // The first failure is what the process exits with; this one is logged.
            tracing::error!(error = %stop, "and stopping the embedded PostgreSQL failed too");
            Err(e)
        }
        (result, stopped) => result.and(stopped),
    }
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
    let database = DbHealth::new();
    let scheduler = Scheduler::new(
        pool.clone(),
        hub.clone(),
        prepared.secrets.clone(),
        config.agent.lease_ttl,
        config.agent.handoff_deadline,
    )
    .with_sweep_interval(config.agent.sweep_interval)
    .with_stop_wait(config.agent.stop_wait)
    .with_health(database.clone());
    let mut tasks = JoinSet::new();
    tasks.spawn(health::watch(
        pool.clone(),
        database.clone(),
        background.clone(),
    ));
    // Restarts the embedded PostgreSQL when it dies; ends the server if it cannot.
    let mut supervisor = prepared.embedded.clone().map(|cluster| {
        tokio::spawn(supervise::supervise(
            cluster,
            RestartPolicy::default(),
            background.clone(),
        ))
    });
    tasks.spawn(scheduler.clone().run(background.clone()));
    tasks.spawn(scheduler.clone().sweep_forever(background.clone()));
    let (recorder, reports) = Recorder::channel();
    tasks.spawn(recorder::run(
        pool.clone(),
        hub.clone(),
        database.clone(),
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
    // Collects expired artifacts, unreferenced files, stale uploads and orphan objects.
    tasks.spawn(gc::run(
        pool.clone(),
        prepared.stores.clone(),
        config.gc.clone(),
        background.clone(),
    ));

    let requests = WorkRequests::new(
        pool.clone(),
        prepared.secrets.clone(),
        config.spec_defaults.clone(),
        hub.clone(),
    );
    let templates = Templates::new(
        pool.clone(),
        prepared.secrets.clone(),
        config.spec_defaults.clone(),
        requests.clone(),
    );
    // Keeps every service's replicas as desired: restarts, moves, scaling, deploys.
    let service_manager = ServiceManager::new(
        pool.clone(),
        prepared.secrets.clone(),
        config.spec_defaults.clone(),
        hub.clone(),
        templates.clone(),
    )
    .with_interval(config.agent.sweep_interval);
    tasks.spawn(reconcile::run(service_manager.clone(), background.clone()));
    // Fires schedule rules, watches for artifacts and ended requests, settles firings.
    let triggers = Triggers::new(
        pool.clone(),
        prepared.secrets.clone(),
        templates.clone(),
        hub.clone(),
    )
    .with_interval(config.trigger_interval);
    tasks.spawn(fire::run(triggers.clone(), background.clone()));
    // Retention, collection and dead letters of topics; consumers marked seen; pings.
    let topics = Topics::new(pool.clone(), hub.clone()).with_settings(config.topics.clone());
    tasks.spawn(topics::background::run(topics.clone(), background.clone()));
    // Publishes Berth's own events from the outbox onto the system topics and hands them
    // to the notification channels (one replica at a time).
    tasks.spawn(relay::run(
        Relay::new(pool.clone(), hub.clone(), config.relay.clone()),
        background.clone(),
    ));
    // Sends queued notifications (webhooks, email), with retries, on every replica.
    let notifications = Notifications::new(
        pool.clone(),
        prepared.secrets.clone(),
        config.notifications.clone(),
    );
    tasks.spawn(deliver::run(
        notifications.clone(),
        prepared.db.clone(),
        background.clone(),
    ));
    let services = Services {
        authenticator: Authenticator::new(pool.clone()).with_cache(hub.token_cache()),
        tokens: Tokens::new(pool.clone(), hub.clone()),
        users: Users::new(pool.clone(), hub.clone()),
        workspaces: Workspaces::new(pool.clone()),
        workers: Workers::new(pool.clone(), hub.clone()),
        templates,
        service_manager,
        triggers,
        topics,
        notifications,
        requests,
        agents: Agents::new(
            pool.clone(),
            hub.clone(),
            scheduler,
            recorder,
            config.agent.clone(),
        ),
        collections: Collections::new(pool.clone()),
        artifacts: Artifacts::new(pool.clone(), prepared.stores.clone())
            .with_limits(config.artifact_limits),
        streams_end: background.clone(),
        database,
        sessions: Sessions::new(
            pool.clone(),
            Authenticator::new(pool.clone()).with_cache(hub.token_cache()),
            DEFAULT_SESSION_TTL,
        ),
        scrape: crate::observe::Scrape { pool: pool.clone() },
    };
    let ui = match config.ui_listen {
        None => None,
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| StartError::UiBind {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })?,
        ),
    };
    let mut serving = server::serve_with_ui(listener, ui, config.tls.as_ref(), services).await?;
    if let Some(addr) = serving.ui_addr() {
        tracing::info!(%addr, tls = config.tls.is_some(), "dashboard listening on its own");
    }
    tracing::info!(
        addr = %serving.local_addr(),
        tls = config.tls.is_some(),
        embedded_database = config.database_url.is_none(),
        "berth-server listening"
    );
    // Under systemd `Type=notify`, the unit is up only now that the port answers.
    notify_systemd(sd_notify::NotifyState::Ready);

    let database_lost = async {
        match supervisor.as_mut() {
            Some(task) => match task.await {
                Ok(Err(lost)) => lost,
                // Ended by the shutdown, or panicked (a bug, and the cluster keeps running).
                Ok(Ok(())) | Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = shutdown => {}
        // The server ended on its own: that is a failure, not a shutdown.
        failed = serving.failed() => return Err(failed.into()),
        lost = database_lost => {
            tracing::error!(error = %lost, "stopping: the database cannot be brought back");
            serving.not_serving().await;
            serving.abort();
            return Err(lost.into());
        }
    }

    tracing::info!(grace = ?config.shutdown_grace, "shutting down: refusing new connections, letting in-flight calls finish");
    notify_systemd(sd_notify::NotifyState::Stopping);
    serving.not_serving().await;
    // Worker streams would hold the drain open forever: end them now (workers reconnect,
    // to another replica or to this one after its restart) and stop background tasks.
    background.cancel();
    // A task stuck on a database that does not answer (a hung postmaster) must not hold
    // the shutdown: it gets the grace period, then it is stopped where it is.
    let joined = tokio::time::timeout(config.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if joined.is_err() {
        tracing::warn!(
            "background tasks still busy after the shutdown grace period (is the database answering?); stopping them"
        );
        tasks.shutdown().await;
    }
    serving.stop_accepting();
    let drained = tokio::select! {
        drained = serving.drain(config.shutdown_grace) => drained?,
        () = force.cancelled() => {
            tracing::warn!("closing open calls now");
            serving.abort();
            return Ok(());
        }
    };
    if drained {
        tracing::info!("all calls finished");
    } else {
        tracing::warn!("calls still open after the shutdown grace period; closing them");
    }
    Ok(())
}

/// Tells systemd (when it started us with `NOTIFY_SOCKET`) how the server is doing; a
/// failure to tell it is logged, never fatal.
fn notify_systemd(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}
