//! Containers live no longer than their attempts, whichever worker started them: reaping
//! per Docker engine, the wait for a lost worker's containers to be stopped before its
//! requests run again, and the timeout of a container whose worker is gone.
//!
//! Every test here shares the one Docker engine of the machine (as every execution test
//! does), so the workers of other tests judge these containers too. Their servers have no
//! record of these attempts and leave them alone, which these tests rely on as well.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::HashMap;
use std::time::Duration;

use berth_common::proto::server_message::Msg as ServerMsg;
use berth_common::proto::worker_message::Msg as WorkerMsg;
use berth_common::proto::{
    self, AttemptRef, ContainerSpec, GetWorkerRequest, KeepContainersRequest,
    SubmitWorkRequestRequest, WorkRequest, WorkRequestStatus, WorkResult,
};
use berth_tests::{
    RawAgent, TEST_IMAGE, TestServer, TestWorker, WAIT, container_exists, docker,
    ensure_test_image, eventually, get, quick_leases, raw_hello, result, secs, spec, status,
    submit_request, wait_attempt_started, wait_for, wait_no_containers, wait_started,
    wait_terminal, worker_of,
};
use tonic::Code;

/// The engine's ID, as workers report it in `docker_engine_id`.
async fn engine_id() -> String {
    docker(&["info", "--format", "{{.ID}}"])
        .await
        .trim()
        .to_owned()
}

/// A server with short leases (a lost worker is noticed within seconds) that waits up to
/// `stop_wait` for a lost worker's containers to be confirmed stopped.
async fn server(stop_wait: Duration) -> TestServer {
    TestServer::start_with(|config| {
        quick_leases(config);
        config.agent.stop_wait = stop_wait;
    })
    .await
}

/// Submits `spec` for workers labelled `lane=<lane>`.
async fn submit_for(server: &TestServer, lane: &str, spec: ContainerSpec) -> WorkRequest {
    submit_request(
        server,
        SubmitWorkRequestRequest {
            spec: Some(spec),
            requirements: HashMap::from([("lane".to_owned(), lane.to_owned())]),
            ..Default::default()
        },
    )
    .await
}

/// `sleep 300` with a 20 s timeout: it outlives any wait here unless something stops it.
fn long_sleep() -> ContainerSpec {
    ContainerSpec {
        timeout: Some(secs(20)),
        ..spec(&["sleep", "300"])
    }
}

/// Waits until attempt `n` of `id` exists, checking on every look before that whether
/// `container` still exists; returns the request and whether `container` existed when the
/// attempt was first seen. A container removed after attempt `n` came into being is caught
/// here; one removed before it never is.
async fn attempt_appears_while(server: &TestServer, id: &str, n: u32, container: &str) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let request = get(server, id).await;
        let existed = container_exists(container).await;
        if request.attempt_count >= n {
            // Looked at the container after the request: if it is gone now it may have
            // gone just after the attempt appeared, so look once more the other way round.
            return existed && container_exists(container).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "attempt {n} of {id} did not appear within {WAIT:?}: {request:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Labels for a container made by hand as if worker `worker` had created it.
fn berth_labels(worker: &str, id: &str, attempt: u32, extra: &[(&str, &str)]) -> Vec<String> {
    let mut labels = vec![
        "berth.managed=true".to_owned(),
        format!("berth.worker={worker}"),
        format!("berth.work-request={id}"),
        format!("berth.attempt={attempt}"),
        "berth.stop-grace-ms=1000".to_owned(),
    ];
    labels.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
    labels
        .into_iter()
        .flat_map(|l| ["--label".to_owned(), l])
        .collect()
}

/// `docker create` (or `run -d`, with `start`) of the test image with `labels`; the id.
async fn labelled_container(labels: &[String], start: bool) -> String {
    let mut args: Vec<&str> = vec![if start { "run" } else { "create" }];
    if start {
        args.push("-d");
    }
    args.extend(labels.iter().map(String::as_str));
    args.extend([TEST_IMAGE, "sleep", "300"]);
    docker(&args).await.trim().to_owned()
}

/// Waits until `container` is gone from the engine.
async fn wait_gone(container: &str, why: &str) {
    eventually(why, WAIT, || async {
        (!container_exists(container).await).then_some(())
    })
    .await;
}

/// A raw agent on this engine: it reports the engine's ID like a real worker would, and
/// answers nothing but what the test sends.
async fn raw_on_engine(server: &TestServer, name: &str, lane: &str) -> (RawAgent, String) {
    let (_, token) = server.create_token(proto::Role::Worker, name).await;
    let mut hello = raw_hello(name, 1, Vec::new());
    hello.metadata = HashMap::from([("docker_engine_id".to_owned(), engine_id().await)]);
    hello.labels = HashMap::from([("lane".to_owned(), lane.to_owned())]);
    let (agent, _) = RawAgent::connect(server, &token, hello).await;
    (agent, token)
}

/// Keeps `agent`'s lease alive until the returned task is aborted.
fn keep_alive(agent: &RawAgent) -> tokio::task::JoinHandle<()> {
    let beats = agent.sender();
    tokio::spawn(async move {
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
    })
}

/// Takes the next Assign from `agent`, accepts it and reports it started (with a made-up
/// container id); returns the attempt once the server has recorded the start.
async fn accept_next(server: &TestServer, agent: &mut RawAgent) -> AttemptRef {
    let attempt = loop {
        if let ServerMsg::Assign(assign) = agent.next(WAIT).await {
            break assign.attempt.unwrap();
        }
    };
    agent.send(WorkerMsg::Accept(proto::Accept {
        attempt: Some(attempt.clone()),
    }));
    agent.send(WorkerMsg::Started(proto::Started {
        attempt: Some(attempt.clone()),
        container_id: "made-up".into(),
        pull_duration: None,
        ..Default::default()
    }));
    wait_for(server, &attempt.work_request_id, "to start", WAIT, |r| {
        r.attempts.first().is_some_and(|a| a.started_at.is_some())
    })
    .await;
    attempt
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_workers_container_is_reaped_by_the_next_worker_on_its_engine_before_the_request_runs_again()
 {
    ensure_test_image().await;
    let server = server(Duration::from_secs(60)).await;
    let mut first = TestWorker::start(&server, &["--label", "lane=o!"]).await;
    first.wait_connected(&server).await;
    // The worker reports its engine's identity with its facts.
    let facts = server
        .workers(&server.admin_token)
        .await
        .get_worker(GetWorkerRequest {
            name: first.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .metadata;
    assert_eq!(facts.get("docker_engine_id"), Some(&engine_id().await));

    let submitted = submit_for(&server, "o", long_sleep()).await;
    let running = wait_started(&server, &submitted.id).await;
    let container = running.attempts[0].container_id.clone();
    first.kill().await;
    // No other worker is on the engine: at lease expiry the request is offered again, as
    // before, and the container is left running (nobody can stop it yet).
    let lost = wait_for(&server, &submitted.id, "to lose attempt 1", WAIT, |r| {
        r.attempts
            .first()
            .is_some_and(|a| a.reason == "worker-lost")
    })
    .await;
    assert_eq!(status(&lost), WorkRequestStatus::Pending);
    assert!(container_exists(&container).await);

    // A new worker on the engine reaps it at start, before it takes any work.
    let second = TestWorker::start(&server, &["--label", "lane=o!"]).await;
    assert!(
        !attempt_appears_while(&server, &submitted.id, 2, &container).await,
        "attempt 2 came while attempt 1's container still existed; worker log:\n{}",
        second.log()
    );
    let again = wait_attempt_started(&server, &submitted.id, 2).await;
    assert_eq!(worker_of(&again), second.name);
    assert!(!container_exists(&container).await);
    end(server, vec![first, second], &[&submitted.id]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_worker_on_the_engine_stops_the_lost_workers_container_before_its_request_runs_again()
 {
    ensure_test_image().await;
    let server = server(Duration::from_secs(60)).await;
    let mut one = TestWorker::start(&server, &["--label", "lane=o!"]).await;
    let mut two = TestWorker::start(&server, &["--label", "lane=o!"]).await;
    one.wait_connected(&server).await;
    two.wait_connected(&server).await;
    let submitted = submit_for(&server, "o", long_sleep()).await;
    let running = wait_started(&server, &submitted.id).await;
    let container = running.attempts[0].container_id.clone();
    let (lost, helper) = if worker_of(&running) == one.name {
        (&mut one, &two)
    } else {
        (&mut two, &one)
    };
    lost.kill().await;

    assert!(
        !attempt_appears_while(&server, &submitted.id, 2, &container).await,
        "attempt 2 came while attempt 1's container still existed; helper's log:\n{}",
        helper.log()
    );
    let again = wait_attempt_started(&server, &submitted.id, 2).await;
    assert_eq!(worker_of(&again), helper.name);
    let first = &again.attempts[0];
    assert_eq!(first.reason, "worker-lost");
    assert!(
        first.message.contains("stopped its container"),
        "attempt 1 says why it ended: {first:?}"
    );
    // From the database's times as well: attempt 1 ended before attempt 2 was assigned.
    assert!(
        berth_tests::at(first.finished_at.as_ref())
            <= berth_tests::at(again.attempts[1].assigned_at.as_ref())
    );
    assert!(!container_exists(&container).await);
    end(server, vec![one, two], &[&submitted.id]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_workers_container_is_left_alone_by_the_other_workers_on_its_engine() {
    ensure_test_image().await;
    let server = server(Duration::from_secs(60)).await;
    // Both judge the engine's containers five times a second: the other's container is a
    // current attempt of a live worker and must survive every one of those sweeps.
    let fast = ["--label", "lane=o", "--orphan-sweep-interval", "200ms"];
    let one = TestWorker::start(&server, &fast).await;
    let two = TestWorker::start(&server, &fast).await;
    one.wait_connected(&server).await;
    two.wait_connected(&server).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(submit_for(&server, "o", spec(&["sleep", "3"])).await.id);
    }
    for id in &ids {
        let ended = wait_terminal(&server, id).await;
        assert_eq!(
            result(&ended),
            WorkResult::Success,
            "a sweep stopped a live attempt's container: {ended:#?}\n{}\n{}",
            one.log(),
            two.log()
        );
        assert_eq!(ended.attempt_count, 1);
    }
    end(server, vec![one, two], &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_created_but_never_started_is_reaped_by_another_worker_and_by_its_own_worker_restarted()
 {
    ensure_test_image().await;
    let server = server(Duration::from_secs(60)).await;
    let helper = TestWorker::start(
        &server,
        &["--label", "lane=h", "--orphan-sweep-interval", "500ms"],
    )
    .await;
    helper.wait_connected(&server).await;

    // Another worker on the engine took an attempt, created its container and died
    // before starting it.
    let (mut lost, _) = raw_on_engine(&server, &berth_tests::unique_name("raw"), "r").await;
    let submitted = submit_for(&server, "r", spec(&["sleep", "300"])).await;
    let attempt = accept_next(&server, &mut lost).await;
    let created = labelled_container(
        &berth_labels("lost-raw", &submitted.id, attempt.attempt, &[]),
        false,
    )
    .await;
    drop(lost);
    wait_gone(
        &created,
        "the helper to remove the lost worker's created container",
    )
    .await;
    let requeued = wait_for(&server, &submitted.id, "to be offered again", WAIT, |r| {
        r.attempts.first().is_some_and(|a| a.finished_at.is_some())
    })
    .await;
    assert_eq!(requeued.attempts[0].reason, "worker-lost");
    assert!(
        requeued.attempts[0]
            .message
            .contains("stopped its container"),
        "the request ran again only once the helper confirmed the stop: {:?}",
        requeued.attempts[0]
    );

    // A worker restarted (by systemd, say) finds its own created container at start.
    let mut own = TestWorker::start(&server, &["--label", "lane=x"]).await;
    own.wait_connected(&server).await;
    own.kill().await;
    let leftover = labelled_container(
        &berth_labels(&own.name, "0190c0de-0000-7000-8000-000000000000", 1, &[]),
        false,
    )
    .await;
    own.spawn();
    wait_gone(
        &leftover,
        "the restarted worker to remove its own created container",
    )
    .await;
    own.wait_connected(&server).await;
    end(server, vec![helper, own], &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_stop_confirmation_the_request_runs_again_after_the_wait_with_the_reason_recorded()
 {
    let wait = Duration::from_secs(4);
    let server = server(wait).await;
    // The helper shares the engine and stays alive, but never answers StopContainers.
    let (mut helper, _) = raw_on_engine(&server, &berth_tests::unique_name("mute"), "m").await;
    let beating = keep_alive(&helper);
    let (mut lost, _) = raw_on_engine(&server, &berth_tests::unique_name("lost"), "r").await;
    let submitted = submit_for(&server, "r", spec(&["sleep", "300"])).await;
    let attempt = accept_next(&server, &mut lost).await;
    drop(lost);

    // The helper is told to stop the lost attempt's container, again and again.
    let mut told = 0;
    while told < 2 {
        let next = helper.next(WAIT).await;
        if let ServerMsg::StopContainers(stop) = next {
            assert_eq!(stop.attempts, vec![attempt.clone()]);
            told += 1;
        }
    }
    let ended = wait_for(&server, &submitted.id, "to be offered again", WAIT, |r| {
        r.attempts.first().is_some_and(|a| a.finished_at.is_some())
    })
    .await;
    let first = &ended.attempts[0];
    assert_eq!(first.reason, "worker-lost");
    assert!(
        first.message.contains("confirmed within 4s"),
        "attempt 1 says why it ran again unconfirmed: {first:?}"
    );
    assert_eq!(status(&ended), WorkRequestStatus::Pending);
    // It waited: from the lease's end (the sweep's mark) to the requeue took the wait.
    let marked = berth_tests::query(
        &server.database_url,
        &format!(
            "SELECT (finished_at - stop_requested_at) >= interval '4 seconds' AS waited \
             FROM attempts WHERE work_request_id = '{}' AND number = 1",
            submitted.id
        ),
    )
    .await;
    assert!(marked[0].get::<_, bool>("waited"));
    beating.abort();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stop_is_asked_of_a_helper_connected_to_another_replica_and_its_answer_counts() {
    let server = server(Duration::from_secs(60)).await;
    let replica = server.replica().await;
    // The helper holds its stream on the replica, the lost worker held its on the first
    // server: whichever replica's sweep marks the attempt, the replica holding the
    // helper's stream tells it.
    let (mut helper, _) = raw_on_engine(&replica, &berth_tests::unique_name("help"), "h").await;
    let beating = keep_alive(&helper);
    let (mut lost, _) = raw_on_engine(&server, &berth_tests::unique_name("lost"), "r").await;
    let submitted = submit_for(&server, "r", spec(&["sleep", "300"])).await;
    let attempt = accept_next(&server, &mut lost).await;
    drop(lost);
    let stop = loop {
        if let ServerMsg::StopContainers(stop) = helper.next(WAIT).await {
            break stop;
        }
    };
    assert_eq!(stop.attempts, vec![attempt.clone()]);
    // Still waiting: nothing runs again before the answer.
    let waiting = get(&server, &submitted.id).await;
    assert_eq!(status(&waiting), WorkRequestStatus::Running);
    // The attempt had started, so a container existed: the helper finding none now
    // means it is gone.
    helper.send(WorkerMsg::ContainersStopped(proto::ContainersStopped {
        attempts: Vec::new(),
        none_found: stop.attempts,
    }));
    let ended = wait_for(&server, &submitted.id, "to be offered again", WAIT, |r| {
        r.attempts.first().is_some_and(|a| a.finished_at.is_some())
    })
    .await;
    assert_eq!(status(&ended), WorkRequestStatus::Pending, "{ended:#?}");
    assert!(
        ended.attempts[0].message.contains("stopped its container"),
        "{:?}",
        ended.attempts[0]
    );
    beating.abort();
    replica.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_container_past_its_timeout_is_stopped_even_while_its_worker_lives() {
    ensure_test_image().await;
    let server = server(Duration::from_secs(60)).await;
    // The owner is alive and its attempt current, so the server says keep; but the
    // container ran past its 1 s timeout, its 1 s grace and the margin without its worker
    // stopping it.
    let (mut owner, _) = raw_on_engine(&server, &berth_tests::unique_name("stuck"), "r").await;
    let beating = keep_alive(&owner);
    let submitted = submit_for(&server, "r", spec(&["sleep", "300"])).await;
    let attempt = accept_next(&server, &mut owner).await;
    let overdue = labelled_container(
        &berth_labels(
            "stuck-owner",
            &submitted.id,
            attempt.attempt,
            &[("berth.timeout-ms", "1000")],
        ),
        true,
    )
    .await;
    let helper = TestWorker::start(
        &server,
        &["--label", "lane=h", "--orphan-sweep-interval", "500ms"],
    )
    .await;
    helper.wait_connected(&server).await;
    wait_gone(
        &overdue,
        "the helper to stop the container past its timeout",
    )
    .await;
    // The attempt itself is its owner's to report: it is still current.
    let request = get(&server, &submitted.id).await;
    assert_eq!(status(&request), WorkRequestStatus::Running);
    assert!(request.attempts[0].finished_at.is_none());
    beating.abort();
    end(server, vec![helper], &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_containers_judges_attempts_and_refuses_bad_input_clearly() {
    let server = server(Duration::from_secs(60)).await;
    let (mut owner, _) = raw_on_engine(&server, &berth_tests::unique_name("own"), "r").await;
    let beating = keep_alive(&owner);
    submit_for(&server, "r", spec(&["sleep", "300"])).await;
    let attempt = accept_next(&server, &mut owner).await;
    let stranger = AttemptRef {
        work_request_id: uuid::Uuid::now_v7().to_string(),
        attempt: 1,
    };
    let stale = AttemptRef {
        attempt: attempt.attempt + 1,
        ..attempt.clone()
    };
    let answer = owner
        .client
        .keep_containers(KeepContainersRequest {
            attempts: vec![attempt.clone(), stranger.clone(), stale],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.keep, vec![attempt.clone()]);
    assert_eq!(answer.unknown, vec![stranger.clone()]);

    let too_many = owner
        .client
        .keep_containers(KeepContainersRequest {
            attempts: vec![stranger.clone(); 1001],
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    assert!(too_many.message().contains("at most 1000"), "{too_many:?}");
    let malformed = owner
        .client
        .keep_containers(KeepContainersRequest {
            attempts: vec![
                stranger.clone(),
                AttemptRef {
                    work_request_id: "not-an-id".into(),
                    attempt: 1,
                },
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(malformed.message().contains("attempts[1]"), "{malformed:?}");
    let zero = owner
        .client
        .keep_containers(KeepContainersRequest {
            attempts: vec![AttemptRef {
                attempt: 0,
                ..stranger
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(zero.code(), Code::InvalidArgument);
    beating.abort();
    server.stop().await;
}

/// Cancels what is still running, waits until the workers left nothing on the engine,
/// and stops them and the server.
async fn end(server: TestServer, mut workers: Vec<TestWorker>, running: &[&str]) {
    for id in running {
        let _ = berth_tests::cancel(&server, id).await;
    }
    for worker in &mut workers {
        wait_no_containers(&worker.name).await;
        // A killed worker has no process left to stop.
        let _ = worker.terminate(Duration::from_secs(30)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_helper_finding_no_container_of_an_attempt_that_never_started_does_not_run_it_again() {
    let server = server(Duration::from_secs(60)).await;
    let (mut helper, _) = raw_on_engine(&server, &berth_tests::unique_name("help"), "h").await;
    let beating = keep_alive(&helper);
    let (mut lost, _) = raw_on_engine(&server, &berth_tests::unique_name("lost"), "r").await;
    let submitted = submit_for(&server, "r", spec(&["sleep", "300"])).await;
    // Accepted, never reported started: cut off while pulling or creating, the lost
    // worker may make its container after any look another worker takes.
    let attempt = loop {
        if let ServerMsg::Assign(assign) = lost.next(WAIT).await {
            break assign.attempt.unwrap();
        }
    };
    lost.send(WorkerMsg::Accept(proto::Accept {
        attempt: Some(attempt.clone()),
    }));
    let accepted = format!(
        "SELECT 1 FROM attempts WHERE work_request_id = '{}' AND state = 'accepted'",
        submitted.id
    );
    berth_tests::eventually("the attempt to be accepted", WAIT, || async {
        let rows = berth_tests::query(&server.database_url, &accepted).await;
        (!rows.is_empty()).then_some(())
    })
    .await;
    drop(lost);
    let stop = loop {
        if let ServerMsg::StopContainers(stop) = helper.next(WAIT).await {
            break stop;
        }
    };
    assert_eq!(stop.attempts, vec![attempt.clone()]);
    helper.send(WorkerMsg::ContainersStopped(proto::ContainersStopped {
        attempts: Vec::new(),
        none_found: stop.attempts.clone(),
    }));
    // The sweep asks again every round while the attempt waits; two more asks show the
    // first answer was taken and did not end the wait.
    for _ in 0..2 {
        loop {
            if let ServerMsg::StopContainers(again) = helper.next(WAIT).await {
                assert_eq!(again.attempts, vec![attempt.clone()]);
                break;
            }
        }
    }
    let waiting = get(&server, &submitted.id).await;
    assert_eq!(
        status(&waiting),
        WorkRequestStatus::Running,
        "ran again on a helper's word that it found nothing: {waiting:?}"
    );
    assert!(waiting.attempts[0].finished_at.is_none(), "{waiting:?}");
    // Found and removed: that counts.
    helper.send(WorkerMsg::ContainersStopped(proto::ContainersStopped {
        attempts: stop.attempts,
        none_found: Vec::new(),
    }));
    let ended = wait_for(&server, &submitted.id, "to be offered again", WAIT, |r| {
        r.attempts.first().is_some_and(|a| a.finished_at.is_some())
    })
    .await;
    assert_eq!(status(&ended), WorkRequestStatus::Pending);
    beating.abort();
    server.stop().await;
}
