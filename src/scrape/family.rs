//! Grouping samples into metric families.
//!
//! A histogram `x` is written as `x_bucket`, `x_sum` and `x_count` samples, a
//! summary as `x{quantile=..}`, `x_sum` and `x_count`, an OpenMetrics counter
//! `x` as `x_total` (and `x_created`). [`Catalog`] reads the `# TYPE`, `# HELP`
//! and `# UNIT` lines and tells, for each sample, which family it belongs to
//! and what part of the family it is. A sample with no declared family forms an
//! untyped family of its own, as Prometheus treats it.

use rustc_hash::FxHashMap;

use super::parse::{Entry, Kind, Sample};

/// The part of its family a sample is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The value of a gauge, counter, untyped, info or stateset sample.
    Value,
    /// A histogram bucket (`_bucket`, with an `le` label).
    Bucket,
    /// A summary quantile (the bare name, with a `quantile` label).
    Quantile,
    Sum,
    Count,
    /// `_created`: when the series was created (OpenMetrics).
    Created,
}

/// One family's metadata, borrowed from the payload.
#[derive(Clone, Debug, PartialEq)]
pub struct FamilyMeta<'a> {
    pub name: &'a str,
    pub kind: Kind,
    pub help: Option<&'a str>,
    pub unit: Option<&'a str>,
}

/// The families of one payload, in order of first appearance.
#[derive(Default)]
pub struct Catalog<'a> {
    families: Vec<FamilyMeta<'a>>,
    index: FxHashMap<&'a str, usize>,
    last: Option<usize>,
}

impl<'a> Catalog<'a> {
    pub fn families(&self) -> &[FamilyMeta<'a>] {
        &self.families
    }

    pub fn family(&self, i: usize) -> &FamilyMeta<'a> {
        &self.families[i]
    }

    /// Takes one entry: metadata updates the catalog (`None`); a sample comes
    /// back with its family's index and its role.
    pub fn entry(&mut self, entry: Entry<'a>) -> Option<(usize, Role, Sample<'a>)> {
        match entry {
            Entry::Sample(s) => {
                let (family, role) = self.resolve(&s);
                Some((family, role, s))
            }
            Entry::Type { name, kind } => {
                let i = self.declare(name);
                self.families[i].kind = kind;
                None
            }
            Entry::Help { name, text } => {
                let i = self.declare(name);
                self.families[i].help = Some(text);
                None
            }
            Entry::Unit { name, unit } => {
                let i = self.declare(name);
                self.families[i].unit = Some(unit);
                None
            }
        }
    }

    fn declare(&mut self, name: &'a str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.families.push(FamilyMeta {
            name,
            kind: Kind::Unknown,
            help: None,
            unit: None,
        });
        let i = self.families.len() - 1;
        self.index.insert(name, i);
        i
    }

    /// The family and role of a sample.
    pub fn resolve(&mut self, s: &Sample<'a>) -> (usize, Role) {
        // Samples of one family come together: try the previous family first.
        if let Some(i) = self.last
            && let Some(role) = self.role_in(i, s)
        {
            return (i, role);
        }
        let found = self
            .index
            .get(s.name)
            .copied()
            .and_then(|i| self.role_in(i, s).map(|r| (i, r)))
            .or_else(|| {
                SUFFIXES.iter().find_map(|suffix| {
                    let base = s.name.strip_suffix(suffix)?;
                    let i = *self.index.get(base)?;
                    self.role_in(i, s).map(|r| (i, r))
                })
            });
        let (i, role) = found.unwrap_or_else(|| (self.declare(s.name), Role::Value));
        self.last = Some(i);
        (i, role)
    }

    fn role_in(&self, i: usize, s: &Sample<'_>) -> Option<Role> {
        let f = &self.families[i];
        let suffix = s.name.strip_prefix(f.name)?;
        role_of(f.kind, suffix, s)
    }
}

const SUFFIXES: [&str; 8] = [
    "_bucket", "_count", "_sum", "_total", "_created", "_gsum", "_gcount", "_info",
];

/// The role of a sample named `family + suffix` in a family of `kind`.
fn role_of(kind: Kind, suffix: &str, s: &Sample<'_>) -> Option<Role> {
    use Kind as K;
    Some(match (kind, suffix) {
        (K::Histogram | K::GaugeHistogram, "_bucket") => Role::Bucket,
        (K::Histogram | K::Summary, "_sum") | (K::GaugeHistogram, "_gsum") => Role::Sum,
        (K::Histogram | K::Summary, "_count") | (K::GaugeHistogram, "_gcount") => Role::Count,
        (K::Histogram | K::Summary | K::Counter | K::GaugeHistogram, "_created") => Role::Created,
        (K::Summary, "") if s.labels.get("quantile").is_some() => Role::Quantile,
        (K::Counter, "_total") | (K::Info, "_info") => Role::Value,
        (K::Histogram | K::GaugeHistogram | K::Summary, _) => return None,
        (_, "") => Role::Value,
        _ => return None,
    })
}
