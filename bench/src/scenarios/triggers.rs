//! `triggers`: how punctually and how exactly schedule rules fire, and what they cost.
//!
//! A schedule that fires late, twice or not at all is the failure users of cron-like
//! schedulers report most, so this scenario creates many 1-second interval rules (200;
//! 20 with `--quick`) running a job template, lets them fire for 30 s (8 s), pauses them
//! and then reads what happened from the database:
//!
//! - **exactness**: events per (rule, nominal time) — more than one is a double firing —
//!   and nominal times missing between a rule's first and last event (a lost firing);
//!   both must be 0. Firings achieved ÷ firings due is printed as a ratio (the due count
//!   is the number of whole nominal times inside each rule's window).
//! - **punctuality**: how late the event was stored after its nominal time, and how late
//!   its work request was, p50 / p99 / max, on the database's clock.
//! - **cost**: the server's CPU as a share of one core during the window.
//!
//! The rules use overlap `allow`: nothing executes the requests (no worker), so under the
//! default `skip` every time after the first would be skipped for the run still pending.

use std::time::{Duration, Instant};

use anyhow::Context;
use berth_common::client::BearerAuth;
use berth_common::proto::template_service_client::TemplateServiceClient;
use berth_common::proto::trigger_service_client::TriggerServiceClient;
use berth_common::proto::{
    ContainerSpec, CreateTemplateRequest, CreateTriggerRuleRequest, JobTemplateSpec, OverlapPolicy,
    PauseTriggerRuleRequest, Role, ScheduleConfig, TriggerAction, create_template_request,
    create_trigger_rule_request,
};
use serde_json::json;

use crate::report::{Report, ms};
use crate::scenarios::Options;
use crate::stack::{Stack, StackOptions, percentile, sample};

/// Goal: the p99 of how late a firing's event is stored.
const GOAL_P99_LATENESS_MS: f64 = 1000.0;

/// Runs the scenario.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let (rules, window) = if opts.quick {
        (20, Duration::from_secs(8))
    } else {
        (200, Duration::from_secs(30))
    };
    let stack = Stack::start(StackOptions::default()).await?;
    let result = measure(&stack, rules, window).await;
    stack.stop().await?;
    result
}

async fn measure(stack: &Stack, rules: usize, window: Duration) -> anyhow::Result<Report> {
    let token = stack.create_token(Role::User, "bench-triggers").await?;
    stack.make_contributor("default", "bench-triggers").await?;
    let channel = stack.channel().await?;
    let mut templates =
        TemplateServiceClient::with_interceptor(channel.clone(), BearerAuth::new(&token));
    templates
        .create_template(CreateTemplateRequest {
            name: "bench-tick".into(),
            spec: Some(create_template_request::Spec::Job(JobTemplateSpec {
                spec: Some(ContainerSpec {
                    image: "bench/noop".into(),
                    command: vec!["true".into()],
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        })
        .await
        .context("cannot create the template the rules run")?;
    let mut triggers = TriggerServiceClient::with_interceptor(channel, BearerAuth::new(&token));
    eprintln!("  creating {rules} interval rules (PT1S, overlap allow)");
    for i in 0..rules {
        triggers
            .create_trigger_rule(CreateTriggerRuleRequest {
                name: format!("tick-{i}"),
                config: Some(create_trigger_rule_request::Config::Schedule(
                    ScheduleConfig {
                        interval: "PT1S".into(),
                        overlap: OverlapPolicy::Allow as i32,
                        ..Default::default()
                    },
                )),
                action: Some(TriggerAction {
                    template: "bench-tick".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot create rule tick-{i}"))?;
    }

    eprintln!("  letting them fire for {window:?}");
    let pid = stack.server_pid();
    let start = sample(pid)?;
    let wall_start = Instant::now();
    tokio::time::sleep(window).await;
    let end = sample(pid)?;
    let wall = wall_start.elapsed().as_secs_f64();
    for i in 0..rules {
        triggers
            .pause_trigger_rule(PauseTriggerRuleRequest {
                name: format!("tick-{i}"),
                note: "bench over".into(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot pause rule tick-{i}"))?;
    }
    // Firings claimed before the pause are settled within a pass or two.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let sql = stack.sql().await?;
    let doubles: i64 = sql
        .query_one(
            "SELECT count(*) FROM (SELECT rule_id, nominal_at FROM trigger_events \
             WHERE nominal_at IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) d",
            &[],
        )
        .await?
        .get(0);
    // Per rule: nominal times from its first to its last event, against events present.
    let gaps: i64 = sql
        .query_one(
            "SELECT coalesce(sum(expected - present), 0)::bigint FROM ( \
               SELECT rule_id, \
                 (extract(epoch FROM max(nominal_at) - min(nominal_at)))::bigint + 1 AS expected, \
                 count(DISTINCT nominal_at) AS present \
               FROM trigger_events WHERE nominal_at IS NOT NULL GROUP BY rule_id) r",
            &[],
        )
        .await?
        .get(0);
    let rows = sql
        .query(
            "SELECT extract(epoch FROM e.occurred_at - e.nominal_at)::float8, \
                    extract(epoch FROM w.created_at - e.nominal_at)::float8 \
             FROM trigger_events e JOIN work_requests w ON w.id = e.work_request_id \
             WHERE e.outcome = 'fired' AND e.nominal_at IS NOT NULL",
            &[],
        )
        .await?;
    let other: i64 = sql
        .query_one(
            "SELECT count(*) FROM trigger_events WHERE outcome NOT IN ('fired', 'paused')",
            &[],
        )
        .await?
        .get(0);
    let mut event_late: Vec<f64> = rows.iter().map(|r| r.get::<_, f64>(0) * 1000.0).collect();
    let mut request_late: Vec<f64> = rows.iter().map(|r| r.get::<_, f64>(1) * 1000.0).collect();
    event_late.sort_by(f64::total_cmp);
    request_late.sort_by(f64::total_cmp);
    let fired = rows.len();
    let due = (rules as f64) * window.as_secs_f64();
    let cpu_percent = (end.cpu_seconds - start.cpu_seconds) / wall * 100.0;
    let p99 = percentile(&event_late, 99.0);
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    let report_rows = vec![
        ("rules".to_owned(), format!("{rules} × PT1S for {window:?}")),
        (
            "firings".to_owned(),
            format!(
                "{fired} ({:.0}/s; {:.2} of the ~{due:.0} due in the window)",
                fired as f64 / wall,
                fired as f64 / due
            ),
        ),
        (
            "double firings".to_owned(),
            format!("{doubles} (goal 0: {})", mark(doubles == 0)),
        ),
        (
            "lost nominal times".to_owned(),
            format!("{gaps} (goal 0: {})", mark(gaps == 0)),
        ),
        (
            "events neither fired nor paused".to_owned(),
            other.to_string(),
        ),
        (
            "event lateness p50 / p99 / max".to_owned(),
            format!(
                "{} / {} / {} (goal p99 ≤ {}: {})",
                ms(percentile(&event_late, 50.0)),
                ms(p99),
                ms(event_late.last().copied().unwrap_or(f64::NAN)),
                ms(GOAL_P99_LATENESS_MS),
                mark(p99 <= GOAL_P99_LATENESS_MS)
            ),
        ),
        (
            "request lateness p50 / p99".to_owned(),
            format!(
                "{} / {}",
                ms(percentile(&request_late, 50.0)),
                ms(percentile(&request_late, 99.0))
            ),
        ),
        (
            "server CPU".to_owned(),
            format!("{cpu_percent:.1} % of one core"),
        ),
    ];
    Ok(Report {
        scenario: "triggers".into(),
        rows: report_rows,
        json: json!({
            "rules": rules,
            "window_seconds": window.as_secs_f64(),
            "fired": fired,
            "due": due,
            "double_firings": doubles,
            "lost_nominal_times": gaps,
            "other_events": other,
            "event_lateness_ms": {
                "p50": percentile(&event_late, 50.0),
                "p99": p99,
            },
            "request_lateness_ms": {
                "p50": percentile(&request_late, 50.0),
                "p99": percentile(&request_late, 99.0),
            },
            "server_cpu_percent": cpu_percent,
        }),
    })
}
