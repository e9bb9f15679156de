//! Crawler events fold into one `crawlers` row per crawler and a complete event log.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use bus_core::chrono::{DateTime, Duration, Utc};
use bus_core::tracing::Span;
use bus_core::{Batch, Bus, Delivery, EntryId, Handler, StreamMessage};
use common::{Env, count};
use ingest::IngestMetrics;
use ingest::handlers::CrawlerEventsHandler;
use ingest::messages::{
    CRAWLER_EVENTS_STREAM, CrawlerEventData, CrawlerEventKind, CrawlerEventMessage, Envelope,
    SERVER_GROUP,
};

fn event(
    ms: u64,
    kind: CrawlerEventKind,
    status: &str,
    error: Option<&str>,
) -> Delivery<CrawlerEventMessage> {
    let mut message = Envelope::new(
        "crawler",
        kind,
        CrawlerEventData {
            crawler_id: "crawler-1".into(),
            status: status.into(),
            error: error.map(Into::into),
            extra: Default::default(),
        },
    );
    message.timestamp = at(ms);
    Delivery {
        id: EntryId { ms, seq: 0 },
        fields: message.encode(),
        message,
        deliveries: 1,
        span: Span::none(),
    }
}

fn at(ms: u64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + Duration::milliseconds(ms as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawler_events_update_the_crawler_row_and_append_to_the_log_even_out_of_order() {
    use CrawlerEventKind::*;
    let env = Env::start();
    let pool = env.pool().await;
    let bus = Bus::connect(&env.common("test")).await.unwrap();
    let handler = CrawlerEventsHandler::new(pool.clone(), IngestMetrics::register(&bus.metrics));
    let batch = |entries| Batch {
        stream: CRAWLER_EVENTS_STREAM,
        group: SERVER_GROUP,
        consumer: "test",
        entries,
    };
    let later = [
        event(4_000, Error, "error", Some("rpc timeout")),
        event(5_000, Heartbeat, "active", None),
    ];
    let earlier = [
        event(1_000, Online, "active", None),
        event(2_000, Heartbeat, "active", None),
        event(3_000, Error, "error", Some("older error")),
    ];
    handler.handle(batch(&later)).await.unwrap();
    handler.handle(batch(&earlier)).await.unwrap();
    handler.handle(batch(&earlier)).await.unwrap();

    let row: (String, String, DateTime<Utc>, String, String) = bus_core::sqlx::query_as(
        "SELECT status, last_event_type, last_heartbeat, last_error, last_entry_id FROM crawlers",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "active".into(),
            "HEARTBEAT".into(),
            at(5_000),
            "rpc timeout".into(),
            "5000-0".into()
        )
    );
    assert_eq!(count(&pool, "crawlers").await, 1);
    assert_eq!(
        count(&pool, "crawler_events").await,
        5,
        "each event logged once"
    );
    let logged: String = bus_core::sqlx::query_scalar(
        "SELECT data->>'error' FROM crawler_events WHERE entry_id = '4000-0'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(logged, "rpc timeout");
}
