//! The single-active lease against a private Redis, and its fence against a private PostgreSQL.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bus_core::{
    FenceError, Lease, LeaseMetrics, LeaseSettings, Metrics, Redis, SecretUrl, fence, redis,
};
use bus_testkit::{PostgresServer, RedisServer, until};
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

async fn connect(server: &RedisServer, namespace: Option<&str>) -> Redis {
    Redis::connect(&SecretUrl::new(server.url()), namespace)
        .await
        .unwrap()
}

fn lease(redis: &Redis, holder: &str, ttl_ms: u64) -> Lease {
    Lease::new(redis.clone(), "single", holder, LeaseSettings { ttl_ms })
}

async fn value_of(redis: &Redis, key: &str) -> Option<String> {
    let mut conn = redis.shared();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn fence_db() -> (bus_testkit::TestDatabase, PgPool) {
    let db = PostgresServer::shared().create_database().unwrap();
    let pool = PgPool::connect(&db.url()).await.unwrap();
    bus_core::MIGRATOR.run(&pool).await.unwrap();
    (db, pool)
}

/// Fences `token` in a transaction of its own and commits when the fence lets it.
async fn fence_and_commit(pool: &PgPool, token: u64, holder: &str) -> Result<(), FenceError> {
    let mut tx = pool.begin().await.unwrap();
    fence(&mut tx, "single", token, holder).await?;
    tx.commit().await.unwrap();
    Ok(())
}

#[tokio::test]
async fn only_one_of_two_contenders_holds_the_lease_while_it_renews() {
    let server = RedisServer::start().unwrap();
    let redis = connect(&server, None).await;
    let (a, b) = (lease(&redis, "a", 600), lease(&redis, "b", 600));

    let held = a
        .try_acquire()
        .await
        .unwrap()
        .expect("a free lease is taken");
    assert!(b.try_acquire().await.unwrap().is_none());

    // Three TTLs: without renewals the key would have expired twice over.
    let waiting = tokio::time::timeout(
        Duration::from_millis(1_800),
        b.acquire(&CancellationToken::new()),
    )
    .await;
    assert!(waiting.is_err(), "the standby got a lease that is renewed");
    assert!(!held.lost().is_cancelled());
    assert_eq!(
        value_of(&redis, a.key()).await,
        Some(format!("a#{}", held.token()))
    );
}

#[tokio::test]
async fn a_standby_takes_over_about_a_ttl_after_the_holder_dies_without_releasing() {
    let server = RedisServer::start().unwrap();
    let redis = connect(&server, None).await;
    let (a, b) = (lease(&redis, "a", 1_000), lease(&redis, "b", 1_000));
    let held = a.try_acquire().await.unwrap().unwrap();
    let standby = tokio::spawn(async move { b.acquire(&CancellationToken::new()).await });

    let died = Instant::now();
    drop(held); // renewals stop; the key stays until its TTL runs out, as after a crash
    let taken = tokio::time::timeout(WAIT, standby)
        .await
        .unwrap()
        .unwrap()
        .expect("the standby takes over");
    let after = died.elapsed();

    assert!(taken.token() > 1);
    assert!(
        after >= Duration::from_millis(500),
        "took over after {after:?}, before the dead holder's key could have expired"
    );
    assert!(
        after <= Duration::from_millis(3_000),
        "took over only after {after:?}"
    );
}

#[tokio::test]
async fn releasing_hands_the_lease_over_at_the_next_poll() {
    let server = RedisServer::start().unwrap();
    let redis = connect(&server, None).await;
    let (a, b) = (lease(&redis, "a", 4_000), lease(&redis, "b", 4_000));
    let held = a.try_acquire().await.unwrap().unwrap();
    let standby = tokio::spawn(async move { b.acquire(&CancellationToken::new()).await });

    let released = Instant::now();
    assert!(held.release().await.unwrap(), "the key was still a's");
    let taken = tokio::time::timeout(WAIT, standby)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // A poll is a fifth of the TTL (±20 %); waiting for expiry would take the whole TTL.
    let after = released.elapsed();
    assert!(
        after < Duration::from_millis(2_000),
        "handover took {after:?}"
    );
    assert_eq!(taken.holder(), "b");
}

#[tokio::test]
async fn every_acquisition_gets_a_larger_token() {
    let server = RedisServer::start().unwrap();
    let redis = connect(&server, None).await;
    let contenders = [lease(&redis, "a", 1_000), lease(&redis, "b", 1_000)];
    let mut tokens = Vec::new();
    for round in 0..6 {
        let held = contenders[round % 2].try_acquire().await.unwrap().unwrap();
        tokens.push(held.token());
        held.release().await.unwrap();
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens {tokens:?} are not strictly increasing"
    );
}

#[tokio::test]
async fn a_stale_token_is_fenced_once_a_newer_one_has_written() {
    let (_db, pool) = fence_db().await;

    fence_and_commit(&pool, 1, "a").await.unwrap();
    fence_and_commit(&pool, 1, "a").await.unwrap(); // the same holder keeps writing
    fence_and_commit(&pool, 2, "b").await.unwrap();
    let stale = fence_and_commit(&pool, 1, "a").await.unwrap_err();
    fence_and_commit(&pool, 3, "c").await.unwrap();

    match stale {
        FenceError::Fenced {
            token,
            current,
            holder,
            ..
        } => assert_eq!((token, current, holder.as_str()), (1, 2, "b")),
        other => panic!("expected Fenced, got {other}"),
    }
    let (token, holder): (i64, String) =
        sqlx::query_as("SELECT token, holder FROM lease_fences WHERE name = 'single'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((token, holder.as_str()), (3, "c"));
}

#[tokio::test]
async fn a_holder_whose_lease_expired_cannot_commit_after_the_next_holder_wrote() {
    let server = RedisServer::start().unwrap();
    let redis = connect(&server, None).await;
    let (_db, pool) = fence_db().await;
    let (a, b) = (lease(&redis, "a", 1_000), lease(&redis, "b", 1_000));
    let old = a.try_acquire().await.unwrap().unwrap();
    let mut tx = pool.begin().await.unwrap();
    old.fence(&mut tx).await.unwrap();
    tx.commit().await.unwrap();

    // The old holder stalls; its key vanishes and b takes over and writes.
    let mut conn = redis.shared();
    let () = redis::cmd("DEL")
        .arg(a.key())
        .query_async(&mut conn)
        .await
        .unwrap();
    let new = b.try_acquire().await.unwrap().unwrap();
    let mut tx = pool.begin().await.unwrap();
    new.fence(&mut tx).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    let refused = old.fence(&mut tx).await;
    assert!(
        matches!(refused, Err(FenceError::Fenced { current, .. }) if current == new.token() as i64),
        "{refused:?}"
    );
}

#[tokio::test]
async fn after_redis_lost_the_token_sequence_advancing_it_past_the_fence_lets_writes_resume() {
    let mut server = RedisServer::start().unwrap(); // no persistence: a restart forgets tokens
    let (_db, pool) = fence_db().await;
    let redis = connect(&server, None).await;
    let a = lease(&redis, "a", 1_000);
    for _ in 0..3 {
        let held = a.try_acquire().await.unwrap().unwrap();
        let mut tx = pool.begin().await.unwrap();
        held.fence(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        held.release().await.unwrap();
    }

    server.kill();
    server.restart().unwrap();
    let redis = connect(&server, None).await;
    let a = lease(&redis, "a", 1_000);
    let restarted = a.try_acquire().await.unwrap().unwrap();
    let mut tx = pool.begin().await.unwrap();
    let refused = restarted.fence(&mut tx).await;
    let Err(FenceError::Fenced { current, .. }) = refused else {
        panic!("a token from the new sequence must be fenced: {refused:?}");
    };
    drop(tx);
    restarted.release().await.unwrap();
    a.advance_tokens(current as u64).await.unwrap();

    let healed = a.try_acquire().await.unwrap().unwrap();
    let mut tx = pool.begin().await.unwrap();
    healed.fence(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(healed.token(), current as u64 + 1);
}

#[tokio::test]
async fn advancing_the_token_sequence_never_lowers_it() {
    let server = RedisServer::start().unwrap();
    let redis = connect(&server, None).await;
    let a = lease(&redis, "a", 1_000);
    a.advance_tokens(10).await.unwrap();
    a.advance_tokens(4).await.unwrap();
    let held = a.try_acquire().await.unwrap().unwrap();
    assert_eq!(held.token(), 11);
}

#[tokio::test]
async fn a_holder_notices_when_its_key_is_deleted() {
    let server = RedisServer::start().unwrap();
    let redis = connect(&server, None).await;
    let a = lease(&redis, "a", 600);
    let held = a.try_acquire().await.unwrap().unwrap();

    let mut conn = redis.shared();
    let () = redis::cmd("DEL")
        .arg(a.key())
        .query_async(&mut conn)
        .await
        .unwrap();

    tokio::time::timeout(WAIT, held.lost().cancelled())
        .await
        .expect("lost fires");
}

#[tokio::test]
async fn a_holder_notices_when_another_holder_took_its_key() {
    let server = RedisServer::start().unwrap();
    let redis = connect(&server, None).await;
    let a = lease(&redis, "a", 600);
    let held = a.try_acquire().await.unwrap().unwrap();

    let mut conn = redis.shared();
    let () = redis::cmd("SET")
        .arg(a.key())
        .arg("intruder#999")
        .query_async(&mut conn)
        .await
        .unwrap();

    tokio::time::timeout(WAIT, held.lost().cancelled())
        .await
        .expect("lost fires");
    // A lost lease is not the holder's to delete.
    assert!(!held.release().await.unwrap());
    assert_eq!(
        value_of(&redis, a.key()).await.as_deref(),
        Some("intruder#999")
    );
}

#[tokio::test]
async fn losing_redis_for_longer_than_the_ttl_loses_the_lease() {
    let mut server = RedisServer::start().unwrap();
    let redis = connect(&server, None).await;
    let a = lease(&redis, "a", 1_000);
    let held = a.try_acquire().await.unwrap().unwrap();

    let killed = Instant::now();
    server.kill();
    tokio::time::timeout(WAIT, held.lost().cancelled())
        .await
        .expect("lost fires");
    assert!(
        killed.elapsed() <= Duration::from_millis(2_000),
        "noticed only after {:?}",
        killed.elapsed()
    );
}

#[tokio::test]
async fn a_waiting_standby_gives_up_on_shutdown() {
    let server = RedisServer::start().unwrap();
    let redis = connect(&server, None).await;
    let _held = lease(&redis, "a", 5_000)
        .try_acquire()
        .await
        .unwrap()
        .unwrap();
    let shutdown = CancellationToken::new();
    let standby = lease(&redis, "b", 5_000);
    let waiting = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { standby.acquire(&shutdown).await })
    };

    shutdown.cancel();
    let got = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert!(got.is_none());
}

#[tokio::test]
async fn tenants_have_separate_leases_and_fences() {
    let server = RedisServer::start().unwrap();
    let acme = lease(&connect(&server, Some("acme")).await, "a", 1_000);
    let globex = lease(&connect(&server, Some("globex")).await, "a", 1_000);

    let one = acme.try_acquire().await.unwrap();
    let other = globex.try_acquire().await.unwrap();

    assert!(
        one.is_some() && other.is_some(),
        "each tenant has its own lease"
    );
    assert_eq!(acme.key(), "tenant:acme:lease:{single}");
    assert_eq!(acme.fence_name(), "tenant:acme:single");
}

#[tokio::test]
async fn the_held_gauge_follows_the_lease_and_acquisitions_are_counted() {
    let server = RedisServer::start().unwrap();
    let redis = connect(&server, None).await;
    let metrics = Metrics::new();
    let a = lease(&redis, "a", 1_000).with_metrics(LeaseMetrics::register(&metrics));

    let held = a.try_acquire().await.unwrap().unwrap();
    let text = metrics.encode();
    assert!(
        text.contains(r#"bus_lease_held{name="single"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"bus_lease_acquired_total{name="single"} 1"#),
        "{text}"
    );

    held.release().await.unwrap();
    let text = metrics.encode();
    assert!(
        text.contains(r#"bus_lease_held{name="single"} 0"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_lost_lease_sets_the_held_gauge_to_zero() {
    let server = RedisServer::start().unwrap();
    let redis = connect(&server, None).await;
    let metrics = Metrics::new();
    let a = lease(&redis, "a", 600).with_metrics(LeaseMetrics::register(&metrics));
    let held = a.try_acquire().await.unwrap().unwrap();

    let mut conn = redis.shared();
    let () = redis::cmd("DEL")
        .arg(a.key())
        .query_async(&mut conn)
        .await
        .unwrap();

    until("lost fires and the gauge drops to 0", WAIT, || async {
        held.lost().is_cancelled()
            && metrics
                .encode()
                .contains(r#"bus_lease_held{name="single"} 0"#)
    })
    .await;
}
