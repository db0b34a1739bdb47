//! `peer`: Berth next to a PostgreSQL job queue a user might pick instead, measured in the
//! same run on the same private cluster.
//!
//! The peer is [pgqueuer](https://pypi.org/project/pgqueuer/), a Python queue on
//! PostgreSQL (`LISTEN/NOTIFY` to wake workers, `FOR UPDATE SKIP LOCKED` to claim). It is
//! installed on first use into a private venv next to the bench binary
//! (`target/pgqueuer-venv`, or `BERTH_PGQUEUER_VENV`), pinned by hash in
//! `scripts/requirements/pgqueuer.txt`, and driven by our own script,
//! `bench/peers/pgqueuer_bench.py` (embedded in the binary), which runs one phase per
//! call and prints its figures as one JSON line.
//!
//! The scenario first runs [`noop`](super::noop)'s measurement on a fresh stack (peak,
//! pgbench, half load, drain), then, on the same PostgreSQL, in a database of its own
//! (`pgqueuer`), the same phases through pgqueuer:
//!
//! 1. **Peak**: the same closed-loop submitters as `noop` (one job per call, waiting for
//!    each), no-op handlers on the same number of slots, for the same time. Commits per
//!    job from `pg_stat_database.xact_commit` of the `pgqueuer` database (read the same
//!    way as `noop` reads `berth`'s, stats flush delay included), statements per job from
//!    `pg_stat_statements`; the driver's own polls are subtracted.
//! 2. **Half load**: submitters paced to half of pgqueuer's own peak; latency from an
//!    enqueue call returning to the handler starting.
//! 3. **Drain**: the same number of jobs as `noop`'s drain queued first, then the
//!    workers start; jobs finished per second.
//!
//! It prints both systems side by side with pgbench's one-row `UPDATE` TPS of the `noop`
//! run and the ratios issue 18's goals are stated in.
//!
//! Python runs one core per process, so pgqueuer's slots are spread over worker
//! processes (2 × 32 slots, fetching 8 jobs at a time) and its submitters over two
//! producer processes: the same 64 slots and 16 submitters as `noop`, in the shape
//! pgqueuer is meant to be deployed in.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::json;

use crate::report::{Report, ms};
use crate::scenarios::Options;
use crate::scenarios::noop::{self, Sizes};
use crate::stack::{
    Stack, StackOptions, reset_statement_profile, sibling_binary, sql_connect, statement_profile,
};

/// The driver script, written into the stack's directory at run time.
const DRIVER: &str = include_str!("../../peers/pgqueuer_bench.py");
/// pgqueuer and its dependencies, pinned by hash.
const REQUIREMENTS: &str = include_str!("../../../scripts/requirements/pgqueuer.txt");
/// The pinned version, checked in the venv to tell whether it needs (re)installing.
const PGQUEUER_VERSION: &str = "1.6.0";
/// The database pgqueuer's tables live in, beside `berth`.
const DATABASE: &str = "pgqueuer";
/// PostgreSQL publishes an idle backend's statistics at most this much later.
const STATS_FLUSH_DELAY: Duration = Duration::from_millis(11_000);
/// Statements shown in pgqueuer's profile.
const PROFILE_LINES: i64 = 8;

/// pgqueuer's side of the shape: processes and slots.
#[derive(Debug, Clone, Copy)]
struct PeerShape {
    workers: usize,
    concurrency: usize,
    batch: usize,
    producers: usize,
}

impl PeerShape {
    /// The same slots and submitters as `noop`'s `sizes`.
    fn matching(sizes: Sizes) -> PeerShape {
        let slots = sizes.workers * sizes.concurrency as usize;
        if slots >= 32 {
            PeerShape {
                workers: 2,
                concurrency: slots / 2,
                batch: 8,
                producers: 2,
            }
        } else {
            // pgqueuer wants at least two batches of slots per worker.
            PeerShape {
                workers: 1,
                concurrency: slots,
                batch: (slots / 2).max(1),
                producers: 1,
            }
        }
    }
}

/// One phase's answer from the driver (fields of the JSON line it prints).
#[derive(Debug, Clone, Deserialize)]
struct PhaseResult {
    jobs: u64,
    elapsed_seconds: f64,
    throughput_per_second: f64,
    own_statements: i64,
    #[serde(default)]
    latency_ms: Option<LatencyMs>,
    #[serde(default)]
    achieved_rate_per_second: Option<f64>,
    #[serde(default)]
    fill_seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct LatencyMs {
    p50: f64,
    p99: f64,
    max: f64,
    missing: u64,
}

/// Berth's figures from the `noop` run, read from its JSON.
struct BerthFigures {
    throughput: f64,
    commits_per_request: f64,
    statements_per_request: f64,
    half_p50: f64,
    half_p99: f64,
    drain: f64,
    pgbench_tps: f64,
}

impl BerthFigures {
    fn from_report(report: &Report) -> BerthFigures {
        let figure = |path: &[&str]| -> f64 {
            path.iter()
                .try_fold(&report.json, |v, key| v.get(*key))
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(f64::NAN)
        };
        BerthFigures {
            throughput: figure(&["peak", "throughput_per_second"]),
            commits_per_request: figure(&["peak", "commits_per_work_request"]),
            statements_per_request: figure(&["statement_profile", "per_work_request"]),
            half_p50: figure(&["half_load", "dispatch_latency_ms", "p50"]),
            half_p99: figure(&["half_load", "dispatch_latency_ms", "p99"]),
            drain: figure(&["drain", "throughput_per_second"]),
            pgbench_tps: figure(&["pgbench", "tps"]),
        }
    }
}

pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let sizes = Sizes::for_options(opts);
    let shape = PeerShape::matching(sizes);
    // Before any stack: a missing Python fails in seconds, not after Berth's phases.
    let python = ensure_venv().await?;
    let stack = Stack::start(StackOptions::default()).await?;
    let result = measure(&stack, &python, sizes, shape).await;
    stack.stop().await?;
    result
}

async fn measure(
    stack: &Stack,
    python: &Path,
    sizes: Sizes,
    shape: PeerShape,
) -> anyhow::Result<Report> {
    eprintln!("  berth (noop)");
    let noop_report = noop::measure(stack, sizes, 1).await?;
    let berth = BerthFigures::from_report(&noop_report);

    eprintln!("  pgqueuer {PGQUEUER_VERSION}");
    let driver = stack.dir.path().join("pgqueuer_bench.py");
    std::fs::write(&driver, DRIVER).context("cannot write the pgqueuer driver")?;
    let admin = sql_connect(&stack.database_url).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
        .await
        .context("cannot create the pgqueuer database")?;
    let dsn = stack.database_url_for(DATABASE);
    let peer_db = sql_connect(&dsn).await?;
    // The view is per database; the counters behind it are the cluster's.
    peer_db
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .context("cannot create pg_stat_statements in the pgqueuer database")?;
    let run = |phase: &'static str, extra: Vec<String>| {
        run_driver(python, &driver, &dsn, phase, sizes, shape, extra)
    };
    run("install", Vec::new()).await?;

    // Peak. The counters are read on `berth`'s connection so that reading them does not
    // count against the `pgqueuer` database.
    let commits_before = xact_commit(&admin).await?;
    reset_statement_profile(&admin).await?;
    eprintln!(
        "  pgqueuer peak: {} worker processes x {} slots, {} submitters for {:?}",
        shape.workers, shape.concurrency, sizes.submitters, sizes.duration
    );
    let peak = parse(run("peak", Vec::new()).await?)?;
    let peak_done = Instant::now();
    let (statements, statement_calls) = statement_profile(&peer_db, PROFILE_LINES).await?;
    let waited = peak_done.elapsed();
    if waited < STATS_FLUSH_DELAY {
        tokio::time::sleep(STATS_FLUSH_DELAY - waited).await;
    }
    let commits_after = xact_commit(&admin).await?;
    // The driver's polls, and the profile read above, are transactions in `pgqueuer`.
    let commits = commits_after
        .saturating_sub(commits_before)
        .saturating_sub(u64::try_from(peak.own_statements).unwrap_or(0) + 1);
    let per_job = |n: f64| n / peak.jobs.max(1) as f64;
    let commits_per_job = per_job(commits as f64);
    let peer_statements = statement_calls - peak.own_statements;
    let statements_per_job = per_job(peer_statements as f64);

    let half_rate = peak.throughput_per_second / 2.0;
    eprintln!("  pgqueuer half load: {half_rate:.0} jobs/s");
    let half = parse(run("paced", vec!["--rate".into(), format!("{half_rate}")]).await?)?;
    eprintln!("  pgqueuer drain: {} jobs", sizes.drain_requests);
    let drain = parse(run("drain", Vec::new()).await?)?;

    let half_latency = half
        .latency_ms
        .context("the driver's paced phase reported no latencies")?;
    let peak_latency = peak
        .latency_ms
        .context("the driver's peak phase reported no latencies")?;
    let noop_over_peer = berth.throughput / peak.throughput_per_second;
    let drain_over_peer = berth.drain / drain.throughput_per_second;
    let noop_over_pgbench = berth.throughput / berth.pgbench_tps;
    let peer_over_pgbench = peak.throughput_per_second / berth.pgbench_tps;
    let goal = |ok: bool| if ok { "met" } else { "NOT met" };

    let mut rows = vec![
        (
            "shape".to_owned(),
            format!(
                "{} submitters, one job per call; {} slots; {:?} per phase",
                sizes.submitters,
                sizes.workers * sizes.concurrency as usize,
                sizes.duration
            ),
        ),
        (
            "berth: peak throughput".to_owned(),
            format!("{:.0} requests/s", berth.throughput),
        ),
        (
            "pgqueuer: peak throughput".to_owned(),
            format!(
                "{:.0} jobs/s ({} in {:.1} s; {} worker processes x {} slots, batch {})",
                peak.throughput_per_second,
                peak.jobs,
                peak.elapsed_seconds,
                shape.workers,
                shape.concurrency,
                shape.batch
            ),
        ),
        (
            "berth: commits / statements per request".to_owned(),
            format!(
                "{:.2} / {:.2}",
                berth.commits_per_request, berth.statements_per_request
            ),
        ),
        (
            "pgqueuer: commits / statements per job".to_owned(),
            format!("{commits_per_job:.2} / {statements_per_job:.2}"),
        ),
        (
            "berth: half load latency p50 / p99".to_owned(),
            format!(
                "{} / {} (submit returned -> Assign received)",
                ms(berth.half_p50),
                ms(berth.half_p99)
            ),
        ),
        (
            "pgqueuer: half load latency p50 / p99".to_owned(),
            format!(
                "{} / {} (enqueue returned -> handler started; {:.0} jobs/s)",
                ms(half_latency.p50),
                ms(half_latency.p99),
                half.achieved_rate_per_second.unwrap_or(f64::NAN)
            ),
        ),
        (
            "pgqueuer: peak latency p50 / p99".to_owned(),
            format!("{} / {}", ms(peak_latency.p50), ms(peak_latency.p99)),
        ),
        (
            "berth: drain".to_owned(),
            format!(
                "{:.0} requests/s ({} queued first)",
                berth.drain, sizes.drain_requests
            ),
        ),
        (
            "pgqueuer: drain".to_owned(),
            format!(
                "{:.0} jobs/s ({} queued first in {:.1} s)",
                drain.throughput_per_second,
                drain.jobs,
                drain.fill_seconds.unwrap_or(f64::NAN)
            ),
        ),
        (
            "pgbench one-row UPDATE".to_owned(),
            format!(
                "{:.0} TPS ({} clients)",
                berth.pgbench_tps, sizes.submitters
            ),
        ),
        (
            "noop / best peer (pgqueuer)".to_owned(),
            format!(
                "{noop_over_peer:.3} (goal >= 3: {})",
                goal(noop_over_peer >= 3.0)
            ),
        ),
        (
            "drain / pgqueuer drain".to_owned(),
            format!(
                "{drain_over_peer:.3} (goal >= 1: {})",
                goal(drain_over_peer >= 1.0)
            ),
        ),
        (
            "noop / pgbench".to_owned(),
            format!(
                "{noop_over_pgbench:.3} (goal >= 0.25: {}; pgqueuer {peer_over_pgbench:.3})",
                goal(noop_over_pgbench >= 0.25)
            ),
        ),
        (
            "pgqueuer: statements per job, most executed".to_owned(),
            format!("{peer_statements} statements"),
        ),
    ];
    // The driver's own poll of the queue table is not pgqueuer's.
    for line in statements
        .iter()
        .filter(|l| !l.query.starts_with("SELECT count(*) FROM pgqueuer"))
    {
        rows.push((
            format!(
                "  {:.2}/job, {:.3} ms",
                per_job(line.calls as f64),
                line.mean_ms
            ),
            line.query.clone(),
        ));
    }
    let latency_json =
        |l: LatencyMs| json!({"p50": l.p50, "p99": l.p99, "max": l.max, "missing": l.missing});
    let json = json!({
        "berth_noop": noop_report.json,
        "pgqueuer": {
            "version": PGQUEUER_VERSION,
            "worker_processes": shape.workers,
            "slots_per_process": shape.concurrency,
            "batch": shape.batch,
            "producer_processes": shape.producers,
            "submitters": sizes.submitters,
            "duration_seconds": sizes.duration.as_secs_f64(),
            "peak": {
                "jobs": peak.jobs,
                "elapsed_seconds": peak.elapsed_seconds,
                "throughput_per_second": peak.throughput_per_second,
                "latency_ms": latency_json(peak_latency),
                "commits": commits,
                "commits_per_job": commits_per_job,
                "statements": peer_statements,
                "statements_per_job": statements_per_job,
            },
            "half_load": {
                "target_rate_per_second": half_rate,
                "achieved_rate_per_second": half.achieved_rate_per_second,
                "jobs": half.jobs,
                "latency_ms": latency_json(half_latency),
            },
            "drain": {
                "jobs": drain.jobs,
                "fill_seconds": drain.fill_seconds,
                "elapsed_seconds": drain.elapsed_seconds,
                "throughput_per_second": drain.throughput_per_second,
            },
        },
        "pgbench_tps": berth.pgbench_tps,
        "ratios": {
            "noop_over_best_peer": noop_over_peer,
            "drain_over_pgqueuer_drain": drain_over_peer,
            "noop_over_pgbench": noop_over_pgbench,
            "pgqueuer_over_pgbench": peer_over_pgbench,
        },
        "goals": {"noop_over_best_peer": 3.0, "drain_over_pgqueuer_drain": 1.0, "noop_over_pgbench": 0.25},
    });
    Ok(Report {
        scenario: "peer".to_owned(),
        rows,
        json,
    })
}

fn parse(value: serde_json::Value) -> anyhow::Result<PhaseResult> {
    serde_json::from_value(value).context("the pgqueuer driver's result lacks a figure")
}

/// Runs one phase of the driver and returns the JSON line it prints last.
async fn run_driver(
    python: &Path,
    driver: &Path,
    dsn: &str,
    phase: &str,
    sizes: Sizes,
    shape: PeerShape,
    extra: Vec<String>,
) -> anyhow::Result<serde_json::Value> {
    let output = tokio::process::Command::new(python)
        .arg(driver)
        .args(["--dsn", dsn, "--phase", phase])
        .arg("--seconds")
        .arg(sizes.duration.as_secs_f64().to_string())
        .arg("--jobs")
        .arg(sizes.drain_requests.to_string())
        .arg("--submitters")
        .arg(sizes.submitters.to_string())
        .arg("--producers")
        .arg(shape.producers.to_string())
        .arg("--workers")
        .arg(shape.workers.to_string())
        .arg("--concurrency")
        .arg(shape.concurrency.to_string())
        .arg("--batch")
        .arg(shape.batch.to_string())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "the pgqueuer driver's {phase} phase failed ({})",
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("the pgqueuer driver printed no JSON for {phase}: {stdout}"))?;
    serde_json::from_str(line)
        .with_context(|| format!("cannot parse the pgqueuer driver's {phase} result: {line}"))
}

/// The venv's Python with the pinned pgqueuer, installing it first if needed.
async fn ensure_venv() -> anyhow::Result<PathBuf> {
    let venv = match std::env::var_os("BERTH_PGQUEUER_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => {
            // Next to the build output (`target/pgqueuer-venv`), so `cargo clean` removes it.
            let bin_dir = sibling_binary("berth-server")?
                .parent()
                .and_then(Path::parent)
                .map(Path::to_owned)
                .context("the bench binary has no build directory above it")?;
            bin_dir.join("pgqueuer-venv")
        }
    };
    let python = venv.join("bin").join("python");
    if installed_version(&python).await.as_deref() == Some(PGQUEUER_VERSION) {
        return Ok(python);
    }
    eprintln!(
        "  installing pgqueuer {PGQUEUER_VERSION} into {} (scripts/requirements/pgqueuer.txt)",
        venv.display()
    );
    let status = tokio::process::Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .stdin(Stdio::null())
        .status()
        .await
        .context("cannot run python3 (install Python 3.10 or later)")?;
    if !status.success() {
        bail!("python3 -m venv {} failed ({status})", venv.display());
    }
    let requirements = venv.join("requirements.txt");
    std::fs::write(&requirements, REQUIREMENTS)
        .with_context(|| format!("cannot write {}", requirements.display()))?;
    let status = tokio::process::Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--require-hashes", "-r"])
        .arg(&requirements)
        .stdin(Stdio::null())
        .status()
        .await
        .context("cannot run the venv's pip")?;
    if !status.success() {
        bail!(
            "installing pgqueuer into {} failed ({status})",
            venv.display()
        );
    }
    match installed_version(&python).await {
        Some(version) if version == PGQUEUER_VERSION => Ok(python),
        other => bail!(
            "{} has pgqueuer {other:?} after installing, not {PGQUEUER_VERSION}",
            venv.display()
        ),
    }
}

/// The pgqueuer version `python` imports, if it runs and has pgqueuer and asyncpg.
async fn installed_version(python: &Path) -> Option<String> {
    let output = tokio::process::Command::new(python)
        .args([
            "-c",
            "import asyncpg, pgqueuer; print(pgqueuer.__version__)",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `xact_commit` of the pgqueuer database.
async fn xact_commit(sql: &tokio_postgres::Client) -> anyhow::Result<u64> {
    let commits: i64 = sql
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
            &[&DATABASE],
        )
        .await
        .context("cannot read pg_stat_database")?
        .get(0);
    Ok(u64::try_from(commits).unwrap_or(0))
}
