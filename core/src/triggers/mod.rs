//! Trigger rules: work made when a time comes (`schedule`), an artifact is completed
//! (`artifact`), a work request ends (`completion`) or a message is published on a topic,
//! Berth's own events included (`topic`),
//! and every firing, skip, miss, pause-suppressed time and error kept as an event with
//! its reason.
//!
//! A rule belongs to a workspace and runs a template of it (a job template with
//! overrides, or a workflow template with parameters) at a release policy (pinned or the
//! latest at each firing), on behalf of the user who created it. **Each nominal time,
//! artifact or ended request makes at most one firing per rule, whatever the number of
//! server replicas**: the firing is an event row whose unique key (rule, `dedupe`) is
//! taken in the transaction that claims the rule, and the work request it makes is
//! stored under an id reserved on that event, so a settle that is retried after a crash
//! meets the request it already made instead of making a second.
//!
//! How a firing goes:
//! 1. [`fire`] (schedule rules, on every replica, rows claimed with
//!    `FOR UPDATE SKIP LOCKED` on the database's clock) or [`watch`] (event rules: new
//!    artifacts, ended requests, messages of a topic rule's own subscription) stores the
//!    event: `pending` with a reserved request id, or `skipped` / `missed` / `paused` /
//!    `buffered` with its reason, and moves the rule on (its cursor, or the messages
//!    acked), in one transaction.
//! 2. [`settle`] turns each `pending` event into its work request through
//!    [`crate::templates::Templates::run`] (validated exactly like `berth template run`)
//!    and marks it `fired`, or `error` with why; a pending event left by a crash is
//!    settled by the next pass of any replica.
//!
//! What it owns:
//! - [`store`]: rule and event rows, the one insert of events, the pass clock.
//! - [`handlers`]: the registry of rule types; each type's module checks its
//!   configuration: [`schedule`] (cron in a zone, or an ISO-8601 interval; next times,
//!   DST, catch-up), [`artifact`] (category and data predicate), [`completion`]
//!   (template or labels, and results), [`topic`] (a topic, type patterns, and the
//!   rule's subscription, opened at create and dropped at archive; never firing on what
//!   the rule's own firings caused).
//! - [`fire`]: the pass over due schedule rules (catch-up and overlap policies) and the
//!   loop that runs every pass; [`watch`]: the pass over new artifacts and ended
//!   requests; [`settle`]: pending events to work.
//! - [`manage`]: creating, reading, listing, changing, pausing, resuming, archiving and
//!   firing rules by hand, and previews of fire times (the front the API calls);
//!   [`events`]: reading events.
//!
//! What it must not touch: work requests' rows and states (it makes them only through
//! [`crate::templates::Templates::run`] and stops an overlapped run only through
//! [`crate::work::own::stop`]), templates' rows (it reads them), artifacts (it reads
//! them), topics (it opens, reads, acks and drops its subscriptions only through the
//! topics room's internal-subscription contract), roles (decided by
//! [`crate::access::roles`]), and the wire protocol. Secret
//! override values are sealed with the server's key and never shown, logged or put in
//! an event.

pub mod artifact;
pub mod completion;
pub mod events;
pub mod fire;
pub mod handlers;
pub mod manage;
pub mod schedule;
pub mod settle;
pub mod store;
pub mod topic;
pub mod watch;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::roles::Standing;
use crate::live::hub::Hub;
use crate::store::db::DbPool;
use crate::store::secrets::SecretBox;
use crate::templates::Templates;
use crate::templates::runs::Overrides;

use self::store::{EventRow, RuleRow};

/// Names a rule: its workspace ('' for `default`) and its name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleRef {
    pub workspace: String,
    pub name: String,
}

/// A rule's type; each has its handler module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleKind {
    Schedule,
    Artifact,
    Completion,
    Topic,
}

impl RuleKind {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Schedule => "schedule",
            RuleKind::Artifact => "artifact",
            RuleKind::Completion => "completion",
            RuleKind::Topic => "topic",
        }
    }

    /// The stored text back; `None` for anything else.
    pub fn parse(text: &str) -> Option<RuleKind> {
        match text {
            "schedule" => Some(RuleKind::Schedule),
            "artifact" => Some(RuleKind::Artifact),
            "completion" => Some(RuleKind::Completion),
            "topic" => Some(RuleKind::Topic),
            _ => None,
        }
    }
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Its work request is being made (a reserved id is on the event).
    Pending,
    /// Its work request exists.
    Fired,
    /// Not run: the overlap policy (a run still going), or a newer buffered time.
    Skipped,
    /// Not run: its time passed while no server ran, outside the catch-up window (or not
    /// the latest inside it).
    Missed,
    /// Not run: the rule was paused.
    Paused,
    /// Waiting for the previous run to end (`buffer-one`).
    Buffered,
    /// Its work could not be made; the reason says why.
    Error,
}

impl Outcome {
    /// Every outcome, as listed.
    pub const ALL: [Outcome; 7] = [
        Outcome::Pending,
        Outcome::Fired,
        Outcome::Skipped,
        Outcome::Missed,
        Outcome::Paused,
        Outcome::Buffered,
        Outcome::Error,
    ];

    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Fired => "fired",
            Outcome::Skipped => "skipped",
            Outcome::Missed => "missed",
            Outcome::Paused => "paused",
            Outcome::Buffered => "buffered",
            Outcome::Error => "error",
        }
    }

    /// The stored text back; `None` for anything else.
    pub fn parse(text: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a schedule fire does while the run of an earlier time is still going.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overlap {
    /// Not run; a `skipped` event names the run still going.
    #[default]
    Skip,
    /// Run beside it.
    Allow,
    /// Held back (`buffered`) until it ends, then run; of several, the newest is kept.
    BufferOne,
    /// The earlier run is cancelled, and this one runs.
    CancelPrevious,
}

impl Overlap {
    /// As stored and shown: `skip`, `allow`, `buffer-one`, `cancel-previous`.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Allow => "allow",
            Overlap::BufferOne => "buffer-one",
            Overlap::CancelPrevious => "cancel-previous",
        }
    }

    /// The text back; `None` for anything else.
    pub fn parse(text: &str) -> Option<Overlap> {
        [
            Overlap::Skip,
            Overlap::Allow,
            Overlap::BufferOne,
            Overlap::CancelPrevious,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// Which times missed while no server ran still fire inside the catch-up window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Catchup {
    /// The newest only.
    #[default]
    Latest,
    /// Every one, oldest first.
    All,
}

impl Catchup {
    /// As stored and shown: `latest`, `all`.
    pub fn as_str(self) -> &'static str {
        match self {
            Catchup::Latest => "latest",
            Catchup::All => "all",
        }
    }

    /// The text back; `None` for anything else.
    pub fn parse(text: &str) -> Option<Catchup> {
        match text {
            "latest" => Some(Catchup::Latest),
            "all" => Some(Catchup::All),
            _ => None,
        }
    }
}

/// A schedule as a caller gave it (checked by [`schedule::check`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScheduleInput {
    /// 5-field cron; exactly one of `cron` and `interval`.
    pub cron: String,
    /// IANA zone for `cron`; '' is UTC.
    pub time_zone: String,
    /// ISO-8601 duration (`PT15M`, `P1D`, `P2W`).
    pub interval: String,
    /// Interval rules: times are anchor + k × interval; `None`: creation, to the minute.
    pub anchor: Option<DateTime<Utc>>,
    /// `None`: `skip` (on update: unchanged).
    pub overlap: Option<Overlap>,
    /// `None`: 1 minute (on update: unchanged).
    pub catchup_window: Option<Duration>,
    /// `None`: `latest` (on update: unchanged).
    pub catchup: Option<Catchup>,
}

/// A condition on a JSON path of an artifact's data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataCondition {
    /// Dot-separated object keys.
    pub path: String,
    /// The value's text must equal this; `None`: the path must be present.
    pub equals: Option<String>,
}

/// An artifact rule as a caller gave it (checked by [`artifact::check`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArtifactInput {
    pub category: String,
    pub all_of: Vec<DataCondition>,
    pub any_of: Vec<DataCondition>,
}

/// A completion rule as a caller gave it (checked by [`completion::check`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompletionInput {
    /// A template of the workspace; '' for any (then `labels` must be given).
    pub template: String,
    /// Requirement labels the request must carry.
    pub labels: BTreeMap<String, String>,
    /// `success`, `failure`, `cancelled`; empty: `failure`.
    pub results: Vec<String>,
}

/// A topic rule as a caller gave it (checked by [`topic::check`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicInput {
    /// A topic's slug in the rule's workspace.
    pub topic: String,
    /// Type patterns (`work_request.failed`, `work_request.*`, `*`); empty: every message.
    pub types: Vec<String>,
}

/// Who is making or changing a rule: their standing in its workspace and their user id.
/// A topic rule's maker must be allowed to consume its topic.
#[derive(Clone, Copy)]
pub struct Maker<'a> {
    pub standing: &'a Standing,
    pub user_id: Uuid,
}

/// A rule's configuration as a caller gave it; the variant is the rule's type.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigInput {
    Schedule(ScheduleInput),
    Artifact(ArtifactInput),
    Completion(CompletionInput),
    Topic(TopicInput),
}

impl ConfigInput {
    /// The rule type it configures.
    pub fn kind(&self) -> RuleKind {
        match self {
            ConfigInput::Schedule(_) => RuleKind::Schedule,
            ConfigInput::Artifact(_) => RuleKind::Artifact,
            ConfigInput::Completion(_) => RuleKind::Completion,
            ConfigInput::Topic(_) => RuleKind::Topic,
        }
    }
}

/// What a firing runs, as a caller gave it.
#[derive(Clone, Debug, Default)]
pub struct ActionInput {
    /// A template of the rule's workspace.
    pub template: String,
    /// `None`: the latest release at each firing; `Some(K)`: release K.
    pub version: Option<i32>,
    /// Job templates.
    pub overrides: Overrides,
    /// Workflow templates.
    pub params: BTreeMap<String, String>,
}

/// What a firing runs, as stored in `trigger_rules.action` (secret values are sealed in
/// `action_secrets`; only their names are here).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredAction {
    /// The template's name when the rule was made or changed (its id is the row's
    /// `template_id`).
    pub template: String,
    /// `None`: the latest release at each firing.
    pub version: Option<i32>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub secret_env_keys: Vec<String>,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub timeout_ms: Option<u64>,
    pub priority: Option<i32>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// A change to a rule: `None` keeps what it has.
#[derive(Clone, Debug, Default)]
pub struct RuleChange {
    /// Must be of the rule's type.
    pub config: Option<ConfigInput>,
    pub action: Option<ActionInput>,
}

/// A rule as callers see it.
#[derive(Clone, Debug)]
pub struct RuleView {
    pub row: RuleRow,
    /// Its workspace's name.
    pub workspace: String,
    /// Its creator's name.
    pub created_by: String,
    pub action: StoredAction,
}

/// An event as callers see it.
#[derive(Clone, Debug)]
pub struct EventView {
    pub row: EventRow,
    /// Its workspace's name.
    pub workspace: String,
    /// Its rule's name ('' for none).
    pub rule: String,
}

/// Which events to list.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    pub workspace: String,
    /// One rule's (archived too); '' for the workspace's.
    pub rule: String,
    pub since: Option<DateTime<Utc>>,
    /// Empty: all.
    pub outcomes: Vec<Outcome>,
    /// 0: 100; at most 1000.
    pub limit: u32,
    pub page_token: String,
}

/// A page of events, newest first.
#[derive(Clone, Debug, Default)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// '' on the last page.
    pub next_page_token: String,
}

/// One upcoming fire time, in the rule's zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FireTime {
    pub at: DateTime<Utc>,
    /// RFC 3339 with the zone's offset.
    pub local: String,
    /// Set when a DST change moved or merged it.
    pub note: String,
}

/// What to preview: a stored rule, or a schedule not stored.
#[derive(Clone, Debug)]
pub enum PreviewOf {
    Rule(RuleRef),
    Schedule {
        workspace: String,
        input: ScheduleInput,
    },
}

/// See the module docs. The API's front for trigger rules, and what the passes share.
#[derive(Clone)]
pub struct Triggers {
    pub(crate) pool: DbPool,
    pub(crate) secrets: SecretBox,
    pub(crate) templates: Templates,
    pub(crate) hub: Arc<Hub>,
    /// The longest time between two passes (they also run when the next due time comes).
    pub(crate) interval: Duration,
}

impl Triggers {
    /// Rules stored in `pool`, secret override values sealed with `secrets`, firings run
    /// through `templates`, stops of overlapped runs handed to `hub`.
    pub fn new(pool: DbPool, secrets: SecretBox, templates: Templates, hub: Arc<Hub>) -> Self {
        Triggers {
            pool,
            secrets,
            templates,
            hub,
            interval: Duration::from_secs(1),
        }
    }

    /// Passes at least this often (default 1 s; at least 50 ms).
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(50));
        self
    }
}
