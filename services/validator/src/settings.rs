//! The validator's settings: the seed's variable names at the top level, the remaining worker
//! knobs in the `WORKER__` section.

use bus_core::{CommonSettings, SecretUrl, SettingsError, WorkerSettings};
use serde::{Deserialize, Serialize};

/// Settings read from the environment (upper-case names; `WORKER__X` for the worker section).
///
/// The seed's names (`BATCH_SIZE`, `BLOCK_TIME`, `MAX_RETRIES`, `POSTGRES_DSN`) keep working so
/// an existing deployment's environment carries over unchanged. When set they win over the
/// equivalent `WORKER__` knob.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ValidatorSettings {
    /// `REDIS_STREAM`: the stream of items to validate.
    pub redis_stream: String,
    /// `CONSUMER_GROUP`: the consumer group every validator replica joins.
    pub consumer_group: String,
    /// `BATCH_SIZE`: entries per read and per database transaction (seed default 10);
    /// overrides `WORKER__BATCH_SIZE`.
    pub batch_size: Option<usize>,
    /// `BLOCK_TIME`: milliseconds one read waits for new entries (seed default 1000);
    /// overrides `WORKER__BLOCK_MS`.
    pub block_time: Option<u64>,
    /// `MAX_RETRIES`: retries after the first delivery before an entry is dead-lettered
    /// (seed default 3), so `WORKER__MAX_DELIVERIES = MAX_RETRIES + 1`.
    pub max_retries: Option<u64>,
    /// `POSTGRES_DSN`: the seed's name for the database; used when `DATABASE_URL` is unset.
    pub postgres_dsn: Option<SecretUrl>,
    /// `WORKER__…`: the consumer-group worker (defaults follow the seed: batch 10, block
    /// 1000 ms, 4 deliveries).
    pub worker: WorkerSettings,
}

impl Default for ValidatorSettings {
    fn default() -> Self {
        ValidatorSettings {
            redis_stream: "raw_items".into(),
            consumer_group: "validator_workers".into(),
            batch_size: None,
            block_time: None,
            max_retries: None,
            postgres_dsn: None,
            worker: WorkerSettings {
                batch_size: 10,
                block_ms: 1_000,
                max_deliveries: 4,
                ..WorkerSettings::default()
            },
        }
    }
}

impl ValidatorSettings {
    /// The worker knobs with the seed's top-level names applied, checked.
    pub fn effective_worker(&self) -> Result<WorkerSettings, SettingsError> {
        let mut worker = self.worker.clone();
        if let Some(batch_size) = self.batch_size {
            if batch_size == 0 {
                return Err(SettingsError::invalid("BATCH_SIZE", "must be at least 1"));
            }
            worker.batch_size = batch_size;
        }
        if let Some(block_time) = self.block_time {
            worker.block_ms = block_time;
        }
        if let Some(max_retries) = self.max_retries {
            worker.max_deliveries = max_retries.saturating_add(1);
        }
        worker.validate()?;
        Ok(worker)
    }

    /// Fills what the seed names differently into the common settings: `POSTGRES_DSN` when
    /// `DATABASE_URL` is unset, and the seed's `worker_<host>` consumer name when
    /// `CONSUMER_NAME` is unset (unique per container, stable across restarts).
    pub fn apply_to(&self, common: &mut CommonSettings) {
        if common.database_url.is_none() {
            common.database_url = self.postgres_dsn.clone();
        }
        let unnamed = common.consumer_name.as_deref().is_none_or(str::is_empty);
        if unnamed {
            let host = gethostname::gethostname().to_string_lossy().into_owned();
            common.consumer_name = Some(format!("worker_{host}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_names_override_the_worker_section() {
        let settings = ValidatorSettings {
            batch_size: Some(7),
            block_time: Some(250),
            max_retries: Some(3),
            ..Default::default()
        };
        let worker = settings.effective_worker().unwrap();
        assert_eq!(
            (worker.batch_size, worker.block_ms, worker.max_deliveries),
            (7, 250, 4)
        );
    }

    #[test]
    fn defaults_follow_the_seed() {
        let worker = ValidatorSettings::default().effective_worker().unwrap();
        assert_eq!(
            (worker.batch_size, worker.block_ms, worker.max_deliveries),
            (10, 1000, 4)
        );
    }

    #[test]
    fn postgres_dsn_is_used_only_when_database_url_is_unset() {
        let settings = ValidatorSettings {
            postgres_dsn: Some(SecretUrl::new("postgres://dsn/db")),
            ..Default::default()
        };
        let mut common = CommonSettings::default();
        settings.apply_to(&mut common);
        assert_eq!(
            common.database_url.as_ref().map(SecretUrl::expose),
            Some("postgres://dsn/db")
        );
        let mut common = CommonSettings {
            database_url: Some(SecretUrl::new("postgres://url/db")),
            ..Default::default()
        };
        settings.apply_to(&mut common);
        assert_eq!(
            common.database_url.as_ref().map(SecretUrl::expose),
            Some("postgres://url/db")
        );
    }

    #[test]
    fn consumers_are_named_worker_host_unless_named_explicitly() {
        let mut common = CommonSettings::default();
        ValidatorSettings::default().apply_to(&mut common);
        assert!(common.consumer_name().starts_with("worker_"));
        let mut common = CommonSettings {
            consumer_name: Some("worker_001".into()),
            ..Default::default()
        };
        ValidatorSettings::default().apply_to(&mut common);
        assert_eq!(common.consumer_name(), "worker_001");
    }
}
