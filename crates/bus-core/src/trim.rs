//! Lag-aware trimming: keep a stream near its MAXLEN without ever removing an entry that some
//! consumer group has not yet had delivered and acknowledged, unless a hard cap forces it.

use redis::aio::ConnectionManager;

use crate::consumer::{info_rows, parse_entries, reply_int, reply_text};
use crate::entry::EntryId;
use crate::error::BusError;

/// At most this many entries are inspected per trim round; larger excesses converge over rounds.
const MAX_STEP: u64 = 1_000;

/// What one trim round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrimReport {
    /// Entries removed without touching anything a group still needs.
    pub removed: u64,
    /// Entries removed by the hard cap, possibly unacknowledged ones.
    pub forced: u64,
}

/// The oldest entry some group still needs: the oldest pending entry, or the first entry after
/// the last delivered one, across all groups. `None` when the stream has no group yet (then
/// nothing is trimmed, because a group created later starts from the beginning).
pub async fn safe_point(
    conn: &mut ConnectionManager,
    stream: &str,
) -> Result<Option<EntryId>, BusError> {
    let groups: redis::Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await?;
    let mut safe: Option<EntryId> = None;
    for row in info_rows(groups)? {
        let name = row
            .get("name")
            .map(reply_text)
            .transpose()?
            .unwrap_or_default();
        let pending = row.get("pending").and_then(reply_int).unwrap_or(0);
        let needed = if pending > 0 {
            let summary: redis::Value = redis::cmd("XPENDING")
                .arg(stream)
                .arg(&name)
                .query_async(conn)
                .await?;
            match summary {
                redis::Value::Array(parts) => parts
                    .get(1)
                    .and_then(|v| reply_text(v).ok())
                    .and_then(|id| id.parse().ok()),
                _ => None,
            }
        } else {
            None
        };
        let last_delivered: EntryId = row
            .get("last-delivered-id")
            .map(reply_text)
            .transpose()?
            .and_then(|id| id.parse().ok())
            .unwrap_or(EntryId::ZERO);
        let needed = needed
            .unwrap_or(last_delivered.successor())
            .min(last_delivered.successor());
        safe = Some(safe.map_or(needed, |s| s.min(needed)));
    }
    Ok(safe)
}

/// Trims `stream` towards `maxlen` entries without passing the safe point; then, if
/// `hard_max_len` is non-zero and still exceeded, trims to it regardless and reports it.
pub async fn trim_lag_aware(
    conn: &mut ConnectionManager,
    stream: &str,
    maxlen: u64,
    hard_max_len: u64,
) -> Result<TrimReport, BusError> {
    let mut report = TrimReport::default();
    let len: u64 = redis::cmd("XLEN").arg(stream).query_async(conn).await?;
    let safe = if maxlen > 0 && len > maxlen {
        safe_point(conn, stream).await?
    } else {
        None
    };
    if let Some(safe) = safe {
        let step = (len - maxlen).min(MAX_STEP);
        let head = parse_entries(
            redis::cmd("XRANGE")
                .arg(stream)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(step)
                .query_async(conn)
                .await?,
        )?;
        if let Some(last) = head.last() {
            let min_id = last.id.successor().min(safe);
            report.removed = redis::cmd("XTRIM")
                .arg(stream)
                .arg("MINID")
                .arg(min_id.to_string())
                .query_async(conn)
                .await?;
        }
    }
    if hard_max_len > 0 && len.saturating_sub(report.removed) > hard_max_len {
        report.forced = redis::cmd("XTRIM")
            .arg(stream)
            .arg("MAXLEN")
            .arg(hard_max_len)
            .query_async(conn)
            .await?;
        tracing::warn!(
            stream,
            dropped = report.forced,
            hard_max_len,
            "hard cap reached: trimmed entries that consumers may not have acknowledged"
        );
    }
    Ok(report)
}
