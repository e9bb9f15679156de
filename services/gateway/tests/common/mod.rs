//! The gateway in-process on a free port against a private Redis, and a reqwest client.
#![allow(dead_code, clippy::unwrap_used)] // tests fail loudly on broken fixtures

use std::time::Duration;

use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{CommonSettings, Fields, SecretUrl, StreamMessage};
use bus_testkit::{RedisServer, eventually};
use gateway::GatewaySettings;
use redis::aio::MultiplexedConnection;
use serde_json::Value;

pub const WAIT: Duration = Duration::from_secs(20);

/// A running gateway and the Redis it writes to.
pub struct Gateway {
    pub addr: String,
    pub redis: RedisServer,
    /// The tenant prefix the gateway was started with (`""` without `REDIS_NAMESPACE`).
    pub prefix: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    client: reqwest::Client,
}

impl Gateway {
    /// The default settings.
    pub async fn start() -> Gateway {
        Gateway::start_with(|_, _| {}).await
    }

    /// Settings adjusted by `configure`; returns once `/readyz` answers 200.
    pub async fn start_with(
        configure: impl FnOnce(&mut CommonSettings, &mut GatewaySettings),
    ) -> Gateway {
        let redis = RedisServer::start().unwrap();
        let addr = format!("127.0.0.1:{}", bus_testkit::free_port());
        let mut common = CommonSettings {
            redis_url: SecretUrl::new(redis.url()),
            ops_addr: "127.0.0.1:0".into(),
            ..CommonSettings::default()
        };
        let mut settings = GatewaySettings {
            http_addr: addr.clone(),
            ..GatewaySettings::default()
        };
        configure(&mut common, &mut settings);
        let prefix = common
            .redis_namespace
            .as_ref()
            .map_or_else(String::new, |ns| format!("tenant:{ns}:"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(gateway::run(common, settings, shutdown.clone()));
        let gateway = Gateway {
            addr,
            redis,
            prefix,
            shutdown,
            task,
            client: reqwest::Client::new(),
        };
        let url = gateway.url("/readyz");
        eventually("the gateway to be ready", WAIT, || {
            let url = url.clone();
            async move {
                let r = reqwest::get(url).await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs `body` (raw text, so malformed JSON can be sent); returns status and JSON answer.
    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.post_as(path, body, None).await
    }

    pub async fn post_as(&self, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        answer(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_as(path, None).await
    }

    pub async fn get_as(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        answer(request.send().await.unwrap()).await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A connection of the test's own to the gateway's Redis.
    pub async fn redis(&self) -> MultiplexedConnection {
        redis::Client::open(self.redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// The key of `stream` under the gateway's tenant prefix.
    pub fn key(&self, stream: &str) -> String {
        format!("{}{stream}", self.prefix)
    }

    /// Every entry of `key` (a full key): ids and fields.
    pub async fn entries(&self, key: &str) -> Vec<(String, Fields)> {
        let raw: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query_async(&mut self.redis().await)
            .await
            .unwrap();
        raw.into_iter()
            .map(|(id, fields)| (id, fields.into_iter().collect()))
            .collect()
    }

    /// Every entry of `key` decoded as `M`.
    pub async fn decoded<M: StreamMessage>(&self, key: &str) -> Vec<(String, M)> {
        self.entries(key)
            .await
            .into_iter()
            .map(|(id, fields)| (id, M::decode(&fields).unwrap()))
            .collect()
    }

    pub async fn xlen(&self, key: &str) -> u64 {
        redis::cmd("XLEN")
            .arg(key)
            .query_async(&mut self.redis().await)
            .await
            .unwrap()
    }

    /// Creates `group` on `stream` (under the prefix) from the beginning, and reads `count`
    /// entries as `consumer` without acknowledging them.
    pub async fn read_without_ack(&self, stream: &str, group: &str, consumer: &str, count: u64) {
        let mut conn = self.redis().await;
        let key = self.key(stream);
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&key)
            .arg(">")
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A valid seed 001 event for `brand`.
pub fn event(brand: &str, i: usize) -> Value {
    serde_json::json!({
        "brand_id": brand,
        "event_type": "purchase",
        "payload": {"phone": format!("+1234567{i:03}"), "total": 10 + i},
    })
}

/// `{"events": [...]}` with `n` valid events.
pub fn batch(n: usize) -> String {
    let events: Vec<Value> = (0..n).map(|i| event("test-brand", i)).collect();
    serde_json::json!({ "events": events }).to_string()
}

/// The stream ids of a 202 answer's `events` or `items`.
pub fn stream_ids(answer: &Value, key: &str) -> Vec<String> {
    answer[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stream_id"].as_str().unwrap().to_owned())
        .collect()
}
