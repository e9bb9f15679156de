//! Shared helpers for bus-core's integration tests: real Redis and PostgreSQL from the test
//! kit, a closure-driven handler, and polling instead of sleeping.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus_core::{
    Batch, Bus, CommonSettings, Consumer, ConsumerConfig, EntryId, Fields, Handler, HandlerError,
    Outcome, SecretUrl, WorkerSettings,
};
pub use bus_testkit::until;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub fn common(redis_url: &str) -> CommonSettings {
    CommonSettings {
        redis_url: SecretUrl::new(redis_url),
        shutdown_timeout_ms: 5_000,
        ..Default::default()
    }
}

pub async fn bus(redis_url: &str) -> Bus {
    Bus::connect(&common(redis_url)).await.unwrap()
}

/// Fast knobs for tests: short blocks, retries and claim idle.
pub fn fast_worker() -> WorkerSettings {
    WorkerSettings {
        batch_size: 10,
        block_ms: 100,
        max_in_flight: 2,
        claim_interval_ms: 100,
        claim_min_idle_ms: 60_000,
        max_deliveries: 3,
        retry_base_ms: 10,
        retry_max_ms: 50,
        monitor_interval_ms: 100,
        ..Default::default()
    }
}

pub fn config(
    stream: &str,
    group: &str,
    consumer: &str,
    settings: WorkerSettings,
) -> ConsumerConfig {
    ConsumerConfig {
        stream: stream.into(),
        group: group.into(),
        consumer: consumer.into(),
        settings,
        drain_timeout: Duration::from_secs(5),
    }
}

type Decide = dyn Fn(&Batch<'_, Fields>) -> Result<Outcome, HandlerError> + Send + Sync;

/// A handler whose decision is a closure; it records every entry ID it saw succeed.
#[derive(Clone)]
pub struct FnHandler {
    decide: Arc<Decide>,
    pub handled: Arc<Mutex<Vec<EntryId>>>,
    pub calls: Arc<Mutex<usize>>,
}

impl FnHandler {
    pub fn new(
        decide: impl Fn(&Batch<'_, Fields>) -> Result<Outcome, HandlerError> + Send + Sync + 'static,
    ) -> Self {
        FnHandler {
            decide: Arc::new(decide),
            handled: Arc::default(),
            calls: Arc::default(),
        }
    }

    pub fn ok() -> Self {
        Self::new(|_| Ok(Outcome::done()))
    }

    pub fn handled(&self) -> Vec<EntryId> {
        self.handled.lock().unwrap().clone()
    }

    pub fn calls(&self) -> usize {
        *self.calls.lock().unwrap()
    }
}

impl Handler for FnHandler {
    type Message = Fields;

    async fn handle(&self, batch: Batch<'_, Fields>) -> Result<Outcome, HandlerError> {
        *self.calls.lock().unwrap() += 1;
        let outcome = (self.decide)(&batch)?;
        let rejected: Vec<EntryId> = outcome.rejected().iter().map(|(id, _)| *id).collect();
        self.handled
            .lock()
            .unwrap()
            .extend(batch.ids().into_iter().filter(|id| !rejected.contains(id)));
        Ok(outcome)
    }
}

/// Starts a consumer task; returns its handle and its shutdown token.
pub fn spawn<H: Handler>(
    bus: &Bus,
    config: ConsumerConfig,
    handler: H,
) -> (
    JoinHandle<Result<(), bus_core::BusError>>,
    CancellationToken,
) {
    let shutdown = CancellationToken::new();
    let consumer = Consumer::new(
        bus.redis.clone(),
        bus.metrics.clone(),
        bus.health.clone(),
        config,
        handler,
    );
    (tokio::spawn(consumer.run(shutdown.clone())), shutdown)
}

/// XADDs `n` entries `{n: i}` and returns their IDs.
pub async fn produce(bus: &Bus, stream: &str, n: usize) -> Vec<EntryId> {
    let producer = bus.producer(bus_core::ProducerSettings {
        trim: bus_core::TrimMode::None,
        ..Default::default()
    });
    let entries: Vec<Fields> = (0..n)
        .map(|i| [("n", i.to_string())].into_iter().collect())
        .collect();
    producer.send_fields(stream, entries).await.unwrap()
}

pub async fn redis_cmd<T: bus_core::redis::FromRedisValue>(
    bus: &Bus,
    cmd: &mut bus_core::redis::Cmd,
) -> T {
    let mut conn = bus.redis.shared();
    cmd.query_async(&mut conn).await.unwrap()
}

/// Entries pending in the group; `u64::MAX` while the group does not exist yet.
pub async fn pending_count(bus: &Bus, stream: &str, group: &str) -> u64 {
    let mut conn = bus.redis.shared();
    let summary: Result<bus_core::redis::Value, _> = bus_core::redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(&mut conn)
        .await;
    let Ok(summary) = summary else {
        return u64::MAX;
    };
    match summary {
        bus_core::redis::Value::Array(parts) => match parts.first() {
            Some(bus_core::redis::Value::Int(n)) => *n as u64,
            _ => 0,
        },
        _ => 0,
    }
}

pub async fn xlen(bus: &Bus, stream: &str) -> u64 {
    redis_cmd(bus, bus_core::redis::cmd("XLEN").arg(stream)).await
}

/// The dead letters of `stream`, as field lists.
pub async fn dead_letters(bus: &Bus, stream: &str) -> Vec<Fields> {
    let reply: Vec<(String, Vec<(String, String)>)> = redis_cmd(
        bus,
        bus_core::redis::cmd("XRANGE")
            .arg(format!("{stream}:dlq"))
            .arg("-")
            .arg("+"),
    )
    .await;
    reply
        .into_iter()
        .map(|(_, fields)| fields.into_iter().collect())
        .collect()
}
