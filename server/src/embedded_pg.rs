//! A private PostgreSQL cluster that lives inside Berth's data directory.
//!
//! Berth keeps all of its state in PostgreSQL. Asking someone who only wants to try
//! `berth-server` to install, configure and secure a database first is a steep first step,
//! so when no database URL is given the server runs a cluster of its own instead, and the
//! test harness uses the same code to get one real cluster per test run. This module finds
//! the PostgreSQL server binaries, creates the cluster on first use, starts it, makes sure
//! the application database exists, and stops it again.
//!
//! # Layout
//!
//! Everything lives under one directory, `dir` (for the server, `<data-dir>/postgres`):
//!
//! - `data/`: the cluster itself (`PGDATA`, mode 0700, created by `initdb` on first start;
//!   later starts reuse it).
//! - `run/`: the directory holding the Unix socket, mode 0700.
//! - `postgres.log`: the server log; its last lines are quoted when start-up fails.
//!
//! `data/postgresql.conf` gets one line appended, `include = 'berth.conf'`, and
//! `data/berth.conf` is rewritten at every start. The settings Berth depends on (no TCP
//! listener, the socket directory) are therefore re-applied even if `dir` was moved, and
//! the include line is re-checked at every start so a crash right after `initdb` cannot
//! leave a cluster listening on TCP.
//!
//! # Why trust authentication is safe here
//!
//! The cluster is created with `--auth=trust` and a single superuser, `berth`, so nothing
//! needs a password. That is safe only because of how it is reached: `listen_addresses` is
//! empty, so there is no TCP listener at all, and the only socket sits in `run/`, which,
//! like `dir` itself, is mode 0700 and owned by the user the cluster runs as; the socket is
//! also created with mode 0700. Only that user and root can connect, and both could read
//! the data files directly anyway.
//!
//! # Running as root
//!
//! `initdb` and `postgres` refuse to run as root. When Berth runs as root (as it does in
//! containers), every PostgreSQL command runs as an unprivileged user instead: the one named
//! by [`EmbeddedOptions::run_as`], else `postgres`. `dir` is chowned to that user, and since
//! the user must be able to walk down to `dir`, every parent directory is checked up front;
//! Berth does not change the permissions of directories it did not create, it says which one
//! is in the way. Commands get the user's uid and primary gid; std's `Command` drops the
//! supplementary groups when it switches uid, so only the primary group counts in that check.
//!
//! # Socket path length
//!
//! A Unix socket path is limited to about 107 bytes (103 on macOS). If `run/.s.PGSQL.5432`
//! would be longer, start fails and asks for a shorter data directory; it does not fall back
//! to a directory elsewhere, so that everything the cluster owns stays under `dir`.
//!
//! # Lifetime
//!
//! [`EmbeddedPostgres::stop`] shuts down with `pg_ctl stop -m fast` (sessions are
//! disconnected, then a checkpoint). If an [`EmbeddedPostgres`] is dropped while the
//! cluster still runs, `Drop` stops it with `-m immediate` so that a panicking test never
//! leaves a postmaster behind; the next start then runs crash recovery, which PostgreSQL
//! handles routinely. A postmaster left over from an earlier run (for example after the
//! server was killed) is adopted rather than treated as an error.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use nix::unistd::{Gid, Uid, User};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

/// Environment variable naming the directory that holds `initdb`, `pg_ctl` and `postgres`.
pub const BIN_DIR_ENV: &str = "BERTH_PG_BIN_DIR";

/// The cluster's only role; `initdb -U` makes it the superuser.
const SUPERUSER: &str = "berth";
/// The port only names the socket file (`.s.PGSQL.5432`); nothing listens on TCP.
const PORT: u16 = 5432;
/// The user PostgreSQL runs as when Berth runs as root and no other user is named.
const DEFAULT_RUN_AS: &str = "postgres";
const REQUIRED_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
/// Settings file rewritten at every start, included from `postgresql.conf`.
const SETTINGS_FILE: &str = "berth.conf";
const INCLUDE_LINE: &str = "include = 'berth.conf'";
/// Seconds `pg_ctl` waits for start-up or shutdown.
const PG_CTL_TIMEOUT_SECS: &str = "60";
/// How many lines of `postgres.log` (or command output) an error quotes.
const LOG_TAIL_LINES: usize = 8;
/// An adopted postmaster may still be starting up, so connecting is retried for a while.
const CONNECT_ATTEMPTS: u32 = 50;
const CONNECT_RETRY_DELAY: Duration = Duration::from_millis(200);
/// Longest socket path the kernel accepts: `sizeof(sun_path)` minus the terminating NUL.
#[cfg(target_os = "linux")]
const SOCKET_PATH_MAX: usize = 107;
#[cfg(not(target_os = "linux"))]
const SOCKET_PATH_MAX: usize = 103;

/// How to find and run the cluster; `Default` suits the server.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Directory holding `initdb`, `pg_ctl` and `postgres`; searched for when `None`
    /// (see [`find_bin_dir`]).
    pub bin_dir: Option<PathBuf>,
    /// Unprivileged user to run PostgreSQL as when Berth runs as root; `postgres` when `None`.
    pub run_as: Option<String>,
    /// Database to create if it does not exist yet.
    pub database: String,
    /// Further `postgresql.conf` lines, written after Berth's own (a benchmark loads
    /// `pg_stat_statements` this way). Empty for the server.
    pub extra_settings: String,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            bin_dir: None,
            run_as: None,
            database: "berth".to_owned(),
            extra_settings: String::new(),
        }
    }
}

/// Everything that can stop the embedded cluster from starting or stopping. Each message is
/// one line that says what is wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install them \
         (Debian/Ubuntu: apt-get install postgresql; Fedora: dnf install postgresql-server; \
         macOS: brew install postgresql), set {BIN_DIR_ENV}, or give a database URL"
    )]
    BinariesNotFound,

    #[error(
        "{} (from {origin}) does not contain {missing}; point it at the directory that holds \
         initdb, pg_ctl and postgres",
        dir.display()
    )]
    BinariesMissing {
        dir: PathBuf,
        origin: &'static str,
        missing: String,
    },

    #[error(
        "there is no user `{user}` to run PostgreSQL as (it refuses to run as root); create \
         it (useradd --system --user-group {user}), name another unprivileged user, or give a \
         database URL"
    )]
    NoSuchUser { user: String },

    #[error("could not look up user `{user}`: {source}; check the system's user database")]
    UserLookup { user: String, source: nix::Error },

    #[error(
        "user `{user}` has uid 0, and PostgreSQL refuses to run as root; name an unprivileged user"
    )]
    RunAsRoot { user: String },

    #[error(
        "cannot run PostgreSQL as user `{user}`: switching users needs root; run Berth as \
         `{user}` or do not name a user"
    )]
    RunAsNeedsRoot { user: String },

    #[error(
        "PostgreSQL runs as user `{user}`, which cannot enter {}; allow it (chmod o+x {}) or \
         choose a --data-dir it can reach",
        dir.display(),
        dir.display()
    )]
    Unreachable { dir: PathBuf, user: String },

    #[error(
        "{} is owned by uid {owner}, but PostgreSQL runs as {user}; chown -R {user} {} or use \
         another data directory",
        dir.display(),
        dir.display()
    )]
    DataDirOwner {
        dir: PathBuf,
        owner: u32,
        user: String,
    },

    #[error(
        "the PostgreSQL socket path {} is {len} bytes, longer than the {SOCKET_PATH_MAX} a Unix \
         socket allows; choose a shorter --data-dir",
        path.display()
    )]
    SocketPathTooLong { path: PathBuf, len: usize },

    #[error("{} is not valid UTF-8; choose a --data-dir whose path is", path.display())]
    NonUtf8Path { path: PathBuf },

    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error("could not change the owner of {} to `{user}`: {source}", path.display())]
    Chown {
        path: PathBuf,
        user: String,
        source: nix::Error,
    },

    #[error("could not run {}: {source}", program.display())]
    Spawn { program: PathBuf, source: io::Error },

    #[error("initdb failed for {} ({status}): {output}", dir.display())]
    Initdb {
        dir: PathBuf,
        status: ExitStatus,
        output: String,
    },

    #[error(
        "PostgreSQL did not start ({status}); see {}; last lines: {log_tail}",
        log.display()
    )]
    StartFailed {
        log: PathBuf,
        status: ExitStatus,
        log_tail: String,
    },

    #[error("PostgreSQL did not stop ({status}): {output}; see {}", log.display())]
    StopFailed {
        log: PathBuf,
        status: ExitStatus,
        output: String,
    },

    #[error(
        "could not connect to the embedded PostgreSQL at {}: {source}; see {}",
        socket_dir.display(),
        log.display()
    )]
    Connect {
        socket_dir: PathBuf,
        log: PathBuf,
        source: tokio_postgres::Error,
    },

    #[error("could not create database `{database}`: {source}")]
    CreateDatabase {
        database: String,
        source: tokio_postgres::Error,
    },
}

/// The unprivileged user PostgreSQL runs as when Berth runs as root.
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: Uid,
    gid: Gid,
    home: PathBuf,
}

/// A running private cluster. Stop it with [`stop`](Self::stop); dropping it stops it too,
/// less gracefully.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    /// Canonical form of the `dir` given to `start`.
    dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<RunAs>,
    /// Whether a postmaster may be running that we are responsible for stopping.
    running: bool,
}

impl EmbeddedPostgres {
    /// Starts the cluster in `dir` (created if missing, e.g. `<data-dir>/postgres`), creating
    /// it first if needed, and creates `options.database` if it does not exist.
    pub async fn start(
        dir: &Path,
        options: EmbeddedOptions,
    ) -> Result<EmbeddedPostgres, EmbeddedPgError> {
        let bin_dir = find_bin_dir(options.bin_dir.as_deref())?;
        let run_as = resolve_run_as(options.run_as.as_deref())?;
        tracing::info!(
            bin_dir = %bin_dir.display(),
            "starting embedded PostgreSQL in {}",
            dir.display()
        );

        fs::create_dir_all(dir).map_err(io_error("create", dir))?;
        let dir = dir.canonicalize().map_err(io_error("resolve", dir))?;
        let mut pg = EmbeddedPostgres {
            data_dir: dir.join("data"),
            socket_dir: dir.join("run"),
            log_file: dir.join("postgres.log"),
            dir,
            bin_dir,
            run_as,
            running: false,
        };
        pg.prepare_layout()?;
        if pg.data_dir.join("PG_VERSION").exists() {
            tracing::debug!("reusing the cluster in {}", pg.data_dir.display());
        } else {
            pg.initdb().await?;
        }
        pg.write_settings(&options.extra_settings)?;
        pg.start_postmaster().await?;
        // From here on a failure drops `pg`, and `Drop` stops the postmaster again.
        pg.create_database(&options.database).await?;
        tracing::info!(
            "embedded PostgreSQL is ready on {}",
            pg.socket_dir.display()
        );
        Ok(pg)
    }

    /// URL for `database` over the Unix socket, e.g.
    /// `postgres://berth@/berth?host=/abs/dir/run`.
    ///
    /// The host part is empty on purpose: tokio-postgres (and so diesel-async) adds a
    /// `host=` parameter to the hosts of the authority, so `berth@localhost/...?host=...`
    /// would try TCP to localhost first and might reach some other server there.
    pub fn url(&self, database: &str) -> String {
        socket_url(&self.socket_dir, database)
    }

    /// Directory holding the cluster's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Directory the PostgreSQL binaries were taken from.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Stops the cluster (`pg_ctl stop -m fast -w`). Calling it again does nothing.
    pub async fn stop(&mut self) -> Result<(), EmbeddedPgError> {
        if !self.running {
            return Ok(());
        }
        tracing::info!("stopping embedded PostgreSQL in {}", self.dir.display());
        let output = self
            .run(
                "pg_ctl",
                &[
                    &"stop",
                    &"-D",
                    &self.data_dir,
                    &"-m",
                    &"fast",
                    &"-w",
                    &"-t",
                    &PG_CTL_TIMEOUT_SECS,
                ],
            )
            .await?;
        // The postmaster removes its pid file as the very last step of shutting down, so a
        // missing file means it is gone, even if pg_ctl complained (say, because someone
        // else stopped it first).
        if !output.status.success() && self.pid_file_exists() {
            return Err(EmbeddedPgError::StopFailed {
                log: self.log_file.clone(),
                status: output.status,
                output: command_output(&output),
            });
        }
        self.running = false;
        Ok(())
    }

    /// Checks and creates everything `initdb` and the postmaster need before they run.
    fn prepare_layout(&self) -> Result<(), EmbeddedPgError> {
        let socket = self.socket_dir.join(format!(".s.PGSQL.{PORT}"));
        let len = socket.as_os_str().len();
        if len > SOCKET_PATH_MAX {
            return Err(EmbeddedPgError::SocketPathTooLong { path: socket, len });
        }
        if self.socket_dir.to_str().is_none() {
            return Err(EmbeddedPgError::NonUtf8Path {
                path: self.socket_dir.clone(),
            });
        }
        if let Some(user) = &self.run_as {
            check_reachable(&self.dir, user)?;
        }
        self.check_data_dir_owner()?;

        match fs::create_dir(&self.socket_dir) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => {
                return Err(io_error("create", &self.socket_dir)(err));
            }
            _ => {}
        }
        for path in [&self.dir, &self.socket_dir] {
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                .map_err(io_error("set permissions of", path))?;
            self.give_to_cluster_user(path)?;
        }
        // A log left by a run as another user would make `pg_ctl -l` fail to open it.
        if self.log_file.exists() {
            self.give_to_cluster_user(&self.log_file)?;
        }
        Ok(())
    }

    /// PostgreSQL refuses a data directory owned by anyone but the user it runs as; say so
    /// in Berth's words rather than leaving it to the log.
    fn check_data_dir_owner(&self) -> Result<(), EmbeddedPgError> {
        let metadata = match fs::metadata(&self.data_dir) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(io_error("inspect", &self.data_dir)(err)),
        };
        let (uid, user) = match &self.run_as {
            Some(user) => (user.uid, user.name.clone()),
            None => (Uid::effective(), format!("uid {}", Uid::effective())),
        };
        if metadata.uid() != uid.as_raw() {
            return Err(EmbeddedPgError::DataDirOwner {
                dir: self.data_dir.clone(),
                owner: metadata.uid(),
                user,
            });
        }
        Ok(())
    }

    async fn initdb(&self) -> Result<(), EmbeddedPgError> {
        tracing::info!(
            "creating a new PostgreSQL cluster in {}",
            self.data_dir.display()
        );
        let output = self
            .run(
                "initdb",
                &[
                    &"-D",
                    &self.data_dir,
                    &"-U",
                    &SUPERUSER,
                    &"--auth=trust",
                    &"-E",
                    &"UTF8",
                    &"--locale=C",
                ],
            )
            .await?;
        if !output.status.success() {
            return Err(EmbeddedPgError::Initdb {
                dir: self.data_dir.clone(),
                status: output.status,
                output: command_output(&output),
            });
        }
        Ok(())
    }

    /// Rewrites `berth.conf` and makes sure `postgresql.conf` includes it.
    fn write_settings(&self, extra: &str) -> Result<(), EmbeddedPgError> {
        let socket_dir = self
            .socket_dir
            .to_str()
            .ok_or_else(|| EmbeddedPgError::NonUtf8Path {
                path: self.socket_dir.clone(),
            })?;
        let settings = format!(
            "# Written by Berth at every start; edits here are lost.\n\
             listen_addresses = ''\n\
             unix_socket_directories = {}\n\
             unix_socket_permissions = 0700\n\
             port = {PORT}\n\
             max_connections = 200\n\
             log_min_messages = warning\n\
             log_checkpoints = off\n\
             log_line_prefix = '%m [%p] '\n\
             {extra}\n",
            conf_string(socket_dir)
        );
        let settings_path = self.data_dir.join(SETTINGS_FILE);
        fs::write(&settings_path, settings).map_err(io_error("write", &settings_path))?;
        self.give_to_cluster_user(&settings_path)?;

        let conf_path = self.data_dir.join("postgresql.conf");
        let conf = fs::read_to_string(&conf_path).map_err(io_error("read", &conf_path))?;
        if !conf.lines().any(|line| line.trim() == INCLUDE_LINE) {
            OpenOptions::new()
                .append(true)
                .open(&conf_path)
                .and_then(|mut file| {
                    writeln!(file, "\n# Settings managed by Berth.\n{INCLUDE_LINE}")
                })
                .map_err(io_error("append to", &conf_path))?;
        }
        Ok(())
    }

    async fn start_postmaster(&mut self) -> Result<(), EmbeddedPgError> {
        let status = self
            .run("pg_ctl", &[&"status", &"-D", &self.data_dir])
            .await?;
        if status.status.success() {
            tracing::info!(
                "adopting the PostgreSQL server already running in {}",
                self.data_dir.display()
            );
            self.running = true;
            return Ok(());
        }

        // Only what this attempt logs is worth quoting if it fails.
        let log_start = fs::metadata(&self.log_file).map_or(0, |metadata| metadata.len());
        let output = self
            .run(
                "pg_ctl",
                &[
                    &"start",
                    &"-D",
                    &self.data_dir,
                    &"-l",
                    &self.log_file,
                    &"-w",
                    &"-t",
                    &PG_CTL_TIMEOUT_SECS,
                ],
            )
            .await?;
        // Even a failed start (a timeout, say) may leave a postmaster behind for Drop.
        self.running = true;
        if !output.status.success() {
            return Err(EmbeddedPgError::StartFailed {
                log: self.log_file.clone(),
                status: output.status,
                log_tail: self.log_tail(log_start, &output),
            });
        }
        Ok(())
    }

    async fn create_database(&self, database: &str) -> Result<(), EmbeddedPgError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(PORT)
            .user(SUPERUSER)
            .dbname("postgres");
        let (client, connection) = self.connect(&config).await?;

        let work = async move {
            let exists = client
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
                .await?
                .is_some();
            if !exists {
                tracing::info!("creating database `{database}`");
                let sql = format!("CREATE DATABASE {}", quote_identifier(database));
                match client.batch_execute(&sql).await {
                    // Someone else sharing the cluster created it in the meantime.
                    Err(err) if err.code() == Some(&SqlState::DUPLICATE_DATABASE) => {}
                    other => other?,
                }
            }
            // Dropping the client lets `connection` finish.
            drop(client);
            Ok::<(), tokio_postgres::Error>(())
        };
        // Driving the connection here rather than in a spawned task keeps it owned by
        // this call: it ends when `work` drops the client.
        let (result, connection_result) = tokio::join!(work, connection);
        if let Err(err) = connection_result {
            tracing::debug!("embedded PostgreSQL admin connection ended with: {err}");
        }
        result.map_err(|source| EmbeddedPgError::CreateDatabase {
            database: database.to_owned(),
            source,
        })
    }

    /// Connects, retrying for a while: an adopted postmaster may still be starting up.
    async fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
        ),
        EmbeddedPgError,
    > {
        let mut attempt = 1;
        loop {
            match config.connect(NoTls).await {
                Ok(connected) => return Ok(connected),
                Err(err) if attempt < CONNECT_ATTEMPTS => {
                    tracing::debug!("embedded PostgreSQL not accepting connections yet: {err}");
                    attempt += 1;
                    tokio::time::sleep(CONNECT_RETRY_DELAY).await;
                }
                Err(source) => {
                    return Err(EmbeddedPgError::Connect {
                        socket_dir: self.socket_dir.clone(),
                        log: self.log_file.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// A PostgreSQL command, run as the cluster's user.
    fn command(&self, program: &str, args: &[&(dyn AsRef<OsStr> + Sync)]) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        command
            .args(args.iter().map(|arg| arg.as_ref()))
            // Our own cwd may be unreadable for the cluster's user (e.g. /root).
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        // The cluster is fully described by its own files; the caller's PGDATA, PGPORT,
        // PGOPTIONS and friends must not leak into it.
        for (key, _) in std::env::vars_os() {
            if key.as_bytes().starts_with(b"PG") {
                command.env_remove(key);
            }
        }
        if let Some(user) = &self.run_as {
            command
                .uid(user.uid.as_raw())
                .gid(user.gid.as_raw())
                .env("HOME", &user.home)
                .env("USER", &user.name)
                .env("LOGNAME", &user.name);
        }
        command
    }

    /// Runs a PostgreSQL command to completion, capturing its output.
    async fn run(
        &self,
        program: &str,
        args: &[&(dyn AsRef<OsStr> + Sync)],
    ) -> Result<Output, EmbeddedPgError> {
        let mut command = tokio::process::Command::from(self.command(program, args));
        command
            .output()
            .await
            .map_err(|source| EmbeddedPgError::Spawn {
                program: self.bin_dir.join(program),
                source,
            })
    }

    fn give_to_cluster_user(&self, path: &Path) -> Result<(), EmbeddedPgError> {
        let Some(user) = &self.run_as else {
            return Ok(());
        };
        nix::unistd::chown(path, Some(user.uid), Some(user.gid)).map_err(|source| {
            EmbeddedPgError::Chown {
                path: path.to_owned(),
                user: user.name.clone(),
                source,
            }
        })
    }

    fn pid_file_exists(&self) -> bool {
        self.data_dir.join("postmaster.pid").exists()
    }

    /// The last lines logged after byte `log_start`, or what pg_ctl printed if the
    /// postmaster logged nothing (say, because it could not be started at all).
    fn log_tail(&self, log_start: u64, pg_ctl_output: &Output) -> String {
        let log = match fs::read(&self.log_file) {
            Ok(log) => log,
            Err(err) => return format!("(could not read the log: {err})"),
        };
        let new = usize::try_from(log_start)
            .ok()
            .and_then(|start| log.get(start..))
            .unwrap_or(&log);
        if new.iter().all(u8::is_ascii_whitespace) {
            command_output(pg_ctl_output)
        } else {
            last_lines(new)
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if !self.running || !self.pid_file_exists() {
            return;
        }
        // Last resort, so it must not wait for sessions or a checkpoint; an orderly
        // shutdown goes through `stop`.
        let status = self
            .command(
                "pg_ctl",
                &[&"stop", &"-D", &self.data_dir, &"-m", &"immediate", &"-w"],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(status) if status.success() => {
                tracing::info!("stopped embedded PostgreSQL in {}", self.dir.display());
            }
            Ok(status) => tracing::warn!(
                "pg_ctl stop -m immediate {status}; a postmaster may still run in {}",
                self.data_dir.display()
            ),
            Err(err) => tracing::warn!(
                "could not run pg_ctl to stop the postmaster in {}: {err}",
                self.data_dir.display()
            ),
        }
    }
}

/// Finds the directory holding `initdb`, `pg_ctl` and `postgres`.
///
/// An explicit directory, else `BERTH_PG_BIN_DIR`, is used as given (and must hold all
/// three). Otherwise the first complete directory among: `pg_config --bindir`; the directory
/// of `initdb` on `PATH`; the highest-numbered `/usr/lib/postgresql/*/bin`;
/// `/usr/local/pgsql/bin`; Homebrew's `/opt/homebrew/opt/postgresql*/bin` and
/// `/usr/local/opt/postgresql*/bin`, highest version first.
pub fn find_bin_dir(explicit: Option<&Path>) -> Result<PathBuf, EmbeddedPgError> {
    if let Some(dir) = explicit {
        // The server fills `explicit` from its flag, which also reads the environment
        // variable and the config file; name them all, since any may hold the bad value.
        return require_binaries(
            dir,
            "--pg-bin-dir, BERTH_PG_BIN_DIR or pg_bin_dir in the config file",
        );
    }
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|dir| !dir.is_empty()) {
        return require_binaries(Path::new(&dir), BIN_DIR_ENV);
    }
    discovered_bin_dirs()
        .into_iter()
        .find(|dir| missing_binaries(dir).is_empty())
        .ok_or(EmbeddedPgError::BinariesNotFound)
}

fn require_binaries(dir: &Path, origin: &'static str) -> Result<PathBuf, EmbeddedPgError> {
    let missing = missing_binaries(dir);
    if missing.is_empty() {
        Ok(dir.to_owned())
    } else {
        Err(EmbeddedPgError::BinariesMissing {
            dir: dir.to_owned(),
            origin,
            missing: missing.join(", "),
        })
    }
}

fn missing_binaries(dir: &Path) -> Vec<&'static str> {
    REQUIRED_BINARIES
        .into_iter()
        .filter(|name| !is_executable(&dir.join(name)))
        .collect()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|metadata| metadata.is_file() && metadata.mode() & 0o111 != 0)
}

/// Candidate directories in search order; they are checked for completeness by the caller.
fn discovered_bin_dirs() -> Vec<PathBuf> {
    let mut candidates = Vec::new();

    // On Debian, pg_config may come from libpq-dev without a server, hence the check later.
    if let Ok(output) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        && output.status.success()
    {
        let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !dir.is_empty() {
            candidates.push(PathBuf::from(dir));
        }
    }

    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if !is_executable(&initdb) {
                continue;
            }
            candidates.push(dir);
            // A symlinked initdb (e.g. /usr/local/bin/initdb) points at the real bin dir.
            if let Some(real_dir) = initdb
                .canonicalize()
                .ok()
                .and_then(|real| real.parent().map(Path::to_owned))
            {
                candidates.push(real_dir);
            }
        }
    }

    candidates.extend(versioned_bin_dirs(Path::new("/usr/lib/postgresql"), ""));
    candidates.push(PathBuf::from("/usr/local/pgsql/bin"));
    candidates.extend(versioned_bin_dirs(
        Path::new("/opt/homebrew/opt"),
        "postgresql",
    ));
    candidates.extend(versioned_bin_dirs(
        Path::new("/usr/local/opt"),
        "postgresql",
    ));
    candidates
}

/// `<base>/<prefix>[@]<version>/bin` for every entry of `base` named like that, highest
/// version first; an entry without a version (Homebrew's plain `postgresql`) comes last.
fn versioned_bin_dirs(base: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(base) else {
        return Vec::new();
    };
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let rest = name.to_str()?.strip_prefix(prefix)?;
            let version = rest.strip_prefix('@').unwrap_or(rest);
            let version = if version.is_empty() && !prefix.is_empty() {
                Vec::new()
            } else {
                version
                    .split('.')
                    .map(|part| part.parse().ok())
                    .collect::<Option<Vec<u32>>>()?
            };
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versioned.sort_by(|a, b| b.0.cmp(&a.0));
    versioned.into_iter().map(|(_, dir)| dir).collect()
}

/// Who PostgreSQL runs as: `None` means as ourselves, which is only possible when we are not
/// root.
fn resolve_run_as(requested: Option<&str>) -> Result<Option<RunAs>, EmbeddedPgError> {
    let euid = Uid::effective();
    let name = requested.unwrap_or(DEFAULT_RUN_AS);
    if !euid.is_root() && requested.is_none() {
        return Ok(None);
    }
    let user = User::from_name(name)
        .map_err(|source| EmbeddedPgError::UserLookup {
            user: name.to_owned(),
            source,
        })?
        .ok_or_else(|| EmbeddedPgError::NoSuchUser {
            user: name.to_owned(),
        })?;
    if !euid.is_root() {
        // Naming ourselves is harmless; naming anyone else needs a uid switch.
        return if user.uid == euid {
            Ok(None)
        } else {
            Err(EmbeddedPgError::RunAsNeedsRoot {
                user: name.to_owned(),
            })
        };
    }
    if user.uid.is_root() {
        return Err(EmbeddedPgError::RunAsRoot {
            user: name.to_owned(),
        });
    }
    Ok(Some(RunAs {
        name: user.name,
        uid: user.uid,
        gid: user.gid,
        home: user.dir,
    }))
}

/// Checks that `user` may enter every parent of `dir` (`dir` itself will be theirs).
/// Only the owner/group/other bits are considered, not ACLs.
fn check_reachable(dir: &Path, user: &RunAs) -> Result<(), EmbeddedPgError> {
    for parent in dir.ancestors().skip(1) {
        let metadata = fs::metadata(parent).map_err(io_error("inspect", parent))?;
        let search_bit = if metadata.uid() == user.uid.as_raw() {
            0o100
        } else if metadata.gid() == user.gid.as_raw() {
            0o010
        } else {
            0o001
        };
        if metadata.mode() & search_bit == 0 {
            return Err(EmbeddedPgError::Unreachable {
                dir: parent.to_owned(),
                user: user.name.clone(),
            });
        }
    }
    Ok(())
}

fn socket_url(socket_dir: &Path, database: &str) -> String {
    format!(
        "postgres://{SUPERUSER}@/{}?host={}",
        percent_encode(database.as_bytes(), false),
        percent_encode(socket_dir.as_os_str().as_bytes(), true),
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters (and `/` if asked).
fn percent_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut encoded = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || (keep_slash && byte == b'/') {
            encoded.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// A string literal for postgresql.conf.
fn conf_string(value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('\'', "''")
        .replace('\n', "\\n");
    format!("'{escaped}'")
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A command's stdout and stderr, cut to their last lines and joined into one line.
fn command_output(output: &Output) -> String {
    let mut all = output.stdout.clone();
    all.extend_from_slice(&output.stderr);
    last_lines(&all)
}

/// The last non-empty lines of `text`, joined with ` | ` so that an error stays one line.
fn last_lines(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    if tail.is_empty() {
        "(no output)".to_owned()
    } else {
        tail.join(" | ")
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> EmbeddedPgError {
    let path = path.to_owned();
    move |source| EmbeddedPgError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed test"
)]
mod tests {
    use super::*;

    use tempfile::TempDir;

    /// A temp dir the cluster's user can enter (older tempfile versions make it 0700), and the
    /// cluster directory inside it, which `start` creates.
    fn cluster_dir() -> (TempDir, PathBuf) {
        let tmp = tempfile::tempdir().expect("create temp dir");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
            .expect("make temp dir traversable");
        let dir = tmp.path().join("postgres");
        (tmp, dir)
    }

    /// Fails (never skips) with the error's own message, which says what is missing.
    async fn start(dir: &Path, options: EmbeddedOptions) -> EmbeddedPostgres {
        EmbeddedPostgres::start(dir, options)
            .await
            .unwrap_or_else(|err| panic!("embedded PostgreSQL did not start: {err}"))
    }

    async fn connect(url: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .unwrap_or_else(|err| panic!("connect to {url}: {err}"));
        tokio::spawn(connection);
        client
    }

    #[tokio::test]
    async fn cluster_serves_queries_and_keeps_data_across_restarts() {
        let (_tmp, dir) = cluster_dir();
        let mut pg = start(&dir, EmbeddedOptions::default()).await;
        let client = connect(&pg.url("berth")).await;
        let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
        client
            .batch_execute("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('still here')")
            .await
            .unwrap();
        drop(client);
        pg.stop().await.unwrap();
        assert!(!pg.pid_file_exists(), "postmaster still running after stop");
        pg.stop().await.expect("a second stop is a no-op");
        drop(pg);

        let initialised_at = fs::metadata(dir.join("data/PG_VERSION"))
            .unwrap()
            .modified()
            .unwrap();
        let mut pg = start(&dir, EmbeddedOptions::default()).await;
        let client = connect(&pg.url("berth")).await;
        let note: String = client
            .query_one("SELECT note FROM kept", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(note, "still here");
        let after_restart = fs::metadata(dir.join("data/PG_VERSION"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(initialised_at, after_restart, "restart ran initdb again");
        drop(client);
        pg.stop().await.unwrap();
    }

    #[tokio::test]
    async fn cluster_has_no_tcp_listener_and_a_private_socket_dir() {
        let (_tmp, dir) = cluster_dir();
        let mut pg = start(&dir, EmbeddedOptions::default()).await;
        let client = connect(&pg.url("postgres")).await;
        let listen: String = client
            .query_one("SHOW listen_addresses", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(listen, "");
        let mode = fs::metadata(pg.socket_dir()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        drop(client);
        pg.stop().await.unwrap();
    }

    #[tokio::test]
    async fn odd_database_name_is_created_and_reachable_by_url() {
        let (_tmp, dir) = cluster_dir();
        let database = "we\"ird name/é";
        let options = EmbeddedOptions {
            database: database.to_owned(),
            ..EmbeddedOptions::default()
        };
        let mut pg = start(&dir, options).await;
        let client = connect(&pg.url(database)).await;
        let current: String = client
            .query_one("SELECT current_database()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(current, database);
        drop(client);
        pg.stop().await.unwrap();
    }

    #[tokio::test]
    async fn start_adopts_a_postmaster_that_is_already_running() {
        let (_tmp, dir) = cluster_dir();
        let mut first = start(&dir, EmbeddedOptions::default()).await;
        let mut second = start(&dir, EmbeddedOptions::default()).await;
        let client = connect(&second.url("berth")).await;
        client.batch_execute("SELECT 1").await.unwrap();
        drop(client);
        second.stop().await.unwrap();
        // The postmaster is already gone; stopping it again is not an error.
        first.stop().await.unwrap();
    }

    #[tokio::test]
    async fn dropping_a_running_cluster_stops_it() {
        let (_tmp, dir) = cluster_dir();
        let pg = start(&dir, EmbeddedOptions::default()).await;
        let pid_file = dir.join("data/postmaster.pid");
        assert!(pid_file.exists());
        drop(pg);
        assert!(!pid_file.exists(), "postmaster survived Drop");
    }

    #[tokio::test]
    async fn missing_binaries_are_named() {
        let (_tmp, dir) = cluster_dir();
        let options = EmbeddedOptions {
            bin_dir: Some(dir.clone()),
            ..EmbeddedOptions::default()
        };
        let err = EmbeddedPostgres::start(&dir, options)
            .await
            .expect_err("started without binaries");
        assert!(matches!(err, EmbeddedPgError::BinariesMissing { .. }));
        let message = err.to_string();
        assert!(
            message.contains("initdb, pg_ctl, postgres")
                && message.contains(&*dir.to_string_lossy()),
            "{message}"
        );
        assert!(
            !dir.exists(),
            "a failed start must not create the cluster dir"
        );
    }

    #[test]
    fn binaries_are_found_on_this_machine() {
        let dir = find_bin_dir(None).unwrap_or_else(|err| panic!("{err}"));
        assert!(missing_binaries(&dir).is_empty());
    }

    #[test]
    fn unreachable_parent_is_reported_with_a_fix() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let nobody = RunAs {
            name: "nobody".to_owned(),
            uid: Uid::from_raw(65534),
            gid: Gid::from_raw(65534),
            home: PathBuf::from("/nonexistent"),
        };
        let err = check_reachable(&tmp.path().join("postgres"), &nobody).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("chmod o+x {}", tmp.path().display())),
            "{message}"
        );

        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o711)).unwrap();
        check_reachable(&tmp.path().join("postgres"), &nobody).unwrap();
    }

    #[test]
    fn url_names_only_the_unix_socket() {
        let socket_dir = Path::new("/tmp/a dir/with 'quotes'&more/run");
        let url = socket_url(socket_dir, "my db");
        let config: tokio_postgres::Config = url.parse().unwrap();
        assert_eq!(
            config.get_hosts(),
            &[tokio_postgres::config::Host::Unix(socket_dir.to_owned())]
        );
        assert_eq!(config.get_dbname(), Some("my db"));
        assert_eq!(config.get_user(), Some(SUPERUSER));
    }

    #[test]
    fn too_long_socket_path_is_refused() {
        let (_tmp, dir) = cluster_dir();
        let pg = EmbeddedPostgres {
            data_dir: dir.join("data"),
            socket_dir: dir.join("x".repeat(SOCKET_PATH_MAX)),
            log_file: dir.join("postgres.log"),
            dir,
            bin_dir: PathBuf::new(),
            run_as: None,
            running: false,
        };
        let err = pg.prepare_layout().unwrap_err();
        assert!(matches!(err, EmbeddedPgError::SocketPathTooLong { .. }));
    }

    #[test]
    fn settings_strings_are_escaped() {
        assert_eq!(conf_string(r"/a'b\c"), r"'/a''b\\c'");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }
}
