//! `events.raw` and `events.normalized`.

use std::collections::BTreeMap;

use bus_core::chrono::{DateTime, Utc};
use bus_core::serde_json::{self, Map, Value};
use bus_core::{DecodeError, Fields, StreamMessage};
use uuid::Uuid;

use super::{format_timestamp, optional, text, timestamp};

/// An event as it arrived (`events.raw`): `event_id`, `brand_id`, `event_type` (`purchase`,
/// `page_view`, `whatsapp_message`, or another type the brand sends), `payload` (a JSON object
/// as a string) and `timestamp`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    /// Unique per event; the key every later stage dedupes by.
    pub event_id: String,
    /// The brand (tenant of the commerce platform) the customer belongs to.
    pub brand_id: String,
    /// What happened.
    pub event_type: String,
    /// The event's data, including the customer's identifiers (`phone`, `email`, …).
    pub payload: Map<String, Value>,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
}

impl StreamMessage for RawEvent {
    fn decode(fields: &Fields) -> Result<Self, DecodeError> {
        Ok(RawEvent {
            event_id: text(fields, "event_id")?,
            brand_id: text(fields, "brand_id")?,
            event_type: text(fields, "event_type")?,
            payload: json_object(fields, "payload")?,
            timestamp: timestamp(fields, "timestamp")?,
        })
    }

    fn encode(&self) -> Fields {
        let mut f = Fields::new();
        f.set("event_id", self.event_id.as_str());
        f.set("brand_id", self.brand_id.as_str());
        f.set("event_type", self.event_type.as_str());
        f.set("payload", Value::Object(self.payload.clone()).to_string());
        f.set("timestamp", format_timestamp(&self.timestamp));
        f
    }
}

/// An event after normalisation (`events.normalized`): the raw event's fields plus the
/// `profile_id` it was matched to (empty when unmatched), its `identifiers` (a JSON object of
/// kind → normalised value) and the `normalized_payload`.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedEvent {
    /// As in `events.raw`.
    pub event_id: String,
    /// As in `events.raw`.
    pub brand_id: String,
    /// As in `events.raw`.
    pub event_type: String,
    /// The profile the event belongs to; `None` when the producer matched none.
    pub profile_id: Option<Uuid>,
    /// Identifiers found in the event, by kind (`phone`, `email`, `customer_id`, …).
    pub identifiers: BTreeMap<String, String>,
    /// The payload with identifiers normalised.
    pub normalized_payload: Map<String, Value>,
    /// When the event happened.
    pub timestamp: DateTime<Utc>,
}

impl StreamMessage for NormalizedEvent {
    fn decode(fields: &Fields) -> Result<Self, DecodeError> {
        let profile_id = optional(fields, "profile_id")
            .map(|raw| {
                Uuid::parse_str(&raw)
                    .map_err(|e| DecodeError::invalid("profile_id", format!("not a UUID ({e})")))
            })
            .transpose()?;
        Ok(NormalizedEvent {
            event_id: text(fields, "event_id")?,
            brand_id: text(fields, "brand_id")?,
            event_type: text(fields, "event_type")?,
            profile_id,
            identifiers: identifiers(fields)?,
            normalized_payload: json_object(fields, "normalized_payload")?,
            timestamp: timestamp(fields, "timestamp")?,
        })
    }

    fn encode(&self) -> Fields {
        let mut f = Fields::new();
        f.set("event_id", self.event_id.as_str());
        f.set("brand_id", self.brand_id.as_str());
        f.set("event_type", self.event_type.as_str());
        let profile = self.profile_id.map(|p| p.to_string()).unwrap_or_default();
        f.set("profile_id", profile);
        let identifiers = serde_json::to_string(&self.identifiers).unwrap_or_default();
        f.set("identifiers", identifiers);
        let payload = Value::Object(self.normalized_payload.clone()).to_string();
        f.set("normalized_payload", payload);
        f.set("timestamp", format_timestamp(&self.timestamp));
        f
    }
}

/// A required field holding a JSON object.
fn json_object(fields: &Fields, name: &str) -> Result<Map<String, Value>, DecodeError> {
    match bus_core::required_json::<Value>(fields, name)? {
        Value::Object(map) => Ok(map),
        _ => Err(DecodeError::invalid(name, "must be a JSON object")),
    }
}

/// `identifiers`: a JSON object of kind → value (numbers are read as their text); absent or
/// empty means none.
fn identifiers(fields: &Fields) -> Result<BTreeMap<String, String>, DecodeError> {
    if optional(fields, "identifiers").is_none() {
        return Ok(BTreeMap::new());
    }
    let mut out = BTreeMap::new();
    for (kind, value) in json_object(fields, "identifiers")? {
        let value = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Null => continue,
            _ => {
                return Err(DecodeError::invalid(
                    format!("identifiers.{kind}"),
                    "must be a string",
                ));
            }
        };
        out.insert(kind, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::fields;
    use super::*;

    #[test]
    fn a_seed_raw_event_round_trips() {
        let f = fields(&[
            ("event_id", "6f1c7e8e-8d6b-4a57-9a57-0d6f2b1c0e11"),
            ("brand_id", "test-brand"),
            ("event_type", "purchase"),
            ("payload", r#"{"phone":"+1234567890","total":99.99}"#),
            ("timestamp", "2024-12-01T10:00:00.000Z"),
        ]);
        let event = RawEvent::decode(&f).unwrap();
        assert_eq!(event.payload["total"], 99.99);
        assert_eq!(RawEvent::decode(&event.encode()).unwrap(), event);
        assert_eq!(
            event.encode().get("timestamp"),
            Some("2024-12-01T10:00:00.000Z")
        );
    }

    #[test]
    fn raw_event_errors_name_the_field() {
        let base = [
            ("event_id", "e1"),
            ("brand_id", "b"),
            ("event_type", "purchase"),
            ("payload", "{}"),
            ("timestamp", "2024-12-01T10:00:00+07:00"),
        ];
        assert!(RawEvent::decode(&fields(&base)).is_ok());
        for (name, bad) in [
            ("brand_id", " "),
            ("payload", "[1]"),
            ("payload", "{oops"),
            ("timestamp", "yesterday"),
        ] {
            let mut f = fields(&base);
            f.set(name, bad);
            let err = RawEvent::decode(&f).unwrap_err();
            assert_eq!(err.field(), Some(name), "{err}");
        }
        let without: Vec<_> = base
            .iter()
            .copied()
            .filter(|(k, _)| *k != "event_id")
            .collect();
        assert_eq!(
            RawEvent::decode(&fields(&without)).unwrap_err(),
            DecodeError::missing("event_id")
        );
    }

    #[test]
    fn a_normalized_event_without_profile_round_trips() {
        let f = fields(&[
            ("event_id", "e1"),
            ("brand_id", "b"),
            ("event_type", "page_view"),
            ("profile_id", ""),
            ("identifiers", r#"{"email":"a@b.co","customer_id":42}"#),
            ("normalized_payload", "{}"),
            ("timestamp", "2024-12-01T10:00:00Z"),
        ]);
        let event = NormalizedEvent::decode(&f).unwrap();
        assert_eq!(event.profile_id, None);
        assert_eq!(event.identifiers["customer_id"], "42");
        assert_eq!(NormalizedEvent::decode(&event.encode()).unwrap(), event);
    }

    #[test]
    fn a_normalized_event_with_a_bad_profile_id_names_it() {
        let f = fields(&[
            ("event_id", "e1"),
            ("brand_id", "b"),
            ("event_type", "page_view"),
            ("profile_id", "nope"),
            ("normalized_payload", "{}"),
            ("timestamp", "2024-12-01T10:00:00Z"),
        ]);
        let err = NormalizedEvent::decode(&f).unwrap_err();
        assert_eq!(err.field(), Some("profile_id"));
    }
}
