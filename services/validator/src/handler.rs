//! The consumer-group handler: validate a batch, then record it in one transaction.

use bus_core::prometheus::{Counter, EncodeLabelSet, Family};
use bus_core::serde_json::Value;
use bus_core::sqlx::PgPool;
use bus_core::{Batch, DeadLetter, Handler, HandlerError, Metrics, Outcome, inbox};

use crate::message::RawItem;
use crate::rules;
use crate::store::{self, ItemRow, Origin};

/// Labels of `validator_validation_errors_total` (codes and fields are a fixed set).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    code: String,
    field: String,
}

/// Labels of `validator_items_total`: `done` or `error`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

/// The validator's own metrics.
#[derive(Debug, Clone, Default)]
pub struct ValidatorMetrics {
    errors: Family<ErrorLabels, Counter>,
    items: Family<OutcomeLabels, Counter>,
}

impl ValidatorMetrics {
    /// Creates and registers the metrics.
    pub fn register(metrics: &Metrics) -> Self {
        let m = ValidatorMetrics::default();
        metrics.register(
            "validator_validation_errors",
            "Broken validation rules, by seed error code and field",
            m.errors.clone(),
        );
        metrics.register(
            "validator_items",
            "Items settled, by outcome (done = valid, error = broke a rule)",
            m.items.clone(),
        );
        m
    }

    fn record(&self, rows: &[ItemRow]) {
        for row in rows {
            let outcome = OutcomeLabels {
                outcome: row.status().into(),
            };
            self.items.get_or_create(&outcome).inc();
            for p in &row.problems {
                let labels = ErrorLabels {
                    code: p.code.to_string(),
                    field: p.field.into(),
                };
                self.errors.get_or_create(&labels).inc();
            }
        }
    }
}

/// Validates `raw_items` entries and writes them, effectively once.
#[derive(Debug)]
pub struct Validator {
    pool: PgPool,
    metrics: ValidatorMetrics,
    /// Where dead letters are recorded from (the hook gets no batch).
    stream: String,
    group: String,
    consumer: String,
}

impl Validator {
    /// A handler writing to `pool`; `stream` is the full (namespaced) stream key.
    pub fn new(
        pool: PgPool,
        metrics: ValidatorMetrics,
        stream: String,
        group: String,
        consumer: String,
    ) -> Self {
        Validator {
            pool,
            metrics,
            stream,
            group,
            consumer,
        }
    }
}

impl Handler for Validator {
    type Message = RawItem;

    /// Validity is a verdict, not a failure: an invalid item is stored with status `error` and
    /// its codes, and acknowledged. Only database trouble fails the call (and is retried).
    async fn handle(&self, batch: Batch<'_, RawItem>) -> Result<Outcome, HandlerError> {
        let mut tx = self.pool.begin().await?;
        let fresh = inbox::claim(&mut tx, batch.stream, batch.group, &batch.ids()).await?;
        if fresh.is_empty() {
            tx.commit().await?;
            return Ok(Outcome::done());
        }
        let rows: Vec<ItemRow> = batch
            .entries
            .iter()
            .filter(|d| fresh.contains(&d.id))
            .map(|d| ItemRow {
                id: d.id,
                problems: rules::validate(&d.message.data),
                retry_count: i32::try_from(d.deliveries.saturating_sub(1)).unwrap_or(i32::MAX),
                processing_ms: d.id.age_seconds() * 1000.0,
                source: d.message.source.clone(),
                producer: d.message.producer.clone(),
                batch_id: d.message.batch_id.clone(),
                timestamp: d.message.timestamp.clone(),
                data: Value::Object(d.message.data.clone()),
            })
            .collect();
        let origin = Origin {
            stream: batch.stream,
            group: batch.group,
            consumer: batch.consumer,
        };
        store::insert_items(&mut tx, origin, &rows).await?;
        store::add_consumer_stats(&mut tx, origin, &rows).await?;
        store::add_processing_metrics(&mut tx, batch.stream, &rows).await?;
        tx.commit().await?;
        self.metrics.record(&rows);
        Ok(Outcome::done())
    }

    /// Marks dead-lettered entries as permanent errors in `raw_items` (code 900, or 901 for an
    /// undecodable entry). Best effort: the dead-letter stream keeps the entry either way.
    async fn dead_lettered(&self, letters: &[DeadLetter]) {
        let origin = Origin {
            stream: &self.stream,
            group: &self.group,
            consumer: &self.consumer,
        };
        match store::mark_dead_letters(&self.pool, origin, letters).await {
            Ok(n) => tracing::info!(
                count = n,
                "recorded dead-lettered entries as permanent errors"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                count = letters.len(),
                "could not record dead-lettered entries in raw_items; they remain in the dead-letter stream"
            ),
        }
    }
}
