//! Test fixtures: private Redis and PostgreSQL, the dispatcher in-process, profiles with
//! features in the database, requests on `predictions.requests`, a channel listener and a
//! model server (no sleeps as synchronisation).
#![allow(dead_code)]

pub mod model_server;

use std::collections::BTreeMap;
use std::time::Duration;

use bus_core::chrono::{DateTime, Utc};
use bus_core::redis::{self, aio::ConnectionManager};
use bus_core::serde_json::Value;
use bus_core::sqlx::{self, PgPool};
use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{
    CommonSettings, GroupStatus, SecretUrl, StreamMessage, WorkerSettings, group_status,
};
use bus_testkit::{ChannelListener, PostgresServer, RedisServer, TestDatabase};
use commerce::messages::parse_timestamp;
use commerce::{PredictionRequest, RequestType, names};
use prediction_dispatcher::DispatcherSettings;
use uuid::Uuid;

pub use bus_testkit::until;

pub const WAIT: Duration = Duration::from_secs(30);
pub const DLQ: &str = "predictions.requests:dlq";

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
            consumer_name: Some("dispatcher-test".into()),
            shutdown_timeout_ms: 5_000,
            ..CommonSettings::default()
        }
    }

    /// Quick worker settings: short blocks and backoffs, two deliveries before a transient
    /// failure is dead-lettered (so an outage that counted deliveries would show at once).
    pub fn settings(&self, model_url: Option<String>) -> DispatcherSettings {
        DispatcherSettings {
            model_url,
            model_timeout_ms: 500,
            model_retries: 1,
            model_retry_backoff_ms: 10,
            worker: WorkerSettings {
                block_ms: 200,
                retry_base_ms: 20,
                retry_max_ms: 100,
                max_deliveries: 2,
                monitor_interval_ms: 500,
                ..WorkerSettings::default()
            },
            ..DispatcherSettings::default()
        }
    }

    /// Starts the dispatcher in this process; it stops when the returned value drops.
    pub fn start_dispatcher(&self, settings: DispatcherSettings) -> Running {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let common = self.common();
        tokio::spawn(async move {
            if let Err(e) = prediction_dispatcher::run(common, settings, token).await {
                panic!("dispatcher failed: {e:#}");
            }
        });
        Running { shutdown }
    }

    /// A profile of `brand`, optionally merged into `merged_into`.
    pub async fn profile(&self, brand: &str, merged_into: Option<Uuid>) -> Uuid {
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO profiles (profile_id, brand_id, merged_into) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(brand)
            .bind(merged_into)
            .execute(&self.pool)
            .await
            .unwrap();
        id
    }

    /// Stores features for `profile`: `orders` purchases worth `spent` in all, first seen
    /// `first_days_ago` and last ordered `last_order_days_ago` days ago.
    pub async fn features(
        &self,
        profile: Uuid,
        brand: &str,
        orders: i32,
        spent: &str,
        first_days_ago: i32,
        last_order_days_ago: i32,
    ) {
        sqlx::query(
            "INSERT INTO profile_features (profile_id, brand_id, event_count, order_count,
                                           total_spent, first_seen_at, last_seen_at,
                                           last_order_at, events_by_type)
             VALUES ($1, $2, $3 + 1, $3, $4::numeric,
                     now() - make_interval(days => $5), now() - make_interval(days => $6),
                     now() - make_interval(days => $6),
                     jsonb_build_object('purchase', $3, 'page_view', 1))",
        )
        .bind(profile)
        .bind(brand)
        .bind(orders)
        .bind(spent)
        .bind(first_days_ago)
        .bind(last_order_days_ago)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// Appends requests to `predictions.requests`; returns their entry ids.
    pub async fn send(&self, requests: &[PredictionRequest]) -> Vec<String> {
        let mut pipe = redis::pipe();
        for request in requests {
            let cmd = pipe.cmd("XADD").arg(names::PREDICTION_REQUESTS).arg("*");
            for (k, v) in request.encode().iter() {
                cmd.arg(k).arg(v);
            }
        }
        let mut conn = self.conn.clone();
        pipe.query_async(&mut conn).await.unwrap()
    }

    /// The group's status; `None` until the dispatcher has created the group.
    pub async fn try_status(&self) -> Option<GroupStatus> {
        let mut conn = self.conn.clone();
        group_status(
            &mut conn,
            names::PREDICTION_REQUESTS,
            names::PREDICTION_PROCESSORS,
            DLQ,
        )
        .await
        .ok()
    }

    pub async fn status(&self) -> GroupStatus {
        self.try_status().await.expect("the group exists")
    }

    /// Waits until the group has been handed every entry and acknowledged all of them.
    pub async fn wait_idle(&self) {
        until("prediction-processors to be idle", WAIT, || async {
            self.try_status()
                .await
                .is_some_and(|s| s.lag == Some(0) && s.pending == 0 && s.last_delivered.is_some())
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

    /// The stored predictions of `profile`, by type.
    pub async fn predictions(&self, profile: Uuid) -> BTreeMap<String, Stored> {
        type Row = (
            String,
            String,
            Option<f64>,
            Option<String>,
            Value,
            String,
            Option<String>,
            DateTime<Utc>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT prediction_type, brand_id, score, label, details, model_version,
                    request_key, predicted_at
             FROM predictions WHERE profile_id = $1",
        )
        .bind(profile)
        .fetch_all(&self.pool)
        .await
        .unwrap();
        rows.into_iter()
            .map(|r| {
                let stored = Stored {
                    brand_id: r.1,
                    score: r.2,
                    label: r.3,
                    details: r.4,
                    model_version: r.5,
                    request_key: r.6,
                    predicted_at: r.7,
                };
                (r.0, stored)
            })
            .collect()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .unwrap()
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

/// A `predictions` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub brand_id: String,
    pub score: Option<f64>,
    pub label: Option<String>,
    pub details: Value,
    pub model_version: String,
    pub request_key: Option<String>,
    pub predicted_at: DateTime<Utc>,
}

/// JSON messages received on a channel.
pub struct Listener(ChannelListener);

impl Listener {
    pub fn messages(&self) -> Vec<Value> {
        self.0
            .payloads()
            .iter()
            .map(|p| bus_core::serde_json::from_str(p).unwrap())
            .collect()
    }
}

/// An in-process dispatcher, stopped when dropped.
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

/// A request of `request_type` for `profile` of `brand`.
pub fn request(
    profile: Uuid,
    brand: &str,
    request_type: RequestType,
    request_id: Option<&str>,
) -> PredictionRequest {
    PredictionRequest {
        profile_id: profile,
        brand_id: brand.into(),
        request_type,
        timestamp: Utc::now(),
        request_id: request_id.map(str::to_owned),
    }
}
