//! Workspaces over real gRPC and a real database: admins create them (slugs, reserved
//! names), users see their own and the public ones (and NOT_FOUND for the rest), owners
//! change some settings and admins all of them, archiving is one-way, and owners manage
//! members without ever leaving a workspace with no owner.

use berth_common::proto::workspace_service_client::WorkspaceServiceClient;
use berth_common::proto::{
    AddMemberRequest, ArchiveWorkspaceRequest, CreateUserRequest, CreateWorkspaceRequest,
    GetWorkspaceRequest, ListMembersRequest, ListWorkspacesRequest, Member, RemoveMemberRequest,
    Role, SubmitWorkRequestRequest, UpdateWorkspaceRequest, Workspace, WorkspaceRole,
};
use berth_tests::{
    Authed, SimOptions, TestServer, assert_code, refused, secs, spec, submit_request, wait_started,
};
use tonic::Code;

async fn create(server: &TestServer, request: CreateWorkspaceRequest) -> Workspace {
    let shown = format!("{request:?}");
    server
        .workspaces(&server.admin_token)
        .await
        .create_workspace(request)
        .await
        .unwrap_or_else(|status| panic!("create {shown}: {status}"))
        .into_inner()
}

fn named(name: &str) -> CreateWorkspaceRequest {
    CreateWorkspaceRequest {
        name: name.to_owned(),
        ..Default::default()
    }
}

async fn get(
    client: &mut WorkspaceServiceClient<Authed>,
    name: &str,
) -> Result<Workspace, tonic::Status> {
    client
        .get_workspace(GetWorkspaceRequest {
            name: name.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn list(client: &mut WorkspaceServiceClient<Authed>, include_archived: bool) -> Vec<String> {
    client
        .list_workspaces(ListWorkspacesRequest { include_archived })
        .await
        .expect("list workspaces")
        .into_inner()
        .workspaces
        .into_iter()
        .map(|w| w.name)
        .collect()
}

async fn add(
    client: &mut WorkspaceServiceClient<Authed>,
    workspace: &str,
    user: &str,
    role: WorkspaceRole,
) -> Result<Member, tonic::Status> {
    client
        .add_member(AddMemberRequest {
            workspace: workspace.to_owned(),
            user: user.to_owned(),
            role: role as i32,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn remove(
    client: &mut WorkspaceServiceClient<Authed>,
    workspace: &str,
    user: &str,
) -> Result<(), tonic::Status> {
    client
        .remove_member(RemoveMemberRequest {
            workspace: workspace.to_owned(),
            user: user.to_owned(),
        })
        .await
        .map(drop)
}

async fn update(
    client: &mut WorkspaceServiceClient<Authed>,
    request: UpdateWorkspaceRequest,
) -> Result<Workspace, tonic::Status> {
    client
        .update_workspace(request)
        .await
        .map(tonic::Response::into_inner)
}

/// A user with a token and no workspace roles; returns the token.
async fn user(server: &TestServer, name: &str) -> String {
    server.create_token_without_roles(Role::User, name).await.1
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_create_workspaces_with_slug_names_and_bad_reserved_or_taken_ones_are_refused() {
    let server = TestServer::start().await;
    let created = create(
        &server,
        CreateWorkspaceRequest {
            name: "team-a".into(),
            public: true,
            default_expiry: Some(secs(86_400)),
        },
    )
    .await;
    assert_eq!(created.name, "team-a");
    assert!(
        created.public && created.archived_at.is_none(),
        "{created:?}"
    );
    assert_eq!(created.default_expiry.map(|d| d.seconds), Some(86_400));
    assert_eq!(created.weight, 1);
    assert_eq!(created.max_running, None);
    assert_eq!(created.max_pending, None);
    assert_eq!(
        created.role(),
        WorkspaceRole::Unspecified,
        "the admin is no member"
    );
    assert_eq!((created.waiting, created.running), (0, 0));

    let mut admin = server.workspaces(&server.admin_token).await;
    assert_code(
        admin.create_workspace(named("team-a")).await,
        Code::AlreadyExists,
        "team-a",
    );
    for reserved in ["default", "admin", "all", "archived"] {
        assert_code(
            admin.create_workspace(named(reserved)).await,
            Code::InvalidArgument,
            "reserved; these names are: default, all, none, admin, system, berth, new, api, public, archived",
        );
    }
    for bad in ["", "Team", "team_a", "-a", "a-", "a.b", &"x".repeat(64)] {
        let status = refused(
            &format!("workspace named {bad:?}"),
            admin.create_workspace(named(bad)).await,
            Code::InvalidArgument,
        );
        assert!(status.message().starts_with("name: "), "{status:?}");
    }
    assert!(
        admin.create_workspace(named(&"x".repeat(63))).await.is_ok(),
        "63 characters are allowed"
    );
    for (what, expiry) in [
        ("zero", 0),
        ("negative", -5),
        ("eleven years", 11 * 366 * 86_400),
    ] {
        let status = refused(
            &format!("a default expiry of {what}"),
            admin
                .create_workspace(CreateWorkspaceRequest {
                    default_expiry: Some(secs(expiry)),
                    ..named("team-x")
                })
                .await,
            Code::InvalidArgument,
        );
        assert!(status.message().contains("default_expiry"), "{status:?}");
    }

    let bob = user(&server, "bob").await;
    refused(
        "a user creates a workspace",
        server
            .workspaces(&bob)
            .await
            .create_workspace(named("bobs"))
            .await,
        Code::PermissionDenied,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn users_see_their_workspaces_and_public_ones_and_nothing_of_the_rest() {
    let server = TestServer::start().await;
    create(&server, named("team-a")).await;
    create(
        &server,
        CreateWorkspaceRequest {
            public: true,
            ..named("open")
        },
    )
    .await;
    create(&server, named("secret")).await;
    let bob = user(&server, "bob").await;
    let mut admin = server.workspaces(&server.admin_token).await;
    add(&mut admin, "team-a", "bob", WorkspaceRole::Viewer)
        .await
        .expect("bob views team-a");

    let mut as_bob = server.workspaces(&bob).await;
    assert_eq!(list(&mut as_bob, false).await, ["open", "team-a"]);
    assert_eq!(
        list(&mut admin, false).await,
        ["default", "open", "secret", "team-a"]
    );
    let team = get(&mut as_bob, "team-a").await.expect("bob reads team-a");
    assert_eq!(team.role(), WorkspaceRole::Viewer);
    let open = get(&mut as_bob, "open").await.expect("bob reads open");
    assert_eq!(open.role(), WorkspaceRole::Unspecified);

    // A workspace bob may not see answers exactly as one that does not exist.
    let hidden = refused(
        "get secret",
        get(&mut as_bob, "secret").await,
        Code::NotFound,
    );
    let missing = refused("get nope", get(&mut as_bob, "nope").await, Code::NotFound);
    assert_eq!(
        hidden.message().replace("secret", "X"),
        missing.message().replace("nope", "X")
    );
    refused(
        "members of secret",
        as_bob
            .list_members(ListMembersRequest {
                workspace: "secret".into(),
            })
            .await,
        Code::NotFound,
    );
    refused(
        "update secret",
        update(
            &mut as_bob,
            UpdateWorkspaceRequest {
                name: "secret".into(),
                public: Some(true),
                ..Default::default()
            },
        )
        .await,
        Code::NotFound,
    );
    refused(
        "archive secret",
        as_bob
            .archive_workspace(ArchiveWorkspaceRequest {
                name: "secret".into(),
            })
            .await,
        Code::NotFound,
    );
    refused(
        "add to secret",
        add(&mut as_bob, "secret", "bob", WorkspaceRole::Owner).await,
        Code::NotFound,
    );

    // Archived workspaces are listed only when asked for.
    admin
        .archive_workspace(ArchiveWorkspaceRequest {
            name: "team-a".into(),
        })
        .await
        .expect("archive team-a");
    assert_eq!(list(&mut as_bob, false).await, ["open"]);
    assert_eq!(list(&mut as_bob, true).await, ["open", "team-a"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_counts_its_waiting_and_running_requests() {
    let server = TestServer::start().await;
    create(&server, named("team-a")).await;
    let mut worker = server.sim_worker(SimOptions::default()).await;
    let submit = |command: &'static [&'static str], after: Vec<String>| SubmitWorkRequestRequest {
        spec: Some(spec(command)),
        workspace: "team-a".into(),
        after,
        ..Default::default()
    };
    let running = submit_request(&server, submit(&["sleep", "600"], vec![])).await;
    wait_started(&server, &running.id).await;
    let pending = submit_request(&server, submit(&["true"], vec![])).await;
    submit_request(&server, submit(&["true"], vec![pending.id.clone()])).await;
    let mut admin = server.workspaces(&server.admin_token).await;
    let team = get(&mut admin, "team-a").await.expect("get team-a");
    assert_eq!((team.waiting, team.running), (2, 1), "{team:?}");
    let default = get(&mut admin, "default").await.expect("get default");
    assert_eq!((default.waiting, default.running), (0, 0), "{default:?}");
    worker.kill().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn owners_change_public_and_expiry_and_only_admins_change_limits_and_weight() {
    let server = TestServer::start().await;
    create(&server, named("team-a")).await;
    let bob = user(&server, "bob").await;
    let carol = user(&server, "carol").await;
    let mut admin = server.workspaces(&server.admin_token).await;
    add(&mut admin, "team-a", "bob", WorkspaceRole::Owner)
        .await
        .expect("bob owns team-a");
    add(&mut admin, "team-a", "carol", WorkspaceRole::Contributor)
        .await
        .expect("carol contributes");
    let mut as_bob = server.workspaces(&bob).await;
    let changed = update(
        &mut as_bob,
        UpdateWorkspaceRequest {
            name: "team-a".into(),
            public: Some(true),
            default_expiry: Some(secs(2 * 86_400)),
            ..Default::default()
        },
    )
    .await
    .expect("the owner changes public and expiry");
    assert!(changed.public, "{changed:?}");
    assert_eq!(changed.default_expiry.map(|d| d.seconds), Some(2 * 86_400));
    assert_eq!(changed.role(), WorkspaceRole::Owner);
    let cleared = update(
        &mut as_bob,
        UpdateWorkspaceRequest {
            name: "team-a".into(),
            clear_default_expiry: true,
            ..Default::default()
        },
    )
    .await
    .expect("the owner drops the expiry");
    assert_eq!(cleared.default_expiry, None);
    assert!(cleared.public, "what was not named stays");

    for (field, request) in [
        (
            "max_running",
            UpdateWorkspaceRequest {
                max_running: Some(3),
                ..Default::default()
            },
        ),
        (
            "max_pending",
            UpdateWorkspaceRequest {
                clear_max_pending: true,
                ..Default::default()
            },
        ),
        (
            "weight",
            UpdateWorkspaceRequest {
                weight: Some(5),
                ..Default::default()
            },
        ),
    ] {
        let status = refused(
            &format!("the owner changes {field}"),
            update(
                &mut as_bob,
                UpdateWorkspaceRequest {
                    name: "team-a".into(),
                    ..request
                },
            )
            .await,
            Code::PermissionDenied,
        );
        assert!(
            status.message().contains(field) && status.message().contains("admin"),
            "{status:?}"
        );
    }
    assert_code(
        update(
            &mut server.workspaces(&carol).await,
            UpdateWorkspaceRequest {
                name: "team-a".into(),
                public: Some(false),
                ..Default::default()
            },
        )
        .await,
        Code::PermissionDenied,
        "owner role",
    );

    let limited = update(
        &mut admin,
        UpdateWorkspaceRequest {
            name: "team-a".into(),
            max_running: Some(3),
            max_pending: Some(10),
            weight: Some(5),
            ..Default::default()
        },
    )
    .await
    .expect("the admin sets limits and weight");
    assert_eq!(limited.max_running, Some(3));
    assert_eq!(limited.max_pending, Some(10));
    assert_eq!(limited.weight, 5);
    let unlimited = update(
        &mut admin,
        UpdateWorkspaceRequest {
            name: "team-a".into(),
            clear_max_running: true,
            ..Default::default()
        },
    )
    .await
    .expect("the admin drops the running limit");
    assert_eq!(unlimited.max_running, None);
    assert_eq!(unlimited.max_pending, Some(10));

    for weight in [0, 1001] {
        assert_code(
            update(
                &mut admin,
                UpdateWorkspaceRequest {
                    name: "team-a".into(),
                    weight: Some(weight),
                    ..Default::default()
                },
            )
            .await,
            Code::InvalidArgument,
            "weight",
        );
    }
    for expiry in [0, 11 * 366 * 86_400] {
        assert_code(
            update(
                &mut admin,
                UpdateWorkspaceRequest {
                    name: "team-a".into(),
                    default_expiry: Some(secs(expiry)),
                    ..Default::default()
                },
            )
            .await,
            Code::InvalidArgument,
            "default_expiry",
        );
    }
    assert_code(
        update(
            &mut admin,
            UpdateWorkspaceRequest {
                name: "team-a".into(),
                max_running: Some(1),
                clear_max_running: true,
                ..Default::default()
            },
        )
        .await,
        Code::InvalidArgument,
        "max_running and clear_max_running",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn archiving_is_for_owners_one_way_and_never_for_default() {
    let server = TestServer::start().await;
    create(&server, named("team-a")).await;
    let bob = user(&server, "bob").await;
    let carol = user(&server, "carol").await;
    let mut admin = server.workspaces(&server.admin_token).await;
    add(&mut admin, "team-a", "bob", WorkspaceRole::Owner)
        .await
        .expect("bob owns team-a");
    add(&mut admin, "team-a", "carol", WorkspaceRole::Contributor)
        .await
        .expect("carol contributes");
    let archive = |name: &str| ArchiveWorkspaceRequest {
        name: name.to_owned(),
    };
    assert_code(
        server
            .workspaces(&carol)
            .await
            .archive_workspace(archive("team-a"))
            .await,
        Code::PermissionDenied,
        "owner role",
    );
    let mut as_bob = server.workspaces(&bob).await;
    let archived = as_bob
        .archive_workspace(archive("team-a"))
        .await
        .expect("the owner archives")
        .into_inner();
    assert!(archived.archived_at.is_some(), "{archived:?}");
    assert_code(
        as_bob.archive_workspace(archive("team-a")).await,
        Code::FailedPrecondition,
        "already archived",
    );
    let still = get(&mut as_bob, "team-a")
        .await
        .expect("an archived workspace stays readable");
    assert!(still.archived_at.is_some());
    assert_code(
        admin.archive_workspace(archive("default")).await,
        Code::FailedPrecondition,
        "default cannot be archived",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn owners_manage_members_and_never_leave_a_workspace_without_an_owner() {
    let server = TestServer::start().await;
    create(&server, named("team-a")).await;
    let bob = user(&server, "bob").await;
    let carol = user(&server, "carol").await;
    server
        .users(&server.admin_token)
        .await
        .create_user(CreateUserRequest {
            name: "dave".into(),
            admin: false,
        })
        .await
        .expect("create dave");
    let mut admin = server.workspaces(&server.admin_token).await;
    add(&mut admin, "team-a", "bob", WorkspaceRole::Owner)
        .await
        .expect("bob owns team-a");
    let mut as_bob = server.workspaces(&bob).await;
    let carol_added = add(&mut as_bob, "team-a", "carol", WorkspaceRole::Contributor)
        .await
        .expect("the owner adds carol");
    assert_eq!(carol_added.role(), WorkspaceRole::Contributor);
    assert_eq!(carol_added.user, "carol");
    assert_eq!(carol_added.workspace, "team-a");
    let demoted = add(&mut as_bob, "team-a", "carol", WorkspaceRole::Viewer)
        .await
        .expect("the owner changes carol's role");
    assert_eq!(demoted.role(), WorkspaceRole::Viewer);

    // Viewers read the member list but do not change it.
    let mut as_carol = server.workspaces(&carol).await;
    let members = as_carol
        .list_members(ListMembersRequest {
            workspace: "team-a".into(),
        })
        .await
        .expect("a viewer lists members")
        .into_inner()
        .members;
    let shown: Vec<(&str, WorkspaceRole)> = members
        .iter()
        .map(|m| (m.user.as_str(), m.role()))
        .collect();
    assert_eq!(
        shown,
        [
            ("bob", WorkspaceRole::Owner),
            ("carol", WorkspaceRole::Viewer)
        ]
    );
    assert_code(
        add(&mut as_carol, "team-a", "dave", WorkspaceRole::Viewer).await,
        Code::PermissionDenied,
        "owner role",
    );
    assert_code(
        remove(&mut as_carol, "team-a", "bob").await,
        Code::PermissionDenied,
        "owner role",
    );

    assert_code(
        add(&mut as_bob, "team-a", "nobody", WorkspaceRole::Viewer).await,
        Code::NotFound,
        "user: no user named \"nobody\"",
    );
    assert_code(
        add(&mut as_bob, "team-a", "dave", WorkspaceRole::Unspecified).await,
        Code::InvalidArgument,
        "role",
    );
    assert_code(
        remove(&mut as_bob, "team-a", "dave").await,
        Code::NotFound,
        "not a member",
    );

    // Bob is the only owner: he may neither step down nor leave.
    assert_code(
        add(&mut as_bob, "team-a", "bob", WorkspaceRole::Contributor).await,
        Code::FailedPrecondition,
        "last owner",
    );
    assert_code(
        remove(&mut as_bob, "team-a", "bob").await,
        Code::FailedPrecondition,
        "last owner",
    );
    // With a second owner he may.
    add(&mut as_bob, "team-a", "dave", WorkspaceRole::Owner)
        .await
        .expect("bob makes dave owner");
    remove(&mut as_bob, "team-a", "bob")
        .await
        .expect("bob leaves, dave still owns it");
    // An admin may take away the last owner.
    remove(&mut admin, "team-a", "dave")
        .await
        .expect("an admin removes the last owner");
    remove(&mut admin, "team-a", "carol")
        .await
        .expect("an admin removes carol");
    let members = admin
        .list_members(ListMembersRequest {
            workspace: "team-a".into(),
        })
        .await
        .expect("list members")
        .into_inner()
        .members;
    assert!(members.is_empty(), "{members:?}");
    // Bob, no longer a member, no longer sees it.
    refused(
        "bob reads team-a after leaving",
        get(&mut as_bob, "team-a").await,
        Code::NotFound,
    );
    server.stop().await;
}
