//! A complete, private Berth installation for one scenario, and the measuring tools that
//! go with it.
//!
//! A benchmark is only worth reading if it measures what users run, so [`Stack`] starts
//! the real pieces as separate processes: a private PostgreSQL cluster (`berth-pg`'s
//! [`EmbeddedPostgres`], the same code the server runs when it is given no database URL),
//! the release `berth-server` binary pointed at it by URL, and, when a scenario needs real
//! execution, real `berth-worker` processes. Everything lives in one temporary directory
//! that is removed afterwards.
//!
//! # Clean-up
//!
//! [`Stack::stop`] shuts the server down with SIGTERM (so it drains as in production) and
//! then stops PostgreSQL. When a scenario fails half-way and the stack is dropped instead,
//! nothing is left behind either: child processes are started with `kill_on_drop`, the
//! embedded cluster stops itself on drop, and the temporary directory goes last (fields
//! drop in declaration order).
//!
//! # Measuring processes
//!
//! [`sample`] reads a process's resident memory and CPU time from `/proc`; [`Sampler`]
//! keeps sampling in the background so short peaks are not missed between two readings.

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_common::client::BearerAuth;
use berth_common::proto::token_service_client::TokenServiceClient;
use berth_common::proto::work_request_service_client::WorkRequestServiceClient;
use berth_common::proto::worker_service_client::WorkerServiceClient;
use berth_common::proto::workspace_service_client::WorkspaceServiceClient;
use berth_pg::{EmbeddedOptions, EmbeddedPostgres};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// How long the server gets to answer health checks after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the server gets to drain after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a spawned worker gets to show up as connected.
const WORKER_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A client whose every call carries a bearer token.
pub type Authed = InterceptedService<Channel, BearerAuth>;

/// What a scenario needs to change about the server.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// The server's per-request log cap (`max_log_bytes`); the server's default when `None`.
    pub max_log_bytes: Option<u64>,
    /// TOML lines appended to the server's configuration file.
    pub extra_config: String,
    /// The server's database pool size (`database_pool_size`); its default when `None`.
    pub pool_size: Option<usize>,
}

/// A running PostgreSQL and `berth-server`, both private to this process.
pub struct Stack {
    /// `http://127.0.0.1:PORT`.
    pub server_url: String,
    /// The admin token the server bootstrapped.
    pub admin_token: String,
    /// URL of the `berth` database (over the cluster's Unix socket).
    pub database_url: String,
    /// Directory holding the PostgreSQL binaries (`pgbench` among them, when installed).
    pub pg_bin: PathBuf,
    /// Directory holding the cluster's Unix socket (for `pgbench -h`).
    pub pg_socket_dir: PathBuf,
    /// Directory holding the Berth binaries (`berth-server`, `berth-worker`, `berth`).
    pub bin_dir: PathBuf,
    // Dropped in this order: the server first, then PostgreSQL, then the directory.
    server: tokio::process::Child,
    pg: EmbeddedPostgres,
    /// Everything the stack writes: `pg/`, `data/`, `server.toml`, logs, worker spools.
    /// Mode 0755 so that PostgreSQL, which runs as `postgres` when we are root, can reach
    /// its own directory below it.
    pub dir: tempfile::TempDir,
}

/// Finds a Berth binary next to the running bench binary.
pub(crate) fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the bench binary's own path")?;
    let dir = exe
        .parent()
        .context("the bench binary's path has no parent directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build every binary first with `cargo build --release --bins`",
            path.display()
        );
    }
    Ok(path)
}

/// A free TCP port on 127.0.0.1 (there is a small race until the server binds it).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free TCP port")?;
    Ok(listener
        .local_addr()
        .context("cannot read a local address")?
        .port())
}

/// The last `lines` lines of a log file, for error messages.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut last: VecDeque<&str> = VecDeque::with_capacity(lines);
    for line in text.lines() {
        if last.len() == lines {
            last.pop_front();
        }
        last.push_back(line);
    }
    last.into_iter().collect::<Vec<_>>().join("\n")
}

impl Stack {
    /// Starts PostgreSQL and the server and waits until the server answers health checks.
    pub async fn start(options: StackOptions) -> anyhow::Result<Stack> {
        let server_bin = sibling_binary("berth-server")?;
        // The worker is checked here too so that a missing binary fails before minutes of
        // set-up rather than in the middle of a scenario.
        let bin_dir = server_bin
            .parent()
            .context("the server binary's path has no parent directory")?
            .to_owned();
        let dir = tempfile::Builder::new()
            .prefix("berth-bench-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .context("cannot make the temporary directory readable")?;

        let pg = EmbeddedPostgres::start(
            &dir.path().join("pg"),
            EmbeddedOptions {
                bin_dir: None,
                run_as: None,
                database: "berth".to_owned(),
                // Per-statement counts and times, for the statement profiles scenarios
                // print (`statement_profile`).
                extra_settings: "shared_preload_libraries = 'pg_stat_statements'\n\
                                 pg_stat_statements.track = all"
                    .to_owned(),
                ..EmbeddedOptions::default()
            },
        )
        .await
        .context("cannot start the private PostgreSQL")?;
        let database_url = pg.url("berth");

        let mut config = String::new();
        if let Some(bytes) = options.max_log_bytes {
            config.push_str(&format!("max_log_bytes = {bytes}\n"));
        }
        if let Some(size) = options.pool_size {
            config.push_str(&format!("database_pool_size = {size}\n"));
        }
        config.push_str(&options.extra_config);
        config.push('\n');
        let config_path = dir.path().join("server.toml");
        std::fs::write(&config_path, config).context("cannot write the server's config file")?;

        let port = free_port()?;
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).context("cannot create the server log")?;
        let log_err = log.try_clone().context("cannot share the server log")?;
        let mut server = tokio::process::Command::new(&server_bin)
            .arg("--database-url")
            .arg(&database_url)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--config")
            .arg(&config_path)
            .env_remove("BERTH_DATABASE_URL")
            .env_remove("BERTH_CONFIG")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", server_bin.display()))?;
        let server_url = format!("http://127.0.0.1:{port}");

        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = server.try_wait().context("cannot poll the server")? {
                bail!(
                    "berth-server exited during start-up ({status}); its log ends:\n{}",
                    tail(&log_path, 10)
                );
            }
            if serving(&server_url).await {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "berth-server did not answer health checks within {START_TIMEOUT:?}; its \
                     log ends:\n{}",
                    tail(&log_path, 10)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let token_path = data_dir.join("admin.token");
        let admin_token = std::fs::read_to_string(&token_path)
            .with_context(|| format!("cannot read {}", token_path.display()))?
            .trim()
            .to_owned();

        Ok(Stack {
            server_url,
            admin_token,
            database_url,
            pg_bin: pg.bin_dir().to_owned(),
            pg_socket_dir: pg.socket_dir().to_owned(),
            bin_dir,
            server,
            pg,
            dir,
        })
    }

    /// The server's process id.
    pub fn server_pid(&self) -> u32 {
        // `id()` is `None` only once the child was waited for, which only `stop` does.
        self.server.id().unwrap_or(0)
    }

    /// URL of another database on the same cluster.
    pub fn database_url_for(&self, database: &str) -> String {
        self.pg.url(database)
    }

    /// A fresh connection to the server.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        berth_common::client::connect(&self.server_url, None)
            .await
            .context("cannot connect to the server")
    }

    /// A TokenService client using `token`.
    pub async fn tokens(&self, token: &str) -> anyhow::Result<TokenServiceClient<Authed>> {
        Ok(TokenServiceClient::with_interceptor(
            self.channel().await?,
            BearerAuth::new(token),
        ))
    }

    /// A WorkRequestService client using `token`.
    pub async fn work_requests(
        &self,
        token: &str,
    ) -> anyhow::Result<WorkRequestServiceClient<Authed>> {
        Ok(WorkRequestServiceClient::with_interceptor(
            self.channel().await?,
            BearerAuth::new(token),
        ))
    }

    /// A WorkerService client using `token`.
    pub async fn workers(&self, token: &str) -> anyhow::Result<WorkerServiceClient<Authed>> {
        Ok(WorkerServiceClient::with_interceptor(
            self.channel().await?,
            BearerAuth::new(token),
        ))
    }

    /// Creates workspace `name` with the admin token, unless it exists (`default` does).
    pub async fn create_workspace(&self, name: &str) -> anyhow::Result<()> {
        let mut workspaces = WorkspaceServiceClient::with_interceptor(
            self.channel().await?,
            BearerAuth::new(&self.admin_token),
        );
        match workspaces
            .create_workspace(berth_common::proto::CreateWorkspaceRequest {
                name: name.to_owned(),
                ..Default::default()
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::AlreadyExists => Ok(()),
            Err(status) => Err(anyhow::anyhow!(
                "cannot create workspace {name}: {}",
                berth_common::client::describe_status(&status)
            )),
        }
    }

    /// Makes user `user` a contributor of `workspace` with the admin token, as an admin
    /// would before the user submits there.
    pub async fn make_contributor(&self, workspace: &str, user: &str) -> anyhow::Result<()> {
        let mut workspaces = WorkspaceServiceClient::with_interceptor(
            self.channel().await?,
            BearerAuth::new(&self.admin_token),
        );
        workspaces
            .add_member(berth_common::proto::AddMemberRequest {
                workspace: workspace.to_owned(),
                user: user.to_owned(),
                role: berth_common::proto::WorkspaceRole::Contributor as i32,
            })
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "cannot make {user} a contributor of {workspace}: {}",
                    berth_common::client::describe_status(&status)
                )
            })?;
        Ok(())
    }

    /// A direct SQL connection to the `berth` database.
    pub async fn sql(&self) -> anyhow::Result<tokio_postgres::Client> {
        sql_connect(&self.database_url).await
    }

    /// Creates a token of `role` for `name` with the admin token and returns its secret.
    pub async fn create_token(
        &self,
        role: berth_common::proto::Role,
        name: &str,
    ) -> anyhow::Result<String> {
        let mut tokens = self.tokens(&self.admin_token).await?;
        create_token_with(&mut tokens, role, name).await
    }

    /// Starts a real `berth-worker` named `name` (its own token, spool and log under the
    /// stack's directory) and waits until the server lists it as connected.
    pub async fn spawn_worker(
        &self,
        name: &str,
        concurrency: u32,
    ) -> anyhow::Result<WorkerProcess> {
        let worker_bin = sibling_binary("berth-worker")?;
        let token = self
            .create_token(berth_common::proto::Role::Worker, name)
            .await?;
        let dir = self.dir.path().join("workers").join(name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let log_path = dir.join("worker.log");
        let log = std::fs::File::create(&log_path).context("cannot create the worker log")?;
        let log_err = log.try_clone().context("cannot share the worker log")?;
        let mut child = tokio::process::Command::new(&worker_bin)
            .args(["--server", &self.server_url, "--name", name])
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .arg("--spool-dir")
            .arg(dir.join("spool"))
            .env("BERTH_TOKEN", token)
            .env_remove("BERTH_TOKEN_FILE")
            .env_remove("BERTH_CONFIG")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", worker_bin.display()))?;

        let mut workers = self.workers(&self.admin_token).await?;
        let deadline = tokio::time::Instant::now() + WORKER_CONNECT_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().context("cannot poll the worker")? {
                bail!(
                    "berth-worker {name} exited ({status}); its log ends:\n{}",
                    tail(&log_path, 10)
                );
            }
            let connected = workers
                .get_worker(berth_common::proto::GetWorkerRequest {
                    name: name.to_owned(),
                })
                .await
                .map(|w| w.into_inner().connected)
                .unwrap_or(false);
            if connected {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "berth-worker {name} did not connect within {WORKER_CONNECT_TIMEOUT:?}; its \
                     log ends:\n{}",
                    tail(&log_path, 10)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(WorkerProcess {
            name: name.to_owned(),
            child,
        })
    }

    /// Stops the server gracefully (SIGTERM, then SIGKILL after a while) and PostgreSQL.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        terminate(&mut self.server, STOP_TIMEOUT).await;
        self.pg
            .stop()
            .await
            .context("cannot stop the private PostgreSQL")?;
        Ok(())
    }
}

/// Whether the server at `url` reports SERVING on the overall health check.
pub(crate) async fn serving(url: &str) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let Ok(channel) = berth_common::client::connect(url, None).await else {
        return false;
    };
    let mut health = HealthClient::new(channel);
    match health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
    {
        Ok(response) => response.into_inner().status == ServingStatus::Serving as i32,
        Err(_) => false,
    }
}

/// Creates a token through an existing TokenService client (for creating many at once).
pub async fn create_token_with(
    tokens: &mut TokenServiceClient<Authed>,
    role: berth_common::proto::Role,
    name: &str,
) -> anyhow::Result<String> {
    let created = tokens
        .create_token(berth_common::proto::CreateTokenRequest {
            role: role as i32,
            name: name.to_owned(),
            comment: "berth-bench".to_owned(),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!(berth_common::client::describe_status(&s)))
        .with_context(|| format!("cannot create a token for {name}"))?;
    Ok(created.into_inner().token)
}

/// Connects to PostgreSQL at `url` and drives the connection in the background.
pub async fn sql_connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {url}"))?;
    // The task ends by itself when the client is dropped.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("warning: PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

/// Sends SIGTERM and waits up to `timeout`; kills the process if it is still there.
pub(crate) async fn terminate(child: &mut tokio::process::Child, timeout: Duration) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    if tokio::time::timeout(timeout, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// A real `berth-worker` process.
pub struct WorkerProcess {
    /// Its registered name.
    pub name: String,
    /// The process.
    pub child: tokio::process::Child,
}

impl WorkerProcess {
    /// Its process id (0 once it has exited and been waited for).
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Stops it with SIGTERM (it drains), killing it if it takes longer than 30 s.
    pub async fn stop(mut self) {
        terminate(&mut self.child, STOP_TIMEOUT).await;
    }
}

/// One reading of a process's resources.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// Resident memory now (VmRSS).
    pub rss_bytes: u64,
    /// Highest resident memory since the process started (VmHWM).
    pub peak_rss_bytes: u64,
    /// User plus system CPU time so far.
    pub cpu_seconds: f64,
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s CPU times.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            // 100 is what Linux reports on every common architecture.
            .unwrap_or(100.0)
    })
}

/// Reads `pid`'s memory and CPU time from `/proc`.
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let status_path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&status_path)
        .with_context(|| format!("cannot read {status_path}"))?;
    let kib = |key: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .with_context(|| format!("{status_path} has no {key}"))?;
        let value: u64 = line
            .split_whitespace()
            .nth(1)
            .with_context(|| format!("{status_path}: {key} has no value"))?
            .parse()
            .with_context(|| format!("{status_path}: cannot parse {key}"))?;
        Ok(value * 1024)
    };
    let rss_bytes = kib("VmRSS:")?;
    let peak_rss_bytes = kib("VmHWM:")?;

    let stat_path = format!("/proc/{pid}/stat");
    let stat =
        std::fs::read_to_string(&stat_path).with_context(|| format!("cannot read {stat_path}"))?;
    // The command name (field 2) may hold spaces; the fields after its `)` are plain.
    let after = stat
        .rsplit_once(')')
        .with_context(|| format!("{stat_path} has no command name"))?
        .1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .with_context(|| format!("{stat_path} is too short"))?
            .parse::<f64>()
            .with_context(|| format!("{stat_path}: cannot parse CPU time"))
    };
    let cpu_seconds = (ticks(11)? + ticks(12)?) / clock_ticks();
    Ok(ProcSample {
        rss_bytes,
        peak_rss_bytes,
        cpu_seconds,
    })
}

/// Samples a process every 100 ms in the background and keeps the maximum RSS seen (VmHWM
/// covers peaks too).
pub struct Sampler {
    max_rss: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Sampler {
        let max_rss = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let max_rss = Arc::clone(&max_rss);
            let stop = Arc::clone(&stop);
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    match sample(pid) {
                        Ok(s) => {
                            max_rss.fetch_max(s.rss_bytes, Ordering::Relaxed);
                        }
                        // The process is gone; there is nothing more to see.
                        Err(_) => break,
                    }
                }
            }
        });
        Sampler {
            max_rss,
            stop,
            task,
        }
    }

    /// The highest RSS seen so far.
    pub fn max_rss_bytes(&self) -> u64 {
        self.max_rss.load(Ordering::Relaxed)
    }

    /// Stops sampling and returns the highest RSS seen.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.max_rss.load(Ordering::Relaxed)
    }
}

/// The `p`-th percentile (0 to 100) of `sorted` (ascending), by the nearest-rank method;
/// NaN for an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil();
    // Rank 1 is the smallest; clamp so p = 0 and p = 100 stay in range.
    let index = (rank.max(1.0) as usize - 1).min(sorted.len() - 1);
    sorted[index]
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "tests: a failure here should fail the test"
)]
mod tests {
    use super::*;

    #[test]
    fn percentile_uses_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values, 100.0), 100.0);
        assert_eq!(percentile(&values, 0.0), 1.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn sample_reads_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(s.peak_rss_bytes >= s.rss_bytes);
    }
}

/// One line of a statement profile: what PostgreSQL executed, how often per unit of work
/// and how long it took.
#[derive(Debug, Clone)]
pub struct StatementLine {
    /// Executions in the profiled window.
    pub calls: i64,
    /// Mean execution time inside PostgreSQL, in milliseconds.
    pub mean_ms: f64,
    /// Total execution time inside PostgreSQL, in milliseconds.
    pub total_ms: f64,
    /// The normalized statement, shortened to one line.
    pub query: String,
}

/// Clears PostgreSQL's per-statement counters (`pg_stat_statements`) so that a following
/// [`statement_profile`] covers only what ran in between.
pub async fn reset_statement_profile(sql: &tokio_postgres::Client) -> anyhow::Result<()> {
    sql.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset();",
    )
    .await
    .context("cannot reset pg_stat_statements (is the extension preloaded?)")?;
    Ok(())
}

/// The statements of the `berth` role since [`reset_statement_profile`], most executed
/// first, `limit` of them, and the total of all calls.
pub async fn statement_profile(
    sql: &tokio_postgres::Client,
    limit: i64,
) -> anyhow::Result<(Vec<StatementLine>, i64)> {
    let rows = sql
        .query(
            "SELECT calls, mean_exec_time, total_exec_time, \
                    left(regexp_replace(query, '\\s+', ' ', 'g'), 90) \
             FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND query NOT LIKE '%pg_stat_statements%' \
             ORDER BY calls DESC",
            &[],
        )
        .await
        .context("cannot read pg_stat_statements")?;
    let total: i64 = rows.iter().map(|r| r.get::<_, i64>(0)).sum();
    let lines = rows
        .iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|r| StatementLine {
            calls: r.get(0),
            mean_ms: r.get(1),
            total_ms: r.get(2),
            query: r.get(3),
        })
        .collect();
    Ok((lines, total))
}
