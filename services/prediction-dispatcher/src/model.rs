//! What a model produces, whichever model it is: one [`Prediction`] per requested type, under
//! the model's version.

use bus_core::serde_json::Value;
use commerce::RequestType;

/// Which model answered (the `model` label of the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// The built-in `rfm-v1`.
    Builtin,
    /// The model at `MODEL_URL`.
    External,
}

impl ModelKind {
    /// `builtin` or `external`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Builtin => "builtin",
            ModelKind::External => "external",
        }
    }
}

/// One prediction: a row of `predictions` and an entry of the completion's `predictions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// `Churn`, `Ltv` or `Segment` (never `All`).
    pub kind: RequestType,
    /// Churn probability or lifetime value.
    pub score: Option<f64>,
    /// Segment name.
    pub label: Option<String>,
    /// Inputs and intermediate values, stored in `predictions.details`.
    pub details: Value,
    /// What the completion announces for this type (`{"probability": …}`, `{"value": …}`,
    /// `{"name": …}`).
    pub summary: Value,
}

/// All predictions of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutput {
    /// Who answered.
    pub kind: ModelKind,
    /// The model version, stored with each row.
    pub model_version: String,
    /// One per requested type, in `RequestType::expand` order.
    pub predictions: Vec<Prediction>,
}
