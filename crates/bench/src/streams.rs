//! What the driver reads from Redis: stream lengths, first and last IDs, and how far a
//! consumer group has got (all acknowledged means all committed: workers ack after COMMIT).

use std::collections::HashMap;

use anyhow::{Context, Result};
use bus_core::redis::aio::MultiplexedConnection;
use bus_core::redis::{self, Value};

/// The streams the benchmark fills and drains (seed 000).
pub const TOKENS: &str = "stream:tokens";
/// Transactions, 80% of the synthetic entries.
pub const TRANSACTIONS: &str = "stream:transactions";
/// Crawler status events (a handful per run).
pub const CRAWLER_EVENTS: &str = "stream:crawler-events";
/// The two data streams, in the order results list them.
pub const DATA_STREAMS: [&str; 2] = [TOKENS, TRANSACTIONS];

/// The key of `stream` in `namespace` (the services' `REDIS_NAMESPACE` prefix).
pub fn key(namespace: Option<&str>, stream: &str) -> String {
    match namespace {
        Some(ns) => format!("tenant:{ns}:{stream}"),
        None => stream.to_owned(),
    }
}

/// The millisecond part of an entry ID (`<ms>-<seq>`): when Redis appended it.
pub fn id_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

/// How far one consumer group has got on one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupProgress {
    /// Entries delivered but not yet acknowledged.
    pub pending: u64,
    /// Entries the group has read (`entries-read`, Redis ≥ 7.0).
    pub entries_read: u64,
    /// The last ID delivered to the group.
    pub last_delivered: String,
}

/// The progress of `group` on `stream`; `None` until the group exists.
pub async fn group_progress(
    conn: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
) -> Result<Option<GroupProgress>> {
    let reply: Value = match redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await
    {
        Ok(v) => v,
        // No such key yet: no group either.
        Err(e) if e.to_string().contains("no such key") => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let rows: Vec<HashMap<String, Value>> = redis::from_redis_value(reply)?;
    let Some(row) = rows
        .into_iter()
        .find(|row| row.get("name").and_then(text).as_deref() == Some(group))
    else {
        return Ok(None);
    };
    Ok(Some(GroupProgress {
        pending: row.get("pending").and_then(int).unwrap_or(0),
        entries_read: row.get("entries-read").and_then(int).unwrap_or(0),
        last_delivered: row
            .get("last-delivered-id")
            .and_then(text)
            .unwrap_or_default(),
    }))
}

/// `entries-added` (every entry ever appended, trimmed or not) and `last-generated-id` of
/// `XINFO STREAM`; zeros for a stream that does not exist yet.
pub async fn stream_totals(
    conn: &mut MultiplexedConnection,
    stream: &str,
) -> Result<(u64, String)> {
    let reply: Value = match redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .query_async(conn)
        .await
    {
        Ok(v) => v,
        Err(e) if e.to_string().contains("no such key") => return Ok((0, String::new())),
        Err(e) => return Err(e.into()),
    };
    let info: HashMap<String, Value> = redis::from_redis_value(reply)?;
    Ok((
        info.get("entries-added").and_then(int).unwrap_or(0),
        info.get("last-generated-id")
            .and_then(text)
            .unwrap_or_default(),
    ))
}

/// `XLEN`.
pub async fn len(conn: &mut MultiplexedConnection, stream: &str) -> Result<u64> {
    Ok(redis::cmd("XLEN").arg(stream).query_async(conn).await?)
}

/// The first or last entry of `stream`: its ID and fields.
pub async fn edge_entry(
    conn: &mut MultiplexedConnection,
    stream: &str,
    last: bool,
) -> Result<Option<(String, Vec<(String, String)>)>> {
    let (cmd, from, to) = if last {
        ("XREVRANGE", "+", "-")
    } else {
        ("XRANGE", "-", "+")
    };
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd(cmd)
        .arg(stream)
        .arg(from)
        .arg(to)
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await
        .with_context(|| format!("{cmd} {stream}"))?;
    Ok(entries.into_iter().next())
}

/// Removes `group` from `stream` (nothing happens if either is missing).
pub async fn destroy_group(conn: &mut MultiplexedConnection, stream: &str, group: &str) {
    let _: Result<Value, _> = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await;
}

fn text(v: &Value) -> Option<String> {
    redis::from_redis_value_ref(v).ok()
}

fn int(v: &Value) -> Option<u64> {
    redis::from_redis_value_ref::<i64>(v)
        .ok()
        .map(|n| n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_take_the_tenant_prefix_and_ids_give_their_milliseconds() {
        assert_eq!(key(None, TOKENS), "stream:tokens");
        assert_eq!(key(Some("lat5000"), TOKENS), "tenant:lat5000:stream:tokens");
        assert_eq!(id_ms("1700000000123-7"), Some(1_700_000_000_123));
        assert_eq!(id_ms("x"), None);
    }
}
