//! The consumer-group handler: count a batch's new events into profile features in one
//! transaction, then ask for fresh predictions of the profiles that purchased.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bus_core::chrono::Utc;
use bus_core::sqlx::PgPool;
use bus_core::{Batch, Delivery, Handler, HandlerError, Outcome, Producer};
use commerce::{NormalizedEvent, PredictionRequest, RequestType, names, profiles};
use uuid::Uuid;

use crate::aggregate::{CountedEvent, PURCHASE, aggregate};
use crate::amount::{Amount, Cents, purchase_amount};
use crate::metrics::{EventOutcome, FeatureMetrics};
use crate::store;

/// Keeps `profile_features` current from `events.normalized`, effectively once per
/// `event_id`.
#[derive(Debug)]
pub struct FeatureBuilder {
    pool: PgPool,
    requests: Producer,
    metrics: FeatureMetrics,
}

impl FeatureBuilder {
    /// A handler writing to `pool` and publishing prediction requests with `requests`.
    pub fn new(pool: PgPool, requests: Producer, metrics: FeatureMetrics) -> Self {
        FeatureBuilder {
            pool,
            requests,
            metrics,
        }
    }
}

/// An event that names a profile and can be counted.
struct Candidate<'a> {
    delivery: &'a Delivery<NormalizedEvent>,
    profile_id: Uuid,
    /// For a purchase, its amount; `None` when the payload names none.
    amount: Option<Cents>,
}

impl Candidate<'_> {
    fn event(&self) -> &NormalizedEvent {
        &self.delivery.message
    }

    fn is_purchase(&self) -> bool {
        self.event().event_type == PURCHASE
    }
}

impl Handler for FeatureBuilder {
    type Message = NormalizedEvent;

    async fn handle(&self, batch: Batch<'_, NormalizedEvent>) -> Result<Outcome, HandlerError> {
        let mut outcome = Outcome::done();
        let mut tally = Tally::default();
        let candidates = candidates(batch.entries, &mut outcome, &mut tally);
        if candidates.is_empty() {
            tally.record(&self.metrics);
            return Ok(outcome);
        }

        let mut tx = self.pool.begin().await?;
        let ids: Vec<Uuid> = candidates
            .iter()
            .map(|c| c.profile_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let resolved = profiles::resolve(&mut tx, &ids).await?;
        let known = known(candidates, &resolved, &mut outcome, &mut tally);
        // The first entry of an event id claims it; a repeat within the batch is a duplicate.
        let mut claimed = HashSet::new();
        let claims: Vec<(&str, Uuid)> = known
            .iter()
            .map(|(c, survivor)| (c.event().event_id.as_str(), *survivor))
            .filter(|(event_id, _)| claimed.insert(*event_id))
            .collect();
        let mut fresh = if claims.is_empty() {
            HashSet::new()
        } else {
            store::claim_events(&mut tx, &claims).await?
        };
        let mut counted = Vec::with_capacity(known.len());
        for (candidate, survivor) in &known {
            if !fresh.remove(&candidate.event().event_id) {
                tally.duplicate += 1;
                continue;
            }
            tally.applied += 1;
            if candidate.is_purchase() && candidate.amount.is_none() {
                tally.without_amount += 1;
            }
            counted.push(CountedEvent {
                profile_id: *survivor,
                event_type: &candidate.event().event_type,
                at: candidate.event().timestamp,
                spent: candidate.amount.unwrap_or_default(),
            });
        }
        store::add_features(&mut tx, &aggregate(&counted)).await?;
        tx.commit().await?;
        // Recorded now: a redelivery after a failed publish finds these events counted and
        // reports them as duplicates, so this is the only time they are recorded as applied.
        tally.record(&self.metrics);
        tracing::debug!(?tally, "batch counted");

        let requests = prediction_requests(&known);
        if !requests.is_empty() {
            self.requests
                .send_batch(names::PREDICTION_REQUESTS, &requests)
                .await?;
        }
        self.metrics.prediction_requests(requests.len());
        Ok(outcome)
    }
}

/// What a batch did, recorded in the metrics once it is committed.
#[derive(Debug, Default)]
struct Tally {
    applied: usize,
    duplicate: usize,
    anonymous: usize,
    unknown: usize,
    without_amount: usize,
}

impl Tally {
    fn record(&self, m: &FeatureMetrics) {
        m.events(EventOutcome::Applied, self.applied);
        m.events(EventOutcome::Duplicate, self.duplicate);
        m.events(EventOutcome::Anonymous, self.anonymous);
        m.events(EventOutcome::UnknownProfile, self.unknown);
        m.purchases_without_amount(self.without_amount);
    }
}

/// The events that name a profile, with their amounts. Events without a profile are only
/// counted; a purchase whose amount `total_spent` cannot hold is rejected.
fn candidates<'a>(
    entries: &'a [Delivery<NormalizedEvent>],
    outcome: &mut Outcome,
    tally: &mut Tally,
) -> Vec<Candidate<'a>> {
    let mut candidates = Vec::with_capacity(entries.len());
    for delivery in entries {
        let Some(profile_id) = delivery.message.profile_id else {
            tally.anonymous += 1;
            continue;
        };
        let mut candidate = Candidate {
            delivery,
            profile_id,
            amount: Some(Cents(0)),
        };
        if candidate.is_purchase() {
            match purchase_amount(&delivery.message.normalized_payload) {
                Amount::Found(cents) => candidate.amount = Some(cents),
                Amount::Missing => candidate.amount = None,
                Amount::OutOfRange(reason) => {
                    *outcome = std::mem::take(outcome).reject(delivery.id, reason);
                    continue;
                }
            }
        }
        candidates.push(candidate);
    }
    candidates
}

/// The candidates whose profile exists, with the profile they live on now; the others are
/// rejected as unknown.
fn known<'a>(
    candidates: Vec<Candidate<'a>>,
    resolved: &HashMap<Uuid, Uuid>,
    outcome: &mut Outcome,
    tally: &mut Tally,
) -> Vec<(Candidate<'a>, Uuid)> {
    let mut known = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        match resolved.get(&candidate.profile_id) {
            Some(&survivor) => known.push((candidate, survivor)),
            None => {
                tally.unknown += 1;
                let reason = format!("unknown profile {}", candidate.profile_id);
                *outcome = std::mem::take(outcome).reject(candidate.delivery.id, reason);
            }
        }
    }
    known
}

/// One `all` request per profile with a purchase in the batch, named after its last purchase
/// (`purchase:<event_id>`).
///
/// Purchases already counted by an earlier delivery are included on purpose: the first
/// delivery may have committed and then died before publishing, and a repeated request is
/// harmless (the dispatcher upserts the same predictions), while a lost one leaves a profile's
/// predictions stale.
fn prediction_requests(known: &[(Candidate<'_>, Uuid)]) -> Vec<PredictionRequest> {
    let mut last_purchase: BTreeMap<Uuid, &NormalizedEvent> = BTreeMap::new();
    for (candidate, survivor) in known.iter().filter(|(c, _)| c.is_purchase()) {
        last_purchase.insert(*survivor, candidate.event());
    }
    let now = Utc::now();
    last_purchase
        .into_iter()
        .map(|(profile_id, event)| PredictionRequest {
            profile_id,
            brand_id: event.brand_id.clone(),
            request_type: RequestType::All,
            timestamp: now,
            request_id: Some(format!("purchase:{}", event.event_id)),
        })
        .collect()
}
