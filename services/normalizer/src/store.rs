//! PostgreSQL reads and writes of one batch: one statement per table, never row by row.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bus_core::chrono::{DateTime, Utc};
use bus_core::serde_json::{self, Value};
use bus_core::sqlx::{self, PgConnection};
use commerce::{MergeReason, MergeRequest, NormalizedEvent};
use uuid::Uuid;

use crate::matching::{IdentifierKey, KnownProfile, NewProfile};

/// The first key of the normalizer's two-key advisory locks (`'norm'` in ASCII), so they never
/// meet another component's locks; the second key is a hash of brand, kind and value.
pub const LOCK_CLASS: i32 = 0x6e6f_726d;

/// Takes a transaction-scoped advisory lock per identifier, in ascending hash order, so two
/// replicas touching the same new identifier serialise (one creates the profile, the other
/// finds it) and never deadlock on each other. The sorted hashes are built as an array first:
/// `unnest` yields an array in order, so the locks are taken in that order whatever plan the
/// planner picks for the `DISTINCT`.
pub async fn lock_identifiers(
    conn: &mut PgConnection,
    keys: &BTreeSet<IdentifierKey>,
) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let (brands, kinds, values) = columns(keys);
    sqlx::query(
        "SELECT pg_advisory_xact_lock($1, h)
         FROM unnest(ARRAY(
             SELECT DISTINCT hashtext(b || chr(31) || k || chr(31) || v)
             FROM unnest($2::text[], $3::text[], $4::text[]) AS u(b, k, v)
             ORDER BY 1
         )) AS h",
    )
    .bind(LOCK_CLASS)
    .bind(&brands)
    .bind(&kinds)
    .bind(&values)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The event ids among `ids` that are already stored.
pub async fn existing_events(
    conn: &mut PgConnection,
    ids: &[String],
) -> Result<HashSet<String>, sqlx::Error> {
    let found: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM events WHERE event_id = ANY($1)")
            .bind(ids)
            .fetch_all(&mut *conn)
            .await?;
    Ok(found.into_iter().collect())
}

/// The profile each known identifier is attached to (possibly merged away since).
pub async fn owners(
    conn: &mut PgConnection,
    keys: &BTreeSet<IdentifierKey>,
) -> Result<HashMap<IdentifierKey, Uuid>, sqlx::Error> {
    let (brands, kinds, values) = columns(keys);
    let rows: Vec<(String, String, String, Uuid)> = sqlx::query_as(
        "SELECT brand_id, kind, value, i.profile_id
         FROM unnest($1::text[], $2::text[], $3::text[]) AS u(brand_id, kind, value)
         JOIN profile_identifiers AS i USING (brand_id, kind, value)",
    )
    .bind(&brands)
    .bind(&kinds)
    .bind(&values)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(brand_id, kind, value, profile)| {
            let key = IdentifierKey {
                brand_id,
                kind,
                value,
            };
            (key, profile)
        })
        .collect())
}

/// Creation time and held identifier kinds of each of `ids`.
pub async fn profiles(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, KnownProfile>, sqlx::Error> {
    let rows: Vec<(Uuid, DateTime<Utc>, Vec<String>)> = sqlx::query_as(
        "SELECT p.profile_id, p.created_at,
                coalesce(array_agg(DISTINCT i.kind) FILTER (WHERE i.kind IS NOT NULL), '{}')
         FROM profiles AS p
         LEFT JOIN profile_identifiers AS i ON i.profile_id = p.profile_id
         WHERE p.profile_id = ANY($1)
         GROUP BY p.profile_id, p.created_at",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, created_at, kinds)| {
            let kinds = kinds.into_iter().collect();
            (id, KnownProfile { created_at, kinds })
        })
        .collect())
}

/// The database's clock now (not the transaction start): later than the creation time of
/// every profile this transaction can see.
pub async fn clock(conn: &mut PgConnection) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&mut *conn)
        .await
}

/// Inserts the batch's new profiles.
pub async fn insert_profiles(
    conn: &mut PgConnection,
    profiles: &[NewProfile],
) -> Result<(), sqlx::Error> {
    if profiles.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = profiles.iter().map(|p| p.profile_id).collect();
    let brands: Vec<&str> = profiles.iter().map(|p| p.brand_id.as_str()).collect();
    let created: Vec<DateTime<Utc>> = profiles.iter().map(|p| p.created_at).collect();
    sqlx::query(
        "INSERT INTO profiles (profile_id, brand_id, created_at, updated_at)
         SELECT u.id, u.brand_id, u.created_at, u.created_at
         FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS u(id, brand_id, created_at)",
    )
    .bind(&ids)
    .bind(&brands)
    .bind(&created)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Attaches the batch's new identifiers. No `ON CONFLICT`: under the advisory locks nobody
/// else can attach them, so a conflict is a bug to surface, not to hide.
pub async fn insert_identifiers(
    conn: &mut PgConnection,
    identifiers: &[(IdentifierKey, Uuid)],
) -> Result<(), sqlx::Error> {
    if identifiers.is_empty() {
        return Ok(());
    }
    let brands: Vec<&str> = identifiers
        .iter()
        .map(|(k, _)| k.brand_id.as_str())
        .collect();
    let kinds: Vec<&str> = identifiers.iter().map(|(k, _)| k.kind.as_str()).collect();
    let values: Vec<&str> = identifiers.iter().map(|(k, _)| k.value.as_str()).collect();
    let owners: Vec<Uuid> = identifiers.iter().map(|(_, p)| *p).collect();
    sqlx::query(
        "INSERT INTO profile_identifiers (brand_id, kind, value, profile_id)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[])",
    )
    .bind(&brands)
    .bind(&kinds)
    .bind(&values)
    .bind(&owners)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One `events` row: the raw event, what normalisation found and what matching decided.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub event_id: String,
    pub brand_id: String,
    pub event_type: String,
    pub profile_id: Option<Uuid>,
    pub identifiers: BTreeMap<String, String>,
    pub payload: Value,
    pub normalized_payload: Value,
    pub occurred_at: DateTime<Utc>,
    /// The `events.raw` entry id.
    pub stream_id: String,
    /// The merge request raised, oldest profile first, and whether it needs review.
    pub merge: Option<(Vec<Uuid>, bool)>,
}

/// Inserts the events (in `event_id` order, so two transactions inserting overlapping ids wait
/// on each other in the same order) and returns how many were new. Fewer than `rows` means
/// another transaction stored some of these events concurrently.
pub async fn insert_events(conn: &mut PgConnection, rows: &[EventRow]) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let text = |f: fn(&EventRow) -> &str| -> Vec<&str> { rows.iter().map(f).collect() };
    let identifiers: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(&r.identifiers).unwrap_or_else(|_| "{}".into()))
        .collect();
    let payloads: Vec<String> = rows.iter().map(|r| r.payload.to_string()).collect();
    let normalized: Vec<String> = rows
        .iter()
        .map(|r| r.normalized_payload.to_string())
        .collect();
    let merges: Vec<Option<String>> = rows
        .iter()
        .map(|r| {
            r.merge
                .as_ref()
                .and_then(|(ids, _)| serde_json::to_string(ids).ok())
        })
        .collect();
    let reviews: Vec<Option<bool>> = rows.iter().map(|r| r.merge.as_ref().map(|m| m.1)).collect();
    let done = sqlx::query(
        "INSERT INTO events (event_id, brand_id, event_type, profile_id, identifiers, payload,
                             normalized_payload, occurred_at, stream_id, merge_profile_ids,
                             merge_requires_review)
         SELECT u.event_id, u.brand_id, u.event_type, u.profile_id, u.identifiers::jsonb,
                u.payload::jsonb, u.normalized::jsonb, u.occurred_at, u.stream_id,
                CASE WHEN u.merge IS NOT NULL THEN
                    ARRAY(SELECT m.id::uuid
                          FROM jsonb_array_elements_text(u.merge::jsonb) WITH ORDINALITY AS m(id, n)
                          ORDER BY m.n)
                END,
                u.review
         FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[],
                     $7::text[], $8::timestamptz[], $9::text[], $10::text[], $11::bool[])
              AS u(event_id, brand_id, event_type, profile_id, identifiers, payload, normalized,
                   occurred_at, stream_id, merge, review)
         ORDER BY u.event_id
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(text(|r| &r.event_id))
    .bind(text(|r| &r.brand_id))
    .bind(text(|r| &r.event_type))
    .bind(rows.iter().map(|r| r.profile_id).collect::<Vec<_>>())
    .bind(&identifiers)
    .bind(&payloads)
    .bind(&normalized)
    .bind(rows.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
    .bind(text(|r| &r.stream_id))
    .bind(&merges)
    .bind(&reviews)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// An `events` row as stored (the columns of the same names): what a (re)delivery publishes
/// downstream.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub event_id: String,
    pub brand_id: String,
    pub event_type: String,
    pub profile_id: Option<Uuid>,
    pub identifiers: Value,
    pub normalized_payload: Value,
    pub occurred_at: DateTime<Utc>,
    pub stream_id: String,
    pub merge_profile_ids: Option<Vec<Uuid>>,
    pub merge_requires_review: Option<bool>,
    pub received_at: DateTime<Utc>,
}

impl StoredEvent {
    /// Its `events.normalized` entry.
    pub fn normalized(&self) -> NormalizedEvent {
        let identifiers = match &self.identifiers {
            Value::Object(map) => map
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect(),
            _ => BTreeMap::new(),
        };
        let normalized_payload = match &self.normalized_payload {
            Value::Object(map) => map.clone(),
            _ => Default::default(),
        };
        NormalizedEvent {
            event_id: self.event_id.clone(),
            brand_id: self.brand_id.clone(),
            event_type: self.event_type.clone(),
            profile_id: self.profile_id,
            identifiers,
            normalized_payload,
            timestamp: self.occurred_at,
        }
    }

    /// Its `profiles.merge_requests` entry, when it raised one. The request is keyed by the
    /// event (`request_id` = `event_id`) and stamped with the time the event was stored, so a
    /// republished request is identical to the first.
    pub fn merge_request(&self) -> Option<MergeRequest> {
        let profile_ids = self.merge_profile_ids.clone()?;
        Some(MergeRequest {
            brand_id: self.brand_id.clone(),
            profile_ids,
            reason: MergeReason::IdentifierMatch,
            // Both columns are written together; were the flag ever missing, a person decides.
            requires_manual_review: self.merge_requires_review.unwrap_or(true),
            timestamp: self.received_at,
            request_id: Some(self.event_id.clone()),
            event_id: Some(self.event_id.clone()),
        })
    }
}

/// The stored rows of `ids`, by event id.
pub async fn stored_events(
    conn: &mut PgConnection,
    ids: &[String],
) -> Result<HashMap<String, StoredEvent>, sqlx::Error> {
    type Row = (
        String,
        String,
        String,
        Option<Uuid>,
        Value,
        Value,
        DateTime<Utc>,
        String,
        Option<Vec<Uuid>>,
        Option<bool>,
        DateTime<Utc>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT event_id, brand_id, event_type, profile_id, identifiers, normalized_payload,
                occurred_at, stream_id, merge_profile_ids, merge_requires_review, received_at
         FROM events WHERE event_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let stored = StoredEvent {
                event_id: r.0,
                brand_id: r.1,
                event_type: r.2,
                profile_id: r.3,
                identifiers: r.4,
                normalized_payload: r.5,
                occurred_at: r.6,
                stream_id: r.7,
                merge_profile_ids: r.8,
                merge_requires_review: r.9,
                received_at: r.10,
            };
            (stored.event_id.clone(), stored)
        })
        .collect())
}

/// The brand, kind and value columns of `keys`, for `unnest`.
fn columns(keys: &BTreeSet<IdentifierKey>) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
    let brands = keys.iter().map(|k| k.brand_id.as_str()).collect();
    let kinds = keys.iter().map(|k| k.kind.as_str()).collect();
    let values = keys.iter().map(|k| k.value.as_str()).collect();
    (brands, kinds, values)
}
