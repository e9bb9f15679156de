//! One active instance at a time, in-process: two instances share the group, one consumes and
//! one stands by (ready, inactive), the standby takes over when the active one stops, an
//! instance that loses its lease stops consuming, and a commit under a stale token is refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bus_core::{redis, sqlx};
use bus_testkit::{eventually, free_port, poll_until};
use common::*;

const ACTIVE: &str = "merge_processor_active";
const TAKEOVERS: &str = "merge_processor_takeovers_total";

#[tokio::test]
async fn only_one_instance_consumes_and_the_standby_takes_over_when_it_stops() {
    let env = Env::start().await;
    let pool = &env.pool;
    let (p1, p2) = (free_port(), free_port());
    let first = Instance::start_serving(&env, "mp-1", p1, fast_settings());
    until("mp-1 to hold the lease", WAIT, || async {
        lease_holder(&env.redis).await.as_deref() == Some("mp-1")
    })
    .await;
    let second = Instance::start_serving(&env, "mp-2", p2, fast_settings());
    until("mp-2 to stand by, ready and inactive", WAIT, || async {
        readyz(p2).await == 200 && metric(p2, ACTIVE).await == Some(0.0)
    })
    .await;

    let (a, b) = (
        profile(pool, BRAND, 20).await,
        profile(pool, BRAND, 10).await,
    );
    let ids = publish(&env.redis, &[request(&[a, b], false, Some("r-1"))]).await;
    settled(&env.redis, ids[0]).await;

    assert_eq!(
        merged_by(pool, "r-1").await.map(|m| m.0).as_deref(),
        Some("mp-1")
    );
    assert_eq!(metric(p1, ACTIVE).await, Some(1.0));
    assert_eq!(metric(p1, TAKEOVERS).await, Some(1.0));
    assert_eq!(metric(p2, ACTIVE).await, Some(0.0));
    assert_eq!(metric(p2, TAKEOVERS).await, Some(0.0));
    assert_eq!(group_consumers(&env.redis).await, vec!["mp-1".to_owned()]);
    assert_eq!(lease_holder(&env.redis).await.as_deref(), Some("mp-1"));

    let stopped = Instant::now();
    first.stop().await;
    until("mp-2 to take over", Duration::from_secs(5), || async {
        metric(p2, ACTIVE).await == Some(1.0)
    })
    .await;
    let (c, d) = (
        profile(pool, BRAND, 20).await,
        profile(pool, BRAND, 10).await,
    );
    let ids = publish(&env.redis, &[request(&[c, d], false, Some("r-2"))]).await;
    settled(&env.redis, ids[0]).await;

    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "the handover took {:?}",
        stopped.elapsed()
    );
    let (by, token) = merged_by(pool, "r-2").await.unwrap();
    let (_, first_token) = merged_by(pool, "r-1").await.unwrap();
    assert_eq!(by, "mp-2");
    assert!(token > first_token, "token {token} after {first_token}");
    assert_eq!(metric(p2, TAKEOVERS).await, Some(1.0));
    assert_eq!(readyz(p2).await, 200);
    second.stop().await;
}

#[tokio::test]
async fn a_commit_under_a_stale_token_is_refused_and_the_request_waits_for_a_current_one() {
    let env = Env::start().await;
    let pool = &env.pool;
    let port = free_port();
    let _mp = Instance::start_serving(&env, "mp-1", port, fast_settings());
    until("mp-1 to claim the fence", WAIT, || async {
        count(pool, "SELECT count(*) FROM lease_fences").await == 1
    })
    .await;
    // A newer holder (token 1000) has written since mp-1 took its token.
    sqlx::query("UPDATE lease_fences SET token = 1000, holder = 'newer'")
        .execute(pool)
        .await
        .unwrap();

    let (a, b) = (
        profile(pool, BRAND, 20).await,
        profile(pool, BRAND, 10).await,
    );
    let ids = publish(&env.redis, &[request(&[a, b], false, Some("r-1"))]).await;
    settled(&env.redis, ids[0]).await;

    // The first attempt (token 1) was refused; the request stayed pending, and mp-1 applied it
    // once its token sequence had moved past the fence.
    assert!(metric(port, "merge_processor_fenced_total").await >= Some(1.0));
    assert_eq!(
        merged_by(pool, "r-1").await,
        Some(("mp-1".to_owned(), 1001))
    );
    assert!(dead_letters(&env.redis).await.is_empty());
    assert_eq!(merged_into(pool, b).await, Some(a));
}

#[tokio::test]
async fn an_instance_that_loses_its_lease_stops_consuming_until_it_holds_it_again() {
    let env = Env::start().await;
    let pool = &env.pool;
    let port = free_port();
    let _mp = Instance::start_serving(&env, "mp-1", port, fast_settings());
    until("mp-1 to become active", WAIT, || async {
        metric(port, ACTIVE).await == Some(1.0)
    })
    .await;
    let key = env
        .redis
        .key("lease:{profiles.merge_requests:merge-processors}");

    // Someone else holds the lease now (as after a pause longer than the TTL).
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("intruder#999")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut env.redis.shared())
        .await
        .unwrap();
    until("mp-1 to notice and stand by", WAIT, || async {
        metric(port, ACTIVE).await == Some(0.0)
    })
    .await;
    let (a, b) = (
        profile(pool, BRAND, 20).await,
        profile(pool, BRAND, 10).await,
    );
    publish(&env.redis, &[request(&[a, b], false, Some("r-1"))]).await;
    let applied_while_standby = poll_until(Duration::from_secs(1), || async {
        merged_by(pool, "r-1").await.is_some()
    })
    .await;
    assert!(!applied_while_standby, "a standby consumed");

    let () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut env.redis.shared())
        .await
        .unwrap();
    let by = eventually(
        "mp-1 to take the lease back and apply r-1",
        WAIT,
        || async { merged_by(pool, "r-1").await },
    )
    .await;
    assert_eq!(by.0, "mp-1");
    assert_eq!(metric(port, TAKEOVERS).await, Some(2.0));
}
