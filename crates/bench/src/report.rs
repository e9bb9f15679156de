//! The results of a run: a table on stdout and a JSON document to compare across commits.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::knobs::Resolved;
use crate::machine::{Commit, LoadAverage, Machine};
use crate::options::Plan;
use crate::phases::ceilings::{CopyCeiling, XaddCeiling};
use crate::phases::drain::{DrainResult, Expected};
use crate::phases::latency::LatencyResult;
use crate::phases::producer::ProducerResult;
use crate::servers::PgSettings;

/// Everything one run measured, as written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The commit of the binaries.
    pub commit: Commit,
    /// When the run started (UTC, RFC 3339).
    pub started_at: String,
    /// How long the whole run took, seconds.
    pub seconds: f64,
    /// The command line.
    pub command: Vec<String>,
    /// What was run.
    pub plan: Plan,
    /// The machine.
    pub machine: Machine,
    /// Load average at the start.
    pub load_start: LoadAverage,
    /// Load average at the end.
    pub load_end: LoadAverage,
    /// `redis_version`.
    pub redis_version: String,
    /// PostgreSQL version and durability settings.
    pub postgres: PgSettings,
    /// What the filled streams hold.
    pub expected: Option<Expected>,
    /// Raw pipelined XADD.
    pub xadd_ceiling: Option<XaddCeiling>,
    /// Raw COPY.
    pub copy_ceiling: Option<CopyCeiling>,
    /// The crawler filling the streams, then (with the ceilings) once more right after the
    /// raw XADD ceiling.
    pub producer: Vec<ProducerResult>,
    /// Drains with the service defaults.
    pub drains: Vec<DrainResult>,
    /// Latency at steady offered rates.
    pub latency: Vec<LatencyResult>,
    /// Sweep points.
    pub sweep: Vec<DrainResult>,
    /// The fastest knobs of the sweep.
    pub sweep_best: Option<Resolved>,
    /// The targets, measured.
    pub targets: Vec<Target>,
}

/// One target and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is measured.
    pub name: String,
    /// The value this run measured.
    pub measured: Option<f64>,
    /// The bound.
    pub bound: f64,
    /// `>=` or `<`.
    pub op: &'static str,
    /// Unit of both.
    pub unit: &'static str,
    /// Met, missed, or not measured.
    pub met: Option<bool>,
}

/// RSS growth (MiB) from the second to the last quarter of a drain that still counts as flat.
pub const FLAT_RSS_GROWTH_MIB: f64 = 4.0;

impl Report {
    /// Evaluates the targets from the measurements.
    pub fn evaluate(&mut self) {
        let best_drain = self
            .drains
            .iter()
            .filter(|d| d.verified)
            .map(|d| d.rate)
            .reduce(f64::max);
        let copy = self.copy_ceiling.as_ref().map(|c| c.rate);
        let xadd = self.xadd_ceiling.as_ref().map(|c| c.rate);
        let producer = (!self.producer.is_empty()).then(|| {
            self.producer.iter().map(|p| p.rate).sum::<f64>() / self.producer.len() as f64
        });
        let p99_5k = self
            .latency
            .iter()
            .find(|l| l.offered_rate == 5_000)
            .and_then(|l| l.latency_ms)
            .map(|s| s.p99);
        let peak_rss = self
            .drains
            .iter()
            .map(|d| d.peak_rss_mib)
            .chain(self.latency.iter().map(|l| l.ingest_peak_rss_mib))
            .reduce(f64::max);
        let growth = self
            .drains
            .iter()
            .map(|d| d.rss_mib_by_quarter[3] - d.rss_mib_by_quarter[1])
            .reduce(f64::max);
        let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b? * 100.0);
        let target = |name: &str, measured: Option<f64>, op, bound, unit| {
            let met = measured.map(|m| if op == ">=" { m >= bound } else { m < bound });
            Target {
                name: name.to_owned(),
                measured,
                bound,
                op,
                unit,
                met,
            }
        };
        self.targets = vec![
            target(
                "drain into PostgreSQL",
                best_drain,
                ">=",
                100_000.0,
                "entries/s",
            ),
            target(
                "drain ÷ COPY ceiling",
                ratio(best_drain, copy),
                ">=",
                55.0,
                "%",
            ),
            target(
                "producer (mean of runs) ÷ raw XADD",
                ratio(producer, xadd),
                ">=",
                70.0,
                "%",
            ),
            target("p99 XADD-to-commit at 5,000/s", p99_5k, "<", 50.0, "ms"),
            target("worker peak RSS", peak_rss, "<", 64.0, "MiB"),
            target(
                "worker RSS growth, 2nd→4th quarter",
                growth,
                "<",
                FLAT_RSS_GROWTH_MIB,
                "MiB",
            ),
        ];
    }

    /// Writes `results-<sha>-<time>.json` and `latest.json` into `dir`; returns the first.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let stamp = self.started_at.replace([':', '-'], "").replace('.', "");
        let path = dir.join(format!("results-{}-{stamp}.json", self.commit.label()));
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(&path, &json).with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::write(dir.join("latest.json"), &json)?;
        Ok(path)
    }

    /// The whole table.
    pub fn print(&self) {
        let pg = &self.postgres;
        println!();
        println!(
            "pipeline-bench  commit {}  {}  N={}  {:.0} s",
            self.commit.label(),
            self.started_at,
            thousands(self.plan.n as f64),
            self.seconds
        );
        println!(
            "machine: {} x{} · {} MiB · kernel {} · load {} → {}",
            self.machine.cpu,
            self.machine.cpus,
            self.machine.memory_mib,
            self.machine.kernel,
            self.load_start,
            self.load_end
        );
        println!(
            "servers: Redis {} (no persistence) · PostgreSQL {} fsync={} synchronous_commit={} full_page_writes={} shared_buffers={}{}",
            self.redis_version,
            pg.version,
            pg.fsync,
            pg.synchronous_commit,
            pg.full_page_writes,
            pg.shared_buffers,
            if pg.durable() { "" } else { "  (NOT durable)" }
        );
        println!("\nceilings");
        if let Some(x) = &self.xadd_ceiling {
            let per: Vec<String> = x
                .per_stream
                .iter()
                .map(|(s, r)| format!("{s} {}", thousands(*r)))
                .collect();
            println!(
                "  raw XADD, redis-benchmark -c 1 -P {:<5} {:>10} entries/s   ({})",
                x.pipeline,
                thousands(x.rate),
                per.join(", ")
            );
        }
        if let Some(c) = &self.copy_ceiling {
            for run in &c.runs {
                println!(
                    "  COPY tokens+transactions, {} conn      {:>10} rows/s      ({} rows in {:.2} s, PostgreSQL {} CPU s/M)",
                    run.connections,
                    thousands(run.rate),
                    thousands(run.rows as f64),
                    run.seconds,
                    opt(run.pg_cpu_s_per_million, 1)
                );
            }
        }
        if let Some(first) = self.producer.first() {
            println!(
                "\nproducer (crawler RATE=0, PRODUCER__PIPELINE={}), run before and after the XADD ceiling",
                first.pipeline
            );
        }
        for p in &self.producer {
            let pct = self
                .xadd_ceiling
                .as_ref()
                .map(|x| format!("{:.0}% of raw XADD", p.rate / x.rate * 100.0))
                .unwrap_or_default();
            println!(
                "  {:>10} entries/s  {pct} · crawler {:.2} CPU s/M · Redis {:.2} CPU s/M · peak RSS {:.1} MiB",
                thousands(p.rate),
                p.cpu_s_per_million,
                p.redis_cpu_s_per_million,
                p.peak_rss_mib
            );
        }
        if !self.drains.is_empty() {
            println!("\ndrain of N pre-filled entries (service defaults)");
            print_drain_header();
            for d in &self.drains {
                print_drain_row(d);
            }
            if let Some(c) = &self.copy_ceiling {
                for d in &self.drains {
                    println!(
                        "  {} replica(s): {:.0}% of the COPY ceiling",
                        d.knobs.replicas,
                        d.rate / c.rate * 100.0
                    );
                }
            }
        }
        if !self.latency.is_empty() {
            println!(
                "\nlatency, XADD to COMMIT (warm-up {} s left out)",
                self.plan.warmup_secs
            );
            println!(
                "  {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>6}",
                "offered",
                "achieved",
                "entries",
                "p50 ms",
                "p99 ms",
                "max ms",
                "ingest/M",
                "crawler/M",
                "rss MiB",
                "load"
            );
            for l in &self.latency {
                let s = l.latency_ms;
                println!(
                    "  {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9.2} {:>9.2} {:>8.1} {:>6.2}",
                    thousands(l.offered_rate as f64),
                    thousands(l.achieved_rate),
                    thousands(l.entries as f64),
                    opt(s.map(|s| s.p50), 1),
                    opt(s.map(|s| s.p99), 1),
                    opt(s.map(|s| s.max), 1),
                    l.ingest_cpu_s_per_million,
                    l.crawler_cpu_s_per_million,
                    l.ingest_peak_rss_mib,
                    l.load.0[0]
                );
            }
        }
        if !self.sweep.is_empty() {
            println!("\nsweep (every point a full drain)");
            print_drain_header();
            for d in &self.sweep {
                print_drain_row(d);
            }
            if let Some(best) = &self.sweep_best {
                println!(
                    "  best: replicas {} batch {} in-flight {} method {}",
                    best.replicas,
                    best.batch(),
                    best.in_flight,
                    best.method
                );
            }
        }
        println!("\ntargets");
        for t in &self.targets {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            };
            println!(
                "  {:<38} {:>10} {} {:<10} {:<9} {verdict}",
                t.name,
                opt(t.measured, 1),
                t.op,
                thousands(t.bound),
                t.unit
            );
        }
    }
}

/// Column titles of the drain rows.
pub fn print_drain_header() {
    println!(
        "  {:>3} {:>9} {:>6} {:>7} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8} {:>15} {:>6}  check",
        "rep",
        "batch",
        "infl",
        "method",
        "entries/s",
        "secs",
        "ingest/M",
        "pg/M",
        "redis/M",
        "rss MiB",
        "rss by quarter",
        "load"
    );
}

/// One drain as a table row (CPU in seconds per million entries).
pub fn print_drain_row(d: &DrainResult) {
    let q = d.rss_mib_by_quarter;
    println!(
        "  {:>3} {:>9} {:>6} {:>7} {:>9} {:>7.2} {:>9.2} {:>8} {:>8.2} {:>8.1} {:>15} {:>6.2}  {}",
        d.knobs.replicas,
        d.knobs.batch(),
        d.knobs.in_flight,
        d.knobs.method,
        thousands(d.rate),
        d.seconds,
        d.ingest_cpu_s_per_million,
        opt(d.pg_cpu_s_per_million, 2),
        d.redis_cpu_s_per_million,
        d.peak_rss_mib,
        format!("{:.0}/{:.0}/{:.0}/{:.0}", q[0], q[1], q[2], q[3]),
        d.load.0[0],
        d.mismatch.as_deref().unwrap_or("ok")
    );
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(
        || "-".into(),
        |v| {
            if v.abs() >= 1_000.0 {
                thousands(v)
            } else {
                format!("{v:.decimals$}")
            }
        },
    )
}

/// `1234567.8` → `1,234,568`.
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated_with_commas() {
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-5_000.0), "-5,000");
        assert_eq!(thousands(0.2), "0");
    }
}
