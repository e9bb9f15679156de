//! `stream:transactions` → `transactions`, each hash inserted once.

use std::sync::Arc;

use bus_core::chrono::{DateTime, Utc};
use bus_core::sqlx::PgPool;
use bus_core::{Batch, Handler, HandlerError, Outcome, inbox};

use crate::messages::TransactionMessage;
use crate::metrics::IngestMetrics;

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

/// Writes `stream:transactions` in one statement per batch.
#[derive(Debug, Clone)]
pub struct TransactionsHandler {
    pool: PgPool,
    metrics: Arc<IngestMetrics>,
}

impl TransactionsHandler {
    /// A handler writing through `pool`.
    pub fn new(pool: PgPool, metrics: Arc<IngestMetrics>) -> Self {
        TransactionsHandler { pool, metrics }
    }
}

impl Handler for TransactionsHandler {
    type Message = TransactionMessage;

    async fn handle(&self, batch: Batch<'_, TransactionMessage>) -> Result<Outcome, HandlerError> {
        let mut tx = self.pool.begin().await?;
        let fresh = inbox::claim(&mut tx, batch.stream, batch.group, &batch.ids()).await?;
        let entries: Vec<_> = batch
            .entries
            .iter()
            .filter(|d| fresh.contains(&d.id))
            .collect();
        let mut written = 0;
        if !entries.is_empty() {
            let col = |f: fn(&TransactionMessage) -> Option<String>| -> Vec<Option<String>> {
                entries.iter().map(|d| f(&d.message)).collect()
            };
            let ts: Vec<DateTime<Utc>> = entries.iter().map(|d| d.message.timestamp).collect();
            let ids: Vec<String> = entries.iter().map(|d| d.id.to_string()).collect();
            written = bus_core::sqlx::query(INSERT)
                .bind(col(|m| Some(m.data.hash.clone())))
                .bind(col(|m| m.data.id.clone()))
                .bind(col(|m| Some(m.data.from.clone())))
                .bind(col(|m| m.data.to.clone()))
                .bind(col(|m| Some(m.data.value.clone())))
                .bind(col(|m| m.data.block_hash.clone()))
                .bind(col(|m| Some(m.service_id.clone())))
                .bind(ts)
                .bind(ids)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        self.metrics.rows("transactions", written);
        Ok(Outcome::done())
    }
}
