//! The `raw_items` wire format of seed 003: flat fields `data` (a JSON object as a string),
//! `source`, `timestamp`, `producer`, `batch_id`.

use bus_core::serde_json::{Map, Value};
use bus_core::{DecodeError, Fields, StreamMessage};

/// One item to validate.
///
/// Only `data` is required: without it there is nothing to validate, so the entry is
/// dead-lettered with the reason. The envelope fields are optional (a producer that omits
/// `batch_id` still gets its items validated); unknown fields are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct RawItem {
    /// The decoded `data` object (phone, bank_account, email, name, source, …).
    pub data: Map<String, Value>,
    /// `source` (falls back to `data.source` when the field is absent).
    pub source: Option<String>,
    /// `timestamp`, as the producer wrote it.
    pub timestamp: Option<String>,
    /// `producer`.
    pub producer: Option<String>,
    /// `batch_id`.
    pub batch_id: Option<String>,
}

impl StreamMessage for RawItem {
    fn decode(fields: &Fields) -> Result<Self, DecodeError> {
        let data = match bus_core::required_json::<Value>(fields, "data")? {
            Value::Object(map) => map,
            other => {
                return Err(DecodeError::invalid(
                    "data",
                    format!("must be a JSON object, got {}", bus_core::json_kind(&other)),
                ));
            }
        };
        let text = |name: &str| fields.get(name).map(str::to_owned);
        let source = text("source").or_else(|| {
            data.get("source")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        Ok(RawItem {
            data,
            source,
            timestamp: text("timestamp"),
            producer: text("producer"),
            batch_id: text("batch_id"),
        })
    }

    fn encode(&self) -> Fields {
        let mut fields = Fields::new();
        fields.set("data", Value::Object(self.data.clone()).to_string());
        let optional = [
            ("source", &self.source),
            ("timestamp", &self.timestamp),
            ("producer", &self.producer),
            ("batch_id", &self.batch_id),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                fields.set(name, value.as_str());
            }
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_seed_message_decodes_and_encodes_back() {
        let f = fields(&[
            (
                "data",
                r#"{"phone":"0123456789","bank_account":"12345678901"}"#,
            ),
            ("source", "web_crawler"),
            ("timestamp", "2024-06-08T00:13:03+07:00"),
            ("producer", "crawler_worker"),
            ("batch_id", "batch_001"),
        ]);
        let item = RawItem::decode(&f).unwrap();
        assert_eq!(item.data["phone"], "0123456789");
        assert_eq!(item.batch_id.as_deref(), Some("batch_001"));
        assert_eq!(RawItem::decode(&item.encode()).unwrap(), item);
    }

    #[test]
    fn data_that_is_not_json_or_not_an_object_is_a_decode_error() {
        let err = RawItem::decode(&fields(&[("data", "{nope")])).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let err = RawItem::decode(&fields(&[("data", "[1,2]")])).unwrap_err();
        assert!(
            err.to_string()
                .contains("must be a JSON object, got an array"),
            "{err}"
        );
        let err = RawItem::decode(&fields(&[("source", "x")])).unwrap_err();
        assert_eq!(err, DecodeError::missing("data"));
    }

    #[test]
    fn source_falls_back_to_the_data_source() {
        let item = RawItem::decode(&fields(&[("data", r#"{"source":"api"}"#)])).unwrap();
        assert_eq!(item.source.as_deref(), Some("api"));
    }
}
