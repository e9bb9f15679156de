//! Readiness: dependencies reachable and every registered loop running.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::connection::Redis;

/// Shared readiness state of a process. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    loops: Mutex<Vec<(String, LoopFlag)>>,
    redis: Mutex<Option<Redis>>,
    postgres: Mutex<Option<sqlx::PgPool>>,
}

/// Whether one loop (a consumer, a subscriber) is currently doing its job.
#[derive(Debug, Clone, Default)]
pub struct LoopFlag(Arc<AtomicBool>);

impl LoopFlag {
    /// Marks the loop as running or not.
    pub fn set(&self, running: bool) {
        self.0.store(running, Ordering::Relaxed);
    }
    /// Whether the loop is running.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// One line of the readiness report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it is fine.
    pub ok: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Health {
    /// Registers a loop; it counts as not ready until it sets its flag.
    pub fn register_loop(&self, name: &str) -> LoopFlag {
        let flag = LoopFlag::default();
        lock(&self.inner.loops).push((name.to_owned(), flag.clone()));
        flag
    }

    /// Makes Redis reachability part of readiness.
    pub fn watch_redis(&self, redis: &Redis) {
        *lock(&self.inner.redis) = Some(redis.clone());
    }

    /// Makes PostgreSQL reachability part of readiness.
    pub fn watch_postgres(&self, pool: &sqlx::PgPool) {
        *lock(&self.inner.postgres) = Some(pool.clone());
    }

    /// Runs every check.
    pub async fn check(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        let redis = lock(&self.inner.redis).clone();
        if let Some(redis) = redis {
            checks.push(Check {
                name: "redis".into(),
                ok: redis.ping().await,
            });
        }
        let pool = lock(&self.inner.postgres).clone();
        if let Some(pool) = pool {
            let ping = sqlx::query("SELECT 1").execute(&pool);
            let ok = matches!(
                tokio::time::timeout(std::time::Duration::from_secs(1), ping).await,
                Ok(Ok(_))
            );
            checks.push(Check {
                name: "postgres".into(),
                ok,
            });
        }
        for (name, flag) in lock(&self.inner.loops).iter() {
            checks.push(Check {
                name: name.clone(),
                ok: flag.get(),
            });
        }
        checks
    }
}
