//! `Bus` bundles what every service needs; `Runner` starts its loops and waits for them.

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::connection::Redis;
use crate::consumer::{Consumer, ConsumerConfig, Handler};
use crate::error::BusError;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::producer::Producer;
use crate::pubsub::{Publisher, Subscriber};
use crate::settings::{CommonSettings, ProducerSettings, WorkerSettings};

/// A service's connection to the bus: Redis, metrics, readiness and its common settings.
#[derive(Debug, Clone)]
pub struct Bus {
    /// The Redis server and namespace.
    pub redis: Redis,
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// The process's readiness.
    pub health: Health,
    /// The common settings it was built from.
    pub settings: CommonSettings,
}

impl Bus {
    /// Connects to Redis (failing fast on a bad URL or password) and watches it for readiness.
    pub async fn connect(settings: &CommonSettings) -> Result<Bus, BusError> {
        let redis =
            Redis::connect(&settings.redis_url, settings.redis_namespace.as_deref()).await?;
        let health = Health::default();
        health.watch_redis(&redis);
        Ok(Bus {
            redis,
            metrics: Arc::new(Metrics::new()),
            health,
            settings: settings.clone(),
        })
    }

    /// Connects to Redis and to PostgreSQL (applying the migrations) and watches both for
    /// readiness: the start of every service that writes the database.
    pub async fn connect_with_postgres(
        settings: &CommonSettings,
    ) -> Result<(Bus, sqlx::PgPool), BusError> {
        let bus = Bus::connect(settings).await?;
        let pool = crate::postgres::connect_and_migrate(settings).await?;
        bus.health.watch_postgres(&pool);
        Ok((bus, pool))
    }

    /// A worker configuration for `stream`/`group` as this replica.
    pub fn consumer_config(
        &self,
        stream: &str,
        group: &str,
        worker: &WorkerSettings,
    ) -> ConsumerConfig {
        ConsumerConfig {
            stream: stream.to_owned(),
            group: group.to_owned(),
            consumer: self.settings.consumer_name(),
            settings: worker.clone(),
            drain_timeout: self.settings.shutdown_timeout(),
        }
    }

    /// A producer with these trimming settings.
    pub fn producer(&self, settings: ProducerSettings) -> Producer {
        Producer::new(self.redis.clone(), self.metrics.clone(), settings)
    }

    /// A publisher (hybrid events use `producer`'s stream settings).
    pub fn publisher(&self, producer: Producer) -> Publisher {
        Publisher::new(self.redis.clone(), self.metrics.clone(), producer)
    }

    /// An empty subscriber.
    pub fn subscriber(&self) -> Subscriber {
        Subscriber::new(
            self.redis.clone(),
            self.metrics.clone(),
            self.health.clone(),
        )
    }

    /// The `/metrics`, `/healthz`, `/readyz` routes.
    pub fn ops_router(&self) -> axum::Router {
        crate::ops::router(self.metrics.clone(), self.health.clone())
    }
}

/// Starts a service's loops and waits for all of them. When one fails, the others are asked
/// to stop and the first error is returned.
#[derive(Debug)]
pub struct Runner {
    tasks: JoinSet<Result<(), BusError>>,
    shutdown: CancellationToken,
}

impl Runner {
    /// A runner whose loops stop on `shutdown`.
    pub fn new(shutdown: CancellationToken) -> Self {
        Runner {
            tasks: JoinSet::new(),
            shutdown,
        }
    }

    /// Starts a consumer-group worker.
    pub fn consume<H: Handler>(
        &mut self,
        bus: &Bus,
        config: ConsumerConfig,
        handler: H,
    ) -> &mut Self {
        let consumer = Consumer::new(
            bus.redis.clone(),
            bus.metrics.clone(),
            bus.health.clone(),
            config,
            handler,
        );
        self.tasks.spawn(consumer.run(self.shutdown.clone()));
        self
    }

    /// Keeps `producer`'s streams trimmed (its lag-aware trimmer) until shutdown.
    pub fn trim(&mut self, producer: Producer) -> &mut Self {
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            producer.run_trimmer(shutdown).await;
            Ok(())
        });
        self
    }

    /// Starts any other loop that ends on shutdown.
    pub fn spawn(
        &mut self,
        task: impl Future<Output = Result<(), BusError>> + Send + 'static,
    ) -> &mut Self {
        self.tasks.spawn(task);
        self
    }

    /// Waits for every loop; the first failure stops the rest and is returned.
    pub async fn wait(mut self) -> Result<(), BusError> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let result =
                joined.unwrap_or_else(|e| Err(BusError::Protocol(format!("task panicked: {e}"))));
            if let Err(e) = result {
                tracing::error!(error = %e, "a service loop failed; stopping");
                self.shutdown.cancel();
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
