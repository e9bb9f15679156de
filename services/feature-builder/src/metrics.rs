//! The feature builder's own metrics (the worker's `bus_*` metrics come with bus-core).

use bus_core::Metrics;
use bus_core::prometheus::{Counter, EncodeLabelSet, Family};

/// What happened to an event: `applied`, `duplicate`, `anonymous` or `unknown_profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Counted into its profile's features.
    Applied,
    /// Its `event_id` was counted before (a replay or a redelivery): nothing changed.
    Duplicate,
    /// It has no profile: acknowledged without any row.
    Anonymous,
    /// Its profile does not exist: dead-lettered.
    UnknownProfile,
}

impl EventOutcome {
    fn label(self) -> &'static str {
        match self {
            EventOutcome::Applied => "applied",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Anonymous => "anonymous",
            EventOutcome::UnknownProfile => "unknown_profile",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// `feature_builder_*` metrics.
#[derive(Debug, Clone, Default)]
pub struct FeatureMetrics {
    events: Family<OutcomeLabels, Counter>,
    prediction_requests: Counter,
    purchases_without_amount: Counter,
}

impl FeatureMetrics {
    /// Creates and registers the metrics.
    pub fn register(metrics: &Metrics) -> Self {
        let m = FeatureMetrics::default();
        metrics.register(
            "feature_builder_events",
            "Events handled, by outcome (applied, duplicate, anonymous, unknown_profile)",
            m.events.clone(),
        );
        metrics.register(
            "feature_builder_prediction_requests",
            "Prediction requests published on predictions.requests",
            m.prediction_requests.clone(),
        );
        metrics.register(
            "feature_builder_purchases_without_amount",
            "Purchases counted with nothing spent because total, amount and value were all missing or not numeric",
            m.purchases_without_amount.clone(),
        );
        m
    }

    /// Counts `n` events with `outcome`.
    pub fn events(&self, outcome: EventOutcome, n: usize) {
        if n > 0 {
            let labels = OutcomeLabels {
                outcome: outcome.label(),
            };
            self.events.get_or_create(&labels).inc_by(n as u64);
        }
    }

    /// Counts published prediction requests.
    pub fn prediction_requests(&self, n: usize) {
        self.prediction_requests.inc_by(n as u64);
    }

    /// Counts purchases without a usable amount.
    pub fn purchases_without_amount(&self, n: usize) {
        self.purchases_without_amount.inc_by(n as u64);
    }
}
