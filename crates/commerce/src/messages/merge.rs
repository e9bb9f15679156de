//! `profiles.merge_requests`.

use bus_core::chrono::{DateTime, Utc};
use bus_core::serde_json;
use bus_core::{DecodeError, Fields, StreamMessage};
use uuid::Uuid;

use super::{boolean, format_timestamp, key, optional, text, timestamp};

/// Why a merge was requested (seed 001's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeReason {
    /// An event carried identifiers of several profiles.
    IdentifierMatch,
    /// A person asked for it.
    ManualReview,
}

impl MergeReason {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            MergeReason::IdentifierMatch => "identifier_match",
            MergeReason::ManualReview => "manual_review",
        }
    }
}

/// A request to merge profiles of one brand into one: `brand_id`, `profile_ids` (a JSON array of
/// UUIDs as a string, at least two, distinct), `reason`, `requires_manual_review`, `timestamp`;
/// plus the optional `request_id` (the idempotency key of the request; the stream entry id is
/// used when absent) and `event_id` (the event that raised it).
#[derive(Debug, Clone, PartialEq)]
pub struct MergeRequest {
    /// The brand the profiles belong to.
    pub brand_id: String,
    /// The profiles to merge, oldest first when the normalizer wrote the request.
    pub profile_ids: Vec<Uuid>,
    /// Why.
    pub reason: MergeReason,
    /// A person must decide: queue it for review instead of merging.
    pub requires_manual_review: bool,
    /// When it was requested.
    pub timestamp: DateTime<Utc>,
    /// Idempotency key: the same request published twice is applied once.
    pub request_id: Option<String>,
    /// The event that raised the request.
    pub event_id: Option<String>,
}

impl StreamMessage for MergeRequest {
    fn decode(fields: &Fields) -> Result<Self, DecodeError> {
        let reason = match text(fields, "reason")?.as_str() {
            "identifier_match" => MergeReason::IdentifierMatch,
            "manual_review" => MergeReason::ManualReview,
            other => {
                return Err(DecodeError::invalid(
                    "reason",
                    format!("must be `identifier_match` or `manual_review`, got {other:?}"),
                ));
            }
        };
        let profile_ids: Vec<Uuid> = bus_core::required_json(fields, "profile_ids")?;
        let mut distinct = profile_ids.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() < 2 || distinct.len() != profile_ids.len() {
            return Err(DecodeError::invalid(
                "profile_ids",
                format!(
                    "must name at least two distinct profiles, got {}",
                    serde_json::to_string(&profile_ids).unwrap_or_default()
                ),
            ));
        }
        Ok(MergeRequest {
            brand_id: text(fields, "brand_id")?,
            profile_ids,
            reason,
            requires_manual_review: boolean(fields, "requires_manual_review")?,
            timestamp: timestamp(fields, "timestamp")?,
            request_id: key(fields, "request_id")?,
            event_id: optional(fields, "event_id"),
        })
    }

    fn encode(&self) -> Fields {
        let mut f = Fields::new();
        f.set("brand_id", self.brand_id.as_str());
        let ids = serde_json::to_string(&self.profile_ids).unwrap_or_default();
        f.set("profile_ids", ids);
        f.set("reason", self.reason.as_str());
        f.set(
            "requires_manual_review",
            if self.requires_manual_review {
                "true"
            } else {
                "false"
            },
        );
        f.set("timestamp", format_timestamp(&self.timestamp));
        if let Some(id) = &self.request_id {
            f.set("request_id", id.as_str());
        }
        if let Some(id) = &self.event_id {
            f.set("event_id", id.as_str());
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MAX_KEY_LEN, fields};
    use super::*;

    const A: &str = "0193a4a0-0000-7000-8000-000000000001";
    const B: &str = "0193a4a0-0000-7000-8000-000000000002";

    #[test]
    fn a_seed_merge_request_round_trips() {
        let ids = format!(r#"["{A}","{B}"]"#);
        let f = fields(&[
            ("brand_id", "b"),
            ("profile_ids", &ids),
            ("reason", "identifier_match"),
            ("requires_manual_review", "false"),
            ("timestamp", "2024-12-01T10:00:00.000Z"),
        ]);
        let request = MergeRequest::decode(&f).unwrap();
        assert_eq!(request.profile_ids.len(), 2);
        assert_eq!(request.request_id, None);
        assert_eq!(MergeRequest::decode(&request.encode()).unwrap(), request);
    }

    #[test]
    fn fewer_than_two_distinct_profiles_a_bad_flag_or_an_oversized_key_is_invalid() {
        for (name, value) in [
            ("profile_ids", format!(r#"["{A}"]"#)),
            ("profile_ids", format!(r#"["{A}","{A}"]"#)),
            ("profile_ids", r#"["not-a-uuid","x"]"#.to_owned()),
            ("requires_manual_review", "yes".to_owned()),
            ("reason", "because".to_owned()),
            ("request_id", "k".repeat(MAX_KEY_LEN + 1)),
        ] {
            let ids = format!(r#"["{A}","{B}"]"#);
            let mut f = fields(&[
                ("brand_id", "b"),
                ("profile_ids", &ids),
                ("reason", "manual_review"),
                ("requires_manual_review", "true"),
                ("timestamp", "2024-12-01T10:00:00Z"),
            ]);
            f.set(name, value);
            let err = MergeRequest::decode(&f).unwrap_err();
            assert_eq!(err.field(), Some(name), "{err}");
        }
    }
}
