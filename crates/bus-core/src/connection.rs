//! Redis connections: one shared auto-reconnecting connection for short commands, and
//! dedicated connections for blocking reads and subscriptions.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection, PubSub};
use redis::{AsyncConnectionConfig, IntoConnectionInfo};

use crate::error::BusError;
use crate::settings::SecretUrl;

/// Time allowed to open a TCP connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Reply deadline on the shared connection. Generous, because a pipelined batch of XADDs is
/// one reply; never applied to blocking reads, which use their own connections.
const SHARED_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A Redis server, its key namespace and a shared connection. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    shared: ConnectionManager,
    prefix: String,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field(
                "addr",
                &self.client.get_connection_info().addr().to_string(),
            )
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Redis {
    /// Opens the shared connection and checks it with PING, so a bad URL, password or
    /// unreachable server fails start-up with a clear error instead of later.
    pub async fn connect(url: &SecretUrl, namespace: Option<&str>) -> Result<Redis, BusError> {
        let invalid = |e: redis::RedisError| {
            BusError::Settings(crate::SettingsError::invalid(
                "REDIS_URL",
                format!("{} ({e})", url.redacted()),
            ))
        };
        let info = url.expose().into_connection_info().map_err(invalid)?;
        // Nagle's algorithm would hold a small write (an XACK, the last XADD of a pipeline)
        // while an earlier one is unacknowledged: up to the peer's delayed-ACK timer, 40 ms.
        let nodelay = info.tcp_settings().clone().set_nodelay(true);
        let client = redis::Client::open(info.set_tcp_settings(nodelay)).map_err(invalid)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(SHARED_RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let mut shared = ConnectionManager::new_with_config(client.clone(), config).await?;
        let _: String = redis::cmd("PING").query_async(&mut shared).await?;
        let prefix = match namespace {
            Some(ns) if !ns.is_empty() => format!("tenant:{ns}:"),
            _ => String::new(),
        };
        Ok(Redis {
            client,
            shared,
            prefix,
        })
    }

    /// The full key of a stream or channel, with the tenant prefix when one is configured.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The tenant prefix (`tenant:{ns}:`), empty when there is none.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The shared, auto-reconnecting connection for short commands. Callers retry failures.
    pub fn shared(&self) -> ConnectionManager {
        self.shared.clone()
    }

    /// A new connection with no reply deadline, for `XREADGROUP … BLOCK`. A client-side timeout
    /// there would abandon a read whose entries Redis has already put in the pending list.
    pub async fn blocking_connection(&self) -> Result<MultiplexedConnection, BusError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None);
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    /// A new subscription connection.
    pub async fn pubsub(&self) -> Result<PubSub, BusError> {
        Ok(self.client.get_async_pubsub().await?)
    }

    /// True when Redis answers PING within a second.
    pub async fn ping(&self) -> bool {
        let mut conn = self.shared();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        matches!(
            tokio::time::timeout(Duration::from_secs(1), ping).await,
            Ok(Ok(_))
        )
    }
}
