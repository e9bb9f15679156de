//! The one error shape of the API: `{"error": "...", "field": "..."}` with a status that says
//! whose fault it is (4xx the request's, 503 Redis's).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bus_core::BusError;
use bus_core::redis::{ErrorKind, RedisError};
use serde_json::{Map, Value, json};

/// A request the gateway refuses or could not carry out.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
    /// Extra members of the JSON body (e.g. the event ids of a batch that may be partly written).
    extra: Map<String, Value>,
}

impl ApiError {
    fn new(status: StatusCode, field: Option<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field,
            extra: Map::new(),
        }
    }

    /// 400: the request cannot be read at all (unparsable JSON, a malformed query parameter).
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(field.into()), message)
    }

    /// 422: the request is well-formed but a field breaks a rule.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(field.into()),
            message,
        )
    }

    /// 413: the body or the batch is over a configured limit.
    pub fn too_large(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, Some(field.into()), message)
    }

    /// 404: no such stream, group or route.
    pub fn not_found(field: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, field.map(str::to_owned), message)
    }

    /// 405: the route exists, with another method.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            "method not allowed on this route; the API is described at /api/openapi.json",
        )
    }

    /// 401: the bearer token is missing or wrong.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            None,
            "missing or invalid bearer token (Authorization: Bearer <API_TOKEN>)",
        )
    }

    /// 503 when Redis is unreachable or temporarily refusing (retrying later helps), 500 when
    /// it answered something the gateway did not expect, for a failure while `doing` something.
    pub fn from_bus(doing: &str, error: &BusError) -> Self {
        let status = match error {
            BusError::Redis(e) if !redis_unavailable(e) => StatusCode::INTERNAL_SERVER_ERROR,
            BusError::Redis(_) | BusError::Io(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        tracing::warn!(error = %error, "{doing} failed");
        Self::new(status, None, format!("{doing} failed: {error}"))
    }

    /// Adds a member to the JSON body.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body: `error`, `field` when one is at fault, and any extra members.
    pub fn body(&self) -> Value {
        let mut body = self.extra.clone();
        body.insert("error".into(), json!(self.message));
        if let Some(field) = &self.field {
            body.insert("field".into(), json!(field));
        }
        Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Server error codes that mean "not now" rather than "never".
const RETRYABLE_CODES: [&str; 7] = [
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "TRYAGAIN",
    "OOM",
    "READONLY",
    "CLUSTERDOWN",
];

/// Whether a Redis error is an outage (connection lost or refused, timeout, a server that
/// is loading, full or failing over) rather than a reply the gateway cannot use.
fn redis_unavailable(e: &RedisError) -> bool {
    if let Some(errors) = e.clone().into_server_errors() {
        return errors
            .iter()
            .any(|(_, error)| RETRYABLE_CODES.contains(&error.code()));
    }
    !matches!(e.kind(), ErrorKind::Parse | ErrorKind::UnexpectedReturnType)
}

/// Whether Redis answered NOGROUP (no such stream or consumer group), also inside a pipeline.
pub fn is_nogroup(e: &RedisError) -> bool {
    e.clone()
        .into_server_errors()
        .is_some_and(|errors| errors.iter().any(|(_, error)| error.code() == "NOGROUP"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_503_and_an_unreadable_reply_500() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let status = ApiError::from_bus("x", &BusError::Redis(refused)).status();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let garbled = RedisError::from((ErrorKind::UnexpectedReturnType, "not a stream reply"));
        let status = ApiError::from_bus("x", &BusError::Redis(garbled)).status();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let status = ApiError::from_bus("x", &BusError::Protocol("?".into())).status();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn the_body_names_the_field_and_keeps_extra_members() {
        let body = ApiError::invalid("events[3].brand_id", "is required")
            .with("limit", json!(3))
            .body();
        assert_eq!(
            body,
            json!({"error": "is required", "field": "events[3].brand_id", "limit": 3})
        );
    }
}
