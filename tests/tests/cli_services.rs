//! The real `berth` binary with services, against a real server and a real worker on
//! Docker: create, get (the replica table), scale, logs with each line prefixed by its
//! replica, history, a one-off command that exits with its own status, delete; and bad
//! input (an unknown replica, a bad `--port`, bad scale syntax) as one `error:` line; and
//! a followed log stream that goes on into the container a restart makes.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::time::Duration;

use berth_common::client::BearerAuth;
use berth_common::proto::service_service_client::ServiceServiceClient;
use berth_common::proto::{ServiceLogChunk, StreamServiceLogsRequest};
use berth_tests::{
    TEST_IMAGE, TestServer, TestWorker, WAIT, berth, docker, ensure_test_image, eventually,
    quick_heartbeats, wait_no_containers, worker_containers,
};
use serde_json::Value;

/// A replica's command: prints its hostname (the container's, so each replica's lines
/// differ) and then a tick a second until stopped.
const TICK: &str = "trap 'exit 0' TERM; echo \"up $HOSTNAME\"; \
                    while true; do echo tick; sleep 1; done";

/// The replicas of `service` that run on a worker, by name.
fn running(service: &Value) -> Vec<String> {
    let mut names: Vec<String> = service["replicas"]
        .as_array()
        .unwrap_or_else(|| panic!("no replicas: {service}"))
        .iter()
        .filter(|r| r["worker"].as_str().is_some_and(|w| !w.is_empty()))
        .map(|r| r["replica"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn service_round_trip_create_scale_logs_history_run_delete() {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_heartbeats).await;
    let mut worker = TestWorker::start(&server, &["--concurrency", "4"]).await;
    worker.wait_connected(&server).await;
    let cli = berth(&server);

    cli.ok(&[
        "template",
        "create",
        "ticker",
        "--image",
        TEST_IMAGE,
        "--grace-period",
        "2s",
        "--",
        "sh",
        "-c",
        TICK,
    ])
    .await;
    let created = cli
        .json(&[
            "service",
            "create",
            "shop",
            "--template",
            "ticker@v1",
            "--min-healthy",
            "1s",
            "--restart",
            "on-failure",
        ])
        .await;
    assert_eq!(created["name"], "shop", "{created}");
    assert_eq!(created["template"], "ticker", "{created}");
    assert_eq!(created["version"], 1, "{created}");
    assert_eq!(created["processes"]["web"]["replicas"], 1, "{created}");
    assert_eq!(created["restart_policy"], "on-failure", "{created}");

    let scaled = cli.json(&["service", "scale", "shop", "web=2"]).await;
    assert_eq!(scaled["processes"]["web"]["replicas"], 2, "{scaled}");
    eventually("both replicas run on the worker", WAIT, || async {
        let service = cli.json(&["service", "get", "shop"]).await;
        (running(&service) == ["web.0", "web.1"]).then_some(())
    })
    .await;

    // The table a person reads: one row per replica under its header.
    let table = cli.ok(&["service", "get", "shop"]).await;
    let header = table
        .lines()
        .find(|l| l.trim_start().starts_with("REPLICA"))
        .unwrap_or_else(|| panic!("no replica table: {table}"));
    for column in ["STATE", "VERSION", "WORKER", "FAILURES", "RESTART AT"] {
        assert!(header.contains(column), "{header}");
    }
    for replica in ["web.0", "web.1"] {
        let row = table
            .lines()
            .find(|l| l.trim_start().starts_with(replica))
            .unwrap_or_else(|| panic!("no row for {replica}: {table}"));
        assert!(row.contains("v1"), "{row}");
        assert!(row.contains(&worker.name), "{row}");
    }
    let listed = cli.ok(&["service", "list"]).await;
    assert!(listed.lines().any(|l| l.starts_with("shop ")), "{listed}");

    // Logs: every line carries its replica, and each replica has its own lines.
    let logs = eventually("both replicas have ticked", WAIT, || async {
        let out = cli.run(&["service", "logs", "shop"]).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        let ticked = |r: &str| out.stdout.lines().any(|l| l == format!("{r} | tick"));
        (ticked("web.0") && ticked("web.1")).then_some(out.stdout)
    })
    .await;
    for line in logs.lines() {
        assert!(
            line.starts_with("web.0 | ") || line.starts_with("web.1 | "),
            "a line without its replica: {line:?}\n{logs}"
        );
    }
    let ups: Vec<&str> = logs.lines().filter(|l| l.contains("| up ")).collect();
    assert_eq!(ups.len(), 2, "{logs}");
    let one = cli
        .ok(&["service", "logs", "shop", "--replica", "web.1"])
        .await;
    assert!(!one.is_empty());
    assert!(one.lines().all(|l| l.starts_with("web.1 | ")), "{one}");

    // History: the scale, and a start of each replica with its release.
    let history = cli.json(&["service", "history", "shop"]).await;
    let events = history["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["kind"] == "scaled"), "{history}");
    for replica in ["web.0", "web.1"] {
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "started" && e["replica"] == replica && e["version"] == 1),
            "no start of {replica}: {history}"
        );
    }
    let only = cli
        .json(&["service", "history", "shop", "--replica", "web.1"])
        .await;
    assert!(
        only["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["replica"] == "web.1"),
        "{only}"
    );
    let table = cli.ok(&["service", "history", "shop"]).await;
    assert!(table.starts_with("AT "), "{table}");

    // A one-off command in the release: its output, and its exit status passed on.
    let ran = cli
        .run(&[
            "service",
            "run",
            "shop",
            "--",
            "sh",
            "-c",
            "echo one-off; exit 3",
        ])
        .await;
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert_eq!(ran.stdout, "one-off\n");
    // It was not a replica: the service still has its two.
    let service = cli.json(&["service", "get", "shop"]).await;
    assert_eq!(
        service["replicas"].as_array().unwrap().len(),
        2,
        "{service}"
    );

    // Bad input: one error line naming what is wrong.
    cli.run(&["service", "logs", "shop", "--replica", "web.7"])
        .await
        .assert_one_error_line("unknown replica", 1, &["web.7", "web.0", "web.1"]);
    cli.run(&["service", "logs", "shop", "--replica", "web"])
        .await
        .assert_one_error_line("not a replica", 1, &["replica", "PROCESS.INDEX"]);
    cli.run(&[
        "service",
        "create",
        "other",
        "--template",
        "ticker",
        "--port",
        "99999",
    ])
    .await
    .assert_one_error_line("bad --port", 2, &["--port", "99999", "CONTAINER[:HOST]"]);
    cli.run(&["service", "scale", "shop", "web"])
        .await
        .assert_one_error_line("bad scale", 2, &["PROCESS=N", "web=3"]);
    cli.run(&["service", "get", "nope"])
        .await
        .assert_one_error_line("unknown service", 1, &["nope", "no service"]);

    // Delete: the answer, the name gone, and every container stopped.
    let deleted = cli.ok(&["service", "delete", "shop"]).await;
    assert_eq!(
        deleted,
        "deleted service shop; its replicas are being stopped\n"
    );
    cli.run(&["service", "get", "shop"])
        .await
        .assert_one_error_line("deleted service", 1, &["shop", "no service"]);
    wait_no_containers(&worker.name).await;
    worker.terminate(Duration::from_secs(30)).await;
    server.stop().await;
}

/// Reads `stream` until a chunk satisfies `wanted` (at most [`WAIT`]); returns it.
async fn read_until(
    stream: &mut tonic::Streaming<ServiceLogChunk>,
    what: &str,
    wanted: impl Fn(&ServiceLogChunk) -> bool,
) -> ServiceLogChunk {
    let read = async {
        while let Some(chunk) = stream.message().await.unwrap() {
            if wanted(&chunk) {
                return chunk;
            }
        }
        panic!("the log stream ended before {what}");
    };
    tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn following_a_services_logs_goes_on_through_a_restart() {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_heartbeats).await;
    let mut worker = TestWorker::start(&server, &["--concurrency", "2"]).await;
    worker.wait_connected(&server).await;
    let cli = berth(&server);
    cli.ok(&[
        "template",
        "create",
        "ticker",
        "--image",
        TEST_IMAGE,
        "--grace-period",
        "2s",
        "--",
        "sh",
        "-c",
        TICK,
    ])
    .await;
    cli.ok(&[
        "service",
        "create",
        "crashy",
        "--template",
        "ticker",
        "--backoff-initial",
        "1s",
    ])
    .await;

    let mut client = ServiceServiceClient::with_interceptor(
        server.channel().await,
        BearerAuth::new(&server.admin_token),
    );
    let mut stream = client
        .stream_service_logs(StreamServiceLogsRequest {
            name: "crashy".into(),
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let up = |c: &ServiceLogChunk| String::from_utf8_lossy(&c.data).contains("up ");
    let first = read_until(&mut stream, "the first container's start", up).await;
    assert_eq!(first.replica, "web.0");

    // Killed from outside: the slot gets a new container, and the same stream shows it.
    for container in worker_containers(&worker.name).await {
        docker(&["kill", &container]).await;
    }
    let second = read_until(&mut stream, "the restarted container's start", |c| {
        up(c) && c.work_request_id != first.work_request_id
    })
    .await;
    assert_eq!(second.replica, "web.0");
    drop(stream);

    cli.ok(&["service", "delete", "crashy"]).await;
    wait_no_containers(&worker.name).await;
    worker.terminate(Duration::from_secs(30)).await;
    server.stop().await;
}
