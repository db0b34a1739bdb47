//! `berth-worker`'s entry point: configuration, logging, signals.
//!
//! The first SIGTERM or SIGINT drains: the worker says GoingAway, takes no new work and
//! lets running attempts finish until `--drain-timeout`, after which they are stopped and
//! reported as interrupted so the server runs them again. A second signal stops them at
//! once. Errors end the process with one `error:` line and status 1.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::config::{WorkerArgs, WorkerConfig};

/// Runs the command line; returns the process exit status.
pub fn main() -> ExitCode {
    let args = WorkerArgs::parse();
    let config = match WorkerConfig::resolve(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berth-worker")
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
        berth_common::logging::init(config.log_format, "berth-worker")
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let force = CancellationToken::new();
        tokio::spawn(watch_signals(shutdown.clone(), force.clone()));
        tracing::info!(name = %config.name, server = %config.server, concurrency = config.concurrency, "berth-worker starting");
        crate::agent::run(config, shutdown, force).await
    });
    // The last spans go out while the runtime (and so the exporter's channel) still runs.
    {
        let _inside = runtime.enter();
        telemetry.shutdown();
    }
    match result {
        Ok(()) => {
            tracing::info!("berth-worker stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "berth-worker stopped");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn watch_signals(shutdown: CancellationToken, force: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("signal received: draining");
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("second signal: stopping running attempts now");
    force.cancel();
}
