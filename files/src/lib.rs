//! `berth-files`: files as Berth keeps them.
//!
//! - [`paths`]: the one validator of the relative paths inside an artifact. The server runs
//!   it on create, upload and download, the worker on materializing inputs and collecting
//!   outputs, the CLI on downloading; nothing joins an artifact path onto a directory
//!   without it.
//! - [`digest`]: a file's identity, its SHA-256 and size, and a hasher whose midstate can
//!   be saved and restored, so an upload can resume anywhere.
//! - `store` (feature `store`): the file stores, a local directory or an S3 bucket, behind
//!   the one interface of the `object_store` crate, with staged (multipart) uploads.
//!
//! This crate knows nothing of PostgreSQL, workspaces or the wire protocol; which store
//! holds which file, and who may see it, is `berth-core`'s business.

pub mod digest;
pub mod paths;
#[cfg(feature = "store")]
pub mod store;

pub use digest::{FileId, Hasher};
pub use paths::{PathError, validate_path, validate_paths};
