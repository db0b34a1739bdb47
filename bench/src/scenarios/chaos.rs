//! Scenario `chaos`: mixed load while faults are injected at random, then the invariants.
//!
//! The stack is what production looks like when it has replicas: two `berth-server`
//! processes on one database, the first with its embedded PostgreSQL (in its data dir),
//! the second pointed at that cluster by URL; real `berth-worker` processes, each behind
//! its own [`Proxy`] whose upstreams are both replicas in turn, so a worker whose replica
//! is gone finds the other one.
//!
//! For `--duration` (10 minutes; 30 s with `--quick`) a submitter keeps a mixed load
//! going: short jobs, long ones, chatty logs, failing jobs with automatic retries, and
//! jobs cancelled while they run. Meanwhile one fault after another is drawn from a
//! pseudo-random sequence seeded by `--seed` (printed, so a run can be replayed):
//!
//! - kill -9 a worker, and start it again a moment later;
//! - cut a worker's connections at its proxy;
//! - stall a worker's connections (sometimes longer than the lease), then cut them;
//! - kill -9 the embedded postmaster (the server that owns it must bring it back);
//! - kill -9 a server replica, and start it again a moment later.
//!
//! Then the faults stop, everything is brought back, the load drains, and
//! [`berth_tests::invariants`] checks the whole run: every request terminal exactly once,
//! attempts of one request never overlapping (in the database and in Docker's events),
//! no worker above its concurrency, every completed request's log byte for byte, no
//! container left. The faults and any violations are printed; the scenario fails when
//! there is a violation, so `berth-bench chaos` exits non-zero.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_common::client::BearerAuth;
use berth_common::proto::token_service_client::TokenServiceClient;
use berth_common::proto::work_request_service_client::WorkRequestServiceClient;
use berth_common::proto::{CancelWorkRequestRequest, Role, SubmitWorkRequestRequest};
use berth_tests::Proxy;
use berth_tests::invariants::{self, Check, DockerEvents};
use serde_json::json;

use super::Options;
use crate::report::Report;
use crate::stack::{
    Authed, create_token_with, free_port, serving, sibling_binary, sql_connect, tail, terminate,
};

/// The server settings of the run: a lost worker is noticed within seconds.
const SERVER_CONFIG: &str =
    "heartbeat_interval = \"1s\"\nlease_ttl = \"3s\"\nhandoff_deadline = \"2s\"\n";
/// Slots per worker.
const CONCURRENCY: u32 = 2;
/// How long a server gets to answer health checks after a (re)start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A small deterministic generator (SplitMix64): the same seed draws the same faults and
/// the same load, with no dependency for it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A duration between `low` and `high` milliseconds.
    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high.saturating_sub(low) + 1))
    }
}

/// One `berth-server` process of the run.
struct Replica {
    name: &'static str,
    port: u16,
    data_dir: PathBuf,
    database_url: Option<String>,
    log_path: PathBuf,
    child: Option<tokio::process::Child>,
}

impl Replica {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts the process and waits until it answers health checks.
    async fn spawn(&mut self, config: &Path) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .context("cannot open a server log")?;
        let log_err = log.try_clone().context("cannot share a server log")?;
        let mut command = tokio::process::Command::new(sibling_binary("berth-server")?);
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--config")
            .arg(config);
        if let Some(url) = &self.database_url {
            command.arg("--database-url").arg(url);
        }
        let mut child = command
            .env_remove("BERTH_DATABASE_URL")
            .env_remove("BERTH_CONFIG")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start berth-server")?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while !serving(&self.url()).await {
            if let Some(status) = child.try_wait().context("cannot poll a server")? {
                bail!(
                    "server {} exited during start-up ({status}); its log ends:\n{}",
                    self.name,
                    tail(&self.log_path, 10)
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "server {} did not serve within {START_TIMEOUT:?}; its log ends:\n{}",
                    self.name,
                    tail(&self.log_path, 10)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.child = Some(child);
        Ok(())
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// One `berth-worker` process of the run, behind its own proxy.
struct Worker {
    name: String,
    token: String,
    proxy: Proxy,
    dir: PathBuf,
    child: Option<tokio::process::Child>,
}

impl Worker {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log_path = self.dir.join("worker.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .context("cannot open a worker log")?;
        let log_err = log.try_clone().context("cannot share a worker log")?;
        let child = tokio::process::Command::new(sibling_binary("berth-worker")?)
            .args(["--server", &self.proxy.url, "--name", &self.name])
            .arg("--concurrency")
            .arg(CONCURRENCY.to_string())
            .arg("--spool-dir")
            .arg(self.dir.join("spool"))
            .env("BERTH_TOKEN", &self.token)
            .env_remove("BERTH_TOKEN_FILE")
            .env_remove("BERTH_CONFIG")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start berth-worker")?;
        self.child = Some(child);
        Ok(())
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// The API as the admin, through whichever replica answers.
#[derive(Clone)]
struct Api {
    urls: Vec<String>,
    token: String,
}

impl Api {
    async fn client(&self, url: &str) -> anyhow::Result<WorkRequestServiceClient<Authed>> {
        let channel = berth_common::client::connect(url, None).await?;
        Ok(WorkRequestServiceClient::with_interceptor(
            channel,
            BearerAuth::new(&self.token),
        ))
    }

    /// Submits, trying each replica in turn for up to 20 s; the id, or `None` if no
    /// replica took it (a fault may have been in the way: the run goes on).
    async fn submit(&self, request: SubmitWorkRequestRequest) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            for url in &self.urls {
                let Ok(mut client) = self.client(url).await else {
                    continue;
                };
                if let Ok(answer) = client.submit_work_request(request.clone()).await {
                    return Some(answer.into_inner().id);
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        None
    }

    /// Cancels, trying each replica once; whether one answered.
    async fn cancel(&self, id: &str) -> bool {
        for url in &self.urls {
            let Ok(mut client) = self.client(url).await else {
                continue;
            };
            let answer = client
                .cancel_work_request(CancelWorkRequestRequest { id: id.to_owned() })
                .await;
            match answer {
                Ok(_) => return true,
                // Already ended: nothing to cancel, and that is an answer.
                Err(status) if status.code() == tonic::Code::FailedPrecondition => return true,
                Err(_) => {}
            }
        }
        false
    }
}

/// The kinds of job the load mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum JobKind {
    Short,
    Long,
    Chatty,
    Failing,
    Cancelled,
}

impl JobKind {
    fn name(self) -> &'static str {
        match self {
            JobKind::Short => "short",
            JobKind::Long => "long",
            JobKind::Chatty => "chatty",
            JobKind::Failing => "failing (2 retries)",
            JobKind::Cancelled => "cancelled while running",
        }
    }
}

/// Job `n` of `kind`: what to submit and the exact stdout it prints (`None` when it is
/// cancelled and so prints no known amount).
fn job(kind: JobKind, n: u64, rng: &mut Rng) -> (SubmitWorkRequestRequest, Option<Vec<u8>>) {
    let (script, stdout, retries) = match kind {
        JobKind::Short => (format!("echo short-{n}"), Some(format!("short-{n}\n")), 0),
        JobKind::Long => {
            let secs = 2 + rng.below(4);
            (
                format!("echo long-{n}; sleep {secs}; echo end-{n}"),
                Some(format!("long-{n}\nend-{n}\n")),
                0,
            )
        }
        JobKind::Chatty => {
            let lines = 100 + rng.below(400);
            let script = format!(
                "i=1; while [ $i -le {lines} ]; do printf 'job {n} line %05d: the quick brown fox jumps over the lazy dog\\n' $i; \
                 if [ $((i % 50)) -eq 0 ]; then sleep 0.1; fi; i=$((i + 1)); done"
            );
            let stdout: String = (1..=lines)
                .map(|i| {
                    format!("job {n} line {i:05}: the quick brown fox jumps over the lazy dog\n")
                })
                .collect();
            (script, Some(stdout), 0)
        }
        JobKind::Failing => (
            format!("echo fail-{n}; exit 3"),
            Some(format!("fail-{n}\n")),
            2,
        ),
        JobKind::Cancelled => (format!("echo doomed-{n}; sleep 60"), None, 0),
    };
    let request = SubmitWorkRequestRequest {
        spec: Some(berth_tests::sh(&script)),
        retries,
        retry_backoff: Some(prost_types::Duration {
            seconds: 0,
            nanos: 200_000_000,
        }),
        ..Default::default()
    };
    (request, stdout.map(String::into_bytes))
}

/// A fault drawn from the sequence, as printed.
#[derive(Debug, Clone)]
struct Fault {
    at: Duration,
    what: String,
}

/// What the submitter did, shared with the scenario.
#[derive(Default)]
struct Load {
    expected: HashMap<String, Vec<u8>>,
    submitted: BTreeMap<JobKind, u64>,
    not_submitted: u64,
    cancels_unanswered: u64,
}

pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let duration = opts.duration.unwrap_or(if opts.quick {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(600)
    });
    let seed = opts.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!("chaos: seed {seed} (replay with --seed {seed}), faults for {duration:?}");
    let worker_count: usize = if opts.quick { 3 } else { 4 };
    // The slowest step after the faults: every request left must end.
    let drain_timeout = if opts.quick {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(180)
    };
    berth_tests::ensure_test_image().await;

    let dir = tempfile::Builder::new()
        .prefix("berth-chaos-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    // PostgreSQL runs as `postgres` when we are root and must reach its directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .context("cannot make the temporary directory readable")?;
    let root = dir
        .path()
        .canonicalize()
        .context("cannot resolve the temporary directory")?;
    let config = root.join("server.toml");
    std::fs::write(&config, SERVER_CONFIG).context("cannot write the server config")?;

    // Replica a owns the embedded PostgreSQL; replica b reaches it by its socket.
    let data_a = root.join("a");
    let socket_dir = data_a.join("postgres").join("run");
    let database_url = format!("postgres://berth@/berth?host={}", socket_dir.display());
    let mut replicas = vec![
        Replica {
            name: "a",
            port: free_port()?,
            data_dir: data_a.clone(),
            database_url: None,
            log_path: root.join("server-a.log"),
            child: None,
        },
        Replica {
            name: "b",
            port: free_port()?,
            data_dir: root.join("b"),
            database_url: Some(database_url.clone()),
            log_path: root.join("server-b.log"),
            child: None,
        },
    ];
    let postmaster_pid_file = data_a.join("postgres").join("data").join("postmaster.pid");
    let mut worker_names = Vec::new();
    let outcome = run_on(
        opts,
        &mut worker_names,
        &root,
        &config,
        &database_url,
        &postmaster_pid_file,
        &mut replicas,
        seed,
        duration,
        worker_count,
        drain_timeout,
    )
    .await;
    // However it went: SIGTERM the replicas (a stops its PostgreSQL), then make sure no
    // postmaster is left behind.
    for replica in replicas.iter_mut().rev() {
        if let Some(mut child) = replica.child.take() {
            terminate(&mut child, Duration::from_secs(30)).await;
        }
    }
    if let Some(pid) = postmaster_pid(&postmaster_pid_file)
        // The file outlives a killed postmaster, and its pid may be another's now.
        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.starts_with("postgres"))
    {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    // Containers left are reported as violations; they must not stay on the host.
    for name in &worker_names {
        berth_tests::remove_worker_containers(name);
    }
    drop(dir);
    outcome
}

/// The first line of `postmaster.pid`, when the file is there.
fn postmaster_pid(path: &Path) -> Option<nix::unistd::Pid> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    Some(nix::unistd::Pid::from_raw(pid))
}

#[expect(
    clippy::too_many_arguments,
    reason = "the run's pieces, owned by `run` so it can clean up however this ends"
)]
async fn run_on(
    opts: &Options,
    worker_names: &mut Vec<String>,
    root: &Path,
    config: &Path,
    database_url: &str,
    postmaster_pid_file: &Path,
    replicas: &mut [Replica],
    seed: u64,
    duration: Duration,
    worker_count: usize,
    drain_timeout: Duration,
) -> anyhow::Result<Report> {
    for replica in replicas.iter_mut() {
        if replica.database_url.is_some() {
            // A replica shares the first one's secret key.
            std::fs::create_dir_all(&replica.data_dir).context("cannot create a data dir")?;
            std::fs::copy(
                root.join("a").join("secret.key"),
                replica.data_dir.join("secret.key"),
            )
            .context("cannot copy the secret key to the second replica")?;
        }
        replica.spawn(config).await?;
    }
    let admin_token = std::fs::read_to_string(root.join("a").join("admin.token"))
        .context("cannot read the admin token")?
        .trim()
        .to_owned();
    invariants::install_audit(database_url).await?;
    let docker_events = DockerEvents::start().await?;
    let upstreams: Vec<_> = replicas.iter().map(Replica::addr).collect();
    let api = Api {
        urls: replicas.iter().map(Replica::url).collect(),
        token: admin_token.clone(),
    };

    let mut rng = Rng(seed);
    let mut tokens = TokenServiceClient::with_interceptor(
        berth_common::client::connect(&replicas[0].url(), None).await?,
        BearerAuth::new(&admin_token),
    );
    let mut workers = Vec::new();
    for i in 0..worker_count {
        let name = format!("chaos-{}-{i}", seed % 100_000);
        let name = format!("{name}-{:04x}", rng.below(0x1_0000));
        let token = create_token_with(&mut tokens, Role::Worker, &name).await?;
        let dir = root.join("workers").join(&name);
        std::fs::create_dir_all(&dir).context("cannot create a worker dir")?;
        let mut worker = Worker {
            name,
            token,
            proxy: Proxy::start_many(upstreams.clone()).await?,
            dir,
            child: None,
        };
        worker_names.push(worker.name.clone());
        worker.spawn()?;
        workers.push(worker);
    }

    // The load, in its own task, with its own generator drawn from the seed.
    let load = Arc::new(Mutex::new(Load::default()));
    let stop_load = Arc::new(AtomicBool::new(false));
    let submitter = tokio::spawn(submit_load(
        api.clone(),
        database_url.to_owned(),
        Rng(rng.next()),
        Arc::clone(&load),
        Arc::clone(&stop_load),
        worker_count * CONCURRENCY as usize * 2,
    ));

    let started = Instant::now();
    let mut faults: Vec<Fault> = Vec::new();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let gap = if opts.quick {
        (1000, 3000)
    } else {
        (2000, 8000)
    };
    tokio::time::sleep(rng.millis(gap.0, gap.1)).await;
    while started.elapsed() < duration {
        let kind = rng.below(5);
        let at = started.elapsed();
        let what = match kind {
            0 => {
                let i = usize::try_from(rng.below(workers.len() as u64)).unwrap_or(0);
                // Sometimes past the lease, so its attempts run again elsewhere meanwhile.
                let hold = rng.millis(300, 8000);
                workers[i].kill().await;
                tokio::time::sleep(hold).await;
                workers[i].spawn()?;
                *counts
                    .entry("worker killed (-9) and restarted")
                    .or_default() += 1;
                format!(
                    "kill -9 worker {} and start it again {hold:?} later",
                    workers[i].name
                )
            }
            1 => {
                let i = usize::try_from(rng.below(workers.len() as u64)).unwrap_or(0);
                workers[i].proxy.cut();
                *counts.entry("worker connections cut").or_default() += 1;
                format!("cut the connections of worker {}", workers[i].name)
            }
            2 => {
                let i = usize::try_from(rng.below(workers.len() as u64)).unwrap_or(0);
                let hold = rng.millis(500, 5000);
                workers[i].proxy.stall();
                tokio::time::sleep(hold).await;
                workers[i].proxy.cut();
                workers[i].proxy.resume();
                *counts
                    .entry("worker connections stalled, then cut")
                    .or_default() += 1;
                format!("stall worker {} for {hold:?}, then cut", workers[i].name)
            }
            3 => {
                // After a kill the pid file stays behind until the cluster is started again.
                let what = match postmaster_pid(postmaster_pid_file) {
                    Some(pid) => {
                        match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL) {
                            Ok(()) => format!("kill -9 the embedded postmaster (pid {pid})"),
                            Err(e) => format!(
                                "kill -9 the embedded postmaster: pid {pid} of postmaster.pid is not running ({e}): nothing brought it back since the last kill"
                            ),
                        }
                    }
                    None => "kill -9 the embedded postmaster: none is running".to_owned(),
                };
                *counts.entry("embedded postmaster killed (-9)").or_default() += 1;
                what
            }
            _ => {
                let r = usize::try_from(rng.below(replicas.len() as u64)).unwrap_or(0);
                let hold = rng.millis(500, 4000);
                replicas[r].kill().await;
                tokio::time::sleep(hold).await;
                let name = replicas[r].name;
                let restarted = replicas[r].spawn(config).await;
                *counts
                    .entry("server replica killed (-9) and restarted")
                    .or_default() += 1;
                match restarted {
                    Ok(()) => {
                        format!("kill -9 server replica {name} and start it again {hold:?} later")
                    }
                    Err(e) => format!(
                        "kill -9 server replica {name}; it did not come back: {}",
                        last_line(&e)
                    ),
                }
            }
        };
        println!("  [{:>7.1?}] {what}", at);
        faults.push(Fault { at, what });
        tokio::time::sleep(rng.millis(gap.0, gap.1)).await;
    }

    // Faults over: bring everything back, stop the load, let what is left end.
    println!("chaos: faults over after {:?}; draining", started.elapsed());
    let mut unrecovered = Vec::new();
    for replica in replicas.iter_mut() {
        if replica.child.is_none()
            && let Err(e) = replica.spawn(config).await
        {
            unrecovered.push(format!(
                "server replica {} could not be started again after the faults: {}",
                replica.name,
                last_line(&e)
            ));
        }
    }
    for worker in &mut workers {
        worker.proxy.resume();
        if worker.child.is_none() {
            worker.spawn()?;
        }
    }
    stop_load.store(true, Ordering::Relaxed);
    let _ = submitter.await;
    let drain_started = Instant::now();
    let sql = sql_connect(database_url).await;
    let mut left = None;
    while drain_started.elapsed() < drain_timeout {
        if let Ok(sql) = &sql
            && let Ok(row) = sql
                .query_one(
                    "SELECT count(*) FROM work_requests WHERE status NOT IN ('completed', 'aborted')",
                    &[],
                )
                .await
        {
            let count: i64 = row.get(0);
            left = Some(count);
            if count == 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let drained_in = drain_started.elapsed();

    let (expected, submitted, not_submitted, cancels_unanswered) = {
        let load = load
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (
            load.expected.clone(),
            load.submitted.clone(),
            load.not_submitted,
            load.cancels_unanswered,
        )
    };
    let mut violations = unrecovered;
    let found = Check {
        database_url: database_url.to_owned(),
        workers: workers.iter().map(|w| w.name.clone()).collect(),
        docker: Some(&docker_events),
        expected_stdout: expected,
        container_grace: Some(Duration::from_secs(30)),
    }
    .run()
    .await;
    match found {
        Ok(found) => violations.extend(found),
        // Not a reason to stop: that the run cannot even be checked is what it found.
        Err(e) => violations.push(format!("the invariants could not be checked: {e:#}")),
    }
    // Checked: a graceful stop would only wait for work the checks already judged.
    for worker in &mut workers {
        worker.kill().await;
    }
    let outcomes = outcomes(database_url).await.unwrap_or_default();

    let total: u64 = submitted.values().sum();
    let mut rows = vec![
        ("seed".to_owned(), format!("{seed} (replay: --seed {seed})")),
        ("faults for".to_owned(), format!("{duration:?}")),
        (
            "stack".to_owned(),
            format!(
                "2 replicas (a: embedded PostgreSQL, b: by URL), {worker_count} workers × {CONCURRENCY} slots, each behind a proxy"
            ),
        ),
        ("requests submitted".to_owned(), total.to_string()),
    ];
    for (kind, n) in &submitted {
        rows.push((format!("  {}", kind.name()), n.to_string()));
    }
    rows.push((
        "submissions no replica took".to_owned(),
        not_submitted.to_string(),
    ));
    rows.push((
        "cancels no replica took".to_owned(),
        cancels_unanswered.to_string(),
    ));
    for (outcome, n) in &outcomes {
        rows.push((format!("ended {outcome}"), n.to_string()));
    }
    rows.push((
        "drained in".to_owned(),
        match left {
            Some(0) => format!("{:.1} s", drained_in.as_secs_f64()),
            Some(left) => format!("not within {drain_timeout:?}: {left} requests had not ended"),
            None => format!("not within {drain_timeout:?}: the database did not answer"),
        },
    ));
    rows.push(("faults injected".to_owned(), faults.len().to_string()));
    for (what, n) in &counts {
        rows.push((format!("  {what}"), n.to_string()));
    }
    rows.push((
        "invariant violations".to_owned(),
        format!("{} (expected: none)", violations.len()),
    ));
    let report = Report {
        scenario: "chaos".to_owned(),
        rows,
        json: json!({
            "seed": seed,
            "duration_s": duration.as_secs_f64(),
            "workers": worker_count,
            "submitted": submitted.iter().map(|(k, n)| (k.name().to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "outcomes": outcomes.iter().map(|(k, n)| (k.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "faults": faults.iter().map(|f| json!({"at_s": f.at.as_secs_f64(), "what": f.what})).collect::<Vec<_>>(),
            "violations": violations,
        }),
    };
    if violations.is_empty() {
        return Ok(report);
    }
    report.print();
    println!("  invariant violations:");
    for violation in &violations {
        println!("    - {violation}");
    }
    let path = report.write_json(&opts.out_dir)?;
    println!("  (written to {})", path.display());
    bail!(
        "{} invariant violation(s) after the faults of seed {seed}; replay with --seed {seed}",
        violations.len()
    )
}

/// How the requests ended: `completed/success`, `aborted/cancelled`, ... with counts.
async fn outcomes(database_url: &str) -> anyhow::Result<BTreeMap<String, i64>> {
    let sql = sql_connect(database_url).await?;
    let rows = sql
        .query(
            "SELECT status || coalesce('/' || result, '') || CASE WHEN reason <> '' THEN ' (' || reason || ')' ELSE '' END, count(*) \
             FROM work_requests GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Keeps at most `cap` requests unfinished, submitting a random mix until `stop`.
async fn submit_load(
    api: Api,
    database_url: String,
    mut rng: Rng,
    load: Arc<Mutex<Load>>,
    stop: Arc<AtomicBool>,
    cap: usize,
) {
    let mut n = 0u64;
    let mut sql = None;
    while !stop.load(Ordering::Relaxed) {
        if sql.is_none() {
            sql = sql_connect(&database_url).await.ok();
        }
        let unfinished = match &sql {
            Some(client) => client
                .query_one(
                    "SELECT count(*) FROM work_requests WHERE status NOT IN ('completed', 'aborted')",
                    &[],
                )
                .await
                .ok()
                .map(|row| row.get::<_, i64>(0)),
            None => None,
        };
        let Some(unfinished) = unfinished else {
            // The database is away (a fault): wait, then connect again.
            sql = None;
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        if usize::try_from(unfinished).unwrap_or(usize::MAX) >= cap {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let kind = match rng.below(10) {
            0..=2 => JobKind::Short,
            3..=4 => JobKind::Long,
            5..=6 => JobKind::Chatty,
            7..=8 => JobKind::Failing,
            _ => JobKind::Cancelled,
        };
        n += 1;
        let (request, stdout) = job(kind, n, &mut rng);
        let cancel_after = rng.millis(500, 4000);
        match api.submit(request).await {
            Some(id) => {
                let mut shared = load
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *shared.submitted.entry(kind).or_default() += 1;
                if let Some(stdout) = stdout {
                    shared.expected.insert(id.clone(), stdout);
                }
                drop(shared);
                if kind == JobKind::Cancelled {
                    let api = api.clone();
                    let load = Arc::clone(&load);
                    tokio::spawn(async move {
                        tokio::time::sleep(cancel_after).await;
                        // A replica may be down or the database away for a moment.
                        let deadline = Instant::now() + Duration::from_secs(20);
                        let mut cancelled = api.cancel(&id).await;
                        while !cancelled && Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            cancelled = api.cancel(&id).await;
                        }
                        if !cancelled {
                            load.lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .cancels_unanswered += 1;
                        }
                    });
                }
            }
            None => {
                load.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .not_submitted += 1;
            }
        }
        tokio::time::sleep(rng.millis(50, 300)).await;
    }
}

/// The last line of an error: a start-up failure ends with the server log's tail and
/// its one-line reason, which is what a report needs.
fn last_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.lines().last().unwrap_or_default().trim().to_owned()
}
