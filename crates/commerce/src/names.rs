//! Stream, consumer-group and channel names, as seed 001 fixes them.

/// Raw events as they arrive (gateway → normalizer).
pub const EVENTS_RAW: &str = "events.raw";
/// Events after normalisation and profile matching (normalizer → feature builder).
pub const EVENTS_NORMALIZED: &str = "events.normalized";
/// Profile merge requests (normalizer → merge processor).
pub const MERGE_REQUESTS: &str = "profiles.merge_requests";
/// Prediction requests (gateway, feature builder, merge processor → prediction dispatcher).
pub const PREDICTION_REQUESTS: &str = "predictions.requests";
/// Completed predictions, the durable half of the hybrid event.
pub const PREDICTIONS_COMPLETED: &str = "predictions.completed";
/// Completed predictions, the real-time half of the hybrid event.
pub const PREDICTIONS_COMPLETED_CHANNEL: &str = "channel:predictions:completed";

/// The normalizer's group on [`EVENTS_RAW`].
pub const NORMALIZERS: &str = "normalizers";
/// The feature builder's group on [`EVENTS_NORMALIZED`].
pub const EVENT_PROCESSORS: &str = "event-processors";
/// The merge processor's group on [`MERGE_REQUESTS`].
pub const MERGE_PROCESSORS: &str = "merge-processors";
/// The prediction dispatcher's group on [`PREDICTION_REQUESTS`].
pub const PREDICTION_PROCESSORS: &str = "prediction-processors";
