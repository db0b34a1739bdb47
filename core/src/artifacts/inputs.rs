//! The inputs of work requests: resolving what a submission names to artifact ids,
//! pinning them (`work_request_inputs`), pinning a workflow step's input to the output of
//! the step it takes it from, and listing them for an assignment and for views.
//!
//! What it owns: the rows of `work_request_inputs`, and the reading of artifacts and
//! collection items that resolving them needs. Whether an artifact may be used is
//! [`super::live::ALIVE_SQL`] (alive) and `complete`, nothing else; an artifact of
//! another workspace is NOT_FOUND like one that does not exist, so a submission never
//! learns of another workspace's artifacts.
//!
//! What it must not touch: the state of work requests and attempts (that is
//! [`crate::work::lifecycle`], which calls [`pin_step_output`] when a step finishes),
//! artifacts' own rows and files (only read here), and roles (the caller has checked the
//! submitter's standing in the workspace). Mounts were checked by the path validator in
//! [`crate::work::spec::validate_inputs`].

use std::collections::HashMap;

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::artifacts::live::ALIVE_SQL;
use crate::error::{Error, Result};
use crate::store::schema::{
    artifact_files, artifacts, collection_items, collections, work_request_inputs,
};
use crate::work::ids::{AttemptKey, WorkRequestId};
use crate::work::spec::{AssignedInput, CheckedInput, InputFile, InputSource};

/// path, sha256, size, mode, symlink of an `artifact_files` row.
type FileRow = (String, Option<Vec<u8>>, Option<i64>, i32, Option<String>);

/// An input resolved at submission: pinned to an artifact, or waiting for a step's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinned {
    /// Relative to /in.
    pub mount: String,
    /// The artifact; `None` while it waits for `from`'s output.
    pub artifact_id: Option<Uuid>,
    /// The step whose output it takes.
    pub from: Option<WorkRequestId>,
}

/// Resolves `inputs` of a request in `workspace_id` and locks each artifact (`FOR SHARE`)
/// until the caller's transaction ends, so nothing deletes it before the request's rows
/// are in. `steps` maps the names of the steps the request needs (workflow steps only) to
/// their ids. Errors name the input by its index.
pub async fn resolve(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    inputs: &[CheckedInput],
    steps: &HashMap<String, WorkRequestId>,
    field: &str,
) -> Result<Vec<Pinned>> {
    let mut pinned = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let (artifact_id, from) = match &input.source {
            InputSource::Artifact(id) => (
                Some(usable(conn, workspace_id, *id, &at, &id.to_string()).await?),
                None,
            ),
            InputSource::Item { collection, item } => {
                let id = lookup_item(conn, workspace_id, collection, item, &at).await?;
                let named = format!("{collection}/{item}");
                (
                    Some(usable(conn, workspace_id, id, &at, &named).await?),
                    None,
                )
            }
            InputSource::Step(name) => {
                let step = steps.get(name).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{at}.from: {name:?} is not a step this step needs; add it to `needs` or take another step's output"
                    ))
                })?;
                (None, Some(*step))
            }
        };
        pinned.push(Pinned {
            mount: input.mount.clone(),
            artifact_id,
            from,
        });
    }
    Ok(pinned)
}

/// The artifact `id` if it is in the workspace, alive and complete (locked for share).
async fn usable(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
    at: &str,
    named: &str,
) -> Result<Uuid> {
    let found: Option<bool> = artifacts::table
        .filter(artifacts::id.eq(id))
        .filter(artifacts::workspace_id.eq(workspace_id))
        .filter(sql::<Bool>(ALIVE_SQL))
        .select(artifacts::complete)
        .for_share()
        .first(conn)
        .await
        .optional()?;
    match found {
        None => Err(Error::NotFound(format!(
            "{at}: artifact {named} not found in the request's workspace (it does not exist, has expired, or belongs to another workspace)"
        ))),
        Some(false) => Err(Error::FailedPrecondition(format!(
            "{at}: artifact {named} is not complete (some of its files are not uploaded yet); finish its upload first"
        ))),
        Some(true) => Ok(id),
    }
}

/// The artifact of the active item `item` of `collection` in the workspace.
async fn lookup_item(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    collection: &str,
    item: &str,
    at: &str,
) -> Result<Uuid> {
    let found: Option<Option<Uuid>> = collection_items::table
        .inner_join(collections::table)
        .filter(collections::workspace_id.eq(workspace_id))
        .filter(collections::name.eq(collection))
        .filter(collection_items::name.eq(item))
        .filter(collection_items::removed_at.is_null())
        .select(collection_items::artifact_id)
        .first(conn)
        .await
        .optional()?;
    found.flatten().ok_or_else(|| {
        Error::NotFound(format!(
            "{at}: no active item {item:?} in collection {collection:?} of the request's workspace"
        ))
    })
}

/// Stores the resolved inputs of `id` (in the caller's transaction).
pub async fn insert(
    conn: &mut AsyncPgConnection,
    id: WorkRequestId,
    inputs: &[Pinned],
) -> Result<()> {
    if inputs.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = inputs
        .iter()
        .map(|input| {
            (
                work_request_inputs::work_request_id.eq(id),
                work_request_inputs::mount.eq(&input.mount),
                work_request_inputs::artifact_id.eq(input.artifact_id),
                work_request_inputs::from_work_request_id.eq(input.from),
            )
        })
        .collect();
    diesel::insert_into(work_request_inputs::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(())
}

/// Pins the inputs that take `step`'s output to `artifact` (its last attempt's), for the
/// dependants that have not started yet. Called by `lifecycle` in the transaction that
/// records the attempt.
pub async fn pin_step_output(
    conn: &mut AsyncPgConnection,
    step: WorkRequestId,
    artifact: Uuid,
) -> Result<()> {
    diesel::sql_query(
        "UPDATE work_request_inputs wi SET artifact_id = $2 \
         FROM work_requests wr \
         WHERE wi.from_work_request_id = $1 AND wr.id = wi.work_request_id \
           AND wr.status IN ('blocked', 'pending')",
    )
    .bind::<diesel::sql_types::Uuid, _>(step.0)
    .bind::<diesel::sql_types::Uuid, _>(artifact)
    .execute(conn)
    .await?;
    Ok(())
}

/// The inputs of `id` by mount.
pub async fn of_request(conn: &mut AsyncPgConnection, id: WorkRequestId) -> Result<Vec<Pinned>> {
    let rows: Vec<(String, Option<Uuid>, Option<Uuid>)> = work_request_inputs::table
        .filter(work_request_inputs::work_request_id.eq(id))
        .select((
            work_request_inputs::mount,
            work_request_inputs::artifact_id,
            work_request_inputs::from_work_request_id,
        ))
        .order(work_request_inputs::mount)
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(mount, artifact_id, from)| Pinned {
            mount,
            artifact_id,
            from: from.map(WorkRequestId),
        })
        .collect())
}

/// What the worker needs to lay out the inputs of `id`: each pinned artifact with its
/// files. An input still waiting for a step's output (the step made none), or whose
/// artifact is gone, is an error saying so: the attempt must not run with a silently
/// empty mount.
pub async fn for_assignment(
    conn: &mut AsyncPgConnection,
    id: WorkRequestId,
) -> Result<Vec<AssignedInput>> {
    let pinned = of_request(conn, id).await?;
    let mut out = Vec::with_capacity(pinned.len());
    for input in pinned {
        let Some(artifact_id) = input.artifact_id else {
            let from = input
                .from
                .map(|f| f.to_string())
                .unwrap_or_else(|| "?".into());
            return Err(Error::FailedPrecondition(format!(
                "input {:?}: the step {from} it takes its output from made no output artifact (it declared no outputs, or collecting them failed)",
                input.mount
            )));
        };
        let alive: Option<bool> = artifacts::table
            .filter(artifacts::id.eq(artifact_id))
            .filter(sql::<Bool>(ALIVE_SQL))
            .select(artifacts::complete)
            .first(conn)
            .await
            .optional()?;
        if alive != Some(true) {
            return Err(Error::FailedPrecondition(format!(
                "input {:?}: artifact {artifact_id} is gone or not complete",
                input.mount
            )));
        }
        let files: Vec<FileRow> = artifact_files::table
            .filter(artifact_files::artifact_id.eq(artifact_id))
            .select((
                artifact_files::path,
                artifact_files::sha256,
                artifact_files::size,
                artifact_files::mode,
                artifact_files::symlink,
            ))
            .order(artifact_files::path)
            .load(conn)
            .await?;
        out.push(AssignedInput {
            artifact_id,
            mount: input.mount,
            files: files
                .into_iter()
                .map(|(path, sha256, size, mode, symlink)| InputFile {
                    path,
                    sha256: sha256
                        .map(|h| berth_files::digest::to_hex(&h))
                        .unwrap_or_default(),
                    size: size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    mode: u32::try_from(mode).unwrap_or(0o644),
                    symlink: symlink.unwrap_or_default(),
                })
                .collect(),
        });
    }
    Ok(out)
}

/// `artifact` if it is the complete output of the attempt `key` (made by that attempt
/// through CreateArtifact); `None` for anything else, which a worker's Finished may not
/// claim as the attempt's output.
pub async fn output_of_attempt(
    conn: &mut AsyncPgConnection,
    key: AttemptKey,
    artifact: Uuid,
) -> Result<Option<Uuid>> {
    let found: Option<bool> = artifacts::table
        .filter(artifacts::id.eq(artifact))
        .filter(artifacts::work_request_id.eq(key.id.0))
        .filter(artifacts::attempt.eq(key.attempt))
        .select(artifacts::complete)
        .first(conn)
        .await
        .optional()?;
    match found {
        Some(true) => Ok(Some(artifact)),
        other => {
            tracing::warn!(%key, %artifact, found = ?other, "a Finished named an output artifact that is not this attempt's complete output; not recorded");
            Ok(None)
        }
    }
}
