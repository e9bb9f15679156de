//! Command-line options of `pipeline-bench`.

use std::path::PathBuf;

use clap::Parser;
use serde::Serialize;

/// End-to-end benchmark of the pipeline on private Redis and PostgreSQL servers: raw XADD
/// and COPY ceilings, the crawler's publish rate, the drain of N entries by one and two
/// ingest replicas, XADD-to-commit latency at steady rates, and (with --sweep) the knobs.
/// Prints a table and writes JSON. Build the release binaries first (scripts/bench.sh does).
#[derive(Debug, Clone, Parser)]
#[command(name = "pipeline-bench", version)]
pub struct Options {
    /// Entries (tokens + transactions) pre-filled and drained [default: 1000000; --quick 50000].
    #[arg(long)]
    pub n: Option<u64>,
    /// Offered rates of the latency runs, entries/s [default: 5000,20000; --quick 5000].
    #[arg(long, value_delimiter = ',')]
    pub rates: Option<Vec<u64>>,
    /// Seconds each latency run offers entries [default: 10; --quick 3].
    #[arg(long)]
    pub latency_secs: Option<u64>,
    /// Seconds at the start of a latency run left out of the percentiles.
    #[arg(long, default_value_t = 1)]
    pub warmup_secs: u64,
    /// Ingest replica counts of the drain runs.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 2])]
    pub replicas: Vec<usize>,
    /// Also sweep batch size, batches in flight, write method and replicas.
    #[arg(long)]
    pub sweep: bool,
    /// Batch sizes the sweep tries.
    #[arg(long, value_delimiter = ',', default_values_t = vec![100, 250, 500, 1000, 2000])]
    pub sweep_batches: Vec<usize>,
    /// Batches in flight the sweep tries.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 2, 4, 8])]
    pub sweep_in_flight: Vec<usize>,
    /// A smoke check: small N, one short latency run.
    #[arg(long)]
    pub quick: bool,
    /// Phases to leave out (comma-separated: ceilings, drain, latency), for quick iterations.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub skip: Vec<Phase>,
    /// Directory of the release `ingest` and `crawler` binaries [default: this binary's].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Where results and logs go.
    #[arg(long, default_value = "target/bench")]
    pub out_dir: PathBuf,
    /// Use this PostgreSQL server (a superuser URL) instead of a private bus-testkit cluster.
    /// It needs track_commit_timestamp=on. scripts/bench.sh starts a durable one.
    #[arg(long, env = "BENCH_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// An extra setting for every ingest replica, NAME=VALUE (repeatable).
    #[arg(long = "ingest-env", value_parser = parse_env)]
    pub ingest_env: Vec<(String, String)>,
    /// An extra setting for the crawler, NAME=VALUE (repeatable).
    #[arg(long = "crawler-env", value_parser = parse_env)]
    pub crawler_env: Vec<(String, String)>,
    /// Record `perf record -a -e cpu-clock -g` of the producer run and of the first drain into
    /// `<out>/perf-fill.data` and `<out>/perf-drain.data`.
    #[arg(long)]
    pub perf: bool,
}

/// A phase that `--skip` can leave out (the producer always runs: it fills the streams).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Raw XADD and COPY.
    Ceilings,
    /// The drains with the service defaults.
    Drain,
    /// The latency runs.
    Latency,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))?;
    Ok((k.to_owned(), v.to_owned()))
}

/// The options with the defaults of the chosen mode filled in.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Entries pre-filled and drained.
    pub n: u64,
    /// Offered rates of the latency runs.
    pub rates: Vec<u64>,
    /// Seconds per latency run.
    pub latency_secs: u64,
    /// Seconds left out at the start of a latency run.
    pub warmup_secs: u64,
    /// Replica counts of the drain runs.
    pub replicas: Vec<usize>,
    /// Sweep on or off.
    pub sweep: bool,
    /// Sweep batch sizes.
    pub sweep_batches: Vec<usize>,
    /// Sweep batches in flight.
    pub sweep_in_flight: Vec<usize>,
    /// Quick mode.
    pub quick: bool,
    /// Phases left out.
    pub skip: Vec<Phase>,
    /// Extra ingest settings.
    pub ingest_env: Vec<(String, String)>,
    /// Extra crawler settings.
    pub crawler_env: Vec<(String, String)>,
}

impl Plan {
    /// Whether `phase` runs.
    pub fn runs(&self, phase: Phase) -> bool {
        !self.skip.contains(&phase)
    }
}

impl Options {
    /// Fills in the defaults of full or quick mode.
    pub fn plan(&self) -> Plan {
        let quick = self.quick;
        Plan {
            n: self.n.unwrap_or(if quick { 50_000 } else { 1_000_000 }),
            rates: self.rates.clone().unwrap_or_else(|| {
                if quick {
                    vec![5_000]
                } else {
                    vec![5_000, 20_000]
                }
            }),
            latency_secs: self.latency_secs.unwrap_or(if quick { 3 } else { 10 }),
            warmup_secs: self.warmup_secs,
            replicas: self.replicas.clone(),
            sweep: self.sweep,
            sweep_batches: self.sweep_batches.clone(),
            sweep_in_flight: self.sweep_in_flight.clone(),
            quick,
            skip: self.skip.clone(),
            ingest_env: self.ingest_env.clone(),
            crawler_env: self.crawler_env.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_mode_shrinks_only_what_was_not_given() {
        let opts = Options::parse_from(["pipeline-bench", "--quick", "--rates", "1000,2000"]);
        let plan = opts.plan();
        assert_eq!((plan.n, plan.latency_secs), (50_000, 3));
        assert_eq!(plan.rates, vec![1_000, 2_000]);
        let full = Options::parse_from(["pipeline-bench", "--ingest-env", "A=b=c"]).plan();
        assert_eq!((full.n, full.rates.len()), (1_000_000, 2));
        assert_eq!(full.ingest_env, vec![("A".to_owned(), "b=c".to_owned())]);
    }
}
