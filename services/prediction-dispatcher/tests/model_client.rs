//! The external model client against a real HTTP server: the request it sends, and how each
//! kind of failure is classified, retried and counted.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bus_core::Metrics;
use bus_core::serde_json::json;
use commerce::RequestType;
use common::at;
use common::model_server::{Answer, ModelServer};
use prediction_dispatcher::features::Features;
use prediction_dispatcher::model::ModelKind;
use prediction_dispatcher::{DispatcherMetrics, ExternalModel, ModelError};
use uuid::Uuid;

fn features() -> Features {
    Features {
        event_count: 5,
        order_count: 2,
        total_spent: 80.5,
        first_seen_at: at("2024-09-01T00:00:00Z"),
        last_seen_at: at("2024-11-25T00:00:00Z"),
        last_order_at: Some(at("2024-11-20T00:00:00Z")),
        events_by_type: json!({"purchase": 2, "page_view": 3})
            .as_object()
            .unwrap()
            .clone(),
    }
}

/// A client with `retries`, a 300 ms timeout, and its metrics registry.
fn client(url: &str, retries: u32) -> (ExternalModel, Metrics) {
    let registry = Metrics::new();
    let metrics = DispatcherMetrics::register(&registry);
    let model = ExternalModel::new(
        url,
        Duration::from_millis(300),
        retries,
        Duration::from_millis(10),
        metrics,
    )
    .unwrap();
    (model, registry)
}

async fn ask(model: &ExternalModel, request_type: RequestType) -> Result<Vec<f64>, ModelError> {
    let out = model
        .predict(Uuid::nil(), "shop", request_type, &features())
        .await?;
    Ok(out.predictions.iter().filter_map(|p| p.score).collect())
}

#[tokio::test]
async fn the_model_receives_the_profile_and_its_features_and_its_answer_is_used() {
    let server = ModelServer::start(Answer::Json(json!({
        "churn": 0.25, "ltv": 310.5, "segment": "VIP", "model_version": "acme-7"
    })))
    .await;
    let (model, _) = client(&server.url(), 0);
    let out = model
        .predict(Uuid::nil(), "shop", RequestType::All, &features())
        .await
        .unwrap();

    assert_eq!(out.kind, ModelKind::External);
    assert_eq!(out.model_version, "acme-7");
    let summaries: Vec<_> = out.predictions.iter().map(|p| p.summary.clone()).collect();
    assert_eq!(
        summaries,
        [
            json!({"probability": 0.25}),
            json!({"value": 310.5}),
            json!({"name": "VIP"})
        ]
    );
    assert_eq!(out.predictions[2].label.as_deref(), Some("VIP"));
    assert_eq!(out.predictions[0].details["features"]["order_count"], 2);
    let sent = server.last_request().unwrap();
    assert_eq!(sent["profile_id"], Uuid::nil().to_string());
    assert_eq!(sent["brand_id"], "shop");
    assert_eq!(sent["request_type"], "all");
    assert_eq!(sent["features"]["total_spent"], 80.5);
    assert_eq!(sent["features"]["last_order_at"], "2024-11-20T00:00:00Z");
    assert_eq!(sent["features"]["events_by_type"]["page_view"], 3);
}

#[tokio::test]
async fn a_5xx_answer_is_retried_then_reported_as_unavailable_and_counted() {
    let server = ModelServer::start(Answer::Status(503, "warming up".into())).await;
    let (model, registry) = client(&server.url(), 2);
    let err = ask(&model, RequestType::Churn).await.unwrap_err();

    assert!(
        matches!(&err, ModelError::Unavailable(why) if why.contains("503")),
        "{err}"
    );
    assert_eq!(server.calls(), 3, "the first attempt and two retries");
    let text = registry.encode();
    assert!(
        text.contains(r#"prediction_dispatcher_model_errors_total{kind="unavailable"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"prediction_dispatcher_model_duration_seconds_count{model="external"} 1"#)
    );
}

#[tokio::test]
async fn a_429_answer_is_an_outage_too() {
    let server = ModelServer::start(Answer::Status(429, "slow down".into())).await;
    let (model, _) = client(&server.url(), 0);
    let err = ask(&model, RequestType::Churn).await.unwrap_err();
    assert!(matches!(err, ModelError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn a_model_that_does_not_answer_in_time_is_a_timeout() {
    let server = ModelServer::start(Answer::Hang).await;
    let (model, registry) = client(&server.url(), 1);
    let err = ask(&model, RequestType::Ltv).await.unwrap_err();

    assert!(matches!(err, ModelError::Timeout(_)), "{err}");
    assert_eq!(server.calls(), 2);
    assert!(
        registry
            .encode()
            .contains(r#"prediction_dispatcher_model_errors_total{kind="timeout"} 2"#)
    );
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let mut server = ModelServer::start(Answer::Json(json!({}))).await;
    server.stop().await;
    let (model, _) = client(&server.url(), 1);
    let err = ask(&model, RequestType::Churn).await.unwrap_err();
    assert!(matches!(err, ModelError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn a_4xx_answer_is_a_bad_response_and_not_retried() {
    let server =
        ModelServer::start(Answer::Status(422, r#"{"error":"unknown brand"}"#.into())).await;
    let (model, registry) = client(&server.url(), 2);
    let err = ask(&model, RequestType::Churn).await.unwrap_err();

    assert!(
        matches!(&err, ModelError::BadResponse(why) if why.contains("422") && why.contains("unknown brand")),
        "{err}"
    );
    assert_eq!(server.calls(), 1);
    assert!(
        registry
            .encode()
            .contains(r#"prediction_dispatcher_model_errors_total{kind="bad_response"} 1"#)
    );
}

#[tokio::test]
async fn answers_that_break_the_contract_are_bad_responses_naming_the_problem() {
    let server = ModelServer::start(Answer::Status(200, "not json".into())).await;
    let (model, _) = client(&server.url(), 2);
    for (answer, request_type, expected) in [
        (json!("text"), RequestType::Churn, "not the expected JSON"),
        (json!({"churn": 0.2}), RequestType::Churn, "model_version"),
        (
            json!({"ltv": 3, "model_version": "m"}),
            RequestType::All,
            "churn was requested",
        ),
        (
            json!({"churn": 1.5, "model_version": "m"}),
            RequestType::Churn,
            "between 0 and 1",
        ),
        (
            json!({"churn": 0.5, "ltv": 1, "segment": " ", "model_version": "m"}),
            RequestType::All,
            "segment",
        ),
        (
            json!({"churn": "0.5", "model_version": "m"}),
            RequestType::Churn,
            "not the expected JSON",
        ),
    ] {
        server.answer(Answer::Json(answer.clone()));
        let err = ask(&model, request_type).await.unwrap_err();
        assert!(
            matches!(&err, ModelError::BadResponse(why) if why.contains(expected)),
            "{answer}: {err}"
        );
    }
    // Only what was asked for must be present.
    server.answer(Answer::Json(
        json!({"segment": "VIP", "model_version": "m"}),
    ));
    assert!(ask(&model, RequestType::Segment).await.is_ok());
}
