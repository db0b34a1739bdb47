//! `berth trigger ...`: create, list, show, pause, resume, archive and fire trigger rules,
//! preview a schedule rule's next times and read events.
//!
//! Every command is one call shown as its view. `create` sorts its flags into the one
//! configuration they describe (clap has already made sure exactly one of `--schedule`,
//! `--interval`, `--on-artifact` and `--on-completion` is given); flags that only mean
//! something to schedules are refused with the others before anything is sent.

use std::ffi::OsString;

use berth_common::proto;

use super::{Server, Triggers, show};
use crate::args::{
    CatchupArg, Condition, OverlapArg, TriggerCommand, TriggerCreateArgs, TriggerEventsArgs,
};
use crate::commands::templates::split_version;
use crate::error::CliError;
use crate::output::Printer;
use crate::values::{into_map, resolve_secret_env, to_proto_duration};

pub(super) async fn execute(
    command: TriggerCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        TriggerCommand::Create(args) => {
            let create = create_request(&args, |key| std::env::var_os(key))?;
            show(server, printer, Triggers::create_trigger_rule, create).await
        }
        TriggerCommand::List { all, workspace } => {
            let list = proto::ListTriggerRulesRequest {
                workspace: workspace.unwrap_or_default(),
                include_archived: all,
            };
            show(server, printer, Triggers::list_trigger_rules, list).await
        }
        TriggerCommand::Get { name, workspace } => {
            let get = proto::GetTriggerRuleRequest {
                workspace: workspace.unwrap_or_default(),
                name,
            };
            show(server, printer, Triggers::get_trigger_rule, get).await
        }
        TriggerCommand::Pause {
            name,
            note,
            workspace,
        } => {
            let pause = proto::PauseTriggerRuleRequest {
                workspace: workspace.unwrap_or_default(),
                name,
                note: note.unwrap_or_default(),
            };
            show(server, printer, Triggers::pause_trigger_rule, pause).await
        }
        TriggerCommand::Resume { name, workspace } => {
            let resume = proto::ResumeTriggerRuleRequest {
                workspace: workspace.unwrap_or_default(),
                name,
            };
            show(server, printer, Triggers::resume_trigger_rule, resume).await
        }
        TriggerCommand::Archive { name, workspace } => {
            let archive = proto::ArchiveTriggerRuleRequest {
                workspace: workspace.unwrap_or_default(),
                name,
            };
            show(server, printer, Triggers::archive_trigger_rule, archive).await
        }
        TriggerCommand::FireNow { name, workspace } => {
            let fire = proto::FireTriggerRuleRequest {
                workspace: workspace.unwrap_or_default(),
                name,
            };
            show(server, printer, Triggers::fire_trigger_rule, fire).await
        }
        TriggerCommand::Next {
            name,
            count,
            workspace,
        } => {
            let preview = proto::PreviewTriggerScheduleRequest {
                workspace: workspace.unwrap_or_default(),
                name,
                schedule: None,
                count,
            };
            show(server, printer, Triggers::preview_trigger_schedule, preview).await
        }
        TriggerCommand::Events(args) => {
            let list = events_request(args, chrono::Utc::now());
            show(server, printer, Triggers::list_trigger_events, list).await
        }
    }
}

fn conditions(conditions: &[Condition]) -> Vec<proto::DataCondition> {
    conditions
        .iter()
        .map(|c| proto::DataCondition {
            path: c.path.clone(),
            equals: c.equals.clone(),
        })
        .collect()
}

/// The `CreateTriggerRuleRequest` the flags describe; `lookup` reads this process's
/// environment for `--secret-env K`.
pub(crate) fn create_request(
    args: &TriggerCreateArgs,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<proto::CreateTriggerRuleRequest, CliError> {
    use proto::create_trigger_rule_request::Config;
    let timed = args.schedule.is_some() || args.interval.is_some();
    for (given, flag, belongs, with) in [
        (
            args.overlap.is_some(),
            "--overlap",
            timed,
            "--schedule or --interval",
        ),
        (
            args.catchup_window.is_some(),
            "--catchup-window",
            timed,
            "--schedule or --interval",
        ),
        (
            args.catchup.is_some(),
            "--catchup",
            timed,
            "--schedule or --interval",
        ),
        (
            args.time_zone.is_some(),
            "--tz",
            args.schedule.is_some(),
            "--schedule (intervals need no zone)",
        ),
        (
            args.anchor.is_some(),
            "--anchor",
            args.interval.is_some(),
            "--interval",
        ),
        (
            !args.all_of.is_empty(),
            "--where",
            args.on_artifact.is_some(),
            "--on-artifact",
        ),
        (
            !args.any_of.is_empty(),
            "--where-any",
            args.on_artifact.is_some(),
            "--on-artifact",
        ),
        (
            !args.results.is_empty(),
            "--result",
            args.on_completion.is_some(),
            "--on-completion",
        ),
        (
            !args.labels.is_empty(),
            "--label",
            args.on_completion.is_some(),
            "--on-completion",
        ),
        (
            !args.types.is_empty(),
            "--type",
            args.on_topic.is_some(),
            "--on-topic",
        ),
    ] {
        if given && !belongs {
            return Err(CliError::Usage(format!("{flag} goes with {with} only")));
        }
    }
    let overlap = match args.overlap {
        None => proto::OverlapPolicy::Unspecified,
        Some(OverlapArg::Skip) => proto::OverlapPolicy::Skip,
        Some(OverlapArg::Allow) => proto::OverlapPolicy::Allow,
        Some(OverlapArg::BufferOne) => proto::OverlapPolicy::BufferOne,
        Some(OverlapArg::CancelPrevious) => proto::OverlapPolicy::CancelPrevious,
    };
    let catchup = match args.catchup {
        None => proto::CatchupPolicy::Unspecified,
        Some(CatchupArg::Latest) => proto::CatchupPolicy::Latest,
        Some(CatchupArg::All) => proto::CatchupPolicy::All,
    };
    let schedule = |cron: String, interval: String| {
        Config::Schedule(proto::ScheduleConfig {
            cron,
            time_zone: args.time_zone.clone().unwrap_or_default(),
            interval,
            anchor: args.anchor.map(|at| prost_types::Timestamp {
                seconds: at.timestamp(),
                nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
            }),
            overlap: overlap.into(),
            catchup_window: args.catchup_window.map(to_proto_duration),
            catchup: catchup.into(),
        })
    };
    let config = if let Some(cron) = &args.schedule {
        schedule(cron.clone(), String::new())
    } else if let Some(interval) = &args.interval {
        schedule(String::new(), interval.clone())
    } else if let Some(category) = &args.on_artifact {
        Config::Artifact(proto::ArtifactConfig {
            category: category.clone(),
            all_of: conditions(&args.all_of),
            any_of: conditions(&args.any_of),
        })
    } else if let Some(template) = &args.on_completion {
        Config::Completion(proto::CompletionConfig {
            template: template.clone(),
            labels: into_map(&args.labels),
            results: args.results.iter().map(|r| r.as_str().to_owned()).collect(),
        })
    } else if let Some(topic) = &args.on_topic {
        Config::Topic(proto::TopicConfig {
            topic: topic.clone(),
            types: args.types.clone(),
        })
    } else {
        return Err(CliError::Usage(
            "say when the rule fires: --schedule, --interval, --on-artifact, --on-completion or --on-topic"
                .into(),
        ));
    };
    let (template, pinned) = split_version(&args.run_template)?;
    let version = match (pinned, args.version) {
        (Some(a), Some(b)) if a != b => {
            return Err(CliError::Usage(format!(
                "--run-template {} and --version v{b} name two releases; give one",
                args.run_template
            )));
        }
        (a, b) => a.or(b).unwrap_or(0),
    };
    let secret_env = resolve_secret_env(&args.secret_env, lookup).map_err(CliError::Usage)?;
    let env = into_map(&args.env);
    let overrides = (!env.is_empty() || !secret_env.is_empty()).then(|| proto::TemplateOverrides {
        env,
        secret_env,
        ..Default::default()
    });
    Ok(proto::CreateTriggerRuleRequest {
        workspace: args.workspace.clone().unwrap_or_default(),
        name: args.name.clone(),
        config: Some(config),
        action: Some(proto::TriggerAction {
            template,
            version,
            overrides,
            params: into_map(&args.params),
        }),
        paused: args.paused,
    })
}

/// The `ListTriggerEventsRequest` of `berth trigger events`, `now` being now (for
/// `--since 1h`).
fn events_request(
    args: TriggerEventsArgs,
    now: chrono::DateTime<chrono::Utc>,
) -> proto::ListTriggerEventsRequest {
    proto::ListTriggerEventsRequest {
        workspace: args.workspace.unwrap_or_default(),
        rule: args.name.unwrap_or_default(),
        since: args.since.map(|since| {
            let at = since.at(now);
            prost_types::Timestamp {
                seconds: at.timestamp(),
                nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
            }
        }),
        outcomes: args
            .outcomes
            .iter()
            .map(|o| o.as_str().to_owned())
            .collect(),
        limit: args.limit.unwrap_or(0),
        page_token: args.page_token.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn parse(words: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("berth").chain(words.iter().copied()))
    }

    fn create(words: &[&str]) -> Result<proto::CreateTriggerRuleRequest, CliError> {
        let mut all = vec!["trigger", "create"];
        all.extend_from_slice(words);
        match parse(&all).expect("parses").command {
            Command::Trigger(TriggerCommand::Create(args)) => {
                create_request(&args, |key| (key == "TOKEN").then(|| "s3cret".into()))
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn a_cron_rule_in_a_zone_becomes_a_schedule() {
        let request = create(&[
            "nightly",
            "--schedule",
            "0 3 * * *",
            "--tz",
            "Europe/Berlin",
            "--run-template",
            "backup@v2",
            "--env",
            "MODE=full",
            "--secret-env",
            "TOKEN",
            "--overlap",
            "buffer-one",
            "--catchup-window",
            "5m",
            "--catchup",
            "all",
            "--paused",
            "-w",
            "team",
        ])
        .expect("builds");
        assert_eq!(request.workspace, "team");
        assert!(request.paused);
        let Some(proto::create_trigger_rule_request::Config::Schedule(s)) = request.config else {
            panic!("not a schedule: {:?}", request.config);
        };
        assert_eq!(
            (s.cron.as_str(), s.time_zone.as_str()),
            ("0 3 * * *", "Europe/Berlin")
        );
        assert_eq!(s.overlap, proto::OverlapPolicy::BufferOne as i32);
        assert_eq!(s.catchup, proto::CatchupPolicy::All as i32);
        assert_eq!(s.catchup_window.expect("window").seconds, 300);
        let action = request.action.expect("action");
        assert_eq!((action.template.as_str(), action.version), ("backup", 2));
        let overrides = action.overrides.expect("overrides");
        assert_eq!(overrides.env["MODE"], "full");
        assert_eq!(overrides.secret_env["TOKEN"], "s3cret");
    }

    #[test]
    fn artifact_and_completion_rules_take_their_conditions() {
        let request = create(&[
            "on-build",
            "--on-artifact",
            "build",
            "--where",
            "arch=amd64",
            "--where",
            "signed",
            "--where-any",
            "os=linux",
            "--run-template",
            "test",
        ])
        .expect("builds");
        let Some(proto::create_trigger_rule_request::Config::Artifact(a)) = request.config else {
            panic!("not an artifact rule");
        };
        assert_eq!(a.category, "build");
        assert_eq!(a.all_of.len(), 2);
        assert_eq!(a.all_of[1].equals, None);
        assert_eq!(a.any_of[0].equals.as_deref(), Some("linux"));

        let request = create(&[
            "on-fail",
            "--on-completion",
            "deploy",
            "--result",
            "failure",
            "--result",
            "cancelled",
            "--label",
            "os=linux",
            "--run-template",
            "page",
        ])
        .expect("builds");
        let Some(proto::create_trigger_rule_request::Config::Completion(c)) = request.config else {
            panic!("not a completion rule");
        };
        assert_eq!(c.template, "deploy");
        assert_eq!(c.results, ["failure", "cancelled"]);
        assert_eq!(c.labels["os"], "linux");

        let request = create(&[
            "on-lost",
            "--on-topic",
            "berth.workers",
            "--type",
            "worker.disconnected",
            "--type",
            "worker.disabled",
            "--run-template",
            "page",
        ])
        .expect("builds");
        let Some(proto::create_trigger_rule_request::Config::Topic(t)) = request.config else {
            panic!("not a topic rule");
        };
        assert_eq!(t.topic, "berth.workers");
        assert_eq!(t.types, ["worker.disconnected", "worker.disabled"]);
    }

    #[test]
    fn bad_combinations_are_refused_before_anything_is_sent() {
        // Two "when"s, or none.
        assert!(
            parse(&[
                "trigger",
                "create",
                "x",
                "--schedule",
                "* * * * *",
                "--interval",
                "PT1M",
                "--run-template",
                "t"
            ])
            .is_err()
        );
        assert!(parse(&["trigger", "create", "x", "--run-template", "t"]).is_err());
        // Flags of another kind of rule.
        for (words, flag) in [
            (&["--interval", "PT1M", "--tz", "UTC"][..], "--tz"),
            (
                &["--schedule", "* * * * *", "--where", "a=b"][..],
                "--where",
            ),
            (
                &[
                    "--schedule",
                    "* * * * *",
                    "--anchor",
                    "2026-01-01T00:00:00Z",
                ][..],
                "--anchor",
            ),
            (
                &["--on-artifact", "build", "--result", "failure"][..],
                "--result",
            ),
            (
                &["--on-completion", "t", "--where-any", "a"][..],
                "--where-any",
            ),
            (
                &["--on-artifact", "build", "--overlap", "skip"][..],
                "--overlap",
            ),
            (&["--on-artifact", "build", "--label", "a=b"][..], "--label"),
            (
                &["--on-completion", "t", "--type", "worker.lost"][..],
                "--type",
            ),
        ] {
            let mut all = vec!["x", "--run-template", "t"];
            all.extend_from_slice(words);
            let refused = create(&all).expect_err("refused");
            assert!(
                refused
                    .to_string()
                    .starts_with(&format!("{flag} goes with")),
                "{words:?}: {refused}"
            );
        }
        let refused = create(&[
            "x",
            "--interval",
            "PT1M",
            "--run-template",
            "t@v1",
            "--version",
            "2",
        ])
        .expect_err("refused");
        assert!(refused.to_string().contains("two releases"), "{refused}");
        let refused = create(&[
            "x",
            "--interval",
            "PT1M",
            "--run-template",
            "t",
            "--secret-env",
            "MISSING",
        ])
        .expect_err("refused");
        assert!(refused.to_string().contains("MISSING"), "{refused}");
    }

    #[test]
    fn events_since_a_duration_ago_and_by_outcome() {
        let cli = parse(&[
            "trigger",
            "events",
            "nightly",
            "--since",
            "1h",
            "--outcome",
            "fired",
            "--outcome",
            "missed",
        ])
        .expect("parses");
        let Command::Trigger(TriggerCommand::Events(args)) = cli.command else {
            panic!("not events");
        };
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let request = events_request(args, now);
        assert_eq!(request.rule, "nightly");
        assert_eq!(request.since.expect("since").seconds, 1_800_000_000 - 3600);
        assert_eq!(request.outcomes, ["fired", "missed"]);
    }
}
