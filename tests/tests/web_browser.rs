//! The dashboard in a real headless Chromium: signing in, the queue, a request's page
//! and its live log from a real container (latency, resuming after a disconnect, secrets
//! and hostile log text), and signing out when the token is disabled.
//!
//! Screenshots of each step are kept under `target/web-screenshots/`.

#![expect(clippy::unwrap_used, reason = "tests: a failure should fail the test")]

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_common::proto::{DisableTokenRequest, Role, SubmitWorkRequestRequest};
use berth_tests::browser::Browser;
use berth_tests::{
    Logs, TestServer, TestWorker, ensure_test_image, sh, submit_request, wait_started,
    wait_terminal,
};

const SECRET: &str = "hunter2-never-shown-7f3a";

/// Host wall-clock milliseconds at boot: a container's `/proc/uptime` plus this is the
/// wall-clock time it printed a line (containers share the host's kernel clock).
fn boot_wall_ms() -> f64 {
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    (now - uptime) * 1000.0
}

/// Removes ANSI SGR sequences, as the page's script does when it colours them.
fn strip_sgr(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("\x1b[") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(|c: char| !(c.is_ascii_digit() || c == ';')) {
            Some(end) if after[end..].starts_with('m') => rest = &after[end + 1..],
            _ => {
                out.push_str("\x1b[");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

const OBSERVE: &str = r#"
window.__seen = {}; window.__before = [];
const log = document.getElementById('log');
const scan = () => {
  for (const m of log.textContent.matchAll(/tick (\d+) ([0-9.]+)\n/g)) {
    if (!(m[1] in window.__seen)) window.__seen[m[1]] = Date.now();
  }
};
scan();
window.__before = Object.keys(window.__seen);
new MutationObserver(scan).observe(log, {childList: true, subtree: true, characterData: true});
return window.__before.length;
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_follows_a_real_job_in_a_browser() {
    ensure_test_image().await;
    let server = TestServer::start().await;
    let worker = TestWorker::start(&server, &[]).await;
    worker.wait_connected(&server).await;
    let browser = Browser::start("follow", &server.url).await;

    // Sign in with a pasted token.
    browser.open("/ui/queue").await;
    browser.wait_for_path("/ui/login").await;
    browser.screenshot("sign-in").await;
    browser.sign_in(&server.admin_token).await;
    assert_eq!(browser.text("#viewer").await.unwrap(), "admin (admin)");

    // A job that prints a stamped line every 300 ms, hostile text, colour and stderr.
    let script = r#"printf '<script>window.__pwned=1</script>\n<img src=x onerror="window.__pwned=2">\n\033[31mred\033[0m plain\n'; echo oops >&2; i=0; while [ $i -lt 24 ]; do i=$((i+1)); read up rest < /proc/uptime; echo "tick $i $up"; sleep 0.3; done"#;
    let mut spec = sh(script);
    spec.secret_env = HashMap::from([("API_PASSWORD".to_owned(), SECRET.to_owned())]);
    spec.env = HashMap::from([("PLAIN_SETTING".to_owned(), "on".to_owned())]);
    let submitted = submit_request(
        &server,
        SubmitWorkRequestRequest {
            spec: Some(spec),
            ..Default::default()
        },
    )
    .await;
    let id = submitted.id.clone();
    wait_started(&server, &id).await;

    // The queue lists it (running, on our worker) and links to its page.
    browser.open("/ui/queue").await;
    let source = browser.source().await;
    let row = browser
        .text(&format!("#running tr[data-id='{id}']"))
        .await
        .unwrap_or_else(|| {
            panic!(
                "the queue does not list {id}:
{source}"
            )
        });
    assert!(row.contains(&id[..8]), "{row}");
    assert!(row.contains(&worker.name), "{row}");
    let queue_source = browser.source().await;
    assert!(!queue_source.contains(SECRET), "the queue shows the secret");
    browser.screenshot("queue").await;

    // The request page: the secret's name, never its value.
    browser.open(&format!("/ui/work-requests/{id}")).await;
    let env = browser.text("#env").await.unwrap();
    assert!(env.contains("API_PASSWORD (secret)"), "{env}");
    assert!(env.contains("PLAIN_SETTING=on"), "{env}");
    let shown = browser.eval(OBSERVE).await;
    let boot = boot_wall_ms();
    // Cut the stream twice while the job prints; each time reopen from the last id.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        browser
            .eval(
                "berthLog.source.close(); berthLog.open(berthLog.lastId); return berthLog.lastId;",
            )
            .await;
    }
    wait_terminal(&server, &id).await;
    let started = Instant::now();
    while browser.eval("return berthLog.ended;").await != serde_json::json!(true) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the log never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser
        .eval("document.getElementById('log').scrollIntoView(); return 0;")
        .await;
    browser.screenshot("log").await;

    // Each line measured appeared within a second of the container printing it.
    let seen = browser.eval("return window.__seen;").await;
    let before: Vec<String> =
        serde_json::from_value(browser.eval("return window.__before;").await).unwrap();
    let dom = browser
        .eval("return document.getElementById('log').textContent;")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let mut measured = 0;
    let mut worst = 0.0f64;
    for line in dom.lines().filter(|l| l.starts_with("tick ")) {
        let mut words = line.split_whitespace().skip(1);
        let n = words.next().unwrap();
        let up: f64 = words.next().unwrap().parse().unwrap();
        if before.iter().any(|b| b == n) {
            continue;
        }
        let at = seen[n].as_f64().unwrap();
        let late = at - (boot + up * 1000.0);
        worst = worst.max(late);
        measured += 1;
    }
    println!("lines measured: {measured} (already shown: {shown}); worst latency {worst:.0} ms");
    assert!(measured >= 5, "only {measured} lines were measured");
    assert!(
        worst <= 1000.0,
        "a line took {worst:.0} ms to appear (bound: 1000 ms)"
    );

    // Nothing lost, nothing repeated across the reconnects: the DOM is the stored log.
    let stored = Logs::read(&server, &id).await;
    let all: Vec<u8> = stored.chunks.iter().flat_map(|c| c.data.clone()).collect();
    let expected = strip_sgr(&String::from_utf8(all).unwrap());
    assert_eq!(dom, expected, "the page's log differs from the stored log");

    // Hostile text stays text; colour and stderr are told apart.
    assert!(dom.contains("<script>window.__pwned=1</script>"), "{dom}");
    assert_eq!(
        browser.eval("return typeof window.__pwned;").await,
        "undefined"
    );
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('#log img, #log script').length;")
            .await,
        0
    );
    assert_eq!(browser.text("#log span.ansi-1").await.unwrap(), "red");
    assert_eq!(
        browser.text("#log span.stderr").await.unwrap(),
        "oops\n".trim_end()
    );
    let page = browser.source().await;
    assert!(!page.contains(SECRET), "the request page shows the secret");
    browser.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_out_and_a_disabled_token_end_the_session() {
    let server = TestServer::start().await;
    let (token_id, token) = server.create_token(Role::User, "dora").await;
    let browser = Browser::start("sign-out", &server.url).await;
    browser.sign_in(&token).await;
    assert_eq!(browser.text("#viewer").await.unwrap(), "dora (user)");
    browser
        .client
        .find(fantoccini::Locator::Id("logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for_path("/ui/login").await;
    browser.open("/ui/queue").await;
    browser.wait_for_path("/ui/login").await;

    browser.sign_in(&token).await;
    server
        .tokens(&server.admin_token)
        .await
        .disable_token(DisableTokenRequest { id: token_id })
        .await
        .unwrap();
    browser.open("/ui/queue").await;
    browser.wait_for_path("/ui/login").await;
    browser.screenshot("disabled").await;
    browser.close().await;
    server.stop().await;
}
