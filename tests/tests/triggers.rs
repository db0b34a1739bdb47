//! Trigger rules over real gRPC on a real database: creating, reading, listing and
//! changing rules; configurations refused with the field named; archiving one way;
//! pausing and resuming; firing by hand (the event says who, the request names the
//! event); previews across DST changes; and the events list, paged newest first.
//!
//! No worker runs here: the templates require a label no worker has, so the requests a
//! firing makes stay pending, and what is looked at is what the API answers.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::BTreeSet;

use berth_common::client::BearerAuth;
use berth_common::proto::template_service_client::TemplateServiceClient;
use berth_common::proto::trigger_service_client::TriggerServiceClient;
use berth_common::proto::{
    ArchiveTriggerRuleRequest, ArtifactConfig, CompletionConfig, CreateTemplateRequest,
    CreateTriggerRuleRequest, DataCondition, FireTriggerRuleRequest, GetTriggerRuleRequest,
    GetWorkRequestRequest, JobTemplateSpec, ListTriggerEventsRequest, ListTriggerRulesRequest,
    OverlapPolicy, PauseTriggerRuleRequest, PreviewTriggerScheduleRequest,
    ResumeTriggerRuleRequest, Role, ScheduleConfig, TemplateOverrides, TopicConfig, TriggerAction,
    TriggerRule, UpdateTriggerRuleRequest, create_template_request, create_trigger_rule_request,
    trigger_rule, update_trigger_rule_request,
};
use berth_tests::{Authed, TestServer, assert_code, query, spec};
use tonic::Code;

const SECRET: &str = "hunter2-trigger-secret-value";

async fn triggers(server: &TestServer, token: &str) -> TriggerServiceClient<Authed> {
    TriggerServiceClient::with_interceptor(server.channel().await, BearerAuth::new(token))
}

/// A job template `name` in `default` whose runs no worker takes.
async fn parked_template(server: &TestServer, name: &str) {
    TemplateServiceClient::with_interceptor(
        server.channel().await,
        BearerAuth::new(&server.admin_token),
    )
    .create_template(CreateTemplateRequest {
        name: name.to_owned(),
        spec: Some(create_template_request::Spec::Job(JobTemplateSpec {
            spec: Some(spec(&["true"])),
            requirements: [("parked".to_owned(), "yes".to_owned())].into(),
            ..Default::default()
        })),
        ..Default::default()
    })
    .await
    .unwrap();
}

fn cron(expression: &str, zone: &str) -> create_trigger_rule_request::Config {
    create_trigger_rule_request::Config::Schedule(ScheduleConfig {
        cron: expression.to_owned(),
        time_zone: zone.to_owned(),
        ..Default::default()
    })
}

fn runs(template: &str) -> TriggerAction {
    TriggerAction {
        template: template.to_owned(),
        ..Default::default()
    }
}

fn rule(
    name: &str,
    config: create_trigger_rule_request::Config,
    action: TriggerAction,
) -> CreateTriggerRuleRequest {
    CreateTriggerRuleRequest {
        workspace: String::new(),
        name: name.to_owned(),
        config: Some(config),
        action: Some(action),
        paused: false,
    }
}

fn named(name: &str) -> (String, String) {
    (String::new(), name.to_owned())
}

async fn get(client: &mut TriggerServiceClient<Authed>, name: &str) -> TriggerRule {
    let (workspace, name) = named(name);
    client
        .get_trigger_rule(GetTriggerRuleRequest { workspace, name })
        .await
        .unwrap()
        .into_inner()
}

/// The database's clock, as seconds since the epoch.
async fn db_now(server: &TestServer) -> i64 {
    query(
        &server.database_url,
        "SELECT extract(epoch FROM now())::bigint",
    )
    .await[0]
        .get(0)
}

async fn count(server: &TestServer, sql: &str) -> i64 {
    query(&server.database_url, sql).await[0].get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_are_created_read_listed_and_changed() {
    let server = TestServer::start().await;
    parked_template(&server, "backup").await;
    let mut client = triggers(&server, &server.admin_token).await;
    let made = client
        .create_trigger_rule(rule(
            "nightly",
            cron("0 3 * * *", "Europe/Berlin"),
            TriggerAction {
                template: "backup".into(),
                version: 1,
                overrides: Some(TemplateOverrides {
                    env: [("MODE".to_owned(), "full".to_owned())].into(),
                    secret_env: [("TOKEN".to_owned(), SECRET.to_owned())].into(),
                    ..Default::default()
                }),
                params: Default::default(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            made.name.as_str(),
            made.r#type.as_str(),
            made.workspace.as_str()
        ),
        ("nightly", "schedule", "default")
    );
    assert!(made.active);
    assert!(made.archived_at.is_none());
    let Some(trigger_rule::Config::Schedule(schedule)) = &made.config else {
        panic!("a schedule rule comes back with its schedule: {made:?}");
    };
    assert_eq!(schedule.cron, "0 3 * * *");
    assert_eq!(schedule.time_zone, "Europe/Berlin");
    assert_eq!(schedule.overlap, OverlapPolicy::Skip as i32, "the default");
    assert_eq!(schedule.catchup_window.unwrap().seconds, 60, "the default");
    let next = made.next_fire_at.unwrap().seconds;
    let now = db_now(&server).await;
    assert!(
        next > now && next <= now + 25 * 3600,
        "03:00 in Berlin comes within a day"
    );
    // Secret values are write-only: their names come back, never their values.
    let action = made.action.clone().unwrap();
    assert_eq!((action.template.as_str(), action.version), ("backup", 1));
    let overrides = action.overrides.unwrap();
    assert_eq!(overrides.env["MODE"], "full");
    assert!(overrides.secret_env.is_empty());
    assert_eq!(made.secret_env_keys, ["TOKEN"]);
    assert!(!format!("{made:?}").contains(SECRET));
    let plain = count(
        &server,
        &format!(
            "SELECT count(*) FROM trigger_rules WHERE action::text LIKE '%{SECRET}%' \
             OR position('{SECRET}'::bytea in coalesce(action_secrets, ''::bytea)) > 0"
        ),
    )
    .await;
    assert_eq!(plain, 0, "the secret is stored sealed");

    assert_eq!(get(&mut client, "nightly").await, made);
    let listed = client
        .list_trigger_rules(ListTriggerRulesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.rules, std::slice::from_ref(&made));

    // A name in use is refused, and nothing else is stored.
    assert_code(
        client
            .create_trigger_rule(rule("nightly", cron("0 4 * * *", ""), runs("backup")))
            .await,
        Code::AlreadyExists,
        "nightly",
    );

    // A change replaces the configuration and moves the next time on from now.
    let changed = client
        .update_trigger_rule(UpdateTriggerRuleRequest {
            workspace: String::new(),
            name: "nightly".into(),
            config: Some(update_trigger_rule_request::Config::Schedule(
                ScheduleConfig {
                    interval: "PT15M".into(),
                    overlap: OverlapPolicy::BufferOne as i32,
                    ..Default::default()
                },
            )),
            action: Some(runs("backup")),
        })
        .await
        .unwrap()
        .into_inner();
    let Some(trigger_rule::Config::Schedule(s)) = &changed.config else {
        panic!("{changed:?}");
    };
    assert_eq!((s.cron.as_str(), s.interval.as_str()), ("", "PT15M"));
    assert_eq!(s.overlap, OverlapPolicy::BufferOne as i32);
    let next = changed.next_fire_at.unwrap().seconds;
    assert!(
        next <= db_now(&server).await + 15 * 60,
        "within 15 minutes of now"
    );
    assert!(changed.modified_at.unwrap().seconds >= made.modified_at.unwrap().seconds);
    assert!(
        changed.secret_env_keys.is_empty(),
        "the action was replaced whole"
    );
    assert_eq!(changed.id, made.id);
    assert_code(
        client
            .update_trigger_rule(UpdateTriggerRuleRequest {
                name: "nightly".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "change:",
    );
    assert_code(
        client
            .update_trigger_rule(UpdateTriggerRuleRequest {
                name: "nightly".into(),
                config: Some(update_trigger_rule_request::Config::Artifact(
                    ArtifactConfig {
                        category: "build".into(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "schedule rule",
    );
    assert_code(
        client
            .get_trigger_rule(GetTriggerRuleRequest {
                workspace: String::new(),
                name: "nope".into(),
            })
            .await,
        Code::NotFound,
        "nope",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_configurations_are_refused_naming_the_field() {
    use create_trigger_rule_request::Config;
    let server = TestServer::start().await;
    parked_template(&server, "job").await;
    let mut client = triggers(&server, &server.admin_token).await;
    let schedule = |s: ScheduleConfig| Some(Config::Schedule(s));
    let cases: Vec<(&str, Option<Config>, TriggerAction, Code, &str)> = vec![
        (
            "cron of four fields",
            Some(cron("0 3 * *", "")),
            runs("job"),
            Code::InvalidArgument,
            "schedule.cron",
        ),
        (
            "an unknown zone",
            Some(cron("0 3 * * *", "Mars/Olympus")),
            runs("job"),
            Code::InvalidArgument,
            "schedule.time_zone",
        ),
        (
            "an interval of months",
            schedule(ScheduleConfig {
                interval: "P1M".into(),
                ..Default::default()
            }),
            runs("job"),
            Code::InvalidArgument,
            "schedule.interval",
        ),
        (
            "cron and interval",
            schedule(ScheduleConfig {
                cron: "0 3 * * *".into(),
                interval: "PT1H".into(),
                ..Default::default()
            }),
            runs("job"),
            Code::InvalidArgument,
            "schedule: give either cron or interval, not both",
        ),
        (
            "neither cron nor interval",
            schedule(ScheduleConfig::default()),
            runs("job"),
            Code::InvalidArgument,
            "schedule: give either",
        ),
        (
            "an unknown overlap policy",
            schedule(ScheduleConfig {
                cron: "0 3 * * *".into(),
                overlap: 99,
                ..Default::default()
            }),
            runs("job"),
            Code::InvalidArgument,
            "schedule.overlap",
        ),
        (
            "no configuration",
            None,
            runs("job"),
            Code::InvalidArgument,
            "config:",
        ),
        (
            "an artifact path with an empty key",
            Some(Config::Artifact(ArtifactConfig {
                category: "build".into(),
                all_of: vec![DataCondition {
                    path: "build..arch".into(),
                    equals: Some("amd64".into()),
                }],
                any_of: Vec::new(),
            })),
            runs("job"),
            Code::InvalidArgument,
            "artifact.all_of[0].path",
        ),
        (
            "a completion result that is none",
            Some(Config::Completion(CompletionConfig {
                template: "job".into(),
                labels: Default::default(),
                results: vec!["exploded".into()],
            })),
            runs("job"),
            Code::InvalidArgument,
            "completion.results[0]",
        ),
        (
            "a topic that does not exist",
            Some(Config::Topic(TopicConfig {
                topic: "no-such-topic".into(),
                types: Vec::new(),
            })),
            runs("job"),
            Code::NotFound,
            "topic.topic",
        ),
        (
            "a bad type pattern",
            Some(Config::Topic(TopicConfig {
                topic: "berth.work-requests".into(),
                types: vec!["Work.*".into()],
            })),
            runs("job"),
            Code::InvalidArgument,
            "topic.types[0]",
        ),
        (
            "an unknown template",
            Some(cron("0 3 * * *", "")),
            runs("nosuch"),
            Code::InvalidArgument,
            "action.template",
        ),
        (
            "no template",
            Some(cron("0 3 * * *", "")),
            runs(""),
            Code::InvalidArgument,
            "action.template",
        ),
        (
            "parameters for a job template",
            Some(cron("0 3 * * *", "")),
            TriggerAction {
                template: "job".into(),
                params: [("size".to_owned(), "3".to_owned())].into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "action.params",
        ),
        (
            "a release that does not exist",
            Some(cron("0 3 * * *", "")),
            TriggerAction {
                template: "job".into(),
                version: 9,
                ..Default::default()
            },
            Code::InvalidArgument,
            "action.version",
        ),
    ];
    let mut wrong = Vec::new();
    for (i, (case, config, action, code, field)) in cases.into_iter().enumerate() {
        let answer = client
            .create_trigger_rule(CreateTriggerRuleRequest {
                workspace: String::new(),
                name: format!("bad-{i}"),
                config,
                action: Some(action),
                paused: false,
            })
            .await;
        match answer {
            Err(status) if status.code() == code && status.message().contains(field) => {}
            other => wrong.push(format!(
                "{case}: expected {code:?} naming {field:?}, got {other:?}"
            )),
        }
    }
    assert_code(
        client
            .create_trigger_rule(rule("Nightly", cron("0 3 * * *", ""), runs("job")))
            .await,
        Code::InvalidArgument,
        "name:",
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        count(&server, "SELECT count(*) FROM trigger_rules").await,
        0,
        "a refused rule is not stored"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn archiving_is_one_way_and_frees_the_name() {
    let server = TestServer::start().await;
    parked_template(&server, "job").await;
    let mut client = triggers(&server, &server.admin_token).await;
    let first = client
        .create_trigger_rule(rule("hourly", cron("0 * * * *", ""), runs("job")))
        .await
        .unwrap()
        .into_inner();
    let (workspace, name) = named("hourly");
    let archived = client
        .archive_trigger_rule(ArchiveTriggerRuleRequest {
            workspace: workspace.clone(),
            name: name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(archived.id, first.id);
    assert!(archived.archived_at.is_some());
    assert!(!archived.active);
    assert!(archived.next_fire_at.is_none(), "it never fires again");
    // Archiving again returns it as it is.
    let again = client
        .archive_trigger_rule(ArchiveTriggerRuleRequest {
            workspace: workspace.clone(),
            name: name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, archived);

    assert_code(
        client
            .resume_trigger_rule(ResumeTriggerRuleRequest {
                workspace: workspace.clone(),
                name: name.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "archiving is one way",
    );
    assert_code(
        client
            .update_trigger_rule(UpdateTriggerRuleRequest {
                workspace: workspace.clone(),
                name: name.clone(),
                action: Some(runs("job")),
                config: None,
            })
            .await,
        Code::FailedPrecondition,
        "archived",
    );
    assert_code(
        client
            .fire_trigger_rule(FireTriggerRuleRequest {
                workspace: workspace.clone(),
                name: name.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "archived",
    );
    assert_code(
        client
            .pause_trigger_rule(PauseTriggerRuleRequest {
                workspace: workspace.clone(),
                name: name.clone(),
                note: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        "archived",
    );
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM trigger_events WHERE kind = 'manual'"
        )
        .await,
        0,
        "a refused firing stores no event"
    );

    // The name is free; the new rule is the one the name means now.
    let second = client
        .create_trigger_rule(rule("hourly", cron("30 * * * *", ""), runs("job")))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(second.id, first.id);
    assert!(second.active);
    assert_eq!(get(&mut client, "hourly").await.id, second.id);
    let live: Vec<String> = client
        .list_trigger_rules(ListTriggerRulesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .rules
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(live, std::slice::from_ref(&second.id));
    let all: BTreeSet<String> = client
        .list_trigger_rules(ListTriggerRulesRequest {
            workspace: String::new(),
            include_archived: true,
        })
        .await
        .unwrap()
        .into_inner()
        .rules
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(all, BTreeSet::from([first.id, second.id]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_rule_resumes_from_the_next_time_after_now() {
    let server = TestServer::start().await;
    parked_template(&server, "job").await;
    let mut client = triggers(&server, &server.admin_token).await;
    client
        .create_trigger_rule(CreateTriggerRuleRequest {
            paused: true,
            ..rule("minutely", cron("* * * * *", ""), runs("job"))
        })
        .await
        .unwrap();
    assert!(!get(&mut client, "minutely").await.active, "created paused");
    let paused = client
        .pause_trigger_rule(PauseTriggerRuleRequest {
            workspace: String::new(),
            name: "minutely".into(),
            note: "maintenance window".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!paused.active);
    let note: String = query(
        &server.database_url,
        "SELECT pause_note FROM trigger_rules WHERE name = 'minutely'",
    )
    .await[0]
        .get(0);
    assert_eq!(note, "maintenance window");
    // Times pass while it is paused (as if the server had been paused for an hour), and
    // one is held back for a run that is gone.
    query(
        &server.database_url,
        "UPDATE trigger_rules SET next_fire_at = now() - interval '1 hour', \
         buffered_at = now() - interval '2 hours' WHERE name = 'minutely'",
    )
    .await;
    let resumed = client
        .resume_trigger_rule(ResumeTriggerRuleRequest {
            workspace: String::new(),
            name: "minutely".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resumed.active);
    let next = resumed.next_fire_at.unwrap().seconds;
    let now = db_now(&server).await;
    assert!(
        next >= now && next <= now + 61,
        "the next minute after now, not the hour that passed: {next} vs now {now}"
    );
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM trigger_rules WHERE buffered_at IS NOT NULL OR pause_note <> ''"
        )
        .await,
        0
    );
    // Resuming an active rule changes nothing.
    let again = client
        .resume_trigger_rule(ResumeTriggerRuleRequest {
            workspace: String::new(),
            name: "minutely".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.modified_at, resumed.modified_at);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fire_now_makes_an_event_that_says_who_and_a_request_that_names_it() {
    let server = TestServer::start().await;
    parked_template(&server, "job").await;
    let (_, token) = server.create_token(Role::User, "carol").await;
    let mut admin = triggers(&server, &server.admin_token).await;
    admin
        .create_trigger_rule(CreateTriggerRuleRequest {
            // A paused rule fires by hand too.
            paused: true,
            ..rule("yearly", cron("0 0 1 1 *", ""), runs("job"))
        })
        .await
        .unwrap();
    let mut carol = triggers(&server, &token).await;
    let event = carol
        .fire_trigger_rule(FireTriggerRuleRequest {
            workspace: String::new(),
            name: "yearly".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(event.r#type, "manual");
    assert_eq!(event.rule, "yearly");
    assert_eq!(event.outcome, "fired", "{event:?}");
    let description: serde_json::Value = serde_json::from_str(&event.description).unwrap();
    assert_eq!(description["by"], "carol");
    assert!(!event.work_request_id.is_empty());

    let request = server
        .work_requests(&token)
        .await
        .get_work_request(GetWorkRequestRequest {
            id: event.work_request_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(request.trigger_rule, "yearly");
    assert_eq!(request.trigger_event_id, event.id);
    assert_eq!(
        request.created_by, "carol",
        "made on behalf of who fired it"
    );

    let listed = carol
        .list_trigger_events(ListTriggerEventsRequest {
            rule: "yearly".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.events, std::slice::from_ref(&event));
    // Firing twice makes two events and two requests: each firing by hand is its own.
    let second = carol
        .fire_trigger_rule(FireTriggerRuleRequest {
            workspace: String::new(),
            name: "yearly".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(second.work_request_id, event.work_request_id);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn previews_show_dst_changes_in_the_rules_zone() {
    let server = TestServer::start().await;
    parked_template(&server, "job").await;
    let mut client = triggers(&server, &server.admin_token).await;
    // 02:30 on March's Sundays in Berlin: the last of them has no 02:30.
    client
        .create_trigger_rule(rule(
            "spring",
            cron("30 2 * 3 0", "Europe/Berlin"),
            runs("job"),
        ))
        .await
        .unwrap();
    let preview = client
        .preview_trigger_schedule(PreviewTriggerScheduleRequest {
            workspace: String::new(),
            name: "spring".into(),
            schedule: None,
            count: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.time_zone, "Europe/Berlin");
    assert_eq!(preview.times.len(), 10);
    let moved: Vec<_> = preview
        .times
        .iter()
        .filter(|t| t.note.contains("spring forward"))
        .collect();
    assert!(!moved.is_empty(), "{preview:?}");
    for t in &moved {
        assert!(t.local.ends_with("T03:00:00+02:00"), "{t:?}");
    }
    for t in preview.times.iter().filter(|t| t.note.is_empty()) {
        assert!(t.local.contains("T02:30:00+01:00"), "{t:?}");
    }
    let at: Vec<i64> = preview
        .times
        .iter()
        .map(|t| t.at.unwrap().seconds)
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "in order: {at:?}");

    // An unstored schedule: 02:30 on October's Sundays comes twice on the last one, and
    // runs once.
    let preview = client
        .preview_trigger_schedule(PreviewTriggerScheduleRequest {
            workspace: String::new(),
            name: String::new(),
            schedule: Some(ScheduleConfig {
                cron: "30 2 * 10 0".into(),
                time_zone: "Europe/Berlin".into(),
                ..Default::default()
            }),
            count: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.times.len(), 5, "the default count");
    let ats: BTreeSet<i64> = preview
        .times
        .iter()
        .map(|t| t.at.unwrap().seconds)
        .collect();
    assert_eq!(ats.len(), 5, "no time twice");
    let merged: Vec<_> = preview
        .times
        .iter()
        .filter(|t| t.note.contains("fall back"))
        .collect();
    assert!(!merged.is_empty(), "{preview:?}");
    for t in merged {
        assert!(
            t.local.ends_with("T02:30:00+02:00"),
            "the first 02:30: {t:?}"
        );
    }

    assert_code(
        client
            .preview_trigger_schedule(PreviewTriggerScheduleRequest {
                workspace: String::new(),
                name: "spring".into(),
                schedule: None,
                count: 101,
            })
            .await,
        Code::InvalidArgument,
        "count:",
    );
    assert_code(
        client
            .preview_trigger_schedule(PreviewTriggerScheduleRequest::default())
            .await,
        Code::InvalidArgument,
        "schedule:",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_page_newest_first_and_filter_by_rule_time_and_outcome() {
    let server = TestServer::start().await;
    parked_template(&server, "job").await;
    let mut client = triggers(&server, &server.admin_token).await;
    for name in ["a", "b"] {
        client
            .create_trigger_rule(rule(name, cron("0 0 1 1 *", ""), runs("job")))
            .await
            .unwrap();
    }
    // Seven events of `a` an hour apart (the newest now), with two outcomes, and one of
    // `b`; straight into the table, as the passes would store them.
    query(
        &server.database_url,
        "INSERT INTO trigger_events (id, workspace_id, rule_id, kind, outcome, reason, dedupe, occurred_at) \
         SELECT gen_random_uuid(), r.workspace_id, r.id, 'schedule', \
                CASE WHEN k % 2 = 0 THEN 'fired' ELSE 'missed' END, 'event ' || k, 'at:' || k, \
                now() - make_interval(hours => k) \
         FROM trigger_rules r, generate_series(0, 6) k WHERE r.name = 'a'",
    )
    .await;
    query(
        &server.database_url,
        "INSERT INTO trigger_events (id, workspace_id, rule_id, kind, outcome, dedupe, occurred_at) \
         SELECT gen_random_uuid(), workspace_id, id, 'schedule', 'skipped', 'at:b', now() - interval '30 minutes' \
         FROM trigger_rules WHERE name = 'b'",
    )
    .await;
    let mut reasons = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_trigger_events(ListTriggerEventsRequest {
                rule: "a".into(),
                limit: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.events.len() <= 3);
        assert!(page.events.iter().all(|e| e.rule == "a"));
        reasons.extend(page.events.into_iter().map(|e| e.reason));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..7).map(|k| format!("event {k}")).collect();
    assert_eq!(reasons, expected, "newest first, each once");

    let workspace = client
        .list_trigger_events(ListTriggerEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(workspace.events.len(), 8);
    assert_eq!(workspace.events[1].rule, "b", "30 minutes ago comes second");

    let missed = client
        .list_trigger_events(ListTriggerEventsRequest {
            outcomes: vec!["missed".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(missed.events.len(), 3);
    assert!(missed.events.iter().all(|e| e.outcome == "missed"));

    let since = db_now(&server).await - 2 * 3600 - 60;
    let recent = client
        .list_trigger_events(ListTriggerEventsRequest {
            rule: "a".into(),
            since: Some(prost_types::Timestamp {
                seconds: since,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recent.events.len(), 3, "now, an hour and two hours ago");

    // An archived rule's events stay readable by its name.
    client
        .archive_trigger_rule(ArchiveTriggerRuleRequest {
            workspace: String::new(),
            name: "b".into(),
        })
        .await
        .unwrap();
    let archived = client
        .list_trigger_events(ListTriggerEventsRequest {
            rule: "b".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(archived.events.len(), 1);

    for (request, field) in [
        (
            ListTriggerEventsRequest {
                limit: 1001,
                ..Default::default()
            },
            "limit:",
        ),
        (
            ListTriggerEventsRequest {
                page_token: "garbage!".into(),
                ..Default::default()
            },
            "page_token:",
        ),
        (
            ListTriggerEventsRequest {
                outcomes: vec!["exploded".into()],
                ..Default::default()
            },
            "outcomes[0]:",
        ),
    ] {
        assert_code(
            client.list_trigger_events(request).await,
            Code::InvalidArgument,
            field,
        );
    }
    assert_code(
        client
            .list_trigger_events(ListTriggerEventsRequest {
                rule: "nosuch".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "nosuch",
    );
    server.stop().await;
}
