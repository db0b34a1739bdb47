//! Identifiers of work: a work request's id, the key of one of its attempts, and the
//! template release a request was made from.
//!
//! Both are newtypes so a worker id, a token id and a work request id cannot be swapped
//! by accident; they read from and write to the `uuid` and `integer` columns directly.

use std::fmt;
use std::io::Write;

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Uuid as SqlUuid;
use uuid::Uuid;

use crate::error::{Error, Result};

/// The template release a request is made from: recorded on the request, never read to
/// run it (the request holds its whole spec). Here, with the other identifiers, so that
/// both `requests` and `workflow` can name it without importing each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub template_id: Uuid,
    pub version: i32,
}

/// A work request's id (a UUIDv7, so ids sort by creation).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = SqlUuid)]
pub struct WorkRequestId(pub Uuid);

impl WorkRequestId {
    /// A new id.
    pub(crate) fn new() -> WorkRequestId {
        WorkRequestId(Uuid::now_v7())
    }

    /// Parses an id sent by a caller, naming `field` in the error.
    pub fn parse(field: &str, text: &str) -> Result<WorkRequestId> {
        parse_uuid(field, text).map(WorkRequestId)
    }
}

impl Default for WorkRequestId {
    fn default() -> Self {
        WorkRequestId::new()
    }
}

impl fmt::Display for WorkRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl ToSql<SqlUuid, Pg> for WorkRequestId {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.0.as_bytes())?;
        Ok(serialize::IsNull::No)
    }
}

impl FromSql<SqlUuid, Pg> for WorkRequestId {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        <Uuid as FromSql<SqlUuid, Pg>>::from_sql(bytes).map(WorkRequestId)
    }
}

/// Parses a UUID sent by a caller, naming `field` in the error.
pub fn parse_uuid(field: &str, text: &str) -> Result<Uuid> {
    if text.is_empty() {
        return Err(Error::InvalidArgument(format!("{field}: is required")));
    }
    Uuid::parse_str(text).map_err(|_| {
        Error::InvalidArgument(format!("{field}: {text:?} is not a valid id (a UUID)"))
    })
}

/// One attempt of one work request: the request and the attempt number, which is the
/// fencing token every worker write carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptKey {
    /// The work request.
    pub id: WorkRequestId,
    /// The attempt number, 1 and up.
    pub attempt: i32,
}

impl AttemptKey {
    /// The key of `attempt` of `id`.
    pub(crate) fn new(id: WorkRequestId, attempt: i32) -> AttemptKey {
        AttemptKey { id, attempt }
    }

    /// Parses an attempt named by a worker: the request id and the number as sent.
    /// `None` is a message that carries no attempt at all.
    pub fn parse(reference: Option<(&str, u32)>) -> Result<AttemptKey> {
        let (id, attempt) =
            reference.ok_or_else(|| Error::InvalidArgument("attempt: is required".into()))?;
        let id = Uuid::parse_str(id).map_err(|_| {
            Error::InvalidArgument("attempt.work_request_id: not a valid id".into())
        })?;
        let attempt = i32::try_from(attempt)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| Error::InvalidArgument("attempt.attempt: must be 1 or more".into()))?;
        Ok(AttemptKey::new(WorkRequestId(id), attempt))
    }

    /// The attempt number as the protocol carries it.
    pub fn number(&self) -> u32 {
        u32::try_from(self.attempt).unwrap_or(0)
    }
}

impl fmt::Display for AttemptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt {} of work request {}", self.attempt, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_references_are_checked_field_by_field() {
        let id = Uuid::now_v7().to_string();
        let key = AttemptKey::parse(Some((&id, 3))).expect("valid");
        assert_eq!((key.id.to_string(), key.attempt), (id.clone(), 3));
        let refused = |reference| match AttemptKey::parse(reference) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        };
        assert_eq!(refused(None), "attempt: is required");
        assert!(refused(Some(("nope", 1))).starts_with("attempt.work_request_id"));
        assert!(refused(Some((&id, 0))).starts_with("attempt.attempt"));
        assert!(refused(Some((&id, u32::MAX))).starts_with("attempt.attempt"));
    }

    #[test]
    fn ids_name_their_field_when_refused() {
        assert!(matches!(
            WorkRequestId::parse("id", ""),
            Err(Error::InvalidArgument(m)) if m == "id: is required"
        ));
        assert!(matches!(
            WorkRequestId::parse("after[2]", "x"),
            Err(Error::InvalidArgument(m)) if m.starts_with("after[2]: \"x\"")
        ));
    }
}
