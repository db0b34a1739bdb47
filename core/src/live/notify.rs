//! Wake-ups across replicas, carried by PostgreSQL `LISTEN/NOTIFY`.
//!
//! Several `berth-server` replicas may share one database. Each keeps its own [`Hub`] of
//! in-process wake-ups, but the thing to wake is often elsewhere: a request submitted on
//! replica A must wake the scheduler of replica B, whose workers could run it; a cancel
//! must reach the replica holding the worker's stream; a disabled token must close
//! streams wherever they are. So the hub also hands every such [`Event`] to this module:
//!
//! - [`publish`] sends the hub's events as `NOTIFY berth_events, '<payload>'` through a
//!   pooled connection, in batches, after the change they announce has committed. Events
//!   that pile up while a batch is in flight are sent together and deduplicated, and
//!   `changed` (log and status changes, one per log append at worst) goes out at most
//!   once every [`CHANGED_MIN_GAP`]: followers also re-read every 500 ms, so a coarser
//!   cross-replica wake-up costs them nothing but saves a NOTIFY per log chunk. `work`
//!   (one per submission and per finished attempt) likewise goes out at most once every
//!   [`WORK_MIN_GAP`].
//! - [`listen`] holds one dedicated connection (not from the pool: a pooled connection
//!   could be recycled and stop listening) with `LISTEN berth_events`, and applies each
//!   event to the local hub with its local-only methods, so an event is never sent on
//!   again. A replica also hears its own events; applying them twice is harmless.
//!
//! Topic consumers' signals (`topic:…`, see `consumers`) travel on the same channel;
//! the topics room sends them with `pg_notify` in the transactions that publish, and the
//! listener hands them to the hub's consumers.
//!
//! Nothing here is needed for correctness. A notification lost while the listening
//! connection is down (it reconnects with backoff) costs latency only: the scheduler
//! sweeps on a timer, followers re-read on a timer, a worker stream re-checks its token
//! at every heartbeat, and a reconnecting worker learns about cancelled attempts. After
//! every (re)connection the listener wakes the local scheduler and followers once, to
//! catch up with whatever it may have missed.

use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::{Array, Text};
use diesel_async::RunQueryDsl;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use crate::live::consumers::TopicSignal;
use crate::live::events::Event;
use crate::live::hub::{Delivery, Hub, ToWorker};
use crate::store::db::{self, DbPool, DbSettings};

/// The PostgreSQL notification channel every replica listens on.
pub const CHANNEL: &str = "berth_events";

/// The shortest time between two cross-replica `changed` notifications from one replica.
pub(crate) const CHANGED_MIN_GAP: Duration = Duration::from_millis(100);

/// The shortest time between two cross-replica `work` notifications from one replica.
/// Each submission and each finished attempt says `work`; under load one notification
/// per few milliseconds wakes the other schedulers just as well, and this replica's own
/// scheduler is woken at once, in process.
pub(crate) const WORK_MIN_GAP: Duration = Duration::from_millis(5);

/// How many events may wait for the publisher before new ones are dropped (a dropped
/// event costs latency only; see the module docs).
pub const OUTBOX_CAPACITY: usize = 4096;

/// Longest wait between two attempts to reconnect the listening connection.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A frequent event that goes out at most once per `gap`; one that arrives sooner is held
/// back and sent when the gap has passed.
struct Throttle {
    event: Event,
    gap: Duration,
    held: bool,
    sent_at: Option<tokio::time::Instant>,
}

impl Throttle {
    fn new(event: Event, gap: Duration) -> Throttle {
        Throttle {
            event,
            gap,
            held: false,
            sent_at: None,
        }
    }

    /// When the held event may go out, if one is held.
    fn due(&self) -> Option<tokio::time::Instant> {
        self.held.then(|| {
            self.sent_at
                .map_or_else(tokio::time::Instant::now, |at| at + self.gap)
        })
    }

    /// Whether to send the held event now (and note that it was sent).
    fn release(&mut self, now: tokio::time::Instant) -> bool {
        if self.held && self.sent_at.is_none_or(|at| now >= at + self.gap) {
            self.held = false;
            self.sent_at = Some(now);
            return true;
        }
        false
    }
}

/// Sends the hub's events to every replica until `shutdown`. See the module docs.
pub async fn publish(pool: DbPool, mut events: mpsc::Receiver<Event>, shutdown: CancellationToken) {
    let mut batch: Vec<Event> = Vec::new();
    let mut throttles = [
        Throttle::new(Event::Changed, CHANGED_MIN_GAP),
        Throttle::new(Event::Work, WORK_MIN_GAP),
    ];
    loop {
        let due = throttles.iter().filter_map(Throttle::due).min();
        tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.recv() => match event {
                Some(event) => batch.push(event),
                None => return,
            },
            () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {}
        }
        while let Ok(event) = events.try_recv() {
            batch.push(event);
        }
        let mut payloads: Vec<String> = Vec::new();
        for event in batch.drain(..) {
            if let Some(throttle) = throttles.iter_mut().find(|t| t.event == event) {
                throttle.held = true;
                continue;
            }
            let payload = event.encode();
            if !payloads.contains(&payload) {
                payloads.push(payload);
            }
        }
        let now = tokio::time::Instant::now();
        for throttle in &mut throttles {
            if throttle.release(now) {
                payloads.push(throttle.event.encode());
            }
        }
        if payloads.is_empty() {
            continue;
        }
        if let Err(e) = send(&pool, &payloads).await {
            // The timers (scheduler sweep, follower re-reads, token checks) cover for it.
            tracing::warn!(error = %e, events = payloads.len(), "could not notify the other replicas");
        }
    }
}

async fn send(pool: &DbPool, payloads: &[String]) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    diesel::sql_query(format!(
        "SELECT pg_notify('{CHANNEL}', payload) FROM unnest($1::text[]) AS payload"
    ))
    .bind::<Array<Text>, _>(payloads)
    .execute(&mut conn)
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Listens for other replicas' events on a dedicated connection until `shutdown`,
/// reconnecting with backoff whenever the connection is lost. See the module docs.
pub async fn listen(settings: DbSettings, hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let ended = tokio::select! {
            () = shutdown.cancelled() => return,
            ended = listen_once(&settings, &hub, &shutdown) => ended,
        };
        match ended {
            Ok(Listened::Shutdown) => return,
            Ok(Listened::Lost(reason)) => {
                // It worked for a while: start the backoff over.
                backoff = Duration::from_millis(500);
                tracing::warn!(%reason, retry_in = ?backoff, "lost the connection listening for other replicas' events; the timers cover until it is back");
            }
            Err(reason) => {
                tracing::warn!(%reason, retry_in = ?backoff, "cannot listen for other replicas' events; the timers cover until this works");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How a listening connection that was set up ended.
enum Listened {
    Shutdown,
    Lost(String),
}

/// Connects (TLS as the URL asks, like the pool), listens, and applies events until the
/// connection ends or `shutdown`. `Err` means it never got to listening.
async fn listen_once(
    settings: &DbSettings,
    hub: &Hub,
    shutdown: &CancellationToken,
) -> Result<Listened, String> {
    let config: tokio_postgres::Config = settings
        .url
        .parse()
        .map_err(|e: tokio_postgres::Error| db::with_causes(&e))?;
    if db::wants_tls(&settings.url) {
        let tls = db::tls_connector(settings.ca_cert.as_deref()).map_err(|e| e.to_string())?;
        let (client, connection) = config.connect(tls).await.map_err(|e| db::with_causes(&e))?;
        pump(client, connection, hub, shutdown).await
    } else {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| db::with_causes(&e))?;
        pump(client, connection, hub, shutdown).await
    }
}

/// Drives one connection: `LISTEN`, then every notification to the hub.
async fn pump<S, T>(
    client: tokio_postgres::Client,
    mut connection: tokio_postgres::Connection<S, T>,
    hub: &Hub,
    shutdown: &CancellationToken,
) -> Result<Listened, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    // The connection only makes progress while it is polled, the LISTEN included.
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {CHANNEL}");
    let listening = client.batch_execute(&statement);
    tokio::pin!(listening);
    loop {
        tokio::select! {
            listened = &mut listening => {
                listened.map_err(|e| db::with_causes(&e))?;
                break;
            }
            message = messages.next() => match message {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(db::with_causes(&e)),
                None => return Err("the connection closed".into()),
            },
        }
    }
    tracing::info!(channel = CHANNEL, "listening for other replicas' events");
    // Whatever was announced while this replica was not listening is found now.
    hub.wake_local();
    hub.changed_local();
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return Ok(Listened::Shutdown),
            message = messages.next() => message,
        };
        match message {
            Some(Ok(AsyncMessage::Notification(notification))) => {
                let payload = notification.payload();
                if let Some(event) = Event::parse(payload) {
                    apply(hub, event);
                } else if let Some(signal) = TopicSignal::parse(payload) {
                    hub.consumers().apply(signal);
                } else {
                    tracing::debug!(payload, "ignoring an unknown event");
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Ok(Listened::Lost(db::with_causes(&e))),
            None => return Ok(Listened::Lost("the connection closed".into())),
        }
    }
}

/// Applies an event heard from any replica (this one included) to the local hub only.
fn apply(hub: &Hub, event: Event) {
    match event {
        Event::Work => hub.wake_local(),
        Event::Changed => hub.changed_local(),
        Event::CloseToken(token_id) => hub.close_token_local(token_id),
        Event::CloseUser(user_id) => hub.close_user_local(user_id),
        Event::Cancel { worker_id, key } => {
            // Only the replica holding the worker's stream has anything to do; sending
            // never waits, so a worker that does not read its stream cannot stall this.
            if hub.send(worker_id, ToWorker::Cancel(key)) == Delivery::Queued {
                tracing::info!(%key, %worker_id, "sent a cancel asked for by another replica");
            }
        }
    }
}
