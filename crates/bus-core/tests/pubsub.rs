//! Pub/Sub: typed publishing, resubscription after a dropped connection, isolation of slow
//! handlers, and hybrid events.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus_core::{Received, SubscriberError};
use bus_testkit::RedisServer;
use common::*;
use tokio_util::sync::CancellationToken;

type Seen = Arc<Mutex<Vec<String>>>;

fn collector() -> (Seen, impl bus_core::MessageHandler) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |m: Received| {
        sink.lock().unwrap().push(m.payload);
        std::future::ready(Ok(()))
    })
}

#[tokio::test]
async fn a_subscriber_resubscribes_by_itself_after_redis_restarts() {
    let mut server = RedisServer::start().unwrap();
    let bus = bus(&server.url()).await;
    let publisher = bus.publisher(bus.producer(Default::default()));
    let (seen, handler) = collector();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(
        bus.subscriber()
            .channel("news", handler)
            .run(shutdown.clone()),
    );
    until("subscribed", Duration::from_secs(10), || async {
        publisher.publish_raw("news", "hello").await.unwrap_or(0) == 1
    })
    .await;

    server.kill();
    server.restart().unwrap();
    until("resubscribed", Duration::from_secs(20), || async {
        publisher.publish_raw("news", "again").await.unwrap_or(0) == 1
    })
    .await;
    until(
        "message received after the restart",
        Duration::from_secs(5),
        || async { seen.lock().unwrap().contains(&"again".to_string()) },
    )
    .await;
    assert!(
        bus.metrics
            .encode()
            .contains(r#"bus_redis_reconnects_total{role="pubsub"}"#)
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_slow_handler_does_not_block_other_subscriptions_and_invalid_messages_are_counted() {
    let server = RedisServer::start().unwrap();
    let bus = bus(&server.url()).await;
    let publisher = bus.publisher(bus.producer(Default::default()));
    let (seen, fast) = collector();
    let slow = |_m: Received| async {
        std::future::pending::<()>().await;
        Ok(())
    };
    let strict = |m: Received| async move {
        m.json::<serde_json::Value>()
            .map(|_| ())
            .map_err(SubscriberError::from)
    };
    let shutdown = CancellationToken::new();
    let subscriber = bus
        .subscriber()
        .channel("slow", slow)
        .pattern("fast:*", fast)
        .channel("strict", strict);
    let task = tokio::spawn(subscriber.run(shutdown.clone()));
    until("subscribed", Duration::from_secs(10), || async {
        publisher.publish_raw("fast:x", "0").await.unwrap_or(0) == 1
    })
    .await;
    for i in 0..5 {
        publisher.publish_raw("slow", &i.to_string()).await.unwrap();
        publisher
            .publish_raw("fast:y", &format!("f{i}"))
            .await
            .unwrap();
    }
    publisher.publish_raw("strict", "{not json").await.unwrap();
    until(
        "fast messages arrive despite the stuck handler",
        Duration::from_secs(5),
        || async {
            seen.lock()
                .unwrap()
                .iter()
                .filter(|p| p.starts_with('f'))
                .count()
                == 5
        },
    )
    .await;
    until(
        "the invalid message is counted",
        Duration::from_secs(5),
        || async {
            bus.metrics
                .encode()
                .contains(r#"bus_pubsub_received_total{channel="strict",outcome="invalid"} 1"#)
        },
    )
    .await;
    assert!(
        bus.metrics
            .encode()
            .contains(r#"bus_pubsub_received_total{channel="fast:*",outcome="ok"}"#),
        "patterns are labelled by pattern"
    );
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

#[tokio::test]
async fn a_hybrid_event_is_both_persisted_and_published() {
    let server = RedisServer::start().unwrap();
    let bus = bus(&server.url()).await;
    let publisher = bus.publisher(bus.producer(Default::default()));
    let (seen, handler) = collector();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(
        bus.subscriber()
            .channel("payments:live", handler)
            .run(shutdown.clone()),
    );
    until("subscribed", Duration::from_secs(10), || async {
        publisher
            .publish_raw("payments:live", "ping")
            .await
            .unwrap_or(0)
            == 1
    })
    .await;
    let fields: bus_core::Fields = [("paymentId", "pay_123")].into_iter().collect();
    let (id, receivers) = publisher
        .publish_hybrid(
            "payments",
            &fields,
            "payments:live",
            &serde_json::json!({"paymentId": "pay_123"}),
        )
        .await
        .unwrap();
    assert_eq!(receivers, 1);
    let stored: Vec<(String, Vec<(String, String)>)> = redis_cmd(
        &bus,
        bus_core::redis::cmd("XRANGE")
            .arg("payments")
            .arg("-")
            .arg("+"),
    )
    .await;
    assert_eq!(stored[0].0, id.to_string());
    assert_eq!(
        stored[0].1[0],
        ("paymentId".to_string(), "pay_123".to_string())
    );
    until("notification received", Duration::from_secs(5), || async {
        seen.lock().unwrap().iter().any(|p| p.contains("pay_123"))
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_namespace_keeps_tenants_apart() {
    let server = RedisServer::start().unwrap();
    let settings = bus_core::CommonSettings {
        redis_namespace: Some("acme".into()),
        ..common(&server.url())
    };
    let acme = bus_core::Bus::connect(&settings).await.unwrap();
    let plain = bus(&server.url()).await;
    produce(&acme, "events", 3).await;
    assert_eq!(xlen(&plain, "tenant:acme:events").await, 3);
    assert_eq!(xlen(&plain, "events").await, 0);
}
