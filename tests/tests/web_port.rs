//! The dashboard and the operator routes share the gRPC listener: one port answers a gRPC
//! health check, `/healthz` and `/readyz` over HTTP/1.1, and the dashboard's sign-in.

#![expect(clippy::unwrap_used, reason = "tests: a failure should fail the test")]

use std::time::Duration;

use berth_tests::TestServer;
use tonic_health::pb::health_check_response::ServingStatus;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

#[tokio::test(flavor = "multi_thread")]
async fn one_port_serves_grpc_health_and_http() {
    let server = TestServer::start().await;
    assert_eq!(
        berth_tests::health(&server.url, None).await,
        Some(ServingStatus::Serving)
    );
    let http = client();
    let healthz = http
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .expect("/healthz");
    assert_eq!(healthz.status(), 200);
    let readyz = http
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .expect("/readyz");
    assert_eq!(readyz.status(), 200);
    assert_eq!(readyz.text().await.unwrap(), "ready\n");
    // The dashboard sends a browser without a session to the sign-in page.
    let queue = http
        .get(format!("{}/ui/queue", server.url))
        .send()
        .await
        .expect("/ui/queue");
    assert_eq!(queue.status(), 303);
    assert_eq!(
        queue.headers()["location"].to_str().unwrap(),
        "/ui/login?next=/ui/queue"
    );
    // A path that is neither the dashboard nor an operator route is treated as a gRPC
    // method and refused by the auth layer (UNAUTHENTICATED, gRPC status 16).
    let other = http
        .get(format!("{}/nothing/here", server.url))
        .send()
        .await
        .expect("/nothing");
    assert_eq!(other.headers()["grpc-status"].to_str().unwrap(), "16");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_in_sets_a_session_cookie_and_never_echoes_the_token() {
    let server = TestServer::start().await;
    let http = client();
    let bad = http
        .post(format!("{}/ui/login", server.url))
        .form(&[("token", "berth_usr_not-a-token"), ("next", "/ui/queue")])
        .send()
        .await
        .expect("bad sign-in");
    assert_eq!(bad.status(), 401);
    assert!(bad.headers().get("set-cookie").is_none());
    let good = http
        .post(format!("{}/ui/login", server.url))
        .form(&[
            ("token", server.admin_token.as_str()),
            ("next", "/ui/queue"),
        ])
        .send()
        .await
        .expect("sign-in");
    assert_eq!(good.status(), 303);
    let cookie = good.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("berth_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(&server.admin_token));
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = http
        .get(format!("{}/ui/queue", server.url))
        .header("cookie", &session)
        .send()
        .await
        .expect("queue");
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(body.contains("admin (admin)"), "{body}");
    assert!(!body.contains(&server.admin_token));
    // No token text in the database either: only the secret's hash and the token's id.
    let rows = berth_tests::query(
        &server.database_url,
        "SELECT encode(secret_hash, 'escape') FROM web_sessions",
    )
    .await;
    assert_eq!(rows.len(), 1);
    server.stop().await;
}
