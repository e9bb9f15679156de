//! The drain: N entries already in the streams, one or more ingest replicas in a fresh
//! consumer group and a fresh database, timed from spawning the replicas until every entry
//! is acknowledged (workers ack only after COMMIT, so acknowledged means committed).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::Serialize;

use crate::context::Context;
use crate::knobs::{Knobs, Resolved};
use crate::machine::LoadAverage;
use crate::profiler::Profiler;
use crate::servers::Database;
use crate::service::Service;
use crate::streams::{self, CRAWLER_EVENTS, DATA_STREAMS};

/// What the streams hold, so a drain can be checked row for row.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Expected {
    /// Entries in `stream:tokens`.
    pub token_entries: u64,
    /// `TOKEN_CREATED` entries among them (one `tokens` row each).
    pub tokens_created: u64,
    /// Entries in `stream:transactions` (one `transactions` row each).
    pub transactions: u64,
}

impl Expected {
    /// Entries to drain.
    pub fn entries(&self) -> u64 {
        self.token_entries + self.transactions
    }
}

/// Counts what the filled streams hold.
pub async fn expected(ctx: &Context) -> Result<Expected> {
    let mut conn = ctx.redis.connection().await?;
    let mut tokens_created = 0;
    let mut start = "-".to_owned();
    loop {
        let page: Vec<(String, Vec<(String, String)>)> = bus_core::redis::cmd("XRANGE")
            .arg(streams::TOKENS)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await?;
        let Some((last, _)) = page.last() else { break };
        start = format!("({last}");
        tokens_created += page
            .iter()
            .filter(|(_, f)| f.iter().any(|(k, v)| k == "type" && v == "TOKEN_CREATED"))
            .count() as u64;
    }
    Ok(Expected {
        token_entries: streams::len(&mut conn, streams::TOKENS).await?,
        tokens_created,
        transactions: streams::len(&mut conn, streams::TRANSACTIONS).await?,
    })
}

/// One drain run.
#[derive(Debug, Clone, Serialize)]
pub struct DrainResult {
    /// What the run was for (`drain`, `sweep`).
    pub label: String,
    /// The knobs in effect.
    pub knobs: Resolved,
    /// Entries drained.
    pub entries: u64,
    /// Seconds from spawning the replicas to the last acknowledgement.
    pub seconds: f64,
    /// Entries per second.
    pub rate: f64,
    /// Ingest CPU seconds (all replicas) per million entries.
    pub ingest_cpu_s_per_million: f64,
    /// PostgreSQL CPU seconds per million entries.
    pub pg_cpu_s_per_million: Option<f64>,
    /// Redis CPU seconds per million entries.
    pub redis_cpu_s_per_million: f64,
    /// Largest peak RSS of one replica, MiB.
    pub peak_rss_mib: f64,
    /// Largest RSS of one replica in each quarter of the drain, MiB (flat = no growth with N).
    pub rss_mib_by_quarter: [f64; 4],
    /// Load average when the run started.
    pub load: LoadAverage,
    /// Rows, inbox and dead letters matched the streams.
    pub verified: bool,
    /// What did not match, if anything.
    pub mismatch: Option<String>,
}

/// Drains the filled streams with `knobs`; keeps the database (for the COPY ceiling) when
/// `keep` is set, else drops it.
pub async fn drain(
    ctx: &Context,
    label: &str,
    knobs: &Knobs,
    expected: &Expected,
    keep: bool,
    perf_out: Option<&Path>,
) -> Result<(DrainResult, Option<Database>)> {
    let step = format!("{label}{}", ctx.next_step());
    let db = ctx.pg.fresh_database(&step).await?;
    let mut conn = ctx.redis.connection().await?;
    // The last entry of each stream that has any: the group is done when it has been
    // delivered and nothing is pending.
    let mut last_ids = Vec::new();
    for stream in DATA_STREAMS {
        if let Some((id, _)) = streams::edge_entry(&mut conn, stream, true).await? {
            last_ids.push((stream, id));
        }
    }
    if last_ids.is_empty() {
        bail!("the streams are empty: fill them first");
    }
    let n = expected.entries();
    let load = LoadAverage::now();
    let pg_cpu = ctx.pg.cpu_seconds();
    let redis_cpu = ctx.redis.cpu_seconds().await?;
    let started = Instant::now();
    let mut replicas: Vec<Service> = ctx
        .spawn_ingest(&step, &db.url, &step, None, knobs)?
        .into_iter()
        .map(|(service, _)| service)
        .collect();
    let mut perf = perf_out.map(Profiler::start).transpose()?;

    let deadline = Duration::from_secs(120 + n / 1_000);
    let mut rss_by_quarter = [0u64; 4];
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    loop {
        interval.tick().await;
        let mut done = true;
        let mut read = 0;
        for (stream, last) in &last_ids {
            match streams::group_progress(&mut conn, stream, &step).await? {
                Some(p) => {
                    read += p.entries_read.saturating_sub(p.pending);
                    done &= p.pending == 0 && p.last_delivered == *last;
                }
                None => done = false,
            }
        }
        let quarter = ((read * 4) / n.max(1)).min(3) as usize;
        for replica in &mut replicas {
            replica.ensure_running()?;
            rss_by_quarter[quarter] = rss_by_quarter[quarter].max(replica.rss().unwrap_or(0));
        }
        if done {
            break;
        }
        if started.elapsed() > deadline {
            bail!("drain {step}: {read} of {n} entries acknowledged after {deadline:?}");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut ingest_cpu = 0.0;
    let mut peak = 0;
    for replica in &replicas {
        ingest_cpu += replica.cpu_seconds()?;
        peak = peak.max(replica.peak_rss()?);
    }
    let pg_cpu = ctx.pg.cpu_seconds().zip(pg_cpu).map(|(b, a)| b - a);
    let redis_cpu = ctx.redis.cpu_seconds().await? - redis_cpu;
    if let Some(perf) = perf.take() {
        perf.stop()?;
    }
    for replica in replicas {
        replica.stop().await?;
    }
    let mismatch = verify(ctx, &db, expected).await?;
    for stream in DATA_STREAMS.iter().chain([&CRAWLER_EVENTS]) {
        streams::destroy_group(&mut conn, stream, &step).await;
    }
    let per_million = |s: f64| s / n as f64 * 1e6;
    let mib = |b: u64| b as f64 / 1_048_576.0;
    let result = DrainResult {
        label: label.to_owned(),
        knobs: knobs.resolve(&ctx.ingest_defaults, &ctx.plan.ingest_env),
        entries: n,
        seconds,
        rate: n as f64 / seconds,
        ingest_cpu_s_per_million: per_million(ingest_cpu),
        pg_cpu_s_per_million: pg_cpu.map(per_million),
        redis_cpu_s_per_million: per_million(redis_cpu),
        peak_rss_mib: mib(peak),
        rss_mib_by_quarter: rss_by_quarter.map(mib),
        load,
        verified: mismatch.is_none(),
        mismatch,
    };
    if keep {
        Ok((result, Some(db)))
    } else {
        db.pool.close().await;
        ctx.pg.drop_database(&step).await?;
        Ok((result, None))
    }
}

/// Rows and dead letters against what the streams hold; `Some(reason)` on a mismatch.
async fn verify(ctx: &Context, db: &Database, expected: &Expected) -> Result<Option<String>> {
    let mut problems = Vec::new();
    let tokens = db.count("tokens").await?;
    let transactions = db.count("transactions").await?;
    if tokens as u64 != expected.tokens_created {
        problems.push(format!(
            "{tokens} tokens rows, expected {}",
            expected.tokens_created
        ));
    }
    if transactions as u64 != expected.transactions {
        problems.push(format!(
            "{transactions} transactions rows, expected {}",
            expected.transactions
        ));
    }
    let mut conn = ctx.redis.connection().await?;
    for stream in DATA_STREAMS {
        let dead = streams::len(&mut conn, &bus_core::dead_letter_stream(stream)).await?;
        if dead > 0 {
            problems.push(format!("{dead} dead letters in {stream}:dlq"));
        }
    }
    Ok((!problems.is_empty()).then(|| problems.join("; ")))
}
