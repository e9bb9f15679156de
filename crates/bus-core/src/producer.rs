//! The producer: pipelined XADD with optional `MAXLEN ~`, `traceparent` injection, retries,
//! lag-aware trimming and back-off while consumers lag.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backoff::{Backoff, sleep_or_shutdown};
use crate::connection::Redis;
use crate::consumer::{info_rows, reply_int};
use crate::entry::{EntryId, Fields};
use crate::error::BusError;
use crate::message::StreamMessage;
use crate::metrics::{Metrics, StreamLabels, TrimLabels};
use crate::settings::{ProducerSettings, TrimMode};
use crate::telemetry;

/// Attempts per XADD round trip before the error is returned to the caller.
const SEND_ATTEMPTS: u32 = 5;

/// XADD round trips built by [`Producer::prepare`], ready to send.
#[derive(Debug, Clone)]
pub struct Prepared {
    key: String,
    round_trips: Vec<redis::Pipeline>,
    entries: usize,
}

impl Prepared {
    /// How many entries it appends.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// True when it appends nothing.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// Appends messages to streams. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Producer {
    redis: Redis,
    metrics: Arc<Metrics>,
    settings: ProducerSettings,
    streams: Arc<Mutex<HashSet<String>>>,
}

impl Producer {
    /// A producer writing through `redis`'s shared connection.
    pub fn new(redis: Redis, metrics: Arc<Metrics>, settings: ProducerSettings) -> Self {
        Producer {
            redis,
            metrics,
            settings,
            streams: Arc::default(),
        }
    }

    /// Appends one message; returns its entry ID.
    pub async fn send<M: StreamMessage>(
        &self,
        stream: &str,
        message: &M,
    ) -> Result<EntryId, BusError> {
        let ids = self.send_fields(stream, vec![message.encode()]).await?;
        ids.into_iter()
            .next()
            .ok_or_else(|| BusError::Protocol("XADD returned no id".into()))
    }

    /// Appends messages in pipelined round trips of `PRODUCER__PIPELINE` entries.
    pub async fn send_batch<M: StreamMessage>(
        &self,
        stream: &str,
        messages: &[M],
    ) -> Result<Vec<EntryId>, BusError> {
        self.send_fields(stream, messages.iter().map(StreamMessage::encode).collect())
            .await
    }

    /// Appends raw field sets (already encoded) in pipelined round trips.
    pub async fn send_fields(
        &self,
        stream: &str,
        entries: Vec<Fields>,
    ) -> Result<Vec<EntryId>, BusError> {
        self.send_encoded(stream, &entries).await
    }

    /// Appends raw field sets in pipelined round trips without taking them, so a caller can
    /// retry the same entries after an error without copying them first.
    pub async fn send_encoded(
        &self,
        stream: &str,
        entries: &[Fields],
    ) -> Result<Vec<EntryId>, BusError> {
        self.send_prepared(&self.prepare(stream, entries)).await
    }

    /// Builds the XADD round trips of `entries` without sending them. A producer that
    /// generates its entries can build the next round trips while the current ones are in
    /// flight, then send them with [`send_prepared`](Self::send_prepared) (any number of
    /// times: a failed send is retried with the same prepared commands).
    pub fn prepare(&self, stream: &str, entries: &[Fields]) -> Prepared {
        let key = self.redis.key(stream);
        // The caller's span, the parent of every entry that does not carry its own context.
        let traceparent = telemetry::current_traceparent();
        let round_trips = entries
            .chunks(self.settings.pipeline.max(1))
            .map(|chunk| {
                let mut pipe = redis::Pipeline::with_capacity(chunk.len());
                for fields in chunk {
                    let trace = traceparent
                        .as_deref()
                        .filter(|_| fields.get(telemetry::TRACEPARENT).is_none());
                    pipe.add_command(self.xadd_traced(&key, fields, trace));
                }
                pipe
            })
            .collect();
        Prepared {
            key,
            round_trips,
            entries: entries.len(),
        }
    }

    /// Sends what [`prepare`](Self::prepare) built; returns the entry IDs in order.
    pub async fn send_prepared(&self, prepared: &Prepared) -> Result<Vec<EntryId>, BusError> {
        self.remember(&prepared.key);
        let mut ids = Vec::with_capacity(prepared.entries);
        for pipe in &prepared.round_trips {
            // Borrowed by each attempt: a retry re-sends the same commands without copying them.
            let raw: Vec<String> = self
                .with_retry(|mut conn| async move { pipe.query_async(&mut conn).await })
                .await?;
            for id in raw {
                ids.push(id.parse().map_err(|e: crate::entry::InvalidEntryId| {
                    BusError::Protocol(e.to_string())
                })?);
            }
        }
        self.metrics
            .streams
            .produced
            .get_or_create(&StreamLabels::new(&prepared.key))
            .inc_by(ids.len() as u64);
        Ok(ids)
    }

    /// The XADD of `fields` to `key`, with `MAXLEN ~` in `on-add` mode.
    pub(crate) fn xadd(&self, key: &str, fields: &Fields) -> redis::Cmd {
        self.xadd_traced(key, fields, None)
    }

    /// [`xadd`](Self::xadd) with a `traceparent` field appended, sized up front so building
    /// it does not reallocate (this runs for every entry produced).
    fn xadd_traced(&self, key: &str, fields: &Fields, traceparent: Option<&str>) -> redis::Cmd {
        let trim = self.settings.trim == TrimMode::OnAdd && self.settings.maxlen > 0;
        let args = 3 + if trim { 3 } else { 0 } + 2 * fields.len() + 2;
        let bytes = key.len()
            + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + traceparent.map_or(0, |tp| telemetry::TRACEPARENT.len() + tp.len())
            + 32;
        let mut cmd = redis::Cmd::with_capacity(args, bytes);
        cmd.arg("XADD").arg(key);
        if trim {
            cmd.arg("MAXLEN").arg("~").arg(self.settings.maxlen);
        }
        cmd.arg("*");
        for (k, v) in fields.iter() {
            cmd.arg(k).arg(v);
        }
        if let Some(tp) = traceparent {
            cmd.arg(telemetry::TRACEPARENT).arg(tp);
        }
        cmd
    }

    /// Runs `op` on the shared connection, retrying connection failures with backoff.
    pub(crate) async fn with_retry<T, F, Fut>(&self, op: F) -> Result<T, BusError>
    where
        F: Fn(redis::aio::ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut attempt = 1;
        loop {
            match op(self.redis.shared()).await {
                Ok(v) => return Ok(v),
                Err(e)
                    if attempt < SEND_ATTEMPTS
                        && (e.is_io_error()
                            || e.is_timeout()
                            || e.is_connection_dropped()
                            || e.is_connection_refusal()) =>
                {
                    tracing::warn!(error = %e, attempt, "redis command failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Adds `key` to the streams this producer's trimmer keeps bounded.
    pub(crate) fn remember(&self, key: &str) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if !streams.contains(key) {
            streams.insert(key.to_owned());
        }
    }

    /// Waits while any group of `stream` lags more than `PRODUCER__HIGH_WATER_LAG` entries.
    /// Returns `false` when shutdown came first.
    pub async fn wait_for_capacity(&self, stream: &str, shutdown: &CancellationToken) -> bool {
        let high_water = self.settings.high_water_lag;
        if high_water == 0 {
            return true;
        }
        let key = self.redis.key(stream);
        let mut logged = false;
        loop {
            let mut conn = self.redis.shared();
            let lag = match redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&key)
                .query_async::<redis::Value>(&mut conn)
                .await
            {
                Ok(v) => info_rows(v)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|row| row.get("lag").and_then(reply_int))
                    .max()
                    .unwrap_or(0),
                Err(_) => 0,
            };
            if lag as u64 <= high_water {
                return true;
            }
            if !logged {
                tracing::info!(stream = %key, lag, high_water, "consumers are behind; producer waiting");
                logged = true;
            }
            if !sleep_or_shutdown(Duration::from_millis(100), shutdown).await {
                return false;
            }
        }
    }

    /// In `lag-aware` mode, trims every stream this producer has written to, every
    /// `PRODUCER__TRIM_INTERVAL_MS`, until shutdown.
    pub async fn run_trimmer(self, shutdown: CancellationToken) {
        if self.settings.trim != TrimMode::LagAware || self.settings.maxlen == 0 {
            return;
        }
        let interval = Duration::from_millis(self.settings.trim_interval_ms.max(10));
        while sleep_or_shutdown(interval, &shutdown).await {
            let streams: Vec<String> = self
                .streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect();
            for stream in streams {
                self.trim_once(&stream).await;
            }
        }
    }

    /// One lag-aware trim of `stream` (a full key), recording what it removed.
    pub async fn trim_once(&self, stream: &str) {
        let mut conn = self.redis.shared();
        match crate::trim::trim_lag_aware(
            &mut conn,
            stream,
            self.settings.maxlen,
            self.settings.hard_max_len,
        )
        .await
        {
            Ok(report) => {
                let m = &self.metrics.streams.trimmed;
                let labels = |forced: bool| TrimLabels {
                    stream: stream.to_owned(),
                    forced: forced.to_string(),
                };
                m.get_or_create(&labels(false)).inc_by(report.removed);
                m.get_or_create(&labels(true)).inc_by(report.forced);
            }
            Err(e) => tracing::warn!(stream, error = %e, "trim failed"),
        }
    }
}
