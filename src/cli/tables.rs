//! `kubectl benchrun results NAME -o wide`: the console tables of the
//! reference documents (aiperf's GPU telemetry and server metrics guides),
//! from a results document. Pure.
//!
//! A header says how many GPU and server endpoints answered; a sweep gets one
//! table with a row per step; then, per step, one table per GPU titled with
//! its endpoint, index and model (a row per metric: avg, min, max, p99, p90,
//! p50, std, with its unit) and one per server endpoint titled with the pod
//! it scraped. Tables fit the width given: on a narrow terminal the columns
//! least read (std, p90, p99, then min and max) are left out, and a line
//! under the table says which.

use std::fmt::Write as _;

use crate::results::{ResultsDocument, StepDetail};
use crate::scrape::Kind;
use crate::stats::Summary;
use crate::telemetry::report::{GpuResult, MetricResult};
use crate::telemetry::server::FamilyResult;

/// Statistics columns, in the references' order, and the order in which
/// they give way to a narrow terminal (last first).
const STATS: [&str; 7] = ["avg", "min", "max", "p99", "p90", "p50", "std"];
const DROP_STATS: &[&str] = &["std", "p90", "p99", "min", "max"];
const DROP_STEPS: &[&str] = &["ITL p99 ms", "TTFT p99 ms", "out tok/s", "load"];
/// The narrowest the first column gets (names are cut with "…" past it).
const MIN_NAME: usize = 24;

/// A table: a title, a header and right-aligned cells (the first column
/// left), and the columns that give way to a narrow terminal, first first.
struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    drop: &'static [&'static str],
}

impl Table {
    fn widths(&self, keep: &[bool]) -> Vec<usize> {
        (0..self.header.len())
            .filter(|&i| keep[i])
            .map(|i| {
                std::iter::once(&self.header[i])
                    .chain(self.rows.iter().map(|r| &r[i]))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Printed width of columns this wide.
    fn span(widths: &[usize]) -> usize {
        widths.iter().sum::<usize>() + 3 * widths.len() + 1
    }

    /// Writes the table within `width` columns, leaving out the columns
    /// that give way, then cutting the names, as it must.
    fn write(&self, o: &mut String, width: usize) {
        let mut keep = vec![true; self.header.len()];
        let mut left_out = Vec::new();
        for name in self.drop {
            if Self::span(&self.widths(&keep)) <= width {
                break;
            }
            if let Some(i) = self.header.iter().position(|h| h == name) {
                keep[i] = false;
                left_out.push(*name);
            }
        }
        let mut widths = self.widths(&keep);
        let over = Self::span(&widths).saturating_sub(width);
        if over > 0 {
            widths[0] = widths[0].saturating_sub(over).max(MIN_NAME.min(widths[0]));
        }
        let name_width = widths[0];
        let line = |l: char, m: char, r: char| {
            let inner: Vec<String> = widths.iter().map(|w| "─".repeat(w + 2)).collect();
            format!("{l}{}{r}", inner.join(&m.to_string()))
        };
        let cells = |row: &[String]| {
            let shown: Vec<String> = row
                .iter()
                .enumerate()
                .filter(|(i, _)| keep[*i])
                .zip(&widths)
                .map(|((i, c), w)| {
                    if i == 0 {
                        let c = cut(c, name_width);
                        format!(" {c:<w$} ")
                    } else {
                        format!(" {c:>w$} ")
                    }
                })
                .collect();
            format!("│{}│", shown.join("│"))
        };
        let _ = writeln!(o, "\n{}", self.title);
        let _ = writeln!(o, "{}", line('┌', '┬', '┐'));
        let _ = writeln!(o, "{}", cells(&self.header));
        let _ = writeln!(o, "{}", line('├', '┼', '┤'));
        for r in &self.rows {
            let _ = writeln!(o, "{}", cells(r));
        }
        let _ = writeln!(o, "{}", line('└', '┴', '┘'));
        if !left_out.is_empty() {
            let _ = writeln!(
                o,
                "({} left out to fit {width} columns)",
                left_out.join(", ")
            );
        }
    }
}

/// `s` in at most `n` characters, cut with "…".
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n.saturating_sub(1)).chain(['…']).collect()
    }
}

/// How a unit is shown: seconds as milliseconds, ratios as percent, byte
/// rates in MB/s, so that two decimals say something.
fn shown_unit(unit: &str) -> (&str, f64) {
    match unit {
        "seconds" | "s" => ("ms", 1e3),
        "ratio" => ("%", 100.0),
        "B/s" => ("MB/s", 1e-6),
        u => (u, 1.0),
    }
}

/// A count: whole numbers without decimals.
fn count(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let s = num(v);
        s.trim_end_matches(".00").to_string()
    } else {
        num(v)
    }
}

/// A number as the references print it: two decimals, thousands grouped.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = format!("{:.2}", v.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, "00"));
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    let sign = if v < 0.0 && s != "0.00" { "-" } else { "" };
    format!("{sign}{grouped}.{frac}")
}

fn stats_cells(s: &Summary, scale: f64) -> Vec<String> {
    [s.mean, s.min, s.max, s.p99, s.p90, s.p50, s.std]
        .map(|v| num(v * scale))
        .to_vec()
}

/// A counter's two rows: its increase and its rate, in the avg column.
fn counter_rows(name: &str, unit: &str, total: f64, rate: Option<f64>) -> Vec<Vec<String>> {
    let (u, scale) = shown_unit(unit);
    let row = |what: String, v: f64| {
        let mut c = dashes();
        c[0] = num(v * scale);
        std::iter::once(what).chain(c).collect::<Vec<_>>()
    };
    let mut rows = vec![row(label(&format!("{name} increase"), u), total)];
    if let Some(r) = rate {
        let per_s = match u {
            "" | "count" => "/s".to_string(),
            u => format!("{u}/s"),
        };
        rows.push(row(format!("{name} rate ({per_s})"), r));
    }
    rows
}

fn header(first: &str) -> Vec<String> {
    std::iter::once(first)
        .chain(STATS)
        .map(String::from)
        .collect()
}

fn dashes() -> Vec<String> {
    vec!["-".to_string(); STATS.len()]
}

fn label(display: &str, unit: &str) -> String {
    match unit {
        "" | "count" => display.to_string(),
        u => format!("{display} ({u})"),
    }
}

/// A GPU metric's rows: a gauge's statistics, a counter's increase and rate.
fn gpu_rows(m: &MetricResult) -> Vec<Vec<String>> {
    match (&m.stats, m.delta) {
        (Some(s), _) => {
            let (u, scale) = shown_unit(&m.unit);
            vec![
                std::iter::once(label(&m.display, u))
                    .chain(stats_cells(s, scale))
                    .collect(),
            ]
        }
        (None, Some(d)) => counter_rows(&m.display, &m.unit, d, m.rate),
        (None, None) => Vec::new(),
    }
}

fn gpu_table(g: &GpuResult) -> Table {
    let title = format!(
        "{} | GPU {} | {}",
        host(&g.endpoint),
        g.identity.index.as_deref().unwrap_or("?"),
        g.identity.model.as_deref().unwrap_or("unknown model")
    );
    Table {
        title,
        header: header("Metric"),
        rows: g.metrics.iter().flat_map(gpu_rows).collect(),
        drop: DROP_STATS,
    }
}

/// A server family's rows on `endpoint`: a gauge's statistics per series
/// (summed labels shown), a counter's increase and rate, a histogram's
/// count, mean and quantiles.
fn family_rows(f: &FamilyResult, endpoint: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for s in f.series.iter().filter(|s| s.endpoint == endpoint) {
        let labels: Vec<String> = s
            .labels
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "model_name" | "engine"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let name = if labels.is_empty() {
            f.name.clone()
        } else {
            format!("{}{{{}}}", f.name, labels.join(","))
        };
        let (u, scale) = shown_unit(&f.unit);
        let at = |v: Option<f64>| v.map_or("-".into(), |v| num(v * scale));
        match (f.kind, &s.stats, &s.histogram) {
            (Kind::Histogram, _, Some(h)) => {
                let mut c = dashes();
                c[0] = at(h.mean);
                c[3] = at(h.p99);
                c[4] = at(h.p90);
                c[5] = at(h.p50);
                let name = format!("{} [{} obs]", label(&name, u), count(h.count));
                rows.push(std::iter::once(name).chain(c).collect());
            }
            (_, Some(st), _) => rows.push(
                std::iter::once(label(&name, u))
                    .chain(stats_cells(st, scale))
                    .collect(),
            ),
            _ => {
                if let Some(t) = s.total {
                    rows.extend(counter_rows(&name, &f.unit, t, s.rate));
                }
            }
        }
    }
    rows
}

/// `host:port` of a URL, as it is shown.
fn host(url: &str) -> String {
    crate::net::host_port(url).unwrap_or_else(|| url.to_string())
}

fn sweep_table(doc: &ResultsDocument) -> Option<Table> {
    let steps: Vec<&StepDetail> = doc.details.iter().filter(|d| d.client.is_some()).collect();
    if steps.is_empty() {
        return None;
    }
    let header = [
        "step",
        "load",
        "requests",
        "req/s",
        "out tok/s",
        "TTFT p50 ms",
        "TTFT p99 ms",
        "ITL p50 ms",
        "ITL p99 ms",
        "tokens/J",
    ]
    .map(String::from)
    .to_vec();
    let rows = steps
        .iter()
        .filter_map(|d| {
            let c = d.client.as_ref()?;
            let load = match (c.concurrency, c.rate) {
                (_, Some(r)) => format!("{r} req/s"),
                (Some(n), None) => format!("{n} streams"),
                (None, None) => "-".into(),
            };
            let per_joule = d
                .efficiency
                .as_ref()
                .and_then(|e| e.output_tokens_per_joule)
                .filter(|_| d.energy_covered())
                .map_or("withheld".into(), num);
            // A step some load generators' results are missing from: its
            // client figures describe part of the load, and are withheld.
            let client = |v: f64| {
                if d.client_complete() {
                    num(v)
                } else {
                    "withheld".into()
                }
            };
            Some(vec![
                d.index.to_string(),
                load,
                count(c.successes as f64),
                client(c.requests_per_s),
                client(c.output_tokens_per_s),
                client(c.ttft_s.p50 * 1e3),
                client(c.ttft_s.p99 * 1e3),
                client(c.itl_s.p50 * 1e3),
                client(c.itl_s.p99 * 1e3),
                per_joule,
            ])
        })
        .collect();
    Some(Table {
        title: "Steps".into(),
        header,
        rows,
        drop: DROP_STEPS,
    })
}

/// The reachability header: `N/M <what> endpoints reachable` and one line
/// per endpoint.
fn reachable(o: &mut String, doc: &ResultsDocument, kind: &str, what: &str) {
    let eps: Vec<_> = doc.endpoints.iter().filter(|e| e.kind == kind).collect();
    let up = eps.iter().filter(|e| e.reachable).count();
    let _ = writeln!(o, "{up}/{} {what} endpoints reachable", eps.len());
    for e in eps {
        let _ = writeln!(
            o,
            "  • {} {}{}",
            host(&e.url),
            if e.reachable { "✔" } else { "✘" },
            e.pod
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        );
    }
}

/// The tables, `width` columns wide at most where they can be.
pub fn render(doc: &ResultsDocument, width: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "run {}/{}: {} ({})",
        doc.run.namespace, doc.run.name, doc.phase, doc.reason
    );
    reachable(&mut o, doc, "gpu", "GPU");
    reachable(&mut o, doc, "server", "server");
    if let Some(t) = sweep_table(doc) {
        t.write(&mut o, width);
    }
    let several = doc.details.len() > 1;
    for d in &doc.details {
        if several {
            let _ = writeln!(o, "\n== step {}", d.index);
        }
        for g in d.shown_gpus().iter() {
            gpu_table(g).write(&mut o, width);
        }
        let mut endpoints: Vec<&str> = d
            .server
            .iter()
            .flat_map(|f| f.series.iter().map(|s| s.endpoint.as_str()))
            .collect();
        endpoints.sort_unstable();
        endpoints.dedup();
        for ep in endpoints {
            let pod = doc
                .endpoints
                .iter()
                .find(|e| e.kind == "server" && host(&e.url) == host(ep))
                .and_then(|e| e.pod.clone())
                .unwrap_or_else(|| "-".into());
            let rows: Vec<Vec<String>> = d.server.iter().flat_map(|f| family_rows(f, ep)).collect();
            Table {
                title: format!("{} | {pod}", host(ep)),
                header: header("Metric"),
                rows,
                drop: DROP_STATS,
            }
            .write(&mut o, width);
        }
    }
    o
}

#[cfg(test)]
mod tests;
