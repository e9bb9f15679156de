//! `POST /api/commands/{serviceId}` and `POST /api/commands`: validated commands published
//! as `{command, data, timestamp}` on `channel:service:{serviceId}:commands`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ingest::messages::{Command, commands_channel};
use serde_json::{Map, Value, json};

use crate::AppState;

/// Longest accepted service id and command name.
const MAX_NAME: usize = 64;

/// A request the API refuses, with the field at fault.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    field: Option<String>,
    message: String,
}

impl ApiError {
    pub(crate) fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(field, message)
    }

    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            field: None,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        (self.status, Json(body)).into_response()
    }
}

/// `[A-Za-z0-9_-]+`, at most 64 characters: safe inside a channel name.
pub fn valid_service_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_NAME
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// An upper-case identifier: `[A-Z][A-Z0-9_]*`, at most 64 characters.
fn valid_command(c: &str) -> bool {
    c.len() <= MAX_NAME
        && c.starts_with(|ch: char| ch.is_ascii_uppercase())
        && c.chars()
            .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_')
}

/// Requires `Authorization: Bearer <API_TOKEN>` when a token is configured.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = &state.api_token
        && !bus_core::auth::bearer_matches(request.headers(), expected)
    {
        state.metrics.command("unauthorized");
        let body = json!({ "error": "missing or invalid bearer token" });
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(body),
        )
            .into_response();
    }
    next.run(request).await
}

/// The body as a JSON object, the command and its data (`{}` when absent).
fn parse_command(body: &[u8]) -> Result<(Map<String, Value>, Command), ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid("body", "must be a JSON object"));
    };
    let command = match obj.get("command") {
        None | Some(Value::Null) => return Err(ApiError::invalid("command", "is required")),
        Some(Value::String(c)) if valid_command(c) => c.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                "command",
                "must be an upper-case identifier such as PAUSE or START_CRAWLING",
            ));
        }
    };
    let data = match obj.get("data") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(ApiError::invalid("data", "must be a JSON object")),
    };
    Ok((obj, Command::new(command, data)))
}

async fn publish(state: &AppState, service_id: &str, command: &Command) -> Result<Value, ApiError> {
    let channel = commands_channel(service_id);
    match state.publisher.publish(&channel, command).await {
        Ok(receivers) => {
            tracing::info!(%channel, command = %command.command, receivers, "command published");
            Ok(json!({ "serviceId": service_id, "channel": channel, "receivers": receivers }))
        }
        Err(e) => {
            state.metrics.command("failed");
            tracing::warn!(%channel, error = %e, "publish failed");
            Err(ApiError::unavailable(format!("could not publish: {e}")))
        }
    }
}

/// `POST /api/commands/{serviceId}` `{command, data}` → `{receivers, channel, …}`.
pub async fn send_one(
    State(state): State<AppState>,
    Path(service_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let parsed = if valid_service_id(&service_id) {
        parse_command(&body)
    } else {
        Err(ApiError::invalid(
            "serviceId",
            "must match [A-Za-z0-9_-]+ (at most 64 characters)",
        ))
    };
    let (_, command) = parsed.inspect_err(|_| state.metrics.command("invalid"))?;
    let mut answer = publish(&state, &service_id, &command).await?;
    answer["command"] = json!(command.command);
    state.metrics.command("published");
    Ok(Json(answer))
}

/// `POST /api/commands` `{command, data, services?}` → one publish per service (every
/// service with a subscribed command channel when `services` is absent).
pub async fn broadcast(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (obj, command) = parse_command(&body).inspect_err(|_| state.metrics.command("invalid"))?;
    let services = match obj.get("services") {
        None | Some(Value::Null) => state.subscribed_services().await.map_err(|e| {
            state.metrics.command("failed");
            ApiError::unavailable(format!("could not list services: {e}"))
        })?,
        Some(Value::Array(items)) => {
            let mut services = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(id) if valid_service_id(id) => services.push(id.to_owned()),
                    _ => {
                        state.metrics.command("invalid");
                        return Err(ApiError::invalid(
                            format!("services[{i}]"),
                            "must be a service id matching [A-Za-z0-9_-]+",
                        ));
                    }
                }
            }
            services
        }
        Some(_) => {
            state.metrics.command("invalid");
            return Err(ApiError::invalid(
                "services",
                "must be an array of service ids",
            ));
        }
    };
    let mut results = Vec::with_capacity(services.len());
    let mut total = 0;
    for service in &services {
        let result = publish(&state, service, &command).await?;
        total += result["receivers"].as_u64().unwrap_or(0);
        results.push(result);
    }
    state.metrics.command("published");
    Ok(Json(
        json!({ "command": command.command, "receivers": total, "results": results }),
    ))
}
