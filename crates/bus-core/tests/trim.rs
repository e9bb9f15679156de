//! Lag-aware trimming never removes entries a group still needs.
#![allow(clippy::unwrap_used)]

mod common;

use bus_core::redis;
use bus_testkit::RedisServer;
use common::*;

#[tokio::test]
async fn trimming_never_removes_undelivered_or_unacknowledged_entries() {
    let server = RedisServer::start().unwrap();
    let bus = bus(&server.url()).await;
    let ids = produce(&bus, "s", 100).await;
    let mut conn = bus.redis.shared();

    // No group yet: a group created later starts at 0, so nothing may go.
    let report = bus_core::trim_lag_aware(&mut conn, "s", 10, 0)
        .await
        .unwrap();
    assert_eq!(report.removed, 0);

    // The group has had 60 delivered, of which the first 50 are acknowledged.
    let _: () = redis_cmd(
        &bus,
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg("s")
            .arg("g")
            .arg("0"),
    )
    .await;
    let _: redis::Value = redis_cmd(
        &bus,
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(60)
            .arg("STREAMS")
            .arg("s")
            .arg(">"),
    )
    .await;
    let acked: Vec<String> = ids[..50].iter().map(ToString::to_string).collect();
    let _: i64 = redis_cmd(&bus, redis::cmd("XACK").arg("s").arg("g").arg(&acked)).await;

    let report = bus_core::trim_lag_aware(&mut conn, "s", 10, 0)
        .await
        .unwrap();
    assert_eq!(report.removed, 50, "only acknowledged entries are trimmed");
    let first: Vec<(String, Vec<(String, String)>)> = redis_cmd(
        &bus,
        redis::cmd("XRANGE")
            .arg("s")
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1),
    )
    .await;
    assert_eq!(
        first[0].0,
        ids[50].to_string(),
        "the oldest pending entry is kept"
    );

    // A hard cap trims regardless, and says so.
    let report = bus_core::trim_lag_aware(&mut conn, "s", 10, 20)
        .await
        .unwrap();
    assert_eq!(report.forced, 30);
    assert_eq!(xlen(&bus, "s").await, 20);
}

#[tokio::test]
async fn the_producer_trims_to_maxlen_once_consumers_have_acknowledged() {
    let server = RedisServer::start().unwrap();
    let bus = bus(&server.url()).await;
    let producer = bus.producer(bus_core::ProducerSettings {
        maxlen: 10,
        ..Default::default()
    });
    let handler = FnHandler::ok();
    let (task, shutdown) = spawn(&bus, config("s", "g", "c", fast_worker()), handler.clone());
    until(
        "the group exists",
        std::time::Duration::from_secs(10),
        || async { pending_count(&bus, "s", "g").await == 0 },
    )
    .await;
    let entries: Vec<bus_core::Fields> = (0..200)
        .map(|i| [("n", i.to_string())].into_iter().collect())
        .collect();
    producer.send_fields("s", entries).await.unwrap();
    until(
        "all are handled",
        std::time::Duration::from_secs(10),
        || async { handler.handled().len() == 200 },
    )
    .await;
    until(
        "the stream is trimmed",
        std::time::Duration::from_secs(10),
        || async {
            producer.trim_once("s").await;
            xlen(&bus, "s").await <= 10
        },
    )
    .await;
    assert!(
        bus.metrics
            .encode()
            .contains(r#"bus_entries_trimmed_total{stream="s",forced="false"} 190"#)
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
