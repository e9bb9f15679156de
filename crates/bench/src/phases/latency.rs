//! XADD-to-commit latency at a steady offered rate below saturation.
//!
//! Ingest runs first (in its own namespace, fresh group and database); then the crawler
//! offers `rate` entries per second. The start of each entry is its ID (the millisecond Redis
//! appended it), the end the commit time of the transaction that wrote its row
//! (`pg_xact_commit_timestamp`, hence `track_commit_timestamp=on`). Both clocks are this
//! machine's; the ID's millisecond truncation adds up to 1 ms.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bus_core::sqlx;
use serde::Serialize;

use crate::context::{Context, wait_ready};
use crate::knobs::{Knobs, Resolved};
use crate::machine::LoadAverage;
use crate::stats::{self, Summary};
use crate::streams::{self, CRAWLER_EVENTS, DATA_STREAMS};

/// One latency run.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyResult {
    /// Entries per second the crawler was asked for.
    pub offered_rate: u64,
    /// Entries per second it wrote (over the span of the entry IDs).
    pub achieved_rate: f64,
    /// Entries written.
    pub entries: u64,
    /// XADD-to-commit in milliseconds, warm-up left out.
    pub latency_ms: Option<Summary>,
    /// The knobs in effect.
    pub knobs: Resolved,
    /// Ingest CPU seconds per million entries at this rate (idle polling included).
    pub ingest_cpu_s_per_million: f64,
    /// Crawler CPU seconds per million entries at this rate.
    pub crawler_cpu_s_per_million: f64,
    /// Ingest peak RSS, MiB.
    pub ingest_peak_rss_mib: f64,
    /// Load average when the run started.
    pub load: LoadAverage,
}

/// Offers `rate` entries/s for `plan.latency_secs` seconds to ingest with `knobs`.
pub async fn run(ctx: &Context, rate: u64, knobs: &Knobs) -> Result<LatencyResult> {
    let step = format!("lat{rate}_{}", ctx.next_step());
    let ns = Some(step.as_str());
    let db = ctx.pg.fresh_database(&step).await?;
    let count = rate * ctx.plan.latency_secs;
    let load = LoadAverage::now();
    let mut replicas = ctx.spawn_ingest(&step, &db.url, &step, ns, knobs)?;
    for (replica, port) in &mut replicas {
        wait_ready(replica, *port, Duration::from_secs(30)).await?;
    }
    let ingest_cpu: f64 = replicas
        .iter()
        .map(|(r, _)| r.cpu_seconds().unwrap_or(0.0))
        .sum();
    let mut crawler = ctx.spawn_crawler(&step, ns, rate, count, &[])?;

    let keys: Vec<String> = DATA_STREAMS.iter().map(|s| streams::key(ns, s)).collect();
    let mut conn = ctx.redis.connection().await?;
    let started = Instant::now();
    let deadline = Duration::from_secs(60 + 3 * ctx.plan.latency_secs);
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    loop {
        interval.tick().await;
        crawler.ensure_running()?;
        let mut added = 0;
        let mut caught_up = true;
        for key in &keys {
            let (n, last) = streams::stream_totals(&mut conn, key).await?;
            added += n;
            caught_up &= match streams::group_progress(&mut conn, key, &step).await? {
                Some(p) => p.pending == 0 && p.last_delivered == last,
                None => false,
            };
        }
        for (replica, _) in &mut replicas {
            replica.ensure_running()?;
        }
        if added >= count && caught_up {
            break;
        }
        if started.elapsed() > deadline {
            bail!(
                "latency run at {rate}/s: not caught up after {deadline:?} ({added} of {count} written)"
            );
        }
    }
    let crawler_cpu = crawler.cpu_seconds()?;
    let mut ingest_cpu_end = 0.0;
    let mut peak = 0;
    for (replica, _) in &replicas {
        ingest_cpu_end += replica.cpu_seconds()?;
        peak = peak.max(replica.peak_rss()?);
    }
    crawler.stop().await?;
    for (replica, _) in replicas {
        replica.stop().await?;
    }

    let rows: Vec<(i64, f64)> = sqlx::query_as(
        "SELECT split_part(last_entry_id, '-', 1)::bigint,
                (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000)::float8
         FROM transactions
         UNION ALL
         SELECT split_part(last_entry_id, '-', 1)::bigint,
                (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000)::float8
         FROM tokens",
    )
    .fetch_all(&db.pool)
    .await?;
    let first = rows.iter().map(|r| r.0).min().unwrap_or(0);
    let last = rows.iter().map(|r| r.0).max().unwrap_or(0);
    let warm = first + 1_000 * ctx.plan.warmup_secs as i64;
    let latencies: Vec<f64> = rows
        .iter()
        .filter(|(added, _)| *added >= warm)
        .map(|(added, committed)| committed - *added as f64)
        .collect();

    db.pool.close().await;
    ctx.pg.drop_database(&step).await?;
    for stream in DATA_STREAMS.iter().chain([&CRAWLER_EVENTS]) {
        let _: () = bus_core::redis::cmd("DEL")
            .arg(streams::key(ns, stream))
            .query_async(&mut conn)
            .await?;
    }
    let per_million = |s: f64| s / count as f64 * 1e6;
    Ok(LatencyResult {
        offered_rate: rate,
        achieved_rate: count as f64 / ((last - first) as f64 / 1000.0).max(0.001),
        entries: count,
        latency_ms: stats::summarize(latencies),
        knobs: knobs.resolve(&ctx.ingest_defaults, &ctx.plan.ingest_env),
        ingest_cpu_s_per_million: per_million(ingest_cpu_end - ingest_cpu),
        crawler_cpu_s_per_million: per_million(crawler_cpu),
        ingest_peak_rss_mib: peak as f64 / 1_048_576.0,
        load,
    })
}
