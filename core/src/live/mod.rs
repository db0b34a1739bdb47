//! This replica's in-process state: worker sessions and the one outbox to them
//! ([`hub`]), wake-ups across replicas ([`notify`]), leases kept in bulk
//! ([`leases`]), whether the database can be reached ([`health`]), and the live topic
//! consumers with the signals that reach them ([`consumers`]).
//!
//! Nothing here decides anything about work: the domain (`work`) tells the hub what to
//! send and whom to wake, and reads no state from here but which workers are connected.
//! The hub holds no state the database does not also have.

use std::time::Duration;

pub mod consumers;
pub(crate) mod events;
pub mod health;
pub mod hub;
pub mod leases;
pub mod notify;

/// Timing of the worker protocol, and the bounds of what a worker may queue up.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// How often each side sends a heartbeat.
    pub heartbeat_interval: Duration,
    /// How long a silent worker keeps its stream.
    pub lease_ttl: Duration,
    /// Per-request cap on stored log bytes.
    pub max_log_bytes: u64,
    /// How long an assignment may wait for the worker's Accept before it is offered again.
    pub handoff_deadline: Duration,
    /// How often the scheduler sweeps leases and looks for work when nobody woke it
    /// (NOTIFY from any replica wakes it sooner).
    pub sweep_interval: Duration,
    /// Messages a worker's stream may hold unread beyond two per slot; past that the
    /// stream is closed (see `hub`).
    pub outbox_slack: usize,
    /// How long the requests of a lost worker wait for another worker on its Docker
    /// engine to confirm that its containers are stopped before they run again anyway.
    pub stop_wait: Duration,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            heartbeat_interval: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(30),
            max_log_bytes: 64 * 1024 * 1024,
            handoff_deadline: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(1),
            outbox_slack: 32,
            stop_wait: Duration::from_secs(60),
        }
    }
}
