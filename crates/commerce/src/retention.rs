//! How long each commerce stream is kept: seed 001's `MAXLEN` values, applied with the
//! lag-aware trim so entries a group has not acknowledged are never removed.

use bus_core::{Bus, Producer, ProducerSettings};
use serde::{Deserialize, Serialize};

use crate::names;

/// Approximate entries kept per stream (section `RETENTION__`; `0` keeps everything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Retention {
    /// `RETENTION__EVENTS_RAW`: `events.raw`.
    pub events_raw: u64,
    /// `RETENTION__EVENTS_NORMALIZED`: `events.normalized`.
    pub events_normalized: u64,
    /// `RETENTION__MERGE_REQUESTS`: `profiles.merge_requests`.
    pub merge_requests: u64,
    /// `RETENTION__PREDICTION_REQUESTS`: `predictions.requests`.
    pub prediction_requests: u64,
    /// `RETENTION__PREDICTIONS_COMPLETED`: `predictions.completed`.
    pub predictions_completed: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            events_raw: 10_000,
            events_normalized: 10_000,
            merge_requests: 1_000,
            prediction_requests: 5_000,
            predictions_completed: 5_000,
        }
    }
}

impl Retention {
    /// The retention of `stream` (a name from [`names`]); `None` for other streams.
    pub fn maxlen(&self, stream: &str) -> Option<u64> {
        match stream {
            names::EVENTS_RAW => Some(self.events_raw),
            names::EVENTS_NORMALIZED => Some(self.events_normalized),
            names::MERGE_REQUESTS => Some(self.merge_requests),
            names::PREDICTION_REQUESTS => Some(self.prediction_requests),
            names::PREDICTIONS_COMPLETED => Some(self.predictions_completed),
            _ => None,
        }
    }

    /// A producer for `stream` with `base`'s settings and this stream's retention as its
    /// `maxlen` (streams without a seed retention keep `base.maxlen`). Run its
    /// [`Producer::run_trimmer`] to apply the retention.
    pub fn producer(&self, bus: &Bus, base: &ProducerSettings, stream: &str) -> Producer {
        let settings = ProducerSettings {
            maxlen: self.maxlen(stream).unwrap_or(base.maxlen),
            ..base.clone()
        };
        bus.producer(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds_values() {
        let r = Retention::default();
        assert_eq!(r.maxlen("events.raw"), Some(10_000));
        assert_eq!(r.maxlen("events.normalized"), Some(10_000));
        assert_eq!(r.maxlen("profiles.merge_requests"), Some(1_000));
        assert_eq!(r.maxlen("predictions.requests"), Some(5_000));
        assert_eq!(r.maxlen("raw_items"), None);
    }
}
