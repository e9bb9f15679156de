//! A Pub/Sub subscriber for tests: collects every payload published on one channel.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

/// Every payload published on `channel` since [`subscribe`](Self::subscribe) returned, in
/// order, collected by a background task (stopped when this is dropped).
#[derive(Debug)]
pub struct ChannelListener {
    redis_url: String,
    channel: String,
    received: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl ChannelListener {
    /// Subscribes to `channel` on the Redis at `redis_url`; returns once the subscription is
    /// confirmed, so nothing published afterwards is missed.
    pub async fn subscribe(redis_url: &str, channel: &str) -> Result<Self> {
        let client = redis::Client::open(redis_url).context("Redis URL")?;
        let mut pubsub = client.get_async_pubsub().await.context("subscribe")?;
        pubsub.subscribe(channel).await.context("subscribe")?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let payload = String::from_utf8_lossy(message.get_payload_bytes()).into_owned();
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(payload);
            }
        });
        Ok(ChannelListener {
            redis_url: redis_url.to_owned(),
            channel: channel.to_owned(),
            received,
            task,
        })
    }

    /// The payloads received so far.
    pub fn payloads(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Everything published before this call: publishes a marker and waits up to `timeout`
    /// for it (a channel delivers in order), then returns the payloads without the marker.
    pub async fn settled(&self, timeout: Duration) -> Result<Vec<String>> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let marker = format!("{{\"marker\":\"settled-{nanos}\"}}");
        let client = redis::Client::open(self.redis_url.as_str()).context("Redis URL")?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(&marker)
            .query_async(&mut conn)
            .await?;
        crate::poll(timeout, || {
            let seen = self.payloads().contains(&marker);
            async move { seen.then_some(()) }
        })
        .await
        .with_context(|| format!("the marker on {} did not arrive", self.channel))?;
        let mut payloads = self.payloads();
        payloads.retain(|p| *p != marker);
        Ok(payloads)
    }
}

impl Drop for ChannelListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}
