//! `berth topic ...` and `berth subscription ...`: topics, publishing, consuming, and
//! durable subscriptions.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};

use crate::values::{KeyValue, parse_duration, parse_key_value};

/// `berth topic ...`
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic: a slug of a-z, 0-9, '.', '-' and '_' (not `berth.…`).
    #[command(after_help = TOPIC_CREATE_HELP)]
    Create(TopicCreateArgs),
    /// List a workspace's topics (system topics `berth.*` too, once used).
    List {
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Show a topic: its policy, grants, stored messages and availability with the
    /// evidence (last ping, last pong, live consumers).
    #[command(visible_alias = "show")]
    Get {
        /// The topic's slug.
        topic: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Delete a topic with its messages and subscriptions.
    Delete {
        /// The topic's slug.
        topic: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Send a ping to the topic's live consumers; `berth topic get` then shows whether
    /// they answered.
    Ping {
        /// The topic's slug.
        topic: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Publish one message and print its seq and id.
    #[command(after_help = TOPIC_PUBLISH_HELP)]
    Publish(TopicPublishArgs),
    /// Consume a subscription: print each message as one line of JSON (seq, message_id,
    /// context, content, properties, producer, published_at, delivery_count), answer pings,
    /// and with --ack accept each message once it is printed. Ctrl-C stops.
    Subscribe(TopicSubscribeArgs),
}

const TOPIC_CREATE_HELP: &str = "\
Examples:
  berth topic create builds.done --policy store --max-age 7d --public
  berth topic create jobs --producer role:contributor --consumer user:alice
  berth topic create live --policy disabled";

const TOPIC_PUBLISH_HELP: &str = "\
Examples:
  berth topic publish builds.done --json '{\"build\": 42, \"ok\": true}'
  berth topic publish jobs --json '{\"n\": 1}' --id 0190c9e4-5b1a-7c3e-9a2f-3b4c5d6e7f80
  berth topic publish requests --json '{\"q\": \"status\"}' --property response_topic=answers.me";

/// When a message is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// Never stored: only consumers connected now get it.
    Disabled,
    /// Deleted at the first accept (default).
    Cache,
    /// Deleted once every subscription accepted it.
    Cacheall,
    /// Kept until retention removes it.
    Store,
}

/// A grant's principal: `user:NAME` or `role:viewer|contributor|owner`.
fn parse_principal(text: &str) -> Result<String, String> {
    let known = text
        .strip_prefix("user:")
        .is_some_and(|name| !name.is_empty())
        || matches!(text, "role:viewer" | "role:contributor" | "role:owner");
    if known {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} names nobody; write user:NAME or role:viewer|contributor|owner"
        ))
    }
}

/// JSON text, checked here so a typo never reaches the server.
pub fn parse_json(text: &str) -> Result<String, String> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(|_| text.to_owned())
        .map_err(|e| format!("not valid JSON ({e}); quote it for the shell, e.g. '{{\"n\": 1}}'"))
}

fn parse_uuid(text: &str) -> Result<String, String> {
    uuid::Uuid::parse_str(text)
        .map(|id| id.to_string())
        .map_err(|_| format!("{text:?} is not a UUID (e.g. from uuidgen)"))
}

/// `berth topic create ...`
#[derive(Debug, Args)]
pub struct TopicCreateArgs {
    /// The topic's slug.
    pub topic: String,
    /// Any member of the workspace may publish and consume.
    #[arg(long)]
    pub public: bool,
    /// When a message is deleted (default cache).
    #[arg(long, value_enum, value_name = "POLICY")]
    pub policy: Option<PolicyArg>,
    /// What the topic is for.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Delete messages older than this (e.g. 7d).
    #[arg(long = "max-age", value_name = "DURATION", value_parser = parse_duration)]
    pub max_age: Option<Duration>,
    /// Keep at most this many messages (the oldest go first).
    #[arg(long = "max-messages", value_name = "N")]
    pub max_messages: Option<u64>,
    /// A JSON object describing the messages, for the topic's users.
    #[arg(long = "api-info", value_name = "JSON", value_parser = parse_json)]
    pub api_info: Option<String>,
    /// May publish: user:NAME or role:viewer|contributor|owner (repeatable).
    #[arg(long = "producer", value_name = "PRINCIPAL", value_parser = parse_principal)]
    pub producers: Vec<String>,
    /// May consume: user:NAME or role:viewer|contributor|owner (repeatable).
    #[arg(long = "consumer", value_name = "PRINCIPAL", value_parser = parse_principal)]
    pub consumers: Vec<String>,
    /// Workspace (default: default).
    #[arg(short = 'w', long, value_name = "W")]
    pub workspace: Option<String>,
}

/// `berth topic publish ...`
#[derive(Debug, Args)]
pub struct TopicPublishArgs {
    /// The topic's slug.
    pub topic: String,
    /// The content: any JSON value, usually an object.
    #[arg(long = "json", value_name = "JSON", value_parser = parse_json)]
    pub json: String,
    /// The message's id, unique on the topic (default: the server picks one).
    #[arg(long, value_name = "UUID", value_parser = parse_uuid)]
    pub id: Option<String>,
    /// Free text travelling with the message (a correlation id, say).
    #[arg(long, value_name = "TEXT")]
    pub context: Option<String>,
    /// A property (repeatable); response_topic=SLUG asks for a response topic.
    #[arg(long = "property", value_name = "K=V", value_parser = parse_key_value)]
    pub properties: Vec<KeyValue>,
    /// Workspace (default: default).
    #[arg(short = 'w', long, value_name = "W")]
    pub workspace: Option<String>,
}

/// `berth topic subscribe ...`
#[derive(Debug, Args)]
pub struct TopicSubscribeArgs {
    /// The topic's slug.
    pub topic: String,
    /// The subscription to consume.
    #[arg(long, value_name = "NAME")]
    pub subscription: String,
    /// Accept each message once it is printed (without it, messages are delivered again
    /// once their leases run out).
    #[arg(long)]
    pub ack: bool,
    /// Stop after this many messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,
    /// Create the subscription first if it does not exist (starting at every stored
    /// message).
    #[arg(long)]
    pub create: bool,
    /// Workspace (default: default).
    #[arg(short = 'w', long, value_name = "W")]
    pub workspace: Option<String>,
}

/// `berth subscription ...`
#[derive(Debug, Subcommand)]
pub enum SubscriptionCommand {
    /// Create a durable subscription on a topic.
    #[command(after_help = SUBSCRIPTION_CREATE_HELP)]
    Create(SubscriptionCreateArgs),
    /// List a topic's subscriptions with their backlogs.
    List {
        /// The topic's slug.
        topic: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Show a subscription: its settings, backlog, in-flight count and oldest unacked age.
    #[command(visible_alias = "show")]
    Get {
        /// The topic's slug.
        topic: String,
        /// The subscription's name.
        name: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Delete a subscription with what it still owes.
    Delete {
        /// The topic's slug.
        topic: String,
        /// The subscription's name.
        name: String,
        /// Workspace (default: default).
        #[arg(short = 'w', long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Move a subscription to a seq or a time, for what is still stored: messages from
    /// there on are owed again, earlier ones no more.
    Seek(SubscriptionSeekArgs),
}

const SUBSCRIPTION_CREATE_HELP: &str = "\
Examples:
  berth subscription create builds.done deployer
  berth subscription create jobs workers --start all --ack-deadline 2m --max-deliveries 3 \\
      --backoff 5s,1m --dead-letter jobs.dead";

/// Where a subscription starts: `new`, `all`, `seq:N` or `time:RFC3339`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartArg {
    New,
    All,
    Seq(i64),
    Time(DateTime<Utc>),
}

/// Reads `new`, `all`, `seq:N` or `time:RFC3339`.
pub fn parse_start(text: &str) -> Result<StartArg, String> {
    match text {
        "new" => return Ok(StartArg::New),
        "all" => return Ok(StartArg::All),
        _ => {}
    }
    if let Some(seq) = text.strip_prefix("seq:") {
        return seq
            .parse()
            .map(StartArg::Seq)
            .map_err(|_| format!("{seq:?} is not a seq (a whole number)"));
    }
    if let Some(at) = text.strip_prefix("time:") {
        return parse_time(at).map(StartArg::Time);
    }
    Err(format!(
        "{text:?}: use new, all, seq:N or time:RFC3339 (e.g. time:2026-03-29T03:00:00Z)"
    ))
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time (e.g. 2026-01-01T00:00:00Z): {e}"))
}

/// A backoff list, `1s,5s,30s` (one value: clap would take a bare `Vec` for repeats).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff(pub Vec<Duration>);

/// Reads `1s,5s,30s`.
pub fn parse_backoff(text: &str) -> Result<Backoff, String> {
    text.split(',')
        .map(|part| parse_duration(part.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map(Backoff)
}

/// `berth subscription create ...`
#[derive(Debug, Args)]
pub struct SubscriptionCreateArgs {
    /// The topic's slug.
    pub topic: String,
    /// The subscription's name, unique on the topic.
    pub name: String,
    /// Where it starts: new (default), all, seq:N or time:RFC3339.
    #[arg(long, value_name = "WHERE", value_parser = parse_start)]
    pub start: Option<StartArg>,
    /// How long a delivery is leased before it goes out again (default 30s).
    #[arg(long = "ack-deadline", value_name = "DURATION", value_parser = parse_duration)]
    pub ack_deadline: Option<Duration>,
    /// Deliveries without an accept before the dead letters (default 5; 0: unlimited).
    #[arg(long = "max-deliveries", value_name = "N")]
    pub max_deliveries: Option<u32>,
    /// The waits before each redelivery, the last repeating (default 1s,5s,30s).
    #[arg(long, value_name = "LIST", value_parser = parse_backoff)]
    pub backoff: Option<Backoff>,
    /// The most unacked deliveries one consumer holds (default 1000).
    #[arg(long = "max-in-flight", value_name = "N")]
    pub max_in_flight: Option<u32>,
    /// A topic of the workspace for messages that fail.
    #[arg(long = "dead-letter", value_name = "TOPIC")]
    pub dead_letter: Option<String>,
    /// Workspace (default: default).
    #[arg(short = 'w', long, value_name = "W")]
    pub workspace: Option<String>,
}

/// `berth subscription seek ...`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("to").required(true).multiple(false).args(["to_seq", "to_time"])))]
pub struct SubscriptionSeekArgs {
    /// The topic's slug.
    pub topic: String,
    /// The subscription's name.
    pub name: String,
    /// Owe again every stored message from this seq on.
    #[arg(long = "to-seq", value_name = "SEQ")]
    pub to_seq: Option<i64>,
    /// Owe again every stored message published at or after this time.
    #[arg(long = "to-time", value_name = "RFC3339", value_parser = parse_time)]
    pub to_time: Option<DateTime<Utc>>,
    /// Workspace (default: default).
    #[arg(short = 'w', long, value_name = "W")]
    pub workspace: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_are_words_seqs_or_times() {
        assert_eq!(parse_start("all").expect("all"), StartArg::All);
        assert_eq!(parse_start("seq:42").expect("seq"), StartArg::Seq(42));
        assert!(matches!(
            parse_start("time:2026-03-29T03:00:00Z"),
            Ok(StartArg::Time(_))
        ));
        assert!(parse_start("seq:x").expect_err("bad").contains("not a seq"));
        assert!(
            parse_start("yesterday")
                .expect_err("bad")
                .contains("new, all")
        );
    }

    #[test]
    fn a_backoff_list_is_one_flag_value() {
        let cli =
            crate::args::tests::parse(&["subscription", "create", "t", "s", "--backoff", "2s,10s"]);
        let crate::args::Command::Subscription(SubscriptionCommand::Create(args)) = cli.command
        else {
            panic!("subscription create");
        };
        assert_eq!(
            args.backoff,
            Some(Backoff(vec![
                Duration::from_secs(2),
                Duration::from_secs(10)
            ]))
        );
    }

    #[test]
    fn json_principals_and_backoffs_are_checked_locally() {
        assert!(parse_json(r#"{"a": 1}"#).is_ok());
        assert!(
            parse_json("{a: 1}")
                .expect_err("bad")
                .contains("not valid JSON")
        );
        assert!(parse_principal("role:contributor").is_ok());
        assert!(parse_principal("user:alice").is_ok());
        assert!(parse_principal("user:").is_err());
        assert!(parse_principal("role:admin").is_err());
        assert_eq!(
            parse_backoff("1s, 5s,1m").expect("valid").0,
            vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(60)
            ]
        );
        assert!(parse_backoff("1s,soon").is_err());
    }
}
