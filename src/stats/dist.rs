//! A value distribution that is exact while it is small, a sketch after.

use serde::{Deserialize, Serialize};

use super::{DDSketch, Moments, PERCENTILES, Summary};

/// Distinct values counted exactly before switching to the sketch. Clocks,
/// temperatures, utilisations and framebuffer sizes are integers that take
/// few distinct values over a run, and stay exact.
pub const EXACT_MAX: usize = 64;

/// Relative accuracy of the sketch (0.5 %).
pub const ALPHA: f64 = 0.005;

/// Buckets per sign: 1024 × 4 bytes, a dynamic range of e^10 (about 28,000×).
pub const MAX_BINS: usize = 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Distribution {
    /// Distinct values with their counts, sorted by value.
    Exact(Vec<(f64, u32)>),
    Sketch(Box<DDSketch>),
}

impl Default for Distribution {
    fn default() -> Self {
        Distribution::Exact(Vec::new())
    }
}

impl Distribution {
    pub fn add(&mut self, v: f64) {
        self.add_n(v, 1);
    }

    fn add_n(&mut self, v: f64, n: u32) {
        if !v.is_finite() {
            return;
        }
        match self {
            Distribution::Exact(values) => {
                match values.binary_search_by(|(x, _)| x.total_cmp(&v)) {
                    Ok(i) => values[i].1 = values[i].1.saturating_add(n),
                    Err(i) => values.insert(i, (v, n)),
                }
                if values.len() > EXACT_MAX {
                    let mut sketch = DDSketch::new(ALPHA, MAX_BINS);
                    values.iter().for_each(|(x, c)| sketch.add_n(*x, *c));
                    *self = Distribution::Sketch(Box::new(sketch));
                }
            }
            Distribution::Sketch(s) => s.add_n(v, n),
        }
    }

    pub fn merge(&mut self, other: &Distribution) {
        match (&mut *self, other) {
            (Distribution::Sketch(a), Distribution::Sketch(b)) => a.merge(b),
            (_, Distribution::Exact(values)) => values.iter().for_each(|(x, c)| self.add_n(*x, *c)),
            (Distribution::Exact(mine), Distribution::Sketch(b)) => {
                let mut sketch = (**b).clone();
                mine.iter().for_each(|(x, c)| sketch.add_n(*x, *c));
                *self = Distribution::Sketch(Box::new(sketch));
            }
        }
    }

    /// Quantile `q` in 0..=1: exact values interpolate linearly between
    /// closest ranks (numpy's default); the sketch answers within `ALPHA`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        match self {
            Distribution::Sketch(s) => s.quantile(q),
            Distribution::Exact(values) => {
                let n: u64 = values.iter().map(|(_, c)| u64::from(*c)).sum();
                if n == 0 {
                    return None;
                }
                let rank = q.clamp(0.0, 1.0) * (n - 1) as f64;
                let (lo, hi) = (rank.floor() as u64, rank.ceil() as u64);
                let (a, b) = (nth(values, lo), nth(values, hi));
                Some(a + (b - a) * (rank - lo as f64))
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            Distribution::Exact(v) => v.capacity() * size_of::<(f64, u32)>(),
            Distribution::Sketch(s) => size_of::<DDSketch>() + s.heap_bytes(),
        }
    }
}

/// The `k`-th smallest value (0-based) of counted values.
fn nth(values: &[(f64, u32)], k: u64) -> f64 {
    let mut seen = 0u64;
    for (v, c) in values {
        seen += u64::from(*c);
        if seen > k {
            return *v;
        }
    }
    values.last().map_or(0.0, |(v, _)| *v)
}

/// Moments plus distribution: everything a [`Summary`] needs, in bounded memory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub moments: Moments,
    pub dist: Distribution,
}

impl Stats {
    pub fn add(&mut self, v: f64) {
        if v.is_finite() {
            self.moments.add(v);
            self.dist.add(v);
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        self.moments.merge(&o.moments);
        self.dist.merge(&o.dist);
    }

    pub fn count(&self) -> u64 {
        self.moments.count
    }

    /// The summary; percentiles are clamped into `[min, max]` (the sketch's
    /// representative of the extreme buckets may lie just outside).
    pub fn summary(&self) -> Summary {
        let m = &self.moments;
        if m.count == 0 {
            return Summary::default();
        }
        let p = |q: f64| {
            self.dist
                .quantile(q / 100.0)
                .unwrap_or(m.mean)
                .clamp(m.min, m.max)
        };
        let [p1, p5, p10, p25, p50, p75, p90, p95, p99] = PERCENTILES.map(p);
        Summary {
            count: m.count,
            mean: m.mean,
            min: m.min,
            max: m.max,
            std: m.std(),
            p1,
            p5,
            p10,
            p25,
            p50,
            p75,
            p90,
            p95,
            p99,
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.dist.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn few_distinct_values_stay_exact_and_match_numpy() {
        let mut s = Stats::default();
        (1..=60).for_each(|i| s.add(f64::from(i)));
        (1..=40).for_each(|i| s.add(f64::from(i + 60)));
        assert!(matches!(s.dist, Distribution::Sketch(_)));
        let mut e = Stats::default();
        (1..=50).for_each(|i| e.add(f64::from(i % 7)));
        assert!(matches!(e.dist, Distribution::Exact(_)));
        let want = Summary::of((1..=50).map(|i| f64::from(i % 7)).collect());
        let got = e.summary();
        assert_eq!(
            (got.p1, got.p50, got.p99, got.min, got.max),
            (want.p1, want.p50, want.p99, want.min, want.max)
        );
        assert!((got.std - want.std).abs() < 1e-12);
    }

    #[test]
    fn sketched_summary_tracks_the_exact_one() {
        let mut rng = StdRng::seed_from_u64(11);
        let values: Vec<f64> = (0..10_000)
            .map(|_| 150.0 + rng.random_range(0.0..550.0))
            .collect();
        let mut s = Stats::default();
        values.iter().for_each(|v| s.add(*v));
        let (got, want) = (s.summary(), Summary::of(values));
        for (g, w) in [
            (got.p1, want.p1),
            (got.p50, want.p50),
            (got.p90, want.p90),
            (got.p99, want.p99),
        ] {
            assert!(((g - w) / w).abs() < 0.006, "{g} vs {w}");
        }
        assert_eq!(
            (got.min, got.max, got.count),
            (want.min, want.max, want.count)
        );
        assert!((got.mean - want.mean).abs() < 1e-9);
        assert!(s.heap_bytes() <= 4096, "{} bytes", s.heap_bytes());
    }

    #[test]
    fn merging_exact_into_sketch_and_back() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        (0..100).for_each(|i| a.add(f64::from(i)));
        (0..10).for_each(|i| b.add(f64::from(i)));
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab.count(), 110);
        assert_eq!(ab.summary().p50, ba.summary().p50);
    }
}
