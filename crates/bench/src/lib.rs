//! `pipeline-bench`: the end-to-end benchmark of the pipeline.
//!
//! On a private Redis and PostgreSQL started for the run, with the release `crawler` and
//! `ingest` binaries as processes, it measures in one run:
//!
//! 1. the producer: the crawler filling `stream:tokens` / `stream:transactions` with N
//!    entries as fast as Redis takes them;
//! 2. the ceilings: raw pipelined XADD of the same payloads (`redis-benchmark`, same
//!    pipelining, one connection) and raw `COPY` of the same rows into tables of the same
//!    shape;
//! 3. the drain of the N entries into PostgreSQL by one and by two ingest replicas;
//! 4. XADD-to-commit latency (p50, p99, max) at steady offered rates;
//! 5. optionally a sweep of batch size, batches in flight, write method and replicas.
//!
//! CPU seconds per million entries and peak RSS come from `/proc`; the load average is
//! recorded so noisy runs are visible. Results go to a table on stdout and to
//! `<out>/results-<sha>-<time>.json` plus `<out>/latest.json`. `docs/benchmark.md` has the
//! method and the recorded figures.

pub mod context;
pub mod knobs;
pub mod machine;
pub mod options;
pub mod phases;
pub mod procstat;
pub mod profiler;
pub mod report;
pub mod servers;
pub mod service;
pub mod stats;
pub mod streams;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};

use context::Context;
use knobs::Knobs;
use machine::{Commit, LoadAverage, Machine};
use options::{Options, Phase};
use phases::{ceilings, drain, latency, producer, sweep};
use report::Report;
use servers::{Postgres, Redis};
use streams::DATA_STREAMS;

/// Runs the whole benchmark, prints the table and writes the JSON.
pub async fn run(opts: Options) -> Result<Report> {
    let started = Instant::now();
    let started_at = bus_core::chrono::Utc::now();
    let plan = opts.plan();
    let bin_dir = match &opts.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .context("the directory of pipeline-bench")?,
    };
    let load_start = LoadAverage::now();
    eprintln!("starting private Redis and PostgreSQL…");
    let redis = Redis::start().await?;
    let pg = match &opts.postgres_url {
        Some(url) => Postgres::external(url).await?,
        None => Postgres::start_private().await?,
    };
    let stamp = started_at.format("%Y%m%dT%H%M%SZ").to_string();
    let logs = opts.out_dir.join("logs").join(&stamp);
    let mut report = Report {
        commit: Commit::current(),
        started_at: started_at.to_rfc3339_opts(bus_core::chrono::SecondsFormat::Secs, true),
        seconds: 0.0,
        command: std::env::args().map(|a| redact_arg(&a)).collect(),
        plan: plan.clone(),
        machine: Machine::current(),
        load_start,
        load_end: load_start,
        redis_version: redis.version().await?,
        postgres: pg.settings.clone(),
        expected: None,
        xadd_ceiling: None,
        copy_ceiling: None,
        producer: Vec::new(),
        drains: Vec::new(),
        latency: Vec::new(),
        sweep: Vec::new(),
        sweep_best: None,
        targets: Vec::new(),
    };
    let ctx = Context::new(plan.clone(), redis, pg, &bin_dir, logs)?;
    if !ctx.pg.settings.durable() {
        eprintln!(
            "note: PostgreSQL runs with fsync=off (bus-testkit); commits are not durable. scripts/bench.sh starts a durable server."
        );
    }

    eprintln!("producer: the crawler writes {} entries…", plan.n);
    let perf = opts.perf.then(|| opts.out_dir.join("perf-fill.data"));
    let (produced, samples) = producer::fill(&ctx, plan.n, None, perf.as_deref()).await?;
    let pipeline = produced.pipeline.parse().unwrap_or(100);
    report.producer.push(produced);
    let expected = drain::expected(&ctx).await?;
    report.expected = Some(expected);
    if plan.runs(Phase::Ceilings) {
        eprintln!("ceiling: raw XADD (redis-benchmark -P {pipeline})…");
        report.xadd_ceiling = Some(ceilings::xadd(&ctx, &samples, pipeline).await?);
        // The producer again, right after the ceiling, so that the ratio compares rates
        // measured around the same moment on a shared machine (its streams are removed).
        eprintln!("producer: the same again into a scratch namespace…");
        let (again, _) = producer::fill(&ctx, plan.n, Some(REFILL), None).await?;
        report.producer.push(again);
        ctx.redis
            .delete(&DATA_STREAMS.map(|s| streams::key(Some(REFILL), s)))
            .await?;
    }

    let drains = if plan.runs(Phase::Drain) {
        plan.replicas.as_slice()
    } else {
        &[]
    };
    report::print_drain_header();
    for (i, &replicas) in drains.iter().enumerate() {
        let first = i == 0;
        let perf = (opts.perf && first).then(|| opts.out_dir.join("perf-drain.data"));
        let knobs = Knobs::defaults(replicas);
        let (result, db) =
            drain::drain(&ctx, "drain", &knobs, &expected, first, perf.as_deref()).await?;
        report::print_drain_row(&result);
        report.drains.push(result);
        if let Some(db) = db {
            if plan.runs(Phase::Ceilings) {
                eprintln!("ceiling: COPY of the same rows…");
                report.copy_ceiling = Some(ceilings::copy(&ctx, &db).await?);
            }
            db.pool.close().await;
            ctx.pg.drop_database(&db.name).await?;
        }
    }
    let rates = if plan.runs(Phase::Latency) {
        plan.rates.as_slice()
    } else {
        &[]
    };
    for &rate in rates {
        eprintln!("latency at {rate} entries/s for {} s…", plan.latency_secs);
        report
            .latency
            .push(latency::run(&ctx, rate, &Knobs::defaults(1)).await?);
    }
    if plan.sweep {
        eprintln!("sweep…");
        let (points, best) = sweep::sweep(&ctx, &expected).await?;
        report.sweep = points;
        report.sweep_best = Some(best.resolve(&ctx.ingest_defaults, &plan.ingest_env));
    }

    report.load_end = LoadAverage::now();
    report.seconds = started.elapsed().as_secs_f64();
    report.evaluate();
    report.print();
    let path = report.write(&opts.out_dir)?;
    println!("\nwrote {} (and latest.json)", path.display());
    Ok(report)
}

/// The namespace of the second producer run.
const REFILL: &str = "refill";

/// Command-line arguments as recorded: a URL's password is redacted.
fn redact_arg(arg: &str) -> String {
    if arg.contains("://") {
        bus_core::settings::redact_url(arg)
    } else {
        arg.to_owned()
    }
}
