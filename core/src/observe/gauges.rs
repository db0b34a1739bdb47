//! The database-wide gauges, read at scrape time from one pool.
//!
//! It owns the few read-only queries behind `/metrics`' state gauges (requests by state
//! and workspace, workers by state, slots, topic backlog) and the pool's own status. It
//! writes nothing and takes no locks. Every replica reads the same rows, so the values
//! are the same on each; the exporter says so in its HELP text.

use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;

use crate::error::Result;
use crate::store::db::DbPool;
use crate::work::state::Status;

/// What the database holds now.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    /// `(workspace, state, count)` for every known workspace × every state.
    pub requests: Vec<(String, &'static str, i64)>,
    /// `(state, count)`: connected, idle, busy, draining, disabled.
    pub workers: Vec<(&'static str, i64)>,
    /// `(state, count)`: used, free.
    pub slots: Vec<(&'static str, i64)>,
    /// Messages in subscriptions not yet acknowledged.
    pub topic_backlog: i64,
}

/// The pool's own view: `(state, count)` for idle, in_use, max; and waiters.
#[derive(Clone, Debug, Default)]
pub struct PoolGauges {
    pub connections: Vec<(&'static str, i64)>,
    pub waiting: i64,
}

/// Every request state, in the order they are shown.
pub fn states() -> impl Iterator<Item = &'static str> {
    Status::ALL.iter().map(|s| s.as_str())
}

#[derive(diesel::QueryableByName)]
struct CountRow {
    #[diesel(sql_type = Text)]
    workspace: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct FleetRow {
    #[diesel(sql_type = BigInt)]
    connected: i64,
    #[diesel(sql_type = BigInt)]
    idle: i64,
    #[diesel(sql_type = BigInt)]
    busy: i64,
    #[diesel(sql_type = BigInt)]
    draining: i64,
    #[diesel(sql_type = BigInt)]
    disabled: i64,
    #[diesel(sql_type = BigInt)]
    used: i64,
    #[diesel(sql_type = BigInt)]
    free: i64,
    #[diesel(sql_type = BigInt)]
    backlog: i64,
}

/// Requests by workspace and status; the zero-filling happens in [`read`].
const REQUESTS: &str = "SELECT w.name AS workspace, r.status AS state, count(*)::int8 AS n \
     FROM work_requests r JOIN workspaces w ON w.id = r.workspace_id \
     GROUP BY w.name, r.status";

const WORKSPACES: &str = "SELECT name AS workspace, '' AS state, 0::int8 AS n FROM workspaces";

/// Workers by state (a worker may be in several: connected and busy), their slots, and
/// the topic backlog, in one statement.
const FLEET: &str = "WITH live AS ( \
       SELECT worker_id, count(*) AS n FROM attempts WHERE state <> 'finished' \
       GROUP BY worker_id), \
     w AS (SELECT w.*, coalesce(l.n, 0) AS running FROM workers w \
       LEFT JOIN live l ON l.worker_id = w.id) \
     SELECT \
       count(*) FILTER (WHERE connected_at IS NOT NULL)::int8 AS connected, \
       count(*) FILTER (WHERE connected_at IS NOT NULL AND enabled AND NOT draining \
         AND running = 0)::int8 AS idle, \
       count(*) FILTER (WHERE connected_at IS NOT NULL AND running > 0)::int8 AS busy, \
       count(*) FILTER (WHERE draining)::int8 AS draining, \
       count(*) FILTER (WHERE NOT enabled)::int8 AS disabled, \
       coalesce(sum(least(running, concurrency)) FILTER (WHERE connected_at IS NOT NULL), 0)::int8 \
         AS used, \
       coalesce(sum(greatest(concurrency - running, 0)) FILTER (WHERE connected_at IS NOT NULL \
         AND enabled AND NOT draining), 0)::int8 AS free, \
       (SELECT count(*) FROM subscription_messages)::int8 AS backlog \
     FROM w";

/// Reads the gauges.
pub async fn read(pool: &DbPool) -> Result<Gauges> {
    let mut conn = pool.get().await?;
    let workspaces: Vec<CountRow> = diesel::sql_query(WORKSPACES).load(&mut conn).await?;
    let counts: Vec<CountRow> = diesel::sql_query(REQUESTS).load(&mut conn).await?;
    let fleet: Vec<FleetRow> = diesel::sql_query(FLEET).load(&mut conn).await?;
    let mut names: Vec<String> = workspaces.into_iter().map(|w| w.workspace).collect();
    names.sort();
    names.dedup();
    let mut requests = Vec::new();
    for name in &names {
        for state in states() {
            let n = counts
                .iter()
                .find(|c| &c.workspace == name && c.state == state)
                .map_or(0, |c| c.n);
            requests.push((name.clone(), state, n));
        }
    }
    let fleet = fleet.into_iter().next();
    let get = |f: fn(&FleetRow) -> i64| fleet.as_ref().map_or(0, f);
    Ok(Gauges {
        requests,
        workers: vec![
            ("connected", get(|f| f.connected)),
            ("idle", get(|f| f.idle)),
            ("busy", get(|f| f.busy)),
            ("draining", get(|f| f.draining)),
            ("disabled", get(|f| f.disabled)),
        ],
        slots: vec![("used", get(|f| f.used)), ("free", get(|f| f.free))],
        topic_backlog: get(|f| f.backlog),
    })
}

/// The pool's status now.
pub fn pool(pool: &DbPool) -> PoolGauges {
    let status = pool.status();
    let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    PoolGauges {
        connections: vec![
            ("idle", n(status.available)),
            ("in_use", n(status.size.saturating_sub(status.available))),
            ("max", n(status.max_size)),
        ],
        waiting: n(status.waiting),
    }
}
