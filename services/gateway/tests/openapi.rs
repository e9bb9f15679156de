//! The OpenAPI document against the router: every served route is documented, every documented
//! route is served; the page renders it; unknown routes and methods get JSON errors.
#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use std::collections::BTreeSet;

use common::Gateway;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_served_route_is_documented_and_every_documented_route_is_served() {
    let gateway = Gateway::start().await;
    let (status, doc) = gateway.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = gateway::served_routes()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_owned()))
        .collect();
    assert_eq!(documented, served);

    // The route table is what the router is built from; probing each documented operation
    // shows the listener really routes it (no 404 from an unknown route, no 405).
    let client = reqwest::Client::new();
    for (method, path) in &documented {
        let url = gateway.url(&path.replace("{name}", "events.raw"));
        let request = match method.as_str() {
            "GET" => client.get(&url),
            "POST" => client.post(&url).body("{}"),
            other => panic!("undocumented method {other}"),
        };
        let status = request.send().await.unwrap().status().as_u16();
        assert!(![404, 405].contains(&status), "{method} {path}: {status}");
    }

    let refs = collect_refs(&doc);
    for reference in refs {
        let pointer = reference.trim_start_matches('#');
        assert!(doc.pointer(pointer).is_some(), "dangling {reference}");
    }
    gateway.stop().await;
}

fn collect_refs(value: &Value) -> Vec<String> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v) {
                ("$ref", Value::String(r)) => vec![r.clone()],
                _ => collect_refs(v),
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(collect_refs).collect(),
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_is_a_self_contained_html_page_that_loads_the_document() {
    let gateway = Gateway::start().await;
    let response = reqwest::get(gateway.url("/api/docs")).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    assert!(page.contains("fetch(\"openapi.json\")"));
    assert!(!page.contains("https://") && !page.contains("<script src"));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_get_json_errors() {
    let gateway = Gateway::start().await;
    let (status, answer) = gateway.get("/api/nothing-here").await;
    assert_eq!(status, 404);
    assert!(answer["error"].as_str().unwrap().contains("openapi.json"));
    let (status, answer) = gateway.get("/api/events").await;
    assert_eq!(status, 405);
    assert!(answer["error"].as_str().is_some());
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(r#"gateway_requests_total{route="unmatched",status="404"} 1"#),
        "{metrics}"
    );
    gateway.stop().await;
}
