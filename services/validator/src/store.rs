//! PostgreSQL writes: one statement per table per batch, never row by row.

use bus_core::serde_json::{self, Value};
use bus_core::sqlx::{self, PgConnection, PgPool};
use bus_core::{DeadLetter, EntryId};

use crate::rules::Problem;

/// Code recorded for an entry that failed processing permanently (retries exhausted, or a
/// database constraint rejected it).
pub const CODE_PROCESSING_FAILED: i32 = 900;
/// Code recorded for an entry that could not be decoded (no `data`, or `data` not a JSON object).
pub const CODE_UNDECODABLE: i32 = 901;

/// One validated item, ready to be written.
#[derive(Debug, Clone)]
pub struct ItemRow {
    /// The entry ID.
    pub id: EntryId,
    /// The broken rules (empty when valid).
    pub problems: Vec<Problem>,
    /// Deliveries before this one.
    pub retry_count: i32,
    /// Milliseconds since the entry entered the stream.
    pub processing_ms: f64,
    /// Envelope fields.
    pub source: Option<String>,
    pub producer: Option<String>,
    pub batch_id: Option<String>,
    pub timestamp: Option<String>,
    /// The `data` object.
    pub data: Value,
}

impl ItemRow {
    /// `done` or `error`.
    pub fn status(&self) -> &'static str {
        if self.problems.is_empty() {
            "done"
        } else {
            "error"
        }
    }
}

/// Who wrote a batch.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub stream: &'a str,
    pub group: &'a str,
    pub consumer: &'a str,
}

/// Inserts the items (`error_codes` is derived from `errors`, so the two always agree).
pub async fn insert_items(
    tx: &mut PgConnection,
    origin: Origin<'_>,
    rows: &[ItemRow],
) -> Result<(), sqlx::Error> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
    let statuses: Vec<&str> = rows.iter().map(ItemRow::status).collect();
    let errors: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(&r.problems).unwrap_or_else(|_| "[]".into()))
        .collect();
    let retries: Vec<i32> = rows.iter().map(|r| r.retry_count).collect();
    let ms: Vec<f64> = rows.iter().map(|r| r.processing_ms).collect();
    let col = |f: fn(&ItemRow) -> &Option<String>| -> Vec<Option<String>> {
        rows.iter().map(|r| f(r).clone()).collect()
    };
    let data: Vec<String> = rows.iter().map(|r| r.data.to_string()).collect();
    sqlx::query(
        "INSERT INTO raw_items (stream, entry_id, consumer_group, consumer, status, error_codes,
                                errors, retry_count, processing_ms, source, producer, batch_id,
                                message_timestamp, data, processed_at)
         SELECT $1, u.entry_id, $2, $3, u.status,
                ARRAY(SELECT (e ->> 'code')::int
                      FROM jsonb_array_elements(u.errors::jsonb) WITH ORDINALITY AS x(e, n)
                      ORDER BY n),
                u.errors::jsonb, u.retry_count, u.processing_ms, u.source, u.producer,
                u.batch_id, u.message_timestamp, u.data::jsonb, now()
         FROM UNNEST($4::text[], $5::text[], $6::text[], $7::int[], $8::float8[], $9::text[],
                     $10::text[], $11::text[], $12::text[], $13::text[])
              AS u(entry_id, status, errors, retry_count, processing_ms, source, producer,
                   batch_id, message_timestamp, data)
         ON CONFLICT (stream, entry_id) DO NOTHING",
    )
    .bind(origin.stream)
    .bind(origin.group)
    .bind(origin.consumer)
    .bind(&ids)
    .bind(&statuses)
    .bind(&errors)
    .bind(&retries)
    .bind(&ms)
    .bind(col(|r| &r.source))
    .bind(col(|r| &r.producer))
    .bind(col(|r| &r.batch_id))
    .bind(col(|r| &r.timestamp))
    .bind(&data)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Adds the batch's counts to the consumer's running totals (one upsert).
pub async fn add_consumer_stats(
    tx: &mut PgConnection,
    origin: Origin<'_>,
    rows: &[ItemRow],
) -> Result<(), sqlx::Error> {
    let done = rows.iter().filter(|r| r.problems.is_empty()).count() as i64;
    let total_ms: f64 = rows.iter().map(|r| r.processing_ms).sum();
    sqlx::query(
        "INSERT INTO stream_consumer_stats AS s
                (stream, consumer_group, consumer, processed, done, errors, total_processing_ms,
                 last_active)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now())
         ON CONFLICT (stream, consumer_group, consumer) DO UPDATE SET
             processed = s.processed + EXCLUDED.processed,
             done = s.done + EXCLUDED.done,
             errors = s.errors + EXCLUDED.errors,
             total_processing_ms = s.total_processing_ms + EXCLUDED.total_processing_ms,
             last_active = now()",
    )
    .bind(origin.stream)
    .bind(origin.group)
    .bind(origin.consumer)
    .bind(rows.len() as i64)
    .bind(done)
    .bind(rows.len() as i64 - done)
    .bind(total_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Adds the batch to this minute's per-status counters (one upsert, statuses in a fixed order
/// so concurrent replicas lock the rows in the same order).
pub async fn add_processing_metrics(
    tx: &mut PgConnection,
    stream: &str,
    rows: &[ItemRow],
) -> Result<(), sqlx::Error> {
    let mut statuses = Vec::new();
    let mut counts = Vec::new();
    let mut totals = Vec::new();
    for status in ["done", "error"] {
        let of: Vec<&ItemRow> = rows.iter().filter(|r| r.status() == status).collect();
        if !of.is_empty() {
            statuses.push(status);
            counts.push(of.len() as i64);
            totals.push(of.iter().map(|r| r.processing_ms).sum::<f64>());
        }
    }
    sqlx::query(
        "INSERT INTO stream_processing_metrics AS m (bucket, stream, status, count,
                                                     total_processing_ms)
         SELECT date_trunc('minute', now()), $1, u.status, u.count, u.total
         FROM UNNEST($2::text[], $3::int8[], $4::float8[]) AS u(status, count, total)
         ON CONFLICT (bucket, stream, status) DO UPDATE SET
             count = m.count + EXCLUDED.count,
             total_processing_ms = m.total_processing_ms + EXCLUDED.total_processing_ms",
    )
    .bind(stream)
    .bind(&statuses)
    .bind(&counts)
    .bind(&totals)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Records dead-lettered entries as permanent errors (one statement). An entry that already
/// has a row keeps it: its verdict was committed before the dead letter happened.
pub async fn mark_dead_letters(
    pool: &PgPool,
    origin: Origin<'_>,
    letters: &[DeadLetter],
) -> Result<u64, sqlx::Error> {
    let mut ids = Vec::new();
    let mut errors = Vec::new();
    let mut retries = Vec::new();
    let mut data = Vec::new();
    let mut envelope: [Vec<Option<String>>; 4] = Default::default();
    for letter in letters {
        let problem = dead_letter_problem(letter);
        ids.push(letter.id.to_string());
        errors.push(serde_json::to_string(&[problem]).unwrap_or_else(|_| "[]".into()));
        retries.push(i32::try_from(letter.deliveries.saturating_sub(1)).unwrap_or(i32::MAX));
        data.push(letter.fields.get("data").map(|raw| {
            serde_json::from_str::<Value>(raw)
                .unwrap_or_else(|_| Value::String(raw.to_owned()))
                .to_string()
        }));
        for (slot, name) in envelope
            .iter_mut()
            .zip(["source", "producer", "batch_id", "timestamp"])
        {
            slot.push(letter.fields.get(name).map(str::to_owned));
        }
    }
    let [source, producer, batch_id, timestamp] = envelope;
    let done = sqlx::query(
        "INSERT INTO raw_items (stream, entry_id, consumer_group, consumer, status, error_codes,
                                errors, retry_count, source, producer, batch_id,
                                message_timestamp, data, processed_at)
         SELECT $1, u.entry_id, $2, $3, 'error',
                ARRAY(SELECT (e ->> 'code')::int FROM jsonb_array_elements(u.errors::jsonb) e),
                u.errors::jsonb, u.retry_count, u.source, u.producer, u.batch_id,
                u.message_timestamp, u.data::jsonb, now()
         FROM UNNEST($4::text[], $5::text[], $6::int[], $7::text[], $8::text[], $9::text[],
                     $10::text[], $11::text[])
              AS u(entry_id, errors, retry_count, source, producer, batch_id, message_timestamp,
                   data)
         ON CONFLICT (stream, entry_id) DO NOTHING",
    )
    .bind(origin.stream)
    .bind(origin.group)
    .bind(origin.consumer)
    .bind(&ids)
    .bind(&errors)
    .bind(&retries)
    .bind(&source)
    .bind(&producer)
    .bind(&batch_id)
    .bind(&timestamp)
    .bind(&data)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// The problem recorded for a dead letter: 901 when it could not be decoded, else 900.
pub fn dead_letter_problem(letter: &DeadLetter) -> Problem {
    if letter.kind == "decode" {
        Problem {
            code: CODE_UNDECODABLE,
            field: "data",
            message: format!("undecodable message: {}", letter.reason),
        }
    } else {
        Problem {
            code: CODE_PROCESSING_FAILED,
            field: "entry",
            message: format!("processing failed permanently: {}", letter.reason),
        }
    }
}
