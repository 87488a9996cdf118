//! Count, mean, variance, min and max in constant memory, mergeable.

use serde::{Deserialize, Serialize};

/// Welford's running moments; [`Moments::merge`] is Chan et al.'s parallel
/// combination, so shards merged in any order give the same result as one pass
/// (to rounding).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    pub count: u64,
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
    /// `+inf` while empty: JSON writes it as `null`, read back as `+inf`.
    #[serde(deserialize_with = "or_infinity")]
    pub min: f64,
    /// `-inf` while empty (`null` in JSON).
    #[serde(deserialize_with = "or_neg_infinity")]
    pub max: f64,
}

/// JSON has no infinities (serde_json writes them as `null`): an empty
/// summary's extremes come back as the infinities they were.
fn or_infinity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

fn or_neg_infinity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY))
}

impl Default for Moments {
    fn default() -> Self {
        Moments {
            count: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Moments {
    /// Adds one value; NaN is ignored.
    pub fn add(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        self.count += 1;
        let d = v - self.mean;
        self.mean += d / self.count as f64;
        self.m2 += d * (v - self.mean);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, o: &Moments) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *o;
            return;
        }
        let n = (self.count + o.count) as f64;
        let d = o.mean - self.mean;
        self.mean += d * o.count as f64 / n;
        self.m2 += o.m2 + d * d * self.count as f64 * o.count as f64 / n;
        self.count += o.count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// Population standard deviation (numpy's default), 0 when empty.
    pub fn std(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            (self.m2 / self.count as f64).max(0.0).sqrt()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_equals_one_pass() {
        let values: Vec<f64> = (0..1000)
            .map(|i| ((i * 37) % 101) as f64 * 0.5 - 7.0)
            .collect();
        let mut all = Moments::default();
        values.iter().for_each(|v| all.add(*v));
        let (mut a, mut b) = (Moments::default(), Moments::default());
        values[..313].iter().for_each(|v| a.add(*v));
        values[313..].iter().for_each(|v| b.add(*v));
        a.merge(&b);
        assert_eq!(a.count, all.count);
        assert!((a.mean - all.mean).abs() < 1e-9);
        assert!((a.std() - all.std()).abs() < 1e-9);
        assert_eq!((a.min, a.max), (all.min, all.max));
        let exact_mean = values.iter().sum::<f64>() / 1000.0;
        assert!((all.mean - exact_mean).abs() < 1e-9);
    }

    #[test]
    fn empty_moments_survive_json() {
        // A worker whose step had no request sends empty moments.
        let json = serde_json::to_string(&Moments::default()).unwrap();
        assert!(json.contains("null"), "{json}");
        let back: Moments = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Moments::default());
        let mut m = Moments::default();
        m.add(2.5);
        let back: Moments = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn nan_is_ignored_and_empty_is_zero() {
        let mut m = Moments::default();
        assert_eq!(m.std(), 0.0);
        m.add(f64::NAN);
        assert_eq!(m.count, 0);
        m.add(3.0);
        m.merge(&Moments::default());
        assert_eq!((m.count, m.mean, m.std()), (1, 3.0, 0.0));
    }
}
