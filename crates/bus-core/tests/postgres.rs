//! Effectively-once into PostgreSQL through the inbox, against private servers.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bus_core::{Batch, Fields, Handler, HandlerError, Outcome, inbox};
use bus_testkit::{PostgresServer, RedisServer};
use common::*;
use sqlx::PgPool;

/// Writes one row per new entry, in one transaction with the inbox claim.
#[derive(Clone)]
struct RowWriter {
    pool: PgPool,
    /// Fail (after writing, before commit) the first time a batch is seen, like a crash.
    fail_first: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Handler for RowWriter {
    type Message = Fields;

    async fn handle(&self, batch: Batch<'_, Fields>) -> Result<Outcome, HandlerError> {
        let mut tx = self.pool.begin().await?;
        let fresh = inbox::claim(&mut tx, batch.stream, batch.group, &batch.ids()).await?;
        let (ids, ns): (Vec<String>, Vec<i64>) = batch
            .entries
            .iter()
            .filter(|d| fresh.contains(&d.id))
            .map(|d| {
                (
                    d.id.to_string(),
                    d.message
                        .get("n")
                        .unwrap_or("0")
                        .parse::<i64>()
                        .unwrap_or(-1),
                )
            })
            .unzip();
        sqlx::query(
            "INSERT INTO items (entry_id, n) SELECT * FROM UNNEST($1::text[], $2::bigint[])",
        )
        .bind(&ids)
        .bind(&ns)
        .execute(&mut *tx)
        .await?;
        if self
            .fail_first
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(HandlerError::transient(anyhow::anyhow!(
                "connection reset before commit"
            )));
        }
        tx.commit().await?;
        Ok(Outcome::done())
    }
}

async fn setup(db_url: &str) -> PgPool {
    let pool = bus_core::connect_postgres(&bus_core::SecretUrl::new(db_url), 5)
        .await
        .unwrap();
    bus_core::MIGRATOR.run(&pool).await.unwrap();
    sqlx::query("CREATE TABLE items (entry_id text, n bigint)")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

async fn rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn redelivered_and_reclaimed_entries_land_exactly_once() {
    let redis = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let pool = setup(&db.url()).await;
    let bus = bus(&redis.url()).await;
    let n = 500;
    produce(&bus, "s", n).await;

    // A first consumer commits some batches, then is killed with batches in flight.
    let writer = RowWriter {
        pool: pool.clone(),
        fail_first: Default::default(),
    };
    let (first, _) = spawn(
        &bus,
        config("s", "g", "first", fast_worker()),
        writer.clone(),
    );
    until("some rows are written", Duration::from_secs(15), || async {
        rows(&pool).await >= 100
    })
    .await;
    first.abort();

    // Replay everything already handled, as if the acks had been lost.
    let _: () = redis_cmd(
        &bus,
        bus_core::redis::cmd("XGROUP")
            .arg("SETID")
            .arg("s")
            .arg("g")
            .arg("0"),
    )
    .await;
    let survivor = RowWriter {
        pool: pool.clone(),
        fail_first: std::sync::Arc::new(true.into()),
    };
    let settings = bus_core::WorkerSettings {
        claim_min_idle_ms: 100,
        ..fast_worker()
    };
    let (task, shutdown) = spawn(&bus, config("s", "g", "survivor", settings), survivor);
    until("every entry is acked", Duration::from_secs(20), || async {
        pending_count(&bus, "s", "g").await == 0 && rows(&pool).await == n as i64
    })
    .await;

    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT entry_id) FROM items")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows(&pool).await, n as i64, "exactly N rows");
    assert_eq!(distinct, n as i64);
    let sum: i64 = sqlx::query_scalar("SELECT sum(n)::bigint FROM items")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        sum,
        (0..n as i64).sum::<i64>(),
        "every entry's content landed"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn integrity_errors_are_permanent_and_connection_errors_an_outage() {
    let db = PostgresServer::shared().create_database().unwrap();
    let pool = setup(&db.url()).await;
    sqlx::query("CREATE TABLE uniq (k int PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO uniq VALUES (1)")
        .execute(&pool)
        .await
        .unwrap();
    let dup = sqlx::query("INSERT INTO uniq VALUES (1)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(matches!(
        HandlerError::from(dup),
        HandlerError::Permanent(_)
    ));
    pool.close().await;
    let closed = sqlx::query("SELECT 1").execute(&pool).await.unwrap_err();
    assert!(matches!(
        HandlerError::from(closed),
        HandlerError::Unavailable(_)
    ));
}
