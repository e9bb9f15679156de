//! The built-in model `rfm-v1`: churn probability, lifetime value and an RFM segment from a
//! profile's recency, frequency and monetary value. Pure functions of the features and `now`;
//! the README gives the formulas with a worked example.

use bus_core::chrono::{DateTime, Utc};
use bus_core::serde_json::{Value, json};
use commerce::RequestType;
use serde::Serialize;

use crate::features::Features;
use crate::model::{ModelKind, ModelOutput, Prediction};

/// The version stored with every prediction of this model.
pub const VERSION: &str = "rfm-v1";
/// Mean interval between orders assumed when a customer has fewer than two orders (days).
pub const FALLBACK_INTERVAL_DAYS: f64 = 30.0;
/// The shortest mean interval between orders (days), so several orders in one day do not
/// make a customer "overdue" a day later.
pub const MIN_INTERVAL_DAYS: f64 = 1.0;
/// Steepness `k` of the churn curve.
pub const CHURN_STEEPNESS: f64 = 2.0;
/// Relative recency at which churn is 50 % (`c`): twice the customer's usual interval.
pub const CHURN_MIDPOINT: f64 = 2.0;
/// The shortest tenure an order rate is computed over (days), so a first-week customer's
/// rate is not extrapolated from a few days.
pub const MIN_TENURE_DAYS: f64 = 30.0;
/// The lifetime-value horizon: 12 months (days).
pub const HORIZON_DAYS: f64 = 365.0;

const SECONDS_PER_DAY: f64 = 86_400.0;

/// Recency, frequency and monetary value, with the customer's tenure and usual interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inputs {
    /// Days since the last order, or since last seen when there are no orders.
    pub recency_days: f64,
    /// Orders.
    pub frequency: i64,
    /// Total spent.
    pub monetary: f64,
    /// Days since first seen.
    pub tenure_days: f64,
    /// Mean days between orders: `(last order − first seen) / (orders − 1)`, at least
    /// [`MIN_INTERVAL_DAYS`]; [`FALLBACK_INTERVAL_DAYS`] with fewer than two orders.
    pub mean_interval_days: f64,
}

/// Days from `from` to `to`, fractional; 0 when `from` is later (clock skew, future events).
fn days(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let seconds = (to - from).num_milliseconds() as f64 / 1000.0;
    (seconds / SECONDS_PER_DAY).max(0.0)
}

/// The model's inputs from a profile's features at `now`.
pub fn inputs(f: &Features, now: DateTime<Utc>) -> Inputs {
    let frequency = f.order_count.max(0);
    let last_activity = f.last_order_at.unwrap_or(f.last_seen_at);
    let mean_interval_days = match f.last_order_at {
        Some(last_order) if frequency >= 2 => {
            (days(f.first_seen_at, last_order) / (frequency - 1) as f64).max(MIN_INTERVAL_DAYS)
        }
        _ => FALLBACK_INTERVAL_DAYS,
    };
    Inputs {
        recency_days: days(last_activity, now),
        frequency,
        monetary: f.total_spent.max(0.0),
        tenure_days: days(f.first_seen_at, now),
        mean_interval_days,
    }
}

/// Churn: a logistic function of recency relative to the usual interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Churn {
    /// `x = recency_days / mean_interval_days`.
    pub relative_recency: f64,
    /// `p = 1 / (1 + e^(−k·(x − c)))`, in (0, 1).
    pub probability: f64,
}

/// The churn probability of `i`.
pub fn churn(i: &Inputs) -> Churn {
    let x = i.recency_days / i.mean_interval_days;
    let probability = 1.0 / (1.0 + (-CHURN_STEEPNESS * (x - CHURN_MIDPOINT)).exp());
    Churn {
        relative_recency: x,
        probability,
    }
}

/// Lifetime value over the next 12 months.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ltv {
    /// `monetary / frequency` (0 without orders).
    pub average_order_value: f64,
    /// `frequency / max(tenure_days, 30)`.
    pub orders_per_day: f64,
    /// `orders_per_day × 365`.
    pub expected_orders: f64,
    /// `average_order_value × expected_orders × (1 − churn probability)`.
    pub value: f64,
}

/// The lifetime value of `i` given its churn probability.
pub fn ltv(i: &Inputs, churn_probability: f64) -> Ltv {
    let average_order_value = if i.frequency > 0 {
        i.monetary / i.frequency as f64
    } else {
        0.0
    };
    let orders_per_day = i.frequency as f64 / i.tenure_days.max(MIN_TENURE_DAYS);
    let expected_orders = orders_per_day * HORIZON_DAYS;
    Ltv {
        average_order_value,
        orders_per_day,
        expected_orders,
        value: average_order_value * expected_orders * (1.0 - churn_probability),
    }
}

/// An RFM segment: a score of 1–5 per dimension and the segment name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// Recency score.
    pub r: u8,
    /// Frequency score.
    pub f: u8,
    /// Monetary score.
    pub m: u8,
    /// The segment.
    pub name: &'static str,
}

/// Recency score: ≤ 14 days 5, ≤ 30 4, ≤ 60 3, ≤ 120 2, else 1.
pub fn recency_score(recency_days: f64) -> u8 {
    match recency_days {
        d if d <= 14.0 => 5,
        d if d <= 30.0 => 4,
        d if d <= 60.0 => 3,
        d if d <= 120.0 => 2,
        _ => 1,
    }
}

/// Frequency score: ≥ 10 orders 5, ≥ 6 4, ≥ 3 3, 2 2, else 1.
pub fn frequency_score(orders: i64) -> u8 {
    match orders {
        n if n >= 10 => 5,
        n if n >= 6 => 4,
        n if n >= 3 => 3,
        2 => 2,
        _ => 1,
    }
}

/// Monetary score: ≥ 1000 5, ≥ 500 4, ≥ 200 3, ≥ 50 2, else 1.
pub fn monetary_score(spent: f64) -> u8 {
    match spent {
        s if s >= 1000.0 => 5,
        s if s >= 500.0 => 4,
        s if s >= 200.0 => 3,
        s if s >= 50.0 => 2,
        _ => 1,
    }
}

/// The segment of `i`: the first rule that matches.
pub fn segment(i: &Inputs) -> Segment {
    let (r, f, m) = (
        recency_score(i.recency_days),
        frequency_score(i.frequency),
        monetary_score(i.monetary),
    );
    let name = match (r, f, m) {
        _ if i.frequency == 0 => "Prospect",
        (4.., 4.., 4..) => "Champions",
        (3.., 4.., _) => "Loyal Customers",
        (4.., 1, _) => "New Customers",
        (3.., _, _) => "Potential Loyalists",
        (_, 3.., _) => "At Risk",
        (2, _, _) => "Hibernating",
        _ => "Lost",
    };
    Segment { r, f, m, name }
}

/// Rounds to `places` decimals (probabilities to 4, money to 2).
fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

/// The requested predictions for `features` at `now`.
pub fn predict(features: &Features, request: RequestType, now: DateTime<Utc>) -> ModelOutput {
    let i = inputs(features, now);
    let c = churn(&i);
    let inputs = serde_value(&i);
    let predictions = request
        .expand()
        .iter()
        .map(|&kind| match kind {
            RequestType::Churn => {
                let p = round(c.probability, 4);
                Prediction {
                    kind,
                    score: Some(p),
                    label: None,
                    details: json!({
                        "inputs": inputs,
                        "relative_recency": c.relative_recency,
                        "steepness": CHURN_STEEPNESS,
                        "midpoint": CHURN_MIDPOINT,
                        "probability": c.probability,
                    }),
                    summary: json!({ "probability": p }),
                }
            }
            RequestType::Ltv => {
                let l = ltv(&i, c.probability);
                let value = round(l.value, 2);
                Prediction {
                    kind,
                    score: Some(value),
                    label: None,
                    details: json!({
                        "inputs": inputs,
                        "churn_probability": c.probability,
                        "average_order_value": l.average_order_value,
                        "orders_per_day": l.orders_per_day,
                        "expected_orders": l.expected_orders,
                        "horizon_days": HORIZON_DAYS,
                        "value": l.value,
                    }),
                    summary: json!({ "value": value }),
                }
            }
            _ => {
                let s = segment(&i);
                Prediction {
                    kind,
                    score: None,
                    label: Some(s.name.to_owned()),
                    details: json!({
                        "inputs": inputs,
                        "r_score": s.r,
                        "f_score": s.f,
                        "m_score": s.m,
                        "rfm": format!("{}{}{}", s.r, s.f, s.m),
                    }),
                    summary: json!({ "name": s.name }),
                }
            }
        })
        .collect();
    ModelOutput {
        kind: ModelKind::Builtin,
        model_version: VERSION.to_owned(),
        predictions,
    }
}

fn serde_value(inputs: &Inputs) -> Value {
    bus_core::serde_json::to_value(inputs).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use commerce::messages::parse_timestamp;

    fn at(raw: &str) -> DateTime<Utc> {
        parse_timestamp(raw).unwrap()
    }

    fn close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-9,
            "{actual} is not {expected}"
        );
    }

    /// The README's worked example.
    fn example() -> Features {
        Features {
            event_count: 12,
            order_count: 4,
            total_spent: 400.0,
            first_seen_at: at("2024-09-01T00:00:00Z"),
            last_seen_at: at("2024-11-25T00:00:00Z"),
            last_order_at: Some(at("2024-11-20T00:00:00Z")),
            events_by_type: Default::default(),
        }
    }

    const NOW: &str = "2024-12-01T00:00:00Z";

    #[test]
    fn inputs_are_recency_frequency_monetary_tenure_and_interval() {
        let i = inputs(&example(), at(NOW));
        assert_eq!(
            i,
            Inputs {
                recency_days: 11.0,
                frequency: 4,
                monetary: 400.0,
                tenure_days: 91.0,
                mean_interval_days: 80.0 / 3.0,
            }
        );
    }

    #[test]
    fn churn_is_logistic_in_recency_relative_to_the_usual_interval() {
        let c = churn(&inputs(&example(), at(NOW)));
        close(c.relative_recency, 0.4125);
        // 1 / (1 + e^3.175)
        close(c.probability, 0.040_117_431_958_045_66);
        let at_interval = |x: f64| {
            churn(&Inputs {
                recency_days: x * 10.0,
                frequency: 3,
                monetary: 0.0,
                tenure_days: 100.0,
                mean_interval_days: 10.0,
            })
            .probability
        };
        close(at_interval(2.0), 0.5);
        close(at_interval(1.0), 1.0 / (1.0 + 2f64.exp()));
        close(at_interval(0.0), 1.0 / (1.0 + 4f64.exp()));
        assert!(at_interval(100.0) <= 1.0 && at_interval(100.0) > 0.999_999);
    }

    #[test]
    fn lifetime_value_is_order_value_times_expected_orders_times_survival() {
        let i = inputs(&example(), at(NOW));
        let c = churn(&i);
        let l = ltv(&i, c.probability);
        close(l.average_order_value, 100.0);
        close(l.orders_per_day, 4.0 / 91.0);
        close(l.expected_orders, 4.0 * 365.0 / 91.0);
        close(
            l.value,
            100.0 * (4.0 * 365.0 / 91.0) * (1.0 - c.probability),
        );
        close(round(l.value, 2), 1540.03);
    }

    #[test]
    fn a_short_tenure_is_stretched_to_thirty_days() {
        let i = Inputs {
            recency_days: 1.0,
            frequency: 1,
            monetary: 50.0,
            tenure_days: 2.0,
            mean_interval_days: FALLBACK_INTERVAL_DAYS,
        };
        let l = ltv(&i, 0.0);
        close(l.expected_orders, 365.0 / 30.0);
    }

    #[test]
    fn segments_follow_the_rule_table() {
        let seg = |recency_days: f64, frequency: i64, monetary: f64| {
            segment(&Inputs {
                recency_days,
                frequency,
                monetary,
                tenure_days: 365.0,
                mean_interval_days: 30.0,
            })
            .name
        };
        assert_eq!(seg(3.0, 0, 0.0), "Prospect");
        assert_eq!(seg(10.0, 12, 1500.0), "Champions");
        assert_eq!(seg(30.0, 6, 500.0), "Champions");
        assert_eq!(seg(45.0, 12, 1500.0), "Loyal Customers");
        assert_eq!(seg(10.0, 6, 100.0), "Loyal Customers");
        assert_eq!(seg(5.0, 1, 20.0), "New Customers");
        assert_eq!(seg(5.0, 3, 400.0), "Potential Loyalists");
        assert_eq!(seg(50.0, 1, 20.0), "Potential Loyalists");
        assert_eq!(seg(90.0, 8, 900.0), "At Risk");
        assert_eq!(seg(200.0, 3, 100.0), "At Risk");
        assert_eq!(seg(90.0, 2, 100.0), "Hibernating");
        assert_eq!(seg(121.0, 2, 100.0), "Lost");
        assert_eq!(seg(400.0, 1, 10.0), "Lost");
    }

    #[test]
    fn score_thresholds_are_inclusive() {
        let r: Vec<u8> = [14.0, 14.01, 30.0, 60.0, 120.0, 120.5]
            .map(recency_score)
            .to_vec();
        assert_eq!(r, [5, 4, 4, 3, 2, 1]);
        let f: Vec<u8> = [0, 1, 2, 3, 5, 6, 9, 10].map(frequency_score).to_vec();
        assert_eq!(f, [1, 1, 2, 3, 3, 4, 4, 5]);
        let m: Vec<u8> = [0.0, 49.99, 50.0, 200.0, 500.0, 999.99, 1000.0]
            .map(monetary_score)
            .to_vec();
        assert_eq!(m, [1, 1, 2, 3, 4, 4, 5]);
    }

    #[test]
    fn the_worked_example_predicts_rounded_scores_and_a_segment() {
        let out = predict(&example(), RequestType::All, at(NOW));
        assert_eq!(out.model_version, "rfm-v1");
        let kinds: Vec<RequestType> = out.predictions.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [RequestType::Churn, RequestType::Ltv, RequestType::Segment]
        );
        assert_eq!(out.predictions[0].score, Some(0.0401));
        assert_eq!(out.predictions[0].summary, json!({"probability": 0.0401}));
        assert_eq!(out.predictions[1].score, Some(1540.03));
        assert_eq!(
            out.predictions[2].label.as_deref(),
            Some("Potential Loyalists")
        );
        assert_eq!(out.predictions[2].details["rfm"], "533");
        assert_eq!(out.predictions[2].details["inputs"]["frequency"], 4);
    }

    #[test]
    fn a_profile_without_orders_is_a_prospect_worth_nothing() {
        let features = Features::none_since(at("2024-11-21T00:00:00Z"));
        let out = predict(&features, RequestType::All, at(NOW));
        let i = inputs(&features, at(NOW));
        assert_eq!((i.recency_days, i.mean_interval_days), (10.0, 30.0));
        // x = 1/3: 1 / (1 + e^(2·(2 − 1/3)))
        let p = 1.0 / (1.0 + (10.0f64 / 3.0).exp());
        assert_eq!(out.predictions[0].score, Some(round(p, 4)));
        assert_eq!(out.predictions[0].score, Some(0.0344));
        assert_eq!(out.predictions[1].score, Some(0.0));
        assert_eq!(out.predictions[2].label.as_deref(), Some("Prospect"));
    }

    #[test]
    fn only_the_requested_type_is_predicted() {
        let out = predict(&example(), RequestType::Segment, at(NOW));
        assert_eq!(out.predictions.len(), 1);
        assert_eq!(out.predictions[0].kind, RequestType::Segment);
    }
}
