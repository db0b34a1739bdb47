//! Views of notification channels, deliveries with their attempts, and reactions.
//!
//! A channel's view has no field for its signing secret or its header values: only
//! `channel create` and `channel rotate-secret` print a secret ([`CreatedChannelView`]),
//! once.

use berth_common::proto;
use serde::Serialize;

use super::{Answer, Render, Span, Table, Time, fields, sorted, time, yes_no};

/// A notification channel.
#[derive(Debug, Serialize)]
pub struct ChannelView {
    pub id: String,
    pub workspace: String,
    pub name: String,
    /// `webhook` or `email`.
    pub kind: String,
    /// Webhooks.
    pub url: String,
    /// Webhooks: the extra headers' names (their values are never shown).
    pub header_names: Vec<String>,
    /// Email.
    pub recipients: Vec<String>,
    pub subject_prefix: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: String,
    pub disabled_at: Option<Time>,
    pub failures_in_row: u32,
    pub last_error: String,
    pub created_by: String,
    pub created_at: Option<Time>,
    pub modified_at: Option<Time>,
}

impl From<proto::NotificationChannel> for ChannelView {
    fn from(c: proto::NotificationChannel) -> ChannelView {
        use proto::notification_channel::Settings;
        let (url, header_names, recipients, subject_prefix) = match c.settings {
            Some(Settings::Webhook(w)) => (w.url, w.header_names, Vec::new(), String::new()),
            Some(Settings::Email(e)) => (String::new(), Vec::new(), e.recipients, e.subject_prefix),
            None => Default::default(),
        };
        ChannelView {
            id: c.id,
            workspace: c.workspace,
            name: c.name,
            kind: c.kind,
            url,
            header_names,
            recipients,
            subject_prefix,
            event_types: c.event_types,
            enabled: c.enabled,
            disabled_reason: c.disabled_reason,
            disabled_at: Time::from_proto(c.disabled_at.as_ref()),
            failures_in_row: c.failures_in_row,
            last_error: c.last_error,
            created_by: c.created_by,
            created_at: Time::from_proto(c.created_at.as_ref()),
            modified_at: Time::from_proto(c.modified_at.as_ref()),
        }
    }
}

impl Answer for proto::NotificationChannel {
    type View = ChannelView;
}

impl ChannelView {
    /// Where it delivers, in one line.
    fn target(&self) -> String {
        if self.kind == "email" {
            self.recipients.join(", ")
        } else {
            self.url.clone()
        }
    }
}

impl Render for ChannelView {
    fn table(&self) -> String {
        let mut rows = vec![
            ("name", self.name.clone()),
            ("id", self.id.clone()),
            ("workspace", self.workspace.clone()),
            ("kind", self.kind.clone()),
        ];
        if self.kind == "email" {
            rows.push(("recipients", self.recipients.join(", ")));
            rows.push(("subject_prefix", self.subject_prefix.clone()));
        } else {
            rows.push(("url", self.url.clone()));
            rows.push(("header_names", self.header_names.join(", ")));
        }
        rows.extend([
            ("event_types", self.event_types.join(", ")),
            ("enabled", yes_no(self.enabled)),
            ("disabled_reason", self.disabled_reason.clone()),
            ("disabled_at", time(self.disabled_at)),
            ("failures_in_row", self.failures_in_row.to_string()),
            ("last_error", self.last_error.clone()),
            ("created_by", self.created_by.clone()),
            ("created_at", time(self.created_at)),
            ("modified_at", time(self.modified_at)),
        ]);
        fields(&rows)
    }
}

/// A channel just made (or whose secret was rotated), with its signing secret.
#[derive(Debug, Serialize)]
pub struct CreatedChannelView {
    pub channel: ChannelView,
    /// Shown this once. Empty for email channels.
    pub signing_secret: String,
    #[serde(skip)]
    what: &'static str,
}

impl CreatedChannelView {
    pub(crate) fn created(r: proto::CreateChannelResponse) -> CreatedChannelView {
        CreatedChannelView {
            channel: ChannelView::from(r.channel.unwrap_or_default()),
            signing_secret: r.signing_secret,
            what: "created",
        }
    }

    pub(crate) fn rotated(r: proto::RotateChannelSecretResponse) -> CreatedChannelView {
        CreatedChannelView {
            channel: ChannelView::from(r.channel.unwrap_or_default()),
            signing_secret: r.signing_secret,
            what: "rotated the signing secret of",
        }
    }

    /// What goes to stderr in a table.
    pub fn notice(&self) -> String {
        let mut text = format!(
            "{} {} channel {} ({})\n",
            self.what,
            self.channel.kind,
            self.channel.name,
            self.channel.target()
        );
        if !self.signing_secret.is_empty() {
            text.push_str(
                "warning: the signing secret is shown only once; store it now (receivers verify webhook-signature with it)\n",
            );
        }
        text
    }
}

impl Render for CreatedChannelView {
    /// Only the secret, on its own line (nothing for email channels); the rest goes to
    /// stderr (see [`Self::notice`]).
    fn table(&self) -> String {
        if self.signing_secret.is_empty() {
            String::new()
        } else {
            format!("{}\n", self.signing_secret)
        }
    }
}

/// `channel list`.
#[derive(Debug, Serialize)]
pub struct ChannelListView {
    pub channels: Vec<ChannelView>,
}

impl From<proto::ListChannelsResponse> for ChannelListView {
    fn from(r: proto::ListChannelsResponse) -> ChannelListView {
        ChannelListView {
            channels: r.channels.into_iter().map(ChannelView::from).collect(),
        }
    }
}

impl Answer for proto::ListChannelsResponse {
    type View = ChannelListView;
}

impl Render for ChannelListView {
    fn table(&self) -> String {
        let mut table = Table::new(["NAME", "KIND", "ENABLED", "FAILURES", "EVENTS", "TARGET"]);
        for c in &self.channels {
            table.row([
                c.name.clone(),
                c.kind.clone(),
                if c.enabled {
                    "yes".to_owned()
                } else {
                    format!("no: {}", c.disabled_reason)
                },
                c.failures_in_row.to_string(),
                c.event_types.join(","),
                c.target(),
            ]);
        }
        table.render()
    }
}

/// One attempt of a delivery.
#[derive(Debug, Serialize)]
pub struct DeliveryAttemptView {
    pub number: u32,
    pub at: Option<Time>,
    /// 0: no HTTP answer.
    pub status_code: u32,
    pub error: String,
    pub latency: Option<Span>,
    /// The first 4 KiB of the response.
    pub response: String,
    /// As sent; the channel's own header values hidden.
    pub request_headers: std::collections::BTreeMap<String, String>,
    pub will_retry: bool,
}

/// A delivery with its attempts.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    pub id: String,
    pub workspace: String,
    pub channel: String,
    pub event_id: String,
    pub event_type: String,
    pub object_id: String,
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: Option<Time>,
    pub created_at: Option<Time>,
    pub finished_at: Option<Time>,
    pub last_error: String,
    pub attempt_log: Vec<DeliveryAttemptView>,
}

impl From<proto::NotificationDelivery> for DeliveryView {
    fn from(d: proto::NotificationDelivery) -> DeliveryView {
        DeliveryView {
            id: d.id,
            workspace: d.workspace,
            channel: d.channel,
            event_id: d.event_id,
            event_type: d.event_type,
            object_id: d.object_id,
            state: d.state,
            attempts: d.attempts,
            next_attempt_at: Time::from_proto(d.next_attempt_at.as_ref()),
            created_at: Time::from_proto(d.created_at.as_ref()),
            finished_at: Time::from_proto(d.finished_at.as_ref()),
            last_error: d.last_error,
            attempt_log: d
                .attempt_log
                .into_iter()
                .map(|a| DeliveryAttemptView {
                    number: a.number,
                    at: Time::from_proto(a.at.as_ref()),
                    status_code: a.status_code,
                    error: a.error,
                    latency: Span::from_proto(a.latency.as_ref()),
                    response: a.response,
                    request_headers: sorted(a.request_headers),
                    will_retry: a.will_retry,
                })
                .collect(),
        }
    }
}

impl Answer for proto::NotificationDelivery {
    type View = DeliveryView;
}

impl DeliveryAttemptView {
    /// `200`, or `0` with the error.
    fn outcome(&self) -> String {
        match (self.status_code, self.error.is_empty()) {
            (0, true) => "ok".to_owned(),
            (0, false) => self.error.clone(),
            (code, true) => code.to_string(),
            (_, false) => self.error.clone(),
        }
    }
}

impl Render for DeliveryView {
    fn table(&self) -> String {
        let mut text = fields(&[
            ("id", self.id.clone()),
            ("channel", self.channel.clone()),
            ("event_id", self.event_id.clone()),
            ("event_type", self.event_type.clone()),
            ("object_id", self.object_id.clone()),
            ("state", self.state.clone()),
            ("attempts", self.attempts.to_string()),
            ("next_attempt_at", time(self.next_attempt_at)),
            ("created_at", time(self.created_at)),
            ("finished_at", time(self.finished_at)),
            ("last_error", self.last_error.clone()),
        ]);
        if !self.attempt_log.is_empty() {
            text.push_str("attempt_log:\n");
            let mut table = Table::new(["#", "AT", "LATENCY", "RETRY", "OUTCOME"]);
            for a in &self.attempt_log {
                table.row([
                    a.number.to_string(),
                    time(a.at),
                    a.latency.map(|l| l.to_string()).unwrap_or_default(),
                    yes_no(a.will_retry),
                    a.outcome(),
                ]);
            }
            text.push_str(&table.render_indented());
        }
        text
    }
}

/// `channel deliveries`.
#[derive(Debug, Serialize)]
pub struct DeliveryListView {
    pub deliveries: Vec<DeliveryView>,
    pub next_page_token: String,
}

impl From<proto::ListDeliveriesResponse> for DeliveryListView {
    fn from(r: proto::ListDeliveriesResponse) -> DeliveryListView {
        DeliveryListView {
            deliveries: r.deliveries.into_iter().map(DeliveryView::from).collect(),
            next_page_token: r.next_page_token,
        }
    }
}

impl Answer for proto::ListDeliveriesResponse {
    type View = DeliveryListView;
}

impl Render for DeliveryListView {
    fn table(&self) -> String {
        let mut table = Table::new([
            "ID", "CHANNEL", "EVENT", "STATE", "ATTEMPTS", "CREATED", "LAST",
        ]);
        for d in &self.deliveries {
            table.row([
                d.id.clone(),
                d.channel.clone(),
                d.event_type.clone(),
                d.state.clone(),
                d.attempts.to_string(),
                time(d.created_at),
                d.attempt_log
                    .last()
                    .map(DeliveryAttemptView::outcome)
                    .unwrap_or_default(),
            ]);
        }
        let mut text = table.render();
        if !self.next_page_token.is_empty() {
            text.push_str(&format!("more: --page-token {}\n", self.next_page_token));
        }
        text
    }
}

/// A reaction.
#[derive(Debug, Serialize)]
pub struct ReactionView {
    pub id: String,
    pub workspace: String,
    pub object_kind: String,
    pub object_id: String,
    pub object: String,
    pub on: String,
    pub channel: String,
    pub created_by: String,
    pub created_at: Option<Time>,
}

impl From<proto::Reaction> for ReactionView {
    fn from(r: proto::Reaction) -> ReactionView {
        ReactionView {
            id: r.id,
            workspace: r.workspace,
            object_kind: r.object_kind,
            object_id: r.object_id,
            object: r.object,
            on: r.on,
            channel: r.channel,
            created_by: r.created_by,
            created_at: Time::from_proto(r.created_at.as_ref()),
        }
    }
}

impl Answer for proto::Reaction {
    type View = ReactionView;
}

impl Render for ReactionView {
    fn table(&self) -> String {
        fields(&[
            ("id", self.id.clone()),
            ("workspace", self.workspace.clone()),
            ("object", format!("{} {}", self.object_kind, self.object)),
            ("on", self.on.clone()),
            ("channel", self.channel.clone()),
            ("created_by", self.created_by.clone()),
            ("created_at", time(self.created_at)),
        ])
    }
}

/// `reaction list`.
#[derive(Debug, Serialize)]
pub struct ReactionListView {
    pub reactions: Vec<ReactionView>,
}

impl From<proto::ListReactionsResponse> for ReactionListView {
    fn from(r: proto::ListReactionsResponse) -> ReactionListView {
        ReactionListView {
            reactions: r.reactions.into_iter().map(ReactionView::from).collect(),
        }
    }
}

impl Answer for proto::ListReactionsResponse {
    type View = ReactionListView;
}

impl Render for ReactionListView {
    fn table(&self) -> String {
        let mut table = Table::new(["ID", "OBJECT", "ON", "CHANNEL"]);
        for r in &self.reactions {
            table.row([
                r.id.clone(),
                format!("{} {}", r.object_kind, r.object),
                r.on.clone(),
                r.channel.clone(),
            ]);
        }
        table.render()
    }
}

/// The answer to `channel delete` and `reaction remove`.
#[derive(Debug, Serialize)]
pub struct DeletedView {
    #[serde(skip)]
    pub kind: &'static str,
    pub id: String,
}

impl Render for DeletedView {
    fn table(&self) -> String {
        format!("deleted {} {}\n", self.kind, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::to_json;

    #[test]
    fn a_channel_view_has_no_secret_and_a_created_one_shows_it_alone() {
        let created = CreatedChannelView::created(proto::CreateChannelResponse {
            channel: Some(proto::NotificationChannel {
                name: "ops".into(),
                kind: "webhook".into(),
                ..Default::default()
            }),
            signing_secret: "whsec_abc".into(),
        });
        assert_eq!(created.table(), "whsec_abc\n");
        assert!(created.notice().contains("shown only once"));
        assert_eq!(to_json(&created)["signing_secret"], "whsec_abc");
        let plain = to_json(&created.channel);
        assert!(!plain.to_string().contains("whsec_abc"));
    }
}
