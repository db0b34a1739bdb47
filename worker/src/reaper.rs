//! Reaping per Docker engine: no Berth container outlives its attempt, whichever worker
//! started it.
//!
//! Several workers may share one Docker engine, and a worker may die (SIGKILL, a crash, a
//! lost host process) with its containers still running. Its own name is then gone from
//! the fleet, so reaping only "my" containers would leave them running for ever. Instead,
//! at start and every `orphan_sweep_interval`, every worker lists all Berth-labelled
//! containers on its engine ([`DockerExecutor::berth_containers`]) and [`judge`]s each:
//!
//! - **Its own** (`berth.worker` is its name) live only while their attempt is in its
//!   running map, as before: the worker knows what it runs.
//! - **Another worker's**: the server is asked (`KeepContainers`) which attempts are still
//!   current and held by a live worker. The others' containers are stopped and removed.
//!   Attempts the server has no record of belong to another installation sharing the
//!   engine (or to a request since deleted) and are left alone.
//! - **Past its deadline**: a running container of another worker whose attempt started
//!   longer ago than its timeout plus its grace plus [`DEADLINE_MARGIN`] is stopped even if
//!   the server says keep. Its worker's own timer stops it at the timeout; this one only
//!   acts when that worker is gone, and the margin lets the owner's timer win otherwise.
//!   The deadline counts from the container's start, not from when it was noticed.
//!
//! Stopping is the attempt's own: SIGTERM, the grace period from the `berth.stop-grace-ms`
//! label, SIGKILL, removal. Each stop runs in a task of its own ([`Reaper::stop`]), so a
//! long grace period holds up neither the sweep nor the stream, and a container already
//! being stopped is not stopped a second time: a later sweep, or a `StopContainers` from
//! the server, joins the stop under way.
//!
//! The server's `StopContainers` names the attempts of a lost worker that shared this
//! engine: [`Reaper::stop_attempts`] stops their containers and returns once they are
//! gone, and the worker answers `ContainersStopped`, after which (and only after which)
//! the server lets their requests run again.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use berth_common::proto::{AttemptRef, KeepContainersRequest};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::executor::{DockerExecutor, ExecutorError, Found};
use crate::logs::AgentClient;

/// An attempt: (work request id, attempt number).
pub type Key = (String, u32);

/// How long past its timeout and grace a running container of another worker may go on
/// before this worker stops it, so that a live owner's own timer always acts first.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// How long a sweep waits for the server's judgement before leaving other workers'
/// containers for the next sweep.
const ASK_WITHIN: Duration = Duration::from_secs(30);

/// The most attempts asked about in one `KeepContainers` call (the server's bound).
const KEEP_BATCH: usize = 1000;

/// What the server said about the attempts of other workers' containers.
#[derive(Debug, Default)]
pub struct ServerView {
    /// Current attempts held by a live worker.
    pub keep: HashSet<Key>,
    /// Attempts the server has no record of.
    pub unknown: HashSet<Key>,
}

/// What to do with one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its attempt still runs.
    Keep,
    /// Not this worker's to judge (another installation's, or the server cannot be asked).
    Leave,
    /// Stop and remove it, for this reason.
    Stop(String),
}

/// Judges one container found on the engine (see the module docs). `running` is this
/// worker's running map; `server` is `None` when the server could not be asked;
/// `started_at` is when the container started, if it did.
pub fn judge(
    found: &Found,
    own_name: &str,
    running: &HashSet<Key>,
    server: Option<&ServerView>,
    started_at: Option<SystemTime>,
    now: SystemTime,
) -> Verdict {
    if found.worker == own_name {
        return match &found.attempt {
            Some(key) if running.contains(key) => Verdict::Keep,
            _ => Verdict::Stop("this worker does not run its attempt".to_owned()),
        };
    }
    let (Some(key), Some(server)) = (&found.attempt, server) else {
        return Verdict::Leave;
    };
    if server.unknown.contains(key) {
        return Verdict::Leave;
    }
    if !server.keep.contains(key) {
        return Verdict::Stop(format!(
            "its attempt (of worker {}) is over or its worker is lost",
            found.worker
        ));
    }
    if let (true, Some(timeout), Some(started)) = (found.running, found.timeout, started_at) {
        let deadline = started + timeout + found.grace + DEADLINE_MARGIN;
        if now > deadline {
            return Verdict::Stop(format!(
                "it ran past its timeout of {} (worker {} did not stop it)",
                humantime::format_duration(timeout),
                found.worker
            ));
        }
    }
    Verdict::Keep
}

/// Stops containers in tasks of their own, each at most once at a time.
pub struct Reaper {
    executor: DockerExecutor,
    own_name: String,
    /// Stops under way, by container id; the value becomes whether the container is gone
    /// once the stop has finished (one that could not be removed is tried again by the
    /// next sweep).
    stopping: Mutex<HashMap<String, watch::Receiver<Option<bool>>>>,
    /// Attempts a `StopContainers` is being carried out for, so a repeat is ignored.
    confirming: Mutex<HashSet<Key>>,
    tasks: TaskTracker,
}

impl Reaper {
    /// A reaper for the engine of `executor`, on behalf of the worker `own_name`.
    pub fn new(executor: DockerExecutor, own_name: &str) -> Reaper {
        Reaper {
            executor,
            own_name: own_name.to_owned(),
            stopping: Mutex::new(HashMap::new()),
            confirming: Mutex::new(HashSet::new()),
            tasks: TaskTracker::new(),
        }
    }

    fn stopping(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, watch::Receiver<Option<bool>>>> {
        self.stopping.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn confirming(&self) -> std::sync::MutexGuard<'_, HashSet<Key>> {
        self.confirming.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stop tasks, for the worker's shutdown to wait for.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Starts stopping `found` unless a stop is already under way; returns what to wait on
    /// for it to be gone.
    pub fn stop(&self, found: &Found, why: &str) -> watch::Receiver<Option<bool>> {
        let mut stopping = self.stopping();
        if let Some(under_way) = stopping.get(&found.id) {
            return under_way.clone();
        }
        info!(container_id = %found.id, worker = %found.worker, attempt = ?found.attempt, grace = ?found.grace, why, "stopping and removing a container");
        let (done_tx, done_rx) = watch::channel(None);
        stopping.insert(found.id.clone(), done_rx.clone());
        let executor = self.executor.clone();
        let id = found.id.clone();
        let grace = found.grace;
        // The entry is dropped by the next sweep; until then a repeat gets the answer at once.
        self.tasks.spawn(async move {
            let gone = executor.stop_and_remove(&id, grace).await;
            let _ = done_tx.send(Some(gone));
        });
        done_rx
    }

    /// Forgets stops that have finished, so a container that survived its removal (the
    /// engine refused) is tried again.
    fn forget_finished(&self) {
        self.stopping().retain(|_, done| done.borrow().is_none());
    }

    /// Judges every Berth container on the engine and starts stopping those that must
    /// go. `running` gives this worker's running map, read after the listing so that an
    /// attempt started meanwhile keeps its container; `client` asks the server about other
    /// workers' containers (`None`: leave them). Returns what to wait on for the stops
    /// started or joined.
    pub async fn sweep(
        &self,
        running: &(dyn Fn() -> HashSet<Key> + Sync),
        client: Option<&mut AgentClient>,
    ) -> Result<Vec<watch::Receiver<Option<bool>>>, ExecutorError> {
        self.forget_finished();
        let found = self.executor.berth_containers().await?;
        let running = running();
        let foreign: Vec<Key> = found
            .iter()
            .filter(|f| f.worker != self.own_name)
            .filter_map(|f| f.attempt.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let server = match client {
            Some(client) if !foreign.is_empty() => {
                match tokio::time::timeout(ASK_WITHIN, ask(client, &foreign)).await {
                    Ok(Ok(view)) => Some(view),
                    Ok(Err(status)) => {
                        warn!(error = %berth_common::client::describe_status(&status), "cannot ask the server about other workers' containers; leaving them for now");
                        None
                    }
                    Err(_) => {
                        warn!(
                            "the server did not answer about other workers' containers; leaving them for now"
                        );
                        None
                    }
                }
            }
            _ => Some(ServerView::default()),
        };
        let now = SystemTime::now();
        let mut waits = Vec::new();
        for container in &found {
            let kept_foreign = container.worker != self.own_name
                && container.running
                && container.timeout.is_some()
                && server.as_ref().is_some_and(|s| {
                    container
                        .attempt
                        .as_ref()
                        .is_some_and(|k| s.keep.contains(k))
                });
            let started_at = if kept_foreign {
                self.executor.started_at(&container.id).await
            } else {
                None
            };
            let verdict = judge(
                container,
                &self.own_name,
                &running,
                server.as_ref(),
                started_at,
                now,
            );
            if let Verdict::Stop(why) = verdict {
                waits.push(self.stop(container, &why));
            }
        }
        Ok(waits)
    }

    /// Stops the containers of `keys` on the engine (a lost worker's, named by the
    /// server) and returns the attempts whose containers it found and removed, and those
    /// it found no container of (the server tells the two apart: see
    /// `ContainersStopped.none_found`); `None` when every one of `keys` is already being
    /// stopped for an earlier request (a repeat). Attempts this worker runs itself are not
    /// touched and not confirmed.
    pub async fn stop_attempts(&self, keys: Vec<Key>, running: &HashSet<Key>) -> Option<Stopped> {
        let keys: Vec<Key> = {
            let mut confirming = self.confirming();
            keys.into_iter()
                .filter(|k| !running.contains(k))
                .filter(|k| confirming.insert(k.clone()))
                .collect()
        };
        if keys.is_empty() {
            return None;
        }
        let mut outcome = Stopped::default();
        for key in &keys {
            match self.executor.containers_of(&key.0, key.1).await {
                Ok(found) if found.is_empty() => outcome.none_found.push(key.clone()),
                Ok(found) => {
                    let waits: Vec<_> = found
                        .iter()
                        .map(|f| self.stop(f, "the server asked: its worker is lost"))
                        .collect();
                    let mut all_gone = true;
                    for mut done in waits {
                        let removed = done.wait_for(Option::is_some).await.ok().and_then(|v| *v);
                        all_gone &= removed == Some(true);
                    }
                    if all_gone {
                        outcome.removed.push(key.clone());
                    }
                }
                Err(e) => {
                    warn!(work_request = %key.0, attempt = key.1, error = %e, "cannot look for the lost worker's container; the server asks again")
                }
            }
        }
        let mut confirming = self.confirming();
        for key in &keys {
            confirming.remove(key);
        }
        Some(outcome)
    }
}

/// What [`Reaper::stop_attempts`] did.
#[derive(Debug, Default)]
pub struct Stopped {
    /// Attempts whose containers were found, stopped and removed.
    pub removed: Vec<Key>,
    /// Attempts no container was found of.
    pub none_found: Vec<Key>,
}

/// Asks the server about `attempts`, in batches it accepts.
async fn ask(client: &mut AgentClient, attempts: &[Key]) -> Result<ServerView, tonic::Status> {
    let mut view = ServerView::default();
    for batch in attempts.chunks(KEEP_BATCH) {
        let request = KeepContainersRequest {
            attempts: batch
                .iter()
                .map(|(id, n)| AttemptRef {
                    work_request_id: id.clone(),
                    attempt: *n,
                })
                .collect(),
        };
        let answer = client.keep_containers(request).await?.into_inner();
        view.keep.extend(
            answer
                .keep
                .into_iter()
                .map(|r| (r.work_request_id, r.attempt)),
        );
        view.unknown.extend(
            answer
                .unknown
                .into_iter()
                .map(|r| (r.work_request_id, r.attempt)),
        );
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "me";

    fn found(worker: &str, attempt: Option<(&str, u32)>, running: bool) -> Found {
        Found {
            id: "c1".to_owned(),
            worker: worker.to_owned(),
            attempt: attempt.map(|(id, n)| (id.to_owned(), n)),
            running,
            grace: Duration::from_secs(10),
            timeout: Some(Duration::from_secs(20)),
        }
    }

    fn key(id: &str, n: u32) -> Key {
        (id.to_owned(), n)
    }

    fn view(keep: &[Key], unknown: &[Key]) -> ServerView {
        ServerView {
            keep: keep.iter().cloned().collect(),
            unknown: unknown.iter().cloned().collect(),
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    #[test]
    fn own_containers_live_only_while_running_here() {
        let c = found(ME, Some(("r", 1)), true);
        let running = HashSet::from([key("r", 1)]);
        // The server's opinion does not matter for our own containers.
        let server = view(&[], &[]);
        assert_eq!(
            judge(&c, ME, &running, Some(&server), None, at(0)),
            Verdict::Keep
        );
        assert!(matches!(
            judge(&c, ME, &HashSet::new(), None, None, at(0)),
            Verdict::Stop(_)
        ));
        let unlabelled = found(ME, None, false);
        assert!(matches!(
            judge(&unlabelled, ME, &running, None, None, at(0)),
            Verdict::Stop(_)
        ));
    }

    #[test]
    fn foreign_containers_follow_the_server() {
        let c = found("other", Some(("r", 1)), true);
        let none = HashSet::new();
        let keep = view(&[key("r", 1)], &[]);
        let over = view(&[], &[]);
        let unknown = view(&[], &[key("r", 1)]);
        assert_eq!(
            judge(&c, ME, &none, Some(&keep), Some(at(0)), at(1)),
            Verdict::Keep
        );
        assert!(matches!(
            judge(&c, ME, &none, Some(&over), None, at(1)),
            Verdict::Stop(_)
        ));
        assert_eq!(
            judge(&c, ME, &none, Some(&unknown), None, at(1)),
            Verdict::Leave
        );
        // Without the server, another worker's container is not ours to judge.
        assert_eq!(judge(&c, ME, &none, None, None, at(1)), Verdict::Leave);
        // Nor is one whose labels do not name an attempt.
        let unlabelled = found("other", None, true);
        assert_eq!(
            judge(&unlabelled, ME, &none, Some(&over), None, at(1)),
            Verdict::Leave
        );
    }

    #[test]
    fn a_kept_foreign_container_past_its_deadline_is_stopped() {
        let c = found("other", Some(("r", 1)), true);
        let none = HashSet::new();
        let keep = view(&[key("r", 1)], &[]);
        // timeout 20 s + grace 10 s + margin 5 s = 35 s after the start.
        assert_eq!(
            judge(&c, ME, &none, Some(&keep), Some(at(0)), at(35)),
            Verdict::Keep
        );
        assert!(matches!(
            judge(&c, ME, &none, Some(&keep), Some(at(0)), at(36)),
            Verdict::Stop(_)
        ));
        // Counted from the start, not from when it was first seen: a container found late
        // is stopped at once.
        assert!(matches!(
            judge(&c, ME, &none, Some(&keep), Some(at(0)), at(3600)),
            Verdict::Stop(_)
        ));
        // No timeout, no start time or not running: nothing to enforce.
        let mut untimed = c.clone();
        untimed.timeout = None;
        assert_eq!(
            judge(&untimed, ME, &none, Some(&keep), Some(at(0)), at(3600)),
            Verdict::Keep
        );
        assert_eq!(
            judge(&c, ME, &none, Some(&keep), None, at(3600)),
            Verdict::Keep
        );
        let exited = found("other", Some(("r", 1)), false);
        assert_eq!(
            judge(&exited, ME, &none, Some(&keep), Some(at(0)), at(3600)),
            Verdict::Keep
        );
    }
}
