//! Downloads: a file of an artifact streamed from its store, from an offset, up to a
//! limit, in pieces of at most [`PIECE`] bytes.
//!
//! What it must not touch: who may read is [`super::access`] (an artifact that is not alive
//! is NOT_FOUND at once); bytes come only through [`super::stores`]; the path is checked
//! only by [`berth_files::paths`].

use berth_files::paths::validate_path;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};

use crate::access::auth::Identity;
use crate::artifacts::access::{self, Need};
use crate::artifacts::artifacts::{Artifacts, StoredFile, stored_file};
use crate::artifacts::uploads::store_error;
use crate::error::{Error, Result};
use crate::work::ids::parse_uuid;

/// Most bytes in one piece of a download.
pub const PIECE: usize = 1024 * 1024;

/// One piece of a download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Where `data` starts in the file.
    pub offset: u64,
    pub data: Bytes,
    /// The whole file's size and SHA-256, in the first piece only (0 and empty after).
    pub size: u64,
    pub sha256: String,
}

impl Artifacts {
    /// `ReadFile`: the bytes of `path` from `offset`, at most `limit` (0: to the end).
    pub async fn read(
        &self,
        caller: &Identity,
        artifact_id: &str,
        path: &str,
        offset: u64,
        limit: u64,
    ) -> Result<BoxStream<'static, Result<Piece>>> {
        let id = parse_uuid("artifact_id", artifact_id)?;
        validate_path(path).map_err(|e| Error::InvalidArgument(format!("path: {e}")))?;
        let mut conn = self.pool.get().await?;
        let artifact = access::artifact(&mut conn, caller, id, Need::Read).await?;
        let stored = stored_file(&mut conn, id, path).await?;
        drop(conn);
        let (file, uploaded) = match stored {
            StoredFile::Regular { file, uploaded } => (file, uploaded),
            StoredFile::Symlink(target) => {
                return Err(Error::FailedPrecondition(format!(
                    "{path:?} in artifact {id} is a symlink (to {target:?}); it has no bytes to read"
                )));
            }
        };
        if !uploaded {
            return Err(Error::FailedPrecondition(format!(
                "{path:?} in artifact {id} is not uploaded yet; read it once the artifact is \
                 complete"
            )));
        }
        if offset > file.size {
            return Err(Error::OutOfRange(format!(
                "offset: {offset} is past the end of {path:?} ({} bytes)",
                file.size
            )));
        }
        let end = match limit {
            0 => file.size,
            n => file.size.min(offset.saturating_add(n)),
        };
        let head = Piece {
            offset,
            data: Bytes::new(),
            size: file.size,
            sha256: file.hex(),
        };
        if offset == end {
            return Ok(stream::iter([Ok(head)]).boxed());
        }
        let store = self.stores.get(artifact.store_id)?;
        let bytes = store
            .files
            .read_stream(file, offset..end)
            .await
            .map_err(store_error)?;
        Ok(pieces(bytes, head))
    }
}

/// Regroups the store's chunks (of whatever size it reads) into pieces of [`PIECE`] bytes
/// (the last may be shorter); the first carries `head`'s size and hash.
fn pieces(
    bytes: BoxStream<'static, berth_files::store::StoreResult<Bytes>>,
    head: Piece,
) -> BoxStream<'static, Result<Piece>> {
    struct State {
        bytes: BoxStream<'static, berth_files::store::StoreResult<Bytes>>,
        buffer: BytesMut,
        offset: u64,
        head: Option<Piece>,
        done: bool,
    }
    let state = State {
        bytes,
        buffer: BytesMut::new(),
        offset: head.offset,
        head: Some(head),
        done: false,
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if state.buffer.len() >= PIECE || (state.done && !state.buffer.is_empty()) {
                let take = state.buffer.len().min(PIECE);
                let data = state.buffer.split_to(take).freeze();
                let (size, sha256) = match state.head.take() {
                    Some(head) => (head.size, head.sha256),
                    None => (0, String::new()),
                };
                let piece = Piece {
                    offset: state.offset,
                    data,
                    size,
                    sha256,
                };
                state.offset += take as u64;
                return Some((Ok(piece), state));
            }
            if state.done {
                return None;
            }
            match state.bytes.next().await {
                Some(Ok(chunk)) => state.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    state.done = true;
                    state.buffer.clear();
                    return Some((Err(store_error(e)), state));
                }
                None => state.done = true,
            }
        }
    })
    .boxed()
}
