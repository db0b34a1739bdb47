//! Collections: named sets of artifacts in a workspace, with items by name and a
//! retention policy.
//!
//! A collection holds artifacts of one category under item names; an item name is unique
//! among the active items. Adding an artifact checks that it is alive, complete, in the
//! same workspace and of the collection's category, copies its category and data into the
//! item (so the history still reads once the artifact is gone) and applies the retention
//! policy ([`super::retention`]) in the same transaction. Removed items (by hand,
//! replaced, or by retention) stay as history.
//!
//! Every call starts from the caller's standing (`access::roles`): viewers read,
//! contributors write, and a workspace the caller may not see answers NOT_FOUND as one
//! that does not exist.
//!
//! This module changes `collections` and `collection_items` only. It never changes an
//! artifact, decides no role itself, and asks whether an artifact is alive only through
//! [`super::live`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::{self, Standing, WorkspaceRole};
use crate::artifacts::live;
use crate::artifacts::retention;
use crate::error::{Error, Result};
use crate::store::db::DbPool;
use crate::store::schema::{artifacts, collection_items, collections, users};
use crate::work::spec::RawDuration;

/// The history period when none is given: 30 days.
pub const DEFAULT_HISTORY: Duration = Duration::from_secs(30 * 24 * 3600);
/// The metadata period when none is given: 365 days.
pub const DEFAULT_METADATA: Duration = Duration::from_secs(365 * 24 * 3600);
/// The longest period any retention setting may give: 100 years.
const MAX_PERIOD: Duration = Duration::from_secs(100 * 366 * 24 * 3600);
/// The largest `keep_last`.
const MAX_KEEP_LAST: u32 = 1_000_000;
/// The longest item name, in characters.
const MAX_ITEM_NAME: usize = 255;

/// A retention policy as a caller sent it.
#[derive(Clone, Copy, Debug, Default)]
pub struct RetentionInput {
    /// Keep at most this many unpinned active items (the newest).
    pub keep_last: Option<u32>,
    /// Keep items younger than this.
    pub keep_for: Option<RawDuration>,
    /// How long removed items keep their artifacts; unset is [`DEFAULT_HISTORY`].
    pub history: Option<RawDuration>,
    /// After that, how long removed items stay as metadata; unset is [`DEFAULT_METADATA`].
    pub metadata: Option<RawDuration>,
}

/// A checked retention policy, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many unpinned active items; `None`: no count limit.
    pub keep_last: Option<u32>,
    /// Keep items younger than this many seconds; `None`: no age limit.
    pub keep_seconds: Option<i64>,
    /// Removed items keep their artifacts this many seconds.
    pub history_seconds: i64,
    /// Then stay as metadata this many seconds more.
    pub metadata_seconds: i64,
}

/// A collection to make.
#[derive(Clone, Debug, Default)]
pub struct NewCollection {
    /// Workspace name; empty is `default`.
    pub workspace: String,
    /// Its name (a slug).
    pub name: String,
    /// The category of artifacts it holds (a slug).
    pub category: String,
    /// Its retention policy.
    pub retention: RetentionInput,
}

/// An artifact to add.
#[derive(Clone, Debug, Default)]
pub struct NewItem {
    /// Workspace name; empty is `default`.
    pub workspace: String,
    /// The collection.
    pub collection: String,
    /// The item name.
    pub name: String,
    /// The artifact's id as sent.
    pub artifact_id: String,
    /// Kept whatever the retention says.
    pub pinned: bool,
    /// Remove an active item of the same name first instead of refusing.
    pub replace: bool,
}

/// A collection as the caller sees it.
#[derive(Clone, Debug)]
pub struct CollectionView {
    pub workspace: String,
    pub name: String,
    pub category: String,
    pub retention: Retention,
    pub created_at: DateTime<Utc>,
    /// Active items, newest first (filled by `get` only).
    pub items: Vec<ItemView>,
    /// Removed items, newest removal first (filled by `get` with history only).
    pub history: Vec<ItemView>,
}

/// An item as the caller sees it.
#[derive(Clone, Debug)]
pub struct ItemView {
    /// The collection's name.
    pub collection: String,
    pub name: String,
    /// `None` once a removed item's history period is over (or its artifact is gone).
    pub artifact_id: Option<Uuid>,
    pub category: String,
    pub data: serde_json::Value,
    pub pinned: bool,
    pub added_at: DateTime<Utc>,
    /// The name of the user who added it.
    pub added_by: Option<String>,
    pub removed_at: Option<DateTime<Utc>>,
    /// `removed`, `replaced` or `retention`.
    pub removed_why: Option<String>,
}

/// Why an item left the active set, as stored in `collection_items.removed_why`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovedWhy {
    /// Removed by a caller.
    Removed,
    /// Another artifact was added under its name with `replace`.
    Replaced,
    /// The retention policy removed it.
    Retention,
}

impl RemovedWhy {
    pub fn as_str(self) -> &'static str {
        match self {
            RemovedWhy::Removed => "removed",
            RemovedWhy::Replaced => "replaced",
            RemovedWhy::Retention => "retention",
        }
    }
}

/// A collection row.
#[derive(Queryable, Clone, Debug)]
struct CollectionRow {
    id: Uuid,
    name: String,
    category: String,
    keep_last: Option<i32>,
    keep_seconds: Option<i64>,
    history_seconds: i64,
    metadata_seconds: i64,
    created_at: DateTime<Utc>,
}

type CollectionColumns = (
    collections::id,
    collections::name,
    collections::category,
    collections::keep_last,
    collections::keep_seconds,
    collections::history_seconds,
    collections::metadata_seconds,
    collections::created_at,
);

const COLLECTION_COLUMNS: CollectionColumns = (
    collections::id,
    collections::name,
    collections::category,
    collections::keep_last,
    collections::keep_seconds,
    collections::history_seconds,
    collections::metadata_seconds,
    collections::created_at,
);

/// An item row with the name of who added it.
#[derive(Queryable, Clone, Debug)]
struct ItemRow {
    name: String,
    artifact_id: Option<Uuid>,
    category: String,
    data: serde_json::Value,
    pinned: bool,
    added_at: DateTime<Utc>,
    added_by: Option<String>,
    removed_at: Option<DateTime<Utc>>,
    removed_why: Option<String>,
}

impl CollectionRow {
    fn view(self, workspace: &str) -> CollectionView {
        CollectionView {
            workspace: workspace.to_owned(),
            name: self.name,
            category: self.category,
            retention: Retention {
                keep_last: self.keep_last.and_then(|n| u32::try_from(n).ok()),
                keep_seconds: self.keep_seconds,
                history_seconds: self.history_seconds,
                metadata_seconds: self.metadata_seconds,
            },
            created_at: self.created_at,
            items: Vec::new(),
            history: Vec::new(),
        }
    }
}

impl ItemRow {
    fn view(self, collection: &str) -> ItemView {
        ItemView {
            collection: collection.to_owned(),
            name: self.name,
            artifact_id: self.artifact_id,
            category: self.category,
            data: self.data,
            pinned: self.pinned,
            added_at: self.added_at,
            added_by: self.added_by,
            removed_at: self.removed_at,
            removed_why: self.removed_why,
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct Collections {
    pool: DbPool,
}

impl Collections {
    /// Collections stored in `pool`.
    pub fn new(pool: DbPool) -> Collections {
        Collections { pool }
    }

    /// `CreateCollection` (contributors).
    pub async fn create(&self, caller: &Identity, new: NewCollection) -> Result<CollectionView> {
        slug("name", &new.name)?;
        slug("category", &new.category)?;
        let retention = check_retention(&new.retention)?;
        let mut conn = self.pool.get().await?;
        let standing = standing(&mut conn, caller, &new.workspace).await?;
        standing.require(WorkspaceRole::Contributor, "create collections in")?;
        let inserted: Option<Uuid> = diesel::insert_into(collections::table)
            .values((
                collections::id.eq(Uuid::now_v7()),
                collections::workspace_id.eq(standing.workspace.id),
                collections::name.eq(&new.name),
                collections::category.eq(&new.category),
                collections::keep_last.eq(keep_last_column(retention.keep_last)),
                collections::keep_seconds.eq(retention.keep_seconds),
                collections::history_seconds.eq(retention.history_seconds),
                collections::metadata_seconds.eq(retention.metadata_seconds),
            ))
            .on_conflict((collections::workspace_id, collections::name))
            .do_nothing()
            .returning(collections::id)
            .get_result(&mut conn)
            .await
            .optional()?;
        if inserted.is_none() {
            return Err(Error::AlreadyExists(format!(
                "name: workspace {} already has a collection named {:?}",
                standing.workspace.name, new.name
            )));
        }
        tracing::info!(workspace = %standing.workspace.name, collection = %new.name, by = %caller.name, "collection created");
        let row = find(&mut conn, &standing, &new.name).await?;
        Ok(row.view(&standing.workspace.name))
    }

    /// `GetCollection`: with its active items, and its history if asked.
    pub async fn get(
        &self,
        caller: &Identity,
        workspace: &str,
        name: &str,
        history: bool,
    ) -> Result<CollectionView> {
        let mut conn = self.pool.get().await?;
        let standing = standing(&mut conn, caller, workspace).await?;
        let row = find(&mut conn, &standing, name).await?;
        let id = row.id;
        let mut view = row.view(&standing.workspace.name);
        view.items = items(&mut conn, id, false)
            .await?
            .into_iter()
            .map(|i| i.view(&view.name))
            .collect();
        if history {
            view.history = items(&mut conn, id, true)
                .await?
                .into_iter()
                .map(|i| i.view(&view.name))
                .collect();
        }
        Ok(view)
    }

    /// `ListCollections`: a workspace's collections by name, without items.
    pub async fn list(&self, caller: &Identity, workspace: &str) -> Result<Vec<CollectionView>> {
        let mut conn = self.pool.get().await?;
        let standing = standing(&mut conn, caller, workspace).await?;
        let rows: Vec<CollectionRow> = collections::table
            .filter(collections::workspace_id.eq(standing.workspace.id))
            .select(COLLECTION_COLUMNS)
            .order(collections::name)
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| r.view(&standing.workspace.name))
            .collect())
    }

    /// `UpdateCollection`: replaces the retention policy whole and applies it at once.
    pub async fn update(
        &self,
        caller: &Identity,
        workspace: &str,
        name: &str,
        retention: RetentionInput,
    ) -> Result<CollectionView> {
        let retention = check_retention(&retention)?;
        let mut conn = self.pool.get().await?;
        let standing = standing(&mut conn, caller, workspace).await?;
        standing.require(WorkspaceRole::Contributor, "change the collections of")?;
        let row = find(&mut conn, &standing, name).await?;
        let id = row.id;
        let removed = conn
            .transaction::<_, Error, _>(async |conn| {
                diesel::update(collections::table.find(id))
                    .set((
                        collections::keep_last.eq(keep_last_column(retention.keep_last)),
                        collections::keep_seconds.eq(retention.keep_seconds),
                        collections::history_seconds.eq(retention.history_seconds),
                        collections::metadata_seconds.eq(retention.metadata_seconds),
                    ))
                    .execute(conn)
                    .await?;
                retention::apply(conn, id).await
            })
            .await?;
        tracing::info!(workspace = %standing.workspace.name, collection = name, removed, by = %caller.name, "collection retention changed");
        let row = find(&mut conn, &standing, name).await?;
        Ok(row.view(&standing.workspace.name))
    }

    /// `AddToCollection`: adds an artifact under an item name and applies the retention
    /// policy, in one transaction.
    pub async fn add(&self, caller: &Identity, new: NewItem) -> Result<ItemView> {
        item_name(&new.name)?;
        let artifact_id = Uuid::parse_str(&new.artifact_id).map_err(|_| {
            Error::InvalidArgument(format!(
                "artifact_id: {:?} is not an artifact id (a UUID)",
                new.artifact_id
            ))
        })?;
        let mut conn = self.pool.get().await?;
        let standing = standing(&mut conn, caller, &new.workspace).await?;
        standing.require(WorkspaceRole::Contributor, "change the collections of")?;
        let collection = find(&mut conn, &standing, &new.collection).await?;
        let workspace_id = standing.workspace.id;
        let added_by = caller.user_id;
        let (removed, item_id) = conn
            .transaction::<_, Error, _>(async |conn| {
                // One add at a time per collection: the name check and the retention
                // count see every earlier add.
                collections::table
                    .find(collection.id)
                    .select(collections::id)
                    .for_no_key_update()
                    .first::<Uuid>(conn)
                    .await?;
                // Locked so the collector cannot delete it before the item holds it.
                let artifact: Option<(String, serde_json::Value, bool)> = artifacts::table
                    .filter(artifacts::id.eq(artifact_id))
                    .filter(artifacts::workspace_id.eq(workspace_id))
                    .filter(live::alive())
                    .select((artifacts::category, artifacts::data, artifacts::complete))
                    .for_key_share()
                    .first(conn)
                    .await
                    .optional()?;
                let Some((category, data, complete)) = artifact else {
                    return Err(no_such_artifact(artifact_id));
                };
                if !complete {
                    return Err(Error::FailedPrecondition(format!(
                        "artifact {artifact_id} is not complete yet; upload its files first, then add it"
                    )));
                }
                if category != collection.category {
                    return Err(Error::FailedPrecondition(format!(
                        "collection {} holds artifacts of category {:?}; artifact {artifact_id} is of category {category:?}",
                        collection.name, collection.category
                    )));
                }
                let taken = diesel::update(
                    collection_items::table
                        .filter(collection_items::collection_id.eq(collection.id))
                        .filter(collection_items::name.eq(&new.name))
                        .filter(collection_items::removed_at.is_null()),
                );
                if new.replace {
                    taken
                        .set((
                            collection_items::removed_at.eq(diesel::dsl::now),
                            collection_items::removed_why.eq(RemovedWhy::Replaced.as_str()),
                        ))
                        .execute(conn)
                        .await?;
                } else {
                    let exists: i64 = collection_items::table
                        .filter(collection_items::collection_id.eq(collection.id))
                        .filter(collection_items::name.eq(&new.name))
                        .filter(collection_items::removed_at.is_null())
                        .count()
                        .get_result(conn)
                        .await?;
                    if exists > 0 {
                        return Err(Error::AlreadyExists(format!(
                            "name: collection {} already has an active item named {:?}; remove it first or add with replace",
                            collection.name, new.name
                        )));
                    }
                }
                let item_id = Uuid::now_v7();
                diesel::insert_into(collection_items::table)
                    .values((
                        collection_items::id.eq(item_id),
                        collection_items::collection_id.eq(collection.id),
                        collection_items::name.eq(&new.name),
                        collection_items::artifact_id.eq(artifact_id),
                        collection_items::category.eq(&category),
                        collection_items::data.eq(&data),
                        collection_items::pinned.eq(new.pinned),
                        collection_items::added_by.eq(added_by),
                        // The time it is added, not when the transaction began: under the
                        // collection's lock that orders items as they were added.
                        collection_items::added_at.eq(diesel::dsl::sql::<
                            diesel::sql_types::Timestamptz,
                        >("clock_timestamp()")),
                    ))
                    .execute(conn)
                    .await?;
                let removed = retention::apply(conn, collection.id).await?;
                Ok((removed, item_id))
            })
            .await?;
        tracing::info!(
            workspace = %standing.workspace.name,
            collection = %collection.name,
            item = %new.name,
            artifact = %artifact_id,
            removed_by_retention = removed,
            by = %caller.name,
            "artifact added to collection"
        );
        let row = item_query()
            .filter(collection_items::id.eq(item_id))
            .first::<ItemRow>(&mut conn)
            .await?;
        Ok(row.view(&collection.name))
    }

    /// `RemoveFromCollection`: the active item of `name` becomes history.
    pub async fn remove(
        &self,
        caller: &Identity,
        workspace: &str,
        collection: &str,
        name: &str,
    ) -> Result<ItemView> {
        let mut conn = self.pool.get().await?;
        let standing = standing(&mut conn, caller, workspace).await?;
        standing.require(WorkspaceRole::Contributor, "change the collections of")?;
        let found = find(&mut conn, &standing, collection).await?;
        let removed: Option<Uuid> = diesel::update(
            collection_items::table
                .filter(collection_items::collection_id.eq(found.id))
                .filter(collection_items::name.eq(name))
                .filter(collection_items::removed_at.is_null()),
        )
        .set((
            collection_items::removed_at.eq(diesel::dsl::now),
            collection_items::removed_why.eq(RemovedWhy::Removed.as_str()),
        ))
        .returning(collection_items::id)
        .get_result(&mut conn)
        .await
        .optional()?;
        let Some(id) = removed else {
            return Err(no_such_item(&found.name, name));
        };
        tracing::info!(workspace = %standing.workspace.name, collection, item = name, by = %caller.name, "collection item removed");
        let row = item_query()
            .filter(collection_items::id.eq(id))
            .first::<ItemRow>(&mut conn)
            .await?;
        Ok(row.view(&found.name))
    }

    /// `LookupItem`: the active item of `name`.
    pub async fn lookup(
        &self,
        caller: &Identity,
        workspace: &str,
        collection: &str,
        name: &str,
    ) -> Result<ItemView> {
        let mut conn = self.pool.get().await?;
        let standing = standing(&mut conn, caller, workspace).await?;
        let found = find(&mut conn, &standing, collection).await?;
        let row: Option<ItemRow> = item_query()
            .filter(collection_items::collection_id.eq(found.id))
            .filter(collection_items::name.eq(name))
            .filter(collection_items::removed_at.is_null())
            .first(&mut conn)
            .await
            .optional()?;
        row.map(|r| r.view(&found.name))
            .ok_or_else(|| no_such_item(&found.name, name))
    }
}

/// The caller's standing in `workspace` (empty: `default`).
async fn standing(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    workspace: &str,
) -> Result<Standing> {
    let name = if workspace.is_empty() {
        "default"
    } else {
        workspace
    };
    roles::in_workspace(conn, caller, name).await
}

/// The collection `name` of the workspace, or NOT_FOUND.
async fn find(
    conn: &mut AsyncPgConnection,
    standing: &Standing,
    name: &str,
) -> Result<CollectionRow> {
    collections::table
        .filter(collections::workspace_id.eq(standing.workspace.id))
        .filter(collections::name.eq(name))
        .select(COLLECTION_COLUMNS)
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "collection: workspace {} has no collection named {name:?}",
                standing.workspace.name
            ))
        })
}

/// The columns of an [`ItemRow`].
type ItemColumns = (
    collection_items::name,
    collection_items::artifact_id,
    collection_items::category,
    collection_items::data,
    collection_items::pinned,
    collection_items::added_at,
    diesel::dsl::Nullable<users::name>,
    collection_items::removed_at,
    collection_items::removed_why,
);

/// Items with the name of who added them.
fn item_query()
-> diesel::dsl::Select<diesel::dsl::LeftJoin<collection_items::table, users::table>, ItemColumns> {
    collection_items::table.left_join(users::table).select((
        collection_items::name,
        collection_items::artifact_id,
        collection_items::category,
        collection_items::data,
        collection_items::pinned,
        collection_items::added_at,
        users::name.nullable(),
        collection_items::removed_at,
        collection_items::removed_why,
    ))
}

/// The active items of a collection newest first, or (`removed`) its history, newest
/// removal first.
async fn items(
    conn: &mut AsyncPgConnection,
    collection: Uuid,
    removed: bool,
) -> Result<Vec<ItemRow>> {
    let query = item_query().filter(collection_items::collection_id.eq(collection));
    let rows = if removed {
        query
            .filter(collection_items::removed_at.is_not_null())
            .order((
                collection_items::removed_at.desc(),
                collection_items::id.desc(),
            ))
            .load(conn)
            .await?
    } else {
        query
            .filter(collection_items::removed_at.is_null())
            .order((
                collection_items::added_at.desc(),
                collection_items::id.desc(),
            ))
            .load(conn)
            .await?
    };
    Ok(rows)
}

fn no_such_artifact(id: Uuid) -> Error {
    Error::NotFound(format!("artifact {id} not found"))
}

fn no_such_item(collection: &str, name: &str) -> Error {
    Error::NotFound(format!(
        "collection {collection} has no active item named {name:?}"
    ))
}

fn keep_last_column(keep_last: Option<u32>) -> Option<i32> {
    // Checked against MAX_KEEP_LAST, which fits.
    keep_last.map(|n| i32::try_from(n).unwrap_or(i32::MAX))
}

/// A collection name or category: 1-63 of `[a-z0-9-]`, starting with a letter or digit
/// and not ending with `-`.
pub fn slug(field: &str, value: &str) -> Result<()> {
    let refuse = |why: String| Err(Error::InvalidArgument(format!("{field}: {why}")));
    if value.is_empty() {
        return refuse("must not be empty".into());
    }
    if value.len() > 63 {
        return refuse(format!(
            "is {} characters long; at most 63 are allowed",
            value.chars().count()
        ));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !value.chars().all(allowed) || value.starts_with('-') || value.ends_with('-') {
        return refuse(format!(
            "{value:?} is not valid; use lowercase letters, digits and '-', starting with a letter or digit and not ending with '-'"
        ));
    }
    Ok(())
}

/// An item name: 1-255 characters, none of them a control character.
pub fn item_name(name: &str) -> Result<()> {
    let refuse = |why: String| Err(Error::InvalidArgument(format!("name: {why}")));
    if name.is_empty() {
        return refuse("must not be empty; give the item a name of 1-255 characters".into());
    }
    let chars = name.chars().count();
    if chars > MAX_ITEM_NAME {
        return refuse(format!(
            "is {chars} characters long; at most {MAX_ITEM_NAME} are allowed"
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return refuse(format!(
            "contains the control character {:?}; use printable characters only",
            c
        ));
    }
    Ok(())
}

/// A period in whole seconds (rounded up), at most [`MAX_PERIOD`], at least `min`.
fn period(field: &str, d: RawDuration, min: u64) -> Result<i64> {
    let d = d
        .to_std(field)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let seconds = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if seconds < min || d > MAX_PERIOD {
        let least = if min == 0 { "0 seconds" } else { "1 second" };
        return Err(Error::InvalidArgument(format!(
            "{field}: must be at least {least} and at most 100 years"
        )));
    }
    i64::try_from(seconds).map_err(|_| Error::InvalidArgument(format!("{field}: out of range")))
}

/// Checks a policy and fills in the default periods.
pub fn check_retention(input: &RetentionInput) -> Result<Retention> {
    if let Some(n) = input.keep_last
        && !(1..=MAX_KEEP_LAST).contains(&n)
    {
        return Err(Error::InvalidArgument(format!(
            "retention.keep_last: {n} is out of range; keep 1 to {MAX_KEEP_LAST} items, or leave it unset for no count limit"
        )));
    }
    let keep_seconds = input
        .keep_for
        .map(|d| period("retention.keep_for", d, 1))
        .transpose()?;
    let default = |d: Duration| RawDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    };
    let history_seconds = period(
        "retention.history",
        input.history.unwrap_or(default(DEFAULT_HISTORY)),
        0,
    )?;
    let metadata_seconds = period(
        "retention.metadata",
        input.metadata.unwrap_or(default(DEFAULT_METADATA)),
        0,
    )?;
    Ok(Retention {
        keep_last: input.keep_last,
        keep_seconds,
        history_seconds,
        metadata_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_names_are_printable_and_at_most_255_characters() {
        assert!(item_name("v1.2.3 (amd64)").is_ok());
        assert!(item_name(&"é".repeat(255)).is_ok());
        assert!(item_name("").is_err());
        assert!(item_name(&"x".repeat(256)).is_err());
        assert!(item_name("a\nb").is_err());
        assert!(item_name("a\u{7f}").is_err());
    }

    #[test]
    fn retention_refuses_zero_counts_and_bad_durations_and_fills_defaults() {
        let filled = check_retention(&RetentionInput::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(filled.history_seconds, 30 * 24 * 3600);
        assert_eq!(filled.metadata_seconds, 365 * 24 * 3600);
        assert_eq!((filled.keep_last, filled.keep_seconds), (None, None));
        let zero = RetentionInput {
            keep_last: Some(0),
            ..Default::default()
        };
        assert!(check_retention(&zero).is_err());
        let negative = RetentionInput {
            keep_for: Some(RawDuration {
                seconds: -1,
                nanos: 0,
            }),
            ..Default::default()
        };
        assert!(check_retention(&negative).is_err());
        let no_age = RetentionInput {
            keep_for: Some(RawDuration::default()),
            ..Default::default()
        };
        assert!(check_retention(&no_age).is_err());
        let half = RetentionInput {
            keep_for: Some(RawDuration::from_millis(1500)),
            history: Some(RawDuration::default()),
            ..Default::default()
        };
        let half = check_retention(&half).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((half.keep_seconds, half.history_seconds), (Some(2), 0));
    }

    #[test]
    fn names_and_categories_are_slugs() {
        assert!(slug("name", "nightly-builds").is_ok());
        assert!(slug("name", "Nightly").is_err());
        assert!(slug("name", "-x").is_err());
        assert!(slug("category", "").is_err());
    }
}
