//! Redelivery changes nothing: the same batch handled twice, a replica restarted with its
//! entries still pending, and batches committing out of order.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use bus_core::tracing::Span;
use bus_core::{Batch, Bus, Delivery, EntryId, Fields, Handler, ProducerSettings, StreamMessage};
use common::data::{token, token_message, transaction};
use common::{Env, WAIT, count, entries, eventually, pending};
use ingest::handlers::{TokensHandler, TransactionsHandler};
use ingest::messages::{
    SERVER_GROUP, TOKEN_CREATED_CHANNEL, TOKENS_STREAM, TRANSACTIONS_STREAM, TokenData, TokenKind,
    TokenMessage,
};
use ingest::{IngestMetrics, WriteMethod};

fn delivery<M: StreamMessage>(id: EntryId, message: M) -> Delivery<M> {
    Delivery {
        id,
        fields: message.encode(),
        message,
        deliveries: 1,
        span: Span::none(),
    }
}

fn batch<'a, M>(entries: &'a [Delivery<M>], stream: &'static str) -> Batch<'a, M> {
    Batch {
        stream,
        group: SERVER_GROUP,
        consumer: "test",
        entries,
    }
}

fn id(ms: u64) -> EntryId {
    EntryId { ms, seq: 0 }
}

async fn snapshot(pool: &bus_core::sqlx::PgPool) -> Vec<(String, String, String, String)> {
    bus_core::sqlx::query_as(
        "SELECT address, name, last_entry_id, updated_at::text FROM tokens ORDER BY address",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handling_the_same_batch_twice_changes_nothing() {
    let env = Env::start();
    let pool = env.pool().await;
    let bus = Bus::connect(&env.common("test")).await.unwrap();
    let metrics = IngestMetrics::register(&bus.metrics);
    let publisher = bus.publisher(bus.producer(ProducerSettings::default()));
    let listener = env.listen(TOKEN_CREATED_CHANNEL).await;
    let tokens = TokensHandler::new(pool.clone(), publisher, metrics.clone());
    let transactions = TransactionsHandler::new(pool.clone(), metrics);

    let token_entries: Vec<_> = (0..3)
        .map(|n| delivery(id(1_000 + n), token_message(TokenKind::Created, token(n))))
        .collect();
    let tx_entries: Vec<_> = (0..4)
        .map(|n| delivery(id(1_000 + n), transaction(n)))
        .collect();
    tokens
        .handle(batch(&token_entries, TOKENS_STREAM))
        .await
        .unwrap();
    transactions
        .handle(batch(&tx_entries, TRANSACTIONS_STREAM))
        .await
        .unwrap();
    let before = snapshot(&pool).await;

    tokens
        .handle(batch(&token_entries, TOKENS_STREAM))
        .await
        .unwrap();
    transactions
        .handle(batch(&tx_entries, TRANSACTIONS_STREAM))
        .await
        .unwrap();

    assert_eq!(snapshot(&pool).await, before);
    assert_eq!(count(&pool, "transactions").await, 4);
    assert_eq!(listener.settled().await.len(), 3, "notified once per token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_committing_out_of_order_leave_the_newest_token_data() {
    let env = Env::start();
    let pool = env.pool().await;
    let bus = Bus::connect(&env.common("test")).await.unwrap();
    let publisher = bus.publisher(bus.producer(ProducerSettings::default()));
    let listener = env.listen(TOKEN_CREATED_CHANNEL).await;
    let tokens = TokensHandler::new(
        pool.clone(),
        publisher,
        IngestMetrics::register(&bus.metrics),
    );
    let named = |name: &str| TokenData {
        name: name.into(),
        ..token(9)
    };
    let newer = [delivery(
        id(2_000),
        token_message(TokenKind::Updated, named("Newer")),
    )];
    let older = [delivery(
        id(1_000),
        token_message(TokenKind::Created, named("Older")),
    )];
    tokens.handle(batch(&newer, TOKENS_STREAM)).await.unwrap();
    tokens.handle(batch(&older, TOKENS_STREAM)).await.unwrap();
    let rows = snapshot(&pool).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].1.as_str(), rows[0].2.as_str()),
        ("Newer", "2000-0")
    );
    // Within one batch, too: the highest entry id wins.
    let same_batch = [
        delivery(id(3_000), token_message(TokenKind::Updated, named("Last"))),
        delivery(
            id(2_500),
            token_message(TokenKind::Updated, named("Earlier")),
        ),
    ];
    tokens
        .handle(batch(&same_batch, TOKENS_STREAM))
        .await
        .unwrap();
    assert_eq!(snapshot(&pool).await[0].1, "Last");
    let notes = listener.settled().await;
    assert_eq!(notes.len(), 1, "only the insert notifies");
    assert_eq!(notes[0]["data"]["name"], "Newer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarted_with_entries_pending_applies_each_of_them_once() {
    let env = Env::start();
    let mut conn = env.redis().await;
    let bus = Bus::connect(&env.common("producer")).await.unwrap();
    let producer = bus.producer(ProducerSettings::default());
    let messages: Vec<_> = (0..10)
        .map(|n| token_message(TokenKind::Created, token(n)))
        .collect();
    producer.send_batch(TOKENS_STREAM, &messages).await.unwrap();

    // A replica read all ten, committed the first five, and died before acknowledging.
    let _: () = redis::cmd("XGROUP")
        .arg(&["CREATE", TOKENS_STREAM, SERVER_GROUP, "0", "MKSTREAM"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg(&[
            "GROUP",
            SERVER_GROUP,
            "ingest-a",
            "COUNT",
            "100",
            "STREAMS",
            TOKENS_STREAM,
            ">",
        ])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending(&mut conn, TOKENS_STREAM).await, 10);
    let first_five: Vec<Delivery<TokenMessage>> = entries(&mut conn, TOKENS_STREAM)
        .await
        .into_iter()
        .take(5)
        .map(|(entry_id, fields)| {
            let fields: Fields = fields.into_iter().collect();
            delivery(
                entry_id.parse().unwrap(),
                TokenMessage::decode(&fields).unwrap(),
            )
        })
        .collect();
    let listener = env.listen(TOKEN_CREATED_CHANNEL).await;
    let pool = env.pool().await;
    let publisher = bus.publisher(producer.clone());
    TokensHandler::new(
        pool.clone(),
        publisher,
        IngestMetrics::register(&bus.metrics),
    )
    .handle(batch(&first_five, TOKENS_STREAM))
    .await
    .unwrap();
    let committed = snapshot(&pool).await;

    // The same replica comes back and re-reads its pending entries first.
    let service = env.start_ingest("ingest-a");
    eventually("the pending list drained", WAIT, || {
        let mut conn = conn.clone();
        async move { (pending(&mut conn, TOKENS_STREAM).await == 0).then_some(()) }
    })
    .await;
    service.stop().await;
    let rows = snapshot(&pool).await;
    assert_eq!(rows.len(), 10);
    assert_eq!(&rows[..5], &committed[..], "committed rows untouched");
    let notes = listener.settled().await;
    assert_eq!(notes.len(), 10, "each new token notified exactly once");
}

/// hash, tx_id, from, to, value, block hash, source timestamp (UTC, µs), last entry id.
type CopiedRow = (
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    String,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_batch_delivered_again_with_new_entries_adds_only_the_new_ones() {
    let env = Env::start();
    let pool = env.pool().await;
    let bus = Bus::connect(&env.common("test")).await.unwrap();
    let transactions =
        TransactionsHandler::new(pool.clone(), IngestMetrics::register(&bus.metrics))
            .with_write_method(WriteMethod::Copy);
    // 1,000 entries are about 300 KB of COPY text: large enough to be copied, not inserted.
    let deliveries = |range: std::ops::Range<u64>| -> Vec<_> {
        range
            .map(|n| delivery(id(10_000 + n), transaction(n)))
            .collect()
    };
    let first = deliveries(0..1_000);
    transactions
        .handle(batch(&first, TRANSACTIONS_STREAM))
        .await
        .unwrap();
    assert_eq!(count(&pool, "transactions").await, 1_000);
    let row: CopiedRow = bus_core::sqlx::query_as(
        "SELECT hash, tx_id, from_address, to_address, value::text, block_hash,
                    to_char(source_timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),
                    last_entry_id
             FROM transactions WHERE last_entry_id = '10007-0'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let m = &first[7].message;
    assert_eq!(
        row,
        (
            m.data.hash.clone(),
            m.data.id.clone(),
            m.data.from.clone(),
            m.data.to.clone(),
            m.data.value.clone(),
            m.data.block_hash.clone(),
            m.timestamp.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            "10007-0".to_owned(),
        )
    );

    // Half of it again (a redelivery) with 500 new entries: the COPY meets stored hashes and
    // writes nothing, then the insert skips the stored ones.
    let second = deliveries(500..1_500);
    transactions
        .handle(batch(&second, TRANSACTIONS_STREAM))
        .await
        .unwrap();
    assert_eq!(count(&pool, "transactions").await, 1_500);
    let metrics = bus.metrics.encode();
    assert!(
        metrics.contains("ingest_copy_conflicts_total{table=\"transactions\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ingest_rows_written_total{table=\"transactions\"} 1500"),
        "{metrics}"
    );
}
