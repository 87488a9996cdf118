//! DDSketch: quantiles with a bounded relative error, in bounded memory, merged
//! exactly (Masson, Rim and Lee, VLDB 2019).
//!
//! Hand-written because the `sketches-ddsketch` crate keeps `f64` bin counts
//! and a sparse map per bin, several times the memory per series we allow, and
//! cannot cap the bins per store with a known behaviour. The layout here is the
//! paper's "collapsing lowest dense store": one `u32` per bucket between the
//! lowest and highest index seen; when a store would exceed `max_bins`, its
//! lowest buckets fold into one, which costs accuracy only at the far low end.
//!
//! A value `v > 0` falls in bucket `ceil(log_gamma(v))` with
//! `gamma = (1 + alpha) / (1 - alpha)`; the bucket's representative
//! `2 gamma^i / (gamma + 1)` is within `alpha` of every value in the bucket.

use serde::{Deserialize, Serialize};

/// Values closer to zero than this count as zero.
const MIN_INDEXABLE: f64 = 1e-9;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Store {
    /// Index of `counts[0]`.
    offset: i32,
    counts: Vec<u32>,
}

impl Store {
    fn add(&mut self, index: i32, n: u32, max_bins: usize) {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(n);
            return;
        }
        let hi = (self.offset + self.counts.len() as i32 - 1).max(index);
        // The lowest bucket kept; anything below folds into it.
        let lo = self.offset.min(index).max(hi - max_bins as i32 + 1);
        if lo < self.offset {
            let grow = (self.offset - lo) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
        } else if lo > self.offset {
            let excess = ((lo - self.offset) as usize).min(self.counts.len() - 1);
            let folded = self.counts[..=excess]
                .iter()
                .fold(0u32, |a, c| a.saturating_add(*c));
            self.counts.drain(..excess);
            self.counts[0] = folded;
        }
        self.offset = lo;
        self.counts.resize((hi - lo + 1) as usize, 0);
        let slot = (index.max(lo) - lo) as usize;
        self.counts[slot] = self.counts[slot].saturating_add(n);
    }

    #[cfg(test)]
    fn total(&self) -> u64 {
        self.counts.iter().map(|c| u64::from(*c)).sum()
    }

    fn heap_bytes(&self) -> usize {
        self.counts.capacity() * size_of::<u32>()
    }
}

/// A DDSketch over all reals: a positive store, a negative store, a zero count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DDSketch {
    alpha: f64,
    max_bins: usize,
    #[serde(skip)]
    ln_gamma: f64,
    positive: Store,
    negative: Store,
    zero: u64,
    count: u64,
}

impl DDSketch {
    /// A sketch with relative accuracy `alpha` (e.g. 0.005) and at most
    /// `max_bins` buckets per sign.
    pub fn new(alpha: f64, max_bins: usize) -> Self {
        let alpha = alpha.clamp(1e-6, 0.5);
        DDSketch {
            alpha,
            max_bins: max_bins.max(8),
            ln_gamma: ln_gamma(alpha),
            positive: Store::default(),
            negative: Store::default(),
            zero: 0,
            count: 0,
        }
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    fn index(&self, v: f64) -> i32 {
        let ln_gamma = if self.ln_gamma > 0.0 {
            self.ln_gamma
        } else {
            ln_gamma(self.alpha)
        };
        (v.ln() / ln_gamma)
            .ceil()
            .clamp(i32::MIN as f64 / 2.0, i32::MAX as f64 / 2.0) as i32
    }

    fn value(&self, index: i32) -> f64 {
        let gamma = (1.0 + self.alpha) / (1.0 - self.alpha);
        2.0 * gamma.powi(index) / (gamma + 1.0)
    }

    /// Adds `v` once; NaN and infinities are ignored.
    pub fn add(&mut self, v: f64) {
        self.add_n(v, 1);
    }

    pub fn add_n(&mut self, v: f64, n: u32) {
        if !v.is_finite() || n == 0 {
            return;
        }
        if v > MIN_INDEXABLE {
            let i = self.index(v);
            self.positive.add(i, n, self.max_bins);
        } else if v < -MIN_INDEXABLE {
            let i = self.index(-v);
            self.negative.add(i, n, self.max_bins);
        } else {
            self.zero += u64::from(n);
        }
        self.count += u64::from(n);
    }

    /// Adds every count of `other`. Exact when both have the same `alpha`;
    /// otherwise `other`'s representatives are re-inserted (error adds up).
    pub fn merge(&mut self, other: &DDSketch) {
        let same = (self.alpha - other.alpha).abs() < 1e-12;
        for (sign, store) in [(1.0, &other.positive), (-1.0, &other.negative)] {
            for (k, c) in store.counts.iter().enumerate() {
                if *c == 0 {
                    continue;
                }
                let index = store.offset + k as i32;
                if same {
                    let mine = if sign > 0.0 {
                        &mut self.positive
                    } else {
                        &mut self.negative
                    };
                    mine.add(index, *c, self.max_bins);
                    self.count += u64::from(*c);
                } else {
                    self.add_n(sign * other.value(index), *c);
                }
            }
        }
        self.zero += other.zero;
        self.count += other.zero;
    }

    /// The value at quantile `q` (0..=1), lower rank `floor(q (n - 1))`;
    /// `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.count - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        // Most negative first: the negative store from its highest index down.
        for (k, c) in self.negative.counts.iter().enumerate().rev() {
            seen += u64::from(*c);
            if seen > rank {
                return Some(-self.value(self.negative.offset + k as i32));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(0.0);
        }
        for (k, c) in self.positive.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen > rank {
                return Some(self.value(self.positive.offset + k as i32));
            }
        }
        // Only reachable if counts saturated; the top bucket is the answer.
        let top = self.positive.offset + self.positive.counts.len() as i32 - 1;
        Some(self.value(top))
    }

    /// Heap bytes held by the buckets.
    pub fn heap_bytes(&self) -> usize {
        self.positive.heap_bytes() + self.negative.heap_bytes()
    }

    #[cfg(test)]
    fn stored(&self) -> u64 {
        self.positive.total() + self.negative.total() + self.zero
    }
}

fn ln_gamma(alpha: f64) -> f64 {
    ((1.0 + alpha) / (1.0 - alpha)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    fn check(values: &mut [f64], sketch: &DDSketch) {
        values.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0] {
            let want = exact(values, q);
            let got = sketch.quantile(q).unwrap();
            let err = if want == 0.0 {
                got.abs()
            } else {
                ((got - want) / want).abs()
            };
            assert!(
                err <= sketch.alpha() + 1e-12,
                "q={q} want {want} got {got} err {err}"
            );
        }
    }

    #[test]
    fn relative_error_is_bounded_on_random_data() {
        let mut rng = StdRng::seed_from_u64(7);
        for dist in 0..3 {
            let mut values: Vec<f64> = (0..20_000)
                .map(|_| match dist {
                    0 => rng.random_range(0.001..5.0),
                    1 => (rng.random_range(-2.0f64..6.0)).exp(),
                    _ => rng.random_range(-50.0..400.0),
                })
                .collect();
            let mut s = DDSketch::new(0.005, 4096);
            values.iter().for_each(|v| s.add(*v));
            assert_eq!(s.count(), 20_000);
            check(&mut values, &s);
        }
    }

    #[test]
    fn merge_is_exact() {
        let mut rng = StdRng::seed_from_u64(3);
        let values: Vec<f64> = (0..5000).map(|_| rng.random_range(0.0..100.0)).collect();
        let mut one = DDSketch::new(0.005, 2048);
        values.iter().for_each(|v| one.add(*v));
        let mut parts: Vec<DDSketch> = (0..4).map(|_| DDSketch::new(0.005, 2048)).collect();
        for (i, v) in values.iter().enumerate() {
            parts[i % 4].add(*v);
        }
        let mut merged = DDSketch::new(0.005, 2048);
        parts.iter().for_each(|p| merged.merge(p));
        assert_eq!(merged.count(), one.count());
        for q in [0.01, 0.5, 0.99] {
            assert_eq!(merged.quantile(q), one.quantile(q));
        }
    }

    #[test]
    fn collapsing_keeps_counts_and_high_quantiles() {
        let mut s = DDSketch::new(0.005, 64);
        let mut values: Vec<f64> = (1..=10_000).map(|i| i as f64).collect();
        values.iter().for_each(|v| s.add(*v));
        assert_eq!(s.stored(), 10_000);
        assert!(s.positive.counts.len() <= 64);
        // The top of the range keeps its accuracy.
        values.sort_by(f64::total_cmp);
        let want = exact(&values, 0.99);
        assert!((s.quantile(0.99).unwrap() - want).abs() / want <= 0.005);
    }

    #[test]
    fn zeros_negatives_and_junk() {
        let mut s = DDSketch::new(0.01, 128);
        assert_eq!(s.quantile(0.5), None);
        for v in [0.0, -1.0, -1.0, 2.0, f64::NAN, f64::INFINITY] {
            s.add(v);
        }
        assert_eq!(s.count(), 4);
        assert!((s.quantile(0.0).unwrap() + 1.0).abs() <= 0.01);
        assert_eq!(s.quantile(2.0 / 3.0), Some(0.0));
        assert!((s.quantile(1.0).unwrap() - 2.0).abs() <= 0.02);
    }
}
