//! PostgreSQL reads and writes of a merge, all inside the batch's transaction.

use bus_core::chrono::{DateTime, Utc};
use bus_core::sqlx::{self, PgConnection};
use commerce::MergeRequest;
use uuid::Uuid;

use crate::rules::Profile;

/// What an earlier delivery of the same request already did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    /// It merged; `survivor` is where those profiles live now, `has_orders` whether that
    /// profile has purchases (its merge asked for a fresh prediction).
    Merged { survivor: Uuid, has_orders: bool },
    /// It was queued for manual review.
    Queued,
}

/// Looks the request key up in the merge audit and the review queue.
pub async fn prior(tx: &mut PgConnection, request_key: &str) -> Result<Option<Prior>, sqlx::Error> {
    let merged: Option<(Uuid, bool)> = sqlx::query_as(
        "SELECT s.home, coalesce(f.order_count, 0) > 0
         FROM profile_merges m
         JOIN profiles p ON p.profile_id = m.surviving_profile_id
         CROSS JOIN LATERAL (SELECT coalesce(p.merged_into, p.profile_id) AS home) s
         LEFT JOIN profile_features f ON f.profile_id = s.home
         WHERE m.request_key = $1",
    )
    .bind(request_key)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((survivor, has_orders)) = merged {
        return Ok(Some(Prior::Merged {
            survivor,
            has_orders,
        }));
    }
    let queued: Option<i64> =
        sqlx::query_scalar("SELECT review_id FROM manual_review_queue WHERE request_key = $1")
            .bind(request_key)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(queued.map(|_| Prior::Queued))
}

/// Locks the requested profiles, the profiles they were merged into (if any) and the
/// profiles merged into any of those, for update, in id order (the order every stage locks
/// profiles in), and returns the requested ones and the ones they were merged into.
///
/// Locking the profiles merged into them first makes a stage that resolved one of those (and
/// holds it `FOR SHARE`) finish its per-profile writes before this merge folds them. Only the
/// single active merge-processor changes `merged_into`, so where a profile lives cannot change
/// between reading it and locking it.
pub async fn lock_profiles(
    tx: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<Profile>, sqlx::Error> {
    let rows: Vec<(Uuid, String, Option<Uuid>, DateTime<Utc>)> = sqlx::query_as(
        "WITH involved AS (
             SELECT profile_id AS id FROM profiles WHERE profile_id = ANY($1)
             UNION
             SELECT merged_into FROM profiles WHERE profile_id = ANY($1) AND merged_into IS NOT NULL
         )
         SELECT profile_id, brand_id, merged_into, created_at
         FROM profiles
         WHERE profile_id IN (SELECT id FROM involved) OR merged_into IN (SELECT id FROM involved)
         ORDER BY profile_id
         FOR UPDATE",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    let homes: Vec<Uuid> = rows
        .iter()
        .filter(|(id, ..)| ids.contains(id))
        .filter_map(|(_, _, merged_into, _)| *merged_into)
        .collect();
    Ok(rows
        .into_iter()
        .filter(|(id, ..)| ids.contains(id) || homes.contains(id))
        .map(|(id, brand_id, merged_into, created_at)| Profile {
            id,
            brand_id,
            merged_into,
            created_at,
        })
        .collect())
}

/// The conflict rule (the normalizer's): whether two of `profiles` each hold an identifier of
/// the same kind.
pub async fn conflicting(tx: &mut PgConnection, profiles: &[Uuid]) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM profile_identifiers WHERE profile_id = ANY($1)
                        GROUP BY kind HAVING count(DISTINCT profile_id) > 1)",
    )
    .bind(profiles)
    .fetch_one(&mut *tx)
    .await
}

/// Queues the request for a person, with `conflicts`: for each identifier kind that more than
/// one of the profiles carries, the differing values (sorted). Identifiers are unique per
/// brand, so two profiles with the same kind always differ in it.
///
/// Every event that links the same profiles raises its own request; while one of them waits
/// for a person, the others add nothing (returns `false`). Only the single active instance
/// writes here, so looking first cannot race with another insert.
pub async fn queue_review(
    tx: &mut PgConnection,
    request_key: &str,
    request: &MergeRequest,
) -> Result<bool, sqlx::Error> {
    let pending: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM manual_review_queue
                        WHERE status = 'pending' AND brand_id = $1
                          AND profile_ids @> $2 AND profile_ids <@ $2)",
    )
    .bind(&request.brand_id)
    .bind(&request.profile_ids)
    .fetch_one(&mut *tx)
    .await?;
    if pending {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO manual_review_queue (request_key, brand_id, profile_ids, reason, conflicts)
         SELECT $1, $2, $3, $4, coalesce(
             (SELECT jsonb_object_agg(kind, vals)
              FROM (SELECT kind, to_jsonb(array_agg(DISTINCT value ORDER BY value)) AS vals
                    FROM profile_identifiers
                    WHERE profile_id = ANY($3)
                    GROUP BY kind
                    HAVING count(DISTINCT profile_id) > 1) c),
             '{}'::jsonb)
         ON CONFLICT (request_key) DO NOTHING",
    )
    .bind(request_key)
    .bind(&request.brand_id)
    .bind(&request.profile_ids)
    .bind(request.reason.as_str())
    .execute(&mut *tx)
    .await?;
    Ok(true)
}

/// One auto-merge to apply.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// The request key (audit and dedupe).
    pub request_key: &'a str,
    /// The request.
    pub request: &'a MergeRequest,
    /// The profile that stays.
    pub survivor: Uuid,
    /// The profiles merged into it.
    pub merged: &'a [Uuid],
    /// The fencing token this commit was allowed under.
    pub fencing_token: i64,
    /// The consumer applying it.
    pub merged_by: &'a str,
}

/// What a merge moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// Identifier rows re-pointed to the survivor.
    pub identifiers: i32,
    /// Events re-pointed to the survivor.
    pub events: i32,
    /// Whether the survivor has purchases after the merge.
    pub has_orders: bool,
}

/// Applies a merge: profiles first (so anything resolving them waits for this transaction),
/// then identifiers, events, counted events and features, predictions, and the audit row.
pub async fn merge(tx: &mut PgConnection, plan: &Plan<'_>) -> Result<Moved, sqlx::Error> {
    let (survivor, merged) = (plan.survivor, plan.merged);
    // One hop deep: profiles merged into a merged profile now point at the survivor.
    sqlx::query(
        "UPDATE profiles SET merged_into = $1, updated_at = now()
         WHERE merged_into = ANY($2) OR profile_id = ANY($2)",
    )
    .bind(survivor)
    .bind(merged)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE profiles SET updated_at = now() WHERE profile_id = $1")
        .bind(survivor)
        .execute(&mut *tx)
        .await?;
    let identifiers = repoint(
        tx,
        "UPDATE profile_identifiers SET profile_id = $1 WHERE profile_id = ANY($2)",
        plan,
    )
    .await?;
    let events = repoint(
        tx,
        "UPDATE events SET profile_id = $1 WHERE profile_id = ANY($2)",
        plan,
    )
    .await?;
    repoint(
        tx,
        "UPDATE feature_events SET profile_id = $1 WHERE profile_id = ANY($2)",
        plan,
    )
    .await?;
    fold_features(tx, survivor, merged, &plan.request.brand_id).await?;
    sqlx::query("DELETE FROM predictions WHERE profile_id = ANY($1)")
        .bind(merged)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO profile_merges (request_key, brand_id, surviving_profile_id,
                                     merged_profile_ids, reason, identifiers_moved, events_moved,
                                     fencing_token, merged_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(plan.request_key)
    .bind(&plan.request.brand_id)
    .bind(survivor)
    .bind(merged)
    .bind(plan.request.reason.as_str())
    .bind(identifiers)
    .bind(events)
    .bind(plan.fencing_token)
    .bind(plan.merged_by)
    .execute(&mut *tx)
    .await?;
    let has_orders: bool = sqlx::query_scalar(
        "SELECT coalesce((SELECT order_count FROM profile_features WHERE profile_id = $1), 0) > 0",
    )
    .bind(survivor)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Moved {
        identifiers,
        events,
        has_orders,
    })
}

/// Runs `update` (`SET profile_id = $1 WHERE profile_id = ANY($2)`) with the plan's
/// survivor and merged profiles; returns how many rows moved.
async fn repoint(
    tx: &mut PgConnection,
    update: &'static str,
    plan: &Plan<'_>,
) -> Result<i32, sqlx::Error> {
    let done = sqlx::query(update)
        .bind(plan.survivor)
        .bind(plan.merged)
        .execute(&mut *tx)
        .await?;
    Ok(i32::try_from(done.rows_affected()).unwrap_or(i32::MAX))
}

/// Folds the merged profiles' features into the survivor's row (creating it when the survivor
/// had none) and deletes theirs: counts and spent add up, first seen is the earliest, last
/// seen and last order the latest, events by type add up per type.
async fn fold_features(
    tx: &mut PgConnection,
    survivor: Uuid,
    merged: &[Uuid],
    brand_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH gone AS (
             DELETE FROM profile_features WHERE profile_id = ANY($2) RETURNING *
         ), by_type AS (
             SELECT key, sum(value::numeric) AS n
             FROM (SELECT e.key, e.value FROM gone, jsonb_each_text(gone.events_by_type) e
                   UNION ALL
                   SELECT e.key, e.value
                   FROM profile_features f, jsonb_each_text(f.events_by_type) e
                   WHERE f.profile_id = $1) all_counts
             GROUP BY key
         ), totals AS (
             SELECT count(*) AS rows, sum(event_count) AS events, sum(order_count) AS orders,
                    sum(total_spent) AS spent, min(first_seen_at) AS first_seen,
                    max(last_seen_at) AS last_seen, max(last_order_at) AS last_order
             FROM gone
         )
         INSERT INTO profile_features AS pf (profile_id, brand_id, event_count, order_count,
                                             total_spent, first_seen_at, last_seen_at,
                                             last_order_at, events_by_type, updated_at)
         SELECT $1, $3, t.events, t.orders, t.spent, t.first_seen, t.last_seen, t.last_order,
                (SELECT coalesce(jsonb_object_agg(key, n), '{}'::jsonb) FROM by_type), now()
         FROM totals t
         WHERE t.rows > 0
         ON CONFLICT (profile_id) DO UPDATE SET
             event_count = pf.event_count + EXCLUDED.event_count,
             order_count = pf.order_count + EXCLUDED.order_count,
             total_spent = pf.total_spent + EXCLUDED.total_spent,
             first_seen_at = least(pf.first_seen_at, EXCLUDED.first_seen_at),
             last_seen_at = greatest(pf.last_seen_at, EXCLUDED.last_seen_at),
             last_order_at = greatest(pf.last_order_at, EXCLUDED.last_order_at),
             events_by_type = EXCLUDED.events_by_type,
             updated_at = now()",
    )
    .bind(survivor)
    .bind(merged)
    .bind(brand_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
