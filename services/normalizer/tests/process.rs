//! The real `normalizer` binary: settings from the environment, work done, clean exit on
//! SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use bus_core::serde_json::json;
use bus_testkit::{PostgresServer, RedisServer, ServiceProcess};
use common::*;

#[tokio::test]
async fn the_binary_reads_its_stream_and_group_from_the_environment_and_exits_0_on_sigterm() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let process = ServiceProcess::spawn(
        "normalizer",
        Path::new(env!("CARGO_BIN_EXE_normalizer")),
        &[
            ("REDIS_URL", redis.url()),
            ("DATABASE_URL", db.url().to_owned()),
            ("OPS_ADDR", "127.0.0.1:0".to_owned()),
            ("CONSUMER_NAME", "proc-1".to_owned()),
            ("STREAM", "custom.raw".to_owned()),
            ("GROUP", "custom-normalizers".to_owned()),
            ("WORKER__BLOCK_MS", "200".to_owned()),
        ],
        logs.path(),
    )
    .unwrap();
    let mut conn = redis_conn(&redis).await;

    xadd_event(
        &mut conn,
        "custom.raw",
        "e-1",
        "b",
        json!({"email": "A@x.com"}),
    )
    .await;

    await_len(&conn, "events.normalized", 1).await;
    await_idle(&conn, "custom.raw", "custom-normalizers").await;
    let event = normalized(&mut conn, "events.normalized").await.remove(0);
    assert_eq!(event.identifiers["email"], "a@x.com");
    let status = process.terminate(Duration::from_secs(15)).await.unwrap();
    assert_eq!(status.code(), Some(0));
}
