//! One active instance per group: wait for the lease as a hot standby, consume while holding
//! it, stop consuming when it is lost (or a commit is fenced), and wait again.

use std::time::Duration;

use bus_core::sqlx::{self, PgPool};
use bus_core::tokio;
use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{
    Bus, BusError, Consumer, ConsumerConfig, FenceError, Health, Held, Lease, LoopFlag, Producer,
    sleep_or_shutdown,
};

use crate::handler::{Fence, MergeProcessor};
use crate::metrics::MergeMetrics;

/// How often readiness mirrors the active consumer's own loop state.
const READINESS_EVERY: Duration = Duration::from_secs(1);
/// Pause after being fenced before contending again, so a fence that keeps refusing (it
/// should not, see [`catch_up_tokens`]) cannot turn into a busy loop.
const FENCED_PAUSE: Duration = Duration::from_secs(1);

/// Why an activation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Shutdown was requested.
    Shutdown,
    /// The lease was lost (expired, taken, or Redis unreachable for a whole TTL).
    Lost,
    /// A newer token has written to the fence.
    Fenced,
}

/// Everything an activation needs.
#[derive(Debug, Clone)]
pub struct Activation {
    /// The bus (Redis, metrics, readiness).
    pub bus: Bus,
    /// The database.
    pub pool: PgPool,
    /// The worker configuration (stream, group, this consumer).
    pub config: ConsumerConfig,
    /// The `predictions.requests` producer.
    pub producer: Producer,
    /// Service metrics.
    pub metrics: MergeMetrics,
    /// The lease that makes this instance active.
    pub lease: Lease,
}

/// Alternates between standby and active until `shutdown`.
///
/// Readiness stays true while standing by (a standby is healthy, it is waiting); while active
/// it follows the consumer loop. Each activation runs a fresh consumer with its own loop flag,
/// so an earlier activation's stopped loop never counts against readiness.
pub async fn run(ctx: Activation, shutdown: CancellationToken) -> Result<(), BusError> {
    let ready = ctx
        .bus
        .health
        .register_loop("merge-processor (active or standby)");
    let holder = ctx.config.consumer.clone();
    while !shutdown.is_cancelled() {
        ctx.metrics.active.set(0);
        ready.set(true);
        tracing::info!(%holder, lease = %ctx.lease.key(), "standby: waiting for the lease");
        let Some(held) = ctx.lease.acquire(&shutdown).await else {
            break;
        };
        ctx.metrics.active.set(1);
        ctx.metrics.takeovers.inc();
        tracing::info!(%holder, token = held.token(), "active: consuming");
        let served = serve(&ctx, &held, &ready, &shutdown).await;
        ctx.metrics.active.set(0);
        if let Err(e) = held.release().await {
            tracing::warn!(error = %e, "could not release the lease; it expires by itself");
        }
        if served? == Ended::Fenced {
            catch_up_tokens(&ctx).await;
            sleep_or_shutdown(FENCED_PAUSE, &shutdown).await;
        }
    }
    Ok(())
}

/// Consumes while `held` lasts; returns once the consumer has drained.
async fn serve(
    ctx: &Activation,
    held: &Held,
    ready: &LoopFlag,
    shutdown: &CancellationToken,
) -> Result<Ended, BusError> {
    let fence = Fence {
        name: ctx.lease.fence_name().to_owned(),
        token: held.token(),
        holder: held.holder().to_owned(),
    };
    if !claim_fence(ctx, &fence).await {
        return Ok(Ended::Fenced);
    }
    let active = shutdown.child_token();
    let health = Health::default();
    let handler = MergeProcessor::new(
        ctx.pool.clone(),
        ctx.producer.clone(),
        ctx.metrics.clone(),
        fence,
        active.clone(),
    );
    let consumer = Consumer::new(
        ctx.bus.redis.clone(),
        ctx.bus.metrics.clone(),
        health.clone(),
        ctx.config.clone(),
        handler,
    );
    let consuming = consumer.run(active.clone());
    tokio::pin!(consuming);
    let mut readiness = tokio::time::interval_at(
        tokio::time::Instant::now() + READINESS_EVERY,
        READINESS_EVERY,
    );
    loop {
        tokio::select! {
            ended = &mut consuming => {
                ended?;
                return Ok(if shutdown.is_cancelled() {
                    Ended::Shutdown
                } else if held.lost().is_cancelled() {
                    Ended::Lost
                } else {
                    // Only the handler cancels `active` otherwise: its commit was fenced.
                    Ended::Fenced
                });
            }
            _ = held.lost().cancelled(), if !active.is_cancelled() => {
                tracing::warn!("lease lost; stopping the consumer (pending entries stay for the next holder)");
                active.cancel();
            }
            _ = readiness.tick() => {
                let checks = health.check().await;
                ready.set(checks.iter().all(|c| c.ok));
            }
        }
    }
}

/// Writes this token's fence at once, so from now on a stale predecessor that is still
/// finishing a batch can no longer commit. False when a newer holder has written already.
async fn claim_fence(ctx: &Activation, fence: &Fence) -> bool {
    let fenced = async {
        let mut tx = ctx.pool.begin().await?;
        bus_core::fence(&mut tx, &fence.name, fence.token, &fence.holder).await?;
        tx.commit().await?;
        Ok::<(), FenceError>(())
    };
    match fenced.await {
        Ok(()) => true,
        Err(e @ FenceError::Fenced { .. }) => {
            ctx.metrics.fenced.inc();
            tracing::warn!(error = %e, "a newer lease holder has written; standing by");
            false
        }
        Err(FenceError::Database(e)) => {
            // Every batch fences again before it commits; this one was only an early claim.
            tracing::warn!(error = %e, "could not record the fence yet; each batch will");
            true
        }
    }
}

/// Raises the lease's token sequence past the newest token the fence has seen.
///
/// Fenced while holding the lease means Redis hands out tokens the fence already passed: Redis
/// lost the sequence (restarted without its data). Without this, every later acquisition
/// would be fenced too. When another holder is active instead, its token is already above.
async fn catch_up_tokens(ctx: &Activation) {
    let newest: Result<Option<i64>, sqlx::Error> =
        sqlx::query_scalar("SELECT token FROM lease_fences WHERE name = $1")
            .bind(ctx.lease.fence_name())
            .fetch_optional(&ctx.pool)
            .await;
    let Ok(Some(newest)) = newest else {
        return;
    };
    let newest = u64::try_from(newest).unwrap_or(0);
    if let Err(e) = ctx.lease.advance_tokens(newest).await {
        tracing::warn!(error = %e, "could not advance the lease's token sequence");
    }
}
