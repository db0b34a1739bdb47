//! Draining a worker, by an operator (`berth worker drain NAME`) or by SIGTERM on the
//! worker: what it runs finishes, it takes nothing new, and it leaves cleanly. With a
//! drain deadline that passes, what still runs is stopped and goes back to the queue.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::time::Duration;

use berth_common::proto::{
    CancelWorkRequestRequest, ContainerSpec, PullPolicy, WorkRequest, WorkRequestStatus, WorkResult,
};
use berth_tests::{
    TEST_IMAGE, TestServer, TestWorker, ensure_test_image, eventually, get, result, run_binary,
    status, submit, worker_containers,
};
use serde_json::Value;

const MIB: u64 = 1024 * 1024;

fn secs(seconds: i64) -> prost_types::Duration {
    prost_types::Duration { seconds, nanos: 0 }
}

/// A spec running `command` in the test image, never pulling, with a short grace period.
fn spec(command: &[&str]) -> ContainerSpec {
    ContainerSpec {
        image: TEST_IMAGE.to_owned(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        pull_policy: PullPolicy::Never as i32,
        stop_grace_period: Some(secs(2)),
        memory_bytes: Some(64 * MIB),
        ..Default::default()
    }
}

async fn wait_status(server: &TestServer, id: &str, wanted: WorkRequestStatus) -> WorkRequest {
    eventually(
        &format!("work request {id} to be {wanted:?}"),
        Duration::from_secs(60),
        || async {
            let request = get(server, id).await;
            (status(&request) == wanted).then_some(request)
        },
    )
    .await
}

/// Waits until the request runs in a container.
async fn wait_running(server: &TestServer, id: &str) -> WorkRequest {
    eventually(
        &format!("work request {id} to run in a container"),
        Duration::from_secs(60),
        || async {
            let request = get(server, id).await;
            let started = request
                .attempts
                .last()
                .is_some_and(|a| !a.container_id.is_empty());
            (status(&request) == WorkRequestStatus::Running && started).then_some(request)
        },
    )
    .await
}

/// A server with one-second heartbeats (workers learn quickly that reports arrived).
async fn start_server() -> TestServer {
    ensure_test_image().await;
    TestServer::start_with(|config| {
        config.agent.heartbeat_interval = Duration::from_secs(1);
    })
    .await
}

/// Runs `berth --server URL --token ADMIN ARGS... -o json`; returns (status, JSON or
/// Null, stderr).
async fn berth_json(server: &TestServer, args: &[&str]) -> (i32, Value, String) {
    let mut line = vec![
        "--server",
        server.url.as_str(),
        "--token",
        &server.admin_token,
    ];
    line.extend_from_slice(args);
    line.extend_from_slice(&["-o", "json"]);
    let (code, out, err) = run_binary("berth", &line, &[]).await;
    (code, serde_json::from_str(&out).unwrap_or(Value::Null), err)
}

async fn no_containers_left(worker: &TestWorker) {
    let name = worker.name.clone();
    eventually(
        &format!("no container of worker {name} to remain"),
        Duration::from_secs(30),
        || async { worker_containers(&name).await.is_empty().then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_worker_finishes_its_job_takes_nothing_new_until_enabled() {
    let server = start_server().await;
    let mut worker = TestWorker::start(&server, &[]).await;
    worker.wait_connected(&server).await;
    let first = submit(&server, spec(&["sleep", "3"])).await;
    wait_running(&server, &first.id).await;

    let (code, drained, err) = berth_json(&server, &["worker", "drain", &worker.name]).await;
    assert_eq!(code, 0, "worker drain: {err}");
    assert_eq!(drained["draining"], Value::Bool(true), "{drained}");
    let (code, shown, err) = berth_json(&server, &["worker", "get", &worker.name]).await;
    assert_eq!(code, 0, "worker get: {err}");
    assert_eq!(shown["draining"], Value::Bool(true), "{shown}");
    assert_eq!(shown["enabled"], Value::Bool(true), "{shown}");

    // Submitted during the drain: the worker has a free slot once the first job ends,
    // and still takes nothing.
    let second = submit(&server, spec(&["true"])).await;
    let first = wait_status(&server, &first.id, WorkRequestStatus::Completed).await;
    assert_eq!(result(&first), WorkResult::Success, "{first:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = get(&server, &second.id).await;
    assert_eq!(status(&waiting), WorkRequestStatus::Pending, "{waiting:?}");
    assert!(waiting.attempts.is_empty(), "{waiting:?}");

    // An operator's drain survives the worker restarting and reconnecting.
    worker.terminate(Duration::from_secs(30)).await;
    worker.spawn();
    worker.wait_connected(&server).await;
    let (_, shown, _) = berth_json(&server, &["worker", "get", &worker.name]).await;
    assert_eq!(shown["draining"], Value::Bool(true), "{shown}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(get(&server, &second.id).await.attempts.is_empty());

    // Enabling ends the drain.
    let (code, enabled, err) = berth_json(&server, &["worker", "enable", &worker.name]).await;
    assert_eq!(code, 0, "worker enable: {err}");
    assert_eq!(enabled["draining"], Value::Bool(false), "{enabled}");
    let second = wait_status(&server, &second.id, WorkRequestStatus::Completed).await;
    assert_eq!(result(&second), WorkResult::Success, "{second:?}");
    assert_eq!(second.attempts[0].worker, worker.name, "{second:?}");

    let (code, _, err) = berth_json(&server, &["worker", "drain", "nosuch"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("error:") && err.contains("NOT_FOUND"),
        "{err}"
    );

    no_containers_left(&worker).await;
    worker.terminate(Duration::from_secs(30)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_running_job_finish_takes_nothing_new_and_exits_cleanly() {
    let server = start_server().await;
    let mut worker = TestWorker::start(&server, &["--concurrency", "1"]).await;
    worker.wait_connected(&server).await;
    let first = submit(&server, spec(&["sleep", "3"])).await;
    wait_running(&server, &first.id).await;
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

    no_containers_left(&worker).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_past_the_drain_timeout_stops_the_job_and_requeues_it() {
    let server = start_server().await;
    let mut worker = TestWorker::start(&server, &["--drain-timeout", "1s"]).await;
    worker.wait_connected(&server).await;
    let submitted = submit(&server, spec(&["sleep", "60"])).await;
    wait_running(&server, &submitted.id).await;

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
    no_containers_left(&worker).await;

    // Another worker runs it again.
    let other = TestWorker::start(&server, &[]).await;
    let again = wait_running(&server, &submitted.id).await;
    assert_eq!(again.attempts.len(), 2, "{again:?}");
    assert_eq!(again.attempts[1].worker, other.name, "{again:?}");
    server
        .work_requests(&server.admin_token)
        .await
        .cancel_work_request(CancelWorkRequestRequest {
            id: submitted.id.clone(),
        })
        .await
        .unwrap();
    let mut other = other;
    no_containers_left(&other).await;
    other.terminate(Duration::from_secs(30)).await;
    server.stop().await;
}
