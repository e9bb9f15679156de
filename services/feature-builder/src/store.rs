//! PostgreSQL writes of one batch: one statement per table, never row by row.

use std::collections::HashSet;

use bus_core::chrono::{DateTime, Utc};
use bus_core::serde_json;
use bus_core::sqlx::{self, PgConnection};
use uuid::Uuid;

use crate::aggregate::FeatureDelta;

/// Records `(event_id, profile_id)` pairs in `feature_events` and returns the event ids that
/// were not there yet: only those may be counted. A replayed or redelivered event (same
/// `event_id`, whatever its stream entry) is already there and comes back as not fresh.
pub async fn claim_events(
    tx: &mut PgConnection,
    events: &[(&str, Uuid)],
) -> Result<HashSet<String>, sqlx::Error> {
    let ids: Vec<&str> = events.iter().map(|(id, _)| *id).collect();
    let profiles: Vec<Uuid> = events.iter().map(|(_, p)| *p).collect();
    let fresh: Vec<String> = sqlx::query_scalar(
        "INSERT INTO feature_events (event_id, profile_id)
         SELECT u.event_id, u.profile_id
         FROM UNNEST($1::text[], $2::uuid[]) AS u(event_id, profile_id)
         ORDER BY u.event_id
         ON CONFLICT (event_id) DO NOTHING
         RETURNING event_id",
    )
    .bind(&ids)
    .bind(&profiles)
    .fetch_all(&mut *tx)
    .await?;
    Ok(fresh.into_iter().collect())
}

/// Adds the deltas to `profile_features` in one upsert: counts and spent are added, first
/// seen is the earlier and last seen / last order the later timestamp, and `events_by_type`
/// is merged key by key with the counts added. A profile's first row takes its brand from
/// `profiles`.
pub async fn add_features(
    tx: &mut PgConnection,
    deltas: &[FeatureDelta],
) -> Result<(), sqlx::Error> {
    if deltas.is_empty() {
        return Ok(());
    }
    let profiles: Vec<Uuid> = deltas.iter().map(|d| d.profile_id).collect();
    let events: Vec<i32> = deltas.iter().map(|d| d.events).collect();
    let orders: Vec<i32> = deltas.iter().map(|d| d.orders).collect();
    let spent: Vec<String> = deltas.iter().map(|d| d.spent.to_string()).collect();
    let first: Vec<DateTime<Utc>> = deltas.iter().map(|d| d.first_seen).collect();
    let last: Vec<DateTime<Utc>> = deltas.iter().map(|d| d.last_seen).collect();
    let last_order: Vec<Option<DateTime<Utc>>> = deltas.iter().map(|d| d.last_order).collect();
    let by_type: Vec<String> = deltas
        .iter()
        .map(|d| serde_json::to_string(&d.by_type).unwrap_or_else(|_| "{}".into()))
        .collect();
    sqlx::query(
        "INSERT INTO profile_features AS f
                (profile_id, brand_id, event_count, order_count, total_spent, first_seen_at,
                 last_seen_at, last_order_at, events_by_type, updated_at)
         SELECT u.profile_id, p.brand_id, u.events, u.orders, u.spent::numeric, u.first_seen,
                u.last_seen, u.last_order, u.by_type::jsonb, now()
         FROM UNNEST($1::uuid[], $2::int[], $3::int[], $4::text[], $5::timestamptz[],
                     $6::timestamptz[], $7::timestamptz[], $8::text[])
              AS u(profile_id, events, orders, spent, first_seen, last_seen, last_order, by_type)
         JOIN profiles p ON p.profile_id = u.profile_id
         ORDER BY u.profile_id
         ON CONFLICT (profile_id) DO UPDATE SET
             event_count = f.event_count + EXCLUDED.event_count,
             order_count = f.order_count + EXCLUDED.order_count,
             total_spent = f.total_spent + EXCLUDED.total_spent,
             first_seen_at = least(f.first_seen_at, EXCLUDED.first_seen_at),
             last_seen_at = greatest(f.last_seen_at, EXCLUDED.last_seen_at),
             last_order_at = greatest(f.last_order_at, EXCLUDED.last_order_at),
             events_by_type = (
                 SELECT coalesce(jsonb_object_agg(c.key, c.total), '{}'::jsonb)
                 FROM (SELECT e.key, sum(e.value::bigint) AS total
                       FROM (SELECT * FROM jsonb_each_text(f.events_by_type)
                             UNION ALL
                             SELECT * FROM jsonb_each_text(EXCLUDED.events_by_type)) AS e
                       GROUP BY e.key) AS c),
             updated_at = now()",
    )
    .bind(&profiles)
    .bind(&events)
    .bind(&orders)
    .bind(&spent)
    .bind(&first)
    .bind(&last)
    .bind(&last_order)
    .bind(&by_type)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
