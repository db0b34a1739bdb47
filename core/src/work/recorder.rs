//! Group commit of what workers report.
//!
//! Accept, Reject, Started and Finished each change an attempt and its request. Applied
//! one transaction each, a work request costs three commits on this path alone, and the
//! commit (a WAL flush) is the most expensive part of each. Worker streams therefore hand
//! their reports to one task per replica, which applies everything that queued up while
//! the previous batch was being written in a single transaction. Under load a batch holds
//! the reports of many workers; when the server is idle a batch holds one report and
//! costs what it did before, with no waiting on a timer.
//!
//! Reports of one worker keep their order: one stream sends them in order into one
//! channel, and the task applies them in channel order. Every report is fenced as
//! before, so a stale one changes nothing and the others in its batch are unaffected. If
//! the batch transaction fails (a deadlock with another transaction, say), each report is
//! applied again in a transaction of its own, so one bad report cannot lose the rest.
//!
//! Within a batch, an Accept and a Started followed by the Finished of the same attempt
//! are folded into the Finished: the attempt row and the request row are each written
//! once, with the times and ids all three reports carry.
//!
//! A report is queued, not yet applied, when `record` returns: the stream goes on reading
//! the worker's messages at once. At shutdown the task applies what is queued before it
//! ends.
//!
//! # When the database is away
//!
//! A report that could not be applied because the database could not be reached is not
//! dropped: the task keeps it, with everything after it in the queue waiting behind it,
//! and applies it again, with backoff, once `live::health` says the database answers.
//! The worker's streams stay open meanwhile (heartbeats need no database), so an Accept,
//! Started or Finished sent during an outage is recorded after it, in order; the hand-off
//! deadline and the lease sweep hold off until then (see `Scheduler::sweep_forever`).
//!
//! Once a Finished is applied, or found stale (the attempt had already ended), the worker
//! is told with `ToWorker::Recorded`. It keeps every Finished until then and sends it
//! again on its next stream, so a Finished lost with this process (a crash, or shutting
//! down while the database is away) is recorded by whichever replica it reaches next.

use std::collections::HashMap;
use std::sync::Arc;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::live::health::DbHealth;
use crate::live::hub::{Hub, ToWorker};
use crate::store::db::DbPool;
use crate::work::ids::AttemptKey;
use crate::work::lifecycle::{self, Folded};
use crate::work::report::{Finished, Health, Started};
use crate::work::state::Reason;

/// Reports waiting to be applied, across all streams of this replica.
const QUEUE: usize = 8192;
/// Most reports applied in one transaction.
const MAX_BATCH: usize = 512;
/// First and longest wait before reports held for the database are applied again.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// Something a worker reported about one of its attempts.
#[derive(Debug)]
pub enum Report {
    /// The worker took the assignment.
    Accept(AttemptKey),
    /// The worker refused the assignment; it goes back to the queue.
    Reject(AttemptKey),
    /// The container started.
    Started(AttemptKey, Started),
    /// The attempt ended.
    Finished(AttemptKey, Finished),
    /// The container's HEALTHCHECK status changed. Queued here rather than written on
    /// the stream's task so it lands after the same worker's Started of the attempt and
    /// before its Finished, in the order sent, and costs no transaction of its own in a
    /// busy batch.
    Health(AttemptKey, Health),
}

impl Report {
    /// The attempt reported on.
    pub(crate) fn key(&self) -> AttemptKey {
        match self {
            Report::Accept(key)
            | Report::Reject(key)
            | Report::Started(key, _)
            | Report::Finished(key, _)
            | Report::Health(key, _) => *key,
        }
    }
}

/// The sending side, held by every worker stream of this replica.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<(Uuid, Report)>,
}

impl Recorder {
    /// A recorder and the receiving end that [`run`] drains.
    pub fn channel() -> (Recorder, mpsc::Receiver<(Uuid, Report)>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Recorder { tx }, rx)
    }

    /// Queues a report of `worker_id`. Waits only while the queue is full.
    pub(crate) async fn record(&self, worker_id: Uuid, report: Report) -> Result<()> {
        self.tx
            .send((worker_id, report))
            .await
            .map_err(|_| Error::Unavailable("the server is shutting down".into()))
    }
}

/// Applies queued reports in batches until `shutdown`, then applies what is left.
/// Reports the database was away for are applied again once it is back (see the module
/// docs).
pub async fn run(
    pool: DbPool,
    hub: Arc<Hub>,
    health: Arc<DbHealth>,
    mut rx: mpsc::Receiver<(Uuid, Report)>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => {
                rx.close();
                rx.recv_many(&mut batch, MAX_BATCH).await
            }
            n = rx.recv_many(&mut batch, MAX_BATCH) => n,
        };
        if received == 0 {
            return;
        }
        let mut held = apply(&pool, &hub, &mut batch).await;
        let mut wait = RETRY_FIRST;
        while !held.is_empty() {
            if shutdown.is_cancelled() {
                give_up(&held);
                break;
            }
            tokio::select! {
                () = shutdown.cancelled() => continue,
                () = async {
                    tokio::time::sleep(wait).await;
                    health.until_reachable().await;
                } => {}
            }
            wait = (wait * 2).min(RETRY_MAX);
            batch = held;
            held = apply(&pool, &hub, &mut batch).await;
        }
    }
}

/// Logs the reports that stay unapplied because the server stops while the database is
/// away. Each Finished is sent again by its worker on its next stream; an Accept or
/// Started is settled by that stream's Hello.
fn give_up(held: &[(Uuid, Report)]) {
    for (worker_id, report) in held {
        tracing::warn!(%worker_id, key = %report.key(), "worker report not applied: the server is stopping while the database is away; the worker's next stream settles it");
    }
}

/// What applying one report found.
enum Applied {
    /// Recorded.
    Current,
    /// The attempt is no longer this worker's current attempt: nothing changed.
    Stale,
    /// Could not be applied.
    Failed(Error),
}

/// Applies `batch` (emptying it) and returns the reports that failed because the database
/// could not be reached, in their order, to be applied again.
async fn apply(pool: &DbPool, hub: &Hub, batch: &mut Vec<(Uuid, Report)>) -> Vec<(Uuid, Report)> {
    let results = match pool.get().await {
        Ok(mut conn) => match apply_together(&mut conn, batch).await {
            Ok(results) => results,
            Err(e) => {
                if batch.len() > 1 {
                    tracing::debug!(reports = batch.len(), error = %e, "batch of worker reports failed; applying them one by one");
                }
                apply_one_by_one(&mut conn, batch).await
            }
        },
        Err(e) => {
            let message = e.to_string();
            batch
                .iter()
                .map(|_| Applied::Failed(Error::Database(message.clone())))
                .collect()
        }
    };
    let mut freed = false;
    let mut held = Vec::new();
    let mut recorded: HashMap<Uuid, Vec<AttemptKey>> = HashMap::new();
    for ((worker_id, report), applied) in batch.drain(..).zip(results) {
        if let Applied::Failed(Error::Database(e)) = &applied {
            if held.is_empty() {
                tracing::warn!(error = %e, "worker reports not applied: the database is away; holding them until it is back");
            }
            held.push((worker_id, report));
            continue;
        }
        freed |= matches!(report, Report::Finished(..) | Report::Reject(_));
        if let (Report::Finished(key, _), Applied::Current | Applied::Stale) = (&report, &applied) {
            recorded.entry(worker_id).or_default().push(*key);
        }
        after(hub, worker_id, &report, applied);
    }
    for (worker_id, keys) in recorded {
        // A worker whose stream is gone sends its Finished again on the next one, and
        // hears Recorded then.
        hub.send(worker_id, ToWorker::Recorded(keys));
    }
    hub.changed();
    if freed {
        // Slots are free and dependants may be released: look for work now.
        hub.wake_scheduler();
    }
    held
}

/// How each report of a batch is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// On its own.
    Alone,
    /// Together with the Finished at this index, which comes later in the batch.
    FoldedInto(usize),
    /// As a Finished that also records the Accept and/or Started at these indices.
    FinishWith {
        accept: Option<usize>,
        started: Option<usize>,
    },
}

/// Folds each Accept and Started into a later Finished of the same attempt and worker in
/// the same batch: a job that ends quickly then costs one set of statements, not three.
fn plan(batch: &[(Uuid, Report)]) -> Vec<Plan> {
    let mut plans = vec![Plan::Alone; batch.len()];
    // (worker, attempt) -> (Accept index, Started index) not yet folded.
    type Earlier = (Option<usize>, Option<usize>);
    let mut open: HashMap<(Uuid, AttemptKey), Earlier> = HashMap::new();
    for (i, (worker_id, report)) in batch.iter().enumerate() {
        let key = (*worker_id, report.key());
        match report {
            Report::Accept(_) => open.entry(key).or_default().0 = Some(i),
            Report::Started(..) => open.entry(key).or_default().1 = Some(i),
            Report::Reject(_) => {
                open.remove(&key);
            }
            // Applied on its own, in order: it needs nothing of the Started before it.
            Report::Health(..) => {}
            Report::Finished(..) => {
                let Some((accept, started)) = open.remove(&key) else {
                    continue;
                };
                for earlier in [accept, started].into_iter().flatten() {
                    plans[earlier] = Plan::FoldedInto(i);
                }
                plans[i] = Plan::FinishWith { accept, started };
            }
        }
    }
    plans
}

/// All reports in one transaction.
async fn apply_together(
    conn: &mut AsyncPgConnection,
    batch: &[(Uuid, Report)],
) -> Result<Vec<Applied>> {
    let plans = plan(batch);
    let current = conn
        .transaction::<_, Error, _>(async |conn| {
            let mut current = vec![false; batch.len()];
            for (i, ((worker_id, report), plan)) in batch.iter().zip(&plans).enumerate() {
                current[i] = match (report, plan) {
                    (_, Plan::FoldedInto(_)) => continue,
                    (Report::Finished(key, finished), Plan::FinishWith { accept, started }) => {
                        let folded = Folded {
                            accepted: accept.is_some(),
                            started: started.and_then(|j| match &batch[j].1 {
                                Report::Started(_, started) => Some(started),
                                _ => None,
                            }),
                        };
                        lifecycle::finish(conn, Some(*worker_id), *key, finished, folded).await?
                    }
                    _ => apply_report(conn, *worker_id, report).await?,
                };
            }
            Ok(current)
        })
        .await?;
    // A folded report fared as the Finished it was folded into.
    Ok(plans
        .iter()
        .enumerate()
        .map(|(i, plan)| {
            let j = match plan {
                Plan::FoldedInto(j) => *j,
                _ => i,
            };
            if current[j] {
                Applied::Current
            } else {
                Applied::Stale
            }
        })
        .collect())
}

/// Each report in a transaction of its own.
async fn apply_one_by_one(conn: &mut AsyncPgConnection, batch: &[(Uuid, Report)]) -> Vec<Applied> {
    let mut results = Vec::with_capacity(batch.len());
    for (worker_id, report) in batch {
        let applied = conn
            .transaction::<_, Error, _>(async |conn| apply_report(conn, *worker_id, report).await)
            .await;
        results.push(match applied {
            Ok(true) => Applied::Current,
            Ok(false) => Applied::Stale,
            Err(e) => Applied::Failed(e),
        });
    }
    results
}

async fn apply_report(
    conn: &mut AsyncPgConnection,
    worker_id: Uuid,
    report: &Report,
) -> Result<bool> {
    match report {
        Report::Accept(key) => lifecycle::accepted(conn, worker_id, *key).await,
        Report::Reject(key) => lifecycle::withdraw(conn, *key, Reason::Rejected).await,
        Report::Started(key, started) => lifecycle::started(conn, worker_id, *key, started).await,
        Report::Finished(key, finished) => {
            lifecycle::finish(conn, Some(worker_id), *key, finished, Folded::default()).await
        }
        Report::Health(key, health) => {
            lifecycle::health_changed(conn, worker_id, *key, health).await
        }
    }
}

/// Logs the outcome and tells the worker to stop an attempt it may no longer run. Never
/// waits on a worker's stream: one that does not read it cannot hold up the others'
/// reports (see `hub`).
fn after(hub: &Hub, worker_id: Uuid, report: &Report, applied: Applied) {
    match (report, applied) {
        (Report::Accept(key), Applied::Stale) => {
            // Withdrawn meanwhile (hand-off deadline, cancel): the worker must not run it.
            // It sent this on its stream here; if that stream is gone, its reconnect
            // reconciles, so nothing goes to the other replicas.
            tracing::warn!(%key, "accept for an attempt that is no longer current; telling the worker to stop it");
            hub.send(worker_id, ToWorker::Cancel(*key));
        }
        (Report::Started(key, _), Applied::Stale) => {
            tracing::warn!(%key, "started for a stale attempt ignored");
        }
        (Report::Health(key, _), Applied::Stale) => {
            tracing::debug!(%key, "health of a stale attempt ignored");
        }
        (Report::Finished(key, finished), Applied::Current) => {
            tracing::info!(%key, outcome = %finished.outcome, exit_code = ?finished.exit_code, "attempt finished");
        }
        (Report::Finished(key, _), Applied::Stale) => {
            tracing::warn!(%key, "finished for a stale attempt ignored");
        }
        (report, Applied::Failed(e)) => {
            tracing::warn!(%worker_id, key = %report.key(), error = %e, "worker report not applied");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::ids::WorkRequestId;

    fn key(id: WorkRequestId, attempt: i32) -> AttemptKey {
        AttemptKey::new(id, attempt)
    }

    fn accept(id: WorkRequestId, attempt: i32) -> Report {
        Report::Accept(key(id, attempt))
    }

    fn started(id: WorkRequestId, attempt: i32) -> Report {
        Report::Started(key(id, attempt), Started::default())
    }

    fn finished(id: WorkRequestId, attempt: i32) -> Report {
        Report::Finished(
            key(id, attempt),
            Finished::without_running(crate::work::state::Outcome::Exited, ""),
        )
    }

    #[test]
    fn accept_and_started_fold_into_a_later_finished_of_the_same_attempt_and_worker() {
        let (w1, w2) = (Uuid::now_v7(), Uuid::now_v7());
        let (a, b) = (WorkRequestId::new(), WorkRequestId::new());
        let batch = vec![
            (w1, accept(a, 1)),
            (w2, accept(b, 1)),
            (w1, started(a, 1)),
            (w2, started(b, 1)),
            (w1, finished(a, 1)),
            // Another worker's Finished for a's attempt folds nothing.
            (w2, finished(a, 1)),
        ];
        assert_eq!(
            plan(&batch),
            vec![
                Plan::FoldedInto(4),
                Plan::Alone,
                Plan::FoldedInto(4),
                Plan::Alone,
                Plan::FinishWith {
                    accept: Some(0),
                    started: Some(2)
                },
                Plan::Alone,
            ]
        );
    }

    #[test]
    fn a_reject_or_another_attempt_stops_folding() {
        let w = Uuid::now_v7();
        let a = WorkRequestId::new();
        let batch = vec![
            (w, accept(a, 1)),
            (w, Report::Reject(key(a, 1))),
            (w, finished(a, 1)),
            (w, started(a, 2)),
            (w, finished(a, 3)),
        ];
        assert_eq!(plan(&batch), vec![Plan::Alone; 5]);
    }

    #[test]
    fn a_finished_with_only_a_started_before_it_folds_the_started() {
        let w = Uuid::now_v7();
        let a = WorkRequestId::new();
        let batch = vec![(w, started(a, 1)), (w, finished(a, 1))];
        assert_eq!(
            plan(&batch),
            vec![
                Plan::FoldedInto(1),
                Plan::FinishWith {
                    accept: None,
                    started: Some(0)
                }
            ]
        );
    }
}
