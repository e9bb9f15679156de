//! The validator of seed 003: consumes `raw_items` in the group `validator_workers`, checks
//! each item's phone, bank account, email and name, and records every item with its verdict
//! (`done`, or `error` with all broken rules' codes) in PostgreSQL, effectively once.

mod handler;
mod message;
pub mod rules;
mod settings;
pub mod store;

use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{Bus, CommonSettings, Runner, serve_ops};

pub use handler::{Validator, ValidatorMetrics};
pub use message::RawItem;
pub use settings::ValidatorSettings;

/// Runs the validator until `shutdown`.
pub async fn run(
    mut common: CommonSettings,
    settings: ValidatorSettings,
    shutdown: CancellationToken,
) -> bus_core::anyhow::Result<()> {
    settings.apply_to(&mut common);
    let worker = settings.effective_worker()?;
    let (bus, pool) = Bus::connect_with_postgres(&common).await?;
    let metrics = ValidatorMetrics::register(&bus.metrics);
    let config = bus.consumer_config(&settings.redis_stream, &settings.consumer_group, &worker);
    let handler = Validator::new(
        pool,
        metrics,
        bus.redis.key(&settings.redis_stream),
        settings.consumer_group.clone(),
        config.consumer.clone(),
    );
    let _ops = serve_ops(&common.ops_addr, bus.ops_router(), shutdown.clone()).await?;
    let mut runner = Runner::new(shutdown);
    runner.consume(&bus, config, handler);
    runner.wait().await?;
    Ok(())
}
