//! Statistics across repeated trials of one benchmark (`spec.repeat`): the
//! mean, the sample standard deviation, the 95 % confidence interval of the
//! mean by Student's t, and the coefficient of variation; and Welch's t-test
//! of whether two sets of trials differ.
//!
//! Welch's test rather than Student's: two deployments' trials have no
//! reason to vary alike (a quantized model, another GPU), and Welch's does
//! not assume equal variances. The Student t distribution is `statrs`'s.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// The confidence of the intervals and the level of the test.
pub const CONFIDENCE: f64 = 0.95;

/// How a metric varied across trials.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Spread {
    /// Trials with a value.
    pub n: u32,
    pub mean: f64,
    /// Sample standard deviation (divided by n − 1).
    pub std: f64,
    /// The 95 % confidence interval of the mean (Student's t, n − 1 degrees of freedom).
    pub ci95_low: f64,
    pub ci95_high: f64,
    /// `std / |mean|`; absent when the mean is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv: Option<f64>,
}

/// The `p` quantile of Student's t distribution with `df` degrees of freedom.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df).map_or(f64::NAN, |t| t.inverse_cdf(p))
}

impl Spread {
    /// The spread of `values`; `None` with fewer than two finite values
    /// (one trial has no spread).
    pub fn of(values: &[f64]) -> Option<Spread> {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.len() < 2 {
            return None;
        }
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let std = var.sqrt();
        let half = t_quantile(1.0 - (1.0 - CONFIDENCE) / 2.0, n - 1.0) * std / n.sqrt();
        Some(Spread {
            n: v.len() as u32,
            mean,
            std,
            ci95_low: mean - half,
            ci95_high: mean + half,
            cv: (mean != 0.0).then(|| std / mean.abs()),
        })
    }
}

/// Welch's t-test of two sets of trials.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Welch {
    /// `(mean b − mean a) / standard error`.
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value: how likely a difference this large is when the
    /// means are equal.
    pub p: f64,
}

impl Welch {
    /// Whether the difference is significant at the 5 % level.
    pub fn significant(&self) -> bool {
        self.p < 1.0 - CONFIDENCE
    }
}

/// Welch's test of `b` against `a`. Trials that did not vary at all on
/// both sides differ for certain when their means differ, and not otherwise.
pub fn welch(a: &Spread, b: &Spread) -> Welch {
    let (na, nb) = (f64::from(a.n), f64::from(b.n));
    let (va, vb) = (a.std.powi(2) / na, b.std.powi(2) / nb);
    let se2 = va + vb;
    let diff = b.mean - a.mean;
    if se2 == 0.0 {
        let p = if diff == 0.0 { 1.0 } else { 0.0 };
        return Welch {
            t: if diff == 0.0 {
                0.0
            } else {
                diff.signum() * f64::INFINITY
            },
            df: na + nb - 2.0,
            p,
        };
    }
    let t = diff / se2.sqrt();
    let df = se2.powi(2) / (va.powi(2) / (na - 1.0) + vb.powi(2) / (nb - 1.0));
    let p = StudentsT::new(0.0, 1.0, df).map_or(f64::NAN, |d| 2.0 * d.sf(t.abs()));
    Welch { t, df, p }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn t_quantiles_match_the_tables() {
        // Two-sided 95 %: 12.706 (1), 4.303 (2), 2.262 (9), 1.984 (100).
        assert!(close(t_quantile(0.975, 1.0), 12.706_204_736, 1e-6));
        assert!(close(t_quantile(0.975, 2.0), 4.302_652_730, 1e-6));
        assert!(close(t_quantile(0.975, 9.0), 2.262_157_163, 1e-6));
        assert!(close(t_quantile(0.975, 100.0), 1.983_971_519, 1e-6));
    }

    #[test]
    fn three_trials_give_the_mean_its_interval_and_cv() {
        let s = Spread::of(&[10.0, 12.0, 14.0]).unwrap();
        assert_eq!((s.n, s.mean, s.std), (3, 12.0, 2.0));
        // 4.303 × 2 / √3 = 4.968 either side.
        let half = 4.302_652_730 * 2.0 / 3f64.sqrt();
        assert!(close(s.ci95_low, 12.0 - half, 1e-6) && close(s.ci95_high, 12.0 + half, 1e-6));
        assert!(close(s.cv.unwrap(), 2.0 / 12.0, 1e-12));
        // One trial, or values that are not numbers, have no spread.
        assert_eq!(Spread::of(&[5.0]), None);
        assert_eq!(Spread::of(&[5.0, f64::NAN]), None);
        assert_eq!(Spread::of(&[0.0, 0.0]).unwrap().cv, None);
    }

    #[test]
    fn welch_matches_a_worked_example() {
        // Two samples of 15 with unequal variances: t = −2.4554,
        // df = 24.989, p = 0.02138 (computed independently).
        let a = [
            27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7,
            21.4,
        ];
        let b = [
            27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5,
            24.4,
        ];
        let w = welch(&Spread::of(&b).unwrap(), &Spread::of(&a).unwrap());
        assert!(close(w.t, -2.455_356, 1e-5), "{w:?}");
        assert!(close(w.df, 24.988_529, 1e-5), "{w:?}");
        assert!(close(w.p, 0.021_378, 1e-5), "{w:?}");
        assert!(w.significant());
        // The same trials against themselves: no difference at all.
        let same = welch(&Spread::of(&a).unwrap(), &Spread::of(&a).unwrap());
        assert_eq!((same.t, same.p), (0.0, 1.0));
        assert!(!same.significant());
        // A large change within a large spread is not significant.
        let noisy_a = Spread::of(&[10.0, 20.0, 30.0]).unwrap();
        let noisy_b = Spread::of(&[14.0, 24.0, 34.0]).unwrap();
        assert!(!welch(&noisy_a, &noisy_b).significant());
        // No variance on either side: any change of the mean is certain.
        let flat = |v| Spread::of(&[v, v, v]).unwrap();
        assert!(welch(&flat(1.0), &flat(1.1)).significant());
        assert!(!welch(&flat(1.0), &flat(1.0)).significant());
    }
}
