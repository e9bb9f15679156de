//! Field-by-field reading of a `data` document, so every error names its JSON path
//! (`data.decimals`) — serde's own messages do not say which nested field failed.

use bus_core::DecodeError;
use serde_json::{Map, Value};

/// Longest unsigned integer that fits `NUMERIC(78,0)` (2^256 has 78 digits).
pub const MAX_DECIMAL_DIGITS: usize = 78;

/// A JSON object and the path it sits at.
#[derive(Debug, Clone, Copy)]
pub struct JsonObject<'a> {
    path: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> JsonObject<'a> {
    /// The top-level document of field `path`; an error unless it is an object.
    pub fn root(path: &'a str, value: &'a Value) -> Result<Self, DecodeError> {
        match value {
            Value::Object(map) => Ok(JsonObject { path, map }),
            other => Err(DecodeError::invalid(
                path,
                format!("must be a JSON object, got {}", kind_of(other)),
            )),
        }
    }

    /// The underlying map.
    pub fn map(&self) -> &'a Map<String, Value> {
        self.map
    }

    fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    fn present(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A required, non-empty string.
    pub fn string(&self, key: &str) -> Result<String, DecodeError> {
        self.opt_string(key)?
            .ok_or_else(|| DecodeError::missing(self.field(key)))
    }

    /// An optional string (absent or `null` → `None`); numbers are accepted as their text.
    pub fn opt_string(&self, key: &str) -> Result<Option<String>, DecodeError> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => {
                Err(DecodeError::invalid(self.field(key), "must not be empty"))
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(DecodeError::invalid(
                self.field(key),
                format!("must be a string, got {}", kind_of(other)),
            )),
        }
    }

    /// A required address or hash: `0x…` hex is lower-cased (EVM addresses and hashes are
    /// case-insensitive, and checksum casing must not create a second row); anything else is
    /// kept as sent (other chains' formats).
    pub fn hex_id(&self, key: &str) -> Result<String, DecodeError> {
        self.string(key).map(|s| normalize_hex_id(&s))
    }

    /// An optional address or hash, normalised like [`hex_id`](Self::hex_id).
    pub fn opt_hex_id(&self, key: &str) -> Result<Option<String>, DecodeError> {
        Ok(self.opt_string(key)?.map(|s| normalize_hex_id(&s)))
    }

    /// A required unsigned integer of any size (a string of digits, or a JSON integer), as
    /// canonical decimal text (no sign, no leading zeros), at most 78 digits.
    pub fn decimal(&self, key: &str) -> Result<String, DecodeError> {
        let field = self.field(key);
        let text = match self.present(key) {
            None => return Err(DecodeError::missing(field)),
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            Some(Value::Number(n)) => {
                return Err(DecodeError::invalid(
                    field,
                    format!(
                        "must be a non-negative integer, got {n} (send large values as a string of digits)"
                    ),
                ));
            }
            Some(other) => {
                return Err(DecodeError::invalid(
                    field,
                    format!("must be a string of digits, got {}", kind_of(other)),
                ));
            }
        };
        canonical_decimal(&text).map_err(|reason| DecodeError::invalid(field, reason))
    }

    /// A required integer in `0..=255` (a JSON integer or a string of digits).
    pub fn small_uint(&self, key: &str) -> Result<u8, DecodeError> {
        let field = self.field(key);
        let value = self
            .present(key)
            .ok_or_else(|| DecodeError::missing(field.clone()))?;
        let number = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        number.and_then(|n| u8::try_from(n).ok()).ok_or_else(|| {
            DecodeError::invalid(
                field,
                format!("must be an integer from 0 to 255, got {value}"),
            )
        })
    }
}

/// Lower-cases `0x`-prefixed hex; leaves other text unchanged.
pub fn normalize_hex_id(s: &str) -> String {
    let s = s.trim();
    let is_hex = s.len() > 2
        && (s.starts_with("0x") || s.starts_with("0X"))
        && s[2..].chars().all(|c| c.is_ascii_hexdigit());
    if is_hex {
        s.to_ascii_lowercase()
    } else {
        s.to_owned()
    }
}

/// Digits only, leading zeros removed, at most [`MAX_DECIMAL_DIGITS`] digits.
pub fn canonical_decimal(text: &str) -> Result<String, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "must be a non-negative integer written in decimal digits, got {text:?}"
        ));
    }
    let trimmed = text.trim_start_matches('0');
    let canonical = if trimmed.is_empty() { "0" } else { trimmed };
    if canonical.len() > MAX_DECIMAL_DIGITS {
        return Err(format!(
            "has {} digits; at most {MAX_DECIMAL_DIGITS} fit NUMERIC(78,0)",
            canonical.len()
        ));
    }
    Ok(canonical.to_owned())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
