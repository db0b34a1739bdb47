//! Creating, reading, listing, changing and deleting topics and subscriptions, and
//! seeking: the front the API calls, and the internal subscriptions of trigger rules.
//!
//! A subscription is made (or sought) under its topic's row lock (`FOR UPDATE`), which
//! waits for publishes under way (they hold it `FOR KEY SHARE`) and holds new ones back:
//! every message is then either fanned out to the new subscription or already stored when
//! it is filled from what is stored. Filling takes each stored message `FOR KEY SHARE`,
//! so a message an accept is deleting meanwhile is skipped rather than owed.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::live::consumers::TopicSignal;
use crate::store::schema::subscriptions;
use crate::topics::store::{self, NewSubscription, SubscriptionRow, TopicRow};
use crate::topics::{SYSTEM_TOPICS, Start, StorePolicy, policy};

/// The defaults of a subscription.
pub const DEFAULT_ACK_DEADLINE: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_DELIVERIES: i32 = 5;
pub const DEFAULT_BACKOFF_MS: [i32; 3] = [1000, 5000, 30000];
pub const DEFAULT_MAX_IN_FLIGHT: i32 = 1000;

/// A subscription to make, checked.
#[derive(Clone, Debug)]
pub(crate) struct SubscriptionSpec {
    pub name: String,
    pub internal: bool,
    pub ack_deadline_ms: i32,
    pub max_deliveries: i32,
    pub backoff_ms: Vec<i32>,
    pub max_in_flight: i32,
    pub dead_letter_topic_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub start: Start,
}

/// Makes a subscription on `topic` (locked `FOR UPDATE` by the caller) and fills it from
/// what is stored, as its start says. A name in use is ALREADY_EXISTS.
pub(crate) async fn create_in(
    conn: &mut AsyncPgConnection,
    topic: &TopicRow,
    spec: SubscriptionSpec,
) -> Result<SubscriptionRow> {
    if store::find_subscription(conn, topic.id, &spec.name)
        .await?
        .is_some()
    {
        return Err(Error::AlreadyExists(format!(
            "name: topic {} already has a subscription {:?}",
            topic.slug, spec.name
        )));
    }
    let new = NewSubscription {
        id: Uuid::now_v7(),
        topic_id: topic.id,
        name: spec.name,
        internal: spec.internal,
        ack_deadline_ms: spec.ack_deadline_ms,
        max_deliveries: spec.max_deliveries,
        backoff_ms: spec.backoff_ms,
        max_in_flight: spec.max_in_flight,
        dead_letter_topic_id: spec.dead_letter_topic_id,
        created_by: spec.created_by,
    };
    let row: SubscriptionRow = diesel::insert_into(subscriptions::table)
        .values(&new)
        .returning(SubscriptionRow::as_returning())
        .get_result(conn)
        .await?;
    if topic.policy()? != StorePolicy::Disabled {
        fill(conn, topic, row.id, spec.start).await?;
    }
    Ok(row)
}

/// Owes `subscription` every stored message of `topic` from `start` on (nothing for
/// [`Start::New`]); rows it already has are made visible now, their leases ended and
/// their counts kept (so a late ack of an earlier delivery is `expired`). Returns how
/// many rows it wrote.
pub(crate) async fn fill(
    conn: &mut AsyncPgConnection,
    topic: &TopicRow,
    subscription: Uuid,
    start: Start,
) -> Result<usize> {
    let (from_seq, from_time) = match start {
        Start::New => return Ok(0),
        Start::All => (i64::MIN, None),
        Start::Seq(seq) => (seq, None),
        Start::Time(at) => (i64::MIN, Some(at)),
    };
    Ok(diesel::sql_query(
        "INSERT INTO subscription_messages (subscription_id, seq, topic_id, visible_at) \
         SELECT $1, m.seq, m.topic_id, now() FROM topic_messages m \
         WHERE m.topic_id = $2 AND m.seq >= $3 AND ($4::timestamptz IS NULL OR m.published_at >= $4) \
         FOR KEY SHARE OF m \
         ON CONFLICT (subscription_id, seq) DO UPDATE \
           SET visible_at = now(), leased_until = NULL, consumer_id = NULL",
    )
    .bind::<diesel::sql_types::Uuid, _>(subscription)
    .bind::<diesel::sql_types::Uuid, _>(topic.id)
    .bind::<BigInt, _>(from_seq)
    .bind::<diesel::sql_types::Nullable<Timestamptz>, _>(from_time)
    .execute(conn)
    .await?)
}

/// See [`crate::topics::open_internal`].
pub(crate) async fn open_internal(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    slug: &str,
    name: &str,
) -> Result<Uuid> {
    store::check_slug("name", name)?;
    let found = if SYSTEM_TOPICS.contains(&slug) {
        Some(store::ensure_system_topic(conn, workspace_id, slug).await?)
    } else {
        store::find_topic(conn, workspace_id, slug, false).await?
    };
    let Some(found) = found else {
        return Err(Error::NotFound(format!(
            "topic: the workspace has no topic {slug:?}"
        )));
    };
    if found.policy()? == StorePolicy::Disabled {
        return Err(Error::FailedPrecondition(format!(
            "topic: {slug} has store policy disabled: it stores no message a rule could take"
        )));
    }
    let topic = store::find_topic(conn, workspace_id, slug, true)
        .await?
        .ok_or_else(|| Error::NotFound(format!("topic: the workspace has no topic {slug:?}")))?;
    if let Some(existing) = store::find_subscription(conn, topic.id, name).await? {
        if existing.internal {
            return Ok(existing.id);
        }
        return Err(Error::AlreadyExists(format!(
            "name: topic {slug} already has a subscription {name:?} that is not Berth's own"
        )));
    }
    let row = create_in(
        conn,
        &topic,
        SubscriptionSpec {
            name: name.to_owned(),
            internal: true,
            ack_deadline_ms: super::millis_i32("ack_deadline", DEFAULT_ACK_DEADLINE)?,
            // Taken and accepted in one transaction: never leased, never counted.
            max_deliveries: 0,
            backoff_ms: DEFAULT_BACKOFF_MS.to_vec(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            dead_letter_topic_id: None,
            created_by: None,
            start: Start::New,
        },
    )
    .await?;
    Ok(row.id)
}

/// Deletes subscription `id` in the caller's transaction: what it owed goes with it (a
/// `cacheall` message nobody else owes goes too), and its consumers end everywhere.
pub(crate) async fn delete_in(conn: &mut AsyncPgConnection, sub: &SubscriptionRow) -> Result<()> {
    let Some(topic) = store::find_topic_by_id_locked(conn, sub.topic_id).await? else {
        return Ok(());
    };
    diesel::delete(subscriptions::table.find(sub.id))
        .execute(conn)
        .await?;
    if topic.policy()? == StorePolicy::CacheAll {
        policy::delete_unowed(conn, topic.id, None).await?;
    }
    store::notify(conn, &[TopicSignal::Closed(sub.id).encode()]).await
}

/// See [`crate::topics::drop_internal`].
pub(crate) async fn drop_internal(
    conn: &mut AsyncPgConnection,
    subscription_id: Uuid,
) -> Result<()> {
    let Some(sub) = store::subscription_by_id(conn, subscription_id).await? else {
        return Ok(());
    };
    if !sub.internal {
        return Err(Error::FailedPrecondition(format!(
            "subscription {} is not Berth's own; it is deleted through the API",
            sub.name
        )));
    }
    delete_in(conn, &sub).await
}

// ----- the API's front -----

/// The longest description of a topic.
pub const MAX_DESCRIPTION: usize = 1000;
/// The largest API info (JSON text).
pub const MAX_API_INFO: usize = 64 * 1024;
/// The most grants of one topic.
pub const MAX_GRANTS: usize = 100;
/// Bounds of a subscription's settings.
pub const MIN_ACK_DEADLINE: Duration = Duration::from_secs(1);
pub const MAX_ACK_DEADLINE: Duration = Duration::from_secs(3600);
pub const MAX_MAX_DELIVERIES: u32 = 1000;
pub const MAX_BACKOFF_ENTRIES: usize = 16;
pub const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);
pub const MAX_MAX_IN_FLIGHT: u32 = 100_000;
/// The longest max age of a topic's retention.
pub const MAX_RETENTION_AGE: Duration = Duration::from_secs(3650 * 24 * 3600);

use crate::access::auth::Identity;
use crate::access::roles::{self, Standing, WorkspaceRole};
use crate::store::schema::{topics, users};
use crate::templates::workspace_name;
use crate::topics::access::{self, Principal, Use};
use crate::topics::ping::{availability, live_consumers};
use crate::topics::store::{GrantRow, NewTopic};
use crate::topics::{
    AvailabilityView, CreateTopicInput, GrantInput, GrantView, RetentionInput, SeekTo,
    SubscriptionInput, SubscriptionView, TopicChange, TopicRef, TopicSettings, TopicView, Topics,
};

/// The caller's standing in `workspace` and its topic `slug` (a system topic is made on
/// first use). NOT_FOUND for a workspace or topic the caller may not see; reading needs
/// a viewer.
pub(crate) async fn resolve(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    topic: &TopicRef,
) -> Result<(Standing, TopicRow)> {
    let standing = roles::in_workspace(conn, caller, workspace_name(&topic.workspace)).await?;
    access::require_read(&standing)?;
    let found = if SYSTEM_TOPICS.contains(&topic.slug.as_str()) {
        Some(store::ensure_system_topic(conn, standing.workspace.id, &topic.slug).await?)
    } else {
        store::find_topic(conn, standing.workspace.id, &topic.slug, false).await?
    };
    let row = found.ok_or_else(|| store::no_such_topic(&standing.workspace.name, &topic.slug))?;
    Ok((standing, row))
}

/// The name of user `id` ('' if none or gone).
async fn user_name(conn: &mut AsyncPgConnection, id: Option<Uuid>) -> Result<String> {
    let Some(id) = id else {
        return Ok(String::new());
    };
    Ok(users::table
        .find(id)
        .select(users::name)
        .first::<String>(conn)
        .await
        .optional()?
        .unwrap_or_default())
}

/// Checks grants as given and turns them into rows of `topic_id`.
async fn check_grants(
    conn: &mut AsyncPgConnection,
    topic_id: Uuid,
    grants: &[GrantInput],
) -> Result<Vec<GrantRow>> {
    if grants.len() > MAX_GRANTS {
        return Err(Error::InvalidArgument(format!(
            "grants: {} grants; at most {MAX_GRANTS} (grant roles rather than users)",
            grants.len()
        )));
    }
    let mut rows: Vec<GrantRow> = Vec::with_capacity(grants.len());
    for (i, grant) in grants.iter().enumerate() {
        let field = format!("grants[{i}].principal");
        let principal = if let Some(name) = grant.principal.strip_prefix("user:") {
            let id: Option<Uuid> = users::table
                .filter(users::name.eq(name))
                .select(users::id)
                .first(conn)
                .await
                .optional()?;
            Principal::User(id.ok_or_else(|| {
                Error::InvalidArgument(format!("{field}: there is no user named {name:?}"))
            })?)
        } else if let Some(role) = grant.principal.strip_prefix("role:") {
            Principal::Role(WorkspaceRole::from_name(role).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{field}: {role:?} is not a workspace role; use role:viewer, role:contributor or role:owner"
                ))
            })?)
        } else {
            return Err(Error::InvalidArgument(format!(
                "{field}: {:?} names nobody; write user:<name> or role:viewer|contributor|owner",
                grant.principal
            )));
        };
        if !grant.produce && !grant.consume {
            return Err(Error::InvalidArgument(format!(
                "grants[{i}]: grants nothing; set produce, consume or both"
            )));
        }
        let stored = principal.stored();
        if rows.iter().any(|r| r.principal == stored) {
            return Err(Error::InvalidArgument(format!(
                "{field}: {} is granted twice; give each principal once",
                grant.principal
            )));
        }
        rows.push(GrantRow {
            topic_id,
            principal: stored,
            can_produce: grant.produce,
            can_consume: grant.consume,
        });
    }
    Ok(rows)
}

/// Retention as stored: (max age in ms, max messages).
fn check_retention(retention: &RetentionInput) -> Result<(Option<i64>, Option<i64>)> {
    let max_age = match retention.max_age {
        None => None,
        Some(age) if age < Duration::from_secs(1) || age > MAX_RETENTION_AGE => {
            return Err(Error::InvalidArgument(format!(
                "retention.max_age: {age:?} is outside 1s to 3650 days (leave it unset for no limit)"
            )));
        }
        Some(age) => Some(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)),
    };
    let max_messages = match retention.max_messages {
        None => None,
        Some(0) => None,
        Some(n) => Some(
            i64::try_from(n)
                .map_err(|_| Error::InvalidArgument("retention.max_messages: too large".into()))?,
        ),
    };
    Ok((max_age, max_messages))
}

/// API info as stored: a JSON object ('' for `{}`).
fn check_api_info(text: &str) -> Result<serde_json::Value> {
    if text.trim().is_empty() {
        return Ok(serde_json::json!({}));
    }
    if text.len() > MAX_API_INFO {
        return Err(Error::InvalidArgument(format!(
            "api_info: {} bytes; at most {MAX_API_INFO}",
            text.len()
        )));
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::InvalidArgument(format!("api_info: not valid JSON ({e})")))?;
    if !value.is_object() {
        return Err(Error::InvalidArgument(
            "api_info: must be a JSON object, e.g. {\"schema\": \"...\"}".into(),
        ));
    }
    Ok(value)
}

fn check_description(text: &str) -> Result<()> {
    if text.len() > MAX_DESCRIPTION {
        return Err(Error::InvalidArgument(format!(
            "description: {} bytes; at most {MAX_DESCRIPTION}",
            text.len()
        )));
    }
    Ok(())
}

/// A topic's view: names looked up, availability judged at the database's `now`.
async fn topic_view(
    conn: &mut AsyncPgConnection,
    row: TopicRow,
    workspace: &str,
    settings: &TopicSettings,
    count_messages: bool,
) -> Result<TopicView> {
    let mut grants = Vec::new();
    for grant in store::grants_of(conn, row.id).await? {
        let principal = match Principal::parse_stored(&grant.principal) {
            Some(Principal::User(id)) => format!("user:{}", user_name(conn, Some(id)).await?),
            Some(Principal::Role(role)) => format!("role:{role}"),
            None => grant.principal.clone(),
        };
        grants.push(GrantView {
            principal,
            produce: grant.can_produce,
            consume: grant.can_consume,
        });
    }
    let response_for = match row.response_for {
        Some(id) => store::topic_by_id(conn, id)
            .await?
            .map(|t| t.slug)
            .unwrap_or_default(),
        None => String::new(),
    };
    let live = live_consumers(conn, row.id, settings).await?;
    let now = crate::topics::db_now(conn).await?;
    let stored_messages = if count_messages {
        Some(
            crate::store::schema::topic_messages::table
                .filter(crate::store::schema::topic_messages::topic_id.eq(row.id))
                .count()
                .get_result::<i64>(conn)
                .await?,
        )
    } else {
        None
    };
    Ok(TopicView {
        availability: AvailabilityView {
            state: availability(row.last_ping_at, row.last_pong_at, now, settings),
            last_ping_at: row.last_ping_at,
            last_pong_at: row.last_pong_at,
            live_consumers: live,
            unknown_after: settings.unknown_after,
            offline_after: settings.offline_after,
        },
        owner: user_name(conn, row.owner_id).await?,
        created_by: user_name(conn, row.created_by).await?,
        workspace: workspace.to_owned(),
        grants,
        response_for,
        stored_messages,
        row,
    })
}

#[derive(QueryableByName)]
struct Owed {
    #[diesel(sql_type = BigInt)]
    backlog: i64,
    #[diesel(sql_type = BigInt)]
    in_flight: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    oldest_ms: Option<f64>,
    #[diesel(sql_type = BigInt)]
    live: i64,
}

/// A subscription's view, with what it owes now.
async fn subscription_view(
    conn: &mut AsyncPgConnection,
    row: SubscriptionRow,
    topic: &TopicRow,
    workspace: &str,
    settings: &TopicSettings,
) -> Result<SubscriptionView> {
    let stale_ms = i64::try_from(settings.consumer_stale_after().as_millis()).unwrap_or(i64::MAX);
    let owed: Owed = diesel::sql_query(
        "SELECT count(*) AS backlog, \
                count(*) FILTER (WHERE sm.leased_until > now()) AS in_flight, \
                extract(epoch FROM now() - min(m.published_at))::float8 * 1000 AS oldest_ms, \
                (SELECT count(*) FROM topic_consumers c WHERE c.subscription_id = $1 \
                   AND c.seen_at > now() - $2 * interval '1 millisecond') AS live \
         FROM subscription_messages sm \
         JOIN topic_messages m ON m.topic_id = sm.topic_id AND m.seq = sm.seq \
         WHERE sm.subscription_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(row.id)
    .bind::<BigInt, _>(stale_ms)
    .get_result(conn)
    .await?;
    let dead_letter_topic = match row.dead_letter_topic_id {
        Some(id) => store::topic_by_id(conn, id)
            .await?
            .map(|t| t.slug)
            .unwrap_or_default(),
        None => String::new(),
    };
    Ok(SubscriptionView {
        created_by: user_name(conn, row.created_by).await?,
        workspace: workspace.to_owned(),
        topic: topic.slug.clone(),
        dead_letter_topic,
        backlog: owed.backlog,
        in_flight: owed.in_flight,
        oldest_unacked: owed
            .oldest_ms
            .filter(|ms| ms.is_finite())
            .map(|ms| Duration::from_millis(ms.max(0.0) as u64)),
        live_consumers: owed.live,
        row,
    })
}

/// Checks a subscription's settings; the dead-letter topic is checked by the caller.
fn check_subscription(input: &SubscriptionInput) -> Result<SubscriptionSpec> {
    store::check_slug("name", &input.name)?;
    let ack_deadline = input.ack_deadline.unwrap_or(DEFAULT_ACK_DEADLINE);
    if !(MIN_ACK_DEADLINE..=MAX_ACK_DEADLINE).contains(&ack_deadline) {
        return Err(Error::InvalidArgument(format!(
            "ack_deadline: {ack_deadline:?} is outside 1s to 1h"
        )));
    }
    let max_deliveries = input
        .max_deliveries
        .map_or(Ok(DEFAULT_MAX_DELIVERIES), |n| {
            if n > MAX_MAX_DELIVERIES {
                Err(Error::InvalidArgument(format!(
                    "max_deliveries: {n}; use 0 (unlimited) to {MAX_MAX_DELIVERIES}"
                )))
            } else {
                i32::try_from(n)
                    .map_err(|_| Error::InvalidArgument("max_deliveries: too large".into()))
            }
        })?;
    let backoff_ms = match &input.backoff {
        None => DEFAULT_BACKOFF_MS.to_vec(),
        Some(list) if list.len() > MAX_BACKOFF_ENTRIES => {
            return Err(Error::InvalidArgument(format!(
                "backoff: {} entries; at most {MAX_BACKOFF_ENTRIES} (the last repeats)",
                list.len()
            )));
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if *d > MAX_BACKOFF {
                    Err(Error::InvalidArgument(format!(
                        "backoff[{i}]: {d:?}; at most 1 day"
                    )))
                } else {
                    super::millis_i32(&format!("backoff[{i}]"), *d)
                }
            })
            .collect::<Result<Vec<i32>>>()?,
    };
    let max_in_flight = match input.max_in_flight {
        None => DEFAULT_MAX_IN_FLIGHT,
        Some(n) if n == 0 || n > MAX_MAX_IN_FLIGHT => {
            return Err(Error::InvalidArgument(format!(
                "max_in_flight: {n}; use 1 to {MAX_MAX_IN_FLIGHT}"
            )));
        }
        Some(n) => i32::try_from(n)
            .map_err(|_| Error::InvalidArgument("max_in_flight: too large".into()))?,
    };
    Ok(SubscriptionSpec {
        name: input.name.clone(),
        internal: false,
        ack_deadline_ms: super::millis_i32("ack_deadline", ack_deadline)?,
        max_deliveries,
        backoff_ms,
        max_in_flight,
        dead_letter_topic_id: None,
        created_by: None,
        start: input.start,
    })
}

/// The seqs of `subscription`'s rows whose message comes before `to`.
async fn owed_before(
    conn: &mut AsyncPgConnection,
    subscription: Uuid,
    to: SeekTo,
) -> Result<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Seq {
        #[diesel(sql_type = BigInt)]
        seq: i64,
    }
    let (before_seq, before_time) = match to {
        SeekTo::Seq(seq) => (Some(seq), None),
        SeekTo::Time(at) => (None, Some(at)),
    };
    let rows: Vec<Seq> = diesel::sql_query(
        "SELECT sm.seq FROM subscription_messages sm \
         JOIN topic_messages m ON m.topic_id = sm.topic_id AND m.seq = sm.seq \
         WHERE sm.subscription_id = $1 \
           AND (($2::int8 IS NOT NULL AND m.seq < $2) \
                OR ($3::timestamptz IS NOT NULL AND m.published_at < $3)) \
         ORDER BY sm.seq",
    )
    .bind::<diesel::sql_types::Uuid, _>(subscription)
    .bind::<diesel::sql_types::Nullable<BigInt>, _>(before_seq)
    .bind::<diesel::sql_types::Nullable<Timestamptz>, _>(before_time)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.seq).collect())
}

impl Topics {
    /// Creates a topic (contributors).
    pub async fn create_topic(
        &self,
        caller: &Identity,
        input: CreateTopicInput,
    ) -> Result<TopicView> {
        store::check_user_slug("slug", &input.topic.slug)?;
        check_description(&input.description)?;
        let (max_age_ms, max_messages) = check_retention(&input.retention)?;
        let api_info = check_api_info(&input.api_info)?;
        let policy = input.policy.unwrap_or(StorePolicy::Cache);
        let mut conn = self.pool.get().await?;
        let settings = self.settings.clone();
        conn.transaction::<_, Error, _>(async |conn| {
            let standing =
                roles::in_workspace(conn, caller, workspace_name(&input.topic.workspace)).await?;
            access::require_manage(&standing)?;
            standing.require_open()?;
            let id = Uuid::now_v7();
            let grants = check_grants(conn, id, &input.grants).await?;
            let new = NewTopic {
                id,
                workspace_id: standing.workspace.id,
                slug: input.topic.slug.clone(),
                description: input.description.clone(),
                is_public: input.public,
                is_system: false,
                store_policy: policy.as_str().to_owned(),
                max_age_ms,
                max_messages,
                api_info,
                garbage_collect_at: None,
                response_for: None,
                owner_id: None,
                created_by: caller.user_id,
            };
            let inserted = diesel::insert_into(topics::table)
                .values(&new)
                .on_conflict_do_nothing()
                .returning(TopicRow::as_returning())
                .get_result::<TopicRow>(conn)
                .await
                .optional()?;
            let row = inserted.ok_or_else(|| {
                Error::AlreadyExists(format!(
                    "slug: workspace {} already has a topic {:?}",
                    standing.workspace.name, input.topic.slug
                ))
            })?;
            store::replace_grants(conn, row.id, &grants).await?;
            topic_view(conn, row, &standing.workspace.name, &settings, true).await
        })
        .await
    }

    /// A topic with its grants, stored messages and availability (viewers).
    pub async fn get_topic(&self, caller: &Identity, topic: &TopicRef) -> Result<TopicView> {
        let mut conn = self.pool.get().await?;
        let (standing, row) = resolve(&mut conn, caller, topic).await?;
        topic_view(
            &mut conn,
            row,
            &standing.workspace.name,
            &self.settings,
            true,
        )
        .await
    }

    /// A workspace's topics by slug (viewers).
    pub async fn list_topics(&self, caller: &Identity, workspace: &str) -> Result<Vec<TopicView>> {
        let mut conn = self.pool.get().await?;
        let standing = roles::in_workspace(&mut conn, caller, workspace_name(workspace)).await?;
        access::require_read(&standing)?;
        let rows: Vec<TopicRow> = topics::table
            .filter(topics::workspace_id.eq(standing.workspace.id))
            .order(topics::slug)
            .select(TopicRow::as_select())
            .load(&mut conn)
            .await?;
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            views.push(
                topic_view(
                    &mut conn,
                    row,
                    &standing.workspace.name,
                    &self.settings,
                    false,
                )
                .await?,
            );
        }
        Ok(views)
    }

    /// Changes a topic (contributors); never a system topic.
    pub async fn update_topic(
        &self,
        caller: &Identity,
        topic: &TopicRef,
        change: TopicChange,
    ) -> Result<TopicView> {
        if let Some(description) = &change.description {
            check_description(description)?;
        }
        let retention = change.retention.as_ref().map(check_retention).transpose()?;
        let api_info = change.api_info.as_deref().map(check_api_info).transpose()?;
        let mut conn = self.pool.get().await?;
        let settings = self.settings.clone();
        conn.transaction::<_, Error, _>(async |conn| {
            let (standing, found) = resolve(conn, caller, topic).await?;
            access::require_manage(&standing)?;
            access::refuse_system(&found, "change")?;
            let locked = store::find_topic_by_id_locked(conn, found.id)
                .await?
                .ok_or_else(|| store::no_such_topic(&standing.workspace.name, &topic.slug))?;
            if let Some(grants) = &change.grants {
                let rows = check_grants(conn, locked.id, grants).await?;
                store::replace_grants(conn, locked.id, &rows).await?;
            }
            let update = diesel::update(topics::table.find(locked.id));
            if let Some(description) = &change.description {
                update
                    .clone()
                    .set(topics::description.eq(description))
                    .execute(conn)
                    .await?;
            }
            if let Some(public) = change.public {
                update
                    .clone()
                    .set(topics::is_public.eq(public))
                    .execute(conn)
                    .await?;
            }
            if let Some((max_age_ms, max_messages)) = retention {
                update
                    .clone()
                    .set((
                        topics::max_age_ms.eq(max_age_ms),
                        topics::max_messages.eq(max_messages),
                    ))
                    .execute(conn)
                    .await?;
            }
            if let Some(api_info) = &api_info {
                update
                    .set(topics::api_info.eq(api_info))
                    .execute(conn)
                    .await?;
            }
            let row = store::topic_by_id(conn, locked.id)
                .await?
                .ok_or_else(|| store::no_such_topic(&standing.workspace.name, &topic.slug))?;
            topic_view(conn, row, &standing.workspace.name, &settings, true).await
        })
        .await
    }

    /// Deletes a topic with everything it holds (contributors); never a system topic.
    pub async fn delete_topic(&self, caller: &Identity, topic: &TopicRef) -> Result<bool> {
        let mut conn = self.pool.get().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            let (standing, found) = resolve(conn, caller, topic).await?;
            access::require_manage(&standing)?;
            access::refuse_system(&found, "delete")?;
            let deleted = diesel::delete(topics::table.find(found.id))
                .execute(conn)
                .await?;
            store::notify(conn, &[TopicSignal::Closed(found.id).encode()]).await?;
            Ok(deleted == 1)
        })
        .await
    }

    /// Creates a subscription (consumers of the topic).
    pub async fn create_subscription(
        &self,
        caller: &Identity,
        input: SubscriptionInput,
    ) -> Result<SubscriptionView> {
        let mut spec = check_subscription(&input)?;
        spec.created_by = caller.user_id;
        let mut conn = self.pool.get().await?;
        let settings = self.settings.clone();
        conn.transaction::<_, Error, _>(async |conn| {
            let (standing, found) = resolve(conn, caller, &input.topic).await?;
            access::require_use_in(conn, &standing, caller, &found, Use::Consume).await?;
            if !input.dead_letter_topic.is_empty() {
                let target = store::find_topic(
                    conn,
                    standing.workspace.id,
                    &input.dead_letter_topic,
                    false,
                )
                .await?
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "dead_letter_topic: workspace {} has no topic {:?}",
                        standing.workspace.name, input.dead_letter_topic
                    ))
                })?;
                if target.id == found.id {
                    return Err(Error::InvalidArgument(
                        "dead_letter_topic: must be another topic than the one subscribed to".into(),
                    ));
                }
                if target.is_system {
                    return Err(Error::InvalidArgument(format!(
                        "dead_letter_topic: {} is a system topic; only Berth publishes there",
                        target.slug
                    )));
                }
                if target.policy()? == StorePolicy::Disabled {
                    return Err(Error::InvalidArgument(format!(
                        "dead_letter_topic: {} stores nothing (policy disabled); name a topic that stores",
                        target.slug
                    )));
                }
                access::require_use_in(conn, &standing, caller, &target, Use::Produce).await?;
                spec.dead_letter_topic_id = Some(target.id);
            }
            let locked = store::find_topic_by_id_locked(conn, found.id)
                .await?
                .ok_or_else(|| store::no_such_topic(&standing.workspace.name, &found.slug))?;
            let row = create_in(conn, &locked, spec.clone()).await?;
            subscription_view(conn, row, &locked, &standing.workspace.name, &settings).await
        })
        .await
    }

    /// The subscription `name` of `topic`, with what it owes (viewers).
    pub async fn get_subscription(
        &self,
        caller: &Identity,
        topic: &TopicRef,
        name: &str,
    ) -> Result<SubscriptionView> {
        let mut conn = self.pool.get().await?;
        let (standing, row) = resolve(&mut conn, caller, topic).await?;
        let sub = store::find_subscription(&mut conn, row.id, name)
            .await?
            .ok_or_else(|| store::no_such_subscription(&row.slug, name))?;
        subscription_view(
            &mut conn,
            sub,
            &row,
            &standing.workspace.name,
            &self.settings,
        )
        .await
    }

    /// A topic's subscriptions by name (viewers).
    pub async fn list_subscriptions(
        &self,
        caller: &Identity,
        topic: &TopicRef,
    ) -> Result<Vec<SubscriptionView>> {
        let mut conn = self.pool.get().await?;
        let (standing, row) = resolve(&mut conn, caller, topic).await?;
        let subs: Vec<SubscriptionRow> = subscriptions::table
            .filter(subscriptions::topic_id.eq(row.id))
            .order(subscriptions::name)
            .select(SubscriptionRow::as_select())
            .load(&mut conn)
            .await?;
        let mut views = Vec::with_capacity(subs.len());
        for sub in subs {
            views.push(
                subscription_view(
                    &mut conn,
                    sub,
                    &row,
                    &standing.workspace.name,
                    &self.settings,
                )
                .await?,
            );
        }
        Ok(views)
    }

    /// Deletes a subscription (consumers of the topic); never an internal one.
    pub async fn delete_subscription(
        &self,
        caller: &Identity,
        topic: &TopicRef,
        name: &str,
    ) -> Result<bool> {
        let mut conn = self.pool.get().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            let (standing, row) = resolve(conn, caller, topic).await?;
            access::require_use_in(conn, &standing, caller, &row, Use::Consume).await?;
            let sub = store::find_subscription(conn, row.id, name)
                .await?
                .ok_or_else(|| store::no_such_subscription(&row.slug, name))?;
            refuse_internal(&sub)?;
            require_own(&standing, caller, &sub, "delete")?;
            delete_in(conn, &sub).await?;
            Ok(true)
        })
        .await
    }

    /// Seeks a subscription (consumers of the topic): see the module docs.
    pub async fn seek_subscription(
        &self,
        caller: &Identity,
        topic: &TopicRef,
        name: &str,
        to: SeekTo,
    ) -> Result<SubscriptionView> {
        let mut conn = self.pool.get().await?;
        let settings = self.settings.clone();
        conn.transaction::<_, Error, _>(async |conn| {
            let (standing, found) = resolve(conn, caller, topic).await?;
            access::require_use_in(conn, &standing, caller, &found, Use::Consume).await?;
            if found.policy()? == StorePolicy::Disabled {
                return Err(Error::FailedPrecondition(format!(
                    "topic {} stores nothing (policy disabled): there is nothing to seek to",
                    found.slug
                )));
            }
            let locked = store::find_topic_by_id_locked(conn, found.id)
                .await?
                .ok_or_else(|| store::no_such_topic(&standing.workspace.name, &found.slug))?;
            let sub = store::find_subscription(conn, locked.id, name)
                .await?
                .ok_or_else(|| store::no_such_subscription(&locked.slug, name))?;
            refuse_internal(&sub)?;
            require_own(&standing, caller, &sub, "seek")?;
            let before = owed_before(conn, sub.id, to).await?;
            policy::lock_for_removal(conn, &locked, &before).await?;
            diesel::sql_query(
                "DELETE FROM subscription_messages WHERE subscription_id = $1 AND seq = ANY($2::int8[])",
            )
            .bind::<diesel::sql_types::Uuid, _>(sub.id)
            .bind::<diesel::sql_types::Array<BigInt>, _>(&before)
            .execute(conn)
            .await?;
            policy::after_removal(conn, &locked, &[], &before).await?;
            let start = match to {
                SeekTo::Seq(seq) => Start::Seq(seq),
                SeekTo::Time(at) => Start::Time(at),
            };
            fill(conn, &locked, sub.id, start).await?;
            store::notify(conn, &[TopicSignal::Published(locked.id).encode()]).await?;
            subscription_view(conn, sub, &locked, &standing.workspace.name, &settings).await
        })
        .await
    }
}

/// Refuses a consumer who neither made the subscription nor is a contributor to `what`
/// it: sharing a subscription does not mean taking it away from the others.
fn require_own(
    standing: &Standing,
    caller: &Identity,
    sub: &SubscriptionRow,
    what: &str,
) -> Result<()> {
    if sub.created_by.is_some() && sub.created_by == caller.user_id {
        return Ok(());
    }
    standing.require(
        WorkspaceRole::Contributor,
        &format!("{what} subscription {} (someone else made it) in", sub.name),
    )
}

/// Refuses to change an internal subscription through the API.
fn refuse_internal(sub: &SubscriptionRow) -> Result<()> {
    if sub.internal {
        return Err(Error::FailedPrecondition(format!(
            "subscription {} is Berth's own (a topic trigger rule's); archive the rule instead",
            sub.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid<T: std::fmt::Debug>(result: Result<T>) -> String {
        match result {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn subscriptions_take_defaults_and_refuse_what_is_out_of_range() {
        let input = SubscriptionInput {
            name: "workers".into(),
            ..Default::default()
        };
        let spec = check_subscription(&input).expect("defaults are valid");
        assert_eq!(spec.ack_deadline_ms, 30_000);
        assert_eq!(spec.max_deliveries, 5);
        assert_eq!(spec.backoff_ms, vec![1000, 5000, 30000]);
        assert_eq!(spec.max_in_flight, 1000);
        let with = |f: &dyn Fn(&mut SubscriptionInput)| {
            let mut input = input.clone();
            f(&mut input);
            check_subscription(&input)
        };
        assert!(
            invalid(with(&|i| i.ack_deadline = Some(Duration::from_millis(10))))
                .starts_with("ack_deadline:")
        );
        assert!(invalid(with(&|i| i.max_deliveries = Some(5000))).starts_with("max_deliveries:"));
        assert!(invalid(with(&|i| i.max_in_flight = Some(0))).starts_with("max_in_flight:"));
        assert!(
            invalid(with(&|i| i.backoff = Some(vec![Duration::from_secs(1); 17])))
                .starts_with("backoff:")
        );
        assert!(
            invalid(with(
                &|i| i.backoff = Some(vec![Duration::from_secs(2 * 86400)])
            ))
            .starts_with("backoff[0]:")
        );
        assert!(invalid(with(&|i| i.name = "No".into())).starts_with("name:"));
        assert_eq!(
            with(&|i| i.max_deliveries = Some(0))
                .expect("unlimited")
                .max_deliveries,
            0
        );
    }

    #[test]
    fn api_info_is_a_json_object_and_retention_has_bounds() {
        assert_eq!(check_api_info("").expect("empty"), serde_json::json!({}));
        assert!(check_api_info(r#"{"schema":"x"}"#).is_ok());
        assert!(invalid(check_api_info("[1]")).contains("object"));
        assert!(invalid(check_api_info("{nope")).starts_with("api_info:"));
        let r = |age: Option<u64>, n: Option<u64>| RetentionInput {
            max_age: age.map(Duration::from_secs),
            max_messages: n,
        };
        assert_eq!(check_retention(&r(None, None)).expect("none"), (None, None));
        assert_eq!(
            check_retention(&r(Some(60), Some(10))).expect("ok"),
            (Some(60_000), Some(10))
        );
        assert_eq!(
            check_retention(&r(None, Some(0))).expect("0 is none"),
            (None, None)
        );
        assert!(
            invalid(check_retention(&RetentionInput {
                max_age: Some(Duration::from_millis(5)),
                max_messages: None
            }))
            .starts_with("retention.max_age:")
        );
    }
}
