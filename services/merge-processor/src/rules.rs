//! What to do with a merge request, decided from the locked profile rows before anything is
//! written (so a rejected request never needs a rollback of the others in its batch).

use std::collections::BTreeSet;

use bus_core::chrono::{DateTime, Utc};
use commerce::MergeRequest;
use uuid::Uuid;

/// A requested profile as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Its id.
    pub id: Uuid,
    /// Its brand.
    pub brand_id: String,
    /// The survivor it was merged into, if it was.
    pub merged_into: Option<Uuid>,
    /// When it was created (the oldest profile survives a merge).
    pub created_at: DateTime<Utc>,
}

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not applicable, ever: dead-letter it with this reason.
    Reject(String),
    /// Every requested profile already lives on `survivor`: nothing to do.
    AlreadyMerged {
        /// Where they all live.
        survivor: Uuid,
    },
    /// Some requested profiles were merged into others after the request was made (two
    /// requests chained on one profile, `[A,B]` then `[B,C]`): the request now means merging
    /// the profiles they live on, `homes` (sorted). Decide again on those; the conflict rule
    /// must be checked anew, since the normalizer checked the profiles it saw.
    Redirect {
        /// Where the requested profiles live now, at least two.
        homes: Vec<Uuid>,
    },
    /// A person must decide: queue it.
    Review,
    /// Merge `merged` into `survivor`.
    Merge {
        /// The oldest profile (created_at, then id).
        survivor: Uuid,
        /// The others, sorted by id.
        merged: Vec<Uuid>,
    },
}

/// Decides a request given the rows of its profiles (absent rows are unknown profiles; rows
/// of other profiles, such as where the requested ones live, are ignored).
///
/// In order: every profile must exist and belong to the request's brand; a profile already
/// merged makes the request a duplicate when all of them already live on one survivor, and a
/// [`Decision::Redirect`] to where they live otherwise; then `requires_manual_review` queues
/// it; else the oldest survives.
pub fn decide(request: &MergeRequest, rows: &[Profile]) -> Decision {
    let profiles: Vec<&Profile> = rows
        .iter()
        .filter(|p| request.profile_ids.contains(&p.id))
        .collect();
    let unknown: Vec<String> = request
        .profile_ids
        .iter()
        .filter(|id| !profiles.iter().any(|p| p.id == **id))
        .map(Uuid::to_string)
        .collect();
    if !unknown.is_empty() {
        return Decision::Reject(format!("unknown profile {}", unknown.join(", ")));
    }
    if let Some(p) = profiles.iter().find(|p| p.brand_id != request.brand_id) {
        return Decision::Reject(format!(
            "profile {} belongs to brand {:?}, not {:?}",
            p.id, p.brand_id, request.brand_id
        ));
    }
    if profiles.iter().any(|p| p.merged_into.is_some()) {
        let homes: BTreeSet<Uuid> = profiles
            .iter()
            .map(|p| p.merged_into.unwrap_or(p.id))
            .collect();
        let homes: Vec<Uuid> = homes.into_iter().collect();
        return match homes.as_slice() {
            [] => Decision::Reject("no profiles to merge".into()),
            [survivor] => Decision::AlreadyMerged {
                survivor: *survivor,
            },
            _ => Decision::Redirect { homes },
        };
    }
    if request.requires_manual_review {
        return Decision::Review;
    }
    let Some(oldest) = profiles.iter().min_by_key(|p| (p.created_at, p.id)) else {
        // Unreachable: a decoded request names at least two profiles and all were found.
        return Decision::Reject("no profiles to merge".into());
    };
    let mut merged: Vec<Uuid> = profiles
        .iter()
        .map(|p| p.id)
        .filter(|id| *id != oldest.id)
        .collect();
    merged.sort();
    Decision::Merge {
        survivor: oldest.id,
        merged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus_core::chrono::TimeZone;
    use commerce::MergeReason;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn profile(n: u128, created_second: u32) -> Profile {
        Profile {
            id: id(n),
            brand_id: "b".into(),
            merged_into: None,
            created_at: Utc
                .with_ymd_and_hms(2024, 12, 1, 10, 0, created_second)
                .unwrap(),
        }
    }

    fn request(ids: &[u128], review: bool) -> MergeRequest {
        MergeRequest {
            brand_id: "b".into(),
            profile_ids: ids.iter().copied().map(id).collect(),
            reason: MergeReason::IdentifierMatch,
            requires_manual_review: review,
            timestamp: Utc::now(),
            request_id: None,
            event_id: None,
        }
    }

    #[test]
    fn the_oldest_profile_survives_and_ties_go_to_the_smaller_id() {
        let rows = [profile(3, 5), profile(2, 1), profile(1, 1)];
        assert_eq!(
            decide(&request(&[3, 2, 1], false), &rows),
            Decision::Merge {
                survivor: id(1),
                merged: vec![id(2), id(3)]
            }
        );
    }

    #[test]
    fn an_unknown_profile_is_named_in_the_rejection() {
        let verdict = decide(&request(&[1, 9], false), &[profile(1, 0)]);
        assert_eq!(
            verdict,
            Decision::Reject(format!("unknown profile {}", id(9)))
        );
    }

    #[test]
    fn a_profile_of_another_brand_is_rejected() {
        let mut other = profile(2, 0);
        other.brand_id = "other".into();
        let Decision::Reject(reason) = decide(&request(&[1, 2], false), &[profile(1, 0), other])
        else {
            panic!("expected a rejection");
        };
        assert!(reason.contains(r#"brand "other", not "b""#), "{reason}");
    }

    #[test]
    fn profiles_already_living_on_one_survivor_are_a_duplicate() {
        let mut merged = profile(2, 1);
        merged.merged_into = Some(id(1));
        assert_eq!(
            decide(&request(&[1, 2], false), &[profile(1, 0), merged]),
            Decision::AlreadyMerged { survivor: id(1) }
        );
    }

    #[test]
    fn a_profile_merged_elsewhere_redirects_the_request_to_where_the_profiles_live() {
        let mut merged = profile(2, 1);
        merged.merged_into = Some(id(7));
        let rows = [profile(1, 0), merged, profile(7, 5)];
        assert_eq!(
            decide(&request(&[1, 2], true), &rows),
            Decision::Redirect {
                homes: vec![id(1), id(7)]
            }
        );
        // Decided again on the homes, the extra rows are ignored and the oldest survives.
        assert_eq!(
            decide(&request(&[7, 1], false), &rows),
            Decision::Merge {
                survivor: id(1),
                merged: vec![id(7)]
            }
        );
    }

    #[test]
    fn a_request_needing_review_is_queued_not_merged() {
        assert_eq!(
            decide(&request(&[1, 2], true), &[profile(1, 0), profile(2, 0)]),
            Decision::Review
        );
    }
}
