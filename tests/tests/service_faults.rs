//! Services under faults, through the real `ServiceService` API: a replica's container
//! killed from outside, a real worker killed with SIGKILL while another runs, a simulated
//! worker cut off and coming back late with its old attempt, and a real `berth-server`
//! process killed and started again. Replicas are ordinary work requests, so what is
//! looked at is what users see (the replicas, their requests, the history) and the
//! containers on the one Docker engine of this machine.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use berth_common::client::BearerAuth;
use berth_common::proto::server_message::Msg as ServerMsg;
use berth_common::proto::service_service_client::ServiceServiceClient;
use berth_common::proto::worker_message::Msg as WorkerMsg;
use berth_common::proto::{
    self, AttemptRef, Backoff, CreateServiceRequest, GetServiceHistoryRequest, GetServiceRequest,
    Process, Replica, ScaleServiceRequest, Service, ServiceEvent, SubmitWorkRequestRequest,
    WorkResult,
};
use berth_tests::services::create_template;
use berth_tests::{
    Authed, ContainerSweep, RawAgent, ServerProcess, SimOptions, TEST_IMAGE, TestServer,
    TestWorker, WAIT, docker, ensure_test_image, eventually, get, query, quick_heartbeats,
    quick_leases, raw_hello, result, spec, submit_request, unique_name, wait_terminal,
};

/// A replica's command in a real container: runs until stopped (TERM ends it at once).
const LONG: &[&str] = &[
    "sh",
    "-c",
    "trap 'exit 0' TERM; while true; do sleep 1; done",
];

/// The `ServiceService` of `server`, as its admin.
async fn api(server: &TestServer) -> ServiceServiceClient<Authed> {
    ServiceServiceClient::with_interceptor(
        server.channel().await,
        BearerAuth::new(&server.admin_token),
    )
}

/// Creates service `name` in `default` from the latest `template` with `web=replicas`.
async fn create(
    server: &TestServer,
    name: &str,
    template: &str,
    replicas: u32,
    backoff: Option<Backoff>,
) -> Service {
    api(server)
        .await
        .create_service(CreateServiceRequest {
            name: name.to_owned(),
            template: template.to_owned(),
            processes: HashMap::from([(
                "web".to_owned(),
                Process {
                    replicas,
                    command: Vec::new(),
                },
            )]),
            backoff,
            ..CreateServiceRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn get_service(server: &TestServer, name: &str) -> Service {
    api(server)
        .await
        .get_service(GetServiceRequest {
            workspace: String::new(),
            name: name.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Every event of `name`, oldest first.
async fn history(server: &TestServer, name: &str) -> Vec<ServiceEvent> {
    let mut events = api(server)
        .await
        .get_service_history(GetServiceHistoryRequest {
            name: name.to_owned(),
            limit: 1000,
            ..GetServiceHistoryRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    events.sort_by_key(|e| e.id);
    events
}

/// `kind: reason` of every event, for failure messages.
fn said(events: &[ServiceEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} {}: {}",
                e.kind, e.replica, e.work_request_id, e.reason
            )
        })
        .collect()
}

/// Whether `replica` has a container running on a worker.
fn is_running(replica: &Replica) -> bool {
    !replica.worker.is_empty()
        && !replica.work_request_id.is_empty()
        && matches!(replica.state.as_str(), "starting" | "healthy")
}

/// Waits until `check` holds of `name`'s view.
async fn wait_service(
    server: &TestServer,
    name: &str,
    what: &str,
    within: Duration,
    check: impl Fn(&Service) -> bool,
) -> Service {
    eventually(what, within, || async {
        let service = get_service(server, name).await;
        check(&service).then_some(service)
    })
    .await
}

/// Waits until `name`'s history has an event of `kind` for request `request` (any when
/// empty) whose reason contains `text`.
async fn wait_event(
    server: &TestServer,
    name: &str,
    kind: &str,
    request: &str,
    text: &str,
) -> ServiceEvent {
    eventually(
        &format!("a {kind} event of {request:?} saying {text:?}"),
        WAIT,
        || async {
            history(server, name).await.into_iter().find(|e| {
                e.kind == kind
                    && (request.is_empty() || e.work_request_id == request)
                    && e.reason.contains(text)
            })
        },
    )
    .await
}

/// The ids of the running containers labelled `label=value`.
async fn running_containers(label: &str, value: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-q",
        "--filter",
        "label=berth.managed=true",
        "--filter",
        &format!("label={label}={value}"),
    ])
    .await
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

/// The request ids of `name`'s replicas, by replica name.
fn requests(service: &Service) -> BTreeMap<String, String> {
    service
        .replicas
        .iter()
        .map(|r| {
            (
                format!("{}.{}", r.process, r.index),
                r.work_request_id.clone(),
            )
        })
        .collect()
}

/// Seconds from the `exited` event of request `ended` to the `not_before` of the request
/// that follows it in the slot.
async fn delay_after(server: &TestServer, ended: &str, next: &str) -> f64 {
    let rows = query(
        &server.database_url,
        &format!(
            "SELECT extract(epoch FROM (r.not_before - e.at))::float8 FROM service_events e, \
             work_requests r WHERE e.kind = 'exited' AND e.request_id = '{ended}' \
             AND r.id = '{next}'"
        ),
    )
    .await;
    assert_eq!(rows.len(), 1, "one exited event of {ended}");
    rows[0].get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_from_outside_is_restarted_with_a_growing_backoff() {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_heartbeats).await;
    let mut sweep = ContainerSweep::default();
    let worker = TestWorker::start(&server, &["--concurrency", "2"]).await;
    sweep.add(&worker.name);
    worker.wait_connected(&server).await;
    create_template(&server, "long", TEST_IMAGE, LONG, "").await;
    let name = unique_name("killed");
    create(
        &server,
        &name,
        "long",
        1,
        Some(Backoff {
            initial: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            max_local_restarts: 10,
            ..Backoff::default()
        }),
    )
    .await;

    let mut ids = Vec::new();
    let mut previous = String::new();
    for round in 0..3 {
        let service = wait_service(&server, &name, "the replica running", WAIT, |s| {
            s.replicas.len() == 1
                && is_running(&s.replicas[0])
                && s.replicas[0].work_request_id != previous
        })
        .await;
        let id = service.replicas[0].work_request_id.clone();
        wait_event(&server, &name, "started", &id, "").await;
        let container = eventually("the replica's container", WAIT, || async {
            running_containers("berth.work-request", &id)
                .await
                .into_iter()
                .next()
        })
        .await;
        ids.push(id.clone());
        if round == 2 {
            break;
        }
        docker(&["kill", &container]).await;
        let exited = wait_event(&server, &name, "exited", &id, "").await;
        assert!(exited.reason.starts_with("exit 137"), "{exited:?}");
        wait_event(&server, &name, "restarting", "", "").await;
        previous = id;
    }

    // Each kill is followed by a restart; the second one waits longer than the first.
    let events = history(&server, &name).await;
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind.as_str(),
                "started" | "exited" | "restarting" | "lost" | "moved"
            )
        })
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "started",
            "exited",
            "restarting",
            "started",
            "exited",
            "restarting",
            "started"
        ],
        "{:?}",
        said(&events)
    );
    let first = delay_after(&server, &ids[0], &ids[1]).await;
    let second = delay_after(&server, &ids[1], &ids[2]).await;
    assert!(first >= 0.9, "the first restart waits about 1 s: {first}");
    assert!(
        second > first * 1.5,
        "the second restart waits longer: {first} then {second}"
    );
    // Only the current container runs.
    assert_eq!(
        running_containers("berth.worker", &worker.name).await.len(),
        1
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_workers_replicas_move_to_the_other_worker_and_its_containers_go() {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_leases).await;
    let mut sweep = ContainerSweep::default();
    let mut doomed = TestWorker::start(&server, &["--concurrency", "2"]).await;
    sweep.add(&doomed.name);
    doomed.wait_connected(&server).await;
    create_template(&server, "long", TEST_IMAGE, LONG, "").await;
    let name = unique_name("moved");
    create(&server, &name, "long", 2, None).await;
    let before = wait_service(
        &server,
        &name,
        "two replicas on the doomed worker",
        WAIT,
        |s| {
            s.replicas.len() == 2
                && s.replicas
                    .iter()
                    .all(|r| is_running(r) && r.worker == doomed.name)
        },
    )
    .await;
    let old = requests(&before);
    for id in old.values() {
        eventually("the replica's container", WAIT, || async {
            (!running_containers("berth.work-request", id)
                .await
                .is_empty())
            .then_some(())
        })
        .await;
    }

    let survivor = TestWorker::start(&server, &["--concurrency", "2"]).await;
    sweep.add(&survivor.name);
    survivor.wait_connected(&server).await;
    doomed.kill().await;

    // Lease TTL (3 s) + 10 s.
    let after = wait_service(
        &server,
        &name,
        "both replicas on the survivor",
        Duration::from_secs(3 + 10),
        |s| {
            s.replicas.len() == 2
                && s.replicas
                    .iter()
                    .all(|r| is_running(r) && r.worker == survivor.name)
        },
    )
    .await;
    let new = requests(&after);
    for (replica, id) in &old {
        assert_ne!(&new[replica], id, "{replica} runs as a new request");
        let lost = wait_event(&server, &name, "lost", id, "").await;
        assert!(
            lost.reason
                .contains(&format!("worker {} lost", doomed.name)),
            "{lost:?}"
        );
    }

    // Both workers share this machine's one Docker engine: the server has the survivor
    // (same engine ID) stop the lost worker's containers (`StopContainers`). When the
    // killed worker comes back on that engine, none of its old containers runs, and each
    // slot has exactly one container running: its current request's.
    doomed.spawn();
    doomed.wait_connected(&server).await;
    eventually("the old containers to be gone", WAIT, || async {
        let mut stale = 0;
        for id in old.values() {
            stale += running_containers("berth.work-request", id).await.len();
        }
        (stale == 0).then_some(())
    })
    .await;
    assert_eq!(
        running_containers("berth.worker", &doomed.name).await,
        Vec::<String>::new()
    );
    for (replica, id) in &new {
        // Claimed is not yet started: under load the container may still be on its way.
        let what = format!("{replica} to run exactly one container");
        eventually(&what, WAIT, || async {
            (running_containers("berth.work-request", id).await.len() == 1).then_some(())
        })
        .await;
        assert_eq!(
            running_containers("berth.work-request", id).await.len(),
            1,
            "{replica} runs once"
        );
    }
    let still = requests(&get_service(&server, &name).await);
    assert_eq!(still, new, "nothing was restarted again");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_off_sim_workers_replica_moves_and_its_late_reports_are_refused() {
    let server = TestServer::start_with(quick_leases).await;
    let mut doomed = server.sim_worker(SimOptions::default()).await;
    create_template(&server, "sleeper", "busybox", &["sleep", "3600"], "").await;
    let name = unique_name("cut");
    create(&server, &name, "sleeper", 1, None).await;
    let before = wait_service(
        &server,
        &name,
        "the replica on the doomed worker",
        WAIT,
        |s| s.replicas.len() == 1 && is_running(&s.replicas[0]),
    )
    .await;
    let old_id = before.replicas[0].work_request_id.clone();
    assert_eq!(before.replicas[0].worker, doomed.name);

    // The connection goes and nothing more is heard from it.
    let rescuer = server.sim_worker(SimOptions::default()).await;
    doomed.kill().await;
    let after = wait_service(
        &server,
        &name,
        "the replica on the rescuer",
        Duration::from_secs(3 + 10),
        |s| {
            s.replicas.len() == 1
                && is_running(&s.replicas[0])
                && s.replicas[0].worker == rescuer.name
        },
    )
    .await;
    let new_id = after.replicas[0].work_request_id.clone();
    assert_ne!(new_id, old_id);
    let lost = wait_event(&server, &name, "lost", &old_id, "").await;
    assert!(
        lost.reason
            .contains(&format!("worker {} lost", doomed.name)),
        "{lost:?}"
    );

    // It comes back listing the old attempt: told to abandon it, and its Finished for it
    // changes nothing.
    let old = AttemptRef {
        work_request_id: old_id.clone(),
        attempt: 1,
    };
    let hello = proto::Hello {
        labels: HashMap::from([("late".to_owned(), "yes".to_owned())]),
        ..raw_hello(&doomed.name, 1, vec![old.clone()])
    };
    let (mut late, welcome) = RawAgent::connect(&server, &doomed.token, hello).await;
    assert_eq!(welcome.abandon, vec![old.clone()]);
    let old_before = get(&server, &old_id).await;
    late.send(WorkerMsg::Finished(proto::Finished {
        attempt: Some(old.clone()),
        outcome: proto::Outcome::Exited as i32,
        exit_code: Some(99),
        ..Default::default()
    }));
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
    // after the late Finished is recorded as finished, the late Finished was handled.
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
    let old_after = get(&server, &old_id).await;
    assert_eq!(old_after.status, old_before.status, "{old_after:?}");
    assert_eq!(old_after.exit_code, None, "{old_after:?}");
    // The one ending of the old request is its loss (recorded as exited and lost).
    let events = history(&server, &name).await;
    let endings: Vec<&str> = events
        .iter()
        .filter(|e| e.work_request_id == old_id && matches!(e.kind.as_str(), "exited" | "lost"))
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(endings, ["exited", "lost"], "{:?}", said(&events));
    assert!(
        events.iter().all(|e| e.exit_code != Some(99)),
        "{:?}",
        said(&events)
    );
    let now = get_service(&server, &name).await;
    assert_eq!(now.replicas[0].work_request_id, new_id, "{now:?}");
    assert_eq!(now.replicas[0].worker, rescuer.name, "{now:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_and_started_again_keeps_its_replicas_running() {
    ensure_test_image().await;
    let mut process = ServerProcess::embedded("heartbeat_interval = \"1s\"\n").await;
    let server = process.handle(&process.admin_token());
    let mut sweep = ContainerSweep::default();
    let worker = TestWorker::start(&server, &["--concurrency", "3"]).await;
    sweep.add(&worker.name);
    worker.wait_connected(&server).await;
    create_template(&server, "long", TEST_IMAGE, LONG, "").await;
    let name = unique_name("kept");
    create(&server, &name, "long", 2, None).await;
    let before = wait_service(&server, &name, "two replicas running", WAIT, |s| {
        s.replicas.len() == 2 && s.replicas.iter().all(is_running)
    })
    .await;
    let kept = requests(&before);

    process.kill().await;
    process.spawn().await;
    worker.wait_connected(&server).await;
    // A change after the restart, so that the reconciler is known to have looked at the
    // service since: a third replica starts.
    api(&server)
        .await
        .scale_service(ScaleServiceRequest {
            name: name.clone(),
            replicas: HashMap::from([("web".to_owned(), 3)]),
            ..ScaleServiceRequest::default()
        })
        .await
        .unwrap();
    let after = wait_service(&server, &name, "three replicas running", WAIT, |s| {
        s.replicas.len() == 3 && s.replicas.iter().all(is_running)
    })
    .await;
    let now = requests(&after);
    for (replica, id) in &kept {
        assert_eq!(&now[replica], id, "{replica} kept its request");
        let what = format!("{replica} to have its one container");
        eventually(&what, WAIT, || async {
            (running_containers("berth.work-request", id).await.len() == 1).then_some(())
        })
        .await;
    }
    let events = history(&server, &name).await;
    assert!(
        events
            .iter()
            .all(|e| !matches!(e.kind.as_str(), "exited" | "restarting" | "lost")),
        "{:?}",
        said(&events)
    );
    let started = events.iter().filter(|e| e.kind == "started").count();
    assert_eq!(started, 3, "{:?}", said(&events));
    process.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_database_killed_under_a_service_leaves_its_replicas_running() {
    ensure_test_image().await;
    let mut process = ServerProcess::embedded("heartbeat_interval = \"1s\"\n").await;
    let server = process.handle(&process.admin_token());
    let mut sweep = ContainerSweep::default();
    let worker = TestWorker::start(&server, &["--concurrency", "3"]).await;
    sweep.add(&worker.name);
    worker.wait_connected(&server).await;
    create_template(&server, "long", TEST_IMAGE, LONG, "").await;
    let name = unique_name("outage");
    create(&server, &name, "long", 2, None).await;
    let before = wait_service(&server, &name, "two replicas running", WAIT, |s| {
        s.replicas.len() == 2 && s.replicas.iter().all(is_running)
    })
    .await;
    let kept = requests(&before);

    // SIGKILL of the postmaster: the server restarts its embedded PostgreSQL.
    let postmaster = process.postmaster_pid().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &postmaster.to_string()])
        .status();
    eventually("a new postmaster", Duration::from_secs(60), || async {
        process
            .postmaster_pid()
            .filter(|pid| *pid != postmaster)
            .and_then(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.starts_with("postgres"))
                    .then_some(())
            })
    })
    .await;
    // Once the database answers again, a change shows the reconciler has looked since.
    eventually(
        "the scale to be accepted",
        Duration::from_secs(60),
        || async {
            api(&server)
                .await
                .scale_service(ScaleServiceRequest {
                    name: name.clone(),
                    replicas: HashMap::from([("web".to_owned(), 3)]),
                    ..ScaleServiceRequest::default()
                })
                .await
                .ok()
                .map(drop)
        },
    )
    .await;
    let after = wait_service(&server, &name, "three replicas running", WAIT, |s| {
        s.replicas.len() == 3 && s.replicas.iter().all(is_running)
    })
    .await;
    let now = requests(&after);
    for (replica, id) in &kept {
        assert_eq!(&now[replica], id, "{replica} kept its request");
        assert_eq!(
            running_containers("berth.work-request", id).await.len(),
            1,
            "{replica} still has its one container"
        );
    }
    let events = history(&server, &name).await;
    assert!(
        events
            .iter()
            .all(|e| !matches!(e.kind.as_str(), "exited" | "restarting" | "lost")),
        "{:?}",
        said(&events)
    );
    assert_eq!(
        events.iter().filter(|e| e.kind == "started").count(),
        3,
        "{:?}",
        said(&events)
    );
    process.stop().await;
}
