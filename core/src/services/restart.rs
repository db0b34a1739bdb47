//! When and where a replica whose container ended starts again: the restart policy,
//! the backoff (doubling from `initial` to `max`, reset after `stable_after` of uptime,
//! a flat `success_delay` after exit 0 under `always`), and moving off a worker the slot
//! keeps failing on after `max_local_restarts`. Pure decisions; [`crate::services::reconcile`]
//! applies them.
