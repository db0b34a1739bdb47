//! `berth.v1.ArtifactService` on the wire; `artifacts::Artifacts` does the work.
//!
//! The upload stream is handed to the domain as a stream of plain chunks; a refused
//! offset's committed size also goes out as the `berth-committed-size` metadata.

use berth_common::proto::artifact_service_server::ArtifactService;
use berth_common::proto::{
    Artifact, ArtifactFile, ArtifactRelation, ArtifactRelationKind, CreateArtifactRequest,
    CreateArtifactResponse, DeleteArtifactRequest, DeleteArtifactResponse, Expiry as WireExpiry,
    GetArtifactRequest, ListArtifactsRequest, ListArtifactsResponse, QueryUploadRequest,
    QueryUploadResponse, ReadFileRequest, ReadFileResponse, RelateArtifactsRequest,
    RelateArtifactsResponse, SetExpiryRequest, UploadFileRequest, UploadFileResponse, expiry,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::api::auth::identity;
use crate::api::error::{respond, to_status};
use crate::api::{raw_from_proto, timestamp, timestamp_opt};
use berth_core::artifacts::Artifacts;
use berth_core::artifacts::artifacts::{
    ArtifactView, FileView, ListQuery, NewArtifact, RelationKind, RelationView,
};
use berth_core::artifacts::rules::{Expiry, FileEntry};
use berth_core::artifacts::uploads::{UploadChunk, UploadError};
use berth_core::error::Error;

/// The metadata key that carries the committed size with a refused upload.
pub const COMMITTED_SIZE_HEADER: &str = "berth-committed-size";

/// The ArtifactService implementation.
#[derive(Clone)]
pub struct ArtifactApi {
    artifacts: Artifacts,
}

impl ArtifactApi {
    /// The service over `artifacts`.
    pub fn new(artifacts: Artifacts) -> ArtifactApi {
        ArtifactApi { artifacts }
    }
}

fn kind_to_proto(kind: RelationKind) -> ArtifactRelationKind {
    match kind {
        RelationKind::Extends => ArtifactRelationKind::Extends,
        RelationKind::RelatesTo => ArtifactRelationKind::RelatesTo,
        RelationKind::BuiltUsing => ArtifactRelationKind::BuiltUsing,
    }
}

fn kind_from_proto(value: i32) -> Result<RelationKind, Error> {
    match ArtifactRelationKind::try_from(value) {
        Ok(ArtifactRelationKind::Extends) => Ok(RelationKind::Extends),
        Ok(ArtifactRelationKind::RelatesTo) => Ok(RelationKind::RelatesTo),
        Ok(ArtifactRelationKind::BuiltUsing) => Ok(RelationKind::BuiltUsing),
        Ok(ArtifactRelationKind::Unspecified) | Err(_) => Err(Error::InvalidArgument(format!(
            "kind: {value} is not a relation kind; give EXTENDS, RELATES_TO or BUILT_USING"
        ))),
    }
}

fn file(view: FileView) -> ArtifactFile {
    ArtifactFile {
        path: view.path,
        sha256: view.sha256,
        size: view.size,
        mode: view.mode,
        symlink: view.symlink,
        uploaded: view.uploaded,
    }
}

fn relation(view: RelationView) -> ArtifactRelation {
    ArtifactRelation {
        kind: kind_to_proto(view.kind) as i32,
        artifact_id: view.other.to_string(),
        incoming: view.incoming,
    }
}

fn artifact(view: ArtifactView) -> Artifact {
    Artifact {
        id: view.id.to_string(),
        workspace: view.workspace,
        category: view.category,
        data: view.data,
        files: view.files.into_iter().map(file).collect(),
        created_by: view.created_by.unwrap_or_default(),
        work_request_id: view
            .work_request_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        attempt: view.attempt.unwrap_or(0),
        created_at: Some(timestamp(view.created_at)),
        expire_at: timestamp_opt(view.expires_at),
        complete: view.complete,
        total_size: view.total_size,
        file_count: view.file_count,
        relations: view.relations.into_iter().map(relation).collect(),
        store: view.store,
    }
}

fn expiry_from_proto(field: &str, wire: Option<WireExpiry>) -> Result<Expiry, Error> {
    match wire.and_then(|e| e.when) {
        None => Ok(Expiry::Default),
        Some(expiry::When::Never(true)) => Ok(Expiry::Never),
        Some(expiry::When::Never(false)) => Err(Error::InvalidArgument(format!(
            "{field}.never: false says nothing; leave the expiry unset for the default"
        ))),
        Some(expiry::When::After(d)) => Ok(Expiry::After(raw_from_proto(&d))),
        Some(expiry::When::At(t)) => {
            let nanos = u32::try_from(t.nanos).unwrap_or(u32::MAX);
            DateTime::<Utc>::from_timestamp(t.seconds, nanos)
                .map(Expiry::At)
                .ok_or_else(|| Error::InvalidArgument(format!("{field}.at: not a valid timestamp")))
        }
    }
}

/// The status of a failed upload, with the committed size as metadata when known.
fn upload_status(failure: UploadError) -> Status {
    let mut status = to_status(failure.error);
    if let Some(committed) = failure.committed
        && let Ok(value) = committed.to_string().parse()
    {
        status.metadata_mut().insert(COMMITTED_SIZE_HEADER, value);
    }
    status
}

#[tonic::async_trait]
impl ArtifactService for ArtifactApi {
    type ReadFileStream = futures::stream::BoxStream<'static, Result<ReadFileResponse, Status>>;

    async fn create_artifact(
        &self,
        request: Request<CreateArtifactRequest>,
    ) -> Result<Response<CreateArtifactResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let new = async {
            Ok::<_, Error>(NewArtifact {
                workspace: req.workspace,
                category: req.category,
                data: req.data,
                files: req
                    .files
                    .into_iter()
                    .map(|f| FileEntry {
                        path: f.path,
                        sha256: f.sha256,
                        size: f.size,
                        mode: f.mode,
                        symlink: f.symlink,
                    })
                    .collect(),
                expiry: expiry_from_proto("expiry", req.expiry)?,
                work_request_id: req.work_request_id,
                attempt: req.attempt,
            })
        }
        .await;
        let created = match new {
            Ok(new) => self.artifacts.create(&caller, new).await,
            Err(e) => Err(e),
        };
        respond(created.map(|c| CreateArtifactResponse {
            artifact: Some(artifact(c.artifact)),
            missing: c.missing,
        }))
    }

    async fn upload_file(
        &self,
        request: Request<Streaming<UploadFileRequest>>,
    ) -> Result<Response<UploadFileResponse>, Status> {
        let caller = identity(&request)?;
        let chunks = request.into_inner().map(|message| {
            message
                .map(|m| UploadChunk {
                    artifact_id: m.artifact_id,
                    path: m.path,
                    offset: m.offset,
                    data: m.data.into(),
                    finish: m.finish,
                })
                .map_err(|status| {
                    Error::InvalidArgument(format!(
                        "the upload stream failed: {}",
                        status.message()
                    ))
                })
        });
        let status = self
            .artifacts
            .upload(&caller, Box::pin(chunks))
            .await
            .map_err(upload_status)?;
        Ok(Response::new(UploadFileResponse {
            committed_size: status.committed_size,
            complete: status.complete,
            artifact_complete: status.artifact_complete,
        }))
    }

    async fn query_upload(
        &self,
        request: Request<QueryUploadRequest>,
    ) -> Result<Response<QueryUploadResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        respond(
            self.artifacts
                .query_upload(&caller, &req.artifact_id, &req.path)
                .await
                .map(|s| QueryUploadResponse {
                    committed_size: s.committed_size,
                    complete: s.complete,
                }),
        )
    }

    async fn read_file(
        &self,
        request: Request<ReadFileRequest>,
    ) -> Result<Response<Self::ReadFileStream>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let pieces = self
            .artifacts
            .read(&caller, &req.artifact_id, &req.path, req.offset, req.limit)
            .await
            .map_err(to_status)?;
        let stream = pieces.map(|piece| {
            piece
                .map(|p| ReadFileResponse {
                    offset: p.offset,
                    data: p.data.into(),
                    size: p.size,
                    sha256: p.sha256,
                })
                .map_err(to_status)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_artifact(
        &self,
        request: Request<GetArtifactRequest>,
    ) -> Result<Response<Artifact>, Status> {
        let caller = identity(&request)?;
        respond(
            self.artifacts
                .get(&caller, &request.get_ref().id)
                .await
                .map(artifact),
        )
    }

    async fn list_artifacts(
        &self,
        request: Request<ListArtifactsRequest>,
    ) -> Result<Response<ListArtifactsResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let query = ListQuery {
            workspace: req.workspace,
            category: req.category,
            created_by: req.created_by,
            work_request_id: req.work_request_id,
            collection: req.collection,
            include_incomplete: req.include_incomplete,
            page_size: req.page_size,
            page_token: req.page_token,
        };
        respond(
            self.artifacts
                .list(&caller, query)
                .await
                .map(|page| ListArtifactsResponse {
                    artifacts: page.artifacts.into_iter().map(artifact).collect(),
                    next_page_token: page.next_page_token,
                }),
        )
    }

    async fn relate_artifacts(
        &self,
        request: Request<RelateArtifactsRequest>,
    ) -> Result<Response<RelateArtifactsResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let changed = match kind_from_proto(req.kind) {
            Ok(kind) => {
                self.artifacts
                    .relate(&caller, &req.from_id, &req.to_id, kind, req.remove)
                    .await
            }
            Err(e) => Err(e),
        };
        respond(changed.map(|changed| RelateArtifactsResponse { changed }))
    }

    async fn delete_artifact(
        &self,
        request: Request<DeleteArtifactRequest>,
    ) -> Result<Response<DeleteArtifactResponse>, Status> {
        let caller = identity(&request)?;
        respond(
            self.artifacts
                .delete(&caller, &request.get_ref().id)
                .await
                .map(|()| DeleteArtifactResponse {}),
        )
    }

    async fn set_expiry(
        &self,
        request: Request<SetExpiryRequest>,
    ) -> Result<Response<Artifact>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let set = match expiry_from_proto("expiry", req.expiry) {
            Ok(expiry) => self.artifacts.set_expiry(&caller, &req.id, expiry).await,
            Err(e) => Err(e),
        };
        respond(set.map(artifact))
    }
}
