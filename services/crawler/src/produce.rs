//! The production loop: take items from the source at `RATE`, while the state is
//! `Running`, until `COUNT`; write them pipelined, one round trip per stream per tick.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{BusError, Fields, sleep_or_shutdown};
use ingest::messages::{CrawlerEventKind, TOKENS_STREAM, TRANSACTIONS_STREAM};

use crate::control::{CrawlState, Crawler};
use crate::replay::{Replay, SkippedLine};
use crate::synthetic::{Generator, Item};

/// Where entries come from.
#[derive(Debug)]
pub enum Source {
    /// The seeded generator (endless).
    Synthetic(Generator),
    /// A JSON-lines file (ends).
    Replay(Replay),
}

impl Source {
    fn next_item(&mut self) -> Option<Result<Item, SkippedLine>> {
        match self {
            Source::Synthetic(g) => Some(Ok(g.next_item())),
            Source::Replay(r) => r.next_item(),
        }
    }
}

/// Spreads `rate` entries per second over ticks, with at most one second of burst.
#[derive(Debug)]
struct Pacer {
    rate: f64,
    credit: f64,
    last: Instant,
}

impl Pacer {
    fn new(rate: f64) -> Self {
        Pacer {
            rate,
            credit: 0.0,
            last: Instant::now(),
        }
    }

    fn reset(&mut self) {
        self.credit = 0.0;
        self.last = Instant::now();
    }

    /// Entries due now, at most `max`.
    fn due(&mut self, max: usize) -> usize {
        if self.rate <= 0.0 {
            return max;
        }
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.credit = (self.credit + earned).min(self.rate.max(1.0));
        self.last = now;
        let n = (self.credit.floor() as usize).min(max);
        self.credit -= n as f64;
        n
    }

    /// How long until the next entry is due (short, so PAUSE takes effect quickly).
    fn wait(&self) -> Duration {
        let secs = (1.0 - self.credit).max(0.0) / self.rate.max(f64::MIN_POSITIVE);
        Duration::from_secs_f64(secs.clamp(0.001, 0.1))
    }
}

impl Crawler {
    /// Produces from `source` until shutdown. Failed writes are retried (the same items),
    /// so delivery is at-least-once; ingest makes repeats harmless.
    pub async fn produce(
        self,
        mut source: Source,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        let limit = self.settings().count;
        let pipeline = self.settings().producer.pipeline;
        let mut pacer = Pacer::new(self.settings().rate);
        let mut pending: Vec<Item> = Vec::new();
        let mut exhausted = false;
        while !shutdown.is_cancelled() {
            if self.state() != CrawlState::Running {
                if !self.wait_running(&shutdown).await {
                    break;
                }
                pacer.reset();
                continue;
            }
            if pending.is_empty() {
                let produced = self.produced();
                if (limit > 0 && produced >= limit) || exhausted {
                    tracing::info!(produced, "source finished; staying up for commands");
                    self.set_state(CrawlState::Done).await;
                    continue;
                }
                let mut due = pacer.due(pipeline);
                if limit > 0 {
                    due = due.min((limit - produced) as usize);
                }
                if due == 0 {
                    sleep_or_shutdown(pacer.wait(), &shutdown).await;
                    continue;
                }
                exhausted = self.take(&mut source, due, &mut pending).await;
            }
            match self.send(&mut pending, &shutdown).await {
                Ok(()) => tokio::task::yield_now().await,
                Err(e) => {
                    tracing::warn!(error = %e, pending = pending.len(), "write failed; retrying");
                    sleep_or_shutdown(Duration::from_secs(1), &shutdown).await;
                }
            }
        }
        Ok(())
    }

    /// Moves up to `n` items from the source into `pending`; true when the source ended.
    async fn take(&self, source: &mut Source, n: usize, pending: &mut Vec<Item>) -> bool {
        while pending.len() < n {
            match source.next_item() {
                None => return true,
                Some(Ok(item)) => pending.push(item),
                Some(Err(skipped)) => {
                    self.metrics().replay_skipped();
                    let reason = format!("replay line {}: {}", skipped.line, skipped.reason);
                    tracing::warn!(%reason, "replay line skipped");
                    if let Err(e) = self.event(CrawlerEventKind::Error, Some(reason)).await {
                        tracing::warn!(error = %e, "could not report the skipped line");
                    }
                }
            }
        }
        false
    }

    /// Writes `pending`, one pipelined batch per stream; what was written leaves `pending`.
    async fn send(
        &self,
        pending: &mut Vec<Item>,
        shutdown: &CancellationToken,
    ) -> Result<(), BusError> {
        let producer = self.producer();
        let tokens: Vec<_> = pending
            .iter()
            .filter_map(|i| match i {
                Item::Token(m) => Some(m.clone()),
                _ => None,
            })
            .collect();
        if !tokens.is_empty() {
            producer.wait_for_capacity(TOKENS_STREAM, shutdown).await;
            producer.send_batch(TOKENS_STREAM, &tokens).await?;
            pending.retain(|i| !matches!(i, Item::Token(_)));
            self.add_produced(tokens.len() as u64);
        }
        let transactions: Vec<_> = pending
            .iter()
            .filter_map(|i| match i {
                Item::Transaction(m) => Some(m.clone()),
                _ => None,
            })
            .collect();
        if !transactions.is_empty() {
            producer
                .wait_for_capacity(TRANSACTIONS_STREAM, shutdown)
                .await;
            producer
                .send_batch(TRANSACTIONS_STREAM, &transactions)
                .await?;
            pending.retain(|i| !matches!(i, Item::Transaction(_)));
            self.add_produced(transactions.len() as u64);
        }
        let mut raw: BTreeMap<String, Vec<Fields>> = BTreeMap::new();
        for item in pending.iter() {
            if let Item::Raw { stream, fields } = item {
                raw.entry(stream.clone()).or_default().push(fields.clone());
            }
        }
        for (stream, entries) in raw {
            let n = entries.len() as u64;
            producer.wait_for_capacity(&stream, shutdown).await;
            producer.send_fields(&stream, entries).await?;
            pending.retain(|i| !matches!(i, Item::Raw { stream: s, .. } if *s == stream));
            self.add_produced(n);
        }
        Ok(())
    }
}
