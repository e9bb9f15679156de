//! An external model over HTTP: `POST MODEL_URL` with `{profile_id, brand_id, request_type,
//! features}`, answered by `{churn?, ltv?, segment?, model_version}`.
//!
//! Timeouts, refused connections and 5xx / 408 / 429 answers mean the model is down: they are
//! retried `MODEL_RETRIES` times with backoff, then reported as [`ModelError::Unavailable`]
//! or [`ModelError::Timeout`] (the batch waits for the model, nothing is dead-lettered). Any
//! other 4xx, or an answer that breaks the contract, is [`ModelError::BadResponse`]: retrying
//! cannot fix it.

use std::time::{Duration, Instant};

use bus_core::Backoff;
use bus_core::serde_json::{self, json};
use commerce::RequestType;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::features::Features;
use crate::metrics::{DispatcherMetrics, ModelErrorKind};
use crate::model::{ModelKind, ModelOutput, Prediction};

/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How much of an error answer's body is quoted in the reason.
const BODY_EXCERPT: usize = 200;

/// Why the external model gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// No answer within the timeout, on the last attempt.
    #[error("model timed out: {0}")]
    Timeout(String),
    /// Down: connection refused or lost, or a 502 / 503 / 504 / 408 / 429 answer, on the last
    /// attempt.
    #[error("model unavailable: {0}")]
    Unavailable(String),
    /// Up, but failed on this request: another 5xx (500 Internal Server Error, say), on the
    /// last attempt. Retried like any transient failure, then dead-lettered, so one request
    /// that crashes the model cannot hold its batch forever.
    #[error("model failed: {0}")]
    Failed(String),
    /// A 4xx answer or one that breaks the contract; permanent for this request.
    #[error("bad model response: {0}")]
    BadResponse(String),
}

impl ModelError {
    fn kind(&self) -> ModelErrorKind {
        match self {
            ModelError::Timeout(_) => ModelErrorKind::Timeout,
            ModelError::Unavailable(_) => ModelErrorKind::Unavailable,
            ModelError::Failed(_) => ModelErrorKind::Failed,
            ModelError::BadResponse(_) => ModelErrorKind::BadResponse,
        }
    }

    fn is_retryable(&self) -> bool {
        !matches!(self, ModelError::BadResponse(_))
    }
}

/// The request body.
#[derive(Debug, Serialize)]
struct ModelRequest<'a> {
    profile_id: Uuid,
    brand_id: &'a str,
    request_type: &'static str,
    features: &'a Features,
}

/// The answer body.
#[derive(Debug, Deserialize)]
struct Answer {
    churn: Option<f64>,
    ltv: Option<f64>,
    segment: Option<String>,
    model_version: Option<String>,
}

/// A client of the model at one URL.
#[derive(Debug, Clone)]
pub struct ExternalModel {
    client: reqwest::Client,
    url: String,
    retries: u32,
    backoff: Duration,
    concurrency: usize,
    metrics: DispatcherMetrics,
}

impl ExternalModel {
    /// A client of `url` with a per-attempt `timeout`, `retries` further attempts after the
    /// first, waiting `backoff`, then twice that, … (at most 2 s) in between.
    pub fn new(
        url: &str,
        timeout: Duration,
        retries: u32,
        backoff: Duration,
        metrics: DispatcherMetrics,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(ExternalModel {
            client,
            url: url.to_owned(),
            retries,
            backoff,
            concurrency: 1,
            metrics,
        })
    }

    /// Lets up to `n` requests of a batch wait on the model at once (at least 1).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How many requests of a batch may wait on the model at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Asks the model for `request_type` of a profile.
    pub async fn predict(
        &self,
        profile_id: Uuid,
        brand_id: &str,
        request_type: RequestType,
        features: &Features,
    ) -> Result<ModelOutput, ModelError> {
        let body = ModelRequest {
            profile_id,
            brand_id,
            request_type: request_type.as_str(),
            features,
        };
        let started = Instant::now();
        let mut backoff = Backoff::new(self.backoff, MAX_BACKOFF.max(self.backoff));
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let result = self.attempt(&body, request_type).await;
            if let Err(e) = &result {
                self.metrics.model_error(e.kind());
                if e.is_retryable() && attempt <= self.retries {
                    tracing::warn!(error = %e, attempt, "model call failed; retrying");
                    bus_core::tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            }
            break result;
        };
        let seconds = started.elapsed().as_secs_f64();
        self.metrics.model_duration(ModelKind::External, seconds);
        result.map(|answer| output(answer, request_type, features))
    }

    async fn attempt(
        &self,
        body: &ModelRequest<'_>,
        request_type: RequestType,
    ) -> Result<Answer, ModelError> {
        let response = self
            .client
            .post(&self.url)
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let excerpt: String = String::from_utf8_lossy(&bytes)
                .chars()
                .take(BODY_EXCERPT)
                .collect();
            let why = format!("answered {status}: {excerpt}");
            return Err(if is_outage(status) {
                ModelError::Unavailable(why)
            } else if status.is_server_error() {
                ModelError::Failed(why)
            } else {
                ModelError::BadResponse(why)
            });
        }
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| {
            ModelError::BadResponse(format!("answer is not the expected JSON: {e}"))
        })?;
        check(&answer, request_type)?;
        Ok(answer)
    }
}

/// The statuses that say the model cannot answer now, whatever the request: 502 Bad Gateway,
/// 503 Service Unavailable, 504 Gateway Timeout (a proxy in front of a model that is down or
/// restarting), 408 Request Timeout and 429 Too Many Requests.
fn is_outage(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
            | StatusCode::REQUEST_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS
    )
}

fn transport(e: reqwest::Error) -> ModelError {
    if e.is_timeout() {
        ModelError::Timeout(e.to_string())
    } else {
        ModelError::Unavailable(format!("{e}: {}", source_chain(&e)))
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// The answer holds every requested type, in range, and a model version.
fn check(answer: &Answer, request_type: RequestType) -> Result<(), ModelError> {
    let bad = |why: &str| Err(ModelError::BadResponse(why.to_owned()));
    if answer
        .model_version
        .as_deref()
        .is_none_or(|v| v.trim().is_empty())
    {
        return bad("model_version is missing or empty");
    }
    for kind in request_type.expand() {
        match kind {
            RequestType::Churn => match answer.churn {
                Some(p) if (0.0..=1.0).contains(&p) => {}
                Some(_) => return bad("churn must be a probability between 0 and 1"),
                None => return bad("churn was requested but is missing"),
            },
            RequestType::Ltv => match answer.ltv {
                Some(v) if v.is_finite() => {}
                _ => return bad("ltv was requested but is missing"),
            },
            _ => {
                if answer
                    .segment
                    .as_deref()
                    .is_none_or(|s| s.trim().is_empty())
                {
                    return bad("segment was requested but is missing or empty");
                }
            }
        }
    }
    Ok(())
}

/// The predictions of a checked answer; details keep the features sent and the answer.
fn output(answer: Answer, request_type: RequestType, features: &Features) -> ModelOutput {
    let response = json!({
        "churn": answer.churn,
        "ltv": answer.ltv,
        "segment": answer.segment,
    });
    let details = json!({ "features": features, "response": response });
    let predictions = request_type
        .expand()
        .iter()
        .map(|&kind| {
            let (score, label, summary) = match kind {
                RequestType::Churn => {
                    let p = answer.churn.unwrap_or_default();
                    (Some(p), None, json!({ "probability": p }))
                }
                RequestType::Ltv => {
                    let v = answer.ltv.unwrap_or_default();
                    (Some(v), None, json!({ "value": v }))
                }
                _ => {
                    let name = answer.segment.clone().unwrap_or_default();
                    let summary = json!({ "name": name });
                    (None, Some(name), summary)
                }
            };
            Prediction {
                kind,
                score,
                label,
                details: details.clone(),
                summary,
            }
        })
        .collect();
    ModelOutput {
        kind: ModelKind::External,
        model_version: answer.model_version.unwrap_or_default(),
        predictions,
    }
}
