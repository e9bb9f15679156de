//! The real `feature-builder` binary: settings from the environment, an event counted and its
//! prediction requested, a clean exit on SIGTERM, and a bad setting refused at start-up.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bus_core::serde_json::json;
use bus_testkit::eventually;
use commerce::names;
use common::{Env, event};

/// The binary, SIGKILLed when dropped unless it already exited.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn binary(env: &Env) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feature-builder"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", env.redis.url())
        .env("DATABASE_URL", env.db.url())
        .env("OPS_ADDR", "127.0.0.1:0")
        .env("CONSUMER_NAME", "feature-builder-proc")
        .env("WORKER__BLOCK_MS", "200")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    cmd
}

#[tokio::test]
async fn the_binary_counts_a_purchase_requests_its_prediction_and_exits_0_on_sigterm() {
    let env = Env::start().await;
    let profile = env.profile("shop", "2024-11-01T00:00:00Z", None).await;
    let mut process = Process(binary(&env).spawn().unwrap());
    env.send(&[event(
        "shop",
        Some(profile),
        "purchase",
        "2024-12-02T10:00:00Z",
        json!({"total": "19.90"}),
    )])
    .await;
    env.wait_idle().await;

    let features = env.features(profile).await.unwrap();
    assert_eq!(
        (features.order_count, features.total_spent.as_str()),
        (1, "19.90")
    );
    assert_eq!(env.entries(names::PREDICTION_REQUESTS).await.len(), 1);

    let pid = process.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = eventually("the process to exit", Duration::from_secs(15), || {
        let exited = process.0.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn an_unusable_setting_stops_start_up_naming_the_variable() {
    let env = Env::start().await;
    let output = binary(&env)
        .env("WORKER__BATCH_SIZE", "0")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("WORKER__BATCH_SIZE"), "{printed}");
}
