//! What can go wrong with a private cluster, in words a user can act on.
//!
//! Several programs show these messages as they are (the server on its one error line,
//! `berth-pg run` on its own), so each one names the problem and the fix without assuming
//! which program, flag or configuration file the caller has: it names paths, users and
//! `BERTH_PG_BIN_DIR`, which every caller honours.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use crate::binaries::BIN_DIR_ENV;
use crate::cluster::SOCKET_PATH_MAX;

/// Everything that can stop a private cluster from starting or stopping. Each message is one
/// line that says what is wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install them \
         (Debian/Ubuntu: apt-get install postgresql; Fedora: dnf install postgresql-server; \
         macOS: brew install postgresql) or set {BIN_DIR_ENV} to the directory that holds them"
    )]
    BinariesNotFound,

    #[error(
        "{} does not contain {missing}; {origin} must name the directory that holds initdb, \
         pg_ctl and postgres",
        dir.display()
    )]
    BinariesMissing {
        dir: PathBuf,
        origin: &'static str,
        missing: String,
    },

    #[error(
        "there is no user `{user}` to run PostgreSQL as (it refuses to run as root); create \
         it (useradd --system --user-group {user}) or run as an unprivileged user, not root"
    )]
    NoSuchUser { user: String },

    #[error("could not look up user `{user}`: {source}; check the system's user database")]
    UserLookup { user: String, source: nix::Error },

    #[error(
        "user `{user}` has uid 0, and PostgreSQL refuses to run as root; name an unprivileged user"
    )]
    RunAsRoot { user: String },

    #[error(
        "cannot run PostgreSQL as user `{user}`: switching users needs root; run as \
         `{user}` yourself or do not name a user"
    )]
    RunAsNeedsRoot { user: String },

    #[error(
        "PostgreSQL runs as user `{user}`, which cannot enter {}; allow it (chmod o+x {}) or \
         choose a directory it can reach",
        dir.display(),
        dir.display()
    )]
    Unreachable { dir: PathBuf, user: String },

    #[error(
        "{} is owned by uid {owner}, but PostgreSQL runs as {user}; chown -R {user} {} or use \
         another directory",
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
         socket allows; put the cluster in a directory with a shorter path",
        path.display()
    )]
    SocketPathTooLong { path: PathBuf, len: usize },

    #[error(
        "{} is not valid UTF-8; put the cluster in a directory whose path is",
        path.display()
    )]
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
        "could not connect to the private PostgreSQL at {}: {source}; see {}",
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

/// Turns an I/O error on `path` into [`EmbeddedPgError::Io`], for `map_err`.
pub(crate) fn io_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> EmbeddedPgError {
    let path = path.to_owned();
    move |source| EmbeddedPgError::Io {
        action,
        path,
        source,
    }
}
