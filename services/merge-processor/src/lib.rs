//! The merge processor of seed 001: consumes `profiles.merge_requests` in the group
//! `merge-processors` and, per request, merges the profiles into the oldest one (identifiers,
//! events, counted events and features move; an audit row records it), or queues the request
//! for manual review when it asks for one. Merged customers with purchases get a fresh
//! prediction request on `predictions.requests`.
//!
//! The seed recommends a single instance; this service enforces it. Every replica contends for
//! a Redis lease ([`bus_core::Lease`]); the holder consumes, the others wait as hot standbys
//! and take over within seconds when it dies. Each batch commits behind a PostgreSQL fence
//! ([`bus_core::fence`]) with the holder's token, so a holder that lost its lease without
//! noticing can never commit after its successor. See the README for the rules.

mod handler;
mod metrics;
pub mod rules;
mod settings;
mod single_active;
pub mod store;

use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{Bus, CommonSettings, Lease, LeaseMetrics, Runner, serve_ops};
use commerce::names;

pub use handler::{Fence, MergeProcessor};
pub use metrics::{MergeMetrics, Settled};
pub use settings::MergeSettings;

/// Runs the merge processor (standing by or active) until `shutdown`.
pub async fn run(
    common: CommonSettings,
    settings: MergeSettings,
    shutdown: CancellationToken,
) -> bus_core::anyhow::Result<()> {
    settings.validate()?;
    let (bus, pool) = Bus::connect_with_postgres(&common).await?;
    let metrics = MergeMetrics::register(&bus.metrics);
    let config = bus.consumer_config(&settings.stream, &settings.group, &settings.worker);
    let lease = Lease::new(
        bus.redis.clone(),
        &settings.lease_name(),
        &config.consumer,
        settings.lease.clone(),
    )
    .with_metrics(LeaseMetrics::register(&bus.metrics));
    let producer =
        settings
            .retention
            .producer(&bus, &settings.producer, names::PREDICTION_REQUESTS);
    let _ops = serve_ops(&common.ops_addr, bus.ops_router(), shutdown.clone()).await?;

    let mut runner = Runner::new(shutdown.clone());
    runner.trim(producer.clone());
    let activation = single_active::Activation {
        bus: bus.clone(),
        pool,
        config,
        producer,
        metrics,
        lease,
    };
    runner.spawn(single_active::run(activation, shutdown));
    runner.wait().await?;
    Ok(())
}
