//! The prediction dispatcher of seed 001: consumes `predictions.requests` in the group
//! `prediction-processors`, predicts churn, lifetime value and RFM segment for each request's
//! profile from its stored features, upserts the results in `predictions` (one row per
//! profile and type) and announces each request's completion as a hybrid event on
//! `predictions.completed` and `channel:predictions:completed`.
//!
//! The model is the built-in [`rfm`] (`rfm-v1`, pure functions of the features and the time),
//! or an [`external`] model over HTTP when `MODEL_URL` is set; the external model being down
//! leaves requests pending until it is back, never dead-lettered.

pub mod external;
pub mod features;
mod handler;
mod metrics;
pub mod model;
pub mod rfm;
mod settings;
mod store;

use std::time::Duration;

use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{Bus, CommonSettings, Runner, serve_ops};
use commerce::names;

pub use external::{ExternalModel, ModelError};
pub use handler::{Dispatcher, Model};
pub use metrics::{DispatcherMetrics, ModelErrorKind};
pub use settings::DispatcherSettings;

/// Runs the dispatcher until `shutdown`.
pub async fn run(
    common: CommonSettings,
    settings: DispatcherSettings,
    shutdown: CancellationToken,
) -> bus_core::anyhow::Result<()> {
    settings.validate()?;
    let (bus, pool) = Bus::connect_with_postgres(&common).await?;
    let metrics = DispatcherMetrics::register(&bus.metrics);
    let model = match settings.model_url()? {
        Some(url) => {
            tracing::info!(url, "predicting with the external model");
            Model::External(
                ExternalModel::new(
                    url,
                    settings.model_timeout(),
                    settings.model_retries,
                    Duration::from_millis(settings.model_retry_backoff_ms),
                    metrics.clone(),
                )?
                .with_concurrency(settings.model_concurrency),
            )
        }
        None => {
            tracing::info!(version = rfm::VERSION, "predicting with the built-in model");
            Model::Builtin
        }
    };
    let completed =
        settings
            .retention
            .producer(&bus, &settings.producer, names::PREDICTIONS_COMPLETED);
    let handler = Dispatcher::new(pool, model, bus.publisher(completed.clone()), metrics);
    let config = bus.consumer_config(
        names::PREDICTION_REQUESTS,
        names::PREDICTION_PROCESSORS,
        &settings.worker,
    );
    let _ops = serve_ops(&common.ops_addr, bus.ops_router(), shutdown.clone()).await?;
    let mut runner = Runner::new(shutdown.clone());
    // The hybrid events register their stream with the producer, so its trimmer applies the
    // retention of `predictions.completed`.
    runner.consume(&bus, config, handler).trim(completed);
    runner.wait().await?;
    Ok(())
}
