//! Managing channels: create, read, list, change, rotate the signing secret, delete.
//!
//! Roles: reading needs a viewer of the workspace (a public workspace's users too);
//! every change a contributor in an open workspace ([`crate::access::roles`] decides; a
//! caller who may not see the workspace gets NOT_FOUND).
//!
//! A webhook's signing secret is `whsec_` and the base64 of 24 random bytes (the bytes
//! are the HMAC key, as Standard Webhooks says). It and the extra header values are
//! sealed together with the server's key into `sealed`; the secret is returned once, by
//! create and by rotate, and nothing else ever reads it but the delivery.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rand::RngCore;
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::{self, Standing, WorkspaceRole};
use crate::error::{Error, Result};
use crate::notifications::store::{ChannelRow, NewChannel};
use crate::notifications::{
    ChannelChange, ChannelInput, ChannelKind, ChannelRef, ChannelView, Notifications,
    SettingsInput, WithSecret, patterns, ssrf,
};
use crate::store::schema::{notification_channels, users};
use crate::templates::{names, workspace_name};

pub(crate) const MANAGE_ACTION: &str = "manage notification channels of";
pub(crate) const READ_ACTION: &str = "read notification channels of";

/// The most extra headers, and recipients, a channel holds.
const MAX_HEADERS: usize = 20;
const MAX_RECIPIENTS: usize = 50;

/// Headers Berth sets itself, which a channel may not set.
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "user-agent",
];

/// The key under which the signing secret is sealed; header values are `header:NAME`.
pub(crate) const SECRET_KEY: &str = "secret";
pub(crate) const HEADER_PREFIX: &str = "header:";

/// A new signing secret, `whsec_<base64 of 24 random bytes>`.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// The NOT_FOUND for a channel name.
fn no_such_channel(workspace: &str, name: &str) -> Error {
    Error::NotFound(format!(
        "workspace {workspace} has no notification channel named {name:?} (berth channel list -w {workspace} shows them)"
    ))
}

/// The caller's standing in `workspace` to change channels (contributor, open).
pub(crate) async fn standing_to_manage(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    workspace: &str,
) -> Result<Standing> {
    let standing = roles::in_workspace(conn, caller, workspace_name(workspace)).await?;
    standing.require(WorkspaceRole::Contributor, MANAGE_ACTION)?;
    standing.require_open()?;
    Ok(standing)
}

/// The caller's standing in `workspace` to read channels.
pub(crate) async fn standing_to_read(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    workspace: &str,
) -> Result<Standing> {
    let standing = roles::in_workspace(conn, caller, workspace_name(workspace)).await?;
    standing.require(WorkspaceRole::Viewer, READ_ACTION)?;
    Ok(standing)
}

/// The channel `name` of the standing's workspace; locked with `lock`.
pub(crate) async fn find_channel(
    conn: &mut AsyncPgConnection,
    standing: &Standing,
    name: &str,
    lock: bool,
) -> Result<ChannelRow> {
    let select = notification_channels::table
        .filter(notification_channels::workspace_id.eq(standing.workspace.id))
        .filter(notification_channels::name.eq(name))
        .select(ChannelRow::as_select());
    let found = if lock {
        select.for_update().first(conn).await.optional()?
    } else {
        select.first(conn).await.optional()?
    };
    found.ok_or_else(|| no_such_channel(&standing.workspace.name, name))
}

/// A channel's view: its creator's name looked up.
pub(crate) async fn view_of(
    conn: &mut AsyncPgConnection,
    row: ChannelRow,
    workspace: &str,
) -> Result<ChannelView> {
    let created_by: Option<String> = match row.created_by {
        Some(id) => users::table
            .find(id)
            .select(users::name)
            .first(conn)
            .await
            .optional()?,
        None => None,
    };
    Ok(ChannelView {
        row,
        workspace: workspace.to_owned(),
        created_by: created_by.unwrap_or_default(),
    })
}

fn check_url(url: &str) -> Result<String> {
    ssrf::check_url(url)
        .map(|u| u.to_string())
        .map_err(|why| Error::InvalidArgument(format!("webhook.url: {why}")))
}

/// Checks extra headers: names, values, how many, none Berth sets itself.
fn check_headers(headers: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    if headers.len() > MAX_HEADERS {
        return Err(Error::InvalidArgument(format!(
            "webhook.headers: {} headers; a channel takes at most {MAX_HEADERS}",
            headers.len()
        )));
    }
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if reqwest::header::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(Error::InvalidArgument(format!(
                "webhook.headers: {name:?} is not an HTTP header name"
            )));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "webhook.headers: {name} is set by Berth itself and cannot be given"
            )));
        }
        if value.len() > 4096 || reqwest::header::HeaderValue::from_str(value).is_err() {
            return Err(Error::InvalidArgument(format!(
                "webhook.headers: the value of {name} is not a valid header value (visible ASCII, at most 4096 bytes)"
            )));
        }
        out.insert(lower, value.clone());
    }
    Ok(out)
}

/// Checks recipients: addresses, how many.
fn check_recipients(recipients: &[String]) -> Result<Vec<String>> {
    if recipients.is_empty() {
        return Err(Error::InvalidArgument(
            "email.recipients: give at least one address, e.g. ops@example.com".into(),
        ));
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Err(Error::InvalidArgument(format!(
            "email.recipients: {} addresses; a channel takes at most {MAX_RECIPIENTS}",
            recipients.len()
        )));
    }
    let mut out = Vec::with_capacity(recipients.len());
    for (i, r) in recipients.iter().enumerate() {
        let r = r.trim();
        if r.parse::<lettre::Address>().is_err() {
            return Err(Error::InvalidArgument(format!(
                "email.recipients[{i}]: {r:?} is not an email address (write it as name@example.com)"
            )));
        }
        out.push(r.to_owned());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn check_prefix(prefix: &str) -> Result<String> {
    if prefix.len() > 100 || prefix.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(
            "email.subject_prefix: at most 100 characters, no control characters".into(),
        ));
    }
    Ok(prefix.to_owned())
}

impl Notifications {
    /// Seals the signing secret and header values.
    fn seal(&self, secret: &str, headers: &BTreeMap<String, String>) -> Result<Vec<u8>> {
        let mut values = BTreeMap::new();
        values.insert(SECRET_KEY.to_owned(), secret.to_owned());
        for (name, value) in headers {
            values.insert(format!("{HEADER_PREFIX}{name}"), value.clone());
        }
        self.secrets.seal(&values).map_err(Error::internal)
    }

    /// Opens a channel's sealed values: the secret and the headers.
    pub(crate) fn open(&self, row: &ChannelRow) -> Result<(String, BTreeMap<String, String>)> {
        let Some(sealed) = &row.sealed else {
            return Ok((String::new(), BTreeMap::new()));
        };
        let mut values = self
            .secrets
            .open(sealed)
            .map_err(|e| Error::internal(format!("sealed values of channel {}: {e}", row.id)))?;
        let secret = values.remove(SECRET_KEY).unwrap_or_default();
        let headers = values
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix(HEADER_PREFIX).map(|n| (n.to_owned(), v)))
            .collect();
        Ok((secret, headers))
    }

    /// `CreateChannel`.
    pub async fn create_channel(
        &self,
        caller: &Identity,
        workspace: &str,
        input: ChannelInput,
    ) -> Result<WithSecret> {
        names::validate(&input.name)?;
        let event_types = patterns::check("event_types", &input.event_types)?;
        let mut conn = self.pool.get().await?;
        let standing = standing_to_manage(&mut conn, caller, workspace).await?;
        let mut row = NewChannel {
            id: Uuid::now_v7(),
            workspace_id: standing.workspace.id,
            name: input.name.clone(),
            kind: String::new(),
            url: String::new(),
            header_names: Vec::new(),
            sealed: None,
            recipients: Vec::new(),
            subject_prefix: String::new(),
            event_types,
            enabled: !input.disabled,
            disabled_reason: if input.disabled {
                "created disabled".into()
            } else {
                String::new()
            },
            disabled_at: input.disabled.then(chrono::Utc::now),
            created_by: caller.user_id,
        };
        let mut signing_secret = String::new();
        match input.settings {
            SettingsInput::Webhook { url, headers } => {
                row.kind = ChannelKind::Webhook.as_str().into();
                row.url = check_url(&url)?;
                let headers = check_headers(&headers)?;
                signing_secret = new_secret();
                row.header_names = headers.keys().cloned().collect();
                row.sealed = Some(self.seal(&signing_secret, &headers)?);
            }
            SettingsInput::Email {
                recipients,
                subject_prefix,
            } => {
                if self.settings.smtp.is_none() {
                    return Err(Error::FailedPrecondition(
                        "email channels need the server's SMTP relay, and none is configured (smtp_host); ask an admin, or use a webhook".into(),
                    ));
                }
                row.kind = ChannelKind::Email.as_str().into();
                row.recipients = check_recipients(&recipients)?;
                row.subject_prefix = check_prefix(&subject_prefix)?;
            }
        }
        let inserted: Option<ChannelRow> = diesel::insert_into(notification_channels::table)
            .values(&row)
            .on_conflict_do_nothing()
            .returning(ChannelRow::as_returning())
            .get_result(&mut conn)
            .await
            .optional()?;
        let Some(inserted) = inserted else {
            return Err(Error::AlreadyExists(format!(
                "workspace {} already has a notification channel named {}; choose another name or change that one",
                standing.workspace.name, input.name
            )));
        };
        Ok(WithSecret {
            channel: view_of(&mut conn, inserted, &standing.workspace.name).await?,
            signing_secret,
        })
    }

    /// `GetChannel`.
    pub async fn get_channel(
        &self,
        caller: &Identity,
        channel: &ChannelRef,
    ) -> Result<ChannelView> {
        let mut conn = self.pool.get().await?;
        let standing = standing_to_read(&mut conn, caller, &channel.workspace).await?;
        let row = find_channel(&mut conn, &standing, &channel.name, false).await?;
        view_of(&mut conn, row, &standing.workspace.name).await
    }

    /// `ListChannels`, by name.
    pub async fn list_channels(
        &self,
        caller: &Identity,
        workspace: &str,
    ) -> Result<Vec<ChannelView>> {
        let mut conn = self.pool.get().await?;
        let standing = standing_to_read(&mut conn, caller, workspace).await?;
        let rows: Vec<ChannelRow> = notification_channels::table
            .filter(notification_channels::workspace_id.eq(standing.workspace.id))
            .order(notification_channels::name.asc())
            .select(ChannelRow::as_select())
            .load(&mut conn)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(view_of(&mut conn, row, &standing.workspace.name).await?);
        }
        Ok(out)
    }

    /// `UpdateChannel`, under the channel's row lock.
    pub async fn update_channel(
        &self,
        caller: &Identity,
        channel: &ChannelRef,
        change: ChannelChange,
    ) -> Result<ChannelView> {
        let event_types = change
            .event_types
            .as_deref()
            .map(|p| patterns::check("event_types", p))
            .transpose()?;
        let mut conn = self.pool.get().await?;
        let standing = standing_to_manage(&mut conn, caller, &channel.workspace).await?;
        let this = self.clone();
        let name = channel.name.clone();
        let row = conn
            .transaction::<_, Error, _>(async |conn| {
                let mut row = find_channel(conn, &standing, &name, true).await?;
                let kind = row.kind()?;
                let wrong = |field: &str| {
                    Error::InvalidArgument(format!(
                        "{field}: channel {name} is a {kind} channel; it has no {field}"
                    ))
                };
                match kind {
                    ChannelKind::Webhook => {
                        if !change.recipients.as_ref().is_none_or(Vec::is_empty) {
                            return Err(wrong("recipients"));
                        }
                        if change.subject_prefix.is_some() {
                            return Err(wrong("subject_prefix"));
                        }
                    }
                    ChannelKind::Email => {
                        if change.url.is_some() {
                            return Err(wrong("url"));
                        }
                        if change.headers.is_some() {
                            return Err(wrong("headers"));
                        }
                    }
                }
                if let Some(url) = &change.url {
                    row.url = check_url(url)?;
                }
                if let Some(headers) = &change.headers {
                    let headers = check_headers(headers)?;
                    let (secret, _) = this.open(&row)?;
                    row.header_names = headers.keys().cloned().collect();
                    row.sealed = Some(this.seal(&secret, &headers)?);
                }
                if let Some(recipients) = change.recipients.as_ref().filter(|r| !r.is_empty()) {
                    row.recipients = check_recipients(recipients)?;
                }
                if let Some(prefix) = &change.subject_prefix {
                    row.subject_prefix = check_prefix(prefix)?;
                }
                if let Some(types) = event_types {
                    row.event_types = types;
                }
                let now = chrono::Utc::now();
                match change.enabled {
                    Some(true) => {
                        row.enabled = true;
                        row.disabled_reason = String::new();
                        row.disabled_at = None;
                        row.failures_in_row = 0;
                    }
                    Some(false) if row.enabled => {
                        row.enabled = false;
                        row.disabled_reason = if change.disabled_reason.is_empty() {
                            "disabled by a user".into()
                        } else {
                            change.disabled_reason.clone()
                        };
                        row.disabled_at = Some(now);
                    }
                    _ => {}
                }
                let updated = diesel::update(notification_channels::table.find(row.id))
                    .set((
                        notification_channels::url.eq(&row.url),
                        notification_channels::header_names.eq(&row.header_names),
                        notification_channels::sealed.eq(&row.sealed),
                        notification_channels::recipients.eq(&row.recipients),
                        notification_channels::subject_prefix.eq(&row.subject_prefix),
                        notification_channels::event_types.eq(&row.event_types),
                        notification_channels::enabled.eq(row.enabled),
                        notification_channels::disabled_reason.eq(&row.disabled_reason),
                        notification_channels::disabled_at.eq(row.disabled_at),
                        notification_channels::failures_in_row.eq(row.failures_in_row),
                        notification_channels::modified_at.eq(now),
                    ))
                    .returning(ChannelRow::as_returning())
                    .get_result(conn)
                    .await?;
                Ok(updated)
            })
            .await?;
        if row.enabled {
            // Deliveries held while it was disabled may go now.
            self.wake.notify_one();
        }
        view_of(&mut conn, row, &standing.workspace.name).await
    }

    /// `RotateChannelSecret`: a new secret, sealed with the headers; returned once.
    pub async fn rotate_secret(
        &self,
        caller: &Identity,
        channel: &ChannelRef,
    ) -> Result<WithSecret> {
        let mut conn = self.pool.get().await?;
        let standing = standing_to_manage(&mut conn, caller, &channel.workspace).await?;
        let this = self.clone();
        let name = channel.name.clone();
        let (row, secret) = conn
            .transaction::<_, Error, _>(async |conn| {
                let row = find_channel(conn, &standing, &name, true).await?;
                if row.kind()? != ChannelKind::Webhook {
                    return Err(Error::FailedPrecondition(format!(
                        "channel {name} is an email channel; only webhooks have a signing secret"
                    )));
                }
                let (_, headers) = this.open(&row)?;
                let secret = new_secret();
                let sealed = this.seal(&secret, &headers)?;
                let row = diesel::update(notification_channels::table.find(row.id))
                    .set((
                        notification_channels::sealed.eq(Some(sealed)),
                        notification_channels::modified_at.eq(chrono::Utc::now()),
                    ))
                    .returning(ChannelRow::as_returning())
                    .get_result(conn)
                    .await?;
                Ok((row, secret))
            })
            .await?;
        Ok(WithSecret {
            channel: view_of(&mut conn, row, &standing.workspace.name).await?,
            signing_secret: secret,
        })
    }

    /// `DeleteChannel`: its reactions, deliveries and log go with it.
    pub async fn delete_channel(&self, caller: &Identity, channel: &ChannelRef) -> Result<()> {
        let mut conn = self.pool.get().await?;
        let standing = standing_to_manage(&mut conn, caller, &channel.workspace).await?;
        let row = find_channel(&mut conn, &standing, &channel.name, false).await?;
        diesel::delete(notification_channels::table.find(row.id))
            .execute(&mut conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_standard_webhooks_form() {
        let secret = new_secret();
        let body = secret.strip_prefix("whsec_").expect("prefix");
        assert_eq!(STANDARD.decode(body).expect("base64").len(), 24);
        assert_ne!(secret, new_secret());
    }

    #[test]
    fn headers_berth_sets_cannot_be_given() {
        for name in ["Webhook-Signature", "Host", "content-type"] {
            let headers = BTreeMap::from([(name.to_owned(), "x".to_owned())]);
            let error = check_headers(&headers).expect_err("must be refused");
            assert!(error.to_string().contains("set by Berth"), "{error}");
        }
        let headers = BTreeMap::from([("bad name".to_owned(), "x".to_owned())]);
        assert!(check_headers(&headers).is_err());
        let headers = BTreeMap::from([("X-Token".to_owned(), "abc".to_owned())]);
        assert_eq!(
            check_headers(&headers)
                .expect("fine")
                .keys()
                .next()
                .map(String::as_str),
            Some("x-token")
        );
    }

    #[test]
    fn recipients_are_checked_addresses() {
        let error = check_recipients(&["ops@example.com".into(), "not an address".into()])
            .expect_err("must be refused");
        assert!(
            error.to_string().starts_with("email.recipients[1]:"),
            "{error}"
        );
        assert!(check_recipients(&[]).is_err());
        assert_eq!(
            check_recipients(&["b@x.org".into(), "a@x.org".into(), "b@x.org".into()])
                .expect("fine"),
            vec!["a@x.org".to_owned(), "b@x.org".to_owned()]
        );
    }
}
