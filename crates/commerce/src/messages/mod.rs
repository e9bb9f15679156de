//! Seed 001's wire formats: flat string fields, nested values as JSON strings, timestamps in
//! ISO 8601 (RFC 3339), booleans as `true`/`false`.
//!
//! Decoding is strict about what a stage needs (a missing `brand_id` is a dead letter naming
//! the field) and tolerant of the rest: unknown fields are ignored, and the optional fields this
//! system adds (`request_id`, `event_id` on merge requests) may be absent, so producers written
//! from the seed interoperate unchanged.

mod events;
mod merge;
mod prediction;

pub use events::{NormalizedEvent, RawEvent};
pub use merge::{MergeReason, MergeRequest};
pub use prediction::{PredictionCompleted, PredictionRequest, RequestType};

use bus_core::chrono::{DateTime, SecondsFormat, Utc};
use bus_core::{DecodeError, Fields};
use uuid::Uuid;

/// A required field that must not be empty (after trimming).
fn text(fields: &Fields, name: &str) -> Result<String, DecodeError> {
    let value = bus_core::required(fields, name)?.trim();
    if value.is_empty() {
        return Err(DecodeError::invalid(name, "must not be empty"));
    }
    Ok(value.to_owned())
}

/// An optional field; empty counts as absent.
fn optional(fields: &Fields, name: &str) -> Option<String> {
    fields
        .get(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The longest `request_id` accepted, in bytes. Request keys are stored in unique B-tree
/// indexes, where a key of several kilobytes would fail on every delivery; 512 leaves room for
/// the stages' own prefixed keys (`purchase:<event_id>`, `merge:<key>`, event ids ≤ 256).
pub const MAX_KEY_LEN: usize = 512;

/// An optional idempotency key: empty counts as absent, longer than [`MAX_KEY_LEN`] is invalid.
fn key(fields: &Fields, name: &str) -> Result<Option<String>, DecodeError> {
    match optional(fields, name) {
        Some(k) if k.len() > MAX_KEY_LEN => Err(DecodeError::invalid(
            name,
            format!(
                "has {} characters, at most {MAX_KEY_LEN} are accepted",
                k.len()
            ),
        )),
        other => Ok(other),
    }
}

/// A required RFC 3339 timestamp (`2024-12-01T10:00:00.000Z`, any offset).
fn timestamp(fields: &Fields, name: &str) -> Result<DateTime<Utc>, DecodeError> {
    let raw = bus_core::required(fields, name)?;
    parse_timestamp(raw).map_err(|reason| DecodeError::invalid(name, reason))
}

/// Parses an ISO 8601 / RFC 3339 timestamp into UTC.
pub fn parse_timestamp(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an ISO 8601 timestamp ({e}): {raw:?}"))
}

/// The wire form of a timestamp: RFC 3339 in UTC with milliseconds, as JavaScript writes it.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A required UUID field.
fn uuid(fields: &Fields, name: &str) -> Result<Uuid, DecodeError> {
    let raw = text(fields, name)?;
    Uuid::parse_str(&raw).map_err(|e| DecodeError::invalid(name, format!("not a UUID ({e})")))
}

/// A required `true`/`false` field.
fn boolean(fields: &Fields, name: &str) -> Result<bool, DecodeError> {
    match bus_core::required(fields, name)?.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(DecodeError::invalid(
            name,
            format!("must be `true` or `false`, got {other:?}"),
        )),
    }
}

#[cfg(test)]
pub(crate) fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs.iter().copied().collect()
}
