//! The normalizer's settings: stream and group at the top level, then the worker, producer and
//! retention sections.

use bus_core::{ProducerSettings, SettingsError, WorkerSettings};
use commerce::{Retention, names};
use serde::{Deserialize, Serialize};

/// Settings read from the environment (upper-case names; sections joined with `__`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NormalizerSettings {
    /// `STREAM`: the stream of raw events.
    pub stream: String,
    /// `GROUP`: the consumer group every normalizer replica joins.
    pub group: String,
    /// `WORKER__…`: the consumer-group worker.
    pub worker: WorkerSettings,
    /// `PRODUCER__…`: how `events.normalized` and `profiles.merge_requests` are written and
    /// trimmed; their `MAXLEN` comes from `RETENTION__…`.
    pub producer: ProducerSettings,
    /// `RETENTION__…`: entries kept per stream (seed 001's values).
    pub retention: Retention,
}

impl Default for NormalizerSettings {
    fn default() -> Self {
        NormalizerSettings {
            stream: names::EVENTS_RAW.into(),
            group: names::NORMALIZERS.into(),
            worker: WorkerSettings::default(),
            producer: ProducerSettings::default(),
            retention: Retention::default(),
        }
    }
}

impl NormalizerSettings {
    /// Checks the values, naming the variable of the first bad one.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.stream.trim().is_empty() {
            return Err(SettingsError::invalid("STREAM", "must not be empty"));
        }
        if self.group.trim().is_empty() {
            return Err(SettingsError::invalid("GROUP", "must not be empty"));
        }
        if self.producer.pipeline == 0 {
            return Err(SettingsError::invalid(
                "PRODUCER__PIPELINE",
                "must be at least 1",
            ));
        }
        self.worker.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds_names_and_retention() {
        let s = NormalizerSettings::default();
        assert_eq!(
            (s.stream.as_str(), s.group.as_str()),
            ("events.raw", "normalizers")
        );
        assert_eq!(s.retention.maxlen(names::EVENTS_NORMALIZED), Some(10_000));
        assert_eq!(s.retention.maxlen(names::MERGE_REQUESTS), Some(1_000));
        assert!(s.validate().is_ok());
    }

    #[test]
    fn an_empty_group_is_refused_naming_the_variable() {
        let s = NormalizerSettings {
            group: " ".into(),
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("GROUP"));
    }

    #[test]
    fn the_readme_documents_every_variable_with_its_default() {
        let problems =
            bus_core::settings::readme_problems::<NormalizerSettings>(include_str!("../README.md"));
        assert!(problems.is_empty(), "README.md: {problems:#?}");
    }
}
