//! The real `berth` binary with job templates: create, set (merge, unset, conditional),
//! show (a release, a comparison), releases, rollback, list, archive and delete, in
//! tables and in `-o json`; a secret is never printed, and bad input is one `error:` line.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use berth_tests::{TEST_IMAGE, TestServer, berth};
use serde_json::Value;

const SECRET: &str = "cli-template-secret-hunter2";

fn keys(map: &Value) -> Vec<String> {
    let mut keys: Vec<String> = map
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {map}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn template_round_trip_create_set_show_releases_rollback_list() {
    let server = TestServer::start().await;
    let cli = berth(&server).env("API_KEY", SECRET);
    let mut printed = Vec::new();

    // `-o json` goes before the command: everything after `--` is the container's.
    let created: Value = serde_json::from_str(
        &cli.ok(&[
            "-o",
            "json",
            "template",
            "create",
            "web",
            "--image",
            TEST_IMAGE,
            "--memory",
            "512M",
            "--env",
            "DEBUG=1",
            "--env",
            "MODE=fast",
            "--secret-env",
            "API_KEY",
            "--network",
            "front:web,www",
            "--description",
            "the site",
            "--",
            "sh",
            "-c",
            "echo hi",
        ])
        .await,
    )
    .unwrap();
    printed.push(created.to_string());
    assert_eq!(created["name"], "web", "{created}");
    assert_eq!(created["latest_version"], 1, "{created}");
    let v1 = &created["latest"];
    assert_eq!(v1["summary"], "created");
    assert_eq!(v1["job"]["memory_bytes"], 512 << 20);
    assert_eq!(v1["job"]["command"][2], "echo hi");
    assert_eq!(v1["job"]["networks"][0]["aliases"][1], "www", "{v1}");
    assert_eq!(v1["secret_env_keys"][0], "API_KEY");

    let set = cli
        .json(&[
            "template",
            "set",
            "web",
            "--memory",
            "2G",
            "--env",
            "LOG_LEVEL=info",
            "--unset",
            "DEBUG",
            "--note",
            "bigger",
        ])
        .await;
    printed.push(set.to_string());
    assert_eq!(set["latest_version"], 2, "{set}");
    assert_eq!(
        set["latest"]["summary"],
        "memory 512 MiB → 2 GiB; removed env DEBUG; added env LOG_LEVEL"
    );
    assert_eq!(keys(&set["latest"]["job"]["env"]), ["LOG_LEVEL", "MODE"]);

    // --unset finds a secret by its name and removes it.
    let unset = cli
        .json(&["template", "set", "web", "--unset", "API_KEY"])
        .await;
    assert_eq!(unset["latest"]["summary"], "removed secret API_KEY");
    assert_eq!(unset["latest"]["secret_env_keys"], Value::Array(Vec::new()));

    // A change that changes nothing, and one on a stale version, are one error line.
    cli.run(&["template", "set", "web", "--memory", "2G"])
        .await
        .assert_one_error_line("no-op", 1, &["changes nothing", "v3 stays the latest"]);
    cli.run(&[
        "template",
        "set",
        "web",
        "--cpus",
        "2",
        "--expect-version",
        "v1",
    ])
    .await
    .assert_one_error_line("stale", 1, &["is at v3, not v1"]);

    let table = cli.ok(&["template", "releases", "web"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("VERSION"), "{table}");
    assert!(lines[1].starts_with("v3"), "{table}");
    assert!(lines[3].starts_with("v1"), "{table}");
    assert!(table.contains("(bigger)"), "the note is shown: {table}");
    let releases = cli.json(&["template", "releases", "web"]).await;
    assert_eq!(releases["releases"].as_array().unwrap().len(), 3);
    printed.push(table);
    printed.push(releases.to_string());

    let rolled = cli.json(&["template", "rollback", "web", "v1"]).await;
    printed.push(rolled.to_string());
    assert_eq!(rolled["latest_version"], 4);
    assert_eq!(rolled["latest"]["rolled_back_from"], 1);
    assert_eq!(rolled["latest"]["job"], v1["job"], "v4 runs what v1 ran");
    assert_eq!(rolled["latest"]["secret_env_keys"][0], "API_KEY");
    assert!(
        rolled["latest"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("rolled back to v1; "),
        "{rolled}"
    );

    let shown = cli
        .ok(&["template", "show", "web@v4", "--diff", "v3"])
        .await;
    assert!(shown.contains("diff from v3:"), "{shown}");
    assert!(shown.contains("memory_bytes"), "{shown}");
    assert!(shown.contains("(secret)"), "{shown}");
    printed.push(shown);
    let compared = cli
        .json(&["template", "show", "web@v4", "--diff", "v3"])
        .await;
    assert_eq!(compared["version"], 4);
    assert_eq!(compared["diff_against"], 3);
    let secret_change = compared["diff"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["secret"] == true)
        .unwrap();
    assert_eq!(secret_change["field"], "secret_env[\"API_KEY\"]");
    assert_eq!(secret_change["before"], "");
    printed.push(compared.to_string());
    let latest = cli.ok(&["template", "show", "web"]).await;
    assert!(latest.contains("latest_version:"), "{latest}");
    assert!(latest.contains("v4"), "{latest}");
    printed.push(latest);

    cli.json(&[
        "template",
        "create",
        "batch",
        "--image",
        TEST_IMAGE,
        "--inactive",
    ])
    .await;
    let list = cli.ok(&["template", "list"]).await;
    let names: Vec<&str> = list
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["batch", "web"], "{list}");
    let archived = cli.json(&["template", "archive", "batch"]).await;
    assert_eq!(archived["archived"], true);
    let listed = cli.json(&["template", "list"]).await;
    assert_eq!(listed["templates"].as_array().unwrap().len(), 1);
    let all = cli.json(&["template", "list", "--all"]).await;
    assert_eq!(all["templates"].as_array().unwrap().len(), 2);
    let stats = cli
        .json(&["template", "stats", "web", "--since", "7d"])
        .await;
    assert_eq!(stats["template"], "web", "{stats}");
    assert_eq!(stats["runs"], 0, "nothing ran: {stats}");
    let table = cli.ok(&["template", "stats", "web"]).await;
    assert!(table.contains("runs:"), "{table}");
    let deleted = cli.json(&["template", "delete", "batch"]).await;
    assert_eq!(deleted["deleted"], true, "{deleted}");

    for text in &printed {
        assert!(!text.contains(SECRET), "a secret was printed: {text}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_template_input_is_one_error_line_naming_what_to_change() {
    let server = TestServer::start().await;
    let cli = berth(&server);
    cli.run(&["template", "create", "latest", "--image", TEST_IMAGE])
        .await
        .assert_one_error_line("reserved", 1, &["is reserved"]);
    cli.run(&["template", "create", "Bad_Name", "--image", TEST_IMAGE])
        .await
        .assert_one_error_line("slug", 1, &["name:"]);
    cli.run(&["template", "show", "web@latest"])
        .await
        .assert_one_error_line("version", 2, &["not a version"]);
    cli.run(&["template", "set", "web"])
        .await
        .assert_one_error_line("nothing", 2, &["nothing to change"]);
    cli.run(&["template", "show", "nowhere"])
        .await
        .assert_one_error_line("missing", 1, &["no job template named \"nowhere\""]);
    // A random name when none is given.
    let made = cli
        .json(&["template", "create", "", "--image", TEST_IMAGE])
        .await;
    assert!(
        made["name"].as_str().unwrap().contains('-'),
        "adjective-noun: {made}"
    );
    server.stop().await;
}
