//! The commerce pipeline end to end, with the real binaries as processes against a private
//! Redis and PostgreSQL: gateway → normalizer ×2 → merge-processor (active + standby) →
//! feature-builder → prediction-dispatcher.
//!
//! Customers post events whose identifiers overlap. Every customer first shows up twice under
//! different identifiers (two profiles); a later event carries both. For most customers the two
//! profiles hold no conflicting identifiers and are merged; for some, both profiles hold an
//! email of their own, and the merge is queued for manual review instead. While the second
//! half of the events flows, the active merge-processor, a normalizer, the feature-builder and
//! the prediction-dispatcher are SIGKILLed (the last two restarted). The final tables must be
//! exactly what the input implies: no event lost or counted twice, no dead letter, nothing
//! pending, every purchasing profile predicted, and the standby merge-processor took over.
//!
//! The test builds the five binaries first with `cargo build -p …` (same profile and target
//! directory as this test).

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bus_core::redis::{self, aio::MultiplexedConnection};
use bus_core::serde_json::{Value, json};
use bus_core::sqlx::{self, PgPool};
use bus_testkit::{PostgresServer, RedisServer, ServiceProcess, eventually, free_port, until};

const WAIT: Duration = Duration::from_secs(120);
/// Customers whose two profiles are merged automatically.
const AUTO: usize = 120;
/// Customers whose two profiles carry different emails: queued for review.
const REVIEW: usize = 20;
const TOKEN: &str = "e2e-secret";
const PACKAGES: [&str; 5] = [
    "gateway",
    "normalizer",
    "merge-processor",
    "feature-builder",
    "prediction-dispatcher",
];

fn binaries() -> BTreeMap<&'static str, PathBuf> {
    let test = std::env::current_exe().unwrap();
    let paths = bus_testkit::workspace_binaries(env!("CARGO"), &test, &PACKAGES).unwrap();
    PACKAGES.into_iter().zip(paths).collect()
}

/// Cents of the purchase in an auto customer's phase-1 event (email only).
fn first_purchase(i: usize) -> i64 {
    1050 + 100 * i as i64
}
/// Cents of the purchase that carries both identifiers.
fn second_purchase(i: usize) -> i64 {
    525 + 100 * i as i64
}
/// Cents of a review customer's phase-1 purchase (second email).
fn review_purchase(j: usize) -> i64 {
    2000 + j as i64
}
const REVIEW_SECOND: i64 = 700;

fn money(cents: i64) -> Value {
    json!(cents as f64 / 100.0)
}

fn event(id: String, kind: &str, payload: Value, minute: usize) -> Value {
    json!({
        "event_id": id,
        "brand_id": "acme",
        "event_type": kind,
        "payload": payload,
        "timestamp": format!("2024-11-{:02}T{:02}:{:02}:00Z", 1 + minute / 1440, (minute / 60) % 24, minute % 60),
    })
}

/// Phase 1: every customer appears under two different identifiers (two profiles).
fn phase_one() -> Vec<Value> {
    let mut events = Vec::new();
    for i in 0..AUTO {
        events.push(event(
            format!("a-{i}"),
            "page_view",
            json!({"phone": format!("+1 555-010-{i:04}"), "page": "/home"}),
            i,
        ));
        events.push(event(
            format!("b-{i}"),
            "purchase",
            json!({"email": format!("Customer{i}@Example.com"), "total": money(first_purchase(i))}),
            i + 1,
        ));
    }
    for j in 0..REVIEW {
        events.push(event(
            format!("r1-{j}"),
            "page_view",
            json!({"phone": format!("+44 7700 9{j:05}"), "email": format!("first{j}@example.com")}),
            j,
        ));
        events.push(event(
            format!("r2-{j}"),
            "purchase",
            json!({"email": format!("second{j}@example.com"), "total": money(review_purchase(j))}),
            j + 1,
        ));
    }
    events
}

/// Phase 2: one event per customer carrying both identifiers (formatted differently).
fn phase_two() -> Vec<Value> {
    let mut events = Vec::new();
    for i in 0..AUTO {
        events.push(event(
            format!("c-{i}"),
            "purchase",
            json!({
                "phone": format!("+1555010{i:04}"),
                "email": format!("customer{i}@example.com"),
                "total": money(second_purchase(i)),
            }),
            600 + i,
        ));
    }
    for j in 0..REVIEW {
        events.push(event(
            format!("r3-{j}"),
            "purchase",
            json!({
                "phone": format!("+447700 9{j:05}"),
                "email": format!("second{j}@example.com"),
                "total": money(REVIEW_SECOND),
            }),
            600 + j,
        ));
    }
    events
}

async fn post_events(gateway: &str, events: &[Value]) {
    let client = reqwest::Client::new();
    for chunk in events.chunks(50) {
        let response = client
            .post(format!("http://{gateway}/api/events"))
            .bearer_auth(TOKEN)
            .json(&chunk)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status.as_u16(), 202, "{body}");
        assert_eq!(body["accepted"], chunk.len(), "{body}");
    }
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap_or(-1)
}

async fn metrics(ops: &str) -> String {
    match reqwest::get(format!("http://{ops}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Whether a service's `/metrics` shows it as the active merge-processor.
async fn is_active(ops: &str) -> bool {
    metrics(ops)
        .await
        .lines()
        .any(|l| l.starts_with("merge_processor_active") && l.trim_end().ends_with(" 1"))
}

/// Entries pending in `group` on `stream`.
async fn pending(conn: &MultiplexedConnection, stream: &str, group: &str) -> u64 {
    let mut conn = conn.clone();
    let reply: redis::RedisResult<(u64, redis::Value, redis::Value, redis::Value)> =
        redis::cmd("XPENDING")
            .arg(stream)
            .arg(group)
            .query_async(&mut conn)
            .await;
    reply.map(|r| r.0).unwrap_or(u64::MAX)
}

async fn xlen(conn: &MultiplexedConnection, stream: &str) -> u64 {
    let mut conn = conn.clone();
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(&mut conn)
        .await
        .unwrap()
}

struct Services {
    bins: BTreeMap<&'static str, PathBuf>,
    base: Vec<(&'static str, String)>,
    logs: PathBuf,
}

impl Services {
    /// Starts `package` as `name`, on its own ops port; returns the process and that port.
    fn start(
        &self,
        package: &str,
        name: &str,
        extra: &[(&'static str, String)],
    ) -> (ServiceProcess, String) {
        let ops = format!("127.0.0.1:{}", free_port());
        let mut env = self.base.clone();
        env.push(("CONSUMER_NAME", name.to_owned()));
        env.push(("OPS_ADDR", ops.clone()));
        env.extend(extra.iter().cloned());
        let process = ServiceProcess::spawn(name, &self.bins[package], &env, &self.logs).unwrap();
        (process, ops)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_customers_are_merged_or_queued_and_survive_killed_workers() {
    let bins = binaries();
    let redis_server = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let services = Services {
        bins,
        base: vec![
            ("REDIS_URL", redis_server.url()),
            ("DATABASE_URL", db.url()),
            ("WORKER__BATCH_SIZE", "5".into()),
            ("WORKER__BLOCK_MS", "200".into()),
            ("WORKER__CLAIM_MIN_IDLE_MS", "1000".into()),
            ("WORKER__CLAIM_INTERVAL_MS", "300".into()),
            ("LEASE__TTL_MS", "2000".into()),
        ],
        logs: logs.path().to_path_buf(),
    };
    let http = format!("127.0.0.1:{}", free_port());
    let (_gateway, _) = services.start(
        "gateway",
        "gateway",
        &[("HTTP_ADDR", http.clone()), ("API_TOKEN", TOKEN.into())],
    );
    let (mut normalizer_a, _) = services.start("normalizer", "normalizer-a", &[]);
    let (_normalizer_b, _) = services.start("normalizer", "normalizer-b", &[]);
    let (mut merge_a, merge_a_ops) = services.start("merge-processor", "merge-a", &[]);
    until("merge-a to be active", WAIT, || is_active(&merge_a_ops)).await;
    let (_merge_b, merge_b_ops) = services.start("merge-processor", "merge-b", &[]);
    let (mut features, _) = services.start("feature-builder", "features-1", &[]);
    let (mut dispatcher, _) = services.start("prediction-dispatcher", "dispatcher-1", &[]);

    let pool = PgPool::connect(&db.url()).await.unwrap();
    let client = redis::Client::open(redis_server.url()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    until("the gateway to listen", WAIT, || async {
        reqwest::get(format!("http://{http}/healthz")).await.is_ok()
    })
    .await;

    // Phase 1: two profiles per customer.
    let first = phase_one();
    post_events(&http, &first).await;
    let expected = first.len() as i64;
    until("phase 1 to be normalized", WAIT, || async {
        count(&pool, "SELECT count(*) FROM events").await == expected
    })
    .await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM profiles").await,
        (2 * (AUTO + REVIEW)) as i64
    );

    // Phase 2, first half; then kill workers mid-run.
    let second = phase_two();
    let (head, tail) = second.split_at(second.len() / 2);
    post_events(&http, head).await;
    until("some merges to be applied by merge-a", WAIT, || async {
        count(&pool, "SELECT count(*) FROM profile_merges").await >= 5
    })
    .await;
    merge_a.sigkill();
    normalizer_a.sigkill();
    features.sigkill();
    dispatcher.sigkill();
    let (_features, _) = services.start("feature-builder", "features-1", &[]);
    let (_dispatcher, _) = services.start("prediction-dispatcher", "dispatcher-1", &[]);
    until("merge-b to take over", WAIT, || is_active(&merge_b_ops)).await;
    post_events(&http, tail).await;

    // Everything lands.
    let all = (first.len() + second.len()) as i64;
    until("every event to be stored", WAIT, || async {
        count(&pool, "SELECT count(*) FROM events").await == all
    })
    .await;
    until("every merge and review to be decided", WAIT, || async {
        count(&pool, "SELECT count(*) FROM profile_merges").await == AUTO as i64
            && count(&pool, "SELECT count(*) FROM manual_review_queue").await == REVIEW as i64
    })
    .await;
    until(
        "every event to be counted in the features",
        WAIT,
        || async {
            count(
                &pool,
                "SELECT coalesce(sum(event_count), 0)::bigint FROM profile_features",
            )
            .await
                == all
        },
    )
    .await;
    let live = (AUTO + 2 * REVIEW) as i64;
    // A review customer's older profile got the event with both identifiers; when that was
    // the profile that had only viewed a page before, the other one never purchased.
    let purchasing = count(
        &pool,
        "SELECT count(*) FROM profiles JOIN profile_features USING (profile_id)
         WHERE merged_into IS NULL AND order_count > 0",
    )
    .await;
    assert!(
        purchasing >= (AUTO + REVIEW) as i64,
        "{purchasing} purchasing profiles"
    );
    let predicted = bus_testkit::poll_until(WAIT, || async {
        count(
            &pool,
            "SELECT count(*) FROM predictions p JOIN profiles USING (profile_id)
             JOIN profile_features f USING (profile_id)
             WHERE profiles.merged_into IS NULL AND f.order_count > 0",
        )
        .await
            == 3 * purchasing
    })
    .await;
    if !predicted {
        let missing: Vec<(uuid::Uuid, i64, Option<i32>, Option<bool>)> = sqlx::query_as(
            "SELECT p.profile_id, (SELECT count(*) FROM predictions x WHERE x.profile_id = p.profile_id),
                    f.order_count, p.merged_into IS NULL
             FROM profiles p LEFT JOIN profile_features f USING (profile_id)
             WHERE p.merged_into IS NULL AND f.order_count > 0
               AND (SELECT count(*) FROM predictions x WHERE x.profile_id = p.profile_id) < 3",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut stats = Vec::new();
        for stream in [
            "predictions.requests",
            "predictions.requests:dlq",
            "predictions.completed",
        ] {
            stats.push((stream, xlen(&conn, stream).await));
        }
        let waiting = pending(&conn, "predictions.requests", "prediction-processors").await;
        panic!(
            "live profiles without three predictions ({}): {missing:?}; streams {stats:?}; pending {waiting}",
            missing.len()
        );
    }
    for (stream, group) in [
        ("events.raw", "normalizers"),
        ("profiles.merge_requests", "merge-processors"),
        ("events.normalized", "event-processors"),
        ("predictions.requests", "prediction-processors"),
    ] {
        let c = &conn;
        until(
            &format!("nothing pending in {group}"),
            WAIT,
            || async move { pending(c, stream, group).await == 0 },
        )
        .await;
        assert_eq!(
            xlen(&conn, &format!("{stream}:dlq")).await,
            0,
            "dead letters in {stream}"
        );
    }

    // Profiles: one live profile per auto customer, two per review customer.
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM profiles WHERE merged_into IS NULL"
        )
        .await,
        live
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM profiles WHERE merged_into IS NOT NULL"
        )
        .await,
        AUTO as i64
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM predictions JOIN profiles USING (profile_id)
             WHERE merged_into IS NOT NULL"
        )
        .await,
        0,
        "no prediction left on a merged profile"
    );
    // Both merge-processors applied merges: the standby took over mid-run.
    let by: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT merged_by FROM profile_merges ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(by, ["merge-a", "merge-b"]);

    // Each auto customer: phone and email on one live profile that holds all three events and
    // the features they imply.
    type Features = (i32, i32, i64, Value);
    for i in 0..AUTO {
        let owners: Vec<(uuid::Uuid, Option<uuid::Uuid>)> = sqlx::query_as(
            "SELECT pi.profile_id, p.merged_into FROM profile_identifiers pi
             JOIN profiles p USING (profile_id)
             WHERE pi.brand_id = 'acme' AND pi.kind IN ('phone', 'email')
               AND pi.value IN ($1, $2)",
        )
        .bind(format!("+1555010{i:04}"))
        .bind(format!("customer{i}@example.com"))
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(owners.len(), 2, "customer {i}: both identifiers stored");
        assert_eq!(
            owners[0].0, owners[1].0,
            "customer {i}: one profile owns both"
        );
        assert_eq!(owners[0].1, None, "customer {i}: the owner is live");
        let profile = owners[0].0;
        let on_profile: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE profile_id = $1 AND event_id = ANY($2)",
        )
        .bind(profile)
        .bind(vec![format!("a-{i}"), format!("b-{i}"), format!("c-{i}")])
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(on_profile, 3, "customer {i}: events moved to the survivor");
        let features: Features = sqlx::query_as(
            "SELECT event_count, order_count, (total_spent * 100)::bigint, events_by_type
             FROM profile_features WHERE profile_id = $1",
        )
        .bind(profile)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            features,
            (
                3,
                2,
                first_purchase(i) + second_purchase(i),
                json!({"page_view": 1, "purchase": 2})
            ),
            "customer {i}"
        );
    }

    // Each review customer: two live profiles, a review row naming both, features apart.
    for j in 0..REVIEW {
        let profiles: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT profile_id FROM profile_identifiers
             WHERE brand_id = 'acme' AND kind = 'email' AND value IN ($1, $2)
             ORDER BY value",
        )
        .bind(format!("first{j}@example.com"))
        .bind(format!("second{j}@example.com"))
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(profiles.len(), 2, "review customer {j}");
        assert_ne!(profiles[0], profiles[1], "review customer {j}: not merged");
        let queued: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM manual_review_queue
             WHERE status = 'pending' AND profile_ids @> $1 AND cardinality(profile_ids) = 2",
        )
        .bind(&profiles)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(queued, 1, "review customer {j}: queued once");
        // The event carrying both identifiers went to the older profile.
        let oldest: uuid::Uuid = sqlx::query_scalar(
            "SELECT profile_id FROM profiles WHERE profile_id = ANY($1)
             ORDER BY created_at, profile_id LIMIT 1",
        )
        .bind(&profiles)
        .fetch_one(&pool)
        .await
        .unwrap();
        let features = |profile: uuid::Uuid| {
            let pool = pool.clone();
            async move {
                sqlx::query_as::<_, (i32, i32, i64)>(
                    "SELECT event_count, order_count, (total_spent * 100)::bigint
                     FROM profile_features WHERE profile_id = $1",
                )
                .bind(profile)
                .fetch_one(&pool)
                .await
                .unwrap()
            }
        };
        let (first, second) = (features(profiles[0]).await, features(profiles[1]).await);
        let expected = if oldest == profiles[0] {
            ((2, 1, REVIEW_SECOND), (1, 1, review_purchase(j)))
        } else {
            ((1, 0, 0), (2, 2, review_purchase(j) + REVIEW_SECOND))
        };
        assert_eq!((first, second), expected, "review customer {j}");
    }

    // The completed predictions were announced on the stream too.
    let announced = eventually("completed predictions on the stream", WAIT, || async {
        let n = xlen(&conn, "predictions.completed").await;
        (n > 0).then_some(n)
    })
    .await;
    assert!(announced >= purchasing as u64, "{announced} announcements");
}
