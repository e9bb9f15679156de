//! The merge processor's own metrics (the `bus_*` worker and lease metrics come on top).

use bus_core::Metrics;
use bus_core::prometheus::{Counter, EncodeLabelSet, Family, Gauge};

/// How a merge request was settled (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Profiles merged into the oldest.
    Merged,
    /// Queued for a person to decide.
    QueuedForReview,
    /// All its profiles already lived on one survivor.
    AlreadyMerged,
    /// The same request (same key) was applied before: nothing done again.
    Replayed,
    /// Dead-lettered by a rule.
    Rejected,
}

impl Settled {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Settled::Merged => "merged",
            Settled::QueuedForReview => "queued_for_review",
            Settled::AlreadyMerged => "already_merged",
            Settled::Replayed => "replayed",
            Settled::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// `merge_processor_*` metrics.
#[derive(Debug, Clone, Default)]
pub struct MergeMetrics {
    requests: Family<OutcomeLabels, Counter>,
    /// `merge_processor_active`: 1 while this instance holds the lease and consumes.
    pub active: Gauge,
    /// `merge_processor_takeovers_total`: times this instance became the active one.
    pub takeovers: Counter,
    /// `merge_processor_fenced_total`: batches refused because a newer holder had written.
    pub fenced: Counter,
}

impl MergeMetrics {
    /// Creates and registers the metrics.
    pub fn register(metrics: &Metrics) -> Self {
        let m = MergeMetrics::default();
        metrics.register(
            "merge_processor_requests",
            "Merge requests settled, by outcome (merged, queued_for_review, already_merged, \
             replayed, rejected)",
            m.requests.clone(),
        );
        metrics.register(
            "merge_processor_active",
            "1 while this instance holds the lease and consumes, 0 while it is a standby",
            m.active.clone(),
        );
        metrics.register(
            "merge_processor_takeovers",
            "Times this instance acquired the lease and became the active one",
            m.takeovers.clone(),
        );
        metrics.register(
            "merge_processor_fenced",
            "Batches refused at commit because a newer lease holder had written",
            m.fenced.clone(),
        );
        m
    }

    /// Counts settled requests (after their transaction committed).
    pub fn settled(&self, outcomes: &[Settled]) {
        for outcome in outcomes {
            let labels = OutcomeLabels {
                outcome: outcome.as_str(),
            };
            self.requests.get_or_create(&labels).inc();
        }
    }
}
