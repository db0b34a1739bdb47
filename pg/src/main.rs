//! `berth-pg`: a throwaway PostgreSQL cluster around a command (see [`berth_pg::run`]).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "berth-pg",
    version,
    about = "Berth's private PostgreSQL, for test runs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run COMMAND with a throwaway PostgreSQL cluster, whose admin URL it finds in
    /// BERTH_TEST_PG_URL; the cluster and its directory are removed however COMMAND ends.
    ///
    /// Exits with COMMAND's exit code (128 + N if signal N killed it), or 125, 126 or 127
    /// when berth-pg itself, or running COMMAND, failed.
    Run(berth_pg::run::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The library logs what it does at info level; only its warnings (say, a postmaster
    // that would not stop) are worth showing around a test run. RUST_LOG can ask for more.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("berth-pg: could not start the async runtime: {err}");
            return ExitCode::from(125);
        }
    };
    match cli.command {
        Command::Run(args) => ExitCode::from(runtime.block_on(berth_pg::run::run(args))),
    }
}
