//! Creating, reading, listing, changing, rolling back, archiving and deleting templates.
//!
//! Every change that makes a release runs in one transaction that first locks the
//! template's row ([`store::lock`]) and only then reads the latest release, so that
//! concurrent changes queue and each merges onto the one before it (twenty at once give
//! v2..v21, each keeping the keys the others set). Only [`store::append`] makes a release.
//!
//! Roles: reading needs a viewer of the workspace (any user for a public one), every
//! change a contributor; a caller who may not see the workspace gets NOT_FOUND, as
//! everywhere. What it must not touch: work requests' states (deleting only clears the
//! record of origin on finished requests) and secret values beyond sealing and opening
//! them in memory.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::{self, Standing, WorkspaceRole};
use crate::error::{Error, Result};
use crate::store::schema::{template_releases, templates, users, work_requests};
use crate::templates::diff::{self, Change};
use crate::templates::jobs::{self, JobChange, JobSpecInput};
use crate::templates::names;
use crate::templates::spec::ReleaseSpec;
use crate::templates::store::{self, NewRelease, NewTemplate, ReleaseRow, TemplateRow};
use crate::templates::workflows::{self, WorkflowSpecInput};
use crate::templates::{
    ReleaseView, TemplateRef, TemplateView, Templates, release_spec, workspace_name,
};
use crate::work::state::{Kind, Status};

/// A new template's spec, by kind.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per request, moved once; boxing would only add noise at every use"
)]
pub enum NewSpec {
    Job(JobSpecInput),
    Workflow(WorkflowSpecInput),
}

/// `CreateTemplate` as sent.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateInput {
    /// '' for `default`.
    pub workspace: String,
    /// '' picks a readable random name.
    pub name: String,
    pub description: String,
    pub inactive: bool,
    pub spec: NewSpec,
    pub note: String,
}

/// A change of spec, by kind.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per request, moved once; boxing would only add noise at every use"
)]
pub enum SpecChange {
    /// Merged into the latest release.
    Job(JobChange),
    /// Replaces the whole definition.
    Workflow(WorkflowSpecInput),
}

/// `UpdateTemplate` as sent.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateInput {
    pub template: TemplateRef,
    pub expect_version: Option<i32>,
    pub description: Option<String>,
    pub active: Option<bool>,
    pub change: Option<SpecChange>,
    pub note: String,
}

/// `RollbackTemplate` as sent.
#[derive(Clone, Debug, PartialEq)]
pub struct RollbackInput {
    pub template: TemplateRef,
    pub version: i32,
    pub expect_version: Option<i32>,
    pub note: String,
}

/// `ListTemplates` as sent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListQuery {
    /// '' for `default`.
    pub workspace: String,
    pub kind: Option<Kind>,
    pub include_archived: bool,
}

/// What `DeleteTemplate` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    pub deleted: bool,
    pub archived: bool,
    pub message: String,
}

/// How many releases `ListReleases` returns when no limit is given, and at most.
const DEFAULT_RELEASES: u32 = 100;
const MAX_RELEASES: u32 = 1000;

/// How many random names to try before giving up (only a crowded workspace gets there).
const RANDOM_NAME_ATTEMPTS: u32 = 8;

/// The names of `ids`' users.
async fn user_names(
    conn: &mut AsyncPgConnection,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<HashMap<Uuid, String>> {
    let mut ids: Vec<Uuid> = ids.into_iter().collect();
    ids.sort();
    ids.dedup();
    let rows: Vec<(Uuid, String)> = users::table
        .filter(users::id.eq_any(&ids))
        .select((users::id, users::name))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// The caller's standing in the template's workspace, checked for `role`, and the
/// template's row.
async fn find_for(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    template: &TemplateRef,
    role: WorkspaceRole,
    action: &str,
) -> Result<(Standing, TemplateRow)> {
    let workspace = workspace_name(&template.workspace);
    let standing = roles::in_workspace(conn, caller, workspace).await?;
    standing.require(role, action)?;
    let row = store::find(
        conn,
        standing.workspace.id,
        workspace,
        &template.name,
        template.kind,
    )
    .await?;
    Ok((standing, row))
}

fn refuse_archived(row: &TemplateRow) -> Result<()> {
    if row.archived_at.is_some() {
        return Err(Error::FailedPrecondition(format!(
            "template {} is archived: it cannot be changed or run; restore it first (berth template archive {} --restore)",
            row.name, row.name
        )));
    }
    Ok(())
}

fn refuse_unexpected(row: &TemplateRow, expect_version: Option<i32>) -> Result<()> {
    match expect_version {
        Some(expected) if expected != row.latest_version => Err(Error::Aborted(format!(
            "template {} is at v{}, not v{expected}: another change came first; look at v{} and try again",
            row.name, row.latest_version, row.latest_version
        ))),
        _ => Ok(()),
    }
}

fn user_id(caller: &Identity, action: &str) -> Result<Uuid> {
    caller
        .user_id
        .ok_or_else(|| Error::PermissionDenied(format!("only users and admins may {action}")))
}

impl Templates {
    /// Opens a release's sealed secrets.
    fn open(&self, sealed: Option<&[u8]>) -> Result<BTreeMap<String, String>> {
        match sealed {
            Some(sealed) => self.secrets.open(sealed).map_err(Error::internal),
            None => Ok(BTreeMap::new()),
        }
    }

    /// Seals secret values (`None` when there are none).
    fn seal(&self, secrets: &BTreeMap<String, String>) -> Result<Option<Vec<u8>>> {
        if secrets.is_empty() {
            return Ok(None);
        }
        self.secrets
            .seal(secrets)
            .map(Some)
            .map_err(Error::internal)
    }

    /// What differs between two releases of a template of `kind`.
    fn compare(
        kind: Kind,
        old: &ReleaseSpec,
        old_secrets: &BTreeMap<String, String>,
        new: &ReleaseSpec,
        new_secrets: &BTreeMap<String, String>,
    ) -> Result<Vec<Change>> {
        match (old, new) {
            (ReleaseSpec::Job(a), ReleaseSpec::Job(b)) => {
                Ok(jobs::compare(a, old_secrets, b, new_secrets))
            }
            (ReleaseSpec::Workflow(a), ReleaseSpec::Workflow(b)) => {
                Ok(workflows::compare(a, old_secrets, b, new_secrets))
            }
            _ => Err(Error::internal(format!(
                "releases of one {kind} template hold specs of two kinds"
            ))),
        }
    }

    /// A release as callers see it, without a comparison.
    fn release_view(
        row: &TemplateRow,
        workspace: &str,
        release: ReleaseRow,
        names: &HashMap<Uuid, String>,
    ) -> Result<ReleaseView> {
        let spec = release_spec(row.kind, &release)?;
        Ok(ReleaseView {
            template: row.name.clone(),
            workspace: workspace.to_owned(),
            spec,
            created_by: names.get(&release.created_by).cloned().unwrap_or_default(),
            diff_against: None,
            diff: Vec::new(),
            row: release,
        })
    }

    /// A template with its latest release as callers see it.
    fn template_view(
        row: TemplateRow,
        workspace: &str,
        latest: ReleaseRow,
        names: &HashMap<Uuid, String>,
    ) -> Result<TemplateView> {
        let latest = Self::release_view(&row, workspace, latest, names)?;
        Ok(TemplateView {
            workspace: workspace.to_owned(),
            created_by: names.get(&row.created_by).cloned().unwrap_or_default(),
            latest,
            row,
        })
    }

    /// Reads a template's row and latest release again. A change calls it in its own
    /// transaction, so that what it answers is what it made, not what a change that
    /// committed just after it made.
    async fn rows_of(
        conn: &mut AsyncPgConnection,
        template_id: Uuid,
    ) -> Result<(TemplateRow, ReleaseRow)> {
        let row: TemplateRow = templates::table
            .find(template_id)
            .select(TemplateRow::as_select())
            .first(conn)
            .await?;
        let (latest, _) = store::release(conn, &row, row.latest_version).await?;
        Ok((row, latest))
    }

    /// The view of a template's row and latest release.
    async fn view_from(
        conn: &mut AsyncPgConnection,
        (row, latest): (TemplateRow, ReleaseRow),
        workspace: &str,
    ) -> Result<TemplateView> {
        let names = user_names(conn, [row.created_by, latest.created_by]).await?;
        Self::template_view(row, workspace, latest, &names)
    }

    /// Reads a template's row and latest release again, and makes its view.
    async fn view_of(
        conn: &mut AsyncPgConnection,
        template_id: Uuid,
        workspace: &str,
    ) -> Result<TemplateView> {
        let rows = Self::rows_of(conn, template_id).await?;
        Self::view_from(conn, rows, workspace).await
    }

    /// `CreateTemplate`.
    pub async fn create(&self, caller: &Identity, input: CreateInput) -> Result<TemplateView> {
        if !input.name.is_empty() {
            names::validate(&input.name)?;
        }
        let (kind, spec, secrets) = match &input.spec {
            NewSpec::Job(job) => {
                let (spec, secrets) = jobs::check(job, &self.defaults)?;
                let spec = serde_json::to_value(&spec).map_err(Error::internal)?;
                (Kind::Job, spec, secrets)
            }
            NewSpec::Workflow(workflow) => {
                let (spec, secrets) = workflows::check(workflow, &self.defaults)?;
                let spec = serde_json::to_value(&spec).map_err(Error::internal)?;
                (Kind::Workflow, spec, secrets)
            }
        };
        let creator = user_id(caller, "create templates")?;
        let mut conn = self.pool.get().await?;
        let standing =
            roles::in_workspace(&mut conn, caller, workspace_name(&input.workspace)).await?;
        standing.require(WorkspaceRole::Contributor, "create templates in")?;
        standing.require_open()?;
        let release = NewRelease {
            spec,
            secret_env: self.seal(&secrets)?,
            secret_env_keys: secrets.keys().cloned().collect(),
            changes: Vec::new(),
            summary: diff::summary(&[], None),
            note: input.note.clone(),
            rolled_back_from: None,
            created_by: creator,
        };
        let random = input.name.is_empty();
        let mut attempt = 0;
        let made = loop {
            let name = if random {
                names::random(attempt)
            } else {
                input.name.clone()
            };
            let template = NewTemplate {
                workspace_id: standing.workspace.id,
                kind,
                name,
                description: input.description.clone(),
                active: !input.inactive,
                created_by: creator,
            };
            let release = release.clone();
            let created = conn
                .transaction::<_, Error, _>(async |conn| {
                    store::create(conn, template, release).await
                })
                .await;
            match created {
                Ok(made) => break made,
                // A random name someone already uses: draw another.
                Err(Error::AlreadyExists(_)) if random && attempt + 1 < RANDOM_NAME_ATTEMPTS => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        Self::view_from(&mut conn, made, &standing.workspace.name).await
    }

    /// `GetTemplate`.
    pub async fn get(&self, caller: &Identity, template: TemplateRef) -> Result<TemplateView> {
        let mut conn = self.pool.get().await?;
        let (standing, row) = find_for(
            &mut conn,
            caller,
            &template,
            WorkspaceRole::Viewer,
            "read templates of",
        )
        .await?;
        Self::view_of(&mut conn, row.id, &standing.workspace.name).await
    }

    /// `ListTemplates`: by name.
    pub async fn list(&self, caller: &Identity, query: ListQuery) -> Result<Vec<TemplateView>> {
        let mut conn = self.pool.get().await?;
        let workspace = workspace_name(&query.workspace);
        let standing = roles::in_workspace(&mut conn, caller, workspace).await?;
        standing.require(WorkspaceRole::Viewer, "read templates of")?;
        let mut select = templates::table
            .inner_join(
                template_releases::table.on(template_releases::template_id
                    .eq(templates::id)
                    .and(template_releases::version.eq(templates::latest_version))),
            )
            .filter(templates::workspace_id.eq(standing.workspace.id))
            .select((TemplateRow::as_select(), ReleaseRow::as_select()))
            .order((templates::name, templates::kind))
            .into_boxed();
        if let Some(kind) = query.kind {
            select = select.filter(templates::kind.eq(kind));
        }
        if !query.include_archived {
            select = select.filter(templates::archived_at.is_null());
        }
        let rows: Vec<(TemplateRow, ReleaseRow)> = select.load(&mut conn).await?;
        let names = user_names(
            &mut conn,
            rows.iter().flat_map(|(t, r)| [t.created_by, r.created_by]),
        )
        .await?;
        rows.into_iter()
            .map(|(row, latest)| Self::template_view(row, &standing.workspace.name, latest, &names))
            .collect()
    }

    /// `UpdateTemplate`: merges a job change into the latest release (or replaces a
    /// workflow's definition) as a new release, and changes the description and the
    /// active flag in place (they are not part of what a release runs). A spec change
    /// that changes nothing is refused even when the description changes too: the
    /// caller asked for a release, and silently making none would hide that.
    pub async fn update(&self, caller: &Identity, input: UpdateInput) -> Result<TemplateView> {
        if input.change.is_none() && input.description.is_none() && input.active.is_none() {
            return Err(Error::InvalidArgument(
                "change: nothing to change; give a spec change, a description or the active flag"
                    .into(),
            ));
        }
        let author = user_id(caller, "change templates")?;
        let mut conn = self.pool.get().await?;
        let (standing, found) = find_for(
            &mut conn,
            caller,
            &input.template,
            WorkspaceRole::Contributor,
            "change templates of",
        )
        .await?;
        let rows = conn
            .transaction::<_, Error, _>(async |conn| {
                // Read everything again under the lock: a change that waited for it
                // merges onto the release the one before it made.
                let locked = store::lock(conn, found.id).await?;
                refuse_archived(&locked)?;
                refuse_unexpected(&locked, input.expect_version)?;
                let mut changed_row = false;
                if let Some(description) = &input.description
                    && *description != locked.description
                {
                    changed_row = true;
                }
                if let Some(active) = input.active
                    && active != locked.active
                {
                    changed_row = true;
                }
                if let Some(change) = &input.change {
                    let (base, sealed) =
                        store::release(conn, &locked, locked.latest_version).await?;
                    let base_secrets = self.open(sealed.as_deref())?;
                    let base_spec = release_spec(locked.kind, &base)?;
                    let (spec, secrets, changes) = match (&base_spec, change) {
                        (ReleaseSpec::Job(old), SpecChange::Job(change)) => {
                            let (new, secrets) =
                                jobs::merge(old, &base_secrets, change, &self.defaults)?;
                            let changes = jobs::compare(old, &base_secrets, &new, &secrets);
                            (
                                serde_json::to_value(&new).map_err(Error::internal)?,
                                secrets,
                                changes,
                            )
                        }
                        (ReleaseSpec::Workflow(old), SpecChange::Workflow(definition)) => {
                            let (new, secrets) = workflows::check(definition, &self.defaults)?;
                            let changes =
                                workflows::compare(old, &base_secrets, &new, &secrets);
                            (
                                serde_json::to_value(&new).map_err(Error::internal)?,
                                secrets,
                                changes,
                            )
                        }
                        (ReleaseSpec::Job(_), SpecChange::Workflow(_)) => {
                            return Err(Error::InvalidArgument(format!(
                                "change: {} is a job template; send a job change (image, env, limits...), not a workflow definition",
                                locked.name
                            )));
                        }
                        (ReleaseSpec::Workflow(_), SpecChange::Job(_)) => {
                            return Err(Error::InvalidArgument(format!(
                                "change: {} is a workflow template; send a workflow definition, not a job change",
                                locked.name
                            )));
                        }
                    };
                    // Equal specs with equal secrets change nothing, even where a
                    // comparison would find no words for the difference.
                    if changes.is_empty() && spec == base.spec && secrets == base_secrets {
                        return Err(Error::FailedPrecondition(format!(
                            "the change to template {} changes nothing; v{} stays the latest",
                            locked.name, locked.latest_version
                        )));
                    }
                    let release = NewRelease {
                        spec,
                        secret_env: self.seal(&secrets)?,
                        secret_env_keys: secrets.keys().cloned().collect(),
                        summary: diff::summary(&changes, None),
                        changes,
                        note: input.note.clone(),
                        rolled_back_from: None,
                        created_by: author,
                    };
                    store::append(conn, &locked, input.expect_version, release).await?;
                } else if !changed_row {
                    return Err(Error::FailedPrecondition(format!(
                        "the change to template {} changes nothing; v{} stays the latest",
                        locked.name, locked.latest_version
                    )));
                }
                if changed_row {
                    diesel::update(templates::table.find(locked.id))
                        .set((
                            templates::description
                                .eq(input.description.as_ref().unwrap_or(&locked.description)),
                            templates::active.eq(input.active.unwrap_or(locked.active)),
                            templates::updated_at.eq(diesel::dsl::now),
                        ))
                        .execute(conn)
                        .await?;
                }
                Self::rows_of(conn, locked.id).await
            })
            .await?;
        Self::view_from(&mut conn, rows, &standing.workspace.name).await
    }

    /// `RollbackTemplate`: a new release with the spec and the (still sealed) secrets of
    /// an older one; history is kept as it is.
    pub async fn rollback(&self, caller: &Identity, input: RollbackInput) -> Result<TemplateView> {
        let author = user_id(caller, "change templates")?;
        let mut conn = self.pool.get().await?;
        let (standing, found) = find_for(
            &mut conn,
            caller,
            &input.template,
            WorkspaceRole::Contributor,
            "change templates of",
        )
        .await?;
        let rows = conn
            .transaction::<_, Error, _>(async |conn| {
                let locked = store::lock(conn, found.id).await?;
                refuse_archived(&locked)?;
                refuse_unexpected(&locked, input.expect_version)?;
                let (target, target_sealed) = store::release(conn, &locked, input.version).await?;
                let (latest, latest_sealed) =
                    store::release(conn, &locked, locked.latest_version).await?;
                let target_secrets = self.open(target_sealed.as_deref())?;
                let latest_secrets = self.open(latest_sealed.as_deref())?;
                if target.spec == latest.spec && target_secrets == latest_secrets {
                    return Err(Error::FailedPrecondition(format!(
                        "v{} of template {} equals the latest, v{}: a rollback to it changes nothing",
                        input.version, locked.name, locked.latest_version
                    )));
                }
                let changes = Self::compare(
                    locked.kind,
                    &release_spec(locked.kind, &latest)?,
                    &latest_secrets,
                    &release_spec(locked.kind, &target)?,
                    &target_secrets,
                )?;
                let release = NewRelease {
                    spec: target.spec.clone(),
                    // A copy of the sealed bytes: the values are the same and need not
                    // be opened to be restored.
                    secret_env: target_sealed,
                    secret_env_keys: target.secret_env_keys.clone(),
                    summary: diff::summary(&changes, Some(input.version)),
                    changes,
                    note: input.note.clone(),
                    rolled_back_from: Some(input.version),
                    created_by: author,
                };
                store::append(conn, &locked, input.expect_version, release).await?;
                Self::rows_of(conn, locked.id).await
            })
            .await?;
        Self::view_from(&mut conn, rows, &standing.workspace.name).await
    }

    /// `ListReleases`: newest first; `limit` 0 means 100; `before` pages.
    pub async fn releases(
        &self,
        caller: &Identity,
        template: TemplateRef,
        limit: u32,
        before: Option<i32>,
    ) -> Result<Vec<ReleaseView>> {
        let mut conn = self.pool.get().await?;
        let (standing, row) = find_for(
            &mut conn,
            caller,
            &template,
            WorkspaceRole::Viewer,
            "read templates of",
        )
        .await?;
        let limit = match limit {
            0 => DEFAULT_RELEASES,
            n => n.min(MAX_RELEASES),
        };
        let mut select = template_releases::table
            .filter(template_releases::template_id.eq(row.id))
            .select(ReleaseRow::as_select())
            .order(template_releases::version.desc())
            .limit(i64::from(limit))
            .into_boxed();
        if let Some(before) = before {
            select = select.filter(template_releases::version.lt(before));
        }
        let releases: Vec<ReleaseRow> = select.load(&mut conn).await?;
        let names = user_names(&mut conn, releases.iter().map(|r| r.created_by)).await?;
        releases
            .into_iter()
            .map(|release| Self::release_view(&row, &standing.workspace.name, release, &names))
            .collect()
    }

    /// `GetRelease`: `version` `None` is the latest; `diff_against` compares that
    /// version (the older side) with this one.
    pub async fn release(
        &self,
        caller: &Identity,
        template: TemplateRef,
        version: Option<i32>,
        diff_against: Option<i32>,
    ) -> Result<ReleaseView> {
        let mut conn = self.pool.get().await?;
        let (standing, row) = find_for(
            &mut conn,
            caller,
            &template,
            WorkspaceRole::Viewer,
            "read templates of",
        )
        .await?;
        let (release, sealed) =
            store::release(&mut conn, &row, version.unwrap_or(row.latest_version)).await?;
        let diff = match diff_against {
            None => Vec::new(),
            Some(other) => {
                let (other_release, other_sealed) = store::release(&mut conn, &row, other).await?;
                Self::compare(
                    row.kind,
                    &release_spec(row.kind, &other_release)?,
                    &self.open(other_sealed.as_deref())?,
                    &release_spec(row.kind, &release)?,
                    &self.open(sealed.as_deref())?,
                )?
            }
        };
        let names = user_names(&mut conn, [release.created_by]).await?;
        let mut view = Self::release_view(&row, &standing.workspace.name, release, &names)?;
        view.diff_against = diff_against;
        view.diff = diff;
        Ok(view)
    }

    /// `ArchiveTemplate`: hides a template from lists and stops its runs and changes
    /// (`restore` undoes it). Its releases and the requests made from them stay.
    pub async fn archive(
        &self,
        caller: &Identity,
        template: TemplateRef,
        restore: bool,
    ) -> Result<TemplateView> {
        let mut conn = self.pool.get().await?;
        let (standing, found) = find_for(
            &mut conn,
            caller,
            &template,
            WorkspaceRole::Contributor,
            "archive templates of",
        )
        .await?;
        let rows = conn
            .transaction::<_, Error, _>(async |conn| {
                let locked = store::lock(conn, found.id).await?;
                match (restore, locked.archived_at.is_some()) {
                    (false, true) => Err(Error::FailedPrecondition(format!(
                        "template {} is archived already",
                        locked.name
                    ))),
                    (true, false) => Err(Error::FailedPrecondition(format!(
                        "template {} is not archived; there is nothing to restore",
                        locked.name
                    ))),
                    _ => {
                        let archived_at = (!restore).then(chrono::Utc::now);
                        diesel::update(templates::table.find(locked.id))
                            .set((
                                templates::archived_at.eq(archived_at),
                                templates::updated_at.eq(diesel::dsl::now),
                            ))
                            .execute(conn)
                            .await?;
                        Self::rows_of(conn, locked.id).await
                    }
                }
            })
            .await?;
        Self::view_from(&mut conn, rows, &standing.workspace.name).await
    }

    /// `DeleteTemplate`: deletes a template and its releases, unless an unfinished
    /// request was made from it: then it is archived instead, so that request keeps a
    /// record of where it came from.
    pub async fn delete(&self, caller: &Identity, template: TemplateRef) -> Result<Deleted> {
        let mut conn = self.pool.get().await?;
        let (_, found) = find_for(
            &mut conn,
            caller,
            &template,
            WorkspaceRole::Contributor,
            "delete templates of",
        )
        .await?;
        conn.transaction::<_, Error, _>(async |conn| {
            let locked = store::lock(conn, found.id).await?;
            let unfinished: i64 = work_requests::table
                .filter(work_requests::template_id.eq(locked.id))
                .filter(work_requests::status.eq_any([
                    Status::Blocked,
                    Status::Pending,
                    Status::Running,
                ]))
                .count()
                .get_result(conn)
                .await?;
            if unfinished > 0 {
                if locked.archived_at.is_none() {
                    diesel::update(templates::table.find(locked.id))
                        .set((
                            templates::archived_at.eq(diesel::dsl::now),
                            templates::updated_at.eq(diesel::dsl::now),
                        ))
                        .execute(conn)
                        .await?;
                }
                return Ok(Deleted {
                    deleted: false,
                    archived: true,
                    message: format!(
                        "template {} is used by {unfinished} unfinished work request{}, so it was archived instead: it is hidden and cannot be run or changed; delete it again once they have finished",
                        locked.name,
                        if unfinished == 1 { "" } else { "s" }
                    ),
                });
            }
            // Finished requests keep their whole spec; only the record of origin goes.
            diesel::update(work_requests::table.filter(work_requests::template_id.eq(locked.id)))
                .set((
                    work_requests::template_id.eq(None::<Uuid>),
                    work_requests::template_version.eq(None::<i32>),
                ))
                .execute(conn)
                .await?;
            let releases = diesel::delete(
                template_releases::table.filter(template_releases::template_id.eq(locked.id)),
            )
            .execute(conn)
            .await?;
            diesel::delete(templates::table.find(locked.id))
                .execute(conn)
                .await?;
            Ok(Deleted {
                deleted: true,
                archived: false,
                message: format!(
                    "deleted template {} and its {releases} release{}",
                    locked.name,
                    if releases == 1 { "" } else { "s" }
                ),
            })
        })
        .await
    }
}
