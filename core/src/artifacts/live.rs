//! The one rule of whether an artifact is alive: visible, downloadable and kept.
//!
//! An artifact is alive while it has not expired (`expires_at` unset or in the future), or,
//! once its time has passed, while something still needs it:
//! - a collection item holds it: an active one (collection retention decides how long
//!   that is), or a removed one for its collection's history period after its removal
//!   (removed items stay in the history with their artifacts that long), or
//! - it is the input of a work request that is not finished (blocked, pending, running).
//!
//! Everything that shows, serves or deletes artifacts asks this rule, in SQL, so what the
//! API hides and what the collector deletes can never disagree: an artifact that is not
//! alive is NOT_FOUND at once, even before its bytes are gone.

use diesel::dsl::sql;
use diesel::expression::SqlLiteral;
use diesel::sql_types::Bool;

/// The condition, as SQL over a row of `artifacts` (the table named `artifacts`, not an
/// alias). For raw queries.
pub const ALIVE_SQL: &str = "(artifacts.expires_at IS NULL \
    OR artifacts.expires_at > now() \
    OR EXISTS (SELECT 1 FROM collection_items ci \
               JOIN collections c ON c.id = ci.collection_id \
               WHERE ci.artifact_id = artifacts.id \
                 AND (ci.removed_at IS NULL \
                      OR ci.removed_at + c.history_seconds * interval '1 second' > now())) \
    OR EXISTS (SELECT 1 FROM work_request_inputs wi \
               JOIN work_requests wr ON wr.id = wi.work_request_id \
               WHERE wi.artifact_id = artifacts.id \
                 AND wr.status IN ('blocked', 'pending', 'running')))";

/// [`ALIVE_SQL`] as a Diesel filter on `artifacts`.
pub fn alive() -> SqlLiteral<Bool> {
    sql::<Bool>(ALIVE_SQL)
}

/// Whether a `file_in_store` row counts as the store holding the file, as SQL over the
/// table named `file_in_store`. A row the collector has marked `deleting` may already name
/// missing bytes: it is never present (dedup must not count it, nothing may serve it).
///
/// Whoever makes a new artifact reference such a row (dedup at creation) must do so with
/// an `UPDATE file_in_store SET unreferenced_since = NULL ... WHERE <PRESENT_SQL>` in the
/// transaction that inserts the reference: the update makes the collector's marking, which
/// requires `unreferenced_since` to be set, re-check the row and leave it alone (see
/// `artifacts::gc`).
pub const PRESENT_SQL: &str = "(file_in_store.deleting = false)";
