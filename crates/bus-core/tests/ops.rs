//! The ops endpoint: metrics move, readiness follows Redis.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bus_testkit::RedisServer;
use common::*;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn metrics_counters_move_and_readyz_follows_redis() {
    let mut server = RedisServer::start_with_aof().unwrap();
    let bus = bus(&server.url()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    bus_core::serve_ops_on(listener, bus.ops_router(), stop.clone());
    let (task, shutdown) = spawn(&bus, config("s", "g", "c", fast_worker()), FnHandler::ok());
    let http = reqwest::Client::new();
    let status = |path: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.get(format!("{base}{path}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };

    assert_eq!(status("/healthz").await, 200);
    until("ready", Duration::from_secs(10), || async {
        status("/readyz").await == 200
    })
    .await;
    produce(&bus, "s", 7).await;
    let metric = |name: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let body = http
                .get(format!("{base}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            body.lines()
                .find(|l| l.starts_with(name))
                .map(str::to_owned)
                .unwrap_or_default()
        }
    };
    until(
        "acked counter reaches 7",
        Duration::from_secs(10),
        || async { metric("bus_entries_acked_total{").await.ends_with(" 7") },
    )
    .await;
    assert!(metric("bus_entries_produced_total{").await.ends_with(" 7"));
    assert!(metric("bus_entries_consumed_total{").await.ends_with(" 7"));

    server.kill();
    until(
        "not ready while Redis is down",
        Duration::from_secs(10),
        || async { status("/readyz").await == 503 },
    )
    .await;
    assert_eq!(status("/healthz").await, 200, "alive even when not ready");
    server.restart().unwrap();
    until(
        "ready again after Redis is back",
        Duration::from_secs(20),
        || async { status("/readyz").await == 200 },
    )
    .await;

    shutdown.cancel();
    task.await.unwrap().unwrap();
    stop.cancel();
}
