//! Pub/Sub: a publisher (plain and hybrid stream+channel events) and a subscriber that
//! reconnects and resubscribes by itself, with one bounded queue per subscription so a slow
//! or failing handler never blocks the others.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::Backoff;
use crate::connection::Redis;
use crate::entry::EntryId;
use crate::error::BusError;
use crate::health::Health;
use crate::message::{DecodeError, StreamMessage};
use crate::metrics::{ChannelLabels, Metrics, RoleLabels, StreamLabels};
use crate::producer::Producer;

/// Publishes JSON messages to channels (names get the tenant prefix).
#[derive(Debug, Clone)]
pub struct Publisher {
    producer: Producer,
    redis: Redis,
    metrics: Arc<Metrics>,
}

impl Publisher {
    /// A publisher over `producer`'s connection (hybrid events use its stream settings).
    pub fn new(redis: Redis, metrics: Arc<Metrics>, producer: Producer) -> Self {
        Publisher {
            producer,
            redis,
            metrics,
        }
    }

    /// Publishes `message` as JSON; returns how many subscribers received it.
    pub async fn publish<T: Serialize>(
        &self,
        channel: &str,
        message: &T,
    ) -> Result<usize, BusError> {
        let payload =
            serde_json::to_string(message).map_err(|e| BusError::Protocol(e.to_string()))?;
        self.publish_raw(channel, &payload).await
    }

    /// Publishes a payload as is; returns how many subscribers received it.
    pub async fn publish_raw(&self, channel: &str, payload: &str) -> Result<usize, BusError> {
        let key = self.redis.key(channel);
        let receivers: usize = self
            .producer
            .with_retry(|mut conn| {
                let (key, payload) = (key.clone(), payload.to_owned());
                async move {
                    redis::cmd("PUBLISH")
                        .arg(key)
                        .arg(payload)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        self.metrics
            .pubsub
            .published
            .get_or_create(&ChannelLabels::new(&key, "ok"))
            .inc();
        Ok(receivers)
    }

    /// A hybrid event: XADD to `stream` and PUBLISH to `channel` in one atomic round trip, for
    /// events that must be both durable and seen in real time.
    pub async fn publish_hybrid<M: StreamMessage, T: Serialize>(
        &self,
        stream: &str,
        message: &M,
        channel: &str,
        notification: &T,
    ) -> Result<(EntryId, usize), BusError> {
        let payload =
            serde_json::to_string(notification).map_err(|e| BusError::Protocol(e.to_string()))?;
        let (stream_key, channel_key) = (self.redis.key(stream), self.redis.key(channel));
        self.producer.remember(&stream_key);
        let mut fields = message.encode();
        crate::telemetry::inject(&mut fields);
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.add_command(self.producer.xadd(&stream_key, &fields));
        pipe.cmd("PUBLISH").arg(&channel_key).arg(&payload);
        let (id, receivers): (String, usize) = self
            .producer
            .with_retry(|mut conn| {
                let pipe = pipe.clone();
                async move { pipe.query_async(&mut conn).await }
            })
            .await?;
        self.metrics
            .streams
            .produced
            .get_or_create(&StreamLabels::new(&stream_key))
            .inc();
        self.metrics
            .pubsub
            .published
            .get_or_create(&ChannelLabels::new(&channel_key, "ok"))
            .inc();
        let id = id
            .parse()
            .map_err(|e: crate::entry::InvalidEntryId| BusError::Protocol(e.to_string()))?;
        Ok((id, receivers))
    }
}

/// A message received on a channel.
#[derive(Debug, Clone)]
pub struct Received {
    /// The channel it was published on (tenant prefix included).
    pub channel: String,
    /// The pattern that matched, for pattern subscriptions.
    pub pattern: Option<String>,
    /// The payload.
    pub payload: String,
}

impl Received {
    /// Decodes the payload as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        serde_json::from_str(&self.payload).map_err(|e| DecodeError::invalid("payload", e))
    }
}

/// Why a subscription handler did not act on a message. Both are logged and counted; neither
/// stops the subscription.
#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    /// The message is malformed or unknown (counted as `invalid`).
    #[error("invalid message: {0}")]
    Invalid(String),
    /// Acting on it failed (counted as `failed`).
    #[error("handler failed: {0:#}")]
    Failed(anyhow::Error),
}

impl From<DecodeError> for SubscriberError {
    fn from(e: DecodeError) -> Self {
        SubscriberError::Invalid(e.to_string())
    }
}

/// Handles messages of one subscription.
pub trait MessageHandler: Send + Sync + 'static {
    /// Acts on one message.
    fn handle(&self, message: Received)
    -> impl Future<Output = Result<(), SubscriberError>> + Send;
}

impl<F, Fut> MessageHandler for F
where
    F: Fn(Received) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), SubscriberError>> + Send,
{
    fn handle(
        &self,
        message: Received,
    ) -> impl Future<Output = Result<(), SubscriberError>> + Send {
        self(message)
    }
}

/// Messages queued per subscription before new ones are dropped (and counted).
const QUEUE: usize = 1_024;

type Dispatch = mpsc::Sender<Received>;

/// Subscriptions to channels and patterns, each with its own handler task.
pub struct Subscriber {
    redis: Redis,
    metrics: Arc<Metrics>,
    health: Health,
    channels: HashMap<String, Dispatch>,
    patterns: HashMap<String, Dispatch>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("channels", &self.channels.keys().collect::<Vec<_>>())
            .field("patterns", &self.patterns.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Subscriber {
    /// An empty set of subscriptions.
    pub fn new(redis: Redis, metrics: Arc<Metrics>, health: Health) -> Self {
        Subscriber {
            redis,
            metrics,
            health,
            channels: HashMap::new(),
            patterns: HashMap::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Subscribes `handler` to `channel` (tenant prefix added).
    pub fn channel(mut self, channel: &str, handler: impl MessageHandler) -> Self {
        let key = self.redis.key(channel);
        let tx = self.spawn_handler(key.clone(), handler);
        self.channels.insert(key, tx);
        self
    }

    /// Subscribes `handler` to every channel matching `pattern` (tenant prefix added).
    pub fn pattern(mut self, pattern: &str, handler: impl MessageHandler) -> Self {
        let key = self.redis.key(pattern);
        let tx = self.spawn_handler(key.clone(), handler);
        self.patterns.insert(key, tx);
        self
    }

    fn spawn_handler(&self, label: String, handler: impl MessageHandler) -> Dispatch {
        let (tx, mut rx) = mpsc::channel::<Received>(QUEUE);
        let metrics = self.metrics.clone();
        self.tasks.spawn(async move {
            while let Some(message) = rx.recv().await {
                let outcome = match handler.handle(message.clone()).await {
                    Ok(()) => "ok",
                    Err(e @ SubscriberError::Invalid(_)) => {
                        tracing::warn!(channel = %message.channel, error = %e, "ignored message");
                        "invalid"
                    }
                    Err(e @ SubscriberError::Failed(_)) => {
                        tracing::error!(channel = %message.channel, error = %e, "message handler failed");
                        "failed"
                    }
                };
                metrics.pubsub.received.get_or_create(&ChannelLabels::new(&label, outcome)).inc();
            }
        });
        tx
    }

    /// Receives until shutdown, reconnecting and resubscribing whenever the connection drops.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BusError> {
        let running = self.health.register_loop("subscriber");
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut first = true;
        loop {
            if !first {
                self.metrics
                    .pubsub
                    .reconnects
                    .get_or_create(&RoleLabels::new("pubsub"))
                    .inc();
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
            first = false;
            let mut pubsub = match self.subscribe().await {
                Ok(pubsub) => pubsub,
                Err(e) => {
                    tracing::warn!(error = %e, "subscribe failed; retrying");
                    continue;
                }
            };
            running.set(true);
            backoff.reset();
            tracing::info!(channels = ?self.channels.keys().collect::<Vec<_>>(), patterns = ?self.patterns.keys().collect::<Vec<_>>(), "subscribed");
            let mut messages = pubsub.on_message();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        running.set(false);
                        drop(messages);
                        return self.finish().await;
                    }
                    next = messages.next() => match next {
                        Some(msg) => self.dispatch(msg),
                        None => break,
                    },
                }
            }
            running.set(false);
            tracing::warn!("subscription connection lost; resubscribing");
        }
        running.set(false);
        self.finish().await
    }

    async fn finish(self) -> Result<(), BusError> {
        let Subscriber {
            channels,
            patterns,
            tasks,
            ..
        } = self;
        drop(channels);
        drop(patterns);
        tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
        Ok(())
    }

    async fn subscribe(&self) -> Result<redis::aio::PubSub, BusError> {
        let mut pubsub = self.redis.pubsub().await?;
        for channel in self.channels.keys() {
            pubsub.subscribe(channel).await?;
        }
        for pattern in self.patterns.keys() {
            pubsub.psubscribe(pattern).await?;
        }
        Ok(pubsub)
    }

    fn dispatch(&self, msg: redis::Msg) {
        let channel = msg.get_channel_name().to_owned();
        let pattern: Option<String> = if msg.from_pattern() {
            msg.get_pattern().ok()
        } else {
            None
        };
        let payload: String = match msg.get_payload() {
            Ok(p) => p,
            Err(_) => String::from_utf8_lossy(msg.get_payload_bytes()).into_owned(),
        };
        let (label, tx) = match &pattern {
            Some(p) => (p.clone(), self.patterns.get(p)),
            None => (channel.clone(), self.channels.get(&channel)),
        };
        let Some(tx) = tx else { return };
        if tx
            .try_send(Received {
                channel,
                pattern,
                payload,
            })
            .is_err()
        {
            self.metrics
                .pubsub
                .received
                .get_or_create(&ChannelLabels::new(&label, "dropped"))
                .inc();
            tracing::warn!(channel = %label, "subscriber queue full; message dropped");
        }
    }
}
