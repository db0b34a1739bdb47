//! `/metrics` on the server's port and on the worker's `--metrics-listen`, scraped the
//! way Prometheus does (plain HTTP GET), around one real job on a real worker.
//!
//! Counters from the facade are process-wide, so every assertion on a counter is about
//! its change across the job; the database gauges are this server's own.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use berth_common::proto::WorkResult;
use berth_tests::{
    TestServer, TestWorker, ensure_test_image, eventually, free_port, quick_heartbeats, result,
    spec, submit, wait_terminal,
};

/// Every family the server must list, with its type.
const SERVER_FAMILIES: [(&str, &str); 16] = [
    ("berth_work_requests", "gauge"),
    ("berth_queue_wait_seconds", "histogram"),
    ("berth_dispatch_latency_seconds", "histogram"),
    ("berth_work_request_duration_seconds", "histogram"),
    ("berth_work_requests_finished_total", "counter"),
    ("berth_attempts_requeued_total", "counter"),
    ("berth_workers", "gauge"),
    ("berth_worker_slots", "gauge"),
    ("berth_log_bytes_total", "counter"),
    ("berth_artifact_bytes_total", "counter"),
    ("berth_trigger_fires_total", "counter"),
    ("berth_topic_backlog_messages", "gauge"),
    ("berth_webhook_deliveries_total", "counter"),
    ("berth_db_pool_connections", "gauge"),
    ("berth_grpc_requests_total", "counter"),
    ("berth_grpc_request_duration_seconds", "histogram"),
];

const WORKER_FAMILIES: [(&str, &str); 5] = [
    ("berth_worker_slots", "gauge"),
    ("berth_worker_running_containers", "gauge"),
    ("berth_worker_log_bytes_sent_total", "counter"),
    ("berth_worker_reconnects_total", "counter"),
    ("berth_worker_container_start_seconds", "histogram"),
];

/// A scrape: the text, and each sample (`name{labels}` as written) with its value.
struct Scrape {
    text: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    async fn of(url: &str) -> Scrape {
        let response = reqwest::Client::new()
            .get(format!("{url}/metrics"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}/metrics: {e}"));
        assert_eq!(response.status(), 200, "GET {url}/metrics");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/plain"),
            "content type {content_type}"
        );
        let text = response.text().await.unwrap();
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample line without a value: {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("not a number in {line:?}"));
            samples.insert(series.to_owned(), value);
        }
        Scrape { text, samples }
    }

    /// The sample `series` (`name` or `name{a="b",...}` exactly as rendered), or 0 when
    /// absent (a counter not yet counted).
    fn value(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// The sample whose name is `name` and whose labels include every `(key, value)`.
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series.as_str(), ""));
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            })
            .map(|(_, v)| *v)
            .sum()
    }

    fn assert_families(&self, families: &[(&str, &str)]) {
        for (name, kind) in families {
            assert!(
                self.text.contains(&format!("\n# HELP {name} "))
                    || self.text.starts_with(&format!("# HELP {name} ")),
                "no HELP line for {name} in:\n{}",
                self.text
            );
            assert!(
                self.text.contains(&format!("# TYPE {name} {kind}\n")),
                "no `# TYPE {name} {kind}` line in:\n{}",
                self.text
            );
            assert!(
                self.samples.keys().any(|s| s == name
                    || s.starts_with(&format!("{name}{{"))
                    || s.starts_with(&format!("{name}_"))),
                "no sample of {name} in:\n{}",
                self.text
            );
        }
    }

    /// Every label value of every sample.
    fn label_values(&self) -> Vec<String> {
        let mut values = Vec::new();
        for series in self.samples.keys() {
            let Some((_, labels)) = series.split_once('{') else {
                continue;
            };
            for part in labels.trim_end_matches('}').split("\",") {
                if let Some((_, value)) = part.split_once("=\"") {
                    values.push(value.trim_end_matches('"').to_owned());
                }
            }
        }
        values
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_family_is_listed_and_a_job_moves_the_counters_by_what_it_did() {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_heartbeats).await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut worker = TestWorker::start(&server, &["--metrics-listen", &listen]).await;
    worker.wait_connected(&server).await;
    let worker_url = format!("http://{listen}");

    let before = Scrape::of(&server.url).await;
    // Zero-filled: every state of the default workspace, before anything was submitted.
    for state in ["blocked", "pending", "running", "completed", "aborted"] {
        let series = format!("berth_work_requests{{state=\"{state}\",workspace=\"default\"}}");
        assert!(
            before.samples.get(&series) == Some(&0.0),
            "{series} should be 0 before any submission:\n{}",
            before.text
        );
    }
    let worker_before = eventually("the worker's /metrics", Duration::from_secs(10), || {
        let url = worker_url.clone();
        async move {
            reqwest::get(format!("{url}/metrics"))
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        }
    })
    .await;
    let () = worker_before;
    let worker_before = Scrape::of(&worker_url).await;

    let line = "hello from a metrics test\n";
    let submitted = submit(
        &server,
        spec(&[
            "sh",
            "-c",
            &format!("printf '{}'", line.replace('\n', "\\n")),
        ]),
    )
    .await;
    let done = wait_terminal(&server, &submitted.id).await;
    assert_eq!(result(&done), WorkResult::Success, "{done:?}");

    let after = Scrape::of(&server.url).await;
    after.assert_families(&SERVER_FAMILIES);

    let finished = "berth_work_requests_finished_total{result=\"success\",reason=\"none\"}";
    assert_eq!(
        after.value(finished) - before.value(finished),
        1.0,
        "{finished} across one successful job:\n{}",
        after.text
    );
    let log_delta = after.value("berth_log_bytes_total") - before.value("berth_log_bytes_total");
    assert!(
        log_delta >= line.len() as f64,
        "berth_log_bytes_total grew by {log_delta}, the job printed {} bytes",
        line.len()
    );
    for histogram in [
        "berth_queue_wait_seconds_count",
        "berth_dispatch_latency_seconds_count",
    ] {
        assert!(
            after.value(histogram) - before.value(histogram) >= 1.0,
            "{histogram} did not grow:\n{}",
            after.text
        );
    }
    let duration = "berth_work_request_duration_seconds_count{result=\"success\"}";
    assert_eq!(
        after.value(duration) - before.value(duration),
        1.0,
        "{duration}"
    );
    let submits = [
        ("method", "/berth.v1.WorkRequestService/SubmitWorkRequest"),
        ("code", "OK"),
    ];
    assert_eq!(
        after.find("berth_grpc_requests_total", &submits)
            - before.find("berth_grpc_requests_total", &submits),
        1.0,
        "one SubmitWorkRequest:\n{}",
        after.text
    );
    // The state gauge is this server's database: exactly the one job, completed.
    assert_eq!(
        after.value("berth_work_requests{state=\"completed\",workspace=\"default\"}"),
        1.0,
        "{}",
        after.text
    );
    assert_eq!(
        after.value("berth_work_requests{state=\"pending\",workspace=\"default\"}"),
        0.0
    );
    assert_eq!(after.value("berth_workers{state=\"connected\"}"), 1.0);
    assert_eq!(after.value("berth_worker_slots{state=\"used\"}"), 0.0);
    assert!(after.value("berth_worker_slots{state=\"free\"}") >= 1.0);
    assert!(after.value("berth_db_pool_connections{state=\"max\"}") >= 1.0);
    assert_eq!(after.value("berth_metrics_database_up"), 1.0);

    // No label names a job, a worker or a token by id.
    for value in after.label_values() {
        assert!(
            uuid::Uuid::parse_str(&value).is_err() && !value.contains(&submitted.id),
            "a label value is an id: {value:?}"
        );
    }
    // The request's id and the worker's name appear nowhere at all.
    assert!(!after.text.contains(&submitted.id));

    let worker_after = Scrape::of(&worker_url).await;
    worker_after.assert_families(&WORKER_FAMILIES);
    let sent = worker_after.value("berth_worker_log_bytes_sent_total")
        - worker_before.value("berth_worker_log_bytes_sent_total");
    assert!(
        sent >= line.len() as f64,
        "the worker sent {sent} log bytes for a {}-byte line",
        line.len()
    );
    assert_eq!(worker_after.value("berth_worker_running_containers"), 0.0);
    assert!(worker_after.value("berth_worker_container_start_seconds_count") >= 1.0);
    for value in worker_after.label_values() {
        assert!(
            uuid::Uuid::parse_str(&value).is_err(),
            "a label value is an id: {value:?}"
        );
    }

    worker.terminate(Duration::from_secs(30)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_metrics_address_stops_the_worker_with_a_message_naming_the_flag() {
    let (code, _out, err) = berth_tests::run_binary(
        "berth-worker",
        &[
            "--metrics-listen",
            "not-an-address",
            "--token",
            "berth_wrk_x",
        ],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("--metrics-listen"), "stderr: {err}");
}
