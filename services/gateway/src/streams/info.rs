//! `GET /api/streams/info`: every configured stream's length, first and last entry, dead
//! letters and consumer groups (consumers, pending, lag, last delivered id), in two round trips
//! whatever the number of streams.

use axum::Json;
use axum::extract::State;
use bus_core::redis::streams::{StreamInfoGroupsReply, StreamInfoStreamReply};
use bus_core::redis::{self, FromRedisValue, Value};
use bus_core::{BusError, dead_letter_stream};
use serde_json::json;

use super::text;
use crate::app::AppState;
use crate::error::ApiError;

/// The report of every stream in `STREAMS`, in that order.
pub async fn info(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let failed = |e: BusError| ApiError::from_bus("reading stream information", &e);
    let keys: Vec<String> = state.streams.iter().map(|s| state.redis.key(s)).collect();
    let mut conn = state.redis.shared();

    // Round trip 1: which keys are streams, and the length of each dead-letter stream.
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("TYPE").arg(key);
        pipe.cmd("XLEN").arg(dead_letter_stream(key));
    }
    let kinds: Vec<Value> = pipe
        .query_async(&mut conn)
        .await
        .map_err(|e| failed(e.into()))?;
    let kinds: Vec<(String, u64)> = kinds
        .chunks(2)
        .map(|pair| {
            let kind = pair.first().map(text).unwrap_or_default();
            let dead = pair.get(1).and_then(|v| text(v).parse().ok()).unwrap_or(0);
            (kind, dead)
        })
        .collect();

    // Round trip 2: XINFO STREAM and XINFO GROUPS of the keys that are streams.
    let mut pipe = redis::pipe();
    for (key, (kind, _)) in keys.iter().zip(&kinds) {
        if kind == "stream" {
            pipe.cmd("XINFO").arg("STREAM").arg(key);
            pipe.cmd("XINFO").arg("GROUPS").arg(key);
        }
    }
    let replies: Vec<Value> = if pipe.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(&mut conn)
            .await
            .map_err(|e| failed(e.into()))?
    };
    let mut details = replies.into_iter();

    let mut streams = Vec::with_capacity(keys.len());
    for (name, (kind, dead_letters)) in state.streams.iter().zip(kinds) {
        let report = match kind.as_str() {
            "none" => json!({
                "name": name, "exists": false, "length": 0, "first_entry_id": null,
                "last_entry_id": null, "last_generated_id": null,
                "dead_letters": dead_letters, "groups": [],
            }),
            "stream" => {
                let (Some(stream), Some(groups)) = (details.next(), details.next()) else {
                    return Err(failed(BusError::Protocol("missing XINFO reply".into())));
                };
                let stream = parse::<StreamInfoStreamReply>(stream).map_err(failed)?;
                let groups = parse::<StreamInfoGroupsReply>(groups).map_err(failed)?;
                stream_report(name, &stream, &groups, dead_letters)
            }
            other => json!({
                "name": name, "exists": true,
                "error": format!("the key holds a {other}, not a stream"),
            }),
        };
        streams.push(report);
    }
    Ok(Json(json!({ "streams": streams })))
}

fn parse<T: FromRedisValue>(value: Value) -> Result<T, BusError> {
    redis::from_redis_value(value).map_err(|e| BusError::Protocol(e.to_string()))
}

fn stream_report(
    name: &str,
    stream: &StreamInfoStreamReply,
    groups: &StreamInfoGroupsReply,
    dead_letters: u64,
) -> serde_json::Value {
    // An empty stream has no first or last entry: Redis answers nil, parsed as an empty id.
    let id = |id: &str| (!id.is_empty()).then(|| id.to_owned());
    let groups: Vec<serde_json::Value> = groups
        .groups
        .iter()
        .map(|g| {
            json!({
                "name": g.name,
                "consumers": g.consumers,
                "pending": g.pending,
                "lag": g.lag,
                "entries_read": g.entries_read,
                "last_delivered_id": g.last_delivered_id,
            })
        })
        .collect();
    json!({
        "name": name,
        "exists": true,
        "length": stream.length,
        "first_entry_id": id(&stream.first_entry.id),
        "last_entry_id": id(&stream.last_entry.id),
        "last_generated_id": id(&stream.last_generated_id),
        "dead_letters": dead_letters,
        "groups": groups,
    })
}
