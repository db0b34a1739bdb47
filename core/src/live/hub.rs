//! The in-process meeting point of this replica's moving parts.
//!
//! Worker streams register here, and the hub is the **one outbox to workers**: the
//! scheduler, the recorder, the API and `leases` say what a worker must hear as a
//! [`ToWorker`] and hand it to [`Hub::send`] (or [`Hub::cancel`]); only the agent stream
//! turns it into a wire message. API calls poke the scheduler when there may be new
//! work; log writes and status changes bump a counter that log followers wait on.
//! Everything here is a wake-up, a channel or a cache (authenticated tokens, the worker of
//! each live stream's token), never state of its own: the database stays the only source
//! of truth, and every waiter also re-checks it on a timer, so a missed poke costs
//! latency, not correctness.
//!
//! Sending never waits. Each stream has a bounded queue (room for two messages per slot
//! of the worker, plus [`AgentSettings::outbox_slack`]: a round assigns at most one
//! message per free slot, and cancels at most one per running attempt). A worker that
//! stops reading its stream fills it; the next Assign or Cancel for it closes the stream
//! instead of waiting ([`Delivery::Overflowed`]; a heartbeat is only dropped), so one
//! stuck worker never delays another worker's assignments or reports. The worker
//! reconnects, and its Hello reconciles what it runs with what the database says:
//! assignments it never got are withdrawn (the hand-off deadline), and cancelled
//! attempts are cancelled again.
//!
//! Streams that are not worker streams (log followers) learn that a token or user was
//! closed from [`Hub::subscribe_closed`] and re-check their caller's token.
//!
//! Other replicas must hear most of these pokes too: [`Hub::wake_scheduler`],
//! [`Hub::changed`], [`Hub::close_token`], [`Hub::close_user`] and a [`Hub::cancel`] for a
//! worker connected
//! elsewhere also hand an [`Event`] to the outbox that `notify::publish` sends with
//! `NOTIFY`, and `notify::listen` applies what it hears with the `*_local` methods, which
//! never send anything on.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::access::auth::TokenCache;
use crate::live::AgentSettings;
use crate::live::consumers::Consumers;
use crate::live::events::Event;
use crate::work::ids::AttemptKey;
use crate::work::spec::StoredSpec;

/// What the server tells a worker. Only the agent stream knows how this is said on the
/// wire.
#[derive(Debug)]
pub enum ToWorker {
    /// Run this attempt.
    Assign(Box<Assignment>),
    /// Stop this attempt: SIGTERM, its grace period, SIGKILL; then report Finished.
    Cancel(AttemptKey),
    /// Stop and remove the containers of these attempts of a lost worker that shared this
    /// worker's Docker engine; the worker answers once they are gone.
    StopContainers(Vec<AttemptKey>),
    /// A sign of life.
    Heartbeat,
    /// These Finished reports are applied (or were found stale): the worker may forget
    /// them. Until it hears this it keeps each one and sends it again after a reconnect.
    Recorded(Vec<AttemptKey>),
}

/// An attempt to run, with its secret values opened (the only place they leave the
/// server).
#[derive(Clone, PartialEq)]
pub struct Assignment {
    /// The attempt.
    pub key: AttemptKey,
    /// What to run.
    pub spec: StoredSpec,
    /// The secret env values, in plain form.
    pub secret_env: std::collections::BTreeMap<String, String>,
    /// The artifacts to mount, with their files.
    pub inputs: Vec<crate::work::spec::AssignedInput>,
    /// The trace context of the hand-off, for the worker to continue (`observe::traces`).
    pub traceparent: Option<String>,
}

impl std::fmt::Debug for Assignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assignment")
            .field("key", &self.key)
            .field("spec", &self.spec)
            .field("secret_env", &self.secret_env.keys().collect::<Vec<_>>())
            .field("inputs", &self.inputs.len())
            .finish()
    }
}

/// What became of a message for a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Queued on the worker's stream.
    Queued,
    /// The worker has no stream on this replica.
    NotHere,
    /// The worker's queue was full: its stream is being closed, and the message dropped.
    Overflowed,
}

/// Milliseconds on a clock private to this process, for cheap timestamps in atomics.
pub(crate) fn now_ms() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A token or user whose streams must end (it was disabled or deleted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The token with this id.
    Token(Uuid),
    /// Every token of the user with this id.
    User(Uuid),
}

impl Closed {
    /// Whether a stream opened with `token_id` by `user_id` is concerned.
    pub fn concerns(self, token_id: Uuid, user_id: Option<Uuid>) -> bool {
        match self {
            Closed::Token(id) => id == token_id,
            Closed::User(id) => user_id == Some(id),
        }
    }
}

/// How many closings a slow follower may miss before it is told it lagged (and then
/// re-checks its token anyway).
const CLOSED_CAPACITY: usize = 64;

/// A live worker stream on this replica.
#[derive(Clone)]
pub struct Session {
    /// Distinguishes this stream from an earlier one of the same worker.
    pub id: u64,
    /// The worker.
    pub worker_id: Uuid,
    /// The token the stream authenticated with.
    pub token_id: Uuid,
    /// Messages to the worker; see [`Hub::send`].
    tx: mpsc::Sender<ToWorker>,
    /// Cancelled to end the stream (token disabled, replaced by a newer stream).
    pub close: CancellationToken,
    /// Cancelled when the worker's queue overflowed: the stream ends so it reconnects.
    pub overflowed: CancellationToken,
    /// When the worker was last heard from ([`now_ms`]); `leases` renews the leases of
    /// all streams heard since its last round in one statement, and ends streams silent
    /// for longer than the lease TTL.
    pub last_heard: Arc<AtomicU64>,
    /// Cancelled by `leases` when the worker fell silent for longer than the lease TTL.
    pub lapsed: CancellationToken,
    /// Set when the worker said GoingAway: it gets nothing new on this stream. Kept apart
    /// from an operator's drain (`workers.draining`), which must survive reconnects.
    pub going_away: Arc<AtomicBool>,
}

impl Session {
    /// Notes that the worker was heard from just now (any message renews its lease).
    pub fn heard(&self) {
        self.last_heard.store(now_ms(), Ordering::Relaxed);
    }

    /// Queues `message` on this stream; see [`Hub::send`]. A heartbeat that finds the
    /// queue full is dropped instead: a worker that is only slow to read misses a sign of
    /// life, and one that stopped reading is closed by the next message that matters.
    pub(crate) fn send(&self, message: ToWorker) -> Delivery {
        match self.tx.try_send(message) {
            Ok(()) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Full(ToWorker::Heartbeat)) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Full(message)) => {
                if !self.overflowed.is_cancelled() {
                    tracing::warn!(worker_id = %self.worker_id, dropped = ?message, "the worker does not read its stream and its queue is full; closing the stream so it reconnects");
                }
                self.overflowed.cancel();
                Delivery::Overflowed
            }
            // The stream is ending; its worker reconnects.
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::NotHere,
        }
    }
}

/// See the module docs.
pub struct Hub {
    sessions: Mutex<HashMap<Uuid, Session>>,
    /// The worker of each token with a live stream here (a worker token binds to one
    /// worker), for `AppendLog`, which names only its token. Changed only with
    /// `sessions` held.
    workers_by_token: Mutex<HashMap<Uuid, Uuid>>,
    next_session: AtomicU64,
    wake_scheduler: Notify,
    changes: watch::Sender<u64>,
    closed: broadcast::Sender<Closed>,
    outbox: OnceLock<mpsc::Sender<Event>>,
    tokens: Arc<TokenCache>,
    /// Room in each stream's queue beyond two messages per slot.
    outbox_slack: usize,
    /// Live topic consumers on this replica, and this replica's id.
    consumers: Consumers,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(&AgentSettings::default())
    }
}

impl Hub {
    /// A hub for streams with `settings`.
    pub fn new(settings: &AgentSettings) -> Self {
        Hub {
            sessions: Mutex::new(HashMap::new()),
            workers_by_token: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            wake_scheduler: Notify::new(),
            changes: watch::channel(0).0,
            closed: broadcast::channel(CLOSED_CAPACITY).0,
            outbox: OnceLock::new(),
            tokens: Arc::default(),
            outbox_slack: settings.outbox_slack,
            consumers: Consumers::new(),
        }
    }

    /// This replica's live topic consumers (and its replica id).
    pub fn consumers(&self) -> &Consumers {
        &self.consumers
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Session>> {
        // A poisoned lock only means another thread panicked while holding it; the map
        // itself is still consistent (every operation on it is a single insert/remove).
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn workers_by_token(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Uuid>> {
        // As for `sessions`: single inserts and removes, consistent after a panic.
        self.workers_by_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a worker's stream with `concurrency` slots, closing an older stream of
    /// the same worker. The receiver yields what [`Hub::send`] queues for it.
    pub(crate) fn register(
        &self,
        worker_id: Uuid,
        token_id: Uuid,
        concurrency: usize,
    ) -> (Session, mpsc::Receiver<ToWorker>) {
        let (tx, rx) = mpsc::channel(
            concurrency
                .saturating_mul(2)
                .saturating_add(self.outbox_slack)
                .max(1),
        );
        let session = Session {
            id: self.next_session.fetch_add(1, Ordering::Relaxed),
            worker_id,
            token_id,
            tx,
            close: CancellationToken::new(),
            overflowed: CancellationToken::new(),
            last_heard: Arc::new(AtomicU64::new(now_ms())),
            lapsed: CancellationToken::new(),
            going_away: Arc::new(AtomicBool::new(false)),
        };
        let mut sessions = self.sessions();
        if let Some(old) = sessions.insert(worker_id, session.clone()) {
            old.close.cancel();
        }
        self.workers_by_token().insert(token_id, worker_id);
        drop(sessions);
        (session, rx)
    }

    /// Queues `message` for `worker_id`'s stream on this replica. Never waits: when the
    /// worker's queue is full its stream is closed (see the module docs).
    pub(crate) fn send(&self, worker_id: Uuid, message: ToWorker) -> Delivery {
        let Some(session) = self.session(worker_id) else {
            return Delivery::NotHere;
        };
        session.send(message)
    }

    /// Tells `worker_id` to stop the attempt `key`: on its stream here, else through the
    /// other replicas (the one holding its stream sends it). A worker connected nowhere
    /// is told when it reconnects: its Hello lists the attempt, and reconciling finds it
    /// cancelled.
    pub(crate) fn cancel(&self, worker_id: Uuid, key: AttemptKey) {
        match self.send(worker_id, ToWorker::Cancel(key)) {
            Delivery::Queued => {}
            Delivery::NotHere => self.publish(Event::Cancel { worker_id, key }),
            // The stream is closing; the reconnect reconciles.
            Delivery::Overflowed => {}
        }
    }

    /// Removes a stream if it is still the registered one.
    pub(crate) fn unregister(&self, session: &Session) {
        let mut sessions = self.sessions();
        if sessions
            .get(&session.worker_id)
            .is_some_and(|s| s.id == session.id)
        {
            sessions.remove(&session.worker_id);
            self.workers_by_token().remove(&session.token_id);
        }
    }

    /// The live stream of a worker on this replica.
    pub(crate) fn session(&self, worker_id: Uuid) -> Option<Session> {
        self.sessions().get(&worker_id).cloned()
    }

    /// Workers with a live stream on this replica, in id order (the order claims lock
    /// worker rows in).
    pub fn connected_workers(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self.sessions().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Every live stream on this replica.
    pub(crate) fn all_sessions(&self) -> Vec<Session> {
        self.sessions().values().cloned().collect()
    }

    /// The worker whose live stream on this replica authenticated with `token_id`.
    pub(crate) fn worker_for_token(&self, token_id: Uuid) -> Option<Uuid> {
        self.workers_by_token().get(&token_id).copied()
    }

    /// The cache of authenticated tokens that [`Hub::close_token`] evicts from.
    pub fn token_cache(&self) -> Arc<TokenCache> {
        self.tokens.clone()
    }

    /// Sends this hub's events to the other replicas through `outbox` from now on
    /// (`notify::publish` reads it). Only the first call has an effect.
    pub fn set_outbox(&self, outbox: mpsc::Sender<Event>) {
        let _ = self.outbox.set(outbox);
    }

    /// Tells the other replicas (and this one) about `event`. Without an outbox, or when
    /// it is full, the event is dropped: the other replicas' timers cover for it.
    pub(crate) fn publish(&self, event: Event) {
        if let Some(outbox) = self.outbox.get()
            && outbox.try_send(event).is_err()
        {
            tracing::debug!(
                ?event,
                "event outbox full or closed; other replicas find out on their timers"
            );
        }
    }

    /// Ends every stream authenticated with `token_id` (the token was disabled or deleted),
    /// here and on the other replicas.
    pub(crate) fn close_token(&self, token_id: Uuid) {
        self.close_token_local(token_id);
        self.publish(Event::CloseToken(token_id));
    }

    /// Ends this replica's streams authenticated with `token_id`.
    pub(crate) fn close_token_local(&self, token_id: Uuid) {
        self.tokens.evict(token_id);
        for session in self.sessions().values() {
            if session.token_id == token_id {
                session.close.cancel();
            }
        }
        // No follower listening is fine: there is nothing to end.
        let _ = self.closed.send(Closed::Token(token_id));
    }

    /// Forgets every token of `user_id` and ends their streams (the user was disabled or
    /// deleted), here and on the other replicas.
    pub(crate) fn close_user(&self, user_id: Uuid) {
        self.close_user_local(user_id);
        self.publish(Event::CloseUser(user_id));
    }

    /// Forgets this replica's cached tokens of `user_id` and ends its streams here. Worker
    /// streams belong to no user, so only followers are concerned.
    pub(crate) fn close_user_local(&self, user_id: Uuid) {
        self.tokens.evict_user(user_id);
        let _ = self.closed.send(Closed::User(user_id));
    }

    /// A receiver of every token or user closed from now on.
    pub(crate) fn subscribe_closed(&self) -> broadcast::Receiver<Closed> {
        self.closed.subscribe()
    }

    /// Asks the scheduler of every replica to look for work to assign now.
    pub(crate) fn wake_scheduler(&self) {
        self.wake_local();
        self.publish(Event::Work);
    }

    /// Asks this replica's scheduler to look for work to assign now.
    pub(crate) fn wake_local(&self) {
        self.wake_scheduler.notify_one();
    }

    /// Completes when someone called [`Hub::wake_scheduler`].
    pub(crate) async fn scheduler_woken(&self) {
        self.wake_scheduler.notified().await;
    }

    /// Says that logs or statuses changed (log followers here and on the other replicas
    /// re-read).
    pub(crate) fn changed(&self) {
        self.changed_local();
        self.publish(Event::Changed);
    }

    /// Says that logs or statuses changed, to this replica's log followers only.
    pub(crate) fn changed_local(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every [`Hub::changed`].
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::ids::WorkRequestId;

    #[test]
    fn closing_a_user_tells_followers_and_the_other_replicas() {
        let hub = Hub::default();
        let (outbox, mut published) = mpsc::channel(4);
        hub.set_outbox(outbox);
        let mut closed = hub.subscribe_closed();
        let (bob, token) = (Uuid::now_v7(), Uuid::now_v7());
        hub.close_user(bob);
        let heard = closed.try_recv().expect("followers hear of the closing");
        assert_eq!(heard, Closed::User(bob));
        assert!(heard.concerns(token, Some(bob)));
        assert!(!heard.concerns(token, Some(Uuid::now_v7())));
        assert!(!heard.concerns(token, None), "a worker token has no user");
        assert_eq!(published.try_recv().ok(), Some(Event::CloseUser(bob)));

        hub.close_token_local(token);
        let heard = closed.try_recv().expect("followers hear of a closed token");
        assert!(heard.concerns(token, Some(bob)));
        assert!(!heard.concerns(Uuid::now_v7(), Some(bob)));
    }

    fn hub_with_slack(outbox_slack: usize) -> Hub {
        Hub::new(&AgentSettings {
            outbox_slack,
            ..AgentSettings::default()
        })
    }

    #[test]
    fn a_worker_that_does_not_read_gets_its_stream_closed_instead_of_blocking_the_sender() {
        let hub = hub_with_slack(0);
        let worker = Uuid::now_v7();
        // One slot: room for two messages.
        let (session, mut rx) = hub.register(worker, Uuid::now_v7(), 1);
        let key = AttemptKey::new(WorkRequestId::new(), 1);
        assert_eq!(hub.send(worker, ToWorker::Cancel(key)), Delivery::Queued);
        assert_eq!(hub.send(worker, ToWorker::Heartbeat), Delivery::Queued);
        // Full: a heartbeat is dropped, the stream stays.
        assert_eq!(hub.send(worker, ToWorker::Heartbeat), Delivery::Queued);
        assert!(!session.overflowed.is_cancelled());
        // Anything else: the send returns at once and the stream is told to end.
        assert_eq!(
            hub.send(worker, ToWorker::Cancel(key)),
            Delivery::Overflowed
        );
        assert!(session.overflowed.is_cancelled());
        // What was queued is still there for the stream to flush.
        assert!(matches!(rx.try_recv(), Ok(ToWorker::Cancel(k)) if k == key));
    }

    #[test]
    fn another_workers_stream_is_unaffected_by_a_full_one() {
        let hub = hub_with_slack(0);
        let (stuck, fine) = (Uuid::now_v7(), Uuid::now_v7());
        let (stuck_session, _stuck_rx) = hub.register(stuck, Uuid::now_v7(), 1);
        let (fine_session, mut fine_rx) = hub.register(fine, Uuid::now_v7(), 1);
        let stale = AttemptKey::new(WorkRequestId::new(), 1);
        for _ in 0..3 {
            hub.send(stuck, ToWorker::Cancel(stale));
        }
        assert!(stuck_session.overflowed.is_cancelled());
        let key = AttemptKey::new(WorkRequestId::new(), 1);
        assert_eq!(hub.send(fine, ToWorker::Cancel(key)), Delivery::Queued);
        assert!(matches!(fine_rx.try_recv(), Ok(ToWorker::Cancel(k)) if k == key));
        assert!(!fine_session.overflowed.is_cancelled());
    }

    #[test]
    fn a_cancel_for_a_worker_connected_elsewhere_goes_to_the_other_replicas() {
        let hub = Hub::default();
        let (events, mut heard) = mpsc::channel(8);
        hub.set_outbox(events);
        let worker = Uuid::now_v7();
        let key = AttemptKey::new(WorkRequestId::new(), 2);
        assert_eq!(hub.send(worker, ToWorker::Cancel(key)), Delivery::NotHere);
        hub.cancel(worker, key);
        assert_eq!(
            heard.try_recv().ok(),
            Some(Event::Cancel {
                worker_id: worker,
                key
            })
        );
        // A worker connected here is told directly, and nothing goes to the others.
        let (_session, mut rx) = hub.register(worker, Uuid::now_v7(), 1);
        hub.cancel(worker, key);
        assert!(matches!(rx.try_recv(), Ok(ToWorker::Cancel(k)) if k == key));
        assert!(heard.try_recv().is_err());
    }

    #[test]
    fn a_newer_stream_of_the_same_worker_replaces_and_closes_the_older() {
        let hub = Hub::default();
        let worker = Uuid::now_v7();
        let (old, _old_rx) = hub.register(worker, Uuid::now_v7(), 1);
        let (new, mut new_rx) = hub.register(worker, Uuid::now_v7(), 1);
        assert!(old.close.is_cancelled());
        hub.unregister(&old);
        assert_eq!(hub.session(worker).map(|s| s.id), Some(new.id));
        assert_eq!(hub.send(worker, ToWorker::Heartbeat), Delivery::Queued);
        assert!(new_rx.try_recv().is_ok());
    }
}
