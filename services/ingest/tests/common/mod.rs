//! Shared test fixtures: private Redis and PostgreSQL, an in-process ingest service, and
//! polling helpers (no sleeps as synchronisation).
#![allow(dead_code)]

use std::time::Duration;

use bus_core::sqlx::PgPool;
use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{CommonSettings, SecretUrl, WorkerSettings};
use bus_testkit::{ChannelListener, PostgresServer, RedisServer, TestDatabase};
use ingest::IngestSettings;
use redis::aio::MultiplexedConnection;

pub mod data;

#[allow(unused_imports)] // not every test file uses it
pub use bus_testkit::eventually;

/// A private Redis and a fresh database.
pub struct Env {
    pub redis: RedisServer,
    pub db: TestDatabase,
}

impl Env {
    pub fn start() -> Env {
        Env {
            redis: RedisServer::start().expect("redis-server"),
            db: PostgresServer::shared()
                .create_database()
                .expect("database"),
        }
    }

    pub fn common(&self, consumer: &str) -> CommonSettings {
        CommonSettings {
            redis_url: SecretUrl::new(self.redis.url()),
            database_url: Some(SecretUrl::new(self.db.url())),
            database_max_connections: 4,
            ops_addr: "127.0.0.1:0".into(),
            consumer_name: Some(consumer.into()),
            shutdown_timeout_ms: 5_000,
            ..CommonSettings::default()
        }
    }

    pub async fn redis(&self) -> MultiplexedConnection {
        redis::Client::open(self.redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    pub async fn pool(&self) -> PgPool {
        bus_core::connect_and_migrate(&self.common("test"))
            .await
            .unwrap()
    }

    /// Starts ingest in this process as consumer `consumer`.
    pub fn start_ingest(&self, consumer: &str) -> Running {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(ingest::run(
            self.common(consumer),
            fast_settings(),
            shutdown.clone(),
        ));
        Running { shutdown, task }
    }

    /// Collects every message published on `channel` from now on.
    pub async fn listen(&self, channel: &str) -> Listener {
        Listener(
            ChannelListener::subscribe(&self.redis.url(), channel)
                .await
                .unwrap(),
        )
    }
}

/// Settings that make a test quick: short blocks, quick reclaim.
pub fn fast_settings() -> IngestSettings {
    IngestSettings {
        worker: WorkerSettings {
            block_ms: 200,
            claim_interval_ms: 300,
            claim_min_idle_ms: 1_000,
            retry_base_ms: 50,
            retry_max_ms: 500,
            monitor_interval_ms: 500,
            ..WorkerSettings::default()
        },
        ..IngestSettings::default()
    }
}

/// An in-process ingest service.
pub struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// JSON messages received on a channel.
pub struct Listener(ChannelListener);

impl Listener {
    /// Everything published before this call (see [`ChannelListener::settled`]), parsed.
    pub async fn settled(&self) -> Vec<serde_json::Value> {
        let payloads = self.0.settled(WAIT).await.unwrap();
        payloads
            .iter()
            .map(|p| serde_json::from_str(p).unwrap())
            .collect()
    }
}

/// Pending entries of `server-group` on `stream`.
pub async fn pending(conn: &mut MultiplexedConnection, stream: &str) -> u64 {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg("server-group")
        .query_async(conn)
        .await
        .unwrap();
    match reply {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        },
        _ => 0,
    }
}

/// Entries of `stream` as (id, fields).
pub async fn entries(
    conn: &mut MultiplexedConnection,
    stream: &str,
) -> Vec<(String, Vec<(String, String)>)> {
    redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap()
}

pub async fn count(pool: &PgPool, table: &str) -> i64 {
    bus_core::sqlx::query_scalar(bus_core::sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table}"
    )))
    .fetch_one(pool)
    .await
    .unwrap()
}

pub const WAIT: Duration = Duration::from_secs(30);
