//! Group commit of submissions.
//!
//! A submission without dependencies is one `INSERT`; under load, a commit each is most
//! of what submitting costs. Submit calls therefore hand their validated rows to one task
//! per replica, which inserts every row queued while the previous insert was running in
//! a single multi-row `INSERT ... RETURNING`: one commit for the lot. With one submitter
//! at a time a batch holds one row and costs what it did before; nothing waits on a timer.
//!
//! If a batch fails, its rows are inserted one by one, so each call gets its own answer.
//! The task ends when every sender is gone (the API was dropped), not at the shutdown
//! signal: calls still in flight during a graceful shutdown are served.

use std::collections::HashMap;

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::store::db::DbPool;
use crate::store::models::{NewWorkRequest, WorkRequestRow};
use crate::store::schema::work_requests;
use crate::work::ids::WorkRequestId;
use crate::work::limits;
use diesel::prelude::*;
use diesel_async::AsyncConnection;
use uuid::Uuid;

/// Rows waiting to be inserted, across all submit calls of this replica.
const QUEUE: usize = 4096;
/// Most rows in one `INSERT`.
const MAX_BATCH: usize = 256;

type Pending = (NewWorkRequest, oneshot::Sender<Result<WorkRequestRow>>);

/// The sending side, held by the work request API.
#[derive(Clone)]
pub(crate) struct Intake {
    tx: mpsc::Sender<Pending>,
}

impl Intake {
    /// Starts the inserting task over `pool` and returns its sender.
    pub fn start(pool: DbPool) -> Intake {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, rx));
        Intake { tx }
    }

    /// Inserts `row` (with others queued meanwhile) and returns it as stored.
    pub(crate) async fn insert(&self, row: NewWorkRequest) -> Result<WorkRequestRow> {
        let (reply, answer) = oneshot::channel();
        let closed = || Error::Unavailable("the server is shutting down".into());
        self.tx.send((row, reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

async fn run(pool: DbPool, mut rx: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (rows, replies): (Vec<NewWorkRequest>, Vec<_>) = batch.drain(..).unzip();
        let results = match pool.get().await {
            Ok(mut conn) => insert_all(&mut conn, &rows).await,
            Err(e) => rows
                .iter()
                .map(|_| Err(Error::Database(e.to_string())))
                .collect(),
        };
        for (reply, result) in replies.into_iter().zip(results) {
            // The caller may have given up (its call was cancelled); the row stays.
            let _ = reply.send(result);
        }
    }
}

/// One result per row, in order. Rows past their workspace's `max_pending` are refused
/// (see `limits`) and the others inserted. When a workspace of the batch has a limit,
/// that happens in one transaction that holds the limited workspaces' locks until the
/// rows are in; otherwise the batch is one `INSERT` as it always was, after one indexed
/// read of the workspaces (a limit set meanwhile holds from the next batch on).
async fn insert_all(
    conn: &mut AsyncPgConnection,
    rows: &[NewWorkRequest],
) -> Vec<Result<WorkRequestRow>> {
    let workspaces: Vec<Uuid> = rows.iter().map(|row| row.workspace_id).collect();
    let together = match limits::any_limited(conn, &workspaces).await {
        Ok(false) => insert_rows(conn, rows.iter().collect())
            .await
            .map(|stored| (rows.iter().map(|_| Ok(())).collect(), stored)),
        Ok(true) => {
            conn.transaction::<_, Error, _>(async |conn| {
                let wanted: Vec<(Uuid, i64)> = workspaces.iter().map(|id| (*id, 1)).collect();
                let verdicts = limits::admit(conn, &wanted).await?;
                let admitted: Vec<&NewWorkRequest> = rows
                    .iter()
                    .zip(&verdicts)
                    .filter(|(_, verdict)| verdict.is_ok())
                    .map(|(row, _)| row)
                    .collect();
                let stored = insert_rows(conn, admitted).await?;
                Ok((verdicts, stored))
            })
            .await
        }
        Err(e) => Err(e),
    };
    match together {
        Ok((verdicts, stored)) => {
            let mut by_id: HashMap<WorkRequestId, WorkRequestRow> =
                stored.into_iter().map(|row| (row.id, row)).collect();
            rows.iter()
                .zip(verdicts)
                .map(|(row, verdict)| {
                    verdict?;
                    by_id.remove(&row.id).ok_or_else(|| {
                        Error::internal(format!("work request {} was not returned", row.id))
                    })
                })
                .collect()
        }
        Err(e) if rows.len() == 1 => vec![Err(e)],
        Err(_) => {
            let mut results = Vec::with_capacity(rows.len());
            for row in rows {
                results.push(insert_one(conn, row).await);
            }
            results
        }
    }
}

/// Inserts `rows` in one statement and returns them as stored.
async fn insert_rows(
    conn: &mut AsyncPgConnection,
    rows: Vec<&NewWorkRequest>,
) -> Result<Vec<WorkRequestRow>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    Ok(diesel::insert_into(work_requests::table)
        .values(rows)
        .returning(WorkRequestRow::as_returning())
        .get_results(conn)
        .await?)
}

/// One row in a transaction of its own, checked against its workspace's limit.
async fn insert_one(conn: &mut AsyncPgConnection, row: &NewWorkRequest) -> Result<WorkRequestRow> {
    conn.transaction::<_, Error, _>(async |conn| {
        limits::admit_one(conn, row.workspace_id, 1).await?;
        Ok(diesel::insert_into(work_requests::table)
            .values(row)
            .returning(WorkRequestRow::as_returning())
            .get_result(conn)
            .await?)
    })
    .await
}
