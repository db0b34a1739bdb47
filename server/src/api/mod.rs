//! The gRPC edge: the only code that knows tonic and the generated `berth.v1` types.
//!
//! One module per service. Each handler takes the caller's identity from the request
//! (the [`auth`] layer put it there), converts the wire message to the domain's plain
//! input, calls the domain, and converts the answer back; errors become statuses in
//! [`error`] and nowhere else. No handler touches the database or decides anything.

pub mod agent;
pub mod artifacts;
pub mod auth;
pub mod collections;
pub mod error;
pub mod grpc_calls;
pub mod limits;
pub mod notifications;
pub mod server;
pub mod services;
pub mod templates;
pub mod tokens;
pub mod topics;
pub mod triggers;
pub mod users;
pub mod work_requests;
pub mod workers;
pub mod workflow_templates;
pub mod workspaces;

use chrono::{DateTime, Utc};

use berth_core::work::spec::RawDuration;

/// A wire timestamp from a database one.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// An optional wire timestamp.
pub fn timestamp_opt(at: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    at.map(timestamp)
}

/// A wire duration from milliseconds.
pub fn duration_ms(ms: u64) -> prost_types::Duration {
    raw_to_proto(RawDuration::from_millis(ms))
}

/// A wire duration from the domain's form.
pub fn raw_to_proto(d: RawDuration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.seconds,
        nanos: d.nanos,
    }
}

/// A duration as sent, for the domain to check.
pub fn raw_from_proto(d: &prost_types::Duration) -> RawDuration {
    RawDuration {
        seconds: d.seconds,
        nanos: d.nanos,
    }
}

/// Whole milliseconds of a wire duration (negative ones as sent; the worker sends these).
pub fn millis(d: &prost_types::Duration) -> i64 {
    d.seconds.saturating_mul(1000) + i64::from(d.nanos / 1_000_000)
}

/// Nanoseconds of a wire duration.
pub fn nanos(d: &prost_types::Duration) -> i64 {
    d.seconds.saturating_mul(1_000_000_000) + i64::from(d.nanos)
}

/// A JSON object of strings as a map (tolerates anything else as empty).
pub fn string_map(value: &serde_json::Value) -> std::collections::HashMap<String, String> {
    value
        .as_object()
        .map(|object| {
            object
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}
