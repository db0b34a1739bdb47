//! The delivery log: deliveries with their attempts, newest first; redelivery; the test
//! ping; pruning what is older than the retention.
//!
//! Pages are keyset pages on the delivery id (a UUIDv7, so in creation order). A
//! redelivery starts a new series of attempts (the backoff starts over) of the same
//! event, so the receiver sees the same `webhook-id`; the attempt numbers go on. The
//! test ping is a delivery of its own (`notification.ping`, a new event id) sent at once
//! by the caller's replica, tried once, and never counted against the channel.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::events::SystemEvent;
use crate::notifications::channels::{find_channel, standing_to_manage, standing_to_read};
use crate::notifications::email::Mailer;
use crate::notifications::fanout::body_of;
use crate::notifications::store::{AttemptRow, DeliveryRow, NewDelivery};
use crate::notifications::{
    ChannelRef, DeliveryPage, DeliveryQuery, DeliveryState, DeliveryView, Notifications,
};
use crate::store::schema::{notification_attempts, notification_channels, notification_deliveries};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

fn encode_page_token(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_page_token(token: &str) -> Result<Uuid> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| {
            Error::InvalidArgument(
                "page_token: not a token returned by ListDeliveries; pass next_page_token unchanged"
                    .into(),
            )
        })
}

/// The views of `rows`, with their attempts and channel names.
async fn views(
    conn: &mut AsyncPgConnection,
    rows: Vec<DeliveryRow>,
    workspace: &str,
) -> Result<Vec<DeliveryView>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let channel_ids: Vec<Uuid> = rows.iter().map(|r| r.channel_id).collect();
    let attempts: Vec<AttemptRow> = notification_attempts::table
        .filter(notification_attempts::delivery_id.eq_any(&ids))
        .order((
            notification_attempts::delivery_id.asc(),
            notification_attempts::number.asc(),
        ))
        .select(AttemptRow::as_select())
        .load(conn)
        .await?;
    let names: Vec<(Uuid, String)> = notification_channels::table
        .filter(notification_channels::id.eq_any(&channel_ids))
        .select((notification_channels::id, notification_channels::name))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| DeliveryView {
            channel: names
                .iter()
                .find(|(id, _)| *id == row.channel_id)
                .map(|(_, n)| n.clone())
                .unwrap_or_default(),
            workspace: workspace.to_owned(),
            attempts: attempts
                .iter()
                .filter(|a| a.delivery_id == row.id)
                .cloned()
                .collect(),
            row,
        })
        .collect())
}

impl Notifications {
    /// `ListDeliveries`.
    pub async fn list_deliveries(
        &self,
        caller: &Identity,
        query: DeliveryQuery,
    ) -> Result<DeliveryPage> {
        let limit = match query.limit {
            0 => DEFAULT_LIMIT,
            n if n > MAX_LIMIT => {
                return Err(Error::InvalidArgument(format!(
                    "limit: {n} is more than {MAX_LIMIT}; ask for at most {MAX_LIMIT} a page and follow next_page_token"
                )));
            }
            n => n,
        };
        let before = match query.page_token.as_str() {
            "" => None,
            token => Some(decode_page_token(token)?),
        };
        let mut conn = self.pool.get().await?;
        let standing = standing_to_read(&mut conn, caller, &query.workspace).await?;
        let mut select = notification_deliveries::table
            .filter(notification_deliveries::workspace_id.eq(standing.workspace.id))
            .order(notification_deliveries::id.desc())
            .limit(i64::from(limit) + 1)
            .select(DeliveryRow::as_select())
            .into_boxed();
        if !query.channel.is_empty() {
            let channel = find_channel(&mut conn, &standing, &query.channel, false).await?;
            select = select.filter(notification_deliveries::channel_id.eq(channel.id));
        }
        if let Some(state) = query.state {
            select = select.filter(notification_deliveries::state.eq(state.as_str()));
        }
        if let Some(before) = before {
            select = select.filter(notification_deliveries::id.lt(before));
        }
        let mut rows: Vec<DeliveryRow> = select.load(&mut conn).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => encode_page_token(last.id),
            _ => String::new(),
        };
        Ok(DeliveryPage {
            deliveries: views(&mut conn, rows, &standing.workspace.name).await?,
            next_page_token,
        })
    }

    /// `RedeliverDelivery`: a finished delivery queued again at once.
    pub async fn redeliver(
        &self,
        caller: &Identity,
        workspace: &str,
        id: &str,
    ) -> Result<DeliveryView> {
        let id = Uuid::parse_str(id)
            .map_err(|_| Error::InvalidArgument(format!("id: {id:?} is not a delivery id")))?;
        let mut conn = self.pool.get().await?;
        let standing = standing_to_manage(&mut conn, caller, workspace).await?;
        let found: Option<(DeliveryRow, bool, String)> = notification_deliveries::table
            .inner_join(notification_channels::table)
            .filter(notification_deliveries::id.eq(id))
            .filter(notification_deliveries::workspace_id.eq(standing.workspace.id))
            .select((
                DeliveryRow::as_select(),
                notification_channels::enabled,
                notification_channels::name,
            ))
            .first(&mut conn)
            .await
            .optional()?;
        let Some((row, enabled, channel)) = found else {
            return Err(Error::NotFound(format!(
                "workspace {} has no delivery {id}",
                standing.workspace.name
            )));
        };
        if row.state()? == DeliveryState::Pending {
            return Err(Error::FailedPrecondition(format!(
                "delivery {id} is still queued (attempt {} is due at {}); redeliver one that was delivered or failed",
                row.attempts + 1,
                row.next_attempt_at.to_rfc3339()
            )));
        }
        if row.test {
            return Err(Error::FailedPrecondition(format!(
                "delivery {id} is a test ping; send another with berth channel test {channel}"
            )));
        }
        if !enabled {
            return Err(Error::FailedPrecondition(format!(
                "channel {channel} is disabled; enable it first (berth channel update {channel} --enable)"
            )));
        }
        let updated: Vec<DeliveryRow> = diesel::update(
            notification_deliveries::table
                .filter(notification_deliveries::id.eq(id))
                .filter(notification_deliveries::state.ne(DeliveryState::Pending.as_str())),
        )
        .set((
            notification_deliveries::state.eq(DeliveryState::Pending.as_str()),
            notification_deliveries::series_attempts.eq(0),
            notification_deliveries::next_attempt_at.eq(Utc::now()),
            notification_deliveries::finished_at.eq(None::<chrono::DateTime<Utc>>),
            notification_deliveries::claim.eq(None::<Uuid>),
            notification_deliveries::leased_until.eq(None::<chrono::DateTime<Utc>>),
        ))
        .returning(DeliveryRow::as_returning())
        .load(&mut conn)
        .await?;
        diesel::sql_query(format!(
            "NOTIFY {}",
            crate::notifications::fanout::NOTIFY_CHANNEL
        ))
        .execute(&mut conn)
        .await?;
        self.wake.notify_one();
        let mut views = views(&mut conn, updated, &standing.workspace.name).await?;
        views
            .pop()
            .ok_or_else(|| Error::Aborted(format!("delivery {id} was queued again meanwhile")))
    }

    /// `TestChannel`: a signed `notification.ping` sent now; answers with its attempt.
    pub async fn test_channel(
        &self,
        caller: &Identity,
        channel: &ChannelRef,
    ) -> Result<DeliveryView> {
        let claim = Uuid::now_v7();
        let (row, workspace) = {
            let mut conn = self.pool.get().await?;
            let standing = standing_to_manage(&mut conn, caller, &channel.workspace).await?;
            let found = find_channel(&mut conn, &standing, &channel.name, false).await?;
            let event = SystemEvent {
                id: Uuid::now_v7(),
                seq: 0,
                workspace_id: standing.workspace.id,
                topic: "berth.notifications".into(),
                event_type: "notification.ping".into(),
                object_id: found.id,
                occurred_at: Utc::now(),
                data: serde_json::json!({ "channel": found.name, "ping": true }),
            };
            let new = NewDelivery {
                id: Uuid::now_v7(),
                workspace_id: standing.workspace.id,
                channel_id: found.id,
                event_id: event.id,
                event_type: event.event_type.clone(),
                object_id: found.id,
                body: body_of(&event, &standing.workspace.name),
                test: true,
            };
            let lease = chrono::Duration::from_std(self.lease())
                .unwrap_or_else(|_| chrono::Duration::seconds(30));
            let row: DeliveryRow = diesel::insert_into(notification_deliveries::table)
                .values((
                    &new,
                    notification_deliveries::claim.eq(claim),
                    notification_deliveries::leased_until.eq(Utc::now() + lease),
                ))
                .returning(DeliveryRow::as_returning())
                .get_result(&mut conn)
                .await?;
            (row, standing.workspace.name)
        };
        let mailer = self
            .settings
            .smtp
            .as_ref()
            .and_then(|smtp| Mailer::new(smtp, self.settings.webhook_timeout).ok());
        let id = row.id;
        self.deliver_claimed(mailer.as_ref(), claim, row).await?;
        let mut conn = self.pool.get().await?;
        let row: DeliveryRow = notification_deliveries::table
            .find(id)
            .select(DeliveryRow::as_select())
            .first(&mut conn)
            .await?;
        let mut views = views(&mut conn, vec![row], &workspace).await?;
        views
            .pop()
            .ok_or_else(|| Error::internal(format!("test delivery {id} vanished")))
    }

    /// Removes finished deliveries (with their attempts) and attempts of pending ones
    /// older than the retention; answers how many deliveries went.
    pub async fn prune(&self) -> Result<usize> {
        let cutoff = Utc::now()
            - chrono::Duration::from_std(self.settings.log_retention)
                .unwrap_or_else(|_| chrono::Duration::days(30));
        let mut conn = self.pool.get().await?;
        let removed = diesel::delete(
            notification_deliveries::table
                .filter(notification_deliveries::state.ne(DeliveryState::Pending.as_str()))
                .filter(notification_deliveries::finished_at.lt(cutoff)),
        )
        .execute(&mut conn)
        .await?;
        diesel::delete(notification_attempts::table.filter(notification_attempts::at.lt(cutoff)))
            .execute(&mut conn)
            .await?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let id = Uuid::now_v7();
        assert_eq!(
            decode_page_token(&encode_page_token(id)).expect("decodes"),
            id
        );
        assert!(decode_page_token("garbage!").is_err());
    }
}
