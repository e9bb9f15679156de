//! The gateway: the HTTP front door of the commerce pipeline (seeds 001 and 002).
//!
//! - `POST /api/events` validates events (one, an array, or `{"events": [...]}`) and appends
//!   them to `events.raw` in seed 001's format, a whole batch in one pipelined round trip;
//! - `POST /api/items` appends seed 003 items to `raw_items` (the validator's input);
//! - `POST /api/predictions` appends a request to `predictions.requests`;
//! - `GET /api/streams/info`, `/api/streams/{name}`, `/api/streams/{name}/pending` inspect
//!   the streams as seed 001's API did;
//! - `GET /api/openapi.json` and `/api/docs` describe all of it.
//!
//! A request is validated completely before anything is written: a bad one gets a 4xx naming
//! the field (`events[3].brand_id`) and writes nothing; a 202 lists the stream ids written;
//! Redis unreachable is a 503, never a 202. With `API_TOKEN` set, `/api/*` requires the
//! bearer token, except the API's description (`/api/openapi.json`, `/api/docs`). Each written
//! stream is trimmed to its retention by the lag-aware trim.

mod app;
mod auth;
mod body;
mod docs;
mod error;
mod events;
mod items;
mod metrics;
mod predictions;
mod settings;
mod streams;

use std::sync::Arc;

use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{Bus, CommonSettings, Runner, serve_ops};
use commerce::names;
use metrics::GatewayMetrics;

pub use app::served_routes;
pub use docs::OPENAPI;
pub use settings::{ApiToken, GatewaySettings};

/// The validator's input stream (seed 003).
pub const RAW_ITEMS: &str = "raw_items";

/// Runs the gateway until `shutdown`.
pub async fn run(
    common: CommonSettings,
    settings: GatewaySettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    settings.validate()?;
    let bus = Bus::connect(&common).await?;
    let base = settings.effective_producer();
    let producer = |stream| settings.retention.producer(&bus, &base, stream);
    let producers = app::Producers {
        events: producer(names::EVENTS_RAW),
        items: producer(RAW_ITEMS),
        predictions: producer(names::PREDICTION_REQUESTS),
    };
    let state = app::AppState {
        redis: bus.redis.clone(),
        metrics: GatewayMetrics::register(&bus.metrics),
        api_token: settings.api_token.clone(),
        max_body_bytes: settings.max_body_bytes,
        max_batch: settings.max_batch,
        max_read_count: settings.max_read_count,
        streams: Arc::new(settings.stream_names()),
        producers: producers.clone(),
    };
    let app = app::router(state, bus.ops_router());
    let server = serve_ops(&settings.http_addr, app, shutdown.clone()).await?;
    // The ops routes also live on OPS_ADDR, like every other service's, so one scrape and
    // health-check convention covers the whole pipeline.
    let ops = serve_ops(&common.ops_addr, bus.ops_router(), shutdown.clone()).await?;
    tracing::info!(addr = %settings.http_addr, "gateway listening (/api/docs describes the API)");

    let mut runner = Runner::new(shutdown.clone());
    for producer in producers.all() {
        runner.trim(producer.clone());
    }
    let result = runner.wait().await;
    // The trimmers end at once when trimming is off; the listeners run until shutdown.
    let _ = server.await;
    let _ = ops.await;
    Ok(result?)
}
