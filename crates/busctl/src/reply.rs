//! Reading Redis replies (`XINFO` maps, `XRANGE` entries) into plain Rust values, for RESP2
//! (flat key/value arrays) and RESP3 (maps) alike.

use std::collections::HashMap;

use bus_core::redis::{self, Value, from_redis_value_ref};

/// One `XINFO` record: field name → value.
pub type Row = HashMap<String, Value>;

/// A reply holding one record.
pub fn row(value: &Value) -> Row {
    let pairs: Vec<(&Value, &Value)> = match value {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|c| Some((c.first()?, c.get(1)?)))
            .collect(),
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(k, v)| Some((from_redis_value_ref::<String>(k).ok()?, v.clone())))
        .collect()
}

/// A reply holding a list of records (`XINFO GROUPS`, `XINFO CONSUMERS`).
pub fn rows(value: &Value) -> Vec<Row> {
    match value {
        Value::Array(items) => items.iter().map(row).collect(),
        _ => Vec::new(),
    }
}

/// A field as text; `-` when absent or nil.
pub fn text(row: &Row, key: &str) -> String {
    row.get(key)
        .and_then(|v| from_redis_value_ref::<Option<String>>(v).ok().flatten())
        .unwrap_or_else(|| "-".to_owned())
}

/// A field as a number.
pub fn int(row: &Row, key: &str) -> Option<i64> {
    row.get(key)
        .and_then(|v| from_redis_value_ref::<Option<i64>>(v).ok().flatten())
}

/// A stream entry: its ID and fields in order.
pub type Entry = (String, Vec<(String, String)>);

/// An `XRANGE` reply, or the `[id, fields]` of `XINFO STREAM`'s first/last entry.
pub fn entries(value: &Value) -> Vec<Entry> {
    from_redis_value_ref::<Vec<Entry>>(value).unwrap_or_default()
}

/// The ID of an `[id, fields]` pair, or `-`.
pub fn entry_id(value: Option<&Value>) -> String {
    value
        .and_then(|v| from_redis_value_ref::<Option<Entry>>(v).ok().flatten())
        .map_or_else(|| "-".to_owned(), |(id, _)| id)
}

/// Runs a command on the shared connection.
pub async fn query<T: redis::FromRedisValue>(
    redis: &bus_core::Redis,
    cmd: &redis::Cmd,
) -> anyhow::Result<T> {
    let mut conn = redis.shared();
    Ok(cmd.query_async(&mut conn).await?)
}
