//! `stream:tokens` → `tokens`, then `channel:token:created` for every new token.
//!
//! Effectively once by business key, in one statement per batch: a row is keyed by `(chain,
//! address)` and remembers the entry that last wrote it, and the upsert only applies an entry
//! newer than that. A redelivered entry is never newer than itself, so it changes nothing and
//! inserts nothing (no second notification) — without an inbox row per entry.

use std::collections::BTreeMap;
use std::sync::Arc;

use bus_core::chrono::{DateTime, Utc};
use bus_core::sqlx::PgPool;
use bus_core::{Batch, Delivery, Handler, HandlerError, Outcome, Publisher};
use futures_util::future::join_all;

use crate::messages::{
    TOKEN_CREATED_CHANNEL, TokenCreatedData, TokenCreatedNotification, TokenMessage, iso_timestamp,
};
use crate::metrics::IngestMetrics;

/// Upserts tokens, last writer (highest entry id) wins, so batches that commit out of order
/// (several replicas, read-ahead) still leave the newest data and a redelivery changes nothing.
const UPSERT: &str = "
INSERT INTO tokens AS t
    (chain, address, token_id, name, symbol, decimals, total_supply, service_id,
     source_timestamp, last_entry_id)
SELECT u.chain, u.address, u.token_id, u.name, u.symbol, u.decimals,
       u.total_supply::numeric(78,0), u.service_id, u.ts, u.entry_id
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::smallint[],
            $7::text[], $8::text[], $9::timestamptz[], $10::text[])
    AS u(chain, address, token_id, name, symbol, decimals, total_supply, service_id, ts, entry_id)
ON CONFLICT (chain, address) DO UPDATE SET
    token_id = COALESCE(EXCLUDED.token_id, t.token_id),
    name = EXCLUDED.name,
    symbol = EXCLUDED.symbol,
    decimals = EXCLUDED.decimals,
    total_supply = EXCLUDED.total_supply,
    service_id = EXCLUDED.service_id,
    source_timestamp = EXCLUDED.source_timestamp,
    last_entry_id = EXCLUDED.last_entry_id,
    updated_at = now()
WHERE stream_entry_key(t.last_entry_id) < stream_entry_key(EXCLUDED.last_entry_id)
RETURNING address, name, symbol, (xmax = 0) AS inserted";

/// Writes `stream:tokens` (`TOKEN_CREATED` and `TOKEN_UPDATED` are both upserts).
#[derive(Debug, Clone)]
pub struct TokensHandler {
    pool: PgPool,
    publisher: Publisher,
    metrics: Arc<IngestMetrics>,
}

impl TokensHandler {
    /// A handler writing through `pool` and notifying through `publisher`.
    pub fn new(pool: PgPool, publisher: Publisher, metrics: Arc<IngestMetrics>) -> Self {
        TokensHandler {
            pool,
            publisher,
            metrics,
        }
    }

    /// Publishes one notification per new token, concurrently (the shared connection
    /// pipelines them into about one round trip, keeping the window between COMMIT and
    /// PUBLISH, where a crash loses notifications, as short as possible).
    async fn notify(&self, created: Vec<TokenCreatedData>) {
        let timestamp = iso_timestamp(Utc::now());
        let notes: Vec<TokenCreatedNotification> = created
            .into_iter()
            .map(|data| TokenCreatedNotification {
                timestamp: timestamp.clone(),
                data,
            })
            .collect();
        let sends = notes
            .iter()
            .map(|note| self.publisher.publish(TOKEN_CREATED_CHANNEL, note));
        // Pub/Sub is fire-and-forget: the rows are committed, and a failed PUBLISH must not
        // fail the batch (a retry would find everything in the inbox and notify nothing).
        for (note, sent) in notes.iter().zip(join_all(sends).await) {
            match sent {
                Ok(_) => self.metrics.notification("published"),
                Err(e) => {
                    self.metrics.notification("failed");
                    tracing::warn!(address = %note.data.address, error = %e, "token notification failed");
                }
            }
        }
    }
}

/// The batch as one array per column (borrowed from the messages).
#[derive(Default)]
struct Columns<'a> {
    chain: Vec<&'a str>,
    address: Vec<&'a str>,
    token_id: Vec<Option<&'a str>>,
    name: Vec<&'a str>,
    symbol: Vec<&'a str>,
    decimals: Vec<i16>,
    total_supply: Vec<&'a str>,
    service_id: Vec<&'a str>,
    ts: Vec<DateTime<Utc>>,
    entry_id: Vec<String>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, d: &'a Delivery<TokenMessage>) {
        let m = &d.message;
        self.chain.push(&m.data.chain);
        self.address.push(&m.data.address);
        self.token_id.push(m.data.id.as_deref());
        self.name.push(&m.data.name);
        self.symbol.push(&m.data.symbol);
        self.decimals.push(i16::from(m.data.decimals));
        self.total_supply.push(&m.data.total_supply);
        self.service_id.push(&m.service_id);
        self.ts.push(m.timestamp);
        self.entry_id.push(d.id.to_string());
    }
}

impl Handler for TokensHandler {
    type Message = TokenMessage;

    async fn handle(&self, batch: Batch<'_, TokenMessage>) -> Result<Outcome, HandlerError> {
        // One row per token: ON CONFLICT cannot touch a row twice in one statement, and the
        // newest entry wins anyway. Rows go in key order, so concurrent batches (read-ahead,
        // replicas) lock shared tokens in the same order and cannot deadlock.
        let mut newest: BTreeMap<(&str, &str), &Delivery<TokenMessage>> = BTreeMap::new();
        for d in batch.entries {
            let key = (
                d.message.data.chain.as_str(),
                d.message.data.address.as_str(),
            );
            let slot = newest.entry(key).or_insert(d);
            if slot.id < d.id {
                *slot = d;
            }
        }
        if newest.is_empty() {
            return Ok(Outcome::done());
        }
        let mut cols = Columns::default();
        for d in newest.values() {
            cols.push(d);
        }
        let rows: Vec<(String, String, String, bool)> = bus_core::sqlx::query_as(UPSERT)
            .bind(&cols.chain)
            .bind(&cols.address)
            .bind(&cols.token_id)
            .bind(&cols.name)
            .bind(&cols.symbol)
            .bind(&cols.decimals)
            .bind(&cols.total_supply)
            .bind(&cols.service_id)
            .bind(&cols.ts)
            .bind(&cols.entry_id)
            .fetch_all(&self.pool)
            .await?;
        self.metrics.rows("tokens", rows.len() as u64);
        let created = rows
            .into_iter()
            .filter(|(.., inserted)| *inserted)
            .map(|(address, name, symbol, _)| TokenCreatedData {
                address,
                name,
                symbol,
            })
            .collect();
        self.notify(created).await;
        Ok(Outcome::done())
    }
}
