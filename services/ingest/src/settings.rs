//! Ingest settings (environment variables are the upper-case field names).

use bus_core::{SettingsError, WorkerSettings};
use serde::{Deserialize, Serialize};

use crate::messages::SERVER_GROUP;

/// How a batch of new rows goes into PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMethod {
    /// `COPY … FROM STDIN`, the cheapest for PostgreSQL, for batches of 128 KiB and more
    /// (smaller ones are inserted); a batch that meets an existing key (a redelivery) fails as
    /// a whole and is written again with the insert.
    Copy,
    /// One `INSERT … SELECT FROM UNNEST(…) ON CONFLICT DO NOTHING`.
    Unnest,
}

/// What the ingest service reads and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestSettings {
    /// `TOKENS_BATCH_SIZE`: entries per batch on `stream:tokens` (the seed read 10; 1000 is
    /// the fastest drain of the benchmark's sweep within the 64 MiB memory budget).
    pub tokens_batch_size: usize,
    /// `TRANSACTIONS_BATCH_SIZE`: entries per batch on `stream:transactions` (the seed read
    /// 50; 1000 as for tokens, and large enough for COPY, see `WRITE_METHOD`).
    pub transactions_batch_size: usize,
    /// `CRAWLER_EVENTS_BATCH_SIZE`: entries per batch on `stream:crawler-events`.
    pub crawler_events_batch_size: usize,
    /// `GROUP`: the consumer group on all three streams.
    pub group: String,
    /// `WRITE_METHOD`: how `stream:transactions` batches are written: `copy` (COPY for
    /// batches of 128 KiB and more, falling back to the insert when a hash is already stored;
    /// smaller batches are inserted) or `unnest` (always
    /// `INSERT … SELECT FROM UNNEST … ON CONFLICT DO NOTHING`).
    pub write_method: WriteMethod,
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
            tokens_batch_size: 1_000,
            transactions_batch_size: 1_000,
            crawler_events_batch_size: 10,
            group: SERVER_GROUP.into(),
            write_method: WriteMethod::Copy,
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
