//! Workflow templates over real gRPC on a real database: a workflow stored by name with
//! declared parameters, run with values bound into its steps; bad parameters refused
//! naming them; every change a release whose summary names the step fields; rollback;
//! runs of an older release; steps naming a job template; a secret in a step reaching its
//! container (real Docker) but no answer; and the CLI round trip. Other runs use
//! simulated workers: what is checked there is what the server stored and scheduled.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::HashMap;

use berth_common::client::BearerAuth;
use berth_common::proto::template_service_client::TemplateServiceClient;
use berth_common::proto::{
    CreateTemplateRequest, GetReleaseRequest, JobTemplateSpec, ParameterType, Release,
    RollbackTemplateRequest, RunTemplateRequest, TemplateKind, TemplateParameter,
    UpdateTemplateRequest, WorkRequest, WorkResult, WorkflowStep, WorkflowTemplateSpec,
    create_template_request, release, update_template_request,
};
use berth_tests::{
    Authed, SimOptions, TEST_IMAGE, TestServer, TestWorker, assert_code, berth, ensure_test_image,
    get, query, quick_heartbeats, sh, wait_terminal,
};
use tonic::Code;

const SECRET: &str = "hunter2-workflow-template-secret";

async fn client(server: &TestServer) -> TemplateServiceClient<Authed> {
    TemplateServiceClient::with_interceptor(
        server.channel().await,
        BearerAuth::new(&server.admin_token),
    )
}

fn param(
    name: &str,
    kind: ParameterType,
    default: Option<&str>,
    required: bool,
) -> TemplateParameter {
    TemplateParameter {
        name: name.into(),
        r#type: kind as i32,
        default: default.map(str::to_owned),
        required,
        description: String::new(),
    }
}

fn step(name: &str, script: &str, needs: &[&str]) -> WorkflowStep {
    WorkflowStep {
        name: name.into(),
        spec: Some(sh(script)),
        needs: needs.iter().map(|n| (*n).to_owned()).collect(),
        ..Default::default()
    }
}

/// `nightly`: `build` echoes the tag and sleeps `jobs` seconds' worth of nothing; `test`
/// needs it and carries the tag in its env.
fn nightly() -> WorkflowTemplateSpec {
    let mut build = step("build", "echo building ${{ params.tag }}", &[]);
    build.requirements = [("tier".to_owned(), "${{ params.tier }}".to_owned())].into();
    let mut test = step("test", "true", &["build"]);
    if let Some(spec) = test.spec.as_mut() {
        spec.env = [
            ("TAG".to_owned(), "${{ params.tag }}".to_owned()),
            ("JOBS".to_owned(), "${{params.jobs}}".to_owned()),
            ("FAST".to_owned(), "${{ params.fast }}".to_owned()),
        ]
        .into();
    }
    WorkflowTemplateSpec {
        parameters: vec![
            param("tag", ParameterType::String, None, true),
            param("jobs", ParameterType::Integer, Some("4"), false),
            param("fast", ParameterType::Boolean, Some("false"), false),
            param("tier", ParameterType::String, Some("any"), false),
        ],
        steps: vec![build, test],
    }
}

fn create(name: &str, spec: WorkflowTemplateSpec) -> CreateTemplateRequest {
    CreateTemplateRequest {
        name: name.into(),
        spec: Some(create_template_request::Spec::Workflow(spec)),
        ..Default::default()
    }
}

fn set(name: &str, spec: WorkflowTemplateSpec) -> UpdateTemplateRequest {
    UpdateTemplateRequest {
        name: name.into(),
        kind: TemplateKind::Workflow as i32,
        change: Some(update_template_request::Change::Workflow(spec)),
        ..Default::default()
    }
}

fn run(name: &str, version: u32, params: &[(&str, &str)]) -> RunTemplateRequest {
    RunTemplateRequest {
        name: name.into(),
        kind: TemplateKind::Workflow as i32,
        version,
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    }
}

fn child<'a>(parent: &'a WorkRequest, name: &str) -> &'a WorkRequest {
    parent
        .children
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no step {name} in {parent:?}"))
}

fn command(request: &WorkRequest) -> Vec<String> {
    request.spec.as_ref().unwrap().command.clone()
}

fn env(request: &WorkRequest) -> HashMap<String, String> {
    request.spec.as_ref().unwrap().env.clone()
}

fn workflow_spec(release: &Release) -> WorkflowTemplateSpec {
    match release.spec.clone().unwrap() {
        release::Spec::Workflow(spec) => spec,
        release::Spec::Job(_) => panic!("a workflow template's release holds a job"),
    }
}

async fn count(server: &TestServer, sql: &str) -> i64 {
    query(&server.database_url, sql).await[0].get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_binds_parameters_into_the_steps_and_records_the_release() {
    let server = TestServer::start().await;
    let _worker = server
        .sim_worker(SimOptions::default().label("tier", "gold"))
        .await;
    let mut c = client(&server).await;
    let made = c
        .create_template(create("nightly", nightly()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.kind, TemplateKind::Workflow as i32);
    assert_eq!(made.latest_version, 1);
    let v1 = made.latest.unwrap();
    assert_eq!(v1.summary, "created");
    // Placeholders are stored as written, not substituted.
    let stored = workflow_spec(&v1);
    assert_eq!(stored.parameters.len(), 4);
    assert_eq!(
        stored.steps[0].spec.as_ref().unwrap().command,
        ["sh", "-c", "echo building ${{ params.tag }}"]
    );

    let parent = c
        .run_template(run(
            "nightly",
            0,
            &[("tag", "1.37"), ("fast", "true"), ("tier", "gold")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        parent.name, "nightly",
        "the workflow is named after its template"
    );
    assert_eq!(parent.template, "nightly");
    assert_eq!(parent.template_version, 1);
    assert!(parent.spec.is_none(), "a workflow parent runs nothing");
    let build = child(&parent, "build");
    assert_eq!(command(build), ["sh", "-c", "echo building 1.37"]);
    assert_eq!(
        build.requirements.get("tier").map(String::as_str),
        Some("gold")
    );
    let test = child(&parent, "test");
    let test_env = env(test);
    assert_eq!(test_env.get("TAG").map(String::as_str), Some("1.37"));
    assert_eq!(
        test_env.get("JOBS").map(String::as_str),
        Some("4"),
        "a default applies"
    );
    assert_eq!(test_env.get("FAST").map(String::as_str), Some("true"));
    assert_eq!(test.depends_on, std::slice::from_ref(&build.id));

    // Stored as the answer says, and run: the bound workflow is an ordinary one.
    let done = wait_terminal(&server, &parent.id).await;
    assert_eq!(done.result, WorkResult::Success as i32, "{done:?}");
    assert_eq!(done.template_version, 1);
    let recorded = count(
        &server,
        &format!(
            "SELECT count(*) FROM work_requests w JOIN templates t ON t.id = w.template_id \
             WHERE w.id = '{}' AND t.name = 'nightly' AND w.template_version = 1",
            parent.id
        ),
    )
    .await;
    assert_eq!(
        recorded, 1,
        "the parent row records the template and release"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parameters_and_references_are_refused_naming_them() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    // At create: a reference to an undeclared parameter, a required one with a default,
    // a default not of its type. Nothing is stored.
    let mut unknown = nightly();
    unknown.steps[1].spec.as_mut().unwrap().working_dir = "/src/${{ params.nope }}".into();
    assert_code(
        c.create_template(create("bad", unknown)).await,
        Code::InvalidArgument,
        "steps[\"test\"].spec.working_dir: names parameter \"nope\", which is not declared",
    );
    let mut both = nightly();
    both.parameters[0].default = Some("1.0".into());
    assert_code(
        c.create_template(create("bad", both)).await,
        Code::InvalidArgument,
        "parameters[\"tag\"]: is required and has a default",
    );
    let mut typed = nightly();
    typed.parameters[1].default = Some("four".into());
    assert_code(
        c.create_template(create("bad", typed)).await,
        Code::InvalidArgument,
        "parameters[\"jobs\"].default: \"four\" is not of type integer",
    );
    // A broken workflow is refused at create even though its fields hold placeholders.
    let mut cycle = nightly();
    cycle.steps[0].needs = vec!["test".into()];
    assert_code(
        c.create_template(create("bad", cycle)).await,
        Code::InvalidArgument,
        "steps form a cycle",
    );
    assert_eq!(count(&server, "SELECT count(*) FROM templates").await, 0);

    c.create_template(create("nightly", nightly()))
        .await
        .unwrap();
    // At set too, and the refused change makes no release.
    let mut unknown = nightly();
    unknown.steps[0].spec.as_mut().unwrap().image = "${{ params.image }}".into();
    assert_code(
        c.update_template(set("nightly", unknown)).await,
        Code::InvalidArgument,
        "steps[\"build\"].spec.image: names parameter \"image\", which is not declared",
    );
    assert_eq!(
        count(&server, "SELECT count(*) FROM template_releases").await,
        1
    );
    assert_code(
        c.run_template(run("nightly", 0, &[])).await,
        Code::InvalidArgument,
        "params[\"tag\"]: is required (string)",
    );
    assert_code(
        c.run_template(run("nightly", 0, &[("tag", "x"), ("colour", "red")]))
            .await,
        Code::InvalidArgument,
        "params[\"colour\"]: this template has no parameter \"colour\"",
    );
    assert_code(
        c.run_template(run("nightly", 0, &[("tag", "x"), ("jobs", "many")]))
            .await,
        Code::InvalidArgument,
        "params[\"jobs\"]: \"many\" is not of type integer",
    );
    assert_code(
        c.run_template(run("nightly", 0, &[("tag", "x"), ("fast", "yes")]))
            .await,
        Code::InvalidArgument,
        "params[\"fast\"]: \"yes\" is not of type boolean",
    );
    // A value that makes a step invalid is refused naming the step, and stores nothing.
    assert_code(
        c.run_template(run(
            "nightly",
            0,
            &[("tag", "x"), ("tier", &"t".repeat(300))],
        ))
        .await,
        Code::InvalidArgument,
        "steps[\"build\"].requirements",
    );
    assert_eq!(
        count(&server, "SELECT count(*) FROM work_requests").await,
        0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn set_rollback_and_runs_of_an_older_release() {
    let server = TestServer::start().await;
    // `build` requires the label `tier` of the parameter's default.
    let _worker = server
        .sim_worker(SimOptions::default().label("tier", "any"))
        .await;
    let mut c = client(&server).await;
    c.create_template(create("nightly", nightly()))
        .await
        .unwrap();

    let mut changed = nightly();
    changed.steps[0].spec.as_mut().unwrap().command =
        vec!["sh".into(), "-c".into(), "echo v2 ${{ params.tag }}".into()];
    changed.steps[0].spec.as_mut().unwrap().memory_bytes = Some(256 << 20);
    changed.parameters[1].default = Some("8".into());
    let v2 = c
        .update_template(set("nightly", changed.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v2.latest_version, 2);
    let summary = v2.latest.as_ref().unwrap().summary.clone();
    assert_eq!(
        summary,
        "parameter jobs changed; step build: command sh -c \"echo building ${{ params.tag }}\" \
         → sh -c \"echo v2 ${{ params.tag }}\"; step build: memory 128 MiB → 256 MiB",
    );
    let fields: Vec<&str> = v2
        .latest
        .as_ref()
        .unwrap()
        .changes
        .iter()
        .map(|ch| ch.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "parameters[\"jobs\"]",
            "steps[\"build\"].command",
            "steps[\"build\"].memory_bytes"
        ]
    );
    // The same definition again changes nothing and makes no release.
    assert_code(
        c.update_template(set("nightly", changed)).await,
        Code::FailedPrecondition,
        "",
    );

    let v3 = c
        .rollback_template(RollbackTemplateRequest {
            name: "nightly".into(),
            kind: TemplateKind::Workflow as i32,
            version: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v3.latest_version, 3);
    let v3 = v3.latest.unwrap();
    assert_eq!(v3.rolled_back_from, Some(1));
    let v1 = c
        .get_release(GetReleaseRequest {
            name: "nightly".into(),
            version: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v3.spec, v1.spec, "v3 equals v1");
    let compared = c
        .get_release(GetReleaseRequest {
            name: "nightly".into(),
            version: 3,
            diff_against: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(compared.diff_against, 2);
    assert_eq!(compared.diff.len(), 3, "{:?}", compared.diff);

    // @v2 runs v2's definition though v3 is the latest, and records v2.
    let old = c
        .run_template(run("nightly", 2, &[("tag", "t")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(old.template_version, 2);
    assert_eq!(command(child(&old, "build")), ["sh", "-c", "echo v2 t"]);
    assert_eq!(
        env(child(&old, "test")).get("JOBS").map(String::as_str),
        Some("8")
    );
    let latest = c
        .run_template(run("nightly", 0, &[("tag", "t")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest.template_version, 3);
    assert_eq!(
        command(child(&latest, "build")),
        ["sh", "-c", "echo building t"]
    );

    // A workflow already submitted keeps its definition whatever the template does next.
    let mut later = nightly();
    later.steps[0].spec.as_mut().unwrap().command = vec!["false".into()];
    c.update_template(set("nightly", later)).await.unwrap();
    let done = wait_terminal(&server, &old.id).await;
    assert_eq!(done.result, WorkResult::Success as i32, "{done:?}");
    assert_eq!(command(child(&done, "build")), ["sh", "-c", "echo v2 t"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_may_name_a_job_template_chosen_by_a_parameter() {
    let server = TestServer::start().await;
    let _worker = server.sim_worker(SimOptions::default()).await;
    let mut c = client(&server).await;
    let mut container = sh("echo from the job template");
    container.env = [("FROM".to_owned(), "job".to_owned())].into();
    c.create_template(CreateTemplateRequest {
        name: "web".into(),
        spec: Some(create_template_request::Spec::Job(JobTemplateSpec {
            spec: Some(container),
            ..Default::default()
        })),
        ..Default::default()
    })
    .await
    .unwrap();
    let deploy = WorkflowStep {
        name: "deploy".into(),
        template: "${{ params.job }}".into(),
        needs: vec!["build".into()],
        spec: Some(berth_common::proto::ContainerSpec {
            env: [("TARGET".to_owned(), "${{ params.target }}".to_owned())].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let spec = WorkflowTemplateSpec {
        parameters: vec![
            param("job", ParameterType::String, Some("web"), false),
            param("target", ParameterType::String, None, true),
        ],
        steps: vec![step("build", "true", &[]), deploy],
    };
    // What the job template fixes cannot be set by the step: refused at create.
    let mut fixed = spec.clone();
    fixed.steps[1].spec.as_mut().unwrap().image = TEST_IMAGE.into();
    assert_code(
        c.create_template(create("ship", fixed)).await,
        Code::InvalidArgument,
        "steps[\"deploy\"].spec.image: is set by the job template",
    );
    c.create_template(create("ship", spec)).await.unwrap();

    let parent = c
        .run_template(run("ship", 0, &[("target", "prod")]))
        .await
        .unwrap()
        .into_inner();
    let deploy = child(&parent, "deploy");
    assert_eq!(command(deploy), ["sh", "-c", "echo from the job template"]);
    let deploy_env = env(deploy);
    assert_eq!(deploy_env.get("FROM").map(String::as_str), Some("job"));
    assert_eq!(deploy_env.get("TARGET").map(String::as_str), Some("prod"));
    assert_eq!(deploy.template, "web", "the step records its job template");
    assert_eq!(deploy.template_version, 1);
    assert_eq!(parent.template, "ship");
    let done = wait_terminal(&server, &parent.id).await;
    assert_eq!(done.result, WorkResult::Success as i32, "{done:?}");

    // A parameter naming no job template fails the run naming the step.
    assert_code(
        c.run_template(run("ship", 0, &[("target", "prod"), ("job", "nope")]))
            .await,
        Code::NotFound,
        "steps[\"deploy\"].template",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_secret_reaches_its_container_but_no_answer() {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_heartbeats).await;
    let worker = TestWorker::start(&server, &[]).await;
    worker.wait_connected(&server).await;
    let mut c = client(&server).await;
    // The container checks the value itself: the step succeeds only if the secret, with
    // the parameter substituted into it, arrived in its environment. The command holds
    // the expected value reversed, so no answer or row holds it as it is.
    let expect = |value: &str| {
        let reversed: String = value.chars().rev().collect();
        vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!(
                "test \"$(printf %s \"$TOKEN\" | rev)\" = '{reversed}' && test \"$PLAIN\" = prod"
            ),
        ]
    };
    let mut check = step("check", "true", &[]);
    {
        let spec = check.spec.as_mut().unwrap();
        spec.command = expect(&format!("{SECRET}-prod"));
        spec.secret_env = [(
            "TOKEN".to_owned(),
            format!("{SECRET}-${{{{ params.env }}}}"),
        )]
        .into();
        spec.env = [("PLAIN".to_owned(), "${{ params.env }}".to_owned())].into();
    }
    let spec = WorkflowTemplateSpec {
        parameters: vec![param("env", ParameterType::String, None, true)],
        steps: vec![check],
    };
    let mut answers = Vec::new();
    let made = c
        .create_template(create("vault", spec.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        made.latest.as_ref().unwrap().secret_env_keys,
        ["check/TOKEN"]
    );
    answers.push(format!("{made:?}"));
    // Another secret value is a change, reported by name only.
    let mut other = spec;
    other.steps[0].spec.as_mut().unwrap().secret_env = [(
        "TOKEN".to_owned(),
        format!("{SECRET}-${{{{ params.env }}}}-2"),
    )]
    .into();
    other.steps[0].spec.as_mut().unwrap().command = expect(&format!("{SECRET}-prod-2"));
    let changed = c
        .update_template(set("vault", other))
        .await
        .unwrap()
        .into_inner();
    let summary = &changed.latest.as_ref().unwrap().summary;
    assert!(
        summary.contains("step check: secret TOKEN changed"),
        "{summary}"
    );
    answers.push(format!("{changed:?}"));
    let parent = c
        .run_template(run("vault", 0, &[("env", "prod")]))
        .await
        .unwrap()
        .into_inner();
    answers.push(format!("{parent:?}"));
    assert_eq!(child(&parent, "check").secret_env_keys, ["TOKEN"]);
    let done = wait_terminal(&server, &parent.id).await;
    assert_eq!(done.result, WorkResult::Success as i32, "{done:?}");
    answers.push(format!("{done:?}"));
    answers.push(format!(
        "{:?}",
        get(&server, &child(&done, "check").id).await
    ));
    let shown = c
        .get_release(GetReleaseRequest {
            name: "vault".into(),
            version: 2,
            diff_against: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    answers.push(format!("{shown:?}"));
    // A refusal does not echo a secret either.
    let mut bad = nightly();
    bad.steps[0].spec.as_mut().unwrap().secret_env =
        [("T".to_owned(), format!("{SECRET} ${{{{ params.nope }}}}"))].into();
    let refused = c.create_template(create("leaky", bad)).await.unwrap_err();
    answers.push(format!("{refused:?}"));
    for answer in &answers {
        assert!(
            !answer.contains("hunter2"),
            "a secret value leaked: {answer}"
        );
    }
    let plain = count(
        &server,
        "SELECT (SELECT count(*) FROM template_releases WHERE spec::text LIKE '%hunter2%' \
         OR changes::text LIKE '%hunter2%' OR summary LIKE '%hunter2%' \
         OR position('hunter2'::bytea IN coalesce(secret_env, ''::bytea)) > 0) \
         + (SELECT count(*) FROM work_requests WHERE spec::text LIKE '%hunter2%' \
         OR position('hunter2'::bytea IN coalesce(secret_env, ''::bytea)) > 0)",
    )
    .await;
    assert_eq!(plain, 0, "a secret is stored in plain form");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_creates_a_template_from_a_file_and_runs_it_with_params() {
    let server = TestServer::start().await;
    let _worker = server.sim_worker(SimOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nightly.yaml");
    let yaml = |greeting: &str| {
        format!(
            "parameters:\n  - name: who\n    required: true\n  - name: times\n    type: integer\n    default: 2\nsteps:\n  - name: greet\n    image: {TEST_IMAGE}\n    pull: never\n    command: [sh, -c, 'echo {greeting} ${{{{ params.who }}}} x${{{{ params.times }}}}']\n    secret_env_from: [WF_TOKEN]\n"
        )
    };
    std::fs::write(&file, yaml("hello")).unwrap();
    let path = file.to_str().unwrap();
    let cli = berth(&server).env("WF_TOKEN", SECRET);

    let created = cli
        .ok(&[
            "-o", "json", "workflow", "template", "create", "nightly", "-f", path, "--note",
            "first",
        ])
        .await;
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    assert_eq!(created["latest_version"], 1);
    assert_eq!(created["latest"]["note"], "first");
    assert_eq!(created["latest"]["parameters"][0]["name"], "who");
    assert_eq!(created["latest"]["parameters"][1]["default"], "2");
    assert_eq!(created["latest"]["secret_env_keys"][0], "greet/WF_TOKEN");

    let id = cli
        .ok(&["workflow", "run", "nightly", "--param", "who=world"])
        .await
        .trim()
        .to_owned();
    let parent = get(&server, &id).await;
    assert_eq!(parent.template, "nightly");
    assert_eq!(
        command(child(&parent, "greet")),
        ["sh", "-c", "echo hello world x2"]
    );
    assert_eq!(child(&parent, "greet").secret_env_keys, ["WF_TOKEN"]);

    std::fs::write(&file, yaml("goodbye")).unwrap();
    let set = cli
        .ok(&[
            "workflow",
            "template",
            "set",
            "nightly",
            "-f",
            path,
            "--expect-version",
            "1",
        ])
        .await;
    assert!(set.contains("v2"), "{set}");
    assert!(set.contains("step greet: command"), "{set}");
    let stale = cli
        .run(&[
            "workflow",
            "template",
            "set",
            "nightly",
            "-f",
            path,
            "--expect-version",
            "1",
        ])
        .await;
    assert_ne!(stale.code, 0, "a stale --expect-version is refused");

    let releases = cli
        .ok(&["workflow", "template", "releases", "nightly"])
        .await;
    let versions: Vec<&str> = releases
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(versions, ["v2", "v1"], "{releases}");
    let shown = cli
        .ok(&["workflow", "template", "show", "nightly@v2", "--diff", "v1"])
        .await;
    assert!(shown.contains("echo goodbye ${{ params.who }}"), "{shown}");
    assert!(shown.contains("diff from v1:"), "{shown}");
    cli.ok(&["workflow", "template", "rollback", "nightly", "v1"])
        .await;
    let old = cli
        .ok(&[
            "workflow",
            "run",
            "nightly@v2",
            "--param",
            "who=you",
            "--param",
            "times=3",
        ])
        .await
        .trim()
        .to_owned();
    let old = get(&server, &old).await;
    assert_eq!(old.template_version, 2);
    assert_eq!(
        command(child(&old, "greet")),
        ["sh", "-c", "echo goodbye you x3"]
    );
    let latest = cli
        .ok(&["-o", "json", "workflow", "template", "show", "nightly"])
        .await;
    let latest: serde_json::Value = serde_json::from_str(&latest).unwrap();
    assert_eq!(latest["version"], 3);
    assert_eq!(latest["rolled_back_from"], 1);

    let refused = cli
        .run(&[
            "workflow", "run", "nightly", "--param", "who=a", "--param", "times=x",
        ])
        .await;
    assert_ne!(refused.code, 0);
    assert!(
        refused
            .stderr
            .contains("params[\"times\"]: \"x\" is not of type integer"),
        "{}",
        refused.stderr
    );
    for out in [&set, &releases, &shown] {
        assert!(!out.contains("hunter2"), "{out}");
    }
    let done = wait_terminal(&server, &id).await;
    assert_eq!(done.result, WorkResult::Success as i32, "{done:?}");
    server.stop().await;
}
