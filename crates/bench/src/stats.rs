//! Percentiles by sorting (nearest rank), the way latency targets are stated.

use serde::Serialize;

/// The `p`-th percentile (0 < p ≤ 100) of `sorted` (ascending) by the nearest-rank method:
/// the smallest value with at least `p`% of the values at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// p50, p99 and max of a set of latencies (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// How many values.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

/// Summarises `values`; `None` when there are none.
pub fn summarize(mut values: Vec<f64>) -> Option<Summary> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    Some(Summary {
        count: values.len(),
        p50: percentile(&values, 50.0)?,
        p99: percentile(&values, 99.0)?,
        max: *values.last()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_hundred_are_the_ranks_themselves() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&values, 0.5), Some(1.0));
    }

    #[test]
    fn a_single_outlier_moves_the_max_but_not_the_p99_of_a_thousand() {
        let mut values = vec![2.0; 999];
        values.push(500.0);
        let s = summarize(values).unwrap();
        assert_eq!((s.count, s.p50, s.p99, s.max), (1000, 2.0, 2.0, 500.0));
    }

    #[test]
    fn nothing_to_summarise_gives_none() {
        assert_eq!(summarize(Vec::new()), None);
        assert_eq!(percentile(&[1.0], 0.0), None);
    }
}
