//! Execution end to end: a real server, real `berth-worker` processes and a real Docker
//! engine running the locally built busybox image.
//!
//! Each test starts its own server (fresh database) and its own worker(s), and ends by
//! checking that no container labelled for its worker is left on the host: "hosts never
//! fill up with dead containers" is a promise every scenario must keep, not just the
//! clean-up tests.
//!
//! Logs are always read back through `WorkRequestService.StreamLogs`, the way users read
//! them, never from the database (except to prove what is *not* stored).

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::time::Duration;

use berth_common::proto::{
    ContainerSpec, DisableTokenRequest, DisableWorkerRequest, EnableWorkerRequest,
    GetWorkerRequest, ListTokensRequest, ListWorkRequestsRequest, Role, WorkRequest,
    WorkRequestStatus, WorkResult,
};
use berth_tests::logs::{NOTES, STDERR, STDOUT, SYSTEM};
use berth_tests::{
    Logs, TEST_IMAGE, TestServer, TestWorker, WAIT, berth, cancel, container_exists,
    ensure_test_image, eventually, get, is_terminal, open_logs, quick_heartbeats, rest_of, result,
    secs, spec, status, submit, wait_for, wait_no_containers, wait_started, wait_terminal,
    witness_a_round, witness_worker,
};
use futures::StreamExt;

const MIB: u64 = 1024 * 1024;

// ----- helpers -----

/// Waits until the request runs in a container; returns the request and the container id.
async fn wait_running(server: &TestServer, id: &str) -> (WorkRequest, String) {
    let request = wait_started(server, id).await;
    let container = request.attempts.last().unwrap().container_id.clone();
    (request, container)
}

/// Submits `spec`, waits for its end and returns the request.
async fn run_to_end(server: &TestServer, spec: ContainerSpec) -> WorkRequest {
    let submitted = submit(server, spec).await;
    wait_terminal(server, &submitted.id).await
}

/// Every test's last word: nothing labelled for `worker` is left on the host. Then the
/// worker and the server are stopped.
async fn finish(server: TestServer, mut worker: TestWorker) {
    wait_no_containers(&worker.name).await;
    worker.terminate(Duration::from_secs(30)).await;
    server.stop().await;
}

/// A server for execution tests, with one-second heartbeats so that a worker learns
/// quickly that its reports arrived (it waits for that before a clean exit) and a
/// restarted server is noticed quickly, and one connected worker (`extra`: its flags).
async fn server_and_worker(extra: &[&str]) -> (TestServer, TestWorker) {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_heartbeats).await;
    let worker = TestWorker::start(&server, extra).await;
    worker.wait_connected(&server).await;
    (server, worker)
}

/// [`server_and_worker`] with the server's per-request log cap at `max_log_bytes`.
async fn server_and_worker_with_log_cap(max_log_bytes: u64) -> (TestServer, TestWorker) {
    ensure_test_image().await;
    let server = TestServer::start_with(|config| {
        quick_heartbeats(config);
        config.agent.max_log_bytes = max_log_bytes;
    })
    .await;
    let worker = TestWorker::start(&server, &[]).await;
    worker.wait_connected(&server).await;
    (server, worker)
}

// ----- results -----

#[tokio::test(flavor = "multi_thread")]
async fn exit_code_decides_success_or_failure_and_the_attempt_records_where_and_when() {
    let (server, worker) = server_and_worker(&["--concurrency", "2"]).await;
    let ok = submit(&server, spec(&["sh", "-c", "exit 0"])).await;
    let failing = submit(&server, spec(&["sh", "-c", "exit 3"])).await;

    let ok = wait_terminal(&server, &ok.id).await;
    assert_eq!(status(&ok), WorkRequestStatus::Completed, "{ok:?}");
    assert_eq!(result(&ok), WorkResult::Success, "{ok:?}");
    assert_eq!(ok.exit_code, Some(0), "{ok:?}");
    assert_eq!(ok.reason, "", "{ok:?}");

    let failing = wait_terminal(&server, &failing.id).await;
    assert_eq!(
        status(&failing),
        WorkRequestStatus::Completed,
        "{failing:?}"
    );
    assert_eq!(result(&failing), WorkResult::Failure, "{failing:?}");
    assert_eq!(failing.exit_code, Some(3), "{failing:?}");

    for request in [&ok, &failing] {
        assert_eq!(request.attempt_count, 1, "{request:?}");
        assert!(request.started_at.is_some(), "{request:?}");
        assert!(request.completed_at.is_some(), "{request:?}");
        let [attempt] = request.attempts.as_slice() else {
            panic!("one attempt expected: {request:?}");
        };
        assert_eq!(attempt.number, 1);
        assert_eq!(attempt.worker, worker.name, "{attempt:?}");
        assert!(!attempt.container_id.is_empty(), "{attempt:?}");
        assert_eq!(attempt.exit_code, request.exit_code, "{attempt:?}");
        let started = attempt.started_at.unwrap();
        let finished = attempt.finished_at.unwrap();
        assert!(
            (started.seconds, started.nanos) <= (finished.seconds, finished.nanos),
            "{attempt:?}"
        );
        assert!(attempt.run_duration.is_some(), "{attempt:?}");
        // The worker reports first and removes the container right after.
        eventually(
            "the finished job's container to be removed",
            Duration::from_secs(10),
            || async { (!container_exists(&attempt.container_id).await).then_some(()) },
        )
        .await;
    }
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instantly_exiting_container_reports_its_exit_code() {
    let (server, worker) = server_and_worker(&[]).await;
    let seven = run_to_end(&server, spec(&["sh", "-c", "exit 7"])).await;
    assert_eq!(seven.exit_code, Some(7), "{seven:?}");
    assert_eq!(result(&seven), WorkResult::Failure, "{seven:?}");
    let false_ = run_to_end(&server, spec(&["false"])).await;
    assert_eq!(false_.exit_code, Some(1), "{false_:?}");
    assert_eq!(result(&false_), WorkResult::Failure, "{false_:?}");
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_image_with_pull_policy_never_is_an_image_pull_error() {
    let (server, worker) = server_and_worker(&[]).await;
    let image = "berth-test/never-built:nope";
    let mut missing = spec(&["true"]);
    missing.image = image.to_owned();
    let request = run_to_end(&server, missing).await;
    assert_eq!(
        status(&request),
        WorkRequestStatus::Completed,
        "{request:?}"
    );
    assert_eq!(result(&request), WorkResult::Error, "{request:?}");
    assert_eq!(request.reason, "image-pull", "{request:?}");
    assert!(request.message.contains(image), "{request:?}");
    assert_eq!(request.exit_code, None, "{request:?}");
    finish(server, worker).await;
}

// ----- logs -----

#[tokio::test(flavor = "multi_thread")]
async fn stdout_and_stderr_are_kept_apart_each_in_order() {
    let (server, worker) = server_and_worker(&[]).await;
    let request = run_to_end(
        &server,
        spec(&[
            "sh",
            "-c",
            "echo o1; echo e1 >&2; echo o2; echo e2 >&2; echo o3",
        ]),
    )
    .await;
    assert_eq!(result(&request), WorkResult::Success, "{request:?}");
    let logs = Logs::read(&server, &request.id).await;
    assert_eq!(logs.text(STDOUT), "o1\no2\no3\n");
    assert_eq!(logs.text(STDERR), "e1\ne2\n");
    assert!(logs.chunks.iter().all(|c| c.attempt == 1));
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_sees_a_line_while_the_job_still_runs_and_its_stream_ends_with_the_job() {
    let (server, worker) = server_and_worker(&[]).await;
    let request = submit(&server, spec(&["sh", "-c", "echo first; sleep 60"])).await;
    let mut follow = open_logs(&server, &request.id, true).await;
    let mut stdout = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !stdout.ends_with(b"first\n") {
            let chunk = follow
                .next()
                .await
                .expect("the follow stream ended")
                .unwrap();
            if chunk.stream == STDOUT {
                stdout.extend_from_slice(&chunk.data);
            }
        }
    })
    .await
    .expect("\"first\" never reached the follower");
    assert_eq!(stdout, b"first\n");
    let now = get(&server, &request.id).await;
    assert_eq!(status(&now), WorkRequestStatus::Running, "{now:?}");

    cancel(&server, &request.id).await;
    // Following ends once the request has ended, with nothing more on stdout.
    let rest = rest_of(&mut follow, Duration::from_secs(30)).await;
    assert!(rest.iter().all(|c| c.stream != STDOUT), "{rest:?}");
    finish(server, worker).await;
}

/// `seq 1 n` writes this many bytes.
fn seq_len(n: u64) -> u64 {
    let mut total = 0;
    let mut low = 1;
    let mut digits = 1;
    while low <= n {
        let high = (low * 10 - 1).min(n);
        total += (high - low + 1) * (digits + 1);
        low *= 10;
        digits += 1;
    }
    total
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_mib_of_output_arrives_whole_and_in_order() {
    let (server, worker) = server_and_worker_with_log_cap(256 << 20).await;

    const LINES: u64 = 13_000_000;
    let size = seq_len(LINES);
    assert!(size >= 100 * MIB, "seq 1 {LINES} writes only {size} bytes");
    let mut expected = String::with_capacity(usize::try_from(size).unwrap());
    for i in 1..=LINES {
        expected.push_str(&i.to_string());
        expected.push('\n');
    }
    assert_eq!(expected.len() as u64, size);

    let lines = LINES.to_string();
    let mut job = spec(&["seq", "1", &lines]);
    job.timeout = Some(secs(600));
    let submitted = submit(&server, job).await;
    let request = wait_for(
        &server,
        &submitted.id,
        "to end",
        Duration::from_secs(600),
        is_terminal,
    )
    .await;
    assert_eq!(result(&request), WorkResult::Success, "{request:?}");
    assert!(!request.log_truncated, "{request:?}");

    // Compared chunk by chunk as it streams in, so only one copy is held.
    let mut stream = open_logs(&server, &request.id, false).await;
    let mut received = 0u64;
    let mut other_streams = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if chunk.stream != STDOUT {
            other_streams.push(chunk);
            continue;
        }
        assert_eq!(chunk.offset, received, "stdout chunks must be contiguous");
        let end = received + chunk.data.len() as u64;
        assert!(end <= size, "more stdout than seq wrote: {end} > {size}");
        let want = &expected.as_bytes()[usize::try_from(received).unwrap()..];
        let want = &want[..chunk.data.len()];
        assert!(
            chunk.data == want,
            "stdout differs from the expected text in the chunk at offset {received}"
        );
        received = end;
    }
    assert_eq!(received, size, "stdout is short");
    assert!(
        other_streams.iter().all(|c| c.stream != STDERR),
        "unexpected stderr: {other_streams:?}"
    );
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn output_past_the_log_cap_is_dropped_with_a_marker_and_the_job_still_succeeds() {
    let (server, worker) = server_and_worker_with_log_cap(1 << 20).await;

    let request = run_to_end(
        &server,
        spec(&[
            "sh",
            "-c",
            "yes abcdefghijklmnopqrstuvwxyz | head -c 3145728",
        ]),
    )
    .await;
    assert_eq!(result(&request), WorkResult::Success, "{request:?}");
    assert_eq!(request.exit_code, Some(0), "{request:?}");
    assert!(request.log_truncated, "{request:?}");

    let logs = Logs::read(&server, &request.id).await;
    let stdout = logs.bytes(STDOUT);
    assert!(!stdout.is_empty());
    assert!(
        stdout.len() as u64 <= MIB,
        "{} bytes of stdout stored past a 1 MiB cap",
        stdout.len()
    );
    let line = b"abcdefghijklmnopqrstuvwxyz\n";
    assert!(
        stdout
            .chunks(line.len())
            .all(|piece| line.starts_with(piece)),
        "stored stdout is not a prefix of the job's output"
    );
    // The marker is the server's own note (stream 4), outside the worker's streams.
    let notes = logs.text(NOTES);
    assert!(notes.contains("log truncated"), "notes stream: {notes:?}");
    assert!(!logs.text(SYSTEM).contains("log truncated"));
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_split_across_output_chunks_is_masked_and_stored_nowhere() {
    let (server, worker) = server_and_worker(&[]).await;
    let secret = "hunter2-secret";
    let mut job = spec(&[
        "sh",
        "-c",
        "printf hunter2-; sleep 1; printf 'secret\\n'; echo plain",
    ]);
    job.secret_env.insert("S".to_owned(), secret.to_owned());
    let request = run_to_end(&server, job).await;
    assert_eq!(result(&request), WorkResult::Success, "{request:?}");

    let logs = Logs::read(&server, &request.id).await;
    let stdout = logs.text(STDOUT);
    assert!(stdout.contains("[MASKED]"), "stdout: {stdout:?}");
    assert!(stdout.contains("plain\n"), "stdout: {stdout:?}");
    assert!(!stdout.contains("hunter2"), "stdout leaks: {stdout:?}");
    assert!(!stdout.contains("secret"), "stdout leaks: {stdout:?}");
    for chunk in &logs.chunks {
        assert!(
            !String::from_utf8_lossy(&chunk.data).contains("hunter2"),
            "{chunk:?}"
        );
    }

    let got = get(&server, &request.id).await;
    assert_eq!(got.secret_env_keys, ["S"]);
    assert!(!format!("{got:?}").contains(secret), "{got:?}");
    let listed = server
        .work_requests(&server.admin_token)
        .await
        .list_work_requests(ListWorkRequestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!format!("{listed:?}").contains(secret), "{listed:?}");

    // The container, whose configuration holds the value, goes: the worker removes it
    // right after it reported Finished (so the request can be terminal a moment before).
    let container = &got.attempts[0].container_id;
    assert!(!container.is_empty());
    eventually(
        &format!("container {container}, which holds the secret, to be removed"),
        Duration::from_secs(30),
        || async { (!container_exists(container).await).then_some(()) },
    )
    .await;

    let rows = berth_tests::query(
        &server.database_url,
        "SELECT encode(data, 'escape') FROM log_chunks",
    )
    .await;
    assert!(!rows.is_empty());
    for row in rows {
        let data: String = row.get(0);
        assert!(
            !data.contains("hunter2"),
            "stored log chunk leaks: {data:?}"
        );
    }
    assert!(
        !worker.log().contains(secret),
        "the worker's log leaks the secret"
    );
    // Its log goes to a file, not a terminal: plain text, no colour codes.
    assert!(
        !worker.log().contains('\x1b'),
        "the worker's log file holds ANSI escapes:\n{}",
        worker.log()
    );
    finish(server, worker).await;
}

// ----- stopping -----

#[tokio::test(flavor = "multi_thread")]
async fn a_job_past_its_timeout_is_stopped_and_fails_with_reason_timeout() {
    let (server, worker) = server_and_worker(&[]).await;
    let mut job = spec(&["sleep", "60"]);
    job.timeout = Some(secs(2));
    job.stop_grace_period = Some(secs(1));
    let request = run_to_end(&server, job).await;
    assert_eq!(
        status(&request),
        WorkRequestStatus::Completed,
        "{request:?}"
    );
    assert_eq!(result(&request), WorkResult::Failure, "{request:?}");
    assert_eq!(request.reason, "timeout", "{request:?}");
    let container = &request.attempts[0].container_id;
    // The worker reports first and removes the container right after.
    eventually(
        "the timed-out job's container to be removed",
        Duration::from_secs(10),
        || async { (!container_exists(container).await).then_some(()) },
    )
    .await;
    let system = Logs::read(&server, &request.id).await.text(SYSTEM);
    assert!(system.contains("timeout"), "system stream: {system:?}");
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_running_job_aborts_it_and_removes_its_container() {
    let (server, worker) = server_and_worker(&[]).await;
    let grace = 2;
    let mut job = spec(&["sleep", "300"]);
    job.stop_grace_period = Some(secs(grace));
    let submitted = submit(&server, job).await;
    let (_, container) = wait_running(&server, &submitted.id).await;
    assert!(container_exists(&container).await);

    let cancelled = cancel(&server, &submitted.id).await;
    assert_eq!(
        status(&cancelled),
        WorkRequestStatus::Aborted,
        "{cancelled:?}"
    );
    assert_eq!(cancelled.reason, "cancelled", "{cancelled:?}");
    eventually(
        "the cancelled job's container to be removed",
        Duration::from_secs(grace as u64 + 5),
        || async { (!container_exists(&container).await).then_some(()) },
    )
    .await;

    // The worker's report keeps the request aborted and records the attempt's end.
    let ended = eventually("the attempt to be reported finished", WAIT, || async {
        let request = get(&server, &submitted.id).await;
        request.attempts[0].finished_at.is_some().then_some(request)
    })
    .await;
    assert_eq!(status(&ended), WorkRequestStatus::Aborted, "{ended:?}");
    assert_eq!(result(&ended), WorkResult::Unspecified, "{ended:?}");
    assert_eq!(ended.attempts[0].reason, "cancelled", "{ended:?}");
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_over_its_memory_limit_fails_with_reason_oom() {
    let (server, worker) = server_and_worker(&[]).await;
    let mut job = spec(&["tail", "/dev/zero"]);
    job.memory_bytes = Some(8 * MIB);
    let request = run_to_end(&server, job).await;
    assert_eq!(
        status(&request),
        WorkRequestStatus::Completed,
        "{request:?}"
    );
    assert_eq!(result(&request), WorkResult::Failure, "{request:?}");
    assert_eq!(request.reason, "oom", "{request:?}");
    finish(server, worker).await;
}

// ----- failures of the moving parts -----

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_worker_removes_its_orphan_container_and_the_request_runs_again() {
    let (server, mut worker) = server_and_worker(&[]).await;
    let submitted = submit(&server, spec(&["sleep", "300"])).await;
    let (_, container) = wait_running(&server, &submitted.id).await;

    worker.kill().await;
    assert!(
        container_exists(&container).await,
        "the container should outlive a SIGKILLed worker"
    );

    worker.spawn();
    eventually(
        "the restarted worker to remove the orphan container",
        Duration::from_secs(60),
        || async { (!container_exists(&container).await).then_some(()) },
    )
    .await;
    let again = eventually(
        "the request to run again on the restarted worker",
        WAIT,
        || async {
            let request = get(&server, &submitted.id).await;
            let attempt = request.attempts.last()?;
            (request.attempt_count == 2
                && status(&request) == WorkRequestStatus::Running
                && !attempt.container_id.is_empty())
            .then_some(request)
        },
    )
    .await;
    assert_eq!(again.attempts[0].reason, "worker-lost", "{again:?}");
    assert_eq!(again.attempts[1].worker, worker.name, "{again:?}");
    assert_ne!(again.attempts[1].container_id, container);

    let cancelled = cancel(&server, &submitted.id).await;
    assert_eq!(status(&cancelled), WorkRequestStatus::Aborted);
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_restart_mid_job_loses_no_log_bytes_and_the_result_is_recorded() {
    let (mut server, worker) = server_and_worker(&[]).await;
    let submitted = submit(
        &server,
        spec(&[
            "sh",
            "-c",
            "for i in $(seq 1 40); do echo line-$i; sleep 0.1; done",
        ]),
    )
    .await;
    eventually("a few lines to be stored", WAIT, || async {
        let stdout = Logs::read(&server, &submitted.id).await.text(STDOUT);
        stdout.contains("line-3\n").then_some(())
    })
    .await;

    server.restart().await;
    worker.wait_connected(&server).await;

    let request = wait_terminal(&server, &submitted.id).await;
    assert_eq!(
        status(&request),
        WorkRequestStatus::Completed,
        "{request:?}"
    );
    assert_eq!(result(&request), WorkResult::Success, "{request:?}");
    assert_eq!(request.attempt_count, 1, "{request:?}");
    let expected: String = (1..=40).map(|i| format!("line-{i}\n")).collect();
    let logs = Logs::read(&server, &request.id).await;
    assert_eq!(logs.text(STDOUT), expected);
    finish(server, worker).await;
}

// ----- workers -----

#[tokio::test(flavor = "multi_thread")]
async fn an_enrolled_worker_is_listed_and_disabling_it_or_its_token_stops_its_work() {
    let (server, worker) = server_and_worker(&["--label", "pool=test", "--concurrency", "2"]).await;
    // Shows below that the scheduler had its rounds while the worker was disabled.
    let witness = witness_worker(&server).await;

    let listed = berth(&server).json(&["worker", "list"]).await;
    let workers = listed["workers"].as_array().unwrap();
    let listed = workers
        .iter()
        .find(|w| w["name"] == worker.name.as_str())
        .unwrap_or_else(|| panic!("{} not listed: {workers:?}", worker.name));
    assert_eq!(listed["connected"], true, "{listed}");
    assert_eq!(listed["enabled"], true, "{listed}");
    assert_eq!(listed["labels"]["pool"], "test", "{listed}");
    for key in ["arch", "os", "cpus", "memory_bytes", "docker_version"] {
        let value = listed["metadata"][key].as_str().unwrap_or_default();
        assert!(!value.is_empty(), "metadata {key} missing: {listed}");
    }
    assert_eq!(listed["concurrency"], 2, "{listed}");
    assert_eq!(listed["running"], 0, "{listed}");

    // A disabled worker gets no new work; enabled again, it does.
    let mut workers = server.workers(&server.admin_token).await;
    let disabled = workers
        .disable_worker(DisableWorkerRequest {
            name: worker.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!disabled.enabled);
    let waiting = submit(&server, spec(&["true"])).await;
    witness_a_round(&server, &witness).await;
    let still = get(&server, &waiting.id).await;
    assert_eq!(status(&still), WorkRequestStatus::Pending, "{still:?}");
    assert_eq!(still.attempt_count, 0, "{still:?}");
    workers
        .enable_worker(EnableWorkerRequest {
            name: worker.name.clone(),
        })
        .await
        .unwrap();
    let done = wait_terminal(&server, &waiting.id).await;
    assert_eq!(result(&done), WorkResult::Success, "{done:?}");
    assert_eq!(done.attempts[0].worker, worker.name);

    // Disabling the worker's token closes its stream at once.
    let tokens = server
        .tokens(&server.admin_token)
        .await
        .list_tokens(ListTokensRequest {})
        .await
        .unwrap()
        .into_inner()
        .tokens;
    let token = tokens
        .iter()
        .find(|t| t.role == Role::Worker as i32 && t.owner == worker.name)
        .unwrap_or_else(|| panic!("no worker token for {}: {tokens:?}", worker.name));
    server
        .tokens(&server.admin_token)
        .await
        .disable_token(DisableTokenRequest {
            id: token.id.clone(),
        })
        .await
        .unwrap();
    eventually(
        "the worker to show as disconnected",
        Duration::from_secs(5),
        || async {
            let now = server
                .workers(&server.admin_token)
                .await
                .get_worker(GetWorkerRequest {
                    name: worker.name.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            (!now.connected).then_some(())
        },
    )
    .await;
    eventually(
        "the worker's log to say its token was refused",
        Duration::from_secs(10),
        || async {
            worker
                .log()
                .contains("refused the worker token")
                .then_some(())
        },
    )
    .await;
    finish(server, worker).await;
}

// ----- the CLI -----

#[tokio::test(flavor = "multi_thread")]
async fn berth_run_follows_the_output_and_exits_with_the_jobs_exit_code() {
    let (server, worker) = server_and_worker(&[]).await;
    let run = berth(&server)
        .run(&[
            "run",
            "--pull",
            "never",
            TEST_IMAGE,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 4",
        ])
        .await;
    let (code, stdout, stderr) = (run.code, run.stdout, run.stderr);
    assert!(
        stdout.lines().any(|line| line == "out"),
        "stdout: {stdout:?}, stderr: {stderr:?}"
    );
    assert!(
        stderr.lines().any(|line| line == "err"),
        "stdout: {stdout:?}, stderr: {stderr:?}"
    );
    assert!(
        !stdout.lines().any(|line| line == "err"),
        "stdout: {stdout:?}"
    );
    assert!(
        !stderr.lines().any(|line| line == "out"),
        "stderr: {stderr:?}"
    );
    assert_eq!(code, 4, "stdout: {stdout:?}, stderr: {stderr:?}");
    finish(server, worker).await;
}
