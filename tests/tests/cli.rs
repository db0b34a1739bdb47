//! The real `berth` binary against a real server: tokens, run/get/list/cancel, the JSON
//! and table outputs scripts rely on, and the one-line `error:` contract with its exit
//! statuses (2 for usage errors, 1 for everything after the command line was accepted).

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: a failed step should fail the test"
)]

use berth_core::store::secrets::SecretBox;
use berth_tests::{Output, TestServer, berth, query};
use serde_json::Value;

/// Creates a user token for `name` with the CLI; returns (id, secret).
async fn create_user_token(server: &TestServer, name: &str) -> (String, String) {
    let created = berth(server)
        .json(&["token", "create", "--role", "user", "--name", name])
        .await;
    (
        created["id"].as_str().unwrap().to_owned(),
        created["token"].as_str().unwrap().to_owned(),
    )
}

/// Submits `busybox` with the CLI and returns its id.
async fn run_detached(server: &TestServer) -> String {
    let out = berth(server).ok(&["run", "--detach", "busybox"]).await;
    out.trim().to_owned()
}

/// The secret env values stored for `id`, opened with the server's key.
async fn stored_secrets(
    server: &TestServer,
    id: &str,
) -> std::collections::BTreeMap<String, String> {
    let rows = query(
        &server.database_url,
        &format!("SELECT secret_env FROM work_requests WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(rows.len(), 1, "work request {id} is not stored");
    let sealed: Option<Vec<u8>> = rows[0].get(0);
    let key = SecretBox::load_or_create(&server.data_dir.path().join("secret.key")).unwrap();
    key.open(&sealed.expect("secret_env stored")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn token_create_prints_a_user_token_that_works() {
    let server = TestServer::start().await;
    let created = berth(&server)
        .json(&["token", "create", "--role", "user", "--name", "bob"])
        .await;
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("berth_usr_"), "{created}");
    assert_eq!(created["role"], "user", "{created}");
    assert_eq!(created["owner"], "bob", "{created}");
    assert_eq!(created["enabled"], true, "{created}");

    let listed = berth(&server).token(token).json(&["list"]).await;
    assert_eq!(
        listed["work_requests"],
        Value::Array(Vec::new()),
        "{listed}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_is_taken_from_the_flag_a_file_or_berth_token() {
    let server = TestServer::start().await;
    let (_, bob) = create_user_token(&server, "bob").await;
    berth(&server).token(&bob).ok(&["list"]).await;

    let file = server.data_dir.path().join("bob.token");
    std::fs::write(&file, format!("{bob}\n")).unwrap();
    let file = file.to_str().unwrap();
    let from_file = berth(&server)
        .without_token()
        .run(&["--token-file", file, "list"])
        .await;
    assert_eq!(from_file.code, 0, "--token-file: {}", from_file.stderr);

    let from_env = berth(&server)
        .without_token()
        .env("BERTH_TOKEN", &bob)
        .run(&["list"])
        .await;
    assert_eq!(from_env.code, 0, "BERTH_TOKEN: {}", from_env.stderr);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_files_are_refused_before_they_are_read_or_sent() {
    let server = TestServer::start().await;
    let big_token = server.data_dir.path().join("big.token");
    std::fs::write(&big_token, vec![b'a'; 100 * 1024]).unwrap();
    let result = berth(&server)
        .without_token()
        .run(&["--token-file", big_token.to_str().unwrap(), "list"])
        .await;
    result.assert_one_error_line("100 KiB token file", 1, &["token file", "64 KiB"]);

    let big_workflow = server.data_dir.path().join("big.yaml");
    std::fs::write(&big_workflow, vec![b'#'; 5 * 1024 * 1024]).unwrap();
    let result = berth(&server)
        .run(&["workflow", "submit", big_workflow.to_str().unwrap()])
        .await;
    result.assert_one_error_line("5 MiB workflow file", 1, &["workflow file", "4 MiB"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_list_never_shows_a_secret() {
    let server = TestServer::start().await;
    let (id, secret) = create_user_token(&server, "bob").await;
    let out = berth(&server).ok(&["token", "list", "-o", "json"]).await;
    assert!(!out.contains(&secret), "{out}");
    assert!(!out.contains(&server.admin_token), "{out}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{listed}");
    assert!(
        tokens
            .iter()
            .any(|t| t["id"] == id.as_str() && t["owner"] == "bob")
    );
    for token in tokens {
        assert!(token.get("token").is_none(), "{token}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_token_is_refused_with_one_unauthenticated_error_line() {
    let server = TestServer::start().await;
    let (id, bob) = create_user_token(&server, "bob").await;
    berth(&server).token(&bob).ok(&["list"]).await;

    let disabled = berth(&server).json(&["token", "disable", &id]).await;
    assert_eq!(disabled["enabled"], false, "{disabled}");

    let result = berth(&server).token(&bob).run(&["list"]).await;
    result.assert_one_error_line("disabled token", 1, &["UNAUTHENTICATED"]);
    assert!(
        !result.stderr.contains(&bob),
        "the token leaked: {}",
        result.stderr
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_prints_an_id_and_get_shows_the_request_without_its_secret() {
    let server = TestServer::start().await;
    let Output {
        code,
        stdout: out,
        stderr: err,
    } = berth(&server)
        .run(&[
            "run",
            "busybox",
            "--env",
            "A=1",
            "--secret-env",
            "S=topsecret",
            "--memory",
            "256M",
            "--cpus",
            "0.5",
            "--timeout",
            "30s",
            "--detach",
            "--",
            "sh",
            "-c",
            "echo hi",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "only the id: {out:?}");
    let id = out.trim();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "not an id: {out:?}");
    assert!(!err.contains("topsecret"), "{err}");

    let json = berth(&server).ok(&["get", id, "-o", "json"]).await;
    assert!(!json.contains("topsecret"), "{json}");
    let got: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(got["id"], id);
    assert_eq!(got["status"], "pending");
    assert_eq!(got["result"], Value::Null);
    assert_eq!(got["exit_code"], Value::Null);
    assert_eq!(got["reason"], "");
    assert_eq!(got["priority"], 0);
    assert_eq!(got["attempts"], Value::Array(Vec::new()));
    assert_eq!(got["image"], "busybox");
    assert_eq!(got["command"], serde_json::json!(["sh", "-c", "echo hi"]));
    assert_eq!(got["env"], serde_json::json!({"A": "1"}));
    assert_eq!(got["secret_env_keys"], serde_json::json!(["S"]));
    assert_eq!(got["memory_bytes"], 268_435_456);
    assert_eq!(got["cpus"], 0.5);
    assert_eq!(got["timeout"], "30s");
    assert_eq!(got["created_by"], "admin");

    let table = berth(&server).ok(&["get", id]).await;
    assert!(table.contains(id), "{table}");
    assert!(!table.contains("topsecret"), "{table}");

    // The secret did reach the server, sealed.
    assert_eq!(
        stored_secrets(&server, id)
            .await
            .get("S")
            .map(String::as_str),
        Some("topsecret")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_env_without_a_value_is_read_from_the_clis_environment() {
    let server = TestServer::start().await;
    let Output {
        code,
        stdout: out,
        stderr: err,
    } = berth(&server)
        .env("S", "from-the-environment")
        .run(&["run", "--secret-env", "S", "--detach", "busybox"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("from-the-environment") && !err.contains("from-the-environment"));
    let id = out.trim();
    assert_eq!(
        stored_secrets(&server, id)
            .await
            .get("S")
            .map(String::as_str),
        Some("from-the-environment")
    );

    // A variable that is not set is a usage error, not an empty secret.
    let result = berth(&server)
        .run(&[
            "run",
            "--secret-env",
            "BERTH_TEST_UNSET_VARIABLE",
            "--detach",
            "busybox",
        ])
        .await;
    result.assert_one_error_line("unset secret env", 2, &["BERTH_TEST_UNSET_VARIABLE"]);
    let stored = query(&server.database_url, "SELECT count(*) FROM work_requests").await;
    assert_eq!(stored[0].get::<_, i64>(0), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_by_status_and_prints_a_table_with_a_header() {
    let server = TestServer::start().await;
    let first = run_detached(&server).await;
    let second = run_detached(&server).await;
    berth(&server).ok(&["cancel", &first]).await;

    let pending = berth(&server).json(&["list", "--status", "pending"]).await;
    let ids: Vec<&str> = pending["work_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str()], "{pending}");
    assert_eq!(pending["work_requests"][0]["status"], "pending");
    assert_eq!(pending["next_page_token"], "");

    let all = berth(&server).json(&["list"]).await;
    let ids: Vec<&str> = all["work_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [second.as_str(), first.as_str()],
        "newest first: {all}"
    );

    for args in [&["list"][..], &["list", "-o", "table"]] {
        let table = berth(&server).ok(args).await;
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{args:?}: a header and two rows: {table}");
        assert!(lines[0].starts_with("ID "), "{args:?}: {table}");
        assert!(lines[0].contains("STATUS"), "{args:?}: {table}");
        assert!(lines[1].starts_with(&second), "{args:?}: {table}");
        assert!(lines[1].contains("pending"), "{args:?}: {table}");
        assert!(lines[2].starts_with(&first), "{args:?}: {table}");
        assert!(lines[2].contains("aborted"), "{args:?}: {table}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_aborts_and_get_then_shows_it_aborted() {
    let server = TestServer::start().await;
    let id = run_detached(&server).await;
    let cancelled = berth(&server).json(&["cancel", &id]).await;
    assert_eq!(cancelled["status"], "aborted", "{cancelled}");

    let got = berth(&server).json(&["get", &id]).await;
    assert_eq!(got["status"], "aborted", "{got}");
    assert_eq!(got["reason"], "cancelled", "{got}");
    assert!(got["completed_at"].is_string(), "{got}");

    let again = berth(&server).run(&["cancel", &id]).await;
    again.assert_one_error_line("cancel twice", 1, &["FAILED_PRECONDITION"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gives_one_error_line_and_a_non_zero_exit() {
    let server = TestServer::start().await;
    let admin = server.admin_token.as_str();

    let result = berth(&server)
        .run(&["run", "busybox", "--memory", "12Q"])
        .await;
    result.assert_one_error_line("--memory 12Q", 2, &["--memory", "12Q"]);

    let result = berth(&server)
        .run(&["run", "Busybox", "--secret-env", "S=topsecret", "--detach"])
        .await;
    result.assert_one_error_line("run Busybox", 125, &["INVALID_ARGUMENT", "spec.image"]);
    assert!(!result.stderr.contains("topsecret"), "{}", result.stderr);

    // A refused submission submitted nothing: the same status attached and detached.
    for detach in [false, true] {
        let mut args = vec!["run", "busybox", "--network", "host"];
        if detach {
            args.push("--detach");
        }
        args.extend(["--", "true"]);
        let result = berth(&server).run(&args).await;
        result.assert_one_error_line(
            &format!("run --network host (detach: {detach})"),
            125,
            &["INVALID_ARGUMENT", "network"],
        );
    }

    let result = berth(&server).run(&["get", "not-a-uuid"]).await;
    result.assert_one_error_line("get not-a-uuid", 1, &["INVALID_ARGUMENT", "not-a-uuid"]);

    let result = berth(&server).without_token().run(&["list"]).await;
    result.assert_one_error_line("no token", 2, &["no token"]);

    let result = berth(&server)
        .server("http://127.0.0.1:1")
        .run(&["list"])
        .await;
    result.assert_one_error_line(
        "connection refused",
        1,
        &["cannot connect to http://127.0.0.1:1", "--server"],
    );
    assert!(
        !result.stderr.contains(admin),
        "the token leaked: {}",
        result.stderr
    );

    let result = berth(&server).run(&["worker", "get", "nosuch"]).await;
    result.assert_one_error_line("worker get nosuch", 1, &["NOT_FOUND", "nosuch"]);

    // None of the refused runs was stored.
    let stored = query(&server.database_url, "SELECT count(*) FROM work_requests").await;
    assert_eq!(stored[0].get::<_, i64>(0), 0);
    server.stop().await;
}
