//! The feature builder of seed 001: consumes `events.normalized` in the group
//! `event-processors` and keeps each profile's features (event and order counts, total spent,
//! first and last seen, last order, events by type) in `profile_features`, counting every
//! `event_id` once however often it is delivered or replayed. Every profile that made a
//! purchase gets a fresh prediction requested on `predictions.requests`.
//!
//! Profiles are resolved with [`commerce::profiles::resolve`] inside the batch's transaction,
//! so an event of a profile merged into another is counted on the survivor, and a merge
//! running at the same time either sees this batch's counts (and folds them) or has already
//! re-pointed the profile.

pub mod aggregate;
pub mod amount;
mod handler;
mod metrics;
mod settings;
mod store;

use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{Bus, CommonSettings, Runner, serve_ops};
use commerce::names;

pub use handler::FeatureBuilder;
pub use metrics::{EventOutcome, FeatureMetrics};
pub use settings::FeatureBuilderSettings;

/// Runs the feature builder until `shutdown`.
pub async fn run(
    common: CommonSettings,
    settings: FeatureBuilderSettings,
    shutdown: CancellationToken,
) -> bus_core::anyhow::Result<()> {
    settings.validate()?;
    let (bus, pool) = Bus::connect_with_postgres(&common).await?;
    let metrics = FeatureMetrics::register(&bus.metrics);
    let requests =
        settings
            .retention
            .producer(&bus, &settings.producer, names::PREDICTION_REQUESTS);
    let config = bus.consumer_config(
        names::EVENTS_NORMALIZED,
        names::EVENT_PROCESSORS,
        &settings.worker,
    );
    let handler = FeatureBuilder::new(pool, requests.clone(), metrics);
    let _ops = serve_ops(&common.ops_addr, bus.ops_router(), shutdown.clone()).await?;
    let mut runner = Runner::new(shutdown.clone());
    runner.consume(&bus, config, handler).trim(requests);
    runner.wait().await?;
    Ok(())
}
