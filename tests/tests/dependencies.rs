//! Dependencies, manual approval and retries, end to end: a real server and simulated
//! workers (what runs does not matter here, only when and whether). A dependant must not
//! run before its dependency has completed, must be aborted (transitively) when a
//! dependency fails unless that one allows failure, a manual request must wait for a
//! decision, and retries (by hand and automatic, with backoff) must make new attempts on
//! the same request.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::HashMap;
use std::time::Duration;

use berth_common::proto::{
    RetryWorkRequestRequest, Role, SubmitWorkRequestRequest, UnblockStrategy,
    UnblockWorkRequestRequest, WorkRequest, WorkRequestStatus, WorkResult,
};
use berth_tests::{
    SimOptions, TEST_IMAGE, TestServer, assert_code, at, berth, cancel, get, result, spec, status,
    submit_request as submit, try_submit, wait_for, wait_terminal,
};
use tonic::Code;

/// A request for `command` in the test image, after the requests `after`.
fn request(command: &[&str], after: &[&str]) -> SubmitWorkRequestRequest {
    SubmitWorkRequestRequest {
        spec: Some(spec(command)),
        after: after.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

/// A request no worker can take (it requires a label nobody has): it stays pending.
fn never_runs() -> SubmitWorkRequestRequest {
    SubmitWorkRequestRequest {
        spec: Some(spec(&["true"])),
        requirements: HashMap::from([("nobody-has".to_owned(), "this".to_owned())]),
        ..Default::default()
    }
}

async fn unblock(
    server: &TestServer,
    token: &str,
    id: &str,
    accept: bool,
) -> Result<WorkRequest, tonic::Status> {
    server
        .work_requests(token)
        .await
        .unblock_work_request(UnblockWorkRequestRequest {
            id: id.to_owned(),
            accept,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn retry(server: &TestServer, token: &str, id: &str) -> Result<WorkRequest, tonic::Status> {
    server
        .work_requests(token)
        .await
        .retry_work_request(RetryWorkRequestRequest { id: id.to_owned() })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dependant_stays_blocked_until_its_dependency_succeeds_then_runs() {
    let server = TestServer::start().await;
    let _worker = server
        .sim_worker(SimOptions::default().concurrency(2))
        .await;

    let a = submit(&server, request(&["sh", "-c", "sleep 2; echo a"], &[])).await;
    let b = submit(&server, request(&["echo", "b"], &[&a.id])).await;
    assert_eq!(status(&b), WorkRequestStatus::Blocked);
    assert_eq!(b.depends_on, std::slice::from_ref(&a.id));

    // With a free slot on the worker, B still does not run while A does.
    let seen = get(&server, &b.id).await;
    assert_eq!(status(&seen), WorkRequestStatus::Blocked);
    assert!(
        seen.pending_reason
            .contains(&format!("waiting on dependency {}", a.id)),
        "{:?}",
        seen.pending_reason
    );

    let b = wait_terminal(&server, &b.id).await;
    let a = get(&server, &a.id).await;
    assert_eq!(result(&a), WorkResult::Success);
    assert_eq!(result(&b), WorkResult::Success, "{b:?}");
    assert!(b.pending_reason.is_empty());
    let a_finished = at(a.attempts[0].finished_at.as_ref());
    let b_assigned = at(b.attempts[0].assigned_at.as_ref());
    assert!(
        b_assigned >= a_finished,
        "B was assigned at {b_assigned:?}, before A finished at {a_finished:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_dependency_aborts_its_dependants_transitively() {
    let server = TestServer::start().await;
    let _worker = server.sim_worker(SimOptions::default()).await;

    let a = submit(&server, request(&["sh", "-c", "sleep 1; exit 3"], &[])).await;
    let b = submit(&server, request(&["echo", "b"], &[&a.id])).await;
    let c = submit(&server, request(&["echo", "c"], &[&b.id])).await;
    assert_eq!(status(&c), WorkRequestStatus::Blocked);

    let c = wait_terminal(&server, &c.id).await;
    let a = get(&server, &a.id).await;
    let b = get(&server, &b.id).await;
    assert_eq!(result(&a), WorkResult::Failure);
    for (dependant, dependency) in [(&b, &a), (&c, &b)] {
        assert_eq!(status(dependant), WorkRequestStatus::Aborted);
        assert_eq!(dependant.reason, "dependency-failed");
        assert!(
            dependant.message.contains(&dependency.id),
            "{:?} should name {}",
            dependant.message,
            dependency.id
        );
        assert_eq!(
            dependant.attempt_count, 0,
            "a dependant of a failure never ran"
        );
    }

    // Depending on something that already failed is refused up front.
    let late = try_submit(&server, &server.admin_token, request(&["true"], &[&a.id])).await;
    assert_code(late, Code::FailedPrecondition, &a.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_failure_lets_dependants_run() {
    let server = TestServer::start().await;
    let _worker = server.sim_worker(SimOptions::default()).await;

    let a = submit(
        &server,
        SubmitWorkRequestRequest {
            allow_failure: true,
            ..request(&["sh", "-c", "exit 1"], &[])
        },
    )
    .await;
    assert!(a.allow_failure);
    let b = submit(&server, request(&["echo", "b"], &[&a.id])).await;
    let b = wait_terminal(&server, &b.id).await;
    assert_eq!(result(&get(&server, &a.id).await), WorkResult::Failure);
    assert_eq!(result(&b), WorkResult::Success, "{b:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_dependency_aborts_its_dependants_unless_it_allows_failure() {
    let server = TestServer::start().await;
    let a = submit(&server, never_runs()).await;
    let b = submit(&server, request(&["true"], &[&a.id])).await;
    let tolerant = submit(
        &server,
        SubmitWorkRequestRequest {
            allow_failure: true,
            ..never_runs()
        },
    )
    .await;
    let c = submit(&server, request(&["true"], &[&tolerant.id])).await;

    cancel(&server, &a.id).await;
    let b = get(&server, &b.id).await;
    assert_eq!(status(&b), WorkRequestStatus::Aborted);
    assert_eq!(b.reason, "dependency-failed");
    assert!(b.message.contains(&a.id), "{:?}", b.message);

    cancel(&server, &tolerant.id).await;
    assert_eq!(
        status(&get(&server, &c.id).await),
        WorkRequestStatus::Pending
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_request_waits_for_a_decision() {
    let server = TestServer::start().await;
    let _worker = server.sim_worker(SimOptions::default()).await;
    let manual = |after: &[&str]| SubmitWorkRequestRequest {
        unblock: UnblockStrategy::Manual as i32,
        ..request(&["echo", "approved"], after)
    };

    // No dependencies: blocked for approval, and a connected worker does not take it.
    let m = submit(&server, manual(&[])).await;
    assert_eq!(status(&m), WorkRequestStatus::Blocked);
    assert_eq!(m.unblock, UnblockStrategy::Manual as i32);
    // A request submitted after it runs to its end: the scheduler has had its rounds with
    // the worker idle since, and passed the manual one over.
    let witness = submit(&server, request(&["true"], &[])).await;
    assert_eq!(
        result(&wait_terminal(&server, &witness.id).await),
        WorkResult::Success
    );
    let seen = get(&server, &m.id).await;
    assert_eq!(status(&seen), WorkRequestStatus::Blocked);
    assert!(
        seen.pending_reason.contains("blocked for manual approval"),
        "{:?}",
        seen.pending_reason
    );
    // Someone else's request cannot be decided by a user.
    let (_, user) = server.create_token(Role::User, "mallory").await;
    server.set_role("default", "mallory", "viewer").await;
    assert_code(
        unblock(&server, &user, &m.id, true).await,
        Code::PermissionDenied,
        "needs the contributor role; you are viewer",
    );
    let accepted = unblock(&server, &server.admin_token, &m.id, true)
        .await
        .unwrap();
    // The answer is read after the scheduler was woken: the idle worker may have taken
    // the request already.
    assert!(
        matches!(
            status(&accepted),
            WorkRequestStatus::Pending | WorkRequestStatus::Running
        ),
        "{accepted:?}"
    );
    let done = wait_terminal(&server, &m.id).await;
    assert_eq!(result(&done), WorkResult::Success);
    // Deciding twice is refused.
    assert_code(
        unblock(&server, &server.admin_token, &m.id, true).await,
        Code::FailedPrecondition,
        "not blocked",
    );

    // Accepting before the dependencies are done is refused, naming the dependency.
    let a = submit(&server, never_runs()).await;
    let waiting = submit(&server, manual(&[&a.id])).await;
    let seen = get(&server, &waiting.id).await;
    assert!(
        seen.pending_reason.contains(&a.id) && seen.pending_reason.contains("manual approval"),
        "{:?}",
        seen.pending_reason
    );
    assert_code(
        unblock(&server, &server.admin_token, &waiting.id, true).await,
        Code::FailedPrecondition,
        &format!("still waiting on dependency {}", a.id),
    );
    // A request waiting on its dependencies only is not for deciding.
    let plain = submit(&server, request(&["true"], &[&a.id])).await;
    assert_code(
        unblock(&server, &server.admin_token, &plain.id, true).await,
        Code::FailedPrecondition,
        "not on approval",
    );

    // Rejecting aborts it and its dependants.
    let r = submit(&server, manual(&[])).await;
    let after_r = submit(&server, request(&["true"], &[&r.id])).await;
    let rejected = unblock(&server, &server.admin_token, &r.id, false)
        .await
        .unwrap();
    assert_eq!(status(&rejected), WorkRequestStatus::Aborted);
    assert_eq!(rejected.reason, "rejected");
    let after_r = get(&server, &after_r.id).await;
    assert_eq!(status(&after_r), WorkRequestStatus::Aborted);
    assert_eq!(after_r.reason, "dependency-failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_runs_a_failed_request_again_as_its_next_attempt() {
    let server = TestServer::start().await;
    let _worker = server.sim_worker(SimOptions::default()).await;

    let failing = submit(&server, request(&["sh", "-c", "echo try; exit 1"], &[])).await;
    let first = wait_terminal(&server, &failing.id).await;
    assert_eq!(result(&first), WorkResult::Failure);
    assert_eq!(first.attempt_count, 1);

    let (_, user) = server.create_token(Role::User, "mallory").await;
    server.set_role("default", "mallory", "viewer").await;
    assert_code(
        retry(&server, &user, &failing.id).await,
        Code::PermissionDenied,
        "needs the contributor role; you are viewer",
    );

    let retried = retry(&server, &server.admin_token, &failing.id)
        .await
        .unwrap();
    assert!(
        matches!(
            status(&retried),
            WorkRequestStatus::Pending | WorkRequestStatus::Running
        ),
        "{retried:?}"
    );
    assert_eq!(retried.result, WorkResult::Unspecified as i32);
    assert!(retried.completed_at.is_none());
    let second = wait_for(
        &server,
        &failing.id,
        "to end after its retry",
        Duration::from_secs(60),
        |request| request.attempt_count == 2 && status(request) == WorkRequestStatus::Completed,
    )
    .await;
    assert_eq!(result(&second), WorkResult::Failure);
    assert_eq!(second.attempts.len(), 2);
    assert_eq!(second.attempts[1].number, 2);
    assert_eq!(second.attempts[1].exit_code, Some(1));
    assert!(at(second.attempts[1].assigned_at.as_ref()) >= at(first.completed_at.as_ref()));

    // Success and not-yet-completed requests are refused.
    let ok = submit(&server, request(&["true"], &[])).await;
    wait_terminal(&server, &ok.id).await;
    assert_code(
        retry(&server, &server.admin_token, &ok.id).await,
        Code::FailedPrecondition,
        "completed successfully",
    );
    let pending = submit(&server, never_runs()).await;
    assert_code(
        retry(&server, &server.admin_token, &pending.id).await,
        Code::FailedPrecondition,
        "has not completed",
    );
    // An aborted request goes back to the queue.
    cancel(&server, &pending.id).await;
    let again = retry(&server, &server.admin_token, &pending.id)
        .await
        .unwrap();
    assert_eq!(status(&again), WorkRequestStatus::Pending);
    assert!(again.reason.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn automatic_retries_back_off_and_then_end_in_failure() {
    let server = TestServer::start().await;
    let _worker = server.sim_worker(SimOptions::default()).await;

    let backoff_ms = 1500;
    let submitted = submit(
        &server,
        SubmitWorkRequestRequest {
            retries: 2,
            retry_backoff: Some(prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000,
            }),
            ..request(&["sh", "-c", "exit 4"], &[])
        },
    )
    .await;
    assert_eq!(submitted.retries_left, 2);
    let done = wait_terminal(&server, &submitted.id).await;
    assert_eq!(status(&done), WorkRequestStatus::Completed);
    assert_eq!(result(&done), WorkResult::Failure);
    assert_eq!(done.exit_code, Some(4));
    assert_eq!(done.attempt_count, 3, "{done:?}");
    assert_eq!(done.retries_left, 0);
    // The backoff doubles: at least 1.5 s before attempt 2, 3 s before attempt 3.
    for (n, wait) in [(1, backoff_ms), (2, 2 * backoff_ms)] {
        let finished = at(done.attempts[n - 1].finished_at.as_ref());
        let next = at(done.attempts[n].assigned_at.as_ref());
        let gap = next.duration_since(finished).unwrap_or_default();
        // 5 ms of slack: the two times are rounded by different clocks' readings.
        assert!(
            gap + Duration::from_millis(5) >= Duration::from_millis(wait),
            "attempt {} was assigned {gap:?} after attempt {n} finished; the backoff is {wait} ms",
            n + 1
        );
    }

    // A success is never retried.
    let fine = submit(
        &server,
        SubmitWorkRequestRequest {
            retries: 3,
            ..request(&["true"], &[])
        },
    )
    .await;
    let fine = wait_terminal(&server, &fine.id).await;
    assert_eq!(result(&fine), WorkResult::Success);
    assert_eq!(fine.attempt_count, 1);
    assert_eq!(fine.retries_left, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_dependencies_and_retry_settings_are_refused() {
    let server = TestServer::start().await;
    let token = server.admin_token.clone();
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_code(
        try_submit(&server, &token, request(&["true"], &[&unknown])).await,
        Code::NotFound,
        &unknown,
    );
    assert_code(
        try_submit(&server, &token, request(&["true"], &["not-an-id"])).await,
        Code::InvalidArgument,
        "after[0]",
    );
    let a = submit(&server, never_runs()).await;
    let many: Vec<&str> = std::iter::repeat_n(a.id.as_str(), 101).collect();
    assert_code(
        try_submit(&server, &token, request(&["true"], &many)).await,
        Code::InvalidArgument,
        "at most 100",
    );
    for (retries, backoff, field) in [
        (11, None, "retries"),
        (1, Some((0, 0)), "retry_backoff"),
        (1, Some((7200, 0)), "retry_backoff"),
        (1, Some((-1, 0)), "retry_backoff"),
    ] {
        let req = SubmitWorkRequestRequest {
            retries,
            retry_backoff: backoff.map(|(seconds, nanos)| prost_types::Duration { seconds, nanos }),
            ..request(&["true"], &[])
        };
        assert_code(
            try_submit(&server, &token, req).await,
            Code::InvalidArgument,
            field,
        );
    }
    // A dependency named twice counts once.
    let twice = submit(&server, request(&["true"], &[&a.id, &a.id])).await;
    assert_eq!(twice.depends_on, std::slice::from_ref(&a.id));
    // Nothing refused above was stored: only `a` and `twice` exist.
    let all = server
        .work_requests(&token)
        .await
        .list_work_requests(berth_common::proto::ListWorkRequestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.work_requests.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_submits_after_unblocks_and_retries() {
    // No worker: nothing runs, so every state below is stable.
    let server = TestServer::start().await;
    let cli = berth(&server);
    let a = cli
        .ok(&["run", "--detach", "--pull", "never", TEST_IMAGE, "true"])
        .await
        .trim()
        .to_owned();
    let b = cli
        .ok(&[
            "run",
            "--detach",
            "--after",
            &a,
            "--retries",
            "2",
            "--retry-backoff",
            "5s",
            TEST_IMAGE,
            "true",
        ])
        .await
        .trim()
        .to_owned();

    let shown = cli.json(&["get", &b]).await;
    assert_eq!(shown["status"], "blocked");
    assert_eq!(shown["depends_on"], serde_json::json!([a]));
    assert_eq!(shown["retries_left"], 2);
    assert!(
        shown["pending_reason"].as_str().unwrap().contains(&a),
        "{shown}"
    );
    let table = cli.ok(&["get", &b]).await;
    assert!(table.contains("depends_on:"), "{table}");

    // Cancelling A aborts B; B cannot be retried before A is.
    cli.json(&["cancel", &a]).await;
    assert_eq!(cli.json(&["get", &b]).await["reason"], "dependency-failed");
    cli.run(&["retry", &b]).await.assert_one_error_line(
        "retry before the dependency",
        1,
        &["retry it first"],
    );
    assert_eq!(cli.json(&["retry", &a]).await["status"], "pending");
    assert_eq!(cli.json(&["retry", &b]).await["status"], "blocked");

    // Manual approval.
    let m = cli
        .ok(&["run", "--detach", "--manual", TEST_IMAGE, "true"])
        .await
        .trim()
        .to_owned();
    assert_eq!(cli.json(&["get", &m]).await["unblock"], "manual");
    let undecided = cli.run(&["unblock", &m]).await;
    assert_eq!(
        undecided.code, 2,
        "unblock needs --accept or --reject: {}",
        undecided.stderr
    );
    let accepted = cli.json(&["unblock", &m, "--accept"]).await;
    assert_eq!(accepted["status"], "pending");
    cli.run(&["unblock", &m, "--reject"])
        .await
        .assert_one_error_line("reject an accepted request", 1, &[]);
}
