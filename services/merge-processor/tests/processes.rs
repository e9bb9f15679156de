//! Two real merge-processor processes: one active, one hot standby. SIGKILL the active one and
//! the standby takes over within seconds, including the work the dead one had read but not
//! acknowledged; SIGTERM releases the lease and exits 0.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bus_core::redis;
use bus_testkit::{ServiceProcess, eventually, free_port};
use common::*;

/// A merge-processor process (SIGKILLed when dropped) and its ops port.
struct Process {
    process: ServiceProcess,
    port: u16,
}

impl Process {
    fn start(env: &Env, logs: &Path, name: &str) -> Process {
        let port = free_port();
        let vars = [
            ("REDIS_URL", env.redis_server.url()),
            ("DATABASE_URL", env.db.url().to_owned()),
            ("DATABASE_MAX_CONNECTIONS", "4".to_owned()),
            ("CONSUMER_NAME", name.to_owned()),
            ("OPS_ADDR", format!("127.0.0.1:{port}")),
            ("LEASE__TTL_MS", "2000".to_owned()),
            ("WORKER__BLOCK_MS", "200".to_owned()),
        ];
        let binary = Path::new(env!("CARGO_BIN_EXE_merge-processor"));
        let process = ServiceProcess::spawn(name, binary, &vars, logs)
            .expect("start the merge-processor binary");
        Process { process, port }
    }
}

#[tokio::test]
async fn the_standby_takes_over_within_seconds_when_the_active_process_is_killed() {
    let env = Env::start().await;
    let pool = &env.pool;
    let logs = tempfile::tempdir().unwrap();
    let mut first = Process::start(&env, logs.path(), "mp-a");
    until("mp-a to become active", WAIT, || async {
        metric(first.port, "merge_processor_active").await == Some(1.0)
    })
    .await;
    let second = Process::start(&env, logs.path(), "mp-b");
    until("mp-b to stand by, ready", WAIT, || async {
        readyz(second.port).await == 200
            && metric(second.port, "merge_processor_active").await == Some(0.0)
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
        Some("mp-a")
    );

    first.process.sigkill();
    let killed = Instant::now();
    // As if mp-a had read this request just before it died: pending with mp-a, never acked.
    let (c, d) = (
        profile(pool, BRAND, 20).await,
        profile(pool, BRAND, 10).await,
    );
    publish(
        &env.redis,
        &[request(&[c, d], false, Some("r-read-by-the-dead"))],
    )
    .await;
    let read: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg("mp-a")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(STREAM)
        .arg(">")
        .query_async(&mut env.redis.shared())
        .await
        .unwrap();
    assert!(matches!(read, redis::Value::Array(ref streams) if !streams.is_empty()));
    let (e, f) = (
        profile(pool, BRAND, 20).await,
        profile(pool, BRAND, 10).await,
    );
    publish(&env.redis, &[request(&[e, f], false, Some("r-new"))]).await;

    let by = eventually(
        "mp-b to apply both requests",
        Duration::from_secs(10),
        || async {
            let reclaimed = merged_by(pool, "r-read-by-the-dead").await?;
            let new = merged_by(pool, "r-new").await?;
            Some((reclaimed.0, new.0))
        },
    )
    .await;
    let took = killed.elapsed();

    assert_eq!(by, ("mp-b".to_owned(), "mp-b".to_owned()));
    assert!(took < Duration::from_secs(10), "took over after {took:?}");
    assert_eq!(
        metric(second.port, "merge_processor_active").await,
        Some(1.0)
    );
    assert_eq!(
        metric(second.port, "merge_processor_takeovers_total").await,
        Some(1.0)
    );
    assert_eq!(readyz(second.port).await, 200);

    let status = second.process.terminate(WAIT).await.unwrap();
    assert!(status.success(), "exited with {status}");
    assert_eq!(
        lease_holder(&env.redis).await,
        None,
        "the lease was released"
    );
}
