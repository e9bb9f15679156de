//! Profile matching for one batch, in memory: the batch's identifiers and their owners are
//! loaded once (under the batch's advisory locks), then each event is assigned in stream order,
//! so a later event sees the profiles and identifiers an earlier one created. What must be
//! written is collected and written set-based afterwards.
//!
//! Rules, per event:
//! - no identifiers → anonymous (no profile);
//! - none of its identifiers owned → a new profile that gets all of them;
//! - owned by one (current) profile → that profile; it gets the identifiers nobody owns yet;
//! - owned by several → the oldest (`created_at`, then `profile_id`) gets the event and the
//!   unowned identifiers; identifiers of the others stay where they are (the merge moves them)
//!   and a merge request names all of them, oldest first.
//!
//! Conflict rule: the merge requires manual review when two of the profiles each already hold an
//! identifier of the same kind. Identifiers are unique per brand, so their values necessarily
//! differ (P1 has email a@x, P2 has email b@y): two phones or two emails are two people as
//! often as one, and a person must decide. Otherwise (P1 knows only the phone, P2 only the
//! email) the merge is automatic.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bus_core::chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

/// One identifier of one brand: what `profile_identifiers` is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentifierKey {
    /// The brand.
    pub brand_id: String,
    /// `phone`, `email`, `customer_id`, …
    pub kind: String,
    /// The normalised value.
    pub value: String,
}

impl IdentifierKey {
    /// The keys of an event's identifiers.
    pub fn of(brand_id: &str, identifiers: &BTreeMap<String, String>) -> Vec<IdentifierKey> {
        identifiers
            .iter()
            .map(|(kind, value)| IdentifierKey {
                brand_id: brand_id.to_owned(),
                kind: kind.clone(),
                value: value.clone(),
            })
            .collect()
    }
}

/// What matching needs to know of an existing (current, not merged-away) profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownProfile {
    /// When it was created: the oldest of several profiles survives.
    pub created_at: DateTime<Utc>,
    /// The kinds of identifier it holds (for the conflict rule).
    pub kinds: BTreeSet<String>,
}

/// A profile created while matching the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProfile {
    /// Its id (UUID v4).
    pub profile_id: Uuid,
    /// Its brand.
    pub brand_id: String,
    /// Its creation time: distinct and increasing within the batch, so "oldest" among the
    /// batch's own profiles is their creation order.
    pub created_at: DateTime<Utc>,
}

/// What matching decided for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No identifiers: stored without a profile.
    Anonymous,
    /// None of its identifiers was known: a new profile.
    NewProfile(Uuid),
    /// Its identifiers lead to one profile.
    Matched(Uuid),
    /// Its identifiers lead to several profiles.
    Merge(MergeDecision),
}

/// The event ties several profiles together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeDecision {
    /// The profiles, oldest first; the first gets the event.
    pub profile_ids: Vec<Uuid>,
    /// Two of them each hold an identifier of the same kind.
    pub requires_review: bool,
}

impl Decision {
    /// The profile the event is stored and published with.
    pub fn profile_id(&self) -> Option<Uuid> {
        match self {
            Decision::Anonymous => None,
            Decision::NewProfile(id) | Decision::Matched(id) => Some(*id),
            Decision::Merge(merge) => merge.profile_ids.first().copied(),
        }
    }

    /// The merge request it raises, if any.
    pub fn merge(&self) -> Option<&MergeDecision> {
        match self {
            Decision::Merge(merge) => Some(merge),
            _ => None,
        }
    }

    /// The `outcome` label of `normalizer_events_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Decision::Anonymous => "anonymous",
            Decision::NewProfile(_) => "new_profile",
            Decision::Matched(_) => "matched",
            Decision::Merge(_) => "merged_match",
        }
    }
}

/// The matching state of one batch.
#[derive(Debug)]
pub struct Matcher {
    /// Identifier → the current profile that owns it.
    owners: HashMap<IdentifierKey, Uuid>,
    /// Current profiles met so far.
    profiles: HashMap<Uuid, KnownProfile>,
    /// `created_at` of the next new profile.
    next_created_at: DateTime<Utc>,
    /// Profiles to insert, in creation order.
    pub new_profiles: Vec<NewProfile>,
    /// Identifiers to insert, with their owner.
    pub new_identifiers: Vec<(IdentifierKey, Uuid)>,
}

impl Matcher {
    /// A matcher that knows `owners` (each identifier's current profile) and `profiles` (every
    /// profile in `owners`); new profiles are created from `now` on (the database clock, later
    /// than every profile already committed).
    pub fn new(
        owners: HashMap<IdentifierKey, Uuid>,
        profiles: HashMap<Uuid, KnownProfile>,
        now: DateTime<Utc>,
    ) -> Self {
        Matcher {
            owners,
            profiles,
            next_created_at: now,
            new_profiles: Vec::new(),
            new_identifiers: Vec::new(),
        }
    }

    /// Assigns one event of `brand_id` with these normalised identifiers.
    pub fn assign(&mut self, brand_id: &str, identifiers: &BTreeMap<String, String>) -> Decision {
        let keys = IdentifierKey::of(brand_id, identifiers);
        if keys.is_empty() {
            return Decision::Anonymous;
        }
        let mut owned: Vec<Uuid> = keys
            .iter()
            .filter_map(|k| self.owners.get(k).copied())
            .collect();
        owned.sort_by_key(|id| (self.created_at(*id), *id));
        owned.dedup();
        match owned.as_slice() {
            [] => {
                let id = self.create(brand_id);
                self.attach_unowned(&keys, id);
                Decision::NewProfile(id)
            }
            [only] => {
                let id = *only;
                self.attach_unowned(&keys, id);
                Decision::Matched(id)
            }
            [oldest, ..] => {
                let requires_review = self.conflict(&owned);
                self.attach_unowned(&keys, *oldest);
                Decision::Merge(MergeDecision {
                    profile_ids: owned,
                    requires_review,
                })
            }
        }
    }

    /// A profile missing from `profiles` cannot happen (every owner is loaded); it would sort
    /// last rather than take the event.
    fn created_at(&self, id: Uuid) -> DateTime<Utc> {
        self.profiles
            .get(&id)
            .map_or(DateTime::<Utc>::MAX_UTC, |p| p.created_at)
    }

    fn create(&mut self, brand_id: &str) -> Uuid {
        let profile_id = Uuid::new_v4();
        let created_at = self.next_created_at;
        self.next_created_at = created_at + TimeDelta::microseconds(1);
        self.profiles.insert(
            profile_id,
            KnownProfile {
                created_at,
                kinds: BTreeSet::new(),
            },
        );
        self.new_profiles.push(NewProfile {
            profile_id,
            brand_id: brand_id.to_owned(),
            created_at,
        });
        profile_id
    }

    fn attach_unowned(&mut self, keys: &[IdentifierKey], profile_id: Uuid) {
        for key in keys {
            if self.owners.contains_key(key) {
                continue;
            }
            self.owners.insert(key.clone(), profile_id);
            if let Some(profile) = self.profiles.get_mut(&profile_id) {
                profile.kinds.insert(key.kind.clone());
            }
            self.new_identifiers.push((key.clone(), profile_id));
        }
    }

    /// Whether two of `profiles` each hold an identifier of the same kind.
    fn conflict(&self, profiles: &[Uuid]) -> bool {
        let mut held = BTreeSet::new();
        for id in profiles {
            let Some(profile) = self.profiles.get(id) else {
                continue;
            };
            if profile.kinds.iter().any(|kind| held.contains(kind)) {
                return true;
            }
            held.extend(profile.kinds.iter().cloned());
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn key(kind: &str, value: &str) -> IdentifierKey {
        IdentifierKey {
            brand_id: "b".into(),
            kind: kind.into(),
            value: value.into(),
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    /// P1 (older) holds phone 111 plus `p1_kinds`; P2 holds email b@y plus `p2_kinds`.
    fn two_profiles(p1_kinds: &[&str], p2_kinds: &[&str]) -> (Matcher, Uuid, Uuid) {
        let (p1, p2) = (Uuid::new_v4(), Uuid::new_v4());
        let owners = HashMap::from([(key("phone", "111"), p1), (key("email", "b@y.co"), p2)]);
        let kinds = |first: &str, more: &[&str]| -> BTreeSet<String> {
            std::iter::once(first)
                .chain(more.iter().copied())
                .map(str::to_owned)
                .collect()
        };
        let profiles = HashMap::from([
            (
                p1,
                KnownProfile {
                    created_at: at(0),
                    kinds: kinds("phone", p1_kinds),
                },
            ),
            (
                p2,
                KnownProfile {
                    created_at: at(1),
                    kinds: kinds("email", p2_kinds),
                },
            ),
        ]);
        (Matcher::new(owners, profiles, at(10)), p1, p2)
    }

    #[test]
    fn an_event_without_identifiers_is_anonymous() {
        let mut m = Matcher::new(HashMap::new(), HashMap::new(), at(0));
        assert_eq!(m.assign("b", &BTreeMap::new()), Decision::Anonymous);
        assert!(m.new_profiles.is_empty() && m.new_identifiers.is_empty());
    }

    #[test]
    fn unknown_identifiers_create_one_profile_that_a_later_event_matches() {
        let mut m = Matcher::new(HashMap::new(), HashMap::new(), at(0));
        let first = m.assign("b", &ids(&[("phone", "111"), ("email", "a@x.co")]));
        let Decision::NewProfile(p) = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            m.assign("b", &ids(&[("email", "a@x.co")])),
            Decision::Matched(p)
        );
        assert_eq!(m.new_profiles.len(), 1);
        assert_eq!(m.new_identifiers.len(), 2);
        // The same value for another brand is another customer.
        assert!(
            matches!(m.assign("c", &ids(&[("phone", "111")])), Decision::NewProfile(q) if q != p)
        );
    }

    #[test]
    fn a_matched_profile_gets_the_identifiers_nobody_owns_yet() {
        let (mut m, p1, _) = two_profiles(&[], &[]);
        let decision = m.assign("b", &ids(&[("phone", "111"), ("device_id", "d-1")]));
        assert_eq!(decision, Decision::Matched(p1));
        assert_eq!(m.new_identifiers, vec![(key("device_id", "d-1"), p1)]);
    }

    #[test]
    fn identifiers_of_two_profiles_go_to_the_older_and_raise_an_automatic_merge() {
        let (mut m, p1, p2) = two_profiles(&[], &[]);
        let decision = m.assign(
            "b",
            &ids(&[("phone", "111"), ("email", "b@y.co"), ("customer_id", "c")]),
        );
        assert_eq!(
            decision,
            Decision::Merge(MergeDecision {
                profile_ids: vec![p1, p2],
                requires_review: false
            })
        );
        assert_eq!(decision.profile_id(), Some(p1));
        // Only the unowned identifier moves now; P2's email stays with P2 until the merge.
        assert_eq!(m.new_identifiers, vec![(key("customer_id", "c"), p1)]);
        assert_eq!(
            m.assign("b", &ids(&[("email", "b@y.co")])),
            Decision::Matched(p2)
        );
    }

    #[test]
    fn two_profiles_holding_the_same_kind_need_manual_review() {
        let (mut m, p1, p2) = two_profiles(&["email"], &[]);
        let decision = m.assign("b", &ids(&[("phone", "111"), ("email", "b@y.co")]));
        assert_eq!(
            decision,
            Decision::Merge(MergeDecision {
                profile_ids: vec![p1, p2],
                requires_review: true
            })
        );
    }

    #[test]
    fn equal_creation_times_order_profiles_by_id() {
        let (lo, hi) = {
            let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
            (a.min(b), a.max(b))
        };
        let owners = HashMap::from([(key("phone", "1"), hi), (key("email", "e@x.co"), lo)]);
        let known = |kind: &str| KnownProfile {
            created_at: at(0),
            kinds: BTreeSet::from([kind.to_owned()]),
        };
        let profiles = HashMap::from([(hi, known("phone")), (lo, known("email"))]);
        let mut m = Matcher::new(owners, profiles, at(1));
        let decision = m.assign("b", &ids(&[("phone", "1"), ("email", "e@x.co")]));
        assert_eq!(decision.profile_id(), Some(lo));
    }

    #[test]
    fn profiles_created_in_one_batch_are_ordered_by_creation() {
        let mut m = Matcher::new(HashMap::new(), HashMap::new(), at(0));
        let Decision::NewProfile(first) = m.assign("b", &ids(&[("phone", "1")])) else {
            panic!()
        };
        let Decision::NewProfile(second) = m.assign("b", &ids(&[("email", "e@x.co")])) else {
            panic!()
        };
        let decision = m.assign("b", &ids(&[("phone", "1"), ("email", "e@x.co")]));
        assert_eq!(
            decision,
            Decision::Merge(MergeDecision {
                profile_ids: vec![first, second],
                requires_review: false
            })
        );
        assert!(m.new_profiles[0].created_at < m.new_profiles[1].created_at);
    }
}
