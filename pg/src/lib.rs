//! A private PostgreSQL cluster, owned by the program that starts it.
//!
//! Berth keeps all of its state in PostgreSQL, and its programs need a cluster of their
//! own rather than one somebody set up for them:
//!
//! - `berth-server`, when it is given no database URL, runs one inside its data directory,
//!   because asking someone who only wants to try Berth to install, configure and secure a
//!   database first is a steep first step;
//! - the test suite gets one throwaway cluster per run from `berth-pg run` (the binary in
//!   this crate, see [`run`]), which `scripts/test` wraps around `cargo nextest run`;
//! - `berth-bench` starts one per scenario, so that its figures come from a cluster nothing
//!   else is using.
//!
//! They all want the same things: find the PostgreSQL server binaries the system has,
//! create the cluster on first use, start it with no TCP listener, make sure a database
//! exists, and stop it again without leaving a postmaster behind. This crate is the one
//! place that knows how; it depends on no other Berth crate, so the test harness and the
//! benchmarks can use it without linking the server.
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
//! `initdb` and `postgres` refuse to run as root. When the calling program runs as root (as
//! Berth does in containers and CI), every PostgreSQL command runs as an unprivileged user
//! instead: the one named by [`EmbeddedOptions::run_as`], else `postgres`. `dir` is chowned
//! to that user, and since the user must be able to walk down to `dir`, every parent
//! directory is checked up front; this crate does not change the permissions of directories
//! it did not create, it says which one is in the way. Commands get the user's uid and
//! primary gid; std's `Command` drops the supplementary groups when it switches uid, so only
//! the primary group counts in that check.
//!
//! # Socket path length
//!
//! A Unix socket path is limited to about 107 bytes (103 on macOS). If `run/.s.PGSQL.5432`
//! would be longer, start fails and asks for a shorter directory; it does not fall back to a
//! directory elsewhere, so that everything the cluster owns stays under `dir`.
//!
//! # Lifetime
//!
//! [`EmbeddedPostgres::stop`] shuts down with `pg_ctl stop -m fast` (sessions are
//! disconnected, then a checkpoint); [`EmbeddedPostgres::stop_immediately`] skips the
//! checkpoint, for a throwaway cluster that is deleted next. If an [`EmbeddedPostgres`] is
//! dropped while the cluster still runs, `Drop` stops it with `-m immediate` so that a
//! panicking test never leaves a postmaster behind; the next start then runs crash recovery,
//! which PostgreSQL handles routinely. A postmaster left over from an earlier run (for
//! example after the server was killed) is adopted rather than treated as an error.
//!
//! If the postmaster dies under its owner (killed, crashed), the pid file stays behind;
//! [`EmbeddedPostgres::postmaster_alive`] looks past it at the process, and
//! [`EmbeddedPostgres::restart`] starts the postmaster again, which runs crash recovery.
//! [`RestartPolicy`] says how long to wait before each restart and when to give up.
//!
//! `initdb` and `pg_ctl` run in a process group of their own, so a Ctrl-C at the terminal
//! reaches only the calling program, which decides how to stop the cluster.

mod binaries;
mod cluster;
mod error;
pub mod run;
mod supervise;
mod user;

pub use binaries::{BIN_DIR_ENV, find_bin_dir};
pub use cluster::{EmbeddedOptions, EmbeddedPostgres};
pub use error::EmbeddedPgError;
pub use supervise::RestartPolicy;
