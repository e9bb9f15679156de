//! The consumer-group handler: resolve each request's profile, predict, upsert the batch's
//! predictions in one statement, then announce each request's completion.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use bus_core::anyhow::anyhow;
use bus_core::chrono::{DateTime, DurationRound, TimeDelta, Utc};
use bus_core::serde_json::Map;
use bus_core::sqlx::PgPool;
use bus_core::tracing::Instrument;
use bus_core::{Batch, Delivery, Handler, HandlerError, Outcome, Publisher};
use commerce::{PredictionCompleted, PredictionRequest, names, profiles};
use futures_util::{StreamExt, stream};
use uuid::Uuid;

use crate::external::{ExternalModel, ModelError};
use crate::features::{self, Profile};
use crate::metrics::DispatcherMetrics;
use crate::model::{ModelKind, ModelOutput};
use crate::rfm;
use crate::store::{self, PredictionRow};

/// Which model answers.
#[derive(Debug, Clone)]
pub enum Model {
    /// `rfm-v1`, computed in process.
    Builtin,
    /// The model at `MODEL_URL`.
    External(ExternalModel),
}

/// Answers `predictions.requests`.
#[derive(Debug)]
pub struct Dispatcher {
    pool: PgPool,
    model: Model,
    publisher: Publisher,
    metrics: DispatcherMetrics,
}

impl Dispatcher {
    /// A handler reading features from `pool`, predicting with `model` and announcing
    /// completions with `publisher`.
    pub fn new(
        pool: PgPool,
        model: Model,
        publisher: Publisher,
        metrics: DispatcherMetrics,
    ) -> Self {
        Dispatcher {
            pool,
            model,
            publisher,
            metrics,
        }
    }
}

/// A request whose profile exists: what to predict for whom.
struct Job<'a> {
    delivery: &'a Delivery<PredictionRequest>,
    /// The requested profile, or the survivor it was merged into.
    profile_id: Uuid,
    profile: &'a Profile,
}

impl Job<'_> {
    fn request(&self) -> &PredictionRequest {
        &self.delivery.message
    }

    /// `request_id`, else the entry id: the `request_key` of the rows it writes.
    fn request_key(&self) -> String {
        self.request()
            .request_id
            .clone()
            .unwrap_or_else(|| self.delivery.id.to_string())
    }
}

impl Handler for Dispatcher {
    type Message = PredictionRequest;

    async fn handle(&self, batch: Batch<'_, PredictionRequest>) -> Result<Outcome, HandlerError> {
        // The stored `predicted_at` has microseconds: computing for exactly that instant lets
        // anyone reproduce a prediction from its row.
        let now = Utc::now()
            .duration_trunc(TimeDelta::microseconds(1))
            .unwrap_or_else(|_| Utc::now());
        let mut outcome = Outcome::done();
        let ids = sorted_unique(batch.entries.iter().map(|d| d.message.profile_id));

        let mut tx = self.pool.begin().await?;
        let resolved = profiles::resolve(&mut tx, &ids).await?;
        let loaded = features::load(&mut tx, &sorted_unique(resolved.values().copied())).await?;
        let jobs = plan(batch.entries, &resolved, &loaded, &mut outcome);
        let answered = match &self.model {
            Model::Builtin => self.predict_builtin(jobs, now),
            Model::External(model) => {
                // Release the profile locks while the model answers: a merge must not wait
                // on the network.
                tx.commit().await?;
                let answered = self.predict_external(model, jobs, &mut outcome).await?;
                tx = self.pool.begin().await?;
                if profiles::resolve(&mut tx, &ids).await? != resolved {
                    return Err(HandlerError::transient(anyhow!(
                        "profiles of this batch were merged while the model answered; predicting again"
                    )));
                }
                answered
            }
        };
        let keys: Vec<String> = answered.iter().map(|(job, _)| job.request_key()).collect();
        let rows: Vec<PredictionRow<'_>> = answered
            .iter()
            .zip(&keys)
            .flat_map(|((job, out), key)| {
                out.predictions.iter().map(move |prediction| PredictionRow {
                    profile_id: job.profile_id,
                    brand_id: &job.profile.brand_id,
                    prediction,
                    model_version: &out.model_version,
                    request_key: key,
                    predicted_at: now,
                })
            })
            .collect();
        store::upsert(&mut tx, &rows).await?;
        tx.commit().await?;

        self.announce(&answered, now).await?;
        tracing::debug!(
            answered = answered.len(),
            rejected = outcome.rejected().len(),
            "batch predicted"
        );
        Ok(outcome)
    }
}

impl Dispatcher {
    fn predict_builtin<'a>(
        &self,
        jobs: Vec<Job<'a>>,
        now: DateTime<Utc>,
    ) -> Vec<(Job<'a>, ModelOutput)> {
        jobs.into_iter()
            .map(|job| {
                let started = Instant::now();
                let out = rfm::predict(&job.profile.features, job.request().request_type, now);
                let seconds = started.elapsed().as_secs_f64();
                self.metrics.model_duration(ModelKind::Builtin, seconds);
                (job, out)
            })
            .collect()
    }

    /// Asks the model, up to `MODEL_CONCURRENCY` requests at a time, keeping stream order.
    /// A bad answer rejects its request. An outage (no answer, or a status saying the model
    /// cannot answer now) fails the whole batch as unavailable, so it waits for the model
    /// instead of dead-lettering. A request the model failed on (500) fails the batch as
    /// transient: retried, then isolated and dead-lettered after `WORKER__MAX_DELIVERIES`, so
    /// it cannot hold the batch forever.
    async fn predict_external<'a>(
        &self,
        model: &ExternalModel,
        jobs: Vec<Job<'a>>,
        outcome: &mut Outcome,
    ) -> Result<Vec<(Job<'a>, ModelOutput)>, HandlerError> {
        let calls: Vec<_> = jobs.into_iter().map(|job| ask(model, job)).collect();
        let results: Vec<_> = stream::iter(calls)
            .buffered(model.concurrency())
            .collect()
            .await;
        let mut answered = Vec::with_capacity(results.len());
        let mut failed = None;
        for (job, answer) in results {
            match answer {
                Ok(out) => answered.push((job, out)),
                Err(ModelError::BadResponse(why)) => {
                    let reason = format!("bad model response: {why}");
                    *outcome = std::mem::take(outcome).reject(job.delivery.id, reason);
                }
                Err(e @ ModelError::Failed(_)) => {
                    failed.get_or_insert(e);
                }
                Err(e) => return Err(HandlerError::unavailable(e)),
            }
        }
        match failed {
            Some(e) => Err(HandlerError::Transient(e.into())),
            None => Ok(answered),
        }
    }

    /// Publishes one completion per answered request (stream and channel at once).
    async fn announce(
        &self,
        answered: &[(Job<'_>, ModelOutput)],
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        for (job, out) in answered {
            let done = completion(job, out, now);
            self.publisher
                .publish_hybrid(
                    names::PREDICTIONS_COMPLETED,
                    &done,
                    names::PREDICTIONS_COMPLETED_CHANNEL,
                    &done.notification(),
                )
                .await?;
            for prediction in &out.predictions {
                self.metrics.prediction(prediction.kind, out.kind);
            }
        }
        Ok(())
    }
}

/// One call to the external model, in the request's span.
async fn ask<'a>(
    model: &ExternalModel,
    job: Job<'a>,
) -> (Job<'a>, Result<ModelOutput, ModelError>) {
    let span = job.delivery.span.clone();
    let answer = model
        .predict(
            job.profile_id,
            &job.profile.brand_id,
            job.request().request_type,
            &job.profile.features,
        )
        .instrument(span)
        .await;
    (job, answer)
}

/// The requests whose profile exists and belongs to the request's brand; the others are
/// rejected with the reason.
fn plan<'a>(
    entries: &'a [Delivery<PredictionRequest>],
    resolved: &HashMap<Uuid, Uuid>,
    loaded: &'a HashMap<Uuid, Profile>,
    outcome: &mut Outcome,
) -> Vec<Job<'a>> {
    let mut jobs = Vec::with_capacity(entries.len());
    for delivery in entries {
        let request = &delivery.message;
        let found = resolved
            .get(&request.profile_id)
            .and_then(|survivor| Some((*survivor, loaded.get(survivor)?)));
        let reason = match found {
            None => format!("unknown profile {}", request.profile_id),
            Some((_, profile)) if profile.brand_id != request.brand_id => format!(
                "profile {} belongs to brand {:?}, not {:?}",
                request.profile_id, profile.brand_id, request.brand_id
            ),
            Some((profile_id, profile)) => {
                jobs.push(Job {
                    delivery,
                    profile_id,
                    profile,
                });
                continue;
            }
        };
        *outcome = std::mem::take(outcome).reject(delivery.id, reason);
    }
    jobs
}

fn sorted_unique(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    ids.collect::<BTreeSet<_>>().into_iter().collect()
}

/// The hybrid event announcing one request's predictions.
fn completion(
    job: &Job<'_>,
    out: &ModelOutput,
    now: bus_core::chrono::DateTime<Utc>,
) -> PredictionCompleted {
    let predictions: Map<_, _> = out
        .predictions
        .iter()
        .map(|p| (p.kind.as_str().to_owned(), p.summary.clone()))
        .collect();
    let request = job.request();
    PredictionCompleted {
        profile_id: job.profile_id,
        brand_id: job.profile.brand_id.clone(),
        request_type: request.request_type,
        predictions,
        model_version: out.model_version.clone(),
        timestamp: now,
        request_id: request.request_id.clone(),
    }
}
