//! The real `berth` binary managing users and workspaces: `berth user ...`, `berth
//! workspace ...` and `token create --for`, their JSON and table outputs, and the one-line
//! `error:` a refused call prints (a disabled user's token included).

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: a failed step should fail the test"
)]

use berth_tests::{TestServer, berth};
use serde_json::Value;

/// Creates a user token for `name` with `berth token create --for`; returns the secret.
async fn token_for(server: &TestServer, name: &str) -> String {
    let created = berth(server)
        .json(&["token", "create", "--role", "user", "--for", name])
        .await;
    assert_eq!(created["owner"], name, "{created}");
    created["token"].as_str().unwrap().to_owned()
}

fn names(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {list}"))
        .iter()
        .map(|item| item["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn user_commands_create_list_look_up_disable_enable_and_delete() {
    let server = TestServer::start().await;
    let admin = berth(&server);
    let alice = admin.json(&["user", "create", "alice", "--admin"]).await;
    assert_eq!(alice["name"], "alice", "{alice}");
    assert_eq!(alice["admin"], true, "{alice}");
    assert_eq!(alice["enabled"], true, "{alice}");
    assert_eq!(alice["memberships"], Value::Array(vec![]), "{alice}");
    let bob = admin.json(&["user", "create", "bob"]).await;
    assert_eq!(bob["admin"], false, "{bob}");

    let listed = admin.json(&["user", "list"]).await;
    assert_eq!(names(&listed, "users"), ["admin", "alice", "bob"]);
    let table = admin.ok(&["user", "list"]).await;
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("bob ")), "{table}");

    let bob_token = token_for(&server, "bob").await;
    let as_bob = berth(&server).token(&bob_token);
    let me = as_bob.json(&["user", "get"]).await;
    assert_eq!(me["name"], "bob", "{me}");
    assert_eq!(me["tokens"], 1, "{me}");
    as_bob
        .run(&["user", "get", "alice"])
        .await
        .assert_one_error_line(
            "bob looks alice up",
            1,
            &["PERMISSION_DENIED", "users may only look themselves up"],
        );

    let disabled = admin.json(&["user", "disable", "bob"]).await;
    assert_eq!(disabled["enabled"], false, "{disabled}");
    as_bob.run(&["user", "get"]).await.assert_one_error_line(
        "a disabled user's call",
        1,
        &[
            "UNAUTHENTICATED",
            "user bob is disabled",
            "berth user enable bob",
        ],
    );
    let enabled = admin.json(&["user", "enable", "bob"]).await;
    assert_eq!(enabled["enabled"], true, "{enabled}");
    as_bob.json(&["user", "get"]).await;

    admin
        .run(&["user", "disable", "admin"])
        .await
        .assert_one_error_line("disable yourself", 1, &["FAILED_PRECONDITION", "yourself"]);
    admin
        .run(&["user", "create", "bob"])
        .await
        .assert_one_error_line("a taken name", 1, &["ALREADY_EXISTS", "bob"]);

    let deleted = admin.json(&["user", "delete", "bob"]).await;
    assert_eq!(deleted, serde_json::json!({"name": "bob", "deleted": true}));
    assert_eq!(as_bob.run(&["user", "get"]).await.code, 1);
    admin
        .run(&["user", "get", "bob"])
        .await
        .assert_one_error_line("a deleted user", 1, &["NOT_FOUND", "no user named \"bob\""]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_who_submitted_work_is_not_deleted_and_the_error_says_to_disable() {
    let server = TestServer::start().await;
    let carol = token_for(&server, "carol").await;
    // carol may submit to default only as a member there.
    server.grant_default("carol").await;
    berth(&server)
        .token(&carol)
        .ok(&["run", "--detach", "busybox"])
        .await;
    berth(&server)
        .run(&["user", "delete", "carol"])
        .await
        .assert_one_error_line(
            "delete carol",
            1,
            &[
                "FAILED_PRECONDITION",
                "1 work request",
                "berth user disable carol",
            ],
        );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_token_for_a_user_who_is_not_an_admin_is_refused() {
    let server = TestServer::start().await;
    berth(&server).json(&["user", "create", "dave"]).await;
    berth(&server)
        .run(&["token", "create", "--role", "admin", "--for", "dave"])
        .await
        .assert_one_error_line(
            "admin token for dave",
            1,
            &["FAILED_PRECONDITION", "user dave is not an admin"],
        );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn workspace_commands_create_configure_list_archive_and_manage_members() {
    let server = TestServer::start().await;
    let admin = berth(&server);
    let created = admin
        .json(&[
            "workspace",
            "create",
            "team-a",
            "--public",
            "--default-expiry",
            "30d",
        ])
        .await;
    assert_eq!(created["name"], "team-a", "{created}");
    assert_eq!(created["public"], true, "{created}");
    assert_eq!(created["default_expiry"], "30days", "{created}");
    assert_eq!(created["weight"], 1, "{created}");
    assert_eq!(created["role"], "none", "{created}");
    assert_eq!(created["archived"], false, "{created}");

    let set = admin
        .json(&[
            "workspace",
            "set",
            "team-a",
            "--public",
            "false",
            "--default-expiry",
            "never",
            "--max-running",
            "4",
            "--max-pending",
            "20",
            "--weight",
            "3",
        ])
        .await;
    assert_eq!(set["public"], false, "{set}");
    assert_eq!(set["default_expiry"], Value::Null, "{set}");
    assert_eq!(set["max_running"], 4, "{set}");
    assert_eq!(set["max_pending"], 20, "{set}");
    assert_eq!(set["weight"], 3, "{set}");
    let set = admin
        .json(&["workspace", "set", "team-a", "--max-running", "none"])
        .await;
    assert_eq!(set["max_running"], Value::Null, "{set}");
    assert_eq!(set["max_pending"], 20, "what was not named stays: {set}");
    let shown = admin.ok(&["workspace", "get", "team-a"]).await;
    assert!(shown.starts_with("name:"), "{shown}");

    admin.json(&["user", "create", "bob"]).await;
    let bob = token_for(&server, "bob").await;
    let member = admin
        .json(&[
            "workspace",
            "member",
            "add",
            "team-a",
            "bob",
            "--role",
            "owner",
        ])
        .await;
    assert_eq!(member["user"], "bob", "{member}");
    assert_eq!(member["role"], "owner", "{member}");
    let as_bob = berth(&server).token(&bob);
    assert_eq!(
        names(&as_bob.json(&["workspace", "list"]).await, "workspaces"),
        ["team-a"]
    );
    let mine = as_bob.json(&["workspace", "get", "team-a"]).await;
    assert_eq!(mine["role"], "owner", "{mine}");
    as_bob
        .run(&["workspace", "set", "team-a", "--weight", "9"])
        .await
        .assert_one_error_line(
            "an owner sets the weight",
            1,
            &["PERMISSION_DENIED", "admin"],
        );
    as_bob
        .run(&["workspace", "member", "rm", "team-a", "bob"])
        .await
        .assert_one_error_line(
            "the last owner leaves",
            1,
            &["FAILED_PRECONDITION", "last owner"],
        );
    as_bob
        .run(&[
            "workspace",
            "member",
            "add",
            "team-a",
            "nobody",
            "--role",
            "viewer",
        ])
        .await
        .assert_one_error_line(
            "an unknown user",
            1,
            &["NOT_FOUND", "no user named \"nobody\""],
        );

    admin.json(&["user", "create", "carol"]).await;
    as_bob
        .json(&[
            "workspace",
            "member",
            "add",
            "team-a",
            "carol",
            "--role",
            "viewer",
        ])
        .await;
    let members = as_bob
        .json(&["workspace", "member", "list", "team-a"])
        .await;
    let listed: Vec<(String, String)> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("bob".to_owned(), "owner".to_owned()),
            ("carol".to_owned(), "viewer".to_owned())
        ]
    );
    let table = as_bob.ok(&["workspace", "member", "list", "team-a"]).await;
    assert!(table.starts_with("USER"), "{table}");
    let removed = as_bob
        .json(&["workspace", "member", "rm", "team-a", "carol"])
        .await;
    assert_eq!(
        removed,
        serde_json::json!({"workspace": "team-a", "user": "carol", "removed": true})
    );

    let archived = as_bob.json(&["workspace", "archive", "team-a"]).await;
    assert_eq!(archived["archived"], true, "{archived}");
    as_bob
        .run(&["workspace", "archive", "team-a"])
        .await
        .assert_one_error_line(
            "archive twice",
            1,
            &["FAILED_PRECONDITION", "already archived"],
        );
    assert_eq!(
        names(&admin.json(&["workspace", "list"]).await, "workspaces"),
        ["default"]
    );
    assert_eq!(
        names(
            &admin.json(&["workspace", "list", "--all"]).await,
            "workspaces"
        ),
        ["default", "team-a"]
    );
    let table = admin.ok(&["workspace", "list", "--all"]).await;
    assert!(table.starts_with("NAME"), "{table}");

    admin
        .run(&["workspace", "create", "Team_B"])
        .await
        .assert_one_error_line("a bad name", 1, &["INVALID_ARGUMENT", "name"]);
    admin
        .run(&["workspace", "create", "admin"])
        .await
        .assert_one_error_line("a reserved name", 1, &["INVALID_ARGUMENT", "reserved"]);
    admin
        .run(&["workspace", "set", "team-a", "--max-running", "lots"])
        .await
        .assert_one_error_line("a bad limit", 2, &["--max-running", "lots"]);
    server.stop().await;
}
