//! The stream inspection API against a private Redis: info, reads, pending entries of a real
//! group, the STREAMS allow-list and the tenant prefix.
#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use common::{Gateway, batch, stream_ids};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_reports_every_configured_stream_with_its_groups() {
    let gateway = Gateway::start().await;
    let (_, answer) = gateway.post("/api/events", &batch(3)).await;
    let ids = stream_ids(&answer, "events");
    gateway
        .read_without_ack("events.raw", "normalizers", "c1", 2)
        .await;
    let _: String = redis::cmd("XADD")
        .arg("events.raw:dlq")
        .arg("*")
        .arg("dlq_reason")
        .arg("test")
        .query_async(&mut gateway.redis().await)
        .await
        .unwrap();

    let (status, info) = gateway.get("/api/streams/info").await;
    assert_eq!(status, 200, "{info}");
    let streams = info["streams"].as_array().unwrap();
    let names: Vec<&str> = streams
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "events.raw",
            "events.normalized",
            "profiles.merge_requests",
            "predictions.requests",
            "predictions.completed",
            "raw_items"
        ]
    );
    let raw = &streams[0];
    assert_eq!(raw["exists"], true);
    assert_eq!(raw["length"], 3);
    assert_eq!(raw["first_entry_id"], ids[0].as_str());
    assert_eq!(raw["last_entry_id"], ids[2].as_str());
    assert_eq!(raw["dead_letters"], 1);
    assert_eq!(
        raw["groups"],
        json!([{
            "name": "normalizers", "consumers": 1, "pending": 2, "lag": 1,
            "entries_read": 2, "last_delivered_id": ids[1],
        }])
    );
    let absent = &streams[1];
    assert_eq!(
        (absent["exists"].clone(), absent["length"].clone()),
        (json!(false), json!(0))
    );
    assert_eq!(absent["groups"], json!([]));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_starts_at_start_id_inclusive_and_count_is_clamped() {
    let gateway = Gateway::start_with(|_, s| s.max_read_count = 3).await;
    let (_, answer) = gateway.post("/api/events", &batch(5)).await;
    let ids = stream_ids(&answer, "events");

    let (status, page) = gateway
        .get("/api/streams/events.raw?startId=0&count=2")
        .await;
    assert_eq!(status, 200, "{page}");
    let got: Vec<&str> = entry_ids(&page);
    assert_eq!(got, [ids[0].as_str(), ids[1].as_str()]);
    let fields = &page["entries"][0]["fields"];
    assert_eq!(fields["brand_id"], "test-brand");
    assert_eq!(fields["event_type"], "purchase");
    assert!(fields["payload"].as_str().unwrap().contains("total"));

    let next = page["next_start_id"].as_str().unwrap();
    let (_, rest) = gateway
        .get(&format!("/api/streams/events.raw?startId={next}&count=100"))
        .await;
    assert_eq!(rest["count"], 3, "count is lowered to MAX_READ_COUNT");
    assert_eq!(
        entry_ids(&rest),
        [ids[2].as_str(), ids[3].as_str(), ids[4].as_str()]
    );

    let (_, inclusive) = gateway
        .get(&format!(
            "/api/streams/events.raw?startId={}&count=1",
            ids[4]
        ))
        .await;
    assert_eq!(
        entry_ids(&inclusive),
        [ids[4].as_str()],
        "startId is inclusive"
    );

    let (_, default) = gateway.get("/api/streams/events.raw").await;
    assert_eq!(
        entry_ids(&default).len(),
        3,
        "default count 10, clamped to 3"
    );

    for (query, field) in [
        ("startId=latest", "startId"),
        ("count=0", "count"),
        ("count=x", "count"),
    ] {
        let (status, answer) = gateway
            .get(&format!("/api/streams/events.raw?{query}"))
            .await;
        assert_eq!(
            (status, answer["field"].clone()),
            (400, json!(field)),
            "{query}"
        );
    }
    gateway.stop().await;
}

fn entry_ids(page: &Value) -> Vec<&str> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_lists_what_a_consumer_read_without_acknowledging() {
    let gateway = Gateway::start().await;
    let (_, answer) = gateway.post("/api/events", &batch(3)).await;
    let ids = stream_ids(&answer, "events");
    gateway
        .read_without_ack("events.raw", "normalizers", "worker-1", 2)
        .await;

    let (status, pending) = gateway
        .get("/api/streams/events.raw/pending?group=normalizers&count=1")
        .await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["stream"], "events.raw");
    assert_eq!(pending["group"], "normalizers");
    assert_eq!(pending["pending"], 2);
    assert_eq!(pending["oldest_id"], ids[0].as_str());
    assert_eq!(pending["newest_id"], ids[1].as_str());
    assert_eq!(
        pending["consumers"],
        json!([{"name": "worker-1", "pending": 2}])
    );
    let entries = pending["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "count=1");
    assert_eq!(entries[0]["id"], ids[0].as_str());
    assert_eq!(entries[0]["consumer"], "worker-1");
    assert_eq!(entries[0]["deliveries"], 1);
    assert!(entries[0]["idle_ms"].as_u64().is_some());

    let (status, answer) = gateway.get("/api/streams/events.raw/pending").await;
    assert_eq!(
        (status, answer["field"].clone()),
        (400, json!("group")),
        "{answer}"
    );
    let (status, answer) = gateway
        .get("/api/streams/events.raw/pending?group=nobody")
        .await;
    assert_eq!(
        (status, answer["field"].clone()),
        (404, json!("group")),
        "{answer}"
    );
    assert!(answer["error"].as_str().unwrap().contains("nobody"));
    let (status, empty) = gateway
        .get("/api/streams/events.raw/pending?group=normalizers&count=5")
        .await;
    assert_eq!(
        (status, empty["entries"].as_array().unwrap().len()),
        (200, 2)
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_streams_are_404_and_dead_letter_streams_of_listed_ones_are_readable() {
    let gateway = Gateway::start_with(|_, s| s.streams = "events.raw".into()).await;
    for path in [
        "/api/streams/raw_items",
        "/api/streams/secret",
        "/api/streams/secret:dlq",
        "/api/streams/raw_items/pending?group=validator_workers",
    ] {
        let (status, answer) = gateway.get(path).await;
        assert_eq!(
            (status, answer["field"].clone()),
            (404, json!("name")),
            "{path}"
        );
        assert!(answer["error"].as_str().unwrap().contains("not readable"));
    }
    let (status, dlq) = gateway.get("/api/streams/events.raw:dlq").await;
    assert_eq!(
        (status, dlq["stream"].clone()),
        (200, json!("events.raw:dlq"))
    );
    let (_, info) = gateway.get("/api/streams/info").await;
    assert_eq!(info["streams"].as_array().unwrap().len(), 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_writes_and_reads_only_its_prefixed_streams() {
    let gateway = Gateway::start_with(|c, _| c.redis_namespace = Some("acme".into())).await;
    let (status, answer) = gateway.post("/api/events", &batch(2)).await;
    assert_eq!(status, 202, "{answer}");
    let ids = stream_ids(&answer, "events");
    assert_eq!(gateway.xlen("tenant:acme:events.raw").await, 2);
    assert_eq!(
        gateway.xlen("events.raw").await,
        0,
        "nothing outside the tenant"
    );
    let item = json!({"data": {"phone": "0123456789"}}).to_string();
    assert_eq!(gateway.post("/api/items", &item).await.0, 202);
    assert_eq!(gateway.xlen("tenant:acme:raw_items").await, 1);

    let (_, info) = gateway.get("/api/streams/info").await;
    let raw = &info["streams"][0];
    assert_eq!(
        (raw["name"].clone(), raw["length"].clone()),
        (json!("events.raw"), json!(2))
    );
    let (_, page) = gateway.get("/api/streams/events.raw").await;
    assert_eq!(page["stream"], "events.raw");
    assert_eq!(entry_ids(&page), [ids[0].as_str(), ids[1].as_str()]);

    gateway
        .read_without_ack("events.raw", "normalizers", "c1", 1)
        .await;
    let (status, pending) = gateway
        .get("/api/streams/events.raw/pending?group=normalizers")
        .await;
    assert_eq!(
        (status, pending["pending"].clone()),
        (200, json!(1)),
        "{pending}"
    );
    gateway.stop().await;
}
