//! The validator in-process against real Redis and PostgreSQL: verdicts, dead letters and
//! redelivery.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bus_core::redis::{self, aio::ConnectionManager};
use bus_core::sqlx::{self, PgPool};
use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{CommonSettings, SecretUrl, group_status};
use bus_testkit::{PostgresServer, RedisServer, TestDatabase};
use common::{poll_until, produce, redis_cmd, scalar};
use validator::ValidatorSettings;

const WAIT: Duration = Duration::from_secs(30);

/// A validator running inside the test, stopped when dropped.
struct InProcess {
    shutdown: CancellationToken,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn start(redis: &RedisServer, db: &TestDatabase) -> InProcess {
    let common = CommonSettings {
        redis_url: SecretUrl::new(redis.url()),
        database_url: Some(SecretUrl::new(db.url())),
        ops_addr: "127.0.0.1:0".into(),
        consumer_name: Some("worker_test".into()),
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = validator::run(common, ValidatorSettings::default(), token).await {
            panic!("validator failed: {e:#}");
        }
    });
    InProcess { shutdown }
}

async fn pool(db: &TestDatabase) -> PgPool {
    PgPool::connect(&db.url()).await.unwrap()
}

async fn xadd(redis_url: &str, pairs: &[(&str, &str)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg("raw_items").arg("*");
    for (k, v) in pairs {
        cmd.arg(*k).arg(*v);
    }
    redis_cmd(redis_url, &cmd).await
}

#[tokio::test]
async fn every_item_is_recorded_with_its_verdict_and_all_of_its_codes() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let _validator = start(&redis, &db);
    let good = xadd(
        &redis.url(),
        &[
            ("data", r#"{"phone":"0123456789","bank_account":"12345678901","email":"test@example.com","name":"Đỗ"}"#),
            ("source", "web_crawler"),
            ("timestamp", "2024-06-08T00:13:03+07:00"),
            ("producer", "crawler_worker"),
            ("batch_id", "batch_001"),
        ],
    )
    .await;
    let bad = xadd(
        &redis.url(),
        &[
            (
                "data",
                r#"{"phone":"012","bank_account":"12345","email":"nope","name":"李"}"#,
            ),
            ("source", "web_crawler"),
        ],
    )
    .await;
    let url = db.url();
    assert!(
        poll_until(WAIT, || async {
            scalar(&url, "SELECT count(*) FROM raw_items").await == Some(2)
        })
        .await
    );

    let pool = pool(&db).await;
    let (status, codes, batch): (String, Vec<i32>, Option<String>) =
        sqlx::query_as("SELECT status, error_codes, batch_id FROM raw_items WHERE entry_id = $1")
            .bind(&good)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), codes, batch.as_deref()),
        ("done", vec![], Some("batch_001"))
    );

    let (status, codes, messages): (String, Vec<i32>, Vec<String>) = sqlx::query_as(
        "SELECT status, error_codes,
                ARRAY(SELECT e ->> 'message' FROM jsonb_array_elements(errors) e)
         FROM raw_items WHERE entry_id = $1",
    )
    .bind(&bad)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "error");
    assert_eq!(codes, [101, 201, 300, 400]);
    assert_eq!(messages[0], "Phone number too short: 3 chars, minimum 10");
    assert_eq!(messages[1], "Bank account too short: 5 chars, minimum 8");

    let (processed, done, errors): (i64, i64, i64) = sqlx::query_as(
        "SELECT processed, done, errors FROM stream_consumer_stats
         WHERE stream = 'raw_items' AND consumer_group = 'validator_workers' AND consumer = 'worker_test'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((processed, done, errors), (2, 1, 1));
    let per_minute: i64 =
        sqlx::query_scalar("SELECT sum(count)::bigint FROM stream_processing_metrics")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(per_minute, 2);
    let top: (i32, i64) =
        sqlx::query_as("SELECT code, occurrences FROM raw_items_top_errors WHERE code = 101")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(top, (101, 1));
}

#[tokio::test]
async fn data_that_is_not_json_is_dead_lettered_with_its_reason_and_marked_as_an_error() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let _validator = start(&redis, &db);
    let id = xadd(
        &redis.url(),
        &[("data", "{not json"), ("source", "web_crawler")],
    )
    .await;
    let not_object = xadd(&redis.url(), &[("data", "[1, 2]")]).await;

    let url = redis.url();
    assert!(
        poll_until(WAIT, || async {
            redis_cmd::<u64>(&url, redis::cmd("XLEN").arg("raw_items:dlq")).await == 2
        })
        .await
    );
    let letters: Vec<(String, Vec<(String, String)>)> = redis_cmd(
        &url,
        redis::cmd("XRANGE").arg("raw_items:dlq").arg("-").arg("+"),
    )
    .await;
    let field = |fields: &[(String, String)], name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let first = &letters[0].1;
    assert_eq!(field(first, "dlq_original_id"), id);
    assert_eq!(field(first, "dlq_kind"), "decode");
    assert!(
        field(first, "dlq_reason").contains("not valid JSON"),
        "{first:?}"
    );
    assert_eq!(field(first, "data"), "{not json");
    assert!(field(&letters[1].1, "dlq_reason").contains("must be a JSON object"));

    let db_url = db.url();
    let marked = format!(
        "SELECT count(*) FROM raw_items WHERE status = 'error' AND error_codes = '{{901}}'
         AND entry_id IN ('{id}', '{not_object}')"
    );
    assert!(poll_until(WAIT, || async { scalar(&db_url, &marked).await == Some(2) }).await);
}

#[tokio::test]
async fn replaying_entries_already_handled_leaves_items_and_stats_unchanged() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let _validator = start(&redis, &db);
    produce(&redis.url(), "raw_items", 0..30, 3).await;
    let url = db.url();
    assert!(
        poll_until(WAIT, || async {
            scalar(&url, "SELECT count(*) FROM raw_items").await == Some(30)
        })
        .await
    );
    let stats = "SELECT processed * 1000000 + done * 1000 + errors FROM stream_consumer_stats";
    let before = scalar(&url, stats).await;
    assert_eq!(before, Some(30_020_010));

    // Rewind the group: every entry is delivered a second time.
    let () = redis_cmd(
        &redis.url(),
        redis::cmd("XGROUP")
            .arg("SETID")
            .arg("raw_items")
            .arg("validator_workers")
            .arg("0")
            .arg("ENTRIESREAD")
            .arg(0),
    )
    .await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = ConnectionManager::new(client).await.unwrap();
    assert!(
        poll_until(WAIT, || {
            let mut conn = conn.clone();
            async move {
                let s = group_status(&mut conn, "raw_items", "validator_workers", "raw_items:dlq")
                    .await
                    .unwrap();
                s.lag == Some(0) && s.pending == 0 && s.last_delivered.is_some()
            }
        })
        .await
    );
    let _ = &mut conn;
    assert_eq!(scalar(&url, stats).await, before);
    assert_eq!(
        scalar(&url, "SELECT count(*) FROM raw_items").await,
        Some(30)
    );
    assert_eq!(
        scalar(
            &url,
            "SELECT sum(count)::bigint FROM stream_processing_metrics"
        )
        .await,
        Some(30)
    );
}
