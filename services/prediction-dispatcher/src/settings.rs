//! The dispatcher's settings: the model at the top level (`MODEL_*`), then the worker, the
//! producer of completions and the seed's stream retention, each in its own section.

use std::time::Duration;

use bus_core::{ProducerSettings, SettingsError, WorkerSettings};
use commerce::Retention;
use serde::{Deserialize, Serialize};

/// Settings read from the environment (`MODEL_*`, `WORKER__X`, `PRODUCER__X`, `RETENTION__X`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DispatcherSettings {
    /// `MODEL_URL`: an external model (`http://…`) to ask instead of the built-in `rfm-v1`;
    /// unset or empty uses the built-in model.
    pub model_url: Option<String>,
    /// `MODEL_TIMEOUT_MS`: how long one call to the external model may take.
    pub model_timeout_ms: u64,
    /// `MODEL_RETRIES`: further attempts after a timed-out, refused or 5xx call, before the
    /// batch is left pending and retried by the worker.
    pub model_retries: u32,
    /// `MODEL_RETRY_BACKOFF_MS`: the wait before the first retry (doubles, at most 2 s).
    pub model_retry_backoff_ms: u64,
    /// `MODEL_CONCURRENCY`: requests of one batch that may wait on the model at once.
    pub model_concurrency: usize,
    /// `WORKER__…`: the consumer-group worker on `predictions.requests`.
    pub worker: WorkerSettings,
    /// `PRODUCER__…`: how completions are written to `predictions.completed` (its `MAXLEN`
    /// is replaced by `RETENTION__PREDICTIONS_COMPLETED`).
    pub producer: ProducerSettings,
    /// `RETENTION__…`: seed 001's stream lengths, applied with the lag-aware trim.
    pub retention: Retention,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        DispatcherSettings {
            model_url: None,
            model_timeout_ms: 2_000,
            model_retries: 2,
            model_retry_backoff_ms: 100,
            model_concurrency: 8,
            worker: WorkerSettings::default(),
            producer: ProducerSettings::default(),
            retention: Retention::default(),
        }
    }
}

impl DispatcherSettings {
    /// The external model's URL, if one is configured and valid.
    pub fn model_url(&self) -> Result<Option<&str>, SettingsError> {
        let Some(url) = self.model_url.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if url.is_empty() {
            return Ok(None);
        }
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| SettingsError::invalid("MODEL_URL", format!("not a URL ({e})")))?;
        if parsed.scheme() != "http" {
            return Err(SettingsError::invalid(
                "MODEL_URL",
                "must be an http:// URL (TLS is not built in; terminate it in a sidecar)",
            ));
        }
        Ok(Some(url))
    }

    /// The per-call timeout.
    pub fn model_timeout(&self) -> Duration {
        Duration::from_millis(self.model_timeout_ms)
    }

    /// Checks every value, naming the variable of the first bad one.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.model_url()?;
        if self.model_timeout_ms == 0 {
            return Err(SettingsError::invalid(
                "MODEL_TIMEOUT_MS",
                "must be at least 1",
            ));
        }
        if self.model_concurrency == 0 {
            return Err(SettingsError::invalid(
                "MODEL_CONCURRENCY",
                "must be at least 1",
            ));
        }
        self.worker.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_model_is_the_default() {
        let settings = DispatcherSettings::default();
        assert_eq!(settings.model_url().unwrap(), None);
        assert_eq!(
            (settings.model_timeout_ms, settings.model_retries),
            (2_000, 2)
        );
        let empty = DispatcherSettings {
            model_url: Some(" ".into()),
            ..Default::default()
        };
        assert_eq!(empty.model_url().unwrap(), None);
        assert!(empty.validate().is_ok());
    }

    #[test]
    fn a_bad_model_url_names_the_variable() {
        for url in ["not a url", "https://model.internal/predict", "ftp://x/"] {
            let settings = DispatcherSettings {
                model_url: Some(url.into()),
                ..Default::default()
            };
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains("MODEL_URL"), "{url}: {err}");
        }
        let ok = DispatcherSettings {
            model_url: Some("http://model:8080/predict".into()),
            ..Default::default()
        };
        assert_eq!(ok.model_url().unwrap(), Some("http://model:8080/predict"));
    }

    #[test]
    fn a_zero_timeout_or_concurrency_is_refused() {
        let settings = DispatcherSettings {
            model_timeout_ms: 0,
            ..Default::default()
        };
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("MODEL_TIMEOUT_MS"), "{err}");
        let settings = DispatcherSettings {
            model_concurrency: 0,
            ..Default::default()
        };
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("MODEL_CONCURRENCY"), "{err}");
    }
}
