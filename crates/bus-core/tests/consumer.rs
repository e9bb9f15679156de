//! The consumer-group worker's guarantees, against a private redis-server.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bus_core::{HandlerError, Outcome};
use bus_testkit::RedisServer;
use common::*;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn nothing_is_acked_while_the_handler_fails_and_everything_is_acked_after_it_succeeds() {
    let redis = RedisServer::start().unwrap();
    let bus = bus(&redis.url()).await;
    produce(&bus, "s", 25).await;
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healthy.clone();
    let handler = FnHandler::new(move |_| {
        if flag.load(Ordering::SeqCst) {
            Ok(Outcome::done())
        } else {
            Err(HandlerError::transient(anyhow::anyhow!("database down")))
        }
    });
    let settings = bus_core::WorkerSettings {
        max_deliveries: 1_000,
        ..fast_worker()
    };
    let (task, shutdown) = spawn(&bus, config("s", "g", "c1", settings), handler.clone());

    until("the handler has failed a few times", WAIT, || async {
        handler.calls() >= 6
    })
    .await;
    // Nothing is acked, and read-ahead stops at max_in_flight (2) batches of 10.
    assert_eq!(
        pending_count(&bus, "s", "g").await,
        20,
        "read entries stay pending while failing"
    );
    assert!(handler.handled().is_empty());

    healthy.store(true, Ordering::SeqCst);
    until("everything is acked", WAIT, || async {
        pending_count(&bus, "s", "g").await == 0
    })
    .await;
    assert_eq!(handler.handled().len(), 25);
    assert!(dead_letters(&bus, "s").await.is_empty());
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_undecodable_entry_and_a_rejected_entry_are_dead_lettered_while_the_rest_is_processed() {
    #[derive(Debug)]
    struct Num(u64);
    impl bus_core::StreamMessage for Num {
        fn decode(fields: &bus_core::Fields) -> Result<Self, bus_core::DecodeError> {
            let raw = bus_core::required(fields, "n")?;
            raw.parse()
                .map(Num)
                .map_err(|e| bus_core::DecodeError::invalid("n", e))
        }
        fn encode(&self) -> bus_core::Fields {
            [("n", self.0.to_string())].into_iter().collect()
        }
    }
    struct RejectSeven(Arc<AtomicUsize>);
    impl bus_core::Handler for RejectSeven {
        type Message = Num;
        async fn handle(&self, batch: bus_core::Batch<'_, Num>) -> Result<Outcome, HandlerError> {
            let mut outcome = Outcome::done();
            for d in batch.entries {
                if d.message.0 == 7 {
                    outcome = outcome.reject(d.id, "seven is not allowed");
                } else {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(outcome)
        }
    }

    let redis = RedisServer::start().unwrap();
    let bus = bus(&redis.url()).await;
    produce(&bus, "s", 10).await;
    let bad: bus_core::Fields = [("n", "not-a-number"), ("extra", "kept")]
        .into_iter()
        .collect();
    let bad_id = bus
        .producer(Default::default())
        .send_fields("s", vec![bad])
        .await
        .unwrap()[0];
    produce(&bus, "s", 5).await;
    let done = Arc::new(AtomicUsize::new(0));
    let (task, shutdown) = spawn(
        &bus,
        config("s", "g", "c1", fast_worker()),
        RejectSeven(done.clone()),
    );

    until("all entries are settled", WAIT, || async {
        pending_count(&bus, "s", "g").await == 0 && done.load(Ordering::SeqCst) == 14
    })
    .await;
    until("two dead letters exist", WAIT, || async {
        dead_letters(&bus, "s").await.len() == 2
    })
    .await;
    let letters = dead_letters(&bus, "s").await;
    let undecodable = letters
        .iter()
        .find(|f| f.get("dlq_kind") == Some("decode"))
        .unwrap();
    assert_eq!(
        undecodable.get("dlq_original_id"),
        Some(bad_id.to_string().as_str())
    );
    assert_eq!(
        undecodable.get("extra"),
        Some("kept"),
        "original fields travel with the dead letter"
    );
    assert!(
        undecodable
            .get("dlq_reason")
            .unwrap()
            .contains("field `n` is invalid")
    );
    assert_eq!(undecodable.get("dlq_stream"), Some("s"));
    assert_eq!(undecodable.get("dlq_group"), Some("g"));
    assert_eq!(undecodable.get("dlq_consumer"), Some("c1"));
    assert_eq!(undecodable.get("dlq_deliveries"), Some("1"));
    let rejected = letters
        .iter()
        .find(|f| f.get("dlq_kind") == Some("permanent"))
        .unwrap();
    assert_eq!(rejected.get("n"), Some("7"));
    assert_eq!(rejected.get("dlq_reason"), Some("seven is not allowed"));

    // The worker keeps running after dead-lettering.
    produce(&bus, "s", 3).await;
    until("later entries are processed", WAIT, || async {
        done.load(Ordering::SeqCst) == 17
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_permanently_failing_batch_is_split_until_the_bad_entry_is_isolated() {
    let redis = RedisServer::start().unwrap();
    let bus = bus(&redis.url()).await;
    let ids = produce(&bus, "s", 10).await;
    let poison = ids[6];
    let handler = FnHandler::new(move |batch| {
        if batch.ids().contains(&poison) {
            Err(HandlerError::permanent(anyhow::anyhow!(
                "constraint violated"
            )))
        } else {
            Ok(Outcome::done())
        }
    });
    let (task, shutdown) = spawn(&bus, config("s", "g", "c1", fast_worker()), handler.clone());
    until("the batch is settled", WAIT, || async {
        pending_count(&bus, "s", "g").await == 0 && handler.handled().len() == 9
    })
    .await;
    let letters = dead_letters(&bus, "s").await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].get("dlq_original_id"),
        Some(poison.to_string().as_str())
    );
    assert!(
        letters[0]
            .get("dlq_reason")
            .unwrap()
            .contains("constraint violated")
    );
    assert!(!handler.handled().contains(&poison));
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_transiently_failing_handler_is_retried_and_succeeds_without_dead_letters() {
    let redis = RedisServer::start().unwrap();
    let bus = bus(&redis.url()).await;
    produce(&bus, "s", 5).await;
    let failures = Arc::new(AtomicUsize::new(0));
    let f = failures.clone();
    let handler = FnHandler::new(move |_| {
        if f.fetch_add(1, Ordering::SeqCst) < 2 {
            Err(HandlerError::transient(anyhow::anyhow!("timeout")))
        } else {
            Ok(Outcome::done())
        }
    });
    let (task, shutdown) = spawn(&bus, config("s", "g", "c1", fast_worker()), handler.clone());
    until("all five are handled", WAIT, || async {
        handler.handled().len() == 5 && pending_count(&bus, "s", "g").await == 0
    })
    .await;
    assert_eq!(handler.calls(), 3, "two failures, then success");
    assert!(dead_letters(&bus, "s").await.is_empty());
    let metrics = bus.metrics.encode();
    assert!(
        metrics.contains(r#"bus_entries_retried_total{stream="s",group="g"} 10"#),
        "{metrics}"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_entry_that_always_fails_is_dead_lettered_after_max_deliveries() {
    let redis = RedisServer::start().unwrap();
    let bus = bus(&redis.url()).await;
    let ids = produce(&bus, "s", 4).await;
    let poison = ids[2];
    let handler = FnHandler::new(move |batch| {
        if batch.ids().contains(&poison) {
            Err(HandlerError::transient(anyhow::anyhow!("always times out")))
        } else {
            Ok(Outcome::done())
        }
    });
    let (task, shutdown) = spawn(&bus, config("s", "g", "c1", fast_worker()), handler.clone());
    until("the poison entry is dead-lettered", WAIT, || async {
        dead_letters(&bus, "s").await.len() == 1
    })
    .await;
    until("nothing is pending", WAIT, || async {
        pending_count(&bus, "s", "g").await == 0
    })
    .await;
    let letter = &dead_letters(&bus, "s").await[0];
    assert_eq!(letter.get("dlq_kind"), Some("max_deliveries"));
    assert_eq!(letter.get("dlq_deliveries"), Some("3"));
    assert!(
        letter
            .get("dlq_reason")
            .unwrap()
            .contains("always times out")
    );
    let mut handled = handler.handled();
    handled.sort();
    assert_eq!(handled, vec![ids[0], ids[1], ids[3]]);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_outage_longer_than_max_deliveries_ends_in_the_entries_applied_not_dead_lettered() {
    let redis = RedisServer::start().unwrap();
    let bus = bus(&redis.url()).await;
    produce(&bus, "s", 4).await;
    let failures = Arc::new(AtomicUsize::new(0));
    let f = failures.clone();
    // Four times the delivery budget of fast_worker() (3) of "database unreachable".
    let handler = FnHandler::new(move |_| {
        if f.fetch_add(1, Ordering::SeqCst) < 12 {
            Err(HandlerError::unavailable(anyhow::anyhow!(
                "connection refused"
            )))
        } else {
            Ok(Outcome::done())
        }
    });
    let (task, shutdown) = spawn(&bus, config("s", "g", "c1", fast_worker()), handler.clone());
    until("all four are handled", WAIT, || async {
        handler.handled().len() == 4 && pending_count(&bus, "s", "g").await == 0
    })
    .await;
    assert_eq!(handler.calls(), 13, "twelve outage failures, then success");
    assert!(dead_letters(&bus, "s").await.is_empty());
    let metrics = bus.metrics.encode();
    assert!(
        metrics.contains(r#"bus_entries_failed_total{stream="s",group="g",kind="unavailable"} 48"#),
        "{metrics}"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_entry_redelivered_past_max_deliveries_is_dead_lettered_on_read() {
    let redis = RedisServer::start().unwrap();
    let bus = bus(&redis.url()).await;
    produce(&bus, "s", 1).await;
    // A consumer that died on the entry every time: delivered three times, never acked.
    let _: () = redis_cmd(
        &bus,
        bus_core::redis::cmd("XGROUP")
            .arg("CREATE")
            .arg("s")
            .arg("g")
            .arg("0"),
    )
    .await;
    for id in [">", "0", "0"] {
        let _: bus_core::redis::Value = redis_cmd(
            &bus,
            bus_core::redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("crashy")
                .arg("STREAMS")
                .arg("s")
                .arg(id),
        )
        .await;
    }
    let handler = FnHandler::ok();
    let settings = bus_core::WorkerSettings {
        claim_min_idle_ms: 1,
        ..fast_worker()
    };
    let (task, shutdown) = spawn(&bus, config("s", "g", "c0", settings), handler.clone());
    until("the entry is dead-lettered", WAIT, || async {
        dead_letters(&bus, "s").await.len() == 1
    })
    .await;
    assert!(handler.handled().is_empty(), "the handler never sees it");
    let letter = &dead_letters(&bus, "s").await[0];
    assert_eq!(letter.get("dlq_kind"), Some("max_deliveries"));
    assert!(
        letter
            .get("dlq_reason")
            .unwrap()
            .contains("without being acknowledged")
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_consumer_killed_mid_batch_is_reclaimed_by_another() {
    let redis = RedisServer::start().unwrap();
    let bus = bus(&redis.url()).await;
    produce(&bus, "s", 30).await;
    // The first consumer takes a batch and hangs forever: then its task is killed.
    let (hung_tx, mut hung_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    struct Hang(tokio::sync::mpsc::UnboundedSender<()>);
    impl bus_core::Handler for Hang {
        type Message = bus_core::Fields;
        async fn handle(
            &self,
            _: bus_core::Batch<'_, bus_core::Fields>,
        ) -> Result<Outcome, HandlerError> {
            let _ = self.0.send(());
            std::future::pending().await
        }
    }
    let settings = bus_core::WorkerSettings {
        max_in_flight: 1,
        ..fast_worker()
    };
    let (dead_task, _) = spawn(&bus, config("s", "g", "dies", settings), Hang(hung_tx));
    hung_rx.recv().await.unwrap();
    dead_task.abort();
    assert_eq!(
        pending_count(&bus, "s", "g").await,
        10,
        "the dead consumer holds its batch"
    );

    let survivor = FnHandler::ok();
    let settings = bus_core::WorkerSettings {
        claim_min_idle_ms: 200,
        ..fast_worker()
    };
    let (task, shutdown) = spawn(
        &bus,
        config("s", "g", "survivor", settings),
        survivor.clone(),
    );
    until("all 30 are handled", WAIT, || async {
        pending_count(&bus, "s", "g").await == 0 && survivor.handled().len() == 30
    })
    .await;
    let mut handled = survivor.handled();
    handled.sort();
    handled.dedup();
    assert_eq!(handled.len(), 30, "each entry handled once");
    assert!(
        bus.metrics
            .encode()
            .contains(r#"bus_entries_reclaimed_total{stream="s",group="g"} 10"#)
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_restarted_consumer_rereads_its_own_pending_entries_first() {
    let redis = RedisServer::start().unwrap();
    let bus = bus(&redis.url()).await;
    let ids = produce(&bus, "s", 5).await;
    let _: () = redis_cmd(
        &bus,
        bus_core::redis::cmd("XGROUP")
            .arg("CREATE")
            .arg("s")
            .arg("g")
            .arg("0"),
    )
    .await;
    let _: bus_core::redis::Value = redis_cmd(
        &bus,
        bus_core::redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("me")
            .arg("COUNT")
            .arg(3)
            .arg("STREAMS")
            .arg("s")
            .arg(">"),
    )
    .await;
    let handler = FnHandler::ok();
    let (task, shutdown) = spawn(&bus, config("s", "g", "me", fast_worker()), handler.clone());
    until("all five are handled", WAIT, || async {
        handler.handled().len() == 5
    })
    .await;
    assert_eq!(
        &handler.handled()[..3],
        &ids[..3],
        "own pending entries come first"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_deleted_group_is_recreated() {
    let redis = RedisServer::start().unwrap();
    let bus = bus(&redis.url()).await;
    let handler = FnHandler::ok();
    let (task, shutdown) = spawn(&bus, config("s", "g", "c1", fast_worker()), handler.clone());
    produce(&bus, "s", 3).await;
    until("first entries are handled", WAIT, || async {
        handler.handled().len() == 3
    })
    .await;
    let _: i64 = redis_cmd(
        &bus,
        bus_core::redis::cmd("XGROUP")
            .arg("DESTROY")
            .arg("s")
            .arg("g"),
    )
    .await;
    produce(&bus, "s", 2).await;
    // Recreated from `0`: the replay is harmless because handlers are idempotent.
    until("new entries are handled after NOGROUP", WAIT, || async {
        handler.handled().len() >= 5
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_worker_finishes_its_work_across_a_redis_restart() {
    let mut redis = RedisServer::start_with_aof().unwrap();
    let bus = bus(&redis.url()).await;
    let handler = FnHandler::ok();
    let (task, shutdown) = spawn(&bus, config("s", "g", "c1", fast_worker()), handler.clone());
    produce(&bus, "s", 20).await;
    until("first entries are handled", WAIT, || async {
        handler.handled().len() == 20
    })
    .await;

    redis.kill();
    redis.restart().unwrap();
    produce(&bus, "s", 20).await;
    until(
        "entries written after the restart are handled",
        WAIT,
        || async { handler.handled().len() >= 40 },
    )
    .await;
    until("nothing is pending", WAIT, || async {
        pending_count(&bus, "s", "g").await == 0
    })
    .await;
    let mut handled = handler.handled();
    handled.sort();
    handled.dedup();
    assert_eq!(handled.len(), 40);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_mid_batch_finishes_and_acks_the_batch_then_leaves_the_group() {
    let redis = RedisServer::start().unwrap();
    let bus = bus(&redis.url()).await;
    produce(&bus, "s", 10).await;
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let release = Arc::new(tokio::sync::Notify::new());
    struct Slow(
        tokio::sync::mpsc::UnboundedSender<()>,
        Arc<tokio::sync::Notify>,
        Arc<AtomicUsize>,
    );
    impl bus_core::Handler for Slow {
        type Message = bus_core::Fields;
        async fn handle(
            &self,
            batch: bus_core::Batch<'_, bus_core::Fields>,
        ) -> Result<Outcome, HandlerError> {
            let _ = self.0.send(());
            self.1.notified().await;
            self.2.fetch_add(batch.entries.len(), Ordering::SeqCst);
            Ok(Outcome::done())
        }
    }
    let done = Arc::new(AtomicUsize::new(0));
    let (task, shutdown) = spawn(
        &bus,
        config("s", "g", "c1", fast_worker()),
        Slow(started_tx, release.clone(), done.clone()),
    );
    started_rx.recv().await.unwrap();
    shutdown.cancel();
    release.notify_one();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("exits within the drain deadline")
        .unwrap()
        .unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 10);
    assert_eq!(
        pending_count(&bus, "s", "g").await,
        0,
        "the in-flight batch was acked"
    );
    let consumers: bus_core::redis::Value = redis_cmd(
        &bus,
        bus_core::redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg("s")
            .arg("g"),
    )
    .await;
    assert_eq!(
        consumers,
        bus_core::redis::Value::Array(vec![]),
        "a consumer with nothing pending leaves"
    );
}

#[tokio::test]
async fn idle_consumers_are_removed_only_when_nothing_is_pending() {
    let redis = RedisServer::start().unwrap();
    let bus = bus(&redis.url()).await;
    produce(&bus, "s", 2).await;
    let _: () = redis_cmd(
        &bus,
        bus_core::redis::cmd("XGROUP")
            .arg("CREATE")
            .arg("s")
            .arg("g")
            .arg("$"),
    )
    .await;
    let _: i64 = redis_cmd(
        &bus,
        bus_core::redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg("s")
            .arg("g")
            .arg("idle-empty"),
    )
    .await;
    produce(&bus, "s", 1).await;
    let _: bus_core::redis::Value = redis_cmd(
        &bus,
        bus_core::redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("idle-busy")
            .arg("STREAMS")
            .arg("s")
            .arg(">"),
    )
    .await;
    let settings = bus_core::WorkerSettings {
        idle_consumer_timeout_ms: 1,
        claim_min_idle_ms: 3_600_000,
        ..fast_worker()
    };
    let (task, shutdown) = spawn(&bus, config("s", "g", "me", settings), FnHandler::ok());
    let names = || async {
        let rows: Vec<std::collections::HashMap<String, bus_core::redis::Value>> = redis_cmd(
            &bus,
            bus_core::redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg("s")
                .arg("g"),
        )
        .await;
        rows.iter()
            .map(|r| match r.get("name") {
                Some(bus_core::redis::Value::BulkString(b)) => {
                    String::from_utf8_lossy(b).into_owned()
                }
                _ => String::new(),
            })
            .collect::<Vec<_>>()
    };
    until("the empty idle consumer is removed", WAIT, || async {
        !names().await.contains(&"idle-empty".to_string())
    })
    .await;
    assert!(
        names().await.contains(&"idle-busy".to_string()),
        "a consumer with pending entries stays"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
