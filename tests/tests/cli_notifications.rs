//! The real `berth` binary with notification channels and reactions: create (the secret
//! alone on stdout, once), list, get, update, test against a real receiver, deliveries,
//! redeliver, rotate-secret and delete; reaction add/list/remove; `-o json`; a header
//! value never printed; bad input as one `error:` line.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::time::Duration;

use berth_tests::notify::{quick_notifications, verify};
use berth_tests::receiver::Receiver;
use berth_tests::{TEST_IMAGE, TestServer, berth};

const HEADER_VALUE: &str = "cli-header-value-hunter2";

#[tokio::test(flavor = "multi_thread")]
async fn channel_round_trip_create_test_deliveries_redeliver_rotate_delete() {
    let server = TestServer::start_with(quick_notifications).await;
    let receiver = Receiver::ok().await;
    let cli = berth(&server);
    let url = receiver.url("/hook");
    let header = format!("X-Token={HEADER_VALUE}");
    let created = cli
        .run(&[
            "channel",
            "create",
            "ops",
            "--url",
            &url,
            "--header",
            &header,
            "--events",
            "work_request.*",
        ])
        .await;
    assert_eq!(created.code, 0, "{}", created.stderr);
    let secret = created.stdout.trim().to_owned();
    assert!(
        secret.starts_with("whsec_"),
        "only the secret on stdout: {:?}",
        created.stdout
    );
    assert!(
        created.stderr.contains("shown only once"),
        "{}",
        created.stderr
    );

    let got = cli.json(&["channel", "get", "ops"]).await;
    assert_eq!(got["kind"], "webhook");
    assert_eq!(got["url"], url);
    assert_eq!(got["header_names"][0], "x-token");
    assert_eq!(got["enabled"], true);
    let table = cli.ok(&["channel", "list"]).await;
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("ops") && table.contains(&url), "{table}");

    let ping = cli.json(&["channel", "test", "ops"]).await;
    assert_eq!(ping["event_type"], "notification.ping");
    assert_eq!(ping["state"], "delivered");
    assert_eq!(ping["attempt_log"][0]["status_code"], 200);
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    verify(&secret, &got[0]).unwrap();
    assert_eq!(got[0].header("x-token"), HEADER_VALUE);
    let shown = cli.ok(&["channel", "test", "ops"]).await;
    assert!(
        shown.contains("attempt_log:") && shown.contains("200"),
        "{shown}"
    );

    let deliveries = cli.json(&["channel", "deliveries", "ops"]).await;
    let list = deliveries["deliveries"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        list[0]["attempt_log"][0]["request_headers"]["x-token"],
        "[hidden]"
    );
    let id = list[0]["id"].as_str().unwrap().to_owned();
    // A test ping is not redelivered; the error says what to do instead.
    cli.run(&["channel", "redeliver", &id])
        .await
        .assert_one_error_line(
            "redeliver a ping",
            1,
            &["test ping", "berth channel test ops"],
        );

    let rotated = cli.run(&["channel", "rotate-secret", "ops"]).await;
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    let new_secret = rotated.stdout.trim().to_owned();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);

    let updated = cli
        .json(&[
            "channel",
            "update",
            "ops",
            "--disable",
            "--reason",
            "maintenance",
        ])
        .await;
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["disabled_reason"], "maintenance");
    let updated = cli
        .json(&["channel", "update", "ops", "--enable", "--events", "*"])
        .await;
    assert_eq!(updated["enabled"], true);
    assert_eq!(updated["event_types"][0], "*");

    // Nothing printed anywhere holds the header value or a secret's body.
    for args in [
        &["channel", "get", "ops"][..],
        &["channel", "list", "-o", "json"][..],
        &["channel", "deliveries", "-o", "json"][..],
    ] {
        let out = cli.ok(args).await;
        assert!(!out.contains(HEADER_VALUE), "{args:?}: {out}");
        assert!(
            !out.contains(secret.trim_start_matches("whsec_")),
            "{args:?}: {out}"
        );
        assert!(
            !out.contains(new_secret.trim_start_matches("whsec_")),
            "{args:?}: {out}"
        );
    }

    // Reactions on a template.
    cli.ok(&[
        "template",
        "create",
        "backup",
        "--image",
        TEST_IMAGE,
        "--require",
        "parked=yes",
        "--",
        "true",
    ])
    .await;
    let reaction = cli
        .json(&[
            "reaction",
            "add",
            "--template",
            "backup",
            "--on",
            "failure",
            "--channel",
            "ops",
        ])
        .await;
    assert_eq!(reaction["object"], "backup");
    assert_eq!(reaction["object_kind"], "template");
    assert_eq!(reaction["on"], "failure");
    let listed = cli
        .json(&["reaction", "list", "--template", "backup"])
        .await;
    assert_eq!(listed["reactions"].as_array().unwrap().len(), 1);
    let table = cli.ok(&["reaction", "list"]).await;
    assert!(
        table.contains("template backup") && table.contains("failure"),
        "{table}"
    );
    let id = reaction["id"].as_str().unwrap();
    assert!(
        cli.ok(&["reaction", "remove", id])
            .await
            .contains("deleted reaction")
    );
    assert!(
        cli.json(&["reaction", "list"]).await["reactions"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    assert!(
        cli.ok(&["channel", "delete", "ops"])
            .await
            .contains("deleted channel ops")
    );
    cli.run(&["channel", "get", "ops"])
        .await
        .assert_one_error_line("a deleted channel", 1, &["ops"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_channel_and_reaction_input_is_one_error_line() {
    let server = TestServer::start().await;
    let cli = berth(&server);
    cli.ok(&[
        "channel",
        "create",
        "ops",
        "--url",
        "https://hooks.example.com/",
    ])
    .await;
    for (case, args, code, expected) in [
        (
            "neither a URL nor an address",
            &["channel", "create", "x"][..],
            2,
            &["--url"][..],
        ),
        (
            "a URL with credentials",
            &["channel", "create", "x", "--url", "https://u:p@h.example/"][..],
            1,
            &["webhook.url", "credentials"][..],
        ),
        (
            "a bad event pattern",
            &[
                "channel",
                "create",
                "x",
                "--url",
                "https://h.example/",
                "--events",
                "*.failed",
            ][..],
            1,
            &["event_types[0]"][..],
        ),
        (
            "email without a relay",
            &["channel", "create", "x", "--email", "ops@example.com"][..],
            1,
            &["smtp_host"][..],
        ),
        (
            "an update that changes nothing",
            &["channel", "update", "ops"][..],
            2,
            &["say what to change"][..],
        ),
        (
            "a reaction without an object",
            &["reaction", "add", "--on", "failure", "--channel", "ops"][..],
            2,
            &["--request"][..],
        ),
        (
            "a reaction on an unknown moment",
            &[
                "reaction",
                "add",
                "--template",
                "t",
                "--on",
                "later",
                "--channel",
                "ops",
            ][..],
            2,
            &["later"][..],
        ),
        (
            "a reaction to an unknown channel",
            &[
                "reaction",
                "add",
                "--template",
                "t",
                "--on",
                "failure",
                "--channel",
                "nope",
            ][..],
            1,
            &["nope"][..],
        ),
        (
            "a bad delivery state",
            &["channel", "deliveries", "--state", "lost"][..],
            2,
            &["lost"][..],
        ),
    ] {
        cli.run(args)
            .await
            .assert_one_error_line(case, code, expected);
    }
    server.stop().await;
}
