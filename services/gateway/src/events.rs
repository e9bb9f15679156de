//! `POST /api/events`: one event, an array, or `{"events": [...]}` → `events.raw` (seed 001).

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bus_core::chrono::{DateTime, Utc};
use commerce::{RawEvent, names};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::AppState;
use crate::body::{JsonBody, Record, records};
use crate::error::ApiError;

/// The fields an event may have.
const FIELDS: [&str; 5] = ["event_id", "brand_id", "event_type", "payload", "timestamp"];
/// Longest `event_id` and `brand_id`.
const MAX_ID: usize = 128;
/// Longest `event_type`.
const MAX_TYPE: usize = 64;

/// Validates every event of the body, then appends them all in one pipelined round trip.
/// Nothing is written when any event is invalid.
pub async fn accept(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let records = records(body, "events", state.max_batch)?;
    let now = Utc::now();
    let events = records
        .iter()
        .map(|record| event(record, now))
        .collect::<Result<Vec<_>, _>>()?;
    reject_repeated_ids(&records, &events)?;
    let ids = state
        .producers
        .events
        .send_batch(names::EVENTS_RAW, &events)
        .await
        .map_err(|e| {
            // The client may not know the generated ids; with them it can resend the batch
            // unchanged, and the normalizer drops whatever was already written by event_id.
            let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
            ApiError::from_bus("appending to events.raw", &e).with("event_ids", json!(ids))
        })?;
    state.metrics.entries(names::EVENTS_RAW, ids.len());
    let accepted: Vec<Value> = events
        .iter()
        .zip(&ids)
        .map(|(event, id)| json!({ "event_id": event.event_id, "stream_id": id.to_string() }))
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": accepted.len(), "events": accepted })),
    ))
}

/// One event, checked field by field; `event_id` defaults to a new UUID, `timestamp` to `now`.
pub fn event(record: &Record, now: DateTime<Utc>) -> Result<RawEvent, ApiError> {
    record.only(&FIELDS)?;
    let event_id = match record.optional_str("event_id")? {
        None => Uuid::new_v4().to_string(),
        Some(_) => printable(record, "event_id", record.required_str("event_id", MAX_ID)?)?,
    };
    let brand_id = printable(record, "brand_id", record.required_str("brand_id", MAX_ID)?)?;
    let event_type = record.required_str("event_type", MAX_TYPE)?;
    if !event_type
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
    {
        return Err(record.error(
            "event_type",
            "must be 1 to 64 characters of a-z, 0-9, `_`, `.` and `-` (e.g. purchase, page_view)",
        ));
    }
    let payload = record.required_object("payload")?.clone();
    let timestamp = match record.optional_str("timestamp")? {
        None => now,
        Some(raw) => commerce::messages::parse_timestamp(raw)
            .map_err(|reason| record.error("timestamp", reason))?,
    };
    Ok(RawEvent {
        event_id,
        brand_id,
        event_type: event_type.to_owned(),
        payload,
        timestamp,
    })
}

/// Identifiers travel as flat stream fields and into logs: no control characters.
fn printable(record: &Record, field: &str, value: &str) -> Result<String, ApiError> {
    if value.chars().any(char::is_control) {
        return Err(record.error(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// Two events of one batch with the same `event_id` would be one event downstream (it dedupes
/// by `event_id`), silently losing the second: refuse the batch instead.
fn reject_repeated_ids(records: &[Record], events: &[RawEvent]) -> Result<(), ApiError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, event) in events.iter().enumerate() {
        if let Some(first) = seen.insert(&event.event_id, i) {
            return Err(records[i].error(
                "event_id",
                format!("repeats the event_id of events[{first}] in this batch"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<RawEvent, ApiError> {
        event(&Record::single(body)?, Utc::now())
    }

    fn field(err: ApiError) -> String {
        err.body()["field"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn a_minimal_event_gets_an_id_and_the_current_time() {
        let now = Utc::now();
        let record = Record::single(
            json!({"brand_id": "b", "event_type": "purchase", "payload": {"total": 5}}),
        )
        .unwrap();
        let event = event(&record, now).unwrap();
        assert!(Uuid::parse_str(&event.event_id).is_ok());
        assert_eq!(event.timestamp, now);
        assert_eq!(event.payload["total"], 5);
    }

    #[test]
    fn given_ids_and_timestamps_are_kept() {
        let event = parse(json!({
            "event_id": "e-1", "brand_id": "b", "event_type": "page_view",
            "payload": {}, "timestamp": "2024-12-01T10:00:00+07:00"
        }))
        .unwrap();
        assert_eq!(event.event_id, "e-1");
        assert_eq!(
            commerce::messages::format_timestamp(&event.timestamp),
            "2024-12-01T03:00:00.000Z"
        );
    }

    #[test]
    fn each_rule_names_its_field() {
        let ok = json!({"brand_id": "b", "event_type": "purchase", "payload": {}});
        let cases = [
            ("brand_id", json!(null)),
            ("brand_id", json!("")),
            ("brand_id", json!(7)),
            ("brand_id", json!("a\nb")),
            ("event_type", json!("Purchase")),
            ("event_type", json!("a".repeat(65))),
            ("event_type", json!("page view")),
            ("payload", json!("{}")),
            ("payload", json!([1])),
            ("timestamp", json!("yesterday")),
            ("event_id", json!("")),
            ("event_id", json!(12)),
            ("brandId", json!("b")),
        ];
        for (name, value) in cases {
            let mut body = ok.clone();
            body[name] = value.clone();
            let err = parse(body).unwrap_err();
            assert_eq!(field(err), name, "{name} = {value}");
        }
        assert!(parse(ok).is_ok());
    }

    #[test]
    fn a_repeated_event_id_in_a_batch_is_refused() {
        let body = json!([
            {"event_id": "x", "brand_id": "b", "event_type": "t", "payload": {}},
            {"event_id": "y", "brand_id": "b", "event_type": "t", "payload": {}},
            {"event_id": "x", "brand_id": "b", "event_type": "t", "payload": {}}
        ]);
        let records = records(body, "events", 10).unwrap();
        let events: Vec<_> = records
            .iter()
            .map(|r| event(r, Utc::now()).unwrap())
            .collect();
        let err = reject_repeated_ids(&records, &events).unwrap_err();
        assert_eq!(field(err), "events[2].event_id");
    }
}
