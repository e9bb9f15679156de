//! Typed messages to and from the flat field maps of the wire formats.
//!
//! Every wire format in this system is a set of flat string fields; nested objects travel as
//! JSON strings (`data`). [`StreamMessage`] converts a Rust type to and from that shape, and
//! [`DecodeError`] says which field was wrong and why, so a bad entry can be dead-lettered with
//! a reason a person can act on.

use serde::de::DeserializeOwned;

use crate::entry::Fields;

/// A message type that has a stream wire format.
pub trait StreamMessage: Sized + Send + Sync + 'static {
    /// Decodes a message from an entry's fields. Unknown fields must be ignored.
    fn decode(fields: &Fields) -> Result<Self, DecodeError>;
    /// Encodes the message as flat fields, in wire order.
    fn encode(&self) -> Fields;
}

/// Raw entries pass through undecoded: for tools and handlers that want the fields as they are.
impl StreamMessage for Fields {
    fn decode(fields: &Fields) -> Result<Self, DecodeError> {
        Ok(fields.clone())
    }
    fn encode(&self) -> Fields {
        self.clone()
    }
}

/// Why an entry could not be decoded. Always names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A required field is absent.
    #[error("field `{field}` is missing")]
    Missing {
        /// The absent field.
        field: String,
    },
    /// A field is present but its value is unacceptable.
    #[error("field `{field}` is invalid: {reason}")]
    Invalid {
        /// The offending field (a JSON path such as `data.decimals` for nested values).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The entry's data was trimmed from the stream while it was still pending.
    #[error("the entry's data was trimmed from the stream before it was handled")]
    Trimmed,
}

impl DecodeError {
    /// A missing-field error.
    pub fn missing(field: impl Into<String>) -> Self {
        DecodeError::Missing {
            field: field.into(),
        }
    }

    /// An invalid-field error.
    pub fn invalid(field: impl Into<String>, reason: impl ToString) -> Self {
        DecodeError::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    /// The field this error is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            DecodeError::Missing { field } | DecodeError::Invalid { field, .. } => Some(field),
            DecodeError::Trimmed => None,
        }
    }
}

/// Reads a required string field.
pub fn required<'a>(fields: &'a Fields, name: &str) -> Result<&'a str, DecodeError> {
    fields.get(name).ok_or_else(|| DecodeError::missing(name))
}

/// Reads a required field holding a JSON document and deserialises it. Serde's error message
/// names the nested field, and is kept in the reason.
pub fn required_json<T: DeserializeOwned>(fields: &Fields, name: &str) -> Result<T, DecodeError> {
    let raw = required(fields, name)?;
    serde_json::from_str(raw).map_err(|e| DecodeError::invalid(name, json_reason(&e)))
}

/// The JSON type of a value in words (`a string`, `an object`, …), for decoding reasons.
pub fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn json_reason(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("not valid JSON ({e})")
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_field_and_the_problem() {
        let fields: Fields = [("data", "{not json")].into_iter().collect();
        let err = required_json::<serde_json::Value>(&fields, "data").unwrap_err();
        assert_eq!(err.field(), Some("data"));
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let err = required_json::<serde_json::Value>(&Fields::new(), "data").unwrap_err();
        assert_eq!(err, DecodeError::missing("data"));
    }
}
