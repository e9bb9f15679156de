//! The real `prediction-dispatcher` binary: settings from the environment, a request answered
//! and announced, a clean exit on SIGTERM, and a bad `MODEL_URL` refused at start-up.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use bus_testkit::ServiceProcess;
use commerce::{RequestType, names};
use common::{Env, request};

/// The real binary with `extra` on top of the test environment; its output goes to a log
/// file in `logs`, printed if the test fails.
fn spawn(env: &Env, logs: &Path, extra: &[(&str, String)]) -> ServiceProcess {
    let mut vars = vec![
        ("REDIS_URL", env.redis.url()),
        ("DATABASE_URL", env.db.url().to_owned()),
        ("OPS_ADDR", "127.0.0.1:0".to_owned()),
        ("CONSUMER_NAME", "dispatcher-proc".to_owned()),
        ("WORKER__BLOCK_MS", "200".to_owned()),
    ];
    vars.extend_from_slice(extra);
    let binary = Path::new(env!("CARGO_BIN_EXE_prediction-dispatcher"));
    ServiceProcess::spawn("prediction-dispatcher", binary, &vars, logs).unwrap()
}

#[tokio::test]
async fn the_binary_answers_a_request_and_exits_0_on_sigterm() {
    let env = Env::start().await;
    let profile = env.profile("shop", None).await;
    env.features(profile, "shop", 3, "120.00", 50, 4).await;
    let logs = tempfile::tempdir().unwrap();
    let process = spawn(&env, logs.path(), &[]);
    env.send(&[request(profile, "shop", RequestType::All, Some("p-1"))])
        .await;
    env.wait_idle().await;

    assert_eq!(env.predictions(profile).await.len(), 3);
    let completed = env.entries(names::PREDICTIONS_COMPLETED).await;
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].1["request_id"], "p-1");

    let status = process.terminate(Duration::from_secs(15)).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_model_url_without_http_stops_start_up_naming_the_variable() {
    let env = Env::start().await;
    let logs = tempfile::tempdir().unwrap();
    let mut process = spawn(
        &env,
        logs.path(),
        &[("MODEL_URL", "https://model.internal/predict".to_owned())],
    );
    let status = process.exited(Duration::from_secs(15)).await.unwrap();
    assert_eq!(status.code(), Some(1));
    let printed = process.log();
    assert!(printed.contains("MODEL_URL"), "{printed}");
}
