//! `berth channel ...` (notification channels, their deliveries and test pings) and
//! `berth reaction ...` (notify a channel when an object starts, succeeds, fails or
//! completes).

use clap::{ArgGroup, Args, Subcommand, ValueEnum};

use crate::values::{KeyValue, parse_key_value};

/// `berth channel ...`
#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Create a channel: a webhook (--url) or email (--email). A webhook's signing secret
    /// is printed once (alone on stdout in a table; store it now).
    Create(ChannelCreateArgs),
    /// List a workspace's channels by name.
    List {
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Show a channel: its settings, whether it is enabled and, if not, why.
    #[command(visible_alias = "show")]
    Get {
        /// The channel's name.
        name: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Change a channel: enable or disable it, replace its event types, URL, headers,
    /// recipients or subject prefix.
    Update(ChannelUpdateArgs),
    /// Delete a channel with its reactions and delivery log.
    Delete {
        /// The channel's name.
        name: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Send a signed `notification.ping` now and show how it went.
    Test {
        /// The channel's name.
        name: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Queue a delivered or failed delivery again (the same event, so the same
    /// webhook-id), now.
    Redeliver {
        /// The delivery's id (`berth channel deliveries` shows them).
        id: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// The delivery log, newest first: deliveries with every attempt.
    Deliveries(DeliveriesArgs),
    /// Replace a webhook's signing secret; the new one is printed once.
    RotateSecret {
        /// The channel's name.
        name: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
}

/// `berth channel create`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("kind").required(true).args(["url", "email"])))]
pub struct ChannelCreateArgs {
    /// The channel's name (a-z, 0-9 and dashes).
    pub name: String,
    /// A webhook to this URL (http:// or https://).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Email to this address (repeat for more).
    #[arg(long, value_name = "ADDRESS")]
    pub email: Vec<String>,
    /// Webhooks: an extra request header (repeat for more); its value is never shown.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_key_value, requires = "url")]
    pub headers: Vec<KeyValue>,
    /// Email: put before the subject.
    #[arg(long, value_name = "TEXT", requires = "email")]
    pub subject_prefix: Option<String>,
    /// Event types it wants whatever the object: `work_request.failed`, `work_request.*`,
    /// `*` (repeat for more). None: only what reactions point at.
    #[arg(long = "events", value_name = "PATTERN")]
    pub events: Vec<String>,
    /// Create it disabled.
    #[arg(long)]
    pub disabled: bool,
    /// Workspace (default: default).
    #[arg(short = 'w', long, value_name = "W")]
    pub workspace: Option<String>,
}

/// `berth channel update`.
#[derive(Debug, Args)]
pub struct ChannelUpdateArgs {
    /// The channel's name.
    pub name: String,
    /// Enable it (its failure count and disabled reason are cleared).
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// Disable it.
    #[arg(long)]
    pub disable: bool,
    /// With --disable: why (shown on the channel).
    #[arg(long, value_name = "TEXT", requires = "disable")]
    pub reason: Option<String>,
    /// Replace the event types with these (repeat for more).
    #[arg(long = "events", value_name = "PATTERN", conflicts_with = "no_events")]
    pub events: Vec<String>,
    /// Remove every event type (only reactions bring it events).
    #[arg(long)]
    pub no_events: bool,
    /// Webhooks: a new URL.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Webhooks: replace the extra headers with these (repeat for more).
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_key_value, conflicts_with = "no_headers")]
    pub headers: Vec<KeyValue>,
    /// Webhooks: remove every extra header.
    #[arg(long)]
    pub no_headers: bool,
    /// Email: replace the recipients with these (repeat for more).
    #[arg(long, value_name = "ADDRESS")]
    pub email: Vec<String>,
    /// Email: a new subject prefix ('' for none).
    #[arg(long, value_name = "TEXT")]
    pub subject_prefix: Option<String>,
    /// Workspace (default: default).
    #[arg(short = 'w', long, value_name = "W")]
    pub workspace: Option<String>,
}

/// A delivery's state, for `--state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeliveryStateArg {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStateArg {
    /// As the protocol says it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStateArg::Pending => "pending",
            DeliveryStateArg::Delivered => "delivered",
            DeliveryStateArg::Failed => "failed",
        }
    }
}

/// `berth channel deliveries`.
#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    /// One channel's; all the workspace's without.
    pub channel: Option<String>,
    /// Only deliveries in this state.
    #[arg(long, value_enum)]
    pub state: Option<DeliveryStateArg>,
    /// At most this many (1-500; default 50).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: Option<u32>,
    /// The next page: the token the previous page ended with.
    #[arg(long, value_name = "TOKEN")]
    pub page_token: Option<String>,
    /// Workspace (default: default).
    #[arg(short = 'w', long, value_name = "W")]
    pub workspace: Option<String>,
}

/// What a reaction waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnArg {
    Start,
    Success,
    Failure,
    Completion,
}

impl OnArg {
    /// As the protocol says it.
    pub fn as_str(self) -> &'static str {
        match self {
            OnArg::Start => "start",
            OnArg::Success => "success",
            OnArg::Failure => "failure",
            OnArg::Completion => "completion",
        }
    }
}

/// The object of a reaction: exactly one of these.
#[derive(Debug, Default, Args)]
pub struct ObjectArgs {
    /// A work request, by id.
    #[arg(long, value_name = "ID")]
    pub request: Option<String>,
    /// A workflow, by id.
    #[arg(long, value_name = "ID")]
    pub workflow: Option<String>,
    /// A template, by name (every request made from it).
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    /// A service, by name (every replica of it).
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
}

impl ObjectArgs {
    /// (object kind, object) as the protocol says them; ("", "") when none is given.
    pub fn kind_and_object(&self) -> (&'static str, String) {
        match (&self.request, &self.workflow, &self.template, &self.service) {
            (Some(id), _, _, _) => ("work_request", id.clone()),
            (_, Some(id), _, _) => ("workflow", id.clone()),
            (_, _, Some(name), _) => ("template", name.clone()),
            (_, _, _, Some(name)) => ("service", name.clone()),
            _ => ("", String::new()),
        }
    }
}

/// `berth reaction ...`
#[derive(Debug, Subcommand)]
pub enum ReactionCommand {
    /// Notify a channel when a work request, workflow, template's request or service's
    /// replica starts, succeeds, fails or completes.
    #[command(group(ArgGroup::new("object").required(true).args(["request", "workflow", "template", "service"])))]
    Add {
        /// When: start, success, failure or completion (any end).
        #[arg(long, value_enum)]
        on: OnArg,
        /// The channel to notify.
        #[arg(long, value_name = "NAME")]
        channel: String,
        #[command(flatten)]
        object: ObjectArgs,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// List a workspace's reactions, or one object's or channel's.
    #[command(group(ArgGroup::new("object").multiple(false).args(["request", "workflow", "template", "service"])))]
    List {
        /// Only those notifying this channel.
        #[arg(long, value_name = "NAME")]
        channel: Option<String>,
        #[command(flatten)]
        object: ObjectArgs,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Remove a reaction.
    Remove {
        /// The reaction's id.
        id: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
}
