//! Notifications: channels of a workspace (`webhook`, `email`), event reactions on work
//! requests, workflows, templates and services, and the deliveries that carry events to
//! them at least once, with retries, a delivery log and a guard against server-side
//! request forgery.
//!
//! How an event reaches a channel:
//! 1. The system events relay hands each committed event to [`fanout_in`], inside its
//!    own transaction. [`fanout`] finds the enabled channels of the event's workspace
//!    that want it — by an event type pattern ([`patterns`]) or by a reaction on its
//!    object, the object's template, workflow or service ([`reactions`]) — and inserts
//!    one delivery per (event, channel) with `ON CONFLICT DO NOTHING`, so relaying an
//!    event twice queues it once. When it queued any, it `NOTIFY`s
//!    `berth_notifications`, which the database sends only when that transaction
//!    commits (only the relay's transaction notifies, and only one replica relays at a
//!    time, so the commit lock a NOTIFY takes serializes nothing else).
//! 2. [`deliver`] runs on every replica: woken by the notification (or its poll), it
//!    claims due deliveries with `FOR UPDATE SKIP LOCKED` and a lease, sends each
//!    ([`webhook`]: Standard Webhooks signatures, the [`ssrf`] guard, no redirects;
//!    [`email`]: SMTP), and records the attempt in the delivery log ([`log`]) with what
//!    comes next: delivered, a retry after the backoff (or the receiver's
//!    `Retry-After`), or failed for good. A replica that dies holding a claim leaves it
//!    to expire; another replica takes the delivery again (at least once).
//! 3. A channel is disabled when its endpoint answers `410 Gone`, or when
//!    [`NotifySettings::failure_limit`] deliveries **in a row finally failed** (after
//!    all their retries, or refused for good). Counting finished deliveries rather than
//!    attempts means an outage shorter than the retry schedule never disables a
//!    channel, while an endpoint that is gone for good is disabled about a day after it
//!    went. The reason and last error are kept on the channel, and a
//!    `notification.channel_disabled` event goes into the system events outbox in the
//!    same transaction: it is published on the `berth.notifications` topic (which any
//!    reader of the workspace may subscribe to) and handed back to [`fanout_in`] for the
//!    workspace's other channels that want it. That is how the workspace's owners are
//!    told: users have no email address of their own.
//!
//! What it owns: [`store`] (rows), [`channels`] (managing channels and their sealed
//! secrets), [`reactions`], [`fanout`], [`deliver`] (the loop, the backoff, disabling),
//! [`webhook`], [`email`], [`ssrf`], [`log`] (reading deliveries and their attempts,
//! pruning the log), [`patterns`].
//!
//! What it must not touch: the objects it reports on (it reads the ids that tie a
//! request to its template, workflow and service), topics' rows, and the wire protocol.
//! Signing secrets and header values are sealed with the server's key, shown only once
//! (the secret, at creation and rotation) and never logged or put in the delivery log.

pub mod channels;
pub mod deliver;
pub mod email;
pub mod fanout;
pub mod log;
pub mod patterns;
pub mod reactions;
pub mod ssrf;
pub mod store;
pub mod webhook;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::store::db::DbPool;
use crate::store::secrets::SecretBox;

pub use fanout::fanout_in;

use self::ssrf::{Guard, Resolver, SystemResolver};
use self::store::{AttemptRow, ChannelRow, DeliveryRow, ReactionRow};

/// Generates `as_str`/`parse`/`ALL`/`Display` for an enum stored as text.
macro_rules! text_enum {
    ($name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        impl $name {
            /// Every value, as listed.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// As stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The text back; `None` for anything else.
            pub fn parse(text: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == text)
            }

            /// The words accepted, for error messages.
            pub fn words() -> String {
                $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// How a channel delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Webhook,
    Email,
}
text_enum!(ChannelKind { Webhook = "webhook", Email = "email" });

/// What a reaction waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum On {
    /// The object started running.
    Start,
    /// It completed with `success`.
    Success,
    /// It completed with `failure` or `error`.
    Failure,
    /// It ended, however (success, failure, error, aborted).
    Completion,
}
text_enum!(On {
    Start = "start",
    Success = "success",
    Failure = "failure",
    Completion = "completion",
});

/// What a reaction is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    WorkRequest,
    Workflow,
    Template,
    Service,
}
text_enum!(ObjectKind {
    WorkRequest = "work_request",
    Workflow = "workflow",
    Template = "template",
    Service = "service",
});

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    Delivered,
    /// Given up (retries exhausted) or refused for good.
    Failed,
}
text_enum!(DeliveryState {
    Pending = "pending",
    Delivered = "delivered",
    Failed = "failed",
});

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (a relay on the same host or network).
    None,
    /// Plain, upgraded with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}
text_enum!(SmtpTls {
    None = "none",
    Starttls = "starttls",
    Tls = "tls",
});

/// The SMTP relay email channels send through (server configuration). `Debug` never
/// shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    /// The `From:` address.
    pub from: String,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// How deliveries are made (server configuration; see `server/src/app/config.rs`).
#[derive(Clone, Debug)]
pub struct NotifySettings {
    /// One webhook request's whole time (connect, send, response), default 10 s.
    pub webhook_timeout: Duration,
    /// The waits before the 2nd, 3rd, ... attempt; its length + 1 is the number of
    /// attempts. Each wait gets ±20 % jitter. Default 5s, 5m, 30m, 2h, 5h, 10h, 10h.
    pub retry_schedule: Vec<Duration>,
    /// Deliveries finally failed in a row that disable a channel (default 5; 0: never).
    pub failure_limit: u32,
    /// How long finished deliveries and their attempts are kept (default 30 days).
    pub log_retention: Duration,
    /// Addresses webhooks may reach although the guard would refuse them.
    pub allow_cidrs: Vec<IpNet>,
    /// The longest wait between two looks for due deliveries (NOTIFY wakes sooner).
    pub poll_interval: Duration,
    /// Deliveries one replica sends at once.
    pub concurrency: usize,
    /// The relay for email channels; `None`: email channels cannot be made.
    pub smtp: Option<SmtpSettings>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        let h = |hours: u64| Duration::from_secs(hours * 3600);
        NotifySettings {
            webhook_timeout: Duration::from_secs(10),
            retry_schedule: vec![
                Duration::from_secs(5),
                Duration::from_secs(300),
                Duration::from_secs(1800),
                h(2),
                h(5),
                h(10),
                h(10),
            ],
            failure_limit: 5,
            log_retention: Duration::from_secs(30 * 24 * 3600),
            allow_cidrs: Vec::new(),
            poll_interval: Duration::from_secs(1),
            concurrency: 8,
            smtp: None,
        }
    }
}

/// Names a channel: its workspace ('' for `default`) and its name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelRef {
    pub workspace: String,
    pub name: String,
}

/// A channel's settings as a caller gave them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingsInput {
    Webhook {
        url: String,
        headers: BTreeMap<String, String>,
    },
    Email {
        recipients: Vec<String>,
        subject_prefix: String,
    },
}

/// A new channel as a caller gave it.
#[derive(Clone, Debug)]
pub struct ChannelInput {
    pub name: String,
    pub settings: SettingsInput,
    pub event_types: Vec<String>,
    pub disabled: bool,
}

/// A change to a channel: `None` keeps what it has.
#[derive(Clone, Debug, Default)]
pub struct ChannelChange {
    pub enabled: Option<bool>,
    /// With `enabled: Some(false)`.
    pub disabled_reason: String,
    pub event_types: Option<Vec<String>>,
    pub url: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub recipients: Option<Vec<String>>,
    pub subject_prefix: Option<String>,
}

/// A channel as callers see it (no secret in it).
#[derive(Clone, Debug)]
pub struct ChannelView {
    pub row: ChannelRow,
    pub workspace: String,
    /// Its creator's name ('' if gone).
    pub created_by: String,
}

/// A channel just made or rotated, with its signing secret (webhooks), shown once.
#[derive(Clone)]
pub struct WithSecret {
    pub channel: ChannelView,
    pub signing_secret: String,
}

impl fmt::Debug for WithSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithSecret")
            .field("channel", &self.channel)
            .field("signing_secret", &"[REDACTED]")
            .finish()
    }
}

/// A new reaction as a caller gave it.
#[derive(Clone, Debug, Default)]
pub struct ReactionInput {
    pub workspace: String,
    pub object_kind: String,
    /// A request's or workflow's id, a template's or service's name.
    pub object: String,
    pub on: String,
    pub channel: String,
}

/// A reaction as callers see it.
#[derive(Clone, Debug)]
pub struct ReactionView {
    pub row: ReactionRow,
    pub workspace: String,
    /// A template's or service's name; a request's or workflow's id.
    pub object: String,
    pub channel: String,
    pub created_by: String,
}

/// Which reactions to list.
#[derive(Clone, Debug, Default)]
pub struct ReactionQuery {
    pub workspace: String,
    pub object_kind: String,
    pub object: String,
    pub channel: String,
}

/// A delivery as callers see it, with its attempts (oldest first).
#[derive(Clone, Debug)]
pub struct DeliveryView {
    pub row: DeliveryRow,
    pub workspace: String,
    pub channel: String,
    pub attempts: Vec<AttemptRow>,
}

/// Which deliveries to list.
#[derive(Clone, Debug, Default)]
pub struct DeliveryQuery {
    pub workspace: String,
    /// '' for every channel of the workspace.
    pub channel: String,
    pub state: Option<DeliveryState>,
    /// 0: 50; at most 500.
    pub limit: u32,
    pub page_token: String,
}

/// A page of deliveries, newest first.
#[derive(Clone, Debug, Default)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryView>,
    /// '' on the last page.
    pub next_page_token: String,
}

/// See the module docs. The API's front for notifications, and what the delivery loop
/// works with.
#[derive(Clone)]
pub struct Notifications {
    pub(crate) pool: DbPool,
    pub(crate) secrets: SecretBox,
    pub(crate) settings: Arc<NotifySettings>,
    pub(crate) guard: Guard,
    pub(crate) resolver: Arc<dyn Resolver>,
    /// Wakes this replica's delivery loop (other replicas hear the NOTIFY).
    pub(crate) wake: Arc<tokio::sync::Notify>,
}

impl Notifications {
    /// Channels and deliveries in `pool`, secrets sealed with `secrets`, deliveries made
    /// as `settings` say, names looked up by the system's resolver.
    pub fn new(pool: DbPool, secrets: SecretBox, settings: NotifySettings) -> Self {
        Notifications {
            pool,
            secrets,
            guard: Guard::new(settings.allow_cidrs.clone()),
            settings: Arc::new(settings),
            resolver: Arc::new(SystemResolver),
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Looks webhook hosts up with `resolver` instead of the system's.
    #[must_use]
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// The settings in force.
    pub fn settings(&self) -> &NotifySettings {
        &self.settings
    }
}
