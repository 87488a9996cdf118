//! Server families as results: statistics, totals and rates, histogram
//! increases with percentile estimates, summary quantiles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Agg, Histogram, SeriesState, ServerMetrics, names};
use crate::scrape::Kind;
use crate::stats::Summary;

/// One series of a server family over the phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesResult {
    pub endpoint: String,
    pub labels: BTreeMap<String, String>,
    /// Gauges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Summary>,
    /// Counters: increase over the phase and per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<HistogramResult>,
    /// Summaries: the last value of each quantile.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "pairs")]
    pub quantiles: Vec<(f64, f64)>,
}

/// A histogram over the phase: increases of its buckets, count and sum.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistogramResult {
    pub count: f64,
    pub sum: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// `(upper bound, increase)`, cumulative as Prometheus writes them; the
    /// last bound is `"+Inf"` in JSON.
    #[serde(with = "pairs")]
    pub buckets: Vec<(f64, f64)>,
    /// Estimates by linear interpolation inside buckets (Prometheus's
    /// `histogram_quantile`): p50, p90, p95, p99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
}

/// Number pairs in JSON, which has no infinities or NaN: those are written as
/// the strings Prometheus uses (`"+Inf"`, `"-Inf"`, `"NaN"`) and read back.
mod pairs {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Num {
        Finite(f64),
        Text(String),
    }

    fn to(v: f64) -> Num {
        if v.is_finite() {
            Num::Finite(v)
        } else {
            Num::Text(crate::scrape::style::number(
                v,
                crate::scrape::style::NumberStyle::Go,
            ))
        }
    }

    fn from(n: Num) -> Result<f64, String> {
        match n {
            Num::Finite(v) => Ok(v),
            Num::Text(t) => {
                crate::scrape::parse::number(&t).ok_or_else(|| format!("{t:?} is not a number"))
            }
        }
    }

    pub fn serialize<S: Serializer>(v: &[(f64, f64)], s: S) -> Result<S::Ok, S::Error> {
        let v: Vec<(Num, Num)> = v.iter().map(|(a, b)| (to(*a), to(*b))).collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(f64, f64)>, D::Error> {
        let v: Vec<(Num, Num)> = Vec::deserialize(d)?;
        v.into_iter()
            .map(|(a, b)| Ok((from(a)?, from(b)?)))
            .collect::<Result<_, String>>()
            .map_err(D::Error::custom)
    }
}

/// One server family over the phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyResult {
    pub name: String,
    pub display: String,
    pub kind: Kind,
    pub unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    pub series: Vec<SeriesResult>,
}

impl ServerMetrics {
    /// Every family, in order of discovery.
    pub fn results(&self) -> Vec<FamilyResult> {
        self.families
            .iter()
            .filter(|f| f.kept)
            .map(|f| FamilyResult {
                name: f.name.clone(),
                display: names::display_name(&f.name),
                kind: f.kind,
                unit: names::unit(&f.name, f.help.as_deref(), f.unit.as_deref()),
                help: f.help.clone(),
                series: f.series.iter().map(series_result).collect(),
            })
            .collect()
    }
}

fn series_result(s: &SeriesState) -> SeriesResult {
    let mut r = SeriesResult {
        endpoint: s.endpoint.clone(),
        labels: s.labels.clone(),
        stats: None,
        total: None,
        rate: None,
        histogram: None,
        quantiles: Vec::new(),
    };
    match &s.agg {
        Agg::Gauge(g) => r.stats = Some(g.stats.summary()),
        Agg::Counter(c) => {
            r.total = Some(c.delta);
            r.rate = c.rate();
        }
        Agg::Histogram(h) => r.histogram = Some(histogram_result(h)),
        Agg::Summary(q) => {
            r.total = Some(q.count.delta);
            r.rate = q.count.rate();
            let mut qs: Vec<(f64, f64)> = q
                .quantiles
                .iter()
                .filter_map(|(at, g)| Some((*at, g.last()?)))
                .collect();
            qs.sort_by(|a, b| a.0.total_cmp(&b.0));
            r.quantiles = qs;
        }
    }
    r
}

fn histogram_result(h: &Histogram) -> HistogramResult {
    let mut buckets: Vec<(f64, f64)> = h.buckets.iter().map(|(le, c)| (*le, c.delta)).collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let count = h.count.delta;
    let q = |q: f64| histogram_quantile(q, &buckets);
    HistogramResult {
        count,
        sum: h.sum.delta,
        mean: (count > 0.0).then(|| h.sum.delta / count),
        p50: q(0.5),
        p90: q(0.9),
        p95: q(0.95),
        p99: q(0.99),
        buckets,
    }
}

/// Prometheus's `histogram_quantile` on cumulative `(le, count)` buckets:
/// linear inside the bucket that holds the rank; the lowest bucket starts at 0
/// (or at its bound when that is negative); a rank in `+Inf` answers the
/// highest finite bound.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 || buckets.len() < 2 && buckets[0].0.is_infinite() {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let i = buckets.iter().position(|(_, c)| *c >= rank)?;
    let (hi, count_hi) = buckets[i];
    if hi.is_infinite() {
        return Some(buckets[i.checked_sub(1)?].0);
    }
    let (lo, count_lo) = match i {
        0 => (if hi > 0.0 { 0.0 } else { hi }, 0.0),
        _ => buckets[i - 1],
    };
    if count_hi <= count_lo {
        return Some(hi);
    }
    Some(lo + (hi - lo) * (rank - count_lo) / (count_hi - count_lo))
}
