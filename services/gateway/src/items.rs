//! `POST /api/items`: one item, an array, or `{"items": [...]}` → `raw_items` (seed 003), the
//! validator's input. Only the shape is checked here; the phone, bank account, email and name
//! rules are the validator's.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bus_core::chrono::{DateTime, Utc};
use serde_json::{Value, json};
use validator::RawItem;

use crate::app::AppState;
use crate::body::{JsonBody, Record, records};
use crate::error::ApiError;

/// The fields an item may have.
const FIELDS: [&str; 5] = ["data", "source", "producer", "batch_id", "timestamp"];
/// Longest envelope value (`source`, `producer`, `batch_id`, `timestamp`).
const MAX_ENVELOPE: usize = 256;

/// Checks every item's shape, then appends them all in one pipelined round trip. Nothing is
/// written when any item is malformed.
pub async fn accept(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let records = records(body, "items", state.max_batch)?;
    let now = Utc::now();
    let items = records
        .iter()
        .map(|record| item(record, now))
        .collect::<Result<Vec<_>, _>>()?;
    let ids = state
        .producers
        .items
        .send_batch(crate::RAW_ITEMS, &items)
        .await
        .map_err(|e| ApiError::from_bus("appending to raw_items", &e))?;
    state.metrics.entries(crate::RAW_ITEMS, ids.len());
    let accepted: Vec<Value> = ids
        .iter()
        .map(|id| json!({ "stream_id": id.to_string() }))
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": accepted.len(), "items": accepted })),
    ))
}

/// One item: `data` must be an object, the envelope fields strings; `timestamp` defaults to
/// `now` so every stored item says when it arrived.
pub fn item(record: &Record, now: DateTime<Utc>) -> Result<RawItem, ApiError> {
    record.only(&FIELDS)?;
    let data = record.required_object("data")?.clone();
    let envelope = |field: &str| -> Result<Option<String>, ApiError> {
        let value = record.optional_str(field)?;
        if value.is_some_and(|v| v.chars().count() > MAX_ENVELOPE) {
            return Err(record.error(field, format!("must be at most {MAX_ENVELOPE} characters")));
        }
        Ok(value.map(str::to_owned))
    };
    Ok(RawItem {
        data,
        source: envelope("source")?,
        timestamp: Some(
            envelope("timestamp")?.unwrap_or_else(|| commerce::messages::format_timestamp(&now)),
        ),
        producer: envelope("producer")?,
        batch_id: envelope("batch_id")?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(err: ApiError) -> String {
        err.body()["field"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn a_seed_item_keeps_its_envelope() {
        let record = Record::single(json!({
            "data": {"phone": "0123456789", "bank_account": "12345678901"},
            "source": "web_crawler", "producer": "crawler_worker",
            "batch_id": "batch_001", "timestamp": "2024-06-08T00:13:03+07:00"
        }))
        .unwrap();
        let item = item(&record, Utc::now()).unwrap();
        assert_eq!(item.data["phone"], "0123456789");
        assert_eq!(item.source.as_deref(), Some("web_crawler"));
        assert_eq!(item.batch_id.as_deref(), Some("batch_001"));
        assert_eq!(item.timestamp.as_deref(), Some("2024-06-08T00:13:03+07:00"));
    }

    #[test]
    fn invalid_phone_numbers_pass_the_gateway() {
        let record = Record::single(json!({"data": {"phone": "1"}})).unwrap();
        assert!(
            item(&record, Utc::now()).is_ok(),
            "rules are the validator's"
        );
    }

    #[test]
    fn shape_errors_name_the_field() {
        let cases = [
            json!({}),
            json!({"data": "{}"}),
            json!({"data": {}, "source": 1}),
            json!({"data": {}, "batch_id": "x".repeat(257)}),
            json!({"data": {}, "phone": "0123456789"}),
        ];
        let expected = ["data", "data", "source", "batch_id", "phone"];
        for (body, name) in cases.into_iter().zip(expected) {
            let err = item(&Record::single(body.clone()).unwrap(), Utc::now()).unwrap_err();
            assert_eq!(field(err), name, "{body}");
        }
    }
}
