//! Two `berth-server` replicas on one PostgreSQL behave as one server.
//!
//! Workers connect to either replica and requests are submitted to either. What must hold
//! is what a user relies on: every request runs exactly once, no worker ever runs more
//! than its concurrency, a request submitted on one replica starts promptly on a worker
//! connected to the other (LISTEN/NOTIFY, not the sweep), and a cancel on one replica
//! reaches a worker connected to the other. The checks read the `attempts` table, which
//! records every assignment whichever replica made it, and what the (simulated) workers
//! were told.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_common::proto::{SubmitWorkRequestRequest, WorkRequestStatus, WorkResult};
use berth_tests::{
    SimOptions, TestServer, cancel, eventually, query, quick_heartbeats, result, spec, status,
    submit, wait_for, wait_started, wait_status,
};

/// The most intervals `[start, end]` open at one instant (an end at the same instant as a
/// start counts as before it).
fn max_overlap(intervals: &[(f64, f64)]) -> usize {
    let mut edges: Vec<(f64, i32)> = intervals
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut open = 0i32;
    let mut most = 0i32;
    for (_, delta) in edges {
        open += delta;
        most = most.max(open);
    }
    usize::try_from(most).unwrap()
}

#[test]
fn overlap_counts_only_simultaneous_intervals() {
    assert_eq!(max_overlap(&[(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]), 1);
    assert_eq!(max_overlap(&[(0.0, 3.0), (1.0, 2.0), (1.5, 4.0)]), 3);
    assert_eq!(max_overlap(&[]), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_run_every_request_exactly_once_within_each_workers_concurrency() {
    const REQUESTS: usize = 200;
    const CONCURRENCY: usize = 2;
    let a = TestServer::start_with(quick_heartbeats).await;
    let b = a.replica().await;
    let mut workers = Vec::new();
    for n in 0..5 {
        let server = if n % 2 == 0 { &a } else { &b };
        let options = SimOptions::default().concurrency(CONCURRENCY as u32);
        workers.push(server.sim_worker(options).await);
    }

    let began = Instant::now();
    let mut clients = [
        a.work_requests(&a.admin_token).await,
        b.work_requests(&b.admin_token).await,
    ];
    for n in 0..REQUESTS {
        clients[n % 2]
            .submit_work_request(SubmitWorkRequestRequest {
                // Long enough that the slots fill up and the scheduler must respect them.
                spec: Some(spec(&["sleep", "0.05"])),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let submitted = began.elapsed();
    eventually("every request to end", Duration::from_secs(600), || async {
        let rows = query(
            &a.database_url,
            "SELECT count(*) FROM work_requests WHERE status IN ('completed', 'aborted')",
        )
        .await;
        let done: i64 = rows[0].get(0);
        (usize::try_from(done).unwrap() == REQUESTS).then_some(())
    })
    .await;
    let took = began.elapsed();
    println!(
        "{REQUESTS} requests on 2 replicas, 5 workers x {CONCURRENCY} slots: submitted in {submitted:.1?}, all ended after {took:.1?}"
    );

    // Every request succeeded, with exactly one attempt.
    let rows = query(
        &a.database_url,
        "SELECT wr.id::text, wr.status, coalesce(wr.result, ''), wr.attempt_count, \
                (SELECT count(*) FROM attempts a WHERE a.work_request_id = wr.id) \
         FROM work_requests wr",
    )
    .await;
    assert_eq!(rows.len(), REQUESTS);
    for row in &rows {
        let (id, status, result, count, attempts): (String, String, String, i32, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        assert_eq!(
            (status.as_str(), result.as_str(), count, attempts),
            ("completed", "success", 1, 1),
            "request {id}"
        );
    }

    // No worker ever held more attempts than its concurrency, whichever replica assigned
    // them, and the work was spread over both replicas' workers.
    let rows = query(
        &a.database_url,
        "SELECT worker_name, extract(epoch FROM assigned_at)::float8, \
                extract(epoch FROM finished_at)::float8 FROM attempts",
    )
    .await;
    let mut per_worker: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
    for row in &rows {
        let finished: Option<f64> = row.get(2);
        per_worker
            .entry(row.get(0))
            .or_default()
            .push((row.get(1), finished.unwrap()));
    }
    for (worker, intervals) in &per_worker {
        let most = max_overlap(intervals);
        println!(
            "worker {worker}: {} attempts, at most {most} at once",
            intervals.len()
        );
        assert!(
            most <= CONCURRENCY,
            "worker {worker} held {most} attempts at once; its concurrency is {CONCURRENCY}"
        );
    }
    for (n, worker) in workers.iter().enumerate() {
        assert!(
            per_worker.contains_key(&worker.name),
            "worker {n} ({}) ran nothing",
            worker.name
        );
        // What the worker itself saw: never an Assign with every slot taken.
        let seen = worker.seen();
        assert_eq!(seen.over_capacity, 0, "worker {n}: {seen:?}");
        assert!(seen.most_running <= CONCURRENCY, "worker {n}: {seen:?}");
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_submitted_on_one_replica_starts_promptly_on_a_worker_of_the_other() {
    // A sweep every 30 s: only a NOTIFY can start the request within seconds.
    let a = TestServer::start_with(|config| {
        quick_heartbeats(config);
        config.agent.sweep_interval = Duration::from_secs(30);
    })
    .await;
    let b = a
        .replica_with(|config| config.agent.sweep_interval = Duration::from_secs(30))
        .await;
    // Connect answers (and so the Welcome arrives) only after the worker's first
    // assignment round on b has run, and a has no worker to assign to: from here on,
    // nothing but a NOTIFY from a makes b look for work before its sweep.
    let worker = b.sim_worker(SimOptions::default()).await;

    let began = Instant::now();
    let submitted = submit(&a, spec(&["true"])).await;
    let assigned = wait_for(
        &a,
        &submitted.id,
        "to be assigned to the worker on the other replica",
        Duration::from_secs(5),
        |request| !request.attempts.is_empty(),
    )
    .await;
    println!("assigned across replicas after {:?}", began.elapsed());
    assert_eq!(assigned.attempts[0].worker, worker.name, "{assigned:?}");
    let ended = wait_status(&a, &submitted.id, WorkRequestStatus::Completed).await;
    assert_eq!(result(&ended), WorkResult::Success, "{ended:?}");

    // The listening connections are cut: the replicas reconnect and listen again.
    let cut = query(
        &a.database_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query = 'LISTEN berth_events' \
           AND pid <> pg_backend_pid()",
    )
    .await;
    assert_eq!(cut.len(), 2, "one listening connection per replica");
    eventually(
        "both replicas to listen again",
        Duration::from_secs(10),
        || async {
            let rows = query(
                &a.database_url,
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query = 'LISTEN berth_events'",
            )
            .await;
            (rows[0].get::<_, i64>(0) == 2).then_some(())
        },
    )
    .await;
    let began = Instant::now();
    let again = submit(&a, spec(&["true"])).await;
    wait_for(
        &a,
        &again.id,
        "to be assigned across replicas after the reconnection",
        Duration::from_secs(5),
        |request| !request.attempts.is_empty(),
    )
    .await;
    println!(
        "assigned across replicas after a reconnection after {:?}",
        began.elapsed()
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_on_one_replica_stops_the_job_of_a_worker_on_the_other() {
    let a = TestServer::start_with(quick_heartbeats).await;
    let b = a.replica().await;
    let worker = b.sim_worker(SimOptions::default()).await;
    let submitted = submit(&a, spec(&["sleep", "300"])).await;
    wait_started(&a, &submitted.id).await;

    let cancelled = cancel(&a, &submitted.id).await;
    assert_eq!(status(&cancelled), WorkRequestStatus::Aborted);
    worker.wait_cancelled(&submitted.id, 1).await;
    let ended = wait_for(
        &a,
        &submitted.id,
        "to have its attempt reported finished",
        Duration::from_secs(30),
        |request| request.attempts[0].finished_at.is_some(),
    )
    .await;
    assert_eq!(status(&ended), WorkRequestStatus::Aborted, "{ended:?}");
    assert_eq!(ended.attempts[0].reason, "cancelled", "{ended:?}");
    assert!(worker.running().is_empty(), "{:?}", worker.seen());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_disabled_on_one_replica_is_refused_by_the_other_that_had_it_cached() {
    use berth_common::proto::{DisableTokenRequest, ListTokensRequest, Role};
    let a = TestServer::start_with(quick_heartbeats).await;
    let b = a.replica().await;
    let (id, secret) = a.create_token(Role::User, "alice").await;
    // Replica b authenticates alice's token and remembers it for a few seconds.
    let mut on_b = b.tokens(&secret).await;
    on_b.list_tokens(ListTokensRequest {})
        .await
        .expect("the token works on b before it is disabled");
    a.tokens(&a.admin_token)
        .await
        .disable_token(DisableTokenRequest { id })
        .await
        .expect("disable on a");
    // Well within the cache's lifetime: only the eviction announced by a can do this.
    let began = Instant::now();
    let refused = eventually(
        "replica b to refuse the disabled token",
        Duration::from_secs(2),
        || {
            let mut on_b = on_b.clone();
            async move {
                match on_b.list_tokens(ListTokensRequest {}).await {
                    Err(status) if status.code() == tonic::Code::Unauthenticated => Some(status),
                    _ => None,
                }
            }
        },
    )
    .await;
    println!("refused on b after {:?}", began.elapsed());
    assert!(refused.message().contains("disabled"), "{refused:?}");
    a.stop().await;
    b.stop().await;
}
