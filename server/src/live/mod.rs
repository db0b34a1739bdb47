//! This replica's in-process state: worker sessions, wake-ups, NOTIFY, leases.

pub mod hub;
pub mod leases;
pub mod notify;
