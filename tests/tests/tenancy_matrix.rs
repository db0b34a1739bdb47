//! The tenancy matrix: every RPC that touches a workspace's things, called over real gRPC
//! by every kind of caller — an admin, the workspace's owner, contributor and viewer, the
//! owner of another workspace, and a user with no role anywhere — against a private and a
//! public workspace.
//!
//! What each caller must get follows from the RPC's policy (read, write, manage, admin
//! only): allowed callers get an answer (each cell acts on a fresh target, so a cancel is
//! never refused because an earlier cell already cancelled it); a caller who may see the
//! workspace but lacks the role gets PERMISSION_DENIED naming the role; a caller who may
//! not see it gets NOT_FOUND, worded as for something that does not exist.
//!
//! [`every_rpc_is_in_the_tenancy_matrix_or_said_to_be_outside_workspaces`] walks the
//! descriptor set, so a new RPC must be placed in the matrix or said to touch no workspace.
//! A failing matrix prints every wrong cell at once.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::{BTreeMap, BTreeSet};

use berth_common::client::BearerAuth;
use berth_common::proto::collection_service_client::CollectionServiceClient;
use berth_common::proto::notification_service_client::NotificationServiceClient;
use berth_common::proto::service_service_client::ServiceServiceClient;
use berth_common::proto::template_service_client::TemplateServiceClient;
use berth_common::proto::topic_service_client::TopicServiceClient;
use berth_common::proto::trigger_service_client::TriggerServiceClient;
use berth_common::proto::work_request_service_client::WorkRequestServiceClient;
use berth_common::proto::workspace_service_client::WorkspaceServiceClient;
use berth_common::proto::{
    AddMemberRequest, AdjustPriorityRequest, ArchiveWorkspaceRequest, CancelWorkRequestRequest,
    GetWorkRequestRequest, GetWorkspaceRequest, ListMembersRequest, ListQueueRequest,
    ListWorkRequestsRequest, RemoveMemberRequest, RetryWorkRequestRequest, Role, StreamLogsRequest,
    SubmitWorkRequestRequest, SubmitWorkflowRequest, UnblockStrategy, UnblockWorkRequestRequest,
    UpdateWorkspaceRequest, WorkRequestStatus, WorkflowStep, WorkspaceRole,
};
use berth_common::proto::{
    AddToCollectionRequest, CreateCollectionRequest, GetCollectionRequest, ListCollectionsRequest,
    LookupItemRequest, RemoveFromCollectionRequest, Retention, UpdateCollectionRequest,
};
use berth_common::proto::{
    ArchiveTemplateRequest, CreateTemplateRequest, DeleteTemplateRequest, GetReleaseRequest,
    GetTemplateRequest, GetTemplateStatsRequest, JobTemplateChange, JobTemplateSpec,
    ListReleasesRequest, ListTemplatesRequest, RollbackTemplateRequest, RunTemplateRequest,
    UpdateTemplateRequest, create_template_request, update_template_request,
};
use berth_common::proto::{
    ArchiveTriggerRuleRequest, CreateTriggerRuleRequest, FireTriggerRuleRequest,
    GetTriggerRuleRequest, ListTriggerEventsRequest, ListTriggerRulesRequest,
    PauseTriggerRuleRequest, PreviewTriggerScheduleRequest, ResumeTriggerRuleRequest,
    ScheduleConfig, TriggerAction, UpdateTriggerRuleRequest, create_trigger_rule_request,
    update_trigger_rule_request,
};
use berth_common::proto::{
    ArtifactRelationKind, CreateArtifactRequest, DeleteArtifactRequest, Expiry, GetArtifactRequest,
    ListArtifactsRequest, QueryUploadRequest, RelateArtifactsRequest, SetExpiryRequest, expiry,
};
use berth_common::proto::{
    CreateChannelRequest, CreateReactionRequest, DeleteChannelRequest, DeleteReactionRequest,
    GetChannelRequest, ListChannelsRequest, ListDeliveriesRequest, ListReactionsRequest,
    RedeliverDeliveryRequest, RotateChannelSecretRequest, TestChannelRequest, UpdateChannelRequest,
    WebhookSettings, create_channel_request,
};
use berth_common::proto::{
    CreateServiceRequest, DeleteServiceRequest, DeployServiceRequest, GetServiceHistoryRequest,
    GetServiceRequest, ListServiceEndpointsRequest, ListServicesRequest, Process,
    RunServiceCommandRequest, ScaleServiceRequest, StreamServiceLogsRequest, UpdateServiceRequest,
};
use berth_common::proto::{
    CreateSubscriptionRequest, CreateTopicRequest, DeleteSubscriptionRequest, DeleteTopicRequest,
    GetSubscriptionRequest, GetTopicRequest, ListSubscriptionsRequest, ListTopicsRequest,
    PingTopicRequest, PublishMessage, PublishRequest, SeekSubscriptionRequest, SubscribeOpen,
    SubscribeRequest, SubscribeResponse, TopicGrant, UpdateTopicRequest, seek_subscription_request,
    subscribe_request, subscribe_response,
};
use berth_tests::artifacts::{create, read, upload, upload_range};
use berth_tests::{SimOptions, TestServer, query, spec, wait_terminal};
use prost::Message as _;
use tonic::Code;

/// What an RPC needs of its caller in the workspace it touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    /// Viewer or more (or a public workspace).
    Read,
    /// Contributor or more.
    Write,
    /// Owner.
    Manage,
    /// Server admins only, whatever their role.
    AdminOnly,
}

/// Who calls, relative to the workspace the call touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Caller {
    Admin,
    Owner,
    Contributor,
    Viewer,
    /// Owner of another workspace, no role in this one.
    OtherOwner,
    /// A user with no role anywhere.
    Nobody,
}

const CALLERS: [Caller; 6] = [
    Caller::Admin,
    Caller::Owner,
    Caller::Contributor,
    Caller::Viewer,
    Caller::OtherOwner,
    Caller::Nobody,
];

/// What a cell should get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    Answered,
    /// PERMISSION_DENIED; the message must name this (a role, or "admin").
    Denied(&'static str),
    NotFound,
}

fn expected(policy: Policy, caller: Caller, public: bool) -> Expected {
    use Caller::*;
    use Expected::*;
    let stranger = matches!(caller, OtherOwner | Nobody);
    match policy {
        Policy::AdminOnly => match caller {
            Admin => Answered,
            _ => Denied("admin"),
        },
        _ if caller == Admin => Answered,
        _ if stranger && !public => NotFound,
        Policy::Read => Answered,
        Policy::Write => match caller {
            Owner | Contributor => Answered,
            _ => Denied("contributor"),
        },
        Policy::Manage => match caller {
            Owner => Answered,
            _ => Denied("owner"),
        },
    }
}

/// The RPCs of the matrix and their policies.
const MATRIX: &[(&str, Policy)] = &[
    (
        "/berth.v1.WorkRequestService/SubmitWorkRequest",
        Policy::Write,
    ),
    ("/berth.v1.WorkRequestService/SubmitWorkflow", Policy::Write),
    ("/berth.v1.WorkRequestService/GetWorkRequest", Policy::Read),
    (
        "/berth.v1.WorkRequestService/ListWorkRequests",
        Policy::Read,
    ),
    ("/berth.v1.WorkRequestService/StreamLogs", Policy::Read),
    ("/berth.v1.WorkRequestService/ListQueue", Policy::Read),
    (
        "/berth.v1.WorkRequestService/CancelWorkRequest",
        Policy::Write,
    ),
    (
        "/berth.v1.WorkRequestService/RetryWorkRequest",
        Policy::Write,
    ),
    (
        "/berth.v1.WorkRequestService/UnblockWorkRequest",
        Policy::Write,
    ),
    (
        "/berth.v1.WorkRequestService/AdjustPriority",
        Policy::AdminOnly,
    ),
    ("/berth.v1.WorkspaceService/GetWorkspace", Policy::Read),
    ("/berth.v1.WorkspaceService/ListMembers", Policy::Read),
    ("/berth.v1.WorkspaceService/UpdateWorkspace", Policy::Manage),
    ("/berth.v1.WorkspaceService/AddMember", Policy::Manage),
    ("/berth.v1.WorkspaceService/RemoveMember", Policy::Manage),
    (
        "/berth.v1.WorkspaceService/ArchiveWorkspace",
        Policy::Manage,
    ),
    (
        "/berth.v1.CollectionService/CreateCollection",
        Policy::Write,
    ),
    ("/berth.v1.CollectionService/GetCollection", Policy::Read),
    ("/berth.v1.CollectionService/ListCollections", Policy::Read),
    (
        "/berth.v1.CollectionService/UpdateCollection",
        Policy::Write,
    ),
    ("/berth.v1.CollectionService/AddToCollection", Policy::Write),
    (
        "/berth.v1.CollectionService/RemoveFromCollection",
        Policy::Write,
    ),
    ("/berth.v1.CollectionService/LookupItem", Policy::Read),
    ("/berth.v1.ArtifactService/CreateArtifact", Policy::Write),
    ("/berth.v1.ArtifactService/UploadFile", Policy::Write),
    ("/berth.v1.ArtifactService/QueryUpload", Policy::Write),
    ("/berth.v1.ArtifactService/ReadFile", Policy::Read),
    ("/berth.v1.ArtifactService/GetArtifact", Policy::Read),
    ("/berth.v1.ArtifactService/ListArtifacts", Policy::Read),
    ("/berth.v1.ArtifactService/RelateArtifacts", Policy::Write),
    ("/berth.v1.ArtifactService/DeleteArtifact", Policy::Write),
    ("/berth.v1.ArtifactService/SetExpiry", Policy::Write),
    // Job templates: reads for viewers, every change for contributors.
    ("/berth.v1.TemplateService/CreateTemplate", Policy::Write),
    ("/berth.v1.TemplateService/GetTemplate", Policy::Read),
    ("/berth.v1.TemplateService/ListTemplates", Policy::Read),
    ("/berth.v1.TemplateService/UpdateTemplate", Policy::Write),
    ("/berth.v1.TemplateService/RollbackTemplate", Policy::Write),
    ("/berth.v1.TemplateService/ListReleases", Policy::Read),
    ("/berth.v1.TemplateService/GetRelease", Policy::Read),
    ("/berth.v1.TemplateService/ArchiveTemplate", Policy::Write),
    ("/berth.v1.TemplateService/DeleteTemplate", Policy::Write),
    // Runs and their statistics.
    ("/berth.v1.TemplateService/RunTemplate", Policy::Write),
    ("/berth.v1.TemplateService/GetTemplateStats", Policy::Read),
    // Services: reads for viewers, every change (and one-off runs) for contributors.
    ("/berth.v1.ServiceService/CreateService", Policy::Write),
    ("/berth.v1.ServiceService/GetService", Policy::Read),
    ("/berth.v1.ServiceService/ListServices", Policy::Read),
    ("/berth.v1.ServiceService/UpdateService", Policy::Write),
    ("/berth.v1.ServiceService/ScaleService", Policy::Write),
    ("/berth.v1.ServiceService/DeployService", Policy::Write),
    ("/berth.v1.ServiceService/GetServiceHistory", Policy::Read),
    (
        "/berth.v1.ServiceService/ListServiceEndpoints",
        Policy::Read,
    ),
    ("/berth.v1.ServiceService/StreamServiceLogs", Policy::Read),
    ("/berth.v1.ServiceService/RunServiceCommand", Policy::Write),
    ("/berth.v1.ServiceService/DeleteService", Policy::Write),
    // Trigger rules: reads for viewers, every change and a firing by hand for contributors.
    ("/berth.v1.TriggerService/CreateTriggerRule", Policy::Write),
    ("/berth.v1.TriggerService/GetTriggerRule", Policy::Read),
    ("/berth.v1.TriggerService/ListTriggerRules", Policy::Read),
    ("/berth.v1.TriggerService/UpdateTriggerRule", Policy::Write),
    ("/berth.v1.TriggerService/PauseTriggerRule", Policy::Write),
    ("/berth.v1.TriggerService/ResumeTriggerRule", Policy::Write),
    ("/berth.v1.TriggerService/ArchiveTriggerRule", Policy::Write),
    ("/berth.v1.TriggerService/FireTriggerRule", Policy::Write),
    ("/berth.v1.TriggerService/ListTriggerEvents", Policy::Read),
    (
        "/berth.v1.TriggerService/PreviewTriggerSchedule",
        Policy::Read,
    ),
    // Notifications: reads (never a secret) for viewers, every change, a test ping and a
    // redelivery for contributors.
    ("/berth.v1.NotificationService/CreateChannel", Policy::Write),
    ("/berth.v1.NotificationService/GetChannel", Policy::Read),
    ("/berth.v1.NotificationService/ListChannels", Policy::Read),
    ("/berth.v1.NotificationService/UpdateChannel", Policy::Write),
    (
        "/berth.v1.NotificationService/RotateChannelSecret",
        Policy::Write,
    ),
    ("/berth.v1.NotificationService/DeleteChannel", Policy::Write),
    ("/berth.v1.NotificationService/TestChannel", Policy::Write),
    ("/berth.v1.NotificationService/ListDeliveries", Policy::Read),
    (
        "/berth.v1.NotificationService/RedeliverDelivery",
        Policy::Write,
    ),
    (
        "/berth.v1.NotificationService/CreateReaction",
        Policy::Write,
    ),
    ("/berth.v1.NotificationService/ListReactions", Policy::Read),
    (
        "/berth.v1.NotificationService/DeleteReaction",
        Policy::Write,
    ),
    // Topics: reads for viewers, topic changes for contributors. Publishing and pinging
    // act on a topic that grants producing to role:contributor; the subscription cells act
    // on a system topic, which anyone who may read the workspace consumes; deleting and
    // seeking another user's subscription also needs a contributor.
    ("/berth.v1.TopicService/CreateTopic", Policy::Write),
    ("/berth.v1.TopicService/GetTopic", Policy::Read),
    ("/berth.v1.TopicService/ListTopics", Policy::Read),
    ("/berth.v1.TopicService/UpdateTopic", Policy::Write),
    ("/berth.v1.TopicService/DeleteTopic", Policy::Write),
    ("/berth.v1.TopicService/Publish", Policy::Write),
    ("/berth.v1.TopicService/Ping", Policy::Write),
    ("/berth.v1.TopicService/Subscribe", Policy::Read),
    ("/berth.v1.TopicService/CreateSubscription", Policy::Read),
    ("/berth.v1.TopicService/GetSubscription", Policy::Read),
    ("/berth.v1.TopicService/ListSubscriptions", Policy::Read),
    ("/berth.v1.TopicService/DeleteSubscription", Policy::Write),
    ("/berth.v1.TopicService/SeekSubscription", Policy::Write),
];

/// RPCs that touch no workspace's things, and why; each is covered by its own tests and
/// by the role matrix in `auth_matrix.rs`.
const OUTSIDE_WORKSPACES: &[(&str, &str)] = &[
    (
        "/berth.v1.TokenService/CreateToken",
        "tokens belong to users",
    ),
    (
        "/berth.v1.TokenService/ListTokens",
        "tokens belong to users",
    ),
    (
        "/berth.v1.TokenService/EnableToken",
        "tokens belong to users",
    ),
    (
        "/berth.v1.TokenService/DisableToken",
        "tokens belong to users",
    ),
    (
        "/berth.v1.TokenService/DeleteToken",
        "tokens belong to users",
    ),
    ("/berth.v1.UserService/CreateUser", "users are server-wide"),
    ("/berth.v1.UserService/ListUsers", "users are server-wide"),
    ("/berth.v1.UserService/GetUser", "users are server-wide"),
    ("/berth.v1.UserService/DisableUser", "users are server-wide"),
    ("/berth.v1.UserService/EnableUser", "users are server-wide"),
    ("/berth.v1.UserService/DeleteUser", "users are server-wide"),
    ("/berth.v1.WorkerService/ListWorkers", "the fleet is shared"),
    ("/berth.v1.WorkerService/GetWorker", "the fleet is shared"),
    (
        "/berth.v1.WorkerService/EnableWorker",
        "the fleet is shared",
    ),
    (
        "/berth.v1.WorkerService/DisableWorker",
        "the fleet is shared",
    ),
    ("/berth.v1.WorkerService/DrainWorker", "the fleet is shared"),
    (
        "/berth.v1.WorkerService/RestrictWorker",
        "admins assign hosts",
    ),
    (
        "/berth.v1.WorkspaceService/CreateWorkspace",
        "admins create workspaces",
    ),
    (
        "/berth.v1.WorkspaceService/ListWorkspaces",
        "lists only what the caller may see; see workspaces_each_caller_lists",
    ),
    ("/berth.v1.AgentService/Connect", "worker tokens only"),
    ("/berth.v1.AgentService/AppendLog", "worker tokens only"),
    (
        "/berth.v1.AgentService/KeepContainers",
        "worker tokens only",
    ),
];

/// Every method of every Berth service, from the compiled descriptors.
fn berth_methods() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(berth_common::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let mut methods = BTreeSet::new();
    for file in &set.file {
        if !file.package().starts_with("berth") {
            continue;
        }
        for service in &file.service {
            for method in &service.method {
                methods.insert(format!(
                    "/{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    methods
}

#[test]
fn every_rpc_is_in_the_tenancy_matrix_or_said_to_be_outside_workspaces() {
    let placed: Vec<&str> = MATRIX
        .iter()
        .map(|(path, _)| *path)
        .chain(OUTSIDE_WORKSPACES.iter().map(|(path, _)| *path))
        .collect();
    let unique: BTreeSet<String> = placed.iter().map(|p| (*p).to_owned()).collect();
    assert_eq!(unique.len(), placed.len(), "an RPC is placed twice");
    let methods = berth_methods();
    let missing: Vec<_> = methods.difference(&unique).collect();
    let unknown: Vec<_> = unique.difference(&methods).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "RPCs neither in MATRIX nor in OUTSIDE_WORKSPACES: {missing:?}\n\
         placed but not in any .proto: {unknown:?}"
    );
}

/// One workspace under test with its members' tokens.
struct Tenancy {
    tokens: BTreeMap<Caller, String>,
}

/// Makes `name` (public or not) with an owner, a contributor and a viewer, and gives
/// `other_owner` ownership of a workspace of their own.
async fn tenancy(server: &TestServer, name: &str, public: bool) -> Tenancy {
    query(
        &server.database_url,
        &format!(
            "INSERT INTO workspaces (id, name, public) VALUES \
             (gen_random_uuid(), '{name}', {public}), (gen_random_uuid(), '{name}-other', false)"
        ),
    )
    .await;
    let mut tokens = BTreeMap::new();
    tokens.insert(Caller::Admin, server.admin_token.clone());
    for (caller, role, workspace) in [
        (Caller::Owner, "owner", name.to_owned()),
        (Caller::Contributor, "contributor", name.to_owned()),
        (Caller::Viewer, "viewer", name.to_owned()),
        (Caller::OtherOwner, "owner", format!("{name}-other")),
    ] {
        let user = format!("{name}-{role}-{caller:?}").to_lowercase();
        let (_, token) = server.create_token_without_roles(Role::User, &user).await;
        server.set_role(&workspace, &user, role).await;
        tokens.insert(caller, token);
    }
    let (_, nobody) = server
        .create_token_without_roles(Role::User, &format!("{name}-nobody"))
        .await;
    tokens.insert(Caller::Nobody, nobody);
    Tenancy { tokens }
}

fn work(
    token: &str,
    channel: tonic::transport::Channel,
) -> WorkRequestServiceClient<berth_tests::Authed> {
    WorkRequestServiceClient::with_interceptor(channel, BearerAuth::new(token))
}

fn workspaces(
    token: &str,
    channel: tonic::transport::Channel,
) -> WorkspaceServiceClient<berth_tests::Authed> {
    WorkspaceServiceClient::with_interceptor(channel, BearerAuth::new(token))
}

fn collections(
    token: &str,
    channel: tonic::transport::Channel,
) -> CollectionServiceClient<berth_tests::Authed> {
    CollectionServiceClient::with_interceptor(channel, BearerAuth::new(token))
}

/// For a CollectionService cell: a collection `c-CELL` of category `package` in
/// `workspace` with an item `item`, and an artifact to add; returns "COLLECTION ARTIFACT".
async fn collection_target(server: &TestServer, workspace: &str, cell: usize) -> String {
    let collection = format!("c-{cell}");
    let artifact = uuid::Uuid::new_v4();
    query(
        &server.database_url,
        &format!(
            "INSERT INTO artifacts (id, workspace_id, store_id, category, complete) \
             SELECT '{artifact}', w.id, (SELECT id FROM file_stores ORDER BY name LIMIT 1), 'package', true \
             FROM workspaces w WHERE w.name = '{workspace}'"
        ),
    )
    .await;
    let mut admin = collections(&server.admin_token, server.channel().await);
    admin
        .create_collection(CreateCollectionRequest {
            workspace: workspace.to_owned(),
            name: collection.clone(),
            category: "package".into(),
            retention: None,
        })
        .await
        .unwrap();
    admin
        .add_to_collection(AddToCollectionRequest {
            workspace: workspace.to_owned(),
            collection: collection.clone(),
            name: "item".into(),
            artifact_id: artifact.to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    format!("{collection} {artifact}")
}

/// A request in `workspace` that no worker takes (it requires a label none has).
fn parked(workspace: &str) -> SubmitWorkRequestRequest {
    SubmitWorkRequestRequest {
        spec: Some(spec(&["true"])),
        workspace: workspace.to_owned(),
        requirements: [("parked".to_owned(), "yes".to_owned())].into(),
        ..Default::default()
    }
}

/// Makes, with the admin token, what the cell for `rpc` acts on, and returns its id (or
/// user name): a fresh one per cell.
async fn target(server: &TestServer, rpc: &str, workspace: &str, cell: usize) -> String {
    if rpc.starts_with("/berth.v1.ArtifactService/") {
        return artifact_target(server, rpc, workspace, cell).await;
    }
    if matches!(
        rpc,
        "/berth.v1.TemplateService/RunTemplate" | "/berth.v1.TemplateService/GetTemplateStats"
    ) {
        return run_template_target(server, workspace, cell).await;
    }
    if rpc.starts_with("/berth.v1.TemplateService/") {
        return template_target(server, rpc, workspace, cell).await;
    }
    if rpc.starts_with("/berth.v1.ServiceService/") {
        return service_target(server, rpc, workspace, cell).await;
    }
    if rpc.starts_with("/berth.v1.TriggerService/") {
        return trigger_target(server, rpc, workspace, cell).await;
    }
    if rpc.starts_with("/berth.v1.NotificationService/") {
        return notification_target(server, workspace, cell).await;
    }
    if rpc.starts_with("/berth.v1.TopicService/") {
        return topic_target(server, rpc, workspace, cell).await;
    }
    let mut admin = work(&server.admin_token, server.channel().await);
    let submitted = match rpc {
        "/berth.v1.WorkRequestService/RetryWorkRequest" => {
            // A request that fails on the simulated worker.
            let failing = admin
                .submit_work_request(SubmitWorkRequestRequest {
                    spec: Some(spec(&["sh", "-c", "exit 1"])),
                    workspace: workspace.to_owned(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            wait_terminal(server, &failing.id).await;
            return failing.id;
        }
        "/berth.v1.WorkRequestService/UnblockWorkRequest" => SubmitWorkRequestRequest {
            unblock: UnblockStrategy::Manual as i32,
            ..parked(workspace)
        },
        "/berth.v1.WorkspaceService/RemoveMember" => {
            let user = format!("{workspace}-member-{cell}");
            server.create_token_without_roles(Role::User, &user).await;
            server.set_role(workspace, &user, "viewer").await;
            return user;
        }
        "/berth.v1.WorkspaceService/AddMember" => {
            let user = format!("{workspace}-joiner-{cell}");
            server.create_token_without_roles(Role::User, &user).await;
            return user;
        }
        "/berth.v1.CollectionService/CreateCollection" => return format!("made-{cell}"),
        collection if collection.starts_with("/berth.v1.CollectionService/") => {
            return collection_target(server, workspace, cell).await;
        }
        _ => parked(workspace),
    };
    admin
        .submit_work_request(submitted)
        .await
        .unwrap()
        .into_inner()
        .id
}

/// What an ArtifactService cell acts on, made by the admin: an uploaded artifact (its id),
/// one with a file still to upload (`ID CONTENT`), or two artifacts (`ID ID`).
async fn artifact_target(server: &TestServer, rpc: &str, workspace: &str, cell: usize) -> String {
    let mut admin = server.artifacts(&server.admin_token).await;
    let content = format!("cell {cell} of the matrix");
    let made = create(
        &mut admin,
        workspace,
        "package",
        &[("f", content.as_bytes())],
    )
    .await;
    let id = made.artifact.unwrap().id;
    match rpc {
        "/berth.v1.ArtifactService/UploadFile" | "/berth.v1.ArtifactService/QueryUpload" => {
            format!("{id} {content}")
        }
        "/berth.v1.ArtifactService/RelateArtifacts" => {
            upload(&mut admin, &id, "f", content.as_bytes()).await;
            let other = create(&mut admin, workspace, "package", &[]).await;
            format!("{id} {}", other.artifact.unwrap().id)
        }
        _ => {
            upload(&mut admin, &id, "f", content.as_bytes()).await;
            id
        }
    }
}

fn templates(
    token: &str,
    channel: tonic::transport::Channel,
) -> TemplateServiceClient<berth_tests::Authed> {
    TemplateServiceClient::with_interceptor(channel, BearerAuth::new(token))
}

/// A job template `name` in `workspace` whose runs no worker takes.
fn parked_template(workspace: &str, name: &str) -> CreateTemplateRequest {
    CreateTemplateRequest {
        workspace: workspace.to_owned(),
        name: name.to_owned(),
        spec: Some(create_template_request::Spec::Job(JobTemplateSpec {
            spec: Some(spec(&["true"])),
            requirements: [("parked".to_owned(), "yes".to_owned())].into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// What a TemplateService cell acts on, made by the admin: a fresh template `t-CELL`
/// with two releases (so a rollback has somewhere to go), or for CreateTemplate only
/// the name to give.
async fn template_target(server: &TestServer, rpc: &str, workspace: &str, cell: usize) -> String {
    let name = format!("t-{cell}");
    if rpc == "/berth.v1.TemplateService/CreateTemplate" {
        return name;
    }
    let mut admin = templates(&server.admin_token, server.channel().await);
    admin
        .create_template(parked_template(workspace, &name))
        .await
        .unwrap();
    admin
        .update_template(UpdateTemplateRequest {
            workspace: workspace.to_owned(),
            name: name.clone(),
            change: Some(update_template_request::Change::Job(JobTemplateChange {
                env: [("CELL".to_owned(), cell.to_string())].into(),
                ..Default::default()
            })),
            ..Default::default()
        })
        .await
        .unwrap();
    name
}

/// Calls a TemplateService `rpc` as `token` on the template `name`; `Ok` if answered.
async fn call_templates(
    server: &TestServer,
    rpc: &str,
    token: &str,
    workspace: &str,
    name: String,
) -> Result<(), tonic::Status> {
    let mut client = templates(token, server.channel().await);
    let ws = workspace.to_owned();
    match rpc {
        "/berth.v1.TemplateService/CreateTemplate" => {
            client
                .create_template(parked_template(workspace, &name))
                .await?;
        }
        "/berth.v1.TemplateService/GetTemplate" => {
            client
                .get_template(GetTemplateRequest {
                    workspace: ws,
                    name,
                    ..Default::default()
                })
                .await?;
        }
        "/berth.v1.TemplateService/ListTemplates" => {
            let listed = client
                .list_templates(ListTemplatesRequest {
                    workspace: ws,
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert!(
                listed.templates.iter().all(|t| t.workspace == workspace),
                "a listing of {workspace} holds another workspace's template"
            );
        }
        "/berth.v1.TemplateService/UpdateTemplate" => {
            client
                .update_template(UpdateTemplateRequest {
                    workspace: ws,
                    name,
                    change: Some(update_template_request::Change::Job(JobTemplateChange {
                        env: [("CALLED".to_owned(), "yes".to_owned())].into(),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .await?;
        }
        "/berth.v1.TemplateService/RollbackTemplate" => {
            client
                .rollback_template(RollbackTemplateRequest {
                    workspace: ws,
                    name,
                    version: 1,
                    ..Default::default()
                })
                .await?;
        }
        "/berth.v1.TemplateService/ListReleases" => {
            client
                .list_releases(ListReleasesRequest {
                    workspace: ws,
                    name,
                    ..Default::default()
                })
                .await?;
        }
        "/berth.v1.TemplateService/GetRelease" => {
            client
                .get_release(GetReleaseRequest {
                    workspace: ws,
                    name,
                    version: 2,
                    diff_against: 1,
                    ..Default::default()
                })
                .await?;
        }
        "/berth.v1.TemplateService/ArchiveTemplate" => {
            client
                .archive_template(ArchiveTemplateRequest {
                    workspace: ws,
                    name,
                    ..Default::default()
                })
                .await?;
        }
        "/berth.v1.TemplateService/DeleteTemplate" => {
            let deleted = client
                .delete_template(DeleteTemplateRequest {
                    workspace: ws,
                    name,
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert!(
                deleted.deleted,
                "an unused template is deleted: {deleted:?}"
            );
        }
        other => panic!("no call for {other} in the tenancy matrix"),
    }
    Ok(())
}

/// Calls an ArtifactService `rpc` as `token`; `Ok` if it was answered.
async fn call_artifacts(
    server: &TestServer,
    rpc: &str,
    token: &str,
    workspace: &str,
    target: String,
) -> Result<(), tonic::Status> {
    let mut client = server.artifacts(token).await;
    let (first, second) = target.split_once(' ').unwrap_or((&target, ""));
    let (first, second) = (first.to_owned(), second.to_owned());
    match rpc {
        "/berth.v1.ArtifactService/CreateArtifact" => {
            client
                .create_artifact(CreateArtifactRequest {
                    workspace: workspace.into(),
                    category: "package".into(),
                    ..Default::default()
                })
                .await?;
        }
        "/berth.v1.ArtifactService/UploadFile" => {
            let bytes = second.as_bytes();
            let done = upload_range(&mut client, &first, "f", bytes, 0, bytes.len(), true).await?;
            assert!(done.complete, "an answered upload completes the file");
        }
        "/berth.v1.ArtifactService/QueryUpload" => {
            client
                .query_upload(QueryUploadRequest {
                    artifact_id: first,
                    path: "f".into(),
                })
                .await?;
        }
        "/berth.v1.ArtifactService/ReadFile" => {
            read(&mut client, &first, "f", 0, 0).await?;
        }
        "/berth.v1.ArtifactService/GetArtifact" => {
            client
                .get_artifact(GetArtifactRequest { id: first })
                .await?;
        }
        "/berth.v1.ArtifactService/ListArtifacts" => {
            let page = client
                .list_artifacts(ListArtifactsRequest {
                    workspace: workspace.into(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert!(
                page.artifacts.iter().all(|a| a.workspace == workspace),
                "a listing of {workspace} holds another workspace's artifact"
            );
        }
        "/berth.v1.ArtifactService/RelateArtifacts" => {
            client
                .relate_artifacts(RelateArtifactsRequest {
                    from_id: first,
                    to_id: second,
                    kind: ArtifactRelationKind::RelatesTo as i32,
                    remove: false,
                })
                .await?;
        }
        "/berth.v1.ArtifactService/DeleteArtifact" => {
            client
                .delete_artifact(DeleteArtifactRequest { id: first })
                .await?;
        }
        "/berth.v1.ArtifactService/SetExpiry" => {
            client
                .set_expiry(SetExpiryRequest {
                    id: first,
                    expiry: Some(Expiry {
                        when: Some(expiry::When::Never(true)),
                    }),
                })
                .await?;
        }
        other => panic!("no call for {other} in the tenancy matrix"),
    }
    Ok(())
}

/// For a RunTemplate or GetTemplateStats cell: a job template `run-CELL` in `workspace`,
/// made by the admin, whose runs no worker takes, with one run already made; returns its
/// name.
async fn run_template_target(server: &TestServer, workspace: &str, cell: usize) -> String {
    let name = format!("run-{cell}");
    let mut admin = templates(&server.admin_token, server.channel().await);
    admin
        .create_template(parked_template(workspace, &name))
        .await
        .unwrap();
    admin
        .run_template(RunTemplateRequest {
            workspace: workspace.to_owned(),
            name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    name
}

/// Calls RunTemplate or GetTemplateStats as `token` on template `target`; `Ok` if it was
/// answered.
async fn call_template_runs(
    server: &TestServer,
    rpc: &str,
    token: &str,
    workspace: &str,
    target: String,
) -> Result<(), tonic::Status> {
    let mut client = templates(token, server.channel().await);
    match rpc {
        "/berth.v1.TemplateService/RunTemplate" => {
            let ran = client
                .run_template(RunTemplateRequest {
                    workspace: workspace.to_owned(),
                    name: target.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert_eq!(
                (ran.workspace.as_str(), ran.template.as_str()),
                (workspace, target.as_str())
            );
        }
        "/berth.v1.TemplateService/GetTemplateStats" => {
            let stats = client
                .get_template_stats(GetTemplateStatsRequest {
                    workspace: workspace.to_owned(),
                    name: target,
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert_eq!(stats.runs, 1, "{stats:?}");
        }
        other => panic!("no call for {other} in the tenancy matrix"),
    }
    Ok(())
}

/// Calls `rpc` as `token` on `workspace`'s thing `target`; `Ok` if it was answered.
async fn call(
    server: &TestServer,
    rpc: &str,
    token: &str,
    workspace: &str,
    target: String,
) -> Result<(), tonic::Status> {
    if rpc.starts_with("/berth.v1.ArtifactService/") {
        return call_artifacts(server, rpc, token, workspace, target).await;
    }
    if matches!(
        rpc,
        "/berth.v1.TemplateService/RunTemplate" | "/berth.v1.TemplateService/GetTemplateStats"
    ) {
        return call_template_runs(server, rpc, token, workspace, target).await;
    }
    if rpc.starts_with("/berth.v1.TemplateService/") {
        return call_templates(server, rpc, token, workspace, target).await;
    }
    if rpc.starts_with("/berth.v1.ServiceService/") {
        return call_services(server, rpc, token, workspace, target).await;
    }
    if rpc.starts_with("/berth.v1.TriggerService/") {
        return call_triggers(server, rpc, token, workspace, target).await;
    }
    if rpc.starts_with("/berth.v1.NotificationService/") {
        return call_notifications(server, rpc, token, workspace, target).await;
    }
    if rpc.starts_with("/berth.v1.TopicService/") {
        return call_topics(server, rpc, token, workspace, target).await;
    }
    let channel = server.channel().await;
    let mut work = work(token, channel.clone());
    let mut spaces = workspaces(token, channel.clone());
    let mut colls = collections(token, channel);
    let ws = workspace.to_owned();
    // CollectionService targets: "COLLECTION ARTIFACT".
    let (collection, artifact) = target
        .split_once(' ')
        .map(|(c, a)| (c.to_owned(), a.to_owned()))
        .unwrap_or_default();
    match rpc {
        "/berth.v1.WorkRequestService/SubmitWorkRequest" => {
            work.submit_work_request(parked(workspace)).await?;
        }
        "/berth.v1.WorkRequestService/SubmitWorkflow" => {
            work.submit_workflow(SubmitWorkflowRequest {
                name: "matrix".into(),
                workspace: ws,
                steps: vec![WorkflowStep {
                    name: "only".into(),
                    spec: Some(spec(&["true"])),
                    requirements: [("parked".to_owned(), "yes".to_owned())].into(),
                    ..Default::default()
                }],
            })
            .await?;
        }
        "/berth.v1.WorkRequestService/GetWorkRequest" => {
            work.get_work_request(GetWorkRequestRequest { id: target })
                .await?;
        }
        "/berth.v1.WorkRequestService/ListWorkRequests" => {
            let page = work
                .list_work_requests(ListWorkRequestsRequest {
                    workspace: ws.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert!(
                page.work_requests.iter().all(|r| r.workspace == ws),
                "a listing of {ws} holds another workspace's request"
            );
        }
        "/berth.v1.WorkRequestService/StreamLogs" => {
            let mut stream = work
                .stream_logs(StreamLogsRequest {
                    id: target,
                    ..Default::default()
                })
                .await?
                .into_inner();
            while stream.message().await?.is_some() {}
        }
        "/berth.v1.WorkRequestService/ListQueue" => {
            work.list_queue(ListQueueRequest {
                workspace: ws,
                limit: 0,
            })
            .await?;
        }
        "/berth.v1.WorkRequestService/CancelWorkRequest" => {
            work.cancel_work_request(CancelWorkRequestRequest { id: target })
                .await?;
        }
        "/berth.v1.WorkRequestService/RetryWorkRequest" => {
            work.retry_work_request(RetryWorkRequestRequest { id: target })
                .await?;
        }
        "/berth.v1.WorkRequestService/UnblockWorkRequest" => {
            work.unblock_work_request(UnblockWorkRequestRequest {
                id: target,
                accept: true,
            })
            .await?;
        }
        "/berth.v1.WorkRequestService/AdjustPriority" => {
            work.adjust_priority(AdjustPriorityRequest {
                id: target,
                delta: 1,
                set: None,
            })
            .await?;
        }
        "/berth.v1.WorkspaceService/GetWorkspace" => {
            spaces
                .get_workspace(GetWorkspaceRequest { name: ws })
                .await?;
        }
        "/berth.v1.WorkspaceService/ListMembers" => {
            spaces
                .list_members(ListMembersRequest { workspace: ws })
                .await?;
        }
        "/berth.v1.WorkspaceService/UpdateWorkspace" => {
            // A setting owners may change, set to what it already is.
            let current = server_public(server, workspace).await;
            spaces
                .update_workspace(UpdateWorkspaceRequest {
                    name: ws,
                    public: Some(current),
                    ..Default::default()
                })
                .await?;
        }
        "/berth.v1.WorkspaceService/AddMember" => {
            spaces
                .add_member(AddMemberRequest {
                    workspace: ws,
                    user: target,
                    role: WorkspaceRole::Viewer as i32,
                })
                .await?;
        }
        "/berth.v1.WorkspaceService/RemoveMember" => {
            spaces
                .remove_member(RemoveMemberRequest {
                    workspace: ws,
                    user: target,
                })
                .await?;
        }
        "/berth.v1.WorkspaceService/ArchiveWorkspace" => {
            spaces
                .archive_workspace(ArchiveWorkspaceRequest { name: ws })
                .await?;
        }
        "/berth.v1.CollectionService/CreateCollection" => {
            colls
                .create_collection(CreateCollectionRequest {
                    workspace: ws,
                    name: target,
                    category: "package".into(),
                    retention: None,
                })
                .await?;
        }
        "/berth.v1.CollectionService/GetCollection" => {
            let got = colls
                .get_collection(GetCollectionRequest {
                    workspace: ws,
                    name: collection,
                    history: true,
                })
                .await?
                .into_inner();
            assert_eq!(got.items.len(), 1);
        }
        "/berth.v1.CollectionService/ListCollections" => {
            let listed = colls
                .list_collections(ListCollectionsRequest {
                    workspace: ws.clone(),
                })
                .await?
                .into_inner();
            assert!(
                listed.collections.iter().all(|c| c.workspace == ws),
                "a listing of {ws} holds another workspace's collection"
            );
        }
        "/berth.v1.CollectionService/UpdateCollection" => {
            colls
                .update_collection(UpdateCollectionRequest {
                    workspace: ws,
                    name: collection,
                    retention: Some(Retention {
                        keep_last: Some(5),
                        ..Default::default()
                    }),
                })
                .await?;
        }
        "/berth.v1.CollectionService/AddToCollection" => {
            colls
                .add_to_collection(AddToCollectionRequest {
                    workspace: ws,
                    collection,
                    name: "added".into(),
                    artifact_id: artifact,
                    ..Default::default()
                })
                .await?;
        }
        "/berth.v1.CollectionService/RemoveFromCollection" => {
            colls
                .remove_from_collection(RemoveFromCollectionRequest {
                    workspace: ws,
                    collection,
                    name: "item".into(),
                })
                .await?;
        }
        "/berth.v1.CollectionService/LookupItem" => {
            colls
                .lookup_item(LookupItemRequest {
                    workspace: ws,
                    collection,
                    name: "item".into(),
                })
                .await?;
        }
        other => panic!("no call for {other} in the tenancy matrix"),
    }
    Ok(())
}

fn services(
    token: &str,
    channel: tonic::transport::Channel,
) -> ServiceServiceClient<berth_tests::Authed> {
    ServiceServiceClient::with_interceptor(channel, BearerAuth::new(token))
}

/// What a ServiceService cell acts on, made by the admin: a job template `st-CELL` whose
/// containers no worker takes, with a service `s-CELL` (one `web` replica) on its v1 and
/// a v2 to deploy; for CreateService only the template. Returns "TEMPLATE SERVICE".
async fn service_target(server: &TestServer, rpc: &str, workspace: &str, cell: usize) -> String {
    let template = format!("st-{cell}");
    let service = format!("s-{cell}");
    let mut admin = templates(&server.admin_token, server.channel().await);
    admin
        .create_template(parked_template(workspace, &template))
        .await
        .unwrap();
    if rpc == "/berth.v1.ServiceService/CreateService" {
        return format!("{template} {service}");
    }
    services(&server.admin_token, server.channel().await)
        .create_service(parked_service(workspace, &template, &service))
        .await
        .unwrap();
    admin
        .update_template(UpdateTemplateRequest {
            workspace: workspace.to_owned(),
            name: template.clone(),
            change: Some(update_template_request::Change::Job(JobTemplateChange {
                env: [("CELL".to_owned(), cell.to_string())].into(),
                ..Default::default()
            })),
            ..Default::default()
        })
        .await
        .unwrap();
    format!("{template} {service}")
}

/// A service `name` of one `web` replica running v1 of `template`.
fn parked_service(workspace: &str, template: &str, name: &str) -> CreateServiceRequest {
    CreateServiceRequest {
        workspace: workspace.to_owned(),
        name: name.to_owned(),
        template: template.to_owned(),
        version: 1,
        processes: [(
            "web".to_owned(),
            Process {
                replicas: 1,
                command: Vec::new(),
            },
        )]
        .into(),
        ..Default::default()
    }
}

/// Calls a ServiceService `rpc` as `token` on "TEMPLATE SERVICE"; `Ok` if answered.
async fn call_services(
    server: &TestServer,
    rpc: &str,
    token: &str,
    workspace: &str,
    target: String,
) -> Result<(), tonic::Status> {
    let mut client = services(token, server.channel().await);
    let (template, name) = target.split_once(' ').unwrap();
    let (ws, name) = (workspace.to_owned(), name.to_owned());
    match rpc {
        "/berth.v1.ServiceService/CreateService" => {
            let made = client
                .create_service(parked_service(workspace, template, &name))
                .await?
                .into_inner();
            assert_eq!(
                (made.workspace.as_str(), made.name.as_str()),
                (workspace, name.as_str())
            );
        }
        "/berth.v1.ServiceService/GetService" => {
            let got = client
                .get_service(GetServiceRequest {
                    workspace: ws,
                    name: name.clone(),
                })
                .await?
                .into_inner();
            assert_eq!(got.name, name);
        }
        "/berth.v1.ServiceService/ListServices" => {
            let listed = client
                .list_services(ListServicesRequest {
                    workspace: ws.clone(),
                })
                .await?
                .into_inner();
            assert!(listed.services.iter().any(|s| s.name == name));
            assert!(listed.services.iter().all(|s| s.workspace == ws));
        }
        "/berth.v1.ServiceService/UpdateService" => {
            client
                .update_service(UpdateServiceRequest {
                    workspace: ws,
                    name,
                    restart_policy: berth_common::proto::RestartPolicy::OnFailure as i32,
                    ..Default::default()
                })
                .await?;
        }
        "/berth.v1.ServiceService/ScaleService" => {
            client
                .scale_service(ScaleServiceRequest {
                    workspace: ws,
                    name,
                    replicas: [("web".to_owned(), 2)].into(),
                })
                .await?;
        }
        "/berth.v1.ServiceService/DeployService" => {
            client
                .deploy_service(DeployServiceRequest {
                    workspace: ws,
                    name,
                    version: 2,
                    ..Default::default()
                })
                .await?;
        }
        "/berth.v1.ServiceService/GetServiceHistory" => {
            let history = client
                .get_service_history(GetServiceHistoryRequest {
                    workspace: ws,
                    name,
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert!(
                !history.events.is_empty(),
                "a created service has a history"
            );
        }
        "/berth.v1.ServiceService/ListServiceEndpoints" => {
            client
                .list_service_endpoints(ListServiceEndpointsRequest {
                    workspace: ws,
                    name,
                })
                .await?;
        }
        "/berth.v1.ServiceService/StreamServiceLogs" => {
            let mut stream = client
                .stream_service_logs(StreamServiceLogsRequest {
                    workspace: ws,
                    name,
                    ..Default::default()
                })
                .await?
                .into_inner();
            while stream.message().await?.is_some() {}
        }
        "/berth.v1.ServiceService/RunServiceCommand" => {
            let ran = client
                .run_service_command(RunServiceCommandRequest {
                    workspace: ws,
                    name,
                    command: vec!["true".into()],
                    process: String::new(),
                })
                .await?
                .into_inner();
            assert_eq!(
                (ran.workspace.as_str(), ran.template.as_str()),
                (workspace, template)
            );
        }
        "/berth.v1.ServiceService/DeleteService" => {
            client
                .delete_service(DeleteServiceRequest {
                    workspace: ws,
                    name,
                })
                .await?;
        }
        other => panic!("no call for {other} in the tenancy matrix"),
    }
    Ok(())
}

fn triggers(
    token: &str,
    channel: tonic::transport::Channel,
) -> TriggerServiceClient<berth_tests::Authed> {
    TriggerServiceClient::with_interceptor(channel, BearerAuth::new(token))
}

/// A rule `name` in `workspace` that runs `template` every day at 03:00 (not within a
/// matrix run, so only firings by hand make work).
fn nightly_rule(workspace: &str, template: &str, name: &str) -> CreateTriggerRuleRequest {
    CreateTriggerRuleRequest {
        workspace: workspace.to_owned(),
        name: name.to_owned(),
        config: Some(create_trigger_rule_request::Config::Schedule(
            ScheduleConfig {
                cron: "0 3 * * *".into(),
                time_zone: "Europe/Berlin".into(),
                ..Default::default()
            },
        )),
        action: Some(TriggerAction {
            template: template.to_owned(),
            ..Default::default()
        }),
        paused: false,
    }
}

/// What a TriggerService cell acts on, made by the admin: a job template `tt-CELL` whose
/// runs no worker takes, with a rule `r-CELL` running it (for CreateTriggerRule only the
/// template). Returns "TEMPLATE RULE".
async fn trigger_target(server: &TestServer, rpc: &str, workspace: &str, cell: usize) -> String {
    let template = format!("tt-{cell}");
    let rule = format!("r-{cell}");
    templates(&server.admin_token, server.channel().await)
        .create_template(parked_template(workspace, &template))
        .await
        .unwrap();
    if rpc != "/berth.v1.TriggerService/CreateTriggerRule" {
        triggers(&server.admin_token, server.channel().await)
            .create_trigger_rule(nightly_rule(workspace, &template, &rule))
            .await
            .unwrap();
    }
    format!("{template} {rule}")
}

/// Calls a TriggerService `rpc` as `token` on "TEMPLATE RULE"; `Ok` if answered.
async fn call_triggers(
    server: &TestServer,
    rpc: &str,
    token: &str,
    workspace: &str,
    target: String,
) -> Result<(), tonic::Status> {
    let mut client = triggers(token, server.channel().await);
    let (template, name) = target.split_once(' ').unwrap();
    let (ws, name) = (workspace.to_owned(), name.to_owned());
    match rpc {
        "/berth.v1.TriggerService/CreateTriggerRule" => {
            let made = client
                .create_trigger_rule(nightly_rule(workspace, template, &name))
                .await?
                .into_inner();
            assert_eq!(
                (made.workspace.as_str(), made.name.as_str()),
                (workspace, name.as_str())
            );
        }
        "/berth.v1.TriggerService/GetTriggerRule" => {
            let got = client
                .get_trigger_rule(GetTriggerRuleRequest {
                    workspace: ws,
                    name: name.clone(),
                })
                .await?
                .into_inner();
            assert_eq!(got.name, name);
        }
        "/berth.v1.TriggerService/ListTriggerRules" => {
            let listed = client
                .list_trigger_rules(ListTriggerRulesRequest {
                    workspace: ws.clone(),
                    include_archived: true,
                })
                .await?
                .into_inner();
            assert!(listed.rules.iter().any(|r| r.name == name));
            assert!(listed.rules.iter().all(|r| r.workspace == ws));
        }
        "/berth.v1.TriggerService/UpdateTriggerRule" => {
            client
                .update_trigger_rule(UpdateTriggerRuleRequest {
                    workspace: ws,
                    name,
                    config: Some(update_trigger_rule_request::Config::Schedule(
                        ScheduleConfig {
                            cron: "30 4 * * *".into(),
                            time_zone: "Europe/Berlin".into(),
                            ..Default::default()
                        },
                    )),
                    action: None,
                })
                .await?;
        }
        "/berth.v1.TriggerService/PauseTriggerRule" => {
            let paused = client
                .pause_trigger_rule(PauseTriggerRuleRequest {
                    workspace: ws,
                    name,
                    note: "matrix".into(),
                })
                .await?
                .into_inner();
            assert!(!paused.active);
        }
        "/berth.v1.TriggerService/ResumeTriggerRule" => {
            let resumed = client
                .resume_trigger_rule(ResumeTriggerRuleRequest {
                    workspace: ws,
                    name,
                })
                .await?
                .into_inner();
            assert!(resumed.active);
        }
        "/berth.v1.TriggerService/ArchiveTriggerRule" => {
            let archived = client
                .archive_trigger_rule(ArchiveTriggerRuleRequest {
                    workspace: ws,
                    name,
                })
                .await?
                .into_inner();
            assert!(archived.archived_at.is_some());
        }
        "/berth.v1.TriggerService/FireTriggerRule" => {
            let fired = client
                .fire_trigger_rule(FireTriggerRuleRequest {
                    workspace: ws,
                    name,
                })
                .await?
                .into_inner();
            assert_eq!(fired.r#type, "manual");
            assert_eq!(fired.outcome, "fired", "{fired:?}");
        }
        "/berth.v1.TriggerService/ListTriggerEvents" => {
            let listed = client
                .list_trigger_events(ListTriggerEventsRequest {
                    workspace: ws.clone(),
                    rule: name,
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert!(listed.events.iter().all(|e| e.workspace == ws));
        }
        "/berth.v1.TriggerService/PreviewTriggerSchedule" => {
            let preview = client
                .preview_trigger_schedule(PreviewTriggerScheduleRequest {
                    workspace: ws,
                    name,
                    schedule: None,
                    count: 3,
                })
                .await?
                .into_inner();
            assert_eq!(preview.times.len(), 3);
            assert_eq!(preview.time_zone, "Europe/Berlin");
        }
        other => panic!("no call for {other} in the tenancy matrix"),
    }
    Ok(())
}

fn notifications(
    token: &str,
    channel: tonic::transport::Channel,
) -> NotificationServiceClient<berth_tests::Authed> {
    NotificationServiceClient::with_interceptor(channel, BearerAuth::new(token))
}

/// A webhook channel `name` in `workspace` (to a closed port; the guard refuses it
/// anyway, so no cell waits on a network).
fn hook(workspace: &str, name: &str) -> CreateChannelRequest {
    CreateChannelRequest {
        workspace: workspace.to_owned(),
        name: name.to_owned(),
        settings: Some(create_channel_request::Settings::Webhook(WebhookSettings {
            url: "http://127.0.0.1:9/hook".into(),
            ..Default::default()
        })),
        // None: the requests other cells make must not queue deliveries here.
        event_types: Vec::new(),
        disabled: false,
    }
}

/// What a NotificationService cell acts on, made by the admin: a channel `ch-CELL`, a
/// template `nt-CELL` with a reaction of the channel on it, and a failed delivery of the
/// channel (to redeliver). Returns "CHANNEL TEMPLATE REACTION DELIVERY".
async fn notification_target(server: &TestServer, workspace: &str, cell: usize) -> String {
    let channel = format!("ch-{cell}");
    let template = format!("nt-{cell}");
    let mut admin = notifications(&server.admin_token, server.channel().await);
    admin
        .create_channel(hook(workspace, &channel))
        .await
        .unwrap();
    templates(&server.admin_token, server.channel().await)
        .create_template(parked_template(workspace, &template))
        .await
        .unwrap();
    let reaction = admin
        .create_reaction(CreateReactionRequest {
            workspace: workspace.to_owned(),
            object_kind: "template".into(),
            object: template.clone(),
            on: "failure".into(),
            channel: channel.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let delivery: uuid::Uuid = query(
        &server.database_url,
        &format!(
            "INSERT INTO notification_deliveries \
               (id, workspace_id, channel_id, event_id, event_type, object_id, body, state, finished_at) \
             SELECT gen_random_uuid(), c.workspace_id, c.id, gen_random_uuid(), 'work_request.failed', \
                    gen_random_uuid(), '{{}}', 'failed', now() \
               FROM notification_channels c JOIN workspaces w ON w.id = c.workspace_id \
              WHERE w.name = '{workspace}' AND c.name = '{channel}' RETURNING id"
        ),
    )
    .await[0]
        .get(0);
    format!("{channel} {template} {reaction} {delivery}")
}

/// Calls a NotificationService `rpc` as `token` on "CHANNEL TEMPLATE REACTION
/// DELIVERY"; `Ok` if answered.
async fn call_notifications(
    server: &TestServer,
    rpc: &str,
    token: &str,
    workspace: &str,
    target: String,
) -> Result<(), tonic::Status> {
    let mut client = notifications(token, server.channel().await);
    let parts: Vec<&str> = target.split(' ').collect();
    let (channel, template, reaction, delivery) = (parts[0], parts[1], parts[2], parts[3]);
    let ws = workspace.to_owned();
    let name = channel.to_owned();
    match rpc {
        "/berth.v1.NotificationService/CreateChannel" => {
            let made = client
                .create_channel(hook(workspace, &format!("{channel}-new")))
                .await?
                .into_inner();
            assert!(made.signing_secret.starts_with("whsec_"));
        }
        "/berth.v1.NotificationService/GetChannel" => {
            let got = client
                .get_channel(GetChannelRequest {
                    workspace: ws,
                    name,
                })
                .await?
                .into_inner();
            assert_eq!(got.name, channel);
        }
        "/berth.v1.NotificationService/ListChannels" => {
            let listed = client
                .list_channels(ListChannelsRequest { workspace: ws })
                .await?
                .into_inner();
            assert!(listed.channels.iter().any(|c| c.name == channel));
        }
        "/berth.v1.NotificationService/UpdateChannel" => {
            let updated = client
                .update_channel(UpdateChannelRequest {
                    workspace: ws,
                    name,
                    set_event_types: true,
                    event_types: vec!["work_request.failed".into()],
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert_eq!(updated.event_types, vec!["work_request.failed".to_owned()]);
        }
        "/berth.v1.NotificationService/RotateChannelSecret" => {
            let rotated = client
                .rotate_channel_secret(RotateChannelSecretRequest {
                    workspace: ws,
                    name,
                })
                .await?
                .into_inner();
            assert!(rotated.signing_secret.starts_with("whsec_"));
        }
        "/berth.v1.NotificationService/DeleteChannel" => {
            client
                .delete_channel(DeleteChannelRequest {
                    workspace: ws,
                    name,
                })
                .await?;
        }
        "/berth.v1.NotificationService/TestChannel" => {
            let ping = client
                .test_channel(TestChannelRequest {
                    workspace: ws,
                    name,
                })
                .await?
                .into_inner();
            assert_eq!(ping.event_type, "notification.ping");
            assert_eq!(ping.attempt_log.len(), 1, "{ping:?}");
        }
        "/berth.v1.NotificationService/ListDeliveries" => {
            let listed = client
                .list_deliveries(ListDeliveriesRequest {
                    workspace: ws,
                    channel: name,
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert!(listed.deliveries.iter().any(|d| d.id == delivery));
        }
        "/berth.v1.NotificationService/RedeliverDelivery" => {
            let again = client
                .redeliver_delivery(RedeliverDeliveryRequest {
                    workspace: ws,
                    id: delivery.to_owned(),
                })
                .await?
                .into_inner();
            assert_eq!(again.id, delivery);
        }
        "/berth.v1.NotificationService/CreateReaction" => {
            let made = client
                .create_reaction(CreateReactionRequest {
                    workspace: ws,
                    object_kind: "template".into(),
                    object: template.to_owned(),
                    on: "success".into(),
                    channel: name,
                })
                .await?
                .into_inner();
            assert_eq!(made.object, template);
        }
        "/berth.v1.NotificationService/ListReactions" => {
            let listed = client
                .list_reactions(ListReactionsRequest {
                    workspace: ws,
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert!(listed.reactions.iter().any(|r| r.id == reaction));
        }
        "/berth.v1.NotificationService/DeleteReaction" => {
            client
                .delete_reaction(DeleteReactionRequest {
                    workspace: ws,
                    id: reaction.to_owned(),
                })
                .await?;
        }
        other => panic!("no call for {other} in the tenancy matrix"),
    }
    Ok(())
}

fn topics_client(
    token: &str,
    channel: tonic::transport::Channel,
) -> TopicServiceClient<berth_tests::Authed> {
    TopicServiceClient::with_interceptor(channel, BearerAuth::new(token))
}

/// The system topic the subscription cells act on.
const SYSTEM_TOPIC: &str = "berth.workers";

/// What a TopicService cell acts on, made by the admin; returns "TOPIC SUBSCRIPTION".
/// CreateTopic: only a slug. Publish and Ping: a topic `g-CELL` granting producing to
/// role:contributor. Subscription cells: a subscription `s-CELL` of the system topic (for
/// CreateSubscription only its name). Otherwise a plain topic `t-CELL`.
async fn topic_target(server: &TestServer, rpc: &str, workspace: &str, cell: usize) -> String {
    let mut admin = topics_client(&server.admin_token, server.channel().await);
    let method = rpc.trim_start_matches("/berth.v1.TopicService/");
    let subscription = format!("s-{cell}");
    match method {
        "CreateTopic" => format!("made-{cell} -"),
        "Publish" | "Ping" => {
            let slug = format!("g-{cell}");
            admin
                .create_topic(CreateTopicRequest {
                    workspace: workspace.to_owned(),
                    slug: slug.clone(),
                    grants: vec![TopicGrant {
                        principal: "role:contributor".into(),
                        produce: true,
                        consume: false,
                    }],
                    ..Default::default()
                })
                .await
                .unwrap();
            format!("{slug} -")
        }
        "CreateSubscription" => format!("{SYSTEM_TOPIC} {subscription}"),
        "Subscribe" | "GetSubscription" | "ListSubscriptions" | "DeleteSubscription"
        | "SeekSubscription" => {
            admin
                .create_subscription(CreateSubscriptionRequest {
                    workspace: workspace.to_owned(),
                    topic: SYSTEM_TOPIC.into(),
                    name: subscription.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
            format!("{SYSTEM_TOPIC} {subscription}")
        }
        _ => {
            let slug = format!("t-{cell}");
            admin
                .create_topic(CreateTopicRequest {
                    workspace: workspace.to_owned(),
                    slug: slug.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
            format!("{slug} -")
        }
    }
}

/// Calls a TopicService `rpc` as `token` on "TOPIC SUBSCRIPTION"; `Ok` if answered.
async fn call_topics(
    server: &TestServer,
    rpc: &str,
    token: &str,
    workspace: &str,
    target: String,
) -> Result<(), tonic::Status> {
    let mut client = topics_client(token, server.channel().await);
    let (topic, name) = target.split_once(' ').unwrap();
    let (ws, topic, name) = (workspace.to_owned(), topic.to_owned(), name.to_owned());
    match rpc.trim_start_matches("/berth.v1.TopicService/") {
        "CreateTopic" => {
            let made = client
                .create_topic(CreateTopicRequest {
                    workspace: ws,
                    slug: topic.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert_eq!(
                (made.workspace.as_str(), made.slug.as_str()),
                (workspace, topic.as_str())
            );
        }
        "GetTopic" => {
            let got = client
                .get_topic(GetTopicRequest {
                    workspace: ws,
                    slug: topic.clone(),
                })
                .await?
                .into_inner();
            assert_eq!(got.slug, topic);
        }
        "ListTopics" => {
            let listed = client
                .list_topics(ListTopicsRequest {
                    workspace: ws.clone(),
                })
                .await?
                .into_inner();
            assert!(listed.topics.iter().any(|t| t.slug == topic));
            assert!(listed.topics.iter().all(|t| t.workspace == ws));
        }
        "UpdateTopic" => {
            let changed = client
                .update_topic(UpdateTopicRequest {
                    workspace: ws,
                    slug: topic,
                    description: Some("changed by the matrix".into()),
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert_eq!(changed.description, "changed by the matrix");
        }
        "DeleteTopic" => {
            let deleted = client
                .delete_topic(DeleteTopicRequest {
                    workspace: ws,
                    slug: topic,
                })
                .await?
                .into_inner();
            assert!(deleted.deleted);
        }
        "Publish" => {
            let published = client
                .publish(PublishRequest {
                    workspace: ws,
                    topic,
                    messages: vec![PublishMessage {
                        content: r#"{"cell": true}"#.into(),
                        ..Default::default()
                    }],
                })
                .await?
                .into_inner();
            assert_eq!(published.messages.len(), 1);
        }
        "Ping" => {
            client
                .ping(PingTopicRequest {
                    workspace: ws,
                    topic,
                })
                .await?;
        }
        "Subscribe" => {
            let (frames, rx) = tokio::sync::mpsc::channel(4);
            frames
                .send(SubscribeRequest {
                    frame: Some(subscribe_request::Frame::Open(SubscribeOpen {
                        workspace: ws,
                        topic,
                        subscription: name,
                        initial_credit: 0,
                    })),
                })
                .await
                .unwrap();
            let mut stream = client
                .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await?
                .into_inner();
            let first = stream.message().await?;
            assert!(
                matches!(
                    first,
                    Some(SubscribeResponse {
                        frame: Some(subscribe_response::Frame::Opened(_))
                    })
                ),
                "the first frame of an answered Subscribe is opened: {first:?}"
            );
            drop(frames);
        }
        "CreateSubscription" => {
            let made = client
                .create_subscription(CreateSubscriptionRequest {
                    workspace: ws,
                    topic,
                    name: name.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert_eq!(made.name, name);
        }
        "GetSubscription" => {
            let got = client
                .get_subscription(GetSubscriptionRequest {
                    workspace: ws,
                    topic,
                    name: name.clone(),
                })
                .await?
                .into_inner();
            assert_eq!(got.name, name);
        }
        "ListSubscriptions" => {
            let listed = client
                .list_subscriptions(ListSubscriptionsRequest {
                    workspace: ws,
                    topic,
                })
                .await?
                .into_inner();
            assert!(listed.subscriptions.iter().any(|s| s.name == name));
        }
        "DeleteSubscription" => {
            let deleted = client
                .delete_subscription(DeleteSubscriptionRequest {
                    workspace: ws,
                    topic,
                    name,
                })
                .await?
                .into_inner();
            assert!(deleted.deleted);
        }
        "SeekSubscription" => {
            client
                .seek_subscription(SeekSubscriptionRequest {
                    workspace: ws,
                    topic,
                    name,
                    to: Some(seek_subscription_request::To::Seq(0)),
                })
                .await?;
        }
        other => panic!("no call for {other} in the tenancy matrix"),
    }
    Ok(())
}

async fn server_public(server: &TestServer, workspace: &str) -> bool {
    query(
        &server.database_url,
        &format!("SELECT public FROM workspaces WHERE name = '{workspace}'"),
    )
    .await[0]
        .get(0)
}

/// Archiving is one-way and would end the workspace for the cells after it: each archive
/// cell gets a workspace of its own with the same members.
async fn archive_copy(server: &TestServer, workspace: &str, cell: usize) -> String {
    let copy = format!("{workspace}-arch-{cell}");
    query(
        &server.database_url,
        &format!(
            "INSERT INTO workspaces (id, name, public) \
               SELECT gen_random_uuid(), '{copy}', public FROM workspaces WHERE name = '{workspace}'"
        ),
    )
    .await;
    query(
        &server.database_url,
        &format!(
            "INSERT INTO workspace_members (workspace_id, user_id, role) \
               SELECT (SELECT id FROM workspaces WHERE name = '{copy}'), user_id, role \
               FROM workspace_members WHERE workspace_id = (SELECT id FROM workspaces WHERE name = '{workspace}')"
        ),
    )
    .await;
    copy
}

fn meets(answer: &Result<(), tonic::Status>, expected: Expected) -> bool {
    match (answer, expected) {
        (Ok(()), Expected::Answered) => true,
        (Err(status), Expected::Denied(needed)) => {
            status.code() == Code::PermissionDenied && status.message().contains(needed)
        }
        (Err(status), Expected::NotFound) => status.code() == Code::NotFound,
        _ => false,
    }
}

fn show(answer: &Result<(), tonic::Status>) -> String {
    match answer {
        Ok(()) => "OK".into(),
        Err(status) => berth_common::client::describe_status(status),
    }
}

async fn run_matrix(public: bool) {
    let server = TestServer::start().await;
    let _worker = server
        .sim_worker(SimOptions::default().concurrency(4))
        .await;
    let name = if public { "open" } else { "team-a" };
    let tenancy = tenancy(&server, name, public).await;

    let mut wrong = Vec::new();
    let mut cells = 0;
    for (rpc, policy) in MATRIX {
        for caller in CALLERS {
            cells += 1;
            let workspace = if rpc.ends_with("/ArchiveWorkspace") {
                archive_copy(&server, name, cells).await
            } else {
                name.to_owned()
            };
            let target = target(&server, rpc, &workspace, cells).await;
            let answer = call(&server, rpc, &tenancy.tokens[&caller], &workspace, target).await;
            let expected = expected(*policy, caller, public);
            if !meets(&answer, expected) {
                wrong.push(format!(
                    "{rpc} as {caller:?}: got {}, expected {expected:?}",
                    show(&answer)
                ));
            }
        }
    }
    assert_eq!(cells, MATRIX.len() * CALLERS.len());
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells of the {} workspace got the wrong answer:\n{}",
        wrong.len(),
        if public { "public" } else { "private" },
        wrong.join("\n")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn private_workspace_admits_each_role_to_exactly_its_rights_and_hides_from_strangers() {
    run_matrix(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn public_workspace_is_readable_by_everyone_and_writable_only_by_roles() {
    run_matrix(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unscoped_listings_hold_only_what_the_caller_may_see() {
    let server = TestServer::start().await;
    let a = tenancy(&server, "team-a", false).await;
    let b = tenancy(&server, "team-b", false).await;
    let mut admin = work(&server.admin_token, server.channel().await);
    let mut ids = BTreeMap::new();
    for workspace in ["team-a", "team-b", "default"] {
        let id = admin
            .submit_work_request(parked(workspace))
            .await
            .unwrap()
            .into_inner()
            .id;
        ids.insert(workspace, id);
    }
    for (token, sees) in [
        (&a.tokens[&Caller::Viewer], vec!["team-a"]),
        (&b.tokens[&Caller::Contributor], vec!["team-b"]),
        // team-a's other owner owns team-a-other only.
        (&a.tokens[&Caller::OtherOwner], vec![]),
        (&a.tokens[&Caller::Nobody], vec![]),
        (&server.admin_token, vec!["team-a", "team-b", "default"]),
    ] {
        let mut client = work(token, server.channel().await);
        let listed: BTreeSet<String> = client
            .list_work_requests(ListWorkRequestsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .work_requests
            .into_iter()
            .map(|r| r.id)
            .collect();
        let queued: BTreeSet<String> = client
            .list_queue(ListQueueRequest::default())
            .await
            .unwrap()
            .into_inner()
            .entries
            .into_iter()
            .map(|e| e.work_request.unwrap().id)
            .collect();
        let wanted: BTreeSet<String> = sees.iter().map(|w| ids[w].clone()).collect();
        assert_eq!(listed, wanted, "list for a caller who sees {sees:?}");
        assert_eq!(queued, wanted, "queue for a caller who sees {sees:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_cannot_tell_a_hidden_request_from_a_missing_one() {
    let server = TestServer::start().await;
    let a = tenancy(&server, "team-a", false).await;
    let mut admin = work(&server.admin_token, server.channel().await);
    let hidden = admin
        .submit_work_request(parked("team-a"))
        .await
        .unwrap()
        .into_inner()
        .id;
    let missing = uuid::Uuid::now_v7().to_string();
    let mut stranger = work(&a.tokens[&Caller::Nobody], server.channel().await);
    let message = |id: &str, status: tonic::Status| {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        status.message().replace(id, "<id>")
    };
    let hidden_get = stranger
        .get_work_request(GetWorkRequestRequest { id: hidden.clone() })
        .await
        .unwrap_err();
    let missing_get = stranger
        .get_work_request(GetWorkRequestRequest {
            id: missing.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(message(&hidden, hidden_get), message(&missing, missing_get));

    let hidden_ws = stranger
        .list_work_requests(ListWorkRequestsRequest {
            workspace: "team-a".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let missing_ws = stranger
        .list_work_requests(ListWorkRequestsRequest {
            workspace: "team-z".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(message("team-a", hidden_ws), message("team-z", missing_ws));
    // And a dependency on a hidden request reads as a missing one too.
    let (_, outsider) = server.create_token(Role::User, "outsider").await;
    let refused = work(&outsider, server.channel().await)
        .submit_work_request(SubmitWorkRequestRequest {
            after: vec![hidden.clone()],
            ..parked("default")
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    assert!(refused.message().contains("not found"), "{refused:?}");
    let stored = query(
        &server.database_url,
        "SELECT count(*) FROM work_requests WHERE workspace_id = \
         (SELECT id FROM workspaces WHERE name = 'default')",
    )
    .await;
    assert_eq!(
        stored[0].get::<_, i64>(0),
        0,
        "the refused request was stored"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archived_workspace_refuses_submissions_and_keeps_its_history_readable() {
    let server = TestServer::start().await;
    let a = tenancy(&server, "team-a", false).await;
    let contributor = &a.tokens[&Caller::Contributor];
    let mut client = work(contributor, server.channel().await);
    let before = client
        .submit_work_request(parked("team-a"))
        .await
        .unwrap()
        .into_inner();
    query(
        &server.database_url,
        "UPDATE workspaces SET archived_at = now() WHERE name = 'team-a'",
    )
    .await;
    for token in [contributor, &server.admin_token] {
        let mut client = work(token, server.channel().await);
        let refused = client
            .submit_work_request(parked("team-a"))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains("archived"), "{refused:?}");
        let refused = client
            .submit_workflow(SubmitWorkflowRequest {
                name: "late".into(),
                workspace: "team-a".into(),
                steps: vec![WorkflowStep {
                    name: "s".into(),
                    spec: Some(spec(&["true"])),
                    ..Default::default()
                }],
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    }
    let stored = query(
        &server.database_url,
        "SELECT count(*) FROM work_requests WHERE workspace_id = \
         (SELECT id FROM workspaces WHERE name = 'team-a')",
    )
    .await;
    assert_eq!(
        stored[0].get::<_, i64>(0),
        1,
        "only the request from before"
    );
    // History stays readable, and what was waiting can still be cancelled.
    let seen = work(&a.tokens[&Caller::Viewer], server.channel().await)
        .get_work_request(GetWorkRequestRequest {
            id: before.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.id, before.id);
    let cancelled = client
        .cancel_work_request(CancelWorkRequestRequest { id: before.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, WorkRequestStatus::Aborted as i32);
    server.stop().await;
}
