//! Folding a batch's freshly counted events into one change per profile, so the batch is
//! written with a single upsert whatever its size.

use std::collections::{BTreeMap, btree_map::Entry};

use bus_core::chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::amount::Cents;

/// The event type that counts as an order.
pub const PURCHASE: &str = "purchase";

/// One event to count, already resolved to the profile it lives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedEvent<'a> {
    /// The surviving profile.
    pub profile_id: Uuid,
    /// `purchase`, `page_view`, …
    pub event_type: &'a str,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// For a purchase, what it was worth (zero when the payload named no amount).
    pub spent: Cents,
}

impl CountedEvent<'_> {
    fn is_purchase(&self) -> bool {
        self.event_type == PURCHASE
    }
}

/// What a batch adds to one profile's features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureDelta {
    /// The profile.
    pub profile_id: Uuid,
    /// Events counted.
    pub events: i32,
    /// Purchases among them.
    pub orders: i32,
    /// What the purchases were worth.
    pub spent: Cents,
    /// The earliest event.
    pub first_seen: DateTime<Utc>,
    /// The latest event.
    pub last_seen: DateTime<Utc>,
    /// The latest purchase, if any.
    pub last_order: Option<DateTime<Utc>>,
    /// Events per type.
    pub by_type: BTreeMap<String, i64>,
}

impl FeatureDelta {
    fn new(event: &CountedEvent<'_>) -> Self {
        FeatureDelta {
            profile_id: event.profile_id,
            events: 0,
            orders: 0,
            spent: Cents::default(),
            first_seen: event.at,
            last_seen: event.at,
            last_order: None,
            by_type: BTreeMap::new(),
        }
    }

    fn add(&mut self, event: &CountedEvent<'_>) {
        self.events = self.events.saturating_add(1);
        self.first_seen = self.first_seen.min(event.at);
        self.last_seen = self.last_seen.max(event.at);
        *self.by_type.entry(event.event_type.to_owned()).or_default() += 1;
        if event.is_purchase() {
            self.orders = self.orders.saturating_add(1);
            // An i64 of cents is ~10^17 €: far past `numeric(14,2)`, which rejects the sum first.
            self.spent = self.spent.checked_add(event.spent).unwrap_or(self.spent);
            self.last_order = Some(self.last_order.map_or(event.at, |t| t.max(event.at)));
        }
    }
}

/// One delta per profile, ordered by profile id (the order rows are locked in, so concurrent
/// batches touching the same profiles never deadlock).
pub fn aggregate(events: &[CountedEvent<'_>]) -> Vec<FeatureDelta> {
    let mut by_profile: BTreeMap<Uuid, FeatureDelta> = BTreeMap::new();
    for event in events {
        match by_profile.entry(event.profile_id) {
            Entry::Occupied(mut delta) => delta.get_mut().add(event),
            Entry::Vacant(slot) => slot.insert(FeatureDelta::new(event)).add(event),
        }
    }
    by_profile.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use commerce::messages::parse_timestamp;

    fn at(raw: &str) -> DateTime<Utc> {
        parse_timestamp(raw).unwrap()
    }

    fn event<'a>(profile: Uuid, event_type: &'a str, when: &str, cents: i64) -> CountedEvent<'a> {
        CountedEvent {
            profile_id: profile,
            event_type,
            at: at(when),
            spent: Cents(cents),
        }
    }

    #[test]
    fn events_fold_into_one_delta_per_profile() {
        let (a, b) = (Uuid::from_u128(2), Uuid::from_u128(1));
        let deltas = aggregate(&[
            event(a, "page_view", "2024-12-01T10:00:00Z", 0),
            event(a, "purchase", "2024-12-03T10:00:00Z", 9999),
            event(b, "page_view", "2024-12-02T10:00:00Z", 0),
            event(a, "purchase", "2024-12-02T10:00:00Z", 1),
            event(a, "whatsapp_message", "2024-11-30T10:00:00Z", 0),
        ]);
        assert_eq!(deltas.len(), 2);
        assert_eq!(deltas[0].profile_id, b, "ordered by profile id");
        let d = &deltas[1];
        assert_eq!((d.events, d.orders, d.spent), (4, 2, Cents(10000)));
        assert_eq!(d.first_seen, at("2024-11-30T10:00:00Z"));
        assert_eq!(d.last_seen, at("2024-12-03T10:00:00Z"));
        assert_eq!(d.last_order, Some(at("2024-12-03T10:00:00Z")));
        let by_type: Vec<(&str, i64)> = d.by_type.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            by_type,
            [("page_view", 1), ("purchase", 2), ("whatsapp_message", 1)]
        );
        assert_eq!(deltas[0].last_order, None);
        assert_eq!((deltas[0].orders, deltas[0].spent), (0, Cents(0)));
    }
}
