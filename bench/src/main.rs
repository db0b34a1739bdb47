//! `berth-bench`'s entry point; see the library's docs for what it does.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use berth_bench::report;
use berth_bench::scenarios::{Options, Scenario};

#[derive(Debug, Parser)]
#[command(
    name = "berth-bench",
    about = "Benchmarks a private Berth installation"
)]
struct Cli {
    /// Which scenario to run
    #[arg(value_enum)]
    scenario: Scenario,
    /// Small sizes: every scenario together in under two minutes
    #[arg(long)]
    quick: bool,
    /// Directory for the JSON results
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// How long `chaos` injects faults, e.g. 10m [default: 10m, 30s with --quick]
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Seed of `chaos`'s faults and load, to replay a run [default: from the clock]
    #[arg(long)]
    seed: Option<u64>,
    /// Workspaces `noop` spreads its requests over, round-robin; several (`1,4`) run it
    /// once each and print the ratios [default: 1; 1,4 for `all`]
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=1000))]
    workspaces: Vec<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    report::set_quick(cli.quick);
    let opts = Options {
        quick: cli.quick,
        out_dir: cli.out,
        duration: cli.duration,
        seed: cli.seed,
        workspaces: match (cli.workspaces.is_empty(), cli.scenario) {
            (true, Scenario::All) => vec![1, 4],
            (true, _) => vec![1],
            (false, _) => cli
                .workspaces
                .iter()
                .map(|&n| usize::try_from(n).unwrap_or(1))
                .collect(),
        },
    };
    let list: Vec<Scenario> = if cli.scenario == Scenario::All {
        Scenario::EACH.to_vec()
    } else {
        vec![cli.scenario]
    };
    let mut failed = Vec::new();
    for scenario in list {
        eprintln!("running {} ...", scenario.name());
        // Dropping the scenario's future on Ctrl-C drops its stack, which kills the
        // processes it started and stops PostgreSQL.
        let result = tokio::select! {
            result = scenario.run(&opts) => result,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted during {}", scenario.name()),
        };
        match result {
            Ok(report) => {
                report.print();
                let path = report.write_json(&opts.out_dir)?;
                println!("  (written to {})", path.display());
            }
            Err(e) => {
                // Keep going with the other scenarios of `all`; report every failure at the end.
                if cli.scenario == Scenario::All {
                    eprintln!("{} failed: {e:#}", scenario.name());
                }
                failed.push(format!("{}: {e:#}", scenario.name()));
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", failed.join("; "))
    }
}
