//! Publishing: checking messages, storing them with their ids, fanning them out to the
//! topic's subscriptions, waking consumers on every replica, and response topics.
//!
//! A call publishes all its messages or none: one transaction takes a seq for each, takes
//! their ids in `topic_message_ids` (a taken id refuses the whole call with
//! ALREADY_EXISTS naming it, and nothing is stored), inserts the messages, inserts one
//! `subscription_messages` row per subscription and message in one `INSERT … SELECT`,
//! and notifies every replica (`topic:<id>`) before it commits. The topic's row is held
//! `FOR KEY SHARE` meanwhile, so a subscription being made (which locks it `FOR UPDATE`)
//! either gets these messages fanned out to it or finds them stored when it starts.
//!
//! A `disabled` topic stores no message: its messages go in NOTIFY payloads, one per
//! subscription that has a live consumer, addressed to the live consumer with the
//! smallest id, so exactly one consumer of each such subscription gets each message, on
//! whichever replica it is. A NOTIFY carries less than 8000 bytes, so such a message may
//! be at most [`DISABLED_MAX_BYTES`] as JSON.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::Standing;
use crate::error::{Error, Result};
use crate::live::consumers::TopicSignal;
use crate::store::schema::topics;
use crate::topics::access::{self, Use};
use crate::topics::store::{self, NewTopic, TopicRow};
use crate::topics::{
    MessageInput, Published, SYSTEM_TOPICS, StorePolicy, TopicRef, Topics, manage, policy,
};

/// The most messages one call publishes.
pub const MAX_BATCH: usize = 1000;
/// The largest content of one message, as JSON text.
pub const MAX_CONTENT_BYTES: usize = 256 * 1024;
/// The longest context.
pub const MAX_CONTEXT_BYTES: usize = 1024;
/// The most properties of one message, and their longest key and value.
pub const MAX_PROPERTIES: usize = 64;
pub const MAX_PROPERTY_KEY: usize = 128;
pub const MAX_PROPERTY_VALUE: usize = 4096;
/// The largest message of a `disabled` topic, as the JSON a NOTIFY carries.
pub const DISABLED_MAX_BYTES: usize = 7500;
/// The property that asks for a response topic, and the one that sets its time to live.
pub const RESPONSE_TOPIC: &str = "response_topic";
pub const RESPONSE_TTL: &str = "response_ttl";
/// The longest time to live a response topic may be given.
pub const MAX_RESPONSE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// A checked message, ready to store.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Outgoing {
    pub message_id: Uuid,
    pub context: String,
    pub content: serde_json::Value,
    /// A JSON object of strings.
    pub properties: serde_json::Value,
}

/// Who publishes.
#[derive(Clone, Debug)]
pub(crate) struct Producer {
    pub id: Option<Uuid>,
    pub name: String,
}

/// A message of a `disabled` topic as its NOTIFY carries it (short keys: the payload is
/// small).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct LiveMessage {
    #[serde(rename = "s")]
    pub seq: i64,
    #[serde(rename = "i")]
    pub message_id: Uuid,
    #[serde(rename = "x")]
    pub context: String,
    #[serde(rename = "c")]
    pub content: serde_json::Value,
    #[serde(rename = "p")]
    pub properties: serde_json::Value,
    #[serde(rename = "r")]
    pub producer: String,
    #[serde(rename = "t")]
    pub published_at: DateTime<Utc>,
}

/// What became of a publish.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Stored (or sent live), in the order given.
    Published(Vec<Published>),
    /// The message at this index has an id already published on the topic; its id is
    /// taken, and the caller must roll back what the others took.
    Duplicate(usize, Uuid),
}

/// Checks one message; `i` names it in errors.
fn check_message(i: usize, input: &MessageInput) -> Result<Outgoing> {
    let field = |name: &str| format!("messages[{i}].{name}");
    let message_id = if input.message_id.is_empty() {
        Uuid::now_v7()
    } else {
        Uuid::parse_str(&input.message_id).map_err(|_| {
            Error::InvalidArgument(format!(
                "{}: {:?} is not a UUID; give one (e.g. from uuidgen) or leave it empty for the server to pick",
                field("message_id"),
                input.message_id
            ))
        })?
    };
    if input.context.len() > MAX_CONTEXT_BYTES {
        return Err(Error::InvalidArgument(format!(
            "{}: {} bytes; at most {MAX_CONTEXT_BYTES}",
            field("context"),
            input.context.len()
        )));
    }
    if input.content.len() > MAX_CONTENT_BYTES {
        return Err(Error::InvalidArgument(format!(
            "{}: {} bytes of JSON; a message may carry at most {MAX_CONTENT_BYTES} bytes (256 KiB): store big payloads as an artifact and send its id",
            field("content"),
            input.content.len()
        )));
    }
    if input.content.trim().is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{}: is empty; give a JSON value such as {{\"key\": \"value\"}}",
            field("content")
        )));
    }
    let content: serde_json::Value = serde_json::from_str(&input.content).map_err(|e| {
        Error::InvalidArgument(format!("{}: not valid JSON ({e})", field("content")))
    })?;
    if input.properties.len() > MAX_PROPERTIES {
        return Err(Error::InvalidArgument(format!(
            "{}: {} properties; at most {MAX_PROPERTIES}",
            field("properties"),
            input.properties.len()
        )));
    }
    for (key, value) in &input.properties {
        if key.is_empty() || key.len() > MAX_PROPERTY_KEY {
            return Err(Error::InvalidArgument(format!(
                "{}: a key must have 1-{MAX_PROPERTY_KEY} bytes, got {key:?}",
                field("properties")
            )));
        }
        if value.len() > MAX_PROPERTY_VALUE {
            return Err(Error::InvalidArgument(format!(
                "{}: {} bytes; at most {MAX_PROPERTY_VALUE}",
                field(&format!("properties.{key}")),
                value.len()
            )));
        }
    }
    let properties = serde_json::Value::Object(
        input
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    );
    Ok(Outgoing {
        message_id,
        context: input.context.clone(),
        content,
        properties,
    })
}

/// Checks a call's messages: at least one, at most [`MAX_BATCH`], each well formed, no id
/// twice.
pub(crate) fn check_messages(inputs: &[MessageInput]) -> Result<Vec<Outgoing>> {
    if inputs.is_empty() {
        return Err(Error::InvalidArgument(
            "messages: is empty; give at least one message".into(),
        ));
    }
    if inputs.len() > MAX_BATCH {
        return Err(Error::InvalidArgument(format!(
            "messages: {} messages; at most {MAX_BATCH} per call",
            inputs.len()
        )));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let message = check_message(i, input)?;
        if !seen.insert(message.message_id) {
            return Err(Error::AlreadyExists(format!(
                "messages[{i}].message_id: {} appears twice in this call; nothing was published",
                message.message_id
            )));
        }
        out.push(message);
    }
    Ok(out)
}

/// The JSON a `disabled` topic's message travels as.
fn live_json(message: &Outgoing, seq: i64, producer: &Producer, at: DateTime<Utc>) -> String {
    let live = LiveMessage {
        seq,
        message_id: message.message_id,
        context: message.context.clone(),
        content: message.content.clone(),
        properties: message.properties.clone(),
        producer: producer.name.clone(),
        published_at: at,
    };
    serde_json::to_string(&live).unwrap_or_default()
}

/// Refuses messages too large for a `disabled` topic's NOTIFY.
pub(crate) fn check_live_size(messages: &[Outgoing], producer: &Producer) -> Result<()> {
    for (i, message) in messages.iter().enumerate() {
        let size = live_json(message, i64::MAX, producer, Utc::now()).len();
        if size > DISABLED_MAX_BYTES {
            return Err(Error::InvalidArgument(format!(
                "messages[{i}]: {size} bytes as JSON; a message on a topic with store policy disabled travels in a NOTIFY and may be at most {DISABLED_MAX_BYTES} bytes (content, context and properties); use another store policy for larger messages"
            )));
        }
    }
    Ok(())
}

#[derive(QueryableByName)]
struct SeqAt {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct TakenId {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    message_id: Uuid,
}

#[derive(QueryableByName)]
struct ConsumerId {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// Publishes checked `messages` on `topic` (held `FOR KEY SHARE` by the caller) inside
/// the caller's transaction. A [`Outcome::Duplicate`] has taken ids the caller must roll
/// back (unless it published a single message, which then took nothing).
/// `live_window`: how recently a consumer must have been seen to get a `disabled`
/// topic's message.
pub(crate) async fn publish_in(
    conn: &mut AsyncPgConnection,
    topic: &TopicRow,
    producer: &Producer,
    messages: &[Outgoing],
    live_window: Duration,
) -> Result<Outcome> {
    let policy = topic.policy()?;
    let n = i32::try_from(messages.len()).map_err(|_| Error::internal("too many messages"))?;
    let mut taken: Vec<SeqAt> = diesel::sql_query(
        "SELECT nextval('topic_message_seq') AS seq, now() AS at FROM generate_series(1, $1)",
    )
    .bind::<Integer, _>(n)
    .load(conn)
    .await?;
    // The sequence hands them out in no particular order within one statement; the
    // messages get them in their order.
    taken.sort_by_key(|t| t.seq);
    let seqs: Vec<i64> = taken.iter().map(|t| t.seq).collect();
    let at = taken
        .as_slice()
        .first()
        .map(|t| t.at)
        .ok_or_else(|| Error::internal("no seq taken"))?;
    let ids: Vec<Uuid> = messages.iter().map(|m| m.message_id).collect();
    let went_in: Vec<TakenId> = diesel::sql_query(
        "INSERT INTO topic_message_ids (topic_id, message_id, seq, published_at) \
         SELECT $1, u.i, u.s, $4 FROM unnest($2::uuid[], $3::int8[]) AS u(i, s) \
         ON CONFLICT DO NOTHING RETURNING message_id",
    )
    .bind::<diesel::sql_types::Uuid, _>(topic.id)
    .bind::<Array<diesel::sql_types::Uuid>, _>(&ids)
    .bind::<Array<BigInt>, _>(&seqs)
    .bind::<Timestamptz, _>(at)
    .load(conn)
    .await?;
    if went_in.len() < ids.len() {
        let fresh: HashSet<Uuid> = went_in.into_iter().map(|t| t.message_id).collect();
        let (index, id) = ids
            .iter()
            .enumerate()
            .find(|(_, id)| !fresh.contains(id))
            .map(|(i, id)| (i, *id))
            .ok_or_else(|| Error::internal("a message id both taken and not"))?;
        return Ok(Outcome::Duplicate(index, id));
    }
    let published: Vec<Published> = messages
        .iter()
        .zip(&seqs)
        .map(|(m, seq)| Published {
            message_id: m.message_id,
            seq: *seq,
        })
        .collect();
    if policy == StorePolicy::Disabled {
        send_live(conn, topic, producer, messages, &seqs, at, live_window).await?;
        return Ok(Outcome::Published(published));
    }
    let contexts: Vec<&str> = messages.iter().map(|m| m.context.as_str()).collect();
    let contents: Vec<&serde_json::Value> = messages.iter().map(|m| &m.content).collect();
    let properties: Vec<&serde_json::Value> = messages.iter().map(|m| &m.properties).collect();
    diesel::sql_query(
        "INSERT INTO topic_messages \
           (topic_id, seq, message_id, context, content, properties, producer_id, producer, published_at) \
         SELECT $1, u.s, u.i, u.x, u.c, u.p, $7, $8, $9 \
         FROM unnest($2::int8[], $3::uuid[], $4::text[], $5::jsonb[], $6::jsonb[]) AS u(s, i, x, c, p)",
    )
    .bind::<diesel::sql_types::Uuid, _>(topic.id)
    .bind::<Array<BigInt>, _>(&seqs)
    .bind::<Array<diesel::sql_types::Uuid>, _>(&ids)
    .bind::<Array<Text>, _>(&contexts)
    .bind::<Array<Jsonb>, _>(&contents)
    .bind::<Array<Jsonb>, _>(&properties)
    .bind::<Nullable<diesel::sql_types::Uuid>, _>(producer.id)
    .bind::<Text, _>(&producer.name)
    .bind::<Timestamptz, _>(at)
    .execute(conn)
    .await?;
    let fanned = diesel::sql_query(
        "INSERT INTO subscription_messages (subscription_id, seq, topic_id, visible_at) \
         SELECT s.id, u.seq, $1, $3 FROM subscriptions s CROSS JOIN unnest($2::int8[]) AS u(seq) \
         WHERE s.topic_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(topic.id)
    .bind::<Array<BigInt>, _>(&seqs)
    .bind::<Timestamptz, _>(at)
    .execute(conn)
    .await?;
    if fanned == 0 {
        // Every subscription that existed when it was published has (vacuously) had it.
        if policy == StorePolicy::CacheAll {
            policy::delete_messages(conn, topic.id, &seqs).await?;
        }
        return Ok(Outcome::Published(published));
    }
    store::notify(conn, &[TopicSignal::Published(topic.id).encode()]).await?;
    Ok(Outcome::Published(published))
}

/// Sends a `disabled` topic's messages to one live consumer of each subscription.
async fn send_live(
    conn: &mut AsyncPgConnection,
    topic: &TopicRow,
    producer: &Producer,
    messages: &[Outgoing],
    seqs: &[i64],
    at: DateTime<Utc>,
    live_window: Duration,
) -> Result<()> {
    let window_ms = i64::try_from(live_window.as_millis()).unwrap_or(i64::MAX);
    let chosen: Vec<ConsumerId> = diesel::sql_query(
        "SELECT DISTINCT ON (subscription_id) id FROM topic_consumers \
         WHERE topic_id = $1 AND seen_at > now() - $2 * interval '1 millisecond' \
         ORDER BY subscription_id, id",
    )
    .bind::<diesel::sql_types::Uuid, _>(topic.id)
    .bind::<BigInt, _>(window_ms)
    .load(conn)
    .await?;
    if chosen.is_empty() {
        return Ok(());
    }
    let mut payloads = Vec::with_capacity(chosen.len() * messages.len());
    for (message, seq) in messages.iter().zip(seqs) {
        let json = live_json(message, *seq, producer, at);
        for consumer in &chosen {
            payloads.push(
                TopicSignal::Direct {
                    consumer: consumer.id,
                    message: json.clone(),
                }
                .encode(),
            );
        }
    }
    store::notify(conn, &payloads).await
}

/// Publishes a system event (see [`crate::topics::publish_system`]).
pub(crate) async fn system(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    slug: &str,
    message_id: Uuid,
    content: &serde_json::Value,
) -> Result<Option<i64>> {
    if !SYSTEM_TOPICS.contains(&slug) {
        return Err(Error::InvalidArgument(format!(
            "{slug:?} is not a system topic; they are {}",
            SYSTEM_TOPICS.join(", ")
        )));
    }
    let made = store::ensure_system_topic(conn, workspace_id, slug).await?;
    let topic = store::share_topic(conn, made.id)
        .await?
        .ok_or_else(|| Error::internal(format!("system topic {slug} vanished")))?;
    let message = Outgoing {
        message_id,
        context: String::new(),
        content: content.clone(),
        properties: serde_json::json!({}),
    };
    let producer = Producer {
        id: None,
        name: "berth".to_owned(),
    };
    // A system topic stores (policy `store`), so no live window is needed.
    match publish_in(conn, &topic, &producer, &[message], Duration::ZERO).await? {
        Outcome::Published(published) => Ok(published.as_slice().first().map(|p| p.seq)),
        Outcome::Duplicate(..) => Ok(None),
    }
}

/// What a message asks of a response topic.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ResponseAsk {
    slug: String,
    ttl: Duration,
}

/// The response topic a message asks for, checked; `i` names it in errors.
fn response_ask(
    i: usize,
    properties: &BTreeMap<String, String>,
    default_ttl: Duration,
) -> Result<Option<ResponseAsk>> {
    let Some(slug) = properties.get(RESPONSE_TOPIC) else {
        if properties.contains_key(RESPONSE_TTL) {
            return Err(Error::InvalidArgument(format!(
                "messages[{i}].properties.{RESPONSE_TTL}: only means something with {RESPONSE_TOPIC}"
            )));
        }
        return Ok(None);
    };
    store::check_user_slug(&format!("messages[{i}].properties.{RESPONSE_TOPIC}"), slug)?;
    let ttl = match properties.get(RESPONSE_TTL) {
        None => default_ttl,
        Some(text) => {
            let seconds: u64 = text.parse().map_err(|_| {
                Error::InvalidArgument(format!(
                    "messages[{i}].properties.{RESPONSE_TTL}: {text:?} is not a whole number of seconds"
                ))
            })?;
            let ttl = Duration::from_secs(seconds);
            if seconds == 0 || ttl > MAX_RESPONSE_TTL {
                return Err(Error::InvalidArgument(format!(
                    "messages[{i}].properties.{RESPONSE_TTL}: use 1 to {} seconds",
                    MAX_RESPONSE_TTL.as_secs()
                )));
            }
            ttl
        }
    };
    Ok(Some(ResponseAsk {
        slug: slug.clone(),
        ttl,
    }))
}

/// Makes or reuses the response topic `ask` names for `caller`, answering `source`, and
/// pushes its collection time to at least now + its ttl.
async fn ensure_response_topic(
    conn: &mut AsyncPgConnection,
    standing: &Standing,
    caller: Uuid,
    source: &TopicRow,
    ask: &ResponseAsk,
) -> Result<()> {
    let ttl_ms = i64::try_from(ask.ttl.as_millis()).unwrap_or(i64::MAX);
    if store::find_topic(conn, source.workspace_id, &ask.slug, true)
        .await?
        .is_none()
    {
        let new = NewTopic {
            id: Uuid::now_v7(),
            workspace_id: source.workspace_id,
            slug: ask.slug.clone(),
            description: format!("responses to requests on {}", source.slug),
            is_public: false,
            is_system: false,
            store_policy: StorePolicy::Cache.as_str().to_owned(),
            max_age_ms: None,
            max_messages: None,
            api_info: serde_json::json!({}),
            garbage_collect_at: None,
            response_for: Some(source.id),
            owner_id: Some(caller),
            created_by: Some(caller),
        };
        diesel::insert_into(topics::table)
            .values(&new)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    let found = store::find_topic(conn, source.workspace_id, &ask.slug, true)
        .await?
        .ok_or_else(|| Error::internal(format!("response topic {} vanished", ask.slug)))?;
    if found.response_for.is_none() {
        return Err(Error::FailedPrecondition(format!(
            "{RESPONSE_TOPIC}: topic {} exists and is not a response topic; name a slug no topic has, and one is made for the answers",
            found.slug
        )));
    }
    let owner = standing.admin || standing.role == Some(crate::access::roles::WorkspaceRole::Owner);
    if found.owner_id != Some(caller) && !owner {
        return Err(Error::PermissionDenied(format!(
            "{RESPONSE_TOPIC}: response topic {} belongs to another user; name your own",
            found.slug
        )));
    }
    // Each use pushes the collection on: at least a ttl from now.
    diesel::sql_query(
        "UPDATE topics SET garbage_collect_at = \
           greatest(garbage_collect_at, now() + $2 * interval '1 millisecond') WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(found.id)
    .bind::<BigInt, _>(ttl_ms)
    .execute(conn)
    .await?;
    Ok(())
}

impl Topics {
    /// Publishes `messages` on `topic` as `caller`: all or none (see the module docs).
    pub async fn publish(
        &self,
        caller: &Identity,
        topic: &TopicRef,
        messages: &[MessageInput],
    ) -> Result<Vec<Published>> {
        let checked = check_messages(messages)?;
        let mut asks = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            if let Some(ask) = response_ask(i, &message.properties, self.settings.response_ttl)? {
                asks.push(ask);
            }
        }
        let producer = Producer {
            id: caller.user_id,
            name: caller.name.clone(),
        };
        let caller_id = caller.user_id;
        let live_window = self.settings.consumer_stale_after();
        let mut conn = self.pool.get().await?;
        let (topic_id, published) = conn
            .transaction::<_, Error, _>(async |conn| {
                let (standing, row) = manage::resolve(conn, caller, topic).await?;
                let row = store::share_topic(conn, row.id)
                    .await?
                    .ok_or_else(|| store::no_such_topic(&standing.workspace.name, &topic.slug))?;
                access::refuse_system(&row, "publish on")?;
                let grants = store::grants_of(conn, row.id).await?;
                let source_consumer = match row.response_for {
                    Some(source) => {
                        access::may_consume_source(conn, &standing, caller_id, source).await?
                    }
                    None => false,
                };
                access::require_use(&standing, caller_id, &row, &grants, Use::Produce, source_consumer)?;
                standing.require_open()?;
                if row.policy()? == StorePolicy::Disabled {
                    check_live_size(&checked, &producer)?;
                }
                if !asks.is_empty() {
                    let requester = caller_id.ok_or_else(|| {
                        Error::PermissionDenied(format!(
                            "{RESPONSE_TOPIC}: only users may ask for a response topic"
                        ))
                    })?;
                    for ask in &asks {
                        ensure_response_topic(conn, &standing, requester, &row, ask).await?;
                    }
                }
                match publish_in(conn, &row, &producer, &checked, live_window).await? {
                    Outcome::Published(published) => Ok((row.id, published)),
                    Outcome::Duplicate(i, id) => Err(Error::AlreadyExists(format!(
                        "messages[{i}].message_id: {id} was already published on topic {}; nothing was published",
                        row.slug
                    ))),
                }
            })
            .await?;
        // The NOTIFY wakes every replica's consumers; this replica's need not wait for it.
        self.hub.consumers().wake(topic_id);
        Ok(published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(content: &str) -> MessageInput {
        MessageInput {
            content: content.to_owned(),
            ..Default::default()
        }
    }

    fn invalid(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn messages_are_checked_naming_the_message_and_field() {
        let ok = check_messages(&[message(r#"{"a":1}"#), message("42")]).expect("valid");
        assert_eq!(ok[0].content, serde_json::json!({"a": 1}));
        assert_eq!(ok[1].content, serde_json::json!(42));
        assert_ne!(ok[0].message_id, ok[1].message_id);
        assert!(invalid(check_messages(&[])).starts_with("messages:"));
        let m = invalid(check_messages(&[message("{}"), message("{nope")]));
        assert!(m.starts_with("messages[1].content: not valid JSON"), "{m}");
        let huge = format!("\"{}\"", "x".repeat(MAX_CONTENT_BYTES));
        let m = invalid(check_messages(&[message(&huge)]));
        assert!(
            m.starts_with("messages[0].content:") && m.contains("262144"),
            "{m}"
        );
        let bad_id = MessageInput {
            message_id: "not-a-uuid".into(),
            ..message("{}")
        };
        assert!(invalid(check_messages(&[bad_id])).starts_with("messages[0].message_id:"));
    }

    #[test]
    fn an_id_twice_in_one_call_is_refused() {
        let id = Uuid::now_v7().to_string();
        let twice = [
            MessageInput {
                message_id: id.clone(),
                ..message("1")
            },
            MessageInput {
                message_id: id,
                ..message("2")
            },
        ];
        let Err(Error::AlreadyExists(m)) = check_messages(&twice) else {
            panic!("a duplicate in one call is ALREADY_EXISTS");
        };
        assert!(m.starts_with("messages[1].message_id:"), "{m}");
    }

    #[test]
    fn disabled_topics_refuse_what_a_notify_cannot_carry() {
        let producer = Producer {
            id: None,
            name: "alice".into(),
        };
        let small = check_messages(&[message(r#"{"ok":true}"#)]).expect("valid");
        check_live_size(&small, &producer).expect("small enough");
        let big = check_messages(&[message(&format!("\"{}\"", "y".repeat(7600)))]).expect("valid");
        let m = invalid(check_live_size(&big, &producer));
        assert!(m.contains("7500") && m.contains("disabled"), "{m}");
    }

    #[test]
    fn response_topics_are_asked_with_a_slug_and_a_ttl_in_seconds() {
        let hour = Duration::from_secs(3600);
        let props = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(response_ask(0, &props(&[]), hour).expect("none"), None);
        let ask = response_ask(0, &props(&[("response_topic", "answers.1")]), hour)
            .expect("valid")
            .expect("asked");
        assert_eq!((ask.slug.as_str(), ask.ttl), ("answers.1", hour));
        let ask = response_ask(
            0,
            &props(&[("response_topic", "a"), ("response_ttl", "60")]),
            hour,
        )
        .expect("valid")
        .expect("asked");
        assert_eq!(ask.ttl, Duration::from_secs(60));
        for bad in [
            props(&[("response_topic", "berth.x")]),
            props(&[("response_topic", "a"), ("response_ttl", "soon")]),
            props(&[("response_topic", "a"), ("response_ttl", "0")]),
            props(&[("response_ttl", "60")]),
        ] {
            let m = invalid(response_ask(3, &bad, hour));
            assert!(m.starts_with("messages[3].properties."), "{m}");
        }
    }
}
