//! Test fixtures: private Redis and PostgreSQL, the feature builder in-process, profiles in
//! the database and events on `events.normalized` (no sleeps as synchronisation).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use bus_core::chrono::{DateTime, Utc};
use bus_core::redis::{self, aio::ConnectionManager};
use bus_core::serde_json::{Map, Value};
use bus_core::sqlx::{self, PgPool};
use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{CommonSettings, SecretUrl, StreamMessage, WorkerSettings, group_status};
use bus_testkit::{PostgresServer, RedisServer, TestDatabase, until};
use commerce::messages::parse_timestamp;
use commerce::{NormalizedEvent, names};
use feature_builder::FeatureBuilderSettings;
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(30);

/// A private Redis and a fresh, migrated database.
pub struct Env {
    pub redis: RedisServer,
    pub db: TestDatabase,
    pub pool: PgPool,
    pub conn: ConnectionManager,
}

impl Env {
    pub async fn start() -> Env {
        let redis = RedisServer::start().expect("redis-server");
        let db = PostgresServer::shared()
            .create_database()
            .expect("database");
        let pool = PgPool::connect(&db.url()).await.unwrap();
        bus_core::MIGRATOR.run(&pool).await.unwrap();
        let client = redis::Client::open(redis.url()).unwrap();
        let conn = ConnectionManager::new(client).await.unwrap();
        Env {
            redis,
            db,
            pool,
            conn,
        }
    }

    pub fn common(&self) -> CommonSettings {
        CommonSettings {
            redis_url: SecretUrl::new(self.redis.url()),
            database_url: Some(SecretUrl::new(self.db.url())),
            database_max_connections: 4,
            ops_addr: "127.0.0.1:0".into(),
            consumer_name: Some("feature-builder-test".into()),
            shutdown_timeout_ms: 5_000,
            ..CommonSettings::default()
        }
    }

    /// Starts the feature builder in this process; it stops when the returned value drops.
    pub fn start_builder(&self) -> Running {
        let shutdown = CancellationToken::new();
        let settings = FeatureBuilderSettings {
            worker: WorkerSettings {
                block_ms: 200,
                retry_base_ms: 50,
                retry_max_ms: 500,
                monitor_interval_ms: 500,
                ..WorkerSettings::default()
            },
            ..FeatureBuilderSettings::default()
        };
        let token = shutdown.clone();
        let common = self.common();
        tokio::spawn(async move {
            if let Err(e) = feature_builder::run(common, settings, token).await {
                panic!("feature builder failed: {e:#}");
            }
        });
        Running { shutdown }
    }

    /// A profile of `brand` created at `created`, optionally merged into `merged_into`.
    pub async fn profile(&self, brand: &str, created: &str, merged_into: Option<Uuid>) -> Uuid {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO profiles (profile_id, brand_id, merged_into, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(brand)
        .bind(merged_into)
        .bind(at(created))
        .execute(&self.pool)
        .await
        .unwrap();
        id
    }

    /// Appends events to `events.normalized`; returns their entry ids.
    pub async fn send(&self, events: &[NormalizedEvent]) -> Vec<String> {
        let mut pipe = redis::pipe();
        for event in events {
            let cmd = pipe.cmd("XADD").arg(names::EVENTS_NORMALIZED).arg("*");
            for (k, v) in event.encode().iter() {
                cmd.arg(k).arg(v);
            }
        }
        let mut conn = self.conn.clone();
        pipe.query_async(&mut conn).await.unwrap()
    }

    /// Waits until the group has been handed every entry and acknowledged all of them.
    pub async fn wait_idle(&self) {
        let conn = self.conn.clone();
        until("event-processors to be idle", WAIT, || {
            let mut conn = conn.clone();
            async move {
                let status = group_status(
                    &mut conn,
                    names::EVENTS_NORMALIZED,
                    names::EVENT_PROCESSORS,
                    "events.normalized:dlq",
                )
                .await;
                status
                    .is_ok_and(|s| s.lag == Some(0) && s.pending == 0 && s.last_delivered.is_some())
            }
        })
        .await;
    }

    /// Entries of `stream` as (id, field map).
    pub async fn entries(&self, stream: &str) -> Vec<(String, BTreeMap<String, String>)> {
        let mut conn = self.conn.clone();
        let raw: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(stream)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        raw.into_iter()
            .map(|(id, fields)| (id, fields.into_iter().collect()))
            .collect()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// The features row of `profile`, if any.
    pub async fn features(&self, profile: Uuid) -> Option<Features> {
        type Row = (
            String,
            i32,
            i32,
            String,
            DateTime<Utc>,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            Value,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT brand_id, event_count, order_count, total_spent::text, first_seen_at,
                    last_seen_at, last_order_at, events_by_type
             FROM profile_features WHERE profile_id = $1",
        )
        .bind(profile)
        .fetch_optional(&self.pool)
        .await
        .unwrap();
        row.map(|r| Features {
            brand_id: r.0,
            event_count: r.1,
            order_count: r.2,
            total_spent: r.3,
            first_seen_at: r.4,
            last_seen_at: r.5,
            last_order_at: r.6,
            events_by_type: r.7,
        })
    }
}

/// A `profile_features` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub brand_id: String,
    pub event_count: i32,
    pub order_count: i32,
    pub total_spent: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub last_order_at: Option<DateTime<Utc>>,
    pub events_by_type: Value,
}

/// An in-process feature builder, stopped when dropped.
pub struct Running {
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn at(raw: &str) -> DateTime<Utc> {
    parse_timestamp(raw).unwrap()
}

/// A normalized event of `brand` for `profile` with `payload` (a JSON object).
pub fn event(
    brand: &str,
    profile: Option<Uuid>,
    event_type: &str,
    when: &str,
    payload: Value,
) -> NormalizedEvent {
    let payload: Map<String, Value> = match payload {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    NormalizedEvent {
        event_id: Uuid::new_v4().to_string(),
        brand_id: brand.into(),
        event_type: event_type.into(),
        profile_id: profile,
        identifiers: BTreeMap::new(),
        normalized_payload: payload,
        timestamp: at(when),
    }
}
