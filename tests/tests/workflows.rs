//! Workflows end to end: a DAG of steps runs in dependency order, the parent follows its
//! steps, a failure stops what depends on it, a bad workflow stores nothing, cancelling
//! the parent stops everything, and the CLI submits YAML and JSON files and shows the
//! steps. The steps run on simulated workers: the order and the outcomes are the
//! server's, not Docker's.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::time::Duration;

use berth_common::proto::{
    SubmitWorkflowRequest, WorkRequest, WorkRequestStatus, WorkResult, WorkflowStep,
};
use berth_tests::{
    SimOptions, TEST_IMAGE, TestServer, at, berth, cancel, get, query, sh, wait_for, wait_terminal,
};

fn step(name: &str, script: &str, needs: &[&str]) -> WorkflowStep {
    WorkflowStep {
        name: name.to_owned(),
        spec: Some(sh(script)),
        needs: needs.iter().map(|n| (*n).to_owned()).collect(),
        ..Default::default()
    }
}

async fn submit(
    server: &TestServer,
    steps: Vec<WorkflowStep>,
) -> Result<WorkRequest, tonic::Status> {
    server
        .work_requests(&server.admin_token)
        .await
        .submit_workflow(SubmitWorkflowRequest {
            name: "wf".into(),
            steps,
            workspace: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn child<'a>(parent: &'a WorkRequest, name: &str) -> &'a WorkRequest {
    parent
        .children
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no step {name} in {parent:?}"))
}

async fn count_requests(server: &TestServer) -> i64 {
    query(&server.database_url, "SELECT count(*) FROM work_requests").await[0].get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_diamond_runs_in_dependency_order_and_the_workflow_succeeds() {
    let server = TestServer::start().await;
    let _worker = server
        .sim_worker(SimOptions::default().concurrency(2))
        .await;
    // Submitted out of order on purpose: the server orders the steps.
    let submitted = submit(
        &server,
        vec![
            step("d", "echo d", &["b", "c"]),
            step("b", "sleep 1", &["a"]),
            step("c", "sleep 1", &["a"]),
            step("a", "echo a", &[]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(submitted.name, "wf");
    assert!(submitted.spec.is_none(), "a workflow parent runs nothing");
    let names: Vec<&str> = submitted.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
    for c in &submitted.children {
        assert_eq!(c.parent_id, submitted.id);
    }
    // The answer is read after the commit, so a worker may already have taken `a`.
    assert!(
        [
            WorkRequestStatus::Pending as i32,
            WorkRequestStatus::Running as i32
        ]
        .contains(&child(&submitted, "a").status),
        "a step without needs is ready at once: {:?}",
        child(&submitted, "a")
    );
    assert_eq!(
        child(&submitted, "d").status,
        WorkRequestStatus::Blocked as i32
    );
    assert_eq!(child(&submitted, "d").depends_on.len(), 2);

    let done = wait_terminal(&server, &submitted.id).await;
    assert_eq!(done.status, WorkRequestStatus::Completed as i32, "{done:?}");
    assert_eq!(done.result, WorkResult::Success as i32, "{done:?}");
    assert!(done.started_at.is_some() && done.completed_at.is_some());
    for c in &done.children {
        assert_eq!(c.result, WorkResult::Success as i32, "{c:?}");
    }
    let (a, b, c, d) = (
        child(&done, "a"),
        child(&done, "b"),
        child(&done, "c"),
        child(&done, "d"),
    );
    assert!(at(b.started_at.as_ref()) >= at(a.completed_at.as_ref()));
    assert!(at(c.started_at.as_ref()) >= at(a.completed_at.as_ref()));
    assert!(at(d.started_at.as_ref()) >= at(b.completed_at.as_ref()));
    assert!(at(d.started_at.as_ref()) >= at(c.completed_at.as_ref()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_step_aborts_its_dependants_and_fails_the_workflow() {
    let server = TestServer::start().await;
    let _worker = server.sim_worker(SimOptions::default()).await;
    let submitted = submit(
        &server,
        vec![
            step("compile", "exit 3", &[]),
            step("package", "echo never", &["compile"]),
            step("lint", "echo fine", &[]),
        ],
    )
    .await
    .unwrap();
    let done = wait_terminal(&server, &submitted.id).await;
    assert_eq!(done.status, WorkRequestStatus::Completed as i32, "{done:?}");
    assert_eq!(done.result, WorkResult::Failure as i32, "{done:?}");
    assert!(done.message.contains("compile"), "{done:?}");
    let package = child(&done, "package");
    assert_eq!(
        package.status,
        WorkRequestStatus::Aborted as i32,
        "{package:?}"
    );
    assert_eq!(package.reason, "dependency-failed");
    assert_eq!(package.attempt_count, 0, "it never ran");
    assert_eq!(child(&done, "compile").exit_code, Some(3));
    assert_eq!(child(&done, "lint").result, WorkResult::Success as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_workflows_are_refused_naming_the_step_and_store_nothing() {
    let server = TestServer::start().await;
    let refused = |steps| {
        let server = &server;
        async move {
            let status = submit(server, steps).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
            status.message().to_owned()
        }
    };
    let cycle = refused(vec![
        step("start", "true", &[]),
        step("a", "true", &["start", "b"]),
        step("b", "true", &["a"]),
    ])
    .await;
    assert_eq!(cycle, "steps[\"a\"].needs: steps form a cycle: a -> b -> a");
    let unknown = refused(vec![step("a", "true", &[]), step("b", "true", &["nope"])]).await;
    assert_eq!(unknown, "steps[\"b\"].needs: no step is named \"nope\"");
    let mut bad = step("build", "true", &[]);
    bad.spec.as_mut().unwrap().image = "Not An Image!".into();
    let spec = refused(vec![step("a", "true", &[]), bad]).await;
    assert!(spec.starts_with("steps[\"build\"].spec.image: "), "{spec}");
    let mut greedy = step("greedy", "true", &[]);
    greedy.spec.as_mut().unwrap().memory_bytes = Some(1);
    let memory = refused(vec![step("a", "true", &[]), greedy]).await;
    assert!(
        memory.starts_with("steps[\"greedy\"].spec.memory_bytes: "),
        "{memory}"
    );
    let duplicate = refused(vec![step("a", "true", &[]), step("a", "true", &[])]).await;
    assert!(duplicate.starts_with("steps[1].name: "), "{duplicate}");
    assert_eq!(count_requests(&server).await, 0, "nothing may be stored");

    // An unknown workspace is found only inside the transaction: still nothing stored.
    let status = server
        .work_requests(&server.admin_token)
        .await
        .submit_workflow(SubmitWorkflowRequest {
            name: "wf".into(),
            steps: vec![step("a", "true", &[])],
            workspace: "nowhere".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert_eq!(count_requests(&server).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_the_workflow_aborts_every_step_and_stops_the_running_one() {
    let server = TestServer::start().await;
    let worker = server.sim_worker(SimOptions::default()).await;
    let submitted = submit(
        &server,
        vec![
            step("long", "sleep 300", &[]),
            step("after", "true", &["long"]),
            step("queued", "sleep 300", &[]),
        ],
    )
    .await
    .unwrap();
    let id = submitted.id.clone();
    let parent = wait_for(
        &server,
        &id,
        "to run its long step",
        Duration::from_secs(60),
        |parent| {
            let long = child(parent, "long");
            parent.status == WorkRequestStatus::Running as i32
                && long.status == WorkRequestStatus::Running as i32
                && long.started_at.is_some()
        },
    )
    .await;
    let long = child(&parent, "long").id.clone();
    assert_eq!(worker.running().len(), 1, "{:?}", worker.seen());

    let cancelled = cancel(&server, &id).await;
    assert_eq!(cancelled.status, WorkRequestStatus::Aborted as i32);
    for c in &cancelled.children {
        assert_eq!(c.status, WorkRequestStatus::Aborted as i32, "{c:?}");
        assert_eq!(c.reason, "cancelled", "{c:?}");
    }
    // The worker running the long step is told to stop it, and reports it stopped.
    worker.wait_cancelled(&long, 1).await;
    let long = wait_for(
        &server,
        &long,
        "to record its attempt's end",
        Duration::from_secs(30),
        |long| {
            long.attempts
                .last()
                .is_some_and(|a| a.finished_at.is_some())
        },
    )
    .await;
    assert_eq!(long.attempts[0].reason, "cancelled", "{long:?}");
    assert!(worker.running().is_empty(), "{:?}", worker.seen());
    // A second cancel is refused: the workflow has ended.
    let again = server
        .work_requests(&server.admin_token)
        .await
        .cancel_work_request(berth_common::proto::CancelWorkRequestRequest { id })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_submits_yaml_and_json_files_and_get_shows_the_steps() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("release.yaml");
    std::fs::write(
        &yaml,
        format!(
            "name: release\nsteps:\n  - name: build\n    image: {TEST_IMAGE}\n    command: [sh, -c, 'echo hi']\n    memory: 64M\n    pull: never\n  - name: test\n    image: {TEST_IMAGE}\n    needs: [build]\n    secret_env_from: [WF_SECRET]\n"
        ),
    )
    .unwrap();
    // The token comes from the environment, as in a user's shell.
    let cli = berth(&server)
        .without_token()
        .env("BERTH_TOKEN", &server.admin_token)
        .env("WF_SECRET", "s3cret");
    let id = cli
        .ok(&["workflow", "submit", yaml.to_str().unwrap()])
        .await
        .trim()
        .to_owned();
    let parent = get(&server, &id).await;
    assert_eq!(parent.name, "release");
    assert_eq!(
        child(&parent, "build").spec.as_ref().unwrap().memory_bytes,
        Some(64 << 20)
    );
    assert_eq!(child(&parent, "test").secret_env_keys, ["WF_SECRET"]);

    let out = cli.ok(&["get", &id]).await;
    assert!(out.contains("steps:"), "{out}");
    let build_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("build "))
        .unwrap();
    assert!(build_line.contains(&child(&parent, "build").id), "{out}");
    assert!(build_line.contains("pending"), "{out}");
    let test_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("test "))
        .unwrap();
    assert!(
        test_line.contains("blocked") && test_line.contains("build"),
        "{out}"
    );
    assert!(!out.contains("s3cret"));

    let json = dir.path().join("nightly.json");
    std::fs::write(
        &json,
        format!(
            r#"{{"name": "nightly", "steps": [{{"name": "one", "image": "{TEST_IMAGE}"}}, {{"name": "two", "image": "{TEST_IMAGE}", "needs": ["one"]}}]}}"#
        ),
    )
    .unwrap();
    let shown = cli
        .json(&["workflow", "submit", json.to_str().unwrap()])
        .await;
    assert_eq!(shown["name"], "nightly");
    assert_eq!(shown["children"].as_array().unwrap().len(), 2, "{out}");
    assert_eq!(shown["children"][1]["name"], "two");
    assert_eq!(shown["children"][1]["parent_id"], shown["id"]);

    // A cycle in a file is refused by the server, naming the step; nothing is stored.
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        format!("name: bad\nsteps:\n  - {{name: x, image: {TEST_IMAGE}, needs: [x]}}\n"),
    )
    .unwrap();
    let before = count_requests(&server).await;
    cli.run(&["workflow", "submit", bad.to_str().unwrap()])
        .await
        .assert_one_error_line("a cycle", 1, &["steps form a cycle: x -> x"]);
    assert_eq!(count_requests(&server).await, before);
}
