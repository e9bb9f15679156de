//! Shared test helpers: polling with a deadline, seed-format producing, database probes and
//! validator processes that die with the test.
#![allow(dead_code)]

use std::path::Path;

use bus_core::redis;
use bus_core::sqlx::{self, Connection, PgConnection};
use bus_testkit::ServiceProcess;
pub use bus_testkit::poll_until;
use tempfile::TempDir;

/// A seed-format `data` object: valid unless `i` is a multiple of `invalid_every`, in which
/// case the phone is 3 characters long (code 101).
pub fn item_data(i: usize, invalid_every: usize) -> String {
    let phone = if invalid_every > 0 && i.is_multiple_of(invalid_every) {
        "012".to_owned()
    } else {
        format!("09{i:08}")
    };
    bus_core::serde_json::json!({
        "phone": phone,
        "bank_account": format!("{i:011}"),
        "email": format!("user{i}@example.com"),
        "name": "Nguyen Van A",
        "source": "test",
    })
    .to_string()
}

/// Appends items `from..to` to `stream` in the seed's format (one pipelined round trip).
pub async fn produce(
    redis_url: &str,
    stream: &str,
    range: std::ops::Range<usize>,
    invalid_every: usize,
) {
    let client = redis::Client::open(redis_url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut pipe = redis::pipe();
    for i in range {
        pipe.cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("data")
            .arg(item_data(i, invalid_every))
            .arg("source")
            .arg("test")
            .arg("timestamp")
            .arg("2024-06-08T00:13:03+07:00")
            .arg("producer")
            .arg("tests")
            .arg("batch_id")
            .arg(format!("batch_{}", i / 10))
            .ignore();
    }
    let () = pipe.query_async(&mut conn).await.unwrap();
}

/// Runs one raw Redis command.
pub async fn redis_cmd<T: redis::FromRedisValue>(redis_url: &str, cmd: &redis::Cmd) -> T {
    let client = redis::Client::open(redis_url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    cmd.query_async(&mut conn).await.unwrap()
}

/// One number from the database, or `None` while it is unreachable or the table is missing.
pub async fn scalar(database_url: &str, sql: &str) -> Option<i64> {
    let mut conn = PgConnection::connect(database_url).await.ok()?;
    let value: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await
        .ok()?;
    let _ = conn.close().await;
    value
}

/// A validator process, SIGKILLed and reaped when dropped (its log is printed if the test
/// fails).
#[derive(Debug)]
pub struct Validator {
    process: ServiceProcess,
    _logs: TempDir,
}

impl Validator {
    /// Starts the real binary as consumer `name`; `extra` adds or overrides variables.
    pub fn start(redis_url: &str, database_url: &str, name: &str, extra: &[(&str, &str)]) -> Self {
        let mut vars: Vec<(&str, String)> = vec![
            ("REDIS_URL", redis_url.to_owned()),
            ("DATABASE_URL", database_url.to_owned()),
            ("CONSUMER_NAME", name.to_owned()),
            ("OPS_ADDR", "127.0.0.1:0".to_owned()),
            ("WORKER__CLAIM_MIN_IDLE_MS", "1000".to_owned()),
            ("WORKER__CLAIM_INTERVAL_MS", "300".to_owned()),
            ("WORKER__MONITOR_INTERVAL_MS", "500".to_owned()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let logs = tempfile::tempdir().expect("a log directory");
        let binary = Path::new(env!("CARGO_BIN_EXE_validator"));
        let process =
            ServiceProcess::spawn(name, binary, &vars, logs.path()).expect("start the validator");
        Validator {
            process,
            _logs: logs,
        }
    }

    /// SIGKILL: no drain, no ack, no goodbye.
    pub fn kill(&mut self) {
        self.process.sigkill();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }
}
