//! Simulated workers: the real agent protocol over real gRPC, with an executor that only
//! pretends to run containers.
//!
//! A real `berth-worker` spends its time in Docker. That hides what the server and
//! PostgreSQL cost per work request (the bench), and it makes every scheduling test wait
//! for containers whose output nobody looks at (the tests). A simulated worker does what
//! the worker does on the wire and nothing more: `Connect` with its own worker token (the
//! server takes the worker's identity from the token alone), `Hello`, wait for `Welcome`,
//! a `Heartbeat` every interval the server asked for, an answer to every `Assign` and
//! `Cancel`, `AppendLog` for output, and `GoingAway` when it is stopped gracefully. The
//! server cannot tell it from a real worker, so what a test sees of scheduling through it
//! is what users get.
//!
//! Two kinds, for two users:
//!
//! - [`SimFleet`] (the bench): many workers that on `Assign` at once send `Accept`,
//!   `Started` and `Finished` (exited, code 0) from the stream's own task, whatever the
//!   spec says, recording only when each `Assign` arrived ([`SimStats`]). Streams share
//!   connections: HTTP/2 multiplexes many calls over one TCP connection and the server
//!   accepts 200 concurrent streams per connection, so a fleet opens one connection per
//!   [`STREAMS_PER_CHANNEL`] workers, which keeps 10,000 workers to a few file descriptors.
//! - [`SimWorker`] (the tests): one worker on its own connection that runs each attempt's
//!   `spec.command` as [`script`] understands it (`true`, `false`, `exit N`, `sleep S`,
//!   `echo`), honours `spec.timeout`, Cancel and its concurrency, and records what the
//!   server told it. It can be killed (the connection drops, nothing is reported: a
//!   `kill -9`), stopped gracefully (`GoingAway`, running attempts finish within the drain
//!   timeout, the rest are reported interrupted), started again with the same token, or
//!   reconnected while its attempts go on (its `Hello` lists them, as the real worker's
//!   does after a reconnect).
//!
//! What stays the real worker's to test: containers, their output as Docker delivers it,
//! exit codes and OOM kills as Docker reports them, stopping a container, orphan reaping,
//! secret masking, the log spool, and how the process handles signals.

pub mod script;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_common::client::BearerAuth;
use berth_common::proto::agent_service_client::AgentServiceClient;
use berth_common::proto::server_message::Msg as ServerMsg;
use berth_common::proto::worker_message::Msg as WorkerMsg;
use berth_common::proto::{
    Accept, AppendLogRequest, Assign, AttemptRef, Cancel, ContainerSpec, Finished, GoingAway,
    Heartbeat, Hello, LogStream, Outcome, Reject, Started, Welcome, WorkerMessage,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use self::script::{Ended, Script, Shell, Stop};

/// How many worker streams of a [`SimFleet`] share one HTTP/2 connection (the server
/// allows 200).
pub const STREAMS_PER_CHANNEL: usize = 100;

/// An agent client carrying a worker token.
type AgentClient = AgentServiceClient<InterceptedService<Channel, BearerAuth>>;

/// (work request id, attempt number).
type Key = (String, u32);

fn key_of(attempt: &AttemptRef) -> Key {
    (attempt.work_request_id.clone(), attempt.attempt)
}

fn attempt_ref(key: &Key) -> AttemptRef {
    AttemptRef {
        work_request_id: key.0.clone(),
        attempt: key.1,
    }
}

fn describe(status: &tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(berth_common::client::describe_status(status))
}

fn proto_duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

/// What the owner of a stream wants of it; sent to the stream's task on a watch channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Take work.
    Serving,
    /// Say `GoingAway` and take nothing new.
    GoingAway,
    /// Send what is queued, then close the stream.
    Closing,
}

// ---------------------------------------------------------------------------------------
// The fleet (the bench)
// ---------------------------------------------------------------------------------------

/// What every worker of a [`SimFleet`] records, shared by the whole fleet.
#[derive(Default)]
pub struct SimStats {
    /// When each work request's `Assign` arrived, by work request id.
    pub assigned: Mutex<HashMap<String, Instant>>,
    /// Workers that got their `Welcome`.
    pub welcomed: AtomicUsize,
    /// `Finished` messages sent.
    pub finished: AtomicU64,
    /// Streams that ended with an error (their messages, a few kept).
    pub errors: Mutex<Vec<String>>,
}

/// A set of simulated workers that finish every attempt at once.
pub struct SimFleet {
    /// What they recorded.
    pub stats: Arc<SimStats>,
    /// How many there are.
    pub count: usize,
    phase: watch::Sender<Phase>,
    tasks: JoinSet<()>,
}

impl SimFleet {
    /// Connects one simulated worker per `(name, worker token)` in `workers` to the server
    /// at `server_url`, each offering `concurrency` slots. Returns once every stream is
    /// being opened; use [`SimFleet::wait_welcomed`] to wait for the server's `Welcome`s.
    pub async fn start(
        server_url: &str,
        workers: Vec<(String, String)>,
        concurrency: u32,
    ) -> anyhow::Result<SimFleet> {
        let stats = Arc::new(SimStats::default());
        let (phase, phase_rx) = watch::channel(Phase::Serving);
        let mut tasks = JoinSet::new();
        let count = workers.len();
        let mut channel: Option<Channel> = None;
        for (i, (name, token)) in workers.into_iter().enumerate() {
            if i % STREAMS_PER_CHANNEL == 0 || channel.is_none() {
                channel = Some(
                    berth_common::client::connect(server_url, None)
                        .await
                        .with_context(|| format!("cannot connect to {server_url}"))?,
                );
            }
            let channel = channel
                .clone()
                .context("a channel was just opened; this is a bug")?;
            let client = AgentServiceClient::with_interceptor(channel, BearerAuth::new(&token));
            let stats = Arc::clone(&stats);
            let phase = phase_rx.clone();
            tasks.spawn(async move {
                let hello = hello(&name, concurrency, &HashMap::new(), &HashMap::new());
                let mut mode = Mode::Instant(&stats);
                if let Err(e) = session(client, hello, &mut mode, phase).await {
                    let mut errors = stats.errors.lock().unwrap_or_else(|p| p.into_inner());
                    if errors.len() < 10 {
                        errors.push(format!("{name}: {e:#}"));
                    }
                }
            });
        }
        Ok(SimFleet {
            stats,
            count,
            phase,
            tasks,
        })
    }

    /// Waits until every worker got its `Welcome`; fails after `timeout` or as soon as a
    /// stream has failed.
    pub async fn wait_welcomed(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let welcomed = self.stats.welcomed.load(Ordering::Relaxed);
            if welcomed >= self.count {
                return Ok(());
            }
            self.check_errors()?;
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "only {welcomed} of {} simulated workers were welcomed within {timeout:?}",
                    self.count
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails if any stream has ended with an error.
    pub fn check_errors(&self) -> anyhow::Result<()> {
        let errors = self.stats.errors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(first) = errors.first() {
            bail!(
                "{} simulated worker stream(s) failed, first: {first}",
                errors.len()
            );
        }
        Ok(())
    }

    /// When the `Assign` for `work_request_id` arrived, if it did.
    pub fn assigned_at(&self, work_request_id: &str) -> Option<Instant> {
        self.stats
            .assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(work_request_id)
            .copied()
    }

    /// Says `GoingAway` on every stream, closes them and waits for the tasks.
    pub async fn stop(mut self) {
        let _ = self.phase.send(Phase::Closing);
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
    }
}

// ---------------------------------------------------------------------------------------
// One stream, for both kinds
// ---------------------------------------------------------------------------------------

fn hello(
    name: &str,
    concurrency: u32,
    labels: &HashMap<String, String>,
    metadata: &HashMap<String, String>,
) -> Hello {
    Hello {
        protocol_version: berth_common::PROTOCOL_VERSION,
        name: name.to_owned(),
        labels: labels.clone(),
        metadata: metadata.clone(),
        concurrency,
        running: Vec::new(),
    }
}

/// How a stream answers the server.
enum Mode<'a> {
    /// Finish every attempt at once, in the stream's task (the fleet).
    Instant(&'a SimStats),
    /// Run the attempts' scripts in tasks of their own (a [`SimWorker`]).
    Script {
        worker: &'a Arc<Inner>,
        life: &'a Life,
        outbox: &'a mut mpsc::UnboundedReceiver<WorkerMessage>,
    },
}

impl Mode<'_> {
    fn welcomed(&mut self, welcome: Welcome) {
        match self {
            Mode::Instant(stats) => {
                stats.welcomed.fetch_add(1, Ordering::Relaxed);
            }
            Mode::Script { worker, .. } => worker.welcomed(welcome),
        }
    }

    fn assign(
        &mut self,
        assign: Assign,
        send: &impl Fn(WorkerMsg) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let attempt = assign.attempt.context("Assign without an attempt")?;
        match self {
            Mode::Instant(stats) => {
                let received = Instant::now();
                stats
                    .assigned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(attempt.work_request_id.clone(), received);
                finish_at_once(send, &attempt)?;
                stats.finished.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Mode::Script { worker, life, .. } => {
                let answer = worker.assigned(life, attempt, assign.spec);
                send(answer)
            }
        }
    }

    fn cancel(&mut self, cancel: Cancel) {
        // Nothing a fleet runs lasts long enough to be cancelled.
        if let Mode::Script { worker, .. } = self
            && let Some(attempt) = cancel.attempt
        {
            worker.cancelled(attempt);
        }
    }

    fn going_away(&mut self) {
        if let Mode::Script { worker, .. } = self {
            worker.going_away.store(true, Ordering::Relaxed);
        }
    }

    /// The next report of a running attempt, to be sent on the stream.
    async fn outgoing(&mut self) -> Option<WorkerMessage> {
        match self {
            Mode::Instant(_) => std::future::pending().await,
            Mode::Script { outbox, .. } => outbox.recv().await,
        }
    }

    /// Hands what is queued to the stream before it closes.
    fn flush(&mut self, tx: &mpsc::UnboundedSender<WorkerMessage>) {
        if let Mode::Script { outbox, .. } = self {
            while let Ok(message) = outbox.try_recv() {
                let _ = tx.send(message);
            }
        }
    }
}

/// Runs one control stream until `phase` says `Closing` or the server ends it.
async fn session(
    mut client: AgentClient,
    hello: Hello,
    mode: &mut Mode<'_>,
    mut phase: watch::Receiver<Phase>,
) -> anyhow::Result<()> {
    // Unbounded: the task itself and its attempts are the only producers.
    let (tx, rx) = mpsc::unbounded_channel::<WorkerMessage>();
    let send = |msg: WorkerMsg| {
        tx.send(WorkerMessage { msg: Some(msg) })
            .map_err(|_| anyhow::anyhow!("the outgoing stream closed"))
    };
    send(WorkerMsg::Hello(hello))?;
    let mut inbound = client
        .connect(UnboundedReceiverStream::new(rx))
        .await
        .map_err(|s| describe(&s))
        .context("Connect failed")?
        .into_inner();

    // Until Welcome says otherwise, heartbeat at the server's default interval.
    let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let mut said_going_away = false;
    loop {
        tokio::select! {
            message = inbound.message() => {
                let message = message
                    .map_err(|s| describe(&s))
                    .context("the control stream failed")?;
                let Some(message) = message else {
                    if *phase.borrow() == Phase::Closing {
                        return Ok(());
                    }
                    bail!("the server ended the control stream");
                };
                match message.msg {
                    Some(ServerMsg::Welcome(welcome)) => {
                        let period = Duration::from_secs(u64::from(welcome.heartbeat_interval_seconds.max(1)));
                        heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        mode.welcomed(welcome);
                    }
                    Some(ServerMsg::Assign(assign)) => mode.assign(assign, &send)?,
                    Some(ServerMsg::Cancel(cancel)) => mode.cancel(cancel),
                    // The server's heartbeats need no answer; a simulated worker has no
                    // Docker engine to stop containers on, and does not resend its
                    // reports, so Recorded means nothing to it either.
                    Some(ServerMsg::Heartbeat(_))
                    | Some(ServerMsg::StopContainers(_))
                    | Some(ServerMsg::Recorded(_))
                    | None => {}
                }
            }
            _ = heartbeat.tick() => {
                send(WorkerMsg::Heartbeat(Heartbeat {}))?;
            }
            Some(outgoing) = mode.outgoing() => {
                tx.send(outgoing).map_err(|_| anyhow::anyhow!("the outgoing stream closed"))?;
            }
            changed = phase.changed() => {
                let now = if changed.is_ok() { *phase.borrow_and_update() } else { Phase::Closing };
                if now != Phase::Serving && !said_going_away {
                    said_going_away = true;
                    mode.going_away();
                    send(WorkerMsg::GoingAway(GoingAway { reason: "the simulated worker is stopping".into() }))?;
                }
                if now == Phase::Closing {
                    mode.flush(&tx);
                    if let Mode::Script { .. } = mode {
                        // End our side and read until the server ends its side, so that
                        // everything sent was read before the stream goes.
                        drop(tx);
                        let _ = tokio::time::timeout(Duration::from_secs(10), async {
                            while let Ok(Some(_)) = inbound.message().await {}
                        })
                        .await;
                    }
                    return Ok(());
                }
            }
        }
    }
}

/// Accepts, starts and finishes an attempt in one go, as a container that exits at once.
fn finish_at_once(
    send: &impl Fn(WorkerMsg) -> anyhow::Result<()>,
    attempt: &AttemptRef,
) -> anyhow::Result<()> {
    send(WorkerMsg::Accept(Accept {
        attempt: Some(attempt.clone()),
    }))?;
    send(WorkerMsg::Started(Started {
        attempt: Some(attempt.clone()),
        container_id: "sim".into(),
        pull_duration: Some(prost_types::Duration::default()),
        ..Default::default()
    }))?;
    send(WorkerMsg::Finished(Finished {
        attempt: Some(attempt.clone()),
        outcome: Outcome::Exited as i32,
        exit_code: Some(0),
        container_id: "sim".into(),
        run_duration: Some(prost_types::Duration::default()),
        ..Default::default()
    }))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// One scripted worker (the tests)
// ---------------------------------------------------------------------------------------

/// How a [`SimWorker`] presents itself and behaves.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Static labels, as `--label` gives a real worker.
    pub labels: HashMap<String, String>,
    /// Host facts (a real worker reports arch, os, cpus, memory_bytes, docker_version).
    pub metadata: HashMap<String, String>,
    /// Slots; an `Assign` beyond them is rejected (and counted: the server should not
    /// send one).
    pub concurrency: u32,
    /// How long a graceful stop waits for running attempts before it interrupts them.
    pub drain_timeout: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            labels: HashMap::new(),
            metadata: HashMap::new(),
            concurrency: 1,
            drain_timeout: Duration::from_secs(600),
        }
    }
}

impl SimOptions {
    /// With `concurrency` slots.
    pub fn concurrency(mut self, concurrency: u32) -> SimOptions {
        self.concurrency = concurrency;
        self
    }

    /// With the label `key=value`.
    pub fn label(mut self, key: &str, value: &str) -> SimOptions {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Interrupting what still runs `timeout` into a graceful stop.
    pub fn drain_timeout(mut self, timeout: Duration) -> SimOptions {
        self.drain_timeout = timeout;
        self
    }
}

/// What a [`SimWorker`] was told and did, for assertions.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// The last `Welcome` (`None` until one arrives on the current stream).
    pub welcome: Option<Welcome>,
    /// Every `Assign`, in order.
    pub assigned: Vec<AttemptRef>,
    /// Every `Cancel`, in order (also those for attempts no longer running here).
    pub cancelled: Vec<AttemptRef>,
    /// Every attempt a `Welcome` told it to abandon.
    pub abandoned: Vec<AttemptRef>,
    /// Every `Reject` it sent, with its reason.
    pub rejected: Vec<(AttemptRef, String)>,
    /// `Assign`s that arrived with every slot taken.
    pub over_capacity: usize,
    /// The most attempts it ran at once.
    pub most_running: usize,
    /// Why its last stream ended, if it did other than by its own choice.
    pub ended: Option<String>,
    /// `AppendLog` calls that failed other than by fencing.
    pub log_errors: Vec<String>,
}

/// An attempt running on a [`SimWorker`].
struct Running {
    /// The server cancelled it.
    cancel: CancellationToken,
    /// The worker is stopping and interrupts it.
    interrupt: CancellationToken,
    /// A `Welcome` said the server no longer wants it: stop, report nothing.
    abandon: CancellationToken,
}

/// What lives and dies with the worker's "process": its connection, its queued reports,
/// and a token that stops every attempt task when the process is killed.
#[derive(Clone)]
struct Life {
    client: AgentClient,
    killed: CancellationToken,
    outbox: mpsc::UnboundedSender<WorkerMessage>,
    outbox_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<WorkerMessage>>>,
}

impl Life {
    fn new(url: &str, token: &str) -> Life {
        let channel = berth_common::client::endpoint(url, None)
            .unwrap_or_else(|e| panic!("simulated worker: {url} is not a usable server URL: {e}"))
            .connect_lazy();
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        Life {
            client: AgentServiceClient::with_interceptor(channel, BearerAuth::new(token)),
            killed: CancellationToken::new(),
            outbox,
            outbox_rx: Arc::new(tokio::sync::Mutex::new(outbox_rx)),
        }
    }
}

/// The state a worker's stream task and its attempt tasks share.
struct Inner {
    name: String,
    options: SimOptions,
    running: Mutex<HashMap<Key, Running>>,
    seen: Mutex<Seen>,
    going_away: AtomicBool,
    /// Numbers the fake container ids.
    started: AtomicU64,
}

impl Inner {
    fn running(&self) -> MutexGuard<'_, HashMap<Key, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn welcomed(&self, welcome: Welcome) {
        let running = self.running();
        let mut seen = self.seen();
        for attempt in &welcome.abandon {
            if let Some(job) = running.get(&key_of(attempt)) {
                job.abandon.cancel();
            }
            seen.abandoned.push(attempt.clone());
        }
        seen.welcome = Some(welcome);
    }

    /// Takes or refuses an attempt; returns the answer for the stream.
    fn assigned(
        self: &Arc<Self>,
        life: &Life,
        attempt: AttemptRef,
        spec: Option<ContainerSpec>,
    ) -> WorkerMsg {
        let key = key_of(&attempt);
        let mut running = self.running();
        let mut seen = self.seen();
        seen.assigned.push(attempt.clone());
        let refusal = if running.contains_key(&key) {
            // Offered again what it runs already: it is ours, say so once more.
            return WorkerMsg::Accept(Accept {
                attempt: Some(attempt),
            });
        } else if self.going_away.load(Ordering::Relaxed) {
            Some("the worker is shutting down")
        } else if running.len() >= self.options.concurrency as usize {
            seen.over_capacity += 1;
            Some("the worker has no free slot")
        } else if spec.is_none() {
            Some("the assignment had no spec")
        } else {
            None
        };
        if let Some(reason) = refusal {
            seen.rejected.push((attempt.clone(), reason.to_owned()));
            return WorkerMsg::Reject(Reject {
                attempt: Some(attempt),
                reason: reason.to_owned(),
            });
        }
        let job = Running {
            cancel: CancellationToken::new(),
            interrupt: CancellationToken::new(),
            abandon: CancellationToken::new(),
        };
        let attempt_task = AttemptTask {
            worker: Arc::clone(self),
            life: life.clone(),
            key: key.clone(),
            spec: spec.unwrap_or_default(),
            cancel: job.cancel.clone(),
            interrupt: job.interrupt.clone(),
            abandon: job.abandon.clone(),
        };
        running.insert(key, job);
        seen.most_running = seen.most_running.max(running.len());
        let killed = life.killed.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = killed.cancelled() => {}
                () = attempt_task.run() => {}
            }
        });
        WorkerMsg::Accept(Accept {
            attempt: Some(attempt),
        })
    }

    fn cancelled(&self, attempt: AttemptRef) {
        if let Some(job) = self.running().get(&key_of(&attempt)) {
            job.cancel.cancel();
        }
        self.seen().cancelled.push(attempt);
    }
}

/// One attempt's run on a [`SimWorker`].
struct AttemptTask {
    worker: Arc<Inner>,
    life: Life,
    key: Key,
    spec: ContainerSpec,
    cancel: CancellationToken,
    interrupt: CancellationToken,
    abandon: CancellationToken,
}

impl AttemptTask {
    async fn run(self) {
        let reference = attempt_ref(&self.key);
        let container_id = format!(
            "sim-{}",
            self.worker.started.fetch_add(1, Ordering::Relaxed) + 1
        );
        let script = match Script::parse(&self.spec.command) {
            Ok(script) => script,
            Err(unsupported) => {
                self.report(Finished {
                    attempt: Some(reference),
                    outcome: Outcome::StartFailed as i32,
                    message: unsupported.to_string(),
                    ..Default::default()
                });
                return;
            }
        };
        let began = tokio::time::Instant::now();
        let _ = self.life.outbox.send(WorkerMessage {
            msg: Some(WorkerMsg::Started(Started {
                attempt: Some(reference.clone()),
                container_id: container_id.clone(),
                pull_duration: Some(prost_types::Duration::default()),
                ..Default::default()
            })),
        });
        let timeout = self
            .spec
            .timeout
            .and_then(|t| Duration::try_from(t).ok())
            .filter(|t| !t.is_zero());
        let mut shell = SimShell {
            task: &self,
            deadline: timeout.map(|t| began + t),
            offsets: HashMap::new(),
        };
        let ended = script.run(&mut shell).await;
        // As a stopped busybox process: killed by SIGTERM.
        const SIGTERM_EXIT: i32 = 128 + 15;
        let (outcome, exit_code, note) = match ended {
            Ended::Exited(code) => (Outcome::Exited, Some(code), None),
            Ended::Stopped(Stop::TimedOut) => (
                Outcome::TimedOut,
                Some(SIGTERM_EXIT),
                timeout.map(|t| format!("timeout after {t:?}: stopped")),
            ),
            Ended::Stopped(Stop::Cancelled) => (
                Outcome::Cancelled,
                Some(SIGTERM_EXIT),
                Some("cancelled: stopped".to_owned()),
            ),
            Ended::Stopped(Stop::Interrupted) => (
                Outcome::Interrupted,
                Some(SIGTERM_EXIT),
                Some("the worker is shutting down: stopped".to_owned()),
            ),
            Ended::Stopped(Stop::Abandoned) => {
                self.worker.running().remove(&self.key);
                return;
            }
        };
        if let Some(note) = note {
            let line = format!("[berth] {note} (simulated worker)\n");
            if shell.append(LogStream::System, &line).await == Err(Stop::Abandoned) {
                self.worker.running().remove(&self.key);
                return;
            }
        }
        self.report(Finished {
            attempt: Some(reference),
            outcome: outcome as i32,
            exit_code,
            container_id,
            pull_duration: Some(prost_types::Duration::default()),
            run_duration: Some(proto_duration(began.elapsed())),
            ..Default::default()
        });
    }

    /// Frees the slot, then queues the report (so that an `Assign` answering the report
    /// finds the slot free, as the real worker does).
    fn report(&self, finished: Finished) {
        self.worker.running().remove(&self.key);
        let _ = self.life.outbox.send(WorkerMessage {
            msg: Some(WorkerMsg::Finished(finished)),
        });
    }
}

/// Time and output for a script running on a [`SimWorker`].
struct SimShell<'a> {
    task: &'a AttemptTask,
    deadline: Option<tokio::time::Instant>,
    offsets: HashMap<i32, u64>,
}

impl SimShell<'_> {
    /// Appends `text` to `stream` of the attempt's log; a fenced attempt is abandoned.
    async fn append(&mut self, stream: LogStream, text: &str) -> Result<(), Stop> {
        if text.is_empty() {
            return Ok(());
        }
        let offset = self.offsets.entry(stream as i32).or_insert(0);
        let mut client = self.task.life.client.clone();
        let mut failures = Vec::new();
        for _ in 0..5 {
            let request = AppendLogRequest {
                attempt: Some(attempt_ref(&self.task.key)),
                stream: stream as i32,
                offset: *offset,
                data: text.as_bytes().to_vec(),
            };
            match client.append_log(request).await {
                Ok(response) => {
                    *offset = response.into_inner().acknowledged;
                    return Ok(());
                }
                Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                    return Err(Stop::Abandoned);
                }
                Err(status) => {
                    failures.push(berth_common::client::describe_status(&status));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        self.task.worker.seen().log_errors.extend(failures);
        Ok(())
    }
}

impl Shell for SimShell<'_> {
    async fn sleep(&mut self, duration: Duration) -> Result<(), Stop> {
        let task = self.task;
        let deadline = self.deadline;
        let timed_out = async move {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            () = timed_out => Err(Stop::TimedOut),
            () = task.abandon.cancelled() => Err(Stop::Abandoned),
            () = task.interrupt.cancelled() => Err(Stop::Interrupted),
            () = task.cancel.cancelled() => Err(Stop::Cancelled),
        }
    }

    async fn echo(&mut self, text: &str) -> Result<(), Stop> {
        self.append(LogStream::Stdout, text).await
    }
}

/// A simulated worker for tests: its own connection and worker token, scripted attempts.
///
/// Every method that waits panics with a message saying what it waited for when that does
/// not happen in time. The worker does not reconnect by itself: when the server ends its
/// stream, [`Seen::ended`] says why and [`SimWorker::reconnect`] opens a new one.
pub struct SimWorker {
    /// The name it was created with (its token's name, so also its registered name).
    pub name: String,
    /// Its worker token.
    pub token: String,
    url: String,
    inner: Arc<Inner>,
    life: Life,
    phase: watch::Sender<Phase>,
    session: Option<tokio::task::JoinHandle<()>>,
}

/// How long a simulated worker waits for the server before it gives up.
const SIM_WAIT: Duration = Duration::from_secs(30);

impl SimWorker {
    /// Connects a worker named `name` with worker token `token` to the server at `url`
    /// and waits for its `Welcome`.
    pub async fn connect(url: &str, name: &str, token: &str, options: SimOptions) -> SimWorker {
        let (phase, _) = watch::channel(Phase::Serving);
        let mut worker = SimWorker {
            name: name.to_owned(),
            token: token.to_owned(),
            url: url.to_owned(),
            inner: Arc::new(Inner {
                name: name.to_owned(),
                options,
                running: Mutex::new(HashMap::new()),
                seen: Mutex::new(Seen::default()),
                going_away: AtomicBool::new(false),
                started: AtomicU64::new(0),
            }),
            life: Life::new(url, token),
            phase,
            session: None,
        };
        worker.open(Vec::new()).await;
        worker
    }

    /// Opens a stream whose `Hello` lists `running`, and waits for the `Welcome`.
    async fn open(&mut self, running: Vec<AttemptRef>) {
        self.inner.going_away.store(false, Ordering::Relaxed);
        {
            let mut seen = self.inner.seen();
            seen.welcome = None;
            seen.ended = None;
        }
        let (phase, phase_rx) = watch::channel(Phase::Serving);
        self.phase = phase;
        let inner = Arc::clone(&self.inner);
        let life = self.life.clone();
        let mut hello = hello(
            &inner.name,
            inner.options.concurrency,
            &inner.options.labels,
            &inner.options.metadata,
        );
        hello.running = running;
        self.session = Some(tokio::spawn(async move {
            let mut outbox = Arc::clone(&life.outbox_rx).lock_owned().await;
            let mut mode = Mode::Script {
                worker: &inner,
                life: &life,
                outbox: &mut outbox,
            };
            if let Err(e) = session(life.client.clone(), hello, &mut mode, phase_rx).await {
                inner.seen().ended = Some(format!("{e:#}"));
            }
        }));
        self.wait_welcomed().await;
    }

    /// Waits for the `Welcome` on the current stream.
    async fn wait_welcomed(&self) {
        let name = self.name.clone();
        crate::eventually(
            &format!("simulated worker {name} to be welcomed"),
            SIM_WAIT,
            || async {
                let seen = self.seen();
                if let Some(ended) = &seen.ended {
                    panic!("simulated worker {name}: the stream ended before Welcome: {ended}");
                }
                seen.welcome.map(drop)
            },
        )
        .await;
    }

    /// A copy of what it has seen so far.
    pub fn seen(&self) -> Seen {
        self.inner.seen().clone()
    }

    /// The attempts it runs now.
    pub fn running(&self) -> Vec<AttemptRef> {
        self.inner.running().keys().map(attempt_ref).collect()
    }

    /// Waits until it has received a `Cancel` for `attempt` of `work_request_id`.
    pub async fn wait_cancelled(&self, work_request_id: &str, attempt: u32) {
        crate::eventually(
            &format!(
                "simulated worker {} to get a Cancel for attempt {attempt} of {work_request_id}",
                self.name
            ),
            SIM_WAIT,
            || async {
                self.inner
                    .seen()
                    .cancelled
                    .iter()
                    .any(|c| c.work_request_id == work_request_id && c.attempt == attempt)
                    .then_some(())
            },
        )
        .await;
    }

    /// Kills it as `kill -9` would: the connection drops, every attempt stops, nothing
    /// more is reported. [`SimWorker::start_again`] brings it back.
    pub async fn kill(&mut self) {
        self.life.killed.cancel();
        if let Some(session) = self.session.take() {
            session.abort();
            let _ = session.await;
        }
        self.inner.running().clear();
        // A new process: a new connection and nothing queued from the old one. The old
        // connection closes once its last user (the tasks just stopped) lets go of it.
        self.life = Life::new(&self.url, &self.token);
    }

    /// Stops it as SIGTERM stops a real worker: `GoingAway`, the running attempts finish
    /// (those still running after the drain timeout are reported interrupted), then the
    /// stream closes.
    pub async fn stop(&mut self) {
        let _ = self.phase.send(Phase::GoingAway);
        let drain_timeout = self.inner.options.drain_timeout;
        let deadline = tokio::time::Instant::now() + drain_timeout;
        while !self.inner.running().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for job in self.inner.running().values() {
            job.interrupt.cancel();
        }
        let name = self.name.clone();
        crate::eventually(
            &format!("simulated worker {name}'s attempts to report after the drain"),
            SIM_WAIT,
            || async { self.inner.running().is_empty().then_some(()) },
        )
        .await;
        let _ = self.phase.send(Phase::Closing);
        if let Some(session) = self.session.take() {
            tokio::time::timeout(SIM_WAIT, session)
                .await
                .unwrap_or_else(|_| {
                    panic!("simulated worker {name}: the stream did not close within {SIM_WAIT:?}")
                })
                .unwrap_or_else(|e| panic!("simulated worker {name}: the stream task failed: {e}"));
        }
    }

    /// Starts it again after [`SimWorker::kill`] or [`SimWorker::stop`], as a new process
    /// with the same token and name: its `Hello` lists nothing running.
    pub async fn start_again(&mut self) {
        assert!(
            self.session.as_ref().is_none_or(|s| s.is_finished()),
            "simulated worker {}: start_again needs it killed or stopped first",
            self.name
        );
        self.open(Vec::new()).await;
    }

    /// Drops the stream and opens a new one while the attempts go on, as after a lost
    /// connection: the `Hello` lists the running attempts, and those the `Welcome` names
    /// as abandoned stop without a report.
    pub async fn reconnect(&mut self) {
        if let Some(session) = self.session.take() {
            session.abort();
            let _ = session.await;
        }
        let running = self.running();
        self.open(running).await;
    }
}

impl Drop for SimWorker {
    fn drop(&mut self) {
        self.life.killed.cancel();
        if let Some(session) = self.session.take() {
            session.abort();
        }
    }
}
