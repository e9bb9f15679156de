//! The dispatcher's metrics, read from the process registry after a batch.
#![allow(clippy::unwrap_used)]

mod common;

use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{Bus, ProducerSettings, Runner, WorkerSettings};
use commerce::{RequestType, names};
use common::{Env, request};
use prediction_dispatcher::{Dispatcher, DispatcherMetrics, Model};

#[tokio::test]
async fn predictions_are_counted_by_type_and_model_with_their_duration() {
    let env = Env::start().await;
    let profile = env.profile("shop", None).await;
    env.send(&[
        request(profile, "shop", RequestType::All, None),
        request(profile, "shop", RequestType::Churn, None),
    ])
    .await;

    let bus = Bus::connect(&env.common()).await.unwrap();
    let publisher = bus.publisher(bus.producer(ProducerSettings::default()));
    let handler = Dispatcher::new(
        env.pool.clone(),
        Model::Builtin,
        publisher,
        DispatcherMetrics::register(&bus.metrics),
    );
    let worker = WorkerSettings {
        block_ms: 200,
        ..WorkerSettings::default()
    };
    let config = bus.consumer_config(
        names::PREDICTION_REQUESTS,
        names::PREDICTION_PROCESSORS,
        &worker,
    );
    let shutdown = CancellationToken::new();
    let mut runner = Runner::new(shutdown.clone());
    runner.consume(&bus, config, handler);
    let running = tokio::spawn(runner.wait());
    env.wait_idle().await;
    shutdown.cancel();
    running.await.unwrap().unwrap();

    let text = bus.metrics.encode();
    for line in [
        r#"prediction_dispatcher_predictions_total{type="churn",model="builtin"} 2"#,
        r#"prediction_dispatcher_predictions_total{type="ltv",model="builtin"} 1"#,
        r#"prediction_dispatcher_predictions_total{type="segment",model="builtin"} 1"#,
        r#"prediction_dispatcher_model_duration_seconds_count{model="builtin"} 2"#,
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}
