//! `POST /api/predictions`: `{profile_id, brand_id, request_type?}` → `predictions.requests`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bus_core::chrono::{DateTime, Utc};
use commerce::{PredictionRequest, RequestType, names};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::AppState;
use crate::body::{JsonBody, Record};
use crate::error::ApiError;

/// The fields a request may have.
const FIELDS: [&str; 3] = ["profile_id", "brand_id", "request_type"];
/// Longest `brand_id`.
const MAX_BRAND: usize = 128;

/// Appends one prediction request with a fresh `request_id` (`api:<uuid>`).
pub async fn request(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request = parse(&Record::single(body)?, Utc::now())?;
    let id = state
        .producers
        .predictions
        .send(names::PREDICTION_REQUESTS, &request)
        .await
        .map_err(|e| ApiError::from_bus("appending to predictions.requests", &e))?;
    state.metrics.entries(names::PREDICTION_REQUESTS, 1);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "stream_id": id.to_string(),
            "request_id": request.request_id,
            "profile_id": request.profile_id,
            "request_type": request.request_type.as_str(),
        })),
    ))
}

/// The request, checked; `request_type` defaults to `all`.
pub fn parse(record: &Record, now: DateTime<Utc>) -> Result<PredictionRequest, ApiError> {
    record.only(&FIELDS)?;
    let raw_profile = record.required_str("profile_id", 64)?;
    let profile_id = Uuid::parse_str(raw_profile)
        .map_err(|e| record.error("profile_id", format!("must be a UUID ({e})")))?;
    let brand_id = record.required_str("brand_id", MAX_BRAND)?;
    if brand_id.chars().any(char::is_control) {
        return Err(record.error("brand_id", "must not contain control characters"));
    }
    let request_type = match record.optional_str("request_type")? {
        None => RequestType::All,
        Some(raw) => RequestType::parse(raw.trim())
            .ok_or_else(|| record.error("request_type", "must be churn, ltv, segment or all"))?,
    };
    Ok(PredictionRequest {
        profile_id,
        brand_id: brand_id.to_owned(),
        request_type,
        timestamp: now,
        request_id: Some(format!("api:{}", Uuid::new_v4())),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const PROFILE: &str = "6f1c7e8e-8d6b-4a57-9a57-0d6f2b1c0e11";

    fn field(err: ApiError) -> String {
        err.body()["field"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn request_type_defaults_to_all_and_the_id_is_generated() {
        let record = Record::single(json!({"profile_id": PROFILE, "brand_id": "b"})).unwrap();
        let request = parse(&record, Utc::now()).unwrap();
        assert_eq!(request.request_type, RequestType::All);
        let id = request.request_id.unwrap();
        assert!(
            Uuid::parse_str(id.strip_prefix("api:").unwrap()).is_ok(),
            "{id}"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({"profile_id": "nope", "brand_id": "b"}), "profile_id"),
            (json!({"brand_id": "b"}), "profile_id"),
            (json!({"profile_id": PROFILE}), "brand_id"),
            (
                json!({"profile_id": PROFILE, "brand_id": "b", "request_type": "rfm"}),
                "request_type",
            ),
            (
                json!({"profile_id": PROFILE, "brand_id": "b", "request_id": "x"}),
                "request_id",
            ),
        ];
        for (body, name) in cases {
            let err = parse(&Record::single(body.clone()).unwrap(), Utc::now()).unwrap_err();
            assert_eq!(field(err), name, "{body}");
        }
    }
}
