//! The real `berth` binary with topics and subscriptions: create, list, get, publish
//! (with and without an id), subscribe printing one JSON line per message and accepting
//! it, answering a ping while it waits, subscriptions made, listed, shown, sought and
//! deleted; and bad input as one `error:` line before or after reaching the server.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::process::Stdio;
use std::time::Duration;

use berth_common::proto::{Availability, GetTopicRequest, PingTopicRequest};
use berth_tests::topics::topics;
use berth_tests::{TestServer, berth, binary, eventually};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

#[tokio::test(flavor = "multi_thread")]
async fn topic_and_subscription_round_trip() {
    let server = TestServer::start().await;
    let cli = berth(&server);
    let made = cli
        .json(&[
            "topic",
            "create",
            "builds.done",
            "--policy",
            "store",
            "--max-age",
            "7d",
            "--description",
            "finished builds",
            "--producer",
            "role:contributor",
            "--consumer",
            "role:viewer",
            "--api-info",
            r#"{"schema": "build/v1"}"#,
        ])
        .await;
    assert_eq!(made["slug"], "builds.done");
    assert_eq!(made["store_policy"], "store");
    assert_eq!(made["max_age"], "7days");
    assert_eq!(made["api_info"]["schema"], "build/v1");
    assert_eq!(made["grants"][0]["principal"], "role:contributor");
    let table = cli.ok(&["topic", "list"]).await;
    assert!(table.starts_with("SLUG"), "{table}");
    assert!(table.contains("builds.done  store"), "{table}");
    let shown = cli.ok(&["topic", "get", "builds.done"]).await;
    assert!(shown.contains("availability:"), "{shown}");
    assert!(
        shown.contains("unknown (last ping -, last pong -, 0 live consumers)"),
        "{shown}"
    );

    let id = uuid::Uuid::now_v7().to_string();
    let published = cli
        .json(&[
            "topic",
            "publish",
            "builds.done",
            "--json",
            r#"{"build": 42}"#,
            "--id",
            &id,
            "--context",
            "ci",
            "--property",
            "arch=amd64",
        ])
        .await;
    assert_eq!(published["messages"][0]["message_id"], id.as_str());
    let seq = published["messages"][0]["seq"].as_i64().unwrap();
    cli.run(&[
        "topic",
        "publish",
        "builds.done",
        "--json",
        r#"{"build": 42}"#,
        "--id",
        &id,
    ])
    .await
    .assert_one_error_line(
        "a duplicate id",
        1,
        &["ALREADY_EXISTS", "already published"],
    );
    cli.ok(&["topic", "publish", "builds.done", "--json", "43"])
        .await;

    // Subscribe makes the subscription from what is stored, prints and accepts.
    let printed = cli
        .ok(&[
            "topic",
            "subscribe",
            "builds.done",
            "--subscription",
            "deploy",
            "--create",
            "--ack",
            "--max",
            "2",
        ])
        .await;
    let lines: Vec<Value> = printed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{printed}");
    assert_eq!(lines[0]["seq"], seq);
    assert_eq!(lines[0]["message_id"], id.as_str());
    assert_eq!(lines[0]["content"], json!({"build": 42}));
    assert_eq!(lines[0]["context"], "ci");
    assert_eq!(lines[0]["properties"]["arch"], "amd64");
    assert_eq!(lines[0]["producer"], "admin");
    assert_eq!(lines[0]["delivery_count"], 1);
    assert!(lines[0]["published_at"].is_string());
    assert_eq!(lines[1]["content"], json!(43));

    let sub = cli
        .json(&["subscription", "get", "builds.done", "deploy"])
        .await;
    assert_eq!(
        (sub["backlog"].as_u64(), sub["in_flight"].as_u64()),
        (Some(0), Some(0)),
        "both accepted: {sub}"
    );
    assert_eq!(sub["max_deliveries"], 5);
    let made = cli
        .json(&[
            "subscription",
            "create",
            "builds.done",
            "audit",
            "--start",
            "all",
            "--ack-deadline",
            "1m",
            "--max-deliveries",
            "3",
            "--backoff",
            "2s,10s",
            "--max-in-flight",
            "50",
        ])
        .await;
    assert_eq!(made["backlog"], 2);
    assert_eq!(made["ack_deadline"], "1m");
    assert_eq!(made["backoff"], json!(["2s", "10s"]));
    let listed = cli.ok(&["subscription", "list", "builds.done"]).await;
    assert!(
        listed.contains("audit") && listed.contains("deploy"),
        "{listed}"
    );
    let sought = cli
        .json(&[
            "subscription",
            "seek",
            "builds.done",
            "deploy",
            "--to-seq",
            &seq.to_string(),
        ])
        .await;
    assert_eq!(sought["backlog"], 2, "both stored messages are owed again");
    let deleted = cli
        .json(&["subscription", "delete", "builds.done", "audit"])
        .await;
    assert_eq!(deleted["deleted"], true);
    let pinged = cli.json(&["topic", "ping", "builds.done"]).await;
    assert_eq!(pinged["live_consumers"], 0);
    let deleted = cli.json(&["topic", "delete", "builds.done"]).await;
    assert_eq!(deleted["deleted"], true);
    cli.run(&["topic", "get", "builds.done"])
        .await
        .assert_one_error_line("a deleted topic", 1, &["NOT_FOUND", "builds.done"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_one_error_line() {
    let server = TestServer::start().await;
    let cli = berth(&server);
    cli.ok(&["topic", "create", "jobs"]).await;
    for (case, line, code, says) in [
        (
            "content that is not JSON",
            &["topic", "publish", "jobs", "--json", "{nope"][..],
            2,
            &["--json", "not valid JSON"][..],
        ),
        (
            "an id that is not a UUID",
            &["topic", "publish", "jobs", "--json", "1", "--id", "x"],
            2,
            &["--id", "not a UUID"],
        ),
        (
            "a principal naming nobody",
            &["topic", "create", "t2", "--producer", "everyone"],
            2,
            &["--producer"],
        ),
        (
            "a seek without a target",
            &["subscription", "seek", "jobs", "s"],
            2,
            &["--to-seq"],
        ),
        (
            "an unknown topic",
            &["topic", "publish", "nope", "--json", "1"],
            1,
            &["NOT_FOUND", "no topic"],
        ),
        (
            "a bad slug",
            &["topic", "create", "Bad_Slug"],
            1,
            &["INVALID_ARGUMENT", "slug"],
        ),
        (
            "a system slug",
            &["topic", "create", "berth.mine"],
            1,
            &["INVALID_ARGUMENT", "berth."],
        ),
        (
            "an unknown subscription",
            &["topic", "subscribe", "jobs", "--subscription", "none"],
            1,
            &["NOT_FOUND", "no subscription"],
        ),
    ] {
        cli.run(line).await.assert_one_error_line(case, code, says);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribe_answers_pings_while_it_waits_and_stops_after_max() {
    let server = TestServer::start().await;
    let cli = berth(&server);
    cli.ok(&["topic", "create", "svc"]).await;
    cli.ok(&["subscription", "create", "svc", "worker"]).await;
    let mut child = tokio::process::Command::new(binary("berth"))
        .args(["--server", &server.url, "--token", &server.admin_token])
        .args([
            "topic",
            "subscribe",
            "svc",
            "--subscription",
            "worker",
            "--ack",
            "--max",
            "1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut client = topics(&server, &server.admin_token).await;
    let get = GetTopicRequest {
        workspace: String::new(),
        slug: "svc".into(),
    };
    eventually(
        "the CLI's consumer to be live",
        Duration::from_secs(60),
        || {
            let (mut client, get) = (client.clone(), get.clone());
            async move {
                let topic = client.get_topic(get).await.unwrap().into_inner();
                (topic.availability.unwrap().live_consumers == 1).then_some(())
            }
        },
    )
    .await;
    client
        .ping(PingTopicRequest {
            workspace: String::new(),
            topic: "svc".into(),
        })
        .await
        .unwrap();
    eventually(
        "the CLI's pong to make the topic online",
        Duration::from_secs(60),
        || {
            let (mut client, get) = (client.clone(), get.clone());
            async move {
                let topic = client.get_topic(get).await.unwrap().into_inner();
                (topic.availability.unwrap().state == Availability::Online as i32).then_some(())
            }
        },
    )
    .await;
    cli.ok(&["topic", "publish", "svc", "--json", r#"{"job": 1}"#])
        .await;
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the CLI prints the message")
        .unwrap()
        .expect("a line");
    let printed: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(printed["content"], json!({"job": 1}));
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the CLI stops after --max 1")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let sub = cli.json(&["subscription", "get", "svc", "worker"]).await;
    assert_eq!(
        sub["backlog"], 0,
        "it accepted the message before it stopped: {sub}"
    );
    server.stop().await;
}
