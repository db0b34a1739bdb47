//! The delivery loop: one per replica, woken by `NOTIFY berth_notifications` (or its
//! poll), sending due deliveries and recording every attempt.
//!
//! A pass claims up to `concurrency` due deliveries of enabled channels (and test
//! pings) in one statement, `FOR UPDATE SKIP LOCKED`, stamping each with this pass's
//! claim id and a lease (twice the timeout and a margin): several replicas share the work,
//! none sends what another holds. Each is sent outside any transaction; then [`record`]
//! writes the attempt and what follows, fenced by the claim id (a pass whose lease ran
//! out and whose delivery another replica took changes nothing). A replica that dies
//! mid-send leaves its claims to expire, and the delivery is sent again by whoever
//! claims it next: at least once, with the same `webhook-id`.
//!
//! What follows an attempt: delivered; a retry after the schedule's next wait (±20 %
//! jitter) or the receiver's `Retry-After`; or failed for good — retries exhausted, a
//! permanent refusal (4xx, a redirect, a refused address), or `410 Gone`, which also
//! disables the channel. Finally failed deliveries count against the channel (reset by
//! a delivered one); at the limit it is disabled, and a `notification.channel_disabled`
//! event is recorded in the system events outbox ([`crate::events::emit`]), so it is
//! published on `berth.notifications` and reaches the workspace's other channels that
//! want it. Test pings are tried once
//! and never count.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Double, Integer, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::StreamExt;
use rand::Rng;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::events;
use crate::notifications::email::{self, Mailer};
use crate::notifications::fanout::NOTIFY_CHANNEL;
use crate::notifications::store::{AttemptRow, ChannelRow, DeliveryRow};
use crate::notifications::webhook::{self, Attempt, Verdict};
use crate::notifications::{ChannelKind, DeliveryState, Notifications};
use crate::store::db::{self, DbSettings};
use crate::store::schema::{
    notification_attempts, notification_channels, notification_deliveries, workspaces,
};

/// How often finished deliveries past the retention are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The claim's margin over the longest an attempt can take (resolving and sending are
/// each bounded by the timeout).
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The wait before the next attempt after `series` attempts of this series, with
/// ±20 % jitter; `None` when the schedule is used up.
pub fn backoff(schedule: &[Duration], series: usize, jitter: f64) -> Option<Duration> {
    let base = schedule.get(series.checked_sub(1)?)?;
    Some(base.mul_f64(jitter.clamp(0.8, 1.2)))
}

/// What an attempt leads to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Next {
    pub state: DeliveryState,
    /// When pending: the wait before the next attempt.
    pub wait: Option<Duration>,
    /// The channel is to be disabled (`410 Gone`).
    pub gone: bool,
}

/// Decides what follows an attempt (pure; see the module docs).
pub(crate) fn next_after(
    verdict: &Verdict,
    test: bool,
    series: usize,
    schedule: &[Duration],
    jitter: f64,
) -> Next {
    let failed = |gone| Next {
        state: DeliveryState::Failed,
        wait: None,
        gone,
    };
    match verdict {
        Verdict::Delivered => Next {
            state: DeliveryState::Delivered,
            wait: None,
            gone: false,
        },
        Verdict::Gone => failed(!test),
        Verdict::Permanent => failed(false),
        Verdict::Retry { .. } if test => failed(false),
        Verdict::Retry { after } => match backoff(schedule, series, jitter) {
            None => failed(false),
            Some(wait) => Next {
                state: DeliveryState::Pending,
                wait: Some(after.unwrap_or(wait)),
                gone: false,
            },
        },
    }
}

/// Runs the loop until `shutdown`.
pub async fn run(notifications: Notifications, db: DbSettings, shutdown: CancellationToken) {
    let listener = tokio::spawn(listen(db, notifications.wake.clone(), shutdown.clone()));
    let mailer = notifications.settings.smtp.as_ref().and_then(|smtp| {
        Mailer::new(smtp, notifications.settings.webhook_timeout)
            .map_err(|e| tracing::error!(error = %e, "email notifications cannot be sent"))
            .ok()
    });
    let mut last_prune: Option<std::time::Instant> = None;
    loop {
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            match notifications.prune().await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "pruned the delivery log"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning the delivery log failed"),
            }
            last_prune = Some(std::time::Instant::now());
        }
        let sent = tokio::select! {
            () = shutdown.cancelled() => break,
            sent = notifications.deliver_due(mailer.as_ref()) => sent,
        };
        let busy = match sent {
            Ok(n) => n >= notifications.settings.concurrency,
            Err(e) => {
                tracing::warn!(error = %e, "a delivery pass failed; trying again at the next poll");
                false
            }
        };
        if busy {
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = notifications.wake.notified() => {}
            () = tokio::time::sleep(notifications.settings.poll_interval) => {}
        }
    }
    listener.abort();
}

/// Listens for `NOTIFY berth_notifications` and wakes the loop; reconnects with backoff.
/// Losing it costs latency only: the loop polls.
async fn listen(
    db: DbSettings,
    wake: std::sync::Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let ended = tokio::select! {
            () = shutdown.cancelled() => return,
            ended = listen_once(&db, &wake) => ended,
        };
        tracing::debug!(reason = %ended, "not listening for queued deliveries; polling meanwhile");
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn listen_once(db: &DbSettings, wake: &tokio::sync::Notify) -> String {
    let config: tokio_postgres::Config = match db.url.parse() {
        Ok(config) => config,
        Err(e) => return db::with_causes(&e),
    };
    if db::wants_tls(&db.url) {
        let tls = match db::tls_connector(db.ca_cert.as_deref()) {
            Ok(tls) => tls,
            Err(e) => return e.to_string(),
        };
        match config.connect(tls).await {
            Ok((client, connection)) => pump(client, connection, wake).await,
            Err(e) => db::with_causes(&e),
        }
    } else {
        match config.connect(tokio_postgres::NoTls).await {
            Ok((client, connection)) => pump(client, connection, wake).await,
            Err(e) => db::with_causes(&e),
        }
    }
}

async fn pump<S, T>(
    client: tokio_postgres::Client,
    mut connection: tokio_postgres::Connection<S, T>,
    wake: &tokio::sync::Notify,
) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {NOTIFY_CHANNEL}");
    let listening = client.batch_execute(&statement);
    tokio::pin!(listening);
    loop {
        tokio::select! {
            listened = &mut listening => match listened {
                Ok(()) => break,
                Err(e) => return db::with_causes(&e),
            },
            message = messages.next() => match message {
                Some(Ok(_)) => {}
                Some(Err(e)) => return db::with_causes(&e),
                None => return "the connection closed".into(),
            },
        }
    }
    // Whatever was queued while not listening is found now.
    wake.notify_one();
    loop {
        match messages.next().await {
            Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
            Some(Ok(_)) => {}
            Some(Err(e)) => return db::with_causes(&e),
            None => return "the connection closed".into(),
        }
    }
}

/// Claims up to `limit` due deliveries for `claim` (see the module docs).
async fn claim(
    conn: &mut AsyncPgConnection,
    claim: Uuid,
    limit: usize,
    lease: Duration,
) -> Result<Vec<DeliveryRow>> {
    Ok(diesel::sql_query(
        "UPDATE notification_deliveries d \
            SET claim = $1, leased_until = now() + make_interval(secs => $2) \
          WHERE d.id IN ( \
              SELECT d2.id FROM notification_deliveries d2 \
                JOIN notification_channels c ON c.id = d2.channel_id \
               WHERE d2.state = 'pending' AND d2.next_attempt_at <= now() \
                 AND (d2.leased_until IS NULL OR d2.leased_until < now()) \
                 AND (c.enabled OR d2.test) \
               ORDER BY d2.next_attempt_at \
               LIMIT $3 \
               FOR UPDATE OF d2 SKIP LOCKED) \
        RETURNING d.*",
    )
    .bind::<SqlUuid, _>(claim)
    .bind::<Double, _>(lease.as_secs_f64())
    .bind::<Integer, _>(i32::try_from(limit).unwrap_or(i32::MAX))
    .load(conn)
    .await?)
}

impl Notifications {
    /// How long a claim holds: longer than any attempt can take, so only a replica that
    /// died leaves one to expire.
    pub(crate) fn lease(&self) -> Duration {
        self.settings.webhook_timeout * 2 + LEASE_MARGIN
    }

    /// One pass: claims, sends and records due deliveries; answers how many.
    pub async fn deliver_due(&self, mailer: Option<&Mailer>) -> Result<usize> {
        let id = Uuid::now_v7();
        let rows = {
            let mut conn = self.pool.get().await?;
            claim(
                &mut conn,
                id,
                self.settings.concurrency.max(1),
                self.lease(),
            )
            .await?
        };
        let count = rows.len();
        let sends = rows.into_iter().map(|row| async move {
            if let Err(e) = self.deliver_claimed(mailer, id, row).await {
                tracing::warn!(error = %e, "recording a delivery failed; it will be tried again when its claim expires");
            }
        });
        futures::future::join_all(sends).await;
        Ok(count)
    }

    /// Sends one claimed delivery and records the attempt.
    pub(crate) async fn deliver_claimed(
        &self,
        mailer: Option<&Mailer>,
        claim: Uuid,
        row: DeliveryRow,
    ) -> Result<DeliveryState> {
        let (channel, workspace): (ChannelRow, String) = {
            let mut conn = self.pool.get().await?;
            notification_channels::table
                .inner_join(workspaces::table)
                .filter(notification_channels::id.eq(row.channel_id))
                .select((ChannelRow::as_select(), workspaces::name))
                .first(&mut conn)
                .await?
        };
        let attempt = self.attempt(mailer, &row, &channel, &workspace).await;
        self.record(claim, &row, &attempt).await
    }

    /// Makes one attempt of `row` to `channel`.
    async fn attempt(
        &self,
        mailer: Option<&Mailer>,
        row: &DeliveryRow,
        channel: &ChannelRow,
        workspace: &str,
    ) -> Attempt {
        let refused = |error: String, verdict: Verdict| Attempt {
            status: 0,
            error,
            latency: Duration::ZERO,
            response: String::new(),
            headers: BTreeMap::new(),
            verdict,
        };
        match channel.kind() {
            Ok(ChannelKind::Webhook) => {
                let (secret, headers) = match self.open(channel) {
                    Ok(open) => open,
                    Err(e) => {
                        tracing::error!(error = %e, channel = %channel.id, "cannot open a channel's secret");
                        return refused(
                            "the channel's secret cannot be opened with this server's key (rotate it)".into(),
                            Verdict::Retry { after: None },
                        );
                    }
                };
                webhook::send(
                    &self.guard,
                    self.resolver.as_ref(),
                    webhook::Request {
                        url: &channel.url,
                        secret: &secret,
                        extra_headers: &headers,
                        event_id: &row.event_id.to_string(),
                        body: &row.body,
                        timeout: self.settings.webhook_timeout,
                    },
                )
                .await
            }
            Ok(ChannelKind::Email) => match mailer {
                None => refused(
                    "the server has no usable SMTP relay (smtp_host); email cannot be sent".into(),
                    Verdict::Retry { after: None },
                ),
                Some(mailer) => {
                    let object = row.object_id.to_string();
                    mailer
                        .send(
                            &channel.recipients,
                            &email::subject(&channel.subject_prefix, &row.event_type, &object),
                            email::text(&row.event_type, &object, workspace, &row.body),
                        )
                        .await
                }
            },
            Err(e) => refused(e.to_string(), Verdict::Permanent),
        }
    }

    /// Writes `attempt` of `row` and what follows it, fenced by `claim`.
    async fn record(
        &self,
        claim: Uuid,
        row: &DeliveryRow,
        attempt: &Attempt,
    ) -> Result<DeliveryState> {
        let jitter = rand::rng().random_range(0.8..=1.2);
        let schedule = self.settings.retry_schedule.clone();
        let limit = self.settings.failure_limit;
        let mut conn = self.pool.get().await?;
        let id = row.id;
        let attempt = attempt.clone();
        let state = conn
            .transaction::<_, Error, _>(async |conn| {
                let locked: Option<DeliveryRow> = notification_deliveries::table
                    .find(id)
                    .filter(notification_deliveries::claim.eq(claim))
                    .select(DeliveryRow::as_select())
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?;
                let Some(locked) = locked else {
                    tracing::warn!(delivery = %id, "a delivery's claim expired while it was sent; its attempt is not recorded");
                    return Ok(DeliveryState::Pending);
                };
                let number = locked.attempts + 1;
                let series = usize::try_from(locked.series_attempts + 1).unwrap_or(usize::MAX);
                let next = next_after(&attempt.verdict, locked.test, series, &schedule, jitter);
                let now: DateTime<Utc> = Utc::now();
                let next_at = next
                    .wait
                    .and_then(|w| chrono::Duration::from_std(w).ok())
                    .map_or(now, |w| now + w);
                diesel::insert_into(notification_attempts::table)
                    .values(&AttemptRow {
                        delivery_id: id,
                        number,
                        at: now,
                        status_code: i32::from(attempt.status),
                        error: attempt.error.clone(),
                        latency_ms: i64::try_from(attempt.latency.as_millis()).unwrap_or(i64::MAX),
                        response: attempt.response.clone(),
                        request_headers: serde_json::to_value(&attempt.headers)
                            .unwrap_or_default(),
                        will_retry: next.state == DeliveryState::Pending,
                    })
                    .execute(conn)
                    .await?;
                let finished = (next.state != DeliveryState::Pending).then_some(now);
                diesel::update(notification_deliveries::table.find(id))
                    .set((
                        notification_deliveries::state.eq(next.state.as_str()),
                        notification_deliveries::attempts.eq(number),
                        notification_deliveries::series_attempts.eq(locked.series_attempts + 1),
                        notification_deliveries::next_attempt_at.eq(next_at),
                        notification_deliveries::claim.eq(None::<Uuid>),
                        notification_deliveries::leased_until.eq(None::<DateTime<Utc>>),
                        notification_deliveries::last_error.eq(&attempt.error),
                        notification_deliveries::finished_at.eq(finished),
                    ))
                    .execute(conn)
                    .await?;
                if !locked.test {
                    settle_channel(conn, &locked, &attempt, next, limit).await?;
                }
                Ok(next.state)
            })
            .await?;
        Ok(state)
    }
}

/// The channel's side of an attempt: its last error, its failures in a row, and
/// disabling it (with the `notification.channel_disabled` event) when it must.
async fn settle_channel(
    conn: &mut AsyncPgConnection,
    delivery: &DeliveryRow,
    attempt: &Attempt,
    next: Next,
    limit: u32,
) -> Result<()> {
    let channel: ChannelRow = notification_channels::table
        .find(delivery.channel_id)
        .select(ChannelRow::as_select())
        .for_update()
        .first(conn)
        .await?;
    let now = Utc::now();
    let mut failures = channel.failures_in_row;
    let mut last_error = channel.last_error.clone();
    match next.state {
        DeliveryState::Delivered => failures = 0,
        DeliveryState::Failed => {
            failures += 1;
            last_error = attempt.error.clone();
        }
        DeliveryState::Pending => last_error = attempt.error.clone(),
    }
    let reason = if !channel.enabled {
        None
    } else if next.gone {
        Some(format!(
            "the endpoint answered 410 Gone ({})",
            attempt.error
        ))
    } else if limit > 0
        && next.state == DeliveryState::Failed
        && failures >= i32::try_from(limit).unwrap_or(i32::MAX)
    {
        Some(format!(
            "{failures} deliveries in a row failed; the last: {}",
            attempt.error
        ))
    } else {
        None
    };
    diesel::update(notification_channels::table.find(channel.id))
        .set((
            notification_channels::failures_in_row.eq(failures),
            notification_channels::last_error.eq(&last_error),
        ))
        .execute(conn)
        .await?;
    if let Some(reason) = reason {
        diesel::update(notification_channels::table.find(channel.id))
            .set((
                notification_channels::enabled.eq(false),
                notification_channels::disabled_reason.eq(&reason),
                notification_channels::disabled_at.eq(now),
                notification_channels::modified_at.eq(now),
            ))
            .execute(conn)
            .await?;
        tracing::warn!(channel = %channel.name, workspace = %channel.workspace_id, %reason, "disabled a notification channel");
        // Into the outbox, in this transaction: the relay publishes it on
        // `berth.notifications` and hands it to the channels that want it (this one is
        // disabled now, so it is not among them).
        events::emit(
            conn,
            channel.workspace_id,
            "berth.notifications",
            "notification.channel_disabled",
            channel.id,
            &serde_json::json!({
                "channel": channel.name,
                "kind": channel.kind,
                "reason": reason,
                "failures_in_row": failures,
                "last_error": last_error,
            }),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Vec<Duration> {
        vec![Duration::from_secs(5), Duration::from_secs(300)]
    }

    #[test]
    fn retries_follow_the_schedule_then_stop() {
        let retry = Verdict::Retry { after: None };
        let first = next_after(&retry, false, 1, &schedule(), 1.0);
        assert_eq!(first.state, DeliveryState::Pending);
        assert_eq!(first.wait, Some(Duration::from_secs(5)));
        let second = next_after(&retry, false, 2, &schedule(), 1.0);
        assert_eq!(second.wait, Some(Duration::from_secs(300)));
        let third = next_after(&retry, false, 3, &schedule(), 1.0);
        assert_eq!(third.state, DeliveryState::Failed);
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        let low = backoff(&schedule(), 1, 0.0).expect("a wait");
        let high = backoff(&schedule(), 1, 9.0).expect("a wait");
        assert_eq!(low, Duration::from_secs(4));
        assert_eq!(high, Duration::from_secs(6));
    }

    #[test]
    fn retry_after_wins_over_the_schedule() {
        let retry = Verdict::Retry {
            after: Some(Duration::from_secs(42)),
        };
        assert_eq!(
            next_after(&retry, false, 1, &schedule(), 1.0).wait,
            Some(Duration::from_secs(42))
        );
    }

    #[test]
    fn permanent_answers_and_gone_end_at_once() {
        let permanent = next_after(&Verdict::Permanent, false, 1, &schedule(), 1.0);
        assert_eq!(permanent.state, DeliveryState::Failed);
        assert!(!permanent.gone);
        let gone = next_after(&Verdict::Gone, false, 1, &schedule(), 1.0);
        assert_eq!(gone.state, DeliveryState::Failed);
        assert!(gone.gone);
        // A test ping never retries and never disables.
        let ping = next_after(&Verdict::Retry { after: None }, true, 1, &schedule(), 1.0);
        assert_eq!(ping.state, DeliveryState::Failed);
        assert!(!next_after(&Verdict::Gone, true, 1, &schedule(), 1.0).gone);
    }
}
