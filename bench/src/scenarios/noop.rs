//! `noop`: how fast the server moves work requests through PostgreSQL, with execution
//! taken out of the picture.
//!
//! Berth keeps all of its state in PostgreSQL, so every work request costs some number of
//! transactions: submit, assign, accept, start, finish. This scenario measures what that
//! costs end to end and puts it next to what the same PostgreSQL can do at best:
//!
//! 1. **Peak throughput.** Simulated workers (see [`crate::sim`]: the real protocol over
//!    real gRPC, finishing each attempt at once) and M concurrent submitters that submit
//!    in a closed loop for a fixed time. Throughput is the number of work requests
//!    completed divided by the time from the first submission until the last one
//!    completed, so a queue that grows faster than it drains shows up as a long tail.
//!    Commits per work request come from `pg_stat_database.xact_commit` of the `berth`
//!    database before and after; PostgreSQL publishes those counters lazily (an idle
//!    backend may hold its counts for up to ten seconds), so the second reading waits
//!    that long, and the bench's own queries are subtracted.
//! 2. **Dispatch latency at half of peak.** The same submitters, now paced to half the
//!    measured throughput: latency is the time from a submission returning (so it is
//!    committed) until the worker received the `Assign`. Latency at saturation only
//!    measures the queue; at half load it measures the dispatch path, which is what the
//!    goal is about. The peak phase's latencies are reported too, for contrast.
//! 3. **pgbench.** On the same cluster, in a separate database, `pgbench` runs a one-row
//!    `UPDATE` with the same number of clients for the same time: the throughput of the
//!    smallest useful write transaction on this machine. Work requests per second ÷
//!    pgbench TPS says how close Berth comes to that bound.
//!
//! 4. **Drain.** With no worker connected, N no-op requests are queued first (20,000;
//!    2,000 with `--quick`) by many concurrent submitters; then a fresh fleet of the same
//!    size connects and empties the queue. Requests finished per second, from the first
//!    worker's connect to the last request completed, measure the dispatch path alone:
//!    no submission competes with it, and the queue is never empty. It is the figure to
//!    put next to a peer queue's drain (`peer`).
//!
//! With `--workspaces N` the submitters spread their requests round-robin over N
//! workspaces the scenario creates (`bench-1` ... `bench-N`, the bench user a contributor
//! in each), so every claim shares slots between workspaces (fair share, see
//! `scheduler::claim`). Given several counts (`--workspaces 1,4`, and `all`), it runs once
//! per count, each on a fresh stack, and prints each run's figures and their ratio to the
//! first run's: fair share with many workspaces should cost little next to one.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_common::proto::{ContainerSpec, Role, SubmitWorkRequestRequest};
use serde_json::json;

use crate::report::{Report, ms};
use crate::scenarios::Options;
use crate::sim::{SimFleet, connect_fleet, create_worker_tokens, start_fleet};
use crate::stack::{
    Stack, StackOptions, percentile, reset_statement_profile, sql_connect, statement_profile,
};

/// PostgreSQL publishes an idle backend's statistics at most this much later.
const STATS_FLUSH_DELAY: Duration = Duration::from_millis(11_000);
/// Statements shown in the profile of the peak phase.
const PROFILE_LINES: i64 = 12;
/// Rows in the pgbench table.
const PGBENCH_ROWS: i32 = 100_000;

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    pub(crate) workers: usize,
    pub(crate) concurrency: u32,
    pub(crate) submitters: usize,
    pub(crate) duration: Duration,
    /// Requests queued before the drain phase's workers connect.
    pub(crate) drain_requests: usize,
}

impl Sizes {
    pub(crate) fn for_options(opts: &Options) -> Sizes {
        if opts.quick {
            Sizes {
                workers: 2,
                concurrency: 4,
                submitters: 4,
                duration: Duration::from_secs(5),
                drain_requests: 2_000,
            }
        } else {
            Sizes {
                workers: 8,
                concurrency: 8,
                submitters: 16,
                duration: Duration::from_secs(20),
                drain_requests: 20_000,
            }
        }
    }
}

/// Runs the scenario once per workspace count of `opts.workspaces`.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let sizes = Sizes::for_options(opts);
    let mut runs: Vec<(usize, Report)> = Vec::new();
    for &workspaces in &opts.workspaces {
        if opts.workspaces.len() > 1 {
            eprintln!("  noop with {workspaces} workspace(s)");
        }
        let stack = Stack::start(StackOptions::default()).await?;
        let result = measure(&stack, sizes, workspaces.max(1)).await;
        stack.stop().await?;
        runs.push((workspaces, result?));
    }
    if runs.len() == 1
        && let Some((_, report)) = runs.pop()
    {
        return Ok(report);
    }
    Ok(compare(runs))
}

/// One report of several runs: each run's rows under its workspace count, then the ratio
/// of each later run's throughput and dispatch latencies to the first run's.
fn compare(runs: Vec<(usize, Report)>) -> Report {
    let figure = |report: &Report, path: &[&str]| -> f64 {
        path.iter()
            .try_fold(&report.json, |v, key| v.get(*key))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    let compared: [(&str, &[&str]); 5] = [
        ("peak throughput", &["peak", "throughput_per_second"]),
        ("drain throughput", &["drain", "throughput_per_second"]),
        (
            "half load: dispatch latency p50",
            &["half_load", "dispatch_latency_ms", "p50"],
        ),
        (
            "half load: dispatch latency p99",
            &["half_load", "dispatch_latency_ms", "p99"],
        ),
        (
            "peak: dispatch latency p50",
            &["peak", "dispatch_latency_ms", "p50"],
        ),
    ];
    let mut rows = Vec::new();
    let mut json_runs = Vec::new();
    let mut json_ratios = Vec::new();
    let base = runs.first().map(|(n, r)| (*n, r.clone()));
    for (workspaces, report) in &runs {
        for (label, value) in &report.rows {
            rows.push((format!("[{workspaces} ws] {label}"), value.clone()));
        }
        json_runs.push(json!({"workspaces": workspaces, "figures": report.json}));
    }
    if let Some((base_n, base)) = base {
        for (workspaces, report) in runs.iter().skip(1) {
            let mut ratios = serde_json::Map::new();
            for (label, path) in compared {
                let ratio = figure(report, path) / figure(&base, path);
                rows.push((
                    format!("{workspaces} ws / {base_n} ws: {label}"),
                    format!("{ratio:.3}"),
                ));
                ratios.insert(label.to_owned(), json!(ratio));
            }
            json_ratios.push(json!({"workspaces": workspaces, "over": base_n, "ratios": ratios}));
        }
    }
    Report {
        scenario: "noop".to_owned(),
        rows,
        json: json!({"runs": json_runs, "ratios": json_ratios}),
    }
}

/// Latency figures of one phase, in milliseconds.
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) missing: usize,
}

pub(crate) fn latencies(fleet: &SimFleet, submitted: &[(String, Instant)]) -> Latency {
    let mut values = Vec::with_capacity(submitted.len());
    let mut missing = 0;
    for (id, at) in submitted {
        match fleet.assigned_at(id) {
            // The Assign can arrive before the submit call has returned to us; that
            // counts as zero, not as negative.
            Some(assigned) => {
                values.push(assigned.saturating_duration_since(*at).as_secs_f64() * 1e3)
            }
            None => missing += 1,
        }
    }
    values.sort_by(f64::total_cmp);
    Latency {
        p50: percentile(&values, 50.0),
        p99: percentile(&values, 99.0),
        max: values.last().copied().unwrap_or(f64::NAN),
        missing,
    }
}

/// One run of every phase on `stack`, requests spread over `workspaces` workspaces.
pub(crate) async fn measure(
    stack: &Stack,
    sizes: Sizes,
    workspaces: usize,
) -> anyhow::Result<Report> {
    let fleet = start_fleet(stack, "sim", sizes.workers, sizes.concurrency).await?;
    fleet.wait_welcomed(Duration::from_secs(60)).await?;
    let user_token = stack.create_token(Role::User, "bench").await?;
    let workspace_names = create_workspaces(stack, workspaces).await?;
    let sql = stack.sql().await?;
    // Every statement the bench sends on `sql` is a transaction of its own in `berth`;
    // they are counted so they can be subtracted from the server's commits.
    let mut own_queries: u64 = 0;
    let commits_before = xact_commit(&sql).await?;
    own_queries += 1;
    // One implicit transaction.
    reset_statement_profile(&sql).await?;
    own_queries += 1;

    // Phase 1: peak throughput.
    eprintln!(
        "  peak: {} simulated workers x {} slots, {} submitters for {:?}",
        sizes.workers, sizes.concurrency, sizes.submitters, sizes.duration
    );
    let start = Instant::now();
    let peak = submit_phase(
        stack,
        &user_token,
        &workspace_names,
        sizes.submitters,
        sizes.duration,
        None,
    )
    .await?;
    let completed_at = wait_completed(&sql, peak.len() as i64, &mut own_queries, &fleet).await?;
    let peak_elapsed = completed_at.duration_since(start).as_secs_f64();
    let throughput = peak.len() as f64 / peak_elapsed;
    let peak_latency = latencies(&fleet, &peak);
    let (statements, statement_calls) = statement_profile(&sql, PROFILE_LINES).await?;
    own_queries += 1;
    own_queries += 1;
    let failed: i64 = sql
        .query_one(
            "SELECT count(*) FROM work_requests WHERE result IS DISTINCT FROM 'success'",
            &[],
        )
        .await
        .context("cannot count failed work requests")?
        .get(0);

    // pgbench runs while the server is idle, in its own database, so its commits do not
    // count against `berth`; meanwhile the server's backends publish their statistics.
    eprintln!(
        "  pgbench: {} clients for {:?}",
        sizes.submitters, sizes.duration
    );
    let pgbench_tps = pgbench(stack, sizes.submitters, sizes.duration).await?;
    let waited = completed_at.elapsed();
    if waited < STATS_FLUSH_DELAY {
        tokio::time::sleep(STATS_FLUSH_DELAY - waited).await;
    }
    let commits_after = xact_commit(&sql).await?;
    let commits = commits_after
        .saturating_sub(commits_before)
        .saturating_sub(own_queries);
    let commits_per_request = commits as f64 / peak.len() as f64;

    // Phase 2: latency at half of peak.
    let half_rate = throughput / 2.0;
    eprintln!(
        "  half load: {half_rate:.0} submissions/s for {:?}",
        sizes.duration
    );
    let half_start = Instant::now();
    let half = submit_phase(
        stack,
        &user_token,
        &workspace_names,
        sizes.submitters,
        sizes.duration,
        Some(half_rate),
    )
    .await?;
    let half_submit_secs = half_start.elapsed().as_secs_f64();
    let mut ignored = 0;
    wait_completed(&sql, (peak.len() + half.len()) as i64, &mut ignored, &fleet).await?;
    let half_latency = latencies(&fleet, &half);
    fleet.check_errors()?;
    fleet.stop().await;

    // Phase 4: drain a queue filled while no worker is connected.
    let before_drain = (peak.len() + half.len()) as i64;
    let drain = drain_phase(
        stack,
        &user_token,
        &workspace_names,
        sizes,
        &sql,
        before_drain,
    )
    .await?;

    let ratio = throughput / pgbench_tps;
    let goal_mark = |ok: bool| if ok { "met" } else { "NOT met" };
    let rows = vec![
        (
            "simulated workers".to_owned(),
            format!("{} x concurrency {}", sizes.workers, sizes.concurrency),
        ),
        (
            "submitters".to_owned(),
            format!("{} for {:?} per phase", sizes.submitters, sizes.duration),
        ),
        (
            "workspaces".to_owned(),
            format!("{workspaces} (requests round-robin)"),
        ),
        (
            "peak: completed".to_owned(),
            format!(
                "{} in {peak_elapsed:.1} s ({failed} not successful)",
                peak.len()
            ),
        ),
        (
            "peak: throughput".to_owned(),
            format!("{throughput:.0} work requests/s"),
        ),
        (
            "peak: dispatch latency p50 / p99".to_owned(),
            format!("{} / {}", ms(peak_latency.p50), ms(peak_latency.p99)),
        ),
        (
            "commits per work request".to_owned(),
            format!("{commits_per_request:.2} ({commits} commits)"),
        ),
        (
            "half load: rate".to_owned(),
            format!(
                "{:.0} submissions/s (target {half_rate:.0})",
                half.len() as f64 / half_submit_secs
            ),
        ),
        (
            "half load: dispatch latency p50".to_owned(),
            format!(
                "{} (goal <= 5 ms: {})",
                ms(half_latency.p50),
                goal_mark(half_latency.p50 <= 5.0)
            ),
        ),
        (
            "half load: dispatch latency p99".to_owned(),
            format!(
                "{} (goal <= 20 ms: {}; max {})",
                ms(half_latency.p99),
                goal_mark(half_latency.p99 <= 20.0),
                ms(half_latency.max)
            ),
        ),
        (
            "drain: queued first".to_owned(),
            format!(
                "{} requests in {:.1} s ({:.0} submissions/s, {DRAIN_SUBMITTERS} submitters)",
                drain.requests,
                drain.queue_secs,
                drain.requests as f64 / drain.queue_secs
            ),
        ),
        (
            "drain: throughput".to_owned(),
            format!(
                "{:.0} requests/s ({:.1} s from first connect to last completed)",
                drain.throughput(),
                drain.drain_secs
            ),
        ),
        (
            "pgbench one-row UPDATE".to_owned(),
            format!("{pgbench_tps:.0} TPS ({} clients)", sizes.submitters),
        ),
        (
            "work requests/s / pgbench TPS".to_owned(),
            format!("{ratio:.3} (goal >= 1.0: {})", goal_mark(ratio >= 1.0)),
        ),
    ];
    let mut rows = rows;
    let per_request = |calls: i64| calls as f64 / peak.len() as f64;
    rows.push((
        "peak: statements per work request".to_owned(),
        format!(
            "{:.2} ({statement_calls} statements; most executed below)",
            per_request(statement_calls)
        ),
    ));
    for line in &statements {
        rows.push((
            format!(
                "  {:.2}/req, {:.3} ms",
                per_request(line.calls),
                line.mean_ms
            ),
            line.query.clone(),
        ));
    }
    let profile: Vec<serde_json::Value> = statements
        .iter()
        .map(|l| {
            json!({"calls": l.calls, "per_work_request": per_request(l.calls), "mean_ms": l.mean_ms, "total_ms": l.total_ms, "query": l.query})
        })
        .collect();
    let json = json!({
        "statement_profile": {"statements": statement_calls, "per_work_request": per_request(statement_calls), "top": profile},
        "workers": sizes.workers,
        "workspaces": workspaces,
        "concurrency": sizes.concurrency,
        "submitters": sizes.submitters,
        "duration_seconds": sizes.duration.as_secs_f64(),
        "peak": {
            "completed": peak.len(),
            "not_successful": failed,
            "elapsed_seconds": peak_elapsed,
            "throughput_per_second": throughput,
            "dispatch_latency_ms": {"p50": peak_latency.p50, "p99": peak_latency.p99, "max": peak_latency.max, "missing": peak_latency.missing},
            "commits": commits,
            "commits_per_work_request": commits_per_request,
        },
        "half_load": {
            "target_rate_per_second": half_rate,
            "submitted": half.len(),
            "achieved_rate_per_second": half.len() as f64 / half_submit_secs,
            "dispatch_latency_ms": {"p50": half_latency.p50, "p99": half_latency.p99, "max": half_latency.max, "missing": half_latency.missing},
            "goal_p50_ms": 5.0,
            "goal_p99_ms": 20.0,
        },
        "drain": {
            "requests": drain.requests,
            "queue_seconds": drain.queue_secs,
            "submitters": DRAIN_SUBMITTERS,
            "drain_seconds": drain.drain_secs,
            "throughput_per_second": drain.throughput(),
        },
        "pgbench": {
            "clients": sizes.submitters,
            "tps": pgbench_tps,
        },
        "throughput_over_pgbench": ratio,
        "goal_throughput_over_pgbench": 1.0,
    });
    Ok(Report {
        scenario: "noop".to_owned(),
        rows,
        json,
    })
}

/// Concurrent submitters that fill the queue before the drain phase.
const DRAIN_SUBMITTERS: usize = 32;

/// What the drain phase measured.
struct Drain {
    requests: usize,
    /// Time to queue them.
    queue_secs: f64,
    /// First worker connect to last request completed.
    drain_secs: f64,
}

impl Drain {
    fn throughput(&self) -> f64 {
        self.requests as f64 / self.drain_secs
    }
}

/// Queues `sizes.drain_requests` no-op requests with no worker connected, then connects
/// a fleet of `sizes` and times it until all of them completed. `done_before` is how many
/// requests had completed before.
async fn drain_phase(
    stack: &Stack,
    token: &str,
    workspaces: &[String],
    sizes: Sizes,
    sql: &tokio_postgres::Client,
    done_before: i64,
) -> anyhow::Result<Drain> {
    eprintln!(
        "  drain: queueing {} requests, then {} simulated workers x {} slots",
        sizes.drain_requests, sizes.workers, sizes.concurrency
    );
    let queue_start = Instant::now();
    let queued = submit_count(stack, token, workspaces, sizes.drain_requests).await?;
    let queue_secs = queue_start.elapsed().as_secs_f64();
    // Tokens first, so that the timed part is the connects and the dispatch alone.
    let tokens = create_worker_tokens(stack, "drain", sizes.workers).await?;
    let connect_start = Instant::now();
    let fleet = connect_fleet(stack, tokens, sizes.concurrency).await?;
    let mut ignored = 0;
    let done_at = wait_completed(sql, done_before + queued as i64, &mut ignored, &fleet).await?;
    let drain_secs = done_at.duration_since(connect_start).as_secs_f64();
    fleet.check_errors()?;
    fleet.stop().await;
    Ok(Drain {
        requests: queued,
        queue_secs,
        drain_secs,
    })
}

/// Submits `count` no-op requests from [`DRAIN_SUBMITTERS`] concurrent loops, round-robin
/// over `workspaces`, as fast as the server takes them; returns how many were submitted.
pub(crate) async fn submit_count(
    stack: &Stack,
    token: &str,
    workspaces: &[String],
    count: usize,
) -> anyhow::Result<usize> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..DRAIN_SUBMITTERS {
        // An even share each; the first ones take the remainder.
        let share = count / DRAIN_SUBMITTERS + usize::from(i < count % DRAIN_SUBMITTERS);
        let mut client = stack.work_requests(token).await?;
        let workspaces = workspaces.to_vec();
        tasks.spawn(async move {
            for n in 0..share {
                let workspace = workspaces
                    .get((i + n) % workspaces.len().max(1))
                    .cloned()
                    .unwrap_or_default();
                client
                    .submit_work_request(noop_request(workspace))
                    .await
                    .map_err(|s| anyhow::anyhow!(berth_common::client::describe_status(&s)))
                    .context("SubmitWorkRequest failed")?;
            }
            Ok::<_, anyhow::Error>(share)
        });
    }
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        total += joined.context("a submitter panicked")??;
    }
    Ok(total)
}

/// The no-op request every phase submits.
fn noop_request(workspace: String) -> SubmitWorkRequestRequest {
    SubmitWorkRequestRequest {
        spec: Some(ContainerSpec {
            image: "bench/noop".into(),
            command: vec!["true".into()],
            ..Default::default()
        }),
        workspace,
        ..Default::default()
    }
}

/// `xact_commit` of the `berth` database.
async fn xact_commit(sql: &tokio_postgres::Client) -> anyhow::Result<u64> {
    let commits: i64 = sql
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = 'berth'",
            &[],
        )
        .await
        .context("cannot read pg_stat_database")?
        .get(0);
    Ok(u64::try_from(commits).unwrap_or(0))
}

/// Creates workspaces `bench-1` ... `bench-N` and makes the `bench` user a contributor
/// in each (as an admin would before its members submit); returns their names.
pub(crate) async fn create_workspaces(stack: &Stack, count: usize) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = (1..=count).map(|i| format!("bench-{i}")).collect();
    for name in &names {
        stack.create_workspace(name).await?;
        stack.make_contributor(name, "bench").await?;
    }
    Ok(names)
}

/// Submits for `duration` from `submitters` concurrent loops, each on its own connection;
/// unpaced when `rate` is `None`, else paced to `rate` submissions per second in total.
/// Each loop goes round the `workspaces` in turn, starting at its own offset.
/// Returns each submitted id with the instant its submit call returned.
pub(crate) async fn submit_phase(
    stack: &Stack,
    token: &str,
    workspaces: &[String],
    submitters: usize,
    duration: Duration,
    rate: Option<f64>,
) -> anyhow::Result<Vec<(String, Instant)>> {
    let mut tasks = tokio::task::JoinSet::new();
    let deadline = tokio::time::Instant::now() + duration;
    for i in 0..submitters {
        let mut client = stack.work_requests(token).await?;
        let workspaces = workspaces.to_vec();
        tasks.spawn(async move {
            let mut submitted = Vec::new();
            let mut turn = i;
            let mut pace = rate.map(|rate| {
                let period = Duration::from_secs_f64((submitters as f64 / rate).max(1e-4));
                // Stagger the submitters so that their submissions interleave evenly.
                let offset = period.mul_f64(i as f64 / submitters as f64);
                let mut interval =
                    tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                interval
            });
            loop {
                if let Some(interval) = &mut pace {
                    interval.tick().await;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Ok::<_, anyhow::Error>(submitted);
                }
                let workspace = workspaces
                    .get(turn % workspaces.len().max(1))
                    .cloned()
                    .unwrap_or_default();
                turn += 1;
                let response = client
                    .submit_work_request(noop_request(workspace))
                    .await
                    .map_err(|s| anyhow::anyhow!(berth_common::client::describe_status(&s)))
                    .context("SubmitWorkRequest failed")?;
                submitted.push((response.into_inner().id, Instant::now()));
            }
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.context("a submitter panicked")??);
    }
    Ok(all)
}

/// Polls until `total` work requests have ended (completed or aborted); returns when
/// that was seen. It counts through the index of ended requests (`completed_at` is set
/// for every end), so a deep queue of pending rows is not scanned at every poll. Fails
/// when nothing moves for 30 s. `own_queries` counts the polls, for the commit count.
pub(crate) async fn wait_completed(
    sql: &tokio_postgres::Client,
    total: i64,
    own_queries: &mut u64,
    fleet: &SimFleet,
) -> anyhow::Result<Instant> {
    let mut last = -1;
    let mut last_change = Instant::now();
    loop {
        *own_queries += 1;
        let done: i64 = sql
            .query_one(
                "SELECT count(*) FROM work_requests WHERE completed_at IS NOT NULL",
                &[],
            )
            .await
            .context("cannot count completed work requests")?
            .get(0);
        if done >= total {
            return Ok(Instant::now());
        }
        fleet.check_errors()?;
        if done != last {
            last = done;
            last_change = Instant::now();
        } else if last_change.elapsed() > Duration::from_secs(30) {
            bail!("only {done} of {total} work requests completed; nothing moved for 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs pgbench's one-row UPDATE against a fresh `pgbench` database; returns its TPS. The
/// bound other scenarios compare with (`topics`).
pub(crate) async fn pgbench(
    stack: &Stack,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let pgbench = {
        let beside = stack.pg_bin.join("pgbench");
        if beside.exists() {
            beside
        } else {
            Path::new("pgbench").to_owned()
        }
    };
    let admin = sql_connect(&stack.database_url).await?;
    // Separate statements: DROP/CREATE DATABASE cannot share an implicit transaction.
    for statement in ["DROP DATABASE IF EXISTS pgbench", "CREATE DATABASE pgbench"] {
        admin
            .batch_execute(statement)
            .await
            .context("cannot create the pgbench database")?;
    }
    let db = sql_connect(&stack.database_url_for("pgbench")).await?;
    let fill = [
        "CREATE TABLE bench_rows (id int PRIMARY KEY, v bigint NOT NULL)".to_owned(),
        format!("INSERT INTO bench_rows SELECT g, 0 FROM generate_series(1, {PGBENCH_ROWS}) g"),
        // Its own statement: VACUUM cannot run inside a (multi-statement) transaction.
        "VACUUM ANALYZE bench_rows".to_owned(),
    ];
    for statement in &fill {
        db.batch_execute(statement)
            .await
            .context("cannot fill the pgbench table")?;
    }
    drop(db);
    let script = stack.dir.path().join("pgbench-update.sql");
    std::fs::write(
        &script,
        format!(
            "\\set id random(1, {PGBENCH_ROWS})\nUPDATE bench_rows SET v = v + 1 WHERE id = :id;\n"
        ),
    )
    .context("cannot write the pgbench script")?;
    let clients = clients.to_string();
    let output = tokio::process::Command::new(&pgbench)
        .args(["-n", "-c", &clients, "-j", &clients, "-T"])
        .arg(duration.as_secs().max(1).to_string())
        .arg("-f")
        .arg(&script)
        .arg("-h")
        .arg(&stack.pg_socket_dir)
        .args(["-U", "berth", "pgbench"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| {
            format!(
                "cannot run {} (install PostgreSQL's client tools)",
                pgbench.display()
            )
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse::<f64>().ok())
        .with_context(|| format!("no `tps = ` line in pgbench's output:\n{stdout}"))
}
