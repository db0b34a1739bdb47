//! The simulated worker against the real server: what the scheduling tests rely on it
//! for. A spec's command ends a simulated job the way the server would hear it from a real
//! worker running the test image (exit codes, timeouts, cancels, output through
//! `AppendLog`), a command it cannot run says so instead of pretending, and a graceful
//! stop drains like SIGTERM on `berth-worker`. That the real worker reports the same
//! outcomes is `execution.rs`'s part.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::time::Duration;

use berth_common::proto::{WorkRequestStatus, WorkResult};
use berth_tests::logs::{STDOUT, SYSTEM};
use berth_tests::{
    Logs, SimOptions, TestServer, cancel, get, open_logs, rest_of, result, secs, sh, spec, status,
    submit, wait_for, wait_started, wait_status, wait_terminal,
};
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread")]
async fn a_simulated_job_ends_with_the_exit_code_its_command_gives() {
    let server = TestServer::start().await;
    let _worker = server
        .sim_worker(SimOptions::default().concurrency(4))
        .await;
    let cases = [
        (spec(&["true"]), WorkResult::Success, 0),
        (spec(&[]), WorkResult::Success, 0),
        (spec(&["false"]), WorkResult::Failure, 1),
        (sh("exit 3"), WorkResult::Failure, 3),
        (sh("sleep 0.1; echo done; exit 7"), WorkResult::Failure, 7),
    ];
    let mut submitted = Vec::new();
    for (spec, _, _) in &cases {
        submitted.push(submit(&server, spec.clone()).await);
    }
    for ((spec, wanted, code), request) in cases.iter().zip(submitted) {
        let done = wait_terminal(&server, &request.id).await;
        assert_eq!(result(&done), *wanted, "{:?}: {done:?}", spec.command);
        assert_eq!(done.exit_code, Some(*code), "{:?}: {done:?}", spec.command);
        let attempt = &done.attempts[0];
        assert!(!attempt.container_id.is_empty(), "{attempt:?}");
        assert!(attempt.started_at.is_some() && attempt.finished_at.is_some());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_the_simulator_cannot_run_fails_to_start_naming_it() {
    let server = TestServer::start().await;
    let _worker = server.sim_worker(SimOptions::default()).await;
    let request = submit(&server, sh("seq 1 3 | wc -l")).await;
    let done = wait_terminal(&server, &request.id).await;
    assert_eq!(result(&done), WorkResult::Error, "{done:?}");
    assert_eq!(done.reason, "start-failed", "{done:?}");
    assert!(
        done.message.contains("simulated worker") && done.message.contains("'|'"),
        "{done:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_simulated_job_past_its_timeout_fails_with_reason_timeout() {
    let server = TestServer::start().await;
    let _worker = server.sim_worker(SimOptions::default()).await;
    let mut job = spec(&["sleep", "60"]);
    job.timeout = Some(secs(1));
    let request = submit(&server, job).await;
    let done = wait_terminal(&server, &request.id).await;
    assert_eq!(status(&done), WorkRequestStatus::Completed, "{done:?}");
    assert_eq!(result(&done), WorkResult::Failure, "{done:?}");
    assert_eq!(done.reason, "timeout", "{done:?}");
    let system = Logs::read(&server, &request.id).await.text(SYSTEM);
    assert!(
        system.contains("timeout after 1s"),
        "system stream: {system:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_simulated_jobs_output_is_followed_live_and_a_cancel_stops_it() {
    let server = TestServer::start().await;
    let worker = server.sim_worker(SimOptions::default()).await;
    let request = submit(&server, sh("echo first; sleep 60; echo never")).await;
    let mut follow = open_logs(&server, &request.id, true).await;
    let chunk = tokio::time::timeout(Duration::from_secs(30), follow.next())
        .await
        .expect("\"first\" never reached the follower")
        .expect("the follow stream ended")
        .unwrap();
    assert_eq!(
        (chunk.stream, chunk.data.as_slice()),
        (STDOUT, &b"first\n"[..])
    );
    assert_eq!(
        status(&get(&server, &request.id).await),
        WorkRequestStatus::Running
    );

    cancel(&server, &request.id).await;
    worker.wait_cancelled(&request.id, 1).await;
    let rest = rest_of(&mut follow, Duration::from_secs(30)).await;
    assert!(rest.iter().all(|c| c.stream != STDOUT), "{rest:?}");
    // The request ended with the cancel; the worker's report of the stop follows.
    let ended = wait_for(
        &server,
        &request.id,
        "to have its attempt reported stopped",
        Duration::from_secs(30),
        |request| request.attempts[0].finished_at.is_some(),
    )
    .await;
    assert_eq!(ended.attempts[0].reason, "cancelled", "{ended:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_stop_finishes_short_jobs_and_hands_back_those_past_the_drain_timeout() {
    let server = TestServer::start().await;
    let mut worker = server
        .sim_worker(
            SimOptions::default()
                .concurrency(2)
                .drain_timeout(Duration::from_secs(1)),
        )
        .await;
    let short = submit(&server, spec(&["sleep", "0.2"])).await;
    let long = submit(&server, spec(&["sleep", "60"])).await;
    wait_started(&server, &short.id).await;
    wait_started(&server, &long.id).await;

    worker.stop().await;
    // Reports are applied a moment after they are read: wait for them, not for the stop.
    let short = wait_status(&server, &short.id, WorkRequestStatus::Completed).await;
    assert_eq!(result(&short), WorkResult::Success, "{short:?}");
    let long = wait_status(&server, &long.id, WorkRequestStatus::Pending).await;
    assert_eq!(long.attempts.len(), 1, "{long:?}");
    assert_eq!(long.attempts[0].reason, "interrupted", "{long:?}");
    // Nothing new went to the worker once it said GoingAway.
    assert_eq!(worker.seen().assigned.len(), 2, "{:?}", worker.seen());
    server.stop().await;
}
