//! OpenTelemetry traces, end to end: a real `berth-server` and a real `berth-worker`
//! process (a real container) export to a real OTLP/gRPC collector started here.
//!
//! - With `OTEL_EXPORTER_OTLP_ENDPOINT` set, one job is one trace: the caller's
//!   `traceparent` is continued by the submit call's span; under it the time in the
//!   queue and the hand-off to the worker; under that the worker's attempt and its
//!   container, to the exit. The trace context is stored with the request.
//! - A worker killed with SIGKILL mid-job leaves its attempt's spans unsent, but the
//!   trace goes on: the request's stored context gives the second attempt its `queued`
//!   and `dispatch` spans under the same submit call, and the next worker's container.
//! - Without it, nothing is exported (a collector on the default port hears nothing) and
//!   nothing is stored.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::time::Duration;

use berth_common::proto::{SubmitWorkRequestRequest, WorkRequest, WorkRequestStatus};
use berth_tests::docker::ensure_test_image;
use berth_tests::otlp::{OtlpReceiver, ReceivedSpan};
use berth_tests::process::ServerProcess;
use berth_tests::worker::TestWorker;
use berth_tests::{ContainerSweep, TestServer, fresh_database, query, sh, wait_status};

/// The caller's trace: its id and the span the submit call is made in.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The submit call's span, named as OpenTelemetry names RPC spans.
const SUBMIT: &str = "berth.v1.WorkRequestService/SubmitWorkRequest";

/// Spans are sent in batches this often (milliseconds), so the test waits little.
const BATCH_DELAY: &str = "200";

fn one<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {name:?} span from {service}, got {found:#?}\nall spans: {spans:#?}"
    );
    found[0]
}

/// Submits `script` as a job from within the caller's trace (a `traceparent` header),
/// waits until it completed, and returns it with the trace context stored with it.
async fn run_in_the_callers_trace(api: &TestServer, script: &str) -> (WorkRequest, Option<String>) {
    let submitted = submit_in_the_callers_trace(api, script).await;
    wait_status(api, &submitted.id, WorkRequestStatus::Completed).await;
    let stored = stored_traceparent(api, &submitted.id).await;
    (submitted, stored)
}

/// The trace context stored with request `id`.
async fn stored_traceparent(api: &TestServer, id: &str) -> Option<String> {
    let rows = query(
        &api.database_url,
        &format!("SELECT traceparent FROM work_requests WHERE id = '{id}'"),
    )
    .await;
    rows[0].get(0)
}

/// Submits `script` as a job from within the caller's trace.
async fn submit_in_the_callers_trace(api: &TestServer, script: &str) -> WorkRequest {
    let mut call = tonic::Request::new(SubmitWorkRequestRequest {
        spec: Some(sh(script)),
        ..Default::default()
    });
    call.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN}-01").parse().unwrap(),
    );
    api.work_requests(&api.admin_token)
        .await
        .submit_work_request(call)
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_job_is_one_trace_from_the_submit_call_to_the_containers_exit() {
    ensure_test_image().await;
    let receiver = OtlpReceiver::start().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", BATCH_DELAY),
    ];
    let database_url = fresh_database().await;
    let server = ServerProcess::start_with_env(&database_url, None, "", &env).await;
    let api = server.handle(&server.admin_token());
    let worker = TestWorker::start_with_env(&api, &[], &env).await;
    worker.wait_connected(&api).await;

    let (submitted, stored) = run_in_the_callers_trace(&api, "echo traced; exit 3").await;
    // The request keeps the context it was submitted in: the submit call's span.
    let traceparent = stored.expect("the request stored no trace context");
    assert!(
        traceparent.starts_with(&format!("00-{TRACE_ID}-")),
        "stored {traceparent:?}"
    );

    let wanted = [SUBMIT, "queued", "dispatch", "attempt", "container"];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let mine: Vec<ReceivedSpan> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == TRACE_ID)
            .collect();
        if wanted
            .iter()
            .all(|name| mine.iter().any(|s| &s.name == name))
        {
            break mine;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after 30 s the collector has not got the spans {wanted:?} of the job's trace; \
             it has {:?}\nserver log:\n{}\nworker log:\n{}",
            receiver
                .spans()
                .iter()
                .map(|s| format!(
                    "{} {} {} parent {}",
                    s.service, s.name, s.trace_id, s.parent_span_id
                ))
                .collect::<Vec<_>>(),
            server.log(),
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let submit = one(&spans, "berth-server", SUBMIT);
    assert_eq!(
        submit.parent_span_id, CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(submit.attribute("rpc.system"), Some("grpc"));
    assert_eq!(
        submit.attribute("rpc.service"),
        Some("berth.v1.WorkRequestService")
    );
    assert_eq!(submit.attribute("rpc.method"), Some("SubmitWorkRequest"));
    assert_eq!(
        traceparent,
        format!("00-{TRACE_ID}-{}-01", submit.span_id),
        "the stored context is the submit call's span"
    );

    let queued = one(&spans, "berth-server", "queued");
    let dispatch = one(&spans, "berth-server", "dispatch");
    let attempt = one(&spans, "berth-worker", "attempt");
    let container = one(&spans, "berth-worker", "container");
    assert_eq!(queued.parent_span_id, submit.span_id);
    assert_eq!(queued.attribute("berth.attempt"), Some("1"));
    assert_eq!(dispatch.parent_span_id, submit.span_id);
    assert_eq!(
        dispatch.attribute("berth.work_request"),
        Some(submitted.id.as_str())
    );
    assert_eq!(
        attempt.parent_span_id, dispatch.span_id,
        "the worker continues the hand-off"
    );
    assert_eq!(container.parent_span_id, attempt.span_id);
    assert_eq!(container.attribute("berth.exit_code"), Some("3"));
    assert_eq!(container.attribute("berth.outcome"), Some("OUTCOME_EXITED"));

    // In time order: submitted, queued until the claim, then handed over, run, exited.
    assert!(
        queued.start_ns >= submit.start_ns,
        "{queued:?} before {submit:?}"
    );
    assert!(queued.end_ns >= queued.start_ns);
    assert!(attempt.start_ns >= dispatch.start_ns);
    assert!(container.start_ns >= attempt.start_ns);
    assert!(container.end_ns <= attempt.end_ns);
    assert!(container.end_ns > container.start_ns);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_endpoint_nothing_is_exported_and_no_context_is_stored() {
    ensure_test_image().await;
    // Where an exporter would send by default, had it been turned on without an address.
    let receiver = OtlpReceiver::start_on("127.0.0.1:4317".parse().unwrap()).await;
    let database_url = fresh_database().await;
    let server = ServerProcess::start(&database_url, None, "").await;
    let api = server.handle(&server.admin_token());
    let worker = TestWorker::start(&api, &[]).await;
    worker.wait_connected(&api).await;

    let (_, stored) = run_in_the_callers_trace(&api, "echo untraced").await;
    assert_eq!(stored, None);
    // Longer than the default batch delay (5 s) of an exporter that was on.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        receiver.spans().is_empty(),
        "spans were exported: {:#?}",
        receiver.spans()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_whose_worker_is_killed_goes_on_in_the_same_trace() {
    ensure_test_image().await;
    let receiver = OtlpReceiver::start().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", BATCH_DELAY),
    ];
    let database_url = fresh_database().await;
    let config = "heartbeat_interval = \"1s\"\nlease_ttl = \"3s\"\nhandoff_deadline = \"2s\"\n";
    let server = ServerProcess::start_with_env(&database_url, None, config, &env).await;
    let api = server.handle(&server.admin_token());
    let mut sweep = ContainerSweep::default();
    let mut doomed = TestWorker::start_with_env(&api, &[], &env).await;
    sweep.add(&doomed.name);
    doomed.wait_connected(&api).await;

    let submitted = submit_in_the_callers_trace(&api, "echo started; sleep 5").await;
    berth_tests::eventually(
        "the first attempt to run",
        Duration::from_secs(60),
        || async {
            let rows = query(
                &database_url,
                "SELECT count(*) FROM attempts WHERE state = 'running'",
            )
            .await;
            (rows[0].get::<_, i64>(0) == 1).then_some(())
        },
    )
    .await;
    doomed.kill().await;
    let survivor = TestWorker::start_with_env(&api, &[], &env).await;
    sweep.add(&survivor.name);
    wait_status(&api, &submitted.id, WorkRequestStatus::Completed).await;
    let traceparent = stored_traceparent(&api, &submitted.id).await.unwrap();
    assert!(
        traceparent.starts_with(&format!("00-{TRACE_ID}-")),
        "{traceparent}"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let mine: Vec<ReceivedSpan> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == TRACE_ID)
            .collect();
        // The attempt span ends after its container's, and may come in a later batch.
        let second_attempt = mine
            .iter()
            .filter(|s| s.name == "dispatch" && s.attribute("berth.attempt") == Some("2"))
            .any(|d| {
                mine.iter()
                    .any(|s| s.name == "attempt" && s.parent_span_id == d.span_id)
            });
        let exited = mine
            .iter()
            .any(|s| s.name == "container" && s.attribute("berth.exit_code") == Some("0"));
        if second_attempt && exited {
            break mine;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after 30 s the second attempt's spans are not all in: {:?}",
            mine.iter()
                .map(|s| format!("{} {} {:?}", s.service, s.name, s.attributes))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let submit = one(&spans, "berth-server", SUBMIT);
    let mut attempts: Vec<&str> = spans
        .iter()
        .filter(|s| s.name == "queued")
        .map(|s| {
            assert_eq!(s.parent_span_id, submit.span_id);
            s.attribute("berth.attempt").unwrap()
        })
        .collect();
    attempts.sort_unstable();
    assert_eq!(attempts, ["1", "2"], "one queued span per attempt");
    let second = spans
        .iter()
        .find(|s| s.name == "dispatch" && s.attribute("berth.attempt") == Some("2"))
        .expect("a dispatch span of the second attempt");
    assert_eq!(second.parent_span_id, submit.span_id);
    let attempt = spans
        .iter()
        .find(|s| s.name == "attempt" && s.parent_span_id == second.span_id)
        .expect("the survivor's attempt span under the second dispatch");
    let container = one(&spans, "berth-worker", "container");
    assert_eq!(container.parent_span_id, attempt.span_id);
}
