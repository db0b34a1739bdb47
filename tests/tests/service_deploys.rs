//! Deploys, health and published ports end to end: the real server, a real worker on
//! Docker and `ServiceService` over gRPC. A rolling deploy of three replicas replaces them
//! one at a time with at most four running; a release that never becomes healthy fails at
//! its deadline and auto-reverts; a published port is listed as an endpoint on the
//! worker's advertised address and answers; an image's HEALTHCHECK decides when a replica
//! is healthy, and a release whose check never passes reverts; and DeployService's bad
//! input is refused with the code that says why.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use berth_common::client::BearerAuth;
use berth_common::proto::service_service_client::ServiceServiceClient;
use berth_common::proto::template_service_client::TemplateServiceClient;
use berth_common::proto::{
    self, Command, ContainerSpec, CreateServiceRequest, CreateTemplateRequest,
    DeployServiceRequest, GetServiceHistoryRequest, GetServiceRequest, Health, JobTemplateChange,
    JobTemplateSpec, ListServiceEndpointsRequest, PortMapping, Process, Service, ServiceEvent,
    UpdateTemplateRequest,
};
use berth_tests::{
    Authed, ContainerSweep, TEST_IMAGE, TestServer, TestWorker, assert_code, docker,
    ensure_test_image, eventually, query, quick_heartbeats, secs, sh, wait_no_containers,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

/// How long a test waits for replicas and deploys: a deploy of three replicas with a
/// one-second `min_healthy` takes a few seconds per replica on a busy machine.
const WAIT: Duration = Duration::from_secs(90);

/// A replica's command: says which release it is and ticks until stopped.
fn ticker(release: &str) -> String {
    format!("trap 'exit 0' TERM; echo {release}; while true; do sleep 1; done")
}

async fn services(server: &TestServer) -> ServiceServiceClient<Authed> {
    ServiceServiceClient::with_interceptor(
        server.channel().await,
        BearerAuth::new(&server.admin_token),
    )
}

async fn templates(server: &TestServer) -> TemplateServiceClient<Authed> {
    TemplateServiceClient::with_interceptor(
        server.channel().await,
        BearerAuth::new(&server.admin_token),
    )
}

/// Creates job template `name` (its v1) running `spec`.
async fn create_template(server: &TestServer, name: &str, spec: ContainerSpec) {
    templates(server)
        .await
        .create_template(CreateTemplateRequest {
            name: name.to_owned(),
            spec: Some(proto::create_template_request::Spec::Job(JobTemplateSpec {
                spec: Some(spec),
                ..JobTemplateSpec::default()
            })),
            ..CreateTemplateRequest::default()
        })
        .await
        .unwrap();
}

/// Makes the next release of template `name`, changing what `change` says.
async fn release(server: &TestServer, name: &str, change: JobTemplateChange) {
    templates(server)
        .await
        .update_template(UpdateTemplateRequest {
            name: name.to_owned(),
            change: Some(proto::update_template_request::Change::Job(change)),
            ..UpdateTemplateRequest::default()
        })
        .await
        .unwrap();
}

/// A release whose command is `sh -c script`.
fn command(script: &str) -> JobTemplateChange {
    JobTemplateChange {
        command: Some(Command {
            args: ["sh", "-c", script].map(str::to_owned).to_vec(),
        }),
        ..JobTemplateChange::default()
    }
}

/// Service `name` of template `template` with `replicas` of `web`, healthy after one
/// second of running.
fn service_request(name: &str, template: &str, replicas: u32) -> CreateServiceRequest {
    CreateServiceRequest {
        name: name.to_owned(),
        template: template.to_owned(),
        processes: [(
            "web".to_owned(),
            Process {
                replicas,
                command: Vec::new(),
            },
        )]
        .into(),
        health: Some(Health {
            min_healthy: Some(secs(1)),
            deploy_deadline: None,
        }),
        ..CreateServiceRequest::default()
    }
}

async fn get(server: &TestServer, name: &str) -> Service {
    services(server)
        .await
        .get_service(GetServiceRequest {
            name: name.to_owned(),
            ..GetServiceRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Waits until `check` holds of service `name`.
async fn wait_service(
    server: &TestServer,
    name: &str,
    what: &str,
    check: impl Fn(&Service) -> bool,
) -> Service {
    eventually(what, WAIT, || async {
        let service = get(server, name).await;
        check(&service).then_some(service)
    })
    .await
}

/// Every replica runs `version`, is healthy and has no replacement.
fn all_healthy_on(service: &Service, version: u32) -> bool {
    !service.replicas.is_empty()
        && service.replicas.iter().all(|r| {
            r.version == version && r.state == "healthy" && r.next_work_request_id.is_empty()
        })
}

/// Every event of service `name`, oldest first.
async fn history(server: &TestServer, name: &str) -> Vec<ServiceEvent> {
    let mut events = services(server)
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
    events.reverse();
    events
}

fn kinds(events: &[ServiceEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

async fn deploy(server: &TestServer, request: DeployServiceRequest) -> Service {
    services(server)
        .await
        .deploy_service(request)
        .await
        .unwrap()
        .into_inner()
}

fn deploy_request(name: &str, version: u32) -> DeployServiceRequest {
    DeployServiceRequest {
        name: name.to_owned(),
        version,
        ..DeployServiceRequest::default()
    }
}

/// How many of service `id`'s containers are running (requests in `running`, the ones
/// being stopped included).
async fn running_requests(server: &TestServer, id: &str) -> i64 {
    let rows = query(
        &server.database_url,
        &format!(
            "SELECT count(*) FROM service_runs r JOIN work_requests w ON w.id = r.request_id \
             WHERE r.service_id = '{id}' AND w.status = 'running'"
        ),
    )
    .await;
    rows[0].get(0)
}

/// A worker whose containers are removed when it is dropped: the worker process goes
/// first (fields drop in order), then whatever replicas it still ran, so a test that
/// ends with its service up leaves no container behind.
struct SweptWorker {
    worker: TestWorker,
    _sweep: ContainerSweep,
}

impl std::ops::Deref for SweptWorker {
    type Target = TestWorker;
    fn deref(&self) -> &TestWorker {
        &self.worker
    }
}

/// A real worker with room for more containers than any test runs at once, advertising
/// 127.0.0.1 so that a test can reach what it publishes.
async fn worker(server: &TestServer) -> SweptWorker {
    let worker = TestWorker::start(
        server,
        &["--concurrency", "8", "--advertise-address", "127.0.0.1"],
    )
    .await;
    let mut sweep = ContainerSweep::default();
    sweep.add(&worker.name);
    worker.wait_connected(server).await;
    SweptWorker {
        worker,
        _sweep: sweep,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_deploy_replaces_replicas_one_at_a_time_with_at_most_one_extra() {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_heartbeats).await;
    let worker = worker(&server).await;
    create_template(&server, "roll", sh(&ticker("v1"))).await;
    release(&server, "roll", command(&ticker("v2"))).await;

    let mut create = service_request("roll", "roll", 3);
    create.version = 1;
    let created = services(&server)
        .await
        .create_service(create)
        .await
        .unwrap()
        .into_inner();
    wait_service(&server, "roll", "three healthy replicas on v1", |s| {
        all_healthy_on(s, 1) && s.replicas.len() == 3 && s.stable_version == 1
    })
    .await;

    let started = deploy(&server, deploy_request("roll", 2)).await;
    assert_eq!(started.version, 2, "{started:?}");
    assert_eq!(started.deploy.as_ref().unwrap().state, "rolling");

    // Sample the running containers while it rolls: never more than N+1.
    let most = Cell::new(0);
    let (most_seen, on, id) = (&most, &server, &created.id);
    let done = eventually("the deploy to be done", WAIT, || async move {
        let running = running_requests(on, id).await;
        most_seen.set(most_seen.get().max(running));
        assert!(
            running <= 4,
            "{running} containers of 3 replicas ran at once"
        );
        let service = get(on, "roll").await;
        (service.deploy.as_ref().unwrap().state != "rolling").then_some(service)
    })
    .await;
    assert_eq!(most.get(), 4, "a replacement ran beside its old replica");
    let deploy = done.deploy.as_ref().unwrap();
    assert_eq!(deploy.state, "done", "{deploy:?}");
    assert_eq!((deploy.from_version, deploy.to_version), (1, 2));
    assert_eq!(done.stable_version, 2, "{done:?}");
    assert_eq!(done.version, 2);
    assert!(
        done.replicas.iter().all(|r| r.version == 2),
        "{:?}",
        done.replicas
    );
    eventually("only the three v2 containers to run", WAIT, || async {
        (running_requests(&server, &created.id).await == 3).then_some(())
    })
    .await;

    let events = history(&server, "roll").await;
    let deploying: Vec<&ServiceEvent> = events
        .iter()
        .skip_while(|e| e.kind != "deploy-started")
        .filter(|e| e.kind.starts_with("deploy-"))
        .collect();
    let steps: Vec<(&str, &str)> = deploying
        .iter()
        .map(|e| (e.kind.as_str(), e.replica.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("deploy-started", ""),
            ("deploy-step", "web.0"),
            ("deploy-step", "web.1"),
            ("deploy-step", "web.2"),
            ("deploy-done", ""),
        ],
        "{:?}",
        kinds(&events)
    );
    assert!(
        deploying[0].reason.contains("v1 → v2"),
        "{:?}",
        deploying[0]
    );
    assert!(
        !deploying[0].by.is_empty(),
        "who deployed: {:?}",
        deploying[0]
    );

    services(&server)
        .await
        .delete_service(proto::DeleteServiceRequest {
            name: "roll".to_owned(),
            ..proto::DeleteServiceRequest::default()
        })
        .await
        .unwrap();
    wait_no_containers(&worker.name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_never_becomes_healthy_fails_at_its_deadline_and_reverts() {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_heartbeats).await;
    let worker = worker(&server).await;
    create_template(&server, "crash", sh(&ticker("v1"))).await;
    release(&server, "crash", command("echo v2 fails; exit 1")).await;

    let mut create = service_request("crash", "crash", 2);
    create.version = 1;
    services(&server)
        .await
        .create_service(create)
        .await
        .unwrap();
    let before = wait_service(&server, "crash", "two healthy replicas on v1", |s| {
        all_healthy_on(s, 1) && s.replicas.len() == 2 && s.stable_version == 1
    })
    .await;
    let v1_requests: Vec<String> = before
        .replicas
        .iter()
        .map(|r| r.work_request_id.clone())
        .collect();

    let mut request = deploy_request("crash", 2);
    request.auto_revert = true;
    request.deadline = Some(secs(5));
    let started = deploy(&server, request).await;
    assert!(started.deploy.as_ref().unwrap().auto_revert);

    let after = wait_service(&server, "crash", "the deploy to end", |s| {
        let state = s.deploy.as_ref().unwrap().state.as_str();
        state != "rolling" && state != "reverting"
    })
    .await;
    let deploy = after.deploy.as_ref().unwrap();
    assert_eq!(deploy.state, "failed", "{deploy:?}");
    assert!(
        deploy.message.contains("v2 failed") && deploy.message.contains("reverted to v1"),
        "{deploy:?}"
    );
    assert_eq!(after.version, 1, "{after:?}");
    assert_eq!(after.stable_version, 1, "{after:?}");
    let after = wait_service(&server, "crash", "both replicas healthy on v1", |s| {
        all_healthy_on(s, 1) && s.replicas.len() == 2
    })
    .await;
    let v1_after: Vec<String> = after
        .replicas
        .iter()
        .map(|r| r.work_request_id.clone())
        .collect();
    assert_eq!(
        v1_after, v1_requests,
        "the v1 replicas were never replaced by a release that was not healthy"
    );

    let events = history(&server, "crash").await;
    let failed = events
        .iter()
        .find(|e| e.kind == "deploy-failed")
        .unwrap_or_else(|| panic!("no deploy-failed: {:?}", kinds(&events)));
    assert!(
        failed.reason.contains("web.0 v2 not healthy within"),
        "{failed:?}"
    );
    let reverting = events
        .iter()
        .position(|e| e.kind == "reverting")
        .unwrap_or_else(|| panic!("no reverting: {:?}", kinds(&events)));
    assert_eq!(events[reverting].version, 1, "{:?}", events[reverting]);
    assert!(
        events
            .iter()
            .position(|e| e.kind == "deploy-failed")
            .unwrap()
            < reverting,
        "{:?}",
        kinds(&events)
    );
    // The failing release's containers ran and exited 1, and nothing of v2 runs now.
    assert!(
        events
            .iter()
            .any(|e| e.kind == "exited" && e.version == 2 && e.exit_code == Some(1)),
        "{:?}",
        kinds(&events)
    );
    drop(worker);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_published_port_is_listed_on_the_workers_address_and_answers() {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_heartbeats).await;
    let worker = worker(&server).await;
    let mut spec = sh(
        "mkdir -p /www && echo hello from berth > /www/index.html && \
         exec httpd -f -p 8080 -h /www",
    );
    spec.network = "bridge".to_owned();
    create_template(&server, "site", spec).await;

    let mut create = service_request("site", "site", 1);
    create.ports = vec![PortMapping {
        container_port: 8080,
        host_port: 0,
        protocol: String::new(),
    }];
    services(&server)
        .await
        .create_service(create)
        .await
        .unwrap();
    wait_service(&server, "site", "the replica to run", |s| {
        s.replicas.iter().all(|r| !r.worker.is_empty())
    })
    .await;

    let endpoint = eventually("an endpoint of web.0", WAIT, || async {
        services(&server)
            .await
            .list_service_endpoints(ListServiceEndpointsRequest {
                name: "site".to_owned(),
                ..ListServiceEndpointsRequest::default()
            })
            .await
            .unwrap()
            .into_inner()
            .endpoints
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(endpoint.replica, "web.0", "{endpoint:?}");
    assert_eq!(endpoint.worker, worker.name, "{endpoint:?}");
    assert_eq!(
        endpoint.host, "127.0.0.1",
        "the advertised address: {endpoint:?}"
    );
    assert_eq!(endpoint.container_port, 8080, "{endpoint:?}");
    assert_eq!(endpoint.protocol, "tcp", "{endpoint:?}");
    assert_ne!(endpoint.host_port, 0, "Docker picked a port: {endpoint:?}");

    let address = format!("{}:{}", endpoint.host, endpoint.host_port);
    let answer = eventually(&format!("an answer from {address}"), WAIT, || async {
        let mut stream = tokio::net::TcpStream::connect(&address).await.ok()?;
        stream
            .write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
            .await
            .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.ok()?;
        (!answer.is_empty()).then_some(answer)
    })
    .await;
    assert!(answer.contains("hello from berth"), "{answer}");
}

/// An image whose HEALTHCHECK passes once `/tmp/ok` exists, checked every second. Failures
/// in its first minute do not count (Docker's start period): it stays `starting` until the
/// file exists, instead of turning `unhealthy` at the first probe (which Berth would answer
/// by replacing the replica).
const HEALTHCHECK_IMAGE: &str = "berth-test/healthcheck:latest";

static HEALTHCHECK_READY: OnceCell<()> = OnceCell::const_new();

async fn ensure_healthcheck_image() {
    HEALTHCHECK_READY
        .get_or_init(|| async {
            ensure_test_image().await;
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join("Dockerfile"),
                format!(
                    "FROM {TEST_IMAGE}\nHEALTHCHECK --interval=1s --timeout=1s --retries=1 --start-period=60s \
                     CMD [\"test\", \"-f\", \"/tmp/ok\"]\n"
                ),
            )
            .unwrap();
            docker(&[
                "build",
                "-q",
                "-t",
                HEALTHCHECK_IMAGE,
                dir.path().to_str().unwrap(),
            ])
            .await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthcheck_decides_when_a_replica_is_healthy_and_a_failing_one_reverts() {
    ensure_healthcheck_image().await;
    let server = TestServer::start_with(quick_heartbeats).await;
    let _worker = worker(&server).await;
    // v1 becomes healthy five seconds after it starts, whatever `min_healthy` (1 s) says.
    let mut spec = sh(&format!(
        "(sleep 5; mkdir -p /tmp && touch /tmp/ok) & {}",
        ticker("v1")
    ));
    spec.image = HEALTHCHECK_IMAGE.to_owned();
    create_template(&server, "checked", spec).await;
    release(&server, "checked", command(&ticker("v2 never ok"))).await;

    let mut create = service_request("checked", "checked", 1);
    create.version = 1;
    services(&server)
        .await
        .create_service(create)
        .await
        .unwrap();

    // Sample: the replica runs and stays `starting` until its check passes.
    let running_since: Cell<Option<Instant>> = Cell::new(None);
    let states = RefCell::new(Vec::<String>::new());
    let (since_seen, seen, on) = (&running_since, &states, &server);
    let healthy_after = eventually("web.0 healthy", WAIT, || async move {
        let service = get(on, "checked").await;
        let replica = service.replicas.first()?.clone();
        if replica.worker.is_empty() {
            return None;
        }
        let since = since_seen.get().unwrap_or_else(Instant::now);
        since_seen.set(Some(since));
        let mut states = seen.borrow_mut();
        if states.last() != Some(&replica.state) {
            states.push(replica.state.clone());
        }
        (replica.state == "healthy").then(|| since.elapsed())
    })
    .await;
    assert_eq!(*states.borrow(), ["starting", "healthy"], "web.0's states");
    assert!(
        healthy_after >= Duration::from_secs(3),
        "healthy {healthy_after:?} after it ran: min_healthy (1 s) counted, not the check"
    );
    wait_service(&server, "checked", "v1 to be stable", |s| {
        s.stable_version == 1
    })
    .await;

    let mut request = deploy_request("checked", 2);
    request.auto_revert = true;
    request.deadline = Some(secs(8));
    deploy(&server, request).await;
    let after = wait_service(&server, "checked", "the deploy to end", |s| {
        let state = s.deploy.as_ref().unwrap().state.as_str();
        state != "rolling" && state != "reverting"
    })
    .await;
    let deploy = after.deploy.as_ref().unwrap();
    assert_eq!(deploy.state, "failed", "{deploy:?}");
    assert!(deploy.message.contains("reverted to v1"), "{deploy:?}");
    wait_service(&server, "checked", "web.0 healthy on v1 again", |s| {
        all_healthy_on(s, 1)
    })
    .await;
    let events = history(&server, "checked").await;
    let failed = events
        .iter()
        .find(|e| e.kind == "deploy-failed")
        .unwrap_or_else(|| panic!("no deploy-failed: {:?}", kinds(&events)));
    assert!(
        failed.reason.contains("web.0 v2 not healthy within"),
        "{failed:?}"
    );
    assert!(
        events.iter().any(|e| e.kind == "reverting"),
        "{:?}",
        kinds(&events)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_refuses_bad_input_with_the_code_that_says_why() {
    ensure_test_image().await;
    // No worker: nothing runs, which is all these refusals need.
    let server = TestServer::start().await;
    create_template(&server, "idle", sh(&ticker("v1"))).await;
    release(&server, "idle", command(&ticker("v2"))).await;
    let mut create = service_request("idle", "idle", 1);
    create.version = 1;
    services(&server)
        .await
        .create_service(create)
        .await
        .unwrap();
    let mut client = services(&server).await;

    assert_code(
        client.deploy_service(deploy_request("idle", 9)).await,
        tonic::Code::NotFound,
        "9",
    );
    assert_code(
        client.deploy_service(deploy_request("idle", 1)).await,
        tonic::Code::FailedPrecondition,
        "already runs v1",
    );
    for deadline in [secs(0), secs(25 * 3600)] {
        let mut request = deploy_request("idle", 2);
        request.deadline = Some(deadline);
        assert_code(
            client.deploy_service(request).await,
            tonic::Code::InvalidArgument,
            "deadline: ",
        );
    }
    let mut unknown = deploy_request("nope", 2);
    unknown.workspace = String::new();
    assert_code(
        client.deploy_service(unknown).await,
        tonic::Code::NotFound,
        "nope",
    );

    // The one deploy that is accepted stays under way (nothing can run), and another is
    // refused until it ends.
    let started = deploy(&server, deploy_request("idle", 2)).await;
    assert_eq!(started.deploy.as_ref().unwrap().state, "rolling");
    assert_code(
        client.deploy_service(deploy_request("idle", 0)).await,
        tonic::Code::FailedPrecondition,
        "under way",
    );
}
