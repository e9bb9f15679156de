//! Replays and reused event ids: nothing changes in PostgreSQL, and the same downstream
//! entries are published again from what was stored.
#![allow(clippy::unwrap_used)]

mod common;

use bus_core::Fields;
use bus_core::redis::{self, aio::ConnectionManager};
use bus_core::serde_json::json;
use bus_core::sqlx::{self, PgPool};
use bus_testkit::{PostgresServer, RedisServer};
use common::*;
use uuid::Uuid;

const RAW: &str = "events.raw";
const NORMALIZED: &str = "events.normalized";
const MERGES: &str = "profiles.merge_requests";
const GROUP: &str = "normalizers";

/// Every stored event, as text, in event id order.
async fn events_table(
    pool: &PgPool,
) -> Vec<(
    String,
    Option<Uuid>,
    String,
    String,
    Option<Vec<Uuid>>,
    String,
)> {
    sqlx::query_as(
        "SELECT event_id, profile_id, stream_id, identifiers::text, merge_profile_ids, received_at::text
         FROM events ORDER BY event_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn fields_only(entries: Vec<(String, Fields)>) -> Vec<Fields> {
    entries.into_iter().map(|(_, f)| f).collect()
}

async fn send_and_wait(
    conn: &mut ConnectionManager,
    n: usize,
    event_id: &str,
    payload: bus_core::serde_json::Value,
) {
    xadd_event(conn, RAW, event_id, "brand-a", payload).await;
    await_len(conn, NORMALIZED, n).await;
}

#[tokio::test]
async fn replaying_the_stream_changes_nothing_and_republishes_the_same_entries() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let service = InProcess::start(&redis, &db, "n1");
    let mut conn = redis_conn(&redis).await;
    send_and_wait(&mut conn, 1, "e-1", json!({"phone": "0912345678"})).await;
    send_and_wait(&mut conn, 2, "e-2", json!({"email": "b@y.com"})).await;
    send_and_wait(
        &mut conn,
        3,
        "e-3",
        json!({"phone": "0912345678", "email": "b@y.com"}),
    )
    .await;
    send_and_wait(&mut conn, 4, "e-4", json!({"page": "/"})).await;
    await_idle(&conn, RAW, GROUP).await;
    let pool = pool(&db).await;
    let counts = table_counts(&pool).await;
    let stored = events_table(&pool).await;
    let first_normalized = fields_only(entries(&mut conn, NORMALIZED).await);
    let first_merges = fields_only(entries(&mut conn, MERGES).await);
    assert_eq!((counts, first_merges.len()), ((2, 2, 4), 1));

    // Rewind the group: every entry is delivered a second time.
    let () = redis::cmd("XGROUP")
        .arg("SETID")
        .arg(RAW)
        .arg(GROUP)
        .arg("0")
        .arg("ENTRIESREAD")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    await_len(&conn, NORMALIZED, 8).await;
    await_len(&conn, MERGES, 2).await;
    await_idle(&conn, RAW, GROUP).await;

    assert_eq!(table_counts(&pool).await, counts);
    assert_eq!(events_table(&pool).await, stored);
    let all_normalized = fields_only(entries(&mut conn, NORMALIZED).await);
    assert_eq!(all_normalized[4..], first_normalized[..]);
    let all_merges = fields_only(entries(&mut conn, MERGES).await);
    assert_eq!(all_merges[1..], first_merges[..]);
    let duplicates = r#"normalizer_events_total{outcome="duplicate"}"#;
    assert_eq!(service.metric(duplicates).await, Some(4.0));
    assert_eq!(
        service
            .metric(r#"normalizer_merge_requests_total{review="false"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_different_entry_reusing_a_stored_event_id_republishes_the_stored_result() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let service = InProcess::start(&redis, &db, "n1");
    let mut conn = redis_conn(&redis).await;
    let first = xadd_event(
        &mut conn,
        RAW,
        "e-1",
        "brand-a",
        json!({"phone": "0912345678"}),
    )
    .await;
    await_len(&conn, NORMALIZED, 1).await;

    xadd_event(
        &mut conn,
        RAW,
        "e-1",
        "brand-b",
        json!({"email": "other@x.com"}),
    )
    .await;
    await_len(&conn, NORMALIZED, 2).await;

    let pool = pool(&db).await;
    assert_eq!(table_counts(&pool).await, (1, 1, 1));
    let stream_id: String =
        sqlx::query_scalar("SELECT stream_id FROM events WHERE event_id = 'e-1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stream_id, first);
    let published = fields_only(entries(&mut conn, NORMALIZED).await);
    assert_eq!(published[1], published[0]);
    assert_eq!(published[1].get("brand_id"), Some("brand-a"));
    await_idle(&conn, RAW, GROUP).await;
    let duplicates = r#"normalizer_events_total{outcome="duplicate"}"#;
    assert_eq!(service.metric(duplicates).await, Some(1.0));
}

#[tokio::test]
async fn the_same_event_twice_in_one_batch_is_stored_once_and_published_twice() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let mut conn = redis_conn(&redis).await;
    // Both entries are in the stream before the worker starts: they arrive as one batch.
    xadd_event(
        &mut conn,
        RAW,
        "e-1",
        "brand-a",
        json!({"phone": "0912345678"}),
    )
    .await;
    xadd_event(
        &mut conn,
        RAW,
        "e-1",
        "brand-a",
        json!({"phone": "0912345678"}),
    )
    .await;

    let _service = InProcess::start(&redis, &db, "n1");
    await_len(&conn, NORMALIZED, 2).await;
    await_idle(&conn, RAW, GROUP).await;

    let pool = pool(&db).await;
    assert_eq!(table_counts(&pool).await, (1, 1, 1));
    let published = fields_only(entries(&mut conn, NORMALIZED).await);
    assert_eq!(published[1], published[0]);
}
