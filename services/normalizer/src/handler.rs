//! The consumer-group handler: match a batch of raw events in one transaction, then publish
//! what the stored rows say.

use std::collections::{BTreeSet, HashMap, HashSet};

use bus_core::anyhow::anyhow;
use bus_core::sqlx::{PgConnection, PgPool};
use bus_core::{Batch, Delivery, Handler, HandlerError, Outcome, Producer};
use commerce::{MergeRequest, NormalizedEvent, RawEvent, names};
use uuid::Uuid;

use crate::identifiers::{self, Extracted};
use crate::matching::{IdentifierKey, Matcher};
use crate::metrics::NormalizerMetrics;
use crate::store::{self, EventRow, StoredEvent};

/// Longest `event_id`, `brand_id` and `event_type` accepted, in characters: they are index keys,
/// and a key too long for an index entry would fail its whole batch again and again.
pub const MAX_KEY_LEN: usize = 256;

/// Normalises `events.raw` entries, matches them to profiles and publishes the results.
#[derive(Debug, Clone)]
pub struct Normalizer {
    pool: PgPool,
    normalized: Producer,
    merge_requests: Producer,
    metrics: NormalizerMetrics,
}

/// What became of one entry of the batch, recorded in the metrics after the commit.
enum Settled {
    /// Stored now.
    Fresh {
        /// The `outcome` label.
        outcome: &'static str,
        /// Identifier fields it carried that were not used.
        rejected: Vec<identifiers::Rejected>,
        /// `Some(requires_review)` when it raised a merge request.
        review: Option<bool>,
    },
    /// Its `event_id` was stored before (or earlier in this batch).
    Duplicate,
}

impl Normalizer {
    /// A handler writing through `pool` and publishing with `normalized` (to
    /// `events.normalized`) and `merge_requests` (to `profiles.merge_requests`).
    pub fn new(
        pool: PgPool,
        normalized: Producer,
        merge_requests: Producer,
        metrics: NormalizerMetrics,
    ) -> Self {
        Normalizer {
            pool,
            normalized,
            merge_requests,
            metrics,
        }
    }

    /// Matches the batch and stores it; returns each entry's fate and the stored rows.
    async fn store(
        &self,
        tx: &mut PgConnection,
        entries: &[&Delivery<RawEvent>],
    ) -> Result<(Vec<Settled>, HashMap<String, StoredEvent>), HandlerError> {
        let event_ids: Vec<String> = entries
            .iter()
            .map(|d| d.message.event_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let existing = store::existing_events(tx, &event_ids).await?;
        let mut seen = HashSet::new();
        let fresh: Vec<(&Delivery<RawEvent>, Extracted)> = entries
            .iter()
            .copied()
            .filter(|d| {
                let id = &d.message.event_id;
                !existing.contains(id) && seen.insert(id.clone())
            })
            .map(|d| (d, identifiers::extract(&d.message.payload)))
            .collect();

        let mut matcher = self.matcher(tx, &fresh).await?;
        let mut rows = Vec::with_capacity(fresh.len());
        let mut decided = HashMap::new();
        for (d, found) in fresh {
            let m = &d.message;
            let decision = matcher.assign(&m.brand_id, &found.identifiers);
            rows.push(EventRow {
                event_id: m.event_id.clone(),
                brand_id: m.brand_id.clone(),
                event_type: m.event_type.clone(),
                profile_id: decision.profile_id(),
                identifiers: found.identifiers,
                payload: m.payload.clone().into(),
                normalized_payload: found.normalized_payload.into(),
                occurred_at: m.timestamp,
                stream_id: d.id.to_string(),
                merge: decision
                    .merge()
                    .map(|merge| (merge.profile_ids.clone(), merge.requires_review)),
            });
            let fate = Settled::Fresh {
                outcome: decision.outcome(),
                rejected: found.rejected,
                review: decision.merge().map(|merge| merge.requires_review),
            };
            decided.insert(d.id, fate);
        }

        store::insert_profiles(tx, &matcher.new_profiles).await?;
        store::insert_identifiers(tx, &matcher.new_identifiers).await?;
        let inserted = store::insert_events(tx, &rows).await?;
        if inserted < rows.len() as u64 {
            // Another consumer stored some of these events while we matched them (the same
            // event_id in two entries handled at once). Roll back; the retry finds them stored.
            return Err(HandlerError::transient(anyhow!(
                "{} of {} events were stored concurrently by another consumer; retrying",
                rows.len() as u64 - inserted,
                rows.len()
            )));
        }
        let stored = store::stored_events(tx, &event_ids).await?;
        let settled = entries
            .iter()
            .map(|d| decided.remove(&d.id).unwrap_or(Settled::Duplicate))
            .collect();
        Ok((settled, stored))
    }

    /// Locks the fresh events' identifiers and loads what matching needs to know of them.
    async fn matcher(
        &self,
        tx: &mut PgConnection,
        fresh: &[(&Delivery<RawEvent>, Extracted)],
    ) -> Result<Matcher, HandlerError> {
        let keys: BTreeSet<IdentifierKey> = fresh
            .iter()
            .flat_map(|(d, found)| IdentifierKey::of(&d.message.brand_id, &found.identifiers))
            .collect();
        store::lock_identifiers(tx, &keys).await?;
        let attached = store::owners(tx, &keys).await?;
        let owner_ids: Vec<Uuid> = attached
            .values()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Share-locks the owners until commit, so a merge of them waits for this batch (see
        // `commerce::profiles::resolve`), and follows merges already made to the survivor.
        let current = commerce::profiles::resolve(tx, &owner_ids).await?;
        let owners: HashMap<IdentifierKey, Uuid> = attached
            .into_iter()
            .map(|(key, owner)| {
                let now = current.get(&owner).copied().unwrap_or(owner);
                (key, now)
            })
            .collect();
        let current_ids: Vec<Uuid> = owners
            .values()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let profiles = store::profiles(tx, &current_ids).await?;
        let now = store::clock(tx).await?;
        Ok(Matcher::new(owners, profiles, now))
    }

    /// Publishes every entry's `events.normalized` entry and merge request, as stored.
    async fn publish(
        &self,
        entries: &[&Delivery<RawEvent>],
        stored: &HashMap<String, StoredEvent>,
    ) -> Result<(), HandlerError> {
        let mut normalized: Vec<NormalizedEvent> = Vec::with_capacity(entries.len());
        let mut merges: Vec<MergeRequest> = Vec::new();
        for d in entries {
            let Some(row) = stored.get(&d.message.event_id) else {
                return Err(HandlerError::transient(anyhow!(
                    "event {} is not stored after the commit",
                    d.message.event_id
                )));
            };
            normalized.push(row.normalized());
            merges.extend(row.merge_request());
        }
        let normalized_sent = async {
            self.normalized
                .send_batch(names::EVENTS_NORMALIZED, &normalized)
                .await
        };
        let merges_sent = async {
            if merges.is_empty() {
                return Ok(Vec::new());
            }
            self.merge_requests
                .send_batch(names::MERGE_REQUESTS, &merges)
                .await
        };
        bus_core::tokio::try_join!(normalized_sent, merges_sent)?;
        Ok(())
    }

    /// Counts and logs what became of each entry (after the commit, so only durable outcomes).
    fn record(
        &self,
        entries: &[&Delivery<RawEvent>],
        settled: Vec<Settled>,
        stored: &HashMap<String, StoredEvent>,
    ) {
        for (d, fate) in entries.iter().zip(settled) {
            match fate {
                Settled::Fresh {
                    outcome,
                    rejected,
                    review,
                } => {
                    self.metrics.event(outcome);
                    self.metrics.rejected(&rejected);
                    if let Some(review) = review {
                        self.metrics.merge_request(review);
                    }
                    d.span.in_scope(|| {
                        tracing::debug!(event_id = %d.message.event_id, outcome, rejected = rejected.len(), "event stored");
                        for r in &rejected {
                            tracing::debug!(event_id = %d.message.event_id, kind = %r.kind, reason = %r.reason, "identifier not used");
                        }
                    });
                }
                Settled::Duplicate => {
                    self.metrics.event("duplicate");
                    let first = stored
                        .get(&d.message.event_id)
                        .map_or("", |row| row.stream_id.as_str());
                    d.span.in_scope(|| {
                        tracing::info!(
                            event_id = %d.message.event_id,
                            entry_id = %d.id,
                            stored_from_entry = first,
                            "event_id already stored; republishing the stored result"
                        )
                    });
                }
            }
        }
    }
}

impl Handler for Normalizer {
    type Message = RawEvent;

    /// One transaction per batch. An event whose `event_id` is already stored changes nothing;
    /// every entry (fresh or not) gets its downstream entries published from the stored row
    /// after the commit and before the acknowledgement, so a crash in between loses nothing.
    async fn handle(&self, batch: Batch<'_, RawEvent>) -> Result<Outcome, HandlerError> {
        let mut outcome = Outcome::done();
        let mut entries = Vec::with_capacity(batch.entries.len());
        for d in batch.entries {
            match oversized(&d.message) {
                Some(reason) => outcome = outcome.reject(d.id, reason),
                None => entries.push(d),
            }
        }
        if entries.is_empty() {
            return Ok(outcome);
        }
        let mut tx = self.pool.begin().await?;
        let (settled, stored) = self.store(&mut tx, &entries).await?;
        tx.commit().await?;
        self.record(&entries, settled, &stored);
        self.publish(&entries, &stored).await?;
        Ok(outcome)
    }
}

/// Why `event` cannot be stored because a key field is too long, if it cannot.
fn oversized(event: &RawEvent) -> Option<String> {
    [
        ("event_id", &event.event_id),
        ("brand_id", &event.brand_id),
        ("event_type", &event.event_type),
    ]
    .into_iter()
    .find_map(|(field, value)| {
        let len = value.chars().count();
        (len > MAX_KEY_LEN).then(|| {
            format!("field `{field}` has {len} characters, at most {MAX_KEY_LEN} are accepted")
        })
    })
}
