//! The normalizer's own metrics (the `bus_*` worker metrics come with bus-core).

use bus_core::Metrics;
use bus_core::prometheus::{Counter, EncodeLabelSet, Family};

use crate::identifiers::{KINDS, Rejected};

/// Every `outcome` of `normalizer_events_total`.
pub const OUTCOMES: [&str; 5] = [
    "new_profile",
    "matched",
    "merged_match",
    "anonymous",
    "duplicate",
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    review: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Counters of events by outcome, merge requests raised and identifiers rejected. Every label
/// value is from a fixed list, and each series exists from the start (at 0).
#[derive(Debug, Clone, Default)]
pub struct NormalizerMetrics {
    events: Family<OutcomeLabels, Counter>,
    merge_requests: Family<ReviewLabels, Counter>,
    rejected: Family<KindLabels, Counter>,
}

impl NormalizerMetrics {
    /// Creates and registers the metrics.
    pub fn register(metrics: &Metrics) -> Self {
        let m = NormalizerMetrics::default();
        metrics.register(
            "normalizer_events",
            "Events handled, by outcome (new_profile, matched, merged_match, anonymous, duplicate)",
            m.events.clone(),
        );
        metrics.register(
            "normalizer_merge_requests",
            "Merge requests raised, by whether they need manual review",
            m.merge_requests.clone(),
        );
        metrics.register(
            "normalizer_identifiers_rejected",
            "Identifier fields present but not usable, by kind (other kinds as `other`)",
            m.rejected.clone(),
        );
        // Every series is created at 0, so dashboards and rate() see it before its first event.
        for outcome in OUTCOMES {
            let _ = m.events.get_or_create(&OutcomeLabels { outcome });
        }
        for review in ["true", "false"] {
            let _ = m.merge_requests.get_or_create(&ReviewLabels { review });
        }
        for kind in KINDS.iter().copied().chain(["other"]) {
            let _ = m.rejected.get_or_create(&KindLabels { kind });
        }
        m
    }

    /// One event settled with `outcome` (one of [`OUTCOMES`]).
    pub fn event(&self, outcome: &'static str) {
        self.events.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// One merge request raised.
    pub fn merge_request(&self, requires_review: bool) {
        let review = if requires_review { "true" } else { "false" };
        self.merge_requests
            .get_or_create(&ReviewLabels { review })
            .inc();
    }

    /// Identifier fields of a newly stored event that were not used.
    pub fn rejected(&self, rejected: &[Rejected]) {
        for r in rejected {
            let kind = r.metric_kind();
            self.rejected.get_or_create(&KindLabels { kind }).inc();
        }
    }
}
