//! One time series over a run: a gauge's statistics or a counter's increase,
//! and how often the exporter really refreshed it.

use serde::{Deserialize, Serialize};

use crate::stats::Stats;

/// When a series' value changed. An exporter that refreshes every 30 s but is
/// scraped every second serves the same value 30 times; the spacing of the
/// changes is the real update period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Changes {
    pub samples: u32,
    pub changes: u32,
    last: f64,
    /// The first sample's value (checkpoints from before it was kept read 0).
    #[serde(default)]
    first: f64,
    first_t: f64,
    last_t: f64,
    first_change_t: f64,
    last_change_t: f64,
}

impl Changes {
    fn observe(&mut self, t: f64, v: f64) {
        if self.samples == 0 {
            self.first_t = t;
            self.first = v;
        } else if v != self.last && !(v.is_nan() && self.last.is_nan()) {
            if self.changes == 0 {
                self.first_change_t = t;
            }
            self.changes += 1;
            self.last_change_t = t;
        }
        self.samples += 1;
        self.last = v;
        self.last_t = t;
    }

    /// The last sample, `(t, v)`.
    pub fn last(&self) -> Option<(f64, f64)> {
        (self.samples > 0).then_some((self.last_t, self.last))
    }

    /// The first sample's value.
    pub fn first(&self) -> Option<f64> {
        (self.samples > 0).then_some(self.first)
    }

    /// The times of the first and the last sample.
    pub fn bounds(&self) -> Option<(f64, f64)> {
        (self.samples > 0).then_some((self.first_t, self.last_t))
    }

    /// Seconds between the first and the last sample.
    pub fn span(&self) -> f64 {
        self.last_t - self.first_t
    }

    /// Mean seconds between scrapes.
    pub fn scrape_interval(&self) -> Option<f64> {
        (self.samples >= 2).then(|| self.span() / f64::from(self.samples - 1))
    }

    /// Mean seconds between value changes: the exporter's update period, as
    /// far as the data shows it (a value that never changes shows nothing).
    pub fn update_period(&self) -> Option<f64> {
        (self.changes >= 2)
            .then(|| (self.last_change_t - self.first_change_t) / f64::from(self.changes - 1))
    }
}

/// Anything that takes `(t, value)` samples.
pub trait Observe: Default {
    fn observe(&mut self, t: f64, v: f64);
}

/// The most bounds (histogram buckets, summary quantiles) one series keeps:
/// servers export a few dozen; a series that invents more is refused past
/// this, so a hostile page cannot grow memory or the search without end.
pub const MAX_BOUNDS: usize = 128;

/// Observes `v` into the entry of `list` at `at` (a bucket bound, a
/// quantile), adding the entry on first sight. Bounds arrive in the same
/// order every scrape, so `next` (the entry after the previous one) is tried
/// before a search. Returns `false` when the bound is new and the list
/// already holds [`MAX_BOUNDS`]: the sample is not taken.
pub fn observe_at<A: Observe>(
    list: &mut Vec<(f64, A)>,
    next: &mut usize,
    at: f64,
    t: f64,
    v: f64,
) -> bool {
    let i = match list.get(*next) {
        Some((b, _)) if *b == at => Some(*next),
        _ => list.iter().position(|(b, _)| *b == at),
    };
    let i = match i {
        Some(i) => i,
        None if list.len() >= MAX_BOUNDS => return false,
        None => {
            list.push((at, A::default()));
            list.len() - 1
        }
    };
    list[i].1.observe(t, v);
    *next = i + 1;
    true
}

impl Observe for Gauge {
    fn observe(&mut self, t: f64, v: f64) {
        Gauge::observe(self, t, v)
    }
}

impl Observe for Counter {
    fn observe(&mut self, t: f64, v: f64) {
        Counter::observe(self, t, v)
    }
}

/// A gauge: statistics of its values and its integral over time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Gauge {
    pub stats: Stats,
    pub changes: Changes,
    /// Trapezoidal integral of the value over time (value × seconds).
    pub integral: f64,
}

impl Gauge {
    pub fn observe(&mut self, t: f64, v: f64) {
        if !v.is_finite() {
            return;
        }
        if let Some((t0, v0)) = self.changes.last()
            && t > t0
        {
            self.integral += (t - t0) * (v + v0) / 2.0;
        }
        self.stats.add(v);
        self.changes.observe(t, v);
    }

    pub fn last(&self) -> Option<f64> {
        self.changes.last().map(|(_, v)| v)
    }
}

/// A counter: its increase between the first and the last sample, safe
/// against resets (a value lower than the one before means the counter
/// restarted from zero, so the new value is all increase since).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub delta: f64,
    /// Times it went down (also how a rate mis-declared as a counter shows).
    pub resets: u32,
    pub changes: Changes,
}

impl Counter {
    pub fn observe(&mut self, t: f64, v: f64) {
        if !v.is_finite() {
            return;
        }
        match self.changes.last() {
            None => {}
            Some((_, prev)) if v < prev => {
                self.delta += v;
                self.resets += 1;
            }
            Some((_, prev)) => self.delta += v - prev,
        }
        self.changes.observe(t, v);
    }

    /// Seconds between the first and the last sample.
    pub fn elapsed(&self) -> f64 {
        self.changes.span()
    }

    /// Mean increase per second over the samples; `None` under two samples.
    pub fn rate(&self) -> Option<f64> {
        let e = self.elapsed();
        (e > 0.0).then(|| self.delta / e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_keeps_at_most_max_bounds() {
        let (mut list, mut next) = (Vec::<(f64, Counter)>::new(), 0);
        for b in 0..MAX_BOUNDS {
            assert!(observe_at(&mut list, &mut next, b as f64, 0.0, 1.0));
        }
        assert!(
            !observe_at(&mut list, &mut next, 1e9, 0.0, 1.0),
            "a new bound past the cap"
        );
        assert!(
            observe_at(&mut list, &mut next, 3.0, 1.0, 5.0),
            "known bounds still count"
        );
        assert_eq!(list.len(), MAX_BOUNDS);
        assert_eq!(list[3].1.delta, 4.0);
    }

    #[test]
    fn counter_delta_survives_resets() {
        let mut c = Counter::default();
        for (t, v) in [(0.0, 100.0), (1.0, 150.0), (2.0, 20.0), (3.0, 50.0)] {
            c.observe(t, v);
        }
        // 50 before the reset, 20 since zero, then 30.
        assert_eq!(c.delta, 100.0);
        assert_eq!(c.resets, 1);
        assert_eq!(c.rate(), Some(100.0 / 3.0));
        c.observe(4.0, f64::NAN);
        assert_eq!(c.delta, 100.0);
    }

    #[test]
    fn gauge_integral_is_trapezoidal() {
        let mut g = Gauge::default();
        for (t, v) in [(0.0, 100.0), (2.0, 200.0), (3.0, 200.0)] {
            g.observe(t, v);
        }
        assert_eq!(g.integral, 300.0 + 200.0);
        assert_eq!(g.stats.count(), 3);
    }

    #[test]
    fn update_period_shows_a_slow_exporter() {
        let mut g = Gauge::default();
        // Scraped every second, refreshed every 5 s.
        for t in 0..31 {
            g.observe(f64::from(t), f64::from(t / 5));
        }
        assert_eq!(g.changes.scrape_interval(), Some(1.0));
        assert_eq!(g.changes.update_period(), Some(5.0));
        let mut flat = Gauge::default();
        (0..10).for_each(|t| flat.observe(f64::from(t), 7.0));
        assert_eq!(flat.changes.update_period(), None);
    }
}
