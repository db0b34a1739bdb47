//! `topic` rules: fire when a message is published on a topic of the rule's workspace,
//! one of the system topics (`berth.work-requests`, … — Berth's own events) or a user's.
//! The run gets the message.
//!
//! A rule consumes through a server-side subscription of its own, opened when the rule
//! is made ([`topics::open_internal`], named `trigger-rule-<rule id>`, starting at new
//! messages) and dropped when it is archived or moved to another topic. The watch pass
//! ([`super::watch`]) takes its messages and, in the same transaction, stores one event
//! per message (dedupe `message:<topic>:<message id>`) and acks them, so each message
//! makes at most one firing per rule across replicas. A paused rule keeps consuming:
//! its messages become `paused` events.
//!
//! `types`, when given, keeps only messages whose content's `type` matches one of them:
//! an exact type (`work_request.failed`), a prefix (`work_request.*`) or `*`. Messages
//! that do not match are acked without an event.
//!
//! **No loops through Berth's own events.** A rule's run makes events (its request is
//! created, runs, ends; its outputs appear; the firing itself is an event on
//! `berth.triggers`). Each such event carries `data.trigger.rules`, every rule whose
//! firings led to it (the migration's `berth_cause`), and a firing of a topic rule
//! records the message's list as its `cause_rules`, so the list grows along a chain of
//! rules. A rule passes over (acks, without an event) every message whose list names it:
//! it never fires on what its own firings caused, directly or through other rules, and
//! a cycle of rules stops after one turn. Messages on user topics carry no such list;
//! a loop a run makes by publishing on the topic its own rule watches is the run's own.
//!
//! What it owns: a topic rule's configuration and its subscription's life. It reads
//! topics only through the topics room's contract.

use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::topics;
use crate::topics::access::{self, Use};
use crate::topics::store as topic_store;
use crate::triggers::Maker;
use crate::triggers::TopicInput;

/// At most this many type patterns.
const MAX_TYPES: usize = 32;
/// The longest topic slug and type pattern.
const MAX_LEN: usize = 100;

/// A topic rule as stored (the rule's `config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// The topic's slug in the rule's workspace.
    pub topic: String,
    /// Type patterns; empty: every message.
    #[serde(default)]
    pub types: Vec<String>,
    /// The rule's internal subscription.
    #[serde(default)]
    pub subscription_id: Option<Uuid>,
}

impl TopicConfig {
    /// Reads a stored configuration.
    pub fn from_value(value: &serde_json::Value) -> Result<TopicConfig> {
        serde_json::from_value(value.clone())
            .map_err(|e| Error::internal(format!("stored topic rule unreadable: {e}")))
    }

    /// Whether a message with `content` is one the rule wants (by its `type`).
    pub fn wants(&self, content: &serde_json::Value) -> bool {
        if self.types.is_empty() {
            return true;
        }
        let Some(kind) = content.get("type").and_then(|t| t.as_str()) else {
            return false;
        };
        self.types.iter().any(|pattern| type_matches(pattern, kind))
    }
}

/// The subscription name of a rule.
pub fn subscription_name(rule_id: Uuid) -> String {
    format!("trigger-rule-{rule_id}")
}

/// Whether `kind` (an event type) matches `pattern`: equal, `*`, or `prefix.*` for
/// every type starting `prefix.`.
pub fn type_matches(pattern: &str, kind: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => kind
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == kind,
    }
}

/// The rules whose firings led to the message (`data.trigger.rules` of a system event);
/// empty for anything else.
pub fn cause_rules(content: &serde_json::Value) -> Vec<String> {
    content
        .pointer("/data/trigger/rules")
        .and_then(|r| r.as_array())
        .map(|rules| {
            rules
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a topic rule's configuration, without the database: the slug and the types.
pub fn check(input: &TopicInput) -> Result<TopicConfig> {
    let topic = input.topic.trim();
    if topic.is_empty() {
        return Err(Error::InvalidArgument(
            "topic.topic: is required; name a topic of the workspace (berth topic list shows them, berth.work-requests and the other berth.* topics carry Berth's own events)".into(),
        ));
    }
    if topic.len() > MAX_LEN
        || !topic
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
    {
        return Err(Error::InvalidArgument(format!(
            "topic.topic: {topic:?} is not a topic slug (lowercase letters, digits, '.', '-' and '_', at most {MAX_LEN})"
        )));
    }
    if input.types.len() > MAX_TYPES {
        return Err(Error::InvalidArgument(format!(
            "topic.types: {} patterns; at most {MAX_TYPES}",
            input.types.len()
        )));
    }
    let mut types = Vec::with_capacity(input.types.len());
    for (i, pattern) in input.types.iter().enumerate() {
        let pattern = pattern.trim();
        let body = pattern.strip_suffix(".*").unwrap_or(pattern);
        let well_formed = pattern == "*"
            || (!body.is_empty()
                && pattern.len() <= MAX_LEN
                && body
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && !body.starts_with('.')
                && !body.ends_with('.'));
        if !well_formed {
            return Err(Error::InvalidArgument(format!(
                "topic.types[{i}]: {pattern:?} is not a type pattern; write a type (work_request.failed), a prefix (work_request.*) or *"
            )));
        }
        if !types.iter().any(|t| t == pattern) {
            types.push(pattern.to_owned());
        }
    }
    Ok(TopicConfig {
        topic: topic.to_owned(),
        types,
        subscription_id: None,
    })
}

/// Checks `input` and opens the subscription of rule `rule_id` on its topic in the
/// caller's transaction: NOT_FOUND when the workspace has no such topic,
/// FAILED_PRECONDITION when the topic stores nothing (`disabled`: no message would wait
/// for a rule to take it), PERMISSION_DENIED when `maker` may not consume from it (the
/// rule would read for them). `current` is the rule's configuration when it is being
/// changed: a move to another topic drops the old subscription.
pub async fn open(
    conn: &mut AsyncPgConnection,
    maker: Maker<'_>,
    rule_id: Uuid,
    input: &TopicInput,
    current: Option<&TopicConfig>,
) -> Result<TopicConfig> {
    let mut config = check(input)?;
    let workspace = &maker.standing.workspace;
    let subscription = topics::open_internal(
        conn,
        workspace.id,
        &config.topic,
        &subscription_name(rule_id),
    )
    .await
    .map_err(|e| match e {
        Error::NotFound(m) => Error::NotFound(format!("topic.topic: {m}")),
        Error::FailedPrecondition(m) => Error::FailedPrecondition(format!("topic.topic: {m}")),
        other => other,
    })?;
    let topic = topic_store::find_topic(conn, workspace.id, &config.topic, false)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "topic.topic: {}",
                topic_store::no_such_topic(&workspace.name, &config.topic)
            ))
        })?;
    let grants = topic_store::grants_of(conn, topic.id).await?;
    access::require_use(
        maker.standing,
        Some(maker.user_id),
        &topic,
        &grants,
        Use::Consume,
        false,
    )
    .map_err(|e| match e {
        Error::PermissionDenied(m) => Error::PermissionDenied(format!(
            "topic.topic: a topic rule reads the topic for the user who makes it: {m}"
        )),
        other => other,
    })?;
    if let Some(old) = current.and_then(|c| c.subscription_id)
        && old != subscription
    {
        topics::drop_internal(conn, old).await?;
    }
    config.subscription_id = Some(subscription);
    Ok(config)
}

/// Drops the subscription of a topic rule being archived, in the caller's transaction.
pub async fn close(conn: &mut AsyncPgConnection, config: &serde_json::Value) -> Result<()> {
    let config = TopicConfig::from_value(config)?;
    if let Some(subscription) = config.subscription_id {
        topics::drop_internal(conn, subscription).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

    use serde_json::json;

    use super::*;

    fn input(topic: &str, types: &[&str]) -> TopicInput {
        TopicInput {
            topic: topic.into(),
            types: types.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn types_match_exactly_by_prefix_or_all() {
        assert!(type_matches("work_request.failed", "work_request.failed"));
        assert!(!type_matches("work_request.failed", "work_request.failed2"));
        assert!(type_matches("work_request.*", "work_request.failed"));
        assert!(!type_matches("work_request.*", "work_request"));
        assert!(!type_matches("work_request.*", "work_requests.failed"));
        assert!(!type_matches("work.*", "workflow.failed"));
        assert!(type_matches("*", "anything"));
    }

    #[test]
    fn a_rule_without_types_wants_every_message_and_one_with_types_only_typed_ones() {
        let all = check(&input("builds", &[])).unwrap();
        assert!(all.wants(&json!({"anything": 1})));
        assert!(all.wants(&json!(42)));
        let failed = check(&input("berth.work-requests", &["work_request.failed"])).unwrap();
        assert!(failed.wants(&json!({"type": "work_request.failed"})));
        assert!(!failed.wants(&json!({"type": "work_request.succeeded"})));
        assert!(!failed.wants(&json!({"no": "type"})));
        assert!(!failed.wants(&json!("work_request.failed")));
    }

    #[test]
    fn bad_configurations_name_the_field() {
        for (bad, field) in [
            (input("", &[]), "topic.topic"),
            (input("Builds", &[]), "topic.topic"),
            (input(&"a".repeat(101), &[]), "topic.topic"),
            (input("builds", &[""]), "topic.types[0]"),
            (input("builds", &["ok", "Bad"]), "topic.types[1]"),
            (input("builds", &[".*"]), "topic.types[0]"),
            (input("builds", &["a.*.*"]), "topic.types[0]"),
            (input("builds", &["a."]), "topic.types[0]"),
        ] {
            let error = check(&bad).unwrap_err();
            assert!(
                matches!(&error, Error::InvalidArgument(m) if m.starts_with(field)),
                "{bad:?}: {error}"
            );
        }
        let many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
        let error = check(&TopicInput {
            topic: "builds".into(),
            types: many,
        })
        .unwrap_err();
        assert!(error.to_string().contains("topic.types"), "{error}");
    }

    #[test]
    fn repeated_types_are_kept_once() {
        let config = check(&input("builds", &["a.b", "a.b", "*"])).unwrap();
        assert_eq!(config.types, vec!["a.b".to_owned(), "*".to_owned()]);
    }

    #[test]
    fn the_rules_behind_a_message_are_read_from_its_trigger() {
        let content =
            json!({"type": "work_request.created", "data": {"trigger": {"rules": ["r1", "r2"]}}});
        assert_eq!(
            cause_rules(&content),
            vec!["r1".to_owned(), "r2".to_owned()]
        );
        assert!(cause_rules(&json!({"data": {"trigger": null}})).is_empty());
        assert!(cause_rules(&json!("plain")).is_empty());
    }

    #[test]
    fn a_stored_configuration_reads_back() {
        let config = TopicConfig {
            topic: "builds".into(),
            types: vec!["a.*".into()],
            subscription_id: Some(Uuid::from_u128(5)),
        };
        let value = serde_json::to_value(&config).unwrap();
        assert_eq!(TopicConfig::from_value(&value).unwrap(), config);
        let older = json!({"topic": "builds"});
        assert_eq!(
            TopicConfig::from_value(&older).unwrap().types,
            Vec::<String>::new()
        );
    }
}
