//! Berth's end-to-end test harness.
//!
//! Tests run against real components: a real PostgreSQL cluster, the real server on a
//! real TCP socket, real gRPC clients, and the real binaries where process behaviour
//! matters. `scripts/test` starts one private PostgreSQL cluster for the whole run and
//! passes its URL in `BERTH_TEST_PG_URL`; each test gets a fresh database cloned from a
//! migrated template (fast: a file copy, not a migration run).
//!
//! Workers come in two kinds. Tests about execution (containers, their output, exit codes
//! and OOM kills as Docker reports them, stopping containers, reaping, the worker process
//! itself) start real `berth-worker` processes on the local Docker engine ([`TestWorker`]).
//! Tests about scheduling (queues, dependencies, workflows, draining, lost workers,
//! replicas) use simulated workers ([`SimWorker`], from [`TestServer::sim_worker`]): the
//! real protocol over real gRPC, with the request's command interpreted instead of run,
//! so they need no containers and wait for none.
//!
//! What scenarios do again and again lives here once: submitting, reading, cancelling and
//! waiting for a request ([`api`]), specs ([`spec`]), running the `berth` CLI ([`cli`]),
//! and polling for a condition ([`eventually`]) instead of sleeping.
//!
//! A test that cannot find PostgreSQL (or a binary, Docker or grpcurl) fails with a message
//! saying what is missing. Nothing is skipped.

#![expect(
    clippy::unwrap_used,
    reason = "test harness: a failure here should fail the test"
)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use berth_common::client::BearerAuth;
use berth_common::proto::token_service_client::TokenServiceClient;
use berth_common::proto::work_request_service_client::WorkRequestServiceClient;
use berth_common::proto::worker_service_client::WorkerServiceClient;
use berth_server::app::config::{Config, ServerArgs};
use berth_server::app::{self, StartError};
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

pub mod agent;
pub mod api;
pub mod artifacts;
pub mod browser;
pub mod cli;
pub mod docker;
pub mod invariants;
pub mod logs;
pub mod notify;
pub mod otlp;
pub mod process;
pub mod proxy;
pub mod receiver;
pub mod services;
pub mod sim;
pub mod smtp;
pub mod spec;
pub mod stored;
pub mod topics;
pub mod worker;

pub use agent::{RawAgent, raw_hello};
pub use api::{
    WAIT, assert_code, at, cancel, get, is_started, is_terminal, refused, result, status, submit,
    submit_request, try_submit, wait_attempt_started, wait_for, wait_started, wait_status,
    wait_terminal, witness_a_round, witness_worker, worker_of,
};
pub use cli::{Output, berth, single_error_line};
pub use docker::{
    ContainerSweep, TEST_IMAGE, container_exists, docker, ensure_test_image,
    remove_worker_containers, wait_no_containers, worker_containers,
};
pub use logs::{Logs, open_logs, rest_of};
pub use process::ServerProcess;
pub use proxy::{Flow, Proxy};
pub use sim::{SimOptions, SimWorker};
pub use spec::{secs, sh, spec};
pub use worker::TestWorker;

/// Environment variable naming the admin URL of the test PostgreSQL cluster.
pub const PG_URL_ENV: &str = "BERTH_TEST_PG_URL";

const TEMPLATE: &str = "berth_template";

/// The admin URL of the test cluster, or a panic that says how to get one.
pub fn cluster_url() -> String {
    match std::env::var(PG_URL_ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{PG_URL_ENV} is not set: these tests need a real PostgreSQL. Run them with \
             ./scripts/test (it starts a private PostgreSQL cluster), or set {PG_URL_ENV} to \
             the URL of a cluster where the test user may CREATE DATABASE, e.g. \
             postgres://berth@/postgres?host=/path/to/socket/dir"
        ),
    }
}

/// The same cluster URL with its database replaced by `database`.
pub fn database_url(database: &str) -> String {
    let url = cluster_url();
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base.to_owned(), format!("?{query}")),
        None => (url.clone(), String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => base[..scheme_end + slash].to_owned(),
        None => base,
    };
    format!("{base}/{database}{query}")
}

async fn admin_client() -> tokio_postgres::Client {
    let url = cluster_url();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to the test PostgreSQL at {url} ({PG_URL_ENV}): {e}")
        });
    tokio::spawn(connection);
    client
}

static TEMPLATE_READY: OnceCell<()> = OnceCell::const_new();

/// Makes sure the migrated template database exists (once per cluster, across processes).
async fn ensure_template() {
    TEMPLATE_READY
        .get_or_init(|| async {
            let client = admin_client().await;
            // Test processes run in parallel: one migrates, the others wait on the lock.
            client
                .execute("SELECT pg_advisory_lock(4242)", &[])
                .await
                .unwrap();
            let exists = client
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&TEMPLATE])
                .await
                .unwrap()
                .is_some();
            if !exists {
                client
                    .execute(&format!("CREATE DATABASE {TEMPLATE}"), &[])
                    .await
                    .unwrap();
                let settings = berth_core::store::db::DbSettings {
                    url: database_url(TEMPLATE),
                    ca_cert: None,
                    pool_size: 1,
                };
                berth_core::store::db::migrate(&settings)
                    .await
                    .unwrap_or_else(|e| panic!("migrating the template database: {e}"));
                // Nobody may stay connected to a template while it is copied.
                client
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                        &[&TEMPLATE],
                    )
                    .await
                    .unwrap();
            }
            client
                .execute("SELECT pg_advisory_unlock(4242)", &[])
                .await
                .unwrap();
        })
        .await;
}

/// Creates a fresh, migrated database and returns its URL.
pub async fn fresh_database() -> String {
    ensure_template().await;
    let client = admin_client().await;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut last_error = None;
    for _ in 0..50 {
        match client
            .execute(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"), &[])
            .await
        {
            Ok(_) => return database_url(&name),
            // Another process may be copying the template at this very moment.
            Err(e) => {
                last_error = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("cannot create a test database: {last_error:?}");
}

/// Runs one SQL statement against `database_url` and returns the rows (for assertions on
/// what is stored).
pub async fn query(database_url: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.query(sql, &[]).await.unwrap()
}

/// A client with a bearer token.
pub type Authed = InterceptedService<Channel, BearerAuth>;

/// A server running in this test process on 127.0.0.1 with a fresh database.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The address it listens on (kept across restarts).
    pub addr: std::net::SocketAddr,
    config: Config,
    /// The first admin token the server bootstrapped.
    pub admin_token: String,
    /// The server's database URL.
    pub database_url: String,
    /// The server's data directory.
    pub data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<ServeTask>,
}

impl TestServer {
    /// Starts a server with default settings.
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` has changed its configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let database_url = fresh_database().await;
        let data_dir = tempfile::tempdir().unwrap();
        let args = ServerArgs {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data_dir.path().to_owned()),
            database_url: Some(database_url.clone()),
            ..ServerArgs::default()
        };
        let mut config = Config::resolve(&args).unwrap();
        config.shutdown_grace = Duration::from_secs(2);
        adjust(&mut config);
        let (config, stop, task) = serve(config).await;
        let admin_token = std::fs::read_to_string(data_dir.path().join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        TestServer {
            url: format!("http://{}", config.listen),
            addr: config.listen,
            config,
            admin_token,
            database_url,
            data_dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Starts another replica of this server: the same database and secret key (copied
    /// into its own data dir, as replicas must share it) and its own address. Bootstrap
    /// creates no token on a database that has some, so the replica's `admin_token` is
    /// this server's.
    pub async fn replica(&self) -> TestServer {
        self.replica_with(|_| {}).await
    }

    /// [`TestServer::replica`] after `adjust` has changed a copy of this server's
    /// configuration.
    pub async fn replica_with(&self, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.data_dir = data_dir.path().to_owned();
        config.secret_key_file = data_dir.path().join("secret.key");
        std::fs::copy(&self.config.secret_key_file, &config.secret_key_file).unwrap();
        adjust(&mut config);
        let (config, stop, task) = serve(config).await;
        TestServer {
            url: format!("http://{}", config.listen),
            addr: config.listen,
            config,
            admin_token: self.admin_token.clone(),
            database_url: self.database_url.clone(),
            data_dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A handle on a server this process did not start (a `berth-server` process, say)
    /// at `url`, for the harness's calls; stopping or dropping it leaves that server be,
    /// and it cannot be restarted or replicated from here.
    pub fn external(url: &str, admin_token: &str, database_url: &str) -> TestServer {
        let data_dir = tempfile::tempdir().unwrap();
        let addr: std::net::SocketAddr = url
            .trim_start_matches("http://")
            .parse()
            .unwrap_or_else(|e| panic!("{url} is not http://ADDRESS:PORT: {e}"));
        let args = ServerArgs {
            listen: Some(addr.to_string()),
            data_dir: Some(data_dir.path().to_owned()),
            database_url: Some(database_url.to_owned()),
            ..ServerArgs::default()
        };
        TestServer {
            url: url.to_owned(),
            addr,
            config: Config::resolve(&args).unwrap(),
            admin_token: admin_token.to_owned(),
            database_url: database_url.to_owned(),
            data_dir,
            stop: None,
            task: None,
        }
    }

    /// A fresh connection to the server.
    pub async fn channel(&self) -> Channel {
        berth_common::client::connect(&self.url, None)
            .await
            .unwrap()
    }

    /// A TokenService client using `token`.
    pub async fn tokens(&self, token: &str) -> TokenServiceClient<Authed> {
        TokenServiceClient::with_interceptor(self.channel().await, BearerAuth::new(token))
    }

    /// A WorkRequestService client using `token`.
    pub async fn work_requests(&self, token: &str) -> WorkRequestServiceClient<Authed> {
        WorkRequestServiceClient::with_interceptor(self.channel().await, BearerAuth::new(token))
    }

    /// A WorkerService client using `token`.
    pub async fn workers(&self, token: &str) -> WorkerServiceClient<Authed> {
        WorkerServiceClient::with_interceptor(self.channel().await, BearerAuth::new(token))
    }

    /// A UserService client using `token`.
    pub async fn users(
        &self,
        token: &str,
    ) -> berth_common::proto::user_service_client::UserServiceClient<Authed> {
        berth_common::proto::user_service_client::UserServiceClient::with_interceptor(
            self.channel().await,
            BearerAuth::new(token),
        )
    }

    /// A WorkspaceService client using `token`.
    pub async fn workspaces(
        &self,
        token: &str,
    ) -> berth_common::proto::workspace_service_client::WorkspaceServiceClient<Authed> {
        berth_common::proto::workspace_service_client::WorkspaceServiceClient::with_interceptor(
            self.channel().await,
            BearerAuth::new(token),
        )
    }

    /// Creates a token of `role` (a `berth.v1.Role`) for `name` with the admin token;
    /// returns (id, secret). A user token's user is made a contributor of the `default`
    /// workspace, as an admin would before its owner submits there; tests of tenancy make
    /// their users with [`TestServer::create_token_without_roles`].
    pub async fn create_token(
        &self,
        role: berth_common::proto::Role,
        name: &str,
    ) -> (String, String) {
        let created = self.create_token_without_roles(role, name).await;
        if role == berth_common::proto::Role::User {
            self.grant_default(name).await;
        }
        created
    }

    /// Gives user `user` the `role` (viewer, contributor or owner) in `workspace`,
    /// replacing any role they had there, straight in the database.
    pub async fn set_role(&self, workspace: &str, user: &str, role: &str) {
        let quote = |s: &str| s.replace('\'', "''");
        query(
            &self.database_url,
            &format!(
                "INSERT INTO workspace_members (workspace_id, user_id, role) \
                 SELECT w.id, u.id, '{}' FROM workspaces w, users u \
                 WHERE w.name = '{}' AND u.name = '{}' \
                 ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = EXCLUDED.role",
                quote(role),
                quote(workspace),
                quote(user)
            ),
        )
        .await;
    }

    /// Makes user `name` a contributor of `default` (an owner stays owner).
    pub async fn grant_default(&self, name: &str) {
        query(
            &self.database_url,
            &format!(
                "INSERT INTO workspace_members (workspace_id, user_id, role) \
                 SELECT w.id, u.id, 'contributor' FROM workspaces w, users u \
                 WHERE w.name = 'default' AND u.name = '{}' \
                 ON CONFLICT DO NOTHING",
                name.replace('\'', "''")
            ),
        )
        .await;
    }

    /// Creates a token of `role` for `name` with the admin token, giving a new user no
    /// workspace role; returns (id, secret).
    pub async fn create_token_without_roles(
        &self,
        role: berth_common::proto::Role,
        name: &str,
    ) -> (String, String) {
        let created = self
            .tokens(&self.admin_token)
            .await
            .create_token(berth_common::proto::CreateTokenRequest {
                role: role as i32,
                name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        (created.info.unwrap().id, created.token)
    }

    /// Creates a worker token for a new name and connects a simulated worker with it;
    /// returns once the server has welcomed it (and so ran its first assignment round).
    pub async fn sim_worker(&self, options: SimOptions) -> SimWorker {
        let name = unique_name("sim");
        let (_, token) = self
            .create_token(berth_common::proto::Role::Worker, &name)
            .await;
        SimWorker::connect(&self.url, &name, &token, options).await
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    /// Stops the server and starts it again on the same address, database and data dir
    /// (as an operator restarting it would).
    pub async fn restart(&mut self) {
        self.shutdown().await;
        self.start_again().await;
    }

    /// Stops the server, leaves it down for `down` (an outage: no pass of any kind runs)
    /// and starts it again as [`TestServer::restart`] does.
    pub async fn restart_after(&mut self, down: Duration) {
        self.shutdown().await;
        tokio::time::sleep(down).await;
        self.start_again().await;
    }

    async fn start_again(&mut self) {
        let mut attempts = 0;
        let listener = loop {
            match app::bind(&self.config).await {
                Ok(listener) => break listener,
                Err(e) if attempts < 100 => {
                    attempts += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot bind {} again: {e}", self.addr),
            }
        };
        let (stop, task) = serve_on(self.config.clone(), listener).await;
        self.task = Some(task);
        self.stop = Some(stop);
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// The task serving a [`TestServer`].
type ServeTask = JoinHandle<Result<(), StartError>>;

/// Binds `config.listen` (port 0: any free port), then serves as [`serve_on`]; returns
/// the configuration with the bound address.
async fn serve(mut config: Config) -> (Config, oneshot::Sender<()>, ServeTask) {
    let listener = app::bind(&config).await.unwrap();
    config.listen = listener.local_addr().unwrap();
    let (stop, task) = serve_on(config.clone(), listener).await;
    (config, stop, task)
}

/// Prepares the server (database, migrations, bootstrap) and serves on `listener` in a
/// task until the returned sender fires or is dropped.
async fn serve_on(
    config: Config,
    listener: tokio::net::TcpListener,
) -> (oneshot::Sender<()>, ServeTask) {
    let prepared = app::prepare(config).await.unwrap();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(app::serve(prepared, listener, async {
        let _ = stopped.await;
    }));
    (stop, task)
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Path of a workspace binary (`berth-server`, `berth`, `berth-worker`), built next to the
/// test executables. Fails with a message saying how to build it if it is missing.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test-binary>
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "binary {} is missing: build it with `cargo build --bins` (./scripts/test does)",
        path.display()
    );
    path
}

/// Runs a binary to completion with `args` and `env`, returning (status code, stdout, stderr).
pub async fn run_binary(name: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(binary(name));
    command
        .args(args)
        .env_remove("BERTH_TOKEN")
        .env_remove("BERTH_SERVER")
        .env_remove("BERTH_DATABASE_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("{name} {args:?} did not finish within 120 s"))
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Finds a free TCP port on 127.0.0.1 (for servers started as separate processes).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` naming
/// `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A name no other test uses: `prefix-` and ten random hex digits.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// One-second heartbeats: a worker learns quickly that its reports arrived (a real worker
/// waits for that before a clean exit), and a restarted server is noticed quickly.
pub fn quick_heartbeats(config: &mut Config) {
    config.agent.heartbeat_interval = Duration::from_secs(1);
}

/// Short protocol timings, so that a lost worker is noticed in seconds: one-second
/// heartbeats, a three-second lease and a two-second hand-off deadline.
pub fn quick_leases(config: &mut Config) {
    config.agent.heartbeat_interval = Duration::from_secs(1);
    config.agent.lease_ttl = Duration::from_secs(3);
    config.agent.handoff_deadline = Duration::from_secs(2);
}

/// The overall health (service "") the server at `url` reports, trusting `ca_cert` for
/// TLS; `None` if it does not answer within 10 s.
pub async fn health(url: &str, ca_cert: Option<&std::path::Path>) -> Option<ServingStatus> {
    let check = async {
        let channel = berth_common::client::connect(url, ca_cert).await.ok()?;
        let response = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()?;
        ServingStatus::try_from(response.into_inner().status).ok()
    };
    tokio::time::timeout(Duration::from_secs(10), check)
        .await
        .ok()
        .flatten()
}
