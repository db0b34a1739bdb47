//! Tenancy in the scheduler, against the real server with simulated workers: fair share
//! between workspaces (by running work relative to weight), `max_running` held even with
//! two replicas claiming, `max_pending` refusing at submission with nothing stored,
//! workers restricted to workspaces, and the why-pending texts for each of these.
//!
//! Workspaces and their limits are set with SQL, as `workspace set` would write them.
//! Orders and counts are read from the database (`attempts.assigned_at`, sampled
//! `status = 'running'`), never from wall-clock limits.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::time::Duration;

use berth_common::proto::{
    ContainerSpec, GetWorkerRequest, ListWorkersRequest, RestrictWorkerRequest,
    SubmitWorkRequestRequest, SubmitWorkflowRequest, WorkRequest, WorkflowStep,
};
use berth_tests::{
    SimOptions, SimWorker, TestServer, assert_code, cancel, eventually, get, query, sh, try_submit,
    unique_name, wait_terminal,
};
use futures::StreamExt;

/// Creates workspace `name` and returns its id.
async fn workspace(server: &TestServer, name: &str) -> String {
    let rows = query(
        &server.database_url,
        &format!("INSERT INTO workspaces (id, name) VALUES (gen_random_uuid(), '{name}') RETURNING id::text"),
    )
    .await;
    rows[0].get(0)
}

/// Sets `settings` (SQL assignments) on workspace `name`.
async fn set(server: &TestServer, name: &str, settings: &str) {
    query(
        &server.database_url,
        &format!("UPDATE workspaces SET {settings} WHERE name = '{name}'"),
    )
    .await;
}

fn in_workspace(workspace: &str, spec: ContainerSpec) -> SubmitWorkRequestRequest {
    SubmitWorkRequestRequest {
        spec: Some(spec),
        workspace: workspace.into(),
        ..Default::default()
    }
}

/// Submits `n` copies of `spec` to `workspace` as the admin, a few at a time, and
/// returns them in submission order of their answers.
async fn flood(
    server: &TestServer,
    workspace: &str,
    n: usize,
    spec: ContainerSpec,
) -> Vec<WorkRequest> {
    futures::stream::iter(0..n)
        .map(|_| {
            let request = in_workspace(workspace, spec.clone());
            async move {
                try_submit(server, &server.admin_token, request)
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Running jobs per workspace name, read from the database.
async fn running(server: &TestServer, workspace: &str) -> i64 {
    query(
        &server.database_url,
        &format!(
            "SELECT count(*) FROM work_requests r JOIN workspaces w ON w.id = r.workspace_id \
             WHERE w.name = '{workspace}' AND r.status = 'running' AND r.kind = 'job'"
        ),
    )
    .await[0]
        .get(0)
}

/// Connects a simulated worker to `url` with a new worker token made on `server`.
async fn worker_on(server: &TestServer, url: &str, options: SimOptions) -> (String, SimWorker) {
    let name = unique_name("sim");
    let (_, token) = server
        .create_token(berth_common::proto::Role::Worker, &name)
        .await;
    let worker = SimWorker::connect(url, &name, &token, options).await;
    (name, worker)
}

async fn restrict(
    server: &TestServer,
    token: &str,
    name: &str,
    workspaces: &[&str],
) -> Result<berth_common::proto::Worker, tonic::Status> {
    server
        .workers(token)
        .await
        .restrict_worker(RestrictWorkerRequest {
            name: name.into(),
            workspaces: workspaces.iter().map(|w| (*w).to_owned()).collect(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Waits until pending request `id` says `reason`.
async fn wait_reason(server: &TestServer, id: &str, reason: &str) {
    eventually(
        &format!("request {id} to wait because {reason:?}"),
        Duration::from_secs(30),
        || async {
            let request = get(server, id).await;
            (request.pending_reason == reason).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_workspace_starts_before_a_flood_of_another_gets_a_second_round() {
    let server = TestServer::start().await;
    workspace(&server, "team-a").await;
    workspace(&server, "team-b").await;
    flood(&server, "team-a", 1000, sh("sleep 2")).await;
    const SLOTS: i64 = 4;
    let _w1 = server
        .sim_worker(SimOptions::default().concurrency(2))
        .await;
    let _w2 = server
        .sim_worker(SimOptions::default().concurrency(2))
        .await;
    eventually(
        "the fleet to be full of team-a",
        Duration::from_secs(30),
        || async { (running(&server, "team-a").await == SLOTS).then_some(()) },
    )
    .await;
    let b = flood(&server, "team-b", 10, sh("sleep 0.2")).await;
    for request in &b {
        wait_terminal(&server, &request.id).await;
    }
    // Every team-a start after team-b's first submission and before team-b's last start
    // took a slot team-b could have had. Fair share gives team-b every slot freed while
    // it runs less than team-a, so that is at most one round of the fleet; a single
    // queue would have made team-b wait behind ~1,000 requests.
    let rows = query(
        &server.database_url,
        "WITH b AS (SELECT min(r.created_at) AS submitted, max(a.assigned_at) AS last_start \
           FROM work_requests r JOIN workspaces w ON w.id = r.workspace_id \
           JOIN attempts a ON a.work_request_id = r.id WHERE w.name = 'team-b') \
         SELECT count(*) FROM attempts a JOIN work_requests r ON r.id = a.work_request_id \
           JOIN workspaces w ON w.id = r.workspace_id, b \
         WHERE w.name = 'team-a' AND a.assigned_at > b.submitted AND a.assigned_at < b.last_start",
    )
    .await;
    let overtaking: i64 = rows[0].get(0);
    assert!(
        overtaking <= SLOTS,
        "{overtaking} team-a requests started while team-b's 10 waited; at most {SLOTS} (one round) expected"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn running_slots_split_by_weight_between_flooding_workspaces() {
    let server = TestServer::start().await;
    workspace(&server, "heavy").await;
    workspace(&server, "light").await;
    set(&server, "heavy", "weight = 3").await;
    flood(&server, "heavy", 300, sh("sleep 0.3")).await;
    flood(&server, "light", 300, sh("sleep 0.3")).await;
    let _w1 = server
        .sim_worker(SimOptions::default().concurrency(4))
        .await;
    let _w2 = server
        .sim_worker(SimOptions::default().concurrency(4))
        .await;
    let (mut heavy, mut light) = (0, 0);
    for _ in 0..30 {
        heavy += running(&server, "heavy").await;
        light += running(&server, "light").await;
        // Samples spread over several job lengths; what they show is counted above.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let share = heavy as f64 / (heavy + light) as f64;
    assert!(
        (0.62..=0.88).contains(&share),
        "weight 3 against 1 should hold ~75% of the running slots; sampled {heavy} against {light} ({share:.2})"
    );
    server.stop().await;
}

/// Samples team-a's running jobs until `requests` have all ended; returns the most seen.
async fn most_running_until_done(server: &TestServer, requests: &[WorkRequest]) -> i64 {
    let mut most = 0;
    let done = format!(
        "SELECT count(*) FROM work_requests WHERE status = 'completed' AND id::text IN ({})",
        requests
            .iter()
            .map(|r| format!("'{}'", r.id))
            .collect::<Vec<_>>()
            .join(",")
    );
    loop {
        most = most.max(running(server, "team-a").await);
        let ended: i64 = query(&server.database_url, &done).await[0].get(0);
        if ended == requests.len() as i64 {
            return most;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn max_running_holds_while_two_replicas_claim_and_other_workspaces_go_on() {
    let server = TestServer::start().await;
    let replica = server.replica().await;
    workspace(&server, "team-a").await;
    workspace(&server, "team-b").await;
    set(&server, "team-a", "max_running = 2").await;
    let a = flood(&server, "team-a", 16, sh("sleep 0.2")).await;
    let b = flood(&server, "team-b", 6, sh("sleep 0.5")).await;
    let _here = worker_on(&server, &server.url, SimOptions::default().concurrency(3)).await;
    let _there = worker_on(&server, &replica.url, SimOptions::default().concurrency(3)).await;
    let most = most_running_until_done(&server, &a).await;
    assert_eq!(most, 2, "team-a ran {most} at once with max_running 2");
    for request in &b {
        wait_terminal(&server, &request.id).await;
    }
    replica.stop().await;
    server.stop().await;
}

async fn count_in(server: &TestServer, workspace: &str) -> i64 {
    query(
        &server.database_url,
        &format!(
            "SELECT count(*) FROM work_requests r JOIN workspaces w ON w.id = r.workspace_id \
             WHERE w.name = '{workspace}'"
        ),
    )
    .await[0]
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn max_pending_refuses_a_submission_past_it_and_stores_nothing() {
    let server = TestServer::start().await;
    workspace(&server, "team-a").await;
    set(&server, "team-a", "max_pending = 3").await;
    // No worker: everything waits.
    let first = try_submit(
        &server,
        &server.admin_token,
        in_workspace("team-a", sh("true")),
    )
    .await
    .unwrap();
    for _ in 0..2 {
        try_submit(
            &server,
            &server.admin_token,
            in_workspace("team-a", sh("true")),
        )
        .await
        .unwrap();
    }
    assert_code(
        try_submit(
            &server,
            &server.admin_token,
            in_workspace("team-a", sh("true")),
        )
        .await,
        tonic::Code::ResourceExhausted,
        "workspace team-a has 3 waiting requests, its limit (max_pending); wait for some to run or ask an admin to raise it",
    );
    // The path with dependencies checks the same limit.
    let after = SubmitWorkRequestRequest {
        after: vec![first.id.clone()],
        ..in_workspace("team-a", sh("true"))
    };
    assert_code(
        try_submit(&server, &server.admin_token, after).await,
        tonic::Code::ResourceExhausted,
        "(max_pending)",
    );
    assert_eq!(count_in(&server, "team-a").await, 3);

    // A workflow counts all its steps, and is stored whole or not at all.
    set(&server, "team-a", "max_pending = 4").await;
    let step = |name: &str| WorkflowStep {
        name: name.into(),
        spec: Some(sh("true")),
        ..Default::default()
    };
    let workflow = server
        .work_requests(&server.admin_token)
        .await
        .submit_workflow(SubmitWorkflowRequest {
            name: "wf".into(),
            steps: vec![step("one"), step("two")],
            workspace: "team-a".into(),
        })
        .await
        .map(tonic::Response::into_inner);
    assert_code(
        workflow,
        tonic::Code::ResourceExhausted,
        "workspace team-a has 3 waiting requests and this submission adds 2, over its limit of 4 (max_pending)",
    );
    assert_eq!(count_in(&server, "team-a").await, 3);

    // Concurrent submissions (batched together by the server) stop exactly at the limit.
    set(&server, "team-a", "max_pending = 10").await;
    let answers: Vec<Result<WorkRequest, tonic::Status>> = futures::stream::iter(0..20)
        .map(|_| {
            try_submit(
                &server,
                &server.admin_token,
                in_workspace("team-a", sh("true")),
            )
        })
        .buffer_unordered(20)
        .collect()
        .await;
    let refused = answers
        .iter()
        .filter(|a| matches!(a, Err(s) if s.code() == tonic::Code::ResourceExhausted))
        .count();
    assert_eq!(refused, 13, "{answers:?}");
    assert_eq!(count_in(&server, "team-a").await, 10);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restricted_worker_takes_only_its_workspaces_and_an_unrestricted_one_takes_any() {
    let server = TestServer::start().await;
    workspace(&server, "team-a").await;
    workspace(&server, "team-b").await;
    let (restricted, _r) =
        worker_on(&server, &server.url, SimOptions::default().concurrency(4)).await;
    let shown = restrict(&server, &server.admin_token, &restricted, &["team-a"])
        .await
        .unwrap();
    assert_eq!(shown.workspaces, ["team-a"]);

    let b = try_submit(
        &server,
        &server.admin_token,
        in_workspace("team-b", sh("true")),
    )
    .await
    .unwrap();
    wait_reason(
        &server,
        &b.id,
        "the workers that match are restricted to other workspaces (team-a), not team-b",
    )
    .await;
    let a = try_submit(
        &server,
        &server.admin_token,
        in_workspace("team-a", sh("true")),
    )
    .await
    .unwrap();
    let a = wait_terminal(&server, &a.id).await;
    assert_eq!(a.attempts[0].worker, restricted);
    assert_eq!(
        get(&server, &b.id).await.attempt_count,
        0,
        "team-b ran on the restricted worker"
    );

    let (anyone, _u) = worker_on(&server, &server.url, SimOptions::default()).await;
    let b = wait_terminal(&server, &b.id).await;
    assert_eq!(b.attempts[0].worker, anyone);

    // Lifting the restriction lets it take team-b's requests from its next claim on.
    let (lifted, _l) = worker_on(&server, &server.url, SimOptions::default()).await;
    restrict(&server, &server.admin_token, &lifted, &["team-a"])
        .await
        .unwrap();
    server
        .workers(&server.admin_token)
        .await
        .disable_worker(berth_common::proto::DisableWorkerRequest {
            name: anyone.clone(),
        })
        .await
        .unwrap();
    server
        .workers(&server.admin_token)
        .await
        .disable_worker(berth_common::proto::DisableWorkerRequest {
            name: restricted.clone(),
        })
        .await
        .unwrap();
    let b2 = try_submit(
        &server,
        &server.admin_token,
        in_workspace("team-b", sh("true")),
    )
    .await
    .unwrap();
    // The only enabled worker serves team-a alone; the others that would take it are off.
    wait_reason(
        &server,
        &b2.id,
        "the matching workers are disabled or draining",
    )
    .await;
    let shown = restrict(&server, &server.admin_token, &lifted, &[])
        .await
        .unwrap();
    assert!(shown.workspaces.is_empty(), "{shown:?}");
    let b2 = wait_terminal(&server, &b2.id).await;
    assert_eq!(b2.attempts[0].worker, lifted);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn why_pending_names_the_share_the_limit_and_the_restriction() {
    let server = TestServer::start().await;
    workspace(&server, "team-a").await;
    workspace(&server, "team-b").await;
    workspace(&server, "team-c").await;
    let _w = server
        .sim_worker(SimOptions::default().concurrency(2))
        .await;
    let a1 = try_submit(
        &server,
        &server.admin_token,
        in_workspace("team-a", sh("sleep 300")),
    )
    .await
    .unwrap();
    let a2 = try_submit(
        &server,
        &server.admin_token,
        in_workspace("team-a", sh("sleep 300")),
    )
    .await
    .unwrap();
    eventually(
        "team-a to fill the worker",
        Duration::from_secs(30),
        || async { (running(&server, "team-a").await == 2).then_some(()) },
    )
    .await;
    let a3 = try_submit(
        &server,
        &server.admin_token,
        in_workspace("team-a", sh("true")),
    )
    .await
    .unwrap();
    let b1 = try_submit(
        &server,
        &server.admin_token,
        in_workspace("team-b", sh("true")),
    )
    .await
    .unwrap();
    wait_reason(
        &server,
        &a3.id,
        "workspace team-a has 2 running (weight 1) while team-b with 0 running (weight 1) goes first",
    )
    .await;
    wait_reason(&server, &b1.id, "all 1 matching worker is busy").await;
    // The queue listing says the same as get.
    let queue = server
        .work_requests(&server.admin_token)
        .await
        .list_queue(berth_common::proto::ListQueueRequest::default())
        .await
        .unwrap()
        .into_inner();
    let listed = queue
        .entries
        .iter()
        .find(|e| e.work_request.as_ref().is_some_and(|r| r.id == a3.id))
        .unwrap_or_else(|| panic!("{} not in {queue:?}", a3.id));
    assert!(listed.pending_reason.contains("goes first"), "{listed:?}");

    set(&server, "team-a", "max_running = 2").await;
    wait_reason(
        &server,
        &a3.id,
        "workspace team-a runs 2 requests, its max_running limit",
    )
    .await;

    let (reserved, _r) = worker_on(
        &server,
        &server.url,
        SimOptions::default().label("pool", "r!"),
    )
    .await;
    restrict(&server, &server.admin_token, &reserved, &["team-c"])
        .await
        .unwrap();
    let needs_r = |workspace: &str| SubmitWorkRequestRequest {
        requirements: [("pool".to_owned(), "r".to_owned())].into(),
        ..in_workspace(workspace, sh("true"))
    };
    let b2 = try_submit(&server, &server.admin_token, needs_r("team-b"))
        .await
        .unwrap();
    wait_reason(
        &server,
        &b2.id,
        "the workers that match are restricted to other workspaces (team-c), not team-b",
    )
    .await;
    let c1 = try_submit(&server, &server.admin_token, needs_r("team-c"))
        .await
        .unwrap();
    let c1 = wait_terminal(&server, &c1.id).await;
    assert_eq!(c1.attempts[0].worker, reserved);
    for id in [&a1.id, &a2.id] {
        cancel(&server, id).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restrict_worker_refuses_bad_input_naming_what_to_fix() {
    let server = TestServer::start().await;
    workspace(&server, "team-a").await;
    let (name, _w) = worker_on(&server, &server.url, SimOptions::default()).await;
    let admin = &server.admin_token;
    assert_code(
        restrict(&server, admin, "no-such-worker", &["team-a"]).await,
        tonic::Code::NotFound,
        "no worker named \"no-such-worker\"",
    );
    assert_code(
        restrict(&server, admin, &name, &["team-a", "nowhere"]).await,
        tonic::Code::NotFound,
        "no workspace named \"nowhere\"",
    );
    assert_code(
        restrict(&server, admin, "", &["team-a"]).await,
        tonic::Code::InvalidArgument,
        "name: is required",
    );
    assert_code(
        restrict(&server, admin, &name, &["team-a", ""]).await,
        tonic::Code::InvalidArgument,
        "workspaces: a workspace name is empty",
    );
    let (_, user) = server
        .create_token(berth_common::proto::Role::User, "alice")
        .await;
    assert_code(
        restrict(&server, &user, &name, &["team-a"]).await,
        tonic::Code::PermissionDenied,
        "",
    );
    // Nothing refused changed the worker.
    let shown = server
        .workers(admin)
        .await
        .get_worker(GetWorkerRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(shown.workspaces.is_empty(), "{shown:?}");

    restrict(&server, admin, &name, &["team-a", "default", "team-a"])
        .await
        .unwrap();
    let listed = server
        .workers(admin)
        .await
        .list_workers(ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner();
    let listed = listed.workers.iter().find(|w| w.name == name).unwrap();
    assert_eq!(listed.workspaces, ["default", "team-a"]);
    server.stop().await;
}
