//! The knob sweep: one knob at a time, each at the best value found so far (batch size,
//! then batches in flight, then write method, then replicas). Every point is a full drain.

use anyhow::Result;

use crate::context::Context;
use crate::knobs::Knobs;
use crate::phases::drain::{self, DrainResult, Expected};

/// Write methods tried when the service has a `WRITE_METHOD` setting.
const METHODS: [&str; 2] = ["unnest", "copy"];

/// Runs the sweep; returns every point and the best knobs found.
pub async fn sweep(ctx: &Context, expected: &Expected) -> Result<(Vec<DrainResult>, Knobs)> {
    let mut points: Vec<DrainResult> = Vec::new();
    let mut best = Knobs::defaults(1);
    let batches: Vec<Knobs> = ctx
        .plan
        .sweep_batches
        .iter()
        .map(|&b| Knobs {
            batch: Some(b),
            ..best.clone()
        })
        .collect();
    best = best_of(ctx, expected, batches, &mut points).await?;
    let in_flight: Vec<Knobs> = ctx
        .plan
        .sweep_in_flight
        .iter()
        .map(|&f| Knobs {
            in_flight: Some(f),
            ..best.clone()
        })
        .collect();
    best = best_of(ctx, expected, in_flight, &mut points).await?;
    if ctx.ingest_has("WRITE_METHOD") {
        let methods = METHODS
            .iter()
            .map(|m| Knobs {
                method: Some((*m).to_owned()),
                ..best.clone()
            })
            .collect();
        best = best_of(ctx, expected, methods, &mut points).await?;
    }
    let replicas = (1..=2)
        .map(|r| Knobs {
            replicas: r,
            ..best.clone()
        })
        .collect();
    best = best_of(ctx, expected, replicas, &mut points).await?;
    Ok((points, best))
}

/// Drains with each candidate (reusing a point already measured with the same values in
/// effect) and returns the fastest that verified.
async fn best_of(
    ctx: &Context,
    expected: &Expected,
    candidates: Vec<Knobs>,
    points: &mut Vec<DrainResult>,
) -> Result<Knobs> {
    let fallback = candidates
        .first()
        .cloned()
        .unwrap_or_else(|| Knobs::defaults(1));
    let mut best: Option<(f64, Knobs)> = None;
    for knobs in candidates {
        let resolved = knobs.resolve(&ctx.ingest_defaults, &ctx.plan.ingest_env);
        let rate = match points.iter().find(|p| p.knobs == resolved) {
            Some(done) => done.verified.then_some(done.rate),
            None => {
                let (point, _) = drain::drain(ctx, "sweep", &knobs, expected, false, None).await?;
                crate::report::print_drain_row(&point);
                let rate = point.verified.then_some(point.rate);
                points.push(point);
                rate
            }
        };
        if let Some(rate) = rate
            && best.as_ref().is_none_or(|(r, _)| rate > *r)
        {
            best = Some((rate, knobs));
        }
    }
    Ok(best.map_or(fallback, |(_, k)| k))
}
