//! Topic rules end to end: a real server (two replicas where it matters) whose relay
//! publishes Berth's own events on the system topics, rules consuming them (and a user
//! topic) through their own subscriptions, and simulated workers running what they make.
//!
//! A rule fires once per wanted message across replicas, and its run gets the message; a
//! rule never fires on what its own firings caused, even through another rule; a paused
//! rule's messages become `paused` events; archiving drops the subscription; refusals
//! name the field.
//!
//! Counts are taken only once everything is quiet: every system event relayed, every
//! internal subscription drained, no firing pending and no request unfinished. Nothing
//! that could make more work is left then, so nothing is asserted absent after a sleep.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use berth_common::client::BearerAuth;
use berth_common::proto::template_service_client::TemplateServiceClient;
use berth_common::proto::trigger_service_client::TriggerServiceClient;
use berth_common::proto::{
    self, ArchiveTriggerRuleRequest, ContainerSpec, CreateTemplateRequest,
    CreateTriggerRuleRequest, JobTemplateSpec, ListTriggerEventsRequest, Role, TopicConfig,
    TriggerAction, TriggerEvent, TriggerRule, UpdateTriggerRuleRequest,
};
use berth_core::access::auth::Authenticator;
use berth_core::live::AgentSettings;
use berth_core::live::hub::Hub;
use berth_core::store::db::{self, DbSettings};
use berth_core::topics::{MessageInput, TopicRef, Topics};
use berth_server::app::config::Config;
use berth_tests::{Authed, SimOptions, TestServer, WAIT, eventually, get, query, spec, submit};
use tonic::Code;

// ----- helpers -----

fn fast(config: &mut Config) {
    config.trigger_interval = Duration::from_millis(50);
    config.relay.interval = Duration::from_millis(20);
}

async fn triggers(server: &TestServer, token: &str) -> TriggerServiceClient<Authed> {
    TriggerServiceClient::with_interceptor(server.channel().await, BearerAuth::new(token))
}

async fn create_template(server: &TestServer, name: &str, spec: ContainerSpec) {
    TemplateServiceClient::with_interceptor(
        server.channel().await,
        BearerAuth::new(&server.admin_token),
    )
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

fn on_topic(topic: &str, types: &[&str]) -> proto::create_trigger_rule_request::Config {
    proto::create_trigger_rule_request::Config::Topic(TopicConfig {
        topic: topic.to_owned(),
        types: types.iter().map(|t| (*t).to_owned()).collect(),
    })
}

fn runs(template: &str) -> Option<TriggerAction> {
    Some(TriggerAction {
        template: template.to_owned(),
        ..TriggerAction::default()
    })
}

async fn create_rule(
    server: &TestServer,
    token: &str,
    name: &str,
    config: proto::create_trigger_rule_request::Config,
    template: &str,
    paused: bool,
) -> Result<TriggerRule, tonic::Status> {
    triggers(server, token)
        .await
        .create_trigger_rule(CreateTriggerRuleRequest {
            name: name.to_owned(),
            config: Some(config),
            action: runs(template),
            paused,
            ..CreateTriggerRuleRequest::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Every event of rule `rule`, newest first.
async fn events(server: &TestServer, rule: &str) -> Vec<TriggerEvent> {
    triggers(server, &server.admin_token)
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

/// Waits until nothing is left that could make more work or more firings: every system
/// event relayed, every rule's subscription drained, no firing pending, every request
/// ended.
async fn wait_quiet(server: &TestServer) {
    eventually("everything to settle", WAIT, || async {
        let rows = query(
            &server.database_url,
            "SELECT (SELECT count(*) FROM system_events WHERE relayed_at IS NULL) \
                  + (SELECT count(*) FROM subscription_messages m \
                       JOIN subscriptions s ON s.id = m.subscription_id WHERE s.internal) \
                  + (SELECT count(*) FROM trigger_events WHERE outcome = 'pending') \
                  + (SELECT count(*) FROM work_requests WHERE status NOT IN ('completed', 'aborted'))",
        )
        .await;
        (rows[0].get::<_, i64>(0) == 0).then_some(())
    })
    .await;
}

/// How many requests were made from template `name`.
async fn runs_of(server: &TestServer, name: &str) -> i64 {
    query(
        &server.database_url,
        &format!(
            "SELECT count(*) FROM work_requests w JOIN templates t ON t.id = w.template_id \
             WHERE t.name = '{name}'"
        ),
    )
    .await[0]
        .get(0)
}

/// The subscription a rule stored, and whether it exists.
async fn subscription_of(server: &TestServer, rule_id: &str) -> (String, bool) {
    let rows = query(
        &server.database_url,
        &format!(
            "SELECT r.config->>'subscription_id', \
                    EXISTS (SELECT 1 FROM subscriptions s WHERE s.id::text = r.config->>'subscription_id') \
             FROM trigger_rules r WHERE r.id = '{rule_id}'"
        ),
    )
    .await;
    (rows[0].get(0), rows[0].get(1))
}

/// A topic of `default` made straight in the database.
async fn make_topic(server: &TestServer, slug: &str, public: bool, policy: &str) {
    query(
        &server.database_url,
        &format!(
            "INSERT INTO topics (id, workspace_id, slug, is_public, store_policy) \
             VALUES (gen_random_uuid(), '00000000-0000-0000-0000-000000000001', '{slug}', {public}, '{policy}')"
        ),
    )
    .await;
}

/// The topics room's front on the server's database, publishing as the admin.
async fn publish(server: &TestServer, slug: &str, content: &str, properties: &[(&str, &str)]) {
    let pool = db::connect_pool(&DbSettings {
        url: server.database_url.clone(),
        ca_cert: None,
        pool_size: 2,
    })
    .await
    .unwrap();
    let admin = Authenticator::new(pool.clone())
        .authenticate(&server.admin_token)
        .await
        .unwrap();
    let topics = Topics::new(pool, Arc::new(Hub::new(&AgentSettings::default())));
    topics
        .publish(
            &admin,
            &TopicRef {
                workspace: String::new(),
                slug: slug.to_owned(),
            },
            &[MessageInput {
                content: content.to_owned(),
                properties: properties
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
                ..MessageInput::default()
            }],
        )
        .await
        .unwrap();
}

// ----- tests -----

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_on_failures_fires_once_per_failure_across_two_replicas_and_its_run_gets_the_event()
{
    let first = TestServer::start_with(fast).await;
    let second = first.replica_with(fast).await;
    let _sim = first.sim_worker(SimOptions::default().concurrency(8)).await;
    create_template(&first, "alert", spec(&["true"])).await;
    let rule = create_rule(
        &first,
        &first.admin_token,
        "on-fail",
        on_topic("berth.work-requests", &["work_request.failed"]),
        "alert",
        false,
    )
    .await
    .unwrap();
    assert_eq!(rule.r#type, "topic");

    let mut failed = BTreeSet::new();
    for i in 0..20 {
        // Half through each replica; half of them succeed and must not fire.
        let server = if i % 2 == 0 { &first } else { &second };
        failed.insert(submit(server, spec(&["false"])).await.id);
        submit(server, spec(&["true"])).await;
    }
    wait_quiet(&first).await;

    let events = events(&first, "on-fail").await;
    assert_eq!(events.len(), 20, "one event per failure: {events:?}");
    let mut causes = BTreeSet::new();
    let mut messages = BTreeSet::new();
    for event in &events {
        assert_eq!(event.outcome, "fired", "{event:?}");
        assert_eq!(event.r#type, "topic");
        let described = description(event);
        assert_eq!(described["topic"], "berth.work-requests");
        assert_eq!(described["type"], "work_request.failed");
        let object = described["object_id"].as_str().unwrap().to_owned();
        let message_id = described["message_id"].as_str().unwrap().to_owned();
        assert!(
            messages.insert(message_id.clone()),
            "one firing per message"
        );
        causes.insert(object.clone());

        let run = get(&first, &event.work_request_id).await;
        assert_eq!(run.template, "alert");
        assert_eq!(run.trigger_rule, "on-fail");
        let env = &run.spec.as_ref().unwrap().env;
        assert_eq!(env["BERTH_TRIGGER_TYPE"], "topic");
        assert_eq!(env["BERTH_TRIGGER_TOPIC"], "berth.work-requests");
        assert_eq!(env["BERTH_TRIGGER_MESSAGE_ID"], message_id);
        let message: serde_json::Value =
            serde_json::from_str(&env["BERTH_TRIGGER_MESSAGE"]).unwrap();
        assert_eq!(message["type"], "work_request.failed");
        assert_eq!(
            message["id"],
            message_id.as_str(),
            "the message is the event"
        );
        assert_eq!(message["object_id"], object.as_str());
        assert_eq!(message["workspace"], "default");
        assert_eq!(message["data"]["status"], "completed");
        assert_eq!(message["data"]["result"], "failure");
    }
    assert_eq!(causes, failed, "the failures and nothing else fired");
    assert_eq!(runs_of(&first, "alert").await, 20);
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_never_fire_on_what_their_own_firings_caused_even_through_each_other() {
    let server = TestServer::start_with(fast).await;
    let _sim = server
        .sim_worker(SimOptions::default().concurrency(8))
        .await;
    create_template(&server, "a-job", spec(&["true"])).await;
    create_template(&server, "b-job", spec(&["true"])).await;
    // Each fires on every new request: without the guard, each run would fire both
    // again, for ever.
    for (rule, template) in [("rule-a", "a-job"), ("rule-b", "b-job")] {
        create_rule(
            &server,
            &server.admin_token,
            rule,
            on_topic("berth.work-requests", &["work_request.created"]),
            template,
            false,
        )
        .await
        .unwrap();
    }
    let by_hand = submit(&server, spec(&["true"])).await.id;
    wait_quiet(&server).await;

    // rule-a fires on the request made by hand and on rule-b's run of it; rule-b the
    // same the other way round. Each of those runs was caused by both rules, or by the
    // rule itself: nothing more fires.
    let a = events(&server, "rule-a").await;
    let b = events(&server, "rule-b").await;
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(b.len(), 2, "{b:?}");
    assert!(a.iter().chain(&b).all(|e| e.outcome == "fired"));
    for (own, other) in [(&a, "b-job"), (&b, "a-job")] {
        let objects: BTreeSet<String> = own
            .iter()
            .map(|e| description(e)["object_id"].as_str().unwrap().to_owned())
            .collect();
        assert!(objects.contains(&by_hand), "{objects:?}");
        let rows = query(
            &server.database_url,
            &format!(
                "SELECT w.id::text FROM work_requests w JOIN templates t ON t.id = w.template_id \
                 WHERE t.name = '{other}'"
            ),
        )
        .await;
        let other_runs: BTreeSet<String> = rows.into_iter().map(|r| r.get(0)).collect();
        assert_eq!(
            objects.difference(&other_runs).collect::<Vec<_>>(),
            vec![&by_hand],
            "besides the request by hand, each fired on one run of the other rule"
        );
        // What a firing records as its chain of causes.
        let chained = own
            .iter()
            .find(|e| description(e)["object_id"] != by_hand.as_str())
            .unwrap();
        assert_eq!(
            description(chained)["cause_rules"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
    assert_eq!(runs_of(&server, "a-job").await, 2);
    assert_eq!(runs_of(&server, "b-job").await, 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_rule_keeps_its_messages_as_paused_events_and_makes_no_work() {
    let server = TestServer::start_with(fast).await;
    let _sim = server
        .sim_worker(SimOptions::default().concurrency(4))
        .await;
    create_template(&server, "job", spec(&["true"])).await;
    create_rule(
        &server,
        &server.admin_token,
        "quiet",
        on_topic("berth.work-requests", &["work_request.created"]),
        "job",
        true,
    )
    .await
    .unwrap();
    for _ in 0..3 {
        submit(&server, spec(&["true"])).await;
    }
    wait_quiet(&server).await;
    let events = events(&server, "quiet").await;
    assert_eq!(events.len(), 3, "{events:?}");
    for event in &events {
        assert_eq!(event.outcome, "paused");
        assert!(event.reason.contains("paused"), "{}", event.reason);
        assert!(event.work_request_id.is_empty());
    }
    assert_eq!(runs_of(&server, "job").await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_on_a_user_topic_reaches_the_run_with_its_content_and_properties() {
    let server = TestServer::start_with(fast).await;
    let _sim = server.sim_worker(SimOptions::default()).await;
    create_template(&server, "deploy", spec(&["true"])).await;
    make_topic(&server, "releases", true, "store").await;
    create_rule(
        &server,
        &server.admin_token,
        "on-release",
        on_topic("releases", &[]),
        "deploy",
        false,
    )
    .await
    .unwrap();
    publish(
        &server,
        "releases",
        r#"{"version": "1.2.3", "channel": "stable"}"#,
        &[("origin", "ci")],
    )
    .await;
    let event = eventually("the message to fire", WAIT, || async {
        events(&server, "on-release")
            .await
            .into_iter()
            .find(|e| e.outcome == "fired")
    })
    .await;
    let described = description(&event);
    assert_eq!(described["topic"], "releases");
    assert_eq!(described["producer"], "admin");
    let run = get(&server, &event.work_request_id).await;
    let env = &run.spec.as_ref().unwrap().env;
    let content: serde_json::Value = serde_json::from_str(&env["BERTH_TRIGGER_MESSAGE"]).unwrap();
    assert_eq!(
        content,
        serde_json::json!({"version": "1.2.3", "channel": "stable"})
    );
    let properties: HashMap<String, String> =
        serde_json::from_str(&env["BERTH_TRIGGER_MESSAGE_PROPERTIES"]).unwrap();
    assert_eq!(properties["origin"], "ci");
    assert_eq!(env["BERTH_TRIGGER_TOPIC"], "releases");
    assert_eq!(
        env["BERTH_TRIGGER_MESSAGE_ID"],
        described["message_id"].as_str().unwrap()
    );
    wait_quiet(&server).await;
    assert_eq!(events(&server, "on-release").await.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn moving_a_rule_to_another_topic_or_archiving_it_drops_its_subscription() {
    let server = TestServer::start_with(fast).await;
    create_template(&server, "job", spec(&["true"])).await;
    let rule = create_rule(
        &server,
        &server.admin_token,
        "mover",
        on_topic("berth.work-requests", &[]),
        "job",
        false,
    )
    .await
    .unwrap();
    let (first, exists) = subscription_of(&server, &rule.id).await;
    assert!(exists);
    let updated = triggers(&server, &server.admin_token)
        .await
        .update_trigger_rule(UpdateTriggerRuleRequest {
            name: "mover".into(),
            config: Some(proto::update_trigger_rule_request::Config::Topic(
                TopicConfig {
                    topic: "berth.workers".into(),
                    types: vec!["worker.*".into()],
                },
            )),
            ..UpdateTriggerRuleRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let Some(proto::trigger_rule::Config::Topic(config)) = updated.config else {
        panic!("not a topic rule: {updated:?}");
    };
    assert_eq!(config.topic, "berth.workers");
    assert_eq!(config.types, ["worker.*"]);
    let (second, exists) = subscription_of(&server, &rule.id).await;
    assert!(exists);
    assert_ne!(first, second);
    let gone = query(
        &server.database_url,
        &format!("SELECT count(*) FROM subscriptions WHERE id::text = '{first}'"),
    )
    .await;
    assert_eq!(
        gone[0].get::<_, i64>(0),
        0,
        "the old subscription is dropped"
    );

    triggers(&server, &server.admin_token)
        .await
        .archive_trigger_rule(ArchiveTriggerRuleRequest {
            name: "mover".into(),
            ..ArchiveTriggerRuleRequest::default()
        })
        .await
        .unwrap();
    let (_, exists) = subscription_of(&server, &rule.id).await;
    assert!(!exists, "archiving drops the subscription");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_rules_that_could_never_fire_or_may_not_read_are_refused() {
    let server = TestServer::start().await;
    create_template(&server, "job", spec(&["true"])).await;
    make_topic(&server, "live-only", true, "disabled").await;
    make_topic(&server, "private", false, "store").await;
    let (_, contributor) = server.create_token(Role::User, "carol").await;
    server.set_role("default", "carol", "contributor").await;

    for (name, token, config, code, words) in [
        (
            "no-such",
            &server.admin_token,
            on_topic("no-such-topic", &[]),
            Code::NotFound,
            "topic.topic",
        ),
        (
            "live-only",
            &server.admin_token,
            on_topic("live-only", &[]),
            Code::FailedPrecondition,
            "topic.topic",
        ),
        (
            "private",
            &contributor,
            on_topic("private", &[]),
            Code::PermissionDenied,
            "topic.topic",
        ),
        (
            "bad-type",
            &server.admin_token,
            on_topic("berth.work-requests", &["Work_Request.*"]),
            Code::InvalidArgument,
            "topic.types[0]",
        ),
        (
            "no-topic",
            &server.admin_token,
            on_topic("", &[]),
            Code::InvalidArgument,
            "topic.topic",
        ),
    ] {
        let refused = create_rule(&server, token, name, config, "job", false)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), code, "{name}: {refused:?}");
        assert!(
            refused.message().contains(words),
            "{name}: {}",
            refused.message()
        );
    }
    let left = query(
        &server.database_url,
        "SELECT (SELECT count(*) FROM trigger_rules), (SELECT count(*) FROM subscriptions)",
    )
    .await;
    assert_eq!(
        (left[0].get::<_, i64>(0), left[0].get::<_, i64>(1)),
        (0, 0),
        "a refused rule leaves no rule and no subscription behind"
    );

    // The owner of the workspace may read the private topic, and so may a contributor
    // once granted.
    query(
        &server.database_url,
        "INSERT INTO topic_grants (topic_id, principal, can_consume) \
         SELECT id, 'role:contributor', true FROM topics WHERE slug = 'private'",
    )
    .await;
    create_rule(
        &server,
        &contributor,
        "private",
        on_topic("private", &[]),
        "job",
        false,
    )
    .await
    .unwrap();
    server.stop().await;
}
