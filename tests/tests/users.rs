//! Users over real gRPC and a real database: creating them (with no roles), listing them
//! with their roles and token counts, looking oneself up, disabling (every token refused
//! at once, here and on another replica, and open log follows ended), enabling again, and
//! the refusals of deleting and disabling.

use std::time::Duration;

use berth_common::proto::user_service_client::UserServiceClient;
use berth_common::proto::{
    CreateTokenRequest, CreateUserRequest, DeleteTokenRequest, DeleteUserRequest,
    DisableUserRequest, EnableUserRequest, GetUserRequest, ListTokensRequest, ListUsersRequest,
    Role, StreamLogsRequest, SubmitWorkRequestRequest, User, WorkspaceRole,
};
use berth_tests::{
    Authed, TestServer, assert_code, eventually, quick_heartbeats, refused, spec, try_submit,
};
use tonic::Code;

async fn create_user(client: &mut UserServiceClient<Authed>, name: &str, admin: bool) -> User {
    client
        .create_user(CreateUserRequest {
            name: name.to_owned(),
            admin,
        })
        .await
        .unwrap_or_else(|status| panic!("create user {name}: {status}"))
        .into_inner()
}

async fn get_user(server: &TestServer, token: &str, name: &str) -> Result<User, tonic::Status> {
    server
        .users(token)
        .await
        .get_user(GetUserRequest {
            name: name.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn disable(server: &TestServer, name: &str) -> User {
    server
        .users(&server.admin_token)
        .await
        .disable_user(DisableUserRequest {
            name: name.to_owned(),
        })
        .await
        .unwrap_or_else(|status| panic!("disable {name}: {status}"))
        .into_inner()
}

async fn enable(server: &TestServer, name: &str) -> User {
    server
        .users(&server.admin_token)
        .await
        .enable_user(EnableUserRequest {
            name: name.to_owned(),
        })
        .await
        .unwrap_or_else(|status| panic!("enable {name}: {status}"))
        .into_inner()
}

/// Whether `token` is accepted, judged by a call every admin and user may make.
async fn works(server: &TestServer, token: &str) -> Result<(), tonic::Status> {
    server
        .tokens(token)
        .await
        .list_tokens(ListTokensRequest {})
        .await
        .map(drop)
}

/// Submits a request nobody will run (no worker) as `token`'s user; returns its id.
async fn submit_pending(server: &TestServer, token: &str) -> String {
    try_submit(
        server,
        token,
        SubmitWorkRequestRequest {
            spec: Some(spec(&["true"])),
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|status| panic!("submit: {status}"))
    .id
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_creates_users_without_roles_and_a_taken_or_bad_name_is_refused() {
    let server = TestServer::start().await;
    let mut admin = server.users(&server.admin_token).await;
    let alice = create_user(&mut admin, "alice", false).await;
    assert_eq!(alice.name, "alice");
    assert!(!alice.admin && alice.enabled, "{alice:?}");
    assert!(alice.memberships.is_empty(), "{alice:?}");
    assert_eq!(alice.tokens, 0);
    assert!(alice.created_at.is_some());
    let root = create_user(&mut admin, "root2", true).await;
    assert!(root.admin, "{root:?}");

    assert_code(
        admin
            .create_user(CreateUserRequest {
                name: "alice".into(),
                admin: false,
            })
            .await,
        Code::AlreadyExists,
        "alice",
    );
    for bad in ["", "has space", "-dash", &"x".repeat(64)] {
        refused(
            &format!("user named {bad:?}"),
            admin
                .create_user(CreateUserRequest {
                    name: bad.to_owned(),
                    admin: false,
                })
                .await,
            Code::InvalidArgument,
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_every_user_with_roles_and_token_counts_and_is_for_admins() {
    let server = TestServer::start().await;
    // create_token makes bob a contributor of default.
    let (_, bob) = server.create_token(Role::User, "bob").await;
    server.create_token(Role::User, "bob").await;
    let users = server
        .users(&server.admin_token)
        .await
        .list_users(ListUsersRequest {})
        .await
        .expect("list users")
        .into_inner()
        .users;
    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["admin", "bob"], "sorted by name");
    assert!(users[0].admin, "the first admin is an admin user");
    let listed = &users[1];
    assert_eq!(listed.tokens, 2, "{listed:?}");
    assert_eq!(listed.memberships.len(), 1, "{listed:?}");
    assert_eq!(listed.memberships[0].workspace, "default");
    assert_eq!(listed.memberships[0].role(), WorkspaceRole::Contributor);

    refused(
        "bob lists users",
        server
            .users(&bob)
            .await
            .list_users(ListUsersRequest {})
            .await,
        Code::PermissionDenied,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn users_may_only_look_themselves_up() {
    let server = TestServer::start().await;
    let (_, bob) = server.create_token(Role::User, "bob").await;
    server.create_token(Role::User, "carol").await;
    let me = get_user(&server, &bob, "")
        .await
        .expect("bob asks for himself");
    assert_eq!(me.name, "bob");
    let named = get_user(&server, &bob, "bob").await.expect("bob by name");
    assert_eq!(named.name, "bob");
    assert_code(
        get_user(&server, &bob, "carol").await,
        Code::PermissionDenied,
        "users may only look themselves up",
    );
    // Not even whether a name exists leaks to a user.
    assert_code(
        get_user(&server, &bob, "nobody").await,
        Code::PermissionDenied,
        "users may only look themselves up",
    );
    let carol = get_user(&server, &server.admin_token, "carol")
        .await
        .expect("an admin may look anyone up");
    assert_eq!(carol.name, "carol");
    assert_code(
        get_user(&server, &server.admin_token, "nobody").await,
        Code::NotFound,
        "no user named \"nobody\"",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_users_tokens_are_refused_at_once_and_work_again_once_enabled() {
    let server = TestServer::start().await;
    let (_, first) = server.create_token(Role::User, "bob").await;
    let (_, second) = server.create_token(Role::User, "bob").await;
    // Both are now in the token cache.
    works(&server, &first).await.expect("bob's first token");
    works(&server, &second).await.expect("bob's second token");

    let disabled = disable(&server, "bob").await;
    assert!(!disabled.enabled, "{disabled:?}");
    for token in [&first, &second] {
        assert_code(
            works(&server, token).await,
            Code::Unauthenticated,
            "user bob is disabled",
        );
    }
    let mut admin = server.users(&server.admin_token).await;
    let shown = admin
        .get_user(GetUserRequest { name: "bob".into() })
        .await
        .expect("get bob")
        .into_inner();
    assert!(!shown.enabled, "{shown:?}");

    let enabled = enable(&server, "bob").await;
    assert!(enabled.enabled, "{enabled:?}");
    for token in [&first, &second] {
        works(&server, token)
            .await
            .expect("bob's tokens work again once he is enabled");
    }
    assert_code(
        admin
            .disable_user(DisableUserRequest {
                name: "nobody".into(),
            })
            .await,
        Code::NotFound,
        "no user named",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_may_disable_or_delete_themselves() {
    let server = TestServer::start().await;
    let mut admin = server.users(&server.admin_token).await;
    assert_code(
        admin
            .disable_user(DisableUserRequest {
                name: "admin".into(),
            })
            .await,
        Code::FailedPrecondition,
        "you cannot disable yourself",
    );
    assert_code(
        admin
            .delete_user(DeleteUserRequest {
                name: "admin".into(),
            })
            .await,
        Code::FailedPrecondition,
        "you cannot delete yourself",
    );
    works(&server, &server.admin_token)
        .await
        .expect("the admin still works");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_who_submitted_work_cannot_be_deleted_only_disabled() {
    let server = TestServer::start().await;
    let (_, bob) = server.create_token(Role::User, "bob").await;
    submit_pending(&server, &bob).await;
    submit_pending(&server, &bob).await;
    let mut admin = server.users(&server.admin_token).await;
    let status = refused(
        "delete bob",
        admin
            .delete_user(DeleteUserRequest { name: "bob".into() })
            .await,
        Code::FailedPrecondition,
    );
    assert!(
        status.message().contains("2 work request")
            && status.message().contains("berth user disable bob"),
        "{status:?}"
    );
    works(&server, &bob).await.expect("bob is untouched");
    assert_code(
        admin
            .delete_user(DeleteUserRequest {
                name: "nobody".into(),
            })
            .await,
        Code::NotFound,
        "no user named",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_removes_their_tokens_and_memberships() {
    let server = TestServer::start().await;
    let (_, carol) = server.create_token(Role::User, "carol").await;
    works(&server, &carol).await.expect("carol's token");
    server
        .users(&server.admin_token)
        .await
        .delete_user(DeleteUserRequest {
            name: "carol".into(),
        })
        .await
        .expect("delete carol");
    refused(
        "carol's token after her deletion",
        works(&server, &carol).await,
        Code::Unauthenticated,
    );
    assert_code(
        get_user(&server, &server.admin_token, "carol").await,
        Code::NotFound,
        "no user named",
    );
    let left = berth_tests::query(
        &server.database_url,
        "SELECT (SELECT count(*) FROM tokens WHERE user_id IS NOT NULL AND user_id NOT IN (SELECT id FROM users)) \
              + (SELECT count(*) FROM workspace_members WHERE user_id NOT IN (SELECT id FROM users)) \
              + (SELECT count(*) FROM users WHERE name = 'carol')",
    )
    .await;
    assert_eq!(left[0].get::<_, i64>(0), 0, "nothing of carol is left");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_tokens_are_only_for_admin_users() {
    let server = TestServer::start().await;
    let mut users = server.users(&server.admin_token).await;
    create_user(&mut users, "dave", false).await;
    let mut tokens = server.tokens(&server.admin_token).await;
    assert_code(
        tokens
            .create_token(CreateTokenRequest {
                role: Role::Admin as i32,
                name: "dave".into(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "user dave is not an admin",
    );
    // A user token for dave is fine.
    tokens
        .create_token(CreateTokenRequest {
            role: Role::User as i32,
            name: "dave".into(),
            ..Default::default()
        })
        .await
        .expect("a user token for dave");

    // An admin token for a name nobody has makes an admin user with no roles.
    tokens
        .create_token(CreateTokenRequest {
            role: Role::Admin as i32,
            name: "erin".into(),
            ..Default::default()
        })
        .await
        .expect("an admin token for erin");
    let erin = get_user(&server, &server.admin_token, "erin")
        .await
        .expect("erin exists");
    assert!(erin.admin && erin.memberships.is_empty(), "{erin:?}");
    // A user token for a name nobody has makes a plain user with no roles.
    tokens
        .create_token(CreateTokenRequest {
            role: Role::User as i32,
            name: "frank".into(),
            ..Default::default()
        })
        .await
        .expect("a user token for frank");
    let frank = get_user(&server, &server.admin_token, "frank")
        .await
        .expect("frank exists");
    assert!(!frank.admin && frank.memberships.is_empty(), "{frank:?}");
    // An admin user may hold admin tokens.
    create_user(&mut users, "gina", true).await;
    tokens
        .create_token(CreateTokenRequest {
            role: Role::Admin as i32,
            name: "gina".into(),
            ..Default::default()
        })
        .await
        .expect("an admin token for the admin user gina");
    server.stop().await;
}

/// Opens a following StreamLogs of `id` with `token`.
async fn follow(
    server: &TestServer,
    token: &str,
    id: &str,
) -> tonic::Streaming<berth_common::proto::LogChunk> {
    server
        .work_requests(token)
        .await
        .stream_logs(StreamLogsRequest {
            id: id.to_owned(),
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|status| panic!("StreamLogs {id}: {status}"))
        .into_inner()
}

/// The status an open follow ends with; panics if it ends cleanly or sends a chunk.
async fn ending(stream: &mut tonic::Streaming<berth_common::proto::LogChunk>) -> tonic::Status {
    // A bound so that a follow that never ends fails the test rather than hanging it.
    match tokio::time::timeout(Duration::from_secs(60), stream.message()).await {
        Err(_) => panic!("the follow did not end"),
        Ok(Ok(message)) => panic!("the follow went on: {message:?}"),
        Ok(Err(status)) => status,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_users_open_log_follow_ends_unauthenticated() {
    let server = TestServer::start().await;
    let (_, bob) = server.create_token(Role::User, "bob").await;
    let id = submit_pending(&server, &bob).await;
    let mut stream = follow(&server, &bob, &id).await;
    disable(&server, "bob").await;
    let status = ending(&mut stream).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("user bob is disabled"),
        "{status:?}"
    );
    // Enabled again, bob reads the log again: to its clean end once the request is over.
    enable(&server, "bob").await;
    let mut again = follow(&server, &bob, &id).await;
    berth_tests::cancel(&server, &id).await;
    let end = tokio::time::timeout(Duration::from_secs(60), again.message())
        .await
        .expect("the follow ends once the request is cancelled");
    assert!(matches!(end, Ok(None)), "a clean end: {end:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_log_follow_ends_when_its_token_is_deleted() {
    let server = TestServer::start().await;
    let (_, bob) = server.create_token(Role::User, "bob").await;
    let (other_id, other) = server.create_token(Role::User, "bob").await;
    let id = submit_pending(&server, &bob).await;
    let mut kept = follow(&server, &bob, &id).await;
    let mut stream = follow(&server, &other, &id).await;
    server
        .tokens(&server.admin_token)
        .await
        .delete_token(DeleteTokenRequest { id: other_id })
        .await
        .expect("delete bob's second token");
    let status = ending(&mut stream).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("this token was deleted"),
        "{status:?}"
    );
    // The follow with bob's other token went on: it ends cleanly with the request.
    berth_tests::cancel(&server, &id).await;
    let end = tokio::time::timeout(Duration::from_secs(60), kept.message())
        .await
        .expect("the other follow ends once the request is cancelled");
    assert!(matches!(end, Ok(None)), "a clean end: {end:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_disabled_on_one_replica_is_refused_by_the_other_that_had_the_token_cached() {
    let a = TestServer::start_with(quick_heartbeats).await;
    let b = a.replica().await;
    let (_, bob) = a.create_token(Role::User, "bob").await;
    works(&b, &bob).await.expect("bob's token works on b");
    let id = submit_pending(&a, &bob).await;
    let mut stream = follow(&b, &bob, &id).await;
    disable(&a, "bob").await;
    // Well within the cache's lifetime: only the eviction announced by a can do this.
    let refused = eventually(
        "replica b to refuse the disabled user's token",
        Duration::from_secs(2),
        || {
            let b = &b;
            let bob = &bob;
            async move {
                match works(b, bob).await {
                    Err(status) if status.code() == Code::Unauthenticated => Some(status),
                    _ => None,
                }
            }
        },
    )
    .await;
    assert!(
        refused.message().contains("user bob is disabled"),
        "{refused:?}"
    );
    let status = ending(&mut stream).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("user bob is disabled"),
        "{status:?}"
    );
    a.stop().await;
    b.stop().await;
}
