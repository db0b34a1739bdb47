//! `berth trigger ...`: rules that run a template when a time comes, an artifact is
//! completed, a work request ends or a message is published on a topic, and the events
//! of their firings.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};

use super::parse_version;
use crate::values::{KeyValue, SecretEnv, parse_duration, parse_key_value, parse_secret_env};

/// `berth trigger ...`
#[derive(Debug, Subcommand)]
pub enum TriggerCommand {
    /// Create a rule: exactly one of --schedule (cron, with --tz), --interval,
    /// --on-artifact, --on-completion or --on-topic says when it fires, and
    /// --run-template what runs.
    #[command(after_help = TRIGGER_CREATE_HELP)]
    Create(Box<TriggerCreateArgs>),
    /// List a workspace's rules by name.
    List {
        /// Also list archived rules.
        #[arg(long)]
        all: bool,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Show a rule with its next fire time.
    #[command(visible_alias = "show")]
    Get {
        /// The rule's name.
        name: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Pause a rule: its times pass as `paused` events and it makes no work until resumed.
    Pause {
        /// The rule's name.
        name: String,
        /// Why, kept on the rule.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Resume a paused rule from its next time after now (paused times are not caught up).
    Resume {
        /// The rule's name.
        name: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Archive a rule, one way: it never fires again, its events stay and its name is free.
    Archive {
        /// The rule's name.
        name: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Fire a rule now on your behalf, whatever its schedule (a paused rule too), and show
    /// the event with the work request it made.
    FireNow {
        /// The rule's name.
        name: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// The next fire times of a schedule rule, in its time zone, with notes where a DST
    /// change moves or merges one.
    Next {
        /// The rule's name.
        name: String,
        /// How many times (1-100).
        #[arg(short = 'n', long = "count", value_name = "N", default_value_t = 5,
              value_parser = clap::value_parser!(u32).range(1..=100))]
        count: u32,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Firings, skips, misses, pause-suppressed times and errors, newest first: of one
    /// rule (an archived one too), or of the whole workspace.
    Events(TriggerEventsArgs),
}

const TRIGGER_CREATE_HELP: &str = "\
Examples:
  berth trigger create nightly --schedule '0 3 * * *' --tz Europe/Berlin --run-template backup
  berth trigger create poll --interval PT15M --run-template poll --overlap buffer-one
  berth trigger create on-build --on-artifact build --where arch=amd64 --where-any os=linux \\
      --where-any os=darwin --run-template test
  berth trigger create on-fail --on-completion deploy --result failure --run-template page
  berth trigger create on-lost --on-topic berth.workers --type worker.disconnected --run-template page";

/// When a schedule fires while the previous run is still going.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OverlapArg {
    /// Do not run it (default).
    Skip,
    /// Run it beside the previous one.
    Allow,
    /// Run it when the previous one ends; of several waiting, the newest.
    BufferOne,
    /// Cancel the previous run and run this one.
    CancelPrevious,
}

/// Which missed times fire inside the catch-up window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CatchupArg {
    /// Only the newest (default).
    Latest,
    /// Every one, oldest first.
    All,
}

/// A work request's result a completion rule fires on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ResultArg {
    Success,
    Failure,
    Cancelled,
}

impl ResultArg {
    /// As the protocol spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultArg::Success => "success",
            ResultArg::Failure => "failure",
            ResultArg::Cancelled => "cancelled",
        }
    }
}

/// An event's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutcomeArg {
    Pending,
    Fired,
    Skipped,
    Missed,
    Paused,
    Buffered,
    Error,
}

impl OutcomeArg {
    /// As the protocol spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeArg::Pending => "pending",
            OutcomeArg::Fired => "fired",
            OutcomeArg::Skipped => "skipped",
            OutcomeArg::Missed => "missed",
            OutcomeArg::Paused => "paused",
            OutcomeArg::Buffered => "buffered",
            OutcomeArg::Error => "error",
        }
    }
}

/// One `--where`: `PATH=VALUE`, or `PATH` for "present".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub path: String,
    pub equals: Option<String>,
}

/// Reads `build.arch=amd64` or `build.arch`.
pub fn parse_condition(text: &str) -> Result<Condition, String> {
    let (path, equals) = match text.split_once('=') {
        Some((path, value)) => (path, Some(value.to_owned())),
        None => (text, None),
    };
    if path.is_empty() {
        return Err(format!(
            "{text:?} has no path; write PATH=VALUE (e.g. build.arch=amd64) or PATH for presence"
        ));
    }
    Ok(Condition {
        path: path.to_owned(),
        equals,
    })
}

/// `--since`: a time, or how long ago.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    At(DateTime<Utc>),
    Ago(Duration),
}

impl Since {
    /// The time it means, `now` being now.
    pub fn at(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Since::At(at) => at,
            Since::Ago(ago) => chrono::Duration::from_std(ago)
                .ok()
                .and_then(|ago| now.checked_sub_signed(ago))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }
}

/// Reads `1h`, `30m`, `7d` or an RFC 3339 time.
pub fn parse_since(text: &str) -> Result<Since, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(Since::At(at.with_timezone(&Utc)));
    }
    parse_duration(text).map(Since::Ago).map_err(|_| {
        format!("{text:?} is neither a duration (1h, 30m, 7d) nor an RFC 3339 time (2026-03-29T03:00:00+02:00)")
    })
}

fn parse_anchor(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time (e.g. 2026-01-01T00:00:00Z): {e}"))
}

/// `berth trigger create ...`
#[derive(Debug, Args)]
#[command(arg_required_else_help = true)]
#[command(group(ArgGroup::new("when").required(true).multiple(false)
    .args(["schedule", "interval", "on_artifact", "on_completion", "on_topic"])))]
pub struct TriggerCreateArgs {
    /// The rule's name: a-z, 0-9 and single dashes, starting with a letter.
    pub name: String,

    /// Fire at the times of a 5-field cron expression, e.g. '0 3 * * *' (in --tz).
    #[arg(long, value_name = "CRON", help_heading = "When")]
    pub schedule: Option<String>,
    /// The IANA time zone of --schedule, e.g. Europe/Berlin (default: UTC).
    #[arg(long = "tz", value_name = "ZONE", help_heading = "When")]
    pub time_zone: Option<String>,
    /// Fire every ISO-8601 interval, e.g. PT15M, PT1H30M, P1D (no months or years).
    #[arg(long, value_name = "DURATION", help_heading = "When")]
    pub interval: Option<String>,
    /// Interval times are anchor + k × interval (default: now, to the minute).
    #[arg(long, value_name = "RFC3339", value_parser = parse_anchor,
          help_heading = "When")]
    pub anchor: Option<DateTime<Utc>>,
    /// Fire when an artifact of this category is completed in the workspace.
    #[arg(long = "on-artifact", value_name = "CATEGORY", help_heading = "When")]
    pub on_artifact: Option<String>,
    /// --on-artifact: the artifact's data must have PATH (=VALUE) (repeatable; all must hold).
    #[arg(long = "where", value_name = "PATH[=VALUE]", value_parser = parse_condition, help_heading = "When")]
    pub all_of: Vec<Condition>,
    /// --on-artifact: at least one of these must hold (repeatable).
    #[arg(long = "where-any", value_name = "PATH[=VALUE]", value_parser = parse_condition, help_heading = "When")]
    pub any_of: Vec<Condition>,
    /// Fire when a work request from this template ends ('' for any request with --label).
    #[arg(long = "on-completion", value_name = "TEMPLATE", help_heading = "When")]
    pub on_completion: Option<String>,
    /// --on-completion: the results to fire on (repeatable; default failure).
    #[arg(
        long = "result",
        value_enum,
        value_name = "RESULT",
        help_heading = "When"
    )]
    pub results: Vec<ResultArg>,
    /// --on-completion: the request must carry this requirement label (repeatable).
    #[arg(long = "label", value_name = "K=V", value_parser = parse_key_value, help_heading = "When")]
    pub labels: Vec<KeyValue>,
    /// Fire once per message published on this topic of the workspace after the rule is
    /// made (berth.work-requests and the other berth.* topics carry Berth's own events).
    #[arg(
        long = "on-topic",
        visible_alias = "topic",
        value_name = "TOPIC",
        help_heading = "When"
    )]
    pub on_topic: Option<String>,
    /// --on-topic: only messages whose `type` matches (repeatable): a type
    /// (work_request.failed), a prefix (work_request.*) or *.
    #[arg(long = "type", value_name = "PATTERN", help_heading = "When")]
    pub types: Vec<String>,

    /// Schedules: what to do when the previous run is still going.
    #[arg(long, value_enum, value_name = "POLICY", help_heading = "Schedules")]
    pub overlap: Option<OverlapArg>,
    /// Schedules: times missed while no server ran still fire if at most this old
    /// (default 1m; 0s: none).
    #[arg(long = "catchup-window", value_name = "DURATION", value_parser = parse_duration,
          help_heading = "Schedules")]
    pub catchup_window: Option<Duration>,
    /// Schedules: which missed times inside the window fire.
    #[arg(long, value_enum, value_name = "WHICH", help_heading = "Schedules")]
    pub catchup: Option<CatchupArg>,

    /// The template a firing runs (T, or T@vK to pin release K).
    #[arg(
        long = "run-template",
        value_name = "TEMPLATE",
        help_heading = "What runs"
    )]
    pub run_template: String,
    /// Pin this release (default: the latest at each firing).
    #[arg(long, value_name = "vK", value_parser = parse_version, help_heading = "What runs")]
    pub version: Option<u32>,
    /// Job templates: set an environment variable of each run (repeatable).
    #[arg(short = 'e', long = "env", value_name = "K=V", value_parser = parse_key_value,
          help_heading = "What runs")]
    pub env: Vec<KeyValue>,
    /// Job templates: a secret environment variable of each run (repeatable); `K` alone
    /// takes the value from this command's environment. Stored encrypted, never shown.
    #[arg(long = "secret-env", value_name = "K[=V]", value_parser = parse_secret_env,
          help_heading = "What runs")]
    pub secret_env: Vec<SecretEnv>,
    /// Workflow templates: a parameter value (repeatable).
    #[arg(short = 'p', long = "param", value_name = "K=V", value_parser = parse_key_value,
          help_heading = "What runs")]
    pub params: Vec<KeyValue>,

    /// Create it paused.
    #[arg(long)]
    pub paused: bool,
    /// Workspace (default: default).
    #[arg(short = 'w', long, value_name = "W")]
    pub workspace: Option<String>,
}

/// `berth trigger events ...`
#[derive(Debug, Args)]
pub struct TriggerEventsArgs {
    /// Only this rule's events; without it, the workspace's.
    pub name: Option<String>,
    /// Only events since then: how long ago (1h, 7d) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<Since>,
    /// Only these outcomes (repeatable).
    #[arg(long = "outcome", value_enum, value_name = "OUTCOME")]
    pub outcomes: Vec<OutcomeArg>,
    /// At most this many (default 100, at most 1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Continue after a previous page (its next_page_token).
    #[arg(long = "page-token", value_name = "TOKEN")]
    pub page_token: Option<String>,
    /// Workspace (default: default).
    #[arg(short = 'w', long, value_name = "W")]
    pub workspace: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_equalities_or_presence() {
        assert_eq!(
            parse_condition("build.arch=amd64").expect("should succeed"),
            Condition {
                path: "build.arch".into(),
                equals: Some("amd64".into())
            }
        );
        assert_eq!(
            parse_condition("signed").expect("should succeed").equals,
            None
        );
        assert_eq!(
            parse_condition("k=").expect("should succeed").equals,
            Some(String::new())
        );
        assert!(
            parse_condition("=x")
                .expect_err("should fail")
                .contains("no path")
        );
    }

    #[test]
    fn since_is_a_duration_ago_or_a_time() {
        let now = DateTime::parse_from_rfc3339("2026-03-29T12:00:00Z")
            .expect("should succeed")
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("1h")
                .expect("should succeed")
                .at(now)
                .to_rfc3339(),
            "2026-03-29T11:00:00+00:00"
        );
        assert_eq!(
            parse_since("2026-03-29T03:00:00+02:00")
                .expect("should succeed")
                .at(now)
                .to_rfc3339(),
            "2026-03-29T01:00:00+00:00"
        );
        assert!(
            parse_since("yesterday")
                .expect_err("should fail")
                .contains("neither")
        );
    }
}
