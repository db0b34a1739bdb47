//! The replicas' logs interleaved: every container of every (or one) slot, each chunk
//! naming its replica; following goes on through restarts and deploys.
//!
//! A replica's containers are ordinary work requests (`service_runs` says which slot each
//! belongs to), so each is read with the work room's own follower
//! ([`crate::work::logs::follow`]), which brings its fencing of readers (a disabled token
//! ends the stream) and its resume rules. This module only picks the requests and merges
//! their chunks into one channel, tagging each with its replica:
//!
//! - without `follow`: the current container of each slot (and, during a deploy, its
//!   replacement), or with `all` every container each slot ran, read one after the other
//!   by replica and then oldest first, so the output is the same each time it is asked;
//! - with `follow`: the current containers at once, and every container a slot starts
//!   later (a restart, a move, a deploy's replacement), found by looking at `service_runs`
//!   whenever the hub says something changed and at least every [`POLL`], until the
//!   reader goes away or the service is deleted and its last follower has ended.
//!
//! Within one container the order is the production order; between replicas chunks come
//! as they are read, which is what a person reading along wants.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::{self, Standing, WorkspaceRole};
use crate::error::{Error, Result};
use crate::services::store::{self, ServiceRow};
use crate::services::{LogsQuery, ReplicaName, ServiceLogChunk, ServiceManager, ServiceRef};
use crate::store::schema::{service_runs, service_slots, services, work_requests};
use crate::work::ids::WorkRequestId;
use crate::work::logs::{self, Chunk, Follow};

/// How often a follower looks for new containers when nothing woke it.
const POLL: Duration = Duration::from_millis(500);

/// The shortest pause between two looks: the hub says "changed" for every log append.
const MIN_PAUSE: Duration = Duration::from_millis(100);

/// Finds `service` for `caller`, who needs `role` in its workspace to `action` (NOT_FOUND
/// for a workspace or service the caller may not see, PERMISSION_DENIED for too low a
/// role). Deleted services are not found. (The same rule as `manage`'s own lookup.)
pub(crate) async fn find_for(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    service: &ServiceRef,
    role: WorkspaceRole,
    action: &str,
) -> Result<(Standing, ServiceRow)> {
    let workspace = if service.workspace.is_empty() {
        "default"
    } else {
        service.workspace.as_str()
    };
    let standing = roles::in_workspace(conn, caller, workspace).await?;
    standing.require(role, action)?;
    let row = store::find(conn, standing.workspace.id, workspace, &service.name).await?;
    Ok((standing, row))
}

/// One container to read: its request and the replica it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Run {
    replica: ReplicaName,
    request_id: WorkRequestId,
}

/// The replica filter as sent; `None` for all.
fn replica_filter(text: &str) -> Result<Option<ReplicaName>> {
    if text.is_empty() {
        return Ok(None);
    }
    ReplicaName::parse(text)
        .map(Some)
        .map_err(|m| Error::InvalidArgument(format!("replica: {m}")))
}

/// Refuses a replica the service does not have now and never had, naming those it has.
async fn check_replica(
    conn: &mut AsyncPgConnection,
    service: &ServiceRow,
    replica: &ReplicaName,
) -> Result<()> {
    let slots: Vec<(String, i32)> = service_slots::table
        .filter(service_slots::service_id.eq(service.id))
        .select((service_slots::process, service_slots::slot_index))
        .load(conn)
        .await?;
    let ran: Vec<(String, i32)> = service_runs::table
        .filter(service_runs::service_id.eq(service.id))
        .select((service_runs::process, service_runs::slot_index))
        .distinct()
        .load(conn)
        .await?;
    let known: BTreeSet<ReplicaName> = slots
        .into_iter()
        .chain(ran)
        .filter_map(|(process, index)| {
            Some(ReplicaName {
                process,
                index: u32::try_from(index).ok()?,
            })
        })
        .collect();
    if known.contains(replica) {
        return Ok(());
    }
    let has = if known.is_empty() {
        "it has no replicas (scale it up first)".to_owned()
    } else {
        let names: Vec<String> = known.iter().map(ReplicaName::to_string).collect();
        format!("it has {}", names.join(", "))
    };
    Err(Error::NotFound(format!(
        "service {} has no replica {replica}; {has}",
        service.name
    )))
}

/// The containers each slot runs now (and, in a deploy, the replacements).
async fn current_runs(
    conn: &mut AsyncPgConnection,
    service: Uuid,
    replica: Option<&ReplicaName>,
) -> Result<Vec<Run>> {
    let slots: Vec<(String, i32, Option<Uuid>, Option<Uuid>)> = service_slots::table
        .filter(service_slots::service_id.eq(service))
        .select((
            service_slots::process,
            service_slots::slot_index,
            service_slots::request_id,
            service_slots::next_request_id,
        ))
        .load(conn)
        .await?;
    let mut runs: Vec<Run> = slots
        .into_iter()
        .flat_map(|(process, index, current, next)| {
            let name = u32::try_from(index)
                .ok()
                .map(|index| ReplicaName { process, index });
            [current, next].into_iter().flatten().filter_map(move |id| {
                Some(Run {
                    replica: name.clone()?,
                    request_id: WorkRequestId(id),
                })
            })
        })
        .filter(|run| replica.is_none_or(|r| *r == run.replica))
        .collect();
    runs.sort();
    Ok(runs)
}

/// Every container the service's slots ran, by replica and then oldest first.
async fn every_run(
    conn: &mut AsyncPgConnection,
    service: Uuid,
    replica: Option<&ReplicaName>,
) -> Result<Vec<Run>> {
    let rows: Vec<(String, i32, Uuid)> = service_runs::table
        .inner_join(work_requests::table)
        .filter(service_runs::service_id.eq(service))
        .order((
            service_runs::process,
            service_runs::slot_index,
            work_requests::created_at,
            service_runs::request_id,
        ))
        .select((
            service_runs::process,
            service_runs::slot_index,
            service_runs::request_id,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(process, index, id)| {
            Some(Run {
                replica: ReplicaName {
                    process,
                    index: u32::try_from(index).ok()?,
                },
                request_id: WorkRequestId(id),
            })
        })
        .filter(|run| replica.is_none_or(|r| *r == run.replica))
        .collect())
}

/// A work log chunk as a chunk of `run`'s replica.
fn tagged(run: &Run, chunk: Chunk) -> ServiceLogChunk {
    ServiceLogChunk {
        replica: run.replica.clone(),
        request_id: run.request_id,
        attempt: u32::try_from(chunk.attempt).unwrap_or(0),
        stream: u32::try_from(chunk.stream.code()).unwrap_or(0),
        offset: chunk.offset,
        data: chunk.data,
    }
}

/// Passes `run`'s chunks from `from` on to `to`; false once `to`'s reader is gone or an
/// error was passed on (the stream ends there).
async fn forward(
    run: &Run,
    mut from: mpsc::Receiver<Result<Chunk>>,
    to: &mpsc::Sender<Result<ServiceLogChunk>>,
) -> bool {
    while let Some(chunk) = from.recv().await {
        let failed = chunk.is_err();
        if to.send(chunk.map(|c| tagged(run, c))).await.is_err() || failed {
            return false;
        }
    }
    true
}

impl ServiceManager {
    /// `StreamServiceLogs`: chunks as they are read, ending when the stream is done (or,
    /// following, when the receiver is dropped). Viewers may read.
    pub async fn logs(
        &self,
        caller: &Identity,
        query: LogsQuery,
    ) -> Result<mpsc::Receiver<Result<ServiceLogChunk>>> {
        let replica = replica_filter(&query.replica)?;
        let mut conn = self.pool.get().await?;
        let (_, service) = find_for(
            &mut conn,
            caller,
            &query.service,
            WorkspaceRole::Viewer,
            "read services of",
        )
        .await?;
        if let Some(replica) = &replica {
            check_replica(&mut conn, &service, replica).await?;
        }
        let runs = if query.all && !query.follow {
            every_run(&mut conn, service.id, replica.as_ref()).await?
        } else {
            current_runs(&mut conn, service.id, replica.as_ref()).await?
        };
        // Containers that existed before the call and are not current are history:
        // a follower does not pick them up as new.
        let known: HashSet<WorkRequestId> = if query.follow {
            every_run(&mut conn, service.id, replica.as_ref())
                .await?
                .into_iter()
                .map(|run| run.request_id)
                .collect()
        } else {
            HashSet::new()
        };
        drop(conn);
        let (tx, rx) = mpsc::channel(32);
        let manager = self.clone();
        let caller = caller.clone();
        tokio::spawn(async move {
            if query.follow {
                manager
                    .follow_runs(&caller, service.id, replica, runs, known, tx)
                    .await;
            } else {
                manager.read_runs(&caller, runs, tx).await;
            }
        });
        Ok(rx)
    }

    /// Reads the stored logs of `runs` one after the other.
    async fn read_runs(
        &self,
        caller: &Identity,
        runs: Vec<Run>,
        tx: mpsc::Sender<Result<ServiceLogChunk>>,
    ) {
        for run in runs {
            let chunks = self.follower(caller, run.request_id, false);
            if !forward(&run, chunks, &tx).await {
                return;
            }
        }
    }

    /// Follows `runs` at once and every container the slots start later, until the
    /// reader goes away, an error was passed on, or the service is deleted and the last
    /// follower ended.
    async fn follow_runs(
        &self,
        caller: &Identity,
        service: Uuid,
        replica: Option<ReplicaName>,
        runs: Vec<Run>,
        mut known: HashSet<WorkRequestId>,
        tx: mpsc::Sender<Result<ServiceLogChunk>>,
    ) {
        let mut followers: JoinSet<bool> = JoinSet::new();
        let start = |followers: &mut JoinSet<bool>, run: Run| {
            let chunks = self.follower(caller, run.request_id, true);
            let tx = tx.clone();
            followers.spawn(async move { forward(&run, chunks, &tx).await });
        };
        for run in runs {
            known.insert(run.request_id);
            start(&mut followers, run);
        }
        let mut changes = self.hub.subscribe();
        loop {
            let woken = tokio::select! {
                () = tx.closed() => return,
                Some(done) = followers.join_next() => {
                    if !done.unwrap_or(false) {
                        return;
                    }
                    false
                }
                changed = changes.changed() => changed.is_ok(),
                () = tokio::time::sleep(POLL) => true,
            };
            if !woken {
                continue;
            }
            let found = async {
                let mut conn = self.pool.get().await?;
                let deleted: Option<Option<chrono::DateTime<chrono::Utc>>> = services::table
                    .find(service)
                    .select(services::deleted_at)
                    .first(&mut conn)
                    .await
                    .optional()?;
                let runs = every_run(&mut conn, service, replica.as_ref()).await?;
                Ok::<_, Error>((deleted.flatten().is_some() || deleted.is_none(), runs))
            };
            match found.await {
                Ok((gone, runs)) => {
                    for run in runs {
                        if known.insert(run.request_id) {
                            start(&mut followers, run);
                        }
                    }
                    if gone && followers.is_empty() {
                        return;
                    }
                }
                Err(e) => {
                    // The database is away for a moment: say nothing, look again later.
                    tracing::debug!(error = %e, "service log follower could not look for new containers");
                }
            }
            tokio::time::sleep(MIN_PAUSE).await;
        }
    }

    /// The work room's follower of one container's log, every attempt.
    fn follower(
        &self,
        caller: &Identity,
        id: WorkRequestId,
        follow: bool,
    ) -> mpsc::Receiver<Result<Chunk>> {
        logs::follow(
            self.pool.clone(),
            self.hub.clone(),
            caller,
            Follow {
                id,
                attempt: 0,
                follow,
                skip_stdout: 0,
                skip_stderr: 0,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_replica_filter_names_the_field() {
        match replica_filter("web") {
            Err(Error::InvalidArgument(m)) => assert!(m.starts_with("replica: "), "{m}"),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
        assert_eq!(replica_filter("").expect("none"), None);
        assert_eq!(
            replica_filter("web.2").expect("valid"),
            Some(ReplicaName {
                process: "web".into(),
                index: 2
            })
        );
    }
}
