//! Views of topics, topic lists, deletions, published messages, pings, subscriptions and
//! subscription lists, and the one-line JSON of a delivered message that `berth topic
//! subscribe` prints.
//!
//! A topic's availability is shown with its evidence: `online (last ping …, last pong …,
//! 2 live consumers)`. Content is shown as the JSON it is, never re-quoted.

use std::collections::BTreeMap;

use berth_common::proto;
use serde::Serialize;

use super::{
    Answer, NONE, Render, Span, Table, Time, enum_name, fields, opt, sorted, time, yes_no,
};

/// A grant.
#[derive(Debug, Serialize)]
pub struct GrantView {
    pub principal: String,
    pub produce: bool,
    pub consume: bool,
}

/// Availability with its evidence.
#[derive(Debug, Serialize)]
pub struct AvailabilityView {
    /// `online`, `offline` or `unknown`.
    pub state: String,
    pub last_ping_at: Option<Time>,
    pub last_pong_at: Option<Time>,
    pub live_consumers: u32,
    pub unknown_after: Option<Span>,
    pub offline_after: Option<Span>,
}

/// A topic.
#[derive(Debug, Serialize)]
pub struct TopicView {
    pub id: String,
    pub workspace: String,
    pub slug: String,
    pub description: String,
    pub public: bool,
    pub system: bool,
    /// `disabled`, `cache`, `cacheall` or `store`.
    pub store_policy: String,
    pub max_age: Option<Span>,
    /// 0: no limit.
    pub max_messages: u64,
    pub api_info: serde_json::Value,
    pub grants: Vec<GrantView>,
    pub garbage_collect_at: Option<Time>,
    /// A response topic: the topic it answers.
    pub response_for: String,
    /// A response topic: who asked.
    pub owner: String,
    pub created_by: String,
    pub created_at: Option<Time>,
    pub availability: AvailabilityView,
    pub stored_messages: u64,
}

fn policy_name(value: i32) -> String {
    let name = proto::StorePolicy::try_from(value)
        .ok()
        .map(|policy| match policy {
            proto::StorePolicy::Unspecified => "unspecified",
            proto::StorePolicy::Disabled => "disabled",
            proto::StorePolicy::Cache => "cache",
            proto::StorePolicy::Cacheall => "cacheall",
            proto::StorePolicy::Store => "store",
        });
    enum_name(value, name)
}

fn availability_name(value: i32) -> String {
    let name = proto::Availability::try_from(value)
        .ok()
        .map(|state| match state {
            proto::Availability::Unspecified => "unspecified",
            proto::Availability::Unknown => "unknown",
            proto::Availability::Offline => "offline",
            proto::Availability::Online => "online",
        });
    enum_name(value, name)
}

impl From<proto::Topic> for TopicView {
    fn from(t: proto::Topic) -> TopicView {
        let retention = t.retention.unwrap_or_default();
        let a = t.availability.unwrap_or_default();
        TopicView {
            id: t.id,
            workspace: t.workspace,
            slug: t.slug,
            description: t.description,
            public: t.public,
            system: t.system,
            store_policy: policy_name(t.store_policy),
            max_age: Span::from_proto(retention.max_age.as_ref()),
            max_messages: retention.max_messages,
            api_info: serde_json::from_str(&t.api_info)
                .unwrap_or(serde_json::Value::String(t.api_info)),
            grants: t
                .grants
                .into_iter()
                .map(|g| GrantView {
                    principal: g.principal,
                    produce: g.produce,
                    consume: g.consume,
                })
                .collect(),
            garbage_collect_at: Time::from_proto(t.garbage_collect_at.as_ref()),
            response_for: t.response_for,
            owner: t.owner,
            created_by: t.created_by,
            created_at: Time::from_proto(t.created_at.as_ref()),
            availability: AvailabilityView {
                state: availability_name(a.state),
                last_ping_at: Time::from_proto(a.last_ping_at.as_ref()),
                last_pong_at: Time::from_proto(a.last_pong_at.as_ref()),
                live_consumers: a.live_consumers,
                unknown_after: Span::from_proto(a.unknown_after.as_ref()),
                offline_after: Span::from_proto(a.offline_after.as_ref()),
            },
            stored_messages: t.stored_messages,
        }
    }
}

impl Answer for proto::Topic {
    type View = TopicView;
}

impl TopicView {
    /// `role:contributor produce, user:alice consume`.
    fn grants_line(&self) -> String {
        let grants: Vec<String> = self
            .grants
            .iter()
            .map(|g| {
                let what = match (g.produce, g.consume) {
                    (true, true) => "produce+consume",
                    (true, false) => "produce",
                    (false, true) => "consume",
                    (false, false) => "nothing",
                };
                format!("{} {what}", g.principal)
            })
            .collect();
        grants.join(", ")
    }

    fn retention_line(&self) -> String {
        let mut parts = Vec::new();
        if let Some(age) = self.max_age {
            parts.push(format!("max age {age}"));
        }
        if self.max_messages > 0 {
            parts.push(format!("max {} messages", self.max_messages));
        }
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    }

    fn availability_line(&self) -> String {
        let a = &self.availability;
        format!(
            "{} (last ping {}, last pong {}, {} live consumer{})",
            a.state,
            time(a.last_ping_at),
            time(a.last_pong_at),
            a.live_consumers,
            if a.live_consumers == 1 { "" } else { "s" }
        )
    }
}

impl Render for TopicView {
    fn table(&self) -> String {
        let mut rows = vec![
            ("slug", self.slug.clone()),
            ("id", self.id.clone()),
            ("workspace", self.workspace.clone()),
            ("description", self.description.clone()),
            ("public", yes_no(self.public)),
            ("system", yes_no(self.system)),
            ("store_policy", self.store_policy.clone()),
            ("retention", self.retention_line()),
            ("grants", self.grants_line()),
            ("stored_messages", self.stored_messages.to_string()),
            ("availability", self.availability_line()),
        ];
        if !self.response_for.is_empty() {
            rows.push(("response_for", self.response_for.clone()));
            rows.push(("owner", self.owner.clone()));
            rows.push(("garbage_collect_at", time(self.garbage_collect_at)));
        }
        let api_info = match &self.api_info {
            serde_json::Value::Object(o) if o.is_empty() => String::new(),
            other => other.to_string(),
        };
        rows.extend([
            ("api_info", api_info),
            ("created_by", self.created_by.clone()),
            ("created_at", time(self.created_at)),
        ]);
        fields(&rows)
    }
}

/// `topic list`.
#[derive(Debug, Serialize)]
pub struct TopicListView {
    pub topics: Vec<TopicView>,
}

impl From<proto::ListTopicsResponse> for TopicListView {
    fn from(r: proto::ListTopicsResponse) -> TopicListView {
        TopicListView {
            topics: r.topics.into_iter().map(TopicView::from).collect(),
        }
    }
}

impl Answer for proto::ListTopicsResponse {
    type View = TopicListView;
}

impl Render for TopicListView {
    fn table(&self) -> String {
        let mut table = Table::new([
            "SLUG",
            "POLICY",
            "PUBLIC",
            "CONSUMERS",
            "AVAILABILITY",
            "DESCRIPTION",
        ]);
        for t in &self.topics {
            let public = if t.system {
                "system".to_owned()
            } else {
                yes_no(t.public)
            };
            table.row([
                t.slug.clone(),
                t.store_policy.clone(),
                public,
                t.availability.live_consumers.to_string(),
                t.availability.state.clone(),
                t.description.clone(),
            ]);
        }
        table.render()
    }
}

/// `topic delete` and `subscription delete`.
#[derive(Debug, Serialize)]
pub struct TopicDeletedView {
    pub deleted: bool,
}

impl From<proto::DeleteTopicResponse> for TopicDeletedView {
    fn from(r: proto::DeleteTopicResponse) -> TopicDeletedView {
        TopicDeletedView { deleted: r.deleted }
    }
}

impl Answer for proto::DeleteTopicResponse {
    type View = TopicDeletedView;
}

impl From<proto::DeleteSubscriptionResponse> for TopicDeletedView {
    fn from(r: proto::DeleteSubscriptionResponse) -> TopicDeletedView {
        TopicDeletedView { deleted: r.deleted }
    }
}

impl Answer for proto::DeleteSubscriptionResponse {
    type View = TopicDeletedView;
}

impl Render for TopicDeletedView {
    fn table(&self) -> String {
        fields(&[("deleted", yes_no(self.deleted))])
    }
}

/// One published message.
#[derive(Debug, Serialize)]
pub struct PublishedView {
    pub seq: i64,
    pub message_id: String,
}

/// `topic publish`.
#[derive(Debug, Serialize)]
pub struct PublishedListView {
    pub messages: Vec<PublishedView>,
}

impl From<proto::PublishResponse> for PublishedListView {
    fn from(r: proto::PublishResponse) -> PublishedListView {
        PublishedListView {
            messages: r
                .messages
                .into_iter()
                .map(|m| PublishedView {
                    seq: m.seq,
                    message_id: m.message_id,
                })
                .collect(),
        }
    }
}

impl Answer for proto::PublishResponse {
    type View = PublishedListView;
}

impl Render for PublishedListView {
    fn table(&self) -> String {
        let mut table = Table::new(["SEQ", "MESSAGE ID"]);
        for m in &self.messages {
            table.row([m.seq.to_string(), m.message_id.clone()]);
        }
        table.render()
    }
}

/// `topic ping`.
#[derive(Debug, Serialize)]
pub struct PingView {
    pub pinged_at: Option<Time>,
    pub live_consumers: u32,
}

impl From<proto::PingTopicResponse> for PingView {
    fn from(r: proto::PingTopicResponse) -> PingView {
        PingView {
            pinged_at: Time::from_proto(r.pinged_at.as_ref()),
            live_consumers: r.live_consumers,
        }
    }
}

impl Answer for proto::PingTopicResponse {
    type View = PingView;
}

impl Render for PingView {
    fn table(&self) -> String {
        fields(&[
            ("pinged_at", time(self.pinged_at)),
            ("live_consumers", self.live_consumers.to_string()),
        ])
    }
}

/// A subscription.
#[derive(Debug, Serialize)]
pub struct SubscriptionView {
    pub id: String,
    pub workspace: String,
    pub topic: String,
    pub name: String,
    pub internal: bool,
    pub ack_deadline: Option<Span>,
    /// 0: unlimited.
    pub max_deliveries: u32,
    pub backoff: Vec<Span>,
    pub max_in_flight: u32,
    pub dead_letter_topic: String,
    pub created_by: String,
    pub created_at: Option<Time>,
    pub backlog: u64,
    pub in_flight: u64,
    pub oldest_unacked_age: Option<Span>,
    pub live_consumers: u32,
}

impl From<proto::Subscription> for SubscriptionView {
    fn from(s: proto::Subscription) -> SubscriptionView {
        SubscriptionView {
            id: s.id,
            workspace: s.workspace,
            topic: s.topic,
            name: s.name,
            internal: s.internal,
            ack_deadline: Span::from_proto(s.ack_deadline.as_ref()),
            max_deliveries: s.max_deliveries,
            backoff: s
                .backoff
                .iter()
                .filter_map(|d| Span::from_proto(Some(d)))
                .collect(),
            max_in_flight: s.max_in_flight,
            dead_letter_topic: s.dead_letter_topic,
            created_by: s.created_by,
            created_at: Time::from_proto(s.created_at.as_ref()),
            backlog: s.backlog,
            in_flight: s.in_flight,
            oldest_unacked_age: Span::from_proto(s.oldest_unacked_age.as_ref()),
            live_consumers: s.live_consumers,
        }
    }
}

impl Answer for proto::Subscription {
    type View = SubscriptionView;
}

impl SubscriptionView {
    fn deliveries(&self) -> String {
        if self.max_deliveries == 0 {
            "unlimited".to_owned()
        } else {
            self.max_deliveries.to_string()
        }
    }
}

impl Render for SubscriptionView {
    fn table(&self) -> String {
        let backoff: Vec<String> = self.backoff.iter().map(ToString::to_string).collect();
        fields(&[
            ("name", self.name.clone()),
            ("id", self.id.clone()),
            ("topic", self.topic.clone()),
            ("workspace", self.workspace.clone()),
            ("internal", yes_no(self.internal)),
            ("ack_deadline", opt(self.ack_deadline)),
            ("max_deliveries", self.deliveries()),
            ("backoff", backoff.join(",")),
            ("max_in_flight", self.max_in_flight.to_string()),
            ("dead_letter_topic", self.dead_letter_topic.clone()),
            ("backlog", self.backlog.to_string()),
            ("in_flight", self.in_flight.to_string()),
            ("oldest_unacked_age", opt(self.oldest_unacked_age)),
            ("live_consumers", self.live_consumers.to_string()),
            ("created_by", self.created_by.clone()),
            ("created_at", time(self.created_at)),
        ])
    }
}

/// `subscription list`.
#[derive(Debug, Serialize)]
pub struct SubscriptionListView {
    pub subscriptions: Vec<SubscriptionView>,
}

impl From<proto::ListSubscriptionsResponse> for SubscriptionListView {
    fn from(r: proto::ListSubscriptionsResponse) -> SubscriptionListView {
        SubscriptionListView {
            subscriptions: r
                .subscriptions
                .into_iter()
                .map(SubscriptionView::from)
                .collect(),
        }
    }
}

impl Answer for proto::ListSubscriptionsResponse {
    type View = SubscriptionListView;
}

impl Render for SubscriptionListView {
    fn table(&self) -> String {
        let mut table = Table::new([
            "NAME",
            "BACKLOG",
            "IN FLIGHT",
            "OLDEST",
            "CONSUMERS",
            "DEAD LETTERS",
        ]);
        for s in &self.subscriptions {
            table.row([
                s.name.clone(),
                s.backlog.to_string(),
                s.in_flight.to_string(),
                opt(s.oldest_unacked_age),
                s.live_consumers.to_string(),
                if s.dead_letter_topic.is_empty() {
                    NONE.to_owned()
                } else {
                    s.dead_letter_topic.clone()
                },
            ]);
        }
        table.render()
    }
}

/// A delivered message as `topic subscribe` prints it: one line of JSON.
#[derive(Debug, Serialize)]
pub struct MessageLine {
    pub seq: i64,
    pub message_id: String,
    pub context: String,
    /// The content as the JSON it is.
    pub content: serde_json::Value,
    pub properties: BTreeMap<String, String>,
    pub producer: String,
    pub published_at: Option<Time>,
    pub delivery_count: u32,
}

impl From<&proto::Delivery> for MessageLine {
    fn from(d: &proto::Delivery) -> MessageLine {
        MessageLine {
            seq: d.seq,
            message_id: d.message_id.clone(),
            context: d.context.clone(),
            content: serde_json::from_str(&d.content)
                .unwrap_or_else(|_| serde_json::Value::String(d.content.clone())),
            properties: sorted(d.properties.clone()),
            producer: d.producer.clone(),
            published_at: Time::from_proto(d.published_at.as_ref()),
            delivery_count: d.delivery_count,
        }
    }
}

impl MessageLine {
    /// The line, with its newline.
    pub fn line(&self) -> Result<String, serde_json::Error> {
        let mut text = serde_json::to_string(self)?;
        text.push('\n');
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::super::to_json;
    use super::*;

    #[test]
    fn a_topic_shows_its_policy_grants_and_availability_with_the_evidence() {
        let view = TopicView::from(proto::Topic {
            slug: "builds.done".into(),
            store_policy: proto::StorePolicy::Cacheall as i32,
            grants: vec![proto::TopicGrant {
                principal: "role:contributor".into(),
                produce: true,
                consume: false,
            }],
            api_info: r#"{"schema":"v1"}"#.into(),
            availability: Some(proto::TopicAvailability {
                state: proto::Availability::Online as i32,
                live_consumers: 2,
                ..Default::default()
            }),
            ..Default::default()
        });
        let table = view.table();
        assert!(table.contains("store_policy:    cacheall"), "{table}");
        assert!(table.contains("role:contributor produce"), "{table}");
        assert!(
            table.contains("online (last ping -, last pong -, 2 live consumers)"),
            "{table}"
        );
        let json = to_json(&view);
        assert_eq!(json["api_info"]["schema"], "v1");
        assert_eq!(json["availability"]["state"], "online");
    }

    #[test]
    fn a_message_line_is_one_line_of_json_with_the_content_as_json() {
        let delivery = proto::Delivery {
            seq: 7,
            message_id: "m".into(),
            content: r#"{"n": 1}"#.into(),
            properties: [("k".to_owned(), "v".to_owned())].into(),
            producer: "alice".into(),
            delivery_count: 2,
            ..Default::default()
        };
        let line = MessageLine::from(&delivery).line().expect("encodes");
        assert_eq!(line.lines().count(), 1);
        let json: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(json["content"]["n"], 1);
        assert_eq!(json["properties"]["k"], "v");
        assert_eq!(json["delivery_count"], 2);
    }
}
