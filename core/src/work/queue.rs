//! What the pending queue looks like from outside: each pending request's place in line
//! and, in words, why it is still waiting.
//!
//! The scheduler (`scheduler::claim`) is the authority on what runs where; this module only
//! explains its decisions after the fact, so it must judge a request by the same rules:
//!
//! - the queue is every pending job (never a workflow parent); within a workspace it is
//!   ordered by effective priority (base + adjustment) descending, then creation time,
//!   then id; the position shown is that order over all workspaces, because across
//!   workspaces fair share decides, and the share changes with every start and finish;
//! - a worker may take a request when it is connected, enabled, not draining, has a free
//!   slot (concurrency minus its unfinished attempts), offers every required label, is
//!   not reserved by an exclusive label the request does not require
//!   ([`crate::work::scheduler::match_labels`] says what a worker offers), and serves the
//!   request's workspace (a worker restricted to workspaces serves only those);
//! - a workspace that runs its `max_running` jobs gets nothing more until one ends;
//! - when workers are busy, the next free slot goes to the workspace with the least
//!   running jobs for its weight (`running / weight`), so a request waits for its share
//!   while another workspace with pending work runs less for its weight;
//! - a request whose retry backoff (`not_before`) has not passed is not offered yet.
//!
//! The reason is a snapshot: by the time a person reads "next in line" the request may
//! already run. The share is judged by workspace, not by whether the other workspace's
//! pending requests match the same workers' labels. Nothing here takes locks or changes
//! state, so it can never hold the scheduler up.
//!
//! The state of the fleet is read once per call ([`Fleet::load`]: workers, their
//! unfinished attempts, and the workspaces with their running counts) and then applied
//! to each request, so listing a long queue costs a fixed number of queries, not a few
//! per request.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::store::models::WorkRequestRow;
use crate::store::schema::{attempts, request_placement, users, work_requests, workers, workspaces};
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
    /// The only workspaces it serves; `None` serves every workspace.
    serves: Option<Vec<Uuid>>,
}

impl Offer {
    /// Whether the worker takes requests of `workspace` at all.
    fn serves(&self, workspace: Uuid) -> bool {
        self.serves
            .as_ref()
            .is_none_or(|ids| ids.contains(&workspace))
    }

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

/// A workspace as fair share and its limits see it.
#[derive(Clone, Debug)]
struct Share {
    name: String,
    weight: i32,
    max_running: Option<i32>,
    /// Its running jobs.
    running: i64,
    /// Whether it has pending jobs.
    waiting: bool,
}

impl Share {
    /// Running jobs for its weight: the least of these goes first.
    fn per_weight(&self) -> f64 {
        self.running as f64 / f64::from(self.weight.max(1))
    }
}

/// The connected workers and the workspaces, read once and used to explain any number
/// of requests.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    connected: Vec<Offer>,
    workspaces: HashMap<Uuid, Share>,
}

#[derive(QueryableByName)]
struct ShareRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    weight: i32,
    #[diesel(sql_type = Nullable<diesel::sql_types::Integer>)]
    max_running: Option<i32>,
    #[diesel(sql_type = BigInt)]
    running: i64,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    waiting: bool,
}

impl Fleet {
    /// Reads the connected workers with their labels, state and free slots.
    pub async fn load(conn: &mut AsyncPgConnection) -> Result<Fleet> {
        type WorkerFacts = (
            Uuid,
            serde_json::Value,
            serde_json::Value,
            i32,
            bool,
            bool,
            Option<Vec<Uuid>>,
        );
        let rows: Vec<WorkerFacts> = workers::table
            .filter(workers::connected_at.is_not_null())
            .select((
                workers::id,
                workers::labels,
                workers::metadata,
                workers::concurrency,
                workers::enabled,
                workers::draining,
                workers::workspaces,
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
            .map(
                |(id, labels, metadata, concurrency, enabled, draining, serves)| {
                    let (matching, exclusive) = match_labels(&labels, &metadata);
                    Offer {
                        matching: matching.as_object().cloned().unwrap_or_default(),
                        exclusive: exclusive.as_object().cloned().unwrap_or_default(),
                        accepting: enabled && !draining,
                        free_slots: i64::from(concurrency) - live.get(&id).copied().unwrap_or(0),
                        serves,
                    }
                },
            )
            .collect();
        // Running counts through `work_requests_running_by_workspace` (as many rows as
        // the fleet runs); whether anything waits, one index probe per workspace.
        let shares: Vec<ShareRow> = diesel::sql_query(
            "SELECT w.id, w.name, w.weight, w.max_running, COALESCE(r.running, 0) AS running, \
               EXISTS (SELECT 1 FROM work_requests p WHERE p.workspace_id = w.id \
                 AND p.status = 'pending' AND p.kind = 'job') AS waiting \
             FROM workspaces w LEFT JOIN ( \
               SELECT workspace_id, count(*) AS running FROM work_requests \
               WHERE status = 'running' AND kind = 'job' GROUP BY workspace_id) r \
               ON r.workspace_id = w.id",
        )
        .load(conn)
        .await?;
        let workspaces = shares
            .into_iter()
            .map(|row| {
                let share = Share {
                    name: row.name,
                    weight: row.weight,
                    max_running: row.max_running,
                    running: row.running,
                    waiting: row.waiting,
                };
                (row.id, share)
            })
            .collect();
        Ok(Fleet {
            connected,
            workspaces,
        })
    }

    /// The name of `workspace` for messages (its id if it is unknown here).
    fn name(&self, workspace: Uuid) -> String {
        self.workspaces
            .get(&workspace)
            .map_or_else(|| workspace.to_string(), |w| w.name.clone())
    }

    /// Why a pending request of `workspace` with `requirements` (and retry backoff until
    /// `not_before`) has not started yet, as of `now`.
    pub(crate) fn reason(
        &self,
        workspace: Uuid,
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
        let by_labels: Vec<&Offer> = self
            .connected
            .iter()
            .filter(|w| w.admits(&wanted))
            .collect();
        if by_labels.is_empty() {
            return self.why_no_worker_matches(&wanted);
        }
        let matching: Vec<&Offer> = by_labels
            .iter()
            .copied()
            .filter(|w| w.serves(workspace))
            .collect();
        if matching.is_empty() {
            return self.why_restricted(workspace, &by_labels);
        }
        if let Some(own) = self.workspaces.get(&workspace)
            && let Some(limit) = own.max_running
            && own.running >= i64::from(limit)
        {
            return format!(
                "workspace {} runs {} requests, its max_running limit",
                own.name, own.running
            );
        }
        let accepting: Vec<&Offer> = matching.iter().copied().filter(|w| w.accepting).collect();
        if accepting.is_empty() {
            return "the matching workers are disabled or draining".into();
        }
        if accepting.iter().any(|w| w.free_slots > 0) {
            return "next in line".into();
        }
        if let Some(share) = self.why_others_go_first(workspace, &accepting) {
            return share;
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

    /// The reason when the workers whose labels admit a request of `workspace` all serve
    /// only other workspaces, naming those.
    fn why_restricted(&self, workspace: Uuid, by_labels: &[&Offer]) -> String {
        let mut others: Vec<String> = by_labels
            .iter()
            .flat_map(|w| w.serves.iter().flatten())
            .map(|id| self.name(*id))
            .collect();
        others.sort();
        others.dedup();
        let own = self.name(workspace);
        if others.is_empty() {
            return format!("the workers that match are not serving workspace {own}");
        }
        format!(
            "the workers that match are restricted to other workspaces ({}), not {own}",
            others.join(", ")
        )
    }

    /// With every matching worker busy: the workspace with pending work, served by one of
    /// `accepting`, that runs less for its weight than `workspace` does and so gets the
    /// next free slot first.
    fn why_others_go_first(&self, workspace: Uuid, accepting: &[&Offer]) -> Option<String> {
        let own = self.workspaces.get(&workspace)?;
        let (_, first) = self
            .workspaces
            .iter()
            .filter(|(id, other)| {
                **id != workspace
                    && other.waiting
                    && other
                        .max_running
                        .is_none_or(|m| other.running < i64::from(m))
                    && accepting.iter().any(|w| w.serves(**id))
            })
            .min_by(|(a_id, a), (b_id, b)| {
                a.per_weight()
                    .total_cmp(&b.per_weight())
                    .then_with(|| a.name.cmp(&b.name))
                    .then_with(|| a_id.cmp(b_id))
            })?;
        if first.per_weight() >= own.per_weight() {
            return None;
        }
        Some(format!(
            "workspace {} has {} running (weight {}) while {} with {} running (weight {}) goes first",
            own.name, own.running, own.weight, first.name, first.running, first.weight
        ))
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
    type Waiting = (Status, Kind, Uuid, serde_json::Value, Option<DateTime<Utc>>);
    let row: Option<Waiting> = work_requests::table
        .find(id)
        .select((
            work_requests::status,
            work_requests::kind,
            work_requests::workspace_id,
            work_requests::requirements,
            work_requests::not_before,
        ))
        .first(conn)
        .await
        .optional()?;
    let Some((status, kind, workspace, requirements, not_before)) = row else {
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
    let now = Utc::now();
    let placed = placements(conn, &[id]).await?;
    Ok(placed_reason(&placed, id, not_before, now)
        .unwrap_or_else(|| fleet.reason(workspace, &requirements, not_before, now)))
}

/// Why `ids` wait on their placement (a service replica pinned to a worker for a local
/// restart, or kept off one), by request.
async fn placements(
    conn: &mut AsyncPgConnection,
    ids: &[WorkRequestId],
) -> Result<HashMap<WorkRequestId, String>> {
    Ok(request_placement::table
        .filter(request_placement::request_id.eq_any(ids))
        .select((request_placement::request_id, request_placement::why))
        .load::<(WorkRequestId, String)>(conn)
        .await?
        .into_iter()
        .collect())
}

/// The placement's words, once the backoff (which is said first) has passed.
fn placed_reason(
    placed: &HashMap<WorkRequestId, String>,
    id: WorkRequestId,
    not_before: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<String> {
    if not_before.is_some_and(|at| at > now) {
        return None;
    }
    placed.get(&id).filter(|why| !why.is_empty()).cloned()
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
    let waiting_on = placements(conn, &ids).await?;
    let items = placed
        .into_iter()
        // A request claimed between the two reads is no longer in the queue: skip it.
        .filter_map(|p| {
            let (row, workspace, created_by, not_before) = rows.remove(&p.id)?;
            let reason = placed_reason(&waiting_on, row.id, not_before, now).unwrap_or_else(
                || fleet.reason(row.workspace_id, &row.requirements, not_before, now),
            );
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
            serves: None,
        }
    }

    /// The workspace the requests of these tests are in.
    const OWN: Uuid = Uuid::from_u128(1);
    const OTHER: Uuid = Uuid::from_u128(2);

    fn reason(fleet: &[Offer], requirements: serde_json::Value) -> String {
        Fleet {
            connected: fleet.to_vec(),
            workspaces: HashMap::new(),
        }
        .reason(OWN, &requirements, None, Utc::now())
    }

    fn share(name: &str, weight: i32, running: i64, waiting: bool) -> Share {
        Share {
            name: name.into(),
            weight,
            max_running: None,
            running,
            waiting,
        }
    }

    fn with_workspaces(fleet: &[Offer], own: Share, other: Share) -> String {
        Fleet {
            connected: fleet.to_vec(),
            workspaces: HashMap::from([(OWN, own), (OTHER, other)]),
        }
        .reason(OWN, &json!({}), None, Utc::now())
    }

    #[test]
    fn a_workspace_at_its_max_running_says_so() {
        let free = worker(json!({}), true, 1);
        let limited = Share {
            max_running: Some(4),
            ..share("team-a", 1, 4, true)
        };
        assert_eq!(
            with_workspaces(
                std::slice::from_ref(&free),
                limited.clone(),
                share("team-b", 1, 0, false)
            ),
            "workspace team-a runs 4 requests, its max_running limit"
        );
        let below = Share {
            running: 3,
            ..limited
        };
        assert_eq!(
            with_workspaces(&[free], below, share("team-b", 1, 0, false)),
            "next in line"
        );
    }

    #[test]
    fn a_busy_fleet_names_the_workspace_whose_share_goes_first() {
        let busy = worker(json!({}), true, 0);
        assert_eq!(
            with_workspaces(
                std::slice::from_ref(&busy),
                share("team-a", 1, 10, true),
                share("team-b", 1, 1, true)
            ),
            "workspace team-a has 10 running (weight 1) while team-b with 1 running (weight 1) goes first"
        );
        // Weight 10 makes 10 running a share of 1, no more than team-b's.
        assert_eq!(
            with_workspaces(
                std::slice::from_ref(&busy),
                share("team-a", 10, 10, true),
                share("team-b", 1, 1, true)
            ),
            "all 1 matching worker is busy"
        );
        // A workspace with nothing pending takes no slot from anyone.
        assert_eq!(
            with_workspaces(
                &[busy],
                share("team-a", 1, 10, true),
                share("team-b", 1, 1, false)
            ),
            "all 1 matching worker is busy"
        );
    }

    #[test]
    fn workers_restricted_to_other_workspaces_are_named() {
        let mut theirs = worker(json!({}), true, 1);
        theirs.serves = Some(vec![OTHER]);
        assert_eq!(
            with_workspaces(
                std::slice::from_ref(&theirs),
                share("team-a", 1, 0, true),
                share("team-b", 1, 0, true)
            ),
            "the workers that match are restricted to other workspaces (team-b), not team-a"
        );
        let mut ours = worker(json!({}), true, 1);
        ours.serves = Some(vec![OTHER, OWN]);
        assert_eq!(
            with_workspaces(
                &[theirs, ours],
                share("team-a", 1, 0, true),
                share("team-b", 1, 0, true)
            ),
            "next in line"
        );
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
            workspaces: HashMap::new(),
        };
        let now = Utc::now();
        let later = now + chrono::TimeDelta::seconds(30);
        assert!(
            fleet
                .reason(OWN, &json!({}), Some(later), now)
                .starts_with("waiting for its retry backoff until ")
        );
        assert_eq!(
            fleet.reason(
                OWN,
                &json!({}),
                Some(now - chrono::TimeDelta::seconds(1)),
                now
            ),
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
