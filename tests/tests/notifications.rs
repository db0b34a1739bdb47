//! Notification channels and reactions through the API, the fanout of events to them,
//! and email received by a real SMTP server (aiosmtpd, `scripts/install-smtp`).

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::time::Duration;

use berth_common::client::BearerAuth;
use berth_common::proto::template_service_client::TemplateServiceClient;
use berth_common::proto::{
    CreateChannelRequest, CreateReactionRequest, CreateTemplateRequest, DeleteChannelRequest,
    DeleteReactionRequest, GetChannelRequest, JobTemplateSpec, ListChannelsRequest,
    ListReactionsRequest, Role, RunTemplateRequest, UpdateChannelRequest, WebhookSettings,
    create_channel_request, create_template_request, notification_channel,
};
use berth_core::notifications::{SmtpSettings, SmtpTls};
use berth_tests::notify::{
    deliveries, email, event, fan_out, notifications, quick_notifications, webhook,
};
use berth_tests::receiver::Receiver;
use berth_tests::smtp::SmtpSink;
use berth_tests::{TestServer, eventually, query, spec};
use serde_json::json;
use tonic::Code;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

fn refused_naming<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    field: &str,
) {
    let status = result.unwrap_err();
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(field),
        "{field}: {}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn channels_show_their_settings_but_never_their_secrets() {
    let server = TestServer::start_with(quick_notifications).await;
    let mut client = notifications(&server, &server.admin_token).await;
    let made = client
        .create_channel(CreateChannelRequest {
            settings: Some(create_channel_request::Settings::Webhook(WebhookSettings {
                url: "https://hooks.example.com/berth".into(),
                headers: [("X-Api-Key".to_owned(), "key-value-42".to_owned())].into(),
                header_names: Vec::new(),
            })),
            ..webhook(
                "",
                "ops",
                "",
                &["work_request.*", "notification.channel_disabled"],
            )
        })
        .await
        .unwrap()
        .into_inner();
    assert!(made.signing_secret.starts_with("whsec_"));
    let channel = made.channel.unwrap();
    assert_eq!(channel.kind, "webhook");
    assert!(channel.enabled);
    let Some(notification_channel::Settings::Webhook(w)) = &channel.settings else {
        panic!("{channel:?}");
    };
    assert_eq!(w.header_names, vec!["x-api-key".to_owned()]);
    assert!(w.headers.is_empty(), "header values are write-only");
    let listed = client
        .list_channels(ListChannelsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let got = client
        .get_channel(GetChannelRequest {
            workspace: String::new(),
            name: "ops".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let secret_body = made.signing_secret.trim_start_matches("whsec_").to_owned();
    for shown in [format!("{listed:?}"), format!("{got:?}")] {
        assert!(
            !shown.contains(&secret_body),
            "the secret is shown: {shown}"
        );
        assert!(
            !shown.contains("key-value-42"),
            "a header value is shown: {shown}"
        );
    }
    assert_eq!(
        got.event_types,
        vec![
            "notification.channel_disabled".to_owned(),
            "work_request.*".to_owned()
        ]
    );
    // The same name again, bad input, and email without an SMTP relay.
    refused_naming(
        client
            .create_channel(webhook("", "ops", "https://x.example/", &[]))
            .await,
        Code::AlreadyExists,
        "ops",
    );
    for (url, what) in [
        ("ftp://x.example/", "webhook.url"),
        ("https://user:pw@x.example/", "credentials"),
        ("not a url", "webhook.url"),
    ] {
        refused_naming(
            client
                .create_channel(webhook("", "bad-url", url, &[]))
                .await,
            Code::InvalidArgument,
            what,
        );
    }
    refused_naming(
        client
            .create_channel(webhook(
                "",
                "bad-types",
                "https://x.example/",
                &["work_request.", "*"],
            ))
            .await,
        Code::InvalidArgument,
        "event_types[0]",
    );
    refused_naming(
        client
            .create_channel(webhook("", "Bad Name", "https://x.example/", &[]))
            .await,
        Code::InvalidArgument,
        "name",
    );
    refused_naming(
        client
            .create_channel(email("", "mail", &["ops@example.com"], &[]))
            .await,
        Code::FailedPrecondition,
        "smtp_host",
    );
    let refused = client
        .create_channel(CreateChannelRequest {
            settings: None,
            ..webhook("", "nothing", "", &[])
        })
        .await;
    refused_naming(refused, Code::InvalidArgument, "settings");
    // Changes: event types replaced, a URL changed, disabled with a reason.
    let changed = client
        .update_channel(UpdateChannelRequest {
            name: "ops".into(),
            set_event_types: true,
            event_types: vec!["*".into()],
            url: Some("https://hooks.example.com/v2".into()),
            enabled: Some(false),
            disabled_reason: "maintenance".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.event_types, vec!["*".to_owned()]);
    assert!(!changed.enabled);
    assert_eq!(changed.disabled_reason, "maintenance");
    refused_naming(
        client
            .update_channel(UpdateChannelRequest {
                name: "ops".into(),
                recipients: vec!["a@example.com".into()],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "recipients",
    );
    client
        .delete_channel(DeleteChannelRequest {
            workspace: String::new(),
            name: "ops".into(),
        })
        .await
        .unwrap();
    refused_naming(
        client
            .get_channel(GetChannelRequest {
                workspace: String::new(),
                name: "ops".into(),
            })
            .await,
        Code::NotFound,
        "ops",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_event_handed_twice_is_queued_once_and_only_where_it_is_wanted() {
    let server = TestServer::start_with(quick_notifications).await;
    let receiver = Receiver::ok().await;
    let mut client = notifications(&server, &server.admin_token).await;
    for (name, types) in [
        ("everything", vec!["*"]),
        ("failures", vec!["work_request.failed"]),
        ("workers", vec!["worker.*"]),
        ("quiet", vec![]),
    ] {
        client
            .create_channel(webhook(
                "",
                name,
                &receiver.url(&format!("/{name}")),
                &types,
            ))
            .await
            .unwrap();
    }
    let e = event(
        &server.database_url,
        "default",
        "work_request.failed",
        Uuid::now_v7(),
        json!({}),
    )
    .await;
    fan_out(&server.database_url, std::slice::from_ref(&e)).await;
    fan_out(&server.database_url, std::slice::from_ref(&e)).await;
    let got = receiver.wait_for(2, WAIT).await;
    let mut paths: Vec<String> = got.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(
        paths,
        vec!["/everything".to_owned(), "/failures".to_owned()]
    );
    for name in ["everything", "failures"] {
        assert_eq!(
            deliveries(&server.database_url, name).await.len(),
            1,
            "{name}"
        );
    }
    for name in ["workers", "quiet"] {
        assert!(
            deliveries(&server.database_url, name).await.is_empty(),
            "{name}"
        );
    }
    server.stop().await;
}

/// A job template `name` whose runs no worker takes.
fn parked_template(name: &str) -> CreateTemplateRequest {
    CreateTemplateRequest {
        name: name.to_owned(),
        spec: Some(create_template_request::Spec::Job(JobTemplateSpec {
            spec: Some(spec(&["true"])),
            requirements: [("parked".to_owned(), "yes".to_owned())].into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reactions_on_a_template_fire_for_the_requests_made_from_it() {
    let server = TestServer::start_with(quick_notifications).await;
    let receiver = Receiver::ok().await;
    let mut templates = TemplateServiceClient::with_interceptor(
        server.channel().await,
        BearerAuth::new(&server.admin_token),
    );
    templates
        .create_template(parked_template("nightly"))
        .await
        .unwrap();
    let run = templates
        .run_template(RunTemplateRequest {
            name: "nightly".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let request: Uuid = run.id.parse().unwrap();
    let other: Uuid = Uuid::now_v7();
    let mut client = notifications(&server, &server.admin_token).await;
    // A channel wanting no types at all: only its reactions bring it events.
    client
        .create_channel(webhook("", "on-call", &receiver.url("/"), &[]))
        .await
        .unwrap();
    let reaction = client
        .create_reaction(CreateReactionRequest {
            workspace: String::new(),
            object_kind: "template".into(),
            object: "nightly".into(),
            on: "failure".into(),
            channel: "on-call".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reaction.object, "nightly");
    assert_eq!(reaction.on, "failure");
    refused_naming(
        client
            .create_reaction(CreateReactionRequest {
                workspace: String::new(),
                object_kind: "template".into(),
                object: "nightly".into(),
                on: "failure".into(),
                channel: "on-call".into(),
            })
            .await,
        Code::AlreadyExists,
        "on-call",
    );
    for (kind, object, on, field) in [
        ("artifact", "nightly", "failure", "object_kind"),
        ("template", "nightly", "exploded", "on"),
        ("template", "weekly", "failure", "weekly"),
        ("work_request", "not-an-id", "failure", "object"),
    ] {
        refused_naming(
            client
                .create_reaction(CreateReactionRequest {
                    workspace: String::new(),
                    object_kind: kind.into(),
                    object: object.into(),
                    on: on.into(),
                    channel: "on-call".into(),
                })
                .await,
            if field == "weekly" {
                Code::NotFound
            } else {
                Code::InvalidArgument
            },
            field,
        );
    }
    let url = server.database_url.clone();
    let failed = event(&url, "default", "work_request.failed", request, json!({})).await;
    let succeeded = event(
        &url,
        "default",
        "work_request.succeeded",
        request,
        json!({}),
    )
    .await;
    let unrelated = event(&url, "default", "work_request.failed", other, json!({})).await;
    fan_out(&url, &[failed.clone(), succeeded, unrelated]).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("webhook-id"), failed.id.to_string());
    assert_eq!(
        deliveries(&url, "on-call").await.len(),
        1,
        "only the failure of the template's request"
    );
    let listed = client
        .list_reactions(ListReactionsRequest {
            workspace: String::new(),
            object_kind: "template".into(),
            object: "nightly".into(),
            channel: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.reactions.len(), 1);
    client
        .delete_reaction(DeleteReactionRequest {
            workspace: String::new(),
            id: reaction.id,
        })
        .await
        .unwrap();
    let again = event(&url, "default", "work_request.failed", request, json!({})).await;
    fan_out(&url, &[again]).await;
    assert_eq!(
        deliveries(&url, "on-call").await.len(),
        1,
        "the reaction is gone"
    );
    // A reaction on the request itself, for its start.
    client
        .create_reaction(CreateReactionRequest {
            workspace: String::new(),
            object_kind: "work_request".into(),
            object: request.to_string(),
            on: "start".into(),
            channel: "on-call".into(),
        })
        .await
        .unwrap();
    let started = event(&url, "default", "work_request.started", request, json!({})).await;
    fan_out(&url, &[started]).await;
    assert_eq!(deliveries(&url, "on-call").await.len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn viewers_read_channels_and_contributors_change_them() {
    let server = TestServer::start_with(quick_notifications).await;
    let (_, viewer) = server
        .create_token_without_roles(Role::User, "watcher")
        .await;
    server.set_role("default", "watcher", "viewer").await;
    let mut as_viewer = notifications(&server, &viewer).await;
    notifications(&server, &server.admin_token)
        .await
        .create_channel(webhook("", "shared", "https://hooks.example.com/", &["*"]))
        .await
        .unwrap();
    let listed = as_viewer
        .list_channels(ListChannelsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.channels.len(), 1);
    refused_naming(
        as_viewer
            .create_channel(webhook("", "mine", "https://hooks.example.com/", &[]))
            .await,
        Code::PermissionDenied,
        "contributor",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn email_reaches_the_smtp_server_with_the_event_in_it() {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let server = TestServer::start_with(move |config| {
        quick_notifications(config);
        config.notifications.smtp = Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            from: "berth@ci.example".into(),
            tls: SmtpTls::None,
            username: None,
            password: None,
        });
    })
    .await;
    let mut client = notifications(&server, &server.admin_token).await;
    let made = client
        .create_channel(email(
            "",
            "mail",
            &["ops@example.com", "dev@example.com"],
            &["work_request.failed"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        made.signing_secret.is_empty(),
        "email channels have no secret"
    );
    refused_naming(
        client
            .create_channel(email("", "bad-mail", &["ops@example.com", "nobody"], &[]))
            .await,
        Code::InvalidArgument,
        "email.recipients[1]",
    );
    let object = Uuid::now_v7();
    let e = event(
        &server.database_url,
        "default",
        "work_request.failed",
        object,
        json!({"status": "completed", "result": "failure"}),
    )
    .await;
    fan_out(&server.database_url, std::slice::from_ref(&e)).await;
    let messages = sink.wait_for(1, WAIT).await;
    assert_eq!(messages.len(), 1, "one message per event per channel");
    let message = &messages[0];
    assert!(
        message.contains(&format!("Subject: [berth] work_request.failed {object}")),
        "{message}"
    );
    assert!(
        message.contains("X-Envelope-From: berth@ci.example"),
        "{message}"
    );
    assert!(
        message.contains("dev@example.com") && message.contains("ops@example.com"),
        "{message}"
    );
    assert!(
        message.contains(&e.id.to_string()),
        "the event is in the body: {message}"
    );
    let url = server.database_url.clone();
    eventually("the email delivery to be recorded", WAIT, || {
        let url = url.clone();
        async move {
            let rows = deliveries(&url, "mail").await;
            (rows == vec![("delivered".to_owned(), 1)]).then_some(())
        }
    })
    .await;
    let response: String = query(
        &server.database_url,
        "SELECT response FROM notification_attempts",
    )
    .await[0]
        .get(0);
    assert!(response.starts_with("250"), "{response}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn email_to_a_relay_that_is_down_is_retried_then_failed() {
    let port = berth_tests::free_port();
    let server = TestServer::start_with(move |config| {
        quick_notifications(config);
        config.notifications.smtp = Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            from: "berth@ci.example".into(),
            tls: SmtpTls::None,
            username: None,
            password: None,
        });
    })
    .await;
    notifications(&server, &server.admin_token)
        .await
        .create_channel(email("", "mail", &["ops@example.com"], &["*"]))
        .await
        .unwrap();
    let e = event(
        &server.database_url,
        "default",
        "work_request.failed",
        Uuid::now_v7(),
        json!({}),
    )
    .await;
    fan_out(&server.database_url, &[e]).await;
    let url = server.database_url.clone();
    eventually("the email delivery to give up", WAIT, || {
        let url = url.clone();
        async move {
            let rows = deliveries(&url, "mail").await;
            (rows == vec![("failed".to_owned(), 3)]).then_some(())
        }
    })
    .await;
    let errors: Vec<String> = query(
        &server.database_url,
        "SELECT error FROM notification_attempts",
    )
    .await
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert!(errors.iter().all(|e| e.starts_with("SMTP:")), "{errors:?}");
    server.stop().await;
}
