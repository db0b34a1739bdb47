//! `WorkerService`: what operators see of the build hosts, and switching them on and off.
//!
//! These tests put worker rows (and attempts in every state) straight into the database
//! and read them back through the API: states a connected worker reaches only slowly or
//! never (registered but never connected, connected an hour before its last heartbeat, an
//! attempt assigned to a disabled worker) are then one statement away. That workers get
//! these rows from the agent stream is tested where they connect (`queue.rs`, `drain.rs`,
//! `execution.rs`).

use std::collections::HashMap;

use berth_common::proto::worker_service_client::WorkerServiceClient;
use berth_common::proto::{
    ContainerSpec, DisableWorkerRequest, EnableWorkerRequest, GetWorkerRequest, ListWorkersRequest,
    Role, SubmitWorkRequestRequest, Worker,
};
use berth_tests::{Authed, TestServer, refused};
use tonic::Code;
use uuid::Uuid;

/// The workers [`seed`] puts in, by name.
struct Seeded {
    alpha: Uuid,
    bravo: Uuid,
    charlie: Uuid,
}

/// Inserts three workers, out of name order, and gives `bravo` one running attempt plus
/// a finished one (which must not count), and `charlie` an attempt that is only assigned.
///
/// - `alpha`: connected, enabled, concurrency 2, labels and metadata.
/// - `bravo`: connected, draining, concurrency 4, one running attempt.
/// - `charlie`: never connected, disabled, concurrency 1, one assigned attempt.
async fn seed(server: &TestServer) -> Seeded {
    let seeded = Seeded {
        alpha: Uuid::new_v4(),
        bravo: Uuid::new_v4(),
        charlie: Uuid::new_v4(),
    };
    berth_tests::query(
        &server.database_url,
        &format!(
            r#"INSERT INTO workers (id, name, labels, metadata, concurrency, enabled, draining,
                                    connected_at, last_heartbeat_at)
               VALUES ('{charlie}', 'charlie', '{{}}', '{{}}', 1, false, false, NULL, NULL),
                      ('{alpha}', 'alpha', '{{"pool": "gpu", "zone": "eu-1"}}',
                       '{{"arch": "x86_64", "os": "linux", "cpus": "8"}}', 2, true, false,
                       now(), now()),
                      ('{bravo}', 'bravo', '{{"pool": "cpu"}}', '{{"arch": "aarch64"}}', 4,
                       true, true, now() - interval '1 hour', now())"#,
            alpha = seeded.alpha,
            bravo = seeded.bravo,
            charlie = seeded.charlie,
        ),
    )
    .await;

    let mut requests = server.work_requests(&server.admin_token).await;
    let mut submit = async || {
        let submitted = requests
            .submit_work_request(SubmitWorkRequestRequest {
                spec: Some(ContainerSpec {
                    image: "busybox:1.36".to_owned(),
                    command: vec!["true".to_owned()],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("submit a work request")
            .into_inner();
        Uuid::parse_str(&submitted.id).expect("work request ids are UUIDs")
    };
    let running = submit().await;
    let finished = submit().await;
    let assigned = submit().await;
    berth_tests::query(
        &server.database_url,
        &format!(
            "INSERT INTO attempts (work_request_id, number, worker_id, worker_name, state)
             VALUES ('{running}', 1, '{bravo}', 'bravo', 'running'),
                    ('{finished}', 1, '{bravo}', 'bravo', 'finished'),
                    ('{assigned}', 1, '{charlie}', 'charlie', 'assigned')",
            bravo = seeded.bravo,
            charlie = seeded.charlie,
        ),
    )
    .await;
    seeded
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn list(client: &mut WorkerServiceClient<Authed>) -> Vec<Worker> {
    client
        .list_workers(ListWorkersRequest {})
        .await
        .expect("list workers")
        .into_inner()
        .workers
}

async fn get(client: &mut WorkerServiceClient<Authed>, name: &str) -> Worker {
    client
        .get_worker(GetWorkerRequest { name: name.into() })
        .await
        .unwrap_or_else(|status| panic!("get worker {name}: {status}"))
        .into_inner()
}

/// `enabled` as stored, for `name`.
async fn stored_enabled(server: &TestServer, name: &str) -> bool {
    let rows = berth_tests::query(
        &server.database_url,
        &format!("SELECT enabled FROM workers WHERE name = '{name}'"),
    )
    .await;
    assert_eq!(rows.len(), 1, "worker {name} is stored once");
    rows[0].get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn list_is_empty_before_any_worker_registers() {
    let server = TestServer::start().await;
    let workers = list(&mut server.workers(&server.admin_token).await).await;
    assert!(workers.is_empty(), "{workers:#?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_returns_workers_by_name_with_their_details() {
    let server = TestServer::start().await;
    let seeded = seed(&server).await;
    let workers = list(&mut server.workers(&server.admin_token).await).await;

    let names: Vec<&str> = workers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["alpha", "bravo", "charlie"]);
    let [alpha, bravo, charlie] = &workers[..] else {
        unreachable!("three names were checked above");
    };

    assert_eq!(alpha.id, seeded.alpha.to_string());
    assert_eq!(alpha.labels, map(&[("pool", "gpu"), ("zone", "eu-1")]));
    assert_eq!(
        alpha.metadata,
        map(&[("arch", "x86_64"), ("os", "linux"), ("cpus", "8")])
    );
    assert_eq!(alpha.concurrency, 2);
    assert_eq!(alpha.running, 0);
    assert!(alpha.enabled);
    assert!(!alpha.draining);
    assert!(alpha.connected);
    assert!(alpha.connected_at.is_some());
    assert!(alpha.last_heartbeat_at.is_some());
    assert!(alpha.created_at.is_some());

    assert_eq!(bravo.id, seeded.bravo.to_string());
    assert_eq!(bravo.labels, map(&[("pool", "cpu")]));
    assert_eq!(bravo.metadata, map(&[("arch", "aarch64")]));
    assert_eq!(bravo.concurrency, 4);
    assert_eq!(
        bravo.running, 1,
        "one running attempt; the finished one does not count"
    );
    assert!(bravo.enabled);
    assert!(bravo.draining);
    assert!(bravo.connected);
    // Its stream opened an hour before its last heartbeat.
    let connected_at = bravo.connected_at.expect("connected_at");
    let heartbeat_at = bravo.last_heartbeat_at.expect("last_heartbeat_at");
    assert!(
        heartbeat_at.seconds - connected_at.seconds >= 3599,
        "connected_at {connected_at:?}, last_heartbeat_at {heartbeat_at:?}"
    );

    assert_eq!(charlie.id, seeded.charlie.to_string());
    assert!(charlie.labels.is_empty());
    assert!(charlie.metadata.is_empty());
    assert_eq!(charlie.concurrency, 1);
    assert_eq!(
        charlie.running, 1,
        "an assigned attempt holds a slot until it finishes"
    );
    assert!(!charlie.enabled);
    assert!(!charlie.draining);
    assert!(!charlie.connected);
    assert_eq!(charlie.connected_at, None);
    assert_eq!(charlie.last_heartbeat_at, None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn get_returns_the_same_worker_as_the_list() {
    let server = TestServer::start().await;
    seed(&server).await;
    let mut admin = server.workers(&server.admin_token).await;
    let listed = list(&mut admin).await;
    for worker in &listed {
        assert_eq!(&get(&mut admin, &worker.name).await, worker);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_worker_name_is_not_found() {
    let server = TestServer::start().await;
    seed(&server).await;
    let mut admin = server.workers(&server.admin_token).await;
    for name in ["delta", "ALPHA", "alpha "] {
        refused(
            &format!("get {name:?}"),
            admin
                .get_worker(GetWorkerRequest { name: name.into() })
                .await,
            Code::NotFound,
        );
        refused(
            &format!("enable {name:?}"),
            admin
                .enable_worker(EnableWorkerRequest { name: name.into() })
                .await,
            Code::NotFound,
        );
        refused(
            &format!("disable {name:?}"),
            admin
                .disable_worker(DisableWorkerRequest { name: name.into() })
                .await,
            Code::NotFound,
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_worker_name_is_invalid_argument() {
    let server = TestServer::start().await;
    seed(&server).await;
    let mut admin = server.workers(&server.admin_token).await;
    let answers = [
        (
            "get",
            admin
                .get_worker(GetWorkerRequest::default())
                .await
                .map(drop),
        ),
        (
            "enable",
            admin
                .enable_worker(EnableWorkerRequest::default())
                .await
                .map(drop),
        ),
        (
            "disable",
            admin
                .disable_worker(DisableWorkerRequest::default())
                .await
                .map(drop),
        ),
    ];
    for (action, answer) in answers {
        let status = answer.expect_err(action);
        assert_eq!(status.code(), Code::InvalidArgument, "{action}: {status}");
        assert!(
            status.message().starts_with("name"),
            "{action}: the message names the field: {}",
            status.message()
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_disables_and_enables_a_worker() {
    let server = TestServer::start().await;
    seed(&server).await;
    let mut admin = server.workers(&server.admin_token).await;
    let before = list(&mut admin).await;

    let disabled = admin
        .disable_worker(DisableWorkerRequest {
            name: "alpha".into(),
        })
        .await
        .expect("disable alpha")
        .into_inner();
    assert_eq!(disabled.name, "alpha");
    assert!(!disabled.enabled);
    assert!(!get(&mut admin, "alpha").await.enabled);
    assert!(!stored_enabled(&server, "alpha").await);
    // Nothing else about it, nor about any other worker, changed.
    let after: Vec<Worker> = list(&mut admin).await;
    for (was, is) in before.iter().zip(&after) {
        let expected = Worker {
            enabled: was.enabled && was.name != "alpha",
            ..was.clone()
        };
        assert_eq!(is, &expected);
    }

    // Disabling twice is not an error.
    let again = admin
        .disable_worker(DisableWorkerRequest {
            name: "alpha".into(),
        })
        .await
        .expect("disable alpha again")
        .into_inner();
    assert!(!again.enabled);

    let enabled = admin
        .enable_worker(EnableWorkerRequest {
            name: "alpha".into(),
        })
        .await
        .expect("enable alpha")
        .into_inner();
    assert!(enabled.enabled);
    assert!(stored_enabled(&server, "alpha").await);
    assert_eq!(list(&mut admin).await, before);

    // And the other way round for a worker that starts disabled.
    let charlie = admin
        .enable_worker(EnableWorkerRequest {
            name: "charlie".into(),
        })
        .await
        .expect("enable charlie")
        .into_inner();
    assert!(charlie.enabled);
    assert_eq!(charlie.running, 1, "the answer is the full worker");
    assert!(stored_enabled(&server, "charlie").await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_may_list_and_get_workers_but_not_switch_them() {
    let server = TestServer::start().await;
    seed(&server).await;
    let (_, user_token) = server.create_token(Role::User, "alice").await;
    let mut user = server.workers(&user_token).await;
    let mut admin = server.workers(&server.admin_token).await;

    let seen = list(&mut user).await;
    assert_eq!(seen, list(&mut admin).await, "users see what admins see");
    assert_eq!(get(&mut user, "bravo").await, seen[1]);

    refused(
        "a user disables a worker",
        user.disable_worker(DisableWorkerRequest {
            name: "alpha".into(),
        })
        .await,
        Code::PermissionDenied,
    );
    assert!(
        stored_enabled(&server, "alpha").await,
        "alpha stays enabled"
    );
    refused(
        "a user enables a worker",
        user.enable_worker(EnableWorkerRequest {
            name: "charlie".into(),
        })
        .await,
        Code::PermissionDenied,
    );
    assert!(
        !stored_enabled(&server, "charlie").await,
        "charlie stays disabled"
    );
    server.stop().await;
}
