//! Templates: named, versioned specs of a workspace — for jobs (a container spec with its
//! scheduling fields) and for workflows (steps with declared parameters) — and the runs
//! made from them.
//!
//! Every change of what a template runs makes a new, immutable release vN+1 holding the
//! whole resolved spec, the difference from vN and a summary written by the server; a
//! rollback makes a new release equal to an older one. A run submits an ordinary work
//! request (or workflow) whose spec is the release's, frozen at submission, plus the
//! run's overrides; the request records which release it came from, and nothing that
//! happens to the template afterwards changes it.
//!
//! What it owns:
//! - [`store`]: template and release rows, and the one door through which releases are
//!   made ([`store::append`], gap-free versions under the template's row lock).
//! - [`spec`]: what a release holds; [`diff`]: differences between releases.
//! - [`names`]: template names (slugs, reserved names, readable random names).
//! - [`manage`]: creating, reading, listing, changing, rolling back, archiving and
//!   deleting templates (the front the API calls).
//! - [`jobs`]: job templates' specs — checking, merging a change, comparing.
//! - [`workflows`]: workflow templates — parameters, checking, binding at a run.
//! - [`runs`]: runs from a template; [`stats`]: what the runs of a template did.
//!
//! What it must not touch: work requests' rows and states (runs go through
//! [`crate::work::requests::WorkRequests`], which validates them exactly as a plain
//! submission), roles (decided by [`crate::access::roles`]), and the wire protocol.
//! Secret values are sealed with the server's key before they are stored and are never
//! put in a view, a change, a summary or a log line.

pub mod diff;
pub mod jobs;
pub mod manage;
pub mod names;
pub mod runs;
pub mod spec;
pub mod stats;
pub mod store;
pub mod workflows;

use std::collections::BTreeMap;

use diesel_async::AsyncPgConnection;
use serde::Deserialize;

use crate::access::auth::Identity;
use crate::access::roles::{self, Standing, WorkspaceRole};
use crate::error::{Error, Result};
use crate::store::db::DbPool;
use crate::store::secrets::SecretBox;
use crate::work::requests::WorkRequests;
use crate::work::spec::SpecDefaults;
use crate::work::state::Kind;

use self::diff::Change;
use self::spec::ReleaseSpec;
use self::spec::{JobSpec, WorkflowSpec};
use self::store::{ReleaseRow, TemplateRow};

/// The workspace a name means ('' is `default`).
pub(crate) fn workspace_name(workspace: &str) -> &str {
    if workspace.is_empty() {
        "default"
    } else {
        workspace
    }
}

/// A template found for a caller, with one of its releases and that release's secret
/// values opened (for a run or a merge; never to be shown).
pub(crate) struct Resolved {
    pub standing: Standing,
    pub template: TemplateRow,
    pub release: ReleaseRow,
    pub spec: ReleaseSpec,
    pub secrets: BTreeMap<String, String>,
}

/// Reads what a release holds, by the template's kind.
pub(crate) fn release_spec(kind: Kind, release: &ReleaseRow) -> Result<ReleaseSpec> {
    let bad = |e: serde_json::Error| {
        Error::internal(format!(
            "stored spec of release {}/v{} unreadable: {e}",
            release.template_id, release.version
        ))
    };
    Ok(match kind {
        Kind::Job => ReleaseSpec::Job(JobSpec::deserialize(&release.spec).map_err(bad)?),
        Kind::Workflow => {
            ReleaseSpec::Workflow(WorkflowSpec::deserialize(&release.spec).map_err(bad)?)
        }
    })
}

/// A job release read on a room's own account (a service's replicas), with no caller:
/// the template's row, the release's job spec and its secret values opened (never to be
/// shown). NOT_FOUND names the release; a workflow template is FAILED_PRECONDITION.
pub(crate) async fn job_release(
    conn: &mut AsyncPgConnection,
    secrets: &SecretBox,
    template_id: uuid::Uuid,
    version: i32,
) -> Result<(TemplateRow, JobSpec, BTreeMap<String, String>)> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let row: TemplateRow = crate::store::schema::templates::table
        .find(template_id)
        .select(TemplateRow::as_select())
        .first(conn)
        .await?;
    let (release, sealed) = store::release(conn, &row, version).await?;
    let opened = match sealed {
        Some(sealed) => secrets.open(&sealed).map_err(Error::internal)?,
        None => BTreeMap::new(),
    };
    match release_spec(row.kind, &release)? {
        ReleaseSpec::Job(job) => Ok((row, job, opened)),
        ReleaseSpec::Workflow(_) => Err(Error::FailedPrecondition(format!(
            "template {} is a workflow template; services run job templates",
            row.name
        ))),
    }
}

/// Names a template: its workspace ('' for `default`), its name and, optionally, its kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateRef {
    pub workspace: String,
    pub name: String,
    /// `None` finds either kind.
    pub kind: Option<Kind>,
}

/// A template as callers see it.
#[derive(Clone, Debug)]
pub struct TemplateView {
    pub row: TemplateRow,
    /// Its workspace's name.
    pub workspace: String,
    /// Its creator's name.
    pub created_by: String,
    /// Its newest release.
    pub latest: ReleaseView,
}

/// A release as callers see it: no secret values, only their names.
#[derive(Clone, Debug)]
pub struct ReleaseView {
    pub row: ReleaseRow,
    /// The template's name.
    pub template: String,
    /// Its workspace's name.
    pub workspace: String,
    /// What it holds, read from the row.
    pub spec: ReleaseSpec,
    /// Its author's name.
    pub created_by: String,
    /// With a comparison asked for: the version compared with, and the differences.
    pub diff_against: Option<i32>,
    pub diff: Vec<Change>,
}

/// See the module docs. The API's front for templates.
#[derive(Clone)]
pub struct Templates {
    pub(crate) pool: DbPool,
    pub(crate) secrets: SecretBox,
    pub(crate) defaults: SpecDefaults,
    pub(crate) requests: WorkRequests,
}

impl Templates {
    /// Finds `template` for `caller`, who needs `role` in its workspace (NOT_FOUND when
    /// the caller may not see the workspace, PERMISSION_DENIED naming the role to `action`
    /// otherwise), and reads release `version` (`None`: the latest) with its secrets
    /// opened.
    pub(crate) async fn resolve(
        &self,
        conn: &mut AsyncPgConnection,
        caller: &Identity,
        template: &TemplateRef,
        version: Option<i32>,
        role: WorkspaceRole,
        action: &str,
    ) -> Result<Resolved> {
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
        let (release, sealed) =
            store::release(conn, &row, version.unwrap_or(row.latest_version)).await?;
        let secrets = match sealed {
            Some(sealed) => self.secrets.open(&sealed).map_err(Error::internal)?,
            None => BTreeMap::new(),
        };
        let spec = release_spec(row.kind, &release)?;
        Ok(Resolved {
            standing,
            template: row,
            release,
            spec,
            secrets,
        })
    }

    /// Templates stored in `pool`, secrets sealed with `secrets`, job specs resolved with
    /// `defaults`, runs submitted through `requests`.
    pub fn new(
        pool: DbPool,
        secrets: SecretBox,
        defaults: SpecDefaults,
        requests: WorkRequests,
    ) -> Templates {
        Templates {
            pool,
            secrets,
            defaults,
            requests,
        }
    }
}
