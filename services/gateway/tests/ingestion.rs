//! POST /api/events, /api/items and /api/predictions against a private Redis: what lands in
//! the streams, what is refused (and that nothing of it is written), auth, limits, outages and
//! retention.
#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use bus_testkit::{eventually, until};
use commerce::{PredictionRequest, RawEvent, RequestType, messages::format_timestamp};
use common::{Gateway, WAIT, batch, event, stream_ids};
use gateway::ApiToken;
use serde_json::{Value, json};
use validator::RawItem;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_batch_lands_in_events_raw_in_the_seed_format() {
    let gateway = Gateway::start().await;
    let body = json!({"events": [
        {"event_id": "evt-1", "brand_id": "test-brand", "event_type": "purchase",
         "payload": {"phone": "+1234567890", "total": 99.99}, "timestamp": "2024-12-01T10:00:00.000Z"},
        {"brand_id": "test-brand", "event_type": "page_view", "payload": {"email": "a@b.co"}},
        {"brand_id": "other-brand", "event_type": "whatsapp_message", "payload": {}},
    ]});
    let (status, answer) = gateway.post("/api/events", &body.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], 3);
    assert_eq!(answer["events"][0]["event_id"], "evt-1");

    let stored = gateway.entries("events.raw").await;
    let ids: Vec<String> = stored.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        ids,
        stream_ids(&answer, "events"),
        "answers carry the entry ids"
    );
    let (_, first) = &stored[0];
    assert_eq!(first.get("event_id"), Some("evt-1"));
    assert_eq!(first.get("brand_id"), Some("test-brand"));
    assert_eq!(first.get("event_type"), Some("purchase"));
    assert_eq!(first.get("timestamp"), Some("2024-12-01T10:00:00.000Z"));
    let payload: Value = serde_json::from_str(first.get("payload").unwrap()).unwrap();
    assert_eq!(payload, json!({"phone": "+1234567890", "total": 99.99}));

    let events = gateway.decoded::<RawEvent>("events.raw").await;
    let generated = answer["events"][1]["event_id"].as_str().unwrap();
    assert_eq!(events[1].1.event_id, generated);
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
    assert_eq!(events[2].1.brand_id, "other-brand");
    assert!(format_timestamp(&events[2].1.timestamp).ends_with('Z'));

    let metrics = gateway.metrics().await;
    for line in [
        r#"gateway_entries_total{stream="events.raw"} 3"#,
        r#"gateway_requests_total{route="/api/events",status="202"} 1"#,
        r#"gateway_request_duration_seconds_count{route="/api/events"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_event_and_a_bare_array_are_accepted_too() {
    let gateway = Gateway::start().await;
    let (status, answer) = gateway
        .post("/api/events", &event("b", 1).to_string())
        .await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (202, json!(1)),
        "{answer}"
    );
    let array = json!([event("b", 2), event("b", 3)]).to_string();
    let (status, answer) = gateway.post("/api/events", &array).await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (202, json!(2)),
        "{answer}"
    );
    assert_eq!(gateway.xlen("events.raw").await, 3);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_event_is_named_with_its_index_and_nothing_of_the_batch_is_written() {
    let gateway = Gateway::start().await;
    let mut events: Vec<Value> = (0..5).map(|i| event("b", i)).collect();
    events[3].as_object_mut().unwrap().remove("brand_id");
    let cases = [
        (
            json!({"events": events}).to_string(),
            422,
            "events[3].brand_id",
        ),
        (
            json!([event("b", 0), {"brand_id": "b", "event_type": "Bad Type", "payload": {}}])
                .to_string(),
            422,
            "events[1].event_type",
        ),
        (
            json!({"brand_id": "b", "event_type": "purchase", "payload": "{}"}).to_string(),
            422,
            "payload",
        ),
        ("{\"events\": [".to_owned(), 400, "body"),
    ];
    for (body, status, field) in cases {
        let (got, answer) = gateway.post("/api/events", &body).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert_eq!(gateway.xlen("events.raw").await, 0, "nothing written");
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(r#"gateway_rejected_total{route="/api/events",reason="invalid"} 4"#),
        "{metrics}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_max_body_bytes_and_batches_over_max_batch_get_413() {
    let gateway = Gateway::start_with(|_, s| {
        s.max_body_bytes = 2048;
        s.max_batch = 3;
    })
    .await;
    let big = json!({"brand_id": "b", "event_type": "t", "payload": {"blob": "x".repeat(4096)}});
    let (status, answer) = gateway.post("/api/events", &big.to_string()).await;
    assert_eq!(
        (status, answer["field"].clone()),
        (413, json!("body")),
        "{answer}"
    );
    assert!(answer["error"].as_str().unwrap().contains("MAX_BODY_BYTES"));

    let (status, answer) = gateway.post("/api/events", &batch(4)).await;
    assert_eq!(
        (status, answer["field"].clone()),
        (413, json!("events")),
        "{answer}"
    );
    assert_eq!(answer["limit"], 3);
    assert!(answer["error"].as_str().unwrap().contains("MAX_BATCH"));

    let items: Vec<Value> = (0..4).map(|_| json!({"data": {}})).collect();
    let (status, _) = gateway
        .post("/api/items", &json!({ "items": items }).to_string())
        .await;
    assert_eq!(status, 413);

    assert_eq!(gateway.xlen("events.raw").await, 0);
    assert_eq!(gateway.xlen("raw_items").await, 0);
    let (status, _) = gateway.post("/api/events", &batch(3)).await;
    assert_eq!(status, 202, "a batch at the limit is fine");
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(r#"gateway_rejected_total{route="/api/events",reason="too_large"} 2"#),
        "{metrics}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_token_every_api_route_needs_the_bearer_token() {
    let gateway = Gateway::start_with(|_, s| s.api_token = Some(ApiToken::new("s3cret"))).await;
    let body = batch(1);
    for token in [None, Some("wrong"), Some("s3cre"), Some("s3cret-and-more")] {
        let (status, answer) = gateway.post_as("/api/events", &body, token).await;
        assert_eq!(status, 401, "{token:?}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("bearer token"));
    }
    for path in ["/api/streams/info", "/api/streams/events.raw"] {
        assert_eq!(gateway.get(path).await.0, 401, "{path}");
    }
    let response = reqwest::Client::new()
        .post(gateway.url("/api/items"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["www-authenticate"].to_str().unwrap(),
        "Bearer"
    );
    assert_eq!(gateway.xlen("events.raw").await, 0);

    let (status, _) = gateway.post_as("/api/events", &body, Some("s3cret")).await;
    assert_eq!(status, 202);
    assert_eq!(
        gateway.get_as("/api/streams/info", Some("s3cret")).await.0,
        200
    );
    for open in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/openapi.json",
        "/api/docs",
    ] {
        let response = reqwest::get(gateway.url(open)).await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{open} stays open");
    }
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(r#"gateway_rejected_total{route="/api/events",reason="unauthorized"} 4"#),
        "{metrics}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_land_in_raw_items_and_decode_as_validator_items() {
    let gateway = Gateway::start().await;
    let body = json!({"items": [
        {"data": {"phone": "0123456789", "bank_account": "12345678901", "email": "an@example.com",
                  "name": "An", "source": "web_crawler"},
         "source": "web_crawler", "producer": "crawler_worker", "batch_id": "batch_001",
         "timestamp": "2024-06-08T00:13:03+07:00"},
        {"data": {"phone": "1"}},
    ]});
    let (status, answer) = gateway.post("/api/items", &body.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], 2);

    let items = gateway.decoded::<RawItem>("raw_items").await;
    let ids: Vec<String> = items.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, stream_ids(&answer, "items"));
    let first = &items[0].1;
    assert_eq!(first.data["bank_account"], "12345678901");
    assert_eq!(first.source.as_deref(), Some("web_crawler"));
    assert_eq!(first.producer.as_deref(), Some("crawler_worker"));
    assert_eq!(first.batch_id.as_deref(), Some("batch_001"));
    assert_eq!(
        first.timestamp.as_deref(),
        Some("2024-06-08T00:13:03+07:00")
    );
    let second = &items[1].1;
    assert_eq!(
        second.data["phone"], "1",
        "the phone rule is the validator's, not ours"
    );
    assert!(
        second.timestamp.is_some(),
        "a missing timestamp defaults to now"
    );

    let bad = json!({"items": [{"data": {}}, {"data": "phone=1"}]}).to_string();
    let (status, answer) = gateway.post("/api/items", &bad).await;
    assert_eq!(
        (status, answer["field"].clone()),
        (422, json!("items[1].data"))
    );
    assert_eq!(
        gateway.xlen("raw_items").await,
        2,
        "the bad batch wrote nothing"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prediction_request_lands_in_predictions_requests() {
    let gateway = Gateway::start().await;
    let profile = uuid::Uuid::new_v4();
    let body = json!({"profile_id": profile, "brand_id": "test-brand", "request_type": "churn"});
    let (status, answer) = gateway.post("/api/predictions", &body.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    let request_id = answer["request_id"].as_str().unwrap();
    assert!(request_id.starts_with("api:"), "{request_id}");

    let requests = gateway
        .decoded::<PredictionRequest>("predictions.requests")
        .await;
    assert_eq!(requests.len(), 1);
    let (id, request) = &requests[0];
    assert_eq!(id, answer["stream_id"].as_str().unwrap());
    assert_eq!(request.profile_id, profile);
    assert_eq!(request.brand_id, "test-brand");
    assert_eq!(request.request_type, RequestType::Churn);
    assert_eq!(request.request_id.as_deref(), Some(request_id));

    let default_type = json!({"profile_id": profile, "brand_id": "b"}).to_string();
    let (status, answer) = gateway.post("/api/predictions", &default_type).await;
    assert_eq!(
        (status, answer["request_type"].clone()),
        (202, json!("all"))
    );

    for (body, field) in [
        (json!({"profile_id": "42", "brand_id": "b"}), "profile_id"),
        (
            json!({"profile_id": profile, "brand_id": "b", "request_type": "rfm"}),
            "request_type",
        ),
        (json!([{"profile_id": profile, "brand_id": "b"}]), "body"),
    ] {
        let (status, answer) = gateway.post("/api/predictions", &body.to_string()).await;
        assert_eq!(
            (status, answer["field"].clone()),
            (422, json!(field)),
            "{body}"
        );
    }
    assert_eq!(gateway.xlen("predictions.requests").await, 2);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_a_post_gets_503_and_once_it_is_back_202() {
    let mut gateway = Gateway::start().await;
    gateway.redis.kill();

    let (status, answer) = gateway.post("/api/events", &batch(2)).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("events.raw"),
        "{answer}"
    );
    let event_ids = answer["event_ids"].as_array().unwrap();
    assert_eq!(event_ids.len(), 2, "the ids to resend the batch with");
    let prediction = json!({"profile_id": uuid::Uuid::new_v4(), "brand_id": "b"}).to_string();
    assert_eq!(gateway.post("/api/predictions", &prediction).await.0, 503);
    assert_eq!(gateway.get("/api/streams/info").await.0, 503);

    gateway.redis.restart().unwrap();
    let answer = eventually("a POST to succeed after Redis is back", WAIT, || {
        let gateway = &gateway;
        async move {
            let (status, answer) = gateway.post("/api/events", &batch(2)).await;
            (status == 202).then_some(answer)
        }
    })
    .await;
    assert_eq!(answer["accepted"], 2);
    assert_eq!(
        gateway.xlen("events.raw").await,
        2,
        "only the accepted batch is there"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_trims_events_raw_but_never_past_unacknowledged_entries() {
    let gateway = Gateway::start_with(|_, s| {
        s.retention.events_raw = 5;
        s.producer.trim_interval_ms = 20;
    })
    .await;
    let (_, answer) = gateway.post("/api/events", &batch(12)).await;
    let ids = stream_ids(&answer, "events");
    gateway
        .read_without_ack("events.raw", "normalizers", "c1", 12)
        .await;
    let mut conn = gateway.redis().await;
    let _: i64 = redis::cmd("XACK")
        .arg("events.raw")
        .arg("normalizers")
        .arg(&ids[..3])
        .query_async(&mut conn)
        .await
        .unwrap();

    until("the acknowledged entries to be trimmed", WAIT, || async {
        gateway.xlen("events.raw").await == 9
    })
    .await;
    let kept = gateway.entries("events.raw").await;
    assert_eq!(kept[0].0, ids[3], "the first unacknowledged entry is kept");

    let _: i64 = redis::cmd("XACK")
        .arg("events.raw")
        .arg("normalizers")
        .arg(&ids[3..])
        .query_async(&mut conn)
        .await
        .unwrap();
    until("the stream to shrink to its retention", WAIT, || async {
        gateway.xlen("events.raw").await == 5
    })
    .await;
    gateway.stop().await;
}
