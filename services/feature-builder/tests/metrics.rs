//! The feature builder's metrics, read from the process registry after a batch.
#![allow(clippy::unwrap_used)]

mod common;

use bus_core::serde_json::json;
use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{Bus, ProducerSettings, Runner, WorkerSettings};
use commerce::names;
use common::{Env, event};
use feature_builder::{FeatureBuilder, FeatureMetrics};

#[tokio::test]
async fn every_outcome_is_counted_once() {
    let env = Env::start().await;
    let profile = env.profile("shop", "2024-11-01T00:00:00Z", None).await;
    let p = Some(profile);
    let view = event("shop", p, "page_view", "2024-12-01T10:00:00Z", json!({}));
    env.send(&[
        view.clone(),
        view,
        event(
            "shop",
            p,
            "purchase",
            "2024-12-02T10:00:00Z",
            json!({"note": "no amount"}),
        ),
        event("shop", None, "page_view", "2024-12-02T10:00:00Z", json!({})),
        event(
            "shop",
            Some(uuid::Uuid::new_v4()),
            "page_view",
            "2024-12-02T10:00:00Z",
            json!({}),
        ),
    ])
    .await;

    let bus = Bus::connect(&env.common()).await.unwrap();
    let handler = FeatureBuilder::new(
        env.pool.clone(),
        bus.producer(ProducerSettings::default()),
        FeatureMetrics::register(&bus.metrics),
    );
    let worker = WorkerSettings {
        block_ms: 200,
        ..WorkerSettings::default()
    };
    let config = bus.consumer_config(names::EVENTS_NORMALIZED, names::EVENT_PROCESSORS, &worker);
    let shutdown = CancellationToken::new();
    let mut runner = Runner::new(shutdown.clone());
    runner.consume(&bus, config, handler);
    let running = tokio::spawn(runner.wait());
    env.wait_idle().await;
    shutdown.cancel();
    running.await.unwrap().unwrap();

    let text = bus.metrics.encode();
    for line in [
        r#"feature_builder_events_total{outcome="applied"} 2"#,
        r#"feature_builder_events_total{outcome="duplicate"} 1"#,
        r#"feature_builder_events_total{outcome="anonymous"} 1"#,
        r#"feature_builder_events_total{outcome="unknown_profile"} 1"#,
        "feature_builder_purchases_without_amount_total 1",
        "feature_builder_prediction_requests_total 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}
