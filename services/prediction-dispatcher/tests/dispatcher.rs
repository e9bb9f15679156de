//! The dispatcher with the built-in model, in-process against real Redis and PostgreSQL:
//! stored predictions, completions on the stream and the channel, merged and unknown profiles.
#![allow(clippy::unwrap_used)]

mod common;

use bus_core::redis;
use bus_core::serde_json::{Value, json};
use bus_testkit::eventually;
use bus_testkit::until;
use commerce::{RequestType, names};
use common::{DLQ, Env, WAIT, request};
use prediction_dispatcher::{features, rfm};

#[tokio::test]
async fn a_churn_request_is_stored_and_announced_on_the_stream_and_the_channel() {
    let env = Env::start().await;
    let profile = env.profile("shop", None).await;
    env.features(profile, "shop", 4, "400.00", 91, 11).await;
    let listener = env.listen(names::PREDICTIONS_COMPLETED_CHANNEL).await;
    let _dispatcher = env.start_dispatcher(env.settings(None));
    env.send(&[request(profile, "shop", RequestType::Churn, Some("r-1"))])
        .await;
    env.wait_idle().await;

    let stored = env.predictions(profile).await;
    assert_eq!(stored.keys().collect::<Vec<_>>(), ["churn"]);
    let churn = &stored["churn"];
    assert_eq!(churn.brand_id, "shop");
    assert_eq!(churn.model_version, "rfm-v1");
    assert_eq!(churn.request_key.as_deref(), Some("r-1"));
    assert_eq!(churn.label, None);
    // The row reproduces: the model at `predicted_at` on the stored features gives its score.
    let mut conn = env.pool.acquire().await.unwrap();
    let loaded = features::load(&mut conn, &[profile]).await.unwrap();
    let expected = rfm::predict(
        &loaded[&profile].features,
        RequestType::Churn,
        churn.predicted_at,
    );
    assert_eq!(churn.score, expected.predictions[0].score);
    assert_json_close(&churn.details, &expected.predictions[0].details);
    assert_eq!(churn.details["inputs"]["frequency"], 4);
    assert_eq!(churn.details["inputs"]["monetary"], 400.0);
    let score = churn.score.unwrap();
    assert!(
        score > 0.0 && score < 0.1,
        "11 days after an order every ~27 days: {score}"
    );

    let completed = env.entries(names::PREDICTIONS_COMPLETED).await;
    assert_eq!(completed.len(), 1);
    let fields = &completed[0].1;
    assert_eq!(fields["profile_id"], profile.to_string());
    assert_eq!(fields["brand_id"], "shop");
    assert_eq!(fields["request_type"], "churn");
    assert_eq!(fields["model_version"], "rfm-v1");
    assert_eq!(fields["request_id"], "r-1");
    let predictions: Value = bus_core::serde_json::from_str(&fields["predictions"]).unwrap();
    assert_eq!(predictions, json!({"churn": {"probability": score}}));

    let note = eventually("the completion on the channel", WAIT, || async {
        listener.messages().into_iter().next()
    })
    .await;
    assert_eq!(note["data"]["profile_id"], profile.to_string());
    assert_eq!(note["data"]["predictions"]["churn"]["probability"], score);
    assert_eq!(note["data"]["request_id"], "r-1");
    assert_eq!(note["timestamp"], fields["timestamp"].as_str());
}

#[tokio::test]
async fn an_all_request_stores_three_rows_and_announces_them_together() {
    let env = Env::start().await;
    let profile = env.profile("shop", None).await;
    env.features(profile, "shop", 12, "1500.00", 400, 3).await;
    let _dispatcher = env.start_dispatcher(env.settings(None));
    let ids = env
        .send(&[request(profile, "shop", RequestType::All, None)])
        .await;
    env.wait_idle().await;

    let stored = env.predictions(profile).await;
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        ["churn", "ltv", "segment"]
    );
    assert!(
        stored
            .values()
            .all(|s| s.request_key.as_deref() == Some(ids[0].as_str()))
    );
    assert_eq!(stored["segment"].label.as_deref(), Some("Champions"));
    assert_eq!(stored["segment"].details["rfm"], "555");
    let ltv = stored["ltv"].score.unwrap();
    assert!(ltv > 1000.0, "a frequent big spender is worth a lot: {ltv}");

    let completed = env.entries(names::PREDICTIONS_COMPLETED).await;
    assert_eq!(completed.len(), 1);
    let predictions: Value =
        bus_core::serde_json::from_str(&completed[0].1["predictions"]).unwrap();
    assert_eq!(predictions["segment"], json!({"name": "Champions"}));
    assert_eq!(predictions["ltv"], json!({"value": ltv}));
    assert_eq!(
        predictions["churn"],
        json!({"probability": stored["churn"].score.unwrap()})
    );
    assert!(!completed[0].1.contains_key("request_id"));
}

#[tokio::test]
async fn a_profile_without_features_is_a_prospect_worth_nothing() {
    let env = Env::start().await;
    let profile = env.profile("shop", None).await;
    let _dispatcher = env.start_dispatcher(env.settings(None));
    env.send(&[request(profile, "shop", RequestType::All, None)])
        .await;
    env.wait_idle().await;

    let stored = env.predictions(profile).await;
    assert_eq!(stored["segment"].label.as_deref(), Some("Prospect"));
    assert_eq!(stored["ltv"].score, Some(0.0));
    assert_eq!(stored["churn"].details["inputs"]["frequency"], 0);
    // Just created: recency ~0 against the 30-day fallback interval.
    assert_eq!(stored["churn"].score, Some(0.018));
}

#[tokio::test]
async fn a_request_for_a_merged_profile_predicts_for_the_survivor() {
    let env = Env::start().await;
    let survivor = env.profile("shop", None).await;
    let merged = env.profile("shop", Some(survivor)).await;
    env.features(survivor, "shop", 2, "60.00", 40, 5).await;
    let _dispatcher = env.start_dispatcher(env.settings(None));
    env.send(&[request(merged, "shop", RequestType::Segment, Some("r-m"))])
        .await;
    env.wait_idle().await;

    assert_eq!(env.predictions(survivor).await.len(), 1);
    assert!(env.predictions(merged).await.is_empty());
    let completed = env.entries(names::PREDICTIONS_COMPLETED).await;
    assert_eq!(completed[0].1["profile_id"], survivor.to_string());
}

#[tokio::test]
async fn a_request_for_an_unknown_profile_is_dead_lettered_and_the_rest_answered() {
    let env = Env::start().await;
    let known = env.profile("shop", None).await;
    let stranger = uuid::Uuid::new_v4();
    env.send(&[
        request(stranger, "shop", RequestType::Churn, None),
        request(known, "shop", RequestType::Churn, None),
    ])
    .await;
    let _dispatcher = env.start_dispatcher(env.settings(None));
    env.wait_idle().await;

    let letters = env.entries(DLQ).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].1["dlq_reason"],
        format!("unknown profile {stranger}")
    );
    assert_eq!(env.count("SELECT count(*) FROM predictions").await, 1);
    let completed = env.entries(names::PREDICTIONS_COMPLETED).await;
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].1["profile_id"], known.to_string());
}

#[tokio::test]
async fn a_request_naming_another_brand_is_dead_lettered() {
    let env = Env::start().await;
    let profile = env.profile("shop", None).await;
    let _dispatcher = env.start_dispatcher(env.settings(None));
    env.send(&[request(profile, "other-shop", RequestType::Churn, None)])
        .await;
    env.wait_idle().await;

    let letters = env.entries(DLQ).await;
    assert_eq!(letters.len(), 1);
    assert!(letters[0].1["dlq_reason"].contains(r#"belongs to brand "shop", not "other-shop""#));
    assert_eq!(env.count("SELECT count(*) FROM predictions").await, 0);
}

#[tokio::test]
async fn a_repeated_request_upserts_the_same_rows_and_announces_again() {
    let env = Env::start().await;
    let profile = env.profile("shop", None).await;
    env.features(profile, "shop", 3, "90.00", 60, 10).await;
    let _dispatcher = env.start_dispatcher(env.settings(None));
    let again = request(profile, "shop", RequestType::All, Some("purchase:e1"));
    env.send(std::slice::from_ref(&again)).await;
    env.wait_idle().await;
    let first = env.predictions(profile).await;
    env.send(&[again.clone(), again]).await;
    env.wait_idle().await;

    let now = env.predictions(profile).await;
    assert_eq!(now.len(), 3);
    assert_eq!(now["segment"].label, first["segment"].label);
    assert!(
        now.values()
            .all(|s| s.request_key.as_deref() == Some("purchase:e1"))
    );
    assert!(now["churn"].predicted_at > first["churn"].predicted_at);
    assert_eq!(env.entries(names::PREDICTIONS_COMPLETED).await.len(), 3);
}

#[tokio::test]
async fn completions_are_trimmed_to_their_retention_once_a_reader_has_acknowledged_them() {
    let env = Env::start().await;
    let profile = env.profile("shop", None).await;
    let mut conn = env.conn.clone();
    let () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(names::PREDICTIONS_COMPLETED)
        .arg("readers")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut settings = env.settings(None);
    settings.retention.predictions_completed = 2;
    settings.producer.trim_interval_ms = 50;
    let _dispatcher = env.start_dispatcher(settings);
    let requests: Vec<_> = (0..5)
        .map(|_| request(profile, "shop", RequestType::Churn, None))
        .collect();
    env.send(&requests).await;
    env.wait_idle().await;

    type Entries = Vec<(String, Vec<(String, String)>)>;
    let read: Vec<(String, Entries)> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("readers")
        .arg("reader-1")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(names::PREDICTIONS_COMPLETED)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    let ids: Vec<&String> = read[0].1.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 5);
    let acked: i64 = redis::cmd("XACK")
        .arg(names::PREDICTIONS_COMPLETED)
        .arg("readers")
        .arg(&ids)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(acked, 5);
    until("predictions.completed to be trimmed to 2", WAIT, || async {
        env.entries(names::PREDICTIONS_COMPLETED).await.len() == 2
    })
    .await;
}

/// Equal JSON, numbers to 12 significant digits (JSON text round trips may move the last bit).
fn assert_json_close(actual: &Value, expected: &Value) {
    match (actual, expected) {
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
            assert!((a - e).abs() <= 1e-12 * e.abs().max(1.0), "{a} != {e}");
        }
        (Value::Object(a), Value::Object(e)) => {
            assert_eq!(a.keys().collect::<Vec<_>>(), e.keys().collect::<Vec<_>>());
            for (key, value) in e {
                assert_json_close(&a[key], value);
            }
        }
        _ => assert_eq!(actual, expected),
    }
}
