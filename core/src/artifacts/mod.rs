//! Artifacts: files under relative paths plus JSON data, kept in file stores, made by
//! users and by jobs, consumed by jobs, grouped in collections, and collected when they
//! expire.
//!
//! What it owns:
//! - [`stores`]: the configured file stores (a local directory, S3) and which one each
//!   workspace writes to; the `file_stores` rows that account for them.
//! - [`collections`]: collections and their items; [`retention`]: which items stay
//!   active and how long removed ones are kept; [`gc`]: the collector of what no live
//!   artifact needs (artifacts, files' bytes, stale uploads, orphan objects).
//! - [`artifacts`]: creating (with per-workspace dedup), reading, listing, relating,
//!   deleting and re-dating artifacts; [`rules`]: the checks on what a create may say
//!   (category, data, modes, limits); [`uploads`]: resumable uploads; [`read`]:
//!   downloads; [`access`]: who may reach an artifact (roles for users, the current
//!   attempt for workers); [`live`]: the one rule of whether an artifact is alive;
//!   [`inputs`]: the inputs of work requests, resolved and pinned at submission.
//!
//! What it must not touch: the state of work requests (that goes through
//! [`crate::work::lifecycle`] only), roles (decided by [`crate::access::roles`]), and the
//! wire protocol (this crate knows none). Paths are checked by
//! [`berth_files::paths`] only, and bytes are reached through [`stores`] only.

pub mod access;
#[expect(
    clippy::module_inception,
    reason = "the artifacts room of the artifacts domain; its siblings are uploads, read, access"
)]
pub mod artifacts;
pub mod collections;
pub mod gc;
pub mod inputs;
pub mod live;
pub mod read;
pub mod retention;
pub mod rules;
pub mod stores;
pub mod uploads;

pub use artifacts::Artifacts;
