//! The ingest service against a private Redis and PostgreSQL: what is produced becomes
//! exactly those rows, once, whatever is redelivered; bad entries are dead-lettered.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bus_core::{Bus, ProducerSettings};
use common::data::{raw_token_fields, token, token_message, transaction};
use common::{Env, WAIT, count, entries, eventually, pending};
use ingest::messages::{
    TOKEN_CREATED_CHANNEL, TOKENS_STREAM, TRANSACTIONS_STREAM, TokenData, TokenKind,
};

type TxRow = (
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    Option<String>,
);
type TokenRow = (String, Option<String>, String, String, i16, String, String);

async fn token_rows(pool: &bus_core::sqlx::PgPool) -> Vec<TokenRow> {
    bus_core::sqlx::query_as(
        "SELECT address, token_id, name, symbol, decimals, total_supply::text, chain
         FROM tokens ORDER BY address",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn expected_row(d: &TokenData) -> TokenRow {
    (
        d.address.clone(),
        d.id.clone(),
        d.name.clone(),
        d.symbol.clone(),
        i16::from(d.decimals),
        d.total_supply.clone(),
        d.chain.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_tokens_and_transactions_become_exactly_those_rows_and_one_notification_per_new_token()
 {
    let env = Env::start();
    let listener = env.listen(TOKEN_CREATED_CHANNEL).await;
    let bus = Bus::connect(&env.common("producer")).await.unwrap();
    let producer = bus.producer(ProducerSettings::default());
    let (n_tokens, n_transactions) = (25, 120);
    let created: Vec<_> = (0..n_tokens)
        .map(|n| token_message(TokenKind::Created, token(n)))
        .collect();
    producer.send_batch(TOKENS_STREAM, &created).await.unwrap();
    let renamed = |n: u64| TokenData {
        name: format!("Renamed {n}"),
        ..token(n)
    };
    let updates: Vec<_> = (0..5)
        .map(|n| token_message(TokenKind::Updated, renamed(n)))
        .collect();
    producer.send_batch(TOKENS_STREAM, &updates).await.unwrap();
    let txs: Vec<_> = (0..n_transactions).map(transaction).collect();
    producer
        .send_batch(TRANSACTIONS_STREAM, &txs)
        .await
        .unwrap();

    let service = env.start_ingest("ingest-a");
    let pool = env.pool().await;
    let mut conn = env.redis().await;
    eventually("every row written and nothing pending", WAIT, || {
        let (pool, mut conn) = (pool.clone(), conn.clone());
        async move {
            let done = count(&pool, "tokens").await == n_tokens as i64
                && count(&pool, "transactions").await == n_transactions as i64
                && pending(&mut conn, TOKENS_STREAM).await == 0
                && pending(&mut conn, TRANSACTIONS_STREAM).await == 0
                // The renames are the last token entries: once they are in, every entry is.
                && count(&pool, "tokens WHERE name LIKE 'Renamed %'").await == 5;
            done.then_some(())
        }
    })
    .await;

    let expected: Vec<TokenRow> = (0..n_tokens)
        .map(|n| expected_row(&if n < 5 { renamed(n) } else { token(n) }))
        .collect();
    assert_eq!(token_rows(&pool).await, expected);

    let tx_rows: Vec<TxRow> = bus_core::sqlx::query_as(
        "SELECT hash, tx_id, from_address, to_address, value::text, block_hash
             FROM transactions ORDER BY hash",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let expected_tx: Vec<_> = txs
        .iter()
        .map(|m| {
            let d = &m.data;
            let row = (d.hash.clone(), d.id.clone(), d.from.clone(), d.to.clone());
            (
                row.0,
                row.1,
                row.2,
                row.3,
                d.value.clone(),
                d.block_hash.clone(),
            )
        })
        .collect();
    assert_eq!(tx_rows, expected_tx);

    service.stop().await;
    let notes = listener.settled().await;
    assert_eq!(
        notes.len(),
        n_tokens as usize,
        "one notification per new token"
    );
    let addresses: BTreeSet<String> = notes
        .iter()
        .map(|n| n["data"]["address"].as_str().unwrap().to_owned())
        .collect();
    let expected_addresses: BTreeSet<String> = (0..n_tokens).map(|n| token(n).address).collect();
    assert_eq!(addresses, expected_addresses);
    let first = notes
        .iter()
        .find(|n| n["data"]["address"] == token(7).address.as_str())
        .unwrap();
    assert_eq!(first["data"]["name"], "Token 7");
    assert_eq!(first["data"]["symbol"], "T7");
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        entries(&mut conn, "stream:tokens:dlq").await.len(),
        0,
        "nothing dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_entries_are_dead_lettered_with_their_reason_while_the_rest_is_ingested() {
    let env = Env::start();
    let conn = env.redis().await;
    let good = |n: u64| token_message(TokenKind::Created, token(n));
    let btc = r#"{"id":"token-1","address":"0x00000000000000000000000000000000000000aa","name":"Bitcoin","symbol":"BTC","decimals":18,"totalSupply":"21000000","chain":"ethereum"}"#;
    let bad = [
        ("TOKEN_CREATED", "{not json".to_owned(), "not valid JSON"),
        (
            "TOKEN_CREATED",
            btc.replace(r#""symbol":"BTC","#, ""),
            "data.symbol",
        ),
        (
            "TOKEN_CREATED",
            btc.replace(r#""decimals":18"#, r#""decimals":300"#),
            "data.decimals",
        ),
        (
            "TOKEN_DELETED",
            btc.to_owned(),
            "unknown type \"TOKEN_DELETED\"",
        ),
    ];
    let bus = Bus::connect(&env.common("producer")).await.unwrap();
    let producer = bus.producer(ProducerSettings::default());
    producer.send(TOKENS_STREAM, &good(1)).await.unwrap();
    let mut bad_ids = BTreeMap::new();
    for (kind, data, reason) in &bad {
        let id = producer
            .send_fields(TOKENS_STREAM, vec![raw_token_fields(kind, data)])
            .await
            .unwrap()[0];
        bad_ids.insert(id.to_string(), *reason);
    }
    producer.send(TOKENS_STREAM, &good(2)).await.unwrap();
    producer.send(TOKENS_STREAM, &good(3)).await.unwrap();

    let service = env.start_ingest("ingest-a");
    let pool = env.pool().await;
    let n_bad = bad.len();
    let letters = eventually("bad entries dead-lettered, good ones stored", WAIT, || {
        let (pool, mut conn) = (pool.clone(), conn.clone());
        async move {
            let letters = entries(&mut conn, "stream:tokens:dlq").await;
            let done = letters.len() == n_bad
                && count(&pool, "tokens").await == 3
                && pending(&mut conn, TOKENS_STREAM).await == 0;
            done.then_some(letters)
        }
    })
    .await;
    service.stop().await;
    for (_, fields) in letters {
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).unwrap().1.clone();
        let expected = bad_ids[&get("dlq_original_id")];
        let reason = get("dlq_reason");
        assert!(
            reason.contains(expected),
            "{reason:?} should name {expected}"
        );
        assert_eq!(get("dlq_kind"), "decode");
        assert_eq!(get("serviceId"), "crawler", "original fields are kept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_written_with_redis_cli_like_the_seed_node_producer_are_ingested() {
    let env = Env::start();
    let port = env.redis.port().to_string();
    let xadd = |stream: &str, kind: &str, data: &str| {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &port,
                "XADD",
                stream,
                "*",
                "serviceId",
                "crawler",
                "type",
                kind,
            ])
            .args(["data", data, "timestamp", "2024-01-01T10:00:00Z"])
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "{out:?}");
    };
    xadd(
        "stream:tokens",
        "TOKEN_CREATED",
        r#"{"id":"token-123","address":"0xAbC0000000000000000000000000000000000123","name":"Bitcoin","symbol":"BTC","decimals":18,"totalSupply":"21000000","chain":"ethereum"}"#,
    );
    xadd(
        "stream:transactions",
        "TRANSACTION_CREATED",
        r#"{"id":"tx-123","hash":"0xdef0000000000000000000000000000000000000000000000000000000000001","from":"0x1230000000000000000000000000000000000000","to":"0x4560000000000000000000000000000000000000","value":"1000000","blockHash":"0x7890000000000000000000000000000000000000000000000000000000000000"}"#,
    );
    xadd(
        "stream:crawler-events",
        "CRAWLER_ONLINE",
        r#"{"crawlerId":"crawler-1","status":"active"}"#,
    );
    let listener = env.listen(TOKEN_CREATED_CHANNEL).await;
    let service = env.start_ingest("server-1");
    let pool = env.pool().await;
    eventually("the three entries stored", WAIT, || {
        let pool = pool.clone();
        async move {
            let done = count(&pool, "tokens").await == 1
                && count(&pool, "transactions").await == 1
                && count(&pool, "crawlers").await == 1;
            done.then_some(())
        }
    })
    .await;
    service.stop().await;
    let token: (String, String, i16, String, String) = bus_core::sqlx::query_as(
        "SELECT address, symbol, decimals, total_supply::text, to_char(source_timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') FROM tokens",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        token,
        (
            "0xabc0000000000000000000000000000000000123".into(),
            "BTC".into(),
            18,
            "21000000".into(),
            "2024-01-01T10:00:00".into()
        )
    );
    let tx: (String, String) =
        bus_core::sqlx::query_as("SELECT value::text, tx_id FROM transactions")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(tx, ("1000000".into(), "tx-123".into()));
    let crawler: (String, String) =
        bus_core::sqlx::query_as("SELECT crawler_id, status FROM crawlers")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(crawler, ("crawler-1".into(), "active".into()));
    let notes = listener.settled().await;
    assert_eq!(notes.len(), 1);
    assert_eq!(
        notes[0]["data"],
        serde_json::json!({"address": "0xabc0000000000000000000000000000000000123", "name": "Bitcoin", "symbol": "BTC"})
    );
}
