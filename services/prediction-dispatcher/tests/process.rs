//! The real `prediction-dispatcher` binary: settings from the environment, a request answered
//! and announced, a clean exit on SIGTERM, and a bad `MODEL_URL` refused at start-up.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bus_testkit::eventually;
use commerce::{RequestType, names};
use common::{Env, request};

/// The binary, SIGKILLed when dropped unless it already exited.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn binary(env: &Env) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prediction-dispatcher"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", env.redis.url())
        .env("DATABASE_URL", env.db.url())
        .env("OPS_ADDR", "127.0.0.1:0")
        .env("CONSUMER_NAME", "dispatcher-proc")
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
async fn the_binary_answers_a_request_and_exits_0_on_sigterm() {
    let env = Env::start().await;
    let profile = env.profile("shop", None).await;
    env.features(profile, "shop", 3, "120.00", 50, 4).await;
    let mut process = Process(binary(&env).spawn().unwrap());
    env.send(&[request(profile, "shop", RequestType::All, Some("p-1"))])
        .await;
    env.wait_idle().await;

    assert_eq!(env.predictions(profile).await.len(), 3);
    let completed = env.entries(names::PREDICTIONS_COMPLETED).await;
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].1["request_id"], "p-1");

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
async fn a_model_url_without_http_stops_start_up_naming_the_variable() {
    let env = Env::start().await;
    let output = binary(&env)
        .env("MODEL_URL", "https://model.internal/predict")
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
    assert!(printed.contains("MODEL_URL"), "{printed}");
}
