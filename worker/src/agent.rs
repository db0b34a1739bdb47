//! The worker's side of the agent protocol: one control stream to the server, kept alive
//! across server restarts, and one task per running attempt.
//!
//! The stream carries Hello/Welcome, heartbeats both ways, Assign/Cancel/StopContainers
//! from the server and Accept/Reject/Started/Finished/GoingAway/ContainersStopped from the
//! worker. Before the first Hello, and every sweep interval after, the `reaper` judges
//! every Berth container on the engine; a StopContainers (a lost worker's attempts on this
//! engine) is carried out in a task of its own and answered once the containers are gone. Log bytes never travel
//! on it: each attempt's output is masked, spooled to disk and uploaded with `AppendLog`
//! (see `logs`), and `Finished` is sent only once every byte is acknowledged. The
//! container is removed just after `Finished` is sent, with the slot already free, so the
//! removal delays neither the result nor the next job.
//!
//! Reconnects use jittered exponential backoff. After a reconnect the Hello lists every
//! attempt still running here (and every finished one the server has not answered
//! `Recorded` for), so the server lets them go on instead of running them again; the
//! Welcome names those it no longer wants, which are stopped without a report. Every
//! Finished not yet answered with `Recorded` is sent again on each new stream.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_common::PROTOCOL_VERSION;
use berth_common::client::BearerAuth;
use berth_common::proto::agent_service_client::AgentServiceClient;
use berth_common::proto::artifact_service_client::ArtifactServiceClient;
use berth_common::proto::{
    self, AttemptRef, LogStream, Outcome, ServerMessage, WorkerMessage, server_message,
    worker_message,
};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Code;
use tracing::Instrument;

use crate::config::WorkerConfig;
use crate::executor::{Cleanup, DockerExecutor, Job, OutputEvent, RunReport};
use crate::inputs::{ArtifactClient, AttemptDirs, FilesDir};
use crate::logs::{LogSpool, UploadError, upload};
use crate::mask::Masker;
use crate::outputs;
use crate::reaper::Reaper;

type Key = (String, u32);
type Client = crate::logs::AgentClient;

/// How long a stopping worker waits for its attempt tasks (by then only removing
/// containers, normally) before its last sweep removes what is left.
const TIDY_WAIT: Duration = Duration::from_secs(10);

/// Why the worker stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The server speaks another protocol version.
    #[error("the server refused this worker: {0}")]
    Refused(String),
    /// Docker is not usable.
    #[error(transparent)]
    Docker(#[from] crate::executor::ExecutorError),
    /// The server URL or CA is unusable.
    #[error(transparent)]
    Connect(#[from] berth_common::client::ConnectError),
}

/// A running attempt.
struct Running {
    /// Stops the container (cancel or drain deadline).
    cancel: CancellationToken,
    /// Set when the server no longer wants the attempt: stop it, report nothing.
    abandoned: CancellationToken,
    /// Set when the worker stops it for its own shutdown: report Interrupted.
    interrupted: CancellationToken,
}

/// Shared between the stream loop and the attempt tasks.
struct State {
    config: WorkerConfig,
    executor: DockerExecutor,
    /// Judges and stops the Berth containers on the engine (see `reaper`).
    reaper: Reaper,
    client: Client,
    /// Reads inputs and writes outputs of the attempts this worker holds.
    artifacts: ArtifactClient,
    /// The input cache and the attempts' dirs (see `inputs`).
    files: FilesDir,
    running: Mutex<HashMap<Key, Running>>,
    /// Finished reports not yet acknowledged with Recorded: each is sent again on every
    /// new stream until the server says it recorded it (a repeat changes nothing there).
    /// However long the server or its database is away, a result is never dropped here.
    unconfirmed: Mutex<HashMap<Key, proto::Finished>>,
    outbox: mpsc::UnboundedSender<WorkerMessage>,
    /// The attempt tasks. One outlives its slot in `running` while it removes its
    /// container after the report; the worker waits for them before its last sweep.
    attempts: TaskTracker,
    /// When the server was last heard from, and the lease TTL it gave in its Welcome;
    /// `None` before the first Welcome. See [`fence_if_lapsed`].
    contact: Mutex<Option<(tokio::time::Instant, Duration)>>,
}

impl State {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unconfirmed(&self) -> std::sync::MutexGuard<'_, HashMap<Key, proto::Finished>> {
        self.unconfirmed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that the server was heard from just now, with the lease TTL it gave.
    fn heard(&self, lease: Duration) {
        *self.contact.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((tokio::time::Instant::now(), lease));
    }

    /// When this worker's lease runs out as the server counts it, if it was ever given.
    fn lease_end(&self) -> Option<tokio::time::Instant> {
        self.contact
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|(heard, lease)| heard + lease)
    }

    /// Whether some running attempt has not been told to stop for the worker's sake.
    fn any_uninterrupted(&self) -> bool {
        self.running()
            .values()
            .any(|job| !job.interrupted.is_cancelled())
    }

    fn live_keys(&self) -> HashSet<Key> {
        self.running().keys().cloned().collect()
    }
}

fn attempt_ref(key: &Key) -> AttemptRef {
    AttemptRef {
        work_request_id: key.0.clone(),
        attempt: key.1,
    }
}

fn key_of(reference: Option<&AttemptRef>) -> Option<Key> {
    reference.map(|r| (r.work_request_id.clone(), r.attempt))
}

/// How much of a HEALTHCHECK probe's output a HealthChanged carries.
const HEALTH_OUTPUT_MAX: usize = 1024;

/// A probe's output as HealthChanged carries it: secret values masked first (so a cut
/// cannot leave half a secret readable), then cut to [`HEALTH_OUTPUT_MAX`] bytes on a
/// character boundary.
fn health_output(output: &str, secrets: &[String]) -> String {
    let mut masker = Masker::new(secrets.iter().cloned());
    let mut masked = masker.push(output.as_bytes()).into_owned();
    masked.extend_from_slice(&masker.finish());
    let text = String::from_utf8_lossy(&masked);
    let mut end = text.len().min(HEALTH_OUTPUT_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn message(msg: worker_message::Msg) -> WorkerMessage {
    WorkerMessage { msg: Some(msg) }
}

fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// Runs the worker until `shutdown` (first SIGTERM: drain) and `force` (drain deadline or
/// second signal: stop everything) say so.
pub async fn run(
    config: WorkerConfig,
    shutdown: CancellationToken,
    force: CancellationToken,
) -> Result<(), WorkerError> {
    let executor = DockerExecutor::connect(
        config.docker_host.as_deref(),
        config.docker_tls,
        &config.name,
    )
    .await?;
    let mut facts = executor.host_facts().await?;
    // Where the ports published by this worker's service replicas are reached.
    facts.insert("address".to_owned(), config.advertise_address.clone());
    tokio::fs::create_dir_all(&config.spool_dir)
        .await
        .map_err(|e| {
            WorkerError::Refused(format!(
                "cannot create the spool dir {}: {e}",
                config.spool_dir.display()
            ))
        })?;
    let channel =
        berth_common::client::endpoint(&config.server, config.ca_cert.as_deref())?.connect_lazy();
    let artifacts =
        ArtifactServiceClient::with_interceptor(channel.clone(), BearerAuth::new(&config.token))
            .max_decoding_message_size(64 * 1024 * 1024);
    let client = AgentServiceClient::with_interceptor(channel, BearerAuth::new(&config.token))
        .max_decoding_message_size(64 * 1024 * 1024);
    let files = FilesDir::open(&config.files_dir).map_err(|e| {
        WorkerError::Refused(format!(
            "cannot set up the files dir {}: {e}",
            config.files_dir.display()
        ))
    })?;
    // A fresh worker process runs nothing: whatever of ours is left is an orphan, and so is
    // whatever a lost worker on this engine left behind. Done before the first Hello, so
    // nothing this worker is given can run beside a leftover of the same request.
    let reaper = Reaper::new(executor.clone(), &config.name);
    match reaper.sweep(&HashSet::new, Some(&mut client.clone())).await {
        Ok(stops) if stops.is_empty() => {}
        Ok(stops) => {
            let count = stops.len();
            for mut done in stops {
                let _ = done.wait_for(Option::is_some).await;
            }
            tracing::info!(
                removed = count,
                "removed containers left on the engine by an earlier run or a lost worker"
            );
        }
        Err(e) => tracing::warn!(error = %e, "could not look for leftover containers"),
    }
    let (outbox, mut outbox_rx) = mpsc::unbounded_channel();
    let state = Arc::new(State {
        config,
        executor,
        reaper,
        client,
        artifacts,
        files,
        running: Mutex::new(HashMap::new()),
        unconfirmed: Mutex::new(HashMap::new()),
        outbox,
        attempts: TaskTracker::new(),
        contact: Mutex::new(None),
    });

    let metrics_end = CancellationToken::new();
    let _metrics_end = metrics_end.clone().drop_guard();
    if let Some(addr) = state.config.metrics_listen {
        let watched = Arc::downgrade(&state);
        let occupancy: crate::metrics::Occupancy = Arc::new(move || {
            watched
                .upgrade()
                .map_or((0, 0), |s| (s.running().len(), s.config.concurrency))
        });
        let local = crate::metrics::serve(addr, occupancy, metrics_end)
            .await
            .map_err(|e| {
                WorkerError::Refused(format!("--metrics-listen: cannot listen on {addr}: {e}"))
            })?;
        tracing::info!(addr = %local, "metrics served at /metrics");
    }
    let sweeper = tokio::spawn(reap_periodically(state.clone(), shutdown.clone()));
    let mut backoff = Duration::from_millis(500);
    let mut drain_deadline = None;
    let result = loop {
        let started = tokio::time::Instant::now();
        let ended = session(
            &state,
            &facts,
            &mut outbox_rx,
            &shutdown,
            &force,
            &mut drain_deadline,
        )
        .await;
        match ended {
            Ok(()) => break Ok(()),
            Err(SessionError::Fatal(e)) => break Err(e),
            Err(SessionError::Lost(reason)) => {
                metrics::counter!(crate::metrics::RECONNECTS).increment(1);
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_millis(500);
                }
                let jitter = rand::rng().random_range(0.5..1.5);
                let wait = backoff.mul_f64(jitter);
                tracing::warn!(server = %state.config.server, %reason, retry_in = ?wait, "not connected to the server; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(30));
                if shutdown.is_cancelled() && drain_deadline.is_none() {
                    drain_deadline = Some(tokio::time::Instant::now() + state.config.drain_timeout);
                }
                let deadline = drain_deadline
                    .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
                // While the server is out of reach, running attempts cannot report; a
                // stop request (or the drain deadline) must still end the worker.
                let lease_end = state.lease_end();
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = tokio::time::sleep_until(lease_end.unwrap_or_else(tokio::time::Instant::now)),
                        if lease_end.is_some() && state.any_uninterrupted() => {
                        fence_if_lapsed(&state);
                    }
                    () = shutdown.cancelled(), if state.running().is_empty() => break Ok(()),
                    () = force.cancelled() => {
                        give_up(&state, "the worker was told to stop now").await;
                        break Ok(());
                    }
                    () = tokio::time::sleep_until(deadline), if drain_deadline.is_some() => {
                        give_up(&state, "the drain deadline passed while the server was out of reach").await;
                        break Ok(());
                    }
                }
                if shutdown.is_cancelled() && state.running().is_empty() {
                    break Ok(());
                }
            }
        }
    };
    sweeper.abort();
    // Attempts that have reported may still be removing their containers: that takes
    // milliseconds, so give them a moment rather than racing them with the sweep. Attempts
    // still running (a stop that outlasted `give_up`) are not waited for: the sweep
    // force-removes their containers now, as a forced stop asks.
    state.attempts.close();
    let all_reported = state.running().is_empty();
    if all_reported
        && tokio::time::timeout(TIDY_WAIT, state.attempts.wait())
            .await
            .is_err()
    {
        tracing::warn!("removing containers took too long; the last sweep removes them");
    }
    // Stops of other workers' containers under way get a moment to finish too.
    state.reaper.tasks().close();
    let _ = tokio::time::timeout(TIDY_WAIT, state.reaper.tasks().wait()).await;
    // Nothing of ours may outlive the worker.
    let _ = state.executor.reap_orphans(&HashSet::new()).await;
    result
}

enum SessionError {
    Fatal(WorkerError),
    Lost(String),
}

/// One connection to the server, from Hello to its end.
async fn session(
    state: &Arc<State>,
    facts: &HashMap<String, String>,
    outbox_rx: &mut mpsc::UnboundedReceiver<WorkerMessage>,
    shutdown: &CancellationToken,
    force: &CancellationToken,
    drain_deadline: &mut Option<tokio::time::Instant>,
) -> Result<(), SessionError> {
    let config = &state.config;
    let mut still_ours: Vec<AttemptRef> = state.live_keys().iter().map(attempt_ref).collect();
    still_ours.extend(state.unconfirmed().keys().map(attempt_ref));
    let hello = proto::Hello {
        protocol_version: PROTOCOL_VERSION,
        name: config.name.clone(),
        labels: config.labels.clone().into_iter().collect(),
        metadata: facts.clone(),
        concurrency: config.concurrency,
        running: still_ours,
    };
    let (tx, rx) = mpsc::channel::<WorkerMessage>(64);
    let _ = tx.send(message(worker_message::Msg::Hello(hello))).await;
    let mut client = state.client.clone();
    let response = client
        .connect(ReceiverStream::new(rx))
        .await
        .map_err(|status| classify(&status))?;
    let mut inbound = response.into_inner();
    let welcome = match inbound.message().await {
        Ok(Some(ServerMessage {
            msg: Some(server_message::Msg::Welcome(welcome)),
        })) => welcome,
        Ok(_) => {
            return Err(SessionError::Lost(
                "the server did not answer Hello with Welcome".into(),
            ));
        }
        Err(status) => return Err(classify(&status)),
    };
    tracing::info!(name = %welcome.name, worker_id = %welcome.worker_id, server = %config.server, "connected to the server");
    for reference in &welcome.abandon {
        if let Some(key) = key_of(Some(reference)) {
            state.unconfirmed().remove(&key);
            if let Some(job) = state.running().get(&key) {
                tracing::warn!(work_request = %key.0, attempt = key.1, "the server no longer wants this attempt; stopping it");
                job.abandoned.cancel();
                job.cancel.cancel();
            }
        }
    }
    let resend: Vec<proto::Finished> = state.unconfirmed().values().cloned().collect();
    for finished in resend {
        if tx
            .send(message(worker_message::Msg::Finished(finished)))
            .await
            .is_err()
        {
            return Err(SessionError::Lost("the stream closed".into()));
        }
    }
    let interval = Duration::from_secs(u64::from(welcome.heartbeat_interval_seconds.max(1)));
    let lease = Duration::from_secs(u64::from(welcome.lease_ttl_seconds.max(2)));
    let mut heartbeat = tokio::time::interval(interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = tokio::time::Instant::now();
    state.heard(lease);
    let mut said_going_away = false;
    loop {
        if shutdown.is_cancelled() {
            if !said_going_away {
                said_going_away = true;
                let deadline = *drain_deadline
                    .get_or_insert_with(|| tokio::time::Instant::now() + config.drain_timeout);
                tracing::info!(running = state.running().len(), deadline = ?deadline.saturating_duration_since(tokio::time::Instant::now()), "draining: finishing running work, taking no more");
                let going = proto::GoingAway {
                    reason: "the worker is shutting down".into(),
                };
                let _ = tx
                    .send(message(worker_message::Msg::GoingAway(going)))
                    .await;
            }
            if state.running().is_empty() && state.unconfirmed().is_empty() {
                return Ok(());
            }
        }
        let deadline = drain_deadline
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            () = shutdown.cancelled(), if !said_going_away => {}
            () = tokio::time::sleep_until(deadline), if drain_deadline.is_some() => {
                interrupt_all(state, "the drain deadline passed");
                *drain_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
            }
            () = force.cancelled(), if !state.running().is_empty() => {
                interrupt_all(state, "the worker was told to stop now");
            }
            outgoing = outbox_rx.recv() => {
                let Some(outgoing) = outgoing else { return Ok(()) };
                if tx.send(outgoing).await.is_err() {
                    return Err(SessionError::Lost("the stream closed".into()));
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > lease {
                    fence_if_lapsed(state);
                    return Err(SessionError::Lost(format!("no word from the server for {lease:?}")));
                }
                let beat = message(worker_message::Msg::Heartbeat(proto::Heartbeat {}));
                if tx.send(beat).await.is_err() {
                    return Err(SessionError::Lost("the stream closed".into()));
                }
            }
            incoming = inbound.message() => {
                match incoming {
                    Ok(Some(incoming)) => {
                        last_heard = tokio::time::Instant::now();
                        state.heard(lease);
                        handle(state, incoming, &tx, said_going_away).await;
                    }
                    Ok(None) => return Err(SessionError::Lost("the server closed the stream".into())),
                    Err(status) => return Err(classify(&status)),
                }
            }
        }
    }
}

/// Sorts a stream error into "retry" and "give up".
fn classify(status: &tonic::Status) -> SessionError {
    match status.code() {
        Code::FailedPrecondition | Code::InvalidArgument => {
            SessionError::Fatal(WorkerError::Refused(status.message().to_owned()))
        }
        Code::Unauthenticated | Code::PermissionDenied => SessionError::Lost(format!(
            "the server refused the worker token ({}); an admin must enable it or give this worker a new one",
            status.message()
        )),
        _ => SessionError::Lost(berth_common::client::describe_status(status)),
    }
}

/// Stops every running attempt and waits a little for their tasks; what cannot report
/// now runs again elsewhere once the server notices this worker is gone.
async fn give_up(state: &State, why: &str) {
    interrupt_all(state, why);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !state.running().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops every running attempt once the server has not been heard from for the lease TTL:
/// by then the server counts this worker as lost and runs its requests again elsewhere, so
/// a container left running here would run beside its retry. The attempts are reported
/// Interrupted (kept until the server records them), their logs still uploaded in full.
/// A worker cut off from its server thus stops its own containers where no other worker
/// shares its Docker engine to do it (see `reaper`).
fn fence_if_lapsed(state: &State) {
    let lapsed = state
        .lease_end()
        .is_some_and(|end| tokio::time::Instant::now() >= end);
    if lapsed && state.any_uninterrupted() {
        interrupt_all(
            state,
            "no word from the server for the lease TTL: it runs this worker's requests elsewhere now",
        );
    }
}

fn interrupt_all(state: &State, why: &str) {
    let running = state.running();
    if !running.is_empty() {
        tracing::warn!(
            count = running.len(),
            why,
            "stopping running attempts; the server will run them again"
        );
    }
    for job in running.values() {
        job.interrupted.cancel();
        job.cancel.cancel();
    }
}

async fn handle(
    state: &Arc<State>,
    incoming: ServerMessage,
    tx: &mpsc::Sender<WorkerMessage>,
    going_away: bool,
) {
    match incoming.msg {
        Some(server_message::Msg::Assign(assign)) => {
            let Some(key) = key_of(assign.attempt.as_ref()) else {
                return;
            };
            let reference = attempt_ref(&key);
            let reject = |reason: &str| {
                message(worker_message::Msg::Reject(proto::Reject {
                    attempt: Some(reference.clone()),
                    reason: reason.to_owned(),
                }))
            };
            let Some(spec) = assign.spec else {
                let _ = tx.send(reject("the assignment had no spec")).await;
                return;
            };
            let reply = {
                let mut running = state.running();
                if running.contains_key(&key) {
                    None
                } else if going_away {
                    Some(reject("the worker is shutting down"))
                } else if running.len() >= state.config.concurrency as usize {
                    Some(reject("the worker has no free slot"))
                } else {
                    let job = Running {
                        cancel: CancellationToken::new(),
                        abandoned: CancellationToken::new(),
                        interrupted: CancellationToken::new(),
                    };
                    let tokens = (
                        job.cancel.clone(),
                        job.abandoned.clone(),
                        job.interrupted.clone(),
                    );
                    running.insert(key.clone(), job);
                    let job = Job {
                        work_request_id: key.0.clone(),
                        attempt: key.1,
                        spec,
                        mounts: Vec::new(),
                    };
                    let io = JobIo {
                        inputs: assign.inputs,
                        outputs: assign.outputs,
                        category: assign.output_category,
                    };
                    let span = attempt_span(&key, &assign.traceparent);
                    state
                        .attempts
                        .spawn(run_attempt(state.clone(), job, io, tokens).instrument(span));
                    None
                }
            };
            let reply = reply.unwrap_or_else(|| {
                message(worker_message::Msg::Accept(proto::Accept {
                    attempt: Some(reference.clone()),
                }))
            });
            let _ = tx.send(reply).await;
        }
        Some(server_message::Msg::Cancel(cancel)) => {
            let Some(key) = key_of(cancel.attempt.as_ref()) else {
                return;
            };
            if let Some(job) = state.running().get(&key) {
                tracing::info!(work_request = %key.0, attempt = key.1, "cancel received; stopping the container");
                job.cancel.cancel();
            }
        }
        Some(server_message::Msg::Recorded(recorded)) => {
            let mut unconfirmed = state.unconfirmed();
            for reference in &recorded.attempts {
                if let Some(key) = key_of(Some(reference)) {
                    unconfirmed.remove(&key);
                }
            }
        }
        Some(server_message::Msg::StopContainers(stop)) => {
            let keys: Vec<Key> = stop
                .attempts
                .iter()
                .filter_map(|r| key_of(Some(r)))
                .collect();
            let state = state.clone();
            let tasks = state.reaper.tasks().clone();
            // In a task of its own: a long grace period must not hold up the stream.
            tasks.spawn(async move {
                let running = state.live_keys();
                let Some(done) = state.reaper.stop_attempts(keys, &running).await else {
                    return;
                };
                if done.removed.is_empty() && done.none_found.is_empty() {
                    return;
                }
                tracing::info!(
                    removed = done.removed.len(),
                    none_found = done.none_found.len(),
                    "stopped the containers of a lost worker on this engine"
                );
                let stopped = proto::ContainersStopped {
                    attempts: done.removed.iter().map(attempt_ref).collect(),
                    none_found: done.none_found.iter().map(attempt_ref).collect(),
                };
                let _ = state
                    .outbox
                    .send(message(worker_message::Msg::ContainersStopped(stopped)));
            });
        }
        Some(server_message::Msg::Heartbeat(_)) | Some(server_message::Msg::Welcome(_)) | None => {}
    }
}

/// The span of an attempt the server handed over in a trace (a `traceparent` in the
/// Assign): a child of the server's hand-off, so the request's one trace goes on to the
/// container's exit. None at all for an attempt outside a trace.
fn attempt_span(key: &Key, traceparent: &str) -> tracing::Span {
    if traceparent.is_empty() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "attempt",
        berth.work_request = %key.0,
        berth.attempt = key.1,
        otel.status_code = tracing::field::Empty,
    );
    berth_common::telemetry::continue_trace(&span, traceparent);
    span
}

/// A child of the current span, only when the current attempt is traced.
fn traced(span: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if tracing::Span::current().is_none() {
        tracing::Span::none()
    } else {
        span()
    }
}

/// Runs one attempt: container, masking, spool, upload, then the Finished report, and
/// last the removal of the container and the spool.
async fn run_attempt(
    state: Arc<State>,
    mut job: Job,
    io: JobIo,
    (cancel, abandoned, interrupted): (CancellationToken, CancellationToken, CancellationToken),
) {
    let key: Key = (job.work_request_id.clone(), job.attempt);
    let ended = run_attempt_inner(&state, &mut job, &io, &cancel, &abandoned).await;
    // The slot is free before the report goes out: the server may answer the report with
    // the next assignment at once, and it must not find the slot still taken.
    state.running().remove(&key);
    match ended.report {
        Some(report) => report_finished(
            &state,
            &key,
            &report,
            ended.log_incomplete.unwrap_or_default(),
            &ended.output,
            interrupted.is_cancelled(),
        ),
        None => {
            tracing::info!(work_request = %key.0, attempt = key.1, "attempt abandoned; nothing reported");
        }
    }
    // Tidying comes after the report, so neither the result nor the next job waits for it:
    // the container has exited and been inspected, and the spool's every byte is
    // acknowledged. Should this task die first, the reaper removes the container.
    if let Some(container) = ended.container {
        container.remove().await;
    }
    if let Some(spool) = ended.spool
        && let Err(e) = spool.remove().await
    {
        tracing::warn!(work_request = %key.0, attempt = key.1, error = %e, "cannot remove the log spool");
    }
    if let Some(dirs) = ended.dirs {
        dirs.remove().await;
    }
}

/// What an attempt reads and leaves: its inputs and outputs from the Assign.
struct JobIo {
    inputs: Vec<proto::AssignedInput>,
    outputs: Vec<proto::Output>,
    category: String,
}

/// What became of an attempt's outputs: the artifact's id, or why there is none.
#[derive(Debug, Default)]
struct OutputResult {
    artifact_id: String,
    error: String,
}

/// Collects the outputs `report`'s ending calls for from the attempt's working dir and
/// uploads them (see `outputs`). `when: success` outputs only after exit code 0, `always`
/// ones whenever the container ran; none after a cancel (the request is over).
async fn collect_outputs(
    state: &State,
    job: &Job,
    io: &JobIo,
    dirs: Option<&AttemptDirs>,
    report: &RunReport,
) -> OutputResult {
    let Some(work) = dirs.and_then(|d| d.work.clone()) else {
        return OutputResult::default();
    };
    let ran = matches!(
        report.outcome,
        Outcome::Exited | Outcome::TimedOut | Outcome::OomKilled
    );
    let succeeded = report.outcome == Outcome::Exited && report.exit_code == Some(0);
    let patterns = if ran {
        outputs::patterns_for(&io.outputs, succeeded)
    } else {
        Vec::new()
    };
    if patterns.is_empty() {
        return OutputResult::default();
    }
    let walk_root = work.clone();
    let walk_patterns = patterns.clone();
    let collected =
        match tokio::task::spawn_blocking(move || outputs::collect(&walk_root, &walk_patterns))
            .await
        {
            Ok(Ok(collected)) => collected,
            Ok(Err(e)) => {
                return OutputResult {
                    artifact_id: String::new(),
                    error: e,
                };
            }
            Err(e) => {
                return OutputResult {
                    artifact_id: String::new(),
                    error: format!("the collecting task failed: {e}"),
                };
            }
        };
    if collected.is_empty() {
        // Outputs are globs that may match nothing (a report only some runs write): no
        // artifact, and no error. A step taking this one's output fails saying so.
        tracing::info!(work_request = %job.work_request_id, attempt = job.attempt, patterns = %patterns.join(", "), "nothing matched the outputs; no artifact made");
        return OutputResult::default();
    }
    match outputs::upload(
        &state.artifacts,
        &work,
        &collected,
        &job.work_request_id,
        job.attempt,
        &io.category,
    )
    .await
    {
        Ok(id) => {
            tracing::info!(work_request = %job.work_request_id, attempt = job.attempt, artifact = %id, files = collected.len(), "outputs collected");
            OutputResult {
                artifact_id: id,
                error: String::new(),
            }
        }
        Err(e) => {
            tracing::warn!(work_request = %job.work_request_id, attempt = job.attempt, error = %e, "collecting outputs failed");
            OutputResult {
                artifact_id: String::new(),
                error: e,
            }
        }
    }
}

/// Queues the Finished report for `key`, and keeps it until the server answers `Recorded`.
fn report_finished(
    state: &State,
    key: &Key,
    report: &RunReport,
    log_incomplete: String,
    output: &OutputResult,
    interrupted: bool,
) {
    let outcome = if interrupted && report.outcome == Outcome::Cancelled {
        Outcome::Interrupted
    } else {
        report.outcome
    };
    let finished = proto::Finished {
        attempt: Some(attempt_ref(key)),
        outcome: outcome as i32,
        exit_code: report.exit_code,
        message: report.message.clone(),
        peak_memory_bytes: report.peak_memory_bytes,
        cpu_time: report.cpu_time.map(proto_duration),
        pull_duration: Some(proto_duration(report.pull_duration)),
        run_duration: Some(proto_duration(report.run_duration)),
        container_id: report.container_id.clone(),
        log_incomplete,
        output_artifact_id: output.artifact_id.clone(),
        output_error: output.error.clone(),
    };
    tracing::info!(work_request = %key.0, attempt = key.1, outcome = outcome.as_str_name(), exit_code = ?report.exit_code, "attempt finished");
    state.unconfirmed().insert(key.clone(), finished.clone());
    let _ = state
        .outbox
        .send(message(worker_message::Msg::Finished(finished)));
}

/// How an attempt ended, and what is left to tidy once that is reported.
struct Ended {
    /// What to report; `None` if the attempt was abandoned (the server moved on).
    report: Option<RunReport>,
    /// Why the log the server holds misses output, when it does.
    log_incomplete: Option<String>,
    /// The container, when one was created.
    container: Option<Cleanup>,
    /// The spool, when nothing in it is needed any more (every byte acknowledged, or the
    /// server refused the attempt).
    spool: Option<Arc<LogSpool>>,
    /// The outputs' artifact, or why there is none.
    output: OutputResult,
    /// The attempt's input and working dirs, removed after the report.
    dirs: Option<AttemptDirs>,
}

/// Runs the container and uploads its log; see [`Ended`].
async fn run_attempt_inner(
    state: &Arc<State>,
    job: &mut Job,
    io: &JobIo,
    cancel: &CancellationToken,
    abandoned: &CancellationToken,
) -> Ended {
    let failed_start = |message: String| RunReport {
        outcome: Outcome::StartFailed,
        exit_code: None,
        message,
        peak_memory_bytes: None,
        cpu_time: None,
        pull_duration: Duration::ZERO,
        run_duration: Duration::ZERO,
        container_id: String::new(),
    };
    // Inputs fetched and laid out, and a fresh working dir for outputs, before anything
    // runs; a failure here ends the attempt before a container exists.
    let mut dirs = None;
    if !io.inputs.is_empty() || !io.outputs.is_empty() {
        let name = format!("{}-{}", job.work_request_id, job.attempt);
        let work_dir = (!io.outputs.is_empty()).then_some(job.spec.working_dir.as_str());
        let prepare = state
            .files
            .prepare(&state.artifacts, &name, &io.inputs, work_dir)
            .instrument(traced(|| {
                tracing::info_span!("inputs", berth.inputs = io.inputs.len())
            }));
        let prepared = tokio::select! {
            prepared = prepare => prepared,
            () = cancel.cancelled() => Err("cancelled while the inputs were fetched".to_owned()),
        };
        match prepared {
            Ok(prepared) => {
                job.mounts = prepared.mounts.clone();
                dirs = Some(prepared);
            }
            Err(e) => {
                tracing::warn!(work_request = %job.work_request_id, attempt = job.attempt, error = %e, "cannot lay out the attempt's inputs");
                let report = failed_start(format!("the worker cannot lay out the inputs: {e}"));
                let leftover = AttemptDirs {
                    root: state.files.attempt_root(&name),
                    mounts: Vec::new(),
                    work: None,
                    notes: Vec::new(),
                };
                return Ended {
                    report: Some(report),
                    log_incomplete: None,
                    container: None,
                    spool: None,
                    output: OutputResult::default(),
                    dirs: Some(leftover),
                };
            }
        }
    }
    let job: &Job = job;
    let spool =
        match LogSpool::open(&state.config.spool_dir, &job.work_request_id, job.attempt).await {
            Ok(spool) => Arc::new(spool),
            Err(e) => {
                let report = failed_start(format!(
                    "the worker cannot open its log spool in {}: {e}",
                    state.config.spool_dir.display()
                ));
                return Ended {
                    report: Some(report),
                    log_incomplete: None,
                    container: None,
                    spool: None,
                    output: OutputResult::default(),
                    dirs,
                };
            }
        };
    let upload_cancel = CancellationToken::new();
    let uploader = {
        let spool = spool.clone();
        let client = state.client.clone();
        let cancel = upload_cancel.clone();
        tokio::spawn(async move { upload(&spool, client, cancel).await })
    };
    let secrets: Vec<String> = job.spec.secret_env.values().cloned().collect();
    let health_secrets = secrets.clone();
    let mut out_mask = Masker::new(secrets.clone());
    let mut err_mask = Masker::new(secrets);
    let (out_tx, mut out_rx) = mpsc::channel::<OutputEvent>(64);
    let outbox = state.outbox.clone();
    let reference = attempt_ref(&(job.work_request_id.clone(), job.attempt));
    let notes: Vec<String> = dirs.as_ref().map(|d| d.notes.clone()).unwrap_or_default();
    let forward = async {
        let mut loss = SpoolLoss::default();
        for note in notes {
            let line = format!("[berth] {note}\n");
            loss.write(&spool, LogStream::System, line.as_bytes()).await;
        }
        while let Some(event) = out_rx.recv().await {
            match event {
                OutputEvent::Started {
                    container_id,
                    pull_duration,
                    ports,
                    has_healthcheck,
                } => {
                    let started = proto::Started {
                        attempt: Some(reference.clone()),
                        container_id,
                        pull_duration: Some(proto_duration(pull_duration)),
                        ports,
                        has_healthcheck,
                    };
                    let _ = outbox.send(message(worker_message::Msg::Started(started)));
                }
                OutputEvent::Health { status, output } => {
                    let changed = proto::HealthChanged {
                        attempt: Some(reference.clone()),
                        status,
                        output: health_output(&output, &health_secrets),
                    };
                    let _ = outbox.send(message(worker_message::Msg::HealthChanged(changed)));
                }
                OutputEvent::Stdout(bytes) => {
                    let masked = out_mask.push(&bytes);
                    loss.write(&spool, LogStream::Stdout, &masked).await;
                }
                OutputEvent::Stderr(bytes) => {
                    let masked = err_mask.push(&bytes);
                    loss.write(&spool, LogStream::Stderr, &masked).await;
                }
                OutputEvent::System(line) => {
                    let line = format!("[berth] {line}\n");
                    loss.write(&spool, LogStream::System, line.as_bytes()).await;
                }
            }
        }
        loss.write(&spool, LogStream::Stdout, &out_mask.finish())
            .await;
        loss.write(&spool, LogStream::Stderr, &err_mask.finish())
            .await;
        loss
    };
    // From the image to the container's exit (and its inspection).
    let container_span = traced(|| {
        tracing::info_span!(
            "container",
            berth.exit_code = tracing::field::Empty,
            berth.outcome = tracing::field::Empty,
            berth.pull_ms = tracing::field::Empty,
        )
    });
    let run = state
        .executor
        .run(job, out_tx, cancel.clone())
        .instrument(container_span.clone());
    let ((report, container), loss) = tokio::join!(run, forward);
    if let Some(code) = report.exit_code {
        container_span.record("berth.exit_code", code);
    }
    container_span.record("berth.outcome", report.outcome.as_str_name());
    container_span.record(
        "berth.pull_ms",
        u64::try_from(report.pull_duration.as_millis()).unwrap_or(u64::MAX),
    );
    drop(container_span);
    let mut log_incomplete = loss.reason(&state.config.spool_dir);
    if let Some(reason) = &log_incomplete {
        tracing::error!(work_request = %job.work_request_id, %reason, "writing the log spool failed; the log is marked incomplete");
    }
    spool.close().await;
    let container = Some(container);
    // Outputs are uploaded while the log finishes uploading, and both before Finished:
    // the server takes them only while the attempt is current.
    let collect =
        collect_outputs(state, job, io, dirs.as_ref(), &report).instrument(traced(|| {
            tracing::info_span!("outputs", berth.outputs = io.outputs.len())
        }));
    let collected = tokio::select! {
        output = collect => output,
        () = abandoned.cancelled() => {
            upload_cancel.cancel();
            return Ended { report: None, log_incomplete: None, container, spool: Some(spool), output: OutputResult::default(), dirs };
        }
    };
    let output = collected;
    let uploaded = tokio::select! {
        result = uploader => result,
        () = abandoned.cancelled() => {
            upload_cancel.cancel();
            return Ended { report: None, log_incomplete: None, container, spool: Some(spool), output, dirs };
        }
    };
    match uploaded {
        Ok(Ok(_)) => Ended {
            report: Some(report),
            log_incomplete,
            container,
            spool: Some(spool),
            output,
            dirs,
        },
        Ok(Err(UploadError::Fenced)) => Ended {
            report: None,
            log_incomplete: None,
            container,
            spool: Some(spool),
            output,
            dirs,
        },
        Ok(Err(e)) => {
            tracing::error!(work_request = %job.work_request_id, error = %e, "log upload failed; the log kept in the spool dir is incomplete on the server");
            log_incomplete
                .get_or_insert_with(|| format!("the worker could not upload the whole log: {e}"));
            Ended {
                report: Some(report),
                log_incomplete,
                container,
                spool: None,
                output,
                dirs,
            }
        }
        Err(e) => {
            tracing::error!(work_request = %job.work_request_id, error = %e, "log upload task failed");
            log_incomplete.get_or_insert_with(|| format!("the worker's log upload failed: {e}"));
            Ended {
                report: Some(report),
                log_incomplete,
                container,
                spool: None,
                output,
                dirs,
            }
        }
    }
}

/// Output that never reached the spool. Once a write to a stream fails, the rest of that
/// stream is dropped too, so the stored log of each stream is an exact prefix of the output
/// (with a note saying where it ends) rather than output with holes in it.
#[derive(Debug, Default)]
struct SpoolLoss {
    /// Per stream (stdout, stderr, system): the offset its stored log ends at, once a
    /// write to it failed.
    cut_at: [Option<u64>; 3],
    /// Bytes dropped, all streams together.
    bytes: u64,
    /// The first failure.
    first_error: Option<std::io::Error>,
}

impl SpoolLoss {
    /// Writes `data` to `stream` of `spool` unless that stream was cut off already; a
    /// failed write cuts it off.
    async fn write(&mut self, spool: &LogSpool, stream: LogStream, data: &[u8]) {
        let index = match stream {
            LogStream::Stdout => 0,
            LogStream::Stderr => 1,
            _ => 2,
        };
        if data.is_empty() {
            return;
        }
        if self.cut_at[index].is_some() {
            self.bytes += data.len() as u64;
            return;
        }
        if let Err(e) = spool.write(stream, data).await {
            self.cut_at[index] = Some(spool.written(stream));
            self.bytes += data.len() as u64;
            self.first_error.get_or_insert(e);
        }
    }

    /// Why the log is incomplete, if it is, for the server to show with the log.
    fn reason(&self, spool_dir: &std::path::Path) -> Option<String> {
        let error = self.first_error.as_ref()?;
        let cause = if error.kind() == std::io::ErrorKind::StorageFull {
            "its disk is full".to_owned()
        } else {
            error.to_string()
        };
        let cuts: Vec<String> = ["stdout", "stderr", "system"]
            .iter()
            .zip(self.cut_at)
            .filter_map(|(name, cut)| cut.map(|at| format!("{name} after byte {at}")))
            .collect();
        Some(format!(
            "the worker could not write its log spool in {} ({cause}): {} bytes of output are missing ({})",
            spool_dir.display(),
            self.bytes,
            cuts.join(", ")
        ))
    }
}

/// Judges the engine's Berth containers every sweep interval (see `reaper`): stops of
/// those that must go start in tasks of their own, so this loop never waits out a grace
/// period.
async fn reap_periodically(state: Arc<State>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(state.config.orphan_sweep_interval) => {}
        }
        let mut client = state.client.clone();
        match state
            .reaper
            .sweep(&|| state.live_keys(), Some(&mut client))
            .await
        {
            Ok(stops) if stops.is_empty() => {}
            Ok(stops) => tracing::info!(count = stops.len(), "stopping leftover containers"),
            Err(e) => tracing::warn!(error = %e, "orphan sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_output_masks_secrets_then_cuts_to_one_kib() {
        let secret = "s3cr3t-value".to_owned();
        let output = format!("probe failed: token {secret}\n{}", "é".repeat(1000));
        let carried = health_output(&output, std::slice::from_ref(&secret));
        assert!(!carried.contains(&secret), "{carried}");
        assert!(carried.starts_with("probe failed: token [MASKED]\n"));
        assert!(carried.len() <= HEALTH_OUTPUT_MAX);
        assert!(
            carried.len() > HEALTH_OUTPUT_MAX - 4,
            "cut only to a char boundary"
        );
    }

    #[test]
    fn health_output_without_secrets_is_kept_when_short() {
        assert_eq!(health_output("ok", &[]), "ok");
    }
}
