//! The real `berth` binary with artifacts and collections: `berth artifact create` scans,
//! uploads and resumes, `download` gives the files back byte for byte (and never writes
//! outside its directory), and `berth collection ...` manages items; bad input is one
//! `error:` line.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: a failed step should fail the test"
)]

use std::path::Path;
use std::time::Duration;

use berth_tests::{TestServer, berth, binary, query};
use serde_json::Value;

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// `len` bytes that differ from one position to the next (so a misplaced chunk shows).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

fn paths(artifact: &Value) -> Vec<String> {
    artifact["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no files in {artifact}"))
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_uploads_a_directory_and_download_gives_it_back_byte_for_byte() {
    let server = TestServer::start().await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("dist");
    write(&src.join("app.bin"), &pattern(6 * 1024 * 1024 + 123, 1));
    write(&src.join("docs/readme.txt"), b"read me\n");
    write(&src.join("empty"), b"");
    std::os::unix::fs::symlink("docs/readme.txt", src.join("latest")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("escape")).unwrap();
    let state = work.path().join("state");
    let cli = berth(&server).env("BERTH_STATE_DIR", state.to_str().unwrap());

    let created = cli
        .json(&[
            "artifact",
            "create",
            "--category",
            "package",
            "--data",
            r#"{"version":"1.2"}"#,
            "--expire",
            "7d",
            src.to_str().unwrap(),
        ])
        .await;
    assert_eq!(created["complete"], true, "{created}");
    assert_eq!(created["category"], "package", "{created}");
    assert_eq!(created["data"]["version"], "1.2", "{created}");
    assert_eq!(
        paths(&created),
        ["app.bin", "docs/readme.txt", "empty", "escape", "latest"]
    );
    assert!(created["expire_at"].is_string(), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    // Nothing is left to resume.
    let leftovers = std::fs::read_dir(state.join("uploads"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "a finished upload leaves no state file");

    let table = cli.ok(&["artifact", "get", &id]).await;
    assert!(table.contains("docs/readme.txt"), "{table}");
    assert!(table.contains("-> /etc/passwd"), "{table}");
    let listed = cli
        .json(&["artifact", "list", "--category", "package"])
        .await;
    assert_eq!(listed["artifacts"][0]["id"], id.as_str(), "{listed}");

    let out = work.path().join("out");
    let downloaded = cli
        .json(&["artifact", "download", &id, "-d", out.to_str().unwrap()])
        .await;
    assert_eq!(
        downloaded["skipped"],
        serde_json::json!(["escape"]),
        "{downloaded}"
    );
    for name in ["app.bin", "docs/readme.txt", "empty"] {
        assert_eq!(
            std::fs::read(out.join(name)).unwrap(),
            std::fs::read(src.join(name)).unwrap(),
            "{name} differs"
        );
    }
    assert_eq!(
        std::fs::read_link(out.join("latest")).unwrap(),
        Path::new("docs/readme.txt")
    );
    assert!(
        std::fs::symlink_metadata(out.join("escape")).is_err(),
        "a symlink out of the download was created"
    );

    // One file only.
    let one = work.path().join("one");
    cli.ok(&[
        "artifact",
        "download",
        &id,
        "docs/readme.txt",
        "-d",
        one.to_str().unwrap(),
    ])
    .await;
    assert_eq!(
        std::fs::read(one.join("docs/readme.txt")).unwrap(),
        b"read me\n"
    );
    assert!(!one.join("app.bin").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_create_resumes_where_the_server_got_to_when_run_again() {
    let server = TestServer::start().await;
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big.bin");
    write(&big, &pattern(128 * 1024 * 1024, 7));
    let state = work.path().join("state");

    // Start an upload and kill the CLI once the server has committed part of it.
    let mut child = tokio::process::Command::new(binary("berth"))
        .args(["--server", &server.url, "--token", &server.admin_token])
        .args(["artifact", "create", "--category", "output", "-o", "json"])
        .arg(&big)
        .env("BERTH_STATE_DIR", &state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let committed = loop {
        let rows = query(
            &server.database_url,
            "SELECT committed_size FROM file_uploads",
        )
        .await;
        let committed: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
        if committed > 0 {
            break committed;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the upload finished before it could be interrupted"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing was committed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert!(committed < 128 * 1024 * 1024, "{committed}");
    let remembered: Vec<_> = std::fs::read_dir(state.join("uploads"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(remembered.len(), 1, "one interrupted upload is remembered");

    let again = berth(&server)
        .env("BERTH_STATE_DIR", state.to_str().unwrap())
        .run(&[
            "artifact",
            "create",
            "--category",
            "output",
            "-o",
            "json",
            big.to_str().unwrap(),
        ])
        .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("resuming the upload"),
        "{}",
        again.stderr
    );
    let artifact: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(artifact["id"], remembered[0].trim(), "{artifact}");
    assert_eq!(artifact["complete"], true, "{artifact}");

    let out = work.path().join("out");
    berth(&server)
        .ok(&[
            "artifact",
            "download",
            artifact["id"].as_str().unwrap(),
            "-d",
            out.to_str().unwrap(),
        ])
        .await;
    assert!(
        std::fs::read(out.join("big.bin")).unwrap() == std::fs::read(&big).unwrap(),
        "the resumed file differs from the original"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn collection_commands_add_look_up_and_remove_items_with_history() {
    let server = TestServer::start().await;
    let work = tempfile::tempdir().unwrap();
    let cli = berth(&server).env("BERTH_STATE_DIR", work.path().to_str().unwrap());
    let file = work.path().join("pkg.deb");
    write(&file, b"package bytes");
    let artifact = cli
        .json(&[
            "artifact",
            "create",
            "--category",
            "package",
            file.to_str().unwrap(),
        ])
        .await;
    let id = artifact["id"].as_str().unwrap();

    let created = cli
        .json(&[
            "collection",
            "create",
            "releases",
            "--category",
            "package",
            "--keep-last",
            "3",
        ])
        .await;
    assert_eq!(created["retention"]["keep_last"], 3, "{created}");
    let item = cli.json(&["collection", "add", "releases", "v1", id]).await;
    assert_eq!(item["artifact_id"], id, "{item}");
    let found = cli.json(&["collection", "lookup", "releases", "v1"]).await;
    assert_eq!(found["artifact_id"], id, "{found}");
    let listed = cli
        .json(&["artifact", "list", "--collection", "releases"])
        .await;
    assert_eq!(listed["artifacts"][0]["id"], id, "{listed}");
    cli.run(&["collection", "add", "releases", "v1", id])
        .await
        .assert_one_error_line("a taken item name", 1, &["ALREADY_EXISTS"]);
    let changed = cli
        .json(&[
            "collection",
            "set",
            "releases",
            "--keep-last",
            "none",
            "--keep-for",
            "30d",
        ])
        .await;
    assert_eq!(changed["retention"]["keep_last"], Value::Null, "{changed}");
    assert_eq!(changed["retention"]["keep_for"], "30days", "{changed}");

    cli.json(&["collection", "rm", "releases", "v1"]).await;
    let shown = cli
        .json(&["collection", "get", "releases", "--history"])
        .await;
    assert_eq!(shown["items"], serde_json::json!([]), "{shown}");
    assert_eq!(shown["history"][0]["name"], "v1", "{shown}");
    assert_eq!(shown["history"][0]["removed_why"], "removed", "{shown}");
    let names = cli.json(&["collection", "list"]).await;
    assert_eq!(names["collections"][0]["name"], "releases", "{names}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_one_error_line_naming_what_to_fix() {
    let server = TestServer::start().await;
    let work = tempfile::tempdir().unwrap();
    let cli = berth(&server).env("BERTH_STATE_DIR", work.path().to_str().unwrap());
    let file = work.path().join("a.txt");
    write(&file, b"a");
    let f = file.to_str().unwrap();

    cli.run(&["artifact", "create", "--category", "x", "--data", "[1]", f])
        .await
        .assert_one_error_line("data not an object", 2, &["--data", "JSON object"]);
    cli.run(&["artifact", "create", "--category", "x", "--data", "{", f])
        .await
        .assert_one_error_line("data not JSON", 2, &["--data", "not JSON"]);
    let missing = work.path().join("nope");
    cli.run(&[
        "artifact",
        "create",
        "--category",
        "x",
        missing.to_str().unwrap(),
    ])
    .await
    .assert_one_error_line("a missing path", 1, &["nope"]);
    cli.run(&["artifact", "create", "--category", "Not A Slug", f])
        .await
        .assert_one_error_line("a bad category", 1, &["INVALID_ARGUMENT", "category"]);
    cli.run(&["artifact", "get", "not-a-uuid"])
        .await
        .assert_one_error_line("a bad id", 1, &["INVALID_ARGUMENT"]);
    cli.run(&["artifact", "get", "0190b9d4-0000-7000-8000-000000000000"])
        .await
        .assert_one_error_line("an unknown id", 1, &["NOT_FOUND"]);
    cli.run(&["artifact", "expire", "x", "soon"])
        .await
        .assert_one_error_line("a bad expiry", 2, &["never"]);
    cli.run(&["collection", "get", "nothing-here"])
        .await
        .assert_one_error_line("an unknown collection", 1, &["NOT_FOUND", "nothing-here"]);
    let created = cli
        .json(&["artifact", "create", "--category", "x", f])
        .await;
    cli.run(&[
        "artifact",
        "download",
        created["id"].as_str().unwrap(),
        "../a.txt",
    ])
    .await
    .assert_one_error_line("a traversal path", 2, &["`..`"]);
}
