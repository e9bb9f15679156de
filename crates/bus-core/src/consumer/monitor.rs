//! Samples lag, pending count, oldest-pending age and stream lengths into gauges.

use redis::aio::ConnectionManager;

use super::reply;
use crate::entry::EntryId;
use crate::error::BusError;
use crate::metrics::{GroupLabels, Metrics, StreamLabels};

/// A point-in-time view of one consumer group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupStatus {
    /// Entries in the stream.
    pub length: u64,
    /// Entries not yet delivered to the group (`None` when Redis cannot tell).
    pub lag: Option<u64>,
    /// Entries delivered but not acknowledged.
    pub pending: u64,
    /// The oldest pending entry, if any.
    pub oldest_pending: Option<EntryId>,
    /// The last entry delivered to the group.
    pub last_delivered: Option<EntryId>,
    /// Entries in the dead-letter stream.
    pub dead_letters: u64,
}

/// Reads the status of `group` on `stream` (dead letters from `dlq`).
pub async fn group_status(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    dlq: &str,
) -> Result<GroupStatus, BusError> {
    let (length, dead_letters, groups, summary): (u64, u64, redis::Value, redis::Value) =
        redis::pipe()
            .cmd("XLEN")
            .arg(stream)
            .cmd("XLEN")
            .arg(dlq)
            .cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .cmd("XPENDING")
            .arg(stream)
            .arg(group)
            .query_async(conn)
            .await?;
    let mut status = GroupStatus {
        length,
        dead_letters,
        ..Default::default()
    };
    for row in reply::info_rows(groups)? {
        if row.get("name").map(reply::text).transpose()?.as_deref() == Some(group) {
            status.lag = row.get("lag").and_then(reply::int).map(|l| l.max(0) as u64);
            status.pending = row.get("pending").and_then(reply::int).unwrap_or(0).max(0) as u64;
            status.last_delivered = row
                .get("last-delivered-id")
                .map(reply::text)
                .transpose()?
                .and_then(|id| id.parse().ok());
        }
    }
    if let redis::Value::Array(parts) = summary {
        status.oldest_pending = parts
            .get(1)
            .and_then(|v| reply::text(v).ok())
            .and_then(|id| id.parse().ok());
    }
    Ok(status)
}

/// Publishes a status as gauges.
pub(crate) fn record(metrics: &Metrics, stream: &str, group: &str, status: &GroupStatus) {
    let labels = GroupLabels::new(stream, group);
    let m = &metrics.streams;
    if let Some(lag) = status.lag {
        m.lag.get_or_create(&labels).set(lag as i64);
    }
    m.pending.get_or_create(&labels).set(status.pending as i64);
    let age = status.oldest_pending.map_or(0.0, EntryId::age_seconds);
    m.oldest_pending_age.get_or_create(&labels).set(age);
    let stream_labels = StreamLabels::new(stream);
    m.stream_length
        .get_or_create(&stream_labels)
        .set(status.length as i64);
    m.dead_letter_length
        .get_or_create(&stream_labels)
        .set(status.dead_letters as i64);
}
