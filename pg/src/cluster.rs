//! Creating, starting and stopping one cluster in one directory.
//!
//! [`EmbeddedPostgres`] is the running cluster; the crate docs say how its directory is laid
//! out, why trust authentication is safe there, and how it is stopped.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nix::unistd::Uid;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::binaries::find_bin_dir;
use crate::error::{EmbeddedPgError, io_error};
use crate::user::{RunAs, check_reachable, resolve_run_as};

/// The cluster's only role; `initdb -U` makes it the superuser.
const SUPERUSER: &str = "berth";
/// The port only names the socket file (`.s.PGSQL.5432`); nothing listens on TCP.
const PORT: u16 = 5432;
/// Settings file rewritten at every start, included from `postgresql.conf`.
const SETTINGS_FILE: &str = "berth.conf";
const INCLUDE_LINE: &str = "include = 'berth.conf'";
/// How long `pg_ctl` waits for start-up or shutdown unless told otherwise.
const PG_CTL_TIMEOUT: Duration = Duration::from_secs(60);
/// How many lines of `postgres.log` (or command output) an error quotes.
const LOG_TAIL_LINES: usize = 8;
/// An adopted postmaster may still be starting up, so connecting is retried for a while.
const CONNECT_ATTEMPTS: u32 = 50;
const CONNECT_RETRY_DELAY: Duration = Duration::from_millis(200);
/// Longest socket path the kernel accepts: `sizeof(sun_path)` minus the terminating NUL.
#[cfg(target_os = "linux")]
pub(crate) const SOCKET_PATH_MAX: usize = 107;
#[cfg(not(target_os = "linux"))]
pub(crate) const SOCKET_PATH_MAX: usize = 103;

/// How to find and run the cluster; `Default` suits the server.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Directory holding `initdb`, `pg_ctl` and `postgres`; searched for when `None`
    /// (see [`find_bin_dir`]).
    pub bin_dir: Option<PathBuf>,
    /// Unprivileged user to run PostgreSQL as when the caller runs as root; `postgres` when `None`.
    pub run_as: Option<String>,
    /// Database to create if it does not exist yet.
    pub database: String,
    /// Further `postgresql.conf` lines, written after Berth's own (a benchmark loads
    /// `pg_stat_statements` this way). Empty for the server.
    pub extra_settings: String,
    /// How long `pg_ctl` waits for the postmaster to start or to stop before it gives up.
    pub pg_ctl_timeout: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            bin_dir: None,
            run_as: None,
            database: "berth".to_owned(),
            extra_settings: String::new(),
            pg_ctl_timeout: PG_CTL_TIMEOUT,
        }
    }
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
    /// `pg_ctl -t`, in whole seconds (at least 1).
    pg_ctl_timeout: String,
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
            pg_ctl_timeout: options.pg_ctl_timeout.as_secs().max(1).to_string(),
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

    /// The server log, `<dir>/postgres.log`.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The cluster's data directory, `<dir>/data`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The pid `postmaster.pid` names, if the file is there and readable.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Whether the postmaster is alive: `postmaster.pid` names a process that exists. A
    /// postmaster that was killed leaves its pid file behind, so the file alone says
    /// nothing. (A stopped or hung postmaster counts as alive; the server's database
    /// health check is what notices that it does not answer.)
    pub fn postmaster_alive(&self) -> bool {
        let Some(pid) = self.postmaster_pid().filter(|pid| *pid > 0) else {
            return false;
        };
        let exists = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
            Ok(()) => true,
            // It exists but belongs to another user: alive.
            Err(nix::errno::Errno::EPERM) => true,
            Err(_) => false,
        };
        exists && !is_zombie(pid)
    }

    /// Starts the postmaster again after it died, in the same directory with the same
    /// settings. PostgreSQL removes a pid file left by a dead postmaster by itself and
    /// runs crash recovery. Fails (and may be retried) while the dead postmaster's
    /// children still hold its shared memory.
    pub async fn restart(&mut self) -> Result<(), EmbeddedPgError> {
        self.forget_unreaped_postmaster()?;
        self.start_postmaster().await
    }

    /// A killed postmaster that nobody reaped (PID 1 of many containers reaps nothing, and
    /// neither does a server that is PID 1 itself) still answers `kill(pid, 0)`, so
    /// `pg_ctl` and PostgreSQL itself take it for running and refuse to start. The pid
    /// line of its file is then replaced with the pid of a child of ours that has surely
    /// exited (it was just reaped), and the rest of the file is kept: PostgreSQL then
    /// still checks, with the shared memory key recorded there, that no backend of the
    /// dead postmaster lingers before it starts.
    fn forget_unreaped_postmaster(&self) -> Result<(), EmbeddedPgError> {
        let Some(pid) = self.postmaster_pid() else {
            return Ok(());
        };
        if !is_zombie(pid) {
            return Ok(());
        }
        let pid_file = self.data_dir.join("postmaster.pid");
        let text = fs::read_to_string(&pid_file).map_err(io_error("read", &pid_file))?;
        let mut exited = Command::new("true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| EmbeddedPgError::Spawn {
                program: PathBuf::from("true"),
                source,
            })?;
        let gone = exited.id();
        exited
            .wait()
            .map_err(io_error("wait for a child of", &self.dir))?;
        let rest = text.split_once('\n').map_or("", |(_, rest)| rest);
        tracing::info!(
            pid,
            "the dead postmaster was never reaped; marking its pid file stale"
        );
        fs::write(&pid_file, format!("{gone}\n{rest}")).map_err(io_error("rewrite", &pid_file))
    }

    /// Stops the cluster (`pg_ctl stop -m fast -w`). Calling it again does nothing.
    pub async fn stop(&mut self) -> Result<(), EmbeddedPgError> {
        self.shutdown("fast").await
    }

    /// Stops the cluster at once (`pg_ctl stop -m immediate -w`): sessions are cut off and
    /// no checkpoint is written, so a later start runs crash recovery. Meant for a throwaway
    /// cluster whose directory is deleted next, where a checkpoint would only write pages
    /// nobody reads again. Calling it again, or after [`stop`](Self::stop), does nothing.
    pub async fn stop_immediately(&mut self) -> Result<(), EmbeddedPgError> {
        self.shutdown("immediate").await
    }

    /// `pg_ctl stop` in the given shutdown mode, waiting until the postmaster is gone.
    async fn shutdown(&mut self, mode: &str) -> Result<(), EmbeddedPgError> {
        if !self.running {
            return Ok(());
        }
        tracing::info!(
            "stopping embedded PostgreSQL in {} ({mode})",
            self.dir.display()
        );
        let output = self
            .run(
                "pg_ctl",
                &[
                    &"stop",
                    &"-D",
                    &self.data_dir,
                    &"-m",
                    &mode,
                    &"-w",
                    &"-t",
                    &self.pg_ctl_timeout,
                ],
            )
            .await?;
        // The postmaster removes its pid file as the very last step of shutting down, so a
        // missing file means it is gone, even if pg_ctl complained (say, because someone
        // else stopped it first). A killed postmaster leaves its file behind: one that
        // names no live process means it is gone too.
        if !output.status.success() && self.postmaster_alive() {
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
                    &self.pg_ctl_timeout,
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
            .stdin(Stdio::null())
            // A Ctrl-C at a terminal signals its whole foreground process group. In a group
            // of their own, initdb and pg_ctl are left to finish and only the calling
            // program hears it; it then stops the cluster its own way, rather than finding
            // a `pg_ctl stop` killed half-way. (The postmaster detaches itself anyway.)
            .process_group(0);
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
                &[
                    &"stop",
                    &"-D",
                    &self.data_dir,
                    &"-m",
                    &"immediate",
                    &"-w",
                    &"-t",
                    &self.pg_ctl_timeout,
                ],
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
/// Whether `pid` has exited but was not reaped yet: a killed postmaster whose parent (often
/// PID 1 in a container) does not reap it still answers `kill(pid, 0)`.
#[cfg(target_os = "linux")]
fn is_zombie(pid: i32) -> bool {
    // The state follows the command name, which is in parentheses and may hold spaces.
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

#[cfg(not(target_os = "linux"))]
fn is_zombie(_pid: i32) -> bool {
    false
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
    async fn stopping_immediately_leaves_no_postmaster() {
        let (_tmp, dir) = cluster_dir();
        let mut pg = start(&dir, EmbeddedOptions::default()).await;
        let client = connect(&pg.url("berth")).await;
        client.batch_execute("SELECT 1").await.unwrap();
        pg.stop_immediately().await.unwrap();
        assert!(!pg.pid_file_exists(), "postmaster still running after stop");
        assert!(
            client.batch_execute("SELECT 1").await.is_err(),
            "a session survived"
        );
        pg.stop_immediately()
            .await
            .expect("a second stop is a no-op");
        pg.stop().await.expect("a stop after stopping is a no-op");
    }

    #[tokio::test]
    async fn a_killed_postmaster_is_seen_dead_and_restarted_with_its_data() {
        let (_tmp, dir) = cluster_dir();
        let mut pg = start(&dir, EmbeddedOptions::default()).await;
        let client = connect(&pg.url("berth")).await;
        client
            .batch_execute("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('here')")
            .await
            .unwrap();
        drop(client);
        assert!(pg.postmaster_alive());
        let pid = pg.postmaster_pid().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // Dead, or a zombie nobody reaps: either way not alive, though the file stays.
        for _ in 0..100 {
            if !pg.postmaster_alive() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !pg.postmaster_alive(),
            "the killed postmaster still counts as alive"
        );
        assert!(
            pg.pid_file_exists(),
            "a killed postmaster leaves its pid file"
        );

        // Its backends may hold its shared memory for a moment; a restart then fails
        // and is tried again, as a supervisor would.
        let mut restarted = Err(None);
        for _ in 0..50 {
            match pg.restart().await {
                Ok(()) => {
                    restarted = Ok(());
                    break;
                }
                Err(e) => restarted = Err(Some(e)),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        restarted.unwrap_or_else(|e| panic!("the cluster did not restart: {e:?}"));
        assert!(pg.postmaster_alive());
        assert_ne!(pg.postmaster_pid(), Some(pid));
        let client = connect(&pg.url("berth")).await;
        let note: String = client
            .query_one("SELECT note FROM kept", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(note, "here");
        drop(client);
        pg.stop().await.unwrap();
        assert!(!pg.pid_file_exists());
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

    #[tokio::test]
    async fn initdb_failure_quotes_what_initdb_said() {
        let (tmp, dir) = cluster_dir();
        // The real pg_ctl and postgres, and an initdb that fails the way a full disk would.
        let real = find_bin_dir(None).unwrap_or_else(|err| panic!("{err}"));
        let bin_dir = tmp.path().join("bin");
        fs::create_dir(&bin_dir).unwrap();
        for name in ["pg_ctl", "postgres"] {
            std::os::unix::fs::symlink(real.join(name), bin_dir.join(name)).unwrap();
        }
        let initdb = bin_dir.join("initdb");
        fs::write(
            &initdb,
            "#!/bin/sh\necho 'initdb: error: could not create directory: No space left on device' >&2\nexit 1\n",
        )
        .unwrap();
        fs::set_permissions(&initdb, fs::Permissions::from_mode(0o755)).unwrap();

        let options = EmbeddedOptions {
            bin_dir: Some(bin_dir),
            ..EmbeddedOptions::default()
        };
        let err = EmbeddedPostgres::start(&dir, options)
            .await
            .expect_err("started without a cluster");
        assert!(matches!(err, EmbeddedPgError::Initdb { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("No space left on device") && !message.contains('\n'),
            "{message}"
        );
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
            pg_ctl_timeout: "60".to_owned(),
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
