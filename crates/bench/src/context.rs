//! What every phase of a run shares: the servers, the binaries, and how to start services.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::knobs::Knobs;
use crate::options::Plan;
use crate::servers::{Postgres, Redis};
use crate::service::{Service, help_defaults};

/// The shared state of one benchmark run.
#[derive(Debug)]
pub struct Context {
    /// What to run.
    pub plan: Plan,
    /// The private Redis.
    pub redis: Redis,
    /// The PostgreSQL server.
    pub pg: Postgres,
    /// Release `ingest`.
    pub ingest_bin: PathBuf,
    /// Release `crawler`.
    pub crawler_bin: PathBuf,
    /// The settings `ingest --help` documents, with their defaults.
    pub ingest_defaults: Vec<(String, String)>,
    /// The settings `crawler --help` documents, with their defaults.
    pub crawler_defaults: Vec<(String, String)>,
    /// Where service logs go.
    pub logs: PathBuf,
    steps: AtomicUsize,
}

impl Context {
    /// Checks the binaries and reads their documented defaults.
    pub fn new(
        plan: Plan,
        redis: Redis,
        pg: Postgres,
        bin_dir: &Path,
        logs: PathBuf,
    ) -> Result<Self> {
        let binary = |name: &str| -> Result<PathBuf> {
            let path = bin_dir.join(name);
            if !path.is_file() {
                bail!(
                    "{} not found: build it first (cargo build --release -p {name}, or run scripts/bench.sh)",
                    path.display()
                );
            }
            Ok(path)
        };
        let ingest_bin = binary("ingest")?;
        let crawler_bin = binary("crawler")?;
        std::fs::create_dir_all(&logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
        Ok(Context {
            ingest_defaults: help_defaults(&ingest_bin)?,
            crawler_defaults: help_defaults(&crawler_bin)?,
            plan,
            redis,
            pg,
            ingest_bin,
            crawler_bin,
            logs,
            steps: AtomicUsize::new(0),
        })
    }

    /// A new step number, for unique database, group and log names.
    pub fn next_step(&self) -> usize {
        self.steps.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Whether `ingest` has a setting named `name`.
    pub fn ingest_has(&self, name: &str) -> bool {
        self.ingest_defaults.iter().any(|(k, _)| k == name)
    }

    /// The documented default of a crawler setting.
    pub fn crawler_default(&self, name: &str) -> Option<&str> {
        self.crawler_defaults
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Starts `knobs.replicas` ingest processes in consumer group `group`.
    pub fn spawn_ingest(
        &self,
        step: &str,
        database_url: &str,
        group: &str,
        namespace: Option<&str>,
        knobs: &Knobs,
    ) -> Result<Vec<(Service, u16)>> {
        (1..=knobs.replicas)
            .map(|replica| {
                let port = bus_testkit::free_port();
                let mut env = vec![
                    ("REDIS_URL".to_owned(), self.redis.url()),
                    ("DATABASE_URL".to_owned(), database_url.to_owned()),
                    ("GROUP".to_owned(), group.to_owned()),
                    ("CONSUMER_NAME".to_owned(), format!("{step}-{replica}")),
                    ("OPS_ADDR".to_owned(), format!("127.0.0.1:{port}")),
                ];
                if let Some(ns) = namespace {
                    env.push(("REDIS_NAMESPACE".to_owned(), ns.to_owned()));
                }
                env.extend(self.plan.ingest_env.iter().cloned());
                env.extend(knobs.env());
                let name = format!("{step}-ingest-{replica}");
                Ok((
                    Service::spawn(&self.ingest_bin, &name, &env, &self.logs)?,
                    port,
                ))
            })
            .collect()
    }

    /// Starts a crawler producing `count` entries at `rate` per second (0 = unlimited).
    pub fn spawn_crawler(
        &self,
        step: &str,
        namespace: Option<&str>,
        rate: u64,
        count: u64,
        extra: &[(&str, &str)],
    ) -> Result<Service> {
        let mut env = vec![
            ("REDIS_URL".to_owned(), self.redis.url()),
            ("SERVICE_ID".to_owned(), "bench-crawler".to_owned()),
            (
                "OPS_ADDR".to_owned(),
                format!("127.0.0.1:{}", bus_testkit::free_port()),
            ),
            ("RATE".to_owned(), rate.to_string()),
            ("COUNT".to_owned(), count.to_string()),
            ("HEARTBEAT_INTERVAL_MS".to_owned(), "0".to_owned()),
            ("SEED".to_owned(), "1".to_owned()),
        ];
        if let Some(ns) = namespace {
            env.push(("REDIS_NAMESPACE".to_owned(), ns.to_owned()));
        }
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env.extend(self.plan.crawler_env.iter().cloned());
        Service::spawn(
            &self.crawler_bin,
            &format!("{step}-crawler"),
            &env,
            &self.logs,
        )
    }
}

/// Waits until `GET http://127.0.0.1:{port}/readyz` answers 200.
pub async fn wait_ready(service: &mut Service, port: u16, timeout: Duration) -> Result<()> {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let started = Instant::now();
    loop {
        service.ensure_running()?;
        if let Ok(resp) = client.get(&url).send().await
            && resp.status().is_success()
        {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("{} not ready within {timeout:?} ({url})", service.name());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
