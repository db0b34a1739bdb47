//! The dashboard's actions over plain HTTP: each needs the session's CSRF token and the
//! role the matching gRPC method needs; a request outside the viewer's workspaces is a
//! 404; a downloaded file is an attachment.

#![expect(clippy::unwrap_used, reason = "tests: a failure should fail the test")]

use std::time::Duration;

use berth_common::proto::Role;
use berth_tests::{SimOptions, TestServer, get, sh, submit};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Signs in with `token`; the session cookie.
async fn session(server: &TestServer, token: &str) -> String {
    let answer = client()
        .post(format!("{}/ui/login", server.url))
        .form(&[("token", token), ("next", "/ui/queue")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303, "sign-in with a valid token");
    let cookie = answer.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

async fn page(server: &TestServer, cookie: &str, path: &str) -> (u16, String) {
    let answer = client()
        .get(format!("{}{path}", server.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// The CSRF token a page embeds.
fn csrf(body: &str) -> String {
    let at = body
        .find("name=\"csrf\" content=\"")
        .expect("a csrf meta tag")
        + 21;
    body[at..].split('"').next().unwrap().to_owned()
}

async fn post(
    server: &TestServer,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client()
        .post(format!("{}{path}", server.url))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_need_the_csrf_token_and_the_right_role() {
    let server = TestServer::start().await;
    // No worker runs it: it stays pending, so it can be cancelled.
    let job = submit(&server, sh("sleep 60")).await;
    let id = job.id.clone();
    let path = format!("/ui/work-requests/{id}");

    // Someone with no role in the request's workspace does not see it at all.
    let (_, outsider) = server
        .create_token_without_roles(Role::User, "outsider")
        .await;
    let outsider = session(&server, &outsider).await;
    let (status, body) = page(&server, &outsider, &path).await;
    assert_eq!(status, 404, "{body}");
    let token = csrf(&page(&server, &outsider, "/ui/queue").await.1);
    let refused = post(
        &server,
        &outsider,
        &format!("{path}/cancel"),
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(refused.status(), 404);

    // A viewer sees it but may not cancel it.
    let (_, viewer) = server.create_token_without_roles(Role::User, "vera").await;
    server.set_role("default", "vera", "viewer").await;
    let viewer = session(&server, &viewer).await;
    let (status, body) = page(&server, &viewer, &path).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("id=\"cancel\""),
        "a workspace viewer is offered cancel"
    );
    let token = csrf(&body);
    let refused = post(
        &server,
        &viewer,
        &format!("{path}/cancel"),
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        berth_tests::status(&get(&server, &id).await),
        berth_common::proto::WorkRequestStatus::Pending
    );

    // A contributor may, but only with the session's CSRF token.
    let (_, member) = server.create_token(Role::User, "cora").await;
    let member = session(&server, &member).await;
    let (status, body) = page(&server, &member, &path).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("id=\"cancel\""),
        "a contributor is not offered cancel"
    );
    let token = csrf(&body);
    let without = post(&server, &member, &format!("{path}/cancel"), &[]).await;
    assert_eq!(without.status(), 403);
    let wrong = post(
        &server,
        &member,
        &format!("{path}/cancel"),
        &[("csrf", "forged")],
    )
    .await;
    assert_eq!(wrong.status(), 403);
    // A contributor may not adjust priority (admins only).
    let priority = post(
        &server,
        &member,
        &format!("{path}/priority"),
        &[("csrf", &token), ("set", "5")],
    )
    .await;
    assert_eq!(priority.status(), 403);
    assert_eq!(
        berth_tests::status(&get(&server, &id).await),
        berth_common::proto::WorkRequestStatus::Pending
    );
    let done = post(
        &server,
        &member,
        &format!("{path}/cancel"),
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(done.status(), 303);
    let back = done.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.starts_with(&format!("{path}?flash=")), "{back}");
    assert_eq!(
        berth_tests::status(&get(&server, &id).await),
        berth_common::proto::WorkRequestStatus::Aborted
    );
    let (_, shown) = page(&server, &member, &back).await;
    assert!(shown.contains("class=\"flash\""), "{shown}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_log_resumes_from_its_event_id() {
    let server = TestServer::start().await;
    let worker = server.sim_worker(SimOptions::default()).await;
    let job = submit(&server, sh("echo one; echo two; echo three")).await;
    berth_tests::wait_terminal(&server, &job.id).await;
    let cookie = session(&server, &server.admin_token).await;
    let url = format!("/ui/work-requests/{}/logs/stream", job.id);
    let (status, all) = page(&server, &cookie, &url).await;
    assert_eq!(status, 200, "{all}");
    assert!(all.contains("event: end"), "{all}");
    // Resume after the first event: the rest is exactly what followed it.
    let first_id = all
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("an event id")
        .to_owned();
    let resumed = client()
        .get(format!("{}{url}", server.url))
        .header("cookie", &cookie)
        .header("last-event-id", &first_id)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_owned)
            .collect()
    };
    let whole = data(&all);
    assert_eq!(data(&resumed), whole[1..].to_vec(), "{all}\n---\n{resumed}");
    let bad = client()
        .get(format!("{}{url}?from=nonsense", server.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    drop(worker);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ui_listen_serves_the_dashboard_alone() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let server = TestServer::start_with(|config| config.ui_listen = Some(addr)).await;
    let ui = format!("http://{addr}");
    let http = client();
    let queue = http.get(format!("{ui}/ui/queue")).send().await.unwrap();
    assert_eq!(queue.status(), 303);
    assert_eq!(
        queue.headers()["location"].to_str().unwrap(),
        "/ui/login?next=/ui/queue"
    );
    let signed = http
        .post(format!("{ui}/ui/login"))
        .form(&[
            ("token", server.admin_token.as_str()),
            ("next", "/ui/queue"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    // Only the dashboard: no operator routes and no gRPC on this listener.
    let healthz = http.get(format!("{ui}/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 404);
    assert!(berth_tests::health(&ui, None).await.is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_downloads_as_an_attachment_and_only_for_members() {
    let server = TestServer::start().await;
    let body: &[u8] = b"<script>window.__pwned=1</script>";
    let mut artifacts = server.artifacts(&server.admin_token).await;
    let created = berth_tests::artifacts::create(
        &mut artifacts,
        "default",
        "report",
        &[("out/page.html", body)],
    )
    .await;
    let id = created.artifact.unwrap().id;
    berth_tests::artifacts::upload(&mut artifacts, &id, "out/page.html", body).await;
    let admin = session(&server, &server.admin_token).await;
    let url = format!("{}/ui/artifacts/{id}/files/out/page.html", server.url);
    let got = client()
        .get(&url)
        .header("cookie", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let headers = got.headers().clone();
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"page.html\""
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(got.bytes().await.unwrap().as_ref(), body);

    let (_, outsider) = server.create_token_without_roles(Role::User, "olga").await;
    let outsider = session(&server, &outsider).await;
    let refused = client()
        .get(&url)
        .header("cookie", &outsider)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_shows_why_a_request_waits_and_filters_by_status() {
    let server = TestServer::start().await;
    let job = submit(&server, sh("true")).await;
    let cookie = session(&server, &server.admin_token).await;
    let (status, body) = page(&server, &cookie, "/ui/queue").await;
    assert_eq!(status, 200);
    let row = format!("data-id=\"{}\"", job.id);
    assert!(body.contains(&row), "{body}");
    let why = body
        .split_once(&format!("<tr {row}"))
        .unwrap()
        .1
        .split("</tr>")
        .next()
        .unwrap()
        .to_owned();
    assert!(why.contains("class=\"why\""), "{why}");
    let (_, completed) = page(&server, &cookie, "/ui/queue?status=completed").await;
    assert!(
        !completed.contains(&row),
        "a completed-only queue lists a pending job"
    );
    let (status, bad) = page(&server, &cookie, "/ui/queue?status=done").await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad.contains("pending"), "{bad}");
    let (_, rows) = page(&server, &cookie, "/ui/queue/rows").await;
    assert!(
        rows.starts_with("<div id=\"queue-tables\">") && rows.contains(&row),
        "{rows}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_waiting_for_approval_is_accepted_or_rejected_by_a_contributor_only() {
    use berth_common::proto::{SubmitWorkRequestRequest, UnblockStrategy, WorkRequestStatus};
    let server = TestServer::start().await;
    let waiting = |script: &str| SubmitWorkRequestRequest {
        spec: Some(sh(script)),
        unblock: UnblockStrategy::Manual as i32,
        ..Default::default()
    };
    let first = berth_tests::submit_request(&server, waiting("echo one")).await;
    let second = berth_tests::submit_request(&server, waiting("echo two")).await;
    assert_eq!(berth_tests::status(&first), WorkRequestStatus::Blocked);

    // Someone with no role in the workspace does not see it, and cannot decide it.
    let (_, outsider) = server.create_token_without_roles(Role::User, "otto").await;
    let outsider = session(&server, &outsider).await;
    let token = csrf(&page(&server, &outsider, "/ui/queue").await.1);
    let unseen = post(
        &server,
        &outsider,
        &format!("/ui/work-requests/{}/unblock", first.id),
        &[("csrf", &token), ("decision", "accept")],
    )
    .await;
    assert_eq!(unseen.status(), 404);

    // A viewer is offered neither, and is refused both.
    let (_, viewer) = server.create_token_without_roles(Role::User, "vic").await;
    server.set_role("default", "vic", "viewer").await;
    let viewer = session(&server, &viewer).await;
    let path = format!("/ui/work-requests/{}", first.id);
    let (status, body) = page(&server, &viewer, &path).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("id=\"accept\""),
        "a viewer is offered accept"
    );
    let token = csrf(&body);
    let refused = post(
        &server,
        &viewer,
        &format!("{path}/unblock"),
        &[("csrf", &token), ("decision", "accept")],
    )
    .await;
    assert_eq!(refused.status(), 403);

    // A contributor sees both buttons; a decision that is neither is refused by name.
    let (_, member) = server.create_token(Role::User, "carl").await;
    let member = session(&server, &member).await;
    let (_, body) = page(&server, &member, &path).await;
    assert!(
        body.contains("id=\"accept\"") && body.contains("id=\"reject\""),
        "{body}"
    );
    let token = csrf(&body);
    // A post that is no form at all is refused as a page that says so.
    let bare = client()
        .post(format!("{}{path}/unblock", server.url))
        .header("cookie", &member)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 400);
    let bare = bare.text().await.unwrap();
    assert!(
        bare.contains("the form:") && bare.contains("<html"),
        "{bare}"
    );
    let odd = post(
        &server,
        &member,
        &format!("{path}/unblock"),
        &[("csrf", &token), ("decision", "maybe")],
    )
    .await;
    assert_eq!(odd.status(), 400);
    assert!(
        odd.text()
            .await
            .unwrap()
            .contains("neither accept nor reject")
    );
    assert_eq!(
        berth_tests::status(&get(&server, &first.id).await),
        WorkRequestStatus::Blocked
    );

    let accepted = post(
        &server,
        &member,
        &format!("{path}/unblock"),
        &[("csrf", &token), ("decision", "accept")],
    )
    .await;
    assert_eq!(accepted.status(), 303);
    assert_eq!(
        berth_tests::status(&get(&server, &first.id).await),
        WorkRequestStatus::Pending
    );
    let (_, body) = page(&server, &member, &path).await;
    assert!(
        !body.contains("id=\"accept\""),
        "accept is offered once decided"
    );

    let rejected = post(
        &server,
        &member,
        &format!("/ui/work-requests/{}/unblock", second.id),
        &[("csrf", &token), ("decision", "reject")],
    )
    .await;
    assert_eq!(rejected.status(), 303);
    assert_eq!(
        berth_tests::status(&get(&server, &second.id).await),
        WorkRequestStatus::Aborted
    );
    server.stop().await;
}
