//! The command API and the WebSocket relay against a private Redis, with real subscribers.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

use std::time::Duration;

use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{CommonSettings, SecretUrl};
use bus_testkit::{ChannelListener, RedisServer, eventually};
use command_broadcaster::BroadcasterSettings;
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);

struct Service {
    addr: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    redis: RedisServer,
}

impl Service {
    async fn start(api_token: Option<&str>) -> Service {
        let redis = RedisServer::start().unwrap();
        let addr = format!("127.0.0.1:{}", bus_testkit::free_port());
        let common = CommonSettings {
            redis_url: SecretUrl::new(redis.url()),
            ops_addr: "127.0.0.1:0".into(),
            ..CommonSettings::default()
        };
        let settings = BroadcasterSettings {
            http_addr: addr.clone(),
            api_token: api_token.map(Into::into),
            ..BroadcasterSettings::default()
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(command_broadcaster::run(common, settings, shutdown.clone()));
        let service = Service {
            addr,
            shutdown,
            task,
            redis,
        };
        let url = service.url("/readyz");
        eventually("the API to be ready", WAIT, || {
            let url = url.clone();
            async move {
                let r = reqwest::get(url).await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        service
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn post(&self, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn redis(&self) -> MultiplexedConnection {
        redis::Client::open(self.redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    async fn listen(&self, channel: &str) -> ChannelListener {
        ChannelListener::subscribe(&self.redis.url(), channel)
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_published_in_the_seed_format_and_its_receivers_counted() {
    let service = Service::start(None).await;
    let received = service.listen("channel:service:crawler:commands").await;
    let (status, answer) = service
        .post(
            "/api/commands/crawler",
            r#"{"command":"CRAWL_TOKEN","data":{"tokenAddress":"0xabc"}}"#,
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["receivers"], 1);
    assert_eq!(answer["channel"], "channel:service:crawler:commands");
    let payload = eventually("the subscriber to get the command", WAIT, || {
        let first = received.payloads().first().cloned();
        async move { first }
    })
    .await;
    let command: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(command["command"], "CRAWL_TOKEN");
    assert_eq!(command["data"], json!({"tokenAddress": "0xabc"}));
    assert!(command["timestamp"].as_str().unwrap().ends_with('Z'));

    let (status, answer) = service
        .post(
            "/api/commands/nobody-listens",
            r#"{"command":"PAUSE"}"#,
            None,
        )
        .await;
    assert_eq!((status, answer["receivers"].clone()), (200, json!(0)));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_rejected_with_400_naming_the_field() {
    let service = Service::start(None).await;
    let cases = [
        (
            "/api/commands/bad%20id",
            r#"{"command":"PAUSE"}"#,
            "serviceId",
        ),
        ("/api/commands/crawler", "{not json", "body"),
        ("/api/commands/crawler", "[1]", "body"),
        ("/api/commands/crawler", r#"{"data":{}}"#, "command"),
        ("/api/commands/crawler", r#"{"command":"pause"}"#, "command"),
        ("/api/commands/crawler", r#"{"command":""}"#, "command"),
        (
            "/api/commands/crawler",
            r#"{"command":"PAUSE","data":[1]}"#,
            "data",
        ),
        (
            "/api/commands",
            r#"{"command":"PAUSE","services":["ok",1]}"#,
            "services[1]",
        ),
        (
            "/api/commands",
            r#"{"command":"PAUSE","services":"crawler"}"#,
            "services",
        ),
    ];
    for (path, body, field) in cases {
        let (status, answer) = service.post(path, body, None).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(answer["field"], field, "{path} {body}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let metrics = reqwest::get(service.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("broadcaster_commands_total{outcome=\"invalid\"} 9"),
        "{metrics}"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_token_requests_without_the_bearer_token_get_401() {
    let service = Service::start(Some("s3cret")).await;
    let body = r#"{"command":"PAUSE"}"#;
    assert_eq!(
        service.post("/api/commands/crawler", body, None).await.0,
        401
    );
    assert_eq!(
        service
            .post("/api/commands/crawler", body, Some("wrong"))
            .await
            .0,
        401
    );
    assert_eq!(service.post("/api/commands", body, None).await.0, 401);
    assert_eq!(
        service
            .post("/api/commands/crawler", body, Some("s3cret"))
            .await
            .0,
        200
    );
    let health = reqwest::get(service.url("/healthz")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200, "ops routes stay open");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_every_service_with_a_command_subscriber_or_the_listed_ones() {
    let service = Service::start(None).await;
    let a = service.listen("channel:service:crawler-a:commands").await;
    let b = service.listen("channel:service:crawler-b:commands").await;
    let (status, answer) = service
        .post("/api/commands", r#"{"command":"STOP"}"#, None)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["receivers"], 2);
    let services: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["serviceId"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["crawler-a", "crawler-b"]);
    let (_, answer) = service
        .post(
            "/api/commands",
            r#"{"command":"PAUSE","services":["crawler-b","crawler-c"]}"#,
            None,
        )
        .await;
    assert_eq!(answer["receivers"], 1);
    eventually("both STOPs and one PAUSE", WAIT, || {
        let (a, b) = (a.payloads().len(), b.payloads().len());
        async move { (a == 1 && b == 2).then_some(()) }
    })
    .await;
    service.stop().await;
}

/// Opens a WebSocket with a raw HTTP/1.1 upgrade; returns the stream and the status line.
async fn ws_connect(addr: &str, query: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /ws{query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.lines().next().unwrap().to_owned();
    (stream, status)
}

/// Reads one unmasked server frame; returns (opcode, payload).
async fn ws_read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let first = stream.read_u8().await.unwrap();
    let len = match stream.read_u8().await.unwrap() & 0x7f {
        126 => u64::from(stream.read_u16().await.unwrap()),
        127 => stream.read_u64().await.unwrap(),
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    stream.read_exact(&mut payload).await.unwrap();
    (first & 0x0f, payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_relays_a_published_notification_of_an_allowed_channel() {
    let service = Service::start(None).await;
    let mut conn = service.redis().await;
    eventually("the relay to subscribe", WAIT, || {
        let mut conn = conn.clone();
        async move {
            let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("channel:token:created")
                .query_async(&mut conn)
                .await
                .ok()?;
            (counts[0].1 > 0).then_some(())
        }
    })
    .await;
    let (_, refused) = ws_connect(&service.addr, "?channels=channel:secret").await;
    assert!(refused.contains(" 400 "), "{refused}");

    let (mut ws, status) = ws_connect(&service.addr, "?channels=channel:token:created").await;
    assert!(status.contains(" 101 "), "{status}");
    let note = json!({"timestamp": "2024-01-01T10:00:00Z", "data": {"address": "0xabc", "name": "Bitcoin", "symbol": "BTC"}});
    let _: i64 = redis::cmd("PUBLISH")
        .arg("channel:predictions:completed")
        .arg("{\"not\":\"asked for\"}")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg("channel:token:created")
        .arg(note.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    let (opcode, payload) = tokio::time::timeout(WAIT, ws_read_frame(&mut ws))
        .await
        .unwrap();
    assert_eq!(opcode, 1, "a text frame");
    let frame: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        frame,
        json!({"channel": "channel:token:created", "message": note})
    );
    let metrics = reqwest::get(service.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("broadcaster_ws_clients 1"), "{metrics}");
    service.stop().await;
}
