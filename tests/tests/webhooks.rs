//! Webhook deliveries against a real receiver on 127.0.0.1 (allowed by the server's
//! allow-list): signatures a Standard Webhooks receiver verifies, retries with the same
//! `webhook-id`, `Retry-After`, permanent refusals, `410 Gone`, channels disabled after
//! failures in a row with the workspace told, redirects not followed, the SSRF guard
//! without the allow-list, the delivery log, redelivery, the test ping, and a delivery
//! queued while no server runs.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::time::Duration;

use berth_common::proto::{
    CreateChannelRequest, GetChannelRequest, ListDeliveriesRequest, RedeliverDeliveryRequest,
    TestChannelRequest, UpdateChannelRequest, WebhookSettings, create_channel_request,
};
use berth_tests::notify::{
    deliveries, event, fan_out, notifications, quick_notifications, verify, webhook,
};
use berth_tests::receiver::{Receiver, Reply};
use berth_tests::{SimOptions, TestServer, eventually, query, spec};
use serde_json::json;
use tonic::Code;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

async fn quick_server() -> TestServer {
    TestServer::start_with(quick_notifications).await
}

/// Creates a webhook channel `name` to `url` for `work_request.*`; returns its secret.
async fn channel(server: &TestServer, name: &str, url: &str) -> String {
    notifications(server, &server.admin_token)
        .await
        .create_channel(webhook("", name, url, &["work_request.*"]))
        .await
        .unwrap()
        .into_inner()
        .signing_secret
}

/// Hands one `work_request.failed` event of a new object to the fanout; returns it.
async fn emit(server: &TestServer) -> berth_core::events::SystemEvent {
    let e = event(
        &server.database_url,
        "default",
        "work_request.failed",
        Uuid::now_v7(),
        json!({"status": "completed", "result": "failure"}),
    )
    .await;
    fan_out(&server.database_url, std::slice::from_ref(&e)).await;
    e
}

/// Waits until every delivery of `channel` is finished; returns them.
async fn settled(server: &TestServer, channel: &str, count: usize) -> Vec<(String, i32)> {
    let url = server.database_url.clone();
    eventually("deliveries to finish", WAIT, || {
        let url = url.clone();
        async move {
            let rows = deliveries(&url, channel).await;
            (rows.len() == count && rows.iter().all(|(state, _)| state != "pending"))
                .then_some(rows)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_is_signed_so_a_standard_webhooks_receiver_verifies_it() {
    let server = quick_server().await;
    let receiver = Receiver::ok().await;
    let mut client = notifications(&server, &server.admin_token).await;
    let made = client
        .create_channel(CreateChannelRequest {
            settings: Some(create_channel_request::Settings::Webhook(WebhookSettings {
                url: receiver.url("/hooks/berth"),
                headers: [("X-Team-Token".to_owned(), "team-secret-value".to_owned())].into(),
                header_names: Vec::new(),
            })),
            ..webhook("", "signed", "", &["work_request.*"])
        })
        .await
        .unwrap()
        .into_inner();
    let secret = made.signing_secret;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let sent = emit(&server).await;
    let got = receiver.wait_for(1, WAIT).await;
    let request = &got[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/berth");
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.header("webhook-id"), sent.id.to_string());
    assert_eq!(request.header("x-team-token"), "team-secret-value");
    verify(&secret, request).unwrap();
    // A wrong secret does not verify: the check can fail.
    assert!(verify(&berth_core::notifications::channels::new_secret(), request).is_err());
    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(body["type"], "work_request.failed");
    assert_eq!(body["data"]["id"], sent.id.to_string());
    assert_eq!(body["data"]["object_id"], sent.object_id.to_string());
    assert_eq!(body["data"]["workspace"], "default");
    assert_eq!(body["data"]["state"]["result"], "failure");
    assert!(body["timestamp"].is_string());
    assert_eq!(
        settled(&server, "signed", 1).await,
        vec![("delivered".to_owned(), 1)]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_endpoint_is_retried_with_the_same_webhook_id_until_it_answers() {
    let server = quick_server().await;
    let receiver = Receiver::start(
        vec![Reply::status(500), Reply::status(503)],
        Reply::status(200),
    )
    .await;
    let secret = channel(&server, "flaky", &receiver.url("/")).await;
    let sent = emit(&server).await;
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(
        settled(&server, "flaky", 1).await,
        vec![("delivered".to_owned(), 3)]
    );
    for request in &got {
        assert_eq!(request.header("webhook-id"), sent.id.to_string());
        verify(&secret, request).unwrap();
        assert_eq!(
            request.body, got[0].body,
            "every attempt sends the same body"
        );
    }
    let page = notifications(&server, &server.admin_token)
        .await
        .list_deliveries(ListDeliveriesRequest {
            channel: "flaky".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let log = &page.deliveries[0].attempt_log;
    let statuses: Vec<(u32, bool)> = log.iter().map(|a| (a.status_code, a.will_retry)).collect();
    assert_eq!(statuses, vec![(500, true), (503, true), (200, false)]);
    assert_eq!(page.deliveries[0].state, "delivered");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured_over_the_schedule() {
    let server = quick_server().await;
    let receiver = Receiver::start(
        vec![Reply::status(429).header("Retry-After", "2")],
        Reply::status(200),
    )
    .await;
    channel(&server, "limited", &receiver.url("/")).await;
    emit(&server).await;
    let got = receiver.wait_for(2, WAIT).await;
    let gap = got[1].at - got[0].at;
    // The schedule says 20 ms; the receiver asked for 2 s.
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
    assert_eq!(
        settled(&server, "limited", 1).await,
        vec![("delivered".to_owned(), 2)]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_error_is_permanent_and_not_retried() {
    let server = quick_server().await;
    let receiver = Receiver::start(vec![], Reply::status(400).body("bad payload")).await;
    channel(&server, "strict", &receiver.url("/")).await;
    emit(&server).await;
    assert_eq!(
        settled(&server, "strict", 1).await,
        vec![("failed".to_owned(), 1)]
    );
    assert_eq!(receiver.requests().len(), 1);
    let rows = query(
        &server.database_url,
        "SELECT status_code, will_retry, response, error FROM notification_attempts",
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i32>(0), 400);
    assert!(!rows[0].get::<_, bool>(1));
    assert_eq!(rows[0].get::<_, String>(2), "bad payload");
    assert!(
        rows[0].get::<_, String>(3).contains("400"),
        "{}",
        rows[0].get::<_, String>(3)
    );
    // One permanent failure is one failure in a row, not a disabled channel.
    let got = notifications(&server, &server.admin_token)
        .await
        .get_channel(GetChannelRequest {
            workspace: String::new(),
            name: "strict".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got.enabled);
    assert_eq!(got.failures_in_row, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gone_disables_the_channel_and_later_events_are_not_queued() {
    let server = quick_server().await;
    let receiver = Receiver::start(vec![], Reply::status(410)).await;
    channel(&server, "gone", &receiver.url("/")).await;
    emit(&server).await;
    assert_eq!(
        settled(&server, "gone", 1).await,
        vec![("failed".to_owned(), 1)]
    );
    let got = notifications(&server, &server.admin_token)
        .await
        .get_channel(GetChannelRequest {
            workspace: String::new(),
            name: "gone".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!got.enabled);
    assert!(
        got.disabled_reason.contains("410"),
        "{}",
        got.disabled_reason
    );
    assert!(got.disabled_at.is_some());
    emit(&server).await;
    assert_eq!(deliveries(&server.database_url, "gone").await.len(), 1);
    assert_eq!(receiver.requests().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_in_a_row_disable_the_channel_and_the_workspace_is_told() {
    let server = TestServer::start_with(|config| {
        quick_notifications(config);
        config.notifications.failure_limit = 2;
    })
    .await;
    let broken = Receiver::start(vec![], Reply::status(502)).await;
    let alerts = Receiver::ok().await;
    channel(&server, "broken", &broken.url("/")).await;
    let alert_secret = notifications(&server, &server.admin_token)
        .await
        .create_channel(webhook(
            "",
            "alerts",
            &alerts.url("/alerts"),
            &["notification.*"],
        ))
        .await
        .unwrap()
        .into_inner()
        .signing_secret;
    emit(&server).await;
    assert_eq!(
        settled(&server, "broken", 1).await,
        vec![("failed".to_owned(), 3)]
    );
    let mut client = notifications(&server, &server.admin_token).await;
    let get = GetChannelRequest {
        workspace: String::new(),
        name: "broken".into(),
    };
    let after_one = client.get_channel(get.clone()).await.unwrap().into_inner();
    assert!(
        after_one.enabled,
        "one failed delivery (three attempts) is below the limit"
    );
    assert_eq!(after_one.failures_in_row, 1);
    emit(&server).await;
    settled(&server, "broken", 2).await;
    let disabled = client.get_channel(get).await.unwrap().into_inner();
    assert!(!disabled.enabled);
    assert_eq!(disabled.failures_in_row, 2);
    assert!(
        disabled
            .disabled_reason
            .contains("2 deliveries in a row failed"),
        "{}",
        disabled.disabled_reason
    );
    assert!(
        disabled.last_error.contains("502"),
        "{}",
        disabled.last_error
    );
    let told = alerts.wait_for(1, WAIT).await;
    verify(&alert_secret, &told[0]).unwrap();
    let body: serde_json::Value = serde_json::from_str(&told[0].body).unwrap();
    assert_eq!(body["type"], "notification.channel_disabled");
    assert_eq!(body["data"]["state"]["channel"], "broken");
    assert!(
        body["data"]["state"]["reason"]
            .as_str()
            .unwrap()
            .contains("in a row")
    );
    assert_eq!(broken.requests().len(), 6);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_not_followed() {
    let server = quick_server().await;
    let elsewhere = Receiver::ok().await;
    let redirecting = Receiver::start(
        vec![],
        Reply::status(302).header("Location", &elsewhere.url("/internal")),
    )
    .await;
    channel(&server, "redirect", &redirecting.url("/")).await;
    emit(&server).await;
    assert_eq!(
        settled(&server, "redirect", 1).await,
        vec![("failed".to_owned(), 1)]
    );
    assert_eq!(redirecting.requests().len(), 1);
    assert!(elsewhere.requests().is_empty(), "the redirect was followed");
    let error: String = query(
        &server.database_url,
        "SELECT error FROM notification_attempts",
    )
    .await[0]
        .get(0);
    assert!(
        error.contains("302") && error.contains("redirects are not followed"),
        "{error}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn loopback_is_refused_without_the_allow_list() {
    let server = TestServer::start_with(|config| {
        quick_notifications(config);
        config.notifications.allow_cidrs.clear();
    })
    .await;
    let receiver = Receiver::ok().await;
    for (name, url) in [
        ("literal", receiver.url("/")),
        (
            "by-name",
            format!("http://localhost:{}/", receiver.addr.port()),
        ),
        (
            "mapped",
            format!("http://[::ffff:127.0.0.1]:{}/", receiver.addr.port()),
        ),
        (
            "decimal",
            format!("http://2130706433:{}/", receiver.addr.port()),
        ),
    ] {
        channel(&server, name, &url).await;
    }
    emit(&server).await;
    for name in ["literal", "by-name", "mapped", "decimal"] {
        assert_eq!(
            settled(&server, name, 1).await,
            vec![("failed".to_owned(), 1)],
            "{name}"
        );
    }
    assert!(
        receiver.requests().is_empty(),
        "a refused address was reached"
    );
    let errors: Vec<String> = query(
        &server.database_url,
        "SELECT error FROM notification_attempts",
    )
    .await
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(errors.len(), 4);
    for error in errors {
        assert!(
            error.contains("loopback") && error.contains("webhook_allow_cidrs"),
            "{error}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_delivery_log_keeps_attempts_without_secrets() {
    let server = quick_server().await;
    let long_body = "x".repeat(10_000);
    let receiver = Receiver::start(vec![], Reply::status(200).body(&long_body)).await;
    let secret = notifications(&server, &server.admin_token)
        .await
        .create_channel(CreateChannelRequest {
            settings: Some(create_channel_request::Settings::Webhook(WebhookSettings {
                url: receiver.url("/"),
                headers: [(
                    "Authorization".to_owned(),
                    "Bearer hook-token-123".to_owned(),
                )]
                .into(),
                header_names: Vec::new(),
            })),
            ..webhook("", "logged", "", &["*"])
        })
        .await
        .unwrap()
        .into_inner()
        .signing_secret;
    let sent = emit(&server).await;
    receiver.wait_for(1, WAIT).await;
    settled(&server, "logged", 1).await;
    let page = notifications(&server, &server.admin_token)
        .await
        .list_deliveries(ListDeliveriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let delivery = &page.deliveries[0];
    assert_eq!(delivery.event_id, sent.id.to_string());
    assert_eq!(delivery.channel, "logged");
    let attempt = &delivery.attempt_log[0];
    assert_eq!(attempt.status_code, 200);
    assert_eq!(
        attempt.response.len(),
        4096,
        "the first 4 KiB of the response"
    );
    assert!(attempt.latency.is_some());
    let headers = &attempt.request_headers;
    assert_eq!(headers["webhook-id"], sent.id.to_string());
    assert!(headers["webhook-signature"].starts_with("v1,"));
    assert!(headers.contains_key("webhook-timestamp"));
    assert_eq!(headers["authorization"], "[hidden]");
    // Neither the secret nor the header's value is anywhere in the database or answers.
    let body = secret.trim_start_matches("whsec_");
    let dump: String = query(
        &server.database_url,
        "SELECT coalesce(string_agg(t::text, ' '), '') FROM ( \
           SELECT to_jsonb(c) - 'sealed' AS t FROM notification_channels c \
           UNION ALL SELECT to_jsonb(d) FROM notification_deliveries d \
           UNION ALL SELECT to_jsonb(a) FROM notification_attempts a) x",
    )
    .await[0]
        .get(0);
    assert!(
        dump.contains(&sent.id.to_string()),
        "the dump holds the rows"
    );
    for secret_text in [body, "hook-token-123"] {
        assert!(
            !dump.contains(secret_text),
            "{secret_text} is stored in plain form"
        );
        assert!(
            !format!("{page:?}").contains(secret_text),
            "{secret_text} is in an answer"
        );
    }
    let sealed: Vec<u8> = query(
        &server.database_url,
        "SELECT sealed FROM notification_channels",
    )
    .await[0]
        .get(0);
    assert!(!sealed.windows(body.len()).any(|w| w == body.as_bytes()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redeliver_sends_the_same_event_again() {
    let server = quick_server().await;
    let receiver = Receiver::ok().await;
    let secret = channel(&server, "again", &receiver.url("/")).await;
    let sent = emit(&server).await;
    receiver.wait_for(1, WAIT).await;
    settled(&server, "again", 1).await;
    let mut client = notifications(&server, &server.admin_token).await;
    let id = client
        .list_deliveries(ListDeliveriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .deliveries[0]
        .id
        .clone();
    let queued = client
        .redeliver_delivery(RedeliverDeliveryRequest {
            workspace: String::new(),
            id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queued.id, id);
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].header("webhook-id"), sent.id.to_string());
    verify(&secret, &got[1]).unwrap();
    assert_eq!(
        settled(&server, "again", 1).await,
        vec![("delivered".to_owned(), 2)]
    );
    // A bad id, and another workspace's view of it, are refused.
    let refused = client
        .redeliver_delivery(RedeliverDeliveryRequest {
            workspace: String::new(),
            id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let refused = client
        .redeliver_delivery(RedeliverDeliveryRequest {
            workspace: String::new(),
            id: Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_test_ping_is_sent_now_and_shows_its_result() {
    let server = quick_server().await;
    let receiver = Receiver::start(vec![Reply::status(500)], Reply::status(204)).await;
    let secret = channel(&server, "pinged", &receiver.url("/")).await;
    let mut client = notifications(&server, &server.admin_token).await;
    let ping = |client: &mut berth_common::proto::notification_service_client::NotificationServiceClient<berth_tests::Authed>| {
        let mut client = client.clone();
        async move {
            client
                .test_channel(TestChannelRequest {
                    workspace: String::new(),
                    name: "pinged".into(),
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let failed = ping(&mut client).await;
    assert_eq!(failed.event_type, "notification.ping");
    assert_eq!(failed.state, "failed", "a test ping is tried once");
    assert_eq!(failed.attempt_log[0].status_code, 500);
    let ok = ping(&mut client).await;
    assert_eq!(ok.state, "delivered");
    assert_eq!(ok.attempt_log.len(), 1);
    assert_eq!(ok.attempt_log[0].status_code, 204);
    let got = receiver.requests();
    assert_eq!(got.len(), 2);
    verify(&secret, &got[1]).unwrap();
    let body: serde_json::Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(body["type"], "notification.ping");
    // Pings never count against the channel.
    let channel = client
        .get_channel(GetChannelRequest {
            workspace: String::new(),
            name: "pinged".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(channel.failures_in_row, 0);
    assert!(channel.enabled);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_secret_signs_the_next_deliveries() {
    let server = quick_server().await;
    let receiver = Receiver::ok().await;
    let old = channel(&server, "rotating", &receiver.url("/")).await;
    let new = notifications(&server, &server.admin_token)
        .await
        .rotate_channel_secret(berth_common::proto::RotateChannelSecretRequest {
            workspace: String::new(),
            name: "rotating".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .signing_secret;
    assert_ne!(old, new);
    emit(&server).await;
    let got = receiver.wait_for(1, WAIT).await;
    verify(&new, &got[0]).unwrap();
    assert!(verify(&old, &got[0]).is_err());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_queued_while_no_server_runs_is_sent_once_one_is_back() {
    let mut server = quick_server().await;
    let receiver = Receiver::ok().await;
    channel(&server, "patient", &receiver.url("/")).await;
    let database_url = server.database_url.clone();
    let queued = async {
        // Queued while the server is down (its restart waits 2 s before starting again).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let e = event(
            &database_url,
            "default",
            "work_request.failed",
            Uuid::now_v7(),
            json!({}),
        )
        .await;
        fan_out(&database_url, std::slice::from_ref(&e)).await;
        assert_eq!(
            deliveries(&database_url, "patient").await,
            vec![("pending".to_owned(), 0)]
        );
        assert!(receiver.requests().is_empty());
        e
    };
    let ((), sent) = tokio::join!(server.restart_after(Duration::from_secs(2)), queued);
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("webhook-id"), sent.id.to_string());
    assert_eq!(
        settled(&server, "patient", 1).await,
        vec![("delivered".to_owned(), 1)]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_channel_holds_nothing_and_enabling_it_clears_its_failures() {
    let server = TestServer::start_with(|config| {
        quick_notifications(config);
        config.notifications.failure_limit = 1;
    })
    .await;
    let receiver = Receiver::start(vec![Reply::status(404)], Reply::status(200)).await;
    channel(&server, "revived", &receiver.url("/")).await;
    emit(&server).await;
    settled(&server, "revived", 1).await;
    let mut client = notifications(&server, &server.admin_token).await;
    let get = GetChannelRequest {
        workspace: String::new(),
        name: "revived".into(),
    };
    assert!(
        !client
            .get_channel(get.clone())
            .await
            .unwrap()
            .into_inner()
            .enabled
    );
    let enabled = client
        .update_channel(UpdateChannelRequest {
            name: "revived".into(),
            enabled: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(enabled.enabled);
    assert_eq!(enabled.failures_in_row, 0);
    assert!(enabled.disabled_reason.is_empty());
    emit(&server).await;
    receiver.wait_for(2, WAIT).await;
    settled(&server, "revived", 2).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_work_request_reaches_its_reactions_webhook_through_the_relay() {
    use berth_common::client::BearerAuth;
    use berth_common::proto::template_service_client::TemplateServiceClient;
    use berth_common::proto::{
        CreateReactionRequest, CreateTemplateRequest, JobTemplateSpec, RunTemplateRequest,
        create_template_request,
    };
    let server = quick_server().await;
    let _worker = server.sim_worker(SimOptions::default()).await;
    let on_call = Receiver::ok().await;
    let firehose = Receiver::ok().await;
    let mut client = notifications(&server, &server.admin_token).await;
    // One channel only its reaction feeds, one that wants every request event.
    let secret = client
        .create_channel(webhook("", "on-call", &on_call.url("/"), &[]))
        .await
        .unwrap()
        .into_inner()
        .signing_secret;
    channel(&server, "firehose", &firehose.url("/")).await;
    let mut templates = TemplateServiceClient::with_interceptor(
        server.channel().await,
        BearerAuth::new(&server.admin_token),
    );
    let template = templates
        .create_template(CreateTemplateRequest {
            name: "flaky".into(),
            spec: Some(create_template_request::Spec::Job(JobTemplateSpec {
                spec: Some(spec(&["false"])),
                ..Default::default()
            })),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    client
        .create_reaction(CreateReactionRequest {
            workspace: String::new(),
            object_kind: "template".into(),
            object: "flaky".into(),
            on: "failure".into(),
            channel: "on-call".into(),
        })
        .await
        .unwrap();
    let request = templates
        .run_template(RunTemplateRequest {
            name: "flaky".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let got = on_call.wait_for(1, WAIT).await;
    verify(&secret, &got[0]).unwrap();
    let body: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["type"], "work_request.failed", "{body}");
    assert_eq!(body["data"]["object_id"], request.id);
    assert_eq!(body["data"]["topic"], "berth.work-requests");
    assert_eq!(body["data"]["state"]["template_id"], template.id, "{body}");
    assert_eq!(body["data"]["state"]["result"], "failure", "{body}");
    // The webhook-id is the event's id in the outbox.
    let outbox: Vec<String> = query(
        &server.database_url,
        &format!(
            "SELECT id::text FROM system_events WHERE object_id = '{}' AND event_type = 'work_request.failed'",
            request.id
        ),
    )
    .await
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(outbox, vec![got[0].header("webhook-id").to_owned()]);
    // Only the failure went to the reaction's channel; the firehose saw the request's
    // whole life, in order.
    let seen = eventually("the firehose to see the request end", WAIT, || {
        let firehose = &firehose;
        let request = &request;
        async move {
            let types: Vec<String> = firehose
                .requests()
                .iter()
                .map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap())
                .filter(|b| b["data"]["object_id"] == request.id)
                .map(|b| b["type"].as_str().unwrap().to_owned())
                .collect();
            types
                .contains(&"work_request.failed".to_owned())
                .then_some(types)
        }
    })
    .await;
    assert!(
        seen.contains(&"work_request.running".to_owned()),
        "{seen:?}"
    );
    assert_eq!(on_call.requests().len(), 1, "{:?}", on_call.requests());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_the_deliveries_and_send_each_once() {
    let server = quick_server().await;
    let replica = server.replica().await;
    let receiver = Receiver::ok().await;
    channel(&server, "shared", &receiver.url("/")).await;
    let mut events = Vec::new();
    for _ in 0..40 {
        events.push(
            event(
                &server.database_url,
                "default",
                "work_request.failed",
                Uuid::now_v7(),
                json!({}),
            )
            .await,
        );
    }
    fan_out(&server.database_url, &events).await;
    let rows = settled(&server, "shared", 40).await;
    assert!(
        rows.iter().all(|row| row == &("delivered".to_owned(), 1)),
        "{rows:?}"
    );
    let got = receiver.requests();
    let mut ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(got.len(), 40, "every event sent exactly once");
    assert_eq!(ids.len(), 40);
    replica.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_mid_delivery_leaves_it_to_the_next_one_with_the_same_webhook_id() {
    use berth_tests::ServerProcess;
    let database_url = berth_tests::fresh_database().await;
    let config = "[notifications]\nwebhook_timeout = \"3s\"\nwebhook_retry_schedule = [\"50ms\"]\n\
                  webhook_allow_cidrs = [\"127.0.0.1\"]\npoll_interval = \"50ms\"\n";
    let mut process = ServerProcess::start(&database_url, None, config).await;
    let server = process.handle(&process.admin_token());
    // The first request hangs: the server is killed while it waits for the answer.
    let receiver = Receiver::start(
        vec![Reply::status(200).after(Duration::from_secs(60))],
        Reply::status(200),
    )
    .await;
    let secret = channel(&server, "survivor", &receiver.url("/")).await;
    let sent = emit(&server).await;
    receiver.wait_for(1, WAIT).await;
    process.kill().await;
    assert_eq!(
        deliveries(&database_url, "survivor").await,
        vec![("pending".to_owned(), 0)],
        "the attempt in flight was never recorded"
    );
    process.spawn().await;
    // Its claim expires (twice the timeout and a margin); the new process sends it again.
    let got = receiver.wait_for(2, Duration::from_secs(60)).await;
    assert_eq!(got[1].header("webhook-id"), sent.id.to_string());
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    verify(&secret, &got[1]).unwrap();
    assert_eq!(
        settled(&server, "survivor", 1).await,
        vec![("delivered".to_owned(), 1)]
    );
    process.stop().await;
}
