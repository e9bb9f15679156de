//! The handler contract: a typed batch in, a named outcome out.

use std::future::Future;

use crate::entry::{EntryId, Fields};
use crate::message::StreamMessage;

/// Handles batches of one stream for one consumer group.
///
/// The contract that makes delivery effectively-once: a call either commits all of its effects
/// (in one database transaction that also records the entry IDs, see [`crate::inbox`]) and
/// returns `Ok`, or commits nothing and returns `Err`. The worker acknowledges only after `Ok`,
/// so a crash at any point leads to a redelivery that changes nothing.
pub trait Handler: Send + Sync + 'static {
    /// The decoded message type. Entries that fail to decode never reach the handler: they go
    /// to the dead-letter stream with the decoding error as the reason.
    type Message: StreamMessage;

    /// Handles a batch. On [`HandlerError::Permanent`] the worker splits the batch to isolate
    /// the entries that fail; on [`HandlerError::Transient`] it retries with backoff.
    fn handle(
        &self,
        batch: Batch<'_, Self::Message>,
    ) -> impl Future<Output = Result<Outcome, HandlerError>> + Send;

    /// Called after entries were moved to the dead-letter stream (best effort, e.g. to mark
    /// rows as permanently failed). The default does nothing.
    fn dead_lettered(&self, letters: &[DeadLetter]) -> impl Future<Output = ()> + Send {
        let _ = letters;
        std::future::ready(())
    }
}

/// A batch handed to a handler: a slice of deliveries plus where they came from.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a, M> {
    /// Stream key the entries were read from.
    pub stream: &'a str,
    /// Consumer group.
    pub group: &'a str,
    /// This consumer's name.
    pub consumer: &'a str,
    /// The entries, in stream order.
    pub entries: &'a [Delivery<M>],
}

impl<M> Batch<'_, M> {
    /// The entry IDs of the batch, in order.
    pub fn ids(&self) -> Vec<EntryId> {
        self.entries.iter().map(|d| d.id).collect()
    }
}

/// One decoded entry.
#[derive(Debug)]
pub struct Delivery<M> {
    /// The entry's ID.
    pub id: EntryId,
    /// The decoded message.
    pub message: M,
    /// The fields as received (unknown fields included).
    pub fields: Fields,
    /// How many times this entry has been delivered, this delivery included.
    pub deliveries: u64,
    /// The entry's span, a child of the producer's span when the entry carried `traceparent`.
    pub span: tracing::Span,
}

/// What a successful handler call decided: every entry is done except the rejected ones,
/// which go to the dead-letter stream with their reason.
#[derive(Debug, Default)]
pub struct Outcome {
    pub(crate) rejected: Vec<(EntryId, String)>,
}

impl Outcome {
    /// Every entry of the batch is done.
    pub fn done() -> Self {
        Outcome::default()
    }

    /// Marks one entry as permanently unprocessable (dead letter) while the rest are done.
    pub fn reject(mut self, id: EntryId, reason: impl Into<String>) -> Self {
        self.rejected.push((id, reason.into()));
        self
    }

    /// The entries rejected so far, with their reasons.
    pub fn rejected(&self) -> &[(EntryId, String)] {
        &self.rejected
    }
}

/// Why a handler call failed; nothing it did may have been committed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// May succeed later (database down, timeout, lost connection): retried with backoff,
    /// dead-lettered only after `max_deliveries`.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// Will never succeed for some entry of the batch (constraint violation, rule breach): the
    /// batch is split until the failing entries are isolated and dead-lettered.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
    /// A dependency is down (database unreachable, an external service not answering): not
    /// acked, retried with capped backoff for as long as the outage lasts, and never counted
    /// toward `max_deliveries`, so an outage does not turn into dead letters.
    #[error("unavailable: {0:#}")]
    Unavailable(anyhow::Error),
}

impl HandlerError {
    /// A transient failure.
    pub fn transient(e: impl Into<anyhow::Error>) -> Self {
        HandlerError::Transient(e.into())
    }
    /// A permanent failure.
    pub fn permanent(e: impl Into<anyhow::Error>) -> Self {
        HandlerError::Permanent(e.into())
    }
    /// A dependency outage.
    pub fn unavailable(e: impl Into<anyhow::Error>) -> Self {
        HandlerError::Unavailable(e.into())
    }
}

/// PostgreSQL errors are classified by SQLSTATE: data exceptions (class 22) and integrity
/// violations (class 23) are permanent; a lost or refused connection (I/O, pool timeout, class
/// 08, 53 and 57P0x shutdowns) is an outage ([`HandlerError::Unavailable`]); everything else
/// (serialization failures, deadlocks, statement timeouts) is transient.
impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                if code.starts_with("22") || code.starts_with("23") {
                    HandlerError::Permanent(e.into())
                } else if code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P0")
                {
                    HandlerError::Unavailable(e.into())
                } else {
                    HandlerError::Transient(e.into())
                }
            }
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::TypeNotFound { .. } => HandlerError::Permanent(e.into()),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => HandlerError::Unavailable(e.into()),
            _ => HandlerError::Transient(e.into()),
        }
    }
}

/// Redis failures inside a handler (publishing downstream): a lost or refused connection is an
/// outage, anything else transient.
impl From<redis::RedisError> for HandlerError {
    fn from(e: redis::RedisError) -> Self {
        if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
            HandlerError::Unavailable(e.into())
        } else {
            HandlerError::Transient(e.into())
        }
    }
}

impl From<crate::BusError> for HandlerError {
    fn from(e: crate::BusError) -> Self {
        match e {
            crate::BusError::Postgres(e) => e.into(),
            crate::BusError::Redis(e) => e.into(),
            other => HandlerError::Transient(other.into()),
        }
    }
}

/// An entry moved to `<stream>:dlq`.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The original entry ID.
    pub id: EntryId,
    /// The original fields.
    pub fields: Fields,
    /// Failure class: `decode`, `permanent` or `max_deliveries`.
    pub kind: &'static str,
    /// Why, in words.
    pub reason: String,
    /// Deliveries so far.
    pub deliveries: u64,
}
