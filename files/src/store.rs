//! File stores: where the bytes of files live.
//!
//! A [`FileStore`] keeps each file under its [`FileId::key`] in one of two backends,
//! both reached through the `object_store` crate's one interface:
//!
//! - a **local directory** ([`StoreConfig::Local`]), the default, inside the server's data
//!   directory, so the single-binary stack needs nothing else;
//! - an **S3-compatible bucket** ([`StoreConfig::S3`]): endpoint, bucket, region,
//!   credentials, path-style or virtual-hosted requests.
//!
//! Whole files are written with a create-only put ([`FileStore::put`]), so two writers of
//! the same file cannot tear it. Large files arrive in **staged uploads** of numbered parts
//! ([`FileStore::begin`], [`FileStore::put_part`], [`FileStore::complete`]): S3 multipart
//! uploads on S3, a staging file written at each part's offset in the local directory.
//! Nothing appears under a file's key until `complete`, which the caller runs only after it
//! has checked the hash, so a store never holds a file under a key it does not match.
//!
//! This module does not know which files are wanted; the database does. [`FileStore::list`]
//! lets the domain find objects no row names (an interrupted delete, a crash after an
//! upload) and remove them.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::digest::FileId;

/// The smallest part of a staged upload other than the last (S3's rule). Callers gather
/// chunks into parts of at least this size.
pub const MIN_PART: usize = 5 * 1024 * 1024;

/// Bytes per read when streaming a file from a local directory.
pub const LOCAL_READ: u64 = 4 * 1024 * 1024;

/// How a store is reached. Secrets are held here only; [`fmt::Debug`] hides them.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A directory on the server's disk.
    Local { root: PathBuf },
    /// An S3-compatible bucket.
    S3 {
        /// `http(s)://host:port`; unset means AWS for the region.
        endpoint: Option<String>,
        bucket: String,
        region: String,
        access_key_id: String,
        secret_access_key: String,
        /// Address the bucket in the path (`endpoint/bucket/key`), as most self-hosted
        /// servers want; otherwise as a host name (`bucket.endpoint/key`).
        path_style: bool,
    },
    /// In memory, for unit tests of the logic above the store.
    Memory,
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::Local { root } => f.debug_struct("Local").field("root", root).finish(),
            StoreConfig::S3 {
                endpoint,
                bucket,
                region,
                path_style,
                ..
            } => f
                .debug_struct("S3")
                .field("endpoint", endpoint)
                .field("bucket", bucket)
                .field("region", region)
                .field("path_style", path_style)
                .finish_non_exhaustive(),
            StoreConfig::Memory => f.write_str("Memory"),
        }
    }
}

impl StoreConfig {
    /// `local` or `s3` (or `memory`), as the database records a store's backend.
    pub fn backend(&self) -> &'static str {
        match self {
            StoreConfig::Local { .. } => "local",
            StoreConfig::S3 { .. } => "s3",
            StoreConfig::Memory => "memory",
        }
    }
}

/// A store operation failed. The message names the store and the object, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("file store {store}: {key} is not there")]
    NotFound { store: String, key: String },
    #[error("file store {store}: {message}")]
    Failed { store: String, message: String },
    #[error("file store configuration: {0}")]
    Config(String),
}

pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// One stored object, as [`FileStore::list`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The file, when the key is a file's key; `None` for anything else found there.
    pub file: Option<FileId>,
    pub key: String,
    pub size: u64,
    pub last_modified: chrono_like::Timestamp,
}

/// Timestamps without pulling a date library into this crate: seconds since the epoch.
pub mod chrono_like {
    /// Seconds since 1970-01-01 UTC.
    pub type Timestamp = i64;
}

/// How staged parts are kept until [`FileStore::complete`].
#[derive(Clone)]
enum Staging {
    /// S3 (and the in-memory store): the backend's own multipart upload.
    Multipart(Arc<dyn MultipartStore>),
    /// A local directory: `<root>/uploads/<upload key>`, each part written at its offset.
    LocalDir(PathBuf),
}

/// A file store: one backend, and where its staged uploads go. Clones share the backend.
#[derive(Clone)]
pub struct FileStore {
    name: String,
    objects: Arc<dyn ObjectStore>,
    staging: Staging,
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("name", &self.name)
            .field("objects", &self.objects.to_string())
            .finish()
    }
}

/// An upload begun by [`FileStore::begin`]: the backend's id for it (the S3 upload id;
/// empty for local staging). The caller keeps it, with the parts, in the database.
pub type UploadId = String;

impl FileStore {
    /// Opens the store `name` as `config` says. A local root is created if missing.
    pub fn open(name: &str, config: &StoreConfig) -> StoreResult<FileStore> {
        // The HTTP client of the S3 backend uses rustls without a built-in provider; Berth
        // uses ring everywhere. Installing it is a no-op when a provider is in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (objects, staging): (Arc<dyn ObjectStore>, Staging) = match config {
            StoreConfig::Local { root } => {
                std::fs::create_dir_all(root.join("sha256"))
                    .and_then(|()| std::fs::create_dir_all(root.join("uploads")))
                    .map_err(|e| {
                        StoreError::Config(format!(
                            "store {name}: cannot create {}: {e}",
                            root.display()
                        ))
                    })?;
                let local = LocalFileSystem::new_with_prefix(root)
                    .map_err(|e| StoreError::Config(format!("store {name}: {e}")))?;
                (Arc::new(local), Staging::LocalDir(root.join("uploads")))
            }
            StoreConfig::S3 {
                endpoint,
                bucket,
                region,
                access_key_id,
                secret_access_key,
                path_style,
            } => {
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_access_key_id(access_key_id)
                    .with_secret_access_key(secret_access_key)
                    .with_virtual_hosted_style_request(!path_style)
                    .with_conditional_put(S3ConditionalPut::ETagMatch);
                if let Some(endpoint) = endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                let s3: Arc<AmazonS3> = Arc::new(
                    builder
                        .build()
                        .map_err(|e| StoreError::Config(format!("store {name}: {e}")))?,
                );
                (s3.clone(), Staging::Multipart(s3))
            }
            StoreConfig::Memory => {
                let memory = Arc::new(InMemory::new());
                (memory.clone(), Staging::Multipart(memory))
            }
        };
        Ok(FileStore {
            name: name.to_owned(),
            objects,
            staging,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn failed(&self, what: &str, error: object_store::Error) -> StoreError {
        match error {
            object_store::Error::NotFound { path, .. } => StoreError::NotFound {
                store: self.name.clone(),
                key: path,
            },
            other => StoreError::Failed {
                store: self.name.clone(),
                message: format!("{what}: {}", without_secrets(&other.to_string())),
            },
        }
    }

    fn io_failed(&self, what: &str, error: std::io::Error) -> StoreError {
        StoreError::Failed {
            store: self.name.clone(),
            message: format!("{what}: {error}"),
        }
    }

    /// Writes a whole file in one request. Writing a file that is already there is not an
    /// error (the bytes are the same by construction: the caller checked the hash).
    pub async fn put(&self, file: FileId, bytes: Bytes) -> StoreResult<()> {
        if file.is_empty() {
            return Ok(());
        }
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .objects
            .put_opts(
                &ObjectPath::from(file.key()),
                PutPayload::from(bytes),
                options,
            )
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(self.failed("put", e)),
        }
    }

    /// Whether the store holds `file` (the empty file always counts as held).
    pub async fn contains(&self, file: FileId) -> StoreResult<bool> {
        if file.is_empty() {
            return Ok(true);
        }
        match self.objects.head(&ObjectPath::from(file.key())).await {
            Ok(meta) => Ok(meta.size == file.size),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.failed("head", e)),
        }
    }

    /// `range` of `file`'s bytes, in one piece.
    pub async fn read_range(&self, file: FileId, range: Range<u64>) -> StoreResult<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        self.objects
            .get_range(&ObjectPath::from(file.key()), range)
            .await
            .map_err(|e| self.failed("read", e))
    }

    /// `range` of `file`'s bytes as a stream of chunks, for downloads of any size.
    pub async fn read_stream(
        &self,
        file: FileId,
        range: Range<u64>,
    ) -> StoreResult<BoxStream<'static, StoreResult<Bytes>>> {
        if range.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        if let Staging::LocalDir(_) = &self.staging {
            // A local file's stream reads 8 KiB per blocking call; ranged reads of
            // LOCAL_READ bytes each cost one call, which is what a large download needs.
            return Ok(self.ranged_stream(file, range));
        }
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(range)),
            ..Default::default()
        };
        let result = self
            .objects
            .get_opts(&ObjectPath::from(file.key()), options)
            .await
            .map_err(|e| self.failed("read", e))?;
        let name = self.name.clone();
        Ok(result
            .into_stream()
            .map_err(move |e| StoreError::Failed {
                store: name.clone(),
                message: format!("read: {}", without_secrets(&e.to_string())),
            })
            .boxed())
    }

    /// `range` of `file` as successive ranged reads of [`LOCAL_READ`] bytes.
    fn ranged_stream(
        &self,
        file: FileId,
        range: Range<u64>,
    ) -> BoxStream<'static, StoreResult<Bytes>> {
        let objects = self.objects.clone();
        let name = self.name.clone();
        let key = ObjectPath::from(file.key());
        futures::stream::try_unfold(range.start, move |at| {
            let objects = objects.clone();
            let name = name.clone();
            let key = key.clone();
            let end = range.end;
            async move {
                if at >= end {
                    return Ok(None);
                }
                let next = end.min(at.saturating_add(LOCAL_READ));
                let bytes = objects
                    .get_range(&key, at..next)
                    .await
                    .map_err(|e| match e {
                        object_store::Error::NotFound { path, .. } => StoreError::NotFound {
                            store: name.clone(),
                            key: path,
                        },
                        other => StoreError::Failed {
                            store: name.clone(),
                            message: format!("read: {}", without_secrets(&other.to_string())),
                        },
                    })?;
                Ok(Some((bytes, next)))
            }
        })
        .boxed()
    }

    /// Deletes `file`; a file that is not there is not an error.
    pub async fn delete(&self, file: FileId) -> StoreResult<()> {
        self.delete_key(&file.key()).await
    }

    /// Deletes any object by key (for orphans that are not files' keys).
    pub async fn delete_key(&self, key: &str) -> StoreResult<()> {
        match self.objects.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed("delete", e)),
        }
    }

    /// Every object under `sha256/`, for the orphan sweep.
    pub fn list(&self) -> BoxStream<'static, StoreResult<StoredObject>> {
        let name = self.name.clone();
        self.objects
            .list(Some(&ObjectPath::from("sha256")))
            .map(move |item| {
                let meta = item.map_err(|e| StoreError::Failed {
                    store: name.clone(),
                    message: format!("list: {}", without_secrets(&e.to_string())),
                })?;
                let key = meta.location.to_string();
                Ok(StoredObject {
                    file: FileId::from_key(&key),
                    key,
                    size: meta.size,
                    last_modified: meta.last_modified.timestamp(),
                })
            })
            .boxed()
    }

    /// Begins a staged upload of `file` under the caller's unique `upload_key` (a slug:
    /// letters, digits, `-`). Returns the backend's id for it.
    pub async fn begin(&self, upload_key: &str, file: FileId) -> StoreResult<UploadId> {
        match &self.staging {
            Staging::Multipart(store) => store
                .create_multipart(&ObjectPath::from(file.key()))
                .await
                .map_err(|e| self.failed("begin upload", e)),
            Staging::LocalDir(dir) => {
                let path = self.staging_path(dir, upload_key)?;
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(false)
                    .open(&path)
                    .await
                    .map_err(|e| self.io_failed("begin upload", e))?;
                Ok(String::new())
            }
        }
    }

    fn staging_path(&self, dir: &std::path::Path, upload_key: &str) -> StoreResult<PathBuf> {
        if upload_key.is_empty()
            || !upload_key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(StoreError::Failed {
                store: self.name.clone(),
                message: format!("bad upload key {upload_key:?}"),
            });
        }
        Ok(dir.join(upload_key))
    }

    /// Writes part `index` (from 0), which starts at byte `offset` of the file, and makes
    /// it durable. Returns the backend's reference to the part, to pass to `complete`.
    /// Writing the same part again replaces it.
    pub async fn put_part(
        &self,
        upload_key: &str,
        upload: &UploadId,
        file: FileId,
        index: usize,
        offset: u64,
        bytes: Bytes,
    ) -> StoreResult<String> {
        match &self.staging {
            Staging::Multipart(store) => store
                .put_part(
                    &ObjectPath::from(file.key()),
                    upload,
                    index,
                    PutPayload::from(bytes),
                )
                .await
                .map(|part| part.content_id)
                .map_err(|e| self.failed("upload part", e)),
            Staging::LocalDir(dir) => {
                let path = self.staging_path(dir, upload_key)?;
                let mut staged = tokio::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .await
                    .map_err(|e| self.io_failed("upload part", e))?;
                staged
                    .seek(std::io::SeekFrom::Start(offset))
                    .await
                    .map_err(|e| self.io_failed("upload part", e))?;
                staged
                    .write_all(&bytes)
                    .await
                    .map_err(|e| self.io_failed("upload part", e))?;
                staged
                    .sync_data()
                    .await
                    .map_err(|e| self.io_failed("upload part", e))?;
                Ok(format!("{offset}+{}", bytes.len()))
            }
        }
    }

    /// Makes the staged upload the file: afterwards the store holds `file` under its key.
    /// Call it only after checking that the parts hash to `file`.
    pub async fn complete(
        &self,
        upload_key: &str,
        upload: &UploadId,
        file: FileId,
        parts: Vec<String>,
    ) -> StoreResult<()> {
        match &self.staging {
            Staging::Multipart(store) => {
                let parts = parts
                    .into_iter()
                    .map(|content_id| PartId { content_id })
                    .collect();
                store
                    .complete_multipart(&ObjectPath::from(file.key()), upload, parts)
                    .await
                    .map(|_| ())
                    .map_err(|e| self.failed("complete upload", e))
            }
            Staging::LocalDir(dir) => {
                let staged = self.staging_path(dir, upload_key)?;
                let root = dir.parent().unwrap_or(dir).to_path_buf();
                let target = file.key().split('/').fold(root, |p, c| p.join(c));
                if let Some(parent) = target.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(|e| self.io_failed("complete upload", e))?;
                }
                let len = tokio::fs::metadata(&staged)
                    .await
                    .map_err(|e| self.io_failed("complete upload", e))?
                    .len();
                if len != file.size {
                    return Err(StoreError::Failed {
                        store: self.name.clone(),
                        message: format!(
                            "complete upload: {len} bytes are staged for a file of {}",
                            file.size
                        ),
                    });
                }
                // A rename within one file system is atomic: readers see no file or the
                // whole one. Two uploads of the same file may both rename; the bytes are
                // the same.
                tokio::fs::rename(&staged, &target)
                    .await
                    .map_err(|e| self.io_failed("complete upload", e))
            }
        }
    }

    /// Drops a staged upload and its parts. A local upload that is gone already is not an
    /// error; backends differ on a second abort of a multipart upload, so callers treat a
    /// failure here as something to retry later, not as lost data.
    pub async fn abort(
        &self,
        upload_key: &str,
        upload: &UploadId,
        file: FileId,
    ) -> StoreResult<()> {
        match &self.staging {
            Staging::Multipart(store) => {
                match store
                    .abort_multipart(&ObjectPath::from(file.key()), upload)
                    .await
                {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(self.failed("abort upload", e)),
                }
            }
            Staging::LocalDir(dir) => {
                let path = self.staging_path(dir, upload_key)?;
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(self.io_failed("abort upload", e)),
                }
            }
        }
    }
}

/// Error texts from the HTTP stack can carry a request URL with a presigned query; cut
/// anything after a `?` so no signature or credential reaches a log or an error.
fn without_secrets(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for word in message.split_inclusive(char::is_whitespace) {
        match word.split_once('?') {
            Some((before, _)) if before.contains("://") => {
                out.push_str(before);
                out.push_str("?… ");
            }
            _ => out.push_str(word),
        }
    }
    out
}
