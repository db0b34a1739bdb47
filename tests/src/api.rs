//! The calls scenarios make again and again, as the server's admin: submit, read,
//! cancel, and wait until a request gets where a test needs it.
//!
//! Every wait polls the real state through `GetWorkRequest` and panics, after a timeout,
//! with what it waited for and the request as it last saw it.

use std::time::{Duration, SystemTime};

use berth_common::proto::{
    CancelWorkRequestRequest, ContainerSpec, GetWorkRequestRequest, SubmitWorkRequestRequest,
    WorkRequest, WorkRequestStatus, WorkResult,
};

use crate::{SimOptions, SimWorker, TestServer, spec};

/// How long a request may take to get where a test waits for it, when the test does not
/// say: generous, because a loaded machine is slow, and a wait only costs this much when
/// it fails.
pub const WAIT: Duration = Duration::from_secs(90);

/// Submits `spec` as the server's admin and returns the stored request.
pub async fn submit(server: &TestServer, spec: ContainerSpec) -> WorkRequest {
    submit_request(
        server,
        SubmitWorkRequestRequest {
            spec: Some(spec),
            ..Default::default()
        },
    )
    .await
}

/// Submits `request` as the server's admin and returns the stored request.
pub async fn submit_request(server: &TestServer, request: SubmitWorkRequestRequest) -> WorkRequest {
    let shown = format!("{request:?}");
    try_submit(server, &server.admin_token, request)
        .await
        .unwrap_or_else(|status| panic!("submitting {shown} was refused: {status:?}"))
}

/// Submits `request` with `token`; the server's answer either way.
pub async fn try_submit(
    server: &TestServer,
    token: &str,
    request: SubmitWorkRequestRequest,
) -> Result<WorkRequest, tonic::Status> {
    server
        .work_requests(token)
        .await
        .submit_work_request(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Reads a request (with its attempts, queue position and pending reason) as the
/// server's admin.
pub async fn get(server: &TestServer, id: &str) -> WorkRequest {
    server
        .work_requests(&server.admin_token)
        .await
        .get_work_request(GetWorkRequestRequest { id: id.to_owned() })
        .await
        .unwrap_or_else(|status| panic!("reading work request {id}: {status:?}"))
        .into_inner()
}

/// Cancels a request as the server's admin.
pub async fn cancel(server: &TestServer, id: &str) -> WorkRequest {
    server
        .work_requests(&server.admin_token)
        .await
        .cancel_work_request(CancelWorkRequestRequest { id: id.to_owned() })
        .await
        .unwrap_or_else(|status| panic!("cancelling work request {id}: {status:?}"))
        .into_inner()
}

/// A request's status as the enum.
pub fn status(request: &WorkRequest) -> WorkRequestStatus {
    WorkRequestStatus::try_from(request.status)
        .unwrap_or_else(|_| panic!("unknown status {} in {request:?}", request.status))
}

/// A request's result as the enum.
pub fn result(request: &WorkRequest) -> WorkResult {
    WorkResult::try_from(request.result)
        .unwrap_or_else(|_| panic!("unknown result {} in {request:?}", request.result))
}

/// Whether the request has ended (completed or aborted).
pub fn is_terminal(request: &WorkRequest) -> bool {
    matches!(
        status(request),
        WorkRequestStatus::Completed | WorkRequestStatus::Aborted
    )
}

/// Whether the request runs and its current attempt has started (the worker reported
/// `Started`, naming its container) and not finished.
pub fn is_started(request: &WorkRequest) -> bool {
    status(request) == WorkRequestStatus::Running
        && request
            .attempts
            .last()
            .is_some_and(|a| !a.container_id.is_empty() && a.finished_at.is_none())
}

/// Polls request `id` every 50 ms until `check` holds, for at most `within`, and returns
/// it then. The panic names `what` and shows the request as last read.
pub async fn wait_for(
    server: &TestServer,
    id: &str,
    what: &str,
    within: Duration,
    check: impl Fn(&WorkRequest) -> bool,
) -> WorkRequest {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let request = get(server, id).await;
        if check(&request) {
            return request;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for work request {id} {what}; last seen: {request:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to [`WAIT`]) until the request has ended, and returns it.
pub async fn wait_terminal(server: &TestServer, id: &str) -> WorkRequest {
    wait_for(server, id, "to end", WAIT, is_terminal).await
}

/// Waits (up to [`WAIT`]) until the request has status `wanted`, and returns it.
pub async fn wait_status(server: &TestServer, id: &str, wanted: WorkRequestStatus) -> WorkRequest {
    wait_for(server, id, &format!("to be {wanted:?}"), WAIT, |request| {
        status(request) == wanted
    })
    .await
}

/// Waits (up to [`WAIT`]) until the request runs and its current attempt has started
/// ([`is_started`]), and returns it.
pub async fn wait_started(server: &TestServer, id: &str) -> WorkRequest {
    wait_for(server, id, "to run", WAIT, is_started).await
}

/// Waits (up to [`WAIT`]) until attempt `n` of the request has started, and returns it.
pub async fn wait_attempt_started(server: &TestServer, id: &str, n: u32) -> WorkRequest {
    wait_for(
        server,
        id,
        &format!("attempt {n} to run"),
        WAIT,
        |request| request.attempt_count == n && is_started(request),
    )
    .await
}

/// The worker that ran (or runs) the request's current attempt.
pub fn worker_of(request: &WorkRequest) -> &str {
    &request
        .attempts
        .last()
        .unwrap_or_else(|| panic!("work request {} has no attempt: {request:?}", request.id))
        .worker
}

/// Asserts that `answer` is an error with `code`, and returns it; `what` names the call
/// in the panic.
pub fn refused<T: std::fmt::Debug>(
    what: &str,
    answer: Result<T, tonic::Status>,
    code: tonic::Code,
) -> tonic::Status {
    match answer {
        Ok(value) => panic!("{what}: expected {code:?}, got OK: {value:?}"),
        Err(status) => {
            assert_eq!(
                status.code(),
                code,
                "{what}: {}",
                berth_common::client::describe_status(&status)
            );
            status
        }
    }
}

/// Asserts that `answer` is an error with `code` whose message mentions `contains`.
pub fn assert_code<T: std::fmt::Debug>(
    answer: Result<T, tonic::Status>,
    code: tonic::Code,
    contains: &str,
) {
    let status = refused(
        &format!("a call expected to mention {contains:?}"),
        answer,
        code,
    );
    assert!(
        status.message().contains(contains),
        "{:?} should mention {contains:?}",
        status.message()
    );
}

/// A wire timestamp as the time it names; panics if it is not set.
pub fn at(timestamp: Option<&prost_types::Timestamp>) -> SystemTime {
    let timestamp = timestamp.unwrap_or_else(|| panic!("a timestamp expected, none is set"));
    SystemTime::try_from(*timestamp)
        .unwrap_or_else(|e| panic!("timestamp {timestamp:?} is out of range: {e}"))
}

/// A simulated worker with the exclusive label `witness=yes`: it takes only jobs that ask
/// for it, and so takes nothing from the test. See [`witness_a_round`].
pub async fn witness_worker(server: &TestServer) -> SimWorker {
    server
        .sim_worker(SimOptions::default().label("witness", "yes!"))
        .await
}

/// Runs a job on `witness` to its end. Every assignment round considers every connected
/// worker in one transaction, so afterwards the scheduler has demonstrably had a round
/// since anything submitted before: a request still unassigned then was passed over, not
/// merely not yet looked at.
pub async fn witness_a_round(server: &TestServer, witness: &SimWorker) {
    let request = submit_request(
        server,
        SubmitWorkRequestRequest {
            spec: Some(spec(&["true"])),
            requirements: [("witness".to_owned(), "yes".to_owned())].into(),
            ..Default::default()
        },
    )
    .await;
    let done = wait_terminal(server, &request.id).await;
    assert_eq!(
        result(&done),
        WorkResult::Success,
        "the witness job: {done:?}"
    );
    assert_eq!(worker_of(&done), witness.name, "the witness job: {done:?}");
}
