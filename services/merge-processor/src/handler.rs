//! The consumer-group handler: a batch of merge requests in one fenced transaction, then the
//! follow-up prediction requests.

use bus_core::anyhow::anyhow;
use bus_core::chrono::Utc;
use bus_core::sqlx::{PgConnection, PgPool};
use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{Batch, Delivery, FenceError, Handler, HandlerError, Outcome, Producer};
use commerce::{MergeRequest, PredictionRequest, RequestType, names};
use tracing::Instrument;

use crate::metrics::{MergeMetrics, Settled};
use crate::rules::{self, Decision};
use crate::store::{self, Plan, Prior};

/// The lease acquisition a handler writes under.
#[derive(Debug, Clone)]
pub struct Fence {
    /// The fence name (`lease_fences.name`).
    pub name: String,
    /// The acquisition's token.
    pub token: u64,
    /// This instance's holder name.
    pub holder: String,
}

/// Applies merge requests while this instance holds the lease.
#[derive(Debug)]
pub struct MergeProcessor {
    pool: PgPool,
    producer: Producer,
    metrics: MergeMetrics,
    fence: Fence,
    /// Cancelled when a commit is fenced: this instance must stop consuming.
    active: CancellationToken,
}

impl MergeProcessor {
    /// A handler that writes under `fence` and cancels `active` when it finds itself stale.
    pub fn new(
        pool: PgPool,
        producer: Producer,
        metrics: MergeMetrics,
        fence: Fence,
        active: CancellationToken,
    ) -> Self {
        MergeProcessor {
            pool,
            producer,
            metrics,
            fence,
            active,
        }
    }

    /// Fences the transaction. A stale token stops this instance and fails the batch as
    /// `Unavailable`: never acked, never dead-lettered, left pending for the new holder.
    async fn check_fence(&self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        let f = &self.fence;
        match bus_core::fence(tx, &f.name, f.token, &f.holder).await {
            Ok(()) => Ok(()),
            Err(FenceError::Database(e)) => Err(e.into()),
            Err(fenced @ FenceError::Fenced { .. }) => {
                self.metrics.fenced.inc();
                tracing::warn!(error = %fenced, "a newer lease holder has written; stopping, the batch stays pending for it");
                self.active.cancel();
                Err(HandlerError::unavailable(anyhow!(fenced)))
            }
        }
    }
}

/// What one request led to, before the commit.
struct Applied {
    settled: Settled,
    /// Why it is dead-lettered (for [`Settled::Rejected`]).
    rejection: Option<String>,
    /// The prediction request to publish after the commit.
    followup: Option<PredictionRequest>,
}

impl Applied {
    fn just(settled: Settled) -> Self {
        Applied {
            settled,
            rejection: None,
            followup: None,
        }
    }
}

impl Handler for MergeProcessor {
    type Message = MergeRequest;

    /// One transaction for the batch, requests applied one by one in stream order; rule
    /// violations are decided before any write, so they dead-letter their entry alone.
    async fn handle(&self, batch: Batch<'_, MergeRequest>) -> Result<Outcome, HandlerError> {
        let mut tx = self.pool.begin().await?;
        self.check_fence(&mut tx).await?;
        let mut results = Vec::with_capacity(batch.entries.len());
        for delivery in batch.entries {
            let applied = self
                .apply(&mut tx, delivery, batch.consumer)
                .instrument(delivery.span.clone())
                .await?;
            results.push((delivery.id, applied));
        }
        tx.commit().await?;

        let followups: Vec<PredictionRequest> = results
            .iter()
            .filter_map(|(_, a)| a.followup.clone())
            .collect();
        if !followups.is_empty() {
            self.producer
                .send_batch(names::PREDICTION_REQUESTS, &followups)
                .await?;
        }
        let mut outcome = Outcome::done();
        let mut settled = Vec::with_capacity(results.len());
        for (id, applied) in results {
            settled.push(applied.settled);
            if let Some(reason) = applied.rejection {
                outcome = outcome.reject(id, reason);
            }
        }
        self.metrics.settled(&settled);
        Ok(outcome)
    }
}

impl MergeProcessor {
    async fn apply(
        &self,
        tx: &mut PgConnection,
        delivery: &Delivery<MergeRequest>,
        consumer: &str,
    ) -> Result<Applied, HandlerError> {
        let request = &delivery.message;
        let key = request
            .request_id
            .clone()
            .unwrap_or_else(|| delivery.id.to_string());
        match store::prior(tx, &key).await? {
            Some(Prior::Merged {
                survivor,
                has_orders,
            }) => {
                tracing::info!(request_key = %key, %survivor, "merge already applied; republishing its follow-up");
                return Ok(Applied {
                    followup: has_orders.then(|| followup(request, survivor, &key)),
                    ..Applied::just(Settled::Replayed)
                });
            }
            Some(Prior::Queued) => {
                tracing::info!(request_key = %key, "already queued for review");
                return Ok(Applied::just(Settled::Replayed));
            }
            None => {}
        }
        let profiles = store::lock_profiles(tx, &request.profile_ids).await?;
        let mut decision = rules::decide(request, &profiles);
        let redirected;
        let request = if let Decision::Redirect { homes } = decision {
            // A request chained on a profile an earlier request merged away: merge where the
            // profiles live now.
            tracing::info!(request_key = %key, ?homes, "profiles moved since the request; merging where they live");
            redirected = MergeRequest {
                profile_ids: homes,
                ..request.clone()
            };
            decision = rules::decide(&redirected, &profiles);
            &redirected
        } else {
            request
        };
        // The normalizer applied the conflict rule to the identifiers it saw; since then
        // another event may have given one of these profiles a new identifier, or a merge may
        // have moved some (a redirected request). Checked again on the locked profiles.
        if let Decision::Merge { survivor, merged } = &decision {
            let all: Vec<_> = std::iter::once(*survivor)
                .chain(merged.iter().copied())
                .collect();
            if store::conflicting(tx, &all).await? {
                tracing::info!(request_key = %key, "identifiers conflict now; queued for review instead");
                decision = Decision::Review;
            }
        }
        match decision {
            Decision::Redirect { homes } => {
                // Unreachable: homes are never merged themselves (merges keep one hop).
                let reason = format!("profiles {homes:?} are merged into others");
                Ok(Applied {
                    rejection: Some(reason),
                    ..Applied::just(Settled::Rejected)
                })
            }
            Decision::Reject(reason) => {
                tracing::warn!(request_key = %key, %reason, "merge request rejected");
                Ok(Applied {
                    rejection: Some(reason),
                    ..Applied::just(Settled::Rejected)
                })
            }
            Decision::AlreadyMerged { survivor } => {
                tracing::info!(request_key = %key, %survivor, "profiles already merged");
                Ok(Applied::just(Settled::AlreadyMerged))
            }
            Decision::Review => {
                if store::queue_review(tx, &key, request).await? {
                    tracing::info!(request_key = %key, "queued for manual review");
                } else {
                    tracing::info!(request_key = %key, "these profiles already wait for review");
                }
                Ok(Applied::just(Settled::QueuedForReview))
            }
            Decision::Merge { survivor, merged } => {
                let plan = Plan {
                    request_key: &key,
                    request,
                    survivor,
                    merged: &merged,
                    // Tokens come from Redis INCR and fit; the fence already checked this one.
                    fencing_token: i64::try_from(self.fence.token).unwrap_or(i64::MAX),
                    merged_by: consumer,
                };
                let moved = store::merge(tx, &plan).await?;
                tracing::info!(
                    request_key = %key,
                    %survivor,
                    merged = merged.len(),
                    identifiers = moved.identifiers,
                    events = moved.events,
                    "profiles merged"
                );
                Ok(Applied {
                    followup: moved.has_orders.then(|| followup(request, survivor, &key)),
                    ..Applied::just(Settled::Merged)
                })
            }
        }
    }
}

/// A fresh prediction of everything for a merged customer with purchases.
fn followup(request: &MergeRequest, survivor: uuid::Uuid, key: &str) -> PredictionRequest {
    PredictionRequest {
        profile_id: survivor,
        brand_id: request.brand_id.clone(),
        request_type: RequestType::All,
        timestamp: Utc::now(),
        request_id: Some(format!("merge:{key}")),
    }
}
