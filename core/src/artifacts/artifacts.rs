//! The front the API calls for artifacts: creating them (with per-workspace dedup),
//! reading them back, listing, relating, deleting and changing expiry. Uploads and
//! downloads are [`super::uploads`] and [`super::read`], on the same [`Artifacts`].
//!
//! Dedup is per workspace: a file counts as present only when the workspace's store holds
//! it and an alive artifact of the caller's workspace already has it uploaded, so nothing
//! tells a caller which files another workspace has.
//!
//! Deleting is expiring now: the artifact is no longer alive ([`super::live`]), so it is
//! NOT_FOUND at once, and the collector removes it and its unreferenced bytes as it does
//! expired ones. It is refused while an unfinished request takes it as input or an active
//! collection item holds it.
//!
//! What it must not touch: work requests' state (read only), roles (asked of
//! [`crate::access::roles`] through [`super::access`]), bytes in stores other than through
//! [`super::stores`], and whether an artifact is alive other than by [`super::live`].

use std::collections::{BTreeSet, HashSet};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_files::FileId;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bytea, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::{self, WorkspaceRole};
use crate::artifacts::access::{self, Need, no_such_artifact};
use crate::artifacts::live::{ALIVE_SQL, alive};
use crate::artifacts::rules::{
    self, ArtifactLimits, CheckedFile, Expiry, FileEntry, FileKind, Past,
};
use crate::artifacts::stores::Stores;
use crate::error::{Error, Result};
use crate::store::db::DbPool;
use crate::store::schema::{
    artifact_files, artifact_relations, artifacts, collection_items, collections, file_stores,
    file_uploads, files, users, workspaces,
};
use crate::work::ids::parse_uuid;
use berth_token::TokenKind;

/// Artifacts over a pool and the configured stores.
#[derive(Clone)]
pub struct Artifacts {
    pub(crate) pool: DbPool,
    pub(crate) stores: Stores,
    pub(crate) limits: ArtifactLimits,
}

/// How one artifact relates to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelationKind {
    Extends,
    RelatesTo,
    BuiltUsing,
}

impl RelationKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RelationKind::Extends => "extends",
            RelationKind::RelatesTo => "relates-to",
            RelationKind::BuiltUsing => "built-using",
        }
    }

    fn from_name(name: &str) -> Option<RelationKind> {
        [
            RelationKind::Extends,
            RelationKind::RelatesTo,
            RelationKind::BuiltUsing,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// An artifact to create.
#[derive(Clone, Debug, Default)]
pub struct NewArtifact {
    /// Workspace name; empty means `default` (for workers: the request's workspace).
    pub workspace: String,
    pub category: String,
    /// JSON text; empty means `{}`.
    pub data: String,
    pub files: Vec<FileEntry>,
    pub expiry: Expiry,
    /// Workers: the attempt whose outputs these are (request id as sent, attempt number).
    pub work_request_id: String,
    pub attempt: u32,
}

/// A file of an artifact as callers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileView {
    pub path: String,
    /// Hex; empty for a symlink.
    pub sha256: String,
    pub size: u64,
    pub mode: u32,
    /// A symlink's target; empty for a regular file.
    pub symlink: String,
    pub uploaded: bool,
}

/// A relation as seen from one artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationView {
    pub kind: RelationKind,
    pub other: Uuid,
    /// The other artifact is the source (it points at this one).
    pub incoming: bool,
}

/// An artifact as callers see it.
#[derive(Clone, Debug)]
pub struct ArtifactView {
    pub id: Uuid,
    pub workspace: String,
    pub category: String,
    /// JSON text of an object.
    pub data: String,
    /// Left empty by listings.
    pub files: Vec<FileView>,
    /// The user who made it, if one did.
    pub created_by: Option<String>,
    pub work_request_id: Option<Uuid>,
    pub attempt: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub complete: bool,
    pub total_size: u64,
    pub file_count: u32,
    /// Left empty by listings.
    pub relations: Vec<RelationView>,
    pub store: String,
}

/// A created artifact and the paths still to upload.
#[derive(Clone, Debug)]
pub struct Created {
    pub artifact: ArtifactView,
    pub missing: Vec<String>,
}

/// Which artifacts to list.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Workspace name; empty means `default`.
    pub workspace: String,
    pub category: String,
    /// User name.
    pub created_by: String,
    pub work_request_id: String,
    /// Collection name: only its active items.
    pub collection: String,
    pub include_incomplete: bool,
    /// 1..=1000; 0 means 100.
    pub page_size: u32,
    pub page_token: String,
}

/// A page of artifacts.
#[derive(Clone, Debug)]
pub struct ArtifactPage {
    pub artifacts: Vec<ArtifactView>,
    /// Empty when there is no next page.
    pub next_page_token: String,
}

/// A staged upload of a deleted artifact: key, upload id, and the file's hash and size.
type StagedUpload = (String, String, Option<Vec<u8>>, Option<i64>);

/// A file of an artifact as stored: its contents, or a symlink's target.
pub(crate) enum StoredFile {
    Regular { file: FileId, uploaded: bool },
    Symlink(String),
}

/// The file `path` of artifact `id`; NOT_FOUND when it has none.
pub(crate) async fn stored_file(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    path: &str,
) -> Result<StoredFile> {
    type Row = (Option<Vec<u8>>, Option<i64>, Option<String>, bool);
    let row: Option<Row> = artifact_files::table
        .filter(artifact_files::artifact_id.eq(id))
        .filter(artifact_files::path.eq(path))
        .select((
            artifact_files::sha256,
            artifact_files::size,
            artifact_files::symlink,
            artifact_files::uploaded,
        ))
        .first(conn)
        .await
        .optional()?;
    let Some((sha256, size, symlink, uploaded)) = row else {
        return Err(Error::NotFound(format!(
            "artifact {id} has no file {path:?}"
        )));
    };
    if let Some(target) = symlink {
        return Ok(StoredFile::Symlink(target));
    }
    let file = sha256
        .zip(size)
        .and_then(|(h, s)| FileId::from_bytes(&h, u64::try_from(s).ok()?))
        .ok_or_else(|| Error::internal(format!("artifact {id} file {path:?} has no hash")))?;
    Ok(StoredFile::Regular { file, uploaded })
}

/// Rows of `artifact_files` inserted per statement (7 parameters each, under
/// PostgreSQL's 65,535).
const FILE_ROWS_PER_INSERT: usize = 5_000;

type ArtifactRow = (
    Uuid,
    String,
    String,
    String,
    serde_json::Value,
    Option<String>,
    Option<Uuid>,
    Option<i32>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    bool,
    i64,
    i32,
);

fn view(row: ArtifactRow) -> ArtifactView {
    let (
        id,
        workspace,
        store,
        category,
        data,
        created_by,
        work_request_id,
        attempt,
        created_at,
        expires_at,
        complete,
        total_size,
        file_count,
    ) = row;
    ArtifactView {
        id,
        workspace,
        category,
        data: data.to_string(),
        files: Vec::new(),
        created_by,
        work_request_id,
        attempt: attempt.and_then(|a| u32::try_from(a).ok()),
        created_at,
        expires_at,
        complete,
        total_size: u64::try_from(total_size).unwrap_or(0),
        file_count: u32::try_from(file_count).unwrap_or(0),
        relations: Vec::new(),
        store,
    }
}

/// The columns of [`ArtifactRow`], over `artifacts` joined to its workspace, store and
/// creator.
macro_rules! artifact_query {
    () => {
        artifacts::table
            .inner_join(workspaces::table)
            .inner_join(file_stores::table)
            .left_join(users::table.on(artifacts::created_by.eq(users::id.nullable())))
            .select((
                artifacts::id,
                workspaces::name,
                file_stores::name,
                artifacts::category,
                artifacts::data,
                users::name.nullable(),
                artifacts::work_request_id,
                artifacts::attempt,
                artifacts::created_at,
                artifacts::expires_at,
                artifacts::complete,
                artifacts::total_size,
                artifacts::file_count,
            ))
    };
}

/// The whole view of artifact `id` (files and relations), whatever its liveness; the
/// caller checked access.
pub(crate) async fn load_view(conn: &mut AsyncPgConnection, id: Uuid) -> Result<ArtifactView> {
    let row: ArtifactRow = artifact_query!()
        .filter(artifacts::id.eq(id))
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| no_such_artifact(id))?;
    let mut view = view(row);
    type FileRow = (
        String,
        Option<Vec<u8>>,
        Option<i64>,
        i32,
        Option<String>,
        bool,
    );
    let rows: Vec<FileRow> = artifact_files::table
        .filter(artifact_files::artifact_id.eq(id))
        .order(artifact_files::path)
        .select((
            artifact_files::path,
            artifact_files::sha256,
            artifact_files::size,
            artifact_files::mode,
            artifact_files::symlink,
            artifact_files::uploaded,
        ))
        .load(conn)
        .await?;
    view.files = rows
        .into_iter()
        .map(|(path, sha256, size, mode, symlink, uploaded)| FileView {
            path,
            sha256: sha256
                .map(|h| berth_files::digest::to_hex(&h))
                .unwrap_or_default(),
            size: size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            mode: u32::try_from(mode).unwrap_or(0),
            symlink: symlink.unwrap_or_default(),
            uploaded,
        })
        .collect();
    let outgoing: Vec<(Uuid, String)> = artifact_relations::table
        .filter(artifact_relations::from_id.eq(id))
        .select((artifact_relations::to_id, artifact_relations::kind))
        .load(conn)
        .await?;
    let incoming: Vec<(Uuid, String)> = artifact_relations::table
        .filter(artifact_relations::to_id.eq(id))
        .select((artifact_relations::from_id, artifact_relations::kind))
        .load(conn)
        .await?;
    let mut relations: Vec<RelationView> = outgoing
        .into_iter()
        .map(|r| (r, false))
        .chain(incoming.into_iter().map(|r| (r, true)))
        .filter_map(|((other, kind), incoming)| {
            Some(RelationView {
                kind: RelationKind::from_name(&kind)?,
                other,
                incoming,
            })
        })
        .collect();
    relations.sort_by_key(|r| (r.incoming, r.other, r.kind.as_str()));
    view.relations = relations;
    Ok(view)
}

/// The files of `wanted` that the workspace already has in `store`: held by the store
/// (and not being deleted) and uploaded in an alive artifact of the workspace. Their
/// store rows are marked referenced again, which also locks them against the collector
/// until the caller's transaction ends.
async fn present_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    store_id: Uuid,
    wanted: &[FileId],
) -> Result<HashSet<FileId>> {
    if wanted.is_empty() {
        return Ok(HashSet::new());
    }
    #[derive(QueryableByName)]
    struct Held {
        #[diesel(sql_type = Bytea)]
        sha256: Vec<u8>,
        #[diesel(sql_type = BigInt)]
        size: i64,
    }
    let hashes: Vec<Vec<u8>> = wanted.iter().map(|f| f.sha256.to_vec()).collect();
    let sizes: Vec<i64> = wanted
        .iter()
        .map(|f| i64::try_from(f.size).unwrap_or(i64::MAX))
        .collect();
    let held: Vec<Held> = diesel::sql_query(format!(
        "UPDATE file_in_store fs SET unreferenced_since = NULL \
         WHERE fs.store_id = $1 AND NOT fs.deleting \
           AND (fs.sha256, fs.size) IN (SELECT * FROM unnest($2::bytea[], $3::int8[])) \
           AND EXISTS (SELECT 1 FROM artifact_files af \
                       JOIN artifacts ON artifacts.id = af.artifact_id \
                       WHERE af.sha256 = fs.sha256 AND af.size = fs.size AND af.uploaded \
                         AND artifacts.workspace_id = $4 AND {ALIVE_SQL}) \
         RETURNING fs.sha256, fs.size"
    ))
    .bind::<SqlUuid, _>(store_id)
    .bind::<Array<Bytea>, _>(hashes)
    .bind::<Array<BigInt>, _>(sizes)
    .bind::<SqlUuid, _>(workspace_id)
    .load(conn)
    .await?;
    Ok(held
        .into_iter()
        .filter_map(|h| FileId::from_bytes(&h.sha256, u64::try_from(h.size).ok()?))
        .collect())
}

fn encode_token(created_at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{id}", created_at.timestamp_micros()))
}

fn decode_token(token: &str) -> Result<(DateTime<Utc>, Uuid)> {
    let bad = || {
        Error::InvalidArgument(
            "page_token: not a token this server gave; pass next_page_token as it came".into(),
        )
    };
    let text = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let (micros, id) = text.split_once('.').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    Ok((
        DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
        Uuid::parse_str(id).map_err(|_| bad())?,
    ))
}

impl Artifacts {
    /// Artifacts stored in `pool`, with their bytes in `stores`.
    pub fn new(pool: DbPool, stores: Stores) -> Artifacts {
        Artifacts {
            pool,
            stores,
            limits: ArtifactLimits::default(),
        }
    }

    /// With other limits than the defaults.
    pub fn with_limits(mut self, limits: ArtifactLimits) -> Artifacts {
        self.limits = limits;
        self
    }

    /// `CreateArtifact`.
    pub async fn create(&self, caller: &Identity, new: NewArtifact) -> Result<Created> {
        rules::check_category(&new.category)?;
        let data = rules::check_data(&new.category, &new.data)?;
        let (checked, total) = rules::check_files(new.files, &self.limits)?;
        let mut conn = self.pool.get().await?;
        // Who makes it, and where it goes.
        let (workspace_id, workspace, created_by, made_by) = if caller.role == TokenKind::Worker {
            if new.work_request_id.is_empty() {
                return Err(Error::PermissionDenied(
                    "a worker creates only the outputs of an attempt it holds: give \
                     work_request_id and attempt"
                        .into(),
                ));
            }
            let request = parse_uuid("work_request_id", &new.work_request_id)?;
            let attempt = i32::try_from(new.attempt)
                .ok()
                .filter(|a| *a >= 1)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "attempt: {} is not an attempt number (1 or more)",
                        new.attempt
                    ))
                })?;
            let worker = access::worker_of(&mut conn, caller).await?;
            let held = access::held_attempt(&mut conn, worker, request, attempt).await?;
            if !new.workspace.is_empty() && new.workspace != held.workspace {
                return Err(Error::InvalidArgument(format!(
                    "workspace: the attempt's request is in workspace {}; leave it empty",
                    held.workspace
                )));
            }
            (
                held.workspace_id,
                held.workspace,
                None,
                Some((request, attempt)),
            )
        } else {
            if !new.work_request_id.is_empty() || new.attempt != 0 {
                return Err(Error::InvalidArgument(
                    "work_request_id and attempt: only workers name an attempt (for its \
                     outputs); leave them empty"
                        .into(),
                ));
            }
            let name = if new.workspace.is_empty() {
                "default"
            } else {
                new.workspace.as_str()
            };
            let standing = roles::in_workspace(&mut conn, caller, name).await?;
            standing.require(WorkspaceRole::Contributor, "create artifacts in")?;
            (
                standing.workspace.id,
                standing.workspace.name,
                caller.user_id,
                None,
            )
        };
        let store = self.stores.for_workspace(&workspace)?;
        let default_expiry: Option<i64> = workspaces::table
            .filter(workspaces::id.eq(workspace_id))
            .select(workspaces::default_expiry_seconds)
            .first(&mut conn)
            .await?;
        let expires_at = rules::expires_at(new.expiry, default_expiry, Utc::now(), Past::Refused)?;
        let id = Uuid::now_v7();
        let regular: Vec<FileId> = checked
            .iter()
            .filter_map(|f| match f.kind {
                FileKind::Regular(file) if !file.is_empty() => Some(file),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let file_count = i32::try_from(checked.len()).unwrap_or(i32::MAX);
        let total_size = i64::try_from(total).unwrap_or(i64::MAX);
        let store_id = store.id;
        let missing = conn
            .transaction::<_, Error, _>(async |conn| {
                let present = present_in_workspace(conn, workspace_id, store_id, &regular).await?;
                let uploaded = |f: &CheckedFile| match f.kind {
                    FileKind::Regular(file) => file.is_empty() || present.contains(&file),
                    FileKind::Symlink(_) => true,
                };
                let complete = checked.iter().all(uploaded);
                for chunk in regular.chunks(FILE_ROWS_PER_INSERT * 2) {
                    let rows: Vec<_> = chunk
                        .iter()
                        .map(|f| {
                            (
                                files::sha256.eq(f.sha256.to_vec()),
                                files::size.eq(i64::try_from(f.size).unwrap_or(i64::MAX)),
                            )
                        })
                        .collect();
                    diesel::insert_into(files::table)
                        .values(rows)
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                }
                diesel::insert_into(artifacts::table)
                    .values((
                        artifacts::id.eq(id),
                        artifacts::workspace_id.eq(workspace_id),
                        artifacts::store_id.eq(store_id),
                        artifacts::category.eq(&new.category),
                        artifacts::data.eq(&data),
                        artifacts::created_by.eq(created_by),
                        artifacts::work_request_id.eq(made_by.map(|(r, _)| r)),
                        artifacts::attempt.eq(made_by.map(|(_, a)| a)),
                        artifacts::expires_at.eq(expires_at),
                        artifacts::complete.eq(complete),
                        artifacts::completed_at.eq(complete.then(Utc::now)),
                        artifacts::total_size.eq(total_size),
                        artifacts::file_count.eq(file_count),
                    ))
                    .execute(conn)
                    .await?;
                let mut missing = Vec::new();
                for chunk in checked.chunks(FILE_ROWS_PER_INSERT) {
                    let rows: Vec<_> = chunk
                        .iter()
                        .map(|f| {
                            let (sha256, size, symlink) = match &f.kind {
                                FileKind::Regular(file) => (
                                    Some(file.sha256.to_vec()),
                                    Some(i64::try_from(file.size).unwrap_or(i64::MAX)),
                                    None,
                                ),
                                FileKind::Symlink(target) => (None, None, Some(target.clone())),
                            };
                            (
                                artifact_files::artifact_id.eq(id),
                                artifact_files::path.eq(f.path.clone()),
                                artifact_files::sha256.eq(sha256),
                                artifact_files::size.eq(size),
                                artifact_files::mode.eq(i32::try_from(f.mode).unwrap_or(0o644)),
                                artifact_files::symlink.eq(symlink),
                                artifact_files::uploaded.eq(uploaded(f)),
                            )
                        })
                        .collect();
                    diesel::insert_into(artifact_files::table)
                        .values(rows)
                        .execute(conn)
                        .await?;
                    missing.extend(
                        chunk
                            .iter()
                            .filter(|f| !uploaded(f))
                            .map(|f| f.path.clone()),
                    );
                }
                missing.sort();
                Ok(missing)
            })
            .await?;
        let mut artifact = load_view(&mut conn, id).await?;
        // A new artifact relates to nothing yet; the files are what the caller sent.
        artifact.relations.clear();
        Ok(Created { artifact, missing })
    }

    /// `GetArtifact`.
    pub async fn get(&self, caller: &Identity, id: &str) -> Result<ArtifactView> {
        let id = parse_uuid("id", id)?;
        let mut conn = self.pool.get().await?;
        let found = access::artifact(&mut conn, caller, id, Need::Read).await?;
        load_view(&mut conn, found.id).await
    }

    /// `ListArtifacts`.
    pub async fn list(&self, caller: &Identity, query: ListQuery) -> Result<ArtifactPage> {
        let page_size: i64 = match query.page_size {
            0 => 100,
            n @ 1..=1000 => i64::from(n),
            n => {
                return Err(Error::InvalidArgument(format!(
                    "page_size: {n}; give 1 to 1000 (0 means 100)"
                )));
            }
        };
        let after = (!query.page_token.is_empty())
            .then(|| decode_token(&query.page_token))
            .transpose()?;
        let request = (!query.work_request_id.is_empty())
            .then(|| parse_uuid("work_request_id", &query.work_request_id))
            .transpose()?;
        if !query.category.is_empty() {
            rules::check_category(&query.category)?;
        }
        let name = if query.workspace.is_empty() {
            "default"
        } else {
            query.workspace.as_str()
        };
        let mut conn = self.pool.get().await?;
        let standing = roles::in_workspace(&mut conn, caller, name).await?;
        standing.require(WorkspaceRole::Viewer, "list artifacts of")?;
        let mut select = artifact_query!()
            .filter(artifacts::workspace_id.eq(standing.workspace.id))
            .filter(alive())
            .into_boxed();
        if !query.category.is_empty() {
            select = select.filter(artifacts::category.eq(query.category.clone()));
        }
        if !query.include_incomplete {
            select = select.filter(artifacts::complete.eq(true));
        }
        if let Some(request) = request {
            select = select.filter(artifacts::work_request_id.eq(request));
        }
        if !query.created_by.is_empty() {
            select = select.filter(users::name.nullable().eq(query.created_by.clone()));
        }
        if !query.collection.is_empty() {
            let collection: Option<Uuid> = collections::table
                .filter(collections::workspace_id.eq(standing.workspace.id))
                .filter(collections::name.eq(&query.collection))
                .select(collections::id)
                .first(&mut conn)
                .await
                .optional()?;
            let Some(collection) = collection else {
                return Err(Error::NotFound(format!(
                    "collection: no collection named {:?} in workspace {}",
                    query.collection, standing.workspace.name
                )));
            };
            let held = collection_items::table
                .filter(collection_items::collection_id.eq(collection))
                .filter(collection_items::removed_at.is_null())
                .select(collection_items::artifact_id);
            select = select.filter(artifacts::id.nullable().eq_any(held));
        }
        if let Some((at, id)) = after {
            select = select.filter(
                artifacts::created_at
                    .lt(at)
                    .or(artifacts::created_at.eq(at).and(artifacts::id.lt(id))),
            );
        }
        let mut rows: Vec<ArtifactRow> = select
            .order((artifacts::created_at.desc(), artifacts::id.desc()))
            .limit(page_size + 1)
            .load(&mut conn)
            .await?;
        let more = rows.len() as i64 > page_size;
        rows.truncate(usize::try_from(page_size).unwrap_or(100));
        let artifacts: Vec<ArtifactView> = rows.into_iter().map(view).collect();
        let next_page_token = match artifacts.last() {
            Some(last) if more => encode_token(last.created_at, last.id),
            _ => String::new(),
        };
        Ok(ArtifactPage {
            artifacts,
            next_page_token,
        })
    }

    /// `RelateArtifacts`: adds (or with `remove`, removes) the relation; whether anything
    /// changed.
    pub async fn relate(
        &self,
        caller: &Identity,
        from: &str,
        to: &str,
        kind: RelationKind,
        remove: bool,
    ) -> Result<bool> {
        let from = parse_uuid("from_id", from)?;
        let to = parse_uuid("to_id", to)?;
        if from == to {
            return Err(Error::InvalidArgument(
                "to_id: an artifact cannot relate to itself".into(),
            ));
        }
        let mut conn = self.pool.get().await?;
        let source = access::artifact(&mut conn, caller, from, Need::Change).await?;
        let target = access::artifact(&mut conn, caller, to, Need::Read).await?;
        if source.workspace_id != target.workspace_id {
            return Err(Error::FailedPrecondition(format!(
                "to_id: artifact {to} is in workspace {}, artifact {from} in {}; relations \
                 stay within one workspace",
                target.workspace, source.workspace
            )));
        }
        let changed = if remove {
            diesel::delete(
                artifact_relations::table
                    .filter(artifact_relations::from_id.eq(from))
                    .filter(artifact_relations::to_id.eq(to))
                    .filter(artifact_relations::kind.eq(kind.as_str())),
            )
            .execute(&mut conn)
            .await?
        } else {
            diesel::insert_into(artifact_relations::table)
                .values((
                    artifact_relations::from_id.eq(from),
                    artifact_relations::to_id.eq(to),
                    artifact_relations::kind.eq(kind.as_str()),
                ))
                .on_conflict_do_nothing()
                .execute(&mut conn)
                .await?
        };
        Ok(changed > 0)
    }

    /// `DeleteArtifact`: expires it now, unless an unfinished request takes it as input
    /// or an active collection item holds it; its staged uploads are dropped.
    pub async fn delete(&self, caller: &Identity, id: &str) -> Result<()> {
        let id = parse_uuid("id", id)?;
        let mut conn = self.pool.get().await?;
        let found = access::artifact(&mut conn, caller, id, Need::Change).await?;
        #[derive(QueryableByName)]
        struct Holder {
            #[diesel(sql_type = diesel::sql_types::Text)]
            what: String,
        }
        let staged = conn
            .transaction::<_, Error, _>(async |conn| {
                // Lock the row so an input or a collection item added meanwhile waits.
                artifacts::table
                    .filter(artifacts::id.eq(id))
                    .select(artifacts::id)
                    .for_update()
                    .first::<Uuid>(conn)
                    .await?;
                let holders: Vec<Holder> = diesel::sql_query(
                    "SELECT 'work request ' || wr.id::text || ' (' || wr.status || ') takes it as input' AS what \
                     FROM work_request_inputs wi JOIN work_requests wr ON wr.id = wi.work_request_id \
                     WHERE wi.artifact_id = $1 AND wr.status IN ('blocked', 'pending', 'running') \
                     UNION ALL \
                     SELECT 'collection ' || c.name || ' holds it as item ' || ci.name AS what \
                     FROM collection_items ci JOIN collections c ON c.id = ci.collection_id \
                     WHERE ci.artifact_id = $1 AND ci.removed_at IS NULL \
                     LIMIT 5",
                )
                .bind::<SqlUuid, _>(id)
                .load(conn)
                .await?;
                if !holders.is_empty() {
                    return Err(Error::FailedPrecondition(format!(
                        "artifact {id} cannot be deleted: {}; delete it once nothing needs it",
                        holders
                            .into_iter()
                            .map(|h| h.what)
                            .collect::<Vec<_>>()
                            .join("; ")
                    )));
                }
                diesel::update(artifacts::table.filter(artifacts::id.eq(id)))
                    .set(artifacts::expires_at.eq(diesel::dsl::now))
                    .execute(conn)
                    .await?;
                // Removed collection items would keep it for their history period.
                crate::artifacts::retention::release(conn, id).await?;
                let staged: Vec<StagedUpload> = file_uploads::table
                        .inner_join(
                            artifact_files::table.on(artifact_files::artifact_id
                                .eq(file_uploads::artifact_id)
                                .and(artifact_files::path.eq(file_uploads::path))),
                        )
                        .filter(file_uploads::artifact_id.eq(id))
                        .select((
                            file_uploads::staging_key,
                            file_uploads::multipart_id,
                            artifact_files::sha256,
                            artifact_files::size,
                        ))
                        .load(conn)
                        .await?;
                diesel::delete(file_uploads::table.filter(file_uploads::artifact_id.eq(id)))
                    .execute(conn)
                    .await?;
                Ok(staged)
            })
            .await?;
        if let Ok(store) = self.stores.get(found.store_id) {
            for (key, upload, sha256, size) in staged {
                let file = sha256
                    .zip(size)
                    .and_then(|(h, s)| FileId::from_bytes(&h, u64::try_from(s).ok()?));
                if let Some(file) = file
                    && let Err(e) = store.files.abort(&key, &upload, file).await
                {
                    tracing::warn!(error = %e, artifact = %id, "could not drop a staged upload of a deleted artifact");
                }
            }
        }
        Ok(())
    }

    /// `SetExpiry`: a time in the past expires the artifact at once.
    pub async fn set_expiry(
        &self,
        caller: &Identity,
        id: &str,
        expiry: Expiry,
    ) -> Result<ArtifactView> {
        let id = parse_uuid("id", id)?;
        let mut conn = self.pool.get().await?;
        let found = access::artifact(&mut conn, caller, id, Need::Change).await?;
        let default_expiry: Option<i64> = workspaces::table
            .filter(workspaces::id.eq(found.workspace_id))
            .select(workspaces::default_expiry_seconds)
            .first(&mut conn)
            .await?;
        let at = rules::expires_at(expiry, default_expiry, Utc::now(), Past::Allowed)?;
        diesel::update(artifacts::table.filter(artifacts::id.eq(id)))
            .set(artifacts::expires_at.eq(at))
            .execute(&mut conn)
            .await?;
        load_view(&mut conn, id).await
    }
}

/// Marks every file of artifact `id` naming `file` uploaded, and the artifact complete when
/// no file is left; returns whether it is complete. In the caller's transaction.
pub(crate) async fn mark_uploaded(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    file: FileId,
) -> Result<bool> {
    let size = i64::try_from(file.size).unwrap_or(i64::MAX);
    diesel::update(
        artifact_files::table
            .filter(artifact_files::artifact_id.eq(id))
            .filter(artifact_files::sha256.eq(file.sha256.to_vec()))
            .filter(artifact_files::size.eq(size)),
    )
    .set(artifact_files::uploaded.eq(true))
    .execute(conn)
    .await?;
    let left: i64 = artifact_files::table
        .filter(artifact_files::artifact_id.eq(id))
        .filter(artifact_files::uploaded.eq(false))
        .count()
        .get_result(conn)
        .await?;
    if left == 0 {
        diesel::update(
            artifacts::table
                .filter(artifacts::id.eq(id))
                .filter(artifacts::complete.eq(false)),
        )
        .set((
            artifacts::complete.eq(true),
            artifacts::completed_at.eq(Some(Utc::now())),
        ))
        .execute(conn)
        .await?;
    }
    Ok(left == 0)
}

/// The relation kinds by name, for callers that hold a name.
pub fn relation_kind(name: &str) -> Option<RelationKind> {
    RelationKind::from_name(name)
}
