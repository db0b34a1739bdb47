//! Runs from templates end to end: a real server, real `berth-worker` processes and a
//! real Docker engine. What a release says, with the run's overrides, is what the
//! container gets; a request keeps the spec it was submitted with whatever happens to
//! its template; workflow steps may name a template; statistics count real runs; and
//! secrets from a template reach the container and nothing else.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::time::Duration;

use berth_common::client::BearerAuth;
use berth_common::proto::template_service_client::TemplateServiceClient;
use berth_common::proto::{
    self, ArchiveTemplateRequest, ContainerSpec, CreateTemplateRequest, GetTemplateStatsRequest,
    JobTemplateChange, JobTemplateSpec, ListWorkRequestsRequest, RunTemplateRequest,
    SubmitWorkflowRequest, TemplateKind, TemplateOverrides, UpdateTemplateRequest, WorkRequest,
    WorkRequestStatus, WorkResult, WorkflowStep,
};
use berth_tests::logs::STDOUT;
use berth_tests::{
    Authed, Logs, TestServer, TestWorker, WAIT, assert_code, berth, cancel, docker,
    ensure_test_image, eventually, get, quick_heartbeats, result, secs, sh, status,
    wait_no_containers, wait_started, wait_terminal,
};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

// ----- helpers -----

async fn templates(server: &TestServer, token: &str) -> TemplateServiceClient<Authed> {
    TemplateServiceClient::with_interceptor(server.channel().await, BearerAuth::new(token))
}

async fn server_and_worker() -> (TestServer, TestWorker) {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_heartbeats).await;
    let worker = TestWorker::start(&server, &["--concurrency", "2"]).await;
    worker.wait_connected(&server).await;
    (server, worker)
}

async fn finish(server: TestServer, mut worker: TestWorker) {
    wait_no_containers(&worker.name).await;
    worker.terminate(Duration::from_secs(30)).await;
    server.stop().await;
}

/// Creates job template `name` in `default` from `spec` (with `retries`).
async fn create(server: &TestServer, name: &str, spec: ContainerSpec, retries: u32) {
    templates(server, &server.admin_token)
        .await
        .create_template(CreateTemplateRequest {
            name: name.to_owned(),
            spec: Some(proto::create_template_request::Spec::Job(JobTemplateSpec {
                spec: Some(spec),
                retries,
                retry_backoff: Some(secs(1)),
                ..JobTemplateSpec::default()
            })),
            ..CreateTemplateRequest::default()
        })
        .await
        .unwrap();
}

fn run_request(name: &str, version: u32, overrides: TemplateOverrides) -> RunTemplateRequest {
    RunTemplateRequest {
        name: name.to_owned(),
        version,
        overrides: Some(overrides),
        ..RunTemplateRequest::default()
    }
}

async fn run(server: &TestServer, request: RunTemplateRequest) -> WorkRequest {
    templates(server, &server.admin_token)
        .await
        .run_template(request)
        .await
        .unwrap()
        .into_inner()
}

async fn update(server: &TestServer, name: &str, change: JobTemplateChange) {
    templates(server, &server.admin_token)
        .await
        .update_template(UpdateTemplateRequest {
            name: name.to_owned(),
            change: Some(proto::update_template_request::Change::Job(change)),
            ..UpdateTemplateRequest::default()
        })
        .await
        .unwrap();
}

/// `docker inspect --format FORMAT ID`, trimmed.
async fn inspect(container: &str, format: &str) -> String {
    docker(&["inspect", "--format", format, container])
        .await
        .trim()
        .to_owned()
}

// ----- tests -----

#[tokio::test(flavor = "multi_thread")]
async fn overrides_reach_docker_and_the_template_secret_reaches_only_the_container() {
    let (server, worker) = server_and_worker().await;
    let secret = "tpl-s3cret-value-42";
    let mut spec = sh("echo token=$TOKEN; echo level=$LEVEL; sleep 120");
    spec.memory_bytes = Some(512 * MIB);
    spec.env.insert("LEVEL".to_owned(), "info".to_owned());
    spec.secret_env
        .insert("TOKEN".to_owned(), secret.to_owned());
    create(&server, "svc", spec, 0).await;

    let submitted = run(
        &server,
        run_request(
            "svc",
            0,
            TemplateOverrides {
                memory_bytes: Some(2 * GIB),
                env: [("LEVEL".to_owned(), "debug".to_owned())].into(),
                ..TemplateOverrides::default()
            },
        ),
    )
    .await;
    assert!(!format!("{submitted:?}").contains(secret), "{submitted:?}");
    assert_eq!(submitted.template, "svc");
    assert_eq!(submitted.template_version, 1);

    let running = wait_started(&server, &submitted.id).await;
    let container = running.attempts.last().unwrap().container_id.clone();
    assert_eq!(
        inspect(&container, "{{.HostConfig.Memory}}").await,
        (2 * GIB).to_string()
    );
    let env = inspect(&container, "{{json .Config.Env}}").await;
    assert!(env.contains(&format!("\"TOKEN={secret}\"")), "{env}");
    assert!(env.contains("\"LEVEL=debug\""), "{env}");

    // The output is masked before it is stored.
    eventually("the job's first lines in its log", WAIT, || async {
        let logs = Logs::read(&server, &submitted.id).await;
        logs.text(STDOUT).contains("level=").then_some(())
    })
    .await;
    cancel(&server, &submitted.id).await;
    let ended = wait_terminal(&server, &submitted.id).await;
    let stdout = Logs::read(&server, &submitted.id).await.text(STDOUT);
    assert!(stdout.contains("token=[MASKED]"), "{stdout:?}");
    assert!(stdout.contains("level=debug"), "{stdout:?}");
    assert!(!stdout.contains(secret), "{stdout:?}");

    // Get and List show where it came from, its effective spec, and no secret value.
    assert_eq!(
        (ended.template.as_str(), ended.template_version),
        ("svc", 1)
    );
    let spec = ended.spec.clone().unwrap();
    assert_eq!(spec.memory_bytes, Some(2 * GIB));
    assert_eq!(ended.secret_env_keys, ["TOKEN"]);
    assert!(!format!("{ended:?}").contains(secret), "{ended:?}");
    let listed = server
        .work_requests(&server.admin_token)
        .await
        .list_work_requests(ListWorkRequestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mine = listed
        .work_requests
        .iter()
        .find(|r| r.id == submitted.id)
        .unwrap();
    assert_eq!((mine.template.as_str(), mine.template_version), ("svc", 1));
    assert!(!format!("{listed:?}").contains(secret), "{listed:?}");
    let template = templates(&server, &server.admin_token)
        .await
        .get_template(proto::GetTemplateRequest {
            name: "svc".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!format!("{template:?}").contains(secret), "{template:?}");

    // Nor is it stored in plain form, nor logged by the worker.
    for sql in [
        "SELECT spec::text FROM work_requests",
        "SELECT spec::text FROM template_releases",
        "SELECT coalesce(encode(secret_env, 'escape'), '') FROM work_requests",
        "SELECT coalesce(encode(secret_env, 'escape'), '') FROM template_releases",
    ] {
        for row in berth_tests::query(&server.database_url, sql).await {
            let text: String = row.get(0);
            assert!(!text.contains(secret), "{sql}: {text}");
        }
    }
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_log_never_holds_a_template_secret() {
    let (server, worker) = server_and_worker().await;
    let secret = "worker-log-s3cret-77";
    let mut spec = sh("echo $TOKEN");
    spec.secret_env
        .insert("TOKEN".to_owned(), secret.to_owned());
    create(&server, "quiet", spec, 0).await;
    let submitted = run(
        &server,
        run_request("quiet", 1, TemplateOverrides::default()),
    )
    .await;
    let ended = wait_terminal(&server, &submitted.id).await;
    assert_eq!(result(&ended), WorkResult::Success, "{ended:?}");
    let stdout = Logs::read(&server, &submitted.id).await.text(STDOUT);
    assert_eq!(stdout, "[MASKED]\n");
    assert!(!worker.log().contains(secret), "the worker's log leaks it");
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_request_and_its_retry_keep_their_release_while_the_template_changes() {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_heartbeats).await;
    let mut spec = sh("echo ran-v1; exit 3");
    spec.memory_bytes = Some(128 * MIB);
    create(&server, "pinned", spec, 1).await;

    // No worker yet: the request waits in the queue while the template moves on.
    let submitted = run(
        &server,
        run_request("pinned", 0, TemplateOverrides::default()),
    )
    .await;
    assert_eq!(status(&submitted), WorkRequestStatus::Pending);
    let before = get(&server, &submitted.id).await;
    update(
        &server,
        "pinned",
        JobTemplateChange {
            command: Some(proto::Command {
                args: vec!["sh".into(), "-c".into(), "echo ran-v2".into()],
            }),
            memory_bytes: Some(256 * MIB),
            ..JobTemplateChange::default()
        },
    )
    .await;
    let after = get(&server, &submitted.id).await;
    assert_eq!(after.spec, before.spec);
    assert_eq!(after.template_version, 1);
    assert_eq!(after.spec.unwrap().memory_bytes, Some(128 * MIB));

    let worker = TestWorker::start(&server, &[]).await;
    worker.wait_connected(&server).await;
    let ended = wait_terminal(&server, &submitted.id).await;
    // v1 fails; its automatic retry runs v1 again, not the template's v2.
    assert_eq!(result(&ended), WorkResult::Failure, "{ended:?}");
    assert_eq!(ended.attempt_count, 2, "{ended:?}");
    let logs = Logs::read(&server, &submitted.id).await;
    for attempt in [1, 2] {
        let stdout: Vec<u8> = logs
            .chunks
            .iter()
            .filter(|c| c.attempt == attempt && c.stream == STDOUT)
            .flat_map(|c| c.data.iter().copied())
            .collect();
        assert_eq!(
            String::from_utf8_lossy(&stdout),
            "ran-v1\n",
            "attempt {attempt}"
        );
    }

    // A run now takes v2.
    let fresh = run(
        &server,
        run_request("pinned", 0, TemplateOverrides::default()),
    )
    .await;
    assert_eq!(fresh.template_version, 2);
    let fresh = wait_terminal(&server, &fresh.id).await;
    assert_eq!(result(&fresh), WorkResult::Success, "{fresh:?}");
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn inactive_archived_and_ill_fitting_runs_are_refused_naming_what_to_fix() {
    let server = TestServer::start().await;
    let mut client = templates(&server, &server.admin_token).await;
    client
        .create_template(CreateTemplateRequest {
            name: "idle".to_owned(),
            inactive: true,
            spec: Some(proto::create_template_request::Spec::Job(JobTemplateSpec {
                spec: Some(sh("true")),
                ..JobTemplateSpec::default()
            })),
            ..CreateTemplateRequest::default()
        })
        .await
        .unwrap();
    let plain = || run_request("idle", 0, TemplateOverrides::default());
    assert_code(
        client.run_template(plain()).await,
        tonic::Code::FailedPrecondition,
        "template idle is inactive",
    );
    client
        .update_template(UpdateTemplateRequest {
            name: "idle".to_owned(),
            active: Some(true),
            ..UpdateTemplateRequest::default()
        })
        .await
        .unwrap();
    let ran = client.run_template(plain()).await.unwrap().into_inner();
    assert_eq!((ran.template.as_str(), ran.template_version), ("idle", 1));

    assert_code(
        client
            .run_template(run_request(
                "idle",
                0,
                TemplateOverrides {
                    memory_bytes: Some(1),
                    ..TemplateOverrides::default()
                },
            ))
            .await,
        tonic::Code::InvalidArgument,
        "overrides.memory_bytes",
    );
    let mut with_params = plain();
    with_params.params.insert("x".to_owned(), "1".to_owned());
    assert_code(
        client.run_template(with_params).await,
        tonic::Code::InvalidArgument,
        "job template",
    );
    assert_code(
        client
            .run_template(run_request("idle", 9, TemplateOverrides::default()))
            .await,
        tonic::Code::NotFound,
        "no release v9",
    );
    assert_code(
        client
            .run_template(run_request("nope", 0, TemplateOverrides::default()))
            .await,
        tonic::Code::NotFound,
        "nope",
    );

    client
        .archive_template(ArchiveTemplateRequest {
            name: "idle".to_owned(),
            kind: TemplateKind::Job.into(),
            ..ArchiveTemplateRequest::default()
        })
        .await
        .unwrap();
    assert_code(
        client.run_template(plain()).await,
        tonic::Code::FailedPrecondition,
        "archived",
    );
    // The request made before keeps its origin.
    let kept = get(&server, &ran.id).await;
    assert_eq!((kept.template.as_str(), kept.template_version), ("idle", 1));

    // An archived workspace takes no runs, even of an active template.
    let mut spaces = server.workspaces(&server.admin_token).await;
    spaces
        .create_workspace(proto::CreateWorkspaceRequest {
            name: "closed".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .create_template(CreateTemplateRequest {
            workspace: "closed".to_owned(),
            name: "left".to_owned(),
            spec: Some(proto::create_template_request::Spec::Job(JobTemplateSpec {
                spec: Some(sh("true")),
                ..JobTemplateSpec::default()
            })),
            ..CreateTemplateRequest::default()
        })
        .await
        .unwrap();
    spaces
        .archive_workspace(proto::ArchiveWorkspaceRequest {
            name: "closed".to_owned(),
        })
        .await
        .unwrap();
    assert_code(
        client
            .run_template(RunTemplateRequest {
                workspace: "closed".to_owned(),
                ..run_request("left", 0, TemplateOverrides::default())
            })
            .await,
        tonic::Code::FailedPrecondition,
        "workspace closed is archived",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_step_runs_a_template_release_with_its_overrides() {
    let (server, worker) = server_and_worker().await;
    let mut spec = sh("echo hello $WHO from $PLACE");
    spec.env.insert("WHO".to_owned(), "template".to_owned());
    spec.env.insert("PLACE".to_owned(), "v1".to_owned());
    create(&server, "greet", spec, 0).await;
    update(
        &server,
        "greet",
        JobTemplateChange {
            env: [("PLACE".to_owned(), "v2".to_owned())].into(),
            ..JobTemplateChange::default()
        },
    )
    .await;

    let step = |name: &str, template: &str, spec: Option<ContainerSpec>| WorkflowStep {
        name: name.to_owned(),
        template: template.to_owned(),
        spec,
        ..WorkflowStep::default()
    };
    let override_env = ContainerSpec {
        env: [("WHO".to_owned(), "step".to_owned())].into(),
        ..ContainerSpec::default()
    };
    let mut workflows = server.work_requests(&server.admin_token).await;
    let submitted = workflows
        .submit_workflow(SubmitWorkflowRequest {
            name: "greetings".to_owned(),
            steps: vec![
                step("pinned", "greet@v1", Some(override_env.clone())),
                step("latest", "greet", None),
                WorkflowStep {
                    needs: vec!["pinned".to_owned(), "latest".to_owned()],
                    ..step("plain", "", Some(sh("echo plain")))
                },
            ],
            ..SubmitWorkflowRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ended = wait_terminal(&server, &submitted.id).await;
    assert_eq!(result(&ended), WorkResult::Success, "{ended:?}");
    let child = |name: &str| ended.children.iter().find(|c| c.name == name).unwrap();
    for (name, version, said) in [
        ("pinned", 1, "hello step from v1\n"),
        ("latest", 2, "hello template from v2\n"),
    ] {
        let c = child(name);
        assert_eq!(
            (c.template.as_str(), c.template_version),
            ("greet", version)
        );
        let stdout = Logs::read(&server, &c.id).await.text(STDOUT);
        assert_eq!(stdout, said, "{name}");
    }
    assert_eq!(child("plain").template, "");

    // A step may not change what the template fixes, nor name a template that is not there.
    let mut bad = override_env;
    bad.image = "busybox:1.36".to_owned();
    assert_code(
        workflows
            .submit_workflow(SubmitWorkflowRequest {
                name: "bad".to_owned(),
                steps: vec![step("x", "greet", Some(bad))],
                ..SubmitWorkflowRequest::default()
            })
            .await,
        tonic::Code::InvalidArgument,
        "steps[\"x\"].spec.image: is set by template greet",
    );
    assert_code(
        workflows
            .submit_workflow(SubmitWorkflowRequest {
                name: "missing".to_owned(),
                steps: vec![step("y", "absent", None)],
                ..SubmitWorkflowRequest::default()
            })
            .await,
        tonic::Code::NotFound,
        "steps[\"y\"].template",
    );
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_count_real_runs_by_outcome_and_version() {
    let (server, worker) = server_and_worker().await;
    let mut spec = sh("sleep 0.2; exit $CODE");
    spec.env.insert("CODE".to_owned(), "0".to_owned());
    create(&server, "counted", spec, 0).await;
    let mut ids = Vec::new();
    for code in ["0", "0", "1"] {
        let overrides = TemplateOverrides {
            env: [("CODE".to_owned(), code.to_owned())].into(),
            ..TemplateOverrides::default()
        };
        ids.push(run(&server, run_request("counted", 0, overrides)).await.id);
    }
    update(
        &server,
        "counted",
        JobTemplateChange {
            env: [("CODE".to_owned(), "2".to_owned())].into(),
            ..JobTemplateChange::default()
        },
    )
    .await;
    ids.push(
        run(
            &server,
            run_request("counted", 0, TemplateOverrides::default()),
        )
        .await
        .id,
    );
    for id in &ids {
        wait_terminal(&server, id).await;
    }

    // A viewer of the workspace may read the figures.
    let (_, viewer) = server
        .create_token_without_roles(proto::Role::User, "stats-viewer")
        .await;
    server.set_role("default", "stats-viewer", "viewer").await;
    let stats = templates(&server, &viewer)
        .await
        .get_template_stats(GetTemplateStatsRequest {
            name: "counted".to_owned(),
            ..GetTemplateStatsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.template, "counted");
    assert_eq!(
        (
            stats.runs,
            stats.successes,
            stats.failures,
            stats.errors,
            stats.aborted,
            stats.unfinished
        ),
        (4, 2, 2, 0, 0, 0),
        "{stats:?}"
    );
    let average = stats.average_duration.unwrap();
    let p95 = stats.p95_duration.unwrap();
    assert!(average.seconds > 0 || average.nanos > 0, "{stats:?}");
    assert!(
        (p95.seconds, p95.nanos) >= (average.seconds, average.nanos),
        "{stats:?}"
    );
    let versions: Vec<(u32, u64, u64)> = stats
        .by_version
        .iter()
        .map(|v| (v.version, v.runs, v.successes))
        .collect();
    assert_eq!(versions, [(2, 1, 0), (1, 3, 2)]);

    // A window that ends before the runs counts none; a negative one is refused.
    let mut client = templates(&server, &server.admin_token).await;
    assert_code(
        client
            .get_template_stats(GetTemplateStatsRequest {
                name: "counted".to_owned(),
                since: Some(prost_types::Duration {
                    seconds: -5,
                    nanos: 0,
                }),
                ..GetTemplateStatsRequest::default()
            })
            .await,
        tonic::Code::InvalidArgument,
        "since",
    );
    let none = client
        .get_template_stats(GetTemplateStatsRequest {
            name: "counted".to_owned(),
            since: Some(prost_types::Duration {
                seconds: 0,
                nanos: 1,
            }),
            ..GetTemplateStatsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((none.runs, none.average_duration), (0, None), "{none:?}");
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn berth_run_template_at_a_version_and_get_shows_it() {
    let server = TestServer::start().await;
    create(&server, "cli-job", sh("echo from-template"), 0).await;
    update(
        &server,
        "cli-job",
        JobTemplateChange {
            memory_bytes: Some(300 * MIB),
            ..JobTemplateChange::default()
        },
    )
    .await;
    let cli = berth(&server);
    let id = cli
        .ok(&["run", "--template", "cli-job@v1", "--cpus", "0.5", "-d"])
        .await
        .trim()
        .to_owned();
    let shown = cli.ok(&["get", &id]).await;
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("template:") && l.ends_with("cli-job@v1")),
        "{shown}"
    );
    let json = cli.json(&["get", &id]).await;
    assert_eq!(json["template"], "cli-job");
    assert_eq!(json["template_version"], 1);
    assert_eq!(json["cpus"], 0.5);
    // v1's memory, not v2's.
    assert_eq!(json["memory_bytes"], 128 * MIB);

    // The command after the options replaces the template's.
    let id = cli
        .ok(&["run", "--template", "cli-job", "-d", "--", "echo", "hi"])
        .await
        .trim()
        .to_owned();
    let json = cli.json(&["get", &id]).await;
    assert_eq!(json["template_version"], 2);
    assert_eq!(json["command"], serde_json::json!(["echo", "hi"]));
    let refused = cli
        .run(&["run", "--template", "cli-job", "--pids", "3"])
        .await;
    assert_eq!(refused.code, 2, "{refused:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn networks_with_aliases_are_checked_and_kept_for_plain_and_template_runs() {
    let server = TestServer::start().await;
    let attach = |name: &str, aliases: &[&str]| proto::NetworkAttachment {
        name: name.to_owned(),
        aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
    };
    let mut spec = sh("true");
    spec.networks = vec![attach("front", &["web", "www"]), attach("back", &[])];
    create(&server, "networked", spec, 0).await;
    let ran = run(
        &server,
        run_request("networked", 0, TemplateOverrides::default()),
    )
    .await;
    let kept = get(&server, &ran.id).await.spec.unwrap();
    assert_eq!(kept.network, "front");
    assert_eq!(
        kept.networks,
        [attach("front", &["web", "www"]), attach("back", &[])]
    );

    let mut work = server.work_requests(&server.admin_token).await;
    let mut bad = sh("true");
    bad.networks = vec![attach("front", &["-bad"])];
    assert_code(
        work.submit_work_request(proto::SubmitWorkRequestRequest {
            spec: Some(bad),
            ..Default::default()
        })
        .await,
        tonic::Code::InvalidArgument,
        "spec.networks[0].aliases[0]",
    );
    let mut listed_host = sh("true");
    listed_host.networks = vec![attach("front", &[]), attach("host", &[])];
    assert_code(
        work.submit_work_request(proto::SubmitWorkRequestRequest {
            spec: Some(listed_host),
            ..Default::default()
        })
        .await,
        tonic::Code::InvalidArgument,
        "spec.networks[1].name",
    );

    // The CLI's repeatable --network NAME[:ALIAS,...].
    let cli = berth(&server);
    let id = cli
        .ok(&[
            "run",
            "--network",
            "front:api,api.local",
            "--network",
            "back",
            "-d",
            "berth-test/busybox:latest",
            "true",
        ])
        .await
        .trim()
        .to_owned();
    let json = cli.json(&["get", &id]).await;
    assert_eq!(json["network"], "front");
    assert_eq!(
        json["networks"],
        serde_json::json!([
            {"name": "front", "aliases": ["api", "api.local"]},
            {"name": "back", "aliases": []}
        ])
    );
    let shown = cli.ok(&["get", &id]).await;
    assert!(
        shown.contains("front (aliases api, api.local), back"),
        "{shown}"
    );
    server.stop().await;
}
