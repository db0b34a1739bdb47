//! `berth collection ...`: create, show, list and configure collections; add, remove and
//! look up their items.

use std::time::Duration;

use berth_common::proto;
use berth_common::proto::collection_service_client::CollectionServiceClient;

use super::{Collections, Server, show};
use crate::args::{CollectionCommand, CollectionCreateArgs, CollectionSetArgs};
use crate::error::CliError;
use crate::output::Printer;
use crate::values::{Setting, to_proto_duration};

pub(super) async fn execute(
    command: CollectionCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        CollectionCommand::Create(args) => {
            show(
                server,
                printer,
                Collections::create_collection,
                create_request(args),
            )
            .await
        }
        CollectionCommand::Get {
            name,
            workspace,
            history,
        } => {
            let get = proto::GetCollectionRequest {
                workspace: workspace.unwrap_or_default(),
                name,
                history,
            };
            show(server, printer, Collections::get_collection, get).await
        }
        CollectionCommand::List { workspace } => {
            let list = proto::ListCollectionsRequest {
                workspace: workspace.unwrap_or_default(),
            };
            show(server, printer, Collections::list_collections, list).await
        }
        CollectionCommand::Set(args) => set(args, server, printer).await,
        CollectionCommand::Add {
            collection,
            name,
            artifact,
            workspace,
            pin,
            replace,
        } => {
            let add = proto::AddToCollectionRequest {
                workspace: workspace.unwrap_or_default(),
                collection,
                name,
                artifact_id: artifact,
                pinned: pin,
                replace,
            };
            show(server, printer, Collections::add_to_collection, add).await
        }
        CollectionCommand::Rm {
            collection,
            name,
            workspace,
        } => {
            let remove = proto::RemoveFromCollectionRequest {
                workspace: workspace.unwrap_or_default(),
                collection,
                name,
            };
            show(server, printer, Collections::remove_from_collection, remove).await
        }
        CollectionCommand::Lookup {
            collection,
            name,
            workspace,
        } => {
            let lookup = proto::LookupItemRequest {
                workspace: workspace.unwrap_or_default(),
                collection,
                name,
            };
            show(server, printer, Collections::lookup_item, lookup).await
        }
    }
}

fn proto_span(duration: Option<Duration>) -> Option<prost_types::Duration> {
    duration.map(to_proto_duration)
}

pub(crate) fn create_request(args: CollectionCreateArgs) -> proto::CreateCollectionRequest {
    proto::CreateCollectionRequest {
        workspace: args.workspace.unwrap_or_default(),
        name: args.name,
        category: args.category,
        retention: Some(proto::Retention {
            keep_last: args.keep_last,
            keep_for: proto_span(args.keep_for),
            history: proto_span(args.history),
            metadata: proto_span(args.metadata),
        }),
    }
}

/// UpdateCollection replaces the whole policy, so the current one is read first and only
/// what was given changes.
async fn set(
    args: CollectionSetArgs,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    let workspace = args.workspace.unwrap_or_default();
    let current = server
        .call(
            Collections::get_collection,
            proto::GetCollectionRequest {
                workspace: workspace.clone(),
                name: args.name.clone(),
                history: false,
            },
        )
        .await?;
    let mut retention = current.retention.unwrap_or_default();
    match args.keep_last {
        Some(Setting::Set(n)) => retention.keep_last = Some(n),
        Some(Setting::Clear) => retention.keep_last = None,
        None => {}
    }
    match args.keep_for {
        Some(Setting::Set(d)) => retention.keep_for = Some(to_proto_duration(d)),
        Some(Setting::Clear) => retention.keep_for = None,
        None => {}
    }
    if let Some(d) = args.history {
        retention.history = Some(to_proto_duration(d));
    }
    if let Some(d) = args.metadata {
        retention.metadata = Some(to_proto_duration(d));
    }
    let update = proto::UpdateCollectionRequest {
        workspace,
        name: args.name,
        retention: Some(retention),
    };
    show(server, printer, Collections::update_collection, update).await
}

impl super::Service for Collections {
    fn new(channel: tonic::transport::Channel, auth: berth_common::client::BearerAuth) -> Self {
        CollectionServiceClient::with_interceptor(channel, auth)
    }
}
