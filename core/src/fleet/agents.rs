//! A worker's session with this replica: what its Hello does, what each of its reports
//! does, what its log appends do, and what happens when its stream ends.
//!
//! The agent stream at the API edge decodes the worker's wire messages into the plain
//! types here ([`Hello`], [`Report`]) and encodes what the hub queues for it
//! (`live::hub::ToWorker`); everything else is here:
//!
//! - [`Agents::hello`] registers the worker (or refreshes its row), reconciles the
//!   attempts it says it still runs with the database (those no longer current are to be
//!   abandoned; current ones whose request was cancelled are cancelled again; the rest of
//!   its live attempts were lost), registers its stream with the hub, and runs a first
//!   assignment round for it.
//! - [`Agents::report`] notes that the worker was heard from and hands its Accept,
//!   Reject, Started and Finished, in order, to the `recorder`.
//! - [`Agents::append_log`] stores log bytes, fenced like every other worker write.
//! - [`Agents::keep_containers`] judges the Berth containers a worker found on its Docker
//!   engine: which attempts are current and held by a live worker (keep), which the server
//!   has no record of (not its to judge), and so which containers should go. With a
//!   `ContainersStopped` report a worker confirms that it stopped a lost worker's
//!   containers, and `lifecycle` lets their requests run again.
//! - [`Agents::disconnected`] forgets the stream and marks the worker disconnected.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::live::AgentSettings;
use crate::live::hub::{Hub, Session, ToWorker};
use crate::store::db::DbPool;
use crate::store::schema::{tokens, workers};
use crate::work::ids::{AttemptKey, WorkRequestId};
use crate::work::lifecycle;
use crate::work::logs::{self, Append, Appended, LogStream};
use crate::work::recorder::{self, Recorder};
use crate::work::report::{Finished, Health, Started};
use crate::work::scheduler::Scheduler;
use crate::work::spec::{validate_label, validate_name};

/// The most slots a worker may offer.
const MAX_CONCURRENCY: u32 = 1024;

/// A worker's introduction, as it sent it.
#[derive(Clone, Debug, Default)]
pub struct Hello {
    /// The name it wants (used at its first connection only, and only when its token was
    /// not created for a name).
    pub name: String,
    /// Its static labels (configuration).
    pub labels: HashMap<String, String>,
    /// Facts it reports about itself (arch, os, cpus, ...).
    pub metadata: HashMap<String, String>,
    /// How many attempts it runs at once.
    pub concurrency: u32,
    /// The attempts it still runs (after a reconnect).
    pub running: Vec<AttemptKey>,
}

/// What the worker is told in answer to its Hello.
#[derive(Debug)]
pub struct Welcome {
    /// Its registered id.
    pub worker_id: Uuid,
    /// Its registered name.
    pub name: String,
    /// Attempts from its Hello that are no longer current: it must stop them and report
    /// nothing more about them.
    pub abandon: Vec<AttemptKey>,
}

/// A worker's live session, as [`Agents::hello`] opened it.
pub struct Connected {
    /// The stream's registration with the hub.
    pub session: Session,
    /// What the hub queues for the worker, to be sent on its stream.
    pub outbox: mpsc::Receiver<ToWorker>,
    /// The answer to its Hello.
    pub welcome: Welcome,
}

/// Something a worker says on its stream after its Hello.
#[derive(Debug)]
pub enum Report {
    /// A sign of life.
    Heartbeat,
    /// It is shutting down and takes nothing new on this stream.
    GoingAway {
        /// Why, for the log.
        reason: String,
    },
    /// It took an assignment.
    Accept(AttemptKey),
    /// It cannot take an assignment.
    Reject {
        /// The assignment.
        key: AttemptKey,
        /// Why, for the log.
        reason: String,
    },
    /// The attempt's container started.
    Started(AttemptKey, Started),
    /// The attempt ended.
    Finished(AttemptKey, Finished),
    /// The attempt's container changed its HEALTHCHECK status.
    Health(AttemptKey, Health),
    /// Of the attempts a `StopContainers` named (a lost worker's, on the same engine):
    /// those whose containers the worker found and removed, and those it found no
    /// container of.
    ContainersStopped {
        /// Found, stopped and removed.
        stopped: Vec<AttemptKey>,
        /// No container found.
        none_found: Vec<AttemptKey>,
    },
}

/// The most attempts one `KeepContainers` call may name.
pub const MAX_KEEP_QUERY: usize = 1000;

/// The server's judgement of the attempts whose containers a worker found on its engine.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeepVerdict {
    /// Current attempts held by a live worker.
    pub keep: Vec<AttemptKey>,
    /// Attempts of requests this server has no record of.
    pub unknown: Vec<AttemptKey>,
}

#[derive(QueryableByName)]
struct Judged {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: WorkRequestId,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    number: i32,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    known: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    keep: bool,
}

/// See the module docs.
#[derive(Clone)]
pub struct Agents {
    pool: DbPool,
    hub: Arc<Hub>,
    scheduler: Scheduler,
    recorder: Recorder,
    settings: AgentSettings,
}

impl Agents {
    /// Sessions over `pool`, registered with `hub`; reports go to `recorder`.
    pub fn new(
        pool: DbPool,
        hub: Arc<Hub>,
        scheduler: Scheduler,
        recorder: Recorder,
        settings: AgentSettings,
    ) -> Agents {
        Agents {
            pool,
            hub,
            scheduler,
            recorder,
            settings,
        }
    }

    /// The timing the worker is told in its Welcome.
    pub fn settings(&self) -> &AgentSettings {
        &self.settings
    }

    /// Opens the session of the worker behind `caller` (see the module docs).
    pub async fn hello(&self, caller: &Identity, hello: Hello) -> Result<Connected> {
        let (worker_id, name) = self.register(caller, &hello).await?;
        let mut conn = self.pool.get().await?;
        let reconciled = lifecycle::reconcile(&mut conn, worker_id, &hello.running).await?;
        let lost = lifecycle::worker_lost(&mut conn, worker_id, &reconciled.keep).await?;
        drop(conn);
        if !lost.is_empty() {
            tracing::warn!(worker = %name, lost = lost.len(), "attempts the worker no longer runs were ended as worker-lost");
            self.hub.wake_scheduler();
        }
        let concurrency = usize::try_from(hello.concurrency).unwrap_or(1);
        let (session, outbox) = self.hub.register(worker_id, caller.token_id, concurrency);
        for key in reconciled.cancel {
            self.hub.cancel(worker_id, key);
        }
        tracing::info!(worker = %name, %worker_id, "worker connected");
        if let Err(e) = self.scheduler.assign_for(worker_id).await {
            // The scheduler's next round (a wake-up or its interval) tries again.
            tracing::warn!(worker = %name, error = %e, "first assignment round failed");
        }
        Ok(Connected {
            session,
            outbox,
            welcome: Welcome {
                worker_id,
                name,
                abandon: reconciled.abandon,
            },
        })
    }

    /// Registers (or refreshes) the worker behind `caller` from its Hello.
    async fn register(&self, caller: &Identity, hello: &Hello) -> Result<(Uuid, String)> {
        if hello.concurrency == 0 || hello.concurrency > MAX_CONCURRENCY {
            return Err(Error::InvalidArgument(format!(
                "hello.concurrency: use 1 to {MAX_CONCURRENCY}"
            )));
        }
        for (key, value) in &hello.labels {
            validate_label(key, value)
                .map_err(|e| Error::InvalidArgument(format!("hello.labels: {e}")))?;
        }
        let labels = serde_json::to_value(&hello.labels).map_err(Error::internal)?;
        let metadata: HashMap<&String, &String> = hello
            .metadata
            .iter()
            .filter(|(k, v)| k.len() <= 63 && v.len() <= 255)
            .collect();
        let metadata = serde_json::to_value(&metadata).map_err(Error::internal)?;
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
        validate_name("hello.name", &wanted).map_err(Error::InvalidArgument)?;
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
        Err(Error::AlreadyExists(format!(
            "hello.name: too many workers are named like {wanted:?}; choose another --name"
        )))
    }

    /// What the worker said on its stream: attempt reports are queued, in order, for the
    /// recorder.
    pub async fn report(&self, session: &Session, report: Report) -> Result<()> {
        let worker_id = session.worker_id;
        let report = match report {
            Report::Heartbeat => return Ok(()),
            Report::GoingAway { reason } => {
                tracing::info!(%worker_id, %reason, "worker is going away");
                session.going_away.store(true, Ordering::Relaxed);
                return Ok(());
            }
            Report::Accept(key) => recorder::Report::Accept(key),
            Report::Reject { key, reason } => {
                tracing::info!(%key, %reason, "worker rejected an assignment");
                recorder::Report::Reject(key)
            }
            Report::Started(key, started) => recorder::Report::Started(key, started),
            Report::Finished(key, finished) => recorder::Report::Finished(key, finished),
            // The recorder's batch ends with `hub.changed()`, so the reconciler looks.
            Report::Health(key, health) => recorder::Report::Health(key, health),
            Report::ContainersStopped {
                stopped,
                none_found,
            } => {
                let mut conn = self.pool.get().await?;
                let ended =
                    lifecycle::containers_stopped(&mut conn, worker_id, &stopped, &none_found)
                        .await?;
                if !ended.is_empty() {
                    tracing::info!(%worker_id, attempts = ended.len(), "a worker stopped the containers of a lost worker on its engine; their requests run again");
                    self.hub.changed();
                    self.hub.wake_scheduler();
                }
                return Ok(());
            }
        };
        // Recorded in order with every other worker's reports, many per transaction.
        self.recorder.record(worker_id, report).await
    }

    /// `KeepContainers`: which of `attempts` (whose containers a worker found on its
    /// Docker engine) are current and held by a live worker, and which this server has no
    /// record of; the containers of the rest should go. The answer does not depend on who
    /// asks: a worker asks at start, before its first Hello. A worker is live while its
    /// lease runs (heard from within the lease TTL), even if its stream just broke: it may
    /// reconnect and go on, and once the lease is out the sweep has ended its attempts or
    /// marked them for stopping, which this then reports as over.
    pub async fn keep_containers(&self, attempts: &[AttemptKey]) -> Result<KeepVerdict> {
        if attempts.len() > MAX_KEEP_QUERY {
            return Err(Error::InvalidArgument(format!(
                "attempts: at most {MAX_KEEP_QUERY} per call, got {}; ask in batches",
                attempts.len()
            )));
        }
        if attempts.is_empty() {
            return Ok(KeepVerdict::default());
        }
        let ids: Vec<Uuid> = attempts.iter().map(|k| k.id.0).collect();
        let numbers: Vec<i32> = attempts.iter().map(|k| k.attempt).collect();
        let ttl = chrono::TimeDelta::from_std(self.settings.lease_ttl)
            .unwrap_or(chrono::TimeDelta::seconds(30));
        let mut conn = self.pool.get().await?;
        let judged: Vec<Judged> = diesel::sql_query(
            "SELECT k.id, k.number, (r.id IS NOT NULL) AS known, \
                    COALESCE(r.attempt_count = k.number AND a.state <> 'finished' \
                      AND a.stop_requested_at IS NULL \
                      AND w.last_heartbeat_at >= $3, false) AS keep \
             FROM unnest($1::uuid[], $2::int[]) AS k(id, number) \
             LEFT JOIN work_requests r ON r.id = k.id \
             LEFT JOIN attempts a ON a.work_request_id = k.id AND a.number = k.number \
             LEFT JOIN workers w ON w.id = a.worker_id",
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
        .bind::<diesel::sql_types::Array<diesel::sql_types::Integer>, _>(numbers)
        .bind::<diesel::sql_types::Timestamptz, _>(Utc::now() - ttl)
        .load(&mut conn)
        .await?;
        let mut verdict = KeepVerdict::default();
        for row in judged {
            let key = AttemptKey::new(row.id, row.number);
            if !row.known {
                verdict.unknown.push(key);
            } else if row.keep {
                verdict.keep.push(key);
            }
        }
        Ok(verdict)
    }

    /// The stream ended: it is forgotten here and the worker marked disconnected (its
    /// lease runs out on its own unless it reconnects).
    pub async fn disconnected(&self, session: &Session) {
        self.hub.unregister(session);
        let marked = async {
            let mut conn = self.pool.get().await?;
            diesel::update(workers::table.find(session.worker_id))
                .set(workers::connected_at.eq(None::<chrono::DateTime<Utc>>))
                .execute(&mut conn)
                .await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = marked {
            // The sweep of some replica marks it once its lease has run out.
            tracing::debug!(worker_id = %session.worker_id, error = %e, "could not mark the worker disconnected");
        }
    }

    /// `AppendLog`: stores `data` at `offset` of one stream of the attempt `key` of the
    /// worker that `caller`'s token is bound to. Returns the acknowledged end.
    pub async fn append_log(
        &self,
        caller: &Identity,
        key: AttemptKey,
        stream: LogStream,
        offset: u64,
        data: &[u8],
    ) -> Result<u64> {
        let worker_id = self.bound_worker(caller.token_id).await?.ok_or_else(|| {
            Error::FailedPrecondition("this token has no registered worker; connect first".into())
        })?;
        let mut conn = self.pool.get().await?;
        let appended = logs::append(
            &mut conn,
            Append {
                worker_id,
                key,
                stream,
                offset,
                data,
            },
            self.settings.max_log_bytes,
        )
        .await?;
        match appended {
            Appended::Acknowledged(acknowledged) => {
                self.hub.changed();
                Ok(acknowledged)
            }
            Appended::Fenced => Err(Error::FailedPrecondition(format!(
                "{key} is not this worker's current attempt; nothing was stored"
            ))),
        }
    }

    /// The worker bound to this token, if it registered already: the live stream's
    /// worker when it is connected here (no database read), else the stored binding.
    async fn bound_worker(&self, token_id: Uuid) -> Result<Option<Uuid>> {
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
}
