//! A PostgreSQL crash and restart: events wait, nothing is dead-lettered or lost.
#![allow(clippy::unwrap_used)]

mod common;

use bus_core::WorkerSettings;
use bus_core::redis;
use bus_core::serde_json::json;
use bus_testkit::{PostgresServer, RedisServer, until};
use common::*;
use normalizer::NormalizerSettings;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_while_postgres_is_down_are_normalized_after_it_restarts() {
    let redis = RedisServer::start().unwrap();
    let mut postgres = PostgresServer::start().unwrap();
    let db = postgres.create_database().unwrap();
    let settings = NormalizerSettings {
        worker: WorkerSettings {
            retry_max_ms: 500,
            ..test_settings().worker
        },
        ..test_settings()
    };
    let _service = InProcess::start_with(&redis, &db, "n1", None, settings);
    let mut conn = redis_conn(&redis).await;
    xadd_event(
        &mut conn,
        "events.raw",
        "e-1",
        "b",
        json!({"phone": "0912345678"}),
    )
    .await;
    await_len(&conn, "events.normalized", 1).await;

    postgres.kill();
    xadd_event(
        &mut conn,
        "events.raw",
        "e-2",
        "b",
        json!({"phone": "0912345678"}),
    )
    .await;
    xadd_event(
        &mut conn,
        "events.raw",
        "e-3",
        "b",
        json!({"email": "a@x.com"}),
    )
    .await;
    until("the new events to be read and left pending", WAIT, || {
        let mut conn = conn.clone();
        async move {
            let summary: (u64, Option<String>, Option<String>, redis::Value) =
                redis::cmd("XPENDING")
                    .arg("events.raw")
                    .arg("normalizers")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            summary.0 == 2
        }
    })
    .await;
    postgres.restart().unwrap();

    await_len(&conn, "events.normalized", 3).await;
    await_idle(&conn, "events.raw", "normalizers").await;
    assert_eq!(xlen(&mut conn, "events.raw:dlq").await, 0);
    let pool = pool(&db).await;
    assert_eq!(table_counts(&pool).await, (2, 2, 3));
    let published = normalized(&mut conn, "events.normalized").await;
    let profile_of = |id: &str| {
        published
            .iter()
            .find(|e| e.event_id == id)
            .unwrap()
            .profile_id
    };
    assert_eq!(
        profile_of("e-2"),
        profile_of("e-1"),
        "e-2 matched e-1's profile"
    );
}
