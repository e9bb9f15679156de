//! The consumer-group worker: reads its own pending entries first, then new ones, reclaims
//! entries abandoned by dead consumers, and hands batches to a [`Handler`] with a bounded
//! number of batches in flight.

mod group;
mod handler;
mod monitor;
mod process;
mod reply;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use handler::{Batch, DeadLetter, Delivery, Handler, HandlerError, Outcome};
pub use monitor::{GroupStatus, group_status};
pub(crate) use reply::{entries as parse_entries, info_rows, int as reply_int, text as reply_text};

use crate::backoff::sleep_or_shutdown;
use crate::connection::Redis;
use crate::entry::EntryId;
use crate::error::{BusError, is_nogroup};
use crate::health::Health;
use crate::metrics::{GroupLabels, Metrics, RoleLabels};
use crate::settings::WorkerSettings;
use process::{Pending, Shared};

/// The dead-letter stream of `stream`.
pub fn dead_letter_stream(stream: &str) -> String {
    format!("{stream}:dlq")
}

/// What a worker consumes and as whom.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Stream name (the tenant prefix is added by [`Redis::key`]).
    pub stream: String,
    /// Consumer group.
    pub group: String,
    /// This replica's consumer name, stable across restarts.
    pub consumer: String,
    /// Worker knobs.
    pub settings: WorkerSettings,
    /// How long in-flight batches may take to finish after shutdown.
    pub drain_timeout: Duration,
}

/// A consumer-group worker for one stream. Build it, then `run` it until shutdown.
pub struct Consumer<H: Handler> {
    shared: Arc<Shared<H>>,
    health: Health,
    drain_timeout: Duration,
}

impl<H: Handler> std::fmt::Debug for Consumer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("stream", &self.shared.stream)
            .field("group", &self.shared.group)
            .field("consumer", &self.shared.consumer)
            .finish()
    }
}

/// Where the reader is: its own pending entries after an ID, or new entries.
enum Cursor {
    Backlog(EntryId),
    New,
}

impl<H: Handler> Consumer<H> {
    /// A worker that will feed `handler`.
    pub fn new(
        redis: Redis,
        metrics: Arc<Metrics>,
        health: Health,
        config: ConsumerConfig,
        handler: H,
    ) -> Self {
        let stream = redis.key(&config.stream);
        let shared = Shared {
            handler,
            dlq: dead_letter_stream(&stream),
            labels: GroupLabels::new(&stream, &config.group),
            stream,
            group: config.group,
            consumer: config.consumer,
            settings: config.settings,
            redis,
            metrics,
            in_flight: Mutex::new(HashSet::new()),
        };
        Consumer {
            shared: Arc::new(shared),
            health,
            drain_timeout: config.drain_timeout,
        }
    }

    /// Runs until `shutdown` is cancelled, then drains in-flight batches within the drain
    /// timeout and leaves the group if nothing of ours is pending.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BusError> {
        let s = &self.shared;
        let running = self
            .health
            .register_loop(&format!("consumer {} / {}", s.stream, s.group));
        if !self.ensure_group(&shutdown).await {
            return Ok(());
        }
        running.set(true);
        tracing::info!(stream = %s.stream, group = %s.group, consumer = %s.consumer, "consumer started");

        let tasks = TaskTracker::new();
        let hard_stop = CancellationToken::new();
        tasks.spawn(housekeeping(self.shared.clone(), shutdown.clone()));
        let permits = Arc::new(Semaphore::new(s.settings.max_in_flight));
        let mut reader = Reader {
            conn: None,
            cursor: Cursor::Backlog(EntryId::ZERO),
            claim_cursor: "0-0".into(),
            next_claim: Instant::now(),
        };
        let mut backoff = crate::Backoff::new(
            Duration::from_millis(s.settings.retry_base_ms),
            Duration::from_millis(s.settings.retry_max_ms),
        );
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let step = tokio::select! {
                _ = shutdown.cancelled() => break,
                step = reader.next_batch(s) => step,
            };
            if step.is_ok() {
                running.set(true);
                backoff.reset();
            }
            match step {
                Ok(batch) if batch.is_empty() => {}
                Ok(batch) => {
                    let shared = self.shared.clone();
                    let (shutdown, hard_stop) = (shutdown.clone(), hard_stop.clone());
                    tasks.spawn(async move {
                        shared.process(batch, &shutdown, &hard_stop).await;
                        drop(permit);
                    });
                }
                Err(BusError::Redis(e)) if is_nogroup(&e) => {
                    tracing::warn!(stream = %s.stream, group = %s.group, "consumer group missing (NOGROUP); recreating");
                    if !self.ensure_group(&shutdown).await {
                        break;
                    }
                    reader.cursor = Cursor::Backlog(EntryId::ZERO);
                }
                Err(e) => {
                    running.set(false);
                    reader.conn = None;
                    let role = RoleLabels::new("blocking");
                    s.metrics.pubsub.reconnects.get_or_create(&role).inc();
                    tracing::warn!(stream = %s.stream, error = %e, "read failed; reconnecting");
                    if !backoff.wait(&shutdown).await {
                        break;
                    }
                }
            }
        }

        running.set(false);
        tasks.close();
        if tokio::time::timeout(self.drain_timeout, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("drain deadline passed with batches in flight; they stay pending");
            hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), tasks.wait()).await;
        }
        let mut conn = s.redis.shared();
        match group::delete_consumer_if_idle(&mut conn, &s.stream, &s.group, &s.consumer).await {
            Ok(true) => tracing::info!(consumer = %s.consumer, "left the group (nothing pending)"),
            Ok(false) => {
                tracing::info!(consumer = %s.consumer, "kept consumer: it still has pending entries")
            }
            Err(e) => tracing::warn!(error = %e, "could not check the consumer's pending entries"),
        }
        tracing::info!(stream = %s.stream, group = %s.group, "consumer stopped");
        Ok(())
    }

    /// Creates the group, retrying while Redis is unreachable. False when shut down first.
    async fn ensure_group(&self, shutdown: &CancellationToken) -> bool {
        let s = &self.shared;
        let mut backoff = crate::Backoff::new(
            Duration::from_millis(s.settings.retry_base_ms),
            Duration::from_millis(s.settings.retry_max_ms),
        );
        loop {
            let mut conn = s.redis.shared();
            match group::ensure(&mut conn, &s.stream, &s.group, &s.settings.group_start_id).await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::warn!(stream = %s.stream, error = %e, "cannot create consumer group yet");
                    if !backoff.wait(shutdown).await {
                        return false;
                    }
                }
            }
        }
    }
}

struct Reader {
    conn: Option<MultiplexedConnection>,
    cursor: Cursor,
    claim_cursor: String,
    next_claim: Instant,
}

impl Reader {
    /// The next batch: reclaimed entries when a claim scan is due, else own pending entries
    /// (after a start), else new entries (blocking up to `block_ms`).
    async fn next_batch<H: Handler>(&mut self, s: &Shared<H>) -> Result<Vec<Pending>, BusError> {
        let settings = &s.settings;
        if matches!(self.cursor, Cursor::New) && Instant::now() >= self.next_claim {
            let claimed = self.claim(s).await?;
            if !claimed.is_empty() {
                return Ok(claimed);
            }
        }
        if self.conn.is_none() {
            self.conn = Some(s.redis.blocking_connection().await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Vec::new());
        };
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&s.group)
            .arg(&s.consumer)
            .arg("COUNT")
            .arg(settings.batch_size);
        match self.cursor {
            Cursor::Backlog(after) => {
                cmd.arg("STREAMS").arg(&s.stream).arg(after.to_string());
                let entries = reply::xread_single(cmd.query_async(conn).await?)?;
                match entries.last() {
                    None => {
                        self.cursor = Cursor::New;
                        Ok(Vec::new())
                    }
                    Some(last) => {
                        self.cursor = Cursor::Backlog(last.id);
                        track(s, entries).await
                    }
                }
            }
            Cursor::New => {
                cmd.arg("BLOCK")
                    .arg(settings.block_ms)
                    .arg("STREAMS")
                    .arg(&s.stream)
                    .arg(">");
                let entries = reply::xread_single(cmd.query_async(conn).await?)?;
                Ok(mark_in_flight(
                    s,
                    entries.into_iter().map(|entry| Pending {
                        entry,
                        deliveries: 1,
                    }),
                ))
            }
        }
    }

    /// One XAUTOCLAIM step over entries idle past `claim_min_idle_ms`.
    async fn claim<H: Handler>(&mut self, s: &Shared<H>) -> Result<Vec<Pending>, BusError> {
        let mut conn = s.redis.shared();
        let reply = reply::xautoclaim(
            redis::cmd("XAUTOCLAIM")
                .arg(&s.stream)
                .arg(&s.group)
                .arg(&s.consumer)
                .arg(s.settings.claim_min_idle_ms)
                .arg(&self.claim_cursor)
                .arg("COUNT")
                .arg(s.settings.batch_size)
                .query_async(&mut conn)
                .await?,
        )?;
        if reply.next == "0-0" {
            self.next_claim = Instant::now() + Duration::from_millis(s.settings.claim_interval_ms);
        }
        self.claim_cursor = reply.next;
        if reply.deleted > 0 {
            s.metrics
                .streams
                .pending_trimmed
                .get_or_create(&s.labels)
                .inc_by(reply.deleted as u64);
            tracing::warn!(
                count = reply.deleted,
                "dropped pending entries whose data was trimmed"
            );
        }
        let fresh: Vec<_> = {
            let in_flight = s.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            reply
                .claimed
                .into_iter()
                .filter(|e| !in_flight.contains(&e.id))
                .collect()
        };
        if !fresh.is_empty() {
            s.metrics
                .streams
                .reclaimed
                .get_or_create(&s.labels)
                .inc_by(fresh.len() as u64);
            tracing::info!(count = fresh.len(), "reclaimed entries from idle consumers");
        }
        track(s, fresh).await
    }
}

/// Looks up delivery counts (one XPENDING) for entries re-read from a pending list.
async fn track<H: Handler>(
    s: &Shared<H>,
    entries: Vec<crate::RawEntry>,
) -> Result<Vec<Pending>, BusError> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(Vec::new());
    };
    let mut conn = s.redis.shared();
    let counts = reply::xpending_counts(
        redis::cmd("XPENDING")
            .arg(&s.stream)
            .arg(&s.group)
            .arg(first.id.to_string())
            .arg(last.id.to_string())
            .arg(entries.len())
            .arg(&s.consumer)
            .query_async(&mut conn)
            .await?,
    )?;
    Ok(mark_in_flight(
        s,
        entries.into_iter().map(|entry| Pending {
            deliveries: counts.get(&entry.id).copied().unwrap_or(1),
            entry,
        }),
    ))
}

fn mark_in_flight<H: Handler>(s: &Shared<H>, batch: impl Iterator<Item = Pending>) -> Vec<Pending> {
    let batch: Vec<Pending> = batch.collect();
    let count = batch.len() as u64;
    if count > 0 {
        s.metrics
            .streams
            .consumed
            .get_or_create(&s.labels)
            .inc_by(count);
        let mut in_flight = s.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        in_flight.extend(batch.iter().map(|p| p.entry.id));
    }
    batch
}

/// Periodic gauges and idle-consumer clean-up, on the shared connection.
async fn housekeeping<H: Handler>(s: Arc<Shared<H>>, shutdown: CancellationToken) {
    let interval = Duration::from_millis(s.settings.monitor_interval_ms.max(100));
    loop {
        let mut conn = s.redis.shared();
        match group_status(&mut conn, &s.stream, &s.group, &s.dlq).await {
            Ok(status) => monitor::record(&s.metrics, &s.stream, &s.group, &status),
            Err(e) => tracing::debug!(error = %e, "could not sample group status"),
        }
        let idle = s.settings.idle_consumer_timeout_ms;
        if idle > 0
            && let Err(e) =
                group::remove_idle_consumers(&mut conn, &s.stream, &s.group, &s.consumer, idle)
                    .await
        {
            tracing::debug!(error = %e, "idle-consumer clean-up failed");
        }
        if !sleep_or_shutdown(interval, &shutdown).await {
            return;
        }
    }
}
