//! The dispatcher with an external model (a small axum server in the test), against real
//! Redis and PostgreSQL: answers stored as the model reports them, an outage that leaves
//! requests pending instead of dead-lettering them, and bad answers dead-lettered.
#![allow(clippy::unwrap_used)]

mod common;

use bus_core::serde_json::json;
use commerce::{RequestType, names};
use common::model_server::{Answer, ModelServer};
use common::{DLQ, Env, WAIT, request};

fn answer() -> Answer {
    Answer::Json(json!({
        "churn": 0.3, "ltv": 120.5, "segment": "VIP", "model_version": "acme-2"
    }))
}

#[tokio::test]
async fn the_external_model_answers_then_goes_down_then_comes_back() {
    let env = Env::start().await;
    let (a, b) = (
        env.profile("shop", None).await,
        env.profile("shop", None).await,
    );
    env.features(a, "shop", 2, "50.00", 30, 3).await;
    let mut model = ModelServer::start(answer()).await;
    let _dispatcher = env.start_dispatcher(env.settings(Some(model.url())));

    // Up: the answer is stored as the model reports it.
    env.send(&[request(a, "shop", RequestType::All, Some("r-a"))])
        .await;
    env.wait_idle().await;
    let stored = env.predictions(a).await;
    assert_eq!(stored["churn"].score, Some(0.3));
    assert_eq!(stored["ltv"].score, Some(120.5));
    assert_eq!(stored["segment"].label.as_deref(), Some("VIP"));
    assert!(stored.values().all(|s| s.model_version == "acme-2"));
    assert_eq!(stored["churn"].details["features"]["order_count"], 2);
    let sent = model.last_request().unwrap();
    assert_eq!(
        (sent["profile_id"].as_str(), sent["request_type"].as_str()),
        (Some(a.to_string().as_str()), Some("all"))
    );

    // Down (503, then not listening at all): the request waits, it is not dead-lettered,
    // even after more handler attempts than WORKER__MAX_DELIVERIES allows failures.
    model.answer(Answer::Status(503, "maintenance".into()));
    let calls = model.calls();
    env.send(&[request(b, "shop", RequestType::Churn, Some("r-b"))])
        .await;
    // Each handler attempt makes two calls (MODEL_RETRIES=1); max deliveries is 2.
    bus_testkit::until("several failed attempts", WAIT, || async {
        model.calls() >= calls + 8
    })
    .await;
    let status = env.status().await;
    assert_eq!((status.pending, status.dead_letters), (1, 0));
    model.stop().await;
    assert_eq!(env.status().await.dead_letters, 0);

    // Back: the waiting request completes.
    model.answer(answer());
    model.restart().await;
    env.wait_idle().await;
    assert_eq!(env.predictions(b).await["churn"].score, Some(0.3));
    assert_eq!(env.entries(DLQ).await.len(), 0);
    let completed = env.entries(names::PREDICTIONS_COMPLETED).await;
    let for_b: Vec<_> = completed
        .iter()
        .filter(|(_, f)| f["profile_id"] == b.to_string())
        .collect();
    assert_eq!(for_b.len(), 1);
    assert_eq!(for_b[0].1["model_version"], "acme-2");
}

#[tokio::test]
async fn a_request_the_model_always_fails_while_it_answers_the_rest_is_isolated_and_dead_lettered()
{
    let env = Env::start().await;
    let (a, b) = (
        env.profile("shop", None).await,
        env.profile("shop", None).await,
    );
    let model = ModelServer::start(answer()).await;
    model.fail_for(&b.to_string());
    // Both in the stream before the dispatcher starts, so they are read as one batch.
    env.send(&[
        request(a, "shop", RequestType::Churn, Some("r-a")),
        request(b, "shop", RequestType::Churn, Some("r-b")),
    ])
    .await;
    let _dispatcher = env.start_dispatcher(env.settings(Some(model.url())));
    env.wait_idle().await;

    assert_eq!(env.predictions(a).await["churn"].score, Some(0.3));
    assert!(env.predictions(b).await.is_empty());
    let letters = env.entries(DLQ).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].1["dlq_kind"], "max_deliveries");
    assert_eq!(letters[0].1["request_id"], "r-b");
}

#[tokio::test]
async fn a_model_answer_that_breaks_the_contract_is_dead_lettered_with_the_reason() {
    let env = Env::start().await;
    let profile = env.profile("shop", None).await;
    let model = ModelServer::start(Answer::Json(json!({"ltv": 5, "model_version": "m"}))).await;
    let _dispatcher = env.start_dispatcher(env.settings(Some(model.url())));
    env.send(&[request(profile, "shop", RequestType::All, None)])
        .await;
    env.wait_idle().await;

    let letters = env.entries(DLQ).await;
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].1["dlq_reason"].contains("churn was requested but is missing"),
        "{:?}",
        letters[0].1
    );
    assert_eq!(env.count("SELECT count(*) FROM predictions").await, 0);
    assert_eq!(env.entries(names::PREDICTIONS_COMPLETED).await.len(), 0);
}

#[tokio::test]
async fn a_4xx_from_the_model_is_dead_lettered_naming_the_status() {
    let env = Env::start().await;
    let profile = env.profile("shop", None).await;
    let model = ModelServer::start(Answer::Status(400, "brand not enabled".into())).await;
    let _dispatcher = env.start_dispatcher(env.settings(Some(model.url())));
    env.send(&[request(profile, "shop", RequestType::Churn, None)])
        .await;
    env.wait_idle().await;

    let letters = env.entries(DLQ).await;
    assert_eq!(letters.len(), 1);
    let reason = &letters[0].1["dlq_reason"];
    assert!(
        reason.contains("400") && reason.contains("brand not enabled"),
        "{reason}"
    );
    assert_eq!(model.calls(), 1, "a 4xx is not retried");
}

#[tokio::test]
async fn requests_of_one_batch_wait_on_the_model_together() {
    let env = Env::start().await;
    let profile = env.profile("shop", None).await;
    let reply = json!({"churn": 0.1, "model_version": "m"});
    let model = ModelServer::start(Answer::Slow(reply, 300)).await;
    let requests: Vec<_> = (0..4)
        .map(|_| request(profile, "shop", RequestType::Churn, None))
        .collect();
    env.send(&requests).await;
    let mut settings = env.settings(Some(model.url()));
    settings.model_timeout_ms = 5_000;
    settings.model_concurrency = 4;
    let _dispatcher = env.start_dispatcher(settings);
    env.wait_idle().await;

    assert_eq!(model.calls(), 4);
    assert!(model.max_in_flight() >= 2, "{}", model.max_in_flight());
    assert_eq!(env.entries(names::PREDICTIONS_COMPLETED).await.len(), 4);
}
