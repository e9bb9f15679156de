//! The ceilings the pipeline is measured against, on the same servers in the same run:
//! raw pipelined XADD of the same payloads (`redis-benchmark`), and raw `COPY` of the same
//! rows into tables of the same shape.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use bus_core::sqlx::{self, AssertSqlSafe, Connection, PgConnection};
use futures_util::TryStreamExt;
use serde::Serialize;

use crate::context::Context;
use crate::phases::producer::Samples;
use crate::servers::Database;

/// Raw XADD rate with the producer's pipelining, over one connection like the producer's.
#[derive(Debug, Clone, Serialize)]
pub struct XaddCeiling {
    /// Commands per round trip (`redis-benchmark -P`).
    pub pipeline: usize,
    /// Per stream: entries/s of its payload.
    pub per_stream: Vec<(String, f64)>,
    /// The mix of the producer run (harmonic, weighted by each stream's share).
    pub rate: f64,
}

/// Pipelined XADD of each sample payload with `redis-benchmark -c 1 -P pipeline`.
pub async fn xadd(ctx: &Context, samples: &Samples, pipeline: usize) -> Result<XaddCeiling> {
    let mut per_stream = Vec::new();
    let mut seconds_for_mix = 0.0_f64;
    let mut total = 0u64;
    // As many XADDs per stream as the producer wrote, so both runs last about as long.
    for sample in &samples.entries {
        let key = format!("bench:ceiling:{}", sample.stream);
        let count = sample.share.max(10_000);
        let rate = redis_benchmark(ctx.redis.port(), pipeline, count, &key, &sample.fields)?;
        let mut conn = ctx.redis.connection().await?;
        let _: () = bus_core::redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        per_stream.push((sample.stream.clone(), rate));
        seconds_for_mix += sample.share as f64 / rate;
        total += sample.share;
    }
    Ok(XaddCeiling {
        pipeline,
        per_stream,
        rate: total as f64 / seconds_for_mix.max(f64::MIN_POSITIVE),
    })
}

fn redis_benchmark(
    port: u16,
    pipeline: usize,
    requests: u64,
    key: &str,
    fields: &[(String, String)],
) -> Result<f64> {
    let mut cmd = Command::new("redis-benchmark");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", "1", "-q"])
        .args(["-P", &pipeline.to_string(), "-n", &requests.to_string()])
        .args(["XADD", key, "*"]);
    for (k, v) in fields {
        cmd.arg(k).arg(v);
    }
    let out = cmd
        .output()
        .context("cannot run redis-benchmark (Debian package redis-tools)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    match parse_requests_per_second(&text) {
        Some(rate) if out.status.success() => Ok(rate),
        _ => bail!(
            "redis-benchmark failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The rate of `redis-benchmark -q` output (`XADD …: 251256.28 requests per second, …`); the
/// progress lines before it are separated by carriage returns.
fn parse_requests_per_second(output: &str) -> Option<f64> {
    let line = output
        .split(['\r', '\n'])
        .rfind(|l| l.contains("requests per second"))?;
    let before = line.split(" requests per second").next()?;
    before
        .rsplit([' ', ':'])
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// Raw `COPY` of the rows a drain wrote, into empty tables of the same shape.
#[derive(Debug, Clone, Serialize)]
pub struct CopyCeiling {
    /// One run per number of parallel connections.
    pub runs: Vec<CopyRun>,
    /// The best rate of the runs, rows per second: the ceiling.
    pub rate: f64,
}

/// `COPY` over some connections in parallel.
#[derive(Debug, Clone, Serialize)]
pub struct CopyRun {
    /// Connections, each copying its share of both tables.
    pub connections: usize,
    /// Rows copied (tokens + transactions).
    pub rows: u64,
    /// Seconds until the last COPY committed.
    pub seconds: f64,
    /// Rows per second.
    pub rate: f64,
    /// PostgreSQL CPU seconds per million rows.
    pub pg_cpu_s_per_million: Option<f64>,
}

/// The tables a drain writes and the ceiling copies.
const TABLES: [&str; 2] = ["tokens", "transactions"];

/// Dumps `tokens` and `transactions` of `db` (`COPY … TO STDOUT`), then times `COPY … FROM
/// STDIN` of the same text into `LIKE … INCLUDING ALL` copies (same columns, constraints and
/// indexes): over one connection, then split over two in parallel (the pipeline uses several).
pub async fn copy(ctx: &Context, db: &Database) -> Result<CopyCeiling> {
    // A million rows just inserted make autovacuum visit these tables within a minute; left
    // alone, it would scan, freeze and write them out during the timed COPY and bill the
    // ceiling for it. Vacuumed now, untimed, there is nothing left for it to do.
    let mut conn = PgConnection::connect(&db.url).await?;
    sqlx::query(AssertSqlSafe(format!(
        "VACUUM (ANALYZE) {}",
        TABLES.join(", ")
    )))
    .execute(&mut conn)
    .await?;
    drop(conn);
    let mut runs = Vec::new();
    for connections in [1, 2] {
        runs.push(copy_run(ctx, db, connections).await?);
    }
    let rate = runs.iter().map(|r| r.rate).fold(0.0, f64::max);
    Ok(CopyCeiling { runs, rate })
}

async fn copy_run(ctx: &Context, db: &Database, connections: usize) -> Result<CopyRun> {
    let mut conn = PgConnection::connect(&db.url).await?;
    // parts[i] = connection i's share of each table, as COPY text.
    let mut parts: Vec<Vec<(String, std::fs::File)>> =
        (0..connections).map(|_| Vec::new()).collect();
    for table in TABLES {
        let target = format!("ceiling_{table}_{connections}");
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE {target} (LIKE {table} INCLUDING ALL)"
        )))
        .execute(&mut conn)
        .await?;
        for (i, part) in parts.iter_mut().enumerate() {
            let mut file = tempfile::tempfile().context("temp file for the COPY dump")?;
            let mut out = conn
                .copy_out_raw(&format!(
                    "COPY (SELECT * FROM {table} WHERE abs(hashtext(last_entry_id)) % {connections} = {i}) TO STDOUT"
                ))
                .await?;
            while let Some(chunk) = out.try_next().await? {
                file.write_all(&chunk)?;
            }
            drop(out);
            part.push((target.clone(), file));
        }
    }
    // A checkpoint now, so the COPY does not compete with writing out the drain's dirty pages.
    sqlx::query("CHECKPOINT").execute(&mut conn).await?;

    let pg_cpu = ctx.pg.cpu_seconds();
    let started = Instant::now();
    let copies = parts.into_iter().map(|part| copy_in(&db.url, part));
    let rows: u64 = futures_util::future::try_join_all(copies)
        .await?
        .into_iter()
        .sum();
    let seconds = started.elapsed().as_secs_f64();
    let pg_cpu = ctx.pg.cpu_seconds().zip(pg_cpu).map(|(b, a)| b - a);
    for table in TABLES {
        sqlx::query(AssertSqlSafe(format!(
            "DROP TABLE ceiling_{table}_{connections}"
        )))
        .execute(&mut conn)
        .await?;
    }
    Ok(CopyRun {
        connections,
        rows,
        seconds,
        rate: rows as f64 / seconds,
        pg_cpu_s_per_million: pg_cpu.map(|s| s / rows.max(1) as f64 * 1e6),
    })
}

/// One connection copying `(table, dump)` in order, one COPY (one transaction) each.
async fn copy_in(url: &str, part: Vec<(String, std::fs::File)>) -> Result<u64> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut conn = PgConnection::connect(url).await?;
    let mut rows = 0;
    let mut buf = vec![0u8; 1 << 20];
    for (table, file) in part {
        let mut file = tokio::fs::File::from_std(file);
        file.seek(std::io::SeekFrom::Start(0)).await?;
        let mut copy = conn
            .copy_in_raw(&format!("COPY {table} FROM STDIN"))
            .await?;
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            copy.send(&buf[..n]).await?;
        }
        rows += copy.finish().await?;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_read_from_the_final_quiet_line() {
        let out = "XADD bench:x * a b: rps=120000.0 (overall: 118000.0) avg_msec=0.4\r\
                   XADD bench:x * a {\"k\": 1}: 251256.28 requests per second, p50=0.327 msec\n\n";
        assert_eq!(parse_requests_per_second(out), Some(251_256.28));
        assert_eq!(parse_requests_per_second("ERR unknown command"), None);
    }
}
