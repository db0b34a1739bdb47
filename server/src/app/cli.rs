//! `berth-server`'s command line: `serve` (the default), `migrate` and `admin-token`.
//!
//! Errors end the process with one line on stderr (`error: ...`) and exit status 1.
//! SIGTERM or SIGINT starts a graceful shutdown; a second one exits at once.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app::config::{Config, ServerArgs};
use crate::app::{self, StartError};
use berth_core::store::db;

#[derive(Debug, Parser)]
#[command(name = "berth-server", version, about = "Berth's central gRPC server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    args: ServerArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC (the default when no subcommand is given)
    Serve,
    /// Apply database migrations and exit
    Migrate,
    /// Create a new admin token, print it on stdout and exit (direct database access)
    AdminToken {
        /// The user the token belongs to
        #[arg(long, default_value = berth_core::access::bootstrap::FIRST_ADMIN)]
        name: String,
        /// Free text stored with the token
        #[arg(long, default_value = "created with berth-server admin-token")]
        comment: String,
    },
}

/// Runs the command line; returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::resolve(&cli.args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log_format = config.log_format;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berth-server")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime: a trace exporter, when asked for, keeps its channel on it.
    let telemetry = {
        let _inside = runtime.enter();
        berth_common::logging::init(log_format, "berth-server")
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Migrate => migrate(config).await,
            Command::AdminToken { name, comment } => admin_token(config, &name, &comment).await,
        }
    });
    // The last spans go out while the runtime (and so the exporter's channel) still runs.
    {
        let _inside = runtime.enter();
        telemetry.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // People read the `error:` line; a text log line would only repeat it. JSON logs
            // get the record too, for whatever collects them.
            if log_format == berth_common::logging::LogFormat::Json {
                tracing::error!(error = %e, "berth-server stopped");
            }
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), StartError> {
    // Handlers first: a signal that comes while the server starts (or once it answers, but
    // before the shutdown future is first polled) must drain and stop the embedded
    // PostgreSQL, not kill the process with the default action.
    let force = CancellationToken::new();
    let shutdown = shutdown_signal(force.clone());
    // Bind first: a port in use is found before the database is started.
    let listener = app::bind(&config).await?;
    let prepared = app::prepare(config).await?;
    app::serve_until(prepared, listener, shutdown, force.clone()).await?;
    if force.is_cancelled() {
        // The second signal asked for an immediate exit; the database is stopped already.
        std::process::exit(130);
    }
    Ok(())
}

async fn migrate(config: Config) -> Result<(), StartError> {
    let (_, embedded) = app::open_database(&config).await?;
    if let Some(mut embedded) = embedded {
        embedded.stop().await?;
    }
    println!("database is up to date");
    Ok(())
}

async fn admin_token(config: Config, name: &str, comment: &str) -> Result<(), StartError> {
    berth_core::work::spec::validate_name("--name", name)
        .map_err(|e| StartError::Config(crate::app::config::ConfigError(e)))?;
    let (settings, embedded) = app::open_database(&config).await?;
    let created = async {
        let mut conn = db::connect_once(&settings).await?;
        berth_core::access::bootstrap::new_admin_token(&mut conn, name, comment)
            .await
            .map_err(|e| StartError::Bootstrap(e.to_string()))
    }
    .await;
    if let Some(mut embedded) = embedded {
        embedded.stop().await?;
    }
    let token = created?;
    tracing::info!(user = name, "created an admin token");
    println!("{}", token.expose_secret());
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers at once (a signal from then on is never lost)
/// and returns a future that completes on the first of them; a second one cancels
/// `force`, which cuts the drain short (the embedded PostgreSQL is still stopped).
/// Must be called inside the runtime.
fn shutdown_signal(force: CancellationToken) -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop the server with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("second signal: closing open calls now");
            force.cancel();
        });
    }
}
