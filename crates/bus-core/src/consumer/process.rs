//! One batch from read to acknowledgement: decode, handle (retrying transient failures and
//! splitting on permanent ones), then dead-letter and acknowledge in one atomic round trip.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::handler::{Batch, DeadLetter, Delivery, Handler, HandlerError};
use crate::backoff::Backoff;
use crate::connection::Redis;
use crate::entry::{EntryId, RawEntry};
use crate::error::is_nogroup;
use crate::message::{DecodeError, StreamMessage};
use crate::metrics::{FailureLabels, GroupLabels, Metrics};
use crate::settings::WorkerSettings;
use crate::telemetry;

/// Everything the reader and the batch tasks of one worker share.
pub(crate) struct Shared<H> {
    pub handler: H,
    pub redis: Redis,
    pub metrics: Arc<Metrics>,
    pub stream: String,
    pub dlq: String,
    pub group: String,
    pub consumer: String,
    pub settings: WorkerSettings,
    pub labels: GroupLabels,
    /// Entries being handled right now, so a reclaim scan never hands us our own work twice.
    pub in_flight: Mutex<HashSet<EntryId>>,
}

/// An entry read from Redis with its delivery count.
pub(crate) struct Pending {
    pub entry: RawEntry,
    pub deliveries: u64,
}

impl<H: Handler> Shared<H> {
    fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.settings.retry_base_ms),
            Duration::from_millis(self.settings.retry_max_ms),
        )
    }

    fn count_failure(&self, kind: &str, n: usize) {
        let labels = FailureLabels::new(&self.stream, &self.group, kind);
        self.metrics
            .streams
            .failed
            .get_or_create(&labels)
            .inc_by(n as u64);
    }

    /// Processes one batch to the end. `shutdown` stops retrying transient failures (the
    /// entries stay pending and are redelivered); `hard_stop` (the drain deadline) stops
    /// retrying the final acknowledgement.
    pub async fn process(
        &self,
        batch: Vec<Pending>,
        shutdown: &CancellationToken,
        hard_stop: &CancellationToken,
    ) {
        let ids: Vec<EntryId> = batch.iter().map(|p| p.entry.id).collect();
        let span = tracing::info_span!("stream.batch", stream = %self.stream, group = %self.group, size = batch.len());
        async {
            let mut settled = Settled::default();
            let deliveries = self.decode(batch, &mut settled);
            self.handle(deliveries, &mut settled, shutdown).await;
            self.finalize(settled, hard_stop).await;
        }
        .instrument(span)
        .await;
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            in_flight.remove(&id);
        }
    }

    fn decode(&self, batch: Vec<Pending>, settled: &mut Settled) -> Vec<Delivery<H::Message>> {
        let max = self.settings.max_deliveries;
        let mut out = Vec::with_capacity(batch.len());
        for Pending { entry, deliveries } in batch {
            let Some(fields) = entry.fields else {
                // Still pending but its data was trimmed: nothing to process, just release it.
                self.metrics
                    .streams
                    .pending_trimmed
                    .get_or_create(&self.labels)
                    .inc();
                tracing::warn!(entry_id = %entry.id, "{}", DecodeError::Trimmed);
                settled.acked.push(entry.id);
                continue;
            };
            if deliveries > max {
                // Delivered again and again without an ack: the worker died on it each time.
                settled.dead.push(DeadLetter {
                    id: entry.id,
                    fields,
                    kind: "max_deliveries",
                    reason: format!(
                        "delivered {deliveries} times (max {max}) without being acknowledged"
                    ),
                    deliveries,
                });
                continue;
            }
            match H::Message::decode(&fields) {
                Ok(message) => out.push(Delivery {
                    span: telemetry::entry_span(&self.stream, entry.id, &fields),
                    id: entry.id,
                    message,
                    fields,
                    deliveries,
                }),
                Err(e) => {
                    self.count_failure("decode", 1);
                    tracing::warn!(entry_id = %entry.id, error = %e, "undecodable entry");
                    settled.dead.push(DeadLetter {
                        id: entry.id,
                        fields,
                        kind: "decode",
                        reason: e.to_string(),
                        deliveries,
                    });
                }
            }
        }
        out
    }

    async fn handle(
        &self,
        mut deliveries: Vec<Delivery<H::Message>>,
        settled: &mut Settled,
        shutdown: &CancellationToken,
    ) {
        // Ranges still to settle; a failing range is split in two until the culprits are alone.
        let mut work: Vec<Range<usize>> = Vec::new();
        work.push(0..deliveries.len());
        while let Some(range) = work.pop() {
            if range.is_empty() {
                continue;
            }
            let mut backoff = self.backoff();
            loop {
                let slice = &deliveries[range.clone()];
                let started = Instant::now();
                let result = self
                    .handler
                    .handle(Batch {
                        stream: &self.stream,
                        group: &self.group,
                        consumer: &self.consumer,
                        entries: slice,
                    })
                    .await;
                let m = &self.metrics.streams;
                m.handler_seconds
                    .get_or_create(&self.labels)
                    .observe(started.elapsed().as_secs_f64());
                m.batch_size
                    .get_or_create(&self.labels)
                    .observe(slice.len() as f64);
                match result {
                    Ok(outcome) => {
                        let rejected: std::collections::HashMap<_, _> =
                            outcome.rejected.into_iter().collect();
                        for d in slice {
                            match rejected.get(&d.id) {
                                Some(reason) => settled.dead.push(dead(d, "permanent", reason)),
                                None => settled.acked.push(d.id),
                            }
                        }
                        break;
                    }
                    Err(HandlerError::Permanent(e)) => {
                        self.count_failure("permanent", slice.len());
                        if slice.len() == 1 {
                            tracing::warn!(entry_id = %slice[0].id, error = %format!("{e:#}"), "entry rejected");
                            settled
                                .dead
                                .push(dead(&slice[0], "permanent", &format!("{e:#}")));
                        } else {
                            tracing::debug!(size = slice.len(), error = %format!("{e:#}"), "batch failed permanently; splitting");
                            split(&mut work, range);
                        }
                        break;
                    }
                    Err(HandlerError::Unavailable(e)) => {
                        // An outage is not the entries' fault: retry without counting a
                        // delivery, for as long as it lasts (or until shutdown).
                        self.count_failure("unavailable", slice.len());
                        tracing::warn!(size = slice.len(), error = %format!("{e:#}"), "dependency unavailable; will retry");
                        m.retried
                            .get_or_create(&self.labels)
                            .inc_by(slice.len() as u64);
                        if !backoff.wait(shutdown).await {
                            return;
                        }
                    }
                    Err(HandlerError::Transient(e)) => {
                        self.count_failure("transient", slice.len());
                        let max = self.settings.max_deliveries;
                        if slice.iter().any(|d| d.deliveries >= max) {
                            if slice.len() == 1 {
                                let reason = format!("gave up after {max} deliveries: {e:#}");
                                tracing::warn!(entry_id = %slice[0].id, %reason, "dead-lettering");
                                settled
                                    .dead
                                    .push(dead(&slice[0], "max_deliveries", &reason));
                            } else {
                                split(&mut work, range);
                            }
                            break;
                        }
                        tracing::warn!(size = slice.len(), error = %format!("{e:#}"), "transient failure; will retry");
                        m.retried
                            .get_or_create(&self.labels)
                            .inc_by(slice.len() as u64);
                        for d in &mut deliveries[range.clone()] {
                            d.deliveries += 1;
                        }
                        if !backoff.wait(shutdown).await {
                            // Shutting down: leave the rest pending; it will be redelivered.
                            return;
                        }
                    }
                }
            }
        }
    }

    async fn finalize(&self, settled: Settled, hard_stop: &CancellationToken) {
        if settled.acked.is_empty() && settled.dead.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for letter in &settled.dead {
            let cmd = pipe.cmd("XADD").arg(&self.dlq).arg("*");
            for (k, v) in letter.fields.iter() {
                cmd.arg(k).arg(v);
            }
            cmd.arg("dlq_reason")
                .arg(&letter.reason)
                .arg("dlq_kind")
                .arg(letter.kind)
                .arg("dlq_original_id")
                .arg(letter.id.to_string())
                .arg("dlq_stream")
                .arg(&self.stream)
                .arg("dlq_group")
                .arg(&self.group)
                .arg("dlq_consumer")
                .arg(&self.consumer)
                .arg("dlq_deliveries")
                .arg(letter.deliveries)
                .arg("dlq_failed_at")
                .arg(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .ignore();
        }
        let all: Vec<String> = settled
            .acked
            .iter()
            .chain(settled.dead.iter().map(|d| &d.id))
            .map(EntryId::to_string)
            .collect();
        pipe.cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&all)
            .ignore();

        let started = Instant::now();
        let mut conn = self.redis.shared();
        let mut backoff = self.backoff();
        loop {
            match pipe.query_async::<()>(&mut conn).await {
                Ok(()) => break,
                Err(e) if is_nogroup(&e) => {
                    tracing::warn!("group vanished before the ack; the entries will be replayed");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, entries = all.len(), "ack failed; retrying");
                    if !backoff.wait(hard_stop).await {
                        tracing::error!(
                            entries = all.len(),
                            "drain deadline passed before the ack; the entries stay pending and will be redelivered"
                        );
                        return;
                    }
                }
            }
        }
        let m = &self.metrics.streams;
        m.ack_seconds
            .get_or_create(&self.labels)
            .observe(started.elapsed().as_secs_f64());
        m.acked.get_or_create(&self.labels).inc_by(all.len() as u64);
        {
            let latency = m.end_to_end_seconds.get_or_create(&self.labels);
            // One clock read per batch, not per entry.
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            for id in &settled.acked {
                latency.observe(now_ms.saturating_sub(id.ms) as f64 / 1000.0);
            }
        }
        if !settled.dead.is_empty() {
            for letter in &settled.dead {
                let labels = FailureLabels::new(&self.stream, &self.group, letter.kind);
                m.dead_lettered.get_or_create(&labels).inc();
            }
            self.handler.dead_lettered(&settled.dead).await;
        }
    }
}

/// The result of handling one batch: what to acknowledge and what to dead-letter first.
#[derive(Default)]
struct Settled {
    acked: Vec<EntryId>,
    dead: Vec<DeadLetter>,
}

fn dead<M>(d: &Delivery<M>, kind: &'static str, reason: &str) -> DeadLetter {
    DeadLetter {
        id: d.id,
        fields: d.fields.clone(),
        kind,
        reason: reason.to_owned(),
        deliveries: d.deliveries,
    }
}

/// Pushes the two halves of `range`, the first half on top so stream order is kept.
fn split(work: &mut Vec<Range<usize>>, range: Range<usize>) {
    let mid = range.start + range.len() / 2;
    work.push(mid..range.end);
    work.push(range.start..mid);
}
