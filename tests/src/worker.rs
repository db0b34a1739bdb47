//! Real `berth-worker` processes, for the tests about execution and about the process.

use std::process::Stdio;
use std::time::Duration;

use crate::{TestServer, binary, eventually, unique_name};

/// A `berth-worker` process connected to a test server.
pub struct TestWorker {
    /// The name it registers as (unique per test).
    pub name: String,
    /// Its worker token.
    pub token: String,
    /// Its log directory, and its spool directory unless it was given another.
    pub dir: tempfile::TempDir,
    /// Its spool directory (`dir/spool` unless given).
    pub spool_dir: std::path::PathBuf,
    child: Option<tokio::process::Child>,
    server_url: String,
    extra: Vec<String>,
    /// Environment variables it is started with (say, where to send traces).
    env: Vec<(String, String)>,
}

impl TestWorker {
    /// Creates a worker token and starts a worker with `extra` flags (e.g. labels).
    pub async fn start(server: &TestServer, extra: &[&str]) -> TestWorker {
        TestWorker::start_via(server, &server.url, extra).await
    }

    /// As [`TestWorker::start`], but the worker connects to `url` (a [`crate::Proxy`] in
    /// front of the server, say) instead of the server's own address.
    pub async fn start_via(server: &TestServer, url: &str, extra: &[&str]) -> TestWorker {
        TestWorker::start_with(server, url, extra, None).await
    }

    /// [`TestWorker::start`] with the spool in `spool_dir` (say, a small file system).
    pub async fn start_spooling_in(
        server: &TestServer,
        extra: &[&str],
        spool_dir: Option<&std::path::Path>,
    ) -> TestWorker {
        TestWorker::start_with(server, &server.url, extra, spool_dir).await
    }

    /// A worker connecting to `url`, spooling in `spool_dir` (`dir/spool` when `None`).
    pub async fn start_with(
        server: &TestServer,
        url: &str,
        extra: &[&str],
        spool_dir: Option<&std::path::Path>,
    ) -> TestWorker {
        TestWorker::launch(server, url, extra, spool_dir, &[]).await
    }

    /// [`TestWorker::start`] with the environment variables `env` set for it.
    pub async fn start_with_env(
        server: &TestServer,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> TestWorker {
        TestWorker::launch(server, &server.url, extra, None, env).await
    }

    async fn launch(
        server: &TestServer,
        url: &str,
        extra: &[&str],
        spool_dir: Option<&std::path::Path>,
        env: &[(&str, &str)],
    ) -> TestWorker {
        let name = unique_name("w");
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = spool_dir.map_or_else(|| dir.path().join("spool"), |d| d.to_owned());
        let (_, token) = server
            .create_token(berth_common::proto::Role::Worker, &name)
            .await;
        let mut worker = TestWorker {
            name,
            token,
            dir,
            spool_dir,
            child: None,
            server_url: url.to_owned(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        worker.spawn();
        worker
    }

    /// Starts the process (again) with the same token, name and spool dir.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("worker.log"))
            .unwrap();
        let child = tokio::process::Command::new(binary("berth-worker"))
            .args(["--server", &self.server_url, "--name", &self.name])
            .arg("--spool-dir")
            .arg(&self.spool_dir)
            .args(&self.extra)
            .env("BERTH_TOKEN", &self.token)
            .env_remove("BERTH_TOKEN_FILE")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Whether the process is still running (it was started and has not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The worker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("worker.log")).unwrap_or_default()
    }

    /// Kills the process with SIGKILL (no clean-up on its side) and waits for it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit; returns its status.
    pub async fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = child.id()?;
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = child.kill().await;
                panic!(
                    "worker did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// Waits until the server lists this worker as connected.
    pub async fn wait_connected(&self, server: &TestServer) {
        let name = self.name.clone();
        let token = server.admin_token.clone();
        eventually(
            &format!("worker {name} to connect"),
            Duration::from_secs(30),
            || {
                let name = name.clone();
                let token = token.clone();
                async move {
                    let worker = server
                        .workers(&token)
                        .await
                        .get_worker(berth_common::proto::GetWorkerRequest { name })
                        .await
                        .ok()?
                        .into_inner();
                    worker.connected.then_some(())
                }
            },
        )
        .await;
    }
}
