//! Simulated workers: the real agent protocol over real gRPC, with an executor that
//! finishes at once.
//!
//! A real `berth-worker` spends its time in Docker, which would hide what the server and
//! PostgreSQL cost per work request, and thousands of real workers would need thousands of
//! processes. A simulated worker is one task that does what the worker does on the wire:
//! `Connect` with its own worker token (the server takes the worker's identity from the
//! token, so each one needs its own), `Hello`, wait for `Welcome`, a `Heartbeat` every
//! interval the server asked for, and on `Assign` at once `Accept`, `Started` and
//! `Finished` (exited, code 0). It records when each `Assign` arrived, which is how
//! dispatch latency is measured.
//!
//! Streams share connections: HTTP/2 multiplexes many calls over one TCP connection, and
//! the server accepts 200 concurrent streams per connection by default, so a fleet opens
//! one connection per [`STREAMS_PER_CHANNEL`] workers. That keeps the bench process's file
//! descriptors few even with 10,000 workers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_common::client::BearerAuth;
use berth_common::proto::agent_service_client::AgentServiceClient;
use berth_common::proto::server_message::Msg as ServerMsg;
use berth_common::proto::worker_message::Msg as WorkerMsg;
use berth_common::proto::{
    Accept, AttemptRef, Finished, GoingAway, Heartbeat, Hello, Outcome, Role, Started,
    WorkerMessage,
};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::stack::{Stack, create_token_with};

/// How many worker streams share one HTTP/2 connection (the server allows 200).
pub const STREAMS_PER_CHANNEL: usize = 100;
/// How many tokens are created at once.
const TOKEN_CONCURRENCY: usize = 32;

/// What every simulated worker records, shared by the whole fleet.
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

/// A set of simulated workers.
pub struct SimFleet {
    /// What they recorded.
    pub stats: Arc<SimStats>,
    /// How many there are.
    pub count: usize,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl SimFleet {
    /// Creates `count` worker tokens named `<prefix>-<i>` and connects one simulated
    /// worker per token, each offering `concurrency` slots. Returns once every stream is
    /// open; use [`SimFleet::wait_welcomed`] to wait for the server's `Welcome`s.
    pub async fn start(
        stack: &Stack,
        prefix: &str,
        count: usize,
        concurrency: u32,
    ) -> anyhow::Result<SimFleet> {
        let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
        let tokens = create_tokens(stack, &names).await?;

        let stats = Arc::new(SimStats::default());
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut channel: Option<Channel> = None;
        for (i, (name, token)) in names.into_iter().zip(tokens).enumerate() {
            if i % STREAMS_PER_CHANNEL == 0 || channel.is_none() {
                channel = Some(stack.channel().await?);
            }
            let channel = channel
                .clone()
                .context("a channel was just opened; this is a bug")?;
            let client = AgentServiceClient::with_interceptor(channel, BearerAuth::new(&token));
            let stats = Arc::clone(&stats);
            let stopped = stopped.clone();
            tasks.spawn(async move {
                if let Err(e) = run_worker(client, name.clone(), concurrency, &stats, stopped).await
                {
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
            stop,
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
        let _ = self.stop.send(true);
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
    }
}

/// Creates one worker token per name, [`TOKEN_CONCURRENCY`] at a time.
async fn create_tokens(stack: &Stack, names: &[String]) -> anyhow::Result<Vec<String>> {
    let tokens = stack.tokens(&stack.admin_token).await?;
    let results: Vec<anyhow::Result<String>> = futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let mut tokens = tokens.clone();
            async move { create_token_with(&mut tokens, Role::Worker, &name).await }
        })
        .buffered(TOKEN_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// One simulated worker: runs until `stopped` turns true or the server ends the stream.
async fn run_worker(
    mut client: AgentServiceClient<
        tonic::service::interceptor::InterceptedService<Channel, BearerAuth>,
    >,
    name: String,
    concurrency: u32,
    stats: &SimStats,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Unbounded: the task itself is the only producer and sends a handful per Assign.
    let (tx, rx) = mpsc::unbounded_channel::<WorkerMessage>();
    let send = |msg: WorkerMsg| {
        tx.send(WorkerMessage { msg: Some(msg) })
            .map_err(|_| anyhow::anyhow!("the outgoing stream closed"))
    };
    send(WorkerMsg::Hello(Hello {
        protocol_version: berth_common::PROTOCOL_VERSION,
        name,
        concurrency,
        ..Default::default()
    }))?;
    let mut inbound = client
        .connect(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .map_err(|s| anyhow::anyhow!(berth_common::client::describe_status(&s)))
        .context("Connect failed")?
        .into_inner();

    // Until Welcome says otherwise, heartbeat at the server's default interval.
    let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            message = inbound.message() => {
                let message = message
                    .map_err(|s| anyhow::anyhow!(berth_common::client::describe_status(&s)))
                    .context("the control stream failed")?;
                let Some(message) = message else {
                    if *stopped.borrow() {
                        return Ok(());
                    }
                    bail!("the server ended the control stream");
                };
                match message.msg {
                    Some(ServerMsg::Welcome(welcome)) => {
                        let period = Duration::from_secs(u64::from(welcome.heartbeat_interval_seconds.max(1)));
                        heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        stats.welcomed.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(ServerMsg::Assign(assign)) => {
                        let received = Instant::now();
                        let attempt = assign.attempt.context("Assign without an attempt")?;
                        stats
                            .assigned
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(attempt.work_request_id.clone(), received);
                        finish_at_once(&send, &attempt)?;
                        stats.finished.fetch_add(1, Ordering::Relaxed);
                    }
                    // Nothing runs long enough to be cancelled, and the server's heartbeats
                    // need no answer.
                    Some(ServerMsg::Cancel(_) | ServerMsg::Heartbeat(_)) | None => {}
                }
            }
            _ = heartbeat.tick() => {
                send(WorkerMsg::Heartbeat(Heartbeat {}))?;
            }
            _ = stopped.changed() => {
                let _ = send(WorkerMsg::GoingAway(GoingAway { reason: "benchmark done".into() }));
                return Ok(());
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
