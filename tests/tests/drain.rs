//! Draining a worker, by an operator (`berth worker drain NAME`) or by SIGTERM on the
//! worker: what it runs finishes, it takes nothing new, and it leaves cleanly. With a
//! drain deadline that passes, what still runs is stopped and goes back to the queue.
//!
//! An operator's drain is the server's business, so it is tested with simulated workers.
//! SIGTERM is the `berth-worker` process's, so those tests run the real worker on Docker.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::time::Duration;

use berth_common::proto::{WorkRequestStatus, WorkResult};
use berth_tests::{
    SimOptions, TestServer, TestWorker, berth, cancel, ensure_test_image, get, quick_heartbeats,
    result, spec, status, submit, wait_no_containers, wait_started, wait_status, witness_a_round,
    witness_worker,
};
use serde_json::Value;

/// A server with one-second heartbeats (workers learn quickly that reports arrived).
async fn start_server() -> TestServer {
    TestServer::start_with(quick_heartbeats).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_worker_finishes_its_job_takes_nothing_new_until_enabled() {
    let server = start_server().await;
    let mut worker = server.sim_worker(SimOptions::default()).await;
    let witness = witness_worker(&server).await;
    let cli = berth(&server);
    let first = submit(&server, spec(&["sleep", "1"])).await;
    wait_started(&server, &first.id).await;

    let drained = cli.json(&["worker", "drain", &worker.name]).await;
    assert_eq!(drained["draining"], Value::Bool(true), "{drained}");
    let shown = cli.json(&["worker", "get", &worker.name]).await;
    assert_eq!(shown["draining"], Value::Bool(true), "{shown}");
    assert_eq!(shown["enabled"], Value::Bool(true), "{shown}");

    // Submitted during the drain: the worker has a free slot once the first job ends,
    // and still takes nothing.
    let second = submit(&server, spec(&["true"])).await;
    let first = wait_status(&server, &first.id, WorkRequestStatus::Completed).await;
    assert_eq!(result(&first), WorkResult::Success, "{first:?}");
    witness_a_round(&server, &witness).await;
    let waiting = get(&server, &second.id).await;
    assert_eq!(status(&waiting), WorkRequestStatus::Pending, "{waiting:?}");
    assert!(waiting.attempts.is_empty(), "{waiting:?}");

    // An operator's drain survives the worker restarting and reconnecting.
    worker.stop().await;
    worker.start_again().await;
    let shown = cli.json(&["worker", "get", &worker.name]).await;
    assert_eq!(shown["connected"], Value::Bool(true), "{shown}");
    assert_eq!(shown["draining"], Value::Bool(true), "{shown}");
    witness_a_round(&server, &witness).await;
    assert!(get(&server, &second.id).await.attempts.is_empty());

    // Enabling ends the drain.
    let enabled = cli.json(&["worker", "enable", &worker.name]).await;
    assert_eq!(enabled["draining"], Value::Bool(false), "{enabled}");
    let second = wait_status(&server, &second.id, WorkRequestStatus::Completed).await;
    assert_eq!(result(&second), WorkResult::Success, "{second:?}");
    assert_eq!(second.attempts[0].worker, worker.name, "{second:?}");
    let seen = worker.seen();
    assert_eq!(
        seen.rejected,
        [],
        "the server offered a draining worker work"
    );

    cli.run(&["worker", "drain", "nosuch"])
        .await
        .assert_one_error_line("drain an unknown worker", 1, &["NOT_FOUND"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_running_job_finish_takes_nothing_new_and_exits_cleanly() {
    ensure_test_image().await;
    let server = start_server().await;
    let mut worker = TestWorker::start(&server, &["--concurrency", "1"]).await;
    worker.wait_connected(&server).await;
    let first = submit(&server, spec(&["sleep", "3"])).await;
    wait_started(&server, &first.id).await;
    // Waits for the only slot.
    let second = submit(&server, spec(&["true"])).await;

    let exit = worker.terminate(Duration::from_secs(60)).await.unwrap();
    assert!(
        exit.success(),
        "worker exit: {exit:?}; log:\n{}",
        worker.log()
    );
    let first = get(&server, &first.id).await;
    assert_eq!(status(&first), WorkRequestStatus::Completed, "{first:?}");
    assert_eq!(result(&first), WorkResult::Success, "{first:?}");
    let second = get(&server, &second.id).await;
    assert_eq!(status(&second), WorkRequestStatus::Pending, "{second:?}");
    assert!(second.attempts.is_empty(), "{second:?}");

    wait_no_containers(&worker.name).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_past_the_drain_timeout_stops_the_job_and_requeues_it() {
    ensure_test_image().await;
    let server = start_server().await;
    let mut worker = TestWorker::start(&server, &["--drain-timeout", "1s"]).await;
    worker.wait_connected(&server).await;
    let submitted = submit(&server, spec(&["sleep", "60"])).await;
    wait_started(&server, &submitted.id).await;

    let exit = worker.terminate(Duration::from_secs(30)).await.unwrap();
    assert!(
        exit.success(),
        "worker exit: {exit:?}; log:\n{}",
        worker.log()
    );
    let requeued = get(&server, &submitted.id).await;
    assert_eq!(
        status(&requeued),
        WorkRequestStatus::Pending,
        "{requeued:?}"
    );
    assert_eq!(requeued.attempts.len(), 1, "{requeued:?}");
    assert_eq!(requeued.attempts[0].reason, "interrupted", "{requeued:?}");
    assert!(requeued.attempts[0].finished_at.is_some(), "{requeued:?}");
    wait_no_containers(&worker.name).await;

    // Another worker runs it again (where it runs no longer matters: a simulated one).
    let other = server.sim_worker(SimOptions::default()).await;
    let again = wait_started(&server, &submitted.id).await;
    assert_eq!(again.attempts.len(), 2, "{again:?}");
    assert_eq!(again.attempts[1].worker, other.name, "{again:?}");
    cancel(&server, &submitted.id).await;
    other.wait_cancelled(&submitted.id, 2).await;
    server.stop().await;
}
