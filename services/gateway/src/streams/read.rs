//! `GET /api/streams/{name}?startId=0&count=10`: entries from `startId` on (inclusive, XRANGE).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use bus_core::EntryId;
use bus_core::redis::{self, streams::StreamRangeReply};
use serde_json::{Map, Value, json};

use super::{Params, count, params, target, text};
use crate::app::AppState;
use crate::error::ApiError;

/// Reads up to `count` entries from `startId` (default `0`, the beginning). The answer's
/// `next_start_id` continues the read where this one stopped.
pub async fn read(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let target = target(&state, &name)?;
    let params = params(query)?;
    let start = start_id(params.get("startId").map(String::as_str))?;
    let count = count(&params, state.max_read_count)?;
    let mut conn = state.redis.shared();
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(&target.key)
        .arg(&start)
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(&mut conn)
        .await
        .map_err(|e| ApiError::from_bus(&format!("reading {}", target.name), &e.into()))?;
    let entries: Vec<Value> = reply
        .ids
        .iter()
        .map(|entry| {
            let fields: Map<String, Value> = entry
                .map
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(text(v))))
                .collect();
            json!({ "id": entry.id, "fields": fields })
        })
        .collect();
    let next = reply
        .ids
        .last()
        .and_then(|e| e.id.parse::<EntryId>().ok())
        .map(|id| id.successor().to_string());
    Ok(Json(json!({
        "stream": target.name,
        "start_id": start,
        "count": count,
        "entries": entries,
        "next_start_id": next,
    })))
}

/// `startId`: `-` or `0` (the beginning), `<ms>` or `<ms>-<seq>`.
fn start_id(raw: Option<&str>) -> Result<String, ApiError> {
    match raw.map(str::trim) {
        None | Some("") | Some("-") => Ok("-".to_owned()),
        Some(raw) => raw.parse::<EntryId>().map(|id| id.to_string()).map_err(|_| {
            ApiError::bad_request(
                "startId",
                format!("must be a stream id such as 0, 1733047200000 or 1733047200000-0, got {raw:?}"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ids_are_stream_ids() {
        assert_eq!(start_id(None).unwrap(), "-");
        assert_eq!(start_id(Some("-")).unwrap(), "-");
        assert_eq!(start_id(Some("0")).unwrap(), "0-0");
        assert_eq!(start_id(Some("17")).unwrap(), "17-0");
        assert_eq!(start_id(Some("17-3")).unwrap(), "17-3");
        let err = start_id(Some("latest")).unwrap_err();
        assert_eq!(err.body()["field"], "startId");
    }
}
