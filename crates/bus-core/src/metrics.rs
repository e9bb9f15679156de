//! Typed Prometheus metrics with bounded labels (stream, group, channel, outcome, kind).
//!
//! One [`Metrics`] value per process holds the registry; `bus-core` records its own families
//! and services register theirs with [`Metrics::register`].

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

/// Labels of per-stream metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// Stream key.
    pub stream: String,
}

/// Labels of per-consumer-group metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// Stream key.
    pub stream: String,
    /// Consumer group.
    pub group: String,
}

/// Labels of failure metrics: `kind` is `transient`, `permanent`, `decode` or `max_deliveries`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// Stream key.
    pub stream: String,
    /// Consumer group.
    pub group: String,
    /// Failure class.
    pub kind: String,
}

/// Labels of trim metrics: `forced` is `true` when a hard cap removed unacknowledged entries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrimLabels {
    /// Stream key.
    pub stream: String,
    /// Whether the hard cap forced the trim.
    pub forced: String,
}

/// Labels of Pub/Sub metrics: `outcome` is `ok`, `invalid`, `failed` or `dropped`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    /// Channel name, or the pattern for pattern subscriptions (bounded either way).
    pub channel: String,
    /// What happened to the message.
    pub outcome: String,
}

/// Labels of connection metrics: `role` is `shared`, `blocking` or `pubsub`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    /// Which connection.
    pub role: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn batch_histogram() -> Histogram {
    // 1 … 4096 entries
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// Stream metrics recorded by producers and consumer-group workers.
#[derive(Debug)]
pub struct StreamMetrics {
    /// `bus_entries_produced_total`
    pub produced: Family<StreamLabels, Counter>,
    /// `bus_entries_consumed_total`: entries read (new, own pending or reclaimed).
    pub consumed: Family<GroupLabels, Counter>,
    /// `bus_entries_acked_total`
    pub acked: Family<GroupLabels, Counter>,
    /// `bus_entries_failed_total`: failed handler attempts per entry, by kind.
    pub failed: Family<FailureLabels, Counter>,
    /// `bus_entries_retried_total`: entries retried after a transient failure.
    pub retried: Family<GroupLabels, Counter>,
    /// `bus_entries_dead_lettered_total`, by kind.
    pub dead_lettered: Family<FailureLabels, Counter>,
    /// `bus_entries_reclaimed_total`: entries taken over from idle consumers.
    pub reclaimed: Family<GroupLabels, Counter>,
    /// `bus_pending_trimmed_total`: pending entries whose data had been trimmed.
    pub pending_trimmed: Family<GroupLabels, Counter>,
    /// `bus_entries_trimmed_total`: entries removed by trimming.
    pub trimmed: Family<TrimLabels, Counter>,
    /// `bus_batch_size`
    pub batch_size: HistogramFamily<GroupLabels>,
    /// `bus_handler_duration_seconds`: one handler call (its database commit included).
    pub handler_seconds: HistogramFamily<GroupLabels>,
    /// `bus_ack_duration_seconds`: the XACK (and dead-letter XADD) round trip.
    pub ack_seconds: HistogramFamily<GroupLabels>,
    /// `bus_end_to_end_latency_seconds`: ack time minus the entry ID's time.
    pub end_to_end_seconds: HistogramFamily<GroupLabels>,
    /// `bus_consumer_lag`: entries not yet delivered to the group.
    pub lag: Family<GroupLabels, Gauge>,
    /// `bus_pending_entries`: delivered but not acknowledged.
    pub pending: Family<GroupLabels, Gauge>,
    /// `bus_oldest_pending_age_seconds`
    pub oldest_pending_age: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    /// `bus_stream_length`
    pub stream_length: Family<StreamLabels, Gauge>,
    /// `bus_dead_letter_length`: entries in `<stream>:dlq`.
    pub dead_letter_length: Family<StreamLabels, Gauge>,
}

/// Pub/Sub and connection metrics.
#[derive(Debug, Default)]
pub struct PubSubMetrics {
    /// `bus_pubsub_published_total`
    pub published: Family<ChannelLabels, Counter>,
    /// `bus_pubsub_received_total`, by outcome.
    pub received: Family<ChannelLabels, Counter>,
    /// `bus_redis_reconnects_total`, by connection role.
    pub reconnects: Family<RoleLabels, Counter>,
}

/// The process's metrics registry and the core metric families.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Stream metrics.
    pub streams: StreamMetrics,
    /// Pub/Sub and connection metrics.
    pub pubsub: PubSubMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every core family registered.
    pub fn new() -> Self {
        let streams = StreamMetrics {
            produced: Family::default(),
            consumed: Family::default(),
            acked: Family::default(),
            failed: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            reclaimed: Family::default(),
            pending_trimmed: Family::default(),
            trimmed: Family::default(),
            batch_size: Family::new_with_constructor(batch_histogram),
            handler_seconds: Family::new_with_constructor(latency_histogram),
            ack_seconds: Family::new_with_constructor(latency_histogram),
            end_to_end_seconds: Family::new_with_constructor(latency_histogram),
            lag: Family::default(),
            pending: Family::default(),
            oldest_pending_age: Family::default(),
            stream_length: Family::default(),
            dead_letter_length: Family::default(),
        };
        let pubsub = PubSubMetrics::default();
        let mut r = Registry::default();
        let s = &streams;
        r.register(
            "bus_entries_produced",
            "Entries appended to streams",
            s.produced.clone(),
        );
        r.register(
            "bus_entries_consumed",
            "Entries read by consumer groups",
            s.consumed.clone(),
        );
        r.register("bus_entries_acked", "Entries acknowledged", s.acked.clone());
        r.register(
            "bus_entries_failed",
            "Failed handler attempts, by kind",
            s.failed.clone(),
        );
        r.register(
            "bus_entries_retried",
            "Entries retried after a transient failure",
            s.retried.clone(),
        );
        r.register(
            "bus_entries_dead_lettered",
            "Entries moved to the dead-letter stream",
            s.dead_lettered.clone(),
        );
        r.register(
            "bus_entries_reclaimed",
            "Entries reclaimed from idle consumers",
            s.reclaimed.clone(),
        );
        r.register(
            "bus_pending_trimmed",
            "Pending entries whose data had been trimmed",
            s.pending_trimmed.clone(),
        );
        r.register(
            "bus_entries_trimmed",
            "Entries removed by trimming",
            s.trimmed.clone(),
        );
        r.register(
            "bus_batch_size",
            "Entries per handled batch",
            s.batch_size.clone(),
        );
        r.register(
            "bus_handler_duration_seconds",
            "Handler call duration",
            s.handler_seconds.clone(),
        );
        r.register(
            "bus_ack_duration_seconds",
            "Acknowledgement round-trip duration",
            s.ack_seconds.clone(),
        );
        r.register(
            "bus_end_to_end_latency_seconds",
            "Entry creation to acknowledgement",
            s.end_to_end_seconds.clone(),
        );
        r.register(
            "bus_consumer_lag",
            "Entries not yet delivered to the group",
            s.lag.clone(),
        );
        r.register(
            "bus_pending_entries",
            "Entries delivered but not acknowledged",
            s.pending.clone(),
        );
        r.register(
            "bus_oldest_pending_age_seconds",
            "Age of the oldest pending entry",
            s.oldest_pending_age.clone(),
        );
        r.register(
            "bus_stream_length",
            "Entries in the stream",
            s.stream_length.clone(),
        );
        r.register(
            "bus_dead_letter_length",
            "Entries in the dead-letter stream",
            s.dead_letter_length.clone(),
        );
        let p = &pubsub;
        r.register(
            "bus_pubsub_published",
            "Messages published",
            p.published.clone(),
        );
        r.register(
            "bus_pubsub_received",
            "Messages received, by outcome",
            p.received.clone(),
        );
        r.register(
            "bus_redis_reconnects",
            "Redis reconnections, by connection role",
            p.reconnects.clone(),
        );
        Metrics {
            registry: Mutex::new(r),
            streams,
            pubsub,
        }
    }

    /// Registers a service metric under its full name (no `bus_` prefix is added).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.register(name, help, metric);
    }

    /// The registry in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        out
    }
}

impl GroupLabels {
    /// Labels for `stream` / `group`.
    pub fn new(stream: &str, group: &str) -> Self {
        GroupLabels {
            stream: stream.to_owned(),
            group: group.to_owned(),
        }
    }
}

impl FailureLabels {
    /// Labels for `stream` / `group` / `kind`.
    pub fn new(stream: &str, group: &str, kind: &str) -> Self {
        FailureLabels {
            stream: stream.to_owned(),
            group: group.to_owned(),
            kind: kind.to_owned(),
        }
    }
}

impl StreamLabels {
    /// Labels for `stream`.
    pub fn new(stream: &str) -> Self {
        StreamLabels {
            stream: stream.to_owned(),
        }
    }
}

impl ChannelLabels {
    /// Labels for `channel` / `outcome`.
    pub fn new(channel: &str, outcome: &str) -> Self {
        ChannelLabels {
            channel: channel.to_owned(),
            outcome: outcome.to_owned(),
        }
    }
}

impl RoleLabels {
    /// Labels for a connection role.
    pub fn new(role: &str) -> Self {
        RoleLabels {
            role: role.to_owned(),
        }
    }
}
