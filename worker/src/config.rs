//! The worker's configuration: flags, `BERTH_*` environment variables and a TOML file,
//! in that order of precedence, then defaults. Resolved and checked once at start-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_common::logging::LogFormat;
use serde::Deserialize;

/// `berth-worker`'s command line.
#[derive(Clone, Debug, Default, clap::Parser)]
#[command(
    name = "berth-worker",
    version,
    about = "Berth's worker daemon: runs work requests as Docker containers"
)]
pub struct WorkerArgs {
    /// Server URL [default: http://127.0.0.1:7070]
    #[arg(long, env = "BERTH_SERVER")]
    pub server: Option<String>,
    /// Worker token (berth_wkr_...); prefer --token-file, which wins when both are given
    #[arg(long, env = "BERTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the worker token
    #[arg(long, env = "BERTH_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Worker name [default: the host's FQDN]
    #[arg(long, env = "BERTH_WORKER_NAME")]
    pub name: Option<String>,
    /// Host name or address where clients reach the ports this worker's service replicas
    /// publish [default: the worker name]
    #[arg(long, env = "BERTH_WORKER_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<String>,
    /// How many work requests to run at once [default: 1]
    #[arg(long, env = "BERTH_CONCURRENCY")]
    pub concurrency: Option<u32>,
    /// A static label (repeatable), e.g. --label gpu=yes
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Docker host: unix:///var/run/docker.sock or tcp://host:2376 [default: DOCKER_HOST or the local socket]
    #[arg(long, env = "BERTH_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Use TLS to a tcp:// Docker host, with ca.pem/cert.pem/key.pem from DOCKER_CERT_PATH
    #[arg(long, env = "BERTH_DOCKER_TLS")]
    pub docker_tls: bool,
    /// Directory for log bytes not yet acknowledged by the server [default: ./berth-spool]
    #[arg(long, env = "BERTH_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Directory for the input cache (files by SHA-256, read-only) and each attempt's
    /// input and working dirs; it must be on a path the Docker engine can bind-mount
    /// [default: <spool dir>/files]
    #[arg(long, env = "BERTH_FILES_DIR")]
    pub files_dir: Option<PathBuf>,
    /// CA certificate (PEM) to verify the server's TLS certificate
    #[arg(long, env = "BERTH_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// TOML configuration file
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "BERTH_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// How long SIGTERM waits for running jobs before stopping them [default: 10m]
    #[arg(long, env = "BERTH_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<String>,
    /// How often to look for Berth containers on the engine that no live attempt needs [default: 60s]
    #[arg(long, env = "BERTH_ORPHAN_SWEEP_INTERVAL")]
    pub orphan_sweep_interval: Option<String>,
    /// Serve Prometheus metrics on this address (host:port) at /metrics [default: off]
    #[arg(long, env = "BERTH_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: Option<String>,
    token_file: Option<PathBuf>,
    name: Option<String>,
    advertise_address: Option<String>,
    concurrency: Option<u32>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    docker_host: Option<String>,
    docker_tls: Option<bool>,
    spool_dir: Option<PathBuf>,
    files_dir: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
    log_format: Option<String>,
    drain_timeout: Option<String>,
    orphan_sweep_interval: Option<String>,
    metrics_listen: Option<String>,
}

/// The resolved configuration.
#[derive(Clone)]
pub struct WorkerConfig {
    /// Server URL.
    pub server: String,
    /// The worker token.
    pub token: String,
    /// The name to register as.
    pub name: String,
    /// Where published ports are reached (sent as the `address` fact); the name when unset.
    pub advertise_address: String,
    /// Slots.
    pub concurrency: u32,
    /// Static labels.
    pub labels: BTreeMap<String, String>,
    /// Docker host, if not the default.
    pub docker_host: Option<String>,
    /// TLS to the Docker host.
    pub docker_tls: bool,
    /// Spool directory.
    pub spool_dir: PathBuf,
    /// The input cache and the attempts' input and working dirs (see `inputs`).
    pub files_dir: PathBuf,
    /// CA for the server's certificate.
    pub ca_cert: Option<PathBuf>,
    /// Log format.
    pub log_format: LogFormat,
    /// Drain deadline on SIGTERM.
    pub drain_timeout: Duration,
    /// How often the engine's Berth containers are judged (see `reaper`).
    pub orphan_sweep_interval: Duration,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("server", &self.server)
            .field("token", &"[REDACTED]")
            .field("name", &self.name)
            .field("advertise_address", &self.advertise_address)
            .field("concurrency", &self.concurrency)
            .field("labels", &self.labels)
            .field("docker_host", &self.docker_host)
            .field("spool_dir", &self.spool_dir)
            .field("files_dir", &self.files_dir)
            .finish()
    }
}

/// A configuration mistake, in one line.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

fn duration(what: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text).map_err(|e| {
        ConfigError(format!(
            "{what}: cannot parse {text:?} as a duration ({e}); write e.g. 30s or 10m"
        ))
    })
}

fn read_token(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_owned())
        .map_err(|e| ConfigError(format!("--token-file: cannot read {}: {e}", path.display())))
}

/// The host's fully qualified name, or its plain host name.
pub fn host_name() -> String {
    let fqdn = std::process::Command::new("hostname")
        .arg("-f")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    fqdn.or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
    })
    .unwrap_or_else(|| "berth-worker".to_owned())
}

impl WorkerConfig {
    /// Resolves flags and environment with the file and defaults.
    pub fn resolve(args: &WorkerArgs) -> Result<WorkerConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!("--config: cannot read {}: {e}", path.display()))
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| {
                    ConfigError(format!(
                        "--config: {} is not valid: {}",
                        path.display(),
                        e.to_string().replace('\n', " ")
                    ))
                })?
            }
            None => FileConfig::default(),
        };
        let token = match (&args.token_file, &args.token, &file.token_file) {
            (Some(path), _, _) => read_token(path)?,
            (None, Some(token), _) => token.trim().to_owned(),
            (None, None, Some(path)) => read_token(path)?,
            (None, None, None) => {
                return Err(ConfigError(
                    "no token: pass --token-file (or --token, or BERTH_TOKEN) with a worker token from `berth token create --role worker`".into(),
                ));
            }
        };
        if token.is_empty() {
            return Err(ConfigError("the worker token is empty".into()));
        }
        let concurrency = args.concurrency.or(file.concurrency).unwrap_or(1);
        if !(1..=1024).contains(&concurrency) {
            return Err(ConfigError("--concurrency: use 1 to 1024".into()));
        }
        let mut labels = file.labels;
        for label in &args.labels {
            let (key, value) = label
                .split_once('=')
                .ok_or_else(|| ConfigError(format!("--label: {label:?} is not KEY=VALUE")))?;
            labels.insert(key.trim().to_owned(), value.to_owned());
        }
        let log_format = args
            .log_format
            .clone()
            .or(file.log_format)
            .map(|f| {
                f.parse::<LogFormat>()
                    .map_err(|e| ConfigError(format!("--log-format: {e}")))
            })
            .transpose()?
            .unwrap_or_default();
        let drain_timeout = match args.drain_timeout.clone().or(file.drain_timeout) {
            Some(text) => duration("--drain-timeout", &text)?,
            None => Duration::from_secs(600),
        };
        let orphan_sweep_interval = match args
            .orphan_sweep_interval
            .clone()
            .or(file.orphan_sweep_interval)
        {
            Some(text) => duration("--orphan-sweep-interval", &text)?,
            None => Duration::from_secs(60),
        };
        if orphan_sweep_interval < Duration::from_millis(100) {
            return Err(ConfigError(
                "--orphan-sweep-interval: use at least 100ms".into(),
            ));
        }
        let metrics_listen = args
            .metrics_listen
            .clone()
            .or(file.metrics_listen)
            .filter(|a| !a.trim().is_empty())
            .map(|a| {
                a.trim().parse::<std::net::SocketAddr>().map_err(|e| {
                    ConfigError(format!(
                        "--metrics-listen: {a:?} is not an address ({e}); give host:port, e.g. 127.0.0.1:9102"
                    ))
                })
            })
            .transpose()?;
        let spool_dir = args
            .spool_dir
            .clone()
            .or(file.spool_dir)
            .unwrap_or_else(|| PathBuf::from("berth-spool"));
        let files_dir = args
            .files_dir
            .clone()
            .or(file.files_dir)
            .unwrap_or_else(|| spool_dir.join("files"));
        let name = args.name.clone().or(file.name).unwrap_or_else(host_name);
        let advertise_address = args
            .advertise_address
            .clone()
            .or(file.advertise_address)
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| name.clone());
        Ok(WorkerConfig {
            server: args
                .server
                .clone()
                .or(file.server)
                .unwrap_or_else(|| "http://127.0.0.1:7070".to_owned()),
            token,
            name,
            advertise_address,
            concurrency,
            labels,
            docker_host: args.docker_host.clone().or(file.docker_host),
            docker_tls: args.docker_tls || file.docker_tls.unwrap_or(false),
            spool_dir,
            files_dir,
            ca_cert: args.ca_cert.clone().or(file.ca_cert),
            log_format,
            drain_timeout,
            orphan_sweep_interval,
            metrics_listen,
        })
    }
}
