//! Writing predictions: one upsert per batch.

use std::collections::BTreeMap;

use bus_core::chrono::{DateTime, Utc};
use bus_core::sqlx::{self, PgConnection};
use uuid::Uuid;

use crate::model::Prediction;

/// One row of `predictions`.
#[derive(Debug, Clone)]
pub struct PredictionRow<'a> {
    /// The (surviving) profile.
    pub profile_id: Uuid,
    /// Its brand.
    pub brand_id: &'a str,
    /// The prediction.
    pub prediction: &'a Prediction,
    /// The model version.
    pub model_version: &'a str,
    /// `request_id`, else the request's entry id.
    pub request_key: &'a str,
    /// The moment the features were read and the prediction computed for.
    pub predicted_at: DateTime<Utc>,
}

/// Upserts `rows` in one statement. Within the batch the last row of a (profile, type) wins;
/// against the table a row replaces an existing one only when it is not older, so a slow
/// worker holding an older snapshot never overwrites a fresher prediction.
pub async fn upsert(tx: &mut PgConnection, rows: &[PredictionRow<'_>]) -> Result<(), sqlx::Error> {
    let mut latest: BTreeMap<(Uuid, &'static str), &PredictionRow<'_>> = BTreeMap::new();
    for row in rows {
        latest.insert((row.profile_id, row.prediction.kind.as_str()), row);
    }
    if latest.is_empty() {
        return Ok(());
    }
    let mut profile = Vec::with_capacity(latest.len());
    let mut kinds = Vec::with_capacity(latest.len());
    let mut brand = Vec::with_capacity(latest.len());
    let mut score = Vec::with_capacity(latest.len());
    let mut label = Vec::with_capacity(latest.len());
    let mut details = Vec::with_capacity(latest.len());
    let mut version = Vec::with_capacity(latest.len());
    let mut key = Vec::with_capacity(latest.len());
    let mut at = Vec::with_capacity(latest.len());
    for ((profile_id, prediction_type), row) in latest {
        profile.push(profile_id);
        kinds.push(prediction_type);
        brand.push(row.brand_id);
        score.push(row.prediction.score);
        label.push(row.prediction.label.as_deref());
        details.push(row.prediction.details.to_string());
        version.push(row.model_version);
        key.push(row.request_key);
        at.push(row.predicted_at);
    }
    sqlx::query(
        "INSERT INTO predictions AS p
                (profile_id, prediction_type, brand_id, score, label, details, model_version,
                 request_key, predicted_at)
         SELECT u.profile_id, u.prediction_type, u.brand_id, u.score, u.label, u.details::jsonb,
                u.model_version, u.request_key, u.predicted_at
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::timestamptz[])
              AS u(profile_id, prediction_type, brand_id, score, label, details, model_version,
                   request_key, predicted_at)
         ORDER BY u.profile_id, u.prediction_type
         ON CONFLICT (profile_id, prediction_type) DO UPDATE SET
             brand_id = EXCLUDED.brand_id,
             score = EXCLUDED.score,
             label = EXCLUDED.label,
             details = EXCLUDED.details,
             model_version = EXCLUDED.model_version,
             request_key = EXCLUDED.request_key,
             predicted_at = EXCLUDED.predicted_at
         WHERE p.predicted_at <= EXCLUDED.predicted_at",
    )
    .bind(&profile)
    .bind(&kinds)
    .bind(&brand)
    .bind(&score)
    .bind(&label)
    .bind(&details)
    .bind(&version)
    .bind(&key)
    .bind(&at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
