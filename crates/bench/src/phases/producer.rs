//! The crawler's publish rate: it fills the data streams with N entries as fast as Redis
//! takes them. The rate is N over the span of the entry IDs (Redis' own clock), so process
//! start-up does not count.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::Serialize;

use crate::context::Context;
use crate::profiler::Profiler;
use crate::streams::{self, DATA_STREAMS};

/// What the producer run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ProducerResult {
    /// Entries written.
    pub entries: u64,
    /// Of which tokens (the rest are transactions).
    pub tokens: u64,
    /// `PRODUCER__PIPELINE` in effect.
    pub pipeline: String,
    /// Entries per second between the first and the last entry ID.
    pub rate: f64,
    /// Seconds from spawning the crawler to the last entry.
    pub wall_seconds: f64,
    /// Crawler CPU seconds per million entries.
    pub cpu_s_per_million: f64,
    /// Redis CPU seconds per million entries.
    pub redis_cpu_s_per_million: f64,
    /// Crawler peak RSS, MiB.
    pub peak_rss_mib: f64,
}

/// One entry of each data stream as written, for the raw XADD ceiling.
#[derive(Debug, Clone)]
pub struct Samples {
    /// The last entry of each data stream.
    pub entries: Vec<Sample>,
}

/// The last entry of one data stream and how many entries the stream got.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The stream.
    pub stream: String,
    /// The entry's fields, without `traceparent`.
    pub fields: Vec<(String, String)>,
    /// Entries written to the stream.
    pub share: u64,
}

/// Fills `stream:tokens` and `stream:transactions` of `namespace` with `n` entries.
pub async fn fill(
    ctx: &Context,
    n: u64,
    namespace: Option<&str>,
    perf_out: Option<&Path>,
) -> Result<(ProducerResult, Samples)> {
    let keys: Vec<String> = DATA_STREAMS
        .iter()
        .map(|s| streams::key(namespace, s))
        .collect();
    let step = namespace.unwrap_or("fill");
    let mut conn = ctx.redis.connection().await?;
    let redis_cpu = ctx.redis.cpu_seconds().await?;
    let started = Instant::now();
    let perf = perf_out.map(Profiler::start).transpose()?;
    let mut crawler = ctx.spawn_crawler(step, namespace, 0, n, &[("PRODUCER__TRIM", "none")])?;
    let deadline = Duration::from_secs(120 + n / 2_000);
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    let mut lens = [0u64; 2];
    loop {
        interval.tick().await;
        crawler.ensure_running()?;
        for (i, key) in keys.iter().enumerate() {
            lens[i] = streams::len(&mut conn, key).await?;
        }
        if lens.iter().sum::<u64>() >= n {
            break;
        }
        if started.elapsed() > deadline {
            bail!(
                "the crawler wrote {} of {n} entries in {deadline:?}",
                lens.iter().sum::<u64>()
            );
        }
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    let cpu = crawler.cpu_seconds()?;
    let peak = crawler.peak_rss()?;
    let redis_cpu = ctx.redis.cpu_seconds().await? - redis_cpu;
    if let Some(perf) = perf {
        perf.stop()?;
    }
    crawler.stop().await?;

    let mut first = u64::MAX;
    let mut last = 0;
    let mut samples = Vec::new();
    for (i, (stream, key)) in DATA_STREAMS.iter().zip(&keys).enumerate() {
        if let Some((id, _)) = streams::edge_entry(&mut conn, key, false).await? {
            first = first.min(streams::id_ms(&id).unwrap_or(u64::MAX));
        }
        if let Some((id, fields)) = streams::edge_entry(&mut conn, key, true).await? {
            last = last.max(streams::id_ms(&id).unwrap_or(0));
            // The trace context is per entry and optional; the ceiling writes the payload.
            let fields = fields
                .into_iter()
                .filter(|(k, _)| k != "traceparent")
                .collect();
            samples.push(Sample {
                stream: (*stream).to_owned(),
                fields,
                share: lens[i],
            });
        }
    }
    let span = (last.saturating_sub(first) as f64 / 1000.0).max(0.001);
    let per_million = |secs: f64| secs / n as f64 * 1e6;
    let result = ProducerResult {
        entries: n,
        tokens: lens[0],
        pipeline: ctx
            .plan
            .crawler_env
            .iter()
            .find(|(k, _)| k == "PRODUCER__PIPELINE")
            .map(|(_, v)| v.as_str())
            .or_else(|| ctx.crawler_default("PRODUCER__PIPELINE"))
            .unwrap_or("-")
            .to_owned(),
        rate: n as f64 / span,
        wall_seconds,
        cpu_s_per_million: per_million(cpu),
        redis_cpu_s_per_million: per_million(redis_cpu),
        peak_rss_mib: peak as f64 / 1_048_576.0,
    };
    Ok((result, Samples { entries: samples }))
}
