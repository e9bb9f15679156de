//! Reading request bodies: the size limit, JSON, the three batch shapes (one object, an array,
//! or `{"events": [...]}`), and typed field access whose errors name the field with its index
//! in the batch (`events[3].brand_id`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::app::AppState;
use crate::error::ApiError;

/// The body parsed as JSON; over `MAX_BODY_BYTES` is 413, unparsable is 400.
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(
                    "body",
                    format!(
                        "the body is larger than MAX_BODY_BYTES ({} bytes)",
                        state.max_body_bytes
                    ),
                )
            } else {
                ApiError::bad_request("body", format!("the body could not be read: {e}"))
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request("body", format!("not valid JSON: {e}")))
    }
}

/// One object of a request body, with the path that names it in error messages.
#[derive(Debug)]
pub struct Record {
    /// `events[3]` in a batch, `None` for a body that is the object itself.
    path: Option<String>,
    fields: Map<String, Value>,
}

/// Splits a body into records: a single object, an array of objects, or `{"<key>": [...]}`.
/// An empty batch is 422; more than `max` records is 413 naming `MAX_BATCH`.
pub fn records(body: Value, key: &str, max: usize) -> Result<Vec<Record>, ApiError> {
    let items = match body {
        Value::Object(mut obj) if obj.contains_key(key) => {
            if let Some(other) = obj.keys().find(|k| *k != key) {
                return Err(ApiError::invalid(
                    other.clone(),
                    format!("unknown field; a batch body holds only `{key}`"),
                ));
            }
            match obj.remove(key) {
                Some(Value::Array(items)) => items,
                _ => return Err(ApiError::invalid(key, "must be an array of objects")),
            }
        }
        Value::Object(fields) => return Ok(vec![Record { path: None, fields }]),
        Value::Array(items) => items,
        _ => {
            return Err(ApiError::invalid(
                "body",
                format!("must be a JSON object, an array of objects or {{\"{key}\": [...]}}"),
            ));
        }
    };
    if items.is_empty() {
        return Err(ApiError::invalid(key, "the batch is empty"));
    }
    if items.len() > max {
        return Err(ApiError::too_large(
            key,
            format!(
                "a request holds at most {max} {key} (MAX_BATCH), this one has {}",
                items.len()
            ),
        )
        .with("limit", Value::from(max)));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("{key}[{i}]");
            match item {
                Value::Object(fields) => Ok(Record {
                    path: Some(path),
                    fields,
                }),
                _ => Err(ApiError::invalid(path, "must be a JSON object")),
            }
        })
        .collect()
}

impl Record {
    /// The object itself, for a body that is not a batch.
    pub fn single(body: Value) -> Result<Record, ApiError> {
        match body {
            Value::Object(fields) => Ok(Record { path: None, fields }),
            _ => Err(ApiError::invalid("body", "must be a JSON object")),
        }
    }

    /// The full name of `field` (`events[3].brand_id`, or `brand_id`).
    pub fn name(&self, field: &str) -> String {
        match &self.path {
            Some(path) => format!("{path}.{field}"),
            None => field.to_owned(),
        }
    }

    /// 422 naming `field` of this record.
    pub fn error(&self, field: &str, message: impl Into<String>) -> ApiError {
        ApiError::invalid(self.name(field), message)
    }

    /// Refuses fields outside `allowed` (a misspelt `brandId` is an error, not silently lost).
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.fields.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(unknown) => Err(self.error(
                unknown,
                format!("unknown field; expected {}", allowed.join(", ")),
            )),
            None => Ok(()),
        }
    }

    /// A string field; absent or `null` is `None`.
    pub fn optional_str(&self, field: &str) -> Result<Option<&str>, ApiError> {
        match self.fields.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.error(field, "must be a string")),
        }
    }

    /// A required string field, not empty after trimming, at most `max` characters; trimmed.
    pub fn required_str(&self, field: &str, max: usize) -> Result<&str, ApiError> {
        let value = self
            .optional_str(field)?
            .ok_or_else(|| self.error(field, "is required"))?
            .trim();
        if value.is_empty() {
            return Err(self.error(field, "must not be empty"));
        }
        if value.chars().count() > max {
            return Err(self.error(field, format!("must be at most {max} characters")));
        }
        Ok(value)
    }

    /// A required JSON object field.
    pub fn required_object(&self, field: &str) -> Result<&Map<String, Value>, ApiError> {
        match self.fields.get(field) {
            None | Some(Value::Null) => Err(self.error(field, "is required")),
            Some(Value::Object(obj)) => Ok(obj),
            Some(_) => Err(self.error(field, "must be a JSON object")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field_of(err: ApiError) -> String {
        err.body()["field"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn the_three_shapes_give_the_same_records() {
        let one = records(json!({"a": 1}), "events", 10).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].name("a"), "a");
        let array = records(json!([{"a": 1}, {"a": 2}]), "events", 10).unwrap();
        assert_eq!(array[1].name("a"), "events[1].a");
        let wrapped = records(json!({"events": [{"a": 1}, {"a": 2}]}), "events", 10).unwrap();
        assert_eq!(wrapped.len(), 2);
        assert_eq!(wrapped[0].name("brand_id"), "events[0].brand_id");
    }

    #[test]
    fn bad_batches_name_the_field() {
        let cases = [
            (json!([]), "events"),
            (json!({"events": {}}), "events"),
            (json!({"events": [], "extra": 1}), "extra"),
            (json!([{"a": 1}, 2]), "events[1]"),
            (json!("text"), "body"),
        ];
        for (body, field) in cases {
            let err = records(body.clone(), "events", 10).unwrap_err();
            assert_eq!(field_of(err), field, "{body}");
        }
    }

    #[test]
    fn too_many_records_is_413_naming_the_limit() {
        let err = records(json!([{}, {}, {}]), "items", 2).unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = err.body();
        assert_eq!(body["limit"], 2);
        assert!(body["error"].as_str().unwrap().contains("MAX_BATCH"));
    }

    #[test]
    fn field_readers_check_types_and_lengths() {
        let record = Record::single(json!({"s": " x ", "n": 1, "e": "  ", "o": {}})).unwrap();
        assert_eq!(record.required_str("s", 5).unwrap(), "x");
        assert_eq!(field_of(record.required_str("n", 5).unwrap_err()), "n");
        assert_eq!(field_of(record.required_str("e", 5).unwrap_err()), "e");
        assert_eq!(
            field_of(record.required_str("missing", 5).unwrap_err()),
            "missing"
        );
        assert_eq!(record.optional_str("missing").unwrap(), None);
        assert!(record.required_object("o").is_ok());
        assert_eq!(field_of(record.required_object("s").unwrap_err()), "s");
        assert_eq!(field_of(record.only(&["s", "n", "e"]).unwrap_err()), "o");
    }
}
