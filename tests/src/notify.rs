//! What the notification tests share: a server whose deliveries retry in milliseconds
//! and may reach 127.0.0.1, events handed to `fanout_in` as the system events relay
//! hands them, channel requests, and an independent Standard Webhooks verifier.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_common::client::BearerAuth;
use berth_common::proto::notification_service_client::NotificationServiceClient;
use berth_common::proto::{
    CreateChannelRequest, EmailSettings, WebhookSettings, create_channel_request,
};
use berth_core::events::SystemEvent;
use berth_server::app::config::Config;
use diesel_async::AsyncConnection;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::receiver::Received;
use crate::{Authed, TestServer, query};

/// Retries after 20 ms, twice; polls every 50 ms; 127.0.0.1 allowed; 2 s timeout.
pub fn quick_notifications(config: &mut Config) {
    let n = &mut config.notifications;
    n.retry_schedule = vec![Duration::from_millis(20), Duration::from_millis(20)];
    n.poll_interval = Duration::from_millis(50);
    n.webhook_timeout = Duration::from_secs(2);
    n.allow_cidrs = berth_core::notifications::ssrf::parse_cidrs(&["127.0.0.1/32".to_owned()])
        .unwrap_or_default();
}

/// A NotificationService client with `token`.
pub async fn notifications(server: &TestServer, token: &str) -> NotificationServiceClient<Authed> {
    NotificationServiceClient::with_interceptor(server.channel().await, BearerAuth::new(token))
}

/// A webhook channel request.
pub fn webhook(
    workspace: &str,
    name: &str,
    url: &str,
    event_types: &[&str],
) -> CreateChannelRequest {
    CreateChannelRequest {
        workspace: workspace.to_owned(),
        name: name.to_owned(),
        settings: Some(create_channel_request::Settings::Webhook(WebhookSettings {
            url: url.to_owned(),
            ..Default::default()
        })),
        event_types: event_types.iter().map(|s| (*s).to_owned()).collect(),
        disabled: false,
    }
}

/// An email channel request.
pub fn email(
    workspace: &str,
    name: &str,
    recipients: &[&str],
    event_types: &[&str],
) -> CreateChannelRequest {
    CreateChannelRequest {
        workspace: workspace.to_owned(),
        name: name.to_owned(),
        settings: Some(create_channel_request::Settings::Email(EmailSettings {
            recipients: recipients.iter().map(|s| (*s).to_owned()).collect(),
            subject_prefix: String::new(),
        })),
        event_types: event_types.iter().map(|s| (*s).to_owned()).collect(),
        disabled: false,
    }
}

/// The id of workspace `name`.
pub async fn workspace_id(database_url: &str, name: &str) -> Uuid {
    query(
        database_url,
        &format!("SELECT id FROM workspaces WHERE name = '{name}'"),
    )
    .await
    .first()
    .map(|row| row.get(0))
    .unwrap_or_else(|| panic!("no workspace {name}"))
}

/// An event of `object` in `workspace`, as the relay would hand it on.
pub async fn event(
    database_url: &str,
    workspace: &str,
    event_type: &str,
    object: Uuid,
    data: serde_json::Value,
) -> SystemEvent {
    SystemEvent {
        id: Uuid::now_v7(),
        seq: 1,
        workspace_id: workspace_id(database_url, workspace).await,
        topic: "berth.work-requests".into(),
        event_type: event_type.to_owned(),
        object_id: object,
        occurred_at: chrono::Utc::now(),
        data,
    }
}

/// Hands `events` to `fanout_in` in one transaction, as the relay does.
pub async fn fan_out(database_url: &str, events: &[SystemEvent]) {
    let mut conn = diesel_async::AsyncPgConnection::establish(database_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {database_url}: {e}"));
    let events = events.to_vec();
    conn.transaction::<_, berth_core::error::Error, _>(async |conn| {
        berth_core::notifications::fanout_in(conn, &events).await
    })
    .await
    .unwrap_or_else(|e| panic!("fanout_in failed: {e}"));
}

/// Verifies a request as a receiver following Standard Webhooks 1.0 would: HMAC-SHA256
/// keyed with the base64-decoded secret after `whsec_`, over `{id}.{timestamp}.{body}`,
/// base64, compared with each `v1,` entry of `webhook-signature`; and the timestamp
/// within five minutes of now. Written from the spec, independently of Berth's signer.
pub fn verify(secret: &str, request: &Received) -> Result<(), String> {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .map_err(|e| format!("secret is not base64: {e}"))?;
    let id = request.header("webhook-id");
    let timestamp = request.header("webhook-timestamp");
    if id.is_empty() || timestamp.is_empty() {
        return Err("webhook-id or webhook-timestamp missing".into());
    }
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| format!("webhook-timestamp {timestamp:?} is not seconds"))?;
    let now = chrono::Utc::now().timestamp();
    if (now - ts).abs() > 300 {
        return Err(format!("timestamp {ts} is more than 5 minutes from {now}"));
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{timestamp}.{}", request.body).as_bytes());
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    let ok = request
        .header("webhook-signature")
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .any(|sig| sig == expected);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "no v1 signature in {:?} matches {expected}",
            request.header("webhook-signature")
        ))
    }
}

/// The deliveries of `channel` in the database: (state, attempts), oldest first.
pub async fn deliveries(database_url: &str, channel: &str) -> Vec<(String, i32)> {
    query(
        database_url,
        &format!(
            "SELECT d.state, d.attempts FROM notification_deliveries d \
             JOIN notification_channels c ON c.id = d.channel_id \
             WHERE c.name = '{channel}' ORDER BY d.id"
        ),
    )
    .await
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect()
}
