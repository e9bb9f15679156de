//! Shared test helpers: private Redis and PostgreSQL, in-process merge processors, seeding
//! profiles with SQL, merge requests in the seed's format, and probes that wait for a result.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use bus_core::chrono::{DateTime, Duration as Age, Utc};
use bus_core::redis;
use bus_core::sqlx::{self, PgPool};
use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{
    CommonSettings, EntryId, Fields, LeaseSettings, Redis, SecretUrl, WorkerSettings, group_status,
};
pub use bus_testkit::until;
use bus_testkit::{PostgresServer, RedisServer, TestDatabase};
use merge_processor::MergeSettings;
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(30);
pub const STREAM: &str = "profiles.merge_requests";
pub const GROUP: &str = "merge-processors";
pub const BRAND: &str = "brand-a";

/// A private Redis and a fresh, migrated database.
pub struct Env {
    pub redis_server: RedisServer,
    pub db: TestDatabase,
    pub pool: PgPool,
    pub redis: Redis,
}

impl Env {
    pub async fn start() -> Env {
        let redis_server = RedisServer::start().unwrap();
        let db = PostgresServer::shared().create_database().unwrap();
        let pool = PgPool::connect(&db.url()).await.unwrap();
        bus_core::MIGRATOR.run(&pool).await.unwrap();
        let redis = Redis::connect(&SecretUrl::new(redis_server.url()), None)
            .await
            .unwrap();
        Env {
            redis_server,
            db,
            pool,
            redis,
        }
    }

    pub fn common(&self, consumer: &str) -> CommonSettings {
        CommonSettings {
            redis_url: SecretUrl::new(self.redis_server.url()),
            database_url: Some(SecretUrl::new(self.db.url())),
            database_max_connections: 4,
            ops_addr: "127.0.0.1:0".into(),
            consumer_name: Some(consumer.into()),
            shutdown_timeout_ms: 5_000,
            ..Default::default()
        }
    }
}

/// Test timing: short reads and retries, a 2 s lease (renewed every ~0.7 s, with room for a
/// loaded machine).
pub fn fast_settings() -> MergeSettings {
    MergeSettings {
        worker: WorkerSettings {
            block_ms: 100,
            retry_base_ms: 20,
            retry_max_ms: 200,
            monitor_interval_ms: 200,
            ..MergeSettings::default().worker
        },
        lease: LeaseSettings { ttl_ms: 2_000 },
        ..Default::default()
    }
}

/// A merge processor running inside the test; cancelled when dropped.
pub struct Instance {
    pub name: String,
    pub shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Instance {
    pub fn start(env: &Env, name: &str, settings: MergeSettings) -> Instance {
        Self::start_with(env.common(name), name, settings)
    }

    /// Starts one whose ops endpoint listens on `port`.
    pub fn start_serving(env: &Env, name: &str, port: u16, settings: MergeSettings) -> Instance {
        let common = CommonSettings {
            ops_addr: format!("127.0.0.1:{port}"),
            ..env.common(name)
        };
        Self::start_with(common, name, settings)
    }

    fn start_with(common: CommonSettings, name: &str, settings: MergeSettings) -> Instance {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = merge_processor::run(common, settings, token).await {
                panic!("merge-processor failed: {e:#}");
            }
        });
        Instance {
            name: name.into(),
            shutdown,
            task: Some(task),
        }
    }

    /// Asks it to stop and waits until it has (drained, lease released).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Inserts a profile created `age_s` seconds ago; returns its id.
pub async fn profile(pool: &PgPool, brand: &str, age_s: i64) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO profiles (profile_id, brand_id, created_at) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(brand)
        .bind(Utc::now() - Age::seconds(age_s))
        .execute(pool)
        .await
        .unwrap();
    id
}

pub async fn identifier(pool: &PgPool, profile: Uuid, kind: &str, value: &str) {
    sqlx::query(
        "INSERT INTO profile_identifiers (brand_id, kind, value, profile_id)
         SELECT brand_id, $2, $3, profile_id FROM profiles WHERE profile_id = $1",
    )
    .bind(profile)
    .bind(kind)
    .bind(value)
    .execute(pool)
    .await
    .unwrap();
}

pub async fn event(pool: &PgPool, profile: Uuid, event_id: &str) {
    sqlx::query(
        "INSERT INTO events (event_id, brand_id, event_type, profile_id, payload,
                             normalized_payload, occurred_at, stream_id)
         SELECT $2, brand_id, 'purchase', profile_id, '{}', '{}', now(), '1-0'
         FROM profiles WHERE profile_id = $1",
    )
    .bind(profile)
    .bind(event_id)
    .execute(pool)
    .await
    .unwrap();
}

/// Features of a profile, as the feature builder keeps them.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub event_count: i32,
    pub order_count: i32,
    pub total_spent: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub last_order_at: Option<DateTime<Utc>>,
    pub events_by_type: bus_core::serde_json::Value,
}

pub async fn set_features(pool: &PgPool, profile: Uuid, f: &Features) {
    sqlx::query(
        "INSERT INTO profile_features (profile_id, brand_id, event_count, order_count,
                                       total_spent, first_seen_at, last_seen_at, last_order_at,
                                       events_by_type)
         SELECT profile_id, brand_id, $2, $3, $4::numeric, $5, $6, $7, $8
         FROM profiles WHERE profile_id = $1",
    )
    .bind(profile)
    .bind(f.event_count)
    .bind(f.order_count)
    .bind(&f.total_spent)
    .bind(f.first_seen_at)
    .bind(f.last_seen_at)
    .bind(f.last_order_at)
    .bind(&f.events_by_type)
    .execute(pool)
    .await
    .unwrap();
}

type FeatureRow = (
    i32,
    i32,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    bus_core::serde_json::Value,
);

pub async fn features(pool: &PgPool, profile: Uuid) -> Option<Features> {
    let row: Option<FeatureRow> = sqlx::query_as(
        "SELECT event_count, order_count, total_spent::text, first_seen_at, last_seen_at,
                last_order_at, events_by_type
         FROM profile_features WHERE profile_id = $1",
    )
    .bind(profile)
    .fetch_optional(pool)
    .await
    .unwrap();
    row.map(|r| Features {
        event_count: r.0,
        order_count: r.1,
        total_spent: r.2,
        first_seen_at: r.3,
        last_seen_at: r.4,
        last_order_at: r.5,
        events_by_type: r.6,
    })
}

pub async fn merged_into(pool: &PgPool, profile: Uuid) -> Option<Uuid> {
    sqlx::query_scalar("SELECT merged_into FROM profiles WHERE profile_id = $1")
        .bind(profile)
        .fetch_one(pool)
        .await
        .unwrap()
}

pub async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// A merge request in seed 001's format (plus `request_id` when given).
pub fn request(profiles: &[Uuid], review: bool, request_id: Option<&str>) -> Fields {
    request_for(BRAND, profiles, review, request_id)
}

pub fn request_for(
    brand: &str,
    profiles: &[Uuid],
    review: bool,
    request_id: Option<&str>,
) -> Fields {
    let mut f = Fields::new();
    f.set("brand_id", brand);
    f.set(
        "profile_ids",
        bus_core::serde_json::to_string(profiles).unwrap(),
    );
    f.set("reason", "identifier_match");
    f.set(
        "requires_manual_review",
        if review { "true" } else { "false" },
    );
    f.set("timestamp", "2024-12-01T10:00:00.000Z");
    if let Some(id) = request_id {
        f.set("request_id", id);
    }
    f
}

/// Appends merge requests in one round trip; returns their entry ids.
pub async fn publish(redis: &Redis, requests: &[Fields]) -> Vec<EntryId> {
    let mut pipe = redis::pipe();
    for fields in requests {
        let cmd = pipe.cmd("XADD").arg(redis.key(STREAM)).arg("*");
        for (k, v) in fields.iter() {
            cmd.arg(k).arg(v);
        }
    }
    let ids: Vec<String> = pipe.query_async(&mut redis.shared()).await.unwrap();
    ids.iter().map(|id| id.parse().unwrap()).collect()
}

/// Waits until the group has delivered `last` and nothing is pending: every entry up to it
/// is settled (applied, acked or dead-lettered).
pub async fn settled(redis: &Redis, last: EntryId) {
    until("the merge requests to be settled", WAIT, || async {
        let mut conn = redis.shared();
        let dlq = format!("{}:dlq", redis.key(STREAM));
        match group_status(&mut conn, &redis.key(STREAM), GROUP, &dlq).await {
            Ok(s) => s.pending == 0 && s.last_delivered.is_some_and(|id| id >= last),
            Err(_) => false,
        }
    })
    .await;
}

/// Entries of a stream, as field maps.
pub async fn entries(redis: &Redis, stream: &str) -> Vec<Fields> {
    let reply: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(redis.key(stream))
        .arg("-")
        .arg("+")
        .query_async(&mut redis.shared())
        .await
        .unwrap();
    reply
        .into_iter()
        .map(|(_, fields)| fields.into_iter().collect())
        .collect()
}

pub async fn dead_letters(redis: &Redis) -> Vec<Fields> {
    entries(redis, &format!("{STREAM}:dlq")).await
}

pub async fn prediction_requests(redis: &Redis) -> Vec<Fields> {
    entries(redis, "predictions.requests").await
}

/// The holder recorded in the lease key, if any (`<holder>#<token>`).
pub async fn lease_holder(redis: &Redis) -> Option<String> {
    let value: Option<String> = redis::cmd("GET")
        .arg(redis.key("lease:{profiles.merge_requests:merge-processors}"))
        .query_async(&mut redis.shared())
        .await
        .unwrap();
    value.and_then(|v| v.split_once('#').map(|(holder, _)| holder.to_owned()))
}

/// The value of one sample line (`name{labels} value`) of `/metrics` on `port`.
pub async fn metric(port: u16, sample: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The HTTP status of `/readyz` on `port` (0 while it does not answer).
pub async fn readyz(port: u16) -> u16 {
    match reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Who applied the merge with this request key.
pub async fn merged_by(pool: &PgPool, request_key: &str) -> Option<(String, i64)> {
    sqlx::query_as("SELECT merged_by, fencing_token FROM profile_merges WHERE request_key = $1")
        .bind(request_key)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// The consumers the group knows.
pub async fn group_consumers(redis: &Redis) -> Vec<String> {
    let rows: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(redis.key(STREAM))
        .arg(GROUP)
        .query_async(&mut redis.shared())
        .await
        .unwrap_or_default();
    rows.iter()
        .filter_map(|row| match row.get(1) {
            Some(redis::Value::BulkString(name)) => {
                Some(String::from_utf8_lossy(name).into_owned())
            }
            Some(redis::Value::SimpleString(name)) => Some(name.clone()),
            _ => None,
        })
        .collect()
}
