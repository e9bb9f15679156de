//! The producer's `traceparent` travels in the entry and parents the consumer's span.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bus_testkit::RedisServer;
use common::*;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test]
async fn the_producers_traceparent_is_the_parent_of_the_consumers_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = RedisServer::start().unwrap();
    let bus = bus(&server.url()).await;
    let handler = FnHandler::ok();
    let (task, shutdown) = spawn(&bus, config("s", "g", "c", fast_worker()), handler.clone());
    async { produce(&bus, "s", 1).await }
        .instrument(tracing::info_span!("produce"))
        .await;
    until("handled", Duration::from_secs(10), || async {
        handler.handled().len() == 1
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let _ = provider.force_flush();

    let spans = exporter.get_finished_spans().unwrap();
    let producer = spans
        .iter()
        .find(|s| s.name == "produce")
        .expect("producer span");
    let entry = spans
        .iter()
        .find(|s| s.name == "stream.entry")
        .expect("consumer entry span");
    assert_eq!(
        entry.span_context.trace_id(),
        producer.span_context.trace_id(),
        "same trace"
    );
    assert_eq!(
        entry.parent_span_id,
        producer.span_context.span_id(),
        "producer span is the parent"
    );
}
