//! What the domain counts as it happens, through the `metrics` facade.
//!
//! This module owns the names, units and labels of the event metrics (counters and
//! histograms) the domain records at the places things happen: the terminal door of a
//! request, the scheduler's assignment, requeues, log writes, artifact uploads, trigger
//! fires and webhook deliveries. It only records; it never decides anything and never
//! touches the database. Which recorder receives the values (the server's Prometheus
//! exporter, or none at all) is the process's business.
//!
//! Labels are bounded words (results, reasons, outcomes); never a job, worker or token
//! id. Values are recorded when the change is written, inside its transaction, so a
//! transaction that rolls back afterwards may have been counted.

pub mod gauges;
pub mod traces;

use std::time::Duration;

use chrono::{DateTime, Utc};

/// `berth_work_requests_finished_total{result,reason}`.
pub const FINISHED: &str = "berth_work_requests_finished_total";
/// `berth_work_request_duration_seconds{result}`.
pub const DURATION: &str = "berth_work_request_duration_seconds";
/// `berth_queue_wait_seconds`.
pub const QUEUE_WAIT: &str = "berth_queue_wait_seconds";
/// `berth_dispatch_latency_seconds`.
pub const DISPATCH_LATENCY: &str = "berth_dispatch_latency_seconds";
/// `berth_attempts_requeued_total{reason}`.
pub const REQUEUED: &str = "berth_attempts_requeued_total";
/// `berth_log_bytes_total`.
pub const LOG_BYTES: &str = "berth_log_bytes_total";
/// `berth_artifact_bytes_total`.
pub const ARTIFACT_BYTES: &str = "berth_artifact_bytes_total";
/// `berth_trigger_fires_total{outcome}`.
pub const TRIGGER_FIRES: &str = "berth_trigger_fires_total";
/// `berth_webhook_deliveries_total{outcome}`.
pub const WEBHOOK_DELIVERIES: &str = "berth_webhook_deliveries_total";

/// The results a finished request is counted under (`none` for an aborted one).
pub const RESULTS: [&str; 4] = ["success", "failure", "error", "none"];

/// Gives every family its HELP text and unit, and makes each counter exist at zero so
/// a scrape shows every family before anything happened. Call once the recorder is
/// installed.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        FINISHED,
        Unit::Count,
        "Work requests that reached a terminal state, by result (success, failure, error; \
         none when aborted) and reason. Counted by the replica that ended them: sum across replicas."
    );
    describe_histogram!(
        DURATION,
        Unit::Seconds,
        "Run time of finished work requests (first start to end), by result."
    );
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "Time from submission to the first start of a work request, observed when it ends."
    );
    describe_histogram!(
        DISPATCH_LATENCY,
        Unit::Seconds,
        "Time from a work request becoming ready (submitted, or its retry backoff over) to \
         its assignment to a worker."
    );
    describe_counter!(
        REQUEUED,
        Unit::Count,
        "Attempts that ended with their request going back to the queue, by reason."
    );
    describe_counter!(
        LOG_BYTES,
        Unit::Bytes,
        "Log bytes stored from workers (resends and bytes past the log limit not counted)."
    );
    describe_counter!(
        ARTIFACT_BYTES,
        Unit::Bytes,
        "Bytes of artifact files whose upload completed."
    );
    describe_counter!(
        TRIGGER_FIRES,
        Unit::Count,
        "Trigger events as they settle, by outcome (fired, error, skipped, missed, paused)."
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        Unit::Count,
        "Webhook delivery attempts, by outcome (delivered, retry, permanent, gone)."
    );
    for outcome in ["fired", "error", "skipped", "missed", "paused"] {
        metrics::counter!(TRIGGER_FIRES, "outcome" => outcome).increment(0);
    }
    for outcome in ["delivered", "retry", "permanent", "gone"] {
        metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(0);
    }
    metrics::counter!(LOG_BYTES).increment(0);
    metrics::counter!(ARTIFACT_BYTES).increment(0);
    metrics::counter!(REQUEUED, "reason" => "worker-lost").increment(0);
    metrics::counter!(FINISHED, "result" => "success", "reason" => "none").increment(0);
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).to_std().unwrap_or(Duration::ZERO).as_secs_f64()
}

/// A request reached a terminal state at `now`.
pub fn finished(
    result: Option<&'static str>,
    reason: &'static str,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) {
    let result = result.unwrap_or("none");
    let reason = if reason.is_empty() { "none" } else { reason };
    metrics::counter!(FINISHED, "result" => result, "reason" => reason).increment(1);
    if let Some(started) = started_at {
        metrics::histogram!(DURATION, "result" => result).record(seconds(started, now));
        metrics::histogram!(QUEUE_WAIT).record(seconds(created_at, started));
    }
}

/// A request was assigned at `assigned_at`, having been ready since `ready_at`.
pub fn assigned(ready_at: DateTime<Utc>, assigned_at: DateTime<Utc>) {
    metrics::histogram!(DISPATCH_LATENCY).record(seconds(ready_at, assigned_at));
}

/// An attempt ended and its request went back to the queue.
pub fn requeued(reason: &'static str) {
    let reason = if reason.is_empty() { "none" } else { reason };
    metrics::counter!(REQUEUED, "reason" => reason).increment(1);
}

/// `bytes` of log were stored.
pub fn log_bytes(bytes: u64) {
    metrics::counter!(LOG_BYTES).increment(bytes);
}

/// An artifact file of `bytes` finished uploading.
pub fn artifact_bytes(bytes: u64) {
    metrics::counter!(ARTIFACT_BYTES).increment(bytes);
}

/// A trigger event settled with `outcome` (`fired`, `error`, `skipped`, ...).
pub fn trigger_fire(outcome: &'static str) {
    metrics::counter!(TRIGGER_FIRES, "outcome" => outcome).increment(1);
}

/// A webhook delivery attempt: `delivered`, `retry`, `permanent` or `gone`.
pub fn webhook_delivery(outcome: &'static str) {
    metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
}
