//! A single-active lease: one holder at a time in Redis, with a fencing token that PostgreSQL
//! checks at commit.
//!
//! The lease is the key `lease:{name}` (with the tenant prefix), holding `<holder>#<token>`
//! with a TTL. Acquiring it is one script: when the key is absent, take the next fencing token
//! (`INCR lease:{name}:token`) and `SET … PX ttl`. The braces are a Redis Cluster hash tag, so
//! both keys live in one slot and the script stays atomic there too. The holder renews every
//! `ttl/3` (`PEXPIRE` only while the value is still its own) and deletes the key on release
//! (only while it is its own). Standbys poll every `ttl/5`, jittered, and take over once the
//! key has expired or been released.
//!
//! A lease alone cannot stop a holder that paused (GC, a slow disk, a partition) past its TTL
//! from writing after a newer holder started. [`fence`] closes that gap: inside the writer's
//! transaction it records the token in `lease_fences` unless a newer token has written, and the
//! row lock it takes serialises the commits of old and new holders.

use std::hash::BuildHasher;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::sleep_or_shutdown;
use crate::connection::Redis;
use crate::error::BusError;
use crate::metrics::Metrics;
use crate::settings::SettingsError;

/// Takes the lease when it is free: the next token, then the key with its TTL. Returns the
/// token, or 0 when someone holds it.
const ACQUIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '#' .. token, 'PX', ARGV[2])
return token";

/// Extends the TTL only while the key still holds this acquisition's value.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0";

/// Deletes the key only while it still holds this acquisition's value.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// Raises the token sequence to at least ARGV[1]; never lowers it.
const ADVANCE: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1";

/// Shortest TTL accepted: renewals every `ttl/3` need room for a Redis round trip.
const MIN_TTL_MS: u64 = 100;

/// Lease timing (section `LEASE__`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaseSettings {
    /// `LEASE__TTL_MS`: how long the lease outlives its holder's last renewal. The holder
    /// renews every third of it; a standby takes over at most this long (plus one poll of a
    /// fifth of it) after the holder died.
    pub ttl_ms: u64,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings { ttl_ms: 5_000 }
    }
}

impl LeaseSettings {
    /// Checks ranges, naming the variable of a bad value.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.ttl_ms < MIN_TTL_MS {
            return Err(SettingsError::invalid(
                "LEASE__TTL_MS",
                format!("must be at least {MIN_TTL_MS}"),
            ));
        }
        Ok(())
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms.max(MIN_TTL_MS))
    }
}

/// Labels of the lease metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    /// The lease name.
    pub name: String,
}

/// `bus_lease_held{name}` (1 while this process holds it) and `bus_lease_acquired_total{name}`.
/// Register once per process and share it between leases.
#[derive(Debug, Clone, Default)]
pub struct LeaseMetrics {
    held: Family<LeaseLabels, Gauge>,
    acquired: Family<LeaseLabels, Counter>,
}

impl LeaseMetrics {
    /// Creates and registers the lease metrics.
    pub fn register(metrics: &Metrics) -> Self {
        let m = LeaseMetrics::default();
        metrics.register(
            "bus_lease_held",
            "1 while this process holds the lease",
            m.held.clone(),
        );
        metrics.register(
            "bus_lease_acquired",
            "Times this process acquired the lease",
            m.acquired.clone(),
        );
        m
    }
}

/// A named lease that one holder at a time can acquire. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Lease {
    redis: Redis,
    name: String,
    key: String,
    token_key: String,
    holder: String,
    settings: LeaseSettings,
    metrics: LeaseMetrics,
    labels: LeaseLabels,
}

impl Lease {
    /// The lease `name` as `holder` (a stable, unique name of this replica, such as its
    /// consumer name). Metrics are not recorded until [`Lease::with_metrics`].
    pub fn new(redis: Redis, name: &str, holder: &str, settings: LeaseSettings) -> Self {
        let key = redis.key(&format!("lease:{{{name}}}"));
        Lease {
            token_key: format!("{key}:token"),
            key,
            // The fence row is per tenant, like the token sequence it compares.
            name: redis.key(name),
            holder: holder.to_owned(),
            labels: LeaseLabels {
                name: name.to_owned(),
            },
            redis,
            settings,
            metrics: LeaseMetrics::default(),
        }
    }

    /// Records `bus_lease_held` and `bus_lease_acquired_total` in `metrics`.
    pub fn with_metrics(mut self, metrics: LeaseMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The Redis key of the lease (with the tenant prefix).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The name fences are recorded under in `lease_fences` (with the tenant prefix).
    pub fn fence_name(&self) -> &str {
        &self.name
    }

    /// Waits until this holder gets the lease (polling every `ttl/5`, jittered, and riding out
    /// Redis errors). `None` when `shutdown` came first.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> Option<Held> {
        let mut failing = false;
        loop {
            match self.try_acquire().await {
                Ok(Some(held)) => return Some(held),
                Ok(None) => failing = false,
                Err(e) => {
                    if !failing {
                        tracing::warn!(lease = %self.key, error = %e, "cannot reach Redis to acquire the lease; retrying");
                    }
                    failing = true;
                }
            }
            if !sleep_or_shutdown(self.poll_delay(), shutdown).await {
                return None;
            }
        }
    }

    /// One attempt: the lease when it was free, `None` when someone holds it.
    pub async fn try_acquire(&self) -> Result<Option<Held>, BusError> {
        let ttl = self.settings.ttl();
        // The TTL runs from before the request: Redis starts it later, never earlier.
        let started = Instant::now();
        let mut conn = self.redis.shared();
        let token: i64 = redis::cmd("EVAL")
            .arg(ACQUIRE)
            .arg(2)
            .arg(&self.key)
            .arg(&self.token_key)
            .arg(&self.holder)
            .arg(ttl.as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        let Ok(token @ 1..) = u64::try_from(token) else {
            return Ok(None);
        };
        self.metrics.held.get_or_create(&self.labels).set(1);
        self.metrics.acquired.get_or_create(&self.labels).inc();
        tracing::info!(lease = %self.key, holder = %self.holder, token, "acquired the lease");
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let value = format!("{}#{token}", self.holder);
        tokio::spawn(renew(
            self.clone(),
            value.clone(),
            started + ttl,
            lost.clone(),
            stop.clone(),
        ));
        Ok(Some(Held {
            lease: self.clone(),
            token,
            value,
            lost,
            stop,
        }))
    }

    /// Raises the token sequence to at least `token`, so the next acquisition gets a larger
    /// one. For a holder fenced by a token Redis no longer knows (Redis restarted without its
    /// data and the sequence began again): the fence has seen `token`, so new tokens must
    /// start above it. Raising the sequence is always safe; tokens only need to increase.
    pub async fn advance_tokens(&self, token: u64) -> Result<(), BusError> {
        let mut conn = self.redis.shared();
        let _: i64 = redis::cmd("EVAL")
            .arg(ADVANCE)
            .arg(1)
            .arg(&self.token_key)
            .arg(token)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// A standby's pause between attempts: `ttl/5`, ±20 %, so standbys do not poll in step.
    fn poll_delay(&self) -> Duration {
        let base = self.settings.ttl() / 5;
        let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
        let permille = 800 + random % 401; // 800 ..= 1200
        base * permille as u32 / 1000
    }
}

/// An acquired lease. Renewed in the background until released or dropped; dropping it stops
/// the renewal without deleting the key (as a crash would), so others wait out the TTL.
#[derive(Debug)]
pub struct Held {
    lease: Lease,
    token: u64,
    value: String,
    lost: CancellationToken,
    /// Stops the renewal task (on release and on drop).
    stop: CancellationToken,
}

impl Held {
    /// The fencing token of this acquisition; every later acquisition gets a larger one.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Cancelled when the lease is lost: a renewal found the key gone or owned by another, or
    /// Redis could not be reached for a whole TTL. Stop the guarded work when it fires.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// The holder name this lease was acquired as.
    pub fn holder(&self) -> &str {
        &self.lease.holder
    }

    /// [`fence`] with this acquisition's name, token and holder.
    pub async fn fence(&self, conn: &mut sqlx::PgConnection) -> Result<(), FenceError> {
        fence(
            conn,
            self.lease.fence_name(),
            self.token,
            &self.lease.holder,
        )
        .await
    }

    /// Stops renewing and deletes the key if it is still ours, so a standby takes over at its
    /// next poll. Returns whether the key was still ours.
    pub async fn release(self) -> Result<bool, BusError> {
        self.stop.cancel();
        let mut conn = self.lease.redis.shared();
        let deleted: i64 = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(&self.lease.key)
            .arg(&self.value)
            .query_async(&mut conn)
            .await?;
        tracing::info!(lease = %self.lease.key, token = self.token, "released the lease");
        Ok(deleted == 1)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stop.cancel();
        let lease = &self.lease;
        lease.metrics.held.get_or_create(&lease.labels).set(0);
    }
}

/// Renews every `ttl/3` until `stop`; cancels `lost` when the key is no longer ours or no
/// renewal succeeded for a whole TTL (the key has expired on the server by then).
async fn renew(
    lease: Lease,
    value: String,
    mut valid_until: Instant,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let ttl = lease.settings.ttl();
    let (every, retry) = (ttl / 3, ttl / 10);
    let mut next = Instant::now() + every;
    let why = loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = lost.cancelled() => return,
            _ = tokio::time::sleep_until(next.min(valid_until)) => {}
        }
        let sent = Instant::now();
        if sent >= valid_until {
            break "no renewal succeeded within the TTL".to_owned();
        }
        let mut conn = lease.redis.shared();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RENEW)
            .arg(1)
            .arg(&lease.key)
            .arg(&value)
            .arg(ttl.as_millis() as u64);
        let attempt = tokio::time::timeout_at(valid_until, cmd.query_async::<i64>(&mut conn));
        let renewed = tokio::select! {
            _ = stop.cancelled() => return,
            renewed = attempt => renewed,
        };
        match renewed {
            Ok(Ok(1)) => {
                valid_until = sent + ttl;
                next = sent + every;
            }
            Ok(Ok(_)) => break "the key expired or another holder took it".to_owned(),
            Ok(Err(e)) => {
                tracing::warn!(lease = %lease.key, error = %e, "lease renewal failed; retrying");
                next = Instant::now() + retry;
            }
            Err(_) => break "no renewal succeeded within the TTL".to_owned(),
        }
    };
    lease.metrics.held.get_or_create(&lease.labels).set(0);
    tracing::warn!(lease = %lease.key, holder = %lease.holder, reason = %why, "lost the lease");
    lost.cancel();
}

/// A writer holding an old token tried to commit after a newer holder had written.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// A newer token has written: this holder is stale and must not commit.
    #[error("lease {name}: token {token} is stale, token {current} ({holder}) has written since")]
    Fenced {
        /// The lease (fence) name.
        name: String,
        /// The stale token.
        token: u64,
        /// The newest token that has written.
        current: i64,
        /// Its holder.
        holder: String,
    },
    /// The fence could not be checked.
    #[error("lease fence: {0}")]
    Database(#[from] sqlx::Error),
}

/// Records, inside the caller's transaction, that `holder` with `token` writes under lease
/// `name`, unless a newer token has written already ([`FenceError::Fenced`]: roll back).
///
/// The upserted row stays locked until the transaction ends, so a newer holder's fence waits
/// for this commit, and this holder's later fences fail once the newer one has committed.
pub async fn fence(
    conn: &mut sqlx::PgConnection,
    name: &str,
    token: u64,
    holder: &str,
) -> Result<(), FenceError> {
    // Tokens come from Redis INCR, so they always fit; a larger one can only be stale.
    let Ok(as_i64) = i64::try_from(token) else {
        return Err(FenceError::Fenced {
            name: name.to_owned(),
            token,
            current: i64::MAX,
            holder: String::new(),
        });
    };
    let written = sqlx::query(
        "INSERT INTO lease_fences (name, token, holder) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE
             SET token = EXCLUDED.token, holder = EXCLUDED.holder, updated_at = now()
             WHERE lease_fences.token <= EXCLUDED.token",
    )
    .bind(name)
    .bind(as_i64)
    .bind(holder)
    .execute(&mut *conn)
    .await?;
    if written.rows_affected() == 1 {
        return Ok(());
    }
    let (current, holder): (i64, String) =
        sqlx::query_as("SELECT token, holder FROM lease_fences WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
    Err(FenceError::Fenced {
        name: name.to_owned(),
        token,
        current,
        holder,
    })
}
