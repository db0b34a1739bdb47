//! Event rules and settling, end to end: a real server (and a replica), artifacts made
//! through the API into the local file store, simulated workers for completions and a
//! real `berth-worker` with Docker where the run must see its artifact.
//!
//! An artifact rule fires once per matching artifact and for no other; its run gets the
//! artifact mounted at `trigger`. A completion rule on `failure` fires for a failed run
//! of its template and not for a successful one, nor for other requests, nor for the
//! runs it made itself. A `pending` event left as a crash leaves it (committed, its work
//! not made) is settled into exactly one request under its reserved id while two
//! replicas race for it.
//!
//! Absence is never asserted after a sleep: each test waits until the rule's cursor
//! (`watch_from`, in the database) has passed every cause the test made, which proves
//! the scan has seen them, and only then counts the events.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::BTreeSet;
use std::time::Duration;

use berth_common::client::BearerAuth;
use berth_common::proto::template_service_client::TemplateServiceClient;
use berth_common::proto::trigger_service_client::TriggerServiceClient;
use berth_common::proto::{
    self, ArtifactConfig, CompletionConfig, ContainerSpec, CreateArtifactRequest,
    CreateTemplateRequest, CreateTriggerRuleRequest, DataCondition, JobTemplateSpec,
    ListTriggerEventsRequest, RunTemplateRequest, TemplateOverrides, TriggerAction, TriggerEvent,
    WorkRequestStatus, WorkResult,
};
use berth_tests::artifacts::{Artifacts, entry, upload};
use berth_tests::logs::STDOUT;
use berth_tests::{
    Authed, Logs, SimOptions, TestServer, TestWorker, WAIT, ensure_test_image, eventually, get,
    query, quick_heartbeats, result, sh, spec, status, submit, wait_no_containers, wait_terminal,
};

// ----- helpers -----

async fn triggers(server: &TestServer) -> TriggerServiceClient<Authed> {
    TriggerServiceClient::with_interceptor(
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

/// Job template `name` in `default` running `spec`.
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

/// Runs template `name` with `command` instead of its own; returns the request's id.
async fn run_template(server: &TestServer, name: &str, command: &[&str]) -> String {
    templates(server)
        .await
        .run_template(RunTemplateRequest {
            name: name.to_owned(),
            overrides: Some(TemplateOverrides {
                command: command.iter().map(|c| (*c).to_owned()).collect(),
                ..TemplateOverrides::default()
            }),
            ..RunTemplateRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id
}

fn action(template: &str) -> Option<TriggerAction> {
    Some(TriggerAction {
        template: template.to_owned(),
        ..TriggerAction::default()
    })
}

async fn create_rule(
    server: &TestServer,
    name: &str,
    config: proto::create_trigger_rule_request::Config,
    template: &str,
) {
    triggers(server)
        .await
        .create_trigger_rule(CreateTriggerRuleRequest {
            name: name.to_owned(),
            config: Some(config),
            action: action(template),
            ..CreateTriggerRuleRequest::default()
        })
        .await
        .unwrap();
}

/// Every event of rule `rule`, newest first.
async fn events(server: &TestServer, rule: &str) -> Vec<TriggerEvent> {
    triggers(server)
        .await
        .list_trigger_events(ListTriggerEventsRequest {
            rule: rule.to_owned(),
            limit: 1000,
            ..ListTriggerEventsRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

fn description(event: &TriggerEvent) -> serde_json::Value {
    serde_json::from_str(&event.description).unwrap()
}

/// A complete artifact of `category` with `data`, holding `hello.txt`.
async fn artifact(client: &mut Artifacts, category: &str, data: &str, hello: &str) -> String {
    let files = [entry("hello.txt", hello.as_bytes())];
    let created = client
        .create_artifact(CreateArtifactRequest {
            category: category.to_owned(),
            data: data.to_owned(),
            files: files.to_vec(),
            ..CreateArtifactRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let id = created.artifact.unwrap().id;
    for path in &created.missing {
        upload(client, &id, path, hello.as_bytes()).await;
    }
    id
}

/// Waits until the scan of rule `rule` has passed every `table` row with `ids` (their
/// `completed_at` is before the rule's cursor less nothing: the scan saw them all).
async fn wait_scanned(server: &TestServer, rule: &str, table: &str, ids: &[String]) {
    let list = ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT (SELECT watch_from FROM trigger_rules WHERE name = '{rule}' AND archived_at IS NULL) \
              > (SELECT max(completed_at) FROM {table} WHERE id IN ({list})) \
              AND (SELECT count(*) FROM {table} WHERE id IN ({list}) AND completed_at IS NOT NULL) = {n}",
        n = ids.len()
    );
    eventually(
        &format!("rule {rule} to scan past {list}"),
        WAIT,
        || async {
            let rows = query(&server.database_url, &sql).await;
            rows[0]
                .get::<_, Option<bool>>(0)
                .unwrap_or(false)
                .then_some(())
        },
    )
    .await;
}

// ----- tests -----

#[tokio::test(flavor = "multi_thread")]
async fn an_artifact_rule_fires_once_per_matching_artifact_and_mounts_it() {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_heartbeats).await;
    let mut worker = TestWorker::start(&server, &[]).await;
    worker.wait_connected(&server).await;
    create_template(
        &server,
        "consume",
        sh("echo artifact=$BERTH_TRIGGER_ARTIFACT type=$BERTH_TRIGGER_TYPE rule=$BERTH_TRIGGER_RULE; cat /in/trigger/hello.txt"),
    )
    .await;
    create_rule(
        &server,
        "on-build",
        proto::create_trigger_rule_request::Config::Artifact(ArtifactConfig {
            category: "build".into(),
            all_of: vec![DataCondition {
                path: "target.arch".into(),
                equals: Some("amd64".into()),
            }],
            any_of: vec![],
        }),
        "consume",
    )
    .await;

    let mut client = server.artifacts(&server.admin_token).await;
    let first = artifact(
        &mut client,
        "build",
        r#"{"target": {"arch": "amd64"}}"#,
        "one",
    )
    .await;
    let other_arch = artifact(
        &mut client,
        "build",
        r#"{"target": {"arch": "arm64"}}"#,
        "x",
    )
    .await;
    let no_data = artifact(&mut client, "build", "", "y").await;
    let other_category = artifact(
        &mut client,
        "package",
        r#"{"target": {"arch": "amd64"}}"#,
        "z",
    )
    .await;
    let second = artifact(
        &mut client,
        "build",
        r#"{"target": {"arch": "amd64"}}"#,
        "two",
    )
    .await;

    let fired = eventually("both matching artifacts to fire", WAIT, || async {
        let events = events(&server, "on-build").await;
        (events.len() >= 2 && events.iter().all(|e| e.outcome == "fired")).then_some(events)
    })
    .await;
    wait_scanned(
        &server,
        "on-build",
        "artifacts",
        &[
            first.clone(),
            other_arch.clone(),
            no_data.clone(),
            other_category.clone(),
            second.clone(),
        ],
    )
    .await;
    let events = events(&server, "on-build").await;
    assert_eq!(
        events.len(),
        2,
        "one event per matching artifact: {events:?}"
    );
    let caused: BTreeSet<String> = events
        .iter()
        .map(|e| description(e)["artifact"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(caused, BTreeSet::from([first.clone(), second.clone()]));
    assert_eq!(fired.len(), 2);

    for event in &events {
        assert_eq!(event.r#type, "artifact");
        assert_eq!(description(event)["category"], "build");
        let artifact = description(event)["artifact"].as_str().unwrap().to_owned();
        let done = wait_terminal(&server, &event.work_request_id).await;
        assert_eq!(result(&done), WorkResult::Success, "{done:?}");
        assert_eq!(done.trigger_rule, "on-build");
        assert_eq!(done.trigger_event_id, event.id);
        assert_eq!(done.template, "consume");
        assert!(
            done.inputs
                .iter()
                .any(|i| i.mount == "trigger" && i.artifact_id == artifact),
            "{:?}",
            done.inputs
        );
        let stdout = Logs::read(&server, &done.id).await.text(STDOUT);
        let hello = if artifact == first { "one" } else { "two" };
        assert!(
            stdout.contains(&format!(
                "artifact={artifact} type=artifact rule=on-build\n{hello}"
            )),
            "{stdout:?}"
        );
    }

    wait_no_containers(&worker.name).await;
    worker.terminate(Duration::from_secs(30)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completion_rule_on_failure_fires_for_a_failed_run_of_its_template_only() {
    let server = TestServer::start().await;
    let _sim = server
        .sim_worker(SimOptions::default().concurrency(4))
        .await;
    create_template(&server, "task", spec(&["true"])).await;
    create_template(&server, "alert", spec(&["true"])).await;
    create_rule(
        &server,
        "on-task-failure",
        proto::create_trigger_rule_request::Config::Completion(CompletionConfig {
            template: "task".into(),
            ..CompletionConfig::default()
        }),
        "alert",
    )
    .await;

    let failed = run_template(&server, "task", &["false"]).await;
    let succeeded = run_template(&server, "task", &["true"]).await;
    let unrelated = submit(&server, spec(&["false"])).await.id;
    for id in [&failed, &succeeded, &unrelated] {
        wait_terminal(&server, id).await;
    }
    assert_eq!(result(&get(&server, &failed).await), WorkResult::Failure);
    assert_eq!(result(&get(&server, &succeeded).await), WorkResult::Success);

    wait_scanned(
        &server,
        "on-task-failure",
        "work_requests",
        &[failed.clone(), succeeded.clone(), unrelated.clone()],
    )
    .await;
    let event = eventually("the failure's event to fire", WAIT, || async {
        let events = events(&server, "on-task-failure").await;
        events
            .first()
            .filter(|e| e.outcome == "fired")
            .cloned()
            .map(|e| (e, events.len()))
    })
    .await;
    let (event, count) = event;
    assert_eq!(count, 1, "only the failed run of `task` fires");
    let described = description(&event);
    assert_eq!(described["request"], failed.as_str());
    assert_eq!(described["result"], "failure");
    assert_eq!(described["template"], "task");

    let alert = wait_terminal(&server, &event.work_request_id).await;
    assert_eq!(status(&alert), WorkRequestStatus::Completed);
    assert_eq!(alert.template, "alert");
    assert_eq!(alert.trigger_rule, "on-task-failure");
    let env = &alert.spec.as_ref().unwrap().env;
    assert_eq!(env["BERTH_TRIGGER_REQUEST"], failed);
    assert_eq!(env["BERTH_TRIGGER_RESULT"], "failure");
    assert_eq!(env["BERTH_TRIGGER_TYPE"], "completion");
    assert_eq!(env["BERTH_TRIGGER_EVENT"], event.id);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completion_rule_does_not_fire_for_the_runs_it_made() {
    let server = TestServer::start().await;
    let _sim = server.sim_worker(SimOptions::default()).await;
    create_template(&server, "boom", spec(&["false"])).await;
    // Its own run fails as it watches for: without the guard it would fire for ever.
    create_rule(
        &server,
        "retry-boom",
        proto::create_trigger_rule_request::Config::Completion(CompletionConfig {
            template: "boom".into(),
            results: vec!["failure".into()],
            ..CompletionConfig::default()
        }),
        "boom",
    )
    .await;
    let by_hand = run_template(&server, "boom", &[]).await;
    let event = eventually("the hand-made run's failure to fire", WAIT, || async {
        events(&server, "retry-boom")
            .await
            .into_iter()
            .find(|e| e.outcome == "fired")
    })
    .await;
    assert_eq!(description(&event)["request"], by_hand.as_str());
    let made = wait_terminal(&server, &event.work_request_id).await;
    assert_eq!(result(&made), WorkResult::Failure);
    wait_scanned(
        &server,
        "retry-boom",
        "work_requests",
        std::slice::from_ref(&made.id),
    )
    .await;
    let events = events(&server, "retry-boom").await;
    assert_eq!(
        events.len(),
        1,
        "the rule's own failed run made no event: {events:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_events_left_by_a_crash_make_exactly_one_request_each_on_two_replicas() {
    let fast = |config: &mut berth_server::app::config::Config| {
        config.trigger_interval = Duration::from_millis(50);
    };
    let first = TestServer::start_with(fast).await;
    let _sim = first.sim_worker(SimOptions::default().concurrency(8)).await;
    create_template(&first, "job", spec(&["true"])).await;
    // An artifact rule of a category nothing has: it makes no events itself.
    create_rule(
        &first,
        "crashed",
        proto::create_trigger_rule_request::Config::Artifact(ArtifactConfig {
            category: "never-made".into(),
            ..ArtifactConfig::default()
        }),
        "job",
    )
    .await;
    // As if a settle died after submitting and before marking: its request exists.
    let existing = submit(&first, spec(&["true"])).await.id;

    // Committed `pending` events with reserved ids, as a firer that died before settling
    // leaves them; inserted before the replica starts and while the first server's
    // passes run, so that both race for them.
    let second = first.replica_with(fast).await;
    query(
        &first.database_url,
        &format!(
            "INSERT INTO trigger_events (id, workspace_id, rule_id, kind, outcome, dedupe, description, run_as, work_request_id) \
             SELECT gen_random_uuid(), r.workspace_id, r.id, r.kind, 'pending', 'artifact:crash-' || g, \
                    '{{}}', r.created_by, CASE WHEN g = 0 THEN '{existing}'::uuid ELSE gen_random_uuid() END \
             FROM trigger_rules r, generate_series(0, 40) g WHERE r.name = 'crashed'"
        ),
    )
    .await;

    eventually("every pending event to be settled", WAIT, || async {
        let rows = query(
            &first.database_url,
            "SELECT count(*) FILTER (WHERE outcome = 'fired'), count(*) FROM trigger_events",
        )
        .await;
        let (fired, all): (i64, i64) = (rows[0].get(0), rows[0].get(1));
        assert_eq!(all, 41, "no event is added");
        (fired == all).then_some(())
    })
    .await;

    let rows = query(
        &first.database_url,
        "SELECT count(DISTINCT e.work_request_id), count(wr.id), \
                (SELECT count(*) FROM work_requests w JOIN templates t ON t.id = w.template_id WHERE t.name = 'job') \
         FROM trigger_events e LEFT JOIN work_requests wr ON wr.id = e.work_request_id",
    )
    .await;
    let (reserved, found, from_template): (i64, i64, i64) =
        (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    assert_eq!(reserved, 41, "every event keeps its own reserved id");
    assert_eq!(found, 41, "each reserved id is a request");
    assert_eq!(
        from_template, 40,
        "exactly one run per event whose request did not exist, none for the one that did"
    );
    let existing_now = get(&first, &existing).await;
    assert!(
        existing_now.template.is_empty(),
        "the existing request is left as it was"
    );

    second.stop().await;
    first.stop().await;
}
