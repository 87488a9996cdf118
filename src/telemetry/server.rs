//! Server metrics: every family an inference server exposes, discovered as it
//! comes. Gauges get statistics, counters their increase and rate, histograms
//! their bucket increases with mean and percentile estimates, summaries their
//! count, sum and last quantiles.

use std::collections::BTreeMap;

use regex::Regex;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::names;
use super::series::{Counter, Gauge, observe_at};
use crate::scrape::{Catalog, Format, Kind, Labels, ParseReport, Parser, Role, Sample};

/// Which families to keep, by name.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

impl Filter {
    /// Patterns are anchored: `vllm:.*` keeps vLLM's families only.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, regex::Error> {
        let compile = |ps: &[String]| -> Result<Vec<Regex>, regex::Error> {
            ps.iter()
                .map(|p| Regex::new(&format!("^(?:{p})$")))
                .collect()
        };
        Ok(Filter {
            include: compile(include)?,
            exclude: compile(exclude)?,
        })
    }

    pub fn keeps(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|r| r.is_match(name)))
            && !self.exclude.iter().any(|r| r.is_match(name))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Cumulative buckets by upper bound, in the order first seen.
    pub buckets: Vec<(f64, Counter)>,
    pub sum: Counter,
    pub count: Counter,
    #[serde(skip)]
    next: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryAgg {
    pub quantiles: Vec<(f64, Gauge)>,
    pub sum: Counter,
    pub count: Counter,
    #[serde(skip)]
    next: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Agg {
    Gauge(Gauge),
    Counter(Counter),
    Histogram(Histogram),
    Summary(SummaryAgg),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SeriesState {
    endpoint: String,
    key: String,
    /// Its labels, without `le`/`quantile`, unescaped.
    labels: BTreeMap<String, String>,
    agg: Agg,
    /// Scrape number in which each part was last taken (value/sum/count).
    #[serde(skip)]
    seen: [u32; 3],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct FamilyState {
    name: String,
    /// Whether the include/exclude patterns keep it (decided once per family).
    kept: bool,
    kind: Kind,
    help: Option<String>,
    unit: Option<String>,
    series: Vec<SeriesState>,
    #[serde(skip)]
    index: FxHashMap<String, usize>,
    /// The series of the previous sample of this family.
    #[serde(skip)]
    last: usize,
}

/// What a checkpoint keeps of a step's server metrics: every family's
/// aggregates (counters' and histogram buckets' opening readings among
/// them). [`ServerMetrics::restore`] continues from it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSnapshot {
    families: Vec<FamilyState>,
    scrapes: u32,
    over_limit: u64,
    skipped_lines: u64,
}

/// One endpoint's families at one instant (see [`ServerMetrics::points`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointPoint {
    pub gauges: BTreeMap<String, f64>,
    /// Increase since the step began.
    pub counters: BTreeMap<String, f64>,
    /// Families left out past the limit.
    pub omitted: u32,
}

/// Bounds against a server that invents series without end.
pub const MAX_FAMILIES: usize = 2048;
pub const MAX_SERIES_PER_FAMILY: usize = 1024;
/// Series over all families of one step.
pub const MAX_SERIES: usize = 16_384;
/// The longest series identity (endpoint and labels) kept, bytes.
pub const MAX_SERIES_KEY: usize = 4096;

/// Server metrics of a run, across endpoints and scrapes.
#[derive(Default)]
pub struct ServerMetrics {
    filter: Filter,
    families: Vec<FamilyState>,
    index: FxHashMap<String, usize>,
    key: String,
    last: usize,
    scrapes: u32,
    /// Series over all families (bounded by [`MAX_SERIES`]).
    series: usize,
    pub over_limit: u64,
    pub skipped_lines: u64,
}

impl ServerMetrics {
    pub fn new(filter: Filter) -> Self {
        ServerMetrics {
            filter,
            ..Default::default()
        }
    }

    /// The bytes of the series kept, as a checkpoint encodes them.
    pub fn encoded_bytes(&self) -> usize {
        super::encoded_len(&self.families)
    }

    /// Lets every series go; the filter stays.
    pub fn clear(&mut self) {
        *self = ServerMetrics::new(std::mem::take(&mut self.filter));
    }

    pub fn snapshot(&self) -> ServerSnapshot {
        ServerSnapshot {
            families: self.families.clone(),
            scrapes: self.scrapes,
            over_limit: self.over_limit,
            skipped_lines: self.skipped_lines,
        }
    }

    /// The metrics a [`ServerMetrics::snapshot`] was taken of, filtered by
    /// `filter` from here on; the lookup tables are rebuilt.
    pub fn restore(s: ServerSnapshot, filter: Filter) -> Self {
        let mut families = s.families;
        for f in &mut families {
            f.index = f
                .series
                .iter()
                .enumerate()
                .map(|(i, s)| (s.key.clone(), i))
                .collect();
        }
        let index = families
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
        let series = families.iter().map(|f| f.series.len()).sum();
        ServerMetrics {
            filter,
            families,
            index,
            series,
            scrapes: s.scrapes,
            over_limit: s.over_limit,
            skipped_lines: s.skipped_lines,
            ..ServerMetrics::default()
        }
    }

    /// Per endpoint, each kept gauge family's latest value and each counter
    /// family's increase since the step began, summed over label sets; at most
    /// `max` families of each kind per endpoint, with names of at most
    /// `max_name` bytes (`omitted` counts the rest).
    pub fn points(&self, max: usize, max_name: usize) -> BTreeMap<String, EndpointPoint> {
        let mut out: BTreeMap<String, EndpointPoint> = BTreeMap::new();
        let mut left_out: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for f in self.families.iter().filter(|f| f.kept) {
            for s in &f.series {
                let (value, counter) = match &s.agg {
                    Agg::Gauge(g) => match g.last() {
                        Some(v) => (v, false),
                        None => continue,
                    },
                    Agg::Counter(c) => (c.delta, true),
                    Agg::Histogram(_) | Agg::Summary(_) => continue,
                };
                let p = out.entry(s.endpoint.clone()).or_default();
                let sums = if counter {
                    &mut p.counters
                } else {
                    &mut p.gauges
                };
                if f.name.len() > max_name || !sums.contains_key(&f.name) && sums.len() >= max {
                    left_out.entry(&s.endpoint).or_default().insert(&f.name);
                    continue;
                }
                *sums.entry(f.name.clone()).or_insert(0.0) += value;
            }
        }
        for (endpoint, names) in left_out {
            if let Some(p) = out.get_mut(endpoint) {
                p.omitted = u32::try_from(names.len()).unwrap_or(u32::MAX);
            }
        }
        out
    }

    /// Takes one scrape of `endpoint` taken at `t` seconds into the phase.
    pub fn ingest(&mut self, endpoint: &str, t: f64, body: &[u8], format: Format) -> ParseReport {
        self.scrapes += 1;
        let mut parser = Parser::new(body, format);
        let mut catalog = Catalog::default();
        for entry in parser.by_ref() {
            let Some((fi, role, s)) = catalog.entry(entry) else {
                continue;
            };
            if role == Role::Created || !s.value.is_finite() && role != Role::Bucket {
                continue;
            }
            let meta = catalog.family(fi);
            let Some(f) = self.family(meta.name, meta.kind, meta.help, meta.unit) else {
                self.over_limit += 1;
                continue;
            };
            if self.families[f].kept {
                self.observe(f, endpoint, role, &s, t);
            }
        }
        let report = parser.into_report();
        self.skipped_lines += u64::from(report.skipped);
        report
    }

    fn family(
        &mut self,
        name: &str,
        kind: Kind,
        help: Option<&str>,
        unit: Option<&str>,
    ) -> Option<usize> {
        // Samples of a family come together: check the previous family first.
        if self.families.get(self.last).is_some_and(|f| f.name == name) {
            return Some(self.last);
        }
        if let Some(&i) = self.index.get(name) {
            self.last = i;
            return Some(i);
        }
        if self.families.len() >= MAX_FAMILIES {
            return None;
        }
        self.families.push(FamilyState {
            name: name.to_string(),
            kept: self.filter.keeps(name),
            kind,
            help: help.map(str::to_string),
            unit: unit.map(str::to_string),
            series: Vec::new(),
            index: FxHashMap::default(),
            last: 0,
        });
        self.index.insert(name.to_string(), self.families.len() - 1);
        self.last = self.families.len() - 1;
        Some(self.last)
    }

    fn observe(&mut self, f: usize, endpoint: &str, role: Role, s: &Sample<'_>, t: f64) {
        let scrape = self.scrapes;
        let bound = series_key(&mut self.key, endpoint, &s.labels, role);
        let fam = &mut self.families[f];
        // Histogram parts and repeated label sets follow each other.
        let same = fam.series.get(fam.last).is_some_and(|s| s.key == self.key);
        let found = if same {
            Some(fam.last)
        } else {
            fam.index.get(self.key.as_str()).copied()
        };
        let si = match found {
            Some(i) => i,
            None if fam.series.len() >= MAX_SERIES_PER_FAMILY
                || self.series >= MAX_SERIES
                || self.key.len() > MAX_SERIES_KEY =>
            {
                self.over_limit += 1;
                return;
            }
            None => {
                let agg = match fam.kind {
                    Kind::Counter => Agg::Counter(Counter::default()),
                    Kind::Histogram | Kind::GaugeHistogram => Agg::Histogram(Histogram::default()),
                    Kind::Summary => Agg::Summary(SummaryAgg::default()),
                    _ => Agg::Gauge(Gauge::default()),
                };
                let drop = dropped_label(role);
                let labels = s
                    .labels
                    .iter()
                    .filter(|(n, _)| *n != drop)
                    .map(|(n, v)| (n.to_string(), v.text().into_owned()))
                    .collect();
                fam.series.push(SeriesState {
                    endpoint: endpoint.to_string(),
                    key: self.key.clone(),
                    labels,
                    agg,
                    seen: [0; 3],
                });
                fam.index.insert(self.key.clone(), fam.series.len() - 1);
                self.series += 1;
                fam.series.len() - 1
            }
        };
        fam.last = si;
        let series = &mut fam.series[si];
        let part = match role {
            Role::Sum => 1,
            Role::Count => 2,
            _ => 0,
        };
        // Buckets and quantiles share part 0 across their bounds; repeats of a
        // whole series are caught on its sum, count or plain value.
        if !matches!(role, Role::Bucket | Role::Quantile) {
            if series.seen[part] == scrape {
                return;
            }
            series.seen[part] = scrape;
        }
        let v = s.value;
        match role {
            Role::Bucket => {
                let Agg::Histogram(h) = &mut series.agg else {
                    return;
                };
                let Some(le) = bound else {
                    return;
                };
                if !observe_at(&mut h.buckets, &mut h.next, le, t, v) {
                    self.over_limit += 1;
                }
            }
            Role::Quantile => {
                let Agg::Summary(q) = &mut series.agg else {
                    return;
                };
                let Some(at) = bound else {
                    return;
                };
                if !observe_at(&mut q.quantiles, &mut q.next, at, t, v) {
                    self.over_limit += 1;
                }
            }
            Role::Sum | Role::Count => {
                let (sum, count) = match &mut series.agg {
                    Agg::Histogram(h) => (&mut h.sum, &mut h.count),
                    Agg::Summary(q) => (&mut q.sum, &mut q.count),
                    _ => return,
                };
                if role == Role::Sum { sum } else { count }.observe(t, v);
            }
            Role::Value | Role::Created => match &mut series.agg {
                Agg::Gauge(g) => g.observe(t, v),
                Agg::Counter(c) => c.observe(t, v),
                _ => {}
            },
        }
    }
}

/// The label that tells a part of a series apart rather than the series:
/// `le` on buckets, `quantile` on summary quantiles.
fn dropped_label(role: Role) -> &'static str {
    match role {
        Role::Bucket => "le",
        Role::Quantile => "quantile",
        _ => "",
    }
}

/// `endpoint \0 labels`, without the [`dropped_label`], so that all parts of
/// a histogram or summary share a key. Returns the value of the dropped label
/// (`+Inf` included), read on the way.
pub(crate) fn series_key(
    key: &mut String,
    endpoint: &str,
    labels: &Labels<'_>,
    role: Role,
) -> Option<f64> {
    key.clear();
    key.push_str(endpoint);
    key.push('\0');
    // Rebuilt rather than copied, so spacing and a trailing comma do not matter.
    let drop = dropped_label(role);
    let mut first = true;
    let mut bound = None;
    for (name, value) in labels.iter() {
        if name == drop {
            bound = crate::scrape::parse::number(value.raw());
            continue;
        }
        if !first {
            key.push(',');
        }
        first = false;
        key.push_str(name);
        key.push_str("=\"");
        key.push_str(value.raw());
        key.push('"');
    }
    bound
}

mod results;
pub use results::{FamilyResult, HistogramResult, SeriesResult, histogram_quantile};

#[cfg(test)]
#[path = "server/tests.rs"]
mod tests;
