//! Template and release rows, and the one door through which releases are made.
//!
//! Every release — a template's v1, a change, a rollback — is inserted by [`append`],
//! which holds the template's row lock (taken by [`lock`]) and raises `latest_version`
//! in the same transaction as the insert. So concurrent changes queue on the row and get
//! consecutive versions: twenty at once give exactly v2..v21, with no gap and no
//! duplicate, and a conditional change (`expect_version`) sees the version it would
//! follow. Releases are never updated or renumbered.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::store::schema::{template_releases, templates};
use crate::templates::diff::Change;
use crate::work::state::Kind;

/// A template row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = templates)]
pub struct TemplateRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    /// What its releases hold: a job or a workflow.
    pub kind: Kind,
    pub name: String,
    pub description: String,
    pub active: bool,
    pub latest_version: i32,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
}

/// A release row, without its sealed secrets.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = template_releases)]
pub struct ReleaseRow {
    pub template_id: Uuid,
    pub version: i32,
    /// A [`crate::templates::spec::JobSpec`] or [`crate::templates::spec::WorkflowSpec`]
    /// as JSON, by the template's kind.
    pub spec: serde_json::Value,
    pub secret_env_keys: Vec<String>,
    /// A list of [`Change`] as JSON.
    pub changes: serde_json::Value,
    pub summary: String,
    pub note: String,
    pub rolled_back_from: Option<i32>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
}

impl ReleaseRow {
    /// The stored changes.
    pub fn changes(&self) -> Result<Vec<Change>> {
        serde_json::from_value(self.changes.clone()).map_err(|e| {
            Error::internal(format!(
                "stored changes of release {}/v{} unreadable: {e}",
                self.template_id, self.version
            ))
        })
    }
}

/// A release to store: everything but its version, which [`append`] allocates.
#[derive(Clone)]
pub struct NewRelease {
    pub spec: serde_json::Value,
    /// Sealed with the server's key, never plain; `None` when there are no secrets.
    pub secret_env: Option<Vec<u8>>,
    pub secret_env_keys: Vec<String>,
    pub changes: Vec<Change>,
    pub summary: String,
    pub note: String,
    pub rolled_back_from: Option<i32>,
    pub created_by: Uuid,
}

impl std::fmt::Debug for NewRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRelease")
            .field("spec", &self.spec)
            .field("secret_env_keys", &self.secret_env_keys)
            .field("summary", &self.summary)
            .field("rolled_back_from", &self.rolled_back_from)
            .finish_non_exhaustive()
    }
}

/// Finds a template of a workspace by name; `kind` `None` finds either, and a name both
/// kinds use is FAILED_PRECONDITION asking for the kind. NOT_FOUND names the template.
pub async fn find(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    workspace: &str,
    name: &str,
    kind: Option<Kind>,
) -> Result<TemplateRow> {
    let mut select = templates::table
        .filter(templates::workspace_id.eq(workspace_id))
        .filter(templates::name.eq(name))
        .select(TemplateRow::as_select())
        .into_boxed();
    if let Some(kind) = kind {
        select = select.filter(templates::kind.eq(kind));
    }
    let mut rows: Vec<TemplateRow> = select.limit(2).load(conn).await?;
    match rows.len() {
        0 => Err(Error::NotFound(format!(
            "workspace {workspace} has no {}template named {name:?}",
            kind.map(|k| format!("{k} ")).unwrap_or_default()
        ))),
        1 => Ok(rows.remove(0)),
        _ => Err(Error::FailedPrecondition(format!(
            "workspace {workspace} has a job template and a workflow template named {name:?}; say which kind"
        ))),
    }
}

/// Locks a template's row for the rest of the transaction (the lock [`append`] needs)
/// and returns it as it is now.
pub async fn lock(conn: &mut AsyncPgConnection, template_id: Uuid) -> Result<TemplateRow> {
    Ok(templates::table
        .find(template_id)
        .select(TemplateRow::as_select())
        .for_update()
        .first(conn)
        .await?)
}

/// Stores `release` as the next version of the template `locked` (locked by [`lock`] in
/// this transaction), raising its `latest_version`; returns the stored release. With
/// `expect_version`, refuses with ABORTED unless the latest release is that version.
pub async fn append(
    conn: &mut AsyncPgConnection,
    locked: &TemplateRow,
    expect_version: Option<i32>,
    release: NewRelease,
) -> Result<ReleaseRow> {
    if let Some(expected) = expect_version
        && expected != locked.latest_version
    {
        return Err(Error::Aborted(format!(
            "template {} is at v{}, not v{expected}: another change came first; look at v{} and try again",
            locked.name, locked.latest_version, locked.latest_version
        )));
    }
    let version = locked.latest_version.checked_add(1).ok_or_else(|| {
        Error::ResourceExhausted(format!("template {} has too many releases", locked.name))
    })?;
    let row = insert(conn, locked.id, version, release).await?;
    diesel::update(templates::table.find(locked.id))
        .set((
            templates::latest_version.eq(version),
            templates::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(row)
}

/// A template to create, with its v1.
#[derive(Debug)]
pub struct NewTemplate {
    pub workspace_id: Uuid,
    pub kind: Kind,
    pub name: String,
    pub description: String,
    pub active: bool,
    pub created_by: Uuid,
}

/// Creates a template with `release` as its v1, in the caller's transaction. A name the
/// workspace uses for that kind is ALREADY_EXISTS.
pub async fn create(
    conn: &mut AsyncPgConnection,
    template: NewTemplate,
    release: NewRelease,
) -> Result<(TemplateRow, ReleaseRow)> {
    let id = Uuid::now_v7();
    let inserted = diesel::insert_into(templates::table)
        .values((
            templates::id.eq(id),
            templates::workspace_id.eq(template.workspace_id),
            templates::kind.eq(template.kind),
            templates::name.eq(&template.name),
            templates::description.eq(&template.description),
            templates::active.eq(template.active),
            templates::latest_version.eq(1),
            templates::created_by.eq(template.created_by),
        ))
        .on_conflict_do_nothing()
        .returning(TemplateRow::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    let Some(row) = inserted else {
        return Err(Error::AlreadyExists(format!(
            "a {} template named {:?} already exists in this workspace; pick another name or change that one",
            template.kind, template.name
        )));
    };
    let release = insert(conn, id, 1, release).await?;
    Ok((row, release))
}

async fn insert(
    conn: &mut AsyncPgConnection,
    template_id: Uuid,
    version: i32,
    release: NewRelease,
) -> Result<ReleaseRow> {
    let changes = serde_json::to_value(&release.changes).map_err(Error::internal)?;
    Ok(diesel::insert_into(template_releases::table)
        .values((
            template_releases::template_id.eq(template_id),
            template_releases::version.eq(version),
            template_releases::spec.eq(release.spec),
            template_releases::secret_env.eq(release.secret_env),
            template_releases::secret_env_keys.eq(release.secret_env_keys),
            template_releases::changes.eq(changes),
            template_releases::summary.eq(release.summary),
            template_releases::note.eq(release.note),
            template_releases::rolled_back_from.eq(release.rolled_back_from),
            template_releases::created_by.eq(release.created_by),
        ))
        .returning(ReleaseRow::as_returning())
        .get_result(conn)
        .await?)
}

/// Release `version` of a template with its sealed secrets; NOT_FOUND names the version.
pub async fn release(
    conn: &mut AsyncPgConnection,
    template: &TemplateRow,
    version: i32,
) -> Result<(ReleaseRow, Option<Vec<u8>>)> {
    template_releases::table
        .find((template.id, version))
        .select((ReleaseRow::as_select(), template_releases::secret_env))
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "template {} has no release v{version}; its latest is v{}",
                template.name, template.latest_version
            ))
        })
}
