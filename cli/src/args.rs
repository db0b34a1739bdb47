//! The command line, declared with clap's derive API.
//!
//! This is the contract scripts rely on: flag names, value syntax and environment
//! variables are kept stable. Global flags (`--server`, `--token`, `-o`, ...) are accepted
//! before or after the subcommand. Values are parsed into their final types here (see
//! [`crate::values`]), so a bad value is a usage error that names its flag before anything
//! talks to the server.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use berth_common::proto;
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::values::{
    KeyValue, PriorityChange, SecretEnv, Setting, parse_cpus, parse_duration, parse_expiry,
    parse_key_value, parse_limit, parse_pids, parse_priority, parse_priority_change,
    parse_secret_env, parse_size,
};
use crate::values::{NetworkArg, parse_network};

mod notifications;
pub use self::notifications::{
    ChannelCommand, ChannelCreateArgs, ChannelUpdateArgs, DeliveriesArgs, ReactionCommand,
};
mod services;
pub use self::services::{
    CommandArg, PortArg, RestartArg, ServiceCommand, ServiceCreateArgs, ServiceDeployArgs,
    ServiceLogsArgs, ServiceRunArgs, ServiceSetArgs, ServiceSettingsArgs, parse_command,
    parse_port, parse_scale, split_words,
};
mod topics;
pub use self::topics::{
    Backoff, PolicyArg, StartArg, SubscriptionCommand, SubscriptionCreateArgs,
    SubscriptionSeekArgs, TopicCommand, TopicCreateArgs, TopicPublishArgs, TopicSubscribeArgs,
    parse_backoff, parse_json, parse_start,
};
mod triggers;
pub use self::triggers::{
    CatchupArg, Condition, OutcomeArg, OverlapArg, ResultArg, Since, TriggerCommand,
    TriggerCreateArgs, TriggerEventsArgs, parse_condition, parse_since,
};

/// The default server address: a server on this machine with its default port.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// `berth`: the command-line client for a Berth server.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "The command-line client for a Berth server",
    long_about = "The command-line client for a Berth server: manage API tokens, users, \
                  workspaces and workers, and submit, follow, inspect, list and cancel work \
                  requests.",
    arg_required_else_help = true
)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes, before or after the subcommand.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// The server's address (http:// or https://).
    #[arg(long, global = true, env = "BERTH_SERVER", value_name = "URL", default_value = DEFAULT_SERVER)]
    pub server: String,

    /// The API token. Prefer BERTH_TOKEN or --token-file: a flag's value is visible to
    /// other users of the machine in the process list.
    #[arg(
        long,
        global = true,
        env = "BERTH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// Read the API token from this file (surrounding whitespace is ignored). Takes
    /// precedence over BERTH_TOKEN.
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Trust this CA certificate (PEM) for the server's TLS certificate instead of the
    /// system's roots.
    #[arg(long, global = true, value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,

    /// Output format: aligned text for people, or one JSON object for programs. `logs`
    /// and `run` without --detach print the job's own output either way. (The long name
    /// is `--format`: `run --output` names files to collect.)
    #[arg(short = 'o', long = "format", global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Whether `token` came from BERTH_TOKEN rather than `--token`; set by [`Cli::parse_args`].
    #[arg(skip)]
    pub token_from_env: bool,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for lists, `key: value` lines for single objects.
    Table,
    /// One JSON object per command.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing would only obscure the clap definition"
)]
pub enum Command {
    /// Create, list, enable, disable and delete API tokens.
    #[command(subcommand, arg_required_else_help = true)]
    Token(TokenCommand),
    /// List and inspect workers; enable or disable them for new work.
    #[command(subcommand, arg_required_else_help = true)]
    Worker(WorkerCommand),
    /// Create, list, inspect, disable, enable and delete users (admins; anyone may look
    /// themselves up).
    #[command(subcommand, arg_required_else_help = true)]
    User(UserCommand),
    /// Create, list, inspect, configure and archive workspaces, and manage their members.
    #[command(subcommand, arg_required_else_help = true)]
    Workspace(WorkspaceCommand),
    /// Create, inspect, download, relate and delete artifacts: files with JSON data, kept
    /// in a workspace's file store.
    #[command(subcommand, arg_required_else_help = true)]
    Artifact(ArtifactCommand),
    /// Create collections of artifacts with a retention policy; add, remove and look up
    /// their items.
    #[command(subcommand, arg_required_else_help = true)]
    Collection(CollectionCommand),
    /// Named job specs with numbered releases: create, change (merging into the latest
    /// release), show, compare, roll back, list, archive and delete templates.
    #[command(subcommand, arg_required_else_help = true)]
    Template(TemplateCommand),
    /// Services: long-running replicas of a job template's release, scaled per process
    /// type, restarted with backoff, moved off lost workers and deployed one replica at a
    /// time.
    #[command(subcommand, arg_required_else_help = true)]
    Service(ServiceCommand),
    /// Trigger rules: run a template when a time comes (cron in a time zone, or an
    /// interval), an artifact is completed or a work request ends; every firing, skip and
    /// miss is an event.
    #[command(subcommand, arg_required_else_help = true)]
    Trigger(TriggerCommand),
    /// Notification channels: webhooks signed per Standard Webhooks, or email; the
    /// delivery log, redeliveries and test pings.
    #[command(subcommand, arg_required_else_help = true)]
    Channel(ChannelCommand),
    /// Reactions: notify a channel when a work request, workflow, template or service
    /// starts, succeeds, fails or completes.
    #[command(subcommand, arg_required_else_help = true)]
    Reaction(ReactionCommand),
    /// Topics: publish JSON messages and consume them through durable subscriptions with
    /// acks, store policies, retention and availability by ping/pong.
    #[command(subcommand, arg_required_else_help = true)]
    Topic(TopicCommand),
    /// Durable subscriptions of topics: create, list, show, delete and seek.
    #[command(subcommand, arg_required_else_help = true)]
    Subscription(SubscriptionCommand),
    /// Submit a work request: run IMAGE (with CMD ARGS... if given) on a worker.
    ///
    /// Without --detach, `run` follows the request as `docker run` does: the container's
    /// standard output goes to stdout (and nothing else does), its standard error to
    /// stderr, and Berth's own notes (lines starting with `[berth] `) to stderr too. Ctrl-C
    /// stops following without cancelling the request (`berth cancel ID` does that).
    #[command(after_help = RUN_EXIT_STATUS)]
    Run(RunArgs),
    /// Show one work request with its attempts.
    Get {
        /// The work request's id.
        id: String,
    },
    /// Print a work request's log: the container's stdout to stdout, its stderr and
    /// Berth's notes to stderr.
    Logs(LogsArgs),
    /// List work requests, newest first.
    List(ListArgs),
    /// Cancel a work request that has not completed (a running container is stopped).
    Cancel {
        /// The work request's id.
        id: String,
    },
    /// Decide a request submitted with `--unblock manual`: accept queues it (once its
    /// dependencies have completed), reject aborts it.
    Unblock(UnblockArgs),
    /// Queue a failed or aborted work request again; its next attempt gets the next
    /// number.
    Retry {
        /// The work request's id.
        id: String,
    },
    /// Change a work request's priority (admins only). The queue orders by base priority
    /// plus adjustment, highest first; the result must stay within -10000 to 10000.
    Priority(PriorityArgs),
    /// Show the pending queue in the order requests will be offered, with why each waits.
    Queue(QueueArgs),
    /// Submit workflows: DAGs of named steps, each a container that runs once the steps
    /// it needs have completed. `berth get ID` shows a workflow's steps.
    #[command(subcommand, arg_required_else_help = true)]
    Workflow(WorkflowCommand),
}

/// `berth workflow ...`
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Submit the workflow described in FILE (YAML, or JSON) and print its id (with -o
    /// json: the workflow with its steps). All steps are created or none is.
    #[command(after_help = WORKFLOW_FILE_HELP)]
    Submit(WorkflowSubmitArgs),
    /// Workflow templates: workflows stored by name in a workspace, with declared
    /// parameters. Every change makes a new numbered release (v1, v2, ...); a rollback
    /// makes a new release equal to an old one.
    #[command(subcommand, arg_required_else_help = true)]
    Template(WorkflowTemplateCommand),
    /// Run a workflow template (its latest release, or NAME@vK) with parameter values, and
    /// print the workflow's id (with -o json: the workflow with its steps).
    #[command(after_help = WORKFLOW_RUN_HELP)]
    Run(WorkflowRunArgs),
}

/// `berth workflow template ...`
#[derive(Debug, Subcommand)]
pub enum WorkflowTemplateCommand {
    /// Create a workflow template from FILE (a workflow file with a `parameters:` list)
    /// and print it with its release v1.
    #[command(after_help = WORKFLOW_TEMPLATE_FILE_HELP)]
    Create(WorkflowTemplateCreateArgs),
    /// Replace a workflow template's definition with FILE's, as a new release; the server
    /// writes what changed in its summary. A file that changes nothing is refused.
    #[command(after_help = WORKFLOW_TEMPLATE_FILE_HELP)]
    Set(WorkflowTemplateSetArgs),
    /// Show a workflow template's release (the latest, or NAME@vK): its parameters and
    /// steps, and with --diff what differs from another release.
    Show(WorkflowTemplateShowArgs),
    /// List a workflow template's releases, newest first, with their summaries.
    Releases(WorkflowTemplateReleasesArgs),
    /// Make a new release equal to release vK (history is kept: nothing is renumbered).
    Rollback(WorkflowTemplateRollbackArgs),
}

/// `berth workflow template create ...`
#[derive(Debug, Args)]
pub struct WorkflowTemplateCreateArgs {
    /// The template's name: lower-case letters, digits and '-', starting with a letter.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The workflow file (YAML, or JSON); see below.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Workspace of the template (default: the file's `workspace`, else default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
    /// What the template is for.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Stored with release v1.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// Create it inactive: it cannot be run until made active.
    #[arg(long)]
    pub inactive: bool,
}

/// `berth workflow template set ...`
#[derive(Debug, Args)]
pub struct WorkflowTemplateSetArgs {
    /// The template's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The new workflow file (YAML, or JSON): the whole definition, parameters and steps.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Workspace of the template (default: the file's `workspace`, else default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
    /// Refuse (ABORTED) unless the latest release is vN, so a change made meanwhile by
    /// someone else is not overwritten unseen.
    #[arg(long, value_name = "N", value_parser = parse_release)]
    pub expect_version: Option<u32>,
    /// Stored with the new release.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

/// `berth workflow template show ...`
#[derive(Debug, Args)]
pub struct WorkflowTemplateShowArgs {
    /// The template, `NAME` (its latest release) or `NAME@vK`.
    #[arg(value_name = "NAME[@vK]", value_parser = parse_template_reference)]
    pub template: (String, u32),
    /// Also show what differs from release vJ to this one.
    #[arg(long, value_name = "vJ", value_parser = parse_release)]
    pub diff: Option<u32>,
    /// Workspace of the template (default: default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
}

/// `berth workflow template releases ...`
#[derive(Debug, Args)]
pub struct WorkflowTemplateReleasesArgs {
    /// The template's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Workspace of the template (default: default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
    /// At most this many (1-1000; default: the server's, 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
}

/// `berth workflow template rollback ...`
#[derive(Debug, Args)]
pub struct WorkflowTemplateRollbackArgs {
    /// The template's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The release whose definition the new release takes: vK or K.
    #[arg(value_name = "vK", value_parser = parse_release)]
    pub version: u32,
    /// Workspace of the template (default: default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
    /// Refuse (ABORTED) unless the latest release is vN.
    #[arg(long, value_name = "N", value_parser = parse_release)]
    pub expect_version: Option<u32>,
    /// Stored with the new release.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

/// `berth workflow run ...`
#[derive(Debug, Args)]
pub struct WorkflowRunArgs {
    /// The workflow template, `NAME` (its latest release) or `NAME@vK`.
    #[arg(value_name = "NAME[@vK]", value_parser = parse_template_reference)]
    pub template: (String, u32),
    /// A parameter value, KEY=VALUE; repeat for more. Parameters not given take their
    /// default; a required one must be given.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Workspace of the template (default: default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
}

fn parse_release(text: &str) -> Result<u32, String> {
    crate::workflow::parse_version(text)
}

fn parse_template_reference(text: &str) -> Result<(String, u32), String> {
    crate::workflow::parse_reference(text)
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    crate::workflow::parse_param(text)
}

/// `berth workflow run --help`.
const WORKFLOW_RUN_HELP: &str = "\
Example:
  berth workflow run nightly --param tag=1.37 --param jobs=8
  berth workflow run nightly@v2
An unknown parameter, a missing required one or a value not of the parameter's type is
refused naming it.";

/// The workflow template file format, for `create` and `set`.
const WORKFLOW_TEMPLATE_FILE_HELP: &str = "\
File format: a workflow file (see `berth workflow submit --help`) with declared parameters,
named in any string field of a step as ${{ params.NAME }}:
  parameters:
    - name: tag                  # letters, digits and '_', starting with a letter
      type: string               # string (default) | integer | number | boolean
      default: \"1.36\"            # used when a run gives none
    - name: jobs
      type: integer
      required: true             # a run must give it (a required parameter has no default)
  steps:
    - name: build
      image: busybox:${{ params.tag }}
      command: [make, \"-j${{ params.jobs }}\"]
    - name: deploy
      template: web@v3           # a job template's release instead of an image
      needs: [build]
String fields take placeholders: image, command, env and secret values, workdir, network,
requires values, inputs, outputs and template. Typed ones (memory, cpus, pids, timeouts,
priority, pull) cannot. `name`, if given, must be the template's.";

/// `berth workflow submit ...`
#[derive(Debug, Args)]
pub struct WorkflowSubmitArgs {
    /// The workflow file: `*.json` is read as JSON, anything else as YAML (or as JSON if
    /// it starts with `{`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Workspace to submit to (default: the file's `workspace`, else default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
}

/// The workflow file format, for `berth workflow submit --help`.
const WORKFLOW_FILE_HELP: &str = "\
File format (YAML shown; JSON with the same keys works too):
  name: release                  # the workflow's name
  workspace: default             # optional; --workspace overrides it
  steps:
    - name: build                # unique; letters, digits, '.', '_', '-'
      image: busybox:1.36        # required, unless `template` is given
      template: web@v3           # instead of image: a job template's release
      command: [sh, -c, make]    # optional
      env: {MODE: release}       # string values (quote numbers)
      secret_env_from: [TOKEN]   # values from berth's own environment, never the file
      memory: 512M               # or bytes
      cpus: 2
      pids: 256
      timeout: 30m
      grace_period: 10s
      network: build
      pull: if-not-present       # always | if-not-present | never
      workdir: /src
      requires: {arch: amd64}    # worker labels
      priority: 0                # -1000 to 1000
      allow_failure: false       # true: dependants run and the workflow is not failed by it
    - name: test
      image: busybox:1.36
      needs: [build]             # starts once build has completed successfully
Unknown keys are refused. A step whose need fails is aborted (reason dependency-failed).";

/// `berth priority ...`
#[derive(Debug, Args)]
pub struct PriorityArgs {
    /// The work request's id.
    pub id: String,
    /// `+N` raises the adjustment by N, `-N` lowers it by N; `N` or `=N` (`=-N` for a
    /// negative one) sets it.
    #[arg(value_name = "[+|-|=]N", allow_negative_numbers = true, value_parser = parse_priority_change)]
    pub change: PriorityChange,
}

/// `berth queue ...`
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Only requests in this workspace (their positions still count the whole queue).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
    /// At most this many entries (1-1000; default: the server's, 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
}

/// The exit statuses of `berth run` without --detach, for its help.
const RUN_EXIT_STATUS: &str = "\
Exit status (without --detach):
  0-255  the container's exit code (a code outside 0-255 becomes 255)
  124    timed out (the container was stopped by Berth)
  125    Berth could not run it (result `error`, e.g. the image could not be pulled), or
         berth itself failed (server refused the request, lost the connection for a minute)
  130    the request was cancelled, or following was stopped with Ctrl-C
  137    killed for lack of memory, and the container left no exit code
  2      the command line is wrong (nothing was submitted)
Whenever the status is not the container's own, one `error:` line on stderr says why.
With --detach: 0 once submitted, 125 if nothing was submitted (the server refused the
request or could not be reached, as without --detach), 2 for a usage error.";

/// `berth token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token. Its secret is printed once and cannot be shown again.
    Create(TokenCreateArgs),
    /// List tokens (never their secrets).
    List,
    /// Re-enable a disabled token.
    Enable {
        /// The token's id.
        id: String,
    },
    /// Disable a token: every later call with it is refused.
    Disable {
        /// The token's id.
        id: String,
    },
    /// Delete a token for good.
    Delete {
        /// The token's id.
        id: String,
    },
}

/// `berth token create ...`
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The role the token grants.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// For admin and user tokens: the user it belongs to (default: you; `--for USER` says
    /// the same). For worker tokens: the name the worker registers as (default: the worker
    /// chooses).
    #[arg(long, visible_alias = "for", value_name = "NAME")]
    pub name: Option<String>,
    /// Free text to remember what the token is for.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// How long the token is valid, e.g. 30d or 12h (default: it does not expire).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub expires_in: Option<Duration>,
}

/// A role, as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Full control.
    Admin,
    /// Submits and follows work requests.
    User,
    /// A build host's worker daemon.
    Worker,
}

impl From<RoleArg> for proto::Role {
    fn from(role: RoleArg) -> proto::Role {
        match role {
            RoleArg::Admin => proto::Role::Admin,
            RoleArg::User => proto::Role::User,
            RoleArg::Worker => proto::Role::Worker,
        }
    }
}

/// `berth user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user with no tokens and no workspace roles.
    Create {
        /// The user's name: 1-63 letters, digits, '.', '_' and '-'.
        name: String,
        /// Make the user a server admin (only admin users may hold admin tokens).
        #[arg(long)]
        admin: bool,
    },
    /// List every user with their workspace roles.
    List,
    /// Show one user (default: you); users may only look themselves up.
    Get {
        /// The user's name.
        name: Option<String>,
    },
    /// Disable a user: every token of theirs is refused at once and their open streams end.
    Disable {
        /// The user's name.
        name: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user's name.
        name: String,
    },
    /// Delete a user with their tokens and memberships; refused for a user who submitted
    /// work requests (disable them instead).
    Delete {
        /// The user's name.
        name: String,
    },
}

/// `berth workspace ...`
#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace (admins).
    Create(WorkspaceCreateArgs),
    /// List the workspaces you may see (admins: all).
    List {
        /// Also list archived workspaces.
        #[arg(long)]
        all: bool,
    },
    /// Show one workspace with its settings and how many of its requests wait and run.
    Get {
        /// The workspace's name.
        name: String,
    },
    /// Change a workspace's settings (owners: --public and --default-expiry; admins also
    /// the limits and the weight).
    Set(WorkspaceSetArgs),
    /// Archive a workspace for good: it takes no new work requests, its history stays
    /// readable.
    Archive {
        /// The workspace's name.
        name: String,
    },
    /// Add, change or remove members, or list them.
    #[command(subcommand, arg_required_else_help = true)]
    Member(MemberCommand),
}

/// `berth workspace create ...`
#[derive(Debug, Args)]
pub struct WorkspaceCreateArgs {
    /// The name: 1-63 lowercase letters, digits and '-', starting with a letter or digit.
    pub name: String,
    /// Let every user read it, not only its members.
    #[arg(long)]
    pub public: bool,
    /// How long its artifacts are kept unless they say otherwise, e.g. 30d (default: for
    /// ever).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub default_expiry: Option<Duration>,
}

/// `berth workspace set ...`
#[derive(Debug, Args)]
#[command(arg_required_else_help = true)]
pub struct WorkspaceSetArgs {
    /// The workspace's name.
    pub name: String,
    /// Make it readable by every user (true) or by its members only (false).
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
    pub public: Option<bool>,
    /// A new default expiry, e.g. 30d, or `never`.
    #[arg(long, value_name = "DURATION|never", value_parser = parse_expiry)]
    pub default_expiry: Option<Setting<Duration>>,
    /// At most this many of its requests run at once, or `none` (admins).
    #[arg(long, value_name = "N|none", value_parser = parse_limit)]
    pub max_running: Option<Setting<u32>>,
    /// At most this many of its requests wait at once, or `none` (admins).
    #[arg(long, value_name = "N|none", value_parser = parse_limit)]
    pub max_pending: Option<Setting<u32>>,
    /// Its fair-share weight, 1-1000 (admins).
    #[arg(long, value_name = "W")]
    pub weight: Option<u32>,
}

/// `berth workspace member ...`
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a user to a workspace in a role, or change their role.
    Add {
        /// The workspace's name.
        workspace: String,
        /// The user's name.
        user: String,
        /// Their role.
        #[arg(long, value_enum)]
        role: WorkspaceRoleArg,
    },
    /// Remove a user from a workspace.
    Rm {
        /// The workspace's name.
        workspace: String,
        /// The user's name.
        user: String,
    },
    /// List a workspace's members.
    List {
        /// The workspace's name.
        workspace: String,
    },
}

/// A workspace role, as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WorkspaceRoleArg {
    /// Reads the workspace's requests, logs and settings.
    Viewer,
    /// Also submits, cancels and retries requests.
    Contributor,
    /// Also manages members and settings.
    Owner,
}

impl From<WorkspaceRoleArg> for proto::WorkspaceRole {
    fn from(role: WorkspaceRoleArg) -> proto::WorkspaceRole {
        match role {
            WorkspaceRoleArg::Viewer => proto::WorkspaceRole::Viewer,
            WorkspaceRoleArg::Contributor => proto::WorkspaceRole::Contributor,
            WorkspaceRoleArg::Owner => proto::WorkspaceRole::Owner,
        }
    }
}

/// `berth worker ...`
#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// List all registered workers.
    List,
    /// Show one worker.
    Get {
        /// The worker's name.
        name: String,
    },
    /// Let a worker receive new work again.
    Enable {
        /// The worker's name.
        name: String,
    },
    /// Stop sending new work to a worker; what it runs goes on.
    Disable {
        /// The worker's name.
        name: String,
    },
    /// Drain a worker: it finishes what it runs and takes nothing new; `enable` ends it.
    Drain {
        /// The worker's name.
        name: String,
    },
    /// Let a worker take only some workspaces' requests (`--workspace`, repeatable), or
    /// every workspace's again (`--any`).
    Restrict {
        /// The worker's name.
        name: String,
        /// A workspace whose requests it takes (repeatable).
        #[arg(
            long = "workspace",
            value_name = "WORKSPACE",
            required_unless_present = "any"
        )]
        workspaces: Vec<String>,
        /// Lift the restriction: it serves every workspace.
        #[arg(long, conflicts_with = "workspaces")]
        any: bool,
    },
}

/// `berth run ...`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The image to run, e.g. busybox:1.36 (not with --template, whose release names it:
    /// there the first word is the command's).
    #[arg(value_name = "IMAGE", required_unless_present = "template")]
    pub image: Option<String>,

    /// Run a job template's release instead of an image: NAME for the latest, NAME@vK
    /// for release K. Only --env, --secret-env, --memory, --cpus, --timeout, --priority
    /// and the command change what it runs.
    #[arg(
        long,
        value_name = "NAME[@vK]",
        conflicts_with_all = [
            "pids", "grace_period", "network", "pull", "workdir", "require", "after",
            "unblock", "manual", "allow_failure", "retries", "retry_backoff", "inputs",
            "outputs", "output_category",
        ]
    )]
    pub template: Option<String>,

    /// The command and its arguments; without them the image's default command runs.
    /// Put them after `--` when they start with `-` (the first word not taken as a flag
    /// of `run` starts the command, as in `docker run`).
    #[arg(value_name = "CMD", trailing_var_arg = true)]
    pub command: Vec<String>,

    /// Set an environment variable in the container (repeatable).
    #[arg(short = 'e', long = "env", value_name = "K=V", value_parser = parse_key_value)]
    pub env: Vec<KeyValue>,

    /// Set a secret environment variable (repeatable). Its value reaches the container but
    /// is stored encrypted and never shown again. `--secret-env K` (without `=`) takes the
    /// value from this command's own environment variable K, so the secret need not appear
    /// on the command line, in shell history or in the process list.
    #[arg(long = "secret-env", value_name = "K[=V]", value_parser = parse_secret_env)]
    pub secret_env: Vec<SecretEnv>,

    /// Memory limit (swap is limited to the same), e.g. 256M, 1G, 512MiB; K/M/G/T are
    /// powers of 1024.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,

    /// CPU limit in CPUs, e.g. 0.5 or 2.
    #[arg(long, value_name = "N", value_parser = parse_cpus)]
    pub cpus: Option<f64>,

    /// Maximum number of processes in the container.
    #[arg(long, value_name = "N", value_parser = parse_pids)]
    pub pids: Option<i64>,

    /// Wall-clock limit, e.g. 30s, 10m, 2h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// Time between SIGTERM and SIGKILL when the container is cancelled or times out.
    #[arg(long = "grace-period", value_name = "DURATION", value_parser = parse_duration)]
    pub grace_period: Option<Duration>,

    /// Docker network to join (default: none, no network), with DNS aliases there
    /// (repeatable: the first is the container's network, the others are joined too).
    #[arg(long, value_name = "NAME[:ALIAS,...]", value_parser = parse_network)]
    pub network: Vec<NetworkArg>,

    /// When the worker pulls the image (default: if-not-present).
    #[arg(long, value_enum, value_name = "POLICY")]
    pub pull: Option<PullArg>,

    /// Absolute working directory inside the container (default: the image's).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,

    /// Only run on a worker with this label (repeatable).
    #[arg(long = "require", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub require: Vec<KeyValue>,

    /// Base priority, -1000 to 1000 (default 0, or the template's); higher runs first.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_priority)]
    pub priority: Option<i32>,

    /// Workspace to submit to (default: default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,

    /// Run only after this work request has completed (repeatable). If it fails or is
    /// aborted, this one is aborted too, unless it was submitted with --allow-failure.
    #[arg(long = "after", value_name = "ID")]
    pub after: Vec<String>,

    /// How this request leaves `blocked`: when its dependencies are done (deps), or when
    /// someone accepts it with `berth unblock ID --accept` (manual).
    #[arg(long, value_enum, value_name = "HOW", conflicts_with = "manual")]
    pub unblock: Option<UnblockArg>,

    /// Shorthand for `--unblock manual`.
    #[arg(long)]
    pub manual: bool,

    /// Let requests that run --after this one run even if this one fails.
    #[arg(long)]
    pub allow_failure: bool,

    /// Retry automatically up to N times (0-10) when the job fails (non-zero exit,
    /// timeout, out of memory).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: Option<u32>,

    /// Wait before an automatic retry, doubling each time (default 1s, at most 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub retry_backoff: Option<Duration>,

    /// Mount an artifact read-only at /in/MOUNT (repeatable). ARTIFACT is an artifact id
    /// or COLLECTION/ITEM (then MOUNT is required); MOUNT defaults to the artifact id.
    #[arg(long = "input", value_name = "ARTIFACT[:MOUNT]", value_parser = parse_input)]
    pub inputs: Vec<InputArg>,

    /// Collect PATH (relative to --workdir, globs allowed) into an artifact after the
    /// container exits (repeatable); `:always` collects it whatever the exit code,
    /// `:success` (the default) only after exit code 0.
    #[arg(long = "output", value_name = "PATH[:WHEN]", value_parser = parse_output)]
    pub outputs: Vec<OutputArg>,

    /// The category of the collected artifact (default: output).
    #[arg(long = "output-category", value_name = "CATEGORY")]
    pub output_category: Option<String>,

    /// Print the work request's id (with -o json: the whole request) and return at once,
    /// instead of following its output.
    #[arg(short = 'd', long)]
    pub detach: bool,
}

/// One `--input`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputArg {
    /// An artifact id or COLLECTION/ITEM.
    pub artifact: String,
    /// Relative to /in; empty for the default.
    pub mount: String,
}

fn parse_input(text: &str) -> Result<InputArg, String> {
    // Artifact ids and collection names hold no `:`, an item name may: the mount is
    // what follows the last one.
    let (artifact, mount) = match text.rsplit_once(':') {
        Some((artifact, mount)) => (artifact, mount),
        None => (text, ""),
    };
    if artifact.is_empty() {
        return Err("give an artifact id or COLLECTION/ITEM before the `:`".into());
    }
    Ok(InputArg {
        artifact: artifact.to_owned(),
        mount: mount.to_owned(),
    })
}

/// One `--output`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputArg {
    /// A path or glob relative to the working directory.
    pub path: String,
    /// Collect it whatever the exit code.
    pub always: bool,
}

fn parse_output(text: &str) -> Result<OutputArg, String> {
    let (path, always) = match text.rsplit_once(':') {
        Some((path, "always")) => (path, true),
        Some((path, "success")) => (path, false),
        _ => (text, false),
    };
    if path.is_empty() {
        return Err("give a path relative to the working directory, e.g. dist/**".into());
    }
    Ok(OutputArg {
        path: path.to_owned(),
        always,
    })
}

/// `berth unblock ...`
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("decision").required(true).args(["accept", "reject"]))]
pub struct UnblockArgs {
    /// The work request's id.
    pub id: String,
    /// Accept it: it is queued.
    #[arg(long)]
    pub accept: bool,
    /// Reject it: it is aborted (and so are the requests waiting on it).
    #[arg(long)]
    pub reject: bool,
}

/// How a request submitted with `--after` or `--manual` leaves `blocked`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UnblockArg {
    /// When every dependency has completed.
    Deps,
    /// When someone runs `berth unblock ID --accept` (after the dependencies completed).
    Manual,
}

/// `berth logs ...`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The work request's id.
    pub id: String,
    /// Keep printing new output until the request completes or is cancelled.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only this attempt (1 for the first; default: every attempt, oldest first).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub attempt: Option<u32>,
}

/// An image pull policy, as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PullArg {
    /// Pull before every run.
    Always,
    /// Pull only when the worker lacks the image.
    IfNotPresent,
    /// Never pull; fail if the image is missing.
    Never,
}

impl From<PullArg> for proto::PullPolicy {
    fn from(pull: PullArg) -> proto::PullPolicy {
        match pull {
            PullArg::Always => proto::PullPolicy::Always,
            PullArg::IfNotPresent => proto::PullPolicy::IfNotPresent,
            PullArg::Never => proto::PullPolicy::Never,
        }
    }
}

/// `berth list ...`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only requests in this status.
    #[arg(long, value_enum, value_name = "S")]
    pub status: Option<StatusArg>,
    /// Only requests in this workspace.
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
    /// At most this many requests (1-1000; default: the server's, 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Continue after a previous page: the `next_page_token` it printed.
    #[arg(long, value_name = "TOKEN")]
    pub page_token: Option<String>,
}

/// A work request status, as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    /// Waiting for dependencies or approval.
    Blocked,
    /// Queued, waiting for a worker.
    Pending,
    /// Running on a worker.
    Running,
    /// Finished (successfully or not).
    Completed,
    /// Cancelled before it completed.
    Aborted,
}

impl From<StatusArg> for proto::WorkRequestStatus {
    fn from(status: StatusArg) -> proto::WorkRequestStatus {
        match status {
            StatusArg::Blocked => proto::WorkRequestStatus::Blocked,
            StatusArg::Pending => proto::WorkRequestStatus::Pending,
            StatusArg::Running => proto::WorkRequestStatus::Running,
            StatusArg::Completed => proto::WorkRequestStatus::Completed,
            StatusArg::Aborted => proto::WorkRequestStatus::Aborted,
        }
    }
}

impl Cli {
    /// Parses a command line (the program name first), noting where the token came from.
    pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Cli::parse_args_with(Cli::command(), args)
    }

    /// [`Cli::parse_args`] with a given clap command (tests change its environment names).
    fn parse_args_with<I, T>(command: clap::Command, args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut matches = command.try_get_matches_from(args)?;
        // Read before `from_arg_matches_mut`, which takes the values out of `matches`.
        let token_from_env = matches.value_source("token") == Some(ValueSource::EnvVariable);
        let mut cli = Cli::from_arg_matches_mut(&mut matches)?;
        cli.global.token_from_env = token_from_env;
        Ok(cli)
    }
}

/// Also used by the tests of the commands, which start from a parsed command line.
/// `berth artifact ...`
#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// Create an artifact from files and directories and upload what the store lacks.
    ///
    /// A file is stored under its name; a directory's contents are stored under their
    /// paths inside it (the directory's own name is not part of them). Symlinks are
    /// recorded as symlinks, never followed. Files the workspace already holds are not
    /// sent again. An interrupted upload resumes when the same command is run again.
    Create(ArtifactCreateArgs),
    /// Show one artifact with its files and relations.
    Get {
        /// The artifact's id.
        id: String,
    },
    /// List a workspace's artifacts, newest first.
    List(ArtifactListArgs),
    /// Download an artifact's files (or one of them) into a directory, checking each
    /// file's SHA-256.
    Download {
        /// The artifact's id.
        id: String,
        /// Only this file (its path in the artifact).
        path: Option<String>,
        /// Where to put the files (created if missing). (`-o` is the output format, as
        /// for every command.)
        #[arg(short = 'd', long = "dir", value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// Relate an artifact to another: FROM extends | relates-to | built-using TO.
    Relate {
        /// The source artifact's id.
        from: String,
        /// The kind of relation.
        #[arg(value_enum)]
        kind: RelationArg,
        /// The target artifact's id.
        to: String,
        /// Remove the relation instead.
        #[arg(long)]
        remove: bool,
    },
    /// Delete an artifact now (refused while a collection holds it or an unfinished work
    /// request takes it as input).
    Delete {
        /// The artifact's id.
        id: String,
    },
    /// Change when an artifact expires: a duration from now, e.g. 7d, or `never`.
    Expire {
        /// The artifact's id.
        id: String,
        /// How long from now, or `never`.
        #[arg(value_name = "DURATION|never", value_parser = parse_expiry)]
        expire: Setting<Duration>,
    },
}

/// `berth artifact create ...`
#[derive(Debug, Args)]
pub struct ArtifactCreateArgs {
    /// Its category: a slug such as package, test-report or output.
    #[arg(long, value_name = "C")]
    pub category: String,
    /// Workspace (default: default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
    /// Its data: a JSON object.
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,
    /// When it expires: a duration from now, e.g. 7d, or `never` (default: the
    /// workspace's default expiry).
    #[arg(long, value_name = "DURATION|never", value_parser = parse_expiry)]
    pub expire: Option<Setting<Duration>>,
    /// The files and directories to put in it.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// `berth artifact list ...`
#[derive(Debug, Args)]
pub struct ArtifactListArgs {
    /// Workspace (default: default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
    /// Only this category.
    #[arg(long, value_name = "C")]
    pub category: Option<String>,
    /// Only those made by this user.
    #[arg(long, value_name = "USER")]
    pub created_by: Option<String>,
    /// Only those made by this work request.
    #[arg(long, value_name = "ID")]
    pub work_request: Option<String>,
    /// Only the active items of this collection.
    #[arg(long, value_name = "NAME")]
    pub collection: Option<String>,
    /// Also those whose upload is not finished.
    #[arg(long)]
    pub incomplete: bool,
    /// At most this many (1-1000, default 100).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Continue after a previous page (its `next_page_token`).
    #[arg(long, value_name = "TOKEN")]
    pub page_token: Option<String>,
}

/// A relation between artifacts, as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RelationArg {
    /// FROM adds to TO (a later version, more files).
    Extends,
    /// FROM is about TO (a report on a package).
    RelatesTo,
    /// FROM was built from TO.
    BuiltUsing,
}

impl From<RelationArg> for proto::ArtifactRelationKind {
    fn from(kind: RelationArg) -> proto::ArtifactRelationKind {
        match kind {
            RelationArg::Extends => proto::ArtifactRelationKind::Extends,
            RelationArg::RelatesTo => proto::ArtifactRelationKind::RelatesTo,
            RelationArg::BuiltUsing => proto::ArtifactRelationKind::BuiltUsing,
        }
    }
}

/// `berth collection ...`
#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Create a collection of artifacts of one category, with a retention policy.
    Create(CollectionCreateArgs),
    /// Show a collection and its active items (and, with --history, removed ones).
    Get {
        /// The collection's name.
        name: String,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
        /// Also show removed items.
        #[arg(long)]
        history: bool,
    },
    /// List a workspace's collections.
    List {
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Change a collection's retention policy (what is not given stays as it is).
    Set(CollectionSetArgs),
    /// Add an artifact to a collection under an item name.
    Add {
        /// The collection's name.
        collection: String,
        /// The item name.
        name: String,
        /// The artifact's id.
        artifact: String,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
        /// Keep it whatever the retention policy says.
        #[arg(long)]
        pin: bool,
        /// Replace the active item of that name, if there is one.
        #[arg(long)]
        replace: bool,
    },
    /// Remove an item from a collection (it stays in the history).
    Rm {
        /// The collection's name.
        collection: String,
        /// The item name.
        name: String,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Show the active item of a name.
    Lookup {
        /// The collection's name.
        collection: String,
        /// The item name.
        name: String,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
}

/// `berth collection create ...`
#[derive(Debug, Args)]
pub struct CollectionCreateArgs {
    /// The name: 1-63 lowercase letters, digits and '-'.
    pub name: String,
    /// The category of artifacts it holds.
    #[arg(long, value_name = "C")]
    pub category: String,
    /// Workspace (default: default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
    /// Keep the newest this many unpinned items (pinned ones do not count).
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep items younger than this, e.g. 30d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub keep_for: Option<Duration>,
    /// How long removed items keep their artifacts (default 30d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub history: Option<Duration>,
    /// After that, how long removed items stay as metadata (default 365d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub metadata: Option<Duration>,
}

/// `berth collection set ...`
#[derive(Debug, Args)]
#[command(arg_required_else_help = true)]
pub struct CollectionSetArgs {
    /// The collection's name.
    pub name: String,
    /// Workspace (default: default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
    /// Keep the newest this many unpinned items, or `none`.
    #[arg(long, value_name = "N|none", value_parser = parse_limit)]
    pub keep_last: Option<Setting<u32>>,
    /// Keep items younger than this, or `never` for no age limit.
    #[arg(long, value_name = "DURATION|never", value_parser = parse_expiry)]
    pub keep_for: Option<Setting<Duration>>,
    /// How long removed items keep their artifacts.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub history: Option<Duration>,
    /// After that, how long removed items stay as metadata.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub metadata: Option<Duration>,
}

/// `berth template ...`
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Create a job template; its spec becomes release v1. Flags are those of `berth run`.
    Create(TemplateCreateArgs),
    /// Change a template: the flags given are merged into the latest release as a new
    /// release; everything not named is kept.
    Set(TemplateSetArgs),
    /// Show a template with its latest release, or one release (NAME@vK), optionally
    /// compared with another version.
    Show {
        /// NAME, or NAME@vK for release K.
        #[arg(value_name = "NAME[@vK]")]
        template: String,
        /// Compare with this version (the older side), e.g. v2.
        #[arg(long, value_name = "vJ", value_parser = parse_version)]
        diff: Option<u32>,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
    /// List a template's releases, newest first.
    Releases {
        /// The template's name.
        name: String,
        /// At most this many (default: 100).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// Only releases older than this version, e.g. v20 (for paging).
        #[arg(long, value_name = "vK", value_parser = parse_version)]
        before: Option<u32>,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Make a new release equal to release vK; history is kept as it is.
    Rollback {
        /// The template's name.
        name: String,
        /// The version to restore, e.g. v2.
        #[arg(value_name = "vK", value_parser = parse_version)]
        version: u32,
        /// Only if the latest release is still this version, e.g. v5.
        #[arg(long, value_name = "vN", value_parser = parse_version)]
        expect_version: Option<u32>,
        /// Why, kept with the release.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
    /// List a workspace's templates by name.
    List {
        /// Also list archived templates.
        #[arg(long)]
        all: bool,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Archive a template: hidden from lists, it can be neither run nor changed
    /// (--restore undoes it). Its releases are kept.
    Archive {
        /// The template's name.
        name: String,
        /// Undo an archive.
        #[arg(long)]
        restore: bool,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Delete a template and its releases; one that unfinished work requests were made
    /// from is archived instead.
    Delete {
        /// The template's name.
        name: String,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
    /// What the runs of a template did: runs, successes, failures, durations.
    Stats {
        /// The template's name.
        name: String,
        /// Only runs submitted within this long, e.g. 7d (default: the server's, 7d).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        since: Option<Duration>,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
}

/// A version as written on the command line: `v3` or `3`.
pub fn parse_version(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix('v').unwrap_or(text);
    match digits.parse::<u32>() {
        Ok(0) | Err(_) => Err(format!(
            "{text:?} is not a version; write v1, v2, ... (or 1, 2, ...)"
        )),
        Ok(version) => Ok(version),
    }
}

/// The spec flags `template create` and `template set` share, as `berth run` spells
/// them.
#[derive(Debug, Args)]
pub struct TemplateSpecArgs {
    /// The command and its arguments, after `--` (without them the image's default
    /// command runs).
    #[arg(value_name = "CMD", last = true)]
    pub command: Vec<String>,
    /// Set an environment variable (repeatable).
    #[arg(short = 'e', long = "env", value_name = "K=V", value_parser = parse_key_value)]
    pub env: Vec<KeyValue>,
    /// Set a secret environment variable (repeatable); `--secret-env K` takes the value
    /// from this command's own environment. Stored encrypted, never shown.
    #[arg(long = "secret-env", value_name = "K[=V]", value_parser = parse_secret_env)]
    pub secret_env: Vec<SecretEnv>,
    /// Absolute working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Memory limit, e.g. 512M, 2G.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// CPU limit in CPUs, e.g. 0.5 or 2.
    #[arg(long, value_name = "N", value_parser = parse_cpus)]
    pub cpus: Option<f64>,
    /// Maximum number of processes in the container.
    #[arg(long, value_name = "N", value_parser = parse_pids)]
    pub pids: Option<i64>,
    /// Wall-clock limit, e.g. 30s, 10m, 2h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    #[arg(long = "grace-period", value_name = "DURATION", value_parser = parse_duration)]
    pub grace_period: Option<Duration>,
    /// A Docker network to attach, with aliases (repeatable); in `set`, the list given
    /// replaces the template's networks.
    #[arg(long = "network", value_name = "NAME[:ALIAS,...]", value_parser = parse_network)]
    pub networks: Vec<NetworkArg>,
    /// When the worker pulls the image.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub pull: Option<PullArg>,
    /// Only run on a worker with this label (repeatable).
    #[arg(long = "require", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub require: Vec<KeyValue>,
    /// Base priority, -1000 to 1000.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_priority)]
    pub priority: Option<i32>,
    /// Retry automatically up to N times (0-10) when the job fails.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: Option<u32>,
    /// Wait before an automatic retry, doubling each time.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub retry_backoff: Option<Duration>,
    /// Mount an artifact (an id or COLLECTION/ITEM, resolved at each run) at /in/MOUNT
    /// (repeatable); in `set`, the list given replaces the template's inputs.
    #[arg(long = "input", value_name = "ARTIFACT[:MOUNT]", value_parser = parse_input)]
    pub inputs: Vec<InputArg>,
    /// Collect PATH after the container exits (repeatable); in `set`, the list given
    /// replaces the template's outputs.
    #[arg(long = "output", value_name = "PATH[:WHEN]", value_parser = parse_output)]
    pub outputs: Vec<OutputArg>,
    /// The category of the collected artifact.
    #[arg(long = "output-category", value_name = "CATEGORY")]
    pub output_category: Option<String>,
    /// Why, kept with the release.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// Workspace (default: default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
}

/// `berth template create ...`
#[derive(Debug, Args)]
#[command(arg_required_else_help = true)]
pub struct TemplateCreateArgs {
    /// The template's name: a-z, 0-9 and single dashes; `""` picks a readable random name.
    pub name: String,
    /// The image to run, e.g. busybox:1.36.
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    /// What the template is for.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Create it inactive: it cannot be run until `template set NAME --active`.
    #[arg(long)]
    pub inactive: bool,
    #[command(flatten)]
    pub spec: TemplateSpecArgs,
}

/// `berth template set ...`
#[derive(Debug, Args)]
#[command(arg_required_else_help = true)]
pub struct TemplateSetArgs {
    /// The template's name.
    pub name: String,
    /// A new image.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Remove an environment or secret environment variable (repeatable).
    #[arg(long, value_name = "KEY")]
    pub unset: Vec<String>,
    /// Remove a worker label requirement (repeatable).
    #[arg(long = "unset-require", value_name = "KEY")]
    pub unset_require: Vec<String>,
    /// Reset a field to the server's default or empty it (repeatable): command, env,
    /// secret_env, working_dir, memory_bytes, cpus, pids_limit, timeout,
    /// stop_grace_period, networks, pull_policy, requirements, priority, retries,
    /// retry_backoff, inputs, outputs, output_category.
    #[arg(long, value_name = "FIELD")]
    pub reset: Vec<String>,
    /// Only if the latest release is still this version, e.g. v3.
    #[arg(long, value_name = "vN", value_parser = parse_version)]
    pub expect_version: Option<u32>,
    /// A new description (not a release: it does not change what runs).
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Let the template be run again.
    #[arg(long, conflicts_with = "inactive")]
    pub active: bool,
    /// Stop the template from being run.
    #[arg(long)]
    pub inactive: bool,
    #[command(flatten)]
    pub spec: TemplateSpecArgs,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `berth <line>`, parsed; panics if clap refuses it.
    pub(crate) fn parse(line: &[&str]) -> Cli {
        let args = std::iter::once("berth").chain(line.iter().copied());
        match Cli::parse_args(args) {
            Ok(cli) => cli,
            Err(e) => panic!("{line:?} should parse: {e}"),
        }
    }

    /// The arguments of `berth <line>`, which must be a `run`.
    pub(crate) fn run_args(line: &[&str]) -> RunArgs {
        match parse(line).command {
            Command::Run(run) => run,
            other => panic!("expected run, got {other:?}"),
        }
    }

    fn refused(line: &[&str]) -> clap::Error {
        let args = std::iter::once("berth").chain(line.iter().copied());
        match Cli::parse_args(args) {
            Ok(cli) => panic!("{line:?} should be refused, got {cli:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn run_takes_a_template_instead_of_an_image_and_refuses_what_it_fixes() {
        let run = run_args(&[
            "run",
            "--template",
            "build@v2",
            "--memory",
            "2G",
            "--",
            "make",
            "-j",
        ]);
        assert_eq!(run.template.as_deref(), Some("build@v2"));
        // With a template the first word is the command's.
        assert_eq!(run.image.as_deref(), Some("make"));
        assert_eq!(run.command, ["-j"]);
        assert!(run_args(&["run", "--template", "build"]).image.is_none());
        refused(&["run"]);
        for flag in [
            ["--pids", "5"],
            ["--network", "x"],
            ["--workdir", "/w"],
            ["--after", "x"],
        ] {
            let mut line = vec!["run", "--template", "build"];
            line.extend(flag);
            let e = refused(&line);
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{flag:?}"
            );
        }
    }

    #[test]
    fn run_networks_repeat_with_aliases() {
        let run = run_args(&[
            "run",
            "--network",
            "front:web,www",
            "--network",
            "back",
            "busybox",
        ]);
        assert_eq!(
            run.network,
            [
                parse_network("front:web,www").expect("valid"),
                parse_network("back").expect("valid")
            ]
        );
        assert_eq!(run.network[0].aliases, ["web", "www"]);
    }

    #[test]
    fn the_clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_the_command_after_double_dash() {
        let run = run_args(&[
            "run", "busybox", "--env", "A=1", "--", "sh", "-c", "echo hi",
        ]);
        assert_eq!(run.image.as_deref(), Some("busybox"));
        assert_eq!(run.command, ["sh", "-c", "echo hi"]);
        assert_eq!(
            run.env,
            [KeyValue {
                key: "A".into(),
                value: "1".into()
            }]
        );
        assert!(!run.detach);
    }

    #[test]
    fn run_takes_the_command_without_double_dash_like_docker() {
        let run = run_args(&["run", "--detach", "busybox", "ls", "-l", "--env", "X"]);
        assert_eq!(run.command, ["ls", "-l", "--env", "X"]);
        assert!(run.env.is_empty());
        assert!(run.detach);
    }

    #[test]
    fn run_without_a_command_uses_the_images() {
        assert!(run_args(&["run", "busybox"]).command.is_empty());
    }

    #[test]
    fn run_parses_every_flag() {
        let run = run_args(&[
            "run",
            "busybox:1.36",
            "--env",
            "A=1",
            "-e",
            "B=2",
            "--secret-env",
            "TOKEN=x",
            "--secret-env",
            "FROM_ENV",
            "--memory",
            "256M",
            "--cpus",
            "0.5",
            "--pids",
            "64",
            "--timeout",
            "30s",
            "--grace-period",
            "10s",
            "--network",
            "build",
            "--pull",
            "if-not-present",
            "--workdir",
            "/src",
            "--require",
            "arch=amd64",
            "--priority",
            "-5",
            "--workspace",
            "team",
            "--detach",
            "--",
            "make",
        ]);
        assert_eq!(run.env.len(), 2);
        assert_eq!(
            run.secret_env,
            [
                parse_secret_env("TOKEN=x").expect("should succeed"),
                parse_secret_env("FROM_ENV").expect("should succeed")
            ]
        );
        assert_eq!(run.memory, Some(256 << 20));
        assert_eq!(run.cpus, Some(0.5));
        assert_eq!(run.pids, Some(64));
        assert_eq!(run.timeout, Some(Duration::from_secs(30)));
        assert_eq!(run.grace_period, Some(Duration::from_secs(10)));
        assert_eq!(run.network, [parse_network("build").expect("valid")]);
        assert_eq!(run.pull, Some(PullArg::IfNotPresent));
        assert_eq!(run.workdir.as_deref(), Some("/src"));
        assert_eq!(run.require[0].key, "arch");
        assert_eq!(run.priority, Some(-5));
        assert_eq!(run.workspace.as_deref(), Some("team"));
        assert!(run.detach);
        assert_eq!(run.command, ["make"]);
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let before = parse(&["-o", "json", "--server", "https://b:1", "worker", "list"]);
        let after = parse(&["worker", "list", "-o", "json", "--server", "https://b:1"]);
        for cli in [before, after] {
            assert_eq!(cli.global.output, OutputFormat::Json);
            assert_eq!(cli.global.server, "https://b:1");
            assert!(matches!(cli.command, Command::Worker(WorkerCommand::List)));
        }
    }

    #[test]
    fn an_explicit_token_is_not_marked_as_from_the_environment() {
        let cli = parse(&["get", "x", "--token", "berth_usr_abc"]);
        assert_eq!(cli.global.token.as_deref(), Some("berth_usr_abc"));
        assert!(!cli.global.token_from_env);
        let cli = parse(&["--token-file", "/t", "get", "x"]);
        assert_eq!(cli.global.token_file, Some(PathBuf::from("/t")));
    }

    #[test]
    fn a_token_from_the_environment_is_marked_as_such() {
        // Setting a variable would need `unsafe`; read the token from PATH instead, which
        // any environment that runs cargo has.
        if std::env::var_os("PATH").is_none() {
            return;
        }
        let command = Cli::command().mut_arg("token", |arg| arg.env("PATH"));
        let cli = Cli::parse_args_with(command, ["berth", "get", "x", "--token-file", "/t"])
            .expect("should parse");
        assert!(cli.global.token.is_some());
        assert!(cli.global.token_from_env);
        assert_eq!(cli.global.token_file, Some(PathBuf::from("/t")));
    }

    #[test]
    fn token_create_takes_role_name_comment_and_expiry() {
        let cli = parse(&[
            "token",
            "create",
            "--role",
            "worker",
            "--name",
            "host1",
            "--comment",
            "rack 4",
            "--expires-in",
            "30d",
        ]);
        let Command::Token(TokenCommand::Create(create)) = cli.command else {
            panic!("expected token create");
        };
        assert_eq!(create.role, RoleArg::Worker);
        assert_eq!(create.name.as_deref(), Some("host1"));
        assert_eq!(create.comment.as_deref(), Some("rack 4"));
        assert_eq!(create.expires_in, Some(Duration::from_secs(30 * 86_400)));
    }

    #[test]
    fn token_and_worker_subcommands_take_their_ids() {
        for (verb, id) in [("enable", "1"), ("disable", "2"), ("delete", "3")] {
            let cli = parse(&["token", verb, id]);
            let got = match cli.command {
                Command::Token(TokenCommand::Enable { id }) if verb == "enable" => id,
                Command::Token(TokenCommand::Disable { id }) if verb == "disable" => id,
                Command::Token(TokenCommand::Delete { id }) if verb == "delete" => id,
                other => panic!("token {verb}: {other:?}"),
            };
            assert_eq!(got, id);
        }
        assert!(matches!(
            parse(&["worker", "get", "h1"]).command,
            Command::Worker(WorkerCommand::Get { name }) if name == "h1"
        ));
        assert!(matches!(
            parse(&["worker", "disable", "h1"]).command,
            Command::Worker(WorkerCommand::Disable { name }) if name == "h1"
        ));
        assert!(matches!(
            parse(&["worker", "drain", "h1"]).command,
            Command::Worker(WorkerCommand::Drain { name }) if name == "h1"
        ));
        assert!(matches!(
            parse(&["worker", "restrict", "h1", "--workspace", "a", "--workspace", "b"]).command,
            Command::Worker(WorkerCommand::Restrict { name, workspaces, any: false })
                if name == "h1" && workspaces == ["a", "b"]
        ));
        assert!(matches!(
            parse(&["worker", "restrict", "h1", "--any"]).command,
            Command::Worker(WorkerCommand::Restrict { workspaces, any: true, .. })
                if workspaces.is_empty()
        ));
        let restrict = |line: &[&str]| {
            Cli::parse_args(std::iter::once("berth").chain(line.iter().copied())).is_err()
        };
        assert!(
            restrict(&["worker", "restrict", "h1"]),
            "neither --workspace nor --any"
        );
        assert!(
            restrict(&["worker", "restrict", "h1", "--any", "--workspace", "a"]),
            "both --workspace and --any"
        );
        assert!(matches!(
            parse(&["cancel", "abc"]).command,
            Command::Cancel { id } if id == "abc"
        ));
    }

    #[test]
    fn logs_takes_follow_and_attempt() {
        let Command::Logs(logs) = parse(&["logs", "abc", "-f", "--attempt", "2"]).command else {
            panic!("expected logs");
        };
        assert_eq!(logs.id, "abc");
        assert!(logs.follow);
        assert_eq!(logs.attempt, Some(2));
        let Command::Logs(logs) = parse(&["logs", "abc"]).command else {
            panic!("expected logs");
        };
        assert!(!logs.follow);
        assert_eq!(logs.attempt, None);
        assert_eq!(
            refused(&["logs", "abc", "--attempt", "0"]).kind(),
            clap::error::ErrorKind::ValueValidation
        );
    }

    #[test]
    fn priority_takes_relative_and_absolute_changes() {
        for (text, expected) in [
            ("+5", PriorityChange::Add(5)),
            ("-5", PriorityChange::Add(-5)),
            ("7", PriorityChange::Set(7)),
            ("=-3", PriorityChange::Set(-3)),
        ] {
            let Command::Priority(args) = parse(&["priority", "abc", text]).command else {
                panic!("expected priority");
            };
            assert_eq!(args.id, "abc");
            assert_eq!(args.change, expected, "{text}");
        }
        let Command::Priority(args) = parse(&["priority", "abc", "-5", "-o", "json"]).command
        else {
            panic!("expected priority");
        };
        assert_eq!(args.change, PriorityChange::Add(-5));
        assert_eq!(
            refused(&["priority", "abc", "+x"]).kind(),
            clap::error::ErrorKind::ValueValidation
        );
    }

    #[test]
    fn queue_takes_workspace_and_limit() {
        let Command::Queue(queue) = parse(&["queue", "--workspace", "w", "--limit", "5"]).command
        else {
            panic!("expected queue");
        };
        assert_eq!(queue.workspace.as_deref(), Some("w"));
        assert_eq!(queue.limit, Some(5));
    }

    #[test]
    fn run_takes_dependencies_and_retries_and_unblock_needs_a_decision() {
        let run = run_args(&[
            "run",
            "--after",
            "a",
            "--after",
            "b",
            "--manual",
            "--allow-failure",
            "--retries",
            "3",
            "--retry-backoff",
            "5s",
            "busybox",
        ]);
        assert_eq!(run.after, ["a", "b"]);
        assert!(run.manual && run.allow_failure);
        assert_eq!(run.retries, Some(3));
        assert_eq!(run.retry_backoff, Some(Duration::from_secs(5)));
        let run = run_args(&["run", "--unblock", "deps", "busybox"]);
        assert_eq!(run.unblock, Some(UnblockArg::Deps));
        use clap::error::ErrorKind;
        assert_eq!(
            refused(&["run", "--retries", "11", "busybox"]).kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            refused(&["run", "--unblock", "deps", "--manual", "busybox"]).kind(),
            ErrorKind::ArgumentConflict
        );
        let Command::Unblock(unblock) = parse(&["unblock", "x", "--reject"]).command else {
            panic!("expected unblock");
        };
        assert!(unblock.reject && !unblock.accept);
        assert_eq!(
            refused(&["unblock", "x"]).kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            refused(&["unblock", "x", "--accept", "--reject"]).kind(),
            ErrorKind::ArgumentConflict
        );
        assert!(matches!(
            parse(&["retry", "x"]).command,
            Command::Retry { id } if id == "x"
        ));
    }

    #[test]
    fn list_takes_status_limit_and_workspace() {
        let Command::List(list) = parse(&[
            "list",
            "--status",
            "pending",
            "--limit",
            "10",
            "--workspace",
            "w",
        ])
        .command
        else {
            panic!("expected list");
        };
        assert_eq!(list.status, Some(StatusArg::Pending));
        assert_eq!(list.limit, Some(10));
        assert_eq!(list.workspace.as_deref(), Some("w"));
    }

    #[test]
    fn user_subcommands_take_their_names_and_flags() {
        let Command::User(UserCommand::Create { name, admin }) =
            parse(&["user", "create", "alice", "--admin"]).command
        else {
            panic!("expected user create");
        };
        assert_eq!((name.as_str(), admin), ("alice", true));
        assert!(matches!(
            parse(&["user", "create", "bob"]).command,
            Command::User(UserCommand::Create { admin: false, .. })
        ));
        assert!(matches!(
            parse(&["user", "list"]).command,
            Command::User(UserCommand::List)
        ));
        assert!(matches!(
            parse(&["user", "get"]).command,
            Command::User(UserCommand::Get { name: None })
        ));
        assert!(matches!(
            parse(&["user", "get", "bob"]).command,
            Command::User(UserCommand::Get { name: Some(n) }) if n == "bob"
        ));
        for verb in ["disable", "enable", "delete"] {
            let got = match parse(&["user", verb, "bob"]).command {
                Command::User(UserCommand::Disable { name }) if verb == "disable" => name,
                Command::User(UserCommand::Enable { name }) if verb == "enable" => name,
                Command::User(UserCommand::Delete { name }) if verb == "delete" => name,
                other => panic!("user {verb}: {other:?}"),
            };
            assert_eq!(got, "bob");
        }
    }

    #[test]
    fn token_create_for_names_the_user() {
        let Command::Token(TokenCommand::Create(create)) =
            parse(&["token", "create", "--role", "user", "--for", "carol"]).command
        else {
            panic!("expected token create");
        };
        assert_eq!(create.name.as_deref(), Some("carol"));
    }

    #[test]
    fn workspace_create_and_list_take_their_flags() {
        let Command::Workspace(WorkspaceCommand::Create(create)) = parse(&[
            "workspace",
            "create",
            "team-a",
            "--public",
            "--default-expiry",
            "30d",
        ])
        .command
        else {
            panic!("expected workspace create");
        };
        assert_eq!(create.name, "team-a");
        assert!(create.public);
        assert_eq!(
            create.default_expiry,
            Some(Duration::from_secs(30 * 86_400))
        );
        assert!(matches!(
            parse(&["workspace", "list", "--all"]).command,
            Command::Workspace(WorkspaceCommand::List { all: true })
        ));
        assert!(matches!(
            parse(&["workspace", "archive", "team-a"]).command,
            Command::Workspace(WorkspaceCommand::Archive { name }) if name == "team-a"
        ));
    }

    #[test]
    fn workspace_set_takes_values_and_their_clearing_words() {
        let Command::Workspace(WorkspaceCommand::Set(set)) = parse(&[
            "workspace",
            "set",
            "team-a",
            "--public",
            "false",
            "--default-expiry",
            "never",
            "--max-running",
            "4",
            "--max-pending",
            "none",
            "--weight",
            "10",
        ])
        .command
        else {
            panic!("expected workspace set");
        };
        assert_eq!(set.public, Some(false));
        assert_eq!(set.default_expiry, Some(Setting::Clear));
        assert_eq!(set.max_running, Some(Setting::Set(4)));
        assert_eq!(set.max_pending, Some(Setting::Clear));
        assert_eq!(set.weight, Some(10));
        let Command::Workspace(WorkspaceCommand::Set(set)) =
            parse(&["workspace", "set", "team-a", "--default-expiry", "12h"]).command
        else {
            panic!("expected workspace set");
        };
        assert_eq!(
            set.default_expiry,
            Some(Setting::Set(Duration::from_secs(12 * 3600)))
        );
        assert_eq!(set.public, None);
    }

    #[test]
    fn workspace_member_subcommands_take_workspace_user_and_role() {
        let Command::Workspace(WorkspaceCommand::Member(MemberCommand::Add {
            workspace,
            user,
            role,
        })) = parse(&[
            "workspace",
            "member",
            "add",
            "team-a",
            "bob",
            "--role",
            "owner",
        ])
        .command
        else {
            panic!("expected member add");
        };
        assert_eq!((workspace.as_str(), user.as_str()), ("team-a", "bob"));
        assert_eq!(role, WorkspaceRoleArg::Owner);
        assert!(matches!(
            parse(&["workspace", "member", "rm", "team-a", "bob"]).command,
            Command::Workspace(WorkspaceCommand::Member(MemberCommand::Rm { workspace, user }))
                if workspace == "team-a" && user == "bob"
        ));
        assert!(matches!(
            parse(&["workspace", "member", "list", "team-a"]).command,
            Command::Workspace(WorkspaceCommand::Member(MemberCommand::List { workspace }))
                if workspace == "team-a"
        ));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        use clap::error::ErrorKind;
        assert_eq!(
            refused(&["run", "busybox", "--memory", "12Q"]).kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            refused(&["run", "busybox", "--env", "A"]).kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            refused(&["list", "--limit", "0"]).kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            refused(&["list", "--limit", "1001"]).kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            refused(&["list", "--status", "done"]).kind(),
            ErrorKind::InvalidValue
        );
        assert_eq!(
            refused(&["token", "create"]).kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            refused(&["run", "busybox", "--pull", "sometimes"]).kind(),
            ErrorKind::InvalidValue
        );
        assert_eq!(
            refused(&["workspace", "member", "add", "w", "u"]).kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            refused(&["workspace", "member", "add", "w", "u", "--role", "admin"]).kind(),
            ErrorKind::InvalidValue
        );
        assert_eq!(
            refused(&["workspace", "set", "w", "--max-running", "lots"]).kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            refused(&["workspace", "set", "w", "--public", "maybe"]).kind(),
            ErrorKind::InvalidValue
        );
        assert_eq!(
            refused(&["workspace", "set", "w", "--default-expiry", "soon"]).kind(),
            ErrorKind::ValueValidation
        );
    }
}
