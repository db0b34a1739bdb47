//! `berth.v1.AgentService`: the worker-facing protocol.
//!
//! `Connect` is one long-lived stream per worker. After Hello/Welcome the session task
//! owns it: it forwards the scheduler's Assign and the API's Cancel messages, notes when
//! the worker was last heard, hands Accept/Reject/Started/Finished in order to the
//! `recorder`, and ends the stream when `leases` finds the worker silent for the lease
//! TTL, when its token is disabled, deleted or expires (the hub, or the `leases` re-check),
//! or when the server shuts down. Heartbeats to the worker come from `leases`, one timer
//! for all streams. `AppendLog` carries the bulk log bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_common::PROTOCOL_VERSION;
use berth_common::proto::agent_service_server::AgentService;
use berth_common::proto::{
    self, AppendLogRequest, AppendLogResponse, AttemptRef, LogStream, ServerMessage, WorkerMessage,
    server_message, worker_message,
};
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::access::auth::{Identity, identity};
use crate::error::{ApiError, ApiResult};
use crate::live::hub::{Hub, Session};
use crate::store::db::DbPool;
use crate::store::schema::{tokens, workers};
use crate::work::logs::{self, Appended};
use crate::work::recorder::{Recorder, Report};
use crate::work::scheduler::{self, Scheduler};
use crate::work::spec::{validate_label, validate_name};

/// Timing of the worker protocol.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// How often each side sends a heartbeat.
    pub heartbeat_interval: Duration,
    /// How long a silent worker keeps its stream.
    pub lease_ttl: Duration,
    /// Per-request cap on stored log bytes.
    pub max_log_bytes: u64,
    /// How long an assignment may wait for the worker's Accept before it is offered again.
    pub handoff_deadline: Duration,
    /// How often the scheduler sweeps leases and looks for work when nobody woke it
    /// (NOTIFY from any replica wakes it sooner).
    pub sweep_interval: Duration,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            heartbeat_interval: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(30),
            max_log_bytes: 64 * 1024 * 1024,
            handoff_deadline: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(1),
        }
    }
}

/// The AgentService implementation.
#[derive(Clone)]
pub struct AgentApi {
    pool: DbPool,
    hub: Arc<Hub>,
    scheduler: Scheduler,
    recorder: Recorder,
    settings: AgentSettings,
    shutdown: CancellationToken,
}

impl AgentApi {
    /// The service; streams end when `shutdown` is cancelled.
    pub fn new(
        pool: DbPool,
        hub: Arc<Hub>,
        scheduler: Scheduler,
        recorder: Recorder,
        settings: AgentSettings,
        shutdown: CancellationToken,
    ) -> AgentApi {
        AgentApi {
            recorder,
            pool,
            hub,
            scheduler,
            settings,
            shutdown,
        }
    }

    /// The worker bound to this token, if it registered already: the live stream's
    /// worker when it is connected here (no database read), else the stored binding.
    async fn bound_worker(&self, token_id: Uuid) -> ApiResult<Option<Uuid>> {
        if let Some(worker_id) = self.hub.worker_for_token(token_id) {
            return Ok(Some(worker_id));
        }
        let mut conn = self.pool.get().await?;
        Ok(workers::table
            .filter(workers::token_id.eq(token_id))
            .select(workers::id)
            .first(&mut conn)
            .await
            .optional()?)
    }

    /// Registers (or refreshes) the worker behind `caller` from its Hello.
    async fn register(&self, caller: &Identity, hello: &proto::Hello) -> ApiResult<(Uuid, String)> {
        if hello.concurrency == 0 || hello.concurrency > 1024 {
            return Err(ApiError::InvalidArgument(
                "hello.concurrency: use 1 to 1024".into(),
            ));
        }
        for (key, value) in &hello.labels {
            validate_label(key, value)
                .map_err(|e| ApiError::InvalidArgument(format!("hello.labels: {e}")))?;
        }
        let labels = serde_json::to_value(&hello.labels).map_err(ApiError::internal)?;
        let metadata: HashMap<&String, &String> = hello
            .metadata
            .iter()
            .filter(|(k, v)| k.len() <= 63 && v.len() <= 255)
            .collect();
        let metadata = serde_json::to_value(&metadata).map_err(ApiError::internal)?;
        let concurrency = i32::try_from(hello.concurrency).unwrap_or(1);
        let now = Utc::now();
        let mut conn = self.pool.get().await?;
        if let Some((id, name)) = workers::table
            .filter(workers::token_id.eq(caller.token_id))
            .select((workers::id, workers::name))
            .first::<(Uuid, String)>(&mut conn)
            .await
            .optional()?
        {
            diesel::update(workers::table.find(id))
                .set((
                    workers::labels.eq(labels),
                    workers::metadata.eq(metadata),
                    workers::concurrency.eq(concurrency),
                    workers::connected_at.eq(now),
                    workers::last_heartbeat_at.eq(now),
                ))
                .execute(&mut conn)
                .await?;
            return Ok((id, name));
        }
        // First connection with this token: the token's name, else the one asked for.
        let wanted = if caller.name.is_empty() {
            hello.name.clone()
        } else {
            caller.name.clone()
        };
        validate_name("hello.name", &wanted).map_err(ApiError::InvalidArgument)?;
        let id = Uuid::now_v7();
        for n in 1..=100 {
            let name = if n == 1 {
                wanted.clone()
            } else {
                let suffix = format!("-{n}");
                let cut = wanted.len().min(63 - suffix.len());
                format!("{}{suffix}", &wanted[..cut])
            };
            let inserted = diesel::insert_into(workers::table)
                .values((
                    workers::id.eq(id),
                    workers::name.eq(&name),
                    workers::token_id.eq(caller.token_id),
                    workers::labels.eq(&labels),
                    workers::metadata.eq(&metadata),
                    workers::concurrency.eq(concurrency),
                    workers::connected_at.eq(now),
                    workers::last_heartbeat_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(&mut conn)
                .await?;
            if inserted == 1 {
                diesel::update(tokens::table.find(caller.token_id))
                    .set(tokens::worker_name.eq(&name))
                    .execute(&mut conn)
                    .await?;
                tracing::info!(worker = %name, %id, "worker registered");
                return Ok((id, name));
            }
        }
        Err(ApiError::AlreadyExists(format!(
            "hello.name: too many workers are named like {wanted:?}; choose another --name"
        )))
    }
}

fn refs(pairs: &[(Uuid, i32)]) -> Vec<AttemptRef> {
    pairs
        .iter()
        .map(|(id, n)| AttemptRef {
            work_request_id: id.to_string(),
            attempt: u32::try_from(*n).unwrap_or(0),
        })
        .collect()
}

/// Sends a Cancel for `attempt` to the worker running it, if it is connected here.
pub async fn send_cancel(hub: &Hub, worker_id: Uuid, id: Uuid, attempt: i32) -> bool {
    let Some(session) = hub.session(worker_id) else {
        return false;
    };
    let message = ServerMessage {
        msg: Some(server_message::Msg::Cancel(proto::Cancel {
            attempt: Some(AttemptRef {
                work_request_id: id.to_string(),
                attempt: u32::try_from(attempt).unwrap_or(0),
            }),
        })),
    };
    session.tx.send(Box::new(message)).await.is_ok()
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    type ConnectStream = BoxStream<'static, Result<ServerMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let caller = identity(&request)?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(Duration::from_secs(30), inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded("no Hello within 30 s of opening the stream")
            })??;
        let Some(WorkerMessage {
            msg: Some(worker_message::Msg::Hello(hello)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "the first message on the stream must be a Hello",
            ));
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "this worker speaks protocol version {}, the server speaks {PROTOCOL_VERSION}; run matching versions of berth-worker and berth-server",
                hello.protocol_version
            )));
        }
        let (worker_id, name) = self.register(&caller, &hello).await?;

        let reported = hello
            .running
            .iter()
            .map(|r| scheduler::parse_ref(Some(r)))
            .collect::<ApiResult<Vec<_>>>()?;
        let mut conn = self.pool.get().await.map_err(ApiError::from)?;
        let (keep, abandon, cancel) = scheduler::reconcile(&mut conn, worker_id, &reported).await?;
        let lost = scheduler::worker_lost(&mut conn, worker_id, &keep).await?;
        drop(conn);
        if !lost.is_empty() {
            tracing::warn!(worker = %name, lost = lost.len(), "attempts the worker no longer runs were ended as worker-lost");
            self.hub.wake_scheduler();
        }

        // Boxed: a channel allocates its slots in blocks, and an unboxed ServerMessage
        // (an Assign carries a whole spec) made that block about 10 KiB per idle stream.
        let (tx, rx) = mpsc::channel::<Box<ServerMessage>>(64);
        let welcome = ServerMessage {
            msg: Some(server_message::Msg::Welcome(proto::Welcome {
                worker_id: worker_id.to_string(),
                name: name.clone(),
                heartbeat_interval_seconds: u32::try_from(
                    self.settings.heartbeat_interval.as_secs(),
                )
                .unwrap_or(5),
                lease_ttl_seconds: u32::try_from(self.settings.lease_ttl.as_secs()).unwrap_or(30),
                abandon: refs(&abandon),
            })),
        };
        tx.send(Box::new(welcome))
            .await
            .map_err(|_| Status::cancelled("stream closed"))?;
        let session = self.hub.register(worker_id, caller.token_id, tx.clone());
        for (id, attempt) in cancel {
            send_cancel(&self.hub, worker_id, id, attempt).await;
        }
        tracing::info!(worker = %name, %worker_id, "worker connected");
        if let Err(e) = self.scheduler.assign_for(worker_id).await {
            let status: Status = e.into();
            tracing::warn!(worker = %name, error = %status.message(), "first assignment round failed");
        }

        let this = self.clone();
        let (end_tx, end_rx) = tokio::sync::oneshot::channel::<Status>();
        tokio::spawn(async move {
            let reason = this.run_session(&session, inbound).await;
            this.hub.unregister(&session);
            if let Ok(mut conn) = this.pool.get().await {
                let _ = diesel::update(workers::table.find(worker_id))
                    .set(workers::connected_at.eq(None::<chrono::DateTime<Utc>>))
                    .execute(&mut conn)
                    .await;
            }
            tracing::info!(worker = %name, %worker_id, reason = %reason.message(), "worker disconnected");
            drop(session);
            // Tell the worker why, if it is still listening.
            let _ = end_tx.send(reason);
        });
        // The worker sees every queued message, then the reason the stream ended.
        let ending = futures::stream::once(async move {
            match end_rx.await {
                Ok(status) if status.code() == tonic::Code::Ok => None,
                Ok(status) => Some(Err(status)),
                Err(_) => Some(Err(Status::unavailable("the stream ended"))),
            }
        })
        .filter_map(|end| async move { end });
        let outbound = ReceiverStream::new(rx)
            .map(|message| Ok::<_, Status>(*message))
            .chain(ending);
        Ok(Response::new(Box::pin(outbound)))
    }

    async fn append_log(
        &self,
        request: Request<AppendLogRequest>,
    ) -> Result<Response<AppendLogResponse>, Status> {
        let caller = identity(&request)?;
        let append = request.into_inner();
        let (id, attempt) = scheduler::parse_ref(append.attempt.as_ref())?;
        let stream = LogStream::try_from(append.stream)
            .map_err(|_| Status::invalid_argument("stream: unknown log stream"))?;
        let worker_id = self.bound_worker(caller.token_id).await?.ok_or_else(|| {
            Status::failed_precondition("this token has no registered worker; connect first")
        })?;
        let mut conn = self.pool.get().await.map_err(ApiError::from)?;
        let appended = logs::append(
            &mut conn,
            logs::Append {
                worker_id,
                id,
                attempt,
                stream,
                offset: append.offset,
                data: &append.data,
            },
            self.settings.max_log_bytes,
        )
        .await?;
        match appended {
            Appended::Acknowledged(acknowledged) => {
                self.hub.changed();
                Ok(Response::new(AppendLogResponse { acknowledged }))
            }
            Appended::Fenced => Err(Status::failed_precondition(format!(
                "attempt {attempt} of work request {id} is not this worker's current attempt; nothing was stored"
            ))),
        }
    }
}

impl AgentApi {
    /// Drives one worker stream until it ends; returns why it ended.
    async fn run_session(
        &self,
        session: &Session,
        mut inbound: Streaming<WorkerMessage>,
    ) -> Status {
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Status::unavailable("the server is shutting down"),
                () = session.close.cancelled() => {
                    return Status::unauthenticated("the stream was closed: its token was disabled or deleted, or the worker connected again");
                }
                // Heartbeats to the worker, and this check, are `leases`'s: one timer for
                // all streams rather than one each.
                () = session.lapsed.cancelled() => {
                    return Status::deadline_exceeded("no message from the worker within the lease TTL");
                }
                message = inbound.message() => {
                    match message {
                        Ok(Some(message)) => {
                            session
                                .last_heard
                                .store(crate::live::hub::now_ms(), std::sync::atomic::Ordering::Relaxed);
                            if let Err(e) = self.handle(session, message).await {
                                let status: Status = e.into();
                                tracing::warn!(worker_id = %session.worker_id, error = %status.message(), "worker message not applied");
                            }
                        }
                        Ok(None) => return Status::ok("the worker closed the stream"),
                        Err(status) => return status,
                    }
                }
            }
        }
    }

    async fn handle(&self, session: &Session, message: WorkerMessage) -> ApiResult<()> {
        let worker_id = session.worker_id;
        let Some(msg) = message.msg else {
            return Ok(());
        };
        let report = match msg {
            worker_message::Msg::Hello(_) => {
                return Err(ApiError::InvalidArgument(
                    "Hello may only be sent once".into(),
                ));
            }
            // Any message renews the lease (`session.last_heard`, written by `leases`).
            worker_message::Msg::Heartbeat(_) => return Ok(()),
            worker_message::Msg::GoingAway(going) => {
                tracing::info!(%worker_id, reason = %going.reason, "worker is going away");
                session
                    .going_away
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok(());
            }
            worker_message::Msg::Accept(accept) => {
                let (id, attempt) = scheduler::parse_ref(accept.attempt.as_ref())?;
                Report::Accept { id, attempt }
            }
            worker_message::Msg::Reject(reject) => {
                let (id, attempt) = scheduler::parse_ref(reject.attempt.as_ref())?;
                tracing::info!(work_request = %id, attempt, reason = %reject.reason, "worker rejected an assignment");
                Report::Reject { id, attempt }
            }
            worker_message::Msg::Started(started) => {
                scheduler::parse_ref(started.attempt.as_ref())?;
                Report::Started(started)
            }
            worker_message::Msg::Finished(finished) => {
                scheduler::parse_ref(finished.attempt.as_ref())?;
                Report::Finished(finished)
            }
        };
        // Recorded in order with every other worker's reports, many per transaction.
        self.recorder.record(worker_id, report).await
    }
}
