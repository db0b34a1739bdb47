//! Schedule rules end to end: real servers on one database, their firing passes, and
//! what they leave in the database — one event per rule and nominal time, one work
//! request per firing, catch-up after an outage, and the overlap policies against runs
//! of a simulated worker.
//!
//! The database is what these tests read (`trigger_events`, `work_requests`), because
//! "exactly once" is a claim about rows: an event's unique (rule, dedupe) key and the
//! request id reserved on it.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::time::Duration;

use berth_common::client::BearerAuth;
use berth_common::proto::template_service_client::TemplateServiceClient;
use berth_common::proto::trigger_service_client::TriggerServiceClient;
use berth_common::proto::{
    ArchiveTriggerRuleRequest, CreateTemplateRequest, CreateTriggerRuleRequest, JobTemplateSpec,
    OverlapPolicy, ScheduleConfig, TriggerAction, create_template_request,
    create_trigger_rule_request,
};
use berth_tests::{
    Authed, SimOptions, TestServer, cancel, eventually, query, spec, wait_started, wait_terminal,
};

// ----- helpers -----

fn triggers(
    server: &TestServer,
    channel: tonic::transport::Channel,
) -> TriggerServiceClient<Authed> {
    TriggerServiceClient::with_interceptor(channel, BearerAuth::new(&server.admin_token))
}

/// Creates job template `name` in `default` running `command`. `parked`: its runs carry
/// a requirement no worker has, so they stay queued (not ended) and no worker is needed.
async fn template(server: &TestServer, name: &str, command: &[&str], parked: bool) {
    let requirements = if parked {
        [("parked".to_owned(), "yes".to_owned())].into()
    } else {
        Default::default()
    };
    TemplateServiceClient::with_interceptor(
        server.channel().await,
        BearerAuth::new(&server.admin_token),
    )
    .create_template(CreateTemplateRequest {
        name: name.to_owned(),
        spec: Some(create_template_request::Spec::Job(JobTemplateSpec {
            spec: Some(spec(command)),
            requirements,
            ..JobTemplateSpec::default()
        })),
        ..CreateTemplateRequest::default()
    })
    .await
    .unwrap();
}

/// Creates rule `name` in `default` running `template` on `schedule`.
async fn rule(server: &TestServer, name: &str, template: &str, schedule: ScheduleConfig) {
    triggers(server, server.channel().await)
        .create_trigger_rule(CreateTriggerRuleRequest {
            name: name.to_owned(),
            config: Some(create_trigger_rule_request::Config::Schedule(schedule)),
            action: Some(TriggerAction {
                template: template.to_owned(),
                ..TriggerAction::default()
            }),
            ..CreateTriggerRuleRequest::default()
        })
        .await
        .unwrap();
}

fn every(interval: &str, overlap: OverlapPolicy) -> ScheduleConfig {
    ScheduleConfig {
        interval: interval.to_owned(),
        overlap: overlap.into(),
        ..ScheduleConfig::default()
    }
}

async fn archive(server: &TestServer, name: &str) {
    triggers(server, server.channel().await)
        .archive_trigger_rule(ArchiveTriggerRuleRequest {
            name: name.to_owned(),
            ..ArchiveTriggerRuleRequest::default()
        })
        .await
        .unwrap();
}

/// An event of a rule, as stored.
#[derive(Clone, Debug)]
struct Event {
    /// Milliseconds since the epoch.
    nominal_ms: i64,
    outcome: String,
    reason: String,
    request: Option<String>,
    catch_up: bool,
}

/// The events of rule `name` (not archived or archived), oldest nominal time first.
async fn events(server: &TestServer, name: &str) -> Vec<Event> {
    query(
        &server.database_url,
        &format!(
            "SELECT (extract(epoch FROM e.nominal_at) * 1000)::int8, e.outcome, e.reason, \
                    e.work_request_id::text, coalesce(e.description->>'catch_up', '') = 'true' \
             FROM trigger_events e JOIN trigger_rules r ON r.id = e.rule_id \
             WHERE r.name = '{name}' AND e.nominal_at IS NOT NULL \
             ORDER BY e.nominal_at, e.id"
        ),
    )
    .await
    .iter()
    .map(|row| Event {
        nominal_ms: row.get(0),
        outcome: row.get(1),
        reason: row.get(2),
        request: row.get(3),
        catch_up: row.get(4),
    })
    .collect()
}

/// Waits until rule `name` has no `pending` event (everything fired was settled).
async fn settled(server: &TestServer, name: &str) -> Vec<Event> {
    eventually(
        &format!("the events of {name} to be settled"),
        Duration::from_secs(30),
        || async {
            let all = events(server, name).await;
            (!all.iter().any(|e| e.outcome == "pending")).then_some(all)
        },
    )
    .await
}

/// Asserts one event per nominal time, `step_ms` apart, with no time left out.
fn one_per_time(events: &[Event], step_ms: i64) {
    for pair in events.windows(2) {
        assert_eq!(
            pair[1].nominal_ms - pair[0].nominal_ms,
            step_ms,
            "times neither once nor in step: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
}

// ----- tests -----

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_make_one_event_and_one_request_per_second() {
    let a = TestServer::start().await;
    let b = a.replica().await;
    template(&a, "tick", &["true"], true).await;
    // `allow`, so every time makes a request although none of them ever runs.
    rule(
        &a,
        "every-second",
        "tick",
        every("PT1S", OverlapPolicy::Allow),
    )
    .await;
    // Both replicas pass over the rule every second for half a minute.
    tokio::time::sleep(Duration::from_secs(30)).await;
    archive(&b, "every-second").await;
    let all = settled(&a, "every-second").await;

    assert!(all.len() >= 25, "only {} times in 30 s: {all:?}", all.len());
    one_per_time(&all, 1000);
    assert!(
        all.iter().all(|e| e.outcome == "fired"),
        "not all fired: {:?}",
        all.iter()
            .filter(|e| e.outcome != "fired")
            .collect::<Vec<_>>()
    );
    // One request per event, and no request of the template made any other way.
    let requests = query(
        &a.database_url,
        "SELECT count(*), count(DISTINCT e.id) FROM work_requests w \
         JOIN templates t ON t.id = w.template_id \
         LEFT JOIN trigger_events e ON e.work_request_id = w.id \
         WHERE t.name = 'tick'",
    )
    .await;
    let (made, with_event): (i64, i64) = (requests[0].get(0), requests[0].get(1));
    assert_eq!(made, all.len() as i64);
    assert_eq!(with_event, made);
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn times_missed_while_down_catch_up_once_or_are_recorded_missed() {
    let mut server = TestServer::start().await;
    template(&server, "tock", &["true"], true).await;
    rule(
        &server,
        "caught",
        "tock",
        every("PT2S", OverlapPolicy::Allow),
    )
    .await;
    rule(
        &server,
        "not-caught",
        "tock",
        ScheduleConfig {
            catchup_window: Some(prost_types::Duration::default()),
            ..every("PT2S", OverlapPolicy::Allow)
        },
    )
    .await;
    for name in ["caught", "not-caught"] {
        eventually(
            &format!("{name} to fire"),
            Duration::from_secs(20),
            || async { (events(&server, name).await.len() >= 2).then_some(()) },
        )
        .await;
    }

    // Down for 12 s: past the outage threshold (5 s with one-second passes) by more
    // than three intervals of the rules.
    server.restart_after(Duration::from_secs(12)).await;
    for name in ["caught", "not-caught"] {
        eventually(
            &format!("{name} to fire after the outage"),
            Duration::from_secs(30),
            || async {
                let all = events(&server, name).await;
                let missed = all.iter().rposition(|e| e.outcome == "missed")?;
                // Two times after the last missed one, so the pass after the outage and
                // an ordinary one are both in.
                (all.len() >= missed + 3).then_some(())
            },
        )
        .await;
    }
    for name in ["caught", "not-caught"] {
        archive(&server, name).await;
    }

    let caught = settled(&server, "caught").await;
    one_per_time(&caught, 2000);
    let first_missed = caught.iter().position(|e| e.outcome == "missed").unwrap();
    let last_missed = caught.iter().rposition(|e| e.outcome == "missed").unwrap();
    // Every time the outage covered is missed except the latest, which catches up; the
    // times before and after it fired as usual.
    assert!(
        last_missed - first_missed + 1 >= 4,
        "too few missed times for 12 s down: {caught:?}"
    );
    assert!(
        caught[first_missed..=last_missed]
            .iter()
            .all(|e| e.outcome == "missed")
    );
    assert!(
        caught[first_missed].reason.contains("only the latest"),
        "{}",
        caught[first_missed].reason
    );
    let catch_up = &caught[last_missed + 1];
    assert!(
        catch_up.catch_up && catch_up.outcome == "fired",
        "{catch_up:?}"
    );
    assert_eq!(caught.iter().filter(|e| e.catch_up).count(), 1);
    assert!(
        caught[..first_missed]
            .iter()
            .all(|e| e.outcome == "fired" && !e.catch_up)
    );
    assert!(
        caught[last_missed + 2..]
            .iter()
            .all(|e| e.outcome == "fired" && !e.catch_up)
    );

    // With a zero window none of the missed times fires.
    let not_caught = settled(&server, "not-caught").await;
    one_per_time(&not_caught, 2000);
    let first = not_caught
        .iter()
        .position(|e| e.outcome == "missed")
        .unwrap();
    let last = not_caught
        .iter()
        .rposition(|e| e.outcome == "missed")
        .unwrap();
    assert!(
        last - first + 1 >= 5,
        "too few missed times: {not_caught:?}"
    );
    assert!(
        not_caught[first..=last]
            .iter()
            .all(|e| e.outcome == "missed")
    );
    assert!(
        not_caught[first]
            .reason
            .contains("outside the catch-up window of 0s"),
        "{}",
        not_caught[first].reason
    );
    assert!(not_caught.iter().all(|e| !e.catch_up));
    assert!(
        not_caught
            .iter()
            .enumerate()
            .all(|(i, e)| (first..=last).contains(&i) || e.outcome == "fired")
    );
    // Both rules (created the same minute, so in step) missed the same stretch of time.
    assert_eq!(
        not_caught[first].nominal_ms,
        caught[first_missed].nominal_ms
    );
    assert_eq!(
        not_caught[last].nominal_ms,
        caught[last_missed + 1].nominal_ms
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn overlap_skip_records_each_time_while_the_run_goes_on() {
    let server = TestServer::start().await;
    let _worker = server.sim_worker(SimOptions::default()).await;
    template(&server, "long", &["sleep", "600"], false).await;
    rule(
        &server,
        "skipper",
        "long",
        every("PT1S", OverlapPolicy::Skip),
    )
    .await;

    let first = eventually("a first run", Duration::from_secs(20), || async {
        events(&server, "skipper")
            .await
            .into_iter()
            .find(|e| e.outcome == "fired")
    })
    .await;
    let request = first.request.clone().unwrap();
    wait_started(&server, &request).await;
    let skipped = eventually("three skipped times", Duration::from_secs(20), || async {
        let all = events(&server, "skipper").await;
        (all.iter().filter(|e| e.outcome == "skipped").count() >= 3).then_some(all)
    })
    .await;
    // Only the first time ran; each later one says which run was still going.
    assert_eq!(skipped.iter().filter(|e| e.outcome == "fired").count(), 1);
    for event in skipped.iter().filter(|e| e.outcome == "skipped") {
        assert!(event.reason.contains(&request), "{event:?}");
        assert!(event.request.is_none(), "{event:?}");
    }
    one_per_time(&skipped, 1000);

    // Once the run has ended, the next time runs.
    cancel(&server, &request).await;
    wait_terminal(&server, &request).await;
    let second = eventually(
        "a run after the first ended",
        Duration::from_secs(20),
        || async {
            events(&server, "skipper")
                .await
                .into_iter()
                .filter(|e| e.outcome == "fired")
                .nth(1)
        },
    )
    .await;
    assert!(second.nominal_ms > skipped.last().unwrap().nominal_ms);
    archive(&server, "skipper").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn buffer_one_keeps_the_newest_time_and_runs_it_after_the_run_ends() {
    let server = TestServer::start().await;
    let _worker = server.sim_worker(SimOptions::default()).await;
    template(&server, "four", &["sleep", "4"], false).await;
    rule(
        &server,
        "buffered",
        "four",
        every("PT1S", OverlapPolicy::BufferOne),
    )
    .await;

    let runs = eventually("three runs", Duration::from_secs(40), || async {
        let all = events(&server, "buffered").await;
        let fired: Vec<Event> = all
            .iter()
            .filter(|e| e.outcome == "fired")
            .cloned()
            .collect();
        (fired.len() >= 3).then_some((all, fired))
    })
    .await;
    archive(&server, "buffered").await;
    let (all, fired) = runs;
    // The runs never overlapped: each started after the one before it ended.
    let spans = query(
        &server.database_url,
        "SELECT (extract(epoch FROM w.started_at) * 1000)::int8, \
                (extract(epoch FROM w.completed_at) * 1000)::int8 \
         FROM work_requests w JOIN templates t ON t.id = w.template_id \
         WHERE t.name = 'four' AND w.completed_at IS NOT NULL ORDER BY w.started_at",
    )
    .await;
    let spans: Vec<(i64, i64)> = spans.iter().map(|r| (r.get(0), r.get(1))).collect();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "runs overlapped: {spans:?}");
    }
    // The times that waited were replaced by newer ones, one at a time.
    let replaced: Vec<&Event> = all.iter().filter(|e| e.outcome == "skipped").collect();
    assert!(!replaced.is_empty(), "nothing was replaced: {all:?}");
    assert!(
        replaced
            .iter()
            .all(|e| e.reason.contains("replaced by the newer time"))
    );
    assert!(all.iter().filter(|e| e.outcome == "buffered").count() <= 1);
    // A run after the first is for a time that waited: later than the first's by more
    // than one interval.
    assert!(
        fired[1].nominal_ms - fired[0].nominal_ms > 1000,
        "{fired:?}"
    );
    one_per_time(&all, 1000);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_previous_stops_the_run_still_going() {
    let server = TestServer::start().await;
    let worker = server
        .sim_worker(SimOptions::default().concurrency(2))
        .await;
    template(&server, "endless", &["sleep", "600"], false).await;
    rule(
        &server,
        "replacer",
        "endless",
        every("PT3S", OverlapPolicy::CancelPrevious),
    )
    .await;

    let first = eventually("a first run", Duration::from_secs(20), || async {
        events(&server, "replacer")
            .await
            .into_iter()
            .find(|e| e.outcome == "fired")
    })
    .await;
    let request = first.request.clone().unwrap();
    wait_started(&server, &request).await;
    // The next time cancels it: the worker is told, and the request ends aborted.
    worker.wait_cancelled(&request, 1).await;
    let ended = wait_terminal(&server, &request).await;
    let message = query(
        &server.database_url,
        &format!("SELECT coalesce(message, '') FROM work_requests WHERE id = '{request}'"),
    )
    .await;
    let message: String = message[0].get(0);
    assert!(
        message.contains("cancelled by trigger rule replacer"),
        "{message:?} / {ended:?}"
    );
    let second = eventually("the run replacing it", Duration::from_secs(20), || async {
        events(&server, "replacer")
            .await
            .into_iter()
            .filter(|e| e.outcome == "fired")
            .nth(1)
    })
    .await;
    assert_eq!(second.nominal_ms - first.nominal_ms, 3000);
    archive(&server, "replacer").await;
    // Every time ran, each cancelling the one before.
    let all = settled(&server, "replacer").await;
    one_per_time(&all, 3000);
    assert!(all.iter().all(|e| e.outcome == "fired"), "{all:?}");
    server.stop().await;
}
