//! Two normalizers in one group racing on the same new identifiers.
#![allow(clippy::unwrap_used)]

mod common;

use bus_core::WorkerSettings;
use bus_core::redis;
use bus_core::serde_json::json;
use bus_testkit::{PostgresServer, RedisServer};
use common::*;
use normalizer::NormalizerSettings;

const PHONES: usize = 20;
/// Events per phone, one after the other: each new phone arrives as a burst that the two
/// consumers' in-flight batches handle at the same time.
const BURST: usize = 10;
const EVENTS: usize = PHONES * BURST;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_normalizers_racing_on_the_same_new_phones_create_one_profile_per_phone() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    // One event per batch, four batches in flight per consumer: eight transactions at once,
    // most of them carrying the same new phone. (Single-event batches also mean a failed
    // insert would be dead-lettered rather than retried in a split.)
    let settings = || NormalizerSettings {
        worker: WorkerSettings {
            batch_size: 1,
            max_in_flight: 4,
            ..test_settings().worker
        },
        ..test_settings()
    };
    let a = InProcess::start_with(&redis, &db, "a", None, settings());
    let b = InProcess::start_with(&redis, &db, "b", None, settings());
    let mut conn = redis_conn(&redis).await;
    bus_testkit::until("both normalizers to serve metrics", WAIT, || async {
        a.metric(r#"normalizer_events_total{outcome="matched"}"#)
            .await
            .is_some()
            && b.metric(r#"normalizer_events_total{outcome="matched"}"#)
                .await
                .is_some()
    })
    .await;

    let mut pipe = redis::pipe();
    for i in 0..EVENTS {
        let payload = json!({"phone": format!("09000000{:02}", i / BURST)}).to_string();
        pipe.cmd("XADD")
            .arg("events.raw")
            .arg("*")
            .arg("event_id")
            .arg(format!("e-{i}"))
            .arg("brand_id")
            .arg("b")
            .arg("event_type")
            .arg("page_view")
            .arg("payload")
            .arg(payload)
            .arg("timestamp")
            .arg("2024-12-01T10:00:00Z")
            .ignore();
    }
    let () = pipe.query_async(&mut conn).await.unwrap();
    await_idle(&conn, "events.raw", "normalizers").await;

    assert_eq!(
        xlen(&mut conn, "events.raw:dlq").await,
        0,
        "no event failed"
    );
    assert_eq!(xlen(&mut conn, "events.normalized").await, EVENTS);

    let pool = pool(&db).await;
    assert_eq!(
        table_counts(&pool).await,
        (PHONES as i64, PHONES as i64, EVENTS as i64)
    );
    let split = count(
        &pool,
        "SELECT count(*) FROM (SELECT identifiers ->> 'phone' FROM events
                               GROUP BY 1 HAVING count(DISTINCT profile_id) <> 1) AS s",
    )
    .await;
    assert_eq!(split, 0, "every phone's events share one profile");
    let mut created = 0.0;
    for service in [&a, &b] {
        let new = service
            .metric(r#"normalizer_events_total{outcome="new_profile"}"#)
            .await
            .unwrap();
        let matched = service
            .metric(r#"normalizer_events_total{outcome="matched"}"#)
            .await
            .unwrap();
        assert!(new + matched > 0.0, "both normalizers took part");
        created += new;
    }
    assert_eq!(created, PHONES as f64);
}
