//! The server's configuration: command-line flags, `BERTH_*` environment variables and a
//! TOML file, in that order of precedence, then built-in defaults.
//!
//! Everything is resolved and checked once at start-up into [`Config`], so a mistake is
//! one clear line before anything starts, never a failure later.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_common::logging::LogFormat;
use berth_files::store::StoreConfig;
use serde::Deserialize;

use berth_core::artifacts::gc::GcSettings;
use berth_core::artifacts::stores::{FilesSettings, StoreSettings};
use berth_core::events::relay::RelaySettings;
use berth_core::live::AgentSettings;
use berth_core::topics::TopicSettings;
use berth_core::work::spec::SpecDefaults;

/// Flags shared by every `berth-server` subcommand.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on for gRPC [default: 127.0.0.1:7070]
    #[arg(long, env = "BERTH_LISTEN", global = true)]
    pub listen: Option<String>,
    /// Also serve the web dashboard (alone, no gRPC) on this address, e.g. 127.0.0.1:7080
    #[arg(long, env = "BERTH_UI_LISTEN", global = true)]
    pub ui_listen: Option<String>,
    /// Directory for the server's own files: embedded PostgreSQL, admin.token,
    /// secret.key [default: ./berth-data]
    #[arg(long, env = "BERTH_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL; without one the server runs its own private PostgreSQL in the data dir
    #[arg(
        long,
        env = "BERTH_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// CA certificate (PEM) for TLS to the database (used with sslmode=require/verify-full)
    #[arg(long, env = "BERTH_DATABASE_CA_CERT", global = true)]
    pub database_ca_cert: Option<PathBuf>,
    /// TOML configuration file
    #[arg(long, env = "BERTH_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// TLS certificate chain (PEM) to serve gRPC over TLS; needs --tls-key
    #[arg(long, env = "BERTH_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); needs --tls-cert
    #[arg(long, env = "BERTH_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "BERTH_LOG_FORMAT", global = true)]
    pub log_format: Option<String>,
    /// File holding the 32-byte key that encrypts secret env values at rest
    /// [default: <data-dir>/secret.key]
    #[arg(long, env = "BERTH_SECRET_KEY_FILE", global = true)]
    pub secret_key_file: Option<PathBuf>,
    /// Directory holding initdb, pg_ctl and postgres for the embedded database
    #[arg(long, env = "BERTH_PG_BIN_DIR", global = true)]
    pub pg_bin_dir: Option<PathBuf>,
}

/// The TOML file's shape. Unknown keys are refused so typos do not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    ui_listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    database_ca_cert: Option<PathBuf>,
    database_pool_size: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    log_format: Option<String>,
    secret_key_file: Option<PathBuf>,
    pg_bin_dir: Option<PathBuf>,
    embedded_database_timeout: Option<String>,
    shutdown_grace: Option<String>,
    heartbeat_interval: Option<String>,
    lease_ttl: Option<String>,
    handoff_deadline: Option<String>,
    sweep_interval: Option<String>,
    max_log_bytes: Option<u64>,
    outbox_slack: Option<usize>,
    stop_wait: Option<String>,
    trigger_interval: Option<String>,
    topic_ping_interval: Option<String>,
    topic_unknown_after: Option<String>,
    topic_offline_after: Option<String>,
    topic_dedupe_window: Option<String>,
    topic_gc_interval: Option<String>,
    topic_response_ttl: Option<String>,
    #[serde(default)]
    defaults: FileDefaults,
    files: Option<FileFiles>,
    events: Option<FileEvents>,
    #[serde(default)]
    notifications: FileNotifications,
}

/// `[notifications]`: how webhooks and email are delivered. Each `smtp_*` key and
/// `webhook_allow_cidrs` may also come from the environment (`BERTH_SMTP_HOST`, ...,
/// `BERTH_SMTP_PASSWORD`, `BERTH_WEBHOOK_ALLOW_CIDRS` comma-separated), which wins over
/// the file, so the password need not be written in it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNotifications {
    /// One webhook request's whole time; default 10s.
    webhook_timeout: Option<String>,
    /// The waits before each retry; default 5s, 5m, 30m, 2h, 5h, 10h, 10h.
    webhook_retry_schedule: Option<Vec<String>>,
    /// Deliveries finally failed in a row that disable a channel; default 5, 0 never.
    webhook_failure_limit: Option<u32>,
    /// Addresses webhooks may reach although the guard refuses them (CIDRs).
    webhook_allow_cidrs: Option<Vec<String>>,
    /// Days finished deliveries and their attempts are kept; default 30.
    delivery_log_days: Option<u32>,
    /// The longest wait between two looks for due deliveries; default 1s.
    poll_interval: Option<String>,
    smtp_host: Option<String>,
    /// Default 587 (25 with smtp_tls = "none", 465 with "tls").
    smtp_port: Option<u16>,
    smtp_from: Option<String>,
    /// `none`, `starttls` (default) or `tls`.
    smtp_tls: Option<String>,
    smtp_username: Option<String>,
    smtp_password: Option<String>,
}

/// The environment variable `name`, if set and not empty.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The notification settings from `[notifications]` and the environment, checked.
fn notify_settings(
    file: FileNotifications,
) -> Result<berth_core::notifications::NotifySettings, ConfigError> {
    use berth_core::notifications::{NotifySettings, SmtpSettings, SmtpTls};
    let mut settings = NotifySettings::default();
    let bad = |key: &str, why: String| ConfigError(format!("[notifications] {key}: {why}"));
    if let Some(text) = &file.webhook_timeout {
        let timeout = duration("[notifications] webhook_timeout", text)?;
        if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&timeout) {
            return Err(bad("webhook_timeout", "use 100ms to 5m".into()));
        }
        settings.webhook_timeout = timeout;
    }
    if let Some(list) = &file.webhook_retry_schedule {
        if list.len() > 20 {
            return Err(bad("webhook_retry_schedule", "at most 20 waits".into()));
        }
        let mut schedule = Vec::with_capacity(list.len());
        for text in list {
            let wait = duration("[notifications] webhook_retry_schedule", text)?;
            if !(Duration::from_millis(1)..=Duration::from_secs(7 * 24 * 3600)).contains(&wait) {
                return Err(bad(
                    "webhook_retry_schedule",
                    format!("{text:?}: each wait is 1ms to 7d"),
                ));
            }
            schedule.push(wait);
        }
        settings.retry_schedule = schedule;
    }
    if let Some(limit) = file.webhook_failure_limit {
        if limit > 1000 {
            return Err(bad("webhook_failure_limit", "use 0 (never) to 1000".into()));
        }
        settings.failure_limit = limit;
    }
    let cidrs = env_var("BERTH_WEBHOOK_ALLOW_CIDRS")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .or(file.webhook_allow_cidrs);
    if let Some(cidrs) = cidrs {
        settings.allow_cidrs = berth_core::notifications::ssrf::parse_cidrs(&cidrs)
            .map_err(|why| bad("webhook_allow_cidrs", why))?;
    }
    if let Some(days) = file.delivery_log_days {
        if !(1..=3650).contains(&days) {
            return Err(bad("delivery_log_days", "use 1 to 3650".into()));
        }
        settings.log_retention = Duration::from_secs(u64::from(days) * 24 * 3600);
    }
    if let Some(text) = &file.poll_interval {
        let interval = duration("[notifications] poll_interval", text)?;
        if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&interval) {
            return Err(bad("poll_interval", "use 10ms to 60s".into()));
        }
        settings.poll_interval = interval;
    }
    let host = env_var("BERTH_SMTP_HOST").or(file.smtp_host);
    let from = env_var("BERTH_SMTP_FROM").or(file.smtp_from);
    let tls_text = env_var("BERTH_SMTP_TLS").or(file.smtp_tls);
    let port_text = env_var("BERTH_SMTP_PORT");
    let username = env_var("BERTH_SMTP_USERNAME").or(file.smtp_username);
    let password = env_var("BERTH_SMTP_PASSWORD").or(file.smtp_password);
    match host {
        None => {
            if from.is_some() || username.is_some() || password.is_some() {
                return Err(bad(
                    "smtp_host",
                    "other smtp_* keys are set but smtp_host is not; give the relay's host".into(),
                ));
            }
        }
        Some(host) => {
            let tls = match tls_text {
                None => SmtpTls::default(),
                Some(text) => SmtpTls::parse(text.trim()).ok_or_else(|| {
                    bad("smtp_tls", format!("{text:?}: use none, starttls or tls"))
                })?,
            };
            let port = match port_text {
                Some(text) => text
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad("smtp_port", format!("{text:?}: use 1 to 65535")))?,
                None => match file.smtp_port {
                    Some(0) => return Err(bad("smtp_port", "use 1 to 65535".into())),
                    Some(port) => port,
                    None => match tls {
                        SmtpTls::None => 25,
                        SmtpTls::Starttls => 587,
                        SmtpTls::Tls => 465,
                    },
                },
            };
            let Some(from) = from else {
                return Err(bad(
                    "smtp_from",
                    "is required with smtp_host: the From address, e.g. berth@example.com".into(),
                ));
            };
            if username.is_some() != password.is_some() {
                return Err(bad(
                    "smtp_username",
                    "smtp_username and smtp_password go together (the password may come from BERTH_SMTP_PASSWORD)".into(),
                ));
            }
            let smtp = SmtpSettings {
                host: host.trim().to_owned(),
                port,
                from,
                tls,
                username,
                password,
            };
            berth_core::notifications::email::Mailer::new(&smtp, settings.webhook_timeout)
                .map_err(|why| ConfigError(format!("[notifications] {why}")))?;
            settings.smtp = Some(smtp);
        }
    }
    Ok(settings)
}

/// `[events]`: the relay of Berth's own events onto the system topics.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEvents {
    /// The longest time between two relay passes; default 200ms.
    relay_interval: Option<String>,
    /// Events relayed per transaction; default 500.
    relay_batch: Option<u32>,
    /// How long relayed events stay in the outbox; default 1h.
    retention: Option<String>,
}

/// The relay's settings from `[events]`, each checked against its bounds.
fn relay_settings(events: Option<&FileEvents>) -> Result<RelaySettings, ConfigError> {
    let mut relay = RelaySettings::default();
    let Some(events) = events else {
        return Ok(relay);
    };
    if let Some(text) = &events.relay_interval {
        relay.interval = duration("[events] relay_interval", text)?;
        if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&relay.interval) {
            return Err(ConfigError(format!(
                "[events] relay_interval: {text} is out of bounds; use 10ms to 10s"
            )));
        }
    }
    if let Some(batch) = events.relay_batch {
        if !(1..=10_000).contains(&batch) {
            return Err(ConfigError(format!(
                "[events] relay_batch: {batch} is out of bounds; use 1 to 10000"
            )));
        }
        relay.batch = batch;
    }
    if let Some(text) = &events.retention {
        relay.retention = duration("[events] retention", text)?;
        if !(Duration::from_secs(60)..=Duration::from_secs(30 * 86_400)).contains(&relay.retention)
        {
            return Err(ConfigError(format!(
                "[events] retention: {text} is out of bounds; use 1m to 30d"
            )));
        }
    }
    Ok(relay)
}

/// `[files]`: the file stores artifacts are kept in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFiles {
    /// The store workspaces write to; default `local`.
    default_store: Option<String>,
    /// `[files.stores.NAME]`: each store.
    #[serde(default)]
    stores: std::collections::BTreeMap<String, FileStoreEntry>,
    /// `[files.workspaces]`: workspace name = store name.
    #[serde(default)]
    workspaces: std::collections::BTreeMap<String, String>,
    /// Time between passes of the collector; default 5m.
    gc_interval: Option<String>,
    /// How long a file stays unreferenced before its bytes are deleted; default 1h.
    gc_grace: Option<String>,
    /// How old an object no row names must be before it is deleted; default 24h.
    orphan_age: Option<String>,
    /// How long an upload may go without a part before it is aborted; default 24h.
    stale_upload_age: Option<String>,
}

/// The collector's settings from `[files]`.
fn gc_settings(files: Option<&FileFiles>) -> Result<GcSettings, ConfigError> {
    let mut gc = GcSettings::default();
    let Some(files) = files else {
        return Ok(gc);
    };
    if let Some(text) = &files.gc_interval {
        gc.interval = duration("[files] gc_interval", text)?;
    }
    if let Some(text) = &files.gc_grace {
        gc.grace = duration("[files] gc_grace", text)?;
    }
    if let Some(text) = &files.orphan_age {
        gc.orphan_age = duration("[files] orphan_age", text)?;
    }
    if let Some(text) = &files.stale_upload_age {
        gc.stale_upload_age = duration("[files] stale_upload_age", text)?;
    }
    gc.check()
        .map_err(|e| ConfigError(format!("[files] {e}")))?;
    Ok(gc)
}

/// `[files.stores.NAME]`: one store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "backend", rename_all = "lowercase")]
enum FileStoreEntry {
    /// A directory; relative paths are under the data directory. Default `files`.
    Local {
        path: Option<PathBuf>,
        max_size: Option<u64>,
    },
    /// An S3-compatible bucket. Credentials are read from the environment variables
    /// named by `access_key_id_env` and `secret_access_key_env` (default
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`), so they need not be in the file.
    S3 {
        endpoint: Option<String>,
        bucket: String,
        region: Option<String>,
        #[serde(default = "default_true")]
        path_style: bool,
        access_key_id_env: Option<String>,
        secret_access_key_env: Option<String>,
        max_size: Option<u64>,
    },
}

fn default_true() -> bool {
    true
}

fn files_settings(data_dir: &Path, files: Option<FileFiles>) -> Result<FilesSettings, ConfigError> {
    let Some(files) = files else {
        return Ok(FilesSettings::local(data_dir.join("files")));
    };
    let mut settings = FilesSettings {
        stores: Vec::new(),
        default_store: files.default_store.unwrap_or_else(|| "local".into()),
        workspaces: files.workspaces,
    };
    for (name, entry) in files.stores {
        let (config, max_size) = match entry {
            FileStoreEntry::Local { path, max_size } => {
                let root = match path {
                    Some(p) if p.is_absolute() => p,
                    Some(p) => data_dir.join(p),
                    None => data_dir.join("files"),
                };
                (StoreConfig::Local { root }, max_size)
            }
            FileStoreEntry::S3 {
                endpoint,
                bucket,
                region,
                path_style,
                access_key_id_env,
                secret_access_key_env,
                max_size,
            } => {
                let env = |var: Option<String>, default: &str| {
                    let var = var.unwrap_or_else(|| default.to_owned());
                    std::env::var(&var).map_err(|_| {
                        ConfigError(format!(
                            "[files.stores.{name}]: the environment variable {var} (its credentials) is not set"
                        ))
                    })
                };
                if let Some(endpoint) = &endpoint
                    && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
                {
                    return Err(ConfigError(format!(
                        "[files.stores.{name}] endpoint: {endpoint:?} must start with http:// or https://"
                    )));
                }
                (
                    StoreConfig::S3 {
                        endpoint,
                        bucket,
                        region: region.unwrap_or_else(|| "us-east-1".into()),
                        access_key_id: env(access_key_id_env, "AWS_ACCESS_KEY_ID")?,
                        secret_access_key: env(secret_access_key_env, "AWS_SECRET_ACCESS_KEY")?,
                        path_style,
                    },
                    max_size,
                )
            }
        };
        settings.stores.push(StoreSettings {
            name,
            config,
            max_size,
        });
    }
    if !settings.stores.iter().any(|s| s.name == "local") && settings.default_store == "local" {
        // The built-in local store stays available unless the config names another default.
        settings.stores.push(StoreSettings {
            name: "local".into(),
            config: StoreConfig::Local {
                root: data_dir.join("files"),
            },
            max_size: None,
        });
    }
    settings
        .check()
        .map_err(|e| ConfigError(format!("[files]: {e}")))?;
    Ok(settings)
}

/// `[defaults]`: limits given to work requests that do not set them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDefaults {
    memory_bytes: Option<u64>,
    cpus: Option<f64>,
    pids_limit: Option<i64>,
    timeout: Option<String>,
    stop_grace_period: Option<String>,
}

/// The resolved configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where the dashboard also listens on its own (`--ui-listen`), if anywhere.
    pub ui_listen: Option<SocketAddr>,
    /// The file stores (`[files]`); one local store in the data directory by default.
    pub files: FilesSettings,
    /// The collector of expired artifacts and unreferenced files (`[files]` gc_*).
    pub gc: GcSettings,
    /// The limits of one artifact (files, total size); the defaults, lowered by tests.
    pub artifact_limits: berth_core::artifacts::rules::ArtifactLimits,
    /// Absolute data directory.
    pub data_dir: PathBuf,
    /// External database URL; `None` runs the embedded PostgreSQL.
    pub database_url: Option<String>,
    /// CA for database TLS.
    pub database_ca_cert: Option<PathBuf>,
    /// Pool size.
    pub database_pool_size: usize,
    /// Certificate and key for serving TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Log format.
    pub log_format: LogFormat,
    /// Secret key file.
    pub secret_key_file: PathBuf,
    /// PostgreSQL binaries for the embedded database.
    pub pg_bin_dir: Option<PathBuf>,
    /// How long the embedded PostgreSQL may take to start or stop.
    pub embedded_database_timeout: Duration,
    /// How long in-flight calls get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Defaults for unset work request limits.
    pub spec_defaults: SpecDefaults,
    /// Timing of the worker protocol and the log cap.
    pub agent: AgentSettings,
    /// The longest time between two passes over trigger rules (they also run when the
    /// next schedule time comes); default 1s.
    pub trigger_interval: Duration,
    /// The relay of Berth's own events (`[events]`).
    pub relay: RelaySettings,
    /// How notifications are delivered (`[notifications]`): webhook timeout, retries,
    /// the failure limit, the SSRF allow-list, the log's retention, the SMTP relay.
    pub notifications: berth_core::notifications::NotifySettings,
    /// Timings of topics: pings, availability windows, the dedupe window, the collector's
    /// pass, response topics' time to live (`topic_*` keys).
    pub topics: TopicSettings,
}

/// A configuration mistake, said in one line.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

fn duration(what: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text).map_err(|e| {
        ConfigError(format!(
            "{what}: cannot parse {text:?} as a duration ({e}); write e.g. 30s or 5m"
        ))
    })
}

impl Config {
    /// Resolves flags and environment (already merged by clap) with the file and defaults.
    pub fn resolve(args: &ServerArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let topics = topic_settings(&file)?;
        let listen_text = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:7070".to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ConfigError(format!(
                "--listen: {listen_text:?} is not an address with a port, e.g. 127.0.0.1:7070 or [::]:7070"
            ))
        })?;
        let ui_listen = match args.ui_listen.clone().or(file.ui_listen) {
            None => None,
            Some(text) if text.trim().is_empty() => None,
            Some(text) => Some(text.trim().parse::<SocketAddr>().map_err(|_| {
                ConfigError(format!(
                    "--ui-listen: {text:?} is not an address with a port, e.g. 127.0.0.1:7080 or [::]:7080"
                ))
            })?),
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("berth-data"));
        let data_dir = std::path::absolute(&data_dir).map_err(|e| {
            ConfigError(format!(
                "--data-dir: cannot resolve {}: {e}",
                data_dir.display()
            ))
        })?;
        let database_url = args
            .database_url
            .clone()
            .or(file.database_url)
            .filter(|url| !url.trim().is_empty());
        if let Some(url) = &database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError(
                "--database-url: must start with postgres:// or postgresql://".into(),
            ));
        }
        let tls = match (
            args.tls_cert.clone().or(file.tls_cert),
            args.tls_key.clone().or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError("--tls-cert needs --tls-key".into())),
            (None, Some(_)) => return Err(ConfigError("--tls-key needs --tls-cert".into())),
        };
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
        let secret_key_file = args
            .secret_key_file
            .clone()
            .or(file.secret_key_file)
            .unwrap_or_else(|| data_dir.join("secret.key"));
        let shutdown_grace = match file.shutdown_grace {
            Some(text) => duration("shutdown_grace", &text)?,
            None => Duration::from_secs(10),
        };
        let embedded_database_timeout = match &file.embedded_database_timeout {
            Some(text) => {
                let timeout = duration("embedded_database_timeout", text)?;
                if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&timeout) {
                    return Err(ConfigError(
                        "embedded_database_timeout: use 1s to 1h".into(),
                    ));
                }
                timeout
            }
            None => Duration::from_secs(60),
        };
        let database_pool_size = file.database_pool_size.unwrap_or(16);
        if !(1..=1000).contains(&database_pool_size) {
            return Err(ConfigError("database_pool_size: use 1 to 1000".into()));
        }
        let mut spec_defaults = SpecDefaults::default();
        if let Some(m) = file.defaults.memory_bytes {
            spec_defaults.memory_bytes = m;
        }
        if let Some(c) = file.defaults.cpus {
            spec_defaults.cpus = c;
        }
        if let Some(p) = file.defaults.pids_limit {
            spec_defaults.pids_limit = p;
        }
        if let Some(t) = &file.defaults.timeout {
            spec_defaults.timeout = duration("defaults.timeout", t)?;
        }
        if let Some(t) = &file.defaults.stop_grace_period {
            spec_defaults.stop_grace_period = duration("defaults.stop_grace_period", t)?;
        }
        check_defaults(&spec_defaults)?;
        let trigger_interval = match &file.trigger_interval {
            Some(text) => {
                let interval = duration("trigger_interval", text)?;
                if !(Duration::from_millis(50)..=Duration::from_secs(60)).contains(&interval) {
                    return Err(ConfigError("trigger_interval: use 50ms to 60s".into()));
                }
                interval
            }
            None => Duration::from_secs(1),
        };
        let mut agent = AgentSettings::default();
        if let Some(text) = &file.heartbeat_interval {
            agent.heartbeat_interval = duration("heartbeat_interval", text)?;
        }
        if let Some(text) = &file.lease_ttl {
            agent.lease_ttl = duration("lease_ttl", text)?;
        }
        if let Some(text) = &file.handoff_deadline {
            agent.handoff_deadline = duration("handoff_deadline", text)?;
        }
        if let Some(text) = &file.sweep_interval {
            agent.sweep_interval = duration("sweep_interval", text)?;
            if !(Duration::from_millis(100)..=Duration::from_secs(3600))
                .contains(&agent.sweep_interval)
            {
                return Err(ConfigError("sweep_interval: use 100ms to 1h".into()));
            }
        }
        if let Some(text) = &file.stop_wait {
            agent.stop_wait = duration("stop_wait", text)?;
            if agent.stop_wait > Duration::from_secs(24 * 3600) {
                return Err(ConfigError("stop_wait: use at most 24h".into()));
            }
        }
        if agent.heartbeat_interval < Duration::from_secs(1)
            || agent.lease_ttl < agent.heartbeat_interval * 2
        {
            return Err(ConfigError(
                "heartbeat_interval must be at least 1s and lease_ttl at least twice it".into(),
            ));
        }
        if let Some(bytes) = file.max_log_bytes {
            agent.max_log_bytes = bytes;
        }
        if let Some(slack) = file.outbox_slack {
            if slack > 100_000 {
                return Err(ConfigError("outbox_slack: use 0 to 100000 messages".into()));
            }
            agent.outbox_slack = slack;
        }
        let notifications = notify_settings(file.notifications)?;
        let gc = gc_settings(file.files.as_ref())?;
        let relay = relay_settings(file.events.as_ref())?;
        let files = files_settings(&data_dir, file.files)?;
        Ok(Config {
            files,
            gc,
            artifact_limits: Default::default(),
            topics,
            agent,
            trigger_interval,
            relay,
            notifications,
            listen,
            ui_listen,
            data_dir,
            database_url,
            database_ca_cert: args.database_ca_cert.clone().or(file.database_ca_cert),
            database_pool_size,
            tls,
            log_format,
            secret_key_file,
            pg_bin_dir: args.pg_bin_dir.clone().or(file.pg_bin_dir),
            embedded_database_timeout,
            shutdown_grace,
            spec_defaults,
        })
    }
}

/// A `topic_*` duration key from the file, within `range` (`what` says the range).
fn topic_duration(
    key: &str,
    text: Option<&String>,
    default: Duration,
    range: std::ops::RangeInclusive<Duration>,
    what: &str,
) -> Result<Duration, ConfigError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let value = duration(key, text)?;
    if !range.contains(&value) {
        return Err(ConfigError(format!(
            "{key}: {text:?} is out of range; use {what}"
        )));
    }
    Ok(value)
}

/// The `topic_*` keys, checked one by one and together.
fn topic_settings(file: &FileConfig) -> Result<TopicSettings, ConfigError> {
    let d = TopicSettings::default();
    let secs = Duration::from_secs;
    let settings = TopicSettings {
        ping_interval: topic_duration(
            "topic_ping_interval",
            file.topic_ping_interval.as_ref(),
            d.ping_interval,
            secs(1)..=secs(3600),
            "1s to 1h",
        )?,
        unknown_after: topic_duration(
            "topic_unknown_after",
            file.topic_unknown_after.as_ref(),
            d.unknown_after,
            secs(1)..=secs(24 * 3600),
            "1s to 24h",
        )?,
        offline_after: topic_duration(
            "topic_offline_after",
            file.topic_offline_after.as_ref(),
            d.offline_after,
            Duration::ZERO..=secs(3600),
            "0s to 1h",
        )?,
        dedupe_window: topic_duration(
            "topic_dedupe_window",
            file.topic_dedupe_window.as_ref(),
            d.dedupe_window,
            secs(60)..=secs(365 * 24 * 3600),
            "1m to 365 days",
        )?,
        gc_interval: topic_duration(
            "topic_gc_interval",
            file.topic_gc_interval.as_ref(),
            d.gc_interval,
            Duration::from_millis(100)..=secs(3600),
            "100ms to 1h",
        )?,
        response_ttl: topic_duration(
            "topic_response_ttl",
            file.topic_response_ttl.as_ref(),
            d.response_ttl,
            secs(1)..=berth_core::topics::publish::MAX_RESPONSE_TTL,
            "1s to 7 days",
        )?,
        ..d
    };
    if settings.unknown_after < settings.ping_interval {
        return Err(ConfigError(format!(
            "topic_unknown_after ({:?}) is shorter than topic_ping_interval ({:?}): every topic would turn unknown between two pings; make it at least as long",
            settings.unknown_after, settings.ping_interval
        )));
    }
    Ok(settings)
}

/// Runs the configured defaults through the same validation a submission gets, so a
/// default no request could set is refused at start-up.
fn check_defaults(defaults: &SpecDefaults) -> Result<(), ConfigError> {
    let probe = berth_core::work::spec::SpecInput {
        image: "berth/config-check".into(),
        ..Default::default()
    };
    berth_core::work::spec::validate_spec(&probe, defaults)
        .map(|_| ())
        .map_err(|e| ConfigError(format!("[defaults] {e}")))
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("--config: cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        ConfigError(format!(
            "--config: {} is not valid: {}",
            path.display(),
            e.to_string().replace('\n', " ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = Config::resolve(&ServerArgs::default()).expect("resolve");
        assert_eq!(config.listen.to_string(), "127.0.0.1:7070");
        assert!(config.data_dir.is_absolute());
        assert!(config.data_dir.ends_with("berth-data"));
        assert!(config.database_url.is_none());
        assert_eq!(config.secret_key_file, config.data_dir.join("secret.key"));
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/berth\"\n[defaults]\ntimeout = \"5m\"\n",
        )
        .expect("write");
        let args = ServerArgs {
            listen: Some("127.0.0.1:9100".into()),
            config: Some(path),
            ..ServerArgs::default()
        };
        let config = Config::resolve(&args).expect("resolve");
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.data_dir, PathBuf::from("/srv/berth"));
        assert_eq!(config.spec_defaults.timeout, Duration::from_secs(300));
    }

    #[test]
    fn sweep_interval_is_read_from_the_file_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("berth.toml");
        let args = ServerArgs {
            config: Some(path.clone()),
            ..ServerArgs::default()
        };
        std::fs::write(&path, "sweep_interval = \"30s\"\n").expect("write");
        let config = Config::resolve(&args).expect("resolve");
        assert_eq!(config.agent.sweep_interval, Duration::from_secs(30));
        std::fs::write(&path, "sweep_interval = \"1ms\"\n").expect("write");
        let error = Config::resolve(&args).expect_err("too short");
        assert!(error.to_string().contains("sweep_interval"), "{error}");
        let default = Config::resolve(&ServerArgs::default()).expect("resolve");
        assert_eq!(default.agent.sweep_interval, Duration::from_secs(1));
    }

    #[test]
    fn the_collectors_settings_are_read_from_files_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("berth.toml");
        let args = ServerArgs {
            config: Some(path.clone()),
            ..ServerArgs::default()
        };
        std::fs::write(
            &path,
            "[files]\ngc_interval = \"30s\"\ngc_grace = \"10m\"\norphan_age = \"2h\"\nstale_upload_age = \"3h\"\n",
        )
        .expect("write");
        let config = Config::resolve(&args).expect("resolve");
        assert_eq!(config.gc.interval, Duration::from_secs(30));
        assert_eq!(config.gc.grace, Duration::from_secs(600));
        assert_eq!(config.gc.orphan_age, Duration::from_secs(7200));
        assert_eq!(config.gc.stale_upload_age, Duration::from_secs(3 * 3600));
        std::fs::write(&path, "[files]\norphan_age = \"5s\"\n").expect("write");
        let error = Config::resolve(&args).expect_err("too young");
        assert!(error.to_string().contains("orphan_age"), "{error}");
        std::fs::write(&path, "[files]\ngc_grace = \"soon\"\n").expect("write");
        let error = Config::resolve(&args).expect_err("not a duration");
        assert!(error.to_string().contains("gc_grace"), "{error}");
        let default = Config::resolve(&ServerArgs::default()).expect("resolve");
        assert_eq!(default.gc.grace, Duration::from_secs(3600));
    }

    #[test]
    fn the_relays_settings_are_read_from_the_file_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("berth.toml");
        let args = ServerArgs {
            config: Some(path.clone()),
            ..ServerArgs::default()
        };
        std::fs::write(
            &path,
            "[events]\nrelay_interval = \"50ms\"\nrelay_batch = 100\nretention = \"2h\"\n",
        )
        .expect("write");
        let config = Config::resolve(&args).expect("resolve");
        assert_eq!(config.relay.interval, Duration::from_millis(50));
        assert_eq!(config.relay.batch, 100);
        assert_eq!(config.relay.retention, Duration::from_secs(7200));
        for (text, key) in [
            ("relay_interval = \"1ms\"", "relay_interval"),
            ("relay_interval = \"1m\"", "relay_interval"),
            ("relay_batch = 0", "relay_batch"),
            ("relay_batch = 20000", "relay_batch"),
            ("retention = \"10s\"", "retention"),
            ("retention = \"forever\"", "retention"),
        ] {
            std::fs::write(&path, format!("[events]\n{text}\n")).expect("write");
            let error = Config::resolve(&args).expect_err(text);
            assert!(error.to_string().contains(key), "{text}: {error}");
        }
        let default = Config::resolve(&ServerArgs::default()).expect("resolve");
        assert_eq!(default.relay, RelaySettings::default());
    }

    #[test]
    fn outbox_slack_is_read_from_the_file_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("berth.toml");
        let args = ServerArgs {
            config: Some(path.clone()),
            ..ServerArgs::default()
        };
        std::fs::write(&path, "outbox_slack = 0\n").expect("write");
        assert_eq!(
            Config::resolve(&args).expect("resolve").agent.outbox_slack,
            0
        );
        std::fs::write(&path, "outbox_slack = 1000000\n").expect("write");
        let error = Config::resolve(&args).expect_err("too big");
        assert!(error.to_string().contains("outbox_slack"), "{error}");
        let default = Config::resolve(&ServerArgs::default()).expect("resolve");
        assert_eq!(default.agent.outbox_slack, 32);
    }

    #[test]
    fn stop_wait_is_read_from_the_file_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("berth.toml");
        let args = ServerArgs {
            config: Some(path.clone()),
            ..ServerArgs::default()
        };
        std::fs::write(&path, "stop_wait = \"2m\"\n").expect("write");
        let config = Config::resolve(&args).expect("resolve");
        assert_eq!(config.agent.stop_wait, Duration::from_secs(120));
        std::fs::write(&path, "stop_wait = \"30d\"\n").expect("write");
        let error = Config::resolve(&args).expect_err("too long");
        assert!(error.to_string().contains("stop_wait"), "{error}");
        let default = Config::resolve(&ServerArgs::default()).expect("resolve");
        assert_eq!(default.agent.stop_wait, Duration::from_secs(60));
    }

    #[test]
    fn notification_settings_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("berth.toml");
        let args = ServerArgs {
            config: Some(path.clone()),
            ..ServerArgs::default()
        };
        std::fs::write(
            &path,
            "[notifications]\nwebhook_timeout = \"3s\"\nwebhook_retry_schedule = [\"1s\", \"1m\"]\n\
             webhook_failure_limit = 2\nwebhook_allow_cidrs = [\"127.0.0.1\", \"10.0.0.0/8\"]\n\
             smtp_host = \"mail.example.com\"\nsmtp_from = \"berth@example.com\"\nsmtp_tls = \"tls\"\n\
             smtp_username = \"berth\"\nsmtp_password = \"hunter2\"\n",
        )
        .expect("write");
        let config = Config::resolve(&args).expect("resolve");
        let n = &config.notifications;
        assert_eq!(n.webhook_timeout, Duration::from_secs(3));
        assert_eq!(
            n.retry_schedule,
            vec![Duration::from_secs(1), Duration::from_secs(60)]
        );
        assert_eq!(n.failure_limit, 2);
        assert_eq!(n.allow_cidrs.len(), 2);
        let smtp = n.smtp.as_ref().expect("smtp");
        assert_eq!(smtp.port, 465);
        assert!(
            !format!("{config:?}").contains("hunter2"),
            "the password is in Debug"
        );
        for (text, key) in [
            ("smtp_host = \"h\"\n", "smtp_from"),
            ("smtp_from = \"a@b.c\"\n", "smtp_host"),
            (
                "smtp_host = \"h\"\nsmtp_from = \"a@b.c\"\nsmtp_tls = \"ssl\"\n",
                "smtp_tls",
            ),
            ("smtp_host = \"h\"\nsmtp_from = \"nope\"\n", "smtp_from"),
            (
                "smtp_host = \"h\"\nsmtp_from = \"a@b.c\"\nsmtp_username = \"u\"\n",
                "smtp_username",
            ),
            (
                "webhook_allow_cidrs = [\"localhost\"]\n",
                "webhook_allow_cidrs",
            ),
            ("webhook_timeout = \"1h\"\n", "webhook_timeout"),
            (
                "webhook_retry_schedule = [\"30d\"]\n",
                "webhook_retry_schedule",
            ),
            ("delivery_log_days = 0\n", "delivery_log_days"),
        ] {
            std::fs::write(&path, format!("[notifications]\n{text}")).expect("write");
            let error = Config::resolve(&args).expect_err(text);
            assert!(error.to_string().contains(key), "{text}: {error}");
        }
        let default = Config::resolve(&ServerArgs::default()).expect("resolve");
        assert!(default.notifications.smtp.is_none());
        assert_eq!(default.notifications.retry_schedule.len(), 7);
    }

    #[test]
    fn topic_timings_are_read_from_the_file_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("berth.toml");
        let args = ServerArgs {
            config: Some(path.clone()),
            ..ServerArgs::default()
        };
        std::fs::write(
            &path,
            "topic_ping_interval = \"30s\"\ntopic_unknown_after = \"1m\"\ntopic_offline_after = \"5s\"\ntopic_dedupe_window = \"2h\"\ntopic_gc_interval = \"1s\"\ntopic_response_ttl = \"10m\"\n",
        )
        .expect("write");
        let topics = Config::resolve(&args).expect("resolve").topics;
        assert_eq!(topics.ping_interval, Duration::from_secs(30));
        assert_eq!(topics.unknown_after, Duration::from_secs(60));
        assert_eq!(topics.offline_after, Duration::from_secs(5));
        assert_eq!(topics.dedupe_window, Duration::from_secs(7200));
        assert_eq!(topics.gc_interval, Duration::from_secs(1));
        assert_eq!(topics.response_ttl, Duration::from_secs(600));
        for (text, key) in [
            ("topic_gc_interval = \"1ms\"\n", "topic_gc_interval"),
            ("topic_dedupe_window = \"never\"\n", "topic_dedupe_window"),
            ("topic_response_ttl = \"30d\"\n", "topic_response_ttl"),
            ("topic_ping_interval = \"5m\"\n", "topic_unknown_after"),
        ] {
            std::fs::write(&path, text).expect("write");
            let error = Config::resolve(&args).expect_err(text);
            assert!(error.to_string().contains(key), "{text}: {error}");
        }
        let default = Config::resolve(&ServerArgs::default())
            .expect("resolve")
            .topics;
        assert_eq!(default.unknown_after, Duration::from_secs(120));
        assert_eq!(default.offline_after, Duration::from_secs(10));
    }

    #[test]
    fn mistakes_are_named() {
        let bad_listen = ServerArgs {
            listen: Some("localhost".into()),
            ..ServerArgs::default()
        };
        let error = Config::resolve(&bad_listen).expect_err("bad listen");
        assert!(error.to_string().contains("--listen"), "{error}");

        let half_tls = ServerArgs {
            tls_cert: Some("cert.pem".into()),
            ..ServerArgs::default()
        };
        let error = Config::resolve(&half_tls).expect_err("half tls");
        assert!(error.to_string().contains("--tls-key"), "{error}");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "lisen = \"x\"\n").expect("write");
        let typo = ServerArgs {
            config: Some(path.clone()),
            ..ServerArgs::default()
        };
        let error = Config::resolve(&typo).expect_err("typo");
        assert!(error.to_string().contains("lisen"), "{error}");

        std::fs::write(&path, "[defaults]\ncpus = 0.0\n").expect("write");
        let bad_default = ServerArgs {
            config: Some(path.clone()),
            ..ServerArgs::default()
        };
        let error = Config::resolve(&bad_default).expect_err("bad default");
        assert!(error.to_string().contains("spec.cpus"), "{error}");

        let mysql = ServerArgs {
            database_url: Some("mysql://x".into()),
            ..ServerArgs::default()
        };
        assert!(Config::resolve(&mysql).is_err());
    }
}
