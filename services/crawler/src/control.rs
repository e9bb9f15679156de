//! The crawler's state, its commands (`channel:service:{SERVICE_ID}:commands`) and its
//! crawler events.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{BusError, EntryId, Producer, Received, SubscriberError, sleep_or_shutdown};
use ingest::messages::{
    CRAWLER_EVENTS_STREAM, Command, CrawlerEventData, CrawlerEventKind, Envelope, TOKENS_STREAM,
    TokenKind,
};
use serde_json::Value;
use tokio::sync::watch;

use crate::metrics::CrawlerMetrics;
use crate::settings::CrawlerSettings;
use crate::synthetic::token_for;

/// Whether the source is producing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrawlState {
    /// Producing (`START_CRAWLING`, or `AUTOSTART`).
    Running,
    /// Not producing until `START_CRAWLING` (`PAUSE`).
    Paused,
    /// Not producing until `START_CRAWLING` (`STOP`); reported offline.
    Stopped,
    /// `COUNT` reached or the replay file ended: nothing more to produce.
    Done,
}

impl CrawlState {
    /// Every state, for the gauge.
    pub const ALL: [CrawlState; 4] = [
        CrawlState::Running,
        CrawlState::Paused,
        CrawlState::Stopped,
        CrawlState::Done,
    ];

    /// The `crawler_state` label.
    pub fn label(self) -> &'static str {
        match self {
            CrawlState::Running => "running",
            CrawlState::Paused => "paused",
            CrawlState::Stopped => "stopped",
            CrawlState::Done => "done",
        }
    }

    /// The `status` reported in crawler events.
    pub fn status(self) -> &'static str {
        match self {
            CrawlState::Running => "active",
            CrawlState::Paused => "paused",
            CrawlState::Stopped => "stopped",
            CrawlState::Done => "idle",
        }
    }
}

const KNOWN: [&str; 4] = ["START_CRAWLING", "PAUSE", "STOP", "CRAWL_TOKEN"];

/// The crawler's shared handle: state, producer, settings. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Crawler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: CrawlerSettings,
    producer: Producer,
    metrics: Arc<CrawlerMetrics>,
    state: watch::Sender<CrawlState>,
    produced: AtomicU64,
}

impl Crawler {
    /// A crawler starting in `Running` (AUTOSTART) or `Paused`.
    pub fn new(
        settings: CrawlerSettings,
        producer: Producer,
        metrics: Arc<CrawlerMetrics>,
    ) -> Self {
        let initial = if settings.autostart {
            CrawlState::Running
        } else {
            CrawlState::Paused
        };
        metrics.set_state(initial);
        Crawler {
            inner: Arc::new(Inner {
                settings,
                producer,
                metrics,
                state: watch::Sender::new(initial),
                produced: AtomicU64::new(0),
            }),
        }
    }

    pub(crate) fn settings(&self) -> &CrawlerSettings {
        &self.inner.settings
    }

    pub(crate) fn producer(&self) -> &Producer {
        &self.inner.producer
    }

    pub(crate) fn metrics(&self) -> &CrawlerMetrics {
        &self.inner.metrics
    }

    /// The current state.
    pub fn state(&self) -> CrawlState {
        *self.inner.state.borrow()
    }

    /// Entries produced by the source so far.
    pub fn produced(&self) -> u64 {
        self.inner.produced.load(Ordering::Relaxed)
    }

    pub(crate) fn add_produced(&self, n: u64) {
        self.inner.produced.fetch_add(n, Ordering::Relaxed);
    }

    /// Moves to `next` (a finished source stays `Done`) and reports it with a heartbeat.
    pub async fn set_state(&self, next: CrawlState) {
        let previous = self.state();
        if previous == CrawlState::Done && next != CrawlState::Done {
            tracing::info!(
                requested = next.label(),
                "nothing left to produce; staying done"
            );
            return;
        }
        self.inner.state.send_replace(next);
        self.inner.metrics.set_state(next);
        if previous != next {
            tracing::info!(
                from = previous.label(),
                to = next.label(),
                "crawler state changed"
            );
            if let Err(e) = self.event(CrawlerEventKind::Heartbeat, None).await {
                tracing::warn!(error = %e, "could not report the state change");
            }
        }
    }

    /// Waits until the state is `Running`; false when shutdown came first.
    pub async fn wait_running(&self, shutdown: &CancellationToken) -> bool {
        let mut rx = self.inner.state.subscribe();
        loop {
            if *rx.borrow_and_update() == CrawlState::Running {
                return true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                changed = rx.changed() => if changed.is_err() { return false },
            }
        }
    }

    /// Appends a crawler event in the seed's format.
    pub async fn event(
        &self,
        kind: CrawlerEventKind,
        error: Option<String>,
    ) -> Result<EntryId, BusError> {
        let status = match kind {
            CrawlerEventKind::Offline => "offline",
            CrawlerEventKind::Error => "error",
            CrawlerEventKind::Online | CrawlerEventKind::Heartbeat => self.state().status(),
        };
        let mut extra = serde_json::Map::new();
        extra.insert("produced".into(), Value::from(self.produced()));
        let data = CrawlerEventData {
            crawler_id: self.inner.settings.crawler_id.clone(),
            status: status.into(),
            error,
            extra,
        };
        let message = Envelope::new(&self.inner.settings.service_id, kind, data);
        self.inner
            .producer
            .send(CRAWLER_EVENTS_STREAM, &message)
            .await
    }

    /// A HEARTBEAT every `HEARTBEAT_INTERVAL_MS` until shutdown.
    pub async fn heartbeats(self, shutdown: CancellationToken) -> Result<(), BusError> {
        let interval = self.inner.settings.heartbeat_interval_ms;
        if interval == 0 {
            return Ok(());
        }
        while sleep_or_shutdown(std::time::Duration::from_millis(interval), &shutdown).await {
            if let Err(e) = self.event(CrawlerEventKind::Heartbeat, None).await {
                tracing::warn!(error = %e, "heartbeat failed");
            }
        }
        Ok(())
    }

    /// Handles one message of the command channel.
    pub async fn on_command(&self, message: Received) -> Result<(), SubscriberError> {
        let command: Command = match message.json() {
            Ok(command) => command,
            Err(e) => {
                self.inner.metrics.command("unknown", "invalid");
                return Err(SubscriberError::Invalid(format!(
                    "not a command {{command, data, timestamp}}: {e}"
                )));
            }
        };
        let label = KNOWN
            .iter()
            .find(|k| **k == command.command)
            .copied()
            .unwrap_or("unknown");
        let result = self.apply(&command).await;
        let outcome = match &result {
            Ok(()) => "ok",
            Err(SubscriberError::Invalid(_)) => "invalid",
            Err(SubscriberError::Failed(_)) => "failed",
        };
        self.inner.metrics.command(label, outcome);
        if result.is_ok() {
            tracing::info!(command = %command.command, "command applied");
        }
        result
    }

    async fn apply(&self, command: &Command) -> Result<(), SubscriberError> {
        match command.command.as_str() {
            "START_CRAWLING" => {
                if let Some(address) = token_address(&command.data)? {
                    self.crawl_token(&address).await?;
                }
                self.set_state(CrawlState::Running).await;
            }
            "PAUSE" => self.set_state(CrawlState::Paused).await,
            "STOP" => self.set_state(CrawlState::Stopped).await,
            "CRAWL_TOKEN" => {
                let address = token_address(&command.data)?.ok_or_else(|| {
                    SubscriberError::Invalid("CRAWL_TOKEN needs data.tokenAddress".into())
                })?;
                self.crawl_token(&address).await?;
            }
            other => {
                return Err(SubscriberError::Invalid(format!(
                    "unknown command {other:?} (known: {})",
                    KNOWN.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Emits a TOKEN_UPDATED for `address` (whatever the state: it was asked for explicitly).
    async fn crawl_token(&self, address: &str) -> Result<(), SubscriberError> {
        let data = token_for(address, &self.inner.settings.chain);
        let message = Envelope::new(&self.inner.settings.service_id, TokenKind::Updated, data);
        self.inner
            .producer
            .send(TOKENS_STREAM, &message)
            .await
            .map_err(|e| SubscriberError::Failed(e.into()))?;
        Ok(())
    }
}

/// `data.tokenAddress`, when present: a `0x` address of 40 hex digits.
fn token_address(data: &Value) -> Result<Option<String>, SubscriberError> {
    let invalid = |reason: &str| Err(SubscriberError::Invalid(reason.to_owned()));
    let address = match data {
        Value::Null => return Ok(None),
        Value::Object(map) => match map.get("tokenAddress") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s,
            Some(_) => return invalid("data.tokenAddress must be a string"),
        },
        _ => return invalid("data must be an object"),
    };
    let well_formed = address.len() == 42
        && address.starts_with("0x")
        && address[2..].chars().all(|c| c.is_ascii_hexdigit());
    if !well_formed {
        return invalid("data.tokenAddress must be 0x followed by 40 hex digits");
    }
    Ok(Some(address.to_ascii_lowercase()))
}
