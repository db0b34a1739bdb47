//! Creating, reading, listing, changing, rolling back, archiving and deleting templates.

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::templates::jobs::{JobChange, JobSpecInput};
use crate::templates::workflows::WorkflowSpecInput;
use crate::templates::{ReleaseView, TemplateRef, TemplateView, Templates};
use crate::work::state::Kind;

/// A new template's spec, by kind.
#[derive(Clone, Debug, PartialEq)]
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

fn not_yet() -> Error {
    Error::FailedPrecondition("templates are not available yet".into())
}

impl Templates {
    /// `CreateTemplate`.
    pub async fn create(&self, _caller: &Identity, _input: CreateInput) -> Result<TemplateView> {
        Err(not_yet())
    }

    /// `GetTemplate`.
    pub async fn get(&self, _caller: &Identity, _template: TemplateRef) -> Result<TemplateView> {
        Err(not_yet())
    }

    /// `ListTemplates`: by name.
    pub async fn list(&self, _caller: &Identity, _query: ListQuery) -> Result<Vec<TemplateView>> {
        Err(not_yet())
    }

    /// `UpdateTemplate`.
    pub async fn update(&self, _caller: &Identity, _input: UpdateInput) -> Result<TemplateView> {
        Err(not_yet())
    }

    /// `RollbackTemplate`.
    pub async fn rollback(
        &self,
        _caller: &Identity,
        _input: RollbackInput,
    ) -> Result<TemplateView> {
        Err(not_yet())
    }

    /// `ListReleases`: newest first; `limit` 0 means 100; `before` pages.
    pub async fn releases(
        &self,
        _caller: &Identity,
        _template: TemplateRef,
        _limit: u32,
        _before: Option<i32>,
    ) -> Result<Vec<ReleaseView>> {
        Err(not_yet())
    }

    /// `GetRelease`: `version` `None` is the latest.
    pub async fn release(
        &self,
        _caller: &Identity,
        _template: TemplateRef,
        _version: Option<i32>,
        _diff_against: Option<i32>,
    ) -> Result<ReleaseView> {
        Err(not_yet())
    }

    /// `ArchiveTemplate`.
    pub async fn archive(
        &self,
        _caller: &Identity,
        _template: TemplateRef,
        _restore: bool,
    ) -> Result<TemplateView> {
        Err(not_yet())
    }

    /// `DeleteTemplate`.
    pub async fn delete(&self, _caller: &Identity, _template: TemplateRef) -> Result<Deleted> {
        Err(not_yet())
    }
}
