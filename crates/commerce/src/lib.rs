//! The shared contract of the commerce event pipeline (seed 001): stream, group and channel
//! names, the wire formats of `events.raw`, `events.normalized`, `profiles.merge_requests`,
//! `predictions.requests` and `predictions.completed`, the seed's retention, and the profile
//! lookups every stage needs.
//!
//! ```text
//! gateway ──▶ events.raw ──▶ normalizer ──▶ events.normalized ──▶ feature-builder ──▶ predictions.requests
//!                                 └──────▶ profiles.merge_requests ──▶ merge-processor ──┘        │
//!                                                               prediction-dispatcher ◀───────────┘
//!                                      predictions.completed + channel:predictions:completed ◀──┘
//! ```

pub mod messages;
pub mod names;
pub mod profiles;
mod retention;

pub use messages::{
    MergeReason, MergeRequest, NormalizedEvent, PredictionCompleted, PredictionRequest, RawEvent,
    RequestType,
};
pub use retention::Retention;
