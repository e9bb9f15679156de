//! The crawler against a private Redis: the seed's format, COUNT, commands, replay.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

use std::time::{Duration, Instant};

use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{CommonSettings, Fields, SecretUrl, StreamMessage};
use bus_testkit::{RedisServer, eventually};
use crawler::CrawlerSettings;
use ingest::messages::{CrawlerEventMessage, TokenKind, TokenMessage, TransactionMessage};
use redis::aio::MultiplexedConnection;

const WAIT: Duration = Duration::from_secs(20);

struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    ops: String,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn start(redis: &RedisServer, settings: CrawlerSettings) -> Running {
    let ops = format!("127.0.0.1:{}", bus_testkit::free_port());
    let common = CommonSettings {
        redis_url: SecretUrl::new(redis.url()),
        ops_addr: ops.clone(),
        ..CommonSettings::default()
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(crawler::run(common, settings, shutdown.clone()));
    Running {
        shutdown,
        task,
        ops,
    }
}

async fn conn(redis: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn xlen(conn: &mut MultiplexedConnection, stream: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(conn)
        .await
        .unwrap()
}

async fn entries(conn: &mut MultiplexedConnection, stream: &str) -> Vec<Fields> {
    let raw: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    raw.into_iter()
        .map(|(_, f)| f.into_iter().collect())
        .collect()
}

async fn publish(conn: &mut MultiplexedConnection, payload: &str) {
    let _: i64 = redis::cmd("PUBLISH")
        .arg("channel:service:crawler:commands")
        .arg(payload)
        .query_async(conn)
        .await
        .unwrap();
}

async fn subscribed(conn: &MultiplexedConnection) {
    eventually("the crawler to subscribe to its commands", WAIT, || {
        let mut conn = conn.clone();
        async move {
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("channel:service:crawler:commands")
                .query_async::<Vec<(String, i64)>>(&mut conn)
                .await
                .unwrap()
                .remove(0);
            (n > 0).then_some(())
        }
    })
    .await;
}

fn is_hex(s: &str, digits: usize) -> bool {
    s.len() == digits + 2 && s.starts_with("0x") && s[2..].chars().all(|c| c.is_ascii_hexdigit())
}

fn event_types(events: &[Fields]) -> Vec<String> {
    events
        .iter()
        .map(|f| f.get("type").unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crawler_writes_count_entries_in_the_seed_format_then_stays_up() {
    let redis = RedisServer::start().unwrap();
    let mut conn = conn(&redis).await;
    let settings = CrawlerSettings {
        rate: 0.0,
        count: 60,
        token_ratio: 0.3,
        ..CrawlerSettings::default()
    };
    let crawler = start(&redis, settings);
    eventually("COUNT entries written", WAIT, || {
        let mut conn = conn.clone();
        async move {
            let n = xlen(&mut conn, "stream:tokens").await
                + xlen(&mut conn, "stream:transactions").await;
            (n == 60).then_some(())
        }
    })
    .await;
    let tokens = entries(&mut conn, "stream:tokens").await;
    let transactions = entries(&mut conn, "stream:transactions").await;
    assert!(!tokens.is_empty() && !transactions.is_empty());
    for fields in &tokens {
        let names: Vec<&str> = fields.iter().map(|(k, _)| k).take(4).collect();
        assert_eq!(names, ["serviceId", "type", "data", "timestamp"]);
        let message = TokenMessage::decode(fields).unwrap();
        assert_eq!(message.service_id, "crawler");
        assert!(
            is_hex(&message.data.address, 40),
            "{}",
            message.data.address
        );
        assert!(
            message
                .data
                .total_supply
                .bytes()
                .all(|b| b.is_ascii_digit())
        );
    }
    for fields in &transactions {
        let message = TransactionMessage::decode(fields).unwrap();
        assert!(is_hex(&message.data.hash, 64));
        assert!(is_hex(&message.data.from, 40));
    }
    let events = entries(&mut conn, "stream:crawler-events").await;
    assert_eq!(event_types(&events)[0], "CRAWLER_ONLINE");
    let online = CrawlerEventMessage::decode(&events[0]).unwrap();
    assert_eq!(
        (online.data.crawler_id.as_str(), online.data.status.as_str()),
        ("crawler-1", "active")
    );

    let metrics = reqwest::get(format!("http://{}/metrics", crawler.ops))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("crawler_state{state=\"done\"} 1"),
        "{metrics}"
    );
    crawler.stop().await;
    assert_eq!(
        xlen(&mut conn, "stream:tokens").await + xlen(&mut conn, "stream:transactions").await,
        60,
        "nothing beyond COUNT"
    );
    let events = entries(&mut conn, "stream:crawler-events").await;
    assert_eq!(event_types(&events).last().unwrap(), "CRAWLER_OFFLINE");
}

/// XLEN of the token and transaction streams stops changing: two readings `window` apart.
async fn settled_length(conn: &MultiplexedConnection, window: Duration) -> u64 {
    let mut conn = conn.clone();
    let mut last = None;
    loop {
        let n =
            xlen(&mut conn, "stream:tokens").await + xlen(&mut conn, "stream:transactions").await;
        if last == Some(n) {
            return n;
        }
        last = Some(n);
        tokio::time::sleep(window).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_writes_within_a_second_and_start_crawling_resumes_them() {
    let redis = RedisServer::start().unwrap();
    let mut conn = conn(&redis).await;
    let crawler = start(
        &redis,
        CrawlerSettings {
            rate: 200.0,
            ..CrawlerSettings::default()
        },
    );
    subscribed(&conn).await;
    eventually("writes to begin", WAIT, || {
        let mut conn = conn.clone();
        async move { (xlen(&mut conn, "stream:transactions").await > 10).then_some(()) }
    })
    .await;

    let sent = Instant::now();
    publish(
        &mut conn,
        r#"{"command":"PAUSE","data":{},"timestamp":"2024-01-01T10:00:00Z"}"#,
    )
    .await;
    let paused_at = tokio::time::timeout(
        Duration::from_secs(1),
        settled_length(&conn, Duration::from_millis(250)),
    )
    .await
    .expect("writes stopped within a second of PAUSE");
    assert!(sent.elapsed() < Duration::from_millis(1_500));
    // And stay stopped (at 200 entries/s, half a second would add ~100).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still =
        xlen(&mut conn, "stream:tokens").await + xlen(&mut conn, "stream:transactions").await;
    assert_eq!(still, paused_at);

    publish(&mut conn, r#"{"command":"START_CRAWLING","data":{}}"#).await;
    eventually("writes to resume", WAIT, || {
        let mut conn = conn.clone();
        async move {
            let n = xlen(&mut conn, "stream:tokens").await
                + xlen(&mut conn, "stream:transactions").await;
            (n > paused_at + 10).then_some(())
        }
    })
    .await;
    crawler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_token_emits_a_token_updated_and_bad_commands_are_ignored_and_counted() {
    let redis = RedisServer::start().unwrap();
    let mut conn = conn(&redis).await;
    let crawler = start(
        &redis,
        CrawlerSettings {
            autostart: false,
            ..CrawlerSettings::default()
        },
    );
    subscribed(&conn).await;
    publish(&mut conn, "not json").await;
    publish(&mut conn, r#"{"command":"DANCE","data":{}}"#).await;
    publish(
        &mut conn,
        r#"{"command":"CRAWL_TOKEN","data":{"tokenAddress":"nope"}}"#,
    )
    .await;
    publish(
        &mut conn,
        r#"{"command":"CRAWL_TOKEN","data":{"tokenAddress":"0xABCDEF0000000000000000000000000000000001"},"timestamp":"2024-01-01T10:00:00Z"}"#,
    )
    .await;
    let token = eventually("the crawled token", WAIT, || {
        let mut conn = conn.clone();
        async move { entries(&mut conn, "stream:tokens").await.pop() }
    })
    .await;
    let token = TokenMessage::decode(&token).unwrap();
    assert_eq!(token.kind, TokenKind::Updated);
    assert_eq!(
        token.data.address,
        "0xabcdef0000000000000000000000000000000001"
    );
    assert_eq!(
        xlen(&mut conn, "stream:transactions").await,
        0,
        "not started: nothing else"
    );

    let metrics = eventually("the bad commands counted", WAIT, || {
        let url = format!("http://{}/metrics", crawler.ops);
        async move {
            let text = reqwest::get(url).await.ok()?.text().await.ok()?;
            text.contains("crawler_commands_total{command=\"CRAWL_TOKEN\",outcome=\"invalid\"} 1")
                .then_some(text)
        }
    })
    .await;
    assert!(
        metrics.contains("crawler_commands_total{command=\"unknown\",outcome=\"invalid\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("crawler_commands_total{command=\"CRAWL_TOKEN\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    crawler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_file_is_written_as_is_and_bad_lines_are_reported() {
    let redis = RedisServer::start().unwrap();
    let mut conn = conn(&redis).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.jsonl");
    std::fs::write(
        &path,
        [
            "# tokens, transactions and events, in both shapes",
            r#"{"serviceId":"node-crawler","type":"TOKEN_CREATED","data":{"id":"token-1","address":"0x0000000000000000000000000000000000000001","name":"Bitcoin","symbol":"BTC","decimals":8,"totalSupply":"21000000","chain":"ethereum"},"timestamp":"2024-01-01T10:00:00Z"}"#,
            r#"{"stream":"stream:transactions","type":"TRANSACTION_CREATED","data":{"hash":"0x01","from":"0x02","to":"0x03","value":"5","blockHash":"0x04"}}"#,
            "",
            "this line is not JSON",
            r#"{"type":"HEARTBEAT","data":{"crawlerId":"replayed","status":"active"}}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let crawler = start(
        &redis,
        CrawlerSettings {
            rate: 0.0,
            replay_file: Some(path.to_string_lossy().into_owned()),
            ..CrawlerSettings::default()
        },
    );
    eventually("the replayed entries", WAIT, || {
        let mut conn = conn.clone();
        async move {
            let done = xlen(&mut conn, "stream:tokens").await == 1
                && xlen(&mut conn, "stream:transactions").await == 1
                && entries(&mut conn, "stream:crawler-events")
                    .await
                    .iter()
                    .any(|f| f.get("data").is_some_and(|d| d.contains("replayed")));
            done.then_some(())
        }
    })
    .await;
    let token = &entries(&mut conn, "stream:tokens").await[0];
    assert_eq!(token.get("serviceId"), Some("node-crawler"));
    assert_eq!(token.get("timestamp"), Some("2024-01-01T10:00:00Z"));
    let events = entries(&mut conn, "stream:crawler-events").await;
    let error = events
        .iter()
        .find(|f| f.get("type") == Some("CRAWLER_ERROR"))
        .expect("a CRAWLER_ERROR for the bad line");
    assert!(
        error.get("data").unwrap().contains("replay line 5"),
        "{error:?}"
    );
    crawler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_report_the_state_periodically() {
    let redis = RedisServer::start().unwrap();
    let conn = conn(&redis).await;
    let crawler = start(
        &redis,
        CrawlerSettings {
            autostart: false,
            heartbeat_interval_ms: 100,
            ..CrawlerSettings::default()
        },
    );
    let heartbeats = eventually("two heartbeats", WAIT, || {
        let mut conn = conn.clone();
        async move {
            let beats: Vec<_> = entries(&mut conn, "stream:crawler-events")
                .await
                .into_iter()
                .filter(|f| f.get("type") == Some("HEARTBEAT"))
                .collect();
            (beats.len() >= 2).then_some(beats)
        }
    })
    .await;
    let beat = CrawlerEventMessage::decode(&heartbeats[0]).unwrap();
    assert_eq!(beat.data.status, "paused");
    crawler.stop().await;
}
