//! The merge rules in-process against real Redis and PostgreSQL: auto-merge, manual review,
//! replays, and the requests that are dead-lettered or acknowledged as duplicates.
#![allow(clippy::unwrap_used)]

mod common;

use bus_core::chrono::{Duration as Age, SubsecRound, Utc};
use bus_core::serde_json::json;
use bus_core::sqlx;
use common::*;
use uuid::Uuid;

#[tokio::test]
async fn an_auto_merge_moves_everything_to_the_oldest_profile_and_audits_it() {
    let env = Env::start().await;
    let pool = &env.pool;
    let now = Utc::now().trunc_subsecs(0);
    let oldest = profile(pool, BRAND, 100).await;
    let newer = profile(pool, BRAND, 50).await;
    let merged_before = profile(pool, BRAND, 10).await;
    sqlx::query("UPDATE profiles SET merged_into = $1 WHERE profile_id = $2")
        .bind(newer)
        .bind(merged_before)
        .execute(pool)
        .await
        .unwrap();
    identifier(pool, oldest, "phone", "+84900000001").await;
    identifier(pool, newer, "email", "b@example.com").await;
    identifier(pool, newer, "customer_id", "c-42").await;
    event(pool, oldest, "e1").await;
    event(pool, newer, "e2").await;
    event(pool, newer, "e3").await;
    sqlx::query("INSERT INTO feature_events (event_id, profile_id) VALUES ('e2', $1), ('e3', $1)")
        .bind(newer)
        .execute(pool)
        .await
        .unwrap();
    set_features(
        pool,
        oldest,
        &Features {
            event_count: 2,
            order_count: 1,
            total_spent: "10.50".into(),
            first_seen_at: now - Age::seconds(100),
            last_seen_at: now - Age::seconds(10),
            last_order_at: Some(now - Age::seconds(20)),
            events_by_type: json!({"purchase": 1, "page_view": 1}),
        },
    )
    .await;
    set_features(
        pool,
        newer,
        &Features {
            event_count: 3,
            order_count: 2,
            total_spent: "5.25".into(),
            first_seen_at: now - Age::seconds(200),
            last_seen_at: now - Age::seconds(5),
            last_order_at: Some(now - Age::seconds(5)),
            events_by_type: json!({"purchase": 2, "whatsapp_message": 1}),
        },
    )
    .await;
    sqlx::query(
        "INSERT INTO predictions (profile_id, prediction_type, brand_id, score, model_version)
         VALUES ($1, 'churn', $2, 0.5, 'rfm-v1')",
    )
    .bind(newer)
    .bind(BRAND)
    .execute(pool)
    .await
    .unwrap();
    let _mp = Instance::start(&env, "mp-1", fast_settings());

    // Newest first on purpose: the survivor is chosen by age, not by position.
    let ids = publish(
        &env.redis,
        &[request(&[newer, oldest], false, Some("ev-1"))],
    )
    .await;
    settled(&env.redis, ids[0]).await;

    assert_eq!(merged_into(pool, newer).await, Some(oldest));
    assert_eq!(
        merged_into(pool, merged_before).await,
        Some(oldest),
        "re-pointed one hop deep"
    );
    assert_eq!(merged_into(pool, oldest).await, None);
    let on_oldest = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .bind(oldest)
            .fetch_one(pool)
            .await
            .unwrap()
    };
    assert_eq!(
        (
            on_oldest("SELECT count(*) FROM profile_identifiers WHERE profile_id = $1").await,
            on_oldest("SELECT count(*) FROM events WHERE profile_id = $1").await,
            on_oldest("SELECT count(*) FROM feature_events WHERE profile_id = $1").await,
        ),
        (3, 3, 2)
    );
    assert_eq!(
        features(pool, oldest).await,
        Some(Features {
            event_count: 5,
            order_count: 3,
            total_spent: "15.75".into(),
            first_seen_at: now - Age::seconds(200),
            last_seen_at: now - Age::seconds(5),
            last_order_at: Some(now - Age::seconds(5)),
            events_by_type: json!({"purchase": 3, "page_view": 1, "whatsapp_message": 1}),
        })
    );
    assert_eq!(features(pool, newer).await, None);
    assert_eq!(
        count(pool, "SELECT count(*) FROM predictions").await,
        0,
        "the merged profile's predictions are gone"
    );

    let audit: (String, Uuid, Vec<Uuid>, String, i32, i32, i64, String) = sqlx::query_as(
        "SELECT request_key, surviving_profile_id, merged_profile_ids, reason,
                identifiers_moved, events_moved, fencing_token, merged_by
         FROM profile_merges",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        (
            audit.0.as_str(),
            audit.1,
            audit.2,
            audit.3.as_str(),
            audit.4,
            audit.5,
            audit.7.as_str()
        ),
        (
            "ev-1",
            oldest,
            vec![newer],
            "identifier_match",
            2,
            2,
            "mp-1"
        )
    );
    assert!(audit.6 >= 1, "fencing token {}", audit.6);

    let requests = prediction_requests(&env.redis).await;
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        (
            r.get("profile_id"),
            r.get("brand_id"),
            r.get("request_type"),
            r.get("request_id")
        ),
        (
            Some(oldest.to_string().as_str()),
            Some(BRAND),
            Some("all"),
            Some("merge:ev-1")
        )
    );
}

#[tokio::test]
async fn a_merge_of_customers_without_purchases_requests_no_prediction() {
    let env = Env::start().await;
    let (a, b) = (
        profile(&env.pool, BRAND, 20).await,
        profile(&env.pool, BRAND, 10).await,
    );
    let _mp = Instance::start(&env, "mp-1", fast_settings());

    let ids = publish(&env.redis, &[request(&[a, b], false, None)]).await;
    settled(&env.redis, ids[0]).await;

    assert_eq!(merged_into(&env.pool, b).await, Some(a));
    assert_eq!(
        count(&env.pool, "SELECT count(*) FROM profile_features").await,
        0
    );
    assert!(prediction_requests(&env.redis).await.is_empty());
    let key: String = sqlx::query_scalar("SELECT request_key FROM profile_merges")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(
        key,
        ids[0].to_string(),
        "without request_id the entry id is the key"
    );
}

#[tokio::test]
async fn a_request_needing_review_is_queued_once_with_its_conflicts_and_merges_nothing() {
    let env = Env::start().await;
    let pool = &env.pool;
    let (a, b) = (
        profile(pool, BRAND, 20).await,
        profile(pool, BRAND, 10).await,
    );
    identifier(pool, a, "email", "a@example.com").await;
    identifier(pool, a, "phone", "+84900000001").await;
    identifier(pool, b, "email", "b@example.com").await;
    identifier(pool, b, "customer_id", "c-1").await;
    let _mp = Instance::start(&env, "mp-1", fast_settings());

    // A second event linking the same profiles while the first waits adds no second row.
    let ids = publish(
        &env.redis,
        &[
            request(&[a, b], true, Some("ev-9")),
            request(&[b, a], true, Some("ev-10")),
        ],
    )
    .await;
    settled(&env.redis, ids[1]).await;

    assert_eq!(
        count(pool, "SELECT count(*) FROM manual_review_queue").await,
        1
    );
    let (key, profiles, reason, status, conflicts): (
        String,
        Vec<Uuid>,
        String,
        String,
        bus_core::serde_json::Value,
    ) = sqlx::query_as(
        "SELECT request_key, profile_ids, reason, status, conflicts FROM manual_review_queue",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        (key.as_str(), profiles, reason.as_str(), status.as_str()),
        ("ev-9", vec![a, b], "identifier_match", "pending")
    );
    assert_eq!(
        conflicts,
        json!({"email": ["a@example.com", "b@example.com"]})
    );
    assert_eq!(merged_into(pool, b).await, None);
    assert_eq!(count(pool, "SELECT count(*) FROM profile_merges").await, 0);
    assert!(dead_letters(&env.redis).await.is_empty());
}

#[tokio::test]
async fn an_auto_merge_whose_profiles_conflict_by_now_is_queued_for_review() {
    let env = Env::start().await;
    let pool = &env.pool;
    // Raised as an auto-merge (phone vs email), but B got a second phone since.
    let (a, b) = (
        profile(pool, BRAND, 20).await,
        profile(pool, BRAND, 10).await,
    );
    identifier(pool, a, "phone", "+84900000001").await;
    identifier(pool, b, "email", "b@example.com").await;
    identifier(pool, b, "phone", "+84900000002").await;
    let _mp = Instance::start(&env, "mp-1", fast_settings());

    let ids = publish(&env.redis, &[request(&[a, b], false, Some("r-1"))]).await;
    settled(&env.redis, ids[0]).await;

    assert_eq!(merged_into(pool, b).await, None);
    assert_eq!(count(pool, "SELECT count(*) FROM profile_merges").await, 0);
    let conflicts: bus_core::serde_json::Value =
        sqlx::query_scalar("SELECT conflicts FROM manual_review_queue WHERE request_key = 'r-1'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(
        conflicts,
        json!({"phone": ["+84900000001", "+84900000002"]})
    );
    assert!(dead_letters(&env.redis).await.is_empty());
}

#[tokio::test]
async fn a_replayed_request_changes_nothing_and_republishes_its_prediction_request() {
    let env = Env::start().await;
    let pool = &env.pool;
    let (a, b) = (
        profile(pool, BRAND, 20).await,
        profile(pool, BRAND, 10).await,
    );
    let (c, d) = (
        profile(pool, BRAND, 20).await,
        profile(pool, BRAND, 10).await,
    );
    let now = Utc::now().trunc_subsecs(0);
    set_features(
        pool,
        b,
        &Features {
            event_count: 1,
            order_count: 1,
            total_spent: "3.00".into(),
            first_seen_at: now,
            last_seen_at: now,
            last_order_at: Some(now),
            events_by_type: json!({"purchase": 1}),
        },
    )
    .await;
    let _mp = Instance::start(&env, "mp-1", fast_settings());
    let merge = request(&[a, b], false, Some("ev-7"));
    let review = request(&[c, d], true, Some("ev-8"));
    let first = publish(&env.redis, &[merge.clone(), review.clone()]).await;
    settled(&env.redis, first[1]).await;
    let after_first = features(pool, a).await;

    let again = publish(&env.redis, &[merge, review]).await;
    settled(&env.redis, again[1]).await;

    assert_eq!(count(pool, "SELECT count(*) FROM profile_merges").await, 1);
    assert_eq!(
        count(pool, "SELECT count(*) FROM manual_review_queue").await,
        1
    );
    assert_eq!(features(pool, a).await, after_first);
    assert_eq!(after_first.map(|f| f.order_count), Some(1));
    let requests = prediction_requests(&env.redis).await;
    let keys: Vec<(Option<&str>, Option<&str>)> = requests
        .iter()
        .map(|r| (r.get("profile_id"), r.get("request_id")))
        .collect();
    let a_text = a.to_string();
    assert_eq!(
        keys,
        vec![
            (Some(a_text.as_str()), Some("merge:ev-7")),
            (Some(a_text.as_str()), Some("merge:ev-7"))
        ],
        "the replay publishes the same follow-up again (the dispatcher upserts)"
    );
    assert!(dead_letters(&env.redis).await.is_empty());
}

#[tokio::test]
async fn an_unknown_profile_is_dead_lettered_while_the_rest_of_its_batch_is_applied() {
    let env = Env::start().await;
    let pool = &env.pool;
    let (a, b) = (
        profile(pool, BRAND, 20).await,
        profile(pool, BRAND, 10).await,
    );
    let (c, d) = (
        profile(pool, BRAND, 20).await,
        profile(pool, BRAND, 10).await,
    );
    let (e, unknown) = (profile(pool, BRAND, 20).await, Uuid::new_v4());
    // Published before the processor starts, so the three arrive in one batch.
    let ids = publish(
        &env.redis,
        &[
            request(&[a, b], false, Some("r-1")),
            request(&[e, unknown], false, Some("r-2")),
            request(&[c, d], false, Some("r-3")),
        ],
    )
    .await;
    let _mp = Instance::start(&env, "mp-1", fast_settings());

    settled(&env.redis, ids[2]).await;

    assert_eq!(merged_into(pool, b).await, Some(a));
    assert_eq!(merged_into(pool, d).await, Some(c));
    assert_eq!(merged_into(pool, e).await, None);
    let letters = dead_letters(&env.redis).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].get("request_id"), Some("r-2"));
    assert_eq!(letters[0].get("dlq_kind"), Some("permanent"));
    assert_eq!(
        letters[0].get("dlq_reason"),
        Some(format!("unknown profile {unknown}").as_str())
    );
}

#[tokio::test]
async fn profiles_already_merged_together_are_acknowledged_as_a_duplicate() {
    let env = Env::start().await;
    let pool = &env.pool;
    let (a, b) = (
        profile(pool, BRAND, 20).await,
        profile(pool, BRAND, 10).await,
    );
    sqlx::query("UPDATE profiles SET merged_into = $1 WHERE profile_id = $2")
        .bind(a)
        .bind(b)
        .execute(pool)
        .await
        .unwrap();
    let _mp = Instance::start(&env, "mp-1", fast_settings());

    let ids = publish(&env.redis, &[request(&[b, a], false, None)]).await;
    settled(&env.redis, ids[0]).await;

    assert!(dead_letters(&env.redis).await.is_empty());
    assert_eq!(count(pool, "SELECT count(*) FROM profile_merges").await, 0);
    assert_eq!(merged_into(pool, b).await, Some(a));
}

#[tokio::test]
async fn a_request_chained_on_a_merged_profile_merges_where_the_profiles_live() {
    let env = Env::start().await;
    let pool = &env.pool;
    let (a, b, c) = chain(&env, ("customer_id", "c-3"), |c| async move {
        event(pool, c, "ev-c").await;
    })
    .await;

    assert!(dead_letters(&env.redis).await.is_empty());
    assert_eq!(merged_into(pool, b).await, Some(a));
    assert_eq!(merged_into(pool, c).await, Some(a));
    let merged: Vec<Uuid> = sqlx::query_scalar(
        "SELECT merged_profile_ids FROM profile_merges WHERE request_key = 'r-bc'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(merged, vec![c]);
    let owners: Vec<Uuid> =
        sqlx::query_scalar("SELECT DISTINCT profile_id FROM profile_identifiers")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(owners, vec![a]);
    let event_owner: Uuid =
        sqlx::query_scalar("SELECT profile_id FROM events WHERE event_id = 'ev-c'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(event_owner, a);
}

#[tokio::test]
async fn a_chained_request_whose_survivors_conflict_is_queued_for_review() {
    let env = Env::start().await;
    let pool = &env.pool;
    // B and C hold different kinds (the normalizer saw no conflict), but B was merged into A,
    // and A and C hold two different emails: a person must decide.
    let (a, b, c) = chain(&env, ("email", "c@example.com"), |_| async {}).await;

    assert!(dead_letters(&env.redis).await.is_empty());
    assert_eq!(merged_into(pool, b).await, Some(a));
    assert_eq!(merged_into(pool, c).await, None);
    let (key, profiles, conflicts): (String, Vec<Uuid>, bus_core::serde_json::Value) =
        sqlx::query_as("SELECT request_key, profile_ids, conflicts FROM manual_review_queue")
            .fetch_one(pool)
            .await
            .unwrap();
    let mut homes = vec![a, c];
    homes.sort();
    assert_eq!((key.as_str(), profiles), ("r-bc", homes));
    assert_eq!(
        conflicts,
        json!({"email": ["a@example.com", "c@example.com"]})
    );
}

#[tokio::test]
async fn profiles_of_another_brand_are_dead_lettered() {
    let env = Env::start().await;
    let pool = &env.pool;
    let (a, b) = (
        profile(pool, BRAND, 20).await,
        profile(pool, "brand-b", 10).await,
    );
    let _mp = Instance::start(&env, "mp-1", fast_settings());

    let ids = publish(&env.redis, &[request(&[a, b], false, None)]).await;
    settled(&env.redis, ids[0]).await;

    let letters = dead_letters(&env.redis).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].get("dlq_reason"),
        Some(format!(r#"profile {b} belongs to brand "brand-b", not "{BRAND}""#).as_str())
    );
    assert_eq!(merged_into(pool, b).await, None);
}

/// Profiles A (oldest, email), B (phone) and C (`c_identifier`, then `more`), and the requests
/// [A,B] and then [B,C], both raised before either was applied (B links A and C), settled.
async fn chain<F: Future<Output = ()>>(
    env: &Env,
    c_identifier: (&str, &str),
    more: impl FnOnce(Uuid) -> F,
) -> (Uuid, Uuid, Uuid) {
    let pool = &env.pool;
    let (a, b, c) = (
        profile(pool, BRAND, 30).await,
        profile(pool, BRAND, 20).await,
        profile(pool, BRAND, 10).await,
    );
    identifier(pool, a, "email", "a@example.com").await;
    identifier(pool, b, "phone", "+84900000002").await;
    identifier(pool, c, c_identifier.0, c_identifier.1).await;
    more(c).await;
    let _mp = Instance::start(env, "mp-1", fast_settings());
    let ids = publish(
        &env.redis,
        &[
            request(&[a, b], false, Some("r-ab")),
            request(&[b, c], false, Some("r-bc")),
        ],
    )
    .await;
    settled(&env.redis, ids[1]).await;
    (a, b, c)
}
