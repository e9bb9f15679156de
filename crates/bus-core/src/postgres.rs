//! PostgreSQL: the pool, the embedded migrations, the inbox that makes redelivery harmless, and
//! rows for `COPY … FROM STDIN`.

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};

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

/// Rows in the text format of `COPY … FROM STDIN`, written straight into one buffer.
///
/// `COPY` is PostgreSQL's cheapest way in, but it cannot skip rows that already exist: use it
/// where a conflict is exceptional (new rows under a unique business key), and on a
/// [`is_unique_violation`] error write the batch again with `INSERT … ON CONFLICT`.
#[derive(Debug, Default, Clone)]
pub struct CopyRows {
    buf: Vec<u8>,
    rows: usize,
    columns: usize,
}

impl CopyRows {
    /// No rows yet, with room for about `bytes` of text.
    pub fn with_capacity(bytes: usize) -> Self {
        CopyRows {
            buf: Vec::with_capacity(bytes),
            ..CopyRows::default()
        }
    }

    /// Appends the next column of the current row: `None` is NULL; text is escaped.
    pub fn text(&mut self, value: Option<&str>) -> &mut Self {
        self.separator();
        match value {
            Some(text) => escape_into(&mut self.buf, text),
            None => self.buf.extend_from_slice(b"\\N"),
        }
        self
    }

    /// Appends the next column as its `Display` text (numbers, timestamps), escaped.
    pub fn display(&mut self, value: impl fmt::Display) -> &mut Self {
        self.separator();
        // Writing into a Vec cannot fail; a failing Display impl leaves a shorter value,
        // which PostgreSQL then rejects with a data error naming the column.
        let _ = write!(Escaper(&mut self.buf), "{value}");
        self
    }

    /// Appends the next column as a `timestamptz` in UTC, microseconds (PostgreSQL's
    /// precision), written without going through a formatter.
    pub fn timestamp(&mut self, t: chrono::DateTime<chrono::Utc>) -> &mut Self {
        use chrono::{Datelike, Timelike};
        if !(1..=9999).contains(&t.year()) {
            return self.display(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        }
        self.separator();
        // A leap second carries nanoseconds past 1e9; PostgreSQL has no leap seconds.
        let micros = (t.nanosecond() / 1_000).min(999_999);
        let buf = &mut self.buf;
        digits(buf, t.year().unsigned_abs(), 4);
        buf.push(b'-');
        digits(buf, t.month(), 2);
        buf.push(b'-');
        digits(buf, t.day(), 2);
        buf.push(b' ');
        digits(buf, t.hour(), 2);
        buf.push(b':');
        digits(buf, t.minute(), 2);
        buf.push(b':');
        digits(buf, t.second(), 2);
        buf.push(b'.');
        digits(buf, micros, 6);
        buf.extend_from_slice(b"+00");
        self
    }

    /// Ends the current row.
    pub fn end_row(&mut self) {
        self.buf.push(b'\n');
        self.rows += 1;
        self.columns = 0;
    }

    /// Complete rows so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The text to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    fn separator(&mut self) {
        if self.columns > 0 {
            self.buf.push(b'\t');
        }
        self.columns += 1;
    }
}

/// Appends `text` with the text format's four special bytes escaped, copying the runs in
/// between whole (hex ids and numbers, most of what is written, have none).
fn escape_into(buf: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        buf.extend_from_slice(escaped);
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

/// `value` as exactly `width` decimal digits (zero-padded; `value` must fit).
fn digits(buf: &mut Vec<u8>, value: u32, width: u32) {
    let mut divisor = 10u32.pow(width - 1);
    while divisor > 0 {
        buf.push(b'0' + (value / divisor % 10) as u8);
        divisor /= 10;
    }
}

struct Escaper<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// Runs `statement` (`COPY table (columns…) FROM STDIN`) with `rows`; returns the rows written.
/// On its own it is one statement, so one transaction: all rows or none.
pub async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    rows: &CopyRows,
) -> Result<u64, sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(rows.as_bytes()).await?;
    copy.finish().await
}

/// True for PostgreSQL's `unique_violation` (SQLSTATE 23505).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_escape_the_text_format_and_write_nulls() {
        let mut rows = CopyRows::default();
        rows.text(Some("a\tb")).text(None).display(42).end_row();
        rows.text(Some("back\\slash\nline\r"))
            .text(Some(""))
            .display("x\ty")
            .end_row();
        assert_eq!(rows.rows(), 2);
        assert_eq!(
            std::str::from_utf8(rows.as_bytes()).unwrap(),
            "a\\tb\t\\N\t42\nback\\\\slash\\nline\\r\t\tx\\ty\n"
        );
    }

    #[test]
    fn copy_timestamps_are_utc_with_microseconds() {
        let t = chrono::DateTime::parse_from_rfc3339("2024-03-09T07:05:04.012345678+02:00")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut rows = CopyRows::default();
        rows.timestamp(t).end_row();
        assert_eq!(rows.as_bytes(), b"2024-03-09 05:05:04.012345+00\n");
    }
}
