//! The real `berth` binary with trigger rules: create (cron in a zone, an interval),
//! get, list, next (times in the rule's zone), pause, resume, fire-now, events and
//! archive, in tables and in `-o json`; a secret is never printed, and bad input is one
//! `error:` line.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use berth_tests::{TEST_IMAGE, TestServer, berth};

const SECRET: &str = "cli-trigger-secret-hunter2";

#[tokio::test(flavor = "multi_thread")]
async fn trigger_round_trip_create_get_list_next_pause_resume_fire_events_archive() {
    let server = TestServer::start().await;
    let cli = berth(&server).env("API_KEY", SECRET);
    let mut printed = Vec::new();
    // A template whose runs no worker takes.
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

    let created = cli
        .json(&[
            "trigger",
            "create",
            "nightly",
            "--schedule",
            "0 3 * * *",
            "--tz",
            "Europe/Berlin",
            "--run-template",
            "backup",
            "--env",
            "MODE=full",
            "--secret-env",
            "API_KEY",
            "--overlap",
            "buffer-one",
            "--catchup-window",
            "5m",
        ])
        .await;
    printed.push(created.to_string());
    assert_eq!(created["name"], "nightly", "{created}");
    assert_eq!(created["type"], "schedule");
    assert_eq!(created["state"], "active");
    assert_eq!(created["schedule"]["cron"], "0 3 * * *");
    assert_eq!(created["schedule"]["time_zone"], "Europe/Berlin");
    assert_eq!(created["schedule"]["overlap"], "buffer-one");
    assert_eq!(created["schedule"]["catchup_window"], "5m");
    assert_eq!(created["action"]["template"], "backup");
    assert_eq!(created["action"]["env"]["MODE"], "full");
    assert_eq!(created["action"]["secret_env_keys"][0], "API_KEY");
    assert!(created["next_fire_at"].is_string(), "{created}");

    cli.ok(&[
        "trigger",
        "create",
        "poll",
        "--interval",
        "PT15M",
        "--anchor",
        "2026-01-01T00:00:00Z",
        "--run-template",
        "backup@v1",
        "--paused",
    ])
    .await;

    let shown = cli.ok(&["trigger", "get", "nightly"]).await;
    printed.push(shown.clone());
    assert!(shown.contains("cron 0 3 * * * in Europe/Berlin"), "{shown}");
    assert!(shown.contains("backup (latest)"), "{shown}");
    assert!(shown.contains("API_KEY"), "{shown}");

    let listed = cli.ok(&["trigger", "list"]).await;
    printed.push(listed.clone());
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(lines[0].starts_with("NAME"), "{listed}");
    assert!(lines[1].starts_with("nightly"), "by name: {listed}");
    assert!(
        lines[2].starts_with("poll") && lines[2].contains("paused"),
        "{listed}"
    );
    assert!(lines[2].contains("backup@v1"), "{listed}");
    assert!(
        lines[2].contains("every PT15M from 2026-01-01T00:00:00Z"),
        "{listed}"
    );

    // The next times, in the rule's zone.
    let next = cli.json(&["trigger", "next", "nightly", "-n", "3"]).await;
    assert_eq!(next["time_zone"], "Europe/Berlin");
    let times = next["times"].as_array().unwrap();
    assert_eq!(times.len(), 3);
    for t in times {
        let local = t["local"].as_str().unwrap();
        assert!(
            local.contains("T03:00:00+01:00")
                || local.contains("T03:00:00+02:00")
                || !t["note"].as_str().unwrap().is_empty(),
            "{t}"
        );
    }
    let table = cli.ok(&["trigger", "next", "nightly"]).await;
    assert!(table.starts_with("LOCAL (Europe/Berlin)"), "{table}");
    assert_eq!(
        table.lines().count(),
        6,
        "a header and the 5 default times: {table}"
    );

    let paused = cli
        .json(&["trigger", "pause", "nightly", "--note", "maintenance"])
        .await;
    assert_eq!(paused["state"], "paused");
    let resumed = cli.json(&["trigger", "resume", "nightly"]).await;
    assert_eq!(resumed["state"], "active");

    let fired = cli.json(&["trigger", "fire-now", "poll"]).await;
    printed.push(fired.to_string());
    assert_eq!(fired["type"], "manual");
    assert_eq!(fired["rule"], "poll");
    assert_eq!(fired["outcome"], "fired", "{fired}");
    assert_eq!(fired["description"]["by"], "admin", "{fired}");
    let request = fired["work_request_id"].as_str().unwrap();
    let got = cli.json(&["get", request]).await;
    assert_eq!(got["trigger_rule"], "poll", "{got}");

    let events = cli
        .json(&["trigger", "events", "poll", "--since", "1h"])
        .await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["id"], fired["id"]);
    let table = cli.ok(&["trigger", "events", "--outcome", "fired"]).await;
    printed.push(table.clone());
    assert!(table.starts_with("OCCURRED"), "{table}");
    assert!(
        table.contains("manual") && table.contains(request),
        "{table}"
    );
    let none = cli
        .json(&["trigger", "events", "nightly", "--outcome", "missed"])
        .await;
    assert_eq!(none["events"].as_array().unwrap().len(), 0);

    let archived = cli.json(&["trigger", "archive", "poll"]).await;
    assert_eq!(archived["state"], "archived");
    assert!(archived["next_fire_at"].is_null());
    let listed = cli.ok(&["trigger", "list"]).await;
    assert!(!listed.contains("poll"), "{listed}");
    let all = cli.ok(&["trigger", "list", "--all"]).await;
    assert!(all.contains("poll") && all.contains("archived"), "{all}");

    for text in printed {
        assert!(!text.contains(SECRET), "a secret was printed: {text}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_trigger_input_is_one_error_line() {
    let server = TestServer::start().await;
    let cli = berth(&server);
    cli.ok(&[
        "template", "create", "job", "--image", TEST_IMAGE, "--", "true",
    ])
    .await;
    for (case, args, code, expected) in [
        (
            "a cron of four fields",
            &[
                "trigger",
                "create",
                "x",
                "--schedule",
                "0 3 * *",
                "--run-template",
                "job",
            ][..],
            1,
            &["schedule.cron"][..],
        ),
        (
            "a zone that does not exist",
            &[
                "trigger",
                "create",
                "x",
                "--schedule",
                "0 3 * * *",
                "--tz",
                "Mars/Olympus",
                "--run-template",
                "job",
            ][..],
            1,
            &["schedule.time_zone", "Mars/Olympus"][..],
        ),
        (
            "an interval of months",
            &[
                "trigger",
                "create",
                "x",
                "--interval",
                "P1M",
                "--run-template",
                "job",
            ][..],
            1,
            &["schedule.interval"][..],
        ),
        (
            "a zone for an interval",
            &[
                "trigger",
                "create",
                "x",
                "--interval",
                "PT1M",
                "--tz",
                "UTC",
                "--run-template",
                "job",
            ][..],
            2,
            &["--tz goes with --schedule"][..],
        ),
        (
            "two kinds of when",
            &[
                "trigger",
                "create",
                "x",
                "--interval",
                "PT1M",
                "--on-artifact",
                "build",
                "--run-template",
                "job",
            ][..],
            2,
            &["--on-artifact"][..],
        ),
        (
            "no when",
            &["trigger", "create", "x", "--run-template", "job"][..],
            2,
            &["--schedule"][..],
        ),
        (
            "an unknown overlap policy",
            &[
                "trigger",
                "create",
                "x",
                "--interval",
                "PT1M",
                "--overlap",
                "sometimes",
                "--run-template",
                "job",
            ][..],
            2,
            &["--overlap", "sometimes"][..],
        ),
        (
            "an unknown template",
            &[
                "trigger",
                "create",
                "x",
                "--interval",
                "PT1M",
                "--run-template",
                "nosuch",
            ][..],
            1,
            &["action.template", "nosuch"][..],
        ),
        (
            "a rule that does not exist",
            &["trigger", "get", "nosuch"][..],
            1,
            &["nosuch"][..],
        ),
        (
            "too many times",
            &["trigger", "next", "x", "-n", "101"][..],
            2,
            &["101"][..],
        ),
        (
            "a since that is neither",
            &["trigger", "events", "--since", "yesterday"][..],
            2,
            &["--since", "yesterday"][..],
        ),
    ] {
        cli.run(args)
            .await
            .assert_one_error_line(case, code, expected);
    }
    server.stop().await;
}
