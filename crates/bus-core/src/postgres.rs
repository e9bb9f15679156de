//! PostgreSQL: the pool, the embedded migrations, and the inbox that makes redelivery harmless.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::entry::EntryId;
use crate::error::BusError;
use crate::settings::{CommonSettings, SecretUrl};

/// Every migration of the system (`migrations/` at the workspace root), embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Opens a pool and checks it with one query, so a bad URL fails start-up with a clear error.
pub async fn connect(url: &SecretUrl, max_connections: u32) -> Result<PgPool, BusError> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url.expose())
        .await
        .map_err(|e| {
            crate::SettingsError::invalid(
                "DATABASE_URL",
                format!("cannot connect to {}: {e}", url.redacted()),
            )
        })?;
    Ok(pool)
}

/// Opens the pool named by `DATABASE_URL` and applies the migrations (sqlx holds an advisory
/// lock while migrating, so replicas can start together).
pub async fn connect_and_migrate(settings: &CommonSettings) -> Result<PgPool, BusError> {
    let url = settings.require_database_url()?;
    let pool = connect(url, settings.database_max_connections).await?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Records handled entry IDs in the same transaction as a batch's writes.
///
/// `claim` inserts the batch's IDs into `stream_inbox` and returns those that were not there
/// before: the handler applies only those, then commits. A redelivered entry is already in the
/// inbox, so it changes nothing; a rolled-back transaction leaves no trace, so a retry applies
/// it. Rows older than the retention are removed by [`inbox::prune`](prune).
pub mod inbox {
    use super::*;

    /// Inserts `ids` for `stream`/`group` and returns the ones that are new.
    pub async fn claim(
        tx: &mut sqlx::PgConnection,
        stream: &str,
        group: &str,
        ids: &[EntryId],
    ) -> Result<HashSet<EntryId>, sqlx::Error> {
        let texts: Vec<String> = ids.iter().map(EntryId::to_string).collect();
        let fresh: Vec<String> = sqlx::query_scalar(
            "INSERT INTO stream_inbox (stream, consumer_group, entry_id)
             SELECT $1, $2, unnest($3::text[])
             ON CONFLICT DO NOTHING
             RETURNING entry_id",
        )
        .bind(stream)
        .bind(group)
        .bind(&texts)
        .fetch_all(&mut *tx)
        .await?;
        Ok(fresh.iter().filter_map(|id| id.parse().ok()).collect())
    }

    /// Deletes inbox rows handled longer ago than `retention`. Returns how many.
    pub async fn prune(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "DELETE FROM stream_inbox WHERE handled_at < now() - make_interval(secs => $1)",
        )
        .bind(retention.as_secs_f64())
        .execute(pool)
        .await?;
        Ok(done.rows_affected())
    }
}
