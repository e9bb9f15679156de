//! The seeds' `redis-cli` recipes as commands: pending entries, groups, consumers, ranges,
//! trimming, and the dead-letter stream (list and replay).

use std::fmt::Write as _;

use bus_core::{Redis, dead_letter_stream, redis, trim_lag_aware};

use crate::monitor::group_rows;
use crate::reply::{self, Entry};
use crate::table::{self, duration_ms};

/// Fields the worker adds to a dead letter; stripped again on replay.
const DLQ_PREFIX: &str = "dlq_";

/// `XPENDING <stream> <group>`: count, oldest and newest ID, pending per consumer.
type PendingSummary = (u64, Option<String>, Option<String>, Vec<(String, String)>);

/// `XPENDING`: the group's summary, per-consumer counts, and the oldest `count` entries.
pub async fn pending(
    redis: &Redis,
    stream: &str,
    group: &str,
    count: u64,
) -> anyhow::Result<String> {
    let key = redis.key(stream);
    let (total, first, last, per_consumer): PendingSummary =
        reply::query(redis, redis::cmd("XPENDING").arg(&key).arg(group)).await?;
    let mut out = format!(
        "PENDING {key} / {group}\n  Pending: {total}, oldest: {}, newest: {}\n",
        first.as_deref().unwrap_or("-"),
        last.as_deref().unwrap_or("-")
    );
    let rows: Vec<Vec<String>> = per_consumer.into_iter().map(|(c, n)| vec![c, n]).collect();
    out.push_str(&table::render(&["CONSUMER", "PENDING"], &rows));
    if total > 0 {
        let detail: Vec<(String, String, u64, u64)> = reply::query(
            redis,
            redis::cmd("XPENDING")
                .arg(&key)
                .arg(group)
                .arg("-")
                .arg("+")
                .arg(count),
        )
        .await?;
        let rows: Vec<Vec<String>> = detail
            .into_iter()
            .map(|(id, consumer, idle, deliveries)| {
                vec![
                    id,
                    consumer,
                    duration_ms(idle as f64),
                    deliveries.to_string(),
                ]
            })
            .collect();
        let _ = writeln!(out, "\n  Oldest {} entries:", rows.len());
        out.push_str(&table::render(
            &["ENTRY", "CONSUMER", "IDLE", "DELIVERIES"],
            &rows,
        ));
    }
    Ok(out)
}

/// `XINFO GROUPS`.
pub async fn groups(redis: &Redis, stream: &str) -> anyhow::Result<String> {
    let key = redis.key(stream);
    let Some(groups) = group_rows(redis, &key).await? else {
        return Ok(format!("GROUPS {key}\n  (the stream does not exist)\n"));
    };
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            [
                "name",
                "consumers",
                "pending",
                "lag",
                "entries-read",
                "last-delivered-id",
            ]
            .iter()
            .map(|k| reply::text(g, k))
            .collect()
        })
        .collect();
    Ok(format!(
        "GROUPS {key}\n{}",
        table::render(
            &[
                "GROUP",
                "CONSUMERS",
                "PENDING",
                "LAG",
                "READ",
                "LAST DELIVERED"
            ],
            &rows
        )
    ))
}

/// `XINFO CONSUMERS`.
pub async fn consumers(redis: &Redis, stream: &str, group: &str) -> anyhow::Result<String> {
    let key = redis.key(stream);
    let value: redis::Value = reply::query(
        redis,
        redis::cmd("XINFO").arg("CONSUMERS").arg(&key).arg(group),
    )
    .await?;
    let rows: Vec<Vec<String>> = reply::rows(&value)
        .iter()
        .map(|c| {
            let ms = |k| reply::int(c, k).map_or_else(|| "-".to_owned(), |v| duration_ms(v as f64));
            vec![
                reply::text(c, "name"),
                reply::text(c, "pending"),
                ms("idle"),
                ms("inactive"),
            ]
        })
        .collect();
    Ok(format!(
        "CONSUMERS {key} / {group}\n{}",
        table::render(&["CONSUMER", "PENDING", "IDLE", "INACTIVE"], &rows)
    ))
}

/// `XRANGE - + COUNT n`: entries with their fields.
pub async fn range(redis: &Redis, stream: &str, count: u64) -> anyhow::Result<String> {
    let key = redis.key(stream);
    let value: redis::Value = reply::query(
        redis,
        redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(count),
    )
    .await?;
    let mut out = format!("RANGE {key} (first {count})\n");
    let entries = reply::entries(&value);
    if entries.is_empty() {
        out.push_str("  (none)\n");
    }
    for (id, fields) in entries {
        let _ = writeln!(out, "  {id}");
        for (k, v) in fields {
            let _ = writeln!(out, "    {k}: {v}");
        }
    }
    Ok(out)
}

/// Trims towards `maxlen`. Lag-aware by default: never removes entries a group has not yet
/// acknowledged (repeats rounds until nothing more may go). `force` is plain `XTRIM MAXLEN ~`.
pub async fn trim(redis: &Redis, stream: &str, maxlen: u64, force: bool) -> anyhow::Result<String> {
    let key = redis.key(stream);
    let mut conn = redis.shared();
    let removed = if force {
        reply::query::<u64>(
            redis,
            redis::cmd("XTRIM")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(maxlen),
        )
        .await?
    } else {
        let mut removed = 0;
        loop {
            let round = trim_lag_aware(&mut conn, &key, maxlen, 0).await?;
            removed += round.removed;
            if round.removed == 0 {
                break;
            }
        }
        removed
    };
    let len: u64 = reply::query(redis, redis::cmd("XLEN").arg(&key)).await?;
    let how = if force {
        "MAXLEN ~ (forced)"
    } else {
        "lag-aware"
    };
    Ok(format!(
        "TRIM {key} to {maxlen} ({how}): removed {removed}, length now {len}\n"
    ))
}

/// The dead-letter stream of `stream` (`stream` may also name the `:dlq` stream itself).
fn dlq_key(redis: &Redis, stream: &str) -> String {
    let key = redis.key(stream);
    if key.ends_with(":dlq") {
        key
    } else {
        dead_letter_stream(&key)
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("-", |(_, v)| v.as_str())
}

/// Lists dead letters with their reasons.
pub async fn dlq(redis: &Redis, stream: &str, count: u64) -> anyhow::Result<String> {
    let key = dlq_key(redis, stream);
    let total: u64 = reply::query(redis, redis::cmd("XLEN").arg(&key)).await?;
    let value: redis::Value = reply::query(
        redis,
        redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(count),
    )
    .await?;
    let rows: Vec<Vec<String>> = reply::entries(&value)
        .into_iter()
        .map(|(id, f)| {
            vec![
                id,
                field(&f, "dlq_original_id").to_owned(),
                field(&f, "dlq_kind").to_owned(),
                field(&f, "dlq_deliveries").to_owned(),
                field(&f, "dlq_consumer").to_owned(),
                field(&f, "dlq_reason").to_owned(),
            ]
        })
        .collect();
    Ok(format!(
        "DEAD LETTERS {key} ({total} in total, first {count})\n{}",
        table::render(
            &[
                "ENTRY",
                "ORIGINAL",
                "KIND",
                "DELIVERIES",
                "CONSUMER",
                "REASON"
            ],
            &rows
        )
    ))
}

/// Re-appends dead letters (at most `count`) to the stream they came from without the
/// `dlq_*` fields, deleting each from the dead-letter stream in the same atomic round trip,
/// so an entry is never both replayed and kept, nor lost.
pub async fn replay_dlq(redis: &Redis, stream: &str, count: u64) -> anyhow::Result<String> {
    let key = dlq_key(redis, stream);
    let fallback = key.trim_end_matches(":dlq").to_owned();
    let value: redis::Value = reply::query(
        redis,
        redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(count),
    )
    .await?;
    let entries: Vec<Entry> = reply::entries(&value);
    let mut conn = redis.shared();
    let mut replayed = Vec::new();
    for (id, fields) in &entries {
        let target = match field(fields, "dlq_stream") {
            "-" => fallback.clone(),
            s => s.to_owned(),
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        let cmd = pipe.cmd("XADD").arg(&target).arg("*");
        for (k, v) in fields.iter().filter(|(k, _)| !k.starts_with(DLQ_PREFIX)) {
            cmd.arg(k).arg(v);
        }
        pipe.cmd("XDEL").arg(&key).arg(id).ignore();
        let (new_id,): (String,) = pipe.query_async(&mut conn).await?;
        replayed.push(vec![id.clone(), target, new_id]);
    }
    Ok(format!(
        "REPLAYED {} dead letters from {key}\n{}",
        replayed.len(),
        table::render(&["DEAD LETTER", "TO STREAM", "NEW ENTRY"], &replayed)
    ))
}
