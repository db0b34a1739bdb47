//! `berth-server` as an operator runs it: the real binary in its own process.
//!
//! What only a process can show is checked here: the embedded PostgreSQL is created,
//! reused and always stopped again; the first admin token lands in a private file and never
//! in the output; SIGTERM drains and exits 0; start-up mistakes are one `error:` line and a
//! non-zero status; JSON logs are JSON; and flags, environment and config file are weighed
//! in the documented order.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_common::client::BearerAuth;
use berth_common::proto::token_service_client::TokenServiceClient;
use berth_common::proto::{CreateTokenRequest, ListTokensRequest, Role, TokenInfo};
use berth_tests::{
    binary, cluster_url, database_url, free_port, fresh_database, run_binary, single_error_line,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// How long a server gets to become healthy: a first start with the embedded database runs
/// initdb, which is slow on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a stopping server gets to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A `berth-server` process. Its stdout and stderr go to files so that they can be read at
/// any time; dropping it stops the server (SIGTERM, then SIGKILL) and any postmaster it left.
struct ServerProcess {
    child: Child,
    logs: tempfile::TempDir,
    /// PGDATA of the embedded cluster this server may have started, for clean-up.
    pg_data: Option<PathBuf>,
}

impl ServerProcess {
    /// Starts `berth-server args...` with `env` added to an environment cleared of every
    /// `BERTH_*` setting, so that only what the test says reaches the server.
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let logs = tempfile::tempdir().unwrap();
        let mut command = Command::new(binary("berth-server"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("BERTH_") {
                command.env_remove(key);
            }
        }
        command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(logs.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(logs.path().join("stderr")).unwrap())
            .kill_on_drop(true);
        let child = command.spawn().unwrap();
        let pg_data = args
            .iter()
            .position(|arg| *arg == "--data-dir")
            .and_then(|i| args.get(i + 1))
            .map(|dir| Path::new(dir).join("postgres").join("data"));
        ServerProcess {
            child,
            logs,
            pg_data,
        }
    }

    /// Starts a server and waits until it reports SERVING on `port`.
    async fn start(args: &[&str], env: &[(&str, &str)], port: u16) -> ServerProcess {
        let mut server = ServerProcess::spawn(args, env);
        server.wait_healthy(port).await;
        server
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.logs.path().join("stdout")).unwrap())
            .into_owned()
    }

    /// Asserts that none of `secrets` is on its stdout or stderr.
    fn assert_never_printed(&self, secrets: &[&str]) {
        for secret in secrets {
            assert!(!self.stdout().contains(secret), "a token is on stdout");
            assert!(!self.stderr().contains(secret), "a token is on stderr");
        }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.logs.path().join("stderr")).unwrap())
            .into_owned()
    }

    async fn wait_healthy(&mut self, port: u16) {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "berth-server exited ({status}) before it became healthy; stderr:\n{}",
                    self.stderr()
                );
            }
            if health(port).await == Some(ServingStatus::Serving) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "berth-server did not become healthy on port {port} within {START_TIMEOUT:?}; \
                 stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("berth-server has already exited");
        kill(Pid::from_raw(i32::try_from(pid).unwrap()), signal).unwrap();
    }

    /// Waits for the process to exit and returns its exit code.
    async fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "berth-server did not exit within {timeout:?}; stderr:\n{}",
                self.stderr()
            ),
        };
        status.code().unwrap_or_else(|| {
            panic!(
                "berth-server ended by a signal ({status}); stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// SIGTERM, then the exit code.
    async fn stop(&mut self) -> i32 {
        self.signal(Signal::SIGTERM);
        self.wait_exit(EXIT_TIMEOUT).await
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Only a failed test gets here with the server still running. Ask nicely first so
        // the server stops its own PostgreSQL; SIGKILL (kill_on_drop) follows regardless.
        if let Ok(None) = self.child.try_wait() {
            if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            for _ in 0..300 {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.start_kill();
        }
        if let Some(pg_data) = &self.pg_data {
            stop_leftover_postmaster(pg_data);
        }
    }
}

/// Stops a postmaster left in `pg_data` (SIGQUIT: immediate shutdown), so a failed test
/// does not leave PostgreSQL running on a deleted directory.
fn stop_leftover_postmaster(pg_data: &Path) {
    let Ok(pid_file) = std::fs::read_to_string(pg_data.join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = pid_file
        .lines()
        .next()
        .and_then(|line| line.trim().parse::<i32>().ok())
    else {
        return;
    };
    let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
    for _ in 0..300 {
        if !pg_data.join("postmaster.pid").exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The overall health the server on `port` reports, if it answers.
async fn health(port: u16) -> Option<ServingStatus> {
    berth_tests::health(&format!("http://127.0.0.1:{port}"), None).await
}

async fn token_client(port: u16, token: &str) -> TokenServiceClient<berth_tests::Authed> {
    let channel = berth_common::client::connect(&format!("http://127.0.0.1:{port}"), None)
        .await
        .unwrap();
    TokenServiceClient::with_interceptor(channel, BearerAuth::new(token))
}

async fn list_tokens(port: u16, token: &str) -> Result<Vec<TokenInfo>, tonic::Status> {
    token_client(port, token)
        .await
        .list_tokens(ListTokensRequest {})
        .await
        .map(|response| response.into_inner().tokens)
}

/// A temporary directory the unprivileged PostgreSQL user can walk through (tempdirs are
/// 0700), for data directories holding an embedded cluster.
fn reachable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn listen_addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Command lines of running processes that mention `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let own = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == own {
            continue;
        }
        // Processes come and go while we look; a vanished one mentions nothing.
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

/// The embedded cluster of `data_dir` exists and nothing of it runs any more.
fn assert_embedded_postgres_stopped(data_dir: &Path) {
    let pg_data = data_dir.join("postgres").join("data");
    assert!(
        pg_data.join("PG_VERSION").exists(),
        "no embedded cluster was created in {}",
        pg_data.display()
    );
    assert!(
        !pg_data.join("postmaster.pid").exists(),
        "postmaster.pid is still in {}: PostgreSQL was not stopped",
        pg_data.display()
    );
    let canonical = pg_data.canonicalize().unwrap();
    // The postmaster removes its pid file as its last step (which is when `pg_ctl stop -w`
    // returns) and exits just after: give the process a moment to be gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut left = processes_mentioning(path_str(&canonical));
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        left = processes_mentioning(path_str(&canonical));
    }
    assert!(
        left.is_empty(),
        "processes still running for {}: {left:?}",
        canonical.display()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_database_server_keeps_its_admin_token_and_stops_postgres_across_restarts() {
    let tmp = reachable_tempdir();
    let data_dir = tmp.path().join("data");
    let data = path_str(&data_dir);
    let token_path = data_dir.join("admin.token");

    // First start: a new cluster and a new admin token.
    let port = free_port();
    let addr = listen_addr(port);
    let mut server =
        ServerProcess::start(&["--data-dir", data, "--listen", &addr], &[], port).await;
    let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "admin.token must be private, has mode {mode:o}"
    );
    let token_file = std::fs::read_to_string(&token_path).unwrap();
    let admin_token = token_file.trim().to_owned();
    assert!(admin_token.starts_with("berth_adm_"), "{admin_token:?}");
    let tokens = list_tokens(port, &admin_token)
        .await
        .expect("the token from admin.token lists tokens");
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let user_token = token_client(port, &admin_token)
        .await
        .create_token(CreateTokenRequest {
            role: Role::User as i32,
            name: "alice".into(),
            ..Default::default()
        })
        .await
        .expect("create a user token")
        .into_inner()
        .token;

    assert_eq!(server.stop().await, 0, "stderr:\n{}", server.stderr());
    server.assert_never_printed(&[&admin_token, &user_token]);
    // Its stderr is a file, not a terminal: plain text, no colour codes.
    assert!(
        !server.stderr().contains('\x1b'),
        "the server's log file holds ANSI escapes:\n{}",
        server.stderr()
    );
    assert_embedded_postgres_stopped(&data_dir);
    drop(server);

    // Second start on the same data dir: the same cluster, the same tokens, no new file.
    let port = free_port();
    let addr = listen_addr(port);
    let mut server =
        ServerProcess::start(&["--data-dir", data, "--listen", &addr], &[], port).await;
    assert_eq!(
        std::fs::read_to_string(&token_path).unwrap(),
        token_file,
        "admin.token was rewritten on restart"
    );
    let tokens = list_tokens(port, &admin_token)
        .await
        .expect("the first admin token still works after a restart");
    assert_eq!(
        tokens.len(),
        2,
        "expected the first admin token and alice's token, no new one: {tokens:?}"
    );
    list_tokens(port, &user_token)
        .await
        .expect("a token created before the restart still works");

    assert_eq!(server.stop().await, 0, "stderr:\n{}", server.stderr());
    server.assert_never_printed(&[&admin_token, &user_token]);
    assert_embedded_postgres_stopped(&data_dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_token_command_prints_a_working_token_for_the_embedded_database() {
    let tmp = reachable_tempdir();
    let data_dir = tmp.path().join("data");
    let data = path_str(&data_dir);

    let (code, stdout, stderr) =
        run_binary("berth-server", &["admin-token", "--data-dir", data], &[]).await;
    assert_eq!(code, 0, "admin-token failed; stderr:\n{stderr}");
    let token = stdout.trim().to_owned();
    assert!(
        token.starts_with("berth_adm_") && !token.contains(char::is_whitespace),
        "stdout should be just the token: {stdout:?}"
    );
    assert!(!stderr.contains(&token), "the token is on stderr");
    assert_embedded_postgres_stopped(&data_dir);

    let (code, _, stderr) = run_binary("berth-server", &["migrate", "--data-dir", data], &[]).await;
    assert_eq!(code, 0, "migrate failed; stderr:\n{stderr}");
    assert_embedded_postgres_stopped(&data_dir);

    let port = free_port();
    let addr = listen_addr(port);
    let mut server =
        ServerProcess::start(&["--data-dir", data, "--listen", &addr], &[], port).await;
    let tokens = list_tokens(port, &token)
        .await
        .expect("the printed token works against the server");
    assert!(tokens.iter().any(|t| t.owner == "admin"), "{tokens:?}");
    assert_eq!(server.stop().await, 0, "stderr:\n{}", server.stderr());
    assert_embedded_postgres_stopped(&data_dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_and_admin_token_commands_work_with_a_database_url() {
    // An empty database, so `migrate` has something to do.
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    berth_tests::query(&cluster_url(), &format!("CREATE DATABASE {name}")).await;
    let url = database_url(&name);
    let tmp = tempfile::tempdir().unwrap();
    let data = path_str(tmp.path());

    let (code, _, stderr) = run_binary(
        "berth-server",
        &["migrate", "--database-url", &url, "--data-dir", data],
        &[],
    )
    .await;
    assert_eq!(code, 0, "migrate failed; stderr:\n{stderr}");
    let tables = berth_tests::query(
        &url,
        "SELECT 1 FROM information_schema.tables WHERE table_name = 'tokens'",
    )
    .await;
    assert_eq!(tables.len(), 1, "migrate did not create the tokens table");

    let (code, stdout, stderr) = run_binary(
        "berth-server",
        &["admin-token", "--database-url", &url, "--data-dir", data],
        &[],
    )
    .await;
    assert_eq!(code, 0, "admin-token failed; stderr:\n{stderr}");
    let token = stdout.trim().to_owned();
    assert!(token.starts_with("berth_adm_"), "{stdout:?}");

    let port = free_port();
    let addr = listen_addr(port);
    let mut server = ServerProcess::start(
        &[
            "--database-url",
            &url,
            "--data-dir",
            data,
            "--listen",
            &addr,
        ],
        &[],
        port,
    )
    .await;
    list_tokens(port, &token)
        .await
        .expect("the printed token works against a server on that database");
    assert_eq!(server.stop().await, 0, "stderr:\n{}", server.stderr());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_turns_health_not_serving_refuses_new_connections_and_exits_zero() {
    let url = fresh_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("berth.toml");
    std::fs::write(&config, "shutdown_grace = \"3s\"\n").unwrap();
    let data_dir = tmp.path().join("data");
    let port = free_port();
    let addr = listen_addr(port);
    let mut server = ServerProcess::start(
        &[
            "--config",
            path_str(&config),
            "--database-url",
            &url,
            "--data-dir",
            path_str(&data_dir),
            "--listen",
            &addr,
        ],
        &[],
        port,
    )
    .await;

    let channel = berth_common::client::connect(&format!("http://{addr}"), None)
        .await
        .unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("open a health watch")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("the watch sends the current status")
        .unwrap()
        .expect("the watch stream is open");
    assert_eq!(first.status, ServingStatus::Serving as i32);

    server.signal(Signal::SIGTERM);
    let next = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("the watch reports the shutdown")
        .expect("the watch stream reports NOT_SERVING before it ends")
        .expect("the watch stream is still open");
    assert_eq!(next.status, ServingStatus::NotServing as i32);

    berth_tests::eventually(
        "new connections to be refused",
        Duration::from_secs(30),
        || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(&addr).await.err() }
        },
    )
    .await;

    // The watch is an open call: the server waits out the 3 s grace for it, then exits.
    let code = server.wait_exit(Duration::from_secs(3 + 30)).await;
    assert_eq!(code, 0, "stderr:\n{}", server.stderr());
    drop(watch);
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "something still accepts connections on {addr}"
    );
}

/// The next message the server sent to the systemd notify socket.
async fn notified(socket: &tokio::net::UnixDatagram) -> String {
    let mut buffer = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(30), socket.recv(&mut buffer))
        .await
        .expect("a message on NOTIFY_SOCKET within 30 s")
        .unwrap();
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_hears_ready_once_the_port_answers_and_stopping_on_sigterm() {
    let url = fresh_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let socket_path = tmp.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let port = free_port();
    let addr = listen_addr(port);
    let data_dir = tmp.path().join("data");
    let mut server = ServerProcess::start(
        &[
            "--database-url",
            &url,
            "--data-dir",
            path_str(&data_dir),
            "--listen",
            &addr,
        ],
        &[("NOTIFY_SOCKET", path_str(&socket_path))],
        port,
    )
    .await;
    assert_eq!(notified(&socket).await, "READY=1\n");
    server.signal(Signal::SIGTERM);
    assert_eq!(notified(&socket).await, "STOPPING=1\n");
    assert_eq!(
        server.wait_exit(EXIT_TIMEOUT).await,
        0,
        "stderr:\n{}",
        server.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_starting_still_stops_the_embedded_postgres_and_exits_zero() {
    let tmp = reachable_tempdir();
    let data_dir = tmp.path().join("data");
    let port = free_port();
    let addr = listen_addr(port);
    let mut server =
        ServerProcess::spawn(&["--data-dir", path_str(&data_dir), "--listen", &addr], &[]);
    // The cluster directory appears just before initdb runs: the server is mid-start.
    let cluster_dir = data_dir.join("postgres");
    berth_tests::eventually("the embedded cluster directory", START_TIMEOUT, || async {
        cluster_dir.exists().then_some(())
    })
    .await;
    server.signal(Signal::SIGTERM);
    let code = server.wait_exit(START_TIMEOUT + EXIT_TIMEOUT).await;
    assert_eq!(code, 0, "stderr:\n{}", server.stderr());
    assert_embedded_postgres_stopped(&data_dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_port_in_use_is_one_error_line_naming_the_address_and_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_binary(
        "berth-server",
        &[
            "--listen",
            &addr,
            "--data-dir",
            path_str(tmp.path()),
            "--database-url",
            "postgres://berth@127.0.0.1:1/berth",
        ],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    let line = single_error_line(&stderr);
    assert!(line.contains(&addr), "{line}");
    assert!(line.contains("--listen"), "{line}");
    drop(taken);
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_database_is_one_error_line_without_the_password() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_binary(
        "berth-server",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path_str(tmp.path()),
            "--database-url",
            "postgres://berth:hunter2@127.0.0.1:1/berth",
        ],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
    let line = single_error_line(&stderr);
    assert!(line.contains("cannot connect to the database"), "{line}");
    assert!(
        line.contains("refused"),
        "the error does not say why: {line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_database_is_named_in_the_error_line() {
    let name = format!("t_missing_{}", uuid::Uuid::new_v4().simple());
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_binary(
        "berth-server",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path_str(tmp.path()),
            "--database-url",
            &database_url(&name),
        ],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    let line = single_error_line(&stderr);
    assert!(line.contains("cannot connect to the database"), "{line}");
    assert!(
        line.contains(&format!("database \"{name}\" does not exist")),
        "the error does not say why: {line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_address_that_is_not_an_address_is_one_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_binary(
        "berth-server",
        &["--listen", "nonsense", "--data-dir", path_str(tmp.path())],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    let line = single_error_line(&stderr);
    assert!(line.contains("--listen"), "{line}");
    assert!(line.contains("nonsense"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_config_file_key_is_one_error_line_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("berth.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nshutdown_grase = \"3s\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run_binary(
        "berth-server",
        &[
            "--config",
            path_str(&config),
            "--data-dir",
            path_str(tmp.path()),
        ],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    let line = single_error_line(&stderr);
    assert!(line.contains("shutdown_grase"), "{line}");
    assert!(line.contains(path_str(&config)), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_cert_without_tls_key_is_one_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cert = tmp.path().join("cert.pem");
    std::fs::write(&cert, "not used").unwrap();
    let (code, _, stderr) = run_binary(
        "berth-server",
        &[
            "--tls-cert",
            path_str(&cert),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path_str(tmp.path()),
        ],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    let line = single_error_line(&stderr);
    assert!(line.contains("--tls-key"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_postgres_binaries_error_says_how_to_provide_them() {
    let tmp = reachable_tempdir();
    let data_dir = tmp.path().join("data");
    let (code, _, stderr) = run_binary(
        "berth-server",
        &["--listen", "127.0.0.1:0", "--data-dir", path_str(&data_dir)],
        &[("BERTH_PG_BIN_DIR", "/nonexistent")],
    )
    .await;
    assert_ne!(code, 0);
    let line = single_error_line(&stderr);
    assert!(line.contains("/nonexistent"), "{line}");
    assert!(line.contains("BERTH_PG_BIN_DIR"), "{line}");
    assert!(line.contains("initdb"), "{line}");
    assert!(
        !data_dir.join("postgres").join("data").exists(),
        "a cluster was created without binaries"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_log_format_writes_only_json_objects_to_stderr() {
    let tmp = reachable_tempdir();
    let data_dir = tmp.path().join("data");
    let port = free_port();
    let addr = listen_addr(port);
    let mut server = ServerProcess::start(
        &[
            "--log-format",
            "json",
            "--data-dir",
            path_str(&data_dir),
            "--listen",
            &addr,
        ],
        &[],
        port,
    )
    .await;
    let admin_token = std::fs::read_to_string(data_dir.join("admin.token")).unwrap();
    list_tokens(port, admin_token.trim()).await.unwrap();
    // A refused call logs too.
    let refused = list_tokens(port, "berth_adm_wrong").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(server.stop().await, 0, "stderr:\n{}", server.stderr());

    let stderr = server.stderr();
    let mut messages = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
        let object = value
            .as_object()
            .unwrap_or_else(|| panic!("stderr line is not a JSON object: {line}"));
        if let Some(message) = object.get("message").and_then(|m| m.as_str()) {
            messages.push(message.to_owned());
        }
    }
    assert!(
        messages.iter().any(|m| m == "berth-server listening"),
        "the start-up line is missing from the JSON logs: {messages:?}"
    );
    assert_embedded_postgres_stopped(&data_dir);
}

/// A config file in `dir` that says `listen = "ADDR"`.
fn config_listening_on(dir: &Path, addr: &str) -> PathBuf {
    let config = dir.join("berth.toml");
    std::fs::write(&config, format!("listen = \"{addr}\"\n")).unwrap();
    config
}

/// Starts a server with `config` on a fresh database and `args`/`env` added, expects it
/// healthy on `port`, and stops it: it must exit 0.
async fn assert_serves_on(port: u16, config: &Path, args: &[&str], env: &[(&str, &str)]) {
    let url = fresh_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let mut line = vec![
        "--config",
        path_str(config),
        "--database-url",
        &url,
        "--data-dir",
        path_str(&data_dir),
    ];
    line.extend_from_slice(args);
    let mut server = ServerProcess::start(&line, env, port).await;
    assert_eq!(server.stop().await, 0, "stderr:\n{}", server.stderr());
}

#[tokio::test(flavor = "multi_thread")]
async fn berth_listen_env_is_honoured_over_the_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    // The file names a port we hold: a server that used it could not start.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = config_listening_on(tmp.path(), &held.local_addr().unwrap().to_string());
    let port = free_port();
    assert_serves_on(port, &config, &[], &[("BERTH_LISTEN", &listen_addr(port))]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn config_file_listen_is_used_without_flag_or_env() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config_listening_on(tmp.path(), &listen_addr(port));
    assert_serves_on(port, &config, &[], &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_flag_wins_over_the_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    // The file names a port we hold: a server that used it could not start.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = config_listening_on(tmp.path(), &held.local_addr().unwrap().to_string());
    let port = free_port();
    assert_serves_on(port, &config, &["--listen", &listen_addr(port)], &[]).await;
}
