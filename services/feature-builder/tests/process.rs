//! The real `feature-builder` binary: settings from the environment, an event counted and its
//! prediction requested, a clean exit on SIGTERM, and a bad setting refused at start-up.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use bus_core::serde_json::json;
use bus_testkit::ServiceProcess;
use commerce::names;
use common::{Env, event};

/// The real binary with `extra` on top of the test environment; its output goes to a log
/// file in `logs`, printed if the test fails.
fn spawn(env: &Env, logs: &Path, extra: &[(&str, String)]) -> ServiceProcess {
    let mut vars = vec![
        ("REDIS_URL", env.redis.url()),
        ("DATABASE_URL", env.db.url().to_owned()),
        ("OPS_ADDR", "127.0.0.1:0".to_owned()),
        ("CONSUMER_NAME", "feature-builder-proc".to_owned()),
        ("WORKER__BLOCK_MS", "200".to_owned()),
    ];
    vars.extend_from_slice(extra);
    let binary = Path::new(env!("CARGO_BIN_EXE_feature-builder"));
    ServiceProcess::spawn("feature-builder", binary, &vars, logs).unwrap()
}

#[tokio::test]
async fn the_binary_counts_a_purchase_requests_its_prediction_and_exits_0_on_sigterm() {
    let env = Env::start().await;
    let profile = env.profile("shop", "2024-11-01T00:00:00Z", None).await;
    let logs = tempfile::tempdir().unwrap();
    let process = spawn(&env, logs.path(), &[]);
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

    let status = process.terminate(Duration::from_secs(15)).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn an_unusable_setting_stops_start_up_naming_the_variable() {
    let env = Env::start().await;
    let logs = tempfile::tempdir().unwrap();
    let mut process = spawn(&env, logs.path(), &[("WORKER__BATCH_SIZE", "0".to_owned())]);
    let status = process.exited(Duration::from_secs(15)).await.unwrap();
    assert_eq!(status.code(), Some(1));
    let printed = process.log();
    assert!(printed.contains("WORKER__BATCH_SIZE"), "{printed}");
}
