//! The collector: frees what no live artifact needs any more, in bounded batches.
//!
//! One background task per replica ([`run`]) makes a pass ([`run_once`]) every
//! `gc_interval`. Every step takes its rows with `FOR UPDATE SKIP LOCKED` (or re-checks
//! them in the statement that changes them), so several replicas may collect at once
//! without doing anything twice that matters. A pass, in order:
//!
//! 1. **Retention** ([`super::retention::sweep`]): items past their collection's age
//!    limit are removed; removed items past their history period let go of their
//!    artifacts; those past their metadata period go.
//! 2. **Uploads**: staged uploads not touched for `stale_upload_age`, or of an artifact
//!    that is no longer alive, are aborted in the store, then their rows are deleted (only
//!    if nobody wrote a part meanwhile). The artifact stays incomplete.
//! 3. **Artifacts** that are not alive ([`super::live`]) and have no upload in progress
//!    are deleted (rows only: their files, relations and uploads cascade; collection items
//!    and attempts that named them let go). In the same transaction every file they held
//!    that no other artifact of the store references is marked unreferenced
//!    (`file_in_store.unreferenced_since`).
//! 4. **References**: marks are cleared on files referenced again, and set on files no
//!    artifact references (files of artifacts deleted some other way).
//! 5. **Bytes**: files unreferenced for longer than `gc_grace` are marked `deleting` (in
//!    the statement that re-checks they are still unreferenced) and committed; then their
//!    bytes are deleted from the store, then their rows, with the store's `total_size`, in
//!    one transaction. A crash between bytes and rows leaves `deleting` rows, which the
//!    next pass finishes (deleting bytes twice is harmless). A `deleting` row never
//!    counts as present ([`super::live::PRESENT_SQL`]), so nothing is deduplicated
//!    against or served from bytes that may be gone.
//! 6. **Orphans**: each store is listed, and objects older than `orphan_age` that no
//!    `file_in_store` row names are deleted, each under the lock of the store's
//!    `file_stores` row (which an upload holds from writing a file's bytes to inserting
//!    its row), after a re-check. A store must belong to one installation: another's
//!    objects have no rows here.
//!
//! The race with a new artifact taking an unreferenced file (dedup) is settled by the
//! row: the artifacts side sets `unreferenced_since = NULL WHERE deleting = false` in the
//! transaction that adds the reference, and step 5 marks only rows with a mark set, so
//! whichever of the two updates the row first wins and the other sees it.
//!
//! This module deletes artifacts, files and objects and changes `collection_items`
//! through retention only. It never decides what is alive itself (that is `live`), and
//! changes no work request.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use berth_files::digest::FileId;
use berth_files::store::StoredObject;
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bytea, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::artifacts::live::ALIVE_SQL;
use crate::artifacts::retention::{self, Swept};
use crate::artifacts::stores::{OpenStore, Stores};
use crate::error::{Error, Result};
use crate::store::db::DbPool;

/// How the collector runs (`[files]` `gc_interval`, `gc_grace`, `orphan_age`,
/// `stale_upload_age` in the server's config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcSettings {
    /// Time between passes.
    pub interval: Duration,
    /// How long a file stays unreferenced before its bytes are deleted.
    pub grace: Duration,
    /// How old an object with no row must be before the orphan sweep deletes it.
    pub orphan_age: Duration,
    /// How long an upload may go without a part before it is aborted.
    pub stale_upload_age: Duration,
    /// Rows per statement.
    pub batch: i64,
}

impl Default for GcSettings {
    fn default() -> GcSettings {
        GcSettings {
            interval: Duration::from_secs(5 * 60),
            grace: Duration::from_secs(3600),
            orphan_age: Duration::from_secs(24 * 3600),
            stale_upload_age: Duration::from_secs(24 * 3600),
            batch: 500,
        }
    }
}

impl GcSettings {
    /// Checks the settings fit together.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.interval < Duration::from_secs(1) || self.interval > Duration::from_secs(24 * 3600)
        {
            return Err("gc_interval: use 1s to 24h".into());
        }
        if self.orphan_age < Duration::from_secs(60) {
            return Err(
                "orphan_age: use at least 1m (an object is written a moment before its row)".into(),
            );
        }
        if !(1..=100_000).contains(&self.batch) {
            return Err("gc batch: use 1 to 100000 rows".into());
        }
        Ok(())
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Retention's part.
    pub retention: Swept,
    /// Staged uploads aborted.
    pub uploads_aborted: usize,
    /// Artifacts deleted.
    pub artifacts_deleted: usize,
    /// Files newly marked unreferenced.
    pub files_unreferenced: usize,
    /// Files referenced again whose mark was cleared.
    pub files_referenced_again: usize,
    /// Files whose bytes and rows were deleted.
    pub files_deleted: usize,
    /// Their bytes.
    pub bytes_freed: u64,
    /// Objects with no row deleted from the stores.
    pub orphans_deleted: usize,
}

impl GcReport {
    fn is_empty(&self) -> bool {
        *self == GcReport::default()
    }
}

/// Runs a pass every `settings.interval` (the first one interval after start) until
/// `shutdown`. Failures are logged and the next pass tries again.
pub async fn run(pool: DbPool, stores: Stores, settings: GcSettings, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(settings.interval) => {}
        }
        let pass = tokio::select! {
            () = shutdown.cancelled() => return,
            pass = run_once(&pool, &stores, &settings) => pass,
        };
        match pass {
            Ok(report) if report.is_empty() => tracing::debug!("collector: nothing to collect"),
            Ok(report) => tracing::info!(?report, "collector pass done"),
            Err(Error::Database(e)) => {
                tracing::warn!(error = %e, "collector pass stopped: the database is unavailable")
            }
            Err(e) => tracing::warn!(error = %e, "collector pass failed; the next one retries"),
        }
    }
}

/// One pass of the collector (see the module docs).
pub async fn run_once(pool: &DbPool, stores: &Stores, settings: &GcSettings) -> Result<GcReport> {
    let mut conn = pool.get().await?;
    let conn = &mut *conn;
    let batch = settings.batch;
    let mut report = GcReport {
        retention: retention::sweep(conn, batch).await?,
        ..GcReport::default()
    };
    report.uploads_aborted = abort_uploads(conn, stores, settings).await?;
    let (deleted, unreferenced) = delete_artifacts(conn, batch).await?;
    report.artifacts_deleted = deleted;
    report.files_referenced_again = repeat(conn, batch, CLEAR_MARKS).await?;
    report.files_unreferenced = unreferenced + repeat(conn, batch, MARK_UNREFERENCED).await?;
    let (files, bytes) = delete_files(conn, stores, settings).await?;
    report.files_deleted = files;
    report.bytes_freed = bytes;
    for store in stores.all() {
        report.orphans_deleted += sweep_orphans(conn, store, settings).await?;
    }
    Ok(report)
}

/// Runs a statement with a `$1` batch size until it touches fewer rows than that.
async fn repeat(conn: &mut AsyncPgConnection, batch: i64, statement: &str) -> Result<usize> {
    let mut total = 0;
    loop {
        let n = diesel::sql_query(statement)
            .bind::<BigInt, _>(batch)
            .execute(conn)
            .await?;
        total += n;
        if i64::try_from(n).unwrap_or(i64::MAX) < batch {
            return Ok(total);
        }
    }
}

/// Whether some artifact of the file row's store references it, as SQL over the alias
/// `x` of `file_in_store`.
macro_rules! referenced {
    ($alias:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM artifact_files af JOIN artifacts a ON a.id = af.artifact_id \
             WHERE af.sha256 = ",
            $alias,
            ".sha256 AND af.size = ",
            $alias,
            ".size AND a.store_id = ",
            $alias,
            ".store_id)"
        )
    };
}

/// Files referenced again lose their mark.
const CLEAR_MARKS: &str = concat!(
    "UPDATE file_in_store SET unreferenced_since = NULL \
     WHERE (store_id, sha256, size) IN ( \
       SELECT x.store_id, x.sha256, x.size FROM file_in_store x \
       WHERE x.unreferenced_since IS NOT NULL AND NOT x.deleting AND ",
    referenced!("x"),
    " LIMIT $1 FOR UPDATE SKIP LOCKED)"
);

/// Files no artifact references get a mark.
const MARK_UNREFERENCED: &str = concat!(
    "UPDATE file_in_store SET unreferenced_since = now() \
     WHERE (store_id, sha256, size) IN ( \
       SELECT x.store_id, x.sha256, x.size FROM file_in_store x \
       WHERE x.unreferenced_since IS NULL AND NOT x.deleting AND NOT ",
    referenced!("x"),
    " LIMIT $1 FOR UPDATE SKIP LOCKED)"
);

/// Files (of the stores `$3`) unreferenced for longer than the grace period (`$2`
/// milliseconds) become `deleting`; the outer conditions re-check the row as it is when it is updated.
const MARK_DELETING: &str = concat!(
    "UPDATE file_in_store f SET deleting = true \
     WHERE (f.store_id, f.sha256, f.size) IN ( \
       SELECT x.store_id, x.sha256, x.size FROM file_in_store x \
       WHERE x.store_id = ANY($3) AND NOT x.deleting AND x.unreferenced_since IS NOT NULL \
         AND x.unreferenced_since <= now() - $2 * interval '1 millisecond' AND NOT ",
    referenced!("x"),
    " LIMIT $1 FOR UPDATE SKIP LOCKED) \
       AND NOT f.deleting AND f.unreferenced_since IS NOT NULL \
       AND f.unreferenced_since <= now() - $2 * interval '1 millisecond' AND NOT ",
    referenced!("f")
);

#[derive(QueryableByName)]
struct UploadRow {
    #[diesel(sql_type = SqlUuid)]
    artifact_id: Uuid,
    #[diesel(sql_type = Text)]
    path: String,
    #[diesel(sql_type = SqlUuid)]
    store_id: Uuid,
    #[diesel(sql_type = Text)]
    staging_key: String,
    #[diesel(sql_type = Text)]
    multipart_id: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Bytea>)]
    sha256: Option<Vec<u8>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    size: Option<i64>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

/// Step 2: aborts stale uploads and those of artifacts no longer alive.
async fn abort_uploads(
    conn: &mut AsyncPgConnection,
    stores: &Stores,
    settings: &GcSettings,
) -> Result<usize> {
    let stale_ms = millis(settings.stale_upload_age);
    let here = configured(stores);
    let mut aborted = 0;
    loop {
        let rows: Vec<UploadRow> = diesel::sql_query(format!(
            "SELECT fu.artifact_id, fu.path, fu.store_id, fu.staging_key, fu.multipart_id, \
                    af.sha256, af.size, fu.updated_at \
             FROM file_uploads fu \
             JOIN artifact_files af ON af.artifact_id = fu.artifact_id AND af.path = fu.path \
             WHERE fu.store_id = ANY($3) \
               AND (fu.updated_at <= now() - $2 * interval '1 millisecond' \
                    OR NOT EXISTS (SELECT 1 FROM artifacts WHERE artifacts.id = fu.artifact_id AND {ALIVE_SQL})) \
             ORDER BY fu.updated_at LIMIT $1"
        ))
        .bind::<BigInt, _>(settings.batch)
        .bind::<BigInt, _>(stale_ms)
        .bind::<Array<SqlUuid>, _>(&here)
        .load(conn)
        .await?;
        let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= settings.batch;
        let mut progress = 0;
        for row in rows {
            let Some(file) = row
                .sha256
                .as_deref()
                .zip(row.size.and_then(|s| u64::try_from(s).ok()))
                .and_then(|(sha, size)| FileId::from_bytes(sha, size))
            else {
                continue;
            };
            let store = match stores.get(row.store_id) {
                Ok(store) => store,
                Err(_) => {
                    tracing::warn!(store = %row.store_id, artifact = %row.artifact_id, "collector: the store of a stale upload is not configured here; left for a replica that has it");
                    continue;
                }
            };
            if let Err(e) = store
                .files
                .abort(&row.staging_key, &row.multipart_id, file)
                .await
            {
                tracing::warn!(error = %e, artifact = %row.artifact_id, path = %row.path, "collector: aborting a stale upload failed; the next pass retries");
                continue;
            }
            let deleted = diesel::sql_query(
                "DELETE FROM file_uploads WHERE artifact_id = $1 AND path = $2 AND updated_at = $3",
            )
            .bind::<SqlUuid, _>(row.artifact_id)
            .bind::<Text, _>(&row.path)
            .bind::<Timestamptz, _>(row.updated_at)
            .execute(conn)
            .await?;
            progress += 1;
            aborted += deleted;
        }
        if !full || progress == 0 {
            return Ok(aborted);
        }
    }
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

#[derive(QueryableByName)]
struct FileRow {
    #[diesel(sql_type = SqlUuid)]
    store_id: Uuid,
    #[diesel(sql_type = Bytea)]
    sha256: Vec<u8>,
    #[diesel(sql_type = BigInt)]
    size: i64,
}

/// Step 3: deletes artifacts that are not alive, and marks the files they leave
/// unreferenced; returns (artifacts deleted, files marked).
async fn delete_artifacts(conn: &mut AsyncPgConnection, batch: i64) -> Result<(usize, usize)> {
    let mut deleted = 0;
    let mut marked = 0;
    loop {
        let (n, m, full) = conn
            .transaction::<_, Error, _>(async |conn| {
                let dead: Vec<IdRow> = diesel::sql_query(format!(
                    "SELECT id FROM artifacts \
                     WHERE NOT {ALIVE_SQL} \
                       AND NOT EXISTS (SELECT 1 FROM file_uploads fu WHERE fu.artifact_id = artifacts.id) \
                     LIMIT $1 FOR UPDATE SKIP LOCKED"
                ))
                .bind::<BigInt, _>(batch)
                .load(conn)
                .await?;
                let full = i64::try_from(dead.len()).unwrap_or(i64::MAX) >= batch;
                if dead.is_empty() {
                    return Ok((0, 0, false));
                }
                let ids: Vec<Uuid> = dead.into_iter().map(|r| r.id).collect();
                let files: Vec<FileRow> = diesel::sql_query(
                    "SELECT DISTINCT a.store_id, af.sha256, af.size \
                     FROM artifact_files af JOIN artifacts a ON a.id = af.artifact_id \
                     WHERE a.id = ANY($1) AND af.sha256 IS NOT NULL",
                )
                .bind::<Array<SqlUuid>, _>(&ids)
                .load(conn)
                .await?;
                // A new statement sees what committed since the rows were locked: an
                // artifact something took hold of meanwhile stays.
                let n = diesel::sql_query(format!(
                    "DELETE FROM artifacts WHERE id = ANY($1) AND NOT {ALIVE_SQL}"
                ))
                .bind::<Array<SqlUuid>, _>(&ids)
                .execute(conn)
                .await?;
                let m = mark_unreferenced(conn, &files).await?;
                Ok((n, m, full))
            })
            .await?;
        deleted += n;
        marked += m;
        if !full {
            return Ok((deleted, marked));
        }
    }
}

/// Marks those of `files` that no artifact of their store references any more.
async fn mark_unreferenced(conn: &mut AsyncPgConnection, files: &[FileRow]) -> Result<usize> {
    if files.is_empty() {
        return Ok(0);
    }
    let stores: Vec<Uuid> = files.iter().map(|f| f.store_id).collect();
    let hashes: Vec<Vec<u8>> = files.iter().map(|f| f.sha256.clone()).collect();
    let sizes: Vec<i64> = files.iter().map(|f| f.size).collect();
    let n = diesel::sql_query(concat!(
        "UPDATE file_in_store x SET unreferenced_since = now() \
         WHERE (x.store_id, x.sha256, x.size) IN ( \
           SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::bigint[])) \
           AND x.unreferenced_since IS NULL AND NOT x.deleting AND NOT ",
        referenced!("x")
    ))
    .bind::<Array<SqlUuid>, _>(&stores)
    .bind::<Array<Bytea>, _>(&hashes)
    .bind::<Array<BigInt>, _>(&sizes)
    .execute(conn)
    .await?;
    Ok(n)
}

/// Step 5: deletes the bytes, then the rows, of files unreferenced past the grace
/// period, and finishes deletions an earlier pass left half done. Returns (files, bytes).
async fn delete_files(
    conn: &mut AsyncPgConnection,
    stores: &Stores,
    settings: &GcSettings,
) -> Result<(usize, u64)> {
    let grace_ms = millis(settings.grace);
    let here = configured(stores);
    // Marked and committed before any byte goes: from here on these rows are not
    // present for anyone.
    loop {
        let n = diesel::sql_query(MARK_DELETING)
            .bind::<BigInt, _>(settings.batch)
            .bind::<BigInt, _>(grace_ms)
            .bind::<Array<SqlUuid>, _>(&here)
            .execute(conn)
            .await?;
        if i64::try_from(n).unwrap_or(i64::MAX) < settings.batch {
            break;
        }
    }
    let mut files = 0;
    let mut bytes = 0;
    // Rows are skipped (not deleted) when their bytes cannot be deleted now; the offset
    // steps over them so the loop ends.
    let mut skipped: i64 = 0;
    loop {
        let rows: Vec<FileRow> = diesel::sql_query(
            "SELECT store_id, sha256, size FROM file_in_store WHERE deleting AND store_id = ANY($3) \
             ORDER BY store_id, sha256, size LIMIT $1 OFFSET $2",
        )
        .bind::<BigInt, _>(settings.batch)
        .bind::<BigInt, _>(skipped)
        .bind::<Array<SqlUuid>, _>(&here)
        .load(conn)
        .await?;
        let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= settings.batch;
        let mut gone: Vec<&FileRow> = Vec::new();
        for row in &rows {
            let Some(file) = u64::try_from(row.size)
                .ok()
                .and_then(|size| FileId::from_bytes(&row.sha256, size))
            else {
                skipped += 1;
                continue;
            };
            let Ok(store) = stores.get(row.store_id) else {
                skipped += 1;
                continue;
            };
            match store.files.delete(file).await {
                Ok(()) => gone.push(row),
                Err(e) => {
                    tracing::warn!(error = %e, file = ?file, "collector: deleting a file's bytes failed; the next pass retries");
                    skipped += 1;
                }
            }
        }
        let (n, freed) = delete_rows(conn, &gone).await?;
        files += n;
        bytes += freed;
        if !full {
            return Ok((files, bytes));
        }
    }
}

#[derive(QueryableByName)]
struct Freed {
    #[diesel(sql_type = SqlUuid)]
    store_id: Uuid,
    #[diesel(sql_type = BigInt)]
    size: i64,
}

/// Deletes the `deleting` rows of files whose bytes are gone and takes their sizes off
/// their stores' totals, in one transaction.
async fn delete_rows(conn: &mut AsyncPgConnection, gone: &[&FileRow]) -> Result<(usize, u64)> {
    if gone.is_empty() {
        return Ok((0, 0));
    }
    let stores: Vec<Uuid> = gone.iter().map(|f| f.store_id).collect();
    let hashes: Vec<Vec<u8>> = gone.iter().map(|f| f.sha256.clone()).collect();
    let sizes: Vec<i64> = gone.iter().map(|f| f.size).collect();
    conn.transaction::<_, Error, _>(async |conn| {
        let freed: Vec<Freed> = diesel::sql_query(
            "DELETE FROM file_in_store \
             WHERE (store_id, sha256, size) IN ( \
               SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::bigint[])) \
               AND deleting \
             RETURNING store_id, size",
        )
        .bind::<Array<SqlUuid>, _>(&stores)
        .bind::<Array<Bytea>, _>(&hashes)
        .bind::<Array<BigInt>, _>(&sizes)
        .load(conn)
        .await?;
        let mut per_store: HashMap<Uuid, i64> = HashMap::new();
        for f in &freed {
            *per_store.entry(f.store_id).or_default() += f.size;
        }
        for (store, size) in &per_store {
            diesel::sql_query(
                "UPDATE file_stores SET total_size = GREATEST(total_size - $2, 0) WHERE id = $1",
            )
            .bind::<SqlUuid, _>(store)
            .bind::<BigInt, _>(size)
            .execute(conn)
            .await?;
        }
        let bytes = freed
            .iter()
            .map(|f| u64::try_from(f.size).unwrap_or(0))
            .sum();
        Ok((freed.len(), bytes))
    })
    .await
}

/// Step 6: deletes `store`'s objects older than the orphan age that no row names.
async fn sweep_orphans(
    conn: &mut AsyncPgConnection,
    store: &OpenStore,
    settings: &GcSettings,
) -> Result<usize> {
    let cutoff =
        Utc::now().timestamp() - i64::try_from(settings.orphan_age.as_secs()).unwrap_or(i64::MAX);
    let batch = usize::try_from(settings.batch).unwrap_or(500);
    let mut listing = store.files.list();
    let mut chunk: Vec<StoredObject> = Vec::new();
    let mut deleted = 0;
    while let Some(object) = listing.next().await {
        let object = object.map_err(|e| Error::internal(format!("orphan sweep: {e}")))?;
        if object.last_modified > cutoff {
            continue;
        }
        chunk.push(object);
        if chunk.len() >= batch {
            deleted += delete_orphans(conn, store, std::mem::take(&mut chunk)).await?;
        }
    }
    deleted += delete_orphans(conn, store, chunk).await?;
    Ok(deleted)
}

/// Deletes those of `objects` that have no `file_in_store` row in `store`.
async fn delete_orphans(
    conn: &mut AsyncPgConnection,
    store: &OpenStore,
    objects: Vec<StoredObject>,
) -> Result<usize> {
    if objects.is_empty() {
        return Ok(0);
    }
    let files: Vec<FileId> = objects.iter().filter_map(|o| o.file).collect();
    let hashes: Vec<Vec<u8>> = files.iter().map(|f| f.sha256.to_vec()).collect();
    let sizes: Vec<i64> = files
        .iter()
        .map(|f| i64::try_from(f.size).unwrap_or(i64::MAX))
        .collect();
    let known: Vec<FileRow> = diesel::sql_query(
        "SELECT store_id, sha256, size FROM file_in_store \
         WHERE store_id = $1 AND (sha256, size) IN ( \
           SELECT * FROM unnest($2::bytea[], $3::bigint[]))",
    )
    .bind::<SqlUuid, _>(store.id)
    .bind::<Array<Bytea>, _>(&hashes)
    .bind::<Array<BigInt>, _>(&sizes)
    .load(conn)
    .await?;
    let known: HashSet<(Vec<u8>, i64)> = known.into_iter().map(|r| (r.sha256, r.size)).collect();
    let mut deleted = 0;
    for object in objects {
        let orphan = match object.file {
            Some(file) => !known.contains(&(
                file.sha256.to_vec(),
                i64::try_from(file.size).unwrap_or(i64::MAX),
            )),
            // Something under sha256/ that is no file's key: nothing can name it.
            None => true,
        };
        if orphan && delete_orphan(conn, store, &object).await? {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Deletes one orphan object under the store row's lock, which an upload recording a
/// file holds while it writes the bytes and inserts the row: so no upload is between
/// bytes and row meanwhile, and the re-check sees every row. Returns whether it went.
async fn delete_orphan(
    conn: &mut AsyncPgConnection,
    store: &OpenStore,
    object: &StoredObject,
) -> Result<bool> {
    conn.transaction::<_, Error, _>(async |conn| {
        diesel::sql_query("SELECT id FROM file_stores WHERE id = $1 FOR UPDATE")
            .bind::<SqlUuid, _>(store.id)
            .load::<IdRow>(conn)
            .await?;
        if let Some(file) = object.file {
            let rows: Vec<IdRow> = diesel::sql_query(
                "SELECT store_id AS id FROM file_in_store \
                 WHERE store_id = $1 AND sha256 = $2 AND size = $3",
            )
            .bind::<SqlUuid, _>(store.id)
            .bind::<Bytea, _>(file.sha256.to_vec())
            .bind::<BigInt, _>(i64::try_from(file.size).unwrap_or(i64::MAX))
            .load(conn)
            .await?;
            if !rows.is_empty() {
                return Ok(false);
            }
        }
        match store.files.delete_key(&object.key).await {
            Ok(()) => {
                tracing::info!(store = %store.name, key = %object.key, "collector: deleted an object no row names");
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(error = %e, key = %object.key, "collector: deleting an orphan failed; the next pass retries");
                Ok(false)
            }
        }
    })
    .await
}

/// The ids of the stores configured here: rows of other stores are left to a replica
/// that has them.
fn configured(stores: &Stores) -> Vec<Uuid> {
    stores.all().map(|s| s.id).collect()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
