//! The real `validator` binary as replicas: sharing a stream, dying mid-run, and outliving a
//! PostgreSQL crash.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bus_core::redis;
use bus_testkit::{PostgresServer, RedisServer};
use common::{Validator, poll_until, produce, redis_cmd, scalar};

const WAIT: Duration = Duration::from_secs(60);
const ITEMS: &str = "SELECT count(*) FROM raw_items";
const DISTINCT: &str = "SELECT count(DISTINCT entry_id) FROM raw_items";
const STATS: &str = "SELECT sum(processed)::bigint FROM stream_consumer_stats";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_validators_share_the_stream_and_handle_every_item_once() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let (r, d) = (redis.url(), db.url());
    let _replicas: Vec<Validator> = ["worker_a", "worker_b", "worker_c"]
        .iter()
        .map(|name| Validator::start(&r, &d, name, &[("BATCH_SIZE", "5")]))
        .collect();
    produce(&r, "raw_items", 0..300, 7).await;

    assert!(poll_until(WAIT, || async { scalar(&d, ITEMS).await == Some(300) }).await);
    assert_eq!(scalar(&d, DISTINCT).await, Some(300));
    assert!(poll_until(WAIT, || async { scalar(&d, STATS).await == Some(300) }).await);
    let errors = "SELECT count(*) FROM raw_items WHERE status = 'error'";
    assert_eq!(scalar(&d, errors).await, Some(43)); // 0, 7, …, 294
    let dlq: u64 = redis_cmd(&r, redis::cmd("XLEN").arg("raw_items:dlq")).await;
    assert_eq!(dlq, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_killed_mid_run_loses_nothing() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let (r, d) = (redis.url(), db.url());
    produce(&r, "raw_items", 0..200, 0).await;
    // A consumer that crashed before we started: it holds 20 entries it will never ack.
    let () = redis_cmd(
        &r,
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg("raw_items")
            .arg("validator_workers")
            .arg("0"),
    )
    .await;
    let _: redis::Value = redis_cmd(
        &r,
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("validator_workers")
            .arg("worker_crashed")
            .arg("COUNT")
            .arg(20)
            .arg("STREAMS")
            .arg("raw_items")
            .arg(">"),
    )
    .await;
    let small = [("BATCH_SIZE", "5")];
    let mut victim = Validator::start(&r, &d, "worker_victim", &small);
    let _a = Validator::start(&r, &d, "worker_a", &small);
    let _b = Validator::start(&r, &d, "worker_b", &small);

    let victim_worked = "SELECT count(*) FROM raw_items WHERE consumer = 'worker_victim'";
    assert!(
        poll_until(WAIT, || async {
            scalar(&d, victim_worked).await.unwrap_or(0) > 0
        })
        .await
    );
    victim.kill();
    produce(&r, "raw_items", 200..400, 0).await;
    let crashed = "SELECT count(*) FROM raw_items WHERE retry_count > 0";
    assert!(
        poll_until(WAIT, || async {
            scalar(&d, crashed).await.unwrap_or(0) >= 20
        })
        .await
    );

    assert!(poll_until(WAIT, || async { scalar(&d, ITEMS).await == Some(400) }).await);
    assert_eq!(scalar(&d, DISTINCT).await, Some(400));
    assert!(poll_until(WAIT, || async { scalar(&d, STATS).await == Some(400) }).await);
    let dlq: u64 = redis_cmd(&r, redis::cmd("XLEN").arg("raw_items:dlq")).await;
    assert_eq!(dlq, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_resumes_after_postgres_is_killed_and_restarted() {
    let redis = RedisServer::start().unwrap();
    let mut postgres = PostgresServer::start().unwrap();
    let db = postgres.create_database().unwrap();
    let (r, d) = (redis.url(), db.url());
    // An outage is a transient failure: retries must outlast it rather than dead-letter.
    let mut validator = Validator::start(
        &r,
        &d,
        "worker_a",
        &[("MAX_RETRIES", "1000"), ("WORKER__RETRY_MAX_MS", "500")],
    );

    produce(&r, "raw_items", 0..100, 5).await;
    assert!(poll_until(WAIT, || async { scalar(&d, ITEMS).await == Some(100) }).await);

    postgres.kill();
    produce(&r, "raw_items", 100..200, 5).await;
    // The validator has read the new entries but cannot commit them: they stay pending.
    let pending = || async {
        let summary: (u64, Option<String>, Option<String>, redis::Value) = redis_cmd(
            &r,
            redis::cmd("XPENDING")
                .arg("raw_items")
                .arg("validator_workers"),
        )
        .await;
        summary.0 > 0
    };
    assert!(poll_until(WAIT, pending).await);
    assert!(validator.is_running());

    postgres.restart().unwrap();
    assert!(poll_until(WAIT, || async { scalar(&d, ITEMS).await == Some(200) }).await);
    assert_eq!(scalar(&d, DISTINCT).await, Some(200));
    assert!(poll_until(WAIT, || async { scalar(&d, STATS).await == Some(200) }).await);
    let dlq: u64 = redis_cmd(&r, redis::cmd("XLEN").arg("raw_items:dlq")).await;
    assert_eq!(dlq, 0);
    assert!(validator.is_running());
}
