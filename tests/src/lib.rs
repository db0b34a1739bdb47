//! Berth's end-to-end test harness.
//!
//! Tests run against real components: a real PostgreSQL cluster, the real server on a
//! real TCP socket, real gRPC clients, and the real binaries where process behaviour
//! matters. `scripts/test` starts one private PostgreSQL cluster for the whole run and
//! passes its URL in `BERTH_TEST_PG_URL`; each test gets a fresh database cloned from a
//! migrated template (fast: a file copy, not a migration run).
//!
//! A test that cannot find PostgreSQL (or a binary, or grpcurl) fails with a message saying
//! what is missing. Nothing is skipped silently.

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
use berth_server::app::{self, StartError};
use berth_server::config::{Config, ServerArgs};
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

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
                let settings = berth_server::db::DbSettings {
                    url: database_url(TEMPLATE),
                    ca_cert: None,
                    pool_size: 1,
                };
                berth_server::db::migrate(&settings)
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
    /// The first admin token the server bootstrapped.
    pub admin_token: String,
    /// The server's database URL.
    pub database_url: String,
    /// The server's data directory.
    pub data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), StartError>>>,
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
        let listener = app::bind(&config).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let prepared = app::prepare(config).await.unwrap();
        let admin_token = std::fs::read_to_string(data_dir.path().join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(app::serve(prepared, listener, async {
            let _ = stopped.await;
        }));
        TestServer {
            url: format!("http://{addr}"),
            admin_token,
            database_url,
            data_dir,
            stop: Some(stop),
            task: Some(task),
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

    /// Creates a token of `role` (a `berth.v1.Role`) for `name` with the admin token;
    /// returns (id, secret).
    pub async fn create_token(
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

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown().await;
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
        .envs(env.iter().copied())
        .env_remove("BERTH_TOKEN")
        .env_remove("BERTH_SERVER")
        .env_remove("BERTH_DATABASE_URL")
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
