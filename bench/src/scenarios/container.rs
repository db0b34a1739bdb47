//! Scenario `container`: what Berth adds to running a container, against `docker run`.
//!
//! Berth exists to run containers on other machines; if going through it cost much more
//! than typing `docker run` on the build host, people would not. So this scenario runs
//! the cheapest possible job, `true` in a local busybox image, both ways with the same
//! isolation, and compares:
//!
//! - **Latency, one job at a time.** N jobs through Berth, each timed from
//!   `SubmitWorkRequest` until the request is completed (following its log with
//!   `StreamLogs`, as `berth run` does, then one `GetWorkRequest` for the result),
//!   interleaved with N `docker run --rm` of the same image with the flags the worker gives
//!   every container (see [`docker_flags`]). Interleaving means a slow minute on a shared
//!   machine hurts both sides alike; the ratios of the medians and of the 99th percentiles
//!   are the figures to compare. Goal: median ≤ 1.10×.
//! - **Throughput at 2 and 4 jobs at a time.** K jobs submitted at once to a worker with
//!   that many slots, timed until the last one completed, against
//!   `xargs -P 2|4 -n1 docker run --rm ...` running the same K. This shows whether
//!   scheduling, the worker's Docker calls and log shipping keep up when jobs overlap.
//!   Goal: ≥ 0.9× docker's jobs/s.
//!
//! The Berth side pays for everything a user gets: the request is stored, scheduled,
//! offered over the worker's stream, the container created, attached, started, waited
//! for, its (empty) log and result reported, and the container removed. The image is
//! never pulled (pull policy `never`) because `docker run` does not pull a local image
//! either; each side is warmed up once before timing so neither pays for a cold cache.
//!
//! Goals are printed next to the figures, never asserted: a benchmark reports, it does
//! not fail a build (see STYLE.md).

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_common::proto::work_request_service_client::WorkRequestServiceClient;
use berth_common::proto::{
    ContainerSpec, GetWorkRequestRequest, PullPolicy, Role, StreamLogsRequest,
    SubmitWorkRequestRequest, WorkRequest, WorkRequestStatus, WorkResult,
};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::Options;
use crate::report::{Report, ms};
use crate::stack::{Authed, Stack, StackOptions, percentile};

/// The local image both sides run; built from the host's static busybox when missing.
pub(super) const IMAGE: &str = "berth-test/busybox:latest";

/// The limits given to every job, on both sides (Berth's spec and `docker run`'s flags).
pub(super) const MEMORY_BYTES: u64 = 1 << 30;
/// CPU limit, in CPUs.
pub(super) const CPUS: f64 = 1.0;
/// Process limit.
pub(super) const PIDS: i64 = 1024;

/// How often a request's state is polled where no stream tells us it changed.
const POLL: Duration = Duration::from_millis(5);
/// How long one job may take before the scenario gives up on it.
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// The `docker run` flags that give a container the isolation Berth's worker gives a job
/// (see `worker/src/executor.rs`: `Plan::for_job` and `ADDED_CAPABILITIES`), with
/// [`MEMORY_BYTES`], [`CPUS`] and [`PIDS`] as limits.
pub(super) fn docker_flags() -> Vec<String> {
    let mut flags: Vec<String> = ["--network", "none", "--init", "--cap-drop", "ALL"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    for cap in ADDED_CAPABILITIES {
        flags.push("--cap-add".to_owned());
        flags.push(cap.to_owned());
    }
    flags.extend([
        "--security-opt".to_owned(),
        "no-new-privileges".to_owned(),
        "--pids-limit".to_owned(),
        PIDS.to_string(),
        "--memory".to_owned(),
        MEMORY_BYTES.to_string(),
        "--memory-swap".to_owned(),
        MEMORY_BYTES.to_string(),
        "--cpus".to_owned(),
        CPUS.to_string(),
    ]);
    flags
}

/// The capabilities the worker adds back after dropping all (`ADDED_CAPABILITIES` in
/// `worker/src/executor.rs`). Copied rather than imported so the bench does not link the
/// worker's Docker client for one list; the worker's own tests pin it.
const ADDED_CAPABILITIES: [&str; 6] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETGID",
    "SETUID",
    "KILL",
];

/// A spec with the same image and limits as [`docker_flags`], running `command`.
pub(super) fn spec(command: &[&str]) -> ContainerSpec {
    ContainerSpec {
        image: IMAGE.to_owned(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        memory_bytes: Some(MEMORY_BYTES),
        cpus: Some(CPUS),
        pids_limit: Some(PIDS),
        pull_policy: PullPolicy::Never as i32,
        ..ContainerSpec::default()
    }
}

/// Runs `docker ARGS`, failing with its stderr when it fails.
async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run `docker`: this scenario needs a Docker engine and its CLI")?;
    if !output.status.success() {
        bail!(
            "docker {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Makes sure [`IMAGE`] exists, building it from the host's static busybox as the test
/// harness does (there is no registry to pull from).
pub(super) async fn ensure_image() -> anyhow::Result<()> {
    if docker(&["image", "inspect", IMAGE]).await.is_ok() {
        return Ok(());
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(std::path::Path::new)
        .find(|p| p.exists())
        .context(
            "a static busybox is needed to build the bench image: apt-get install busybox-static",
        )?;
    let dir = tempfile::tempdir().context("cannot create a build directory")?;
    std::fs::copy(busybox, dir.path().join("busybox")).context("cannot copy busybox")?;
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"sh\"]\n",
    )
    .context("cannot write the Dockerfile")?;
    let context = dir
        .path()
        .to_str()
        .context("the build directory's path is not UTF-8")?;
    docker(&["build", "-q", "-t", IMAGE, context]).await?;
    Ok(())
}

/// Times one `docker run --rm <flags> IMAGE command...`, output discarded.
async fn timed_docker_run(command: &[&str]) -> anyhow::Result<Duration> {
    let flags = docker_flags();
    let start = Instant::now();
    let output = tokio::process::Command::new("docker")
        .arg("run")
        .arg("--rm")
        .args(&flags)
        .arg(IMAGE)
        .args(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .context("cannot run `docker run`")?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        bail!(
            "docker run {IMAGE} {} failed ({}): {}",
            command.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(elapsed)
}

/// Turns a gRPC status into an error that says which call failed.
pub(super) fn rpc_error(call: &str) -> impl FnOnce(tonic::Status) -> anyhow::Error + '_ {
    move |status| {
        anyhow::anyhow!(
            "{call} failed: {}",
            berth_common::client::describe_status(&status)
        )
    }
}

/// Submits one request for `spec` and returns its id.
pub(super) async fn submit(
    client: &mut WorkRequestServiceClient<Authed>,
    spec: ContainerSpec,
) -> anyhow::Result<String> {
    let submitted = client
        .submit_work_request(SubmitWorkRequestRequest {
            spec: Some(spec),
            ..SubmitWorkRequestRequest::default()
        })
        .await
        .map_err(rpc_error("SubmitWorkRequest"))?;
    Ok(submitted.into_inner().id)
}

/// Whether a request has reached the end of its life.
fn is_terminal(request: &WorkRequest) -> bool {
    request.status == WorkRequestStatus::Completed as i32
        || request.status == WorkRequestStatus::Aborted as i32
}

/// Polls `id` every [`POLL`] until it is completed or aborted, and returns it.
pub(super) async fn poll_until_done(
    client: &mut WorkRequestServiceClient<Authed>,
    id: &str,
) -> anyhow::Result<WorkRequest> {
    let deadline = Instant::now() + JOB_TIMEOUT;
    loop {
        let request = client
            .get_work_request(GetWorkRequestRequest { id: id.to_owned() })
            .await
            .map_err(rpc_error("GetWorkRequest"))?
            .into_inner();
        if is_terminal(&request) {
            return Ok(request);
        }
        if Instant::now() > deadline {
            bail!("work request {id} did not complete within {JOB_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Fails unless the request succeeded, saying how it ended otherwise.
pub(super) fn check_success(request: &WorkRequest) -> anyhow::Result<()> {
    if request.result != WorkResult::Success as i32 {
        bail!(
            "work request {} ended with status {:?}, result {:?}, exit code {:?}, reason {:?}: {}",
            request.id,
            WorkRequestStatus::try_from(request.status),
            WorkResult::try_from(request.result),
            request.exit_code,
            request.reason,
            request.message
        );
    }
    Ok(())
}

/// Runs one `true` job through Berth and returns the time from submit to completed.
///
/// It follows the log until the stream ends, which the server does once the request is
/// terminal, then reads the result: what `berth run` does.
async fn timed_berth_job(
    client: &mut WorkRequestServiceClient<Authed>,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let id = submit(client, spec(&["true"])).await?;
    let mut stream = client
        .stream_logs(StreamLogsRequest {
            id: id.clone(),
            follow: true,
            ..StreamLogsRequest::default()
        })
        .await
        .map_err(rpc_error("StreamLogs"))?
        .into_inner();
    tokio::time::timeout(JOB_TIMEOUT, async {
        while stream
            .message()
            .await
            .map_err(rpc_error("StreamLogs"))?
            .is_some()
        {}
        anyhow::Ok(())
    })
    .await
    .with_context(|| format!("work request {id} did not complete within {JOB_TIMEOUT:?}"))??;
    // The stream ends when the request is terminal, so this normally answers at once.
    let done = poll_until_done(client, &id).await?;
    let elapsed = start.elapsed();
    check_success(&done)?;
    Ok(elapsed)
}

/// Submits `jobs` `true` jobs at once and returns the time until the last completed.
async fn berth_burst(
    client: &WorkRequestServiceClient<Authed>,
    jobs: usize,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    // Concurrent submits over one HTTP/2 connection, as many clients submitting at once.
    let ids = futures::future::try_join_all((0..jobs).map(|_| {
        let mut client = client.clone();
        async move { submit(&mut client, spec(&["true"])).await }
    }))
    .await?;
    // All must finish, so waiting for them in submission order costs nothing extra and
    // keeps the polling light (one request at a time).
    let mut client = client.clone();
    for id in &ids {
        let done = poll_until_done(&mut client, id).await?;
        check_success(&done)?;
    }
    Ok(start.elapsed())
}

/// Runs `jobs` `docker run --rm <flags> IMAGE true` through `xargs -P parallel` and returns
/// the wall time.
async fn docker_burst(jobs: usize, parallel: u32) -> anyhow::Result<Duration> {
    let flags = docker_flags();
    let start = Instant::now();
    // Each input line ("true") becomes the command of one `docker run`.
    let mut child = tokio::process::Command::new("xargs")
        .arg("-P")
        .arg(parallel.to_string())
        .args(["-n1", "docker", "run", "--rm"])
        .args(&flags)
        .arg(IMAGE)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run `xargs`")?;
    let mut stdin = child.stdin.take().context("xargs has no stdin")?;
    stdin
        .write_all("true\n".repeat(jobs).as_bytes())
        .await
        .context("cannot feed xargs")?;
    drop(stdin);
    let output = child
        .wait_with_output()
        .await
        .context("cannot wait for xargs")?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        bail!(
            "xargs -P {parallel} docker run failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(elapsed)
}

/// Milliseconds of each duration, sorted ascending.
fn sorted_ms(samples: &[Duration]) -> Vec<f64> {
    let mut values: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    values.sort_by(f64::total_cmp);
    values
}

/// Throughput of one side of a burst.
struct Burst {
    parallel: u32,
    berth_jobs_per_s: f64,
    docker_jobs_per_s: f64,
}

/// Runs the scenario.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let (runs, burst_jobs) = if options.quick { (5, 8) } else { (30, 40) };
    ensure_image().await?;
    let stack = Stack::start(StackOptions::default()).await?;
    let result = measure(&stack, runs, burst_jobs).await;
    let stopped = stack.stop().await;
    let report = result?;
    stopped?;
    Ok(report)
}

/// Everything that needs the stack; split out so the stack is stopped on every path.
async fn measure(stack: &Stack, runs: usize, burst_jobs: usize) -> anyhow::Result<Report> {
    let token = stack.create_token(Role::User, "bench-container").await?;
    stack.make_contributor("default", "bench-container").await?;
    let mut client = stack.work_requests(&token).await?;

    // Latency, one job at a time, on a worker with four slots (the same worker then serves
    // the four-at-a-time burst).
    let worker = stack.spawn_worker("bench-container-4", 4).await?;
    eprintln!("container: warming up");
    timed_berth_job(&mut client).await?;
    timed_docker_run(&["true"]).await?;
    let mut berth = Vec::with_capacity(runs);
    let mut docker = Vec::with_capacity(runs);
    for i in 0..runs {
        eprintln!("container: sequential run {}/{runs}", i + 1);
        berth.push(timed_berth_job(&mut client).await?);
        docker.push(timed_docker_run(&["true"]).await?);
    }

    let mut bursts = Vec::new();
    eprintln!("container: {burst_jobs} jobs, 4 at a time");
    bursts.push(burst(&client, burst_jobs, 4).await?);
    worker.stop().await;

    let worker = stack.spawn_worker("bench-container-2", 2).await?;
    // A fresh worker's first job pays for connecting to Docker; keep that out of the burst.
    timed_berth_job(&mut client).await?;
    eprintln!("container: {burst_jobs} jobs, 2 at a time");
    bursts.insert(0, burst(&client, burst_jobs, 2).await?);
    worker.stop().await;

    Ok(report(runs, burst_jobs, &berth, &docker, &bursts))
}

/// One burst through Berth followed by the same through `xargs -P`.
async fn burst(
    client: &WorkRequestServiceClient<Authed>,
    jobs: usize,
    parallel: u32,
) -> anyhow::Result<Burst> {
    let berth = berth_burst(client, jobs).await?;
    let docker = docker_burst(jobs, parallel).await?;
    Ok(Burst {
        parallel,
        berth_jobs_per_s: jobs as f64 / berth.as_secs_f64(),
        docker_jobs_per_s: jobs as f64 / docker.as_secs_f64(),
    })
}

/// Marks a figure against its goal: `(goal ≤ 1.10×, met)`.
fn goal(met: bool, goal: &str) -> String {
    format!("(goal {goal}, {})", if met { "met" } else { "missed" })
}

/// Builds the table and the JSON.
fn report(
    runs: usize,
    burst_jobs: usize,
    berth: &[Duration],
    docker: &[Duration],
    bursts: &[Burst],
) -> Report {
    let berth_ms = sorted_ms(berth);
    let docker_ms = sorted_ms(docker);
    let (berth_p50, berth_p99) = (percentile(&berth_ms, 50.0), percentile(&berth_ms, 99.0));
    let (docker_p50, docker_p99) = (percentile(&docker_ms, 50.0), percentile(&docker_ms, 99.0));
    let p50_ratio = berth_p50 / docker_p50;
    let p99_ratio = berth_p99 / docker_p99;

    let mut rows = vec![
        ("image".to_owned(), format!("{IMAGE}, command `true`")),
        (
            "sequential runs".to_owned(),
            format!("{runs} each, interleaved, after one warm-up"),
        ),
        (
            "berth p50 / p99".to_owned(),
            format!("{} / {}", ms(berth_p50), ms(berth_p99)),
        ),
        (
            "docker run p50 / p99".to_owned(),
            format!("{} / {}", ms(docker_p50), ms(docker_p99)),
        ),
        (
            "ratio of medians".to_owned(),
            format!("{p50_ratio:.2}× {}", goal(p50_ratio <= 1.10, "≤ 1.10×")),
        ),
        ("ratio of p99s".to_owned(), format!("{p99_ratio:.2}×")),
    ];
    let mut burst_json = Vec::new();
    for b in bursts {
        let ratio = b.berth_jobs_per_s / b.docker_jobs_per_s;
        rows.push((
            format!("{burst_jobs} jobs, {} at a time", b.parallel),
            format!(
                "berth {:.2} jobs/s, xargs -P {} docker run {:.2} jobs/s, ratio {ratio:.2}× {}",
                b.berth_jobs_per_s,
                b.parallel,
                b.docker_jobs_per_s,
                goal(ratio >= 0.9, "≥ 0.9×")
            ),
        ));
        burst_json.push(json!({
            "parallel": b.parallel,
            "jobs": burst_jobs,
            "berth_jobs_per_s": b.berth_jobs_per_s,
            "docker_jobs_per_s": b.docker_jobs_per_s,
            "ratio": ratio,
            "goal_ratio_min": 0.9,
        }));
    }
    let json = json!({
        "image": IMAGE,
        "docker_flags": docker_flags(),
        "sequential": {
            "runs": runs,
            "berth_ms": berth_ms,
            "docker_ms": docker_ms,
            "berth_p50_ms": berth_p50,
            "berth_p99_ms": berth_p99,
            "docker_p50_ms": docker_p50,
            "docker_p99_ms": docker_p99,
            "p50_ratio": p50_ratio,
            "p99_ratio": p99_ratio,
            "goal_p50_ratio_max": 1.10,
        },
        "throughput": burst_json,
    });
    Report {
        scenario: "container".to_owned(),
        rows,
        json,
    }
}
