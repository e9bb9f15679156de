//! `stream:crawler-events` → the `crawler_events` log and the `crawlers` status table.

use std::collections::HashMap;
use std::sync::Arc;

use bus_core::chrono::{DateTime, Utc};
use bus_core::sqlx::PgPool;
use bus_core::{Batch, Delivery, EntryId, Handler, HandlerError, Outcome, inbox};

use crate::messages::{CrawlerEventKind, CrawlerEventMessage, Kind, Payload};
use crate::metrics::IngestMetrics;

const LOG: &str = "
INSERT INTO crawler_events (entry_id, crawler_id, service_id, type, data, timestamp)
SELECT u.entry_id, u.crawler_id, u.service_id, u.type, u.data::jsonb, u.ts
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
    AS u(entry_id, crawler_id, service_id, type, data, ts)
ON CONFLICT (entry_id) DO NOTHING";

/// Status follows the newest entry id (last writer wins); the heartbeat and the last error
/// only move forward in time, so batches committing out of order are harmless.
const STATUS: &str = "
INSERT INTO crawlers AS c
    (crawler_id, service_id, status, last_event_type, last_event_at, last_heartbeat,
     last_error, last_error_at, last_entry_id, updated_at)
SELECT u.crawler_id, u.service_id, u.status, u.type, u.ts, u.heartbeat, u.error, u.error_at,
       u.entry_id, now()
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
            $6::timestamptz[], $7::text[], $8::timestamptz[], $9::text[])
    AS u(crawler_id, service_id, status, type, ts, heartbeat, error, error_at, entry_id)
ON CONFLICT (crawler_id) DO UPDATE SET
    service_id = CASE WHEN stream_entry_key(c.last_entry_id) < stream_entry_key(EXCLUDED.last_entry_id) THEN EXCLUDED.service_id ELSE c.service_id END,
    status = CASE WHEN stream_entry_key(c.last_entry_id) < stream_entry_key(EXCLUDED.last_entry_id) THEN EXCLUDED.status ELSE c.status END,
    last_event_type = CASE WHEN stream_entry_key(c.last_entry_id) < stream_entry_key(EXCLUDED.last_entry_id) THEN EXCLUDED.last_event_type ELSE c.last_event_type END,
    last_event_at = CASE WHEN stream_entry_key(c.last_entry_id) < stream_entry_key(EXCLUDED.last_entry_id) THEN EXCLUDED.last_event_at ELSE c.last_event_at END,
    last_entry_id = CASE WHEN stream_entry_key(c.last_entry_id) < stream_entry_key(EXCLUDED.last_entry_id) THEN EXCLUDED.last_entry_id ELSE c.last_entry_id END,
    last_heartbeat = GREATEST(c.last_heartbeat, EXCLUDED.last_heartbeat),
    last_error = CASE WHEN EXCLUDED.last_error_at IS NOT NULL
                       AND (c.last_error_at IS NULL OR EXCLUDED.last_error_at >= c.last_error_at)
                      THEN EXCLUDED.last_error ELSE c.last_error END,
    last_error_at = GREATEST(c.last_error_at, EXCLUDED.last_error_at),
    updated_at = now()";

/// Writes `stream:crawler-events`.
#[derive(Debug, Clone)]
pub struct CrawlerEventsHandler {
    pool: PgPool,
    metrics: Arc<IngestMetrics>,
}

impl CrawlerEventsHandler {
    /// A handler writing through `pool`.
    pub fn new(pool: PgPool, metrics: Arc<IngestMetrics>) -> Self {
        CrawlerEventsHandler { pool, metrics }
    }
}

/// One crawler's state after a batch: the newest event plus the newest heartbeat and error.
struct CrawlerRow<'a> {
    newest: &'a Delivery<CrawlerEventMessage>,
    heartbeat: Option<DateTime<Utc>>,
    error: Option<(EntryId, String, DateTime<Utc>)>,
}

fn fold<'a>(entries: &[&'a Delivery<CrawlerEventMessage>]) -> Vec<CrawlerRow<'a>> {
    let mut rows: HashMap<&str, CrawlerRow<'a>> = HashMap::new();
    for &d in entries {
        let m = &d.message;
        let row = rows
            .entry(m.data.crawler_id.as_str())
            .or_insert(CrawlerRow {
                newest: d,
                heartbeat: None,
                error: None,
            });
        if row.newest.id < d.id {
            row.newest = d;
        }
        if matches!(
            m.kind,
            CrawlerEventKind::Heartbeat | CrawlerEventKind::Online
        ) {
            row.heartbeat = row.heartbeat.max(Some(m.timestamp));
        }
        if m.kind == CrawlerEventKind::Error && row.error.as_ref().is_none_or(|e| e.0 < d.id) {
            let text = m
                .data
                .error
                .clone()
                .unwrap_or_else(|| m.data.status.clone());
            row.error = Some((d.id, text, m.timestamp));
        }
    }
    // Key order, so concurrent batches lock shared crawler rows in the same order (no deadlock).
    let mut rows: Vec<_> = rows.into_iter().collect();
    rows.sort_unstable_by_key(|(id, _)| *id);
    rows.into_iter().map(|(_, row)| row).collect()
}

impl Handler for CrawlerEventsHandler {
    type Message = CrawlerEventMessage;

    async fn handle<'a>(
        &self,
        batch: Batch<'a, CrawlerEventMessage>,
    ) -> Result<Outcome, HandlerError> {
        let mut tx = self.pool.begin().await?;
        let fresh = inbox::claim(&mut tx, batch.stream, batch.group, &batch.ids()).await?;
        let entries: Vec<_> = batch
            .entries
            .iter()
            .filter(|d| fresh.contains(&d.id))
            .collect();
        let (mut logged, mut updated) = (0, 0);
        if !entries.is_empty() {
            let text = |f: fn(&Delivery<CrawlerEventMessage>) -> String| -> Vec<String> {
                entries.iter().map(|d| f(d)).collect()
            };
            logged = bus_core::sqlx::query(LOG)
                .bind(text(|d| d.id.to_string()))
                .bind(text(|d| d.message.data.crawler_id.clone()))
                .bind(text(|d| d.message.service_id.clone()))
                .bind(text(|d| d.message.kind.as_str().to_owned()))
                .bind(text(|d| d.message.data.to_json().to_string()))
                .bind(
                    entries
                        .iter()
                        .map(|d| d.message.timestamp)
                        .collect::<Vec<_>>(),
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let rows = fold(&entries);
            let m = |r: &CrawlerRow<'a>| -> &'a CrawlerEventMessage { &r.newest.message };
            let text = |f: &dyn Fn(&CrawlerRow<'a>) -> String| -> Vec<String> {
                rows.iter().map(f).collect()
            };
            updated = bus_core::sqlx::query(STATUS)
                .bind(text(&|r| m(r).data.crawler_id.clone()))
                .bind(text(&|r| m(r).service_id.clone()))
                .bind(text(&|r| m(r).data.status.clone()))
                .bind(text(&|r| m(r).kind.as_str().to_owned()))
                .bind(rows.iter().map(|r| m(r).timestamp).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.heartbeat).collect::<Vec<_>>())
                .bind(
                    rows.iter()
                        .map(|r| r.error.as_ref().map(|e| e.1.clone()))
                        .collect::<Vec<_>>(),
                )
                .bind(
                    rows.iter()
                        .map(|r| r.error.as_ref().map(|e| e.2))
                        .collect::<Vec<_>>(),
                )
                .bind(text(&|r| r.newest.id.to_string()))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        self.metrics.rows("crawler_events", logged);
        self.metrics.rows("crawlers", updated);
        Ok(Outcome::done())
    }
}
