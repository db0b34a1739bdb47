//! Resumable uploads of an artifact's files, with ByteStream semantics.
//!
//! A stream of chunks (offset, bytes) uploads one file. The server gathers chunks into
//! parts of [`PART`] bytes (S3's minimum for all parts but the last) and writes each part
//! to the store's staged upload; with every part it records in PostgreSQL the committed
//! size, the SHA-256 midstate after it and the part's reference. Any replica, after any
//! restart, goes on from there: the committed size is what [`Artifacts::query_upload`]
//! reports, and it only moves forward by whole parts (bytes received short of a part and
//! not finished are dropped when the stream ends, and sent again by the client). One part
//! is written (hashed, staged, recorded) while the next is received; parts commit in order.
//!
//! - A chunk must start at the end of what was received (the committed size at the start
//!   of a stream); one wholly inside it is a resend and a no-op; one beyond it is
//!   FAILED_PRECONDITION carrying the committed size.
//! - At `finish` the hash and the size are checked. A mismatch resets the upload (the
//!   staged bytes are dropped, the row is removed) and is FAILED_PRECONDITION saying so;
//!   nothing is stored under the file's key.
//! - A verified file is made in the store and recorded (`file_in_store`, the store's
//!   `total_size`, checked against its `max_size`: RESOURCE_EXHAUSTED naming the limit) in
//!   one transaction with marking the artifact's file uploaded (and the artifact complete
//!   when it was the last).
//! - Two streams may upload the same file at once: parts are written under the upload
//!   row's lock, so whichever commits a part first wins and the other's same bytes are a
//!   resend. A file someone else finished meanwhile is reported complete.
//!
//! What it must not touch: who may upload is [`super::access`]; bytes go only through
//! [`super::stores`]; paths are checked only by [`berth_files::paths`].

use std::future::Future;
use std::pin::Pin;

use berth_files::paths::validate_path;
use berth_files::store::{MIN_PART, StoreError};
use berth_files::{FileId, Hasher};
use bytes::{Bytes, BytesMut};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::artifacts::access::{self, ArtifactRef, Need};
use crate::artifacts::artifacts::{Artifacts, StoredFile, mark_uploaded, stored_file};
use crate::artifacts::stores::OpenStore;
use crate::error::{Error, Result};
use crate::store::schema::{artifact_files, artifacts, file_in_store, file_stores, file_uploads};
use crate::work::ids::parse_uuid;

/// Bytes per staged part.
pub const PART: usize = MIN_PART;

/// What writing one part came to.
type FlushResult = std::result::Result<Flushed, UploadError>;

/// What an upload stream waits for next: the part being written, or the next chunk.
enum Event {
    Written(FlushResult),
    Received(Option<Result<UploadChunk>>),
}

/// Waits for the part being written, if any. `Committed` when there was none.
async fn settle(
    writing: Option<Pin<Box<dyn Future<Output = FlushResult> + Send + '_>>>,
) -> FlushResult {
    match writing {
        Some(part) => part.await,
        None => Ok(Flushed::Committed),
    }
}

/// The answer for a file that is uploaded (by this stream or another).
fn complete(target: &Target, artifact_complete: bool) -> UploadStatus {
    UploadStatus {
        committed_size: target.file.size,
        complete: true,
        artifact_complete,
    }
}
/// Most bytes in one chunk.
pub const MAX_CHUNK: usize = 4 * 1024 * 1024;

/// One message of an upload stream.
#[derive(Clone, Debug, Default)]
pub struct UploadChunk {
    /// Required in the first message; later ones may leave it empty.
    pub artifact_id: String,
    /// Required in the first message.
    pub path: String,
    pub offset: u64,
    pub data: Bytes,
    pub finish: bool,
}

/// Where an upload stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadStatus {
    pub committed_size: u64,
    pub complete: bool,
    pub artifact_complete: bool,
}

/// An upload's failure, with the committed size to resume from when there is one.
#[derive(Debug)]
pub struct UploadError {
    pub error: Error,
    pub committed: Option<u64>,
}

impl From<Error> for UploadError {
    fn from(error: Error) -> UploadError {
        UploadError {
            error,
            committed: None,
        }
    }
}

impl From<diesel::result::Error> for UploadError {
    fn from(error: diesel::result::Error) -> UploadError {
        Error::from(error).into()
    }
}

/// A store failure as the caller hears it.
pub(crate) fn store_error(error: StoreError) -> Error {
    match error {
        StoreError::Failed { .. } => Error::Unavailable(format!("{error}; try again")),
        other => Error::internal(other),
    }
}

/// The file an upload is for.
struct Target {
    artifact: ArtifactRef,
    path: String,
    file: FileId,
    store: std::sync::Arc<OpenStore>,
}

/// The upload row, as far as a stream needs it.
#[derive(Clone, Debug)]
struct Staged {
    staging_key: String,
    multipart_id: String,
    committed: u64,
    hash_state: Option<Vec<u8>>,
    parts: Vec<String>,
}

type StagedRow = (String, String, i64, Option<Vec<u8>>, Vec<String>);

fn staged(row: StagedRow) -> Staged {
    let (staging_key, multipart_id, committed, hash_state, parts) = row;
    Staged {
        staging_key,
        multipart_id,
        committed: u64::try_from(committed).unwrap_or(0),
        hash_state,
        parts,
    }
}

async fn load_staged(
    conn: &mut AsyncPgConnection,
    artifact: Uuid,
    path: &str,
    lock: bool,
) -> Result<Option<Staged>> {
    let query = file_uploads::table
        .filter(file_uploads::artifact_id.eq(artifact))
        .filter(file_uploads::path.eq(path))
        .select((
            file_uploads::staging_key,
            file_uploads::multipart_id,
            file_uploads::committed_size,
            file_uploads::hash_state,
            file_uploads::parts,
        ));
    let row: Option<StagedRow> = if lock {
        query.for_update().first(conn).await.optional()?
    } else {
        query.first(conn).await.optional()?
    };
    Ok(row.map(staged))
}

/// Whether the artifact's file at `path` is uploaded, and whether the artifact is complete.
async fn uploaded(
    conn: &mut AsyncPgConnection,
    artifact: Uuid,
    path: &str,
) -> Result<(bool, bool)> {
    Ok(artifact_files::table
        .inner_join(artifacts::table)
        .filter(artifact_files::artifact_id.eq(artifact))
        .filter(artifact_files::path.eq(path))
        .select((artifact_files::uploaded, artifacts::complete))
        .first(conn)
        .await?)
}

fn gap(offset: u64, committed: u64) -> UploadError {
    UploadError {
        error: Error::FailedPrecondition(format!(
            "offset {offset} is not where the upload stands: the committed size is {committed}; \
             resume from offset {committed} (QueryUpload tells it)"
        )),
        committed: Some(committed),
    }
}

/// What a part flush found.
enum Flushed {
    /// Committed (by this stream or, for the same bytes, another); the buffer is emptied.
    Committed,
    /// Another stream finished the file.
    Complete { artifact_complete: bool },
}

impl Artifacts {
    /// Finds the file `path` of artifact `id` for an upload by `caller`.
    async fn target(&self, caller: &Identity, id: &str, path: &str) -> Result<(Target, bool)> {
        let id = parse_uuid("artifact_id", id)?;
        validate_path(path).map_err(|e| Error::InvalidArgument(format!("path: {e}")))?;
        let mut conn = self.pool.get().await?;
        let artifact = access::artifact(&mut conn, caller, id, Need::Upload).await?;
        let (file, done) = match stored_file(&mut conn, id, path).await? {
            StoredFile::Regular { file, uploaded } => (file, uploaded),
            StoredFile::Symlink(target) => {
                return Err(Error::FailedPrecondition(format!(
                    "{path:?} in artifact {id} is a symlink (to {target:?}); it has no bytes to upload"
                )));
            }
        };
        let store = self.stores.get(artifact.store_id)?;
        Ok((
            Target {
                artifact,
                path: path.to_owned(),
                file,
                store,
            },
            done,
        ))
    }

    /// `QueryUpload`.
    pub async fn query_upload(
        &self,
        caller: &Identity,
        artifact_id: &str,
        path: &str,
    ) -> Result<UploadStatus> {
        let (target, done) = self.target(caller, artifact_id, path).await?;
        let mut conn = self.pool.get().await?;
        if done {
            let (_, artifact_complete) = uploaded(&mut conn, target.artifact.id, path).await?;
            return Ok(UploadStatus {
                committed_size: target.file.size,
                complete: true,
                artifact_complete,
            });
        }
        let staged = load_staged(&mut conn, target.artifact.id, path, false).await?;
        Ok(UploadStatus {
            committed_size: staged.map_or(0, |s| s.committed),
            complete: false,
            artifact_complete: false,
        })
    }

    /// `UploadFile`: consumes `chunks` (the first names the file) and answers where the
    /// upload stands once the stream ends, finishes, or another stream finished the file.
    pub async fn upload<S>(
        &self,
        caller: &Identity,
        mut chunks: S,
    ) -> std::result::Result<UploadStatus, UploadError>
    where
        S: Stream<Item = Result<UploadChunk>> + Unpin + Send,
    {
        let Some(first) = chunks.next().await else {
            return Err(Error::InvalidArgument(
                "the upload stream is empty; send at least one message naming artifact_id and path"
                    .into(),
            )
            .into());
        };
        let first = first?;
        let (target, done) = self.target(caller, &first.artifact_id, &first.path).await?;
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        if done {
            let (_, artifact_complete) =
                uploaded(&mut conn, target.artifact.id, &target.path).await?;
            return Ok(UploadStatus {
                committed_size: target.file.size,
                complete: true,
                artifact_complete,
            });
        }
        let staged = load_staged(&mut conn, target.artifact.id, &target.path, false).await?;
        drop(conn);
        let committed = staged.as_ref().map_or(0, |s| s.committed);
        let mut buffer = BytesMut::new();
        // Where `buffer` starts in the file: the committed size, plus the part being
        // written, if one is.
        let mut start = committed;
        // One part at a time is written (hashed, staged, recorded) while the next is
        // received, so the stream does not wait for the store and the database.
        let mut writing: Option<Pin<Box<dyn Future<Output = FlushResult> + Send + '_>>> = None;
        let mut next = Some(first);
        loop {
            let chunk = match next.take() {
                Some(chunk) => chunk,
                None => {
                    let received = match writing.as_mut() {
                        Some(part) => tokio::select! {
                            flushed = part => Event::Written(flushed),
                            received = chunks.next() => Event::Received(received),
                        },
                        None => Event::Received(chunks.next().await),
                    };
                    match received {
                        Event::Written(flushed) => {
                            writing = None;
                            if let Flushed::Complete { artifact_complete } = flushed? {
                                return Ok(complete(&target, artifact_complete));
                            }
                            continue;
                        }
                        Event::Received(Some(Ok(chunk))) => chunk,
                        Event::Received(Some(Err(e))) => {
                            settle(writing.take()).await?;
                            let committed = self.committed(&target).await?;
                            return Err(UploadError {
                                error: e,
                                committed: Some(committed),
                            });
                        }
                        Event::Received(None) => {
                            // Ended without `finish`: what is short of a part is dropped.
                            settle(writing.take()).await?;
                            let status = self.status(&target).await?;
                            return Ok(status);
                        }
                    }
                }
            };
            if (!chunk.artifact_id.is_empty()
                && chunk.artifact_id != target.artifact.id.to_string())
                || (!chunk.path.is_empty() && chunk.path != target.path)
            {
                settle(writing.take()).await?;
                return Err(Error::InvalidArgument(
                    "artifact_id and path: one stream uploads one file; later messages must \
                     name the same file or leave them empty"
                        .into(),
                )
                .into());
            }
            if chunk.data.len() > MAX_CHUNK {
                settle(writing.take()).await?;
                return Err(Error::InvalidArgument(format!(
                    "data: {} bytes; send at most {MAX_CHUNK} bytes per message",
                    chunk.data.len()
                ))
                .into());
            }
            let len = chunk.data.len() as u64;
            let end = chunk.offset.saturating_add(len);
            if end > target.file.size {
                settle(writing.take()).await?;
                self.reset(&target).await?;
                return Err(UploadError {
                    error: Error::FailedPrecondition(format!(
                        "size mismatch: bytes up to offset {end} were sent, but {:?} is {} \
                         bytes as the artifact declares; the upload was reset: upload the \
                         file again from offset 0",
                        target.path, target.file.size
                    )),
                    committed: Some(0),
                });
            }
            let position = start + buffer.len() as u64;
            if chunk.offset > position {
                settle(writing.take()).await?;
                let committed = self.committed(&target).await?;
                return Err(gap(chunk.offset, committed));
            }
            if end > position {
                let skip = usize::try_from(position - chunk.offset).unwrap_or(0);
                buffer.extend_from_slice(&chunk.data[skip..]);
            }
            while buffer.len() >= PART {
                // The part before must be recorded first: parts commit in order.
                if let Flushed::Complete { artifact_complete } = settle(writing.take()).await? {
                    return Ok(complete(&target, artifact_complete));
                }
                let part = buffer.split_to(PART).freeze();
                writing = Some(Box::pin(self.flush(&target, start, part)));
                start += PART as u64;
            }
            if chunk.finish {
                if let Flushed::Complete { artifact_complete } = settle(writing.take()).await? {
                    return Ok(complete(&target, artifact_complete));
                }
                return self.finish(&target, start, buffer.freeze()).await;
            }
        }
    }

    /// The committed size of the upload now.
    async fn committed(&self, target: &Target) -> Result<u64> {
        Ok(self.status(target).await?.committed_size)
    }

    async fn status(&self, target: &Target) -> Result<UploadStatus> {
        let mut conn = self.pool.get().await?;
        let (done, artifact_complete) =
            uploaded(&mut conn, target.artifact.id, &target.path).await?;
        if done {
            return Ok(UploadStatus {
                committed_size: target.file.size,
                complete: true,
                artifact_complete,
            });
        }
        let staged = load_staged(&mut conn, target.artifact.id, &target.path, false).await?;
        Ok(UploadStatus {
            committed_size: staged.map_or(0, |s| s.committed),
            complete: false,
            artifact_complete: false,
        })
    }

    /// Makes sure an upload row exists (beginning a staged upload in the store when it does
    /// not). Called with no transaction open.
    async fn ensure_staged(&self, target: &Target) -> Result<()> {
        let mut conn = self.pool.get().await?;
        if load_staged(&mut conn, target.artifact.id, &target.path, false)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let key = format!("up-{}", Uuid::new_v4());
        let upload = target
            .store
            .files
            .begin(&key, target.file)
            .await
            .map_err(store_error)?;
        let inserted = diesel::insert_into(file_uploads::table)
            .values((
                file_uploads::artifact_id.eq(target.artifact.id),
                file_uploads::path.eq(&target.path),
                file_uploads::store_id.eq(target.store.id),
                file_uploads::staging_key.eq(&key),
                file_uploads::multipart_id.eq(&upload),
            ))
            .on_conflict_do_nothing()
            .execute(&mut conn)
            .await?;
        if inserted == 0 {
            // Another stream began it first; ours is not needed.
            if let Err(e) = target.store.files.abort(&key, &upload, target.file).await {
                tracing::warn!(error = %e, "could not drop an unneeded staged upload");
            }
        }
        Ok(())
    }

    /// Writes `part`, which starts at `start`, as the next part of the staged upload.
    async fn flush(
        &self,
        target: &Target,
        start: u64,
        part: Bytes,
    ) -> std::result::Result<Flushed, UploadError> {
        if start == 0 {
            self.ensure_staged(target).await?;
        }
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let store = target.store.clone();
        let file = target.file;
        let outcome = conn
            .transaction::<_, UploadError, _>(async |conn| {
                let Some(row) = load_staged(conn, target.artifact.id, &target.path, true).await?
                else {
                    let (done, artifact_complete) =
                        uploaded(conn, target.artifact.id, &target.path).await?;
                    if done {
                        return Ok(Flushed::Complete { artifact_complete });
                    }
                    // Reset by another stream's mismatch.
                    return Err(gap(start, 0));
                };
                let len = part.len() as u64;
                if row.committed >= start + len {
                    // Another stream committed these bytes already.
                    return Ok(Flushed::Committed);
                }
                if row.committed != start {
                    return Err(gap(start, row.committed));
                }
                let mut hasher = match &row.hash_state {
                    Some(state) => Hasher::resume(state, row.committed)
                        .map_err(|e| Error::internal(format!("upload of {file:?}: {e}")))?,
                    None => Hasher::new(),
                };
                hasher.update(&part);
                let reference = store
                    .files
                    .put_part(
                        &row.staging_key,
                        &row.multipart_id,
                        file,
                        row.parts.len(),
                        start,
                        part,
                    )
                    .await
                    .map_err(store_error)?;
                let mut parts = row.parts;
                parts.push(reference);
                diesel::update(
                    file_uploads::table
                        .filter(file_uploads::artifact_id.eq(target.artifact.id))
                        .filter(file_uploads::path.eq(&target.path)),
                )
                .set((
                    file_uploads::committed_size.eq(i64::try_from(start + len).unwrap_or(0)),
                    file_uploads::hash_state.eq(Some(hasher.state())),
                    file_uploads::parts.eq(parts),
                    file_uploads::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await
                .map_err(Error::from)?;
                Ok(Flushed::Committed)
            })
            .await?;
        Ok(outcome)
    }

    /// Drops the upload: its row and its staged bytes.
    async fn reset(&self, target: &Target) -> Result<()> {
        let mut conn = self.pool.get().await?;
        let row = load_staged(&mut conn, target.artifact.id, &target.path, false).await?;
        diesel::delete(
            file_uploads::table
                .filter(file_uploads::artifact_id.eq(target.artifact.id))
                .filter(file_uploads::path.eq(&target.path)),
        )
        .execute(&mut conn)
        .await?;
        if let Some(row) = row
            && let Err(e) = target
                .store
                .files
                .abort(&row.staging_key, &row.multipart_id, target.file)
                .await
        {
            tracing::warn!(error = %e, "could not drop the staged bytes of a reset upload");
        }
        Ok(())
    }

    /// The last chunk arrived: writes what is left as the last part, checks the hash and
    /// size, and makes the file.
    async fn finish(
        &self,
        target: &Target,
        start: u64,
        rest: Bytes,
    ) -> std::result::Result<UploadStatus, UploadError> {
        let file = target.file;
        let mismatch = |got: FileId| UploadError {
            error: Error::FailedPrecondition(format!(
                "hash or size mismatch: the bytes sent are {got}, but {:?} was declared as \
                 {file}; the upload was reset: upload the file again from offset 0",
                target.path
            )),
            committed: Some(0),
        };
        // A file in one piece, with nothing staged: hashed here and put whole.
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let staged = load_staged(&mut conn, target.artifact.id, &target.path, false).await?;
        drop(conn);
        if start == 0 && staged.as_ref().is_none_or(|s| s.committed == 0) {
            let got = FileId::of(&rest);
            if got != file {
                self.reset(target).await?;
                return Err(mismatch(got));
            }
            if let Some(row) = &staged {
                // Begun by another stream but empty: ours is the whole file.
                let _ = target
                    .store
                    .files
                    .abort(&row.staging_key, &row.multipart_id, file)
                    .await;
            }
            return self.register(target, Making::Whole(rest)).await;
        }
        if !rest.is_empty() {
            match self.flush(target, start, rest).await? {
                Flushed::Committed => {}
                Flushed::Complete { artifact_complete } => {
                    return Ok(UploadStatus {
                        committed_size: file.size,
                        complete: true,
                        artifact_complete,
                    });
                }
            }
        }
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let Some(row) = load_staged(&mut conn, target.artifact.id, &target.path, false).await?
        else {
            let (done, artifact_complete) =
                uploaded(&mut conn, target.artifact.id, &target.path).await?;
            if done {
                return Ok(UploadStatus {
                    committed_size: file.size,
                    complete: true,
                    artifact_complete,
                });
            }
            return Err(gap(start, 0));
        };
        drop(conn);
        let hasher = match &row.hash_state {
            Some(state) => Hasher::resume(state, row.committed)
                .map_err(|e| Error::internal(format!("upload of {file:?}: {e}")))?,
            None => Hasher::new(),
        };
        let got = hasher.finish();
        if got != file {
            self.reset(target).await?;
            return Err(mismatch(got));
        }
        self.register(target, Making::Staged(row)).await
    }

    /// Makes the verified file in the store and records it, in one transaction (holding
    /// the store's row throughout when it has a size limit). A commit that fails after the
    /// object was made leaves an orphan object (swept later), never a row without bytes.
    async fn register(
        &self,
        target: &Target,
        making: Making,
    ) -> std::result::Result<UploadStatus, UploadError> {
        let file = target.file;
        let sha = file.sha256.to_vec();
        let size = i64::try_from(file.size).unwrap_or(i64::MAX);
        let store = target.store.clone();
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let (artifact_complete, unneeded) = conn
            .transaction::<_, Error, _>(async |conn| {
                // A store with a size limit is locked for the whole check-and-make, so two
                // files cannot pass the limit together; one without is only updated (at
                // the end, briefly) and makes files in parallel.
                let store_row = file_stores::table
                    .filter(file_stores::id.eq(store.id))
                    .select((
                        file_stores::name,
                        file_stores::total_size,
                        file_stores::max_size,
                    ));
                let (name, mut total, max): (String, i64, Option<i64>) =
                    store_row.first(conn).await?;
                if max.is_some() {
                    (_, total, _) = store_row
                        .for_update()
                        .first::<(String, i64, Option<i64>)>(conn)
                        .await?;
                }
                let held: Option<bool> = file_in_store::table
                    .filter(file_in_store::store_id.eq(store.id))
                    .filter(file_in_store::sha256.eq(&sha))
                    .filter(file_in_store::size.eq(size))
                    .select(file_in_store::deleting)
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?;
                let unneeded = match held {
                    Some(true) => {
                        return Err(Error::Unavailable(format!(
                            "file store {name} is removing {file} right now; send the last \
                             chunk (finish) again shortly"
                        )));
                    }
                    Some(false) => {
                        diesel::update(
                            file_in_store::table
                                .filter(file_in_store::store_id.eq(store.id))
                                .filter(file_in_store::sha256.eq(&sha))
                                .filter(file_in_store::size.eq(size)),
                        )
                        .set(
                            file_in_store::unreferenced_since
                                .eq(None::<chrono::DateTime<chrono::Utc>>),
                        )
                        .execute(conn)
                        .await?;
                        // The store has the bytes already: the staged copy is not needed.
                        match &making {
                            Making::Staged(row) => Some(row.clone()),
                            Making::Whole(_) => None,
                        }
                    }
                    None => {
                        if let Some(max) = max
                            && total.saturating_add(size) > max
                        {
                            // The store is shared by workspaces: its limit is named, not
                            // how much of it others use.
                            return Err(Error::ResourceExhausted(format!(
                                "file store {name} is full: {file} does not fit in its \
                                 max_size of {max} bytes; the upload is kept (send finish \
                                 again once an operator raised max_size or space was freed)"
                            )));
                        }
                        match &making {
                            Making::Whole(bytes) => store
                                .files
                                .put(file, bytes.clone())
                                .await
                                .map_err(store_error)?,
                            Making::Staged(row) => {
                                if let Err(e) = store
                                    .files
                                    .complete(
                                        &row.staging_key,
                                        &row.multipart_id,
                                        file,
                                        row.parts.clone(),
                                    )
                                    .await
                                {
                                    // A completion that went through before a failed commit
                                    // leaves the object in place; only then go on.
                                    if !store.files.contains(file).await.map_err(store_error)? {
                                        return Err(store_error(e));
                                    }
                                }
                            }
                        }
                        // Another upload of the same file may have recorded it meanwhile
                        // (it waits for this insert's transaction, then does nothing); the
                        // store's size counts the file once.
                        let inserted = diesel::insert_into(file_in_store::table)
                            .values((
                                file_in_store::store_id.eq(store.id),
                                file_in_store::sha256.eq(&sha),
                                file_in_store::size.eq(size),
                            ))
                            .on_conflict_do_nothing()
                            .execute(conn)
                            .await?;
                        if inserted > 0 {
                            diesel::update(file_stores::table.filter(file_stores::id.eq(store.id)))
                                .set(file_stores::total_size.eq(file_stores::total_size + size))
                                .execute(conn)
                                .await?;
                        }
                        None
                    }
                };
                let complete = mark_uploaded(conn, target.artifact.id, file).await?;
                diesel::delete(
                    file_uploads::table
                        .filter(file_uploads::artifact_id.eq(target.artifact.id))
                        .filter(file_uploads::path.eq(&target.path)),
                )
                .execute(conn)
                .await?;
                Ok((complete, unneeded))
            })
            .await?;
        if let Some(row) = unneeded
            && let Err(e) = store
                .files
                .abort(&row.staging_key, &row.multipart_id, file)
                .await
        {
            tracing::warn!(error = %e, "could not drop a staged upload the store no longer needs");
        }
        crate::observe::artifact_bytes(file.size);
        Ok(UploadStatus {
            committed_size: file.size,
            complete: true,
            artifact_complete,
        })
    }
}

/// How a verified file is made in the store.
enum Making {
    /// Put whole (it came in one piece).
    Whole(Bytes),
    /// Completed from its staged parts.
    Staged(Staged),
}
