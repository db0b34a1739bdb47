//! Failure handling with real processes: a worker killed with SIGKILL, a worker that
//! keeps dying until the retry budget is spent, and an assignment that is never
//! accepted. Nothing may be lost, stuck or run twice, and a replaced worker's late
//! writes must change nothing.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::time::Duration;

use berth_common::PROTOCOL_VERSION;
use berth_common::client::BearerAuth;
use berth_common::proto::agent_service_client::AgentServiceClient;
use berth_common::proto::{
    self, AppendLogRequest, AttemptRef, ContainerSpec, GetWorkRequestRequest, LogStream,
    PullPolicy, Role, ServerMessage, SubmitWorkRequestRequest, WorkRequest, WorkRequestStatus,
    WorkResult, WorkerMessage, server_message, worker_message,
};
use berth_server::app::config::Config;
use berth_tests::{
    TEST_IMAGE, TestServer, TestWorker, ensure_test_image, eventually, worker_containers,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Short protocol timings so a lost worker is noticed in seconds.
fn quick_leases(config: &mut Config) {
    config.agent.heartbeat_interval = Duration::from_secs(1);
    config.agent.lease_ttl = Duration::from_secs(3);
    config.agent.handoff_deadline = Duration::from_secs(2);
}

fn job(command: &[&str]) -> ContainerSpec {
    ContainerSpec {
        image: TEST_IMAGE.to_owned(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        pull_policy: PullPolicy::Never as i32,
        stop_grace_period: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    }
}

async fn submit(server: &TestServer, spec: ContainerSpec) -> String {
    server
        .work_requests(&server.admin_token)
        .await
        .submit_work_request(SubmitWorkRequestRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn get(server: &TestServer, id: &str) -> WorkRequest {
    server
        .work_requests(&server.admin_token)
        .await
        .get_work_request(GetWorkRequestRequest { id: id.to_owned() })
        .await
        .unwrap()
        .into_inner()
}

/// Waits until attempt `n` of `id` has a running container.
async fn wait_attempt_running(server: &TestServer, id: &str, n: u32) -> WorkRequest {
    eventually(
        &format!("attempt {n} of {id} to run"),
        Duration::from_secs(60),
        || async move {
            let request = get(server, id).await;
            let running = request.status == WorkRequestStatus::Running as i32
                && request.attempt_count == n
                && request
                    .attempts
                    .last()
                    .is_some_and(|a| !a.container_id.is_empty() && a.finished_at.is_none());
            running.then_some(request)
        },
    )
    .await
}

async fn wait_terminal(server: &TestServer, id: &str, within: Duration) -> WorkRequest {
    eventually(&format!("{id} to end"), within, || async move {
        let request = get(server, id).await;
        let terminal = request.status == WorkRequestStatus::Completed as i32
            || request.status == WorkRequestStatus::Aborted as i32;
        terminal.then_some(request)
    })
    .await
}

async fn assert_no_containers(worker: &str) {
    eventually(
        &format!("no container of {worker} to remain"),
        Duration::from_secs(30),
        || async move { worker_containers(worker).await.is_empty().then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_workers_job_completes_elsewhere_and_its_late_writes_are_refused() {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_leases).await;
    let mut doomed = TestWorker::start(&server, &[]).await;
    doomed.wait_connected(&server).await;
    let id = submit(&server, job(&["sh", "-c", "sleep 2; echo finished"])).await;
    wait_attempt_running(&server, &id, 1).await;

    let mut rescuer = TestWorker::start(&server, &[]).await;
    rescuer.wait_connected(&server).await;
    doomed.kill().await;

    // TTL (3 s) + 10 s, as promised; the job itself takes 2 s more.
    let done = wait_terminal(&server, &id, Duration::from_secs(3 + 10 + 5)).await;
    assert_eq!(done.status, WorkRequestStatus::Completed as i32, "{done:?}");
    assert_eq!(done.result, WorkResult::Success as i32, "{done:?}");
    assert_eq!(done.attempt_count, 2, "{done:?}");
    assert_eq!(done.attempts[0].reason, "worker-lost", "{done:?}");
    assert_eq!(done.attempts[0].worker, doomed.name);
    assert_eq!(done.attempts[1].worker, rescuer.name);

    // The dead worker comes back late with its old attempt: its log write is refused
    // with FAILED_PRECONDITION, its Hello is told to abandon the attempt, and its
    // Finished changes nothing.
    let channel = server.channel().await;
    let mut client = AgentServiceClient::with_interceptor(channel, BearerAuth::new(&doomed.token));
    let old = AttemptRef {
        work_request_id: id.clone(),
        attempt: 1,
    };
    let refused = client
        .append_log(AppendLogRequest {
            attempt: Some(old.clone()),
            stream: LogStream::Stdout as i32,
            offset: 0,
            data: b"late bytes\n".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );

    let (tx, rx) = mpsc::channel(8);
    tx.send(WorkerMessage {
        msg: Some(worker_message::Msg::Hello(proto::Hello {
            protocol_version: PROTOCOL_VERSION,
            name: doomed.name.clone(),
            concurrency: 1,
            running: vec![old.clone()],
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut inbound = client
        .connect(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let Some(ServerMessage {
        msg: Some(server_message::Msg::Welcome(welcome)),
    }) = inbound.message().await.unwrap()
    else {
        panic!("expected a Welcome");
    };
    assert_eq!(welcome.abandon, vec![old.clone()]);
    tx.send(WorkerMessage {
        msg: Some(worker_message::Msg::Finished(proto::Finished {
            attempt: Some(old),
            outcome: proto::Outcome::Exited as i32,
            exit_code: Some(99),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = get(&server, &id).await;
    assert_eq!(after.result, WorkResult::Success as i32);
    assert_eq!(after.exit_code, Some(0));
    assert_eq!(after.attempts[0].exit_code, None, "{after:?}");
    drop(tx);
    drop(inbound);

    // The killed worker's container is still there until that worker starts again and
    // reaps it.
    doomed.spawn();
    assert_no_containers(&doomed.name).await;
    doomed.terminate(Duration::from_secs(30)).await;
    rescuer.terminate(Duration::from_secs(30)).await;
    assert_no_containers(&rescuer.name).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_whose_workers_keep_dying_ends_in_error_when_the_retry_budget_is_spent() {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_leases).await;
    let mut worker = TestWorker::start(&server, &[]).await;
    worker.wait_connected(&server).await;
    let id = submit(&server, job(&["sleep", "300"])).await;
    // The first attempt plus a retry budget of 2: three losses end it.
    for n in 1..=3 {
        wait_attempt_running(&server, &id, n).await;
        worker.kill().await;
        worker.spawn();
    }
    let done = wait_terminal(&server, &id, Duration::from_secs(30)).await;
    assert_eq!(done.status, WorkRequestStatus::Completed as i32, "{done:?}");
    assert_eq!(done.result, WorkResult::Error as i32, "{done:?}");
    assert_eq!(done.reason, "worker-lost");
    assert_eq!(done.attempt_count, 3);
    assert!(
        done.attempts.iter().all(|a| a.reason == "worker-lost"),
        "{done:?}"
    );
    // Nothing is offered again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(get(&server, &id).await.attempt_count, 3);
    worker.wait_connected(&server).await;
    assert_no_containers(&worker.name).await;
    worker.terminate(Duration::from_secs(30)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assignment_never_accepted_is_offered_again_and_a_late_accept_is_cancelled() {
    let server = TestServer::start_with(quick_leases).await;
    let (_, token) = server.create_token(Role::Worker, "silent").await;
    let channel = server.channel().await;
    let mut client = AgentServiceClient::with_interceptor(channel, BearerAuth::new(&token));
    let (tx, rx) = mpsc::channel(8);
    tx.send(WorkerMessage {
        msg: Some(worker_message::Msg::Hello(proto::Hello {
            protocol_version: PROTOCOL_VERSION,
            name: "silent".into(),
            concurrency: 1,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut inbound = client
        .connect(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let id = submit(&server, job(&["true"])).await;

    // Keep the stream alive with heartbeats but never accept.
    let beats = tx.clone();
    let heartbeat = tokio::spawn(async move {
        loop {
            let beat = WorkerMessage {
                msg: Some(worker_message::Msg::Heartbeat(proto::Heartbeat {})),
            };
            if beats.send(beat).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let mut assigned = Vec::new();
    let mut cancelled = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while assigned.len() < 2 || cancelled.is_empty() {
        let message = tokio::time::timeout_at(deadline, inbound.message())
            .await
            .expect("the server should offer the request again and cancel the late accept")
            .unwrap()
            .unwrap();
        match message.msg {
            Some(server_message::Msg::Assign(assign)) => {
                let attempt = assign.attempt.unwrap();
                assert_eq!(attempt.work_request_id, id);
                if attempt.attempt == 2 {
                    // Now accept the first one, too late.
                    tx.send(WorkerMessage {
                        msg: Some(worker_message::Msg::Accept(proto::Accept {
                            attempt: Some(AttemptRef {
                                work_request_id: id.clone(),
                                attempt: 1,
                            }),
                        })),
                    })
                    .await
                    .unwrap();
                }
                assigned.push(attempt.attempt);
            }
            Some(server_message::Msg::Cancel(cancel)) => {
                cancelled.push(cancel.attempt.unwrap().attempt)
            }
            _ => {}
        }
    }
    assert_eq!(assigned[..2], [1, 2]);
    assert_eq!(
        cancelled,
        vec![1],
        "the late accept must be answered with a cancel"
    );
    let request = get(&server, &id).await;
    assert_eq!(request.attempts[0].reason, "not-accepted", "{request:?}");
    heartbeat.abort();
    server.stop().await;
}
