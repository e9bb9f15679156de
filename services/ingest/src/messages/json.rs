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
                format!("must be a JSON object, got {}", bus_core::json_kind(other)),
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
                format!("must be a string, got {}", bus_core::json_kind(other)),
            )),
        }
    }

    /// A required address or hash: `0x…` hex is lower-cased (EVM addresses and hashes are
    /// case-insensitive, and checksum casing must not create a second row); anything else is
    /// kept as sent (other chains' formats).
    pub fn hex_id(&self, key: &str) -> Result<String, DecodeError> {
        self.string(key).map(normalize_hex_id)
    }

    /// An optional address or hash, normalised like [`hex_id`](Self::hex_id).
    pub fn opt_hex_id(&self, key: &str) -> Result<Option<String>, DecodeError> {
        Ok(self.opt_string(key)?.map(normalize_hex_id))
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
                    format!(
                        "must be a string of digits, got {}",
                        bus_core::json_kind(other)
                    ),
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

/// Trims, and lower-cases `0x`-prefixed hex; leaves other text unchanged. In place when
/// nothing needs trimming (the usual case: every address and hash of every entry comes here).
pub fn normalize_hex_id(mut s: String) -> String {
    let trimmed = s.trim();
    if trimmed.len() != s.len() {
        s = trimmed.to_owned();
    }
    let b = s.as_bytes();
    let is_hex = b.len() > 2
        && b[0] == b'0'
        && (b[1] == b'x' || b[1] == b'X')
        && b[2..].iter().all(u8::is_ascii_hexdigit);
    if is_hex {
        s.make_ascii_lowercase();
    }
    s
}

/// Writes a JSON object key by key, printing exactly what serde_json prints for the same
/// document, without building the document first (the producer writes one per entry).
#[derive(Debug)]
pub(crate) struct ObjectWriter {
    out: String,
    empty: bool,
}

impl ObjectWriter {
    /// `{`, with room for about `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut out = String::with_capacity(capacity);
        out.push('{');
        ObjectWriter { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        // Keys are this module's own ASCII names: nothing to escape.
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    /// `"key":"value"`.
    pub(crate) fn string(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        push_json_string(&mut self.out, value);
        self
    }

    /// `"key":"value"`, or `"key":null`.
    pub(crate) fn nullable(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.string(key, value),
            None => {
                self.key(key);
                self.out.push_str("null");
                self
            }
        }
    }

    /// `"key":"value"`, or nothing.
    pub(crate) fn optional(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value {
            self.string(key, value);
        }
        self
    }

    /// `"key":n`.
    pub(crate) fn number(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        self.out.push_str(&value.to_string());
        self
    }

    /// `}`: the document.
    pub(crate) fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// A JSON string literal; text without quotes, backslashes or control characters (hex ids,
/// digits, names) is copied as it is, anything else goes through serde_json's escaping.
fn push_json_string(out: &mut String, value: &str) {
    if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(value);
        out.push('"');
    } else {
        // Serialising a string cannot fail.
        out.push_str(&serde_json::to_string(value).unwrap_or_default());
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
