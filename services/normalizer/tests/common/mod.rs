//! Shared test support: a normalizer running in-process against the test kit's Redis and
//! PostgreSQL, seed-format producing, and reading what it wrote.
#![allow(dead_code)]

use std::time::Duration;

use bus_core::redis::{self, aio::ConnectionManager};
use bus_core::serde_json::Value;
use bus_core::sqlx::{self, PgPool};
use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{CommonSettings, Fields, SecretUrl, StreamMessage, WorkerSettings, group_status};
use bus_testkit::{RedisServer, TestDatabase};
use commerce::{MergeRequest, NormalizedEvent};
use normalizer::NormalizerSettings;

pub const WAIT: Duration = Duration::from_secs(30);

/// A normalizer running inside the test, stopped when dropped.
pub struct InProcess {
    shutdown: CancellationToken,
    /// Where its `/metrics` is served.
    pub ops: String,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl InProcess {
    /// Starts consumer `name` with default settings (short blocking reads).
    pub fn start(redis: &RedisServer, db: &TestDatabase, name: &str) -> Self {
        Self::start_with(redis, db, name, None, test_settings())
    }

    /// Starts consumer `name` in tenant `namespace` with `settings`.
    pub fn start_with(
        redis: &RedisServer,
        db: &TestDatabase,
        name: &str,
        namespace: Option<&str>,
        settings: NormalizerSettings,
    ) -> Self {
        let ops = format!("127.0.0.1:{}", bus_testkit::free_port());
        let common = CommonSettings {
            redis_url: SecretUrl::new(redis.url()),
            redis_namespace: namespace.map(str::to_owned),
            database_url: Some(SecretUrl::new(db.url())),
            ops_addr: ops.clone(),
            consumer_name: Some(name.to_owned()),
            ..Default::default()
        };
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = normalizer::run(common, settings, token).await {
                panic!("normalizer failed: {e:#}");
            }
        });
        InProcess { shutdown, ops }
    }

    /// The value of one sample on `/metrics` (e.g. `normalizer_events_total{outcome="matched"}`),
    /// `None` until the endpoint answers with it.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let body = reqwest::get(format!("http://{}/metrics", self.ops))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        body.lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
    }
}

/// Worker settings that react quickly in tests.
pub fn test_settings() -> NormalizerSettings {
    NormalizerSettings {
        worker: WorkerSettings {
            block_ms: 200,
            monitor_interval_ms: 500,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A connection to the test Redis.
pub async fn redis_conn(redis: &RedisServer) -> ConnectionManager {
    let client = redis::Client::open(redis.url()).unwrap();
    ConnectionManager::new(client).await.unwrap()
}

/// A pool on the test database (after the service has migrated it).
pub async fn pool(db: &TestDatabase) -> PgPool {
    PgPool::connect(&db.url()).await.unwrap()
}

/// Appends a seed-001 raw event to `stream`; returns its entry id.
pub async fn xadd_event(
    conn: &mut ConnectionManager,
    stream: &str,
    event_id: &str,
    brand_id: &str,
    payload: Value,
) -> String {
    xadd(
        conn,
        stream,
        &[
            ("event_id", event_id),
            ("brand_id", brand_id),
            ("event_type", "purchase"),
            ("payload", &payload.to_string()),
            ("timestamp", "2024-12-01T10:00:00.000Z"),
        ],
    )
    .await
}

/// Appends raw fields to `stream`; returns the entry id.
pub async fn xadd(conn: &mut ConnectionManager, stream: &str, pairs: &[(&str, &str)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (k, v) in pairs {
        cmd.arg(*k).arg(*v);
    }
    cmd.query_async(conn).await.unwrap()
}

/// Every entry of `stream`, oldest first, with its fields (minus the `traceparent` that each
/// publication carries afresh).
pub async fn entries(conn: &mut ConnectionManager, stream: &str) -> Vec<(String, Fields)> {
    let raw: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    raw.into_iter()
        .map(|(id, pairs)| {
            let fields = pairs
                .into_iter()
                .filter(|(k, _)| k != "traceparent")
                .collect();
            (id, fields)
        })
        .collect()
}

/// The entries of `events.raw:dlq`, by the id of the entry they dead-letter.
pub async fn dead_letters(
    conn: &mut ConnectionManager,
) -> std::collections::HashMap<String, Fields> {
    entries(conn, "events.raw:dlq")
        .await
        .into_iter()
        .map(|(_, f)| (f.get("dlq_original_id").unwrap_or_default().to_owned(), f))
        .collect()
}

/// The decoded `events.normalized` entries.
pub async fn normalized(conn: &mut ConnectionManager, stream: &str) -> Vec<NormalizedEvent> {
    entries(conn, stream)
        .await
        .iter()
        .map(|(_, f)| NormalizedEvent::decode(f).unwrap())
        .collect()
}

/// The decoded `profiles.merge_requests` entries.
pub async fn merge_requests(conn: &mut ConnectionManager, stream: &str) -> Vec<MergeRequest> {
    entries(conn, stream)
        .await
        .iter()
        .map(|(_, f)| MergeRequest::decode(f).unwrap())
        .collect()
}

/// Length of `stream` (0 when it does not exist).
pub async fn xlen(conn: &mut ConnectionManager, stream: &str) -> usize {
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(conn)
        .await
        .unwrap()
}

/// Waits until `stream` holds `n` entries.
pub async fn await_len(conn: &ConnectionManager, stream: &str, n: usize) {
    bus_testkit::until(&format!("{stream} to hold {n} entries"), WAIT, || {
        let mut conn = conn.clone();
        async move { xlen(&mut conn, stream).await == n }
    })
    .await;
}

/// Waits until the group has delivered and acknowledged everything in `stream`.
pub async fn await_idle(conn: &ConnectionManager, stream: &str, group: &str) {
    bus_testkit::until(&format!("{group} to finish {stream}"), WAIT, || {
        let mut conn = conn.clone();
        let dlq = format!("{stream}:dlq");
        async move {
            match group_status(&mut conn, stream, group, &dlq).await {
                Ok(s) => s.lag == Some(0) && s.pending == 0 && s.last_delivered.is_some(),
                Err(_) => false,
            }
        }
    })
    .await;
}

/// One number from the database.
pub async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Row counts of the tables the normalizer writes: (profiles, identifiers, events).
pub async fn table_counts(pool: &PgPool) -> (i64, i64, i64) {
    (
        count(pool, "SELECT count(*) FROM profiles").await,
        count(pool, "SELECT count(*) FROM profile_identifiers").await,
        count(pool, "SELECT count(*) FROM events").await,
    )
}
