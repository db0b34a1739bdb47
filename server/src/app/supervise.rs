//! Keeping the embedded PostgreSQL alive while the server runs.
//!
//! The server owns its embedded cluster, so when the postmaster dies (the OOM killer, an
//! operator's `kill -9`, a crash) nobody else will start it again. [`supervise`] looks at
//! the postmaster every half second; when it is gone it logs that, restarts it with the
//! backoff of [`RestartPolicy`] and logs each attempt. Meanwhile the database watcher
//! (`live::health`) turns health NOT_SERVING and calls answer UNAVAILABLE; once the
//! restart is done, the pool makes new connections and everything goes on.
//!
//! If every attempt fails, the server cannot do anything useful any more, and serving
//! errors for ever would only hide that: [`supervise`] returns [`DatabaseLost`], and the
//! server stops and exits non-zero with a message naming what died, what was tried and
//! where the PostgreSQL log is.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_pg::{EmbeddedPostgres, RestartPolicy};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// How often the postmaster is looked at.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// The embedded cluster, shared by the supervisor and the shutdown that stops it.
pub type SharedCluster = Arc<Mutex<EmbeddedPostgres>>;

/// The embedded PostgreSQL died and could not be started again.
#[derive(Debug, thiserror::Error)]
#[error(
    "the embedded PostgreSQL in {} died{} and could not be restarted: {attempts} attempts \
     over {waited:?} failed, the last with: {last}; see its log {}",
    data_dir.display(),
    pid.map(|pid| format!(" (postmaster pid {pid})")).unwrap_or_default(),
    log.display()
)]
pub struct DatabaseLost {
    /// The cluster's data directory.
    pub data_dir: PathBuf,
    /// The postmaster that died, if its pid was known.
    pub pid: Option<i32>,
    /// Restart attempts made.
    pub attempts: u32,
    /// Time spent waiting between them.
    pub waited: Duration,
    /// What the last attempt failed with.
    pub last: String,
    /// `postgres.log`.
    pub log: PathBuf,
}

/// Watches the postmaster until `shutdown`, restarting it when it dies; returns
/// [`DatabaseLost`] when it cannot be restarted.
pub async fn supervise(
    cluster: SharedCluster,
    policy: RestartPolicy,
    shutdown: CancellationToken,
) -> Result<(), DatabaseLost> {
    // The postmaster the server started (or adopted); a restart gives a new one.
    let mut pid = cluster.lock().await.postmaster_pid();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let (alive, data_dir, log) = {
            let cluster = cluster.lock().await;
            (
                cluster.postmaster_alive(),
                cluster.data_dir().to_owned(),
                cluster.log_file().to_owned(),
            )
        };
        if alive || shutdown.is_cancelled() {
            continue;
        }
        tracing::error!(postmaster_pid = ?pid, log = %log.display(), "the embedded PostgreSQL died; restarting it");
        let mut attempts = 0;
        let mut waited = Duration::ZERO;
        let mut last = String::new();
        let mut restarted = false;
        for delay in policy.delays() {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
            waited += delay;
            attempts += 1;
            let mut cluster = cluster.lock().await;
            if shutdown.is_cancelled() {
                return Ok(());
            }
            match cluster.restart().await {
                Ok(()) => {
                    let new_pid = cluster.postmaster_pid();
                    tracing::warn!(attempt = attempts, old_pid = ?pid, new_pid = ?new_pid, "restarted the embedded PostgreSQL");
                    pid = new_pid;
                    restarted = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(attempt = attempts, of = policy.attempts, error = %e, "restarting the embedded PostgreSQL failed");
                    last = e.to_string();
                }
            }
        }
        if !restarted {
            return Err(DatabaseLost {
                data_dir,
                pid,
                attempts,
                waited,
                last,
                log,
            });
        }
    }
}
