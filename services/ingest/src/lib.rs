//! ingest: the server side of seed 000.
//!
//! Three consumer-group workers in one process (group `server-group`): `stream:tokens` →
//! `tokens` (upsert, last writer wins, then `channel:token:created` per new token),
//! `stream:transactions` → `transactions` (insert once per hash), `stream:crawler-events` →
//! `crawlers` + `crawler_events`. Each batch is one transaction that a redelivery cannot
//! change: tokens and transactions by their business keys, crawler events by the inbox.
//! [`messages`] holds the seed-000 wire formats for every service that speaks them.

pub mod handlers;
pub mod messages;
mod metrics;
mod settings;

use std::time::Duration;

use bus_core::sqlx::PgPool;
use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{Bus, BusError, CommonSettings, ProducerSettings, Runner, connect_and_migrate};

pub use metrics::IngestMetrics;
pub use settings::{IngestSettings, WriteMethod};

use handlers::{CrawlerEventsHandler, TokensHandler, TransactionsHandler};
use messages::{CRAWLER_EVENTS_STREAM, TOKENS_STREAM, TRANSACTIONS_STREAM};

/// Runs the service until `shutdown`.
pub async fn run(
    common: CommonSettings,
    settings: IngestSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    settings.validate()?;
    let bus = Bus::connect(&common).await?;
    let pool = connect_and_migrate(&common).await?;
    bus.health.watch_postgres(&pool);
    let metrics = IngestMetrics::register(&bus.metrics);
    // The publisher only PUBLISHes; its producer settings never apply.
    let publisher = bus.publisher(bus.producer(ProducerSettings::default()));
    let ops = bus_core::serve_ops(&common.ops_addr, bus.ops_router(), shutdown.clone()).await?;

    let config = |stream: &str, batch: usize| {
        bus.consumer_config(stream, &settings.group, &settings.worker_with_batch(batch))
    };
    let mut runner = Runner::new(shutdown.clone());
    runner
        .consume(
            &bus,
            config(TOKENS_STREAM, settings.tokens_batch_size),
            TokensHandler::new(pool.clone(), publisher, metrics.clone()),
        )
        .consume(
            &bus,
            config(TRANSACTIONS_STREAM, settings.transactions_batch_size),
            TransactionsHandler::new(pool.clone(), metrics.clone())
                .with_write_method(settings.write_method),
        )
        .consume(
            &bus,
            config(CRAWLER_EVENTS_STREAM, settings.crawler_events_batch_size),
            CrawlerEventsHandler::new(pool.clone(), metrics),
        );
    if settings.inbox_retention_hours > 0 {
        let retention = Duration::from_secs(settings.inbox_retention_hours * 3600);
        runner.spawn(prune_inbox(pool.clone(), retention, shutdown.clone()));
    }
    let result = runner.wait().await;
    let _ = ops.await;
    pool.close().await;
    Ok(result?)
}

/// Hourly removal of inbox rows past the retention (a redelivery that late cannot happen).
async fn prune_inbox(
    pool: PgPool,
    retention: Duration,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    while bus_core::sleep_or_shutdown(Duration::from_secs(3600), &shutdown).await {
        match bus_core::inbox::prune(&pool, retention).await {
            Ok(n) => tracing::debug!(removed = n, "inbox pruned"),
            Err(e) => tracing::warn!(error = %e, "inbox prune failed"),
        }
    }
    Ok(())
}
