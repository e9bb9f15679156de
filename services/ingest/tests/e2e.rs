//! End to end, with the real binaries as processes against a private Redis and PostgreSQL:
//! crawler → two ingest replicas (one SIGKILLed mid-run and restarted) → PostgreSQL and
//! `channel:token:created`; PAUSE / START_CRAWLING through the command-broadcaster HTTP API
//! and through a raw `redis-cli PUBLISH`.
//!
//! The test builds the crawler and command-broadcaster binaries first with
//! `cargo build -p crawler -p command-broadcaster` (same profile and target dir as this test).

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bus_core::{Fields, StreamMessage};
use bus_testkit::{ServiceProcess, workspace_binaries};
use common::{Env, WAIT, count, entries, eventually, pending};
use ingest::messages::{
    CRAWLER_EVENTS_STREAM, TOKEN_CREATED_CHANNEL, TOKENS_STREAM, TRANSACTIONS_STREAM, TokenMessage,
    TransactionMessage,
};
use redis::aio::MultiplexedConnection;

/// Total tokens + transactions the crawler produces.
const COUNT: u64 = 2_000;

/// Starts a service binary; its log is printed if the test fails.
fn spawn(name: &str, binary: &Path, env: &[(&str, String)], logs: &Path) -> ServiceProcess {
    ServiceProcess::spawn(name, binary, env, logs).unwrap()
}

/// SIGTERM, then a clean exit.
async fn stop(process: ServiceProcess) {
    let name = process.name().to_owned();
    let status = process.terminate(WAIT).await.unwrap();
    assert!(status.success(), "{name} exited with {status}");
}

async fn produced(conn: &MultiplexedConnection) -> u64 {
    let mut conn = conn.clone();
    let (a, b): (u64, u64) = redis::pipe()
        .cmd("XLEN")
        .arg(TOKENS_STREAM)
        .cmd("XLEN")
        .arg(TRANSACTIONS_STREAM)
        .query_async(&mut conn)
        .await
        .unwrap();
    a + b
}

/// Waits until the stream lengths stop changing (two readings 250 ms apart), within `limit`.
async fn writes_stop_within(conn: &MultiplexedConnection, limit: Duration) -> u64 {
    tokio::time::timeout(limit, async {
        let mut last = None;
        loop {
            let n = produced(conn).await;
            if last == Some(n) {
                return n;
            }
            last = Some(n);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await
    .expect("the crawler stopped writing in time")
}

async fn writes_grow_past(conn: &MultiplexedConnection, n: u64) {
    eventually("the crawler to write again", WAIT, || async move {
        (produced(conn).await > n).then_some(())
    })
    .await;
}

async fn post_command(api: &str, command: &str) -> serde_json::Value {
    let response = reqwest::Client::new()
        .post(format!("http://{api}/api/commands/crawler"))
        .json(&serde_json::json!({ "command": command, "data": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

fn redis_cli_publish(port: u16, payload: &str) {
    let out = Command::new("redis-cli")
        .args([
            "-p",
            &port.to_string(),
            "PUBLISH",
            "channel:service:crawler:commands",
            payload,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "the crawler received it"
    );
}

fn field_map(entries: Vec<(String, Vec<(String, String)>)>) -> Vec<(String, Fields)> {
    entries
        .into_iter()
        .map(|(id, f)| (id, f.into_iter().collect()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawler_to_postgres_survives_a_killed_replica_and_obeys_pause_and_start() {
    let ingest_bin = PathBuf::from(env!("CARGO_BIN_EXE_ingest"));
    let built = workspace_binaries(
        env!("CARGO"),
        &ingest_bin,
        &["crawler", "command-broadcaster"],
    )
    .unwrap();
    let (crawler_bin, broadcaster_bin) = (&built[0], &built[1]);
    let env = Env::start();
    let logs = tempfile::tempdir().unwrap();
    let conn = env.redis().await;
    let listener = env.listen(TOKEN_CREATED_CHANNEL).await;
    let base = vec![
        ("REDIS_URL", env.redis.url()),
        ("DATABASE_URL", env.db.url()),
    ];
    let with = |extra: &[(&'static str, String)]| {
        let mut all = base.clone();
        all.extend(extra.iter().cloned());
        all.push((
            "OPS_ADDR",
            format!("127.0.0.1:{}", bus_testkit::free_port()),
        ));
        all
    };
    let ingest_env = |name: &str| {
        with(&[
            ("CONSUMER_NAME", name.to_owned()),
            ("WORKER__CLAIM_MIN_IDLE_MS", "1000".into()),
            ("WORKER__CLAIM_INTERVAL_MS", "300".into()),
            ("WORKER__BLOCK_MS", "200".into()),
        ])
    };
    let mut ingest_a = spawn(
        "ingest-a",
        &ingest_bin,
        &ingest_env("ingest-a"),
        logs.path(),
    );
    let ingest_b = spawn(
        "ingest-b",
        &ingest_bin,
        &ingest_env("ingest-b"),
        logs.path(),
    );
    let api = format!("127.0.0.1:{}", bus_testkit::free_port());
    let broadcaster = spawn(
        "command-broadcaster",
        broadcaster_bin,
        &with(&[("HTTP_ADDR", api.clone())]),
        logs.path(),
    );
    let crawler = spawn(
        "crawler",
        crawler_bin,
        &with(&[
            ("RATE", "400".into()),
            ("COUNT", COUNT.to_string()),
            ("TOKEN_RATIO", "0.3".into()),
            ("HEARTBEAT_INTERVAL_MS", "500".into()),
        ]),
        logs.path(),
    );
    let pool = env.pool().await;

    // Mid-run: one replica dies with entries in flight.
    eventually("the pipeline to be under way", WAIT, || async {
        (produced(&conn).await > 300 && count(&pool, "transactions").await > 50).then_some(())
    })
    .await;
    ingest_a.sigkill();

    // PAUSE through the HTTP API: writes stop within a second.
    eventually("the API to listen", WAIT, || {
        let url = format!("http://{api}/healthz");
        async move { reqwest::get(url).await.ok().map(|_| ()) }
    })
    .await;
    let answer = post_command(&api, "PAUSE").await;
    assert_eq!(answer["receivers"], 1, "{answer}");
    let paused_at = writes_stop_within(&conn, Duration::from_secs(1)).await;
    assert!(paused_at < COUNT, "paused before the end ({paused_at})");

    // The killed replica comes back (its pending entries are re-read or were reclaimed).
    let ingest_a = spawn(
        "ingest-a-restarted",
        &ingest_bin,
        &ingest_env("ingest-a"),
        logs.path(),
    );
    post_command(&api, "START_CRAWLING").await;
    writes_grow_past(&conn, paused_at).await;

    // The same through a raw redis-cli PUBLISH, as a Node server from the seed would send it.
    redis_cli_publish(
        env.redis.port(),
        r#"{"command":"PAUSE","data":{},"timestamp":"2024-01-01T10:00:00Z"}"#,
    );
    let paused_again = writes_stop_within(&conn, Duration::from_secs(1)).await;
    redis_cli_publish(
        env.redis.port(),
        r#"{"command":"START_CRAWLING","data":{}}"#,
    );
    if paused_again < COUNT {
        writes_grow_past(&conn, paused_again).await;
    }

    // Everything produced is ingested, exactly.
    eventually("COUNT entries produced", WAIT, || async {
        (produced(&conn).await == COUNT).then_some(())
    })
    .await;
    let mut c = conn.clone();
    let token_entries = field_map(entries(&mut c, TOKENS_STREAM).await);
    let tx_entries = field_map(entries(&mut c, TRANSACTIONS_STREAM).await);
    let mut newest: BTreeMap<String, TokenMessage> = BTreeMap::new();
    for (_, fields) in &token_entries {
        let m = TokenMessage::decode(fields).unwrap();
        newest.insert(m.data.address.clone(), m); // XRANGE is in id order: last wins
    }
    let hashes: BTreeSet<(String, String)> = tx_entries
        .iter()
        .map(|(_, f)| {
            let m = TransactionMessage::decode(f).unwrap();
            (m.data.hash, m.data.value)
        })
        .collect();
    eventually("every entry ingested and nothing pending", WAIT * 2, || {
        let (pool, mut c) = (pool.clone(), conn.clone());
        let (tokens, txs) = (newest.len() as i64, hashes.len() as i64);
        async move {
            let done = count(&pool, "tokens").await == tokens
                && count(&pool, "transactions").await == txs
                && pending(&mut c, TOKENS_STREAM).await == 0
                && pending(&mut c, TRANSACTIONS_STREAM).await == 0
                && pending(&mut c, CRAWLER_EVENTS_STREAM).await == 0;
            done.then_some(())
        }
    })
    .await;
    let rows: Vec<(String, String, String, i16, String)> = bus_core::sqlx::query_as(
        "SELECT address, name, symbol, decimals, total_supply::text FROM tokens ORDER BY address",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let expected: Vec<_> = newest
        .values()
        .map(|m| {
            let d = &m.data;
            (
                d.address.clone(),
                d.name.clone(),
                d.symbol.clone(),
                i16::from(d.decimals),
                d.total_supply.clone(),
            )
        })
        .collect();
    assert_eq!(rows, expected, "each token holds its newest entry");
    let tx_rows: BTreeSet<(String, String)> =
        bus_core::sqlx::query_as("SELECT hash, value::text FROM transactions")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(tx_rows, hashes);
    let mut c = conn.clone();
    for stream in [TOKENS_STREAM, TRANSACTIONS_STREAM, CRAWLER_EVENTS_STREAM] {
        let dlq = format!("{stream}:dlq");
        assert_eq!(entries(&mut c, &dlq).await.len(), 0, "{dlq} is empty");
    }

    // One notification per new token.
    let notes = listener.settled().await;
    let notified: Vec<String> = notes
        .iter()
        .map(|n| n["data"]["address"].as_str().unwrap().to_owned())
        .collect();
    let unique: BTreeSet<&String> = notified.iter().collect();
    assert_eq!(unique.len(), notified.len(), "no token notified twice");
    assert_eq!(
        unique.into_iter().cloned().collect::<BTreeSet<_>>(),
        newest.keys().cloned().collect::<BTreeSet<_>>(),
        "every new token notified"
    );

    // A clean crawler shutdown is reported as CRAWLER_OFFLINE and lands in `crawlers`.
    stop(crawler).await;
    eventually("the crawler to be recorded offline", WAIT, || {
        let pool = pool.clone();
        async move {
            let status: Option<String> = bus_core::sqlx::query_scalar(
                "SELECT status FROM crawlers WHERE crawler_id = 'crawler-1'",
            )
            .fetch_optional(&pool)
            .await
            .unwrap();
            (status.as_deref() == Some("offline")).then_some(())
        }
    })
    .await;
    for process in [ingest_a, ingest_b, broadcaster] {
        stop(process).await;
    }
}
