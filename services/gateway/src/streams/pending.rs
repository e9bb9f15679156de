//! `GET /api/streams/{name}/pending?group=...&count=10`: the group's `XPENDING` summary and its
//! oldest pending entries.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use bus_core::redis::streams::{StreamPendingCountReply, StreamPendingReply};
use bus_core::redis::{self, RedisError};
use serde_json::{Value, json};

use super::{Params, count, params, target};
use crate::app::AppState;
use crate::error::{ApiError, is_nogroup};

/// The summary (total, oldest and newest id, pending per consumer) and up to `count` entries
/// with their consumer, idle time and delivery count, in one round trip.
pub async fn pending(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let target = target(&state, &name)?;
    let params = params(query)?;
    let group = params
        .get("group")
        .map(|g| g.trim())
        .filter(|g| !g.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("group", "is required: the consumer group to inspect")
        })?
        .to_owned();
    let count = count(&params, state.max_read_count)?;
    let mut conn = state.redis.shared();
    let (summary, detail): (StreamPendingReply, StreamPendingCountReply) = redis::pipe()
        .cmd("XPENDING")
        .arg(&target.key)
        .arg(&group)
        .cmd("XPENDING")
        .arg(&target.key)
        .arg(&group)
        .arg("-")
        .arg("+")
        .arg(count)
        .query_async(&mut conn)
        .await
        .map_err(|e| failure(&target.name, &group, e))?;
    let total = summary.count();
    let (oldest, newest, consumers) = match summary {
        StreamPendingReply::Data(data) => {
            let consumers: Vec<Value> = data
                .consumers
                .iter()
                .map(|c| json!({ "name": c.name, "pending": c.pending }))
                .collect();
            (Some(data.start_id), Some(data.end_id), consumers)
        }
        _ => (None, None, Vec::new()),
    };
    let entries: Vec<Value> = detail
        .ids
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "consumer": p.consumer,
                "idle_ms": p.last_delivered_ms,
                "deliveries": p.times_delivered,
            })
        })
        .collect();
    Ok(Json(json!({
        "stream": target.name,
        "group": group,
        "pending": total,
        "oldest_id": oldest,
        "newest_id": newest,
        "consumers": consumers,
        "entries": entries,
    })))
}

/// NOGROUP (no such group, or no such stream) is the client's 404; the rest is Redis's.
fn failure(stream: &str, group: &str, e: RedisError) -> ApiError {
    if is_nogroup(&e) {
        return ApiError::not_found(
            Some("group"),
            format!("stream {stream:?} has no consumer group {group:?}"),
        );
    }
    ApiError::from_bus(
        &format!("reading the pending entries of {stream}"),
        &e.into(),
    )
}
