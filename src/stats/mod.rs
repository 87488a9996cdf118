//! Statistics shared by the load generator and the telemetry engine. Pure.
//!
//! [`Summary`] is the reported shape (count, mean, min, max, std, p1...p99).
//! It comes either exactly from every value ([`Summary::of`]) or, in bounded
//! memory, from a [`Stats`] accumulator: mergeable [`Moments`] plus a
//! [`Distribution`] that counts values exactly while they are few and
//! switches to a [`DDSketch`] (relative error at most `alpha`) when they are not.

mod dist;
mod moments;
mod sketch;
pub mod trials;

pub use dist::{Distribution, Stats};
pub use moments::Moments;
pub use sketch::DDSketch;

use serde::{Deserialize, Serialize};

/// The percentiles every latency is reported at.
pub const PERCENTILES: [f64; 9] = [1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0];

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Summary {
    pub count: u64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub std: f64,
    pub p1: f64,
    pub p5: f64,
    pub p10: f64,
    pub p25: f64,
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Summary {
    /// Statistics of `values` (NaN values are ignored); all zero when empty.
    pub fn of(mut values: Vec<f64>) -> Self {
        values.retain(|v| !v.is_nan());
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let p = |q: f64| percentile(&values, q);
        Self {
            count: values.len() as u64,
            mean,
            min: values[0],
            max: values[values.len() - 1],
            std: var.sqrt(),
            p1: p(1.0),
            p5: p(5.0),
            p10: p(10.0),
            p25: p(25.0),
            p50: p(50.0),
            p75: p(75.0),
            p90: p(90.0),
            p95: p(95.0),
            p99: p(99.0),
        }
    }
}

/// Linear interpolation between closest ranks (numpy's default), on sorted input.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_on_a_known_series() {
        let s = Summary::of((1..=100).map(f64::from).collect());
        assert_eq!((s.count, s.min, s.max), (100, 1.0, 100.0));
        assert!((s.mean - 50.5).abs() < 1e-12);
        // numpy.percentile(range(1, 101), [1, 50, 99]) = 1.99, 50.5, 99.01
        assert!(
            (s.p1 - 1.99).abs() < 1e-9
                && (s.p50 - 50.5).abs() < 1e-9
                && (s.p99 - 99.01).abs() < 1e-9
        );
        assert!((s.std - 28.866_070_047_722_12).abs() < 1e-9);
    }

    #[test]
    fn empty_and_nan_inputs_are_safe() {
        assert_eq!(Summary::of(vec![]), Summary::default());
        let s = Summary::of(vec![f64::NAN, 2.0]);
        assert_eq!((s.count, s.p50), (1, 2.0));
    }
}
