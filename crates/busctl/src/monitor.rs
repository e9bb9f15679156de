//! The seed 003 monitoring report: the stream and its groups from Redis, the validator's
//! tables and views from PostgreSQL.

use std::fmt::Write as _;

use bus_core::sqlx::{self, PgPool};
use bus_core::{Redis, dead_letter_stream, redis};

use crate::reply::{self, Row};
use crate::table::{self, duration_ms, thousands};

/// The full report for `stream` (database sections only when `pool` is given).
pub async fn report(redis: &Redis, pool: Option<&PgPool>, stream: &str) -> anyhow::Result<String> {
    let key = redis.key(stream);
    let mut out = format!(
        "busctl monitor — {}\n\n",
        chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
    );
    out.push_str(&stream_info(redis, &key).await?);
    out.push_str(&consumer_groups(redis, &key).await?);
    match pool {
        None => out.push_str(
            "\nDATABASE STATS\n  (no database: pass --database-url or set DATABASE_URL)\n",
        ),
        Some(pool) => out.push_str(&database_sections(pool, &key).await?),
    }
    Ok(out)
}

/// `STREAM INFO`: length, first and last entry, dead letters.
pub async fn stream_info(redis: &Redis, key: &str) -> anyhow::Result<String> {
    let mut out = format!("STREAM INFO ({key})\n");
    let exists: i64 = reply::query(redis, redis::cmd("EXISTS").arg(key)).await?;
    if exists == 0 {
        out.push_str("  (the stream does not exist yet)\n");
        return Ok(out);
    }
    let info: redis::Value =
        reply::query(redis, redis::cmd("XINFO").arg("STREAM").arg(key)).await?;
    let info = reply::row(&info);
    let dlq: i64 = reply::query(redis, redis::cmd("XLEN").arg(dead_letter_stream(key))).await?;
    let rows = vec![
        kv(
            "Messages in stream",
            thousands(reply::int(&info, "length").unwrap_or(0)),
        ),
        kv("First entry", reply::entry_id(info.get("first-entry"))),
        kv("Last entry", reply::entry_id(info.get("last-entry"))),
        kv("Last generated id", reply::text(&info, "last-generated-id")),
        kv("Consumer groups", reply::text(&info, "groups")),
        kv("Dead letters", thousands(dlq)),
    ];
    out.push_str(&plain(&rows));
    Ok(out)
}

/// `CONSUMER GROUPS`: every group with its consumers' pending count and idle time.
pub async fn consumer_groups(redis: &Redis, key: &str) -> anyhow::Result<String> {
    let mut out = String::from("\nCONSUMER GROUPS\n");
    let groups = match group_rows(redis, key).await? {
        Some(groups) if !groups.is_empty() => groups,
        _ => {
            out.push_str("  (none)\n");
            return Ok(out);
        }
    };
    for group in groups {
        let name = reply::text(&group, "name");
        let _ = writeln!(
            out,
            "  Group: {name}\n  Consumers: {}, Pending: {}, Lag: {}, Last delivered: {}",
            reply::text(&group, "consumers"),
            reply::text(&group, "pending"),
            reply::text(&group, "lag"),
            reply::text(&group, "last-delivered-id"),
        );
        let consumers: redis::Value = reply::query(
            redis,
            redis::cmd("XINFO").arg("CONSUMERS").arg(key).arg(&name),
        )
        .await?;
        let rows: Vec<Vec<String>> = reply::rows(&consumers)
            .iter()
            .map(|c| {
                vec![
                    reply::text(c, "name"),
                    reply::text(c, "pending"),
                    duration_ms(reply::int(c, "idle").unwrap_or(0) as f64),
                ]
            })
            .collect();
        out.push_str(&table::render(&["CONSUMER", "PENDING", "IDLE"], &rows));
    }
    Ok(out)
}

/// `XINFO GROUPS`, or `None` when the stream does not exist.
pub async fn group_rows(redis: &Redis, key: &str) -> anyhow::Result<Option<Vec<Row>>> {
    let exists: i64 = reply::query(redis, redis::cmd("EXISTS").arg(key)).await?;
    if exists == 0 {
        return Ok(None);
    }
    let groups: redis::Value =
        reply::query(redis, redis::cmd("XINFO").arg("GROUPS").arg(key)).await?;
    Ok(Some(reply::rows(&groups)))
}

async fn database_sections(pool: &PgPool, key: &str) -> anyhow::Result<String> {
    let mut out = String::from("\nDATABASE STATS\n");
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, items FROM raw_items_status_summary ORDER BY status")
            .fetch_all(pool)
            .await?;
    let count = |s: &str| {
        by_status
            .iter()
            .find(|(st, _)| st == s)
            .map_or(0, |(_, n)| *n)
    };
    let total: i64 = by_status.iter().map(|(_, n)| n).sum();
    let from_stream: i64 = sqlx::query_scalar("SELECT count(*) FROM raw_items WHERE stream = $1")
        .bind(key)
        .fetch_one(pool)
        .await?;
    out.push_str(&plain(&[
        kv("Total items", thousands(total)),
        kv("Done", thousands(count("done"))),
        kv("Error", thousands(count("error"))),
        kv("Pending", thousands(count("pending"))),
        kv("Stream processed", thousands(from_stream)),
    ]));

    out.push_str("\nCONSUMER PERFORMANCE\n");
    let perf: Vec<PerfRow> = sqlx::query_as(
        "SELECT consumer, processed, done, errors, error_rate_pct::float8, avg_processing_ms,
                extract(epoch FROM now() - last_active)::float8
         FROM stream_consumer_performance WHERE stream = $1 ORDER BY consumer",
    )
    .bind(key)
    .fetch_all(pool)
    .await?;
    let rows: Vec<Vec<String>> = perf
        .into_iter()
        .map(|(consumer, processed, done, errors, rate, avg, ago)| {
            vec![
                consumer,
                processed.to_string(),
                done.to_string(),
                errors.to_string(),
                format!("{rate:.1}%"),
                avg.map_or_else(|| "-".into(), duration_ms),
                format!("{} ago", duration_ms(ago * 1000.0)),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &[
            "CONSUMER",
            "PROCESSED",
            "DONE",
            "ERRORS",
            "ERROR RATE",
            "AVG TIME",
            "LAST ACTIVE",
        ],
        &rows,
    ));

    out.push_str("\nRECENT ACTIVITY (1 hour)\n");
    let activity: Vec<(String, i64, Option<f64>)> = sqlx::query_as(
        "SELECT status, sum(count)::bigint, sum(total_processing_ms) / nullif(sum(count), 0)
         FROM stream_processing_metrics
         WHERE stream = $1 AND bucket > now() - interval '1 hour'
         GROUP BY status ORDER BY status",
    )
    .bind(key)
    .fetch_all(pool)
    .await?;
    let rows: Vec<Vec<String>> = activity
        .into_iter()
        .map(|(status, n, avg)| {
            vec![
                status.to_uppercase(),
                n.to_string(),
                avg.map_or_else(|| "-".into(), duration_ms),
            ]
        })
        .collect();
    out.push_str(&table::render(&["STATUS", "ITEMS", "AVG TIME"], &rows));

    out.push_str("\nTOP ERRORS (1 hour)\n");
    let errors: Vec<(i32, String, i64, String)> = sqlx::query_as(
        "SELECT (e ->> 'code')::int, e ->> 'field', count(*), min(e ->> 'message')
         FROM raw_items r CROSS JOIN LATERAL jsonb_array_elements(r.errors) e
         WHERE r.status = 'error' AND r.stream = $1 AND r.processed_at > now() - interval '1 hour'
         GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 10",
    )
    .bind(key)
    .fetch_all(pool)
    .await?;
    let rows: Vec<Vec<String>> = errors
        .into_iter()
        .map(|(code, field, n, message)| vec![code.to_string(), field, n.to_string(), message])
        .collect();
    out.push_str(&table::render(
        &["CODE", "FIELD", "TIMES", "EXAMPLE MESSAGE"],
        &rows,
    ));
    Ok(out)
}

/// consumer, processed, done, errors, error rate %, average ms, seconds since last active.
type PerfRow = (String, i64, i64, i64, f64, Option<f64>, f64);

fn kv(label: &str, value: String) -> (String, String) {
    (label.to_owned(), value)
}

/// `label: value` lines with the values aligned.
fn plain(rows: &[(String, String)]) -> String {
    let width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    rows.iter()
        .map(|(label, value)| format!("  {:width$} {value}\n", format!("{label}:")))
        .collect()
}
