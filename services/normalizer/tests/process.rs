//! The real `normalizer` binary: settings from the environment, work done, clean exit on
//! SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bus_core::serde_json::json;
use bus_testkit::{PostgresServer, RedisServer, eventually};
use common::*;

/// The binary, SIGKILLed when dropped unless it already exited.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_reads_its_stream_and_group_from_the_environment_and_exits_0_on_sigterm() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let mut process = Process(
        Command::new(env!("CARGO_BIN_EXE_normalizer"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("REDIS_URL", redis.url())
            .env("DATABASE_URL", db.url())
            .env(
                "OPS_ADDR",
                format!("127.0.0.1:{}", bus_testkit::free_port()),
            )
            .env("CONSUMER_NAME", "proc-1")
            .env("STREAM", "custom.raw")
            .env("GROUP", "custom-normalizers")
            .env("WORKER__BLOCK_MS", "200")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap(),
    );
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
    let pid = process.0.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    let status = eventually("the process to exit", Duration::from_secs(15), || {
        let exited = process.0.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert_eq!(status.code(), Some(0));
}
