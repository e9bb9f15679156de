//! `stream:transactions` → `transactions`, each hash inserted once.
//!
//! Effectively once by business key: the hash is the primary key and a stored hash is never
//! written again, so a redelivered batch changes nothing — one statement (one commit) per
//! batch and no inbox row per entry. With `WRITE_METHOD=copy` a batch is one `COPY`; a batch
//! that meets a stored hash (a redelivery, or the same transaction sent twice) fails as a
//! whole with a unique violation, commits nothing, and is written with the insert instead.

use std::sync::Arc;

use bus_core::sqlx::PgPool;
use bus_core::{
    Batch, CopyRows, Delivery, Handler, HandlerError, Outcome, copy_in, is_unique_violation,
};

use crate::messages::TransactionMessage;
use crate::metrics::IngestMetrics;
use crate::settings::WriteMethod;

/// Transactions are immutable: the first entry with a hash wins, later ones change nothing.
const INSERT: &str = "
INSERT INTO transactions
    (hash, tx_id, from_address, to_address, value, block_hash, service_id,
     source_timestamp, last_entry_id)
SELECT u.hash, u.tx_id, u.from_address, u.to_address, u.value::numeric(78,0), u.block_hash,
       u.service_id, u.ts, u.entry_id
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::timestamptz[], $9::text[])
    AS u(hash, tx_id, from_address, to_address, value, block_hash, service_id, ts, entry_id)
ON CONFLICT (hash) DO NOTHING";

/// The same columns, for `COPY`.
const COPY: &str = "COPY transactions
    (hash, tx_id, from_address, to_address, value, block_hash, service_id,
     source_timestamp, last_entry_id) FROM STDIN";

/// Bytes of COPY text per entry to reserve up front (a synthetic row is about 300).
const COPY_ROW_BYTES: usize = 384;

/// Smaller batches are inserted even with `WRITE_METHOD=copy`. The PostgreSQL client leaves
/// Nagle's algorithm on, so the small CopyDone that ends a COPY waits until the server
/// acknowledges the data; the server acknowledges at once only when it has read about two
/// TCP segments (loopback segments are 64 KiB), otherwise after its delayed-ACK timer,
/// 40 ms. A COPY smaller than this would pay that wait; the insert is one message and never
/// does. Backlogs come in full batches, which are well above it.
const COPY_MIN_BYTES: usize = 128 * 1024;

/// Writes `stream:transactions` in one statement per batch.
#[derive(Debug, Clone)]
pub struct TransactionsHandler {
    pool: PgPool,
    metrics: Arc<IngestMetrics>,
    method: WriteMethod,
}

impl TransactionsHandler {
    /// A handler writing through `pool` with `INSERT … ON CONFLICT`.
    pub fn new(pool: PgPool, metrics: Arc<IngestMetrics>) -> Self {
        TransactionsHandler {
            pool,
            metrics,
            method: WriteMethod::Unnest,
        }
    }

    /// The same handler writing with `method`.
    pub fn with_write_method(self, method: WriteMethod) -> Self {
        TransactionsHandler { method, ..self }
    }

    /// `INSERT … ON CONFLICT (hash) DO NOTHING`; returns the rows inserted.
    async fn insert(
        &self,
        entries: &[Delivery<TransactionMessage>],
    ) -> Result<u64, bus_core::sqlx::Error> {
        let text = |f: fn(&Delivery<TransactionMessage>) -> Option<&str>| -> Vec<Option<&str>> {
            entries.iter().map(f).collect()
        };
        let timestamps: Vec<_> = entries.iter().map(|d| d.message.timestamp).collect();
        let ids: Vec<String> = entries.iter().map(|d| d.id.to_string()).collect();
        let done = bus_core::sqlx::query(INSERT)
            .bind(text(|d| Some(&d.message.data.hash)))
            .bind(text(|d| d.message.data.id.as_deref()))
            .bind(text(|d| Some(&d.message.data.from)))
            .bind(text(|d| d.message.data.to.as_deref()))
            .bind(text(|d| Some(&d.message.data.value)))
            .bind(text(|d| d.message.data.block_hash.as_deref()))
            .bind(text(|d| Some(&d.message.service_id)))
            .bind(timestamps)
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// The batch as COPY text.
    fn copy_rows(entries: &[Delivery<TransactionMessage>]) -> CopyRows {
        let mut rows = CopyRows::with_capacity(entries.len() * COPY_ROW_BYTES);
        for d in entries {
            let (m, data) = (&d.message, &d.message.data);
            rows.text(Some(&data.hash))
                .text(data.id.as_deref())
                .text(Some(&data.from))
                .text(data.to.as_deref())
                .text(Some(&data.value))
                .text(data.block_hash.as_deref())
                .text(Some(&m.service_id))
                .timestamp(m.timestamp)
                .display(d.id)
                .end_row();
        }
        rows
    }

    /// One `COPY` of the whole batch; a unique violation means nothing was written.
    async fn copy(&self, rows: &CopyRows) -> Result<u64, bus_core::sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        copy_in(&mut conn, COPY, rows).await
    }

    /// COPY when the batch is large enough, else insert; a COPY that meets a stored hash
    /// wrote nothing and is replaced by the insert, which skips what exists.
    async fn copy_or_insert(
        &self,
        entries: &[Delivery<TransactionMessage>],
    ) -> Result<u64, bus_core::sqlx::Error> {
        let rows = Self::copy_rows(entries);
        if rows.as_bytes().len() < COPY_MIN_BYTES {
            return self.insert(entries).await;
        }
        match self.copy(&rows).await {
            Err(e) if is_unique_violation(&e) => {
                self.metrics.copy_conflict("transactions");
                tracing::debug!(
                    size = entries.len(),
                    "COPY met a stored hash; inserting instead"
                );
                self.insert(entries).await
            }
            other => other,
        }
    }
}

impl Handler for TransactionsHandler {
    type Message = TransactionMessage;

    async fn handle(&self, batch: Batch<'_, TransactionMessage>) -> Result<Outcome, HandlerError> {
        let entries = batch.entries;
        if entries.is_empty() {
            return Ok(Outcome::done());
        }
        let written = match self.method {
            WriteMethod::Unnest => self.insert(entries).await?,
            WriteMethod::Copy => self.copy_or_insert(entries).await?,
        };
        self.metrics.rows("transactions", written);
        Ok(Outcome::done())
    }
}
