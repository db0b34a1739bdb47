//! `berth-pg run`: one throwaway cluster around one command.
//!
//! The test suite runs against a real PostgreSQL, one cluster for the whole run (each test
//! then clones its own database from a migrated template, see `tests/src/lib.rs`). Starting
//! that cluster is the same job the server does when it has no database URL, so rather than
//! a second copy of it in a shell script, `scripts/test` runs the suite as the COMMAND of
//! `berth-pg run -- cargo nextest run ...`:
//!
//! 1. a new directory `berth-pg-XXXXXX` is made in `--dir` (else `$TMPDIR` or `/tmp`) and
//!    [`EmbeddedPostgres::start`] starts a cluster in it (system binaries or
//!    `BERTH_PG_BIN_DIR`, Unix socket only, as `postgres` when run as root), with
//!    durability off, since it lives for one run;
//! 2. COMMAND runs with [`URL_ENV`] set to the cluster's admin URL,
//!    `postgres://berth@/postgres?host=<dir>/run`;
//! 3. however COMMAND ends, the cluster is stopped (immediately: nothing in it is kept) and
//!    the directory removed; `berth-pg` then exits with COMMAND's exit code.
//!
//! # Signals
//!
//! SIGINT, SIGTERM and SIGHUP do not end `berth-pg`: each one is passed on to COMMAND, and
//! the clean-up runs once COMMAND has exited, so a run cancelled with Ctrl-C or stopped by a
//! CI timeout leaves no postmaster and no directory behind. A second signal is passed on
//! too; what it means is COMMAND's business. Signals that arrive during start-up or clean-up
//! do not cut them short, and one that came during start-up means COMMAND is not run at
//! all. Only SIGKILL can leave the cluster and its directory behind.
//!
//! A signal that was already ignored when `berth-pg` started (under `nohup`, or in a
//! background job of a script) stays ignored, for COMMAND too, as a shell would leave it.
//!
//! COMMAND stays in `berth-pg`'s process group, so it remains in the terminal's foreground
//! and job control works as if it had been started directly. A Ctrl-C at the terminal
//! therefore reaches COMMAND twice in quick succession, directly and passed on;
//! cargo-nextest takes the pair as one interrupt.
//!
//! # Exit status
//!
//! COMMAND's exit code, or 128 + N when signal N killed it (as shells report it). When
//! `berth-pg` itself fails it says why on one line and exits with 125 (the cluster did not
//! start, or could not be cleaned up after COMMAND succeeded), 126 (COMMAND could not be
//! run) or 127 (COMMAND was not found), the codes `env` and `timeout` use for the same
//! cases.

use std::ffi::OsString;
use std::fmt::Display;
use std::future::poll_fn;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::task::{Context, Poll, Waker};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::signal::unix::SignalKind;

use crate::{EmbeddedOptions, EmbeddedPgError, EmbeddedPostgres};

/// The variable COMMAND finds the cluster's URL in; the test harness reads it.
pub const URL_ENV: &str = "BERTH_TEST_PG_URL";

/// The database the URL names: it always exists, and tests create their own from it.
const DATABASE: &str = "postgres";

/// Written after the crate's own settings, so these win. The cluster lives for one run, so
/// durability is traded for speed; the suite opens many connections at once.
const TEST_SETTINGS: &str = "\
max_connections = 500
fsync = off
synchronous_commit = off
full_page_writes = off";

/// `berth-pg` itself failed: the cluster did not start or could not be cleaned up.
const EXIT_FAILED: u8 = 125;
/// COMMAND exists but could not be run.
const EXIT_CANNOT_RUN: u8 = 126;
/// COMMAND was not found.
const EXIT_NOT_FOUND: u8 = 127;

/// The signals passed on to COMMAND.
const FORWARDED: [(Signal, SignalKind); 3] = [
    (Signal::SIGINT, SignalKind::interrupt()),
    (Signal::SIGTERM, SignalKind::terminate()),
    (Signal::SIGHUP, SignalKind::hangup()),
];

/// Arguments of `berth-pg run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Create the cluster's temporary directory in DIR [default: $TMPDIR or /tmp]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// The command to run (after `--`), and its arguments
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Why `berth-pg run` could not do its part. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not listen for {signal}: {source}")]
    Signals { signal: Signal, source: io::Error },

    #[error(
        "could not create a temporary directory in {}: {source}; choose another with --dir",
        dir.display()
    )]
    TempDir { dir: PathBuf, source: io::Error },

    #[error(transparent)]
    Postgres(#[from] EmbeddedPgError),

    #[error("no command given; put it after `--`")]
    NoCommand,

    #[error("could not run `{}`: {source}", program.to_string_lossy())]
    Spawn {
        program: OsString,
        source: io::Error,
    },

    #[error("could not wait for `{}`: {source}", program.to_string_lossy())]
    Wait {
        program: OsString,
        source: io::Error,
    },

    #[error(
        "{source}; the cluster may still run, so {} was kept: stop it (pg_ctl stop -D {}/data \
         -m immediate, as the user it runs as) and remove the directory",
        dir.display(),
        dir.display()
    )]
    Stop {
        dir: PathBuf,
        source: EmbeddedPgError,
    },

    #[error("could not remove {}: {source}; remove it by hand", dir.display())]
    Remove { dir: PathBuf, source: io::Error },
}

/// Runs `args.command` with a fresh cluster, cleans up, and returns the exit code
/// `berth-pg` should end with (see the module docs). Failures are reported on stderr.
pub async fn run(args: RunArgs) -> u8 {
    let mut signals = match Signals::listen() {
        Ok(signals) => signals,
        Err(err) => return failed(&err, EXIT_FAILED),
    };
    let cluster = match Throwaway::start(args.dir.as_deref()).await {
        Ok(cluster) => cluster,
        Err(err) => return failed(&err, EXIT_FAILED),
    };
    let code = if let Some(signal) = signals.pending() {
        eprintln!("berth-pg: got {signal} while starting PostgreSQL; not running the command");
        signal_exit_code(signal as i32)
    } else {
        let url = cluster.pg.url(DATABASE);
        eprintln!(
            "berth-pg: PostgreSQL is running in {}; {URL_ENV}={url}",
            cluster.dir.path().display()
        );
        match run_command(&args.command, &url, &mut signals).await {
            Ok(status) => exit_code(status),
            Err(err) => {
                let code = match &err {
                    RunError::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                        EXIT_NOT_FOUND
                    }
                    RunError::Spawn { .. } | RunError::NoCommand => EXIT_CANNOT_RUN,
                    _ => EXIT_FAILED,
                };
                failed(&err, code)
            }
        }
    };

    match cluster.remove().await {
        Ok(()) => code,
        // A leaked cluster must not pass for a successful run.
        Err(err) => failed(&err, if code == 0 { EXIT_FAILED } else { code }),
    }
}

/// Reports `err` on one line and returns `code`.
fn failed(err: &dyn Display, code: u8) -> u8 {
    eprintln!("berth-pg: {err}");
    code
}

/// Spawns COMMAND, passes our signals on to it, and waits until it exits.
async fn run_command(
    command: &[OsString],
    url: &str,
    signals: &mut Signals,
) -> Result<ExitStatus, RunError> {
    let (program, args) = command.split_first().ok_or(RunError::NoCommand)?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env(URL_ENV, url)
        .spawn()
        .map_err(|source| RunError::Spawn {
            program: program.clone(),
            source,
        })?;
    // Taken once, while the child certainly has not been reaped: it stays valid (a zombie
    // keeps it) until `wait` below returns, and only then can the number be reused.
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    loop {
        tokio::select! {
            status = child.wait() => {
                return status.map_err(|source| RunError::Wait {
                    program: program.clone(),
                    source,
                });
            }
            signal = signals.recv() => {
                eprintln!("berth-pg: got {signal}; passing it on to the command");
                if let Some(pid) = pid
                    && let Err(err) = kill(pid, signal)
                {
                    // ESRCH: it has just exited, and `wait` is about to say so.
                    if err != nix::errno::Errno::ESRCH {
                        eprintln!("berth-pg: could not pass {signal} on: {err}");
                    }
                }
            }
        }
    }
}

/// The exit code that reports `status` the way a shell would.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(EXIT_FAILED),
        (None, Some(signal)) => signal_exit_code(signal),
        (None, None) => EXIT_FAILED,
    }
}

fn signal_exit_code(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(EXIT_FAILED)
}

/// A cluster in a temporary directory, both gone after [`remove`](Self::remove).
///
/// If it is dropped instead (a panic), the cluster's own `Drop` stops the postmaster and
/// then the directory is removed: fields drop in declaration order.
struct Throwaway {
    pg: EmbeddedPostgres,
    dir: tempfile::TempDir,
}

impl Throwaway {
    async fn start(parent: Option<&Path>) -> Result<Throwaway, RunError> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_owned);
        let dir = tempfile::Builder::new()
            .prefix("berth-pg-")
            .tempdir_in(&parent)
            .map_err(|source| RunError::TempDir {
                dir: parent.clone(),
                source,
            })?;
        let options = EmbeddedOptions {
            bin_dir: None,
            run_as: None,
            database: DATABASE.to_owned(),
            extra_settings: TEST_SETTINGS.to_owned(),
            ..EmbeddedOptions::default()
        };
        // On failure `dir` is dropped, which removes it; a postmaster that did start has
        // already been stopped by then.
        let pg = EmbeddedPostgres::start(dir.path(), options).await?;
        Ok(Throwaway { pg, dir })
    }

    /// Stops the cluster, then removes its directory. A directory whose cluster may still
    /// run is kept rather than deleted under it, and the error says how to deal with it.
    async fn remove(self) -> Result<(), RunError> {
        let Throwaway { mut pg, dir } = self;
        if let Err(source) = pg.stop_immediately().await {
            return Err(RunError::Stop {
                dir: dir.keep(),
                source,
            });
        }
        let path = dir.path().to_owned();
        dir.close()
            .map_err(|source| RunError::Remove { dir: path, source })
    }
}

/// Our handlers for the signals we pass on. Once installed they stay for the life of the
/// process (tokio does not restore the default action), so none of these signals can end
/// `berth-pg` before it has cleaned up.
struct Signals {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn listen() -> Result<Signals, RunError> {
        // A signal ignored when we started (under `nohup`, say) is left alone, as a shell
        // leaves it: a handler would un-ignore it for COMMAND too, which inherits ignored
        // signals but not handled ones.
        let ignored = ignored_signals();
        let streams = FORWARDED
            .into_iter()
            .filter(|(signal, _)| !ignored.contains(signal))
            .map(|(signal, kind)| {
                let stream = tokio::signal::unix::signal(kind)
                    .map_err(|source| RunError::Signals { signal, source })?;
                Ok((signal, stream))
            })
            .collect::<Result<_, RunError>>()?;
        Ok(Signals { streams })
    }

    /// The next signal; one that arrived while nobody was waiting is returned at once.
    async fn recv(&mut self) -> Signal {
        poll_fn(|cx| self.poll_any(cx)).await
    }

    /// A signal that has arrived since the last call, if any, without waiting.
    fn pending(&mut self) -> Option<Signal> {
        match self.poll_any(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(signal) => Some(signal),
            Poll::Pending => None,
        }
    }

    fn poll_any(&mut self, cx: &mut Context<'_>) -> Poll<Signal> {
        for (signal, stream) in &mut self.streams {
            // `None` would mean the runtime is shutting down; nothing more will come.
            if let Poll::Ready(Some(())) = stream.poll_recv(cx) {
                return Poll::Ready(*signal);
            }
        }
        Poll::Pending
    }
}

/// The signals this process ignores, from `SigIgn` in `/proc/self/status` (a hex mask, bit
/// N-1 for signal N); reading it needs no `unsafe`, unlike asking `sigaction`.
#[cfg(target_os = "linux")]
fn ignored_signals() -> Vec<Signal> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    parse_mask(mask)
}

/// Elsewhere no signal counts as ignored, so all of them are passed on.
#[cfg(not(target_os = "linux"))]
fn ignored_signals() -> Vec<Signal> {
    Vec::new()
}

fn parse_mask(mask: u64) -> Vec<Signal> {
    FORWARDED
        .iter()
        .map(|(signal, _)| *signal)
        .filter(|signal| {
            let bit = (*signal as i32) - 1;
            (0..64).contains(&bit) && mask & (1 << bit) != 0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        // Killed by SIGTERM (15).
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }

    #[test]
    fn ignored_signals_are_read_from_the_mask() {
        // SIGHUP (1) and SIGTERM (15) set, SIGINT (2) not.
        let mask = (1 << 0) | (1 << 14);
        assert_eq!(parse_mask(mask), [Signal::SIGTERM, Signal::SIGHUP]);
        assert!(parse_mask(0).is_empty());
    }
}
