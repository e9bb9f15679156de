//! Profile lookups every stage after the normalizer needs.

use std::collections::HashMap;

use bus_core::sqlx::{self, PgConnection};
use uuid::Uuid;

/// Resolves profiles to the profile each lives on now: itself, or the survivor it was merged
/// into (merges keep `merged_into` one hop deep). Unknown profiles are absent from the map.
///
/// The rows are share-locked until the transaction ends, and the merge processor locks them
/// for update: a merge of these profiles either committed before this call (and is seen here)
/// or waits until this transaction has committed (and then folds what it wrote). So a stage
/// that writes per-profile state under this lock never writes to a profile that is already
/// merged away.
pub async fn resolve(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Uuid>, sqlx::Error> {
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT profile_id, coalesce(merged_into, profile_id)
         FROM profiles WHERE profile_id = ANY($1)
         ORDER BY profile_id
         FOR SHARE",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}
