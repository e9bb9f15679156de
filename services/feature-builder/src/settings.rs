//! The feature builder's settings: the worker, the producer of prediction requests and the
//! seed's stream retention, each in its own section.

use bus_core::{ProducerSettings, SettingsError, WorkerSettings};
use commerce::Retention;
use serde::{Deserialize, Serialize};

/// Settings read from the environment (`WORKER__X`, `PRODUCER__X`, `RETENTION__X`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureBuilderSettings {
    /// `WORKER__…`: the consumer-group worker on `events.normalized`; a batch is one
    /// transaction and one upsert of `profile_features`.
    pub worker: WorkerSettings,
    /// `PRODUCER__…`: how prediction requests are written (its `MAXLEN` is replaced by
    /// `RETENTION__PREDICTION_REQUESTS`).
    pub producer: ProducerSettings,
    /// `RETENTION__…`: seed 001's stream lengths, applied with the lag-aware trim.
    pub retention: Retention,
}

impl FeatureBuilderSettings {
    /// Checks the worker knobs, naming the variable of the first bad value.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.worker.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prediction_requests_are_kept_to_the_seeds_length_by_default() {
        let settings = FeatureBuilderSettings::default();
        assert_eq!(
            settings
                .retention
                .maxlen(commerce::names::PREDICTION_REQUESTS),
            Some(5_000)
        );
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn a_bad_worker_knob_names_its_variable() {
        let settings = FeatureBuilderSettings {
            worker: WorkerSettings {
                batch_size: 0,
                ..Default::default()
            },
            ..Default::default()
        };
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("WORKER__BATCH_SIZE"), "{err}");
    }
}
