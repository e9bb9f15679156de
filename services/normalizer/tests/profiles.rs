//! The normalizer in-process against real Redis and PostgreSQL: new profiles, matches, merge
//! requests and the conflict rule, anonymous events and dead letters.
#![allow(clippy::unwrap_used)]

mod common;

use bus_core::serde_json::{Value, json};
use bus_core::sqlx;
use bus_testkit::{PostgresServer, RedisServer, eventually};
use common::*;
use uuid::Uuid;

const RAW: &str = "events.raw";
const NORMALIZED: &str = "events.normalized";
const MERGES: &str = "profiles.merge_requests";
const GROUP: &str = "normalizers";

/// Sends one event and waits until the normalizer has published it; returns its profile.
async fn send(
    conn: &mut bus_core::redis::aio::ConnectionManager,
    event_id: &str,
    payload: Value,
) -> Option<Uuid> {
    let before = xlen(conn, NORMALIZED).await;
    xadd_event(conn, RAW, event_id, "brand-a", payload).await;
    await_len(conn, NORMALIZED, before + 1).await;
    let published = normalized(conn, NORMALIZED).await;
    let last = published.last().unwrap();
    assert_eq!(last.event_id, event_id);
    last.profile_id
}

#[tokio::test]
async fn an_event_with_unknown_identifiers_creates_a_profile_and_is_published_normalized() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let service = InProcess::start(&redis, &db, "n1");
    let mut conn = redis_conn(&redis).await;

    let entry = xadd_event(
        &mut conn,
        RAW,
        "e-1",
        "brand-a",
        json!({"phone": "+84 (91) 234-56.78", "email": " Ana@Example.COM", "total": 99.99, "identifiers": {"Loyalty": 7}}),
    )
    .await;
    await_len(&conn, NORMALIZED, 1).await;

    let event = normalized(&mut conn, NORMALIZED).await.remove(0);
    let profile = event.profile_id.expect("a profile");
    assert_eq!(event.event_id, "e-1");
    assert_eq!(event.brand_id, "brand-a");
    assert_eq!(event.event_type, "purchase");
    assert_eq!(
        bus_core::serde_json::to_value(&event.identifiers).unwrap(),
        json!({"phone": "+84912345678", "email": "ana@example.com", "loyalty": "7"})
    );
    assert_eq!(
        Value::Object(event.normalized_payload),
        json!({"phone": "+84912345678", "email": "ana@example.com", "total": 99.99, "identifiers": {"Loyalty": "7"}})
    );
    assert_eq!(
        commerce::messages::format_timestamp(&event.timestamp),
        "2024-12-01T10:00:00.000Z"
    );

    let pool = pool(&db).await;
    let brand: String = sqlx::query_scalar("SELECT brand_id FROM profiles WHERE profile_id = $1")
        .bind(profile)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(brand, "brand-a");
    let owned: Vec<(String, String)> = sqlx::query_as(
        "SELECT kind, value FROM profile_identifiers WHERE profile_id = $1 ORDER BY kind",
    )
    .bind(profile)
    .fetch_all(&pool)
    .await
    .unwrap();
    let owned: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        owned,
        [
            ("email", "ana@example.com"),
            ("loyalty", "7"),
            ("phone", "+84912345678")
        ]
    );
    let (stored_profile, stream_id, payload, merge): (Option<Uuid>, String, Value, Option<Vec<Uuid>>) =
        sqlx::query_as("SELECT profile_id, stream_id, payload, merge_profile_ids FROM events WHERE event_id = 'e-1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (stored_profile, stream_id.as_str(), merge),
        (Some(profile), entry.as_str(), None)
    );
    assert_eq!(
        payload["phone"], "+84 (91) 234-56.78",
        "the audit trail keeps the raw payload"
    );

    let new_profiles = r#"normalizer_events_total{outcome="new_profile"}"#;
    eventually("the new_profile count", WAIT, || {
        service.metric(new_profiles)
    })
    .await;
    assert_eq!(service.metric(new_profiles).await, Some(1.0));
    assert_eq!(xlen(&mut conn, MERGES).await, 0);
}

#[tokio::test]
async fn a_later_event_with_the_same_phone_written_differently_matches_the_profile() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let service = InProcess::start(&redis, &db, "n1");
    let mut conn = redis_conn(&redis).await;

    let first = send(&mut conn, "e-1", json!({"phone": "+84 912 345 678"})).await;
    let second = send(
        &mut conn,
        "e-2",
        json!({"phone": "0084-912-345-678", "device_id": "d-9"}),
    )
    .await;

    assert!(first.is_some());
    assert_eq!(second, first);
    let pool = pool(&db).await;
    assert_eq!(
        table_counts(&pool).await,
        (1, 2, 2),
        "one profile that gained the device id"
    );
    assert_eq!(
        service
            .metric(r#"normalizer_events_total{outcome="matched"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn an_event_tying_two_profiles_goes_to_the_older_and_raises_an_automatic_merge() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let service = InProcess::start(&redis, &db, "n1");
    let mut conn = redis_conn(&redis).await;
    let p1 = send(&mut conn, "e-1", json!({"phone": "0912345678"}))
        .await
        .unwrap();
    let p2 = send(&mut conn, "e-2", json!({"email": "b@y.com"}))
        .await
        .unwrap();

    let got = send(
        &mut conn,
        "e-3",
        json!({"phone": "0912345678", "email": "B@y.com", "customer_id": "c-3"}),
    )
    .await;

    assert_eq!(got, Some(p1));
    await_len(&conn, MERGES, 1).await;
    let request = merge_requests(&mut conn, MERGES).await.remove(0);
    assert_eq!(request.profile_ids, [p1, p2], "oldest first");
    assert_eq!(request.brand_id, "brand-a");
    assert_eq!(request.reason, commerce::MergeReason::IdentifierMatch);
    assert!(!request.requires_manual_review);
    assert_eq!(request.request_id.as_deref(), Some("e-3"));
    assert_eq!(request.event_id.as_deref(), Some("e-3"));

    let pool = pool(&db).await;
    let owners: Vec<(String, Uuid)> =
        sqlx::query_as("SELECT kind, profile_id FROM profile_identifiers ORDER BY kind")
            .fetch_all(&pool)
            .await
            .unwrap();
    // The email stays with P2 until the merge moves it; the new customer id goes to P1.
    assert_eq!(
        owners,
        [
            ("customer_id".into(), p1),
            ("email".into(), p2),
            ("phone".into(), p1)
        ]
    );
    let (merge, review): (Option<Vec<Uuid>>, Option<bool>) = sqlx::query_as(
        "SELECT merge_profile_ids, merge_requires_review FROM events WHERE event_id = 'e-3'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((merge, review), (Some(vec![p1, p2]), Some(false)));
    assert_eq!(
        service
            .metric(r#"normalizer_events_total{outcome="merged_match"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        service
            .metric(r#"normalizer_merge_requests_total{review="false"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn profiles_holding_different_emails_need_manual_review() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let service = InProcess::start(&redis, &db, "n1");
    let mut conn = redis_conn(&redis).await;
    let p1 = send(
        &mut conn,
        "e-1",
        json!({"phone": "0912345678", "email": "a@x.com"}),
    )
    .await
    .unwrap();
    let p2 = send(&mut conn, "e-2", json!({"email": "b@y.com"}))
        .await
        .unwrap();

    let got = send(
        &mut conn,
        "e-3",
        json!({"phone": "0912345678", "email": "b@y.com"}),
    )
    .await;

    assert_eq!(got, Some(p1));
    await_len(&conn, MERGES, 1).await;
    let request = merge_requests(&mut conn, MERGES).await.remove(0);
    assert_eq!(request.profile_ids, [p1, p2]);
    assert!(request.requires_manual_review);
    assert_eq!(
        service
            .metric(r#"normalizer_merge_requests_total{review="true"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn an_event_without_usable_identifiers_is_stored_anonymously_and_published_with_an_empty_profile()
 {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let service = InProcess::start(&redis, &db, "n1");
    let mut conn = redis_conn(&redis).await;

    let payload = json!({"phone": "12", "email": "not-an-email", "page": "/home"});
    let profile = send(&mut conn, "e-1", payload.clone()).await;

    assert_eq!(profile, None);
    let (_, fields) = entries(&mut conn, NORMALIZED).await.remove(0);
    assert_eq!(fields.get("profile_id"), Some(""));
    assert_eq!(fields.get("identifiers"), Some("{}"));
    let published: Value =
        bus_core::serde_json::from_str(fields.get("normalized_payload").unwrap()).unwrap();
    assert_eq!(
        published, payload,
        "rejected identifiers stay in the payload unchanged"
    );
    let pool = pool(&db).await;
    assert_eq!(table_counts(&pool).await, (0, 0, 1));
    let stored: Option<Uuid> =
        sqlx::query_scalar("SELECT profile_id FROM events WHERE event_id = 'e-1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, None);
    assert_eq!(
        service
            .metric(r#"normalizer_events_total{outcome="anonymous"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        service
            .metric(r#"normalizer_identifiers_rejected_total{kind="phone"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        service
            .metric(r#"normalizer_identifiers_rejected_total{kind="email"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn an_undecodable_entry_is_dead_lettered_naming_the_field() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let _service = InProcess::start(&redis, &db, "n1");
    let mut conn = redis_conn(&redis).await;

    let no_brand = xadd(
        &mut conn,
        RAW,
        &[
            ("event_id", "e-1"),
            ("event_type", "purchase"),
            ("payload", "{}"),
            ("timestamp", "2024-12-01T10:00:00Z"),
        ],
    )
    .await;
    let bad_payload = xadd(
        &mut conn,
        RAW,
        &[
            ("event_id", "e-2"),
            ("brand_id", "b"),
            ("event_type", "purchase"),
            ("payload", "[1]"),
            ("timestamp", "2024-12-01T10:00:00Z"),
        ],
    )
    .await;
    xadd_event(&mut conn, RAW, "e-3", "b", json!({"phone": "0912345678"})).await;

    let dlq = format!("{RAW}:dlq");
    await_len(&conn, &dlq, 2).await;
    let letters = dead_letters(&mut conn).await;
    let first = &letters[&no_brand];
    assert_eq!(first.get("dlq_kind"), Some("decode"));
    assert!(
        first.get("dlq_reason").unwrap().contains("`brand_id`"),
        "{first:?}"
    );
    let second = &letters[&bad_payload];
    assert_eq!(second.get("dlq_kind"), Some("decode"));
    assert!(
        second.get("dlq_reason").unwrap().contains("`payload`"),
        "{second:?}"
    );
    await_idle(&conn, RAW, GROUP).await;
    assert_eq!(
        xlen(&mut conn, NORMALIZED).await,
        1,
        "the valid event went on"
    );
}

#[tokio::test]
async fn an_event_with_an_overlong_key_field_is_dead_lettered_naming_it() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let _service = InProcess::start(&redis, &db, "n1");
    let mut conn = redis_conn(&redis).await;

    let long_brand = "b".repeat(257);
    let bad = xadd_event(
        &mut conn,
        RAW,
        "e-1",
        &long_brand,
        json!({"phone": "0912345678"}),
    )
    .await;
    xadd_event(&mut conn, RAW, "e-2", "b", json!({"phone": "0912345678"})).await;

    let dlq = format!("{RAW}:dlq");
    await_len(&conn, &dlq, 1).await;
    let letter = &dead_letters(&mut conn).await[&bad];
    assert_eq!(letter.get("dlq_kind"), Some("permanent"));
    assert!(
        letter
            .get("dlq_reason")
            .unwrap()
            .contains("`brand_id` has 257 characters"),
        "{letter:?}"
    );
    await_idle(&conn, RAW, GROUP).await;
    let published: Vec<String> = normalized(&mut conn, NORMALIZED)
        .await
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(published, ["e-2"]);
}

#[tokio::test]
async fn an_event_postgres_refuses_is_dead_lettered_and_the_rest_of_its_batch_is_stored() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let mut conn = redis_conn(&redis).await;
    // All three in one stream before the worker starts, so they arrive as one batch.
    xadd_event(&mut conn, RAW, "e-1", "b", json!({"phone": "0911111111"})).await;
    let bad = xadd_event(
        &mut conn,
        RAW,
        "e-2",
        "b",
        json!({"phone": "0922222222", "note": "a\u{0}b"}),
    )
    .await;
    xadd_event(&mut conn, RAW, "e-3", "b", json!({"phone": "0933333333"})).await;

    let _service = InProcess::start(&redis, &db, "n1");

    let dlq = format!("{RAW}:dlq");
    await_len(&conn, &dlq, 1).await;
    let letter = &dead_letters(&mut conn).await[&bad];
    assert_eq!(letter.get("dlq_kind"), Some("permanent"));
    assert!(
        letter
            .get("dlq_reason")
            .unwrap()
            .contains("unsupported Unicode escape sequence"),
        "{letter:?}"
    );
    await_idle(&conn, RAW, GROUP).await;
    let pool = pool(&db).await;
    assert_eq!(
        table_counts(&pool).await,
        (2, 2, 2),
        "nothing of the refused event remains"
    );
    let published: Vec<String> = normalized(&mut conn, NORMALIZED)
        .await
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(published, ["e-1", "e-3"]);
}

#[tokio::test]
async fn with_a_namespace_every_stream_is_the_tenants() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let _service = InProcess::start_with(&redis, &db, "n1", Some("acme"), test_settings());
    let mut conn = redis_conn(&redis).await;

    let raw = "tenant:acme:events.raw";
    let out = "tenant:acme:events.normalized";
    // One at a time, so the first two create two profiles that the third ties together.
    for (n, (id, payload)) in [
        ("e-1", json!({"phone": "0912345678"})),
        ("e-2", json!({"email": "a@x.com"})),
        ("e-3", json!({"phone": "0912345678", "email": "a@x.com"})),
    ]
    .into_iter()
    .enumerate()
    {
        xadd_event(&mut conn, raw, id, "b", payload).await;
        await_len(&conn, out, n + 1).await;
    }

    await_len(&conn, "tenant:acme:profiles.merge_requests", 1).await;
    assert_eq!(xlen(&mut conn, NORMALIZED).await, 0);
    assert_eq!(xlen(&mut conn, MERGES).await, 0);
}
