//! Topic, grant and subscription rows, finding them by slug and name, the slug rule, and
//! the NOTIFYs that carry topics' signals to every replica.
//!
//! Everything here reads or writes rows and decides nothing about who may do what
//! ([`super::access`]) or what a message's life is ([`super::deliver`],
//! [`super::policy`]).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::live::notify::CHANNEL;
use crate::store::schema::{subscriptions, topic_grants, topics};
use crate::topics::StorePolicy;

/// The longest slug of a topic (and name of a subscription).
pub const MAX_SLUG: usize = 100;

/// The prefix of the system topics, which no user topic may take.
pub const SYSTEM_PREFIX: &str = "berth.";

/// How long a system topic keeps an event: a week. Subscribers who fall further behind
/// miss events; the outbox is not a history.
pub const SYSTEM_MAX_AGE_MS: i64 = 7 * 24 * 3600 * 1000;

/// A topic row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = topics)]
pub struct TopicRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub slug: String,
    pub description: String,
    pub is_public: bool,
    pub is_system: bool,
    /// A [`StorePolicy`] as text.
    pub store_policy: String,
    pub max_age_ms: Option<i64>,
    pub max_messages: Option<i64>,
    pub api_info: serde_json::Value,
    pub garbage_collect_at: Option<DateTime<Utc>>,
    /// The topic a response topic answers.
    pub response_for: Option<Uuid>,
    /// Who may consume a response topic (its requester).
    pub owner_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub last_ping_at: Option<DateTime<Utc>>,
    pub last_pong_at: Option<DateTime<Utc>>,
}

impl TopicRow {
    /// Its store policy (a stored policy is always one of them).
    pub fn policy(&self) -> Result<StorePolicy> {
        StorePolicy::parse(&self.store_policy).ok_or_else(|| {
            Error::internal(format!(
                "topic {} has unknown store policy {:?}",
                self.id, self.store_policy
            ))
        })
    }
}

/// A new topic.
#[derive(Clone, Debug, Insertable)]
#[diesel(table_name = topics)]
pub struct NewTopic {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub slug: String,
    pub description: String,
    pub is_public: bool,
    pub is_system: bool,
    pub store_policy: String,
    pub max_age_ms: Option<i64>,
    pub max_messages: Option<i64>,
    pub api_info: serde_json::Value,
    pub garbage_collect_at: Option<DateTime<Utc>>,
    pub response_for: Option<Uuid>,
    pub owner_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
}

/// A grant row: `principal` is `user:<uuid>` or `role:<role>`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = topic_grants)]
pub struct GrantRow {
    pub topic_id: Uuid,
    pub principal: String,
    pub can_produce: bool,
    pub can_consume: bool,
}

/// A subscription row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = subscriptions)]
pub struct SubscriptionRow {
    pub id: Uuid,
    pub topic_id: Uuid,
    pub name: String,
    /// The server's own (a topic trigger rule's); not changed through the API.
    pub internal: bool,
    pub ack_deadline_ms: i32,
    /// 0: unlimited.
    pub max_deliveries: i32,
    /// `backoff_ms[n]`: the wait before delivery n+2; the last repeats.
    pub backoff_ms: Vec<i32>,
    pub max_in_flight: i32,
    pub dead_letter_topic_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// A new subscription.
#[derive(Clone, Debug, Insertable)]
#[diesel(table_name = subscriptions)]
pub struct NewSubscription {
    pub id: Uuid,
    pub topic_id: Uuid,
    pub name: String,
    pub internal: bool,
    pub ack_deadline_ms: i32,
    pub max_deliveries: i32,
    pub backoff_ms: Vec<i32>,
    pub max_in_flight: i32,
    pub dead_letter_topic_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
}

/// Whether `slug` is one of the system topics' (`berth.` and anything).
pub fn is_system_slug(slug: &str) -> bool {
    slug.starts_with(SYSTEM_PREFIX)
}

/// Checks a slug (of a topic, `field` naming it) or a subscription name: 1-100 of
/// lowercase letters, digits, `.`, `-` and `_`, starting with a letter or digit. Errors
/// are INVALID_ARGUMENT naming `field`.
pub fn check_slug(field: &str, slug: &str) -> Result<()> {
    let refuse = |why: &str| {
        Error::InvalidArgument(format!(
            "{field}: {slug:?} {why}; use 1-{MAX_SLUG} characters of a-z, 0-9, '.', '-' and '_', starting with a letter or digit (e.g. \"builds.done\")"
        ))
    };
    let bytes = slug.as_bytes();
    match bytes.first() {
        None => return Err(refuse("is empty")),
        Some(b) if !(b.is_ascii_lowercase() || b.is_ascii_digit()) => {
            return Err(refuse("does not start with a letter or digit"));
        }
        Some(_) => {}
    }
    if bytes.len() > MAX_SLUG {
        return Err(refuse("is too long"));
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(refuse(
            "has characters other than a-z, 0-9, '.', '-' and '_'",
        ));
    }
    Ok(())
}

/// Checks the slug of a topic a user makes: [`check_slug`], and not a system topic's.
pub fn check_user_slug(field: &str, slug: &str) -> Result<()> {
    check_slug(field, slug)?;
    if is_system_slug(slug) {
        return Err(Error::InvalidArgument(format!(
            "{field}: {slug:?} starts with {SYSTEM_PREFIX:?}, which only Berth's own system topics may; pick another slug"
        )));
    }
    Ok(())
}

/// The NOT_FOUND for a topic slug in a workspace (the same whether it does not exist or
/// the caller may not see it).
pub fn no_such_topic(workspace: &str, slug: &str) -> Error {
    Error::NotFound(format!(
        "workspace {workspace} has no topic {slug:?} (berth topic list -w {workspace} shows its topics)"
    ))
}

/// The NOT_FOUND for a subscription name on a topic.
pub fn no_such_subscription(topic: &str, name: &str) -> Error {
    Error::NotFound(format!(
        "topic {topic} has no subscription {name:?} (berth subscription list {topic} shows them)"
    ))
}

/// The topic `slug` of a workspace, if any. With `lock`, its row is locked `FOR UPDATE`
/// for the transaction (publishers hold it `FOR KEY SHARE`, so this waits for publishes
/// under way and holds new ones back).
pub async fn find_topic(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    slug: &str,
    lock: bool,
) -> Result<Option<TopicRow>> {
    let select = topics::table
        .filter(topics::workspace_id.eq(workspace_id))
        .filter(topics::slug.eq(slug))
        .select(TopicRow::as_select());
    Ok(if lock {
        select.for_update().first(conn).await.optional()?
    } else {
        select.first(conn).await.optional()?
    })
}

/// The topic with `id`, locked `FOR KEY SHARE` (it cannot be deleted, and subscriptions
/// cannot be made or sought on it, until the transaction ends), if it still exists.
pub async fn share_topic(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<TopicRow>> {
    Ok(topics::table
        .find(id)
        .select(TopicRow::as_select())
        .for_key_share()
        .first(conn)
        .await
        .optional()?)
}

/// The topic with `id`, locked `FOR UPDATE` (see [`find_topic`]), if it still exists.
pub async fn find_topic_by_id_locked(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<TopicRow>> {
    Ok(topics::table
        .find(id)
        .select(TopicRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?)
}

/// The topic with `id`.
pub async fn topic_by_id(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<TopicRow>> {
    Ok(topics::table
        .find(id)
        .select(TopicRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The grants of a topic, by principal.
pub async fn grants_of(conn: &mut AsyncPgConnection, topic_id: Uuid) -> Result<Vec<GrantRow>> {
    Ok(topic_grants::table
        .filter(topic_grants::topic_id.eq(topic_id))
        .order(topic_grants::principal)
        .select(GrantRow::as_select())
        .load(conn)
        .await?)
}

/// Replaces the grants of a topic with `grants`.
pub async fn replace_grants(
    conn: &mut AsyncPgConnection,
    topic_id: Uuid,
    grants: &[GrantRow],
) -> Result<()> {
    diesel::delete(topic_grants::table.filter(topic_grants::topic_id.eq(topic_id)))
        .execute(conn)
        .await?;
    if !grants.is_empty() {
        diesel::insert_into(topic_grants::table)
            .values(grants)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// The subscription `name` of a topic, if any.
pub async fn find_subscription(
    conn: &mut AsyncPgConnection,
    topic_id: Uuid,
    name: &str,
) -> Result<Option<SubscriptionRow>> {
    Ok(subscriptions::table
        .filter(subscriptions::topic_id.eq(topic_id))
        .filter(subscriptions::name.eq(name))
        .select(SubscriptionRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The subscription with `id`, if any.
pub async fn subscription_by_id(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<SubscriptionRow>> {
    Ok(subscriptions::table
        .find(id)
        .select(SubscriptionRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Makes the system topic `slug` of a workspace if it is not there yet (policy `store`,
/// kept a week), and returns it. Safe to call concurrently: one insert goes in.
pub async fn ensure_system_topic(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    slug: &str,
) -> Result<TopicRow> {
    if let Some(found) = find_topic(conn, workspace_id, slug, false).await? {
        return Ok(found);
    }
    let new = NewTopic {
        id: Uuid::now_v7(),
        workspace_id,
        slug: slug.to_owned(),
        description: "Berth's own events".to_owned(),
        is_public: false,
        is_system: true,
        store_policy: StorePolicy::Store.as_str().to_owned(),
        max_age_ms: Some(SYSTEM_MAX_AGE_MS),
        max_messages: None,
        api_info: serde_json::json!({}),
        garbage_collect_at: None,
        response_for: None,
        owner_id: None,
        created_by: None,
    };
    diesel::insert_into(topics::table)
        .values(&new)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    find_topic(conn, workspace_id, slug, false)
        .await?
        .ok_or_else(|| Error::internal(format!("system topic {slug} vanished as it was made")))
}

/// Sends `payloads` as NOTIFYs on the replicas' channel, in the caller's transaction.
pub(crate) async fn notify(conn: &mut AsyncPgConnection, payloads: &[String]) -> Result<()> {
    if payloads.is_empty() {
        return Ok(());
    }
    diesel::sql_query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
        .bind::<Text, _>(CHANNEL)
        .bind::<Array<Text>, _>(payloads)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(result: Result<()>) -> String {
        match result {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn slugs_are_lowercase_words_with_dots_dashes_and_underscores() {
        for good in ["builds", "builds.done", "a", "9lives", "x_y-z.1"] {
            check_slug("slug", good).expect(good);
        }
        assert!(invalid(check_slug("slug", "")).contains("is empty"));
        assert!(invalid(check_slug("slug", "Builds")).contains("does not start"));
        assert!(invalid(check_slug("slug", "b uilds")).contains("characters"));
        assert!(invalid(check_slug("slug", ".hidden")).contains("does not start"));
        assert!(invalid(check_slug("slug", &"a".repeat(101))).contains("too long"));
        check_slug("slug", &"a".repeat(100)).expect("100 is the limit");
    }

    #[test]
    fn users_may_not_take_the_system_prefix() {
        let m = invalid(check_user_slug("slug", "berth.work-requests"));
        assert!(m.starts_with("slug:") && m.contains("berth."), "{m}");
        check_user_slug("slug", "berthing").expect("only the prefix with its dot");
        assert!(is_system_slug("berth.workers"));
    }
}
