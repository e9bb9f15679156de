//! The ingest service's own metrics, on top of the `bus_*` ones.

use std::sync::Arc;

use bus_core::Metrics;
use bus_core::prometheus::{Counter, EncodeLabelSet, Family};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// `ingest_rows_written_total{table}`, `ingest_notifications_total{outcome}` and
/// `ingest_copy_conflicts_total{table}`.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    rows_written: Family<TableLabels, Counter>,
    notifications: Family<OutcomeLabels, Counter>,
    copy_conflicts: Family<TableLabels, Counter>,
}

impl IngestMetrics {
    /// Creates the families and registers them in `metrics`.
    pub fn register(metrics: &Metrics) -> Arc<Self> {
        let m = Arc::new(IngestMetrics::default());
        metrics.register(
            "ingest_rows_written",
            "Rows inserted or updated, by table",
            m.rows_written.clone(),
        );
        metrics.register(
            "ingest_notifications",
            "channel:token:created notifications, by outcome (published, failed)",
            m.notifications.clone(),
        );
        metrics.register(
            "ingest_copy_conflicts",
            "COPY batches that met an already stored key and were written with INSERT … ON CONFLICT instead, by table",
            m.copy_conflicts.clone(),
        );
        m
    }

    /// Counts rows written to `table`.
    pub fn rows(&self, table: &'static str, n: u64) {
        self.rows_written
            .get_or_create(&TableLabels { table })
            .inc_by(n);
    }

    /// Counts one COPY batch that met an existing key (a redelivery or a repeated entry).
    pub fn copy_conflict(&self, table: &'static str) {
        self.copy_conflicts
            .get_or_create(&TableLabels { table })
            .inc();
    }

    /// Counts one notification.
    pub fn notification(&self, outcome: &'static str) {
        self.notifications
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}
