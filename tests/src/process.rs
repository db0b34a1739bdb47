//! Real `berth-server` processes on a test database, for the faults that need a process:
//! a replica killed with SIGKILL.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;

use crate::{TestServer, binary, eventually, free_port, health};

/// A `berth-server` process on an existing database, listening on 127.0.0.1.
pub struct ServerProcess {
    /// The address it listens on (kept across restarts).
    pub addr: std::net::SocketAddr,
    /// `http://ADDR`.
    pub url: String,
    /// The database it serves.
    pub database_url: String,
    /// Whether it runs the embedded PostgreSQL.
    embedded: bool,
    /// Its data directory (secret key, admin token, `server.toml`, `server.log`).
    pub data_dir: tempfile::TempDir,
    /// Environment variables it is started with (say, where to send traces).
    env: Vec<(String, String)>,
    child: Option<tokio::process::Child>,
}

impl ServerProcess {
    /// Starts a server on `database_url` with the TOML `config` (e.g. short leases) and,
    /// for a replica, a copy of `secret_key` (replicas must share it); waits until it
    /// reports SERVING.
    pub async fn start(
        database_url: &str,
        secret_key: Option<&Path>,
        config: &str,
    ) -> ServerProcess {
        ServerProcess::start_with_env(database_url, secret_key, config, &[]).await
    }

    /// [`ServerProcess::start`] with the environment variables `env` set for it.
    pub async fn start_with_env(
        database_url: &str,
        secret_key: Option<&Path>,
        config: &str,
        env: &[(&str, &str)],
    ) -> ServerProcess {
        let data_dir = tempfile::tempdir().unwrap();
        if let Some(key) = secret_key {
            std::fs::copy(key, data_dir.path().join("secret.key")).unwrap();
        }
        std::fs::write(data_dir.path().join("server.toml"), config).unwrap();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut server = ServerProcess {
            addr,
            url: format!("http://{addr}"),
            database_url: database_url.to_owned(),
            embedded: false,
            data_dir,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            child: None,
        };
        server.spawn().await;
        server
    }

    /// Starts a server with its embedded PostgreSQL (in its data dir) and the TOML
    /// `config`; waits until it reports SERVING. Dropping it stops that PostgreSQL too.
    pub async fn embedded(config: &str) -> ServerProcess {
        let data_dir = tempfile::tempdir().unwrap();
        // PostgreSQL runs as `postgres` when the tests run as root: it must reach its dir.
        std::fs::set_permissions(data_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(data_dir.path().join("server.toml"), config).unwrap();
        let socket_dir = data_dir.path().canonicalize().unwrap().join("postgres/run");
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut server = ServerProcess {
            addr,
            url: format!("http://{addr}"),
            database_url: format!("postgres://berth@/berth?host={}", socket_dir.display()),
            embedded: true,
            data_dir,
            env: Vec::new(),
            child: None,
        };
        server.spawn().await;
        server
    }

    /// The pid in the embedded PostgreSQL's `postmaster.pid`, if the file is there (it
    /// outlives a postmaster killed with SIGKILL).
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text =
            std::fs::read_to_string(self.data_dir.path().join("postgres/data/postmaster.pid"))
                .ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Another server on the same database with the same secret key and configuration.
    pub async fn replica(&self) -> ServerProcess {
        let config = std::fs::read_to_string(self.data_dir.path().join("server.toml")).unwrap();
        ServerProcess::start(&self.database_url, Some(&self.secret_key()), &config).await
    }

    /// Its secret key file.
    pub fn secret_key(&self) -> PathBuf {
        self.data_dir.path().join("secret.key")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    /// Starts the process (again, on the same address) and waits until it serves.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("server.log"))
            .unwrap();
        let mut command = tokio::process::Command::new(binary("berth-server"));
        if !self.embedded {
            command.arg("--database-url").arg(&self.database_url);
        }
        let child = command
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--config")
            .arg(self.data_dir.path().join("server.toml"))
            .env_remove("BERTH_DATABASE_URL")
            .env_remove("BERTH_CONFIG")
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
        let url = self.url.clone();
        eventually(
            &format!("berth-server at {url} to serve"),
            Duration::from_secs(60),
            || {
                let url = url.clone();
                async move { (health(&url, None).await == Some(ServingStatus::Serving)).then_some(()) }
            },
        )
        .await;
    }

    /// Kills the process with SIGKILL (no drain, no clean-up) and waits for it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops it with SIGTERM (it drains and stops its embedded PostgreSQL) and waits.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }

    /// A handle for the harness's calls (submit, get, tokens, ...) against this process,
    /// with `admin_token` (a replica bootstraps none: pass the first server's).
    pub fn handle(&self, admin_token: &str) -> TestServer {
        TestServer::external(&self.url, admin_token, &self.database_url)
    }

    /// The admin token it bootstrapped (only the first server on a database has one).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        // A server killed here cannot stop its embedded PostgreSQL: do it for it
        // (immediate shutdown), so no postmaster outlives the test.
        if self.embedded
            && let Some(pid) = self.postmaster_pid()
            // The file outlives a killed postmaster, and its pid may be another's now.
            && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.starts_with("postgres"))
        {
            let _ = std::process::Command::new("kill")
                .args(["-QUIT", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}
