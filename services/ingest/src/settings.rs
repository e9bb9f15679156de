//! Ingest settings (environment variables are the upper-case field names).

use bus_core::{SettingsError, WorkerSettings};
use serde::{Deserialize, Serialize};

use crate::messages::SERVER_GROUP;

/// What the ingest service reads and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestSettings {
    /// `TOKENS_BATCH_SIZE`: entries per batch on `stream:tokens` (the seed reads 10).
    pub tokens_batch_size: usize,
    /// `TRANSACTIONS_BATCH_SIZE`: entries per batch on `stream:transactions` (the seed reads 50).
    pub transactions_batch_size: usize,
    /// `CRAWLER_EVENTS_BATCH_SIZE`: entries per batch on `stream:crawler-events`.
    pub crawler_events_batch_size: usize,
    /// `GROUP`: the consumer group on all three streams.
    pub group: String,
    /// `INBOX_RETENTION_HOURS`: handled entry ids older than this are pruned from
    /// `stream_inbox` (hourly); 0 keeps them forever.
    pub inbox_retention_hours: u64,
    /// `WORKER__*`: consumer-group worker knobs; `WORKER__BATCH_SIZE` is replaced by the
    /// per-stream batch sizes above.
    pub worker: WorkerSettings,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            tokens_batch_size: 10,
            transactions_batch_size: 50,
            crawler_events_batch_size: 10,
            group: SERVER_GROUP.into(),
            inbox_retention_hours: 168,
            worker: WorkerSettings::default(),
        }
    }
}

impl IngestSettings {
    /// Checks ranges, naming the variable of the first bad value.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (var, size) in [
            ("TOKENS_BATCH_SIZE", self.tokens_batch_size),
            ("TRANSACTIONS_BATCH_SIZE", self.transactions_batch_size),
            ("CRAWLER_EVENTS_BATCH_SIZE", self.crawler_events_batch_size),
        ] {
            if size == 0 {
                return Err(SettingsError::invalid(var, "must be at least 1"));
            }
        }
        if self.group.trim().is_empty() {
            return Err(SettingsError::invalid("GROUP", "must not be empty"));
        }
        self.worker.validate()
    }

    /// The worker settings with `batch_size` entries per batch.
    pub fn worker_with_batch(&self, batch_size: usize) -> WorkerSettings {
        WorkerSettings {
            batch_size,
            ..self.worker.clone()
        }
    }
}
