//! The merge processor's settings: the stream and group at the top level, then the worker,
//! producer, retention and lease sections (`WORKER__…`, `PRODUCER__…`, `RETENTION__…`,
//! `LEASE__…`).

use bus_core::{LeaseSettings, ProducerSettings, SettingsError, WorkerSettings};
use commerce::{Retention, names};
use serde::{Deserialize, Serialize};

/// Settings read from the environment (upper-case names, sections joined with `__`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MergeSettings {
    /// `STREAM`: the stream of merge requests.
    pub stream: String,
    /// `GROUP`: the consumer group; one member of it is active at a time.
    pub group: String,
    /// `WORKER__…`: the consumer-group worker. Defaults differ from bus-core's where a single
    /// active instance needs it: abandoned entries are reclaimed after 2 s idle (checked every
    /// second) so a takeover picks up the dead instance's work within seconds, and one batch
    /// is in flight at a time so merges apply in stream order. A `WORKER__` variable
    /// overrides its own knob only; the others keep these defaults.
    pub worker: WorkerSettings,
    /// `PRODUCER__…`: how `predictions.requests` is written and trimmed.
    pub producer: ProducerSettings,
    /// `RETENTION__…`: the seed's stream lengths (`predictions.requests` keeps 5,000).
    pub retention: Retention,
    /// `LEASE__…`: the single-active lease.
    pub lease: LeaseSettings,
}

impl Default for MergeSettings {
    fn default() -> Self {
        MergeSettings {
            stream: names::MERGE_REQUESTS.into(),
            group: names::MERGE_PROCESSORS.into(),
            worker: WorkerSettings {
                claim_min_idle_ms: 2_000,
                claim_interval_ms: 1_000,
                max_in_flight: 1,
                ..WorkerSettings::default()
            },
            producer: ProducerSettings::default(),
            retention: Retention::default(),
            lease: LeaseSettings::default(),
        }
    }
}

impl MergeSettings {
    /// Checks every section, naming the variable of the first bad value.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.stream.trim().is_empty() {
            return Err(SettingsError::invalid("STREAM", "must not be empty"));
        }
        if self.group.trim().is_empty() {
            return Err(SettingsError::invalid("GROUP", "must not be empty"));
        }
        self.worker.validate()?;
        self.lease.validate()
    }

    /// The lease that makes one member of the group active: named after the stream and the
    /// group, so another group (or stream) gets its own.
    pub fn lease_name(&self) -> String {
        format!("{}:{}", self.stream, self.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_reclaim_quickly_and_keep_stream_order() {
        let s = MergeSettings::default();
        assert_eq!(
            (
                s.worker.claim_min_idle_ms,
                s.worker.claim_interval_ms,
                s.worker.max_in_flight
            ),
            (2_000, 1_000, 1)
        );
        assert_eq!(s.lease_name(), "profiles.merge_requests:merge-processors");
        assert!(s.validate().is_ok());
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let s = MergeSettings {
            lease: LeaseSettings { ttl_ms: 10 },
            ..Default::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("LEASE__TTL_MS")
        );
        let s = MergeSettings {
            group: " ".into(),
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("GROUP"));
    }
}
