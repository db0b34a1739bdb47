//! The in-process meeting point of this replica's moving parts.
//!
//! Worker streams register here so the scheduler can hand them work and the API can send
//! them cancels; API calls poke the scheduler when there may be new work; log writes and
//! status changes bump a counter that log followers wait on. Everything here is a wake-up,
//! a channel or a cache (authenticated tokens, the worker of each live stream's token),
//! never state of its own: the database stays the only source of truth, and every waiter
//! also re-checks it on a timer, so a missed poke costs latency, not correctness.
//!
//! Other replicas must hear most of these pokes too: [`Hub::wake_scheduler`],
//! [`Hub::changed`] and [`Hub::close_token`] also hand an [`Event`] to the outbox that
//! `notify::publish` sends with `NOTIFY`, and `notify::listen` applies what it hears with
//! the `*_local` methods, which never send anything on.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use berth_common::proto::ServerMessage;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::access::auth::TokenCache;
use crate::live::notify::Event;

/// Milliseconds on a clock private to this process, for cheap timestamps in atomics.
pub fn now_ms() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A live worker stream on this replica.
#[derive(Clone)]
pub struct Session {
    /// Distinguishes this stream from an earlier one of the same worker.
    pub id: u64,
    /// The worker.
    pub worker_id: Uuid,
    /// The token the stream authenticated with.
    pub token_id: Uuid,
    /// Messages to the worker.
    pub tx: mpsc::Sender<Box<ServerMessage>>,
    /// Cancelled to end the stream (token disabled, replaced by a newer stream).
    pub close: CancellationToken,
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
    outbox: OnceLock<mpsc::Sender<Event>>,
    tokens: Arc<TokenCache>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            sessions: Mutex::new(HashMap::new()),
            workers_by_token: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            wake_scheduler: Notify::new(),
            changes: watch::channel(0).0,
            outbox: OnceLock::new(),
            tokens: Arc::default(),
        }
    }
}

impl Hub {
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

    /// Registers a worker's stream, closing an older stream of the same worker.
    pub fn register(
        &self,
        worker_id: Uuid,
        token_id: Uuid,
        tx: mpsc::Sender<Box<ServerMessage>>,
    ) -> Session {
        let session = Session {
            id: self.next_session.fetch_add(1, Ordering::Relaxed),
            worker_id,
            token_id,
            tx,
            close: CancellationToken::new(),
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
        session
    }

    /// Removes a stream if it is still the registered one.
    pub fn unregister(&self, session: &Session) {
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
    pub fn session(&self, worker_id: Uuid) -> Option<Session> {
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
    pub fn all_sessions(&self) -> Vec<Session> {
        self.sessions().values().cloned().collect()
    }

    /// The worker whose live stream on this replica authenticated with `token_id`.
    pub fn worker_for_token(&self, token_id: Uuid) -> Option<Uuid> {
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
    pub fn publish(&self, event: Event) {
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
    pub fn close_token(&self, token_id: Uuid) {
        self.close_token_local(token_id);
        self.publish(Event::CloseToken(token_id));
    }

    /// Ends this replica's streams authenticated with `token_id`.
    pub fn close_token_local(&self, token_id: Uuid) {
        self.tokens.evict(token_id);
        for session in self.sessions().values() {
            if session.token_id == token_id {
                session.close.cancel();
            }
        }
    }

    /// Asks the scheduler of every replica to look for work to assign now.
    pub fn wake_scheduler(&self) {
        self.wake_local();
        self.publish(Event::Work);
    }

    /// Asks this replica's scheduler to look for work to assign now.
    pub fn wake_local(&self) {
        self.wake_scheduler.notify_one();
    }

    /// Completes when someone called [`Hub::wake_scheduler`].
    pub async fn scheduler_woken(&self) {
        self.wake_scheduler.notified().await;
    }

    /// Says that logs or statuses changed (log followers here and on the other replicas
    /// re-read).
    pub fn changed(&self) {
        self.changed_local();
        self.publish(Event::Changed);
    }

    /// Says that logs or statuses changed, to this replica's log followers only.
    pub fn changed_local(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every [`Hub::changed`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
