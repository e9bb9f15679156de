//! The normalizer of seed 001: consumes `events.raw` in the group `normalizers`, normalises
//! each event's customer identifiers ([`identifiers`]), matches the event to its brand's
//! profile ([`matching`]: a new profile, the one profile its identifiers lead to, or the oldest
//! of several plus a merge request), stores it in the `events` audit trail with its profile and
//! identifiers, and publishes `events.normalized` and `profiles.merge_requests`.
//!
//! Each batch is one transaction; an `event_id` already stored changes nothing, and its
//! downstream entries are republished from the stored row, so a redelivery or replay after a
//! crash anywhere produces the same entries again (downstream dedupes by `event_id` and
//! `request_id`).

mod handler;
pub mod identifiers;
pub mod matching;
mod metrics;
mod settings;
mod store;

use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{Bus, CommonSettings, Runner, serve_ops};
use commerce::names;

pub use handler::Normalizer;
pub use metrics::{NormalizerMetrics, OUTCOMES};
pub use settings::NormalizerSettings;
pub use store::LOCK_CLASS;

/// Runs the normalizer until `shutdown`.
pub async fn run(
    common: CommonSettings,
    settings: NormalizerSettings,
    shutdown: CancellationToken,
) -> bus_core::anyhow::Result<()> {
    settings.validate()?;
    let (bus, pool) = Bus::connect_with_postgres(&common).await?;
    let metrics = NormalizerMetrics::register(&bus.metrics);
    let retention = &settings.retention;
    let normalized = retention.producer(&bus, &settings.producer, names::EVENTS_NORMALIZED);
    let merge_requests = retention.producer(&bus, &settings.producer, names::MERGE_REQUESTS);
    let ops = serve_ops(&common.ops_addr, bus.ops_router(), shutdown.clone()).await?;

    let config = bus.consumer_config(&settings.stream, &settings.group, &settings.worker);
    let handler = Normalizer::new(
        pool.clone(),
        normalized.clone(),
        merge_requests.clone(),
        metrics,
    );
    let mut runner = Runner::new(shutdown.clone());
    runner
        .consume(&bus, config, handler)
        .trim(normalized)
        .trim(merge_requests);
    let result = runner.wait().await;
    let _ = ops.await;
    pool.close().await;
    Ok(result?)
}
