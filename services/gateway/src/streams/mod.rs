//! The stream inspection API of seed 001: `GET /api/streams/info`, `GET /api/streams/{name}`
//! and `GET /api/streams/{name}/pending`. Only the streams named in `STREAMS` (and their
//! `:dlq` streams) are readable; names are shown without the tenant prefix.

mod info;
mod pending;
mod read;

use std::collections::HashMap;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use bus_core::redis::Value;

use crate::app::AppState;
use crate::error::ApiError;

pub use info::info;
pub use pending::pending;
pub use read::read;

/// Entries listed when `count` is absent.
const DEFAULT_COUNT: usize = 10;

/// The query string as name → value.
type Params = HashMap<String, String>;

/// A readable stream: the name the client used and its Redis key.
#[derive(Debug)]
struct Target {
    name: String,
    key: String,
}

/// The stream `name` if `STREAMS` lists it (or lists the stream whose `:dlq` it is); 404
/// otherwise.
fn target(state: &AppState, name: &str) -> Result<Target, ApiError> {
    let base = name.strip_suffix(":dlq").unwrap_or(name);
    if state.streams.iter().any(|s| s == base) {
        return Ok(Target {
            name: name.to_owned(),
            key: state.redis.key(name),
        });
    }
    Err(ApiError::not_found(
        Some("name"),
        format!(
            "stream {name:?} is not readable here; readable: {} (and each one's :dlq)",
            state.streams.join(", ")
        ),
    ))
}

/// The query parameters, or 400 when the query string cannot be read.
fn params(query: Result<Query<Params>, QueryRejection>) -> Result<Params, ApiError> {
    query
        .map(|Query(params)| params)
        .map_err(|e| ApiError::bad_request("query", e.body_text()))
}

/// `count`: a positive integer (default 10), lowered to `max` (`MAX_READ_COUNT`).
fn count(params: &Params, max: usize) -> Result<usize, ApiError> {
    let Some(raw) = params.get("count") else {
        return Ok(DEFAULT_COUNT.min(max));
    };
    match raw.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n.min(max)),
        _ => Err(ApiError::bad_request(
            "count",
            format!("must be a positive integer (at most {max} entries are returned), got {raw:?}"),
        )),
    }
}

/// A Redis reply value as text (field values are strings; anything else is shown as Redis
/// gave it rather than dropped).
fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Nil => String::new(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn count_defaults_to_ten_and_is_clamped() {
        assert_eq!(count(&params(&[]), 1000).unwrap(), 10);
        assert_eq!(count(&params(&[("count", "5000")]), 1000).unwrap(), 1000);
        assert_eq!(count(&params(&[("count", "3")]), 1000).unwrap(), 3);
        for bad in ["0", "-1", "ten", ""] {
            let err = count(&params(&[("count", bad)]), 1000).unwrap_err();
            assert_eq!(err.body()["field"], "count", "{bad}");
        }
    }
}
