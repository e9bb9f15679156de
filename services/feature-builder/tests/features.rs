//! The feature builder in-process against real Redis and PostgreSQL: exact features, replays
//! counted once, merged profiles, prediction requests, anonymous and unknown profiles.
#![allow(clippy::unwrap_used)]

mod common;

use bus_core::serde_json::json;
use bus_testkit::eventually;
use commerce::names;
use common::{Env, WAIT, at, event};

#[tokio::test]
async fn a_mixed_batch_gives_exact_counts_spent_times_and_events_by_type() {
    let env = Env::start().await;
    let profile = env.profile("shop", "2024-11-01T00:00:00Z", None).await;
    let p = Some(profile);
    // Sent before the builder starts, so the worker reads them as one batch.
    env.send(&[
        event("shop", p, "page_view", "2024-12-01T10:00:00Z", json!({})),
        event(
            "shop",
            p,
            "purchase",
            "2024-12-02T10:00:00Z",
            json!({"total": 99.99}),
        ),
        event(
            "shop",
            p,
            "purchase",
            "2024-12-03T10:00:00Z",
            json!({"total": "n/a", "amount": "10.01"}),
        ),
        event(
            "shop",
            p,
            "whatsapp_message",
            "2024-11-30T08:00:00Z",
            json!({"text": "hi"}),
        ),
        event(
            "shop",
            p,
            "purchase",
            "2024-12-04T10:00:00Z",
            json!({"items": 2}),
        ),
        event("shop", p, "page_view", "2024-12-05T10:00:00Z", json!({})),
    ])
    .await;
    let _builder = env.start_builder();
    env.wait_idle().await;

    let f = env.features(profile).await.expect("a features row");
    assert_eq!(f.brand_id, "shop");
    assert_eq!((f.event_count, f.order_count), (6, 3));
    assert_eq!(
        f.total_spent, "110.00",
        "the purchase without an amount adds 0"
    );
    assert_eq!(f.first_seen_at, at("2024-11-30T08:00:00Z"));
    assert_eq!(f.last_seen_at, at("2024-12-05T10:00:00Z"));
    assert_eq!(f.last_order_at, Some(at("2024-12-04T10:00:00Z")));
    assert_eq!(
        f.events_by_type,
        json!({"page_view": 2, "purchase": 3, "whatsapp_message": 1})
    );
    assert_eq!(env.count("SELECT count(*) FROM feature_events").await, 6);
}

#[tokio::test]
async fn later_batches_add_to_the_features_and_widen_the_time_range() {
    let env = Env::start().await;
    let profile = env.profile("shop", "2024-11-01T00:00:00Z", None).await;
    let p = Some(profile);
    let _builder = env.start_builder();
    env.send(&[event(
        "shop",
        p,
        "purchase",
        "2024-12-02T10:00:00Z",
        json!({"total": 5}),
    )])
    .await;
    env.wait_idle().await;
    env.send(&[
        event(
            "shop",
            p,
            "purchase",
            "2024-12-01T10:00:00Z",
            json!({"value": "2.50"}),
        ),
        event("shop", p, "page_view", "2024-12-09T10:00:00Z", json!({})),
    ])
    .await;
    env.wait_idle().await;

    let f = env.features(profile).await.unwrap();
    assert_eq!((f.event_count, f.order_count), (3, 2));
    assert_eq!(f.total_spent, "7.50");
    assert_eq!(f.first_seen_at, at("2024-12-01T10:00:00Z"));
    assert_eq!(f.last_seen_at, at("2024-12-09T10:00:00Z"));
    assert_eq!(
        f.last_order_at,
        Some(at("2024-12-02T10:00:00Z")),
        "an older purchase does not move the last order back"
    );
    assert_eq!(f.events_by_type, json!({"page_view": 1, "purchase": 2}));
}

#[tokio::test]
async fn a_replay_with_a_new_entry_id_but_the_same_event_id_changes_nothing() {
    let env = Env::start().await;
    let profile = env.profile("shop", "2024-11-01T00:00:00Z", None).await;
    let purchase = event(
        "shop",
        Some(profile),
        "purchase",
        "2024-12-02T10:00:00Z",
        json!({"total": 40}),
    );
    let _builder = env.start_builder();
    env.send(std::slice::from_ref(&purchase)).await;
    env.wait_idle().await;
    let before = env.features(profile).await.unwrap();

    // The same event twice more: once alone, once twice within one batch.
    env.send(std::slice::from_ref(&purchase)).await;
    env.send(&[purchase.clone(), purchase.clone()]).await;
    env.wait_idle().await;

    assert_eq!(env.features(profile).await.unwrap(), before);
    assert_eq!(
        (before.event_count, before.total_spent.as_str()),
        (1, "40.00")
    );
    assert_eq!(env.count("SELECT count(*) FROM feature_events").await, 1);
    assert_eq!(env.entries("events.normalized:dlq").await.len(), 0);
}

#[tokio::test]
async fn an_event_of_a_merged_profile_is_counted_on_the_survivor() {
    let env = Env::start().await;
    let survivor = env.profile("shop", "2024-11-01T00:00:00Z", None).await;
    let merged = env
        .profile("shop", "2024-11-02T00:00:00Z", Some(survivor))
        .await;
    let purchase = event(
        "shop",
        Some(merged),
        "purchase",
        "2024-12-02T10:00:00Z",
        json!({"total": 12}),
    );
    let _builder = env.start_builder();
    env.send(std::slice::from_ref(&purchase)).await;
    env.wait_idle().await;

    let f = env
        .features(survivor)
        .await
        .expect("features on the survivor");
    assert_eq!(
        (f.event_count, f.order_count, f.total_spent.as_str()),
        (1, 1, "12.00")
    );
    assert_eq!(env.features(merged).await, None);
    let counted_on: uuid::Uuid =
        bus_core::sqlx::query_scalar("SELECT profile_id FROM feature_events WHERE event_id = $1")
            .bind(&purchase.event_id)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(counted_on, survivor);
    let requests = env.entries(names::PREDICTION_REQUESTS).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].1["profile_id"], survivor.to_string());
}

#[tokio::test]
async fn a_purchase_requests_a_prediction_of_everything_for_its_profile() {
    let env = Env::start().await;
    let (a, b) = (
        env.profile("shop", "2024-11-01T00:00:00Z", None).await,
        env.profile("shop", "2024-11-01T00:00:00Z", None).await,
    );
    let first = event(
        "shop",
        Some(a),
        "purchase",
        "2024-12-01T10:00:00Z",
        json!({"total": 1}),
    );
    let last = event(
        "shop",
        Some(a),
        "purchase",
        "2024-12-02T10:00:00Z",
        json!({"total": 2}),
    );
    env.send(&[
        first,
        last.clone(),
        event(
            "shop",
            Some(b),
            "page_view",
            "2024-12-02T10:00:00Z",
            json!({}),
        ),
    ])
    .await;
    let _builder = env.start_builder();
    env.wait_idle().await;

    let requests = eventually("a prediction request", WAIT, || async {
        let entries = env.entries(names::PREDICTION_REQUESTS).await;
        (!entries.is_empty()).then_some(entries)
    })
    .await;
    assert_eq!(
        requests.len(),
        1,
        "one request per purchasing profile per batch"
    );
    let fields = &requests[0].1;
    assert_eq!(fields["profile_id"], a.to_string());
    assert_eq!(fields["brand_id"], "shop");
    assert_eq!(fields["request_type"], "all");
    assert_eq!(fields["request_id"], format!("purchase:{}", last.event_id));
}

#[tokio::test]
async fn a_redelivered_purchase_that_was_already_counted_still_requests_its_prediction() {
    let env = Env::start().await;
    let profile = env.profile("shop", "2024-11-01T00:00:00Z", None).await;
    let purchase = event(
        "shop",
        Some(profile),
        "purchase",
        "2024-12-02T10:00:00Z",
        json!({"total": 3}),
    );
    // As if a first delivery had committed its count and died before publishing.
    bus_core::sqlx::query("INSERT INTO feature_events (event_id, profile_id) VALUES ($1, $2)")
        .bind(&purchase.event_id)
        .bind(profile)
        .execute(&env.pool)
        .await
        .unwrap();
    let _builder = env.start_builder();
    env.send(std::slice::from_ref(&purchase)).await;
    env.wait_idle().await;

    assert_eq!(
        env.features(profile).await,
        None,
        "not counted a second time"
    );
    let requests = env.entries(names::PREDICTION_REQUESTS).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].1["request_id"],
        format!("purchase:{}", purchase.event_id)
    );
}

#[tokio::test]
async fn an_anonymous_event_is_acknowledged_without_any_row() {
    let env = Env::start().await;
    let _builder = env.start_builder();
    env.send(&[event(
        "shop",
        None,
        "purchase",
        "2024-12-02T10:00:00Z",
        json!({"total": 9}),
    )])
    .await;
    env.wait_idle().await;

    assert_eq!(env.count("SELECT count(*) FROM feature_events").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM profile_features").await, 0);
    assert_eq!(env.entries("events.normalized:dlq").await.len(), 0);
    assert_eq!(env.entries(names::PREDICTION_REQUESTS).await.len(), 0);
}

#[tokio::test]
async fn an_event_of_an_unknown_profile_is_dead_lettered_and_the_rest_of_its_batch_counted() {
    let env = Env::start().await;
    let known = env.profile("shop", "2024-11-01T00:00:00Z", None).await;
    let stranger = uuid::Uuid::new_v4();
    env.send(&[
        event(
            "shop",
            Some(stranger),
            "page_view",
            "2024-12-02T10:00:00Z",
            json!({}),
        ),
        event(
            "shop",
            Some(known),
            "page_view",
            "2024-12-02T10:00:00Z",
            json!({}),
        ),
    ])
    .await;
    let _builder = env.start_builder();
    env.wait_idle().await;

    let letters = env.entries("events.normalized:dlq").await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].1["dlq_reason"],
        format!("unknown profile {stranger}")
    );
    assert_eq!(letters[0].1["profile_id"], stranger.to_string());
    assert_eq!(env.features(known).await.unwrap().event_count, 1);
    assert_eq!(env.count("SELECT count(*) FROM feature_events").await, 1);
}

#[tokio::test]
async fn a_purchase_amount_beyond_the_column_is_dead_lettered_with_its_value() {
    let env = Env::start().await;
    let profile = env.profile("shop", "2024-11-01T00:00:00Z", None).await;
    let _builder = env.start_builder();
    env.send(&[event(
        "shop",
        Some(profile),
        "purchase",
        "2024-12-02T10:00:00Z",
        json!({"total": "5e15"}),
    )])
    .await;
    env.wait_idle().await;

    let letters = env.entries("events.normalized:dlq").await;
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].1["dlq_reason"].contains("total=5e15"),
        "{:?}",
        letters[0].1
    );
    assert_eq!(env.features(profile).await, None);
}
