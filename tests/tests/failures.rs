//! Failure handling: a worker that dies, a worker that keeps dying until the retry budget
//! is spent, a worker that comes back with its attempt still running, and an assignment
//! that is never accepted. Nothing may be lost, stuck or run twice, and a replaced
//! worker's late writes must change nothing.
//!
//! The workers are simulated: what is tested is how the server notices a lost worker (the
//! lease, the reconnect's `Hello`) and what it does then. What a `kill -9` does to the real
//! `berth-worker` and its containers (the container outlives it, the restarted worker
//! reaps it, the request runs again) is tested with Docker in `execution.rs`.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::HashMap;
use std::time::Duration;

use berth_common::proto::server_message::Msg as ServerMsg;
use berth_common::proto::worker_message::Msg as WorkerMsg;
use berth_common::proto::{
    self, AppendLogRequest, AttemptRef, LogStream, Role, SubmitWorkRequestRequest,
    WorkRequestStatus, WorkResult,
};
use berth_tests::{
    RawAgent, SimOptions, TestServer, get, is_terminal, quick_leases, raw_hello, result, sh, spec,
    submit, submit_request, wait_attempt_started, wait_for, wait_terminal,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_workers_job_completes_elsewhere_and_its_late_writes_are_refused() {
    let server = TestServer::start_with(quick_leases).await;
    let mut doomed = server.sim_worker(SimOptions::default()).await;
    let id = submit(&server, sh("sleep 2; echo finished")).await.id;
    wait_attempt_started(&server, &id, 1).await;

    let rescuer = server.sim_worker(SimOptions::default()).await;
    doomed.kill().await;

    // TTL (3 s) + 10 s, as promised; the job itself takes 2 s more.
    let done = wait_for(
        &server,
        &id,
        "to end on the rescuer",
        Duration::from_secs(3 + 10 + 5),
        is_terminal,
    )
    .await;
    assert_eq!(done.status, WorkRequestStatus::Completed as i32, "{done:?}");
    assert_eq!(done.result, WorkResult::Success as i32, "{done:?}");
    assert_eq!(done.attempt_count, 2, "{done:?}");
    assert_eq!(done.attempts[0].reason, "worker-lost", "{done:?}");
    assert_eq!(done.attempts[0].worker, doomed.name);
    assert_eq!(done.attempts[1].worker, rescuer.name);

    // The dead worker comes back late with its old attempt: its log write is refused
    // with FAILED_PRECONDITION, its Hello is told to abandon the attempt, and its
    // Finished changes nothing.
    let old = AttemptRef {
        work_request_id: id.clone(),
        attempt: 1,
    };
    let hello = proto::Hello {
        labels: HashMap::from([("late".to_owned(), "yes".to_owned())]),
        ..raw_hello(&doomed.name, 1, vec![old.clone()])
    };
    let (mut late, welcome) = RawAgent::connect(&server, &doomed.token, hello).await;
    let refused = late
        .client
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
    assert_eq!(welcome.abandon, vec![old.clone()]);
    late.send(WorkerMsg::Finished(proto::Finished {
        attempt: Some(old.clone()),
        outcome: proto::Outcome::Exited as i32,
        exit_code: Some(99),
        ..Default::default()
    }));
    // Stale, it changes nothing, and the worker is told it may forget it.
    let next_not_heartbeat = async |late: &mut RawAgent| loop {
        match late.next(Duration::from_secs(30)).await {
            ServerMsg::Heartbeat(_) => {}
            other => return other,
        }
    };
    match next_not_heartbeat(&mut late).await {
        ServerMsg::Recorded(recorded) => assert_eq!(recorded.attempts, vec![old]),
        other => panic!("expected the late Finished to be answered with Recorded: {other:?}"),
    }
    // The server applies a stream's reports in order: once a job assigned to this stream
    // after the late Finished has been recorded as finished, the late Finished has been
    // applied too (or refused).
    let witness = submit_request(
        &server,
        SubmitWorkRequestRequest {
            spec: Some(spec(&["true"])),
            requirements: HashMap::from([("late".to_owned(), "yes".to_owned())]),
            ..Default::default()
        },
    )
    .await;
    let ServerMsg::Assign(assign) = next_not_heartbeat(&mut late).await else {
        panic!("expected the witness job to be assigned to the late worker");
    };
    let attempt = assign.attempt.unwrap();
    assert_eq!(attempt.work_request_id, witness.id);
    late.send(WorkerMsg::Accept(proto::Accept {
        attempt: Some(attempt.clone()),
    }));
    late.send(WorkerMsg::Finished(proto::Finished {
        attempt: Some(attempt),
        outcome: proto::Outcome::Exited as i32,
        exit_code: Some(0),
        ..Default::default()
    }));
    assert_eq!(
        result(&wait_terminal(&server, &witness.id).await),
        WorkResult::Success
    );
    let after = get(&server, &id).await;
    assert_eq!(after.result, WorkResult::Success as i32);
    assert_eq!(after.exit_code, Some(0));
    assert_eq!(after.attempts[0].exit_code, None, "{after:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_whose_workers_keep_dying_ends_in_error_when_the_retry_budget_is_spent() {
    let server = TestServer::start_with(quick_leases).await;
    let mut worker = server.sim_worker(SimOptions::default()).await;
    let id = submit(&server, spec(&["sleep", "300"])).await.id;
    // The first attempt plus a retry budget of 2: three losses end it. Each time the
    // worker comes back as a new process, whose Hello does not list the attempt.
    for n in 1..=3 {
        wait_attempt_started(&server, &id, n).await;
        worker.kill().await;
        worker.start_again().await;
    }
    let done = wait_terminal(&server, &id).await;
    assert_eq!(done.status, WorkRequestStatus::Completed as i32, "{done:?}");
    assert_eq!(done.result, WorkResult::Error as i32, "{done:?}");
    assert_eq!(done.reason, "worker-lost");
    assert_eq!(done.attempt_count, 3);
    assert!(
        done.attempts.iter().all(|a| a.reason == "worker-lost"),
        "{done:?}"
    );
    // Nothing is offered again: the worker is idle and connected, and the next job it
    // gets is a new one.
    let next = submit(&server, spec(&["true"])).await;
    let next = wait_terminal(&server, &next.id).await;
    assert_eq!(result(&next), WorkResult::Success, "{next:?}");
    assert_eq!(get(&server, &id).await.attempt_count, 3);
    let assigned: Vec<(String, u32)> = worker
        .seen()
        .assigned
        .into_iter()
        .map(|a| (a.work_request_id, a.attempt))
        .collect();
    assert_eq!(
        assigned,
        [
            (id.clone(), 1),
            (id.clone(), 2),
            (id.clone(), 3),
            (next.id.clone(), 1)
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_reconnects_listing_its_running_attempt_keeps_it() {
    let server = TestServer::start_with(quick_leases).await;
    let mut worker = server.sim_worker(SimOptions::default()).await;
    let id = submit(&server, sh("sleep 2; echo done")).await.id;
    wait_attempt_started(&server, &id, 1).await;

    // The connection drops while the job runs; the worker's next Hello lists it.
    worker.reconnect().await;
    assert_eq!(worker.seen().abandoned, [], "the attempt is still current");
    let done = wait_terminal(&server, &id).await;
    assert_eq!(result(&done), WorkResult::Success, "{done:?}");
    assert_eq!(done.attempt_count, 1, "it ran once: {done:?}");
    assert_eq!(done.attempts[0].worker, worker.name);
    assert_eq!(worker.seen().assigned.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assignment_never_accepted_is_offered_again_and_a_late_accept_is_cancelled() {
    let server = TestServer::start_with(quick_leases).await;
    let (_, token) = server.create_token(Role::Worker, "silent").await;
    let (mut silent, _) = RawAgent::connect(&server, &token, raw_hello("silent", 1, vec![])).await;
    let id = submit(&server, spec(&["true"])).await.id;

    // Keep the stream alive with heartbeats but never accept.
    let beats = silent.sender();
    let heartbeat = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(500));
        loop {
            every.tick().await;
            let beat = proto::WorkerMessage {
                msg: Some(WorkerMsg::Heartbeat(proto::Heartbeat {})),
            };
            if beats.send(beat).is_err() {
                return;
            }
        }
    });
    let mut assigned = Vec::new();
    let mut cancelled = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while assigned.len() < 2 || cancelled.is_empty() {
        let within = deadline.saturating_duration_since(tokio::time::Instant::now());
        match silent.next(within).await {
            ServerMsg::Assign(assign) => {
                let attempt = assign.attempt.unwrap();
                assert_eq!(attempt.work_request_id, id);
                if attempt.attempt == 2 {
                    // Now accept the first one, too late.
                    silent.send(WorkerMsg::Accept(proto::Accept {
                        attempt: Some(AttemptRef {
                            work_request_id: id.clone(),
                            attempt: 1,
                        }),
                    }));
                }
                assigned.push(attempt.attempt);
            }
            ServerMsg::Cancel(cancel) => cancelled.push(cancel.attempt.unwrap().attempt),
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

#[tokio::test(flavor = "multi_thread")]
async fn a_job_interrupted_by_its_workers_shutdown_goes_back_to_the_queue_saying_why() {
    let server = TestServer::start().await;
    let mut leaving = server
        .sim_worker(SimOptions::default().drain_timeout(Duration::from_millis(200)))
        .await;
    let id = submit(&server, spec(&["sleep", "60"])).await.id;
    wait_attempt_started(&server, &id, 1).await;
    // A graceful stop that does not wait for the job: it reports the attempt interrupted.
    leaving.stop().await;
    let requeued = wait_for(
        &server,
        &id,
        "to be pending again",
        Duration::from_secs(30),
        |r| {
            proto::WorkRequestStatus::try_from(r.status) == Ok(WorkRequestStatus::Pending)
                && r.attempts.first().is_some_and(|a| !a.reason.is_empty())
        },
    )
    .await;
    assert_eq!(requeued.reason, "interrupted", "{requeued:?}");
    assert_eq!(requeued.attempts[0].reason, "interrupted", "{requeued:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_keeps_what_the_last_attempt_said() {
    let server = TestServer::start().await;
    let _worker = server.sim_worker(SimOptions::default()).await;
    // Fails once, then waits an hour for its automatic retry.
    let id = submit_request(
        &server,
        SubmitWorkRequestRequest {
            spec: Some(sh("exit 3")),
            retries: 1,
            retry_backoff: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            ..Default::default()
        },
    )
    .await
    .id;
    let waiting = wait_for(
        &server,
        &id,
        "to wait for its retry",
        Duration::from_secs(30),
        |r| r.message.contains("retrying automatically"),
    )
    .await;
    assert_eq!(waiting.exit_code, Some(3), "{waiting:?}");
    let cancelled = berth_tests::cancel(&server, &id).await;
    assert_eq!(
        proto::WorkRequestStatus::try_from(cancelled.status),
        Ok(WorkRequestStatus::Aborted)
    );
    assert_eq!(cancelled.reason, "cancelled");
    assert_eq!(cancelled.exit_code, Some(3), "{cancelled:?}");
    assert_eq!(cancelled.message, waiting.message, "{cancelled:?}");
}
