//! `idle-streams`: what it costs the server to keep many workers connected while nothing
//! happens.
//!
//! A worker holds one control stream open for as long as it runs and sends a heartbeat
//! every interval, so a large fleet is mostly idle streams. Their cost must stay small,
//! both in memory (per-stream buffers and state) and in CPU (heartbeats, lease upkeep,
//! whatever the server does on a timer per worker). This scenario connects 10,000
//! simulated workers (500 with `--quick`; see [`crate::sim`]) at the default heartbeat
//! interval, waits until every one was welcomed, and then watches the server process for
//! 30 s (10 s): resident memory at the end, the peak during the window (sampled every
//! 100 ms) and over the process's life (VmHWM, which includes the connection storm), and
//! CPU as a share of one core, Δ(user + system time) ÷ Δ wall time. The commits the
//! server makes per second in the `berth` database during the window are reported too,
//! since heartbeats that write to PostgreSQL are the usual way idle fleets get expensive.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::report::{Report, mib};
use crate::scenarios::Options;
use crate::sim::{STREAMS_PER_CHANNEL, start_fleet};
use crate::stack::{Sampler, Stack, StackOptions, sample};

/// PostgreSQL publishes an idle backend's statistics at most this much later.
const STATS_FLUSH_DELAY: Duration = Duration::from_millis(11_000);
/// Goal: resident memory with 10,000 idle streams.
const GOAL_RSS_BYTES: u64 = 300 * 1024 * 1024;
/// Goal: CPU with 10,000 idle streams, in percent of one core.
const GOAL_CPU_PERCENT: f64 = 10.0;

/// Runs the scenario.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let (workers, window) = if opts.quick {
        (500, Duration::from_secs(10))
    } else {
        (10_000, Duration::from_secs(30))
    };
    check_fd_limit(workers)?;
    let stack = Stack::start(StackOptions::default()).await?;
    let result = measure(&stack, workers, window).await;
    stack.stop().await?;
    result
}

/// Streams share connections, so the bench needs few descriptors; say so clearly if even
/// that is more than the limit allows (raising it would take `unsafe`-free `setrlimit`,
/// which `ulimit -n` in the calling shell does just as well).
fn check_fd_limit(workers: usize) -> anyhow::Result<()> {
    let needed = workers / STREAMS_PER_CHANNEL + 64;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft
        && soft < needed
    {
        anyhow::bail!(
            "the open-file limit is {soft} but about {needed} are needed; raise it with \
             `ulimit -n {needed}`"
        );
    }
    Ok(())
}

async fn measure(stack: &Stack, workers: usize, window: Duration) -> anyhow::Result<Report> {
    let pid = stack.server_pid();
    let before = sample(pid)?;
    eprintln!("  connecting {workers} simulated workers");
    let connect_start = Instant::now();
    let fleet = start_fleet(stack, "idle", workers, 1).await?;
    fleet
        .wait_welcomed(Duration::from_secs(if workers > 1000 { 600 } else { 120 }))
        .await?;
    let connect_secs = connect_start.elapsed().as_secs_f64();
    // Let the connection storm's after-effects (first heartbeats, allocator) settle, and
    // let PostgreSQL publish the storm's commits, which an idle backend may hold back
    // for up to ten seconds, so that they are not counted as idle ones.
    tokio::time::sleep(STATS_FLUSH_DELAY).await;

    eprintln!("  watching the server for {window:?}");
    let sql = stack.sql().await?;
    let commits_start = xact_commit(&sql).await?;
    let start = sample(pid)?;
    let wall_start = Instant::now();
    let sampler = Sampler::start(pid);
    tokio::time::sleep(window).await;
    let end = sample(pid)?;
    let wall = wall_start.elapsed().as_secs_f64();
    let window_peak = sampler.stop().await.max(end.rss_bytes);
    // The window's own commits may likewise be published late: keep idling until they
    // are, and count the commits over the whole idle time.
    tokio::time::sleep(STATS_FLUSH_DELAY).await;
    let commits_end = xact_commit(&sql).await?;
    let commit_secs = wall_start.elapsed().as_secs_f64();
    fleet.check_errors()?;
    let welcomed_at_end = fleet
        .stats
        .welcomed
        .load(std::sync::atomic::Ordering::Relaxed);
    fleet.stop().await;

    let cpu_percent = (end.cpu_seconds - start.cpu_seconds) / wall * 100.0;
    let commits_per_second = commits_end.saturating_sub(commits_start) as f64 / commit_secs;
    let per_stream = end.rss_bytes.saturating_sub(before.rss_bytes) as f64 / workers as f64;
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    // The goals are stated for 10,000 streams; a quick run has fewer, so say so.
    let scale_note = if workers == 10_000 {
        String::new()
    } else {
        format!(", goal is for 10,000 streams, this run has {workers}")
    };
    let rows = vec![
        ("idle streams".to_owned(), workers.to_string()),
        (
            "time to connect all".to_owned(),
            format!("{connect_secs:.1} s (tokens included)"),
        ),
        ("window".to_owned(), format!("{:.1} s", wall)),
        (
            "server RSS at end".to_owned(),
            format!(
                "{} (goal <= 300 MiB: {}{scale_note})",
                mib(end.rss_bytes),
                mark(end.rss_bytes <= GOAL_RSS_BYTES)
            ),
        ),
        (
            "server RSS before connecting".to_owned(),
            mib(before.rss_bytes),
        ),
        (
            "RSS per stream".to_owned(),
            format!("{:.1} KiB", per_stream / 1024.0),
        ),
        ("server peak RSS in window".to_owned(), mib(window_peak)),
        (
            "server peak RSS (VmHWM)".to_owned(),
            mib(end.peak_rss_bytes),
        ),
        (
            "server CPU".to_owned(),
            format!(
                "{cpu_percent:.2} % of one core (goal <= 10 %: {}{scale_note})",
                mark(cpu_percent <= GOAL_CPU_PERCENT)
            ),
        ),
        (
            "database commits".to_owned(),
            format!("{commits_per_second:.1} /s"),
        ),
    ];
    let json = json!({
        "streams": workers,
        "welcomed": welcomed_at_end,
        "connect_seconds": connect_secs,
        "window_seconds": wall,
        "rss_bytes_before": before.rss_bytes,
        "rss_bytes_end": end.rss_bytes,
        "rss_bytes_per_stream": per_stream,
        "peak_rss_bytes_window": window_peak,
        "peak_rss_bytes_vmhwm": end.peak_rss_bytes,
        "cpu_percent_of_one_core": cpu_percent,
        "commits_per_second": commits_per_second,
        "goal_rss_bytes": GOAL_RSS_BYTES,
        "goal_cpu_percent": GOAL_CPU_PERCENT,
    });
    Ok(Report {
        scenario: "idle-streams".to_owned(),
        rows,
        json,
    })
}

/// `xact_commit` of the `berth` database.
async fn xact_commit(sql: &tokio_postgres::Client) -> anyhow::Result<u64> {
    let commits: i64 = sql
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = 'berth'",
            &[],
        )
        .await
        .context("cannot read pg_stat_database")?
        .get(0);
    Ok(u64::try_from(commits).unwrap_or(0))
}
