//! The dispatcher's own metrics (the worker's `bus_*` metrics come with bus-core).

use bus_core::Metrics;
use bus_core::prometheus::{Counter, EncodeLabelSet, Family, Histogram};
use bus_core::prometheus_client::metrics::histogram::exponential_buckets;

use crate::model::ModelKind;

/// Why a call to the external model failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelErrorKind {
    /// No answer within `MODEL_TIMEOUT_MS`.
    Timeout,
    /// Connection refused or lost, or a 502 / 503 / 504 / 408 / 429 answer.
    Unavailable,
    /// Another 5xx answer: the model is up but failed on the request.
    Failed,
    /// A 4xx answer, or an answer that is not what the contract says.
    BadResponse,
}

impl ModelErrorKind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelErrorKind::Timeout => "timeout",
            ModelErrorKind::Unavailable => "unavailable",
            ModelErrorKind::Failed => "failed",
            ModelErrorKind::BadResponse => "bad_response",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PredictionLabels {
    r#type: &'static str,
    model: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: &'static str,
}

type HistogramFamily = Family<ModelLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 0.1 ms … ~13 s: a built-in answer takes microseconds, an external one up to
    // MODEL_TIMEOUT_MS × (MODEL_RETRIES + 1) plus backoff.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// `prediction_dispatcher_*` metrics.
#[derive(Debug, Clone)]
pub struct DispatcherMetrics {
    predictions: Family<PredictionLabels, Counter>,
    model_errors: Family<ErrorLabels, Counter>,
    model_duration: HistogramFamily,
}

impl Default for DispatcherMetrics {
    fn default() -> Self {
        DispatcherMetrics {
            predictions: Family::default(),
            model_errors: Family::default(),
            model_duration: Family::new_with_constructor(duration_histogram),
        }
    }
}

impl DispatcherMetrics {
    /// Creates and registers the metrics.
    pub fn register(metrics: &Metrics) -> Self {
        let m = DispatcherMetrics::default();
        metrics.register(
            "prediction_dispatcher_predictions",
            "Predictions written, by type (churn, ltv, segment) and model (builtin, external)",
            m.predictions.clone(),
        );
        metrics.register(
            "prediction_dispatcher_model_errors",
            "Failed calls to the external model, by kind (timeout, unavailable, failed, bad_response)",
            m.model_errors.clone(),
        );
        metrics.register(
            "prediction_dispatcher_model_duration_seconds",
            "Time to answer one request, by model (external: every attempt and backoff included)",
            m.model_duration.clone(),
        );
        m
    }

    /// Counts one written prediction.
    pub fn prediction(&self, kind: commerce::RequestType, model: ModelKind) {
        let labels = PredictionLabels {
            r#type: kind.as_str(),
            model: model.as_str(),
        };
        self.predictions.get_or_create(&labels).inc();
    }

    /// Counts one failed call.
    pub fn model_error(&self, kind: ModelErrorKind) {
        let labels = ErrorLabels {
            kind: kind.as_str(),
        };
        self.model_errors.get_or_create(&labels).inc();
    }

    /// Records how long a model took for one request.
    pub fn model_duration(&self, model: ModelKind, seconds: f64) {
        let labels = ModelLabels {
            model: model.as_str(),
        };
        self.model_duration.get_or_create(&labels).observe(seconds);
    }
}
