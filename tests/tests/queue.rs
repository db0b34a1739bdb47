//! The pending queue as users see it: requests start in priority order (base + admin
//! adjustment), requirements and exclusive labels decide which worker runs what, a request
//! nobody can run holds nothing back, and every pending request says where it stands and
//! why it waits (`GetWorkRequest`, `ListQueue`, `berth queue`, `berth priority`).
//!
//! Workers are simulated: the queue is the server's, and no container is needed to see it.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::HashMap;
use std::time::Duration;

use berth_common::proto::{
    AdjustPriorityRequest, DisableWorkerRequest, ListQueueRequest, Role, SubmitWorkRequestRequest,
    WorkRequest, WorkRequestStatus, WorkResult,
};
use berth_tests::{
    SimOptions, TestServer, at, berth, cancel, get, spec, status, submit_request, wait_for,
    wait_started, wait_terminal, worker_of,
};
use tonic::Code;

/// Submits `command` with `priority` and `requirements` as the admin.
async fn submit(
    server: &TestServer,
    command: &[&str],
    priority: i32,
    requirements: &[(&str, &str)],
) -> WorkRequest {
    submit_request(
        server,
        SubmitWorkRequestRequest {
            spec: Some(spec(command)),
            priority,
            requirements: requirements
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>(),
            ..Default::default()
        },
    )
    .await
}

/// Waits until the pending request's reason is `reason` and returns the request.
async fn wait_reason(server: &TestServer, id: &str, reason: &str) -> WorkRequest {
    wait_for(
        server,
        id,
        &format!("to wait because {reason:?}"),
        Duration::from_secs(30),
        |request| status(request) == WorkRequestStatus::Pending && request.pending_reason == reason,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_requests_start_by_priority_and_an_admin_bump_moves_one_ahead() {
    let server = TestServer::start().await;
    let _worker = server
        .sim_worker(SimOptions::default().concurrency(1))
        .await;

    // Occupy the only slot so everything after it queues up.
    let blocker = submit(&server, &["sleep", "300"], 0, &[]).await;
    wait_started(&server, &blocker.id).await;

    let quick = ["true"];
    let low = submit(&server, &quick, -5, &[]).await;
    let high = submit(&server, &quick, 10, &[]).await;
    let mid = submit(&server, &quick, 0, &[]).await;
    let bumped = submit(&server, &quick, 0, &[]).await;
    // Behind `high` and the older `mid` of equal priority until the admin raises it.
    assert_eq!(get(&server, &bumped.id).await.queue_position, 3);
    let raised = server
        .work_requests(&server.admin_token)
        .await
        .adjust_priority(AdjustPriorityRequest {
            id: bumped.id.clone(),
            delta: 20,
            set: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            raised.priority_base,
            raised.priority_adjustment,
            raised.priority
        ),
        (0, 20, 20)
    );
    assert_eq!(raised.queue_position, 1);

    // `berth priority ID -5` lowers the adjustment by 5 (it must not read -5 as a flag).
    let lowered = berth(&server).json(&["priority", &low.id, "-5"]).await;
    assert_eq!(lowered["priority_adjustment"], -5, "{lowered}");
    assert_eq!(lowered["priority"], -10, "{lowered}");
    assert_eq!(lowered["queue_position"], 4, "{lowered}");

    let order = [&bumped.id, &high.id, &mid.id, &low.id];
    for (place, id) in order.iter().enumerate() {
        let request = wait_reason(&server, id, "all 1 matching worker is busy").await;
        assert_eq!(request.queue_position as usize, place + 1, "{id}");
    }

    // `berth queue -o json` lists the same order, positions and reasons.
    let listed = berth(&server).json(&["queue"]).await;
    let entries = listed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{listed}");
    for (place, (entry, id)) in entries.iter().zip(order).enumerate() {
        assert_eq!(entry["position"], place + 1, "{listed}");
        assert_eq!(entry["work_request"]["id"], id.as_str(), "{listed}");
        assert_eq!(
            entry["pending_reason"], "all 1 matching worker is busy",
            "{listed}"
        );
    }
    let table = berth(&server).ok(&["queue"]).await;
    assert!(table.starts_with("POS"), "{table}");
    assert!(table.contains(&bumped.id), "{table}");

    // Free the slot: the four must start one at a time in queue order.
    cancel(&server, &blocker.id).await;
    let mut assigned = Vec::new();
    for id in order {
        let done = wait_terminal(&server, id).await;
        assert_eq!(done.result, WorkResult::Success as i32, "{done:?}");
        assigned.push(at(done.attempts.first().unwrap().assigned_at.as_ref()));
    }
    assert!(
        assigned.is_sorted() && assigned.windows(2).all(|pair| pair[0] != pair[1]),
        "requests were assigned out of priority order: {assigned:?}"
    );
}

/// The claim reads each requirement set's queue on its own; what a worker gets must still
/// be one queue order across all the sets it can run.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_takes_requests_of_different_requirement_sets_in_one_priority_order() {
    let server = TestServer::start().await;
    let _worker = server
        .sim_worker(
            SimOptions::default()
                .concurrency(1)
                .label("pool", "a")
                .label("arch", "x"),
        )
        .await;
    let blocker = submit(&server, &["sleep", "300"], 0, &[]).await;
    wait_started(&server, &blocker.id).await;

    let quick = ["true"];
    let both = [("pool", "a"), ("arch", "x")];
    // Interleaved over four sets the worker satisfies, and one it does not.
    let third = submit(&server, &quick, 0, &[("pool", "a")]).await;
    let never = submit(&server, &quick, 50, &[("pool", "b")]).await;
    let fifth = submit(&server, &quick, -3, &both).await;
    let first = submit(&server, &quick, 7, &[("arch", "x")]).await;
    let fourth = submit(&server, &quick, 0, &[]).await;
    let second = submit(&server, &quick, 7, &both).await;
    let sixth = submit(&server, &quick, -3, &[("pool", "a")]).await;

    cancel(&server, &blocker.id).await;
    let order = [&first, &second, &third, &fourth, &fifth, &sixth];
    let mut assigned = Vec::new();
    for request in order {
        let done = wait_terminal(&server, &request.id).await;
        assert_eq!(done.result, WorkResult::Success as i32, "{done:?}");
        assigned.push(at(done.attempts.first().unwrap().assigned_at.as_ref()));
    }
    assert!(
        assigned.is_sorted() && assigned.windows(2).all(|pair| pair[0] != pair[1]),
        "requests of different sets were assigned out of queue order: {assigned:?}"
    );
    let never = get(&server, &never.id).await;
    assert_eq!(status(&never), WorkRequestStatus::Pending, "{never:?}");
    assert_eq!(never.attempt_count, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_requirement_sends_the_request_to_the_worker_that_has_the_label() {
    let server = TestServer::start().await;
    let a = server
        .sim_worker(SimOptions::default().label("pool", "a"))
        .await;
    let b = server
        .sim_worker(SimOptions::default().label("pool", "b"))
        .await;

    for _ in 0..3 {
        let to_b = submit(&server, &["true"], 0, &[("pool", "b")]).await;
        let to_a = submit(&server, &["true"], 0, &[("pool", "a")]).await;
        let to_b = wait_terminal(&server, &to_b.id).await;
        let to_a = wait_terminal(&server, &to_a.id).await;
        assert_eq!(worker_of(&to_b), b.name);
        assert_eq!(worker_of(&to_a), a.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exclusive_worker_runs_only_requests_that_require_its_label() {
    let server = TestServer::start().await;
    let gpu = server
        .sim_worker(SimOptions::default().concurrency(1).label("gpu", "yes!"))
        .await;

    let plain = submit(&server, &["true"], 0, &[]).await;
    let wanted = submit(&server, &["true"], 0, &[("gpu", "yes")]).await;
    let wanted = wait_terminal(&server, &wanted.id).await;
    assert_eq!(wanted.result, WorkResult::Success as i32, "{wanted:?}");
    assert_eq!(worker_of(&wanted), gpu.name);

    // The plain request is older and as urgent, so the rounds that gave the GPU worker's
    // only slot to `wanted` (and refilled it after) looked at `plain` first and passed it
    // over: it stays pending with the GPU worker idle, and says why.
    let waiting = get(&server, &plain.id).await;
    assert_eq!(status(&waiting), WorkRequestStatus::Pending);
    assert_eq!(waiting.attempt_count, 0);
    assert_eq!(
        waiting.pending_reason,
        "the workers that could run it are reserved for requests that require gpu=yes"
    );

    // An ordinary worker takes it.
    let ordinary = server.sim_worker(SimOptions::default()).await;
    let plain = wait_terminal(&server, &plain.id).await;
    assert_eq!(worker_of(&plain), ordinary.name);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_no_worker_can_run_holds_back_nothing_and_names_the_missing_labels() {
    let server = TestServer::start().await;
    let worker = server
        .sim_worker(SimOptions::default().concurrency(1).label("pool", "a"))
        .await;

    // First in line by far, but nobody has nope=1.
    let stuck = submit(&server, &["true"], 1000, &[("nope", "1"), ("pool", "a")]).await;
    let behind: Vec<WorkRequest> = {
        let mut behind = Vec::new();
        for _ in 0..3 {
            behind.push(submit(&server, &["true"], 0, &[]).await);
        }
        behind
    };
    for request in &behind {
        let done = wait_terminal(&server, &request.id).await;
        assert_eq!(done.result, WorkResult::Success as i32, "{done:?}");
    }
    let stuck = get(&server, &stuck.id).await;
    assert_eq!(status(&stuck), WorkRequestStatus::Pending);
    assert_eq!(stuck.queue_position, 1);
    assert_eq!(
        stuck.pending_reason,
        "no connected worker has labels nope=1"
    );

    // Disabled, the worker no longer counts as a place to run.
    let ordinary = submit(&server, &["true"], 0, &[]).await;
    let _ = wait_terminal(&server, &ordinary.id).await;
    server
        .workers(&server.admin_token)
        .await
        .disable_worker(DisableWorkerRequest {
            name: worker.name.clone(),
        })
        .await
        .unwrap();
    let parked = submit(&server, &["true"], 0, &[("pool", "a")]).await;
    let parked = wait_reason(
        &server,
        &parked.id,
        "the matching workers are disabled or draining",
    )
    .await;
    assert_eq!(parked.queue_position, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_workers_the_queue_says_so_and_keeps_its_order() {
    let server = TestServer::start().await;
    let first = submit(&server, &["true"], 5, &[]).await;
    let second = submit(&server, &["true"], 5, &[]).await;
    let urgent = submit(&server, &["true"], 6, &[]).await;
    for (id, place) in [(&urgent.id, 1), (&first.id, 2), (&second.id, 3)] {
        let request = get(&server, id).await;
        assert_eq!(request.queue_position, place, "{id}");
        assert_eq!(request.pending_reason, "no worker is connected");
    }

    let mut client = server.work_requests(&server.admin_token).await;
    let page = client
        .list_queue(ListQueueRequest {
            workspace: "default".into(),
            limit: 2,
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = page
        .entries
        .iter()
        .map(|e| e.work_request.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(ids, [urgent.id.as_str(), first.id.as_str()]);
    assert_eq!(page.entries[1].position, 2);
    assert_eq!(page.entries[1].pending_reason, "no worker is connected");

    let unknown = client
        .list_queue(ListQueueRequest {
            workspace: "nowhere".into(),
            limit: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let too_many = client
        .list_queue(ListQueueRequest {
            workspace: String::new(),
            limit: 1001,
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);

    // A blocked request is not in the queue; it says what it waits for.
    let blocked = submit_request(
        &server,
        SubmitWorkRequestRequest {
            spec: Some(spec(&["true"])),
            after: vec![first.id.clone()],
            ..Default::default()
        },
    )
    .await;
    let blocked = get(&server, &blocked.id).await;
    assert_eq!(status(&blocked), WorkRequestStatus::Blocked);
    assert_eq!(blocked.queue_position, 0);
    assert!(
        blocked
            .pending_reason
            .starts_with(&format!("waiting on dependency {}", first.id)),
        "{blocked:?}"
    );

    // A user may look at the queue too.
    let (_, user) = server.create_token(Role::User, "alice").await;
    let seen = server
        .work_requests(&user)
        .await
        .list_queue(ListQueueRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.entries.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_admins_adjust_priorities_and_only_of_live_requests_within_range() {
    let server = TestServer::start().await;
    let request = submit(&server, &["true"], 1000, &[]).await;
    let adjust = |delta: i32, set: Option<i32>| AdjustPriorityRequest {
        id: request.id.clone(),
        delta,
        set,
    };

    let (_, user) = server.create_token(Role::User, "alice").await;
    let refused = server
        .work_requests(&user)
        .await
        .adjust_priority(adjust(1, None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let mut admin = server.work_requests(&server.admin_token).await;
    let set = admin
        .adjust_priority(adjust(0, Some(9000)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((set.priority_adjustment, set.priority), (9000, 10_000));
    let too_high = admin.adjust_priority(adjust(1, None)).await.unwrap_err();
    assert_eq!(too_high.code(), Code::InvalidArgument);
    assert!(too_high.message().contains("10000"), "{too_high:?}");
    let down = admin
        .adjust_priority(adjust(-100, None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(down.priority_adjustment, 8900);

    let missing = admin
        .adjust_priority(AdjustPriorityRequest {
            id: uuid::Uuid::now_v7().to_string(),
            delta: 1,
            set: None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    cancel(&server, &request.id).await;
    let terminal = admin.adjust_priority(adjust(1, None)).await.unwrap_err();
    assert_eq!(terminal.code(), Code::FailedPrecondition);
    let aborted = get(&server, &request.id).await;
    assert_eq!(aborted.queue_position, 0);
    assert_eq!(aborted.pending_reason, "");
}
