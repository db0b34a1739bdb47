//! The gRPC edge: one module per service. Handlers check input, call the database through
//! diesel, and convert rows to wire types here; nothing below this layer sees prost types.

pub mod agent;
pub mod tokens;
pub mod work_requests;
pub mod workers;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::ApiError;

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
    prost_types::Duration {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    }
}

/// Parses an id field, naming it in the error.
pub fn parse_id(field: &str, text: &str) -> Result<Uuid, ApiError> {
    if text.is_empty() {
        return Err(ApiError::InvalidArgument(format!("{field}: is required")));
    }
    Uuid::parse_str(text).map_err(|_| {
        ApiError::InvalidArgument(format!("{field}: {text:?} is not a valid id (a UUID)"))
    })
}

/// A JSON object of strings as a sorted map (tolerates anything else as empty).
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
