//! `predictions.requests` and `predictions.completed`.

use bus_core::chrono::{DateTime, Utc};
use bus_core::serde_json::{Map, Value, json};
use bus_core::{DecodeError, Fields, StreamMessage};
use uuid::Uuid;

use super::{format_timestamp, key, text, timestamp, uuid};

/// What to predict (seed 001's `request_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestType {
    /// Probability that the customer stops buying.
    Churn,
    /// Expected lifetime value.
    Ltv,
    /// RFM segment name.
    Segment,
    /// All three.
    All,
}

impl RequestType {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Churn => "churn",
            RequestType::Ltv => "ltv",
            RequestType::Segment => "segment",
            RequestType::All => "all",
        }
    }

    /// Parses the wire value.
    pub fn parse(raw: &str) -> Option<RequestType> {
        Some(match raw {
            "churn" => RequestType::Churn,
            "ltv" => RequestType::Ltv,
            "segment" => RequestType::Segment,
            "all" => RequestType::All,
            _ => return None,
        })
    }

    /// The single prediction types this request asks for.
    pub fn expand(self) -> &'static [RequestType] {
        match self {
            RequestType::Churn => &[RequestType::Churn],
            RequestType::Ltv => &[RequestType::Ltv],
            RequestType::Segment => &[RequestType::Segment],
            RequestType::All => &[RequestType::Churn, RequestType::Ltv, RequestType::Segment],
        }
    }
}

/// A prediction request: `profile_id`, `brand_id`, `request_type`, `timestamp`, plus the
/// optional `request_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRequest {
    /// The profile to predict for.
    pub profile_id: Uuid,
    /// Its brand.
    pub brand_id: String,
    /// What to predict.
    pub request_type: RequestType,
    /// When it was requested.
    pub timestamp: DateTime<Utc>,
    /// Who or what asked (for tracing the request through).
    pub request_id: Option<String>,
}

impl StreamMessage for PredictionRequest {
    fn decode(fields: &Fields) -> Result<Self, DecodeError> {
        let raw_type = text(fields, "request_type")?;
        let request_type = RequestType::parse(&raw_type).ok_or_else(|| {
            DecodeError::invalid(
                "request_type",
                format!("must be churn, ltv, segment or all, got {raw_type:?}"),
            )
        })?;
        Ok(PredictionRequest {
            profile_id: uuid(fields, "profile_id")?,
            brand_id: text(fields, "brand_id")?,
            request_type,
            timestamp: timestamp(fields, "timestamp")?,
            request_id: key(fields, "request_id")?,
        })
    }

    fn encode(&self) -> Fields {
        let mut f = Fields::new();
        f.set("profile_id", self.profile_id.to_string());
        f.set("brand_id", self.brand_id.as_str());
        f.set("request_type", self.request_type.as_str());
        f.set("timestamp", format_timestamp(&self.timestamp));
        if let Some(id) = &self.request_id {
            f.set("request_id", id.as_str());
        }
        f
    }
}

/// A finished prediction, the hybrid event of `predictions.completed` (stream) and
/// `channel:predictions:completed` (real time): `profile_id`, `brand_id`, `request_type`,
/// `predictions` (a JSON object: `churn`, `ltv`, `segment`, each present when asked for),
/// `model_version`, `timestamp`, and the optional `request_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionCompleted {
    /// The profile predicted for (the surviving profile when the requested one was merged).
    pub profile_id: Uuid,
    /// Its brand.
    pub brand_id: String,
    /// What was asked for.
    pub request_type: RequestType,
    /// The results by prediction type.
    pub predictions: Map<String, Value>,
    /// The model that produced them.
    pub model_version: String,
    /// When they were produced.
    pub timestamp: DateTime<Utc>,
    /// The request's `request_id`, when it had one.
    pub request_id: Option<String>,
}

impl PredictionCompleted {
    /// The real-time notification: `{timestamp, data}`, the shape of every notification of
    /// this system, with `data` holding the stream fields (`predictions` as an object).
    pub fn notification(&self) -> Value {
        json!({
            "timestamp": format_timestamp(&self.timestamp),
            "data": {
                "profile_id": self.profile_id,
                "brand_id": self.brand_id,
                "request_type": self.request_type.as_str(),
                "predictions": self.predictions,
                "model_version": self.model_version,
                "request_id": self.request_id,
            },
        })
    }
}

impl StreamMessage for PredictionCompleted {
    fn decode(fields: &Fields) -> Result<Self, DecodeError> {
        let request = PredictionRequest::decode(fields)?;
        let predictions = match bus_core::required_json::<Value>(fields, "predictions")? {
            Value::Object(map) => map,
            _ => return Err(DecodeError::invalid("predictions", "must be a JSON object")),
        };
        Ok(PredictionCompleted {
            profile_id: request.profile_id,
            brand_id: request.brand_id,
            request_type: request.request_type,
            predictions,
            model_version: text(fields, "model_version")?,
            timestamp: request.timestamp,
            request_id: request.request_id,
        })
    }

    fn encode(&self) -> Fields {
        let mut f = PredictionRequest {
            profile_id: self.profile_id,
            brand_id: self.brand_id.clone(),
            request_type: self.request_type,
            timestamp: self.timestamp,
            request_id: self.request_id.clone(),
        }
        .encode();
        f.set(
            "predictions",
            Value::Object(self.predictions.clone()).to_string(),
        );
        f.set("model_version", self.model_version.as_str());
        f
    }
}

#[cfg(test)]
mod tests {
    use super::super::fields;
    use super::*;

    #[test]
    fn a_seed_prediction_request_round_trips() {
        let f = fields(&[
            ("profile_id", "0193a4a0-0000-7000-8000-000000000001"),
            ("brand_id", "b"),
            ("request_type", "all"),
            ("timestamp", "2024-12-01T10:00:00.000Z"),
        ]);
        let request = PredictionRequest::decode(&f).unwrap();
        assert_eq!(request.request_type.expand().len(), 3);
        assert_eq!(
            PredictionRequest::decode(&request.encode()).unwrap(),
            request
        );
    }

    #[test]
    fn an_unknown_request_type_names_the_choices() {
        let f = fields(&[
            ("profile_id", "0193a4a0-0000-7000-8000-000000000001"),
            ("brand_id", "b"),
            ("request_type", "fraud"),
            ("timestamp", "2024-12-01T10:00:00Z"),
        ]);
        let err = PredictionRequest::decode(&f).unwrap_err();
        assert!(
            err.to_string().contains("churn, ltv, segment or all"),
            "{err}"
        );
    }

    #[test]
    fn a_completed_prediction_round_trips_and_notifies_with_data() {
        let mut predictions = Map::new();
        predictions.insert("churn".into(), json!({"probability": 0.25}));
        let done = PredictionCompleted {
            profile_id: Uuid::nil(),
            brand_id: "b".into(),
            request_type: RequestType::Churn,
            predictions,
            model_version: "rfm-v1".into(),
            timestamp: super::super::parse_timestamp("2024-12-01T10:00:00Z").unwrap(),
            request_id: None,
        };
        assert_eq!(PredictionCompleted::decode(&done.encode()).unwrap(), done);
        let note = done.notification();
        assert_eq!(note["data"]["predictions"]["churn"]["probability"], 0.25);
        assert_eq!(note["timestamp"], "2024-12-01T10:00:00.000Z");
    }
}
