//! Scenario `logs`: a job that writes a lot to stdout, through Berth and through
//! `docker run`.
//!
//! Build jobs can be chatty, and Berth keeps every byte a job writes: the worker reads the
//! container's output, spools it on disk until the server acknowledges it, and the server
//! stores it in PostgreSQL (`log_chunks`) and hands it to anyone following the log. This
//! scenario checks that this path neither slows the job down much nor costs memory in
//! proportion to the output:
//!
//! - **Wall time.** One job writes 1 GiB of `x` to stdout (32 MiB with `--quick`). Through
//!   Berth it is timed from `SubmitWorkRequest` to (a) a `StreamLogs` follower having
//!   received every byte of stdout, and (b) the request being completed. The same command
//!   under `docker run --rm` with the worker's flags, its output sent to `/dev/null`, is
//!   the baseline: the fastest a user could see the job end. Goal: (b) ≤ 1.15× docker.
//! - **Memory.** The peak resident memory (VmHWM, plus a 100 ms sampler of VmRSS) of the
//!   server and the worker. Logs stream through both, so neither should hold much of
//!   them at once. Goal: each ≤ 128 MiB.
//!
//! The server's per-request log cap is raised to 2 GiB so nothing is dropped: the figure
//! is the cost of keeping everything. Goals are printed next to the figures, never
//! asserted.
//!
//! The output is one repeated byte so that producing it costs the job almost nothing and
//! the figure is the log path's, not the job's. It also compresses extremely well, so
//! PostgreSQL writes far less to disk than it would for real build output (the report
//! shows both the stored and the on-disk size); the wire, the worker's spool and the
//! follower still carry every byte.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_common::proto::{LogStream, Role, StreamLogsRequest};
use serde_json::json;

use super::Options;
use super::container::{
    IMAGE, check_success, docker_flags, ensure_image, poll_until_done, rpc_error, spec, submit,
};
use crate::report::{Report, mib};
use crate::stack::{Sampler, Stack, StackOptions, sample};

/// Output of the full run.
const FULL_BYTES: u64 = 1 << 30;
/// Output of a `--quick` run.
const QUICK_BYTES: u64 = 32 << 20;
/// The server's log cap for this scenario: above the output, so every byte is stored.
const MAX_LOG_BYTES: u64 = 2 << 30;
/// Largest message the follower accepts; the worker sends chunks of up to 4 MiB, and the
/// server forwards them as stored.
const MAX_MESSAGE: usize = 64 << 20;
/// How long the job may take before the scenario gives up.
const TIMEOUT: Duration = Duration::from_secs(1800);
/// Goal for the peak RSS of the server and of the worker.
const MEMORY_GOAL: u64 = 128 << 20;

const MIB: f64 = 1024.0 * 1024.0;

/// The shell command writing `bytes` bytes of `x` to stdout. busybox `head -c` and `tr`
/// stream in fixed buffers, so the job itself needs little memory and little CPU.
fn writer(bytes: u64) -> String {
    format!("head -c {bytes} /dev/zero | tr '\\0' x")
}

/// What the Berth side measured.
struct BerthRun {
    /// Submit → the follower has every stdout byte.
    followed: Duration,
    /// Submit → the request is completed.
    completed: Duration,
    server_peak_rss: u64,
    server_max_sampled_rss: u64,
    server_cpu_seconds: f64,
    worker_peak_rss: u64,
    worker_max_sampled_rss: u64,
    worker_cpu_seconds: f64,
    /// (bytes stored, table size on disk) of `log_chunks`.
    stored_bytes: Option<(i64, i64)>,
}

/// Runs the scenario.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let bytes = if options.quick {
        QUICK_BYTES
    } else {
        FULL_BYTES
    };
    ensure_image().await?;
    let stack = Stack::start(StackOptions {
        max_log_bytes: Some(MAX_LOG_BYTES),
        ..StackOptions::default()
    })
    .await?;
    let result = measure(&stack, bytes).await;
    let stopped = stack.stop().await;
    let report = result?;
    stopped?;
    Ok(report)
}

/// Everything that needs the stack; split out so the stack is stopped on every path.
async fn measure(stack: &Stack, bytes: u64) -> anyhow::Result<Report> {
    let command = writer(bytes);
    eprintln!("logs: docker run, {} to /dev/null", mib(bytes));
    let docker = timed_docker_run(&command).await?;
    let worker = stack.spawn_worker("bench-logs", 1).await?;
    let measured = berth_run(stack, worker.pid(), &command, bytes).await;
    worker.stop().await;
    let berth = measured?;
    Ok(report(bytes, docker, &berth))
}

/// Times `docker run --rm <flags> IMAGE sh -c COMMAND > /dev/null`.
async fn timed_docker_run(command: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let output = tokio::process::Command::new("docker")
        .arg("run")
        .arg("--rm")
        .args(docker_flags())
        .args([IMAGE, "sh", "-c", command])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .context("cannot run `docker run`")?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        bail!(
            "docker run {IMAGE} sh -c {command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(elapsed)
}

/// Runs the job through Berth while following its log, and samples both processes.
async fn berth_run(
    stack: &Stack,
    worker_pid: u32,
    command: &str,
    bytes: u64,
) -> anyhow::Result<BerthRun> {
    let token = stack.create_token(Role::User, "bench-logs").await?;
    stack.make_contributor("default", "bench-logs").await?;
    let mut client = stack
        .work_requests(&token)
        .await?
        .max_decoding_message_size(MAX_MESSAGE);
    // A first job connects the worker to Docker and the server's pool to the tables, so
    // the timed run pays only for its output.
    let warm = submit(&mut client, spec(&["true"])).await?;
    check_success(&poll_until_done(&mut client, &warm).await?)?;

    let server_pid = stack.server_pid();
    let server_cpu_before = sample(server_pid)?.cpu_seconds;
    let worker_cpu_before = sample(worker_pid)?.cpu_seconds;
    let server_sampler = Sampler::start(server_pid);
    let worker_sampler = Sampler::start(worker_pid);

    eprintln!("logs: berth, {} stored and followed", mib(bytes));
    let start = Instant::now();
    let id = submit(&mut client, spec(&["sh", "-c", command])).await?;
    let mut stream = client
        .stream_logs(StreamLogsRequest {
            id: id.clone(),
            follow: true,
            ..StreamLogsRequest::default()
        })
        .await
        .map_err(rpc_error("StreamLogs"))?
        .into_inner();
    let mut received = 0u64;
    let mut followed = None;
    tokio::time::timeout(TIMEOUT, async {
        while let Some(chunk) = stream.message().await.map_err(rpc_error("StreamLogs"))? {
            if chunk.stream != LogStream::Stdout as u32 {
                continue;
            }
            // Offsets, not a running sum: a chunk sent twice must not count twice.
            received = received.max(chunk.offset + chunk.data.len() as u64);
            if followed.is_none() && received >= bytes {
                followed = Some(start.elapsed());
            }
        }
        anyhow::Ok(())
    })
    .await
    .with_context(|| format!("the job did not finish within {TIMEOUT:?}"))??;
    let done = poll_until_done(&mut client, &id).await?;
    let completed = start.elapsed();

    let server_max_sampled_rss = server_sampler.stop().await;
    let worker_max_sampled_rss = worker_sampler.stop().await;
    let server_after = sample(server_pid)?;
    let worker_after = sample(worker_pid)?;
    check_success(&done)?;
    if done.log_truncated {
        bail!("the server truncated the log although its cap is {MAX_LOG_BYTES} bytes");
    }
    let Some(followed) = followed else {
        bail!("the follower received {received} of {bytes} bytes of stdout");
    };

    let stored_bytes = stored_log_bytes(stack).await;
    Ok(BerthRun {
        followed,
        completed,
        server_peak_rss: server_after.peak_rss_bytes,
        server_max_sampled_rss,
        server_cpu_seconds: server_after.cpu_seconds - server_cpu_before,
        worker_peak_rss: worker_after.peak_rss_bytes,
        worker_max_sampled_rss,
        worker_cpu_seconds: worker_after.cpu_seconds - worker_cpu_before,
        stored_bytes,
    })
}

/// What `log_chunks` holds: the bytes of the stored chunks, and the table's size on disk
/// with its TOAST and indexes (PostgreSQL compresses large values, so the second can be
/// far smaller for repetitive output). `None` (with a warning) when it cannot be read,
/// since it is context rather than a result.
async fn stored_log_bytes(stack: &Stack) -> Option<(i64, i64)> {
    let read = async {
        let sql = stack.sql().await?;
        let row = sql
            .query_one(
                "SELECT coalesce(sum(octet_length(data)), 0)::bigint, \
                        pg_total_relation_size('log_chunks')::bigint \
                 FROM log_chunks",
                &[],
            )
            .await
            .context("cannot read the size of log_chunks")?;
        anyhow::Ok((row.get::<_, i64>(0), row.get::<_, i64>(1)))
    };
    match read.await {
        Ok(sizes) => Some(sizes),
        Err(e) => {
            eprintln!("warning: {e:#}");
            None
        }
    }
}

/// Marks a figure against its goal: `(goal ≤ 1.15×, met)`.
fn goal(met: bool, goal: &str) -> String {
    format!("(goal {goal}, {})", if met { "met" } else { "missed" })
}

/// Builds the table and the JSON.
fn report(bytes: u64, docker: Duration, berth: &BerthRun) -> Report {
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let rate = |d: Duration| bytes as f64 / MIB / d.as_secs_f64();
    let followed_ratio = berth.followed.as_secs_f64() / docker.as_secs_f64();
    let completed_ratio = berth.completed.as_secs_f64() / docker.as_secs_f64();
    let memory_goal = format!("≤ {}", mib(MEMORY_GOAL));
    let rows = vec![
        (
            "job".to_owned(),
            format!("{} of `x` to stdout ({IMAGE})", mib(bytes)),
        ),
        (
            "docker run > /dev/null".to_owned(),
            format!("{} ({:.1} MiB/s)", secs(docker), rate(docker)),
        ),
        (
            "berth, all stdout followed".to_owned(),
            format!(
                "{} ({:.1} MiB/s), {followed_ratio:.2}×",
                secs(berth.followed),
                rate(berth.followed)
            ),
        ),
        (
            "berth, completed".to_owned(),
            format!(
                "{} ({:.1} MiB/s), {completed_ratio:.2}× {}",
                secs(berth.completed),
                rate(berth.completed),
                goal(completed_ratio <= 1.15, "≤ 1.15×")
            ),
        ),
        (
            "server peak RSS".to_owned(),
            format!(
                "{} (sampled max {}), {:.1} s CPU {}",
                mib(berth.server_peak_rss),
                mib(berth.server_max_sampled_rss),
                berth.server_cpu_seconds,
                goal(berth.server_peak_rss <= MEMORY_GOAL, &memory_goal)
            ),
        ),
        (
            "worker peak RSS".to_owned(),
            format!(
                "{} (sampled max {}), {:.1} s CPU {}",
                mib(berth.worker_peak_rss),
                mib(berth.worker_max_sampled_rss),
                berth.worker_cpu_seconds,
                goal(berth.worker_peak_rss <= MEMORY_GOAL, &memory_goal)
            ),
        ),
        (
            "log_chunks stored / on disk".to_owned(),
            berth.stored_bytes.map_or_else(
                || "n/a".to_owned(),
                |(stored, disk)| {
                    let mib = |b: i64| mib(u64::try_from(b).unwrap_or(0));
                    format!("{} / {} (TOAST compresses)", mib(stored), mib(disk))
                },
            ),
        ),
    ];
    let json = json!({
        "image": IMAGE,
        "command": writer(bytes),
        "bytes": bytes,
        "docker_s": docker.as_secs_f64(),
        "berth_followed_s": berth.followed.as_secs_f64(),
        "berth_completed_s": berth.completed.as_secs_f64(),
        "followed_ratio": followed_ratio,
        "completed_ratio": completed_ratio,
        "goal_completed_ratio_max": 1.15,
        "docker_mib_per_s": rate(docker),
        "berth_completed_mib_per_s": rate(berth.completed),
        "server_peak_rss_bytes": berth.server_peak_rss,
        "server_max_sampled_rss_bytes": berth.server_max_sampled_rss,
        "server_cpu_seconds": berth.server_cpu_seconds,
        "worker_peak_rss_bytes": berth.worker_peak_rss,
        "worker_max_sampled_rss_bytes": berth.worker_max_sampled_rss,
        "worker_cpu_seconds": berth.worker_cpu_seconds,
        "goal_peak_rss_bytes_max": MEMORY_GOAL,
        "log_chunks_data_bytes": berth.stored_bytes.map(|(stored, _)| stored),
        "log_chunks_total_relation_bytes": berth.stored_bytes.map(|(_, disk)| disk),
    });
    Report {
        scenario: "logs".to_owned(),
        rows,
        json,
    }
}
