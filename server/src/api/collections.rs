//! `berth.v1.CollectionService` on the wire; `artifacts::collections` does the work.

use berth_common::proto::collection_service_server::CollectionService;
use berth_common::proto::{
    AddToCollectionRequest, Collection, CollectionItem, CreateCollectionRequest,
    GetCollectionRequest, ListCollectionsRequest, ListCollectionsResponse, LookupItemRequest,
    RemoveFromCollectionRequest, Retention as WireRetention, UpdateCollectionRequest,
};
use tonic::{Request, Response, Status};

use crate::api::auth::identity;
use crate::api::error::respond;
use crate::api::{raw_from_proto, timestamp, timestamp_opt};
use berth_core::artifacts::collections::{
    CollectionView, Collections, ItemView, NewCollection, NewItem, Retention, RetentionInput,
};

/// The CollectionService implementation.
#[derive(Clone)]
pub struct CollectionApi {
    collections: Collections,
}

impl CollectionApi {
    /// The service over `collections`.
    pub fn new(collections: Collections) -> CollectionApi {
        CollectionApi { collections }
    }
}

fn retention_from_proto(retention: Option<&WireRetention>) -> RetentionInput {
    let Some(r) = retention else {
        return RetentionInput::default();
    };
    RetentionInput {
        keep_last: r.keep_last,
        keep_for: r.keep_for.as_ref().map(raw_from_proto),
        history: r.history.as_ref().map(raw_from_proto),
        metadata: r.metadata.as_ref().map(raw_from_proto),
    }
}

fn seconds(seconds: i64) -> prost_types::Duration {
    prost_types::Duration { seconds, nanos: 0 }
}

fn retention(r: Retention) -> WireRetention {
    WireRetention {
        keep_last: r.keep_last,
        keep_for: r.keep_seconds.map(seconds),
        history: Some(seconds(r.history_seconds)),
        metadata: Some(seconds(r.metadata_seconds)),
    }
}

fn item(view: ItemView) -> CollectionItem {
    CollectionItem {
        name: view.name,
        artifact_id: view
            .artifact_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        category: view.category,
        data: view.data.to_string(),
        pinned: view.pinned,
        added_at: Some(timestamp(view.added_at)),
        added_by: view.added_by.unwrap_or_default(),
        removed_at: timestamp_opt(view.removed_at),
        removed_why: view.removed_why.unwrap_or_default(),
        collection: view.collection,
    }
}

fn collection(view: CollectionView) -> Collection {
    Collection {
        workspace: view.workspace,
        name: view.name,
        category: view.category,
        retention: Some(retention(view.retention)),
        created_at: Some(timestamp(view.created_at)),
        items: view.items.into_iter().map(item).collect(),
        history: view.history.into_iter().map(item).collect(),
    }
}

#[tonic::async_trait]
impl CollectionService for CollectionApi {
    async fn create_collection(
        &self,
        request: Request<CreateCollectionRequest>,
    ) -> Result<Response<Collection>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let new = NewCollection {
            retention: retention_from_proto(req.retention.as_ref()),
            workspace: req.workspace,
            name: req.name,
            category: req.category,
        };
        respond(self.collections.create(&caller, new).await.map(collection))
    }

    async fn get_collection(
        &self,
        request: Request<GetCollectionRequest>,
    ) -> Result<Response<Collection>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        respond(
            self.collections
                .get(&caller, &req.workspace, &req.name, req.history)
                .await
                .map(collection),
        )
    }

    async fn list_collections(
        &self,
        request: Request<ListCollectionsRequest>,
    ) -> Result<Response<ListCollectionsResponse>, Status> {
        let caller = identity(&request)?;
        respond(
            self.collections
                .list(&caller, &request.get_ref().workspace)
                .await
                .map(|views| ListCollectionsResponse {
                    collections: views.into_iter().map(collection).collect(),
                }),
        )
    }

    async fn update_collection(
        &self,
        request: Request<UpdateCollectionRequest>,
    ) -> Result<Response<Collection>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        respond(
            self.collections
                .update(
                    &caller,
                    &req.workspace,
                    &req.name,
                    retention_from_proto(req.retention.as_ref()),
                )
                .await
                .map(collection),
        )
    }

    async fn add_to_collection(
        &self,
        request: Request<AddToCollectionRequest>,
    ) -> Result<Response<CollectionItem>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let new = NewItem {
            workspace: req.workspace,
            collection: req.collection,
            name: req.name,
            artifact_id: req.artifact_id,
            pinned: req.pinned,
            replace: req.replace,
        };
        respond(self.collections.add(&caller, new).await.map(item))
    }

    async fn remove_from_collection(
        &self,
        request: Request<RemoveFromCollectionRequest>,
    ) -> Result<Response<CollectionItem>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        respond(
            self.collections
                .remove(&caller, &req.workspace, &req.collection, &req.name)
                .await
                .map(item),
        )
    }

    async fn lookup_item(
        &self,
        request: Request<LookupItemRequest>,
    ) -> Result<Response<CollectionItem>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        respond(
            self.collections
                .lookup(&caller, &req.workspace, &req.collection, &req.name)
                .await
                .map(item),
        )
    }
}
