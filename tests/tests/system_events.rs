//! Berth's own events, end to end: state changes made through the real API (and, where
//! a test needs many commits fast, through SQL on the same tables) write the outbox in
//! their transaction, and the relay of a real server publishes each on its system topic
//! exactly once, in commit order per object.
//!
//! The outbox (`system_events`) and the system topics' rows are read straight from the
//! test's database. Commit order is witnessed independently of `seq`: concurrent
//! `AdjustPriority { delta: 1 }` calls on one request each lock its row and add one, so
//! the k-th change to commit leaves adjustment k; the events of that request, in `seq`
//! order, must then read 1, 2, 3, ...
//!
//! Nothing here asserts an absence after a sleep: counts are taken once every event is
//! relayed (the outbox says so), and the changes that must make no event are bounded by
//! changes that must (a heartbeat between two events of the same worker, say).

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use berth_common::client::BearerAuth;
use berth_common::proto::template_service_client::TemplateServiceClient;
use berth_common::proto::trigger_service_client::TriggerServiceClient;
use berth_common::proto::{
    self, AdjustPriorityRequest, ArchiveTemplateRequest, ArchiveTriggerRuleRequest,
    CancelWorkRequestRequest, ContainerSpec, CreateArtifactRequest, CreateTemplateRequest,
    CreateTriggerRuleRequest, DeleteArtifactRequest, DisableWorkerRequest, DrainWorkerRequest,
    EnableWorkerRequest, FireTriggerRuleRequest, JobTemplateChange, JobTemplateSpec,
    PauseTriggerRuleRequest, ResumeTriggerRuleRequest, ScheduleConfig, SubmitWorkflowRequest,
    TemplateOverrides, TriggerAction, UpdateTemplateRequest, WorkflowStep,
};
use berth_server::app::config::Config;
use berth_tests::artifacts::{entry, upload};
use berth_tests::services::Services;
use berth_tests::{
    ServerProcess, SimOptions, TestServer, WAIT, eventually, fresh_database, query, spec, submit,
    wait_started, wait_terminal,
};

// ----- helpers -----

/// One outbox row.
#[derive(Clone, Debug)]
struct Event {
    seq: i64,
    id: String,
    topic: String,
    kind: String,
    object: String,
    workspace: String,
    data: serde_json::Value,
}

/// The outbox rows matching `filter` (SQL over `system_events`), in `seq` order.
async fn outbox(database_url: &str, filter: &str) -> Vec<Event> {
    query(
        database_url,
        &format!(
            "SELECT seq, id::text, topic, event_type, object_id::text, workspace_id::text, data::text \
             FROM system_events WHERE {filter} ORDER BY seq"
        ),
    )
    .await
    .into_iter()
    .map(|row| Event {
        seq: row.get(0),
        id: row.get(1),
        topic: row.get(2),
        kind: row.get(3),
        object: row.get(4),
        workspace: row.get(5),
        data: serde_json::from_str(&row.get::<_, String>(6)).unwrap(),
    })
    .collect()
}

/// The outbox rows of `object`, in `seq` order.
async fn events_of(server: &TestServer, object: &str) -> Vec<Event> {
    outbox(&server.database_url, &format!("object_id = '{object}'")).await
}

fn kinds(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// Waits until the outbox of `object` holds an event of type `kind`.
async fn wait_event(server: &TestServer, object: &str, kind: &str) -> Vec<Event> {
    eventually(&format!("{kind} of {object}"), WAIT, || async {
        let events = events_of(server, object).await;
        events.iter().any(|e| e.kind == kind).then_some(events)
    })
    .await
}

/// Waits until every event in the outbox is relayed; returns how many there are.
async fn wait_relayed(database_url: &str, timeout: Duration) -> i64 {
    eventually("every system event to be relayed", timeout, || async {
        let rows = query(
            database_url,
            "SELECT count(*) FILTER (WHERE relayed_at IS NULL), count(*) FROM system_events",
        )
        .await;
        let (left, all): (i64, i64) = (rows[0].get(0), rows[0].get(1));
        (left == 0).then_some(all)
    })
    .await
}

/// A message on a system topic: its message id, seq and topic slug, workspace id, and
/// content (`None` once its row is gone; the id stays in `topic_message_ids`).
#[derive(Clone, Debug)]
struct Published {
    seq: i64,
    topic: String,
    workspace: String,
    content: Option<serde_json::Value>,
}

/// Every message published on a system topic, by message id.
async fn published(database_url: &str) -> HashMap<String, Published> {
    query(
        database_url,
        "SELECT i.message_id::text, i.seq, t.slug, t.workspace_id::text, m.content::text \
         FROM topic_message_ids i JOIN topics t ON t.id = i.topic_id \
         LEFT JOIN topic_messages m ON m.topic_id = i.topic_id AND m.seq = i.seq \
         WHERE t.slug LIKE 'berth.%'",
    )
    .await
    .into_iter()
    .map(|row| {
        let content: Option<String> = row.get(4);
        (
            row.get::<_, String>(0),
            Published {
                seq: row.get(1),
                topic: row.get(2),
                workspace: row.get(3),
                content: content.map(|c| serde_json::from_str(&c).unwrap()),
            },
        )
    })
    .collect()
}

/// Checks that every event in `events` was published once, on its own topic in its own
/// workspace, as `{id, type, time, object_id, workspace, data}`, and that one object's
/// events were published in `seq` order.
fn assert_published_in_order(events: &[Event], published: &HashMap<String, Published>) {
    assert!(
        events.windows(2).all(|w| w[0].seq < w[1].seq),
        "the events are given in seq order"
    );
    let mut last: HashMap<&str, i64> = HashMap::new();
    for event in events {
        let message = published
            .get(&event.id)
            .unwrap_or_else(|| panic!("event {event:?} was never published"));
        assert_eq!(message.topic, event.topic, "{event:?}");
        assert_eq!(message.workspace, event.workspace, "{event:?}");
        if let Some(content) = &message.content {
            assert_eq!(content["id"], event.id.as_str());
            assert_eq!(content["type"], event.kind.as_str());
            assert_eq!(content["object_id"], event.object.as_str());
            assert_eq!(content["data"], event.data);
            assert!(content["time"].as_str().is_some(), "{content}");
            assert!(content["workspace"].as_str().is_some(), "{content}");
        }
        if let Some(before) = last.insert(&event.object, message.seq) {
            assert!(
                before < message.seq,
                "{} of {} was published before an earlier event of it",
                event.kind,
                event.object
            );
        }
    }
}

fn fast_relay(config: &mut Config) {
    config.relay.interval = Duration::from_millis(20);
    config.trigger_interval = Duration::from_millis(100);
}

async fn templates(server: &TestServer) -> TemplateServiceClient<berth_tests::Authed> {
    TemplateServiceClient::with_interceptor(
        server.channel().await,
        BearerAuth::new(&server.admin_token),
    )
}

async fn triggers(server: &TestServer) -> TriggerServiceClient<berth_tests::Authed> {
    TriggerServiceClient::with_interceptor(
        server.channel().await,
        BearerAuth::new(&server.admin_token),
    )
}

async fn create_template(server: &TestServer, name: &str, spec: ContainerSpec) -> String {
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
        .unwrap()
        .into_inner()
        .id
}

/// A request that stays pending (no worker has the label it needs).
async fn parked(server: &TestServer) -> String {
    berth_tests::submit_request(
        server,
        proto::SubmitWorkRequestRequest {
            spec: Some(spec(&["true"])),
            requirements: HashMap::from([("parked".to_owned(), "yes".to_owned())]),
            ..Default::default()
        },
    )
    .await
    .id
}

/// Makes `rounds` events of each request of `ids` in one transaction (their priority
/// raised `rounds` times in SQL), as a backlog for the relay.
async fn backlog(database_url: &str, ids: &[String], rounds: u32) {
    let list = ids
        .iter()
        .map(|id| format!("'{id}'::uuid"))
        .collect::<Vec<_>>()
        .join(", ");
    query(
        database_url,
        &format!(
            "DO $$ BEGIN FOR i IN 1..{rounds} LOOP \
               UPDATE work_requests SET priority_adjustment = priority_adjustment + 1 \
               WHERE id = ANY (ARRAY[{list}]); \
             END LOOP; END $$"
        ),
    )
    .await;
}

/// `n` requests that stay pending.
async fn parked_many(server: &TestServer, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(parked(server).await);
    }
    ids
}

// ----- the outbox and its order -----

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_10000_changes_makes_exactly_10000_events_in_commit_order_per_object() {
    let server = TestServer::start_with(|config| {
        fast_relay(config);
        config.relay.batch = 1000;
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(parked(&server).await);
    }
    // 10,000 changes at once, many racing for the same request's row: 1,000 through the
    // API (8 callers of AdjustPriority, +1 each) and 9,000 from 12 SQL sessions (+1 in
    // a transaction of its own each), spread over the ten requests.
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let mut client = server.work_requests(&server.admin_token).await;
        let ids = ids.clone();
        writers.spawn(async move {
            for i in 0..125 {
                client
                    .adjust_priority(AdjustPriorityRequest {
                        id: ids[(w + i) % ids.len()].clone(),
                        delta: 1,
                        set: None,
                    })
                    .await
                    .unwrap();
            }
        });
    }
    for w in 0..12 {
        let (client, connection) =
            tokio_postgres::connect(&server.database_url, tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        let ids = ids.clone();
        writers.spawn(async move {
            let raise = client
                .prepare(
                    "UPDATE work_requests SET priority_adjustment = priority_adjustment + 1 \
                     WHERE id = $1::text::uuid",
                )
                .await
                .unwrap();
            for i in 0..750 {
                client
                    .execute(&raise, &[&ids[(w + i) % ids.len()]])
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }

    let list = ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let events = outbox(&server.database_url, &format!("object_id IN ({list})")).await;
    let updated = events
        .iter()
        .filter(|e| e.kind == "work_request.updated")
        .count();
    assert_eq!(updated, 10_000, "one event per committed change");
    assert_eq!(
        events.len(),
        10_010,
        "and one `created` per request, nothing else"
    );
    let mut total = 0;
    for id in &ids {
        let adjustments: Vec<i64> = events
            .iter()
            .filter(|e| &e.object == id && e.kind == "work_request.updated")
            .map(|e| e.data["priority_adjustment"].as_i64().unwrap())
            .collect();
        let n = i64::try_from(adjustments.len()).unwrap();
        assert_eq!(
            adjustments,
            (1..=n).collect::<Vec<_>>(),
            "request {id}: in seq order, its events are its commits in order"
        );
        let stored = query(
            &server.database_url,
            &format!("SELECT priority_adjustment FROM work_requests WHERE id = '{id}'"),
        )
        .await;
        assert_eq!(i64::from(stored[0].get::<_, i32>(0)), n);
        total += n;
    }
    assert_eq!(total, 10_000);

    wait_relayed(&server.database_url, Duration::from_secs(100)).await;
    let published = published(&server.database_url).await;
    assert_published_in_order(&events, &published);
    let ours: BTreeSet<&String> = events.iter().map(|e| &e.id).collect();
    assert_eq!(ours.len(), 10_010);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn work_requests_and_workflows_report_every_status_change_on_their_topics() {
    let server = TestServer::start_with(fast_relay).await;
    let _sim = server
        .sim_worker(SimOptions::default().concurrency(4))
        .await;
    let ok = submit(&server, spec(&["true"])).await.id;
    let failed = submit(&server, spec(&["false"])).await.id;
    let cancelled = submit(&server, spec(&["sleep", "60"])).await.id;
    wait_started(&server, &cancelled).await;
    server
        .work_requests(&server.admin_token)
        .await
        .cancel_work_request(CancelWorkRequestRequest {
            id: cancelled.clone(),
        })
        .await
        .unwrap();
    let workflow = server
        .work_requests(&server.admin_token)
        .await
        .submit_workflow(SubmitWorkflowRequest {
            name: "two-steps".into(),
            steps: vec![
                WorkflowStep {
                    name: "a".into(),
                    spec: Some(spec(&["true"])),
                    ..WorkflowStep::default()
                },
                WorkflowStep {
                    name: "b".into(),
                    spec: Some(spec(&["true"])),
                    needs: vec!["a".into()],
                    ..WorkflowStep::default()
                },
            ],
            ..SubmitWorkflowRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    for id in [&ok, &failed, &cancelled, &workflow.id] {
        wait_terminal(&server, id).await;
    }

    let of = |events: Vec<Event>| {
        assert!(
            events.iter().all(|e| e.topic == "berth.work-requests"
                && e.workspace == "00000000-0000-0000-0000-000000000001"),
            "{events:?}"
        );
        events
    };
    let done = of(wait_event(&server, &ok, "work_request.succeeded").await);
    assert_eq!(
        kinds(&done),
        [
            "work_request.created",
            "work_request.running",
            "work_request.succeeded"
        ]
    );
    let last = &done[2].data;
    assert_eq!(last["status"], "completed");
    assert_eq!(last["result"], "success");
    assert_eq!(last["exit_code"], 0);
    assert_eq!(last["image"], berth_tests::TEST_IMAGE);
    assert!(
        last["worker"].as_str().unwrap().starts_with("sim-"),
        "{last}"
    );
    assert_eq!(
        done[1].data["worker"], last["worker"],
        "running names its worker"
    );
    assert_eq!(last["created_by"], "admin");
    assert!(last["trigger"].is_null());

    let failing = of(wait_event(&server, &failed, "work_request.failed").await);
    assert_eq!(
        kinds(&failing),
        [
            "work_request.created",
            "work_request.running",
            "work_request.failed"
        ]
    );
    assert_eq!(failing[2].data["exit_code"], 1);
    let stopped = of(wait_event(&server, &cancelled, "work_request.cancelled").await);
    assert_eq!(
        kinds(&stopped),
        [
            "work_request.created",
            "work_request.running",
            "work_request.cancelled"
        ]
    );
    assert_eq!(stopped[2].data["reason"], "cancelled");

    let parent = wait_event(&server, &workflow.id, "workflow.succeeded").await;
    assert!(
        parent.iter().all(|e| e.topic == "berth.workflows"),
        "{parent:?}"
    );
    assert_eq!(kinds(&parent).first(), Some(&"workflow.created"));
    assert_eq!(kinds(&parent).last(), Some(&"workflow.succeeded"));
    let steps = outbox(
        &server.database_url,
        &format!("data->>'parent_id' = '{}'", workflow.id),
    )
    .await;
    let names: BTreeSet<&str> = steps
        .iter()
        .map(|e| e.data["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["a", "b"]));
    assert!(steps.iter().all(|e| e.topic == "berth.work-requests"));
    for step in ["a", "b"] {
        let last = steps
            .iter()
            .filter(|e| e.data["name"] == step)
            .next_back()
            .unwrap();
        assert_eq!(last.kind, "work_request.succeeded", "{last:?}");
    }
    // `b` waited for `a`: it was blocked, then pending, then ran.
    let b: Vec<&str> = steps
        .iter()
        .filter(|e| e.data["name"] == "b")
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        b,
        [
            "work_request.created",
            "work_request.pending",
            "work_request.running",
            "work_request.succeeded"
        ]
    );
    assert_eq!(
        steps.iter().find(|e| e.data["name"] == "b").unwrap().data["status"],
        "blocked"
    );

    wait_relayed(&server.database_url, WAIT).await;
    let published = published(&server.database_url).await;
    for object in [&ok, &failed, &cancelled, &workflow.id] {
        assert_published_in_order(&events_of(&server, object).await, &published);
    }
    assert_published_in_order(&steps, &published);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_report_connections_and_operator_changes_in_default_but_not_heartbeats() {
    let server = TestServer::start_with(|config| {
        fast_relay(config);
        config.agent.heartbeat_interval = Duration::from_millis(200);
    })
    .await;
    let mut sim = server.sim_worker(SimOptions::default()).await;
    let rows = query(
        &server.database_url,
        &format!("SELECT id::text FROM workers WHERE name = '{}'", sim.name),
    )
    .await;
    let worker: String = rows[0].get(0);
    let heartbeat = || async {
        let rows = query(
            &server.database_url,
            &format!("SELECT last_heartbeat_at::text FROM workers WHERE id = '{worker}'"),
        )
        .await;
        rows[0].get::<_, Option<String>>(0)
    };
    // Several lease renewals come and go (each moves last_heartbeat_at) ...
    let first = heartbeat().await;
    for _ in 0..3 {
        let before = heartbeat().await;
        eventually("a lease renewal", WAIT, || async {
            (heartbeat().await != before).then_some(())
        })
        .await;
    }
    assert_ne!(heartbeat().await, first);
    // ... and then the operators act.
    let mut workers = server.workers(&server.admin_token).await;
    let name = sim.name.clone();
    workers
        .disable_worker(DisableWorkerRequest { name: name.clone() })
        .await
        .unwrap();
    workers
        .enable_worker(EnableWorkerRequest { name: name.clone() })
        .await
        .unwrap();
    workers
        .drain_worker(DrainWorkerRequest { name: name.clone() })
        .await
        .unwrap();
    workers
        .enable_worker(EnableWorkerRequest { name: name.clone() })
        .await
        .unwrap();
    sim.stop().await;
    let events = wait_event(&server, &worker, "worker.disconnected").await;
    assert_eq!(
        kinds(&events),
        [
            "worker.connected",
            "worker.disabled",
            "worker.enabled",
            "worker.draining",
            "worker.enabled",
            "worker.disconnected"
        ],
        "the renewals between connecting and the first change made no event"
    );
    for event in &events {
        assert_eq!(event.topic, "berth.workers");
        assert_eq!(event.workspace, "00000000-0000-0000-0000-000000000001");
        assert_eq!(event.data["name"], name.as_str());
    }
    assert_eq!(events[0].data["connected"], true);
    assert_eq!(events[1].data["enabled"], false);
    assert_eq!(events[3].data["draining"], true);
    assert_eq!(events[5].data["connected"], false);
    assert!(
        events
            .iter()
            .all(|e| e.data.get("token_id").is_none() && e.data.get("last_heartbeat_at").is_none()),
        "{events:?}"
    );
    wait_relayed(&server.database_url, WAIT).await;
    assert_published_in_order(&events, &published(&server.database_url).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_templates_services_and_trigger_rules_report_their_changes() {
    let server = TestServer::start_with(fast_relay).await;
    let _sim = server
        .sim_worker(SimOptions::default().concurrency(4))
        .await;

    // An artifact: made, its file uploaded, deleted.
    let mut artifacts = server.artifacts(&server.admin_token).await;
    let files = [entry("a.txt", b"hello")];
    let created = artifacts
        .create_artifact(CreateArtifactRequest {
            category: "build".into(),
            data: r#"{"arch": "amd64"}"#.into(),
            files: files.to_vec(),
            ..CreateArtifactRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let artifact = created.artifact.unwrap().id;
    for path in &created.missing {
        upload(&mut artifacts, &artifact, path, b"hello").await;
    }
    artifacts
        .delete_artifact(DeleteArtifactRequest {
            id: artifact.clone(),
        })
        .await
        .unwrap();
    let events = wait_event(&server, &artifact, "artifact.deleted").await;
    assert_eq!(
        kinds(&events),
        ["artifact.created", "artifact.completed", "artifact.deleted"]
    );
    assert!(events.iter().all(|e| e.topic == "berth.artifacts"));
    assert_eq!(events[0].data["complete"], false);
    assert_eq!(events[1].data["complete"], true);
    assert_eq!(events[1].data["data"]["arch"], "amd64");
    assert_eq!(events[1].data["category"], "build");
    let mut all = events;

    // A template: made, released again, archived, restored.
    let template = create_template(&server, "app", spec(&["sleep", "600"])).await;
    templates(&server)
        .await
        .update_template(UpdateTemplateRequest {
            name: "app".into(),
            change: Some(proto::update_template_request::Change::Job(
                JobTemplateChange {
                    env: HashMap::from([("LEVEL".to_owned(), "debug".to_owned())]),
                    ..JobTemplateChange::default()
                },
            )),
            ..UpdateTemplateRequest::default()
        })
        .await
        .unwrap();
    for restore in [false, true] {
        templates(&server)
            .await
            .archive_template(ArchiveTemplateRequest {
                name: "app".into(),
                restore,
                ..ArchiveTemplateRequest::default()
            })
            .await
            .unwrap();
    }
    let events = wait_event(&server, &template, "template.restored").await;
    assert_eq!(
        kinds(&events),
        [
            "template.created",
            "template.released",
            "template.archived",
            "template.restored"
        ]
    );
    assert!(events.iter().all(|e| e.topic == "berth.templates"));
    assert_eq!(events[0].data["latest_version"], 1);
    assert_eq!(events[1].data["latest_version"], 2);
    assert_eq!(events[1].data["release"]["version"], 2);
    assert!(
        events[1].data["release"]["summary"]
            .as_str()
            .unwrap()
            .contains("LEVEL"),
        "{:?}",
        events[1].data
    );
    all.extend(events);

    // A service: made, its replica started by the reconciler, scaled away, deleted.
    let services = Services::on(&server).await;
    let service = services.create("shop", "app", &[("web", 1)], |_| {}).await;
    let service_id = service.row.id.to_string();
    wait_event(&server, &service_id, "service.started").await;
    services.scale("shop", "web", 0).await;
    let events = wait_event(&server, &service_id, "service.stopping").await;
    assert_eq!(
        kinds(&events)[..3],
        ["service.created", "service.started", "service.scaled"]
    );
    assert!(events.iter().all(|e| e.topic == "berth.services"));
    let started = &events[1].data;
    assert_eq!(started["name"], "shop");
    assert_eq!(started["event"]["replica"], "web.0");
    let replica = started["event"]["request_id"].as_str().unwrap().to_owned();
    let replica_events = events_of(&server, &replica).await;
    assert_eq!(
        replica_events[0].data["service_id"],
        service_id.as_str(),
        "a replica's request names its service"
    );
    assert_eq!(replica_events[0].data["template"], "app");
    assert_eq!(replica_events[0].data["template_version"], 2);

    // A trigger rule: made, paused, resumed, fired by hand, archived.
    let rules = || async { triggers(&server).await };
    let rule = rules()
        .await
        .create_trigger_rule(CreateTriggerRuleRequest {
            name: "nightly".into(),
            config: Some(proto::create_trigger_rule_request::Config::Schedule(
                ScheduleConfig {
                    cron: "0 3 1 1 *".into(),
                    ..ScheduleConfig::default()
                },
            )),
            action: Some(TriggerAction {
                template: "app".into(),
                overrides: Some(TemplateOverrides {
                    command: vec!["true".into()],
                    ..TemplateOverrides::default()
                }),
                ..TriggerAction::default()
            }),
            ..CreateTriggerRuleRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    rules()
        .await
        .pause_trigger_rule(PauseTriggerRuleRequest {
            name: "nightly".into(),
            note: "holiday".into(),
            ..PauseTriggerRuleRequest::default()
        })
        .await
        .unwrap();
    rules()
        .await
        .resume_trigger_rule(ResumeTriggerRuleRequest {
            name: "nightly".into(),
            ..ResumeTriggerRuleRequest::default()
        })
        .await
        .unwrap();
    let fired = rules()
        .await
        .fire_trigger_rule(FireTriggerRuleRequest {
            name: "nightly".into(),
            ..FireTriggerRuleRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    rules()
        .await
        .archive_trigger_rule(ArchiveTriggerRuleRequest {
            name: "nightly".into(),
            ..ArchiveTriggerRuleRequest::default()
        })
        .await
        .unwrap();
    let events = wait_event(&server, &rule.id, "trigger_rule.archived").await;
    assert_eq!(
        kinds(&events),
        [
            "trigger_rule.created",
            "trigger_rule.paused",
            "trigger_rule.resumed",
            "trigger_rule.archived"
        ],
        "firing it (its last fired time) is no change of the rule"
    );
    assert!(events.iter().all(|e| e.topic == "berth.triggers"));
    assert_eq!(events[1].data["pause_note"], "holiday");
    assert_eq!(events[0].data["template"], "app");
    let firing = wait_event(&server, &fired.id, "trigger_event.fired").await;
    assert_eq!(
        kinds(&firing),
        ["trigger_event.pending", "trigger_event.fired"]
    );
    assert_eq!(firing[1].data["rule"], "nightly");
    let made = events_of(&server, &fired.work_request_id).await;
    assert_eq!(made[0].kind, "work_request.created");
    assert_eq!(made[0].data["trigger"]["rule_id"], rule.id.as_str());
    assert_eq!(made[0].data["trigger"]["event_id"], fired.id.as_str());
    assert_eq!(
        made[0].data["trigger"]["rules"],
        serde_json::json!([rule.id])
    );
    all.extend(events);
    all.extend(firing);

    wait_relayed(&server.database_url, WAIT).await;
    all.sort_by_key(|e| e.seq);
    assert_published_in_order(&all, &published(&server.database_url).await);
    server.stop().await;
}

// ----- secrets -----

#[tokio::test(flavor = "multi_thread")]
async fn no_event_or_message_holds_a_secret_value() {
    let server = TestServer::start_with(fast_relay).await;
    let _sim = server
        .sim_worker(SimOptions::default().concurrency(2))
        .await;
    let secret = format!("s3cret-{}", uuid::Uuid::new_v4().simple());
    // A request with a secret env value, a template with one, a release changing it, and
    // a trigger rule with a secret override fired by hand.
    let request = submit(
        &server,
        ContainerSpec {
            secret_env: HashMap::from([("TOKEN".to_owned(), format!("{secret}-request"))]),
            ..spec(&["true"])
        },
    )
    .await
    .id;
    create_template(
        &server,
        "deploy",
        ContainerSpec {
            secret_env: HashMap::from([("TOKEN".to_owned(), format!("{secret}-template"))]),
            ..spec(&["true"])
        },
    )
    .await;
    templates(&server)
        .await
        .update_template(UpdateTemplateRequest {
            name: "deploy".into(),
            change: Some(proto::update_template_request::Change::Job(
                JobTemplateChange {
                    secret_env: HashMap::from([("TOKEN".to_owned(), format!("{secret}-release"))]),
                    ..JobTemplateChange::default()
                },
            )),
            ..UpdateTemplateRequest::default()
        })
        .await
        .unwrap();
    triggers(&server)
        .await
        .create_trigger_rule(CreateTriggerRuleRequest {
            name: "by-hand".into(),
            config: Some(proto::create_trigger_rule_request::Config::Schedule(
                ScheduleConfig {
                    cron: "0 3 1 1 *".into(),
                    ..ScheduleConfig::default()
                },
            )),
            action: Some(TriggerAction {
                template: "deploy".into(),
                overrides: Some(TemplateOverrides {
                    secret_env: HashMap::from([("OVERRIDE".to_owned(), format!("{secret}-rule"))]),
                    ..TemplateOverrides::default()
                }),
                ..TriggerAction::default()
            }),
            ..CreateTriggerRuleRequest::default()
        })
        .await
        .unwrap();
    let fired = triggers(&server)
        .await
        .fire_trigger_rule(FireTriggerRuleRequest {
            name: "by-hand".into(),
            ..FireTriggerRuleRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    wait_terminal(&server, &request).await;
    wait_terminal(&server, &fired.work_request_id).await;
    wait_event(&server, &fired.work_request_id, "work_request.succeeded").await;
    wait_relayed(&server.database_url, WAIT).await;

    let all = outbox(&server.database_url, "true").await;
    for wanted in [
        "work_request.succeeded",
        "template.released",
        "trigger_rule.created",
        "trigger_event.fired",
    ] {
        assert!(
            all.iter().any(|e| e.kind == wanted),
            "the secret-bearing objects made events: no {wanted} in {:?}",
            kinds(&all)
        );
    }
    let leaks = query(
        &server.database_url,
        &format!(
            "SELECT (SELECT count(*) FROM system_events WHERE data::text LIKE '%{secret}%'), \
                    (SELECT count(*) FROM topic_messages WHERE content::text LIKE '%{secret}%'), \
                    (SELECT count(*) FROM system_events WHERE data::text LIKE '%TOKEN%')"
        ),
    )
    .await;
    let (in_events, in_messages, names): (i64, i64, i64) =
        (leaks[0].get(0), leaks[0].get(1), leaks[0].get(2));
    assert_eq!(in_events, 0, "no event holds a secret value");
    assert_eq!(in_messages, 0, "no message holds a secret value");
    assert!(
        names > 0,
        "the secret's name may be shown (the release lists it)"
    );
    server.stop().await;
}

// ----- the relay -----

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_killed_mid_batch_loses_and_doubles_nothing() {
    let database_url = fresh_database().await;
    let config = "[events]\nrelay_batch = 25\nrelay_interval = \"10ms\"\n";
    let mut process = ServerProcess::start(&database_url, None, config).await;
    let server = process.handle(&process.admin_token());
    let ids = parked_many(&server, 50).await;
    backlog(&database_url, &ids, 200).await;
    let counts = || async {
        let rows = query(
            &database_url,
            "SELECT count(*) FILTER (WHERE relayed_at IS NOT NULL), count(*) FROM system_events",
        )
        .await;
        (rows[0].get::<_, i64>(0), rows[0].get::<_, i64>(1))
    };
    eventually("the relay to be part way through", WAIT, || async {
        let (relayed, all) = counts().await;
        assert!(
            relayed < all,
            "the relay finished before it could be killed"
        );
        (relayed > 100).then_some(())
    })
    .await;
    process.kill().await;

    // Whatever the kill interrupted, what committed is whole: every event marked relayed
    // is published, and nothing else is.
    let (relayed, all) = counts().await;
    assert!(relayed < all, "killed part way: {relayed} of {all}");
    let published_ids: BTreeSet<String> = published(&database_url).await.into_keys().collect();
    let relayed_ids: BTreeSet<String> = query(
        &database_url,
        "SELECT id::text FROM system_events WHERE relayed_at IS NOT NULL",
    )
    .await
    .into_iter()
    .map(|row| row.get(0))
    .collect();
    assert_eq!(published_ids, relayed_ids);

    process.spawn().await;
    let all = wait_relayed(&database_url, Duration::from_secs(100)).await;
    let events = outbox(&database_url, "true").await;
    assert_eq!(events.len(), usize::try_from(all).unwrap());
    let published = published(&database_url).await;
    assert_eq!(published.len(), events.len(), "each event published once");
    assert_published_in_order(&events, &published);
    process.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_relay_every_event_once() {
    let fast = |config: &mut Config| {
        config.relay.interval = Duration::from_millis(10);
        config.relay.batch = 50;
    };
    let first = TestServer::start_with(fast).await;
    let second = first.replica_with(fast).await;
    let ids = parked_many(&first, 40).await;
    // Four backlogs committed at once while both replicas relay.
    let mut writers = tokio::task::JoinSet::new();
    for some in ids.chunks(10) {
        let database_url = first.database_url.clone();
        let some = some.to_vec();
        writers.spawn(async move { backlog(&database_url, &some, 250).await });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let all = wait_relayed(&first.database_url, Duration::from_secs(100)).await;
    let events = outbox(&first.database_url, "true").await;
    assert_eq!(events.len(), usize::try_from(all).unwrap());
    assert!(events.len() >= 10_040, "{}", events.len());
    let published = published(&first.database_url).await;
    assert_eq!(
        published.len(),
        events.len(),
        "none published twice, none lost"
    );
    assert_published_in_order(&events, &published);
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_that_cannot_be_published_is_passed_over_and_holds_back_nothing() {
    let server = TestServer::start_with(fast_relay).await;
    // An event naming a workspace that does not exist cannot go on any topic.
    query(
        &server.database_url,
        "SELECT berth_emit(gen_random_uuid(), 'berth.work-requests', 'work_request.updated', \
                gen_random_uuid(), '{}'::jsonb)",
    )
    .await;
    let after = parked(&server).await;
    wait_relayed(&server.database_url, WAIT).await;
    let poisoned = query(
        &server.database_url,
        "SELECT relay_error FROM system_events WHERE relay_error IS NOT NULL",
    )
    .await;
    assert_eq!(poisoned.len(), 1);
    let error: String = poisoned[0].get(0);
    assert!(error.contains("does not exist"), "{error}");
    let events = events_of(&server, &after).await;
    assert_eq!(kinds(&events), ["work_request.created"]);
    assert_published_in_order(&events, &published(&server.database_url).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn relayed_events_are_kept_for_the_retention_then_pruned() {
    let server = TestServer::start_with(|config| {
        fast_relay(config);
        config.relay.retention = Duration::from_secs(60);
    })
    .await;
    let old = parked(&server).await;
    let young = parked(&server).await;
    wait_relayed(&server.database_url, WAIT).await;
    // As if the first had been relayed two minutes ago.
    query(
        &server.database_url,
        &format!(
            "UPDATE system_events SET relayed_at = now() - interval '2 minutes' WHERE object_id = '{old}'"
        ),
    )
    .await;
    eventually(
        "the relay's pruning to delete the old event",
        Duration::from_secs(60),
        || async { events_of(&server, &old).await.is_empty().then_some(()) },
    )
    .await;
    assert_eq!(
        kinds(&events_of(&server, &young).await),
        ["work_request.created"],
        "a young event is kept"
    );
    // The message stays on its topic: only the outbox forgets.
    let messages = published(&server.database_url).await;
    assert!(
        messages.values().any(|m| m
            .content
            .as_ref()
            .is_some_and(|c| c["object_id"] == old.as_str())),
        "the old event's message is still on berth.work-requests"
    );
    server.stop().await;
}
