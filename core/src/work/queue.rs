//! What the pending queue looks like from outside: each pending request's place in line
//! and, in words, why it is still waiting.
//!
//! The scheduler (`scheduler::claim`) is the authority on what runs where; this module only
//! explains its decisions after the fact, so it must judge a request by the same rules:
//!
//! - the queue is every pending job (never a workflow parent) ordered by effective
//!   priority (base + adjustment) descending, then creation time, then id;
//! - a worker may take a request when it is connected, enabled, not draining, has a free
//!   slot (concurrency minus its unfinished attempts), offers every required label and is
//!   not reserved by an exclusive label the request does not require
//!   ([`crate::work::scheduler::match_labels`] says what a worker offers);
//! - a request whose retry backoff (`not_before`) has not passed is not offered yet.
//!
//! The reason is a snapshot: by the time a person reads "next in line" the request may
//! already run. Nothing here takes locks or changes state, so it can never hold the
//! scheduler up.
//!
//! The state of the fleet is read once per call ([`Fleet::load`]) and then applied to each
//! request, so listing a long queue costs three queries, not three per request.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::store::models::WorkRequestRow;
use crate::store::schema::{attempts, users, work_requests, workers, workspaces};
use crate::work::ids::WorkRequestId;
use crate::work::scheduler::match_labels;
use crate::work::state::{Kind, Status};

/// The queue's order as SQL, shared by the position and the listing so both agree with
/// the scheduler's claim query.
const QUEUE_ORDER: &str = "wr.priority_base + wr.priority_adjustment DESC, wr.created_at, wr.id";

/// What one connected worker offers, as far as the queue is concerned.
#[derive(Clone, Debug)]
struct Offer {
    /// Labels it matches requirements with (facts overlaid by static labels, `!` stripped).
    matching: serde_json::Map<String, serde_json::Value>,
    /// Its exclusive labels: a request must require every one of them.
    exclusive: serde_json::Map<String, serde_json::Value>,
    /// Enabled and not draining: it takes new work at all.
    accepting: bool,
    /// Slots not taken by an unfinished attempt.
    free_slots: i64,
}

impl Offer {
    /// Whether the worker's labels admit `requirements` (ignoring whether it is free).
    fn admits(&self, requirements: &serde_json::Map<String, serde_json::Value>) -> bool {
        contains(&self.matching, requirements) && contains(requirements, &self.exclusive)
    }
}

/// Whether every key of `inner` is in `outer` with the same value (JSONB `@>` on flat
/// objects).
fn contains(
    outer: &serde_json::Map<String, serde_json::Value>,
    inner: &serde_json::Map<String, serde_json::Value>,
) -> bool {
    inner
        .iter()
        .all(|(key, value)| outer.get(key) == Some(value))
}

/// `k=v, k=v` in key order, for messages.
fn pairs<'a>(items: impl IntoIterator<Item = (&'a String, &'a serde_json::Value)>) -> String {
    let mut items: Vec<String> = items
        .into_iter()
        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
        .collect();
    items.sort();
    items.join(", ")
}

/// The connected workers, read once and used to explain any number of requests.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    connected: Vec<Offer>,
}

impl Fleet {
    /// Reads the connected workers with their labels, state and free slots.
    pub async fn load(conn: &mut AsyncPgConnection) -> Result<Fleet> {
        type WorkerFacts = (Uuid, serde_json::Value, serde_json::Value, i32, bool, bool);
        let rows: Vec<WorkerFacts> = workers::table
            .filter(workers::connected_at.is_not_null())
            .select((
                workers::id,
                workers::labels,
                workers::metadata,
                workers::concurrency,
                workers::enabled,
                workers::draining,
            ))
            .load(conn)
            .await?;
        let live: Vec<(Option<Uuid>, i64)> = attempts::table
            .filter(attempts::state.ne("finished"))
            .filter(attempts::worker_id.is_not_null())
            .group_by(attempts::worker_id)
            .select((attempts::worker_id, diesel::dsl::count_star()))
            .load(conn)
            .await?;
        let live: HashMap<Uuid, i64> = live
            .into_iter()
            .filter_map(|(worker, count)| worker.map(|w| (w, count)))
            .collect();
        let connected = rows
            .into_iter()
            .map(|(id, labels, metadata, concurrency, enabled, draining)| {
                let (matching, exclusive) = match_labels(&labels, &metadata);
                Offer {
                    matching: matching.as_object().cloned().unwrap_or_default(),
                    exclusive: exclusive.as_object().cloned().unwrap_or_default(),
                    accepting: enabled && !draining,
                    free_slots: i64::from(concurrency) - live.get(&id).copied().unwrap_or(0),
                }
            })
            .collect();
        Ok(Fleet { connected })
    }

    /// Why a pending request with `requirements` (and retry backoff until `not_before`)
    /// has not started yet, as of `now`.
    pub(crate) fn reason(
        &self,
        requirements: &serde_json::Value,
        not_before: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> String {
        if let Some(at) = not_before.filter(|at| *at > now) {
            return format!(
                "waiting for its retry backoff until {}",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            );
        }
        if self.connected.is_empty() {
            return "no worker is connected".into();
        }
        let wanted = requirements.as_object().cloned().unwrap_or_default();
        let matching: Vec<&Offer> = self
            .connected
            .iter()
            .filter(|w| w.admits(&wanted))
            .collect();
        if matching.is_empty() {
            return self.why_no_worker_matches(&wanted);
        }
        let accepting: Vec<&Offer> = matching.iter().copied().filter(|w| w.accepting).collect();
        if accepting.is_empty() {
            return "the matching workers are disabled or draining".into();
        }
        if accepting.iter().any(|w| w.free_slots > 0) {
            return "next in line".into();
        }
        let n = accepting.len();
        let busy = if n == 1 {
            "all 1 matching worker is busy".to_owned()
        } else {
            format!("all {n} matching workers are busy")
        };
        match matching.len() - n {
            0 => busy,
            off => format!("{busy} ({off} more are disabled or draining)"),
        }
    }

    /// The reason when no connected worker's labels admit `wanted`: the labels nobody
    /// offers, else the combination nobody offers, else the exclusive labels in the way.
    fn why_no_worker_matches(&self, wanted: &serde_json::Map<String, serde_json::Value>) -> String {
        let missing: Vec<(&String, &serde_json::Value)> = wanted
            .iter()
            .filter(|(key, value)| {
                !self
                    .connected
                    .iter()
                    .any(|w| w.matching.get(*key) == Some(*value))
            })
            .collect();
        if !missing.is_empty() {
            return format!("no connected worker has labels {}", pairs(missing));
        }
        let having_all: Vec<&Offer> = self
            .connected
            .iter()
            .filter(|w| contains(&w.matching, wanted))
            .collect();
        if having_all.is_empty() {
            return format!(
                "no connected worker has labels {} together",
                pairs(wanted.iter())
            );
        }
        let reserved = pairs(
            having_all
                .iter()
                .flat_map(|w| w.exclusive.iter())
                .filter(|(key, _)| !wanted.contains_key(*key))
                .collect::<std::collections::BTreeMap<_, _>>(),
        );
        format!("the workers that could run it are reserved for requests that require {reserved}")
    }
}

/// Why the request `id` waits: for a pending request, what the fleet lacks (see
/// [`Fleet::reason`]); for a blocked one, its dependencies or the approval it needs (see
/// [`crate::work::deps::blocked_reason`]). Empty for every other status.
pub async fn pending_reason(conn: &mut AsyncPgConnection, id: WorkRequestId) -> Result<String> {
    let row: Option<(Status, Kind, serde_json::Value, Option<DateTime<Utc>>)> =
        work_requests::table
            .find(id)
            .select((
                work_requests::status,
                work_requests::kind,
                work_requests::requirements,
                work_requests::not_before,
            ))
            .first(conn)
            .await
            .optional()?;
    let Some((status, kind, requirements, not_before)) = row else {
        return Err(Error::NotFound(format!("work request {id} not found")));
    };
    match status {
        Status::Pending => {}
        Status::Blocked => return crate::work::deps::blocked_reason(conn, id).await,
        _ => return Ok(String::new()),
    }
    if kind != Kind::Job {
        return Ok("a workflow waits for its steps, which are queued on their own".into());
    }
    let fleet = Fleet::load(conn).await?;
    Ok(fleet.reason(&requirements, not_before, Utc::now()))
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// The place of pending job `id` in the queue: 1 for the next to be offered. 0 when it is
/// not a pending job.
pub async fn queue_position(conn: &mut AsyncPgConnection, id: WorkRequestId) -> Result<u32> {
    let ahead: Option<Count> = diesel::sql_query(
        "SELECT count(wr.id) AS count FROM work_requests me \
         LEFT JOIN work_requests wr ON wr.status = 'pending' AND wr.kind = 'job' AND wr.id <> me.id \
           AND (wr.priority_base + wr.priority_adjustment > me.priority_base + me.priority_adjustment \
             OR (wr.priority_base + wr.priority_adjustment = me.priority_base + me.priority_adjustment \
                 AND (wr.created_at, wr.id) < (me.created_at, me.id))) \
         WHERE me.id = $1 AND me.status = 'pending' AND me.kind = 'job' \
         GROUP BY me.id",
    )
    .bind::<SqlUuid, _>(id)
    .get_result(conn)
    .await
    .optional()?;
    Ok(ahead.map_or(0, |c| {
        u32::try_from(c.count.saturating_add(1)).unwrap_or(u32::MAX)
    }))
}

/// One pending request in the queue, with the names shown alongside it.
#[derive(Clone, Debug)]
pub struct QueueItem {
    /// The request.
    pub row: WorkRequestRow,
    /// Its workspace's name.
    pub workspace: String,
    /// Its submitter's name.
    pub created_by: String,
    /// 1 for the next to be offered (counted over every workspace).
    pub position: u32,
    /// Why it waits.
    pub reason: String,
}

#[derive(QueryableByName)]
struct Placed {
    #[diesel(sql_type = SqlUuid)]
    id: WorkRequestId,
    #[diesel(sql_type = BigInt)]
    position: i64,
}

/// The first `limit` pending jobs in queue order, with their positions and reasons. With
/// `workspaces`, only those workspaces' requests (the ones the caller may see, or the one
/// asked for), still with their places in the whole queue (the scheduler serves all
/// workspaces from one queue); `None` lists every workspace.
pub async fn list_queue(
    conn: &mut AsyncPgConnection,
    workspaces: Option<&[Uuid]>,
    limit: i64,
) -> Result<Vec<QueueItem>> {
    let placed: Vec<Placed> = diesel::sql_query(format!(
        "SELECT id, position FROM ( \
           SELECT wr.id, wr.workspace_id, row_number() OVER (ORDER BY {QUEUE_ORDER}) AS position \
           FROM work_requests wr WHERE wr.status = 'pending' AND wr.kind = 'job') q \
         WHERE $1::uuid[] IS NULL OR q.workspace_id = ANY($1) \
         ORDER BY position LIMIT $2"
    ))
    .bind::<Nullable<Array<SqlUuid>>, _>(workspaces)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    let ids: Vec<WorkRequestId> = placed.iter().map(|p| p.id).collect();
    type Loaded = (WorkRequestRow, String, String, Option<DateTime<Utc>>);
    let rows: Vec<Loaded> = work_requests::table
        .inner_join(workspaces::table)
        .inner_join(users::table)
        .filter(work_requests::id.eq_any(&ids))
        .select((
            WorkRequestRow::as_select(),
            workspaces::name,
            users::name,
            work_requests::not_before,
        ))
        .load(conn)
        .await?;
    let mut rows: HashMap<WorkRequestId, Loaded> = rows.into_iter().map(|r| (r.0.id, r)).collect();
    let fleet = Fleet::load(conn).await?;
    let now = Utc::now();
    let items = placed
        .into_iter()
        // A request claimed between the two reads is no longer in the queue: skip it.
        .filter_map(|p| {
            let (row, workspace, created_by, not_before) = rows.remove(&p.id)?;
            let reason = fleet.reason(&row.requirements, not_before, now);
            Some(QueueItem {
                row,
                workspace,
                created_by,
                position: u32::try_from(p.position).unwrap_or(u32::MAX),
                reason,
            })
        })
        .collect();
    Ok(items)
}

/// The limit on an effective priority (base + adjustment) that admins may set.
pub const MAX_EFFECTIVE_PRIORITY: i32 = 10_000;

/// The adjustment that results from `set` (replace) or `delta` (add), checked so that the
/// effective priority stays within ±[`MAX_EFFECTIVE_PRIORITY`].
pub fn new_adjustment(base: i32, current: i32, delta: i32, set: Option<i32>) -> Result<i32> {
    let adjustment = match set {
        Some(value) => i64::from(value),
        None => i64::from(current) + i64::from(delta),
    };
    let effective = i64::from(base) + adjustment;
    let limit = i64::from(MAX_EFFECTIVE_PRIORITY);
    if !(-limit..=limit).contains(&effective) {
        return Err(Error::InvalidArgument(format!(
            "the priority would become {effective} (base {base} + adjustment {adjustment}); \
             the effective priority must stay within -{limit} to {limit}"
        )));
    }
    i32::try_from(adjustment).map_err(|_| Error::InvalidArgument("adjustment: out of range".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn worker(labels: serde_json::Value, accepting: bool, free_slots: i64) -> Offer {
        let (matching, exclusive) = match_labels(&labels, &json!({"arch": "amd64"}));
        Offer {
            matching: matching.as_object().cloned().unwrap_or_default(),
            exclusive: exclusive.as_object().cloned().unwrap_or_default(),
            accepting,
            free_slots,
        }
    }

    fn reason(fleet: &[Offer], requirements: serde_json::Value) -> String {
        Fleet {
            connected: fleet.to_vec(),
        }
        .reason(&requirements, None, Utc::now())
    }

    #[test]
    fn an_empty_fleet_says_no_worker_is_connected() {
        assert_eq!(reason(&[], json!({})), "no worker is connected");
    }

    #[test]
    fn missing_labels_are_named() {
        let fleet = [worker(json!({"pool": "a"}), true, 1)];
        assert_eq!(
            reason(&fleet, json!({"pool": "a", "nope": "1", "arch": "arm64"})),
            "no connected worker has labels arch=arm64, nope=1"
        );
    }

    #[test]
    fn labels_spread_over_workers_are_not_enough() {
        let fleet = [
            worker(json!({"pool": "a"}), true, 1),
            worker(json!({"gpu": "yes"}), true, 1),
        ];
        assert_eq!(
            reason(&fleet, json!({"pool": "a", "gpu": "yes"})),
            "no connected worker has labels gpu=yes, pool=a together"
        );
    }

    #[test]
    fn exclusive_labels_keep_other_requests_off() {
        let fleet = [worker(json!({"gpu": "yes!"}), true, 1)];
        assert_eq!(
            reason(&fleet, json!({})),
            "the workers that could run it are reserved for requests that require gpu=yes"
        );
        assert_eq!(reason(&fleet, json!({"gpu": "yes"})), "next in line");
    }

    #[test]
    fn busy_disabled_and_free_workers() {
        let busy = worker(json!({}), true, 0);
        let off = worker(json!({}), false, 1);
        let free = worker(json!({}), true, 1);
        assert_eq!(
            reason(std::slice::from_ref(&busy), json!({})),
            "all 1 matching worker is busy"
        );
        assert_eq!(
            reason(&[busy.clone(), busy.clone(), off.clone()], json!({})),
            "all 2 matching workers are busy (1 more are disabled or draining)"
        );
        assert_eq!(
            reason(std::slice::from_ref(&off), json!({})),
            "the matching workers are disabled or draining"
        );
        assert_eq!(reason(&[busy, off, free], json!({})), "next in line");
    }

    #[test]
    fn retry_backoff_comes_first() {
        let fleet = Fleet {
            connected: vec![worker(json!({}), true, 1)],
        };
        let now = Utc::now();
        let later = now + chrono::TimeDelta::seconds(30);
        assert!(
            fleet
                .reason(&json!({}), Some(later), now)
                .starts_with("waiting for its retry backoff until ")
        );
        assert_eq!(
            fleet.reason(&json!({}), Some(now - chrono::TimeDelta::seconds(1)), now),
            "next in line"
        );
    }

    #[test]
    fn adjustments_keep_the_effective_priority_in_range() {
        assert_eq!(new_adjustment(10, 5, 3, None).ok(), Some(8));
        assert_eq!(new_adjustment(10, 5, 3, Some(-7)).ok(), Some(-7));
        assert_eq!(new_adjustment(1000, 0, 9000, None).ok(), Some(9000));
        assert!(new_adjustment(1000, 0, 9001, None).is_err());
        assert!(new_adjustment(-1000, 0, 0, Some(-9001)).is_err());
        assert!(new_adjustment(0, i32::MAX, i32::MAX, None).is_err());
    }
}
