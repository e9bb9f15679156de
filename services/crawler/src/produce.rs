//! The production loop: take items from the source at `RATE`, while the state is
//! `Running`, until `COUNT`; write them pipelined, one round trip per stream per tick.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{BusError, Fields, Prepared, Producer, StreamMessage, sleep_or_shutdown};
use futures_util::future::join_all;
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

/// Entries taken from the source, encoded, then built into XADD round trips per stream
/// (sealed), not yet written.
#[derive(Debug, Default)]
struct Encoded {
    streams: BTreeMap<String, Vec<Fields>>,
    sealed: Vec<(String, Prepared)>,
    entries: usize,
}

impl Encoded {
    fn push(&mut self, item: Item) {
        let (stream, fields) = match item {
            Item::Token(m) => (TOKENS_STREAM, m.encode()),
            Item::Transaction(m) => (TRANSACTIONS_STREAM, m.encode()),
            Item::Raw { stream, fields } => {
                self.streams.entry(stream).or_default().push(fields);
                self.entries += 1;
                return;
            }
        };
        match self.streams.get_mut(stream) {
            Some(entries) => entries.push(fields),
            None => {
                self.streams.insert(stream.to_owned(), vec![fields]);
            }
        }
        self.entries += 1;
    }

    /// Builds the round trips of what was pushed.
    fn seal(&mut self, producer: &Producer) {
        for (stream, entries) in std::mem::take(&mut self.streams) {
            let prepared = producer.prepare(&stream, &entries);
            self.sealed.push((stream, prepared));
        }
    }

    fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

impl Crawler {
    /// Produces from `source` until shutdown. Failed writes are retried (the same entries),
    /// so delivery is at-least-once; ingest makes repeats harmless. While one round trip is
    /// in flight the next batch is generated and encoded, so the crawler's work overlaps
    /// Redis'; round trips themselves stay one at a time, so each stream keeps its order.
    pub async fn produce(
        self,
        mut source: Source,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        let limit = self.settings().count;
        let pipeline = self.settings().producer.pipeline;
        let mut pacer = Pacer::new(self.settings().rate);
        let mut current = Encoded::default();
        let mut next = Encoded::default();
        let mut exhausted = false;
        while !shutdown.is_cancelled() {
            if self.state() != CrawlState::Running {
                if !self.wait_running(&shutdown).await {
                    break;
                }
                pacer.reset();
                continue;
            }
            if current.is_empty() {
                std::mem::swap(&mut current, &mut next);
            }
            if current.is_empty() {
                let produced = self.produced();
                if (limit > 0 && produced >= limit) || exhausted {
                    tracing::info!(produced, "source finished; staying up for commands");
                    self.set_state(CrawlState::Done).await;
                    continue;
                }
                let due = self.due(&mut pacer, pipeline, 0);
                if due == 0 {
                    sleep_or_shutdown(pacer.wait(), &shutdown).await;
                    continue;
                }
                exhausted = self.take(&mut source, due, &mut current).await;
                if current.is_empty() {
                    continue;
                }
            }
            // One batch ahead at most: while writes fail, nothing more is taken.
            let ahead = if exhausted || !next.is_empty() {
                0
            } else {
                self.due(&mut pacer, pipeline, current.entries)
            };
            let (written, ended) = tokio::join!(self.write(&mut current, &shutdown), async {
                // Let the connection's task put the round trip on the wire before generating
                // (a task woken by this one waits in this worker's LIFO slot until we yield).
                tokio::task::yield_now().await;
                self.take(&mut source, ahead, &mut next).await
            });
            exhausted |= ended;
            match written {
                Ok(()) => tokio::task::yield_now().await,
                Err(e) => {
                    tracing::warn!(error = %e, pending = current.entries, "write failed; retrying");
                    sleep_or_shutdown(Duration::from_secs(1), &shutdown).await;
                }
            }
        }
        let unsent = current.entries + next.entries;
        if unsent > 0 {
            // Taken from the source (a replay file's lines, say) but never acknowledged by
            // Redis: said, so that a stop during a Redis outage does not lose them silently.
            tracing::warn!(unsent, "stopping with entries not written");
        }
        Ok(())
    }

    /// Entries due now, at most `max`, and no more than `COUNT` leaves room for besides what
    /// was written and the `queued` entries taken already.
    fn due(&self, pacer: &mut Pacer, max: usize, queued: usize) -> usize {
        let limit = self.settings().count;
        let mut due = pacer.due(max);
        if limit > 0 {
            let left = limit.saturating_sub(self.produced() + queued as u64);
            due = due.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        due
    }

    /// Moves up to `n` items from the source into `batch`, encoded and sealed; true when the
    /// source ended.
    async fn take(&self, source: &mut Source, n: usize, batch: &mut Encoded) -> bool {
        let ended = self.take_items(source, n, batch).await;
        batch.seal(self.producer());
        ended
    }

    async fn take_items(&self, source: &mut Source, n: usize, batch: &mut Encoded) -> bool {
        let mut taken = 0;
        while taken < n {
            match source.next_item() {
                None => return true,
                Some(Ok(item)) => {
                    batch.push(item);
                    taken += 1;
                }
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

    /// Writes `batch`, its round trips for all streams at once on the shared connection;
    /// what was written leaves `batch`, what failed stays for the retry.
    async fn write(
        &self,
        batch: &mut Encoded,
        shutdown: &CancellationToken,
    ) -> Result<(), BusError> {
        let producer = self.producer();
        let sends =
            std::mem::take(&mut batch.sealed)
                .into_iter()
                .map(|(stream, prepared)| async move {
                    producer.wait_for_capacity(&stream, shutdown).await;
                    let result = producer.send_prepared(&prepared).await;
                    (stream, prepared, result)
                });
        let mut first_error = None;
        for (stream, prepared, result) in join_all(sends).await {
            match result {
                Ok(_) => {
                    batch.entries -= prepared.len();
                    self.add_produced(prepared.len() as u64);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                    batch.sealed.push((stream, prepared));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
