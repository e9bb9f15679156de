//! command-broadcaster: the server→service control plane of seed 000.
//!
//! An HTTP API that validates commands and publishes them as `{command, data, timestamp}`
//! on `channel:service:{serviceId}:commands` (one service, a list, or every service with a
//! subscribed command channel), and a WebSocket relay of notification channels for
//! browsers. Ops routes are served on the same listener.

mod api;
mod metrics;
mod settings;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{
    Bus, BusError, CommonSettings, ProducerSettings, Publisher, Received, Redis, Runner,
};
use tokio::sync::broadcast;

pub use api::valid_service_id;
pub use metrics::BroadcasterMetrics;
pub use settings::BroadcasterSettings;
pub use ws::Relayed;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    publisher: Publisher,
    redis: Redis,
    metrics: Arc<BroadcasterMetrics>,
    api_token: Option<String>,
    ws_channels: Arc<Vec<String>>,
    relay: broadcast::Sender<Relayed>,
    shutdown: CancellationToken,
}

impl AppState {
    /// Services with at least one subscriber on their command channel (`PUBSUB CHANNELS`).
    async fn subscribed_services(&self) -> Result<Vec<String>, BusError> {
        let pattern = self.redis.key("channel:service:*:commands");
        let mut conn = self.redis.shared();
        let channels: Vec<String> = bus_core::redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg(&pattern)
            .query_async(&mut conn)
            .await?;
        let prefix = format!("{}channel:service:", self.redis.prefix());
        let mut services: Vec<String> = channels
            .iter()
            .filter_map(|c| c.strip_prefix(&prefix)?.strip_suffix(":commands"))
            .filter(|id| valid_service_id(id))
            .map(str::to_owned)
            .collect();
        services.sort();
        services.dedup();
        Ok(services)
    }
}

/// Runs the service until `shutdown`.
pub async fn run(
    common: CommonSettings,
    settings: BroadcasterSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    settings.validate()?;
    let bus = Bus::connect(&common).await?;
    let metrics = BroadcasterMetrics::register(&bus.metrics);
    let (relay, _) = broadcast::channel(settings.ws_buffer);
    let state = AppState {
        publisher: bus.publisher(bus.producer(ProducerSettings::default())),
        redis: bus.redis.clone(),
        metrics,
        api_token: settings.api_token.clone(),
        ws_channels: Arc::new(settings.channels()),
        relay: relay.clone(),
        shutdown: shutdown.clone(),
    };
    let api = Router::new()
        .route("/api/commands", post(api::broadcast))
        .route("/api/commands/{service_id}", post(api::send_one))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::require_token,
        ));
    let app = api
        .route("/ws", get(ws::upgrade))
        .with_state(state.clone())
        .merge(bus.ops_router());
    let server = bus_core::serve_ops(&settings.http_addr, app, shutdown.clone()).await?;
    // The ops routes also live on OPS_ADDR, like every other service's, so one scrape and
    // health-check convention covers the whole pipeline.
    let ops = bus_core::serve_ops(&common.ops_addr, bus.ops_router(), shutdown.clone()).await?;
    tracing::info!(addr = %settings.http_addr, "command API listening (/api/commands, /ws)");

    let prefix = bus.redis.prefix().to_owned();
    let mut subscriber = bus.subscriber();
    for channel in state.ws_channels.iter() {
        let (relay, prefix) = (relay.clone(), prefix.clone());
        subscriber = subscriber.channel(channel, move |m: Received| {
            let channel = m
                .channel
                .strip_prefix(&prefix)
                .unwrap_or(&m.channel)
                .to_owned();
            // No receivers (no browser connected) is not an error.
            let _ = relay.send(Relayed {
                channel,
                payload: m.payload,
            });
            async { Ok(()) }
        });
    }
    let mut runner = Runner::new(shutdown.clone());
    runner.spawn(subscriber.run(shutdown.clone()));
    let result = runner.wait().await;
    let _ = server.await;
    let _ = ops.await;
    Ok(result?)
}
