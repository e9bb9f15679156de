//! busctl against real Redis and PostgreSQL: producing, the monitor report, migrations and
//! the recipe commands.
#![allow(clippy::unwrap_used)]

use std::process::Command as Process;
use std::time::Duration;

use bus_core::redis;
use bus_core::serde_json::{Map, Value};
use bus_core::sqlx;
use bus_core::tokio_util::sync::CancellationToken;
use bus_testkit::{PostgresServer, RedisServer};
use busctl::{Cli, Command, connect, database, monitor, produce, producer, recipes};

type Entry = (String, Vec<(String, String)>);

fn cli(redis: &RedisServer, command: Command) -> Cli {
    Cli {
        redis_url: redis.url(),
        namespace: None,
        command,
    }
}

async fn run(cli: Cli) -> String {
    let mut out = Vec::new();
    busctl::run(cli, &mut out, CancellationToken::new())
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

async fn cmd<T: redis::FromRedisValue>(redis: &RedisServer, cmd: &redis::Cmd) -> T {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    cmd.query_async(&mut conn).await.unwrap()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn produce_appends_n_entries_in_the_seed_format() {
    let server = RedisServer::start().unwrap();
    let output = run(cli(
        &server,
        Command::Produce {
            count: 25,
            delay: 0.0,
            stream: "raw_items".into(),
        },
    ))
    .await;
    assert!(
        output.contains("produced 25 items to raw_items"),
        "{output}"
    );

    let entries: Vec<Entry> = cmd(
        &server,
        redis::cmd("XRANGE").arg("raw_items").arg("-").arg("+"),
    )
    .await;
    assert_eq!(entries.len(), 25);
    for (_, fields) in &entries {
        let data: Map<String, Value> =
            bus_core::serde_json::from_str(field(fields, "data").unwrap()).unwrap();
        for key in ["phone", "bank_account", "email", "name", "source"] {
            assert!(
                data.get(key).is_some_and(Value::is_string),
                "{key} in {data:?}"
            );
        }
        for key in ["source", "timestamp", "producer", "batch_id"] {
            assert!(field(fields, key).is_some(), "{key} in {fields:?}");
        }
        assert_eq!(field(fields, "producer"), Some("busctl"));
    }
}

#[tokio::test]
async fn produce_with_a_delay_spaces_the_items_and_reports_progress() {
    let server = RedisServer::start().unwrap();
    let redis = connect(&cli(&server, Command::Groups { stream: "x".into() }))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let ids = produce::produce(
        &producer(&redis),
        "raw_items",
        3,
        Duration::from_millis(50),
        &mut |n, total| seen.push((n, total)),
    )
    .await
    .unwrap();
    assert_eq!(seen, [(1, 3), (2, 3), (3, 3)]);
    assert!(ids[2].ms - ids[0].ms >= 100, "{ids:?}");
}

#[tokio::test]
async fn migrate_creates_the_validator_tables() {
    let db = PostgresServer::shared().create_database().unwrap();
    let server = RedisServer::start().unwrap();
    let output = run(cli(
        &server,
        Command::Migrate {
            database_url: db.url(),
        },
    ))
    .await;
    assert!(output.contains("validator"), "{output}");
    assert_eq!(
        db.psql("SELECT count(*) FROM raw_items").unwrap().trim(),
        "0"
    );
}

#[tokio::test]
async fn monitor_shows_every_section_with_the_right_totals() {
    let server = RedisServer::start().unwrap();
    let db = PostgresServer::shared().create_database().unwrap();
    busctl::migrate(&db.url()).await.unwrap();
    let redis = connect(&cli(&server, Command::Groups { stream: "x".into() }))
        .await
        .unwrap();
    produce::produce(
        &producer(&redis),
        "raw_items",
        12,
        Duration::ZERO,
        &mut |_, _| {},
    )
    .await
    .unwrap();
    let () = cmd(
        &server,
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg("raw_items")
            .arg("validator_workers")
            .arg("0"),
    )
    .await;
    let _: redis::Value = cmd(
        &server,
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("validator_workers")
            .arg("worker_001")
            .arg("COUNT")
            .arg(3)
            .arg("STREAMS")
            .arg("raw_items")
            .arg(">"),
    )
    .await;

    let pool = database(&db.url()).await.unwrap();
    sqlx::query(
        "INSERT INTO raw_items (stream, entry_id, consumer, status, error_codes, errors, processing_ms, processed_at)
         SELECT 'raw_items', 'e' || i, 'worker_001',
                CASE WHEN i <= 2 THEN 'error' ELSE 'done' END,
                CASE WHEN i <= 2 THEN '{101}'::int[] ELSE '{}' END,
                CASE WHEN i <= 2 THEN '[{\"code\":101,\"field\":\"phone\",\"message\":\"Phone number too short: 3 chars, minimum 10\"}]'::jsonb ELSE '[]' END,
                120, now()
         FROM generate_series(1, 7) i",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(
        "INSERT INTO stream_consumer_stats VALUES ('raw_items', 'validator_workers', 'worker_001', 7, 5, 2, 840, now());
         INSERT INTO stream_processing_metrics (bucket, stream, status, count, total_processing_ms)
         VALUES (date_trunc('minute', now()), 'raw_items', 'done', 5, 600),
                (date_trunc('minute', now()), 'raw_items', 'error', 2, 240)",
    )
    .execute(&pool)
    .await
    .unwrap();

    let report = monitor::report(&redis, Some(&pool), "raw_items")
        .await
        .unwrap();
    for section in [
        "STREAM INFO (raw_items)",
        "CONSUMER GROUPS",
        "DATABASE STATS",
        "CONSUMER PERFORMANCE",
        "RECENT ACTIVITY (1 hour)",
        "TOP ERRORS (1 hour)",
    ] {
        assert!(report.contains(section), "{section} missing in\n{report}");
    }
    let has_line = |words: &[&str]| {
        report.lines().any(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            words.iter().all(|w| cells.contains(w))
        })
    };
    assert!(has_line(&["Messages", "12"]), "{report}");
    assert!(
        has_line(&["worker_001", "3"]),
        "pending per consumer\n{report}"
    );
    assert!(has_line(&["Total", "items:", "7"]), "{report}");
    assert!(has_line(&["Done:", "5"]), "{report}");
    assert!(has_line(&["Error:", "2"]), "{report}");
    assert!(
        has_line(&["worker_001", "7", "5", "2", "28.6%"]),
        "{report}"
    );
    assert!(has_line(&["DONE", "5", "120ms"]), "{report}");
    assert!(has_line(&["101", "phone", "2"]), "{report}");
    assert!(
        report.contains("Phone number too short: 3 chars, minimum 10"),
        "{report}"
    );
}

#[tokio::test]
async fn pending_and_groups_show_what_a_group_holds() {
    let server = RedisServer::start().unwrap();
    let redis = connect(&cli(&server, Command::Groups { stream: "x".into() }))
        .await
        .unwrap();
    produce::produce(
        &producer(&redis),
        "raw_items",
        5,
        Duration::ZERO,
        &mut |_, _| {},
    )
    .await
    .unwrap();
    let () = cmd(
        &server,
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg("raw_items")
            .arg("validator_workers")
            .arg("0"),
    )
    .await;
    let _: redis::Value = cmd(
        &server,
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("validator_workers")
            .arg("worker_a")
            .arg("COUNT")
            .arg(2)
            .arg("STREAMS")
            .arg("raw_items")
            .arg(">"),
    )
    .await;

    let pending = recipes::pending(&redis, "raw_items", "validator_workers", 10)
        .await
        .unwrap();
    assert!(pending.contains("Pending: 2"), "{pending}");
    assert_eq!(pending.matches("worker_a").count(), 3, "{pending}");
    let groups = recipes::groups(&redis, "raw_items").await.unwrap();
    assert!(
        groups
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().starts_with(&[
                "validator_workers",
                "1",
                "2",
                "3"
            ])),
        "{groups}"
    );
    let consumers = recipes::consumers(&redis, "raw_items", "validator_workers")
        .await
        .unwrap();
    assert!(consumers.contains("worker_a"), "{consumers}");
    let range = recipes::range(&redis, "raw_items", 2).await.unwrap();
    assert_eq!(range.matches("batch_id:").count(), 2, "{range}");
}

#[tokio::test]
async fn lag_aware_trim_keeps_unacknowledged_entries_and_force_does_not() {
    let server = RedisServer::start().unwrap();
    let redis = connect(&cli(&server, Command::Groups { stream: "x".into() }))
        .await
        .unwrap();
    produce::produce(
        &producer(&redis),
        "raw_items",
        300,
        Duration::ZERO,
        &mut |_, _| {},
    )
    .await
    .unwrap();
    let () = cmd(
        &server,
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg("raw_items")
            .arg("g")
            .arg("0"),
    )
    .await;
    let _: redis::Value = cmd(
        &server,
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(100)
            .arg("STREAMS")
            .arg("raw_items")
            .arg(">"),
    )
    .await;

    let out = recipes::trim(&redis, "raw_items", 10, false).await.unwrap();
    assert!(
        out.contains("length now 300"),
        "nothing was acknowledged: {out}"
    );
    let out = recipes::trim(&redis, "raw_items", 10, true).await.unwrap();
    let len: u64 = cmd(&server, redis::cmd("XLEN").arg("raw_items")).await;
    assert!(len < 300, "{out}");
}

#[tokio::test]
async fn dead_letters_are_listed_with_reasons_and_replayed_without_dlq_fields() {
    let server = RedisServer::start().unwrap();
    let _: String = cmd(
        &server,
        redis::cmd("XADD")
            .arg("raw_items:dlq")
            .arg("*")
            .arg("data")
            .arg("{not json")
            .arg("source")
            .arg("api")
            .arg("dlq_reason")
            .arg("field `data` is invalid: not valid JSON")
            .arg("dlq_kind")
            .arg("decode")
            .arg("dlq_original_id")
            .arg("1-0")
            .arg("dlq_stream")
            .arg("raw_items")
            .arg("dlq_deliveries")
            .arg("1")
            .arg("dlq_consumer")
            .arg("worker_a"),
    )
    .await;

    let listed = run(cli(
        &server,
        Command::Dlq {
            stream: "raw_items".into(),
            count: 10,
        },
    ))
    .await;
    assert!(
        listed.contains("not valid JSON") && listed.contains("decode") && listed.contains("1-0"),
        "{listed}"
    );

    let replayed = run(cli(
        &server,
        Command::ReplayDlq {
            stream: "raw_items".into(),
            count: 100,
        },
    ))
    .await;
    assert!(replayed.contains("REPLAYED 1"), "{replayed}");
    let dlq: u64 = cmd(&server, redis::cmd("XLEN").arg("raw_items:dlq")).await;
    assert_eq!(dlq, 0);
    let entries: Vec<Entry> = cmd(
        &server,
        redis::cmd("XRANGE").arg("raw_items").arg("-").arg("+"),
    )
    .await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].1,
        [
            ("data".to_owned(), "{not json".to_owned()),
            ("source".to_owned(), "api".to_owned())
        ]
    );
}

#[test]
fn the_binary_produces_and_reports_info() {
    let server = RedisServer::start().unwrap();
    let busctl = |args: &[&str]| {
        let out = Process::new(env!("CARGO_BIN_EXE_busctl"))
            .args(args)
            .env("REDIS_URL", server.url())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let produced = busctl(&["produce", "5", "0"]);
    assert!(produced.contains("sent 5/5"), "{produced}");
    let info = busctl(&["info"]);
    assert!(info.contains("Messages in stream: 5"), "{info}");
    let monitor = busctl(&["monitor"]);
    assert!(monitor.contains("no database"), "{monitor}");
}
