//! What `kubectl benchrun plot` draws, as data: each figure's series,
//! points, axes (with units) and step boundaries, made from runs' results
//! documents and time series. [`draw`] renders a figure as SVG or PNG.
//!
//! A figure shows only what the results publish: a sweep step's figure that
//! the status withholds (its coverage was incomplete) is not a point, the
//! client figures of a step whose load generators did not all report are not
//! a curve, and the GPUs over time are the GPUs the results count (those
//! attributed to the target), not every GPU the exporters served. What is
//! left out is said in [`Plots::notes`].

use std::collections::BTreeMap;

use crate::api::StepResult;
use crate::measure::timeseries::Record;
use crate::results::ResultsDocument;

pub mod draw;
#[cfg(test)]
mod tests;

/// One run to plot.
#[derive(Clone, Debug)]
pub struct Input {
    /// How the run is named in legends (`NAMESPACE/NAME`).
    pub name: String,
    pub doc: ResultsDocument,
    /// Its time series, when it kept one (`spec.results.timeseries`).
    pub timeseries: Option<Vec<Record>>,
}

/// The figures of some runs, and what they leave out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plots {
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

/// One chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// The file's name, without extension.
    pub file: String,
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    /// Vertical lines across the chart (step boundaries).
    pub markers: Vec<Marker>,
    /// Where the legend goes: the corner the curves leave free.
    pub legend: Corner,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corner {
    UpperLeft,
    UpperRight,
}

/// An axis: its label with the unit, and its range.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub label: String,
    pub min: f64,
    pub max: f64,
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Points joined by a line, each point marked.
    LinePoints,
    /// A line only (dense series over time).
    Line,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub style: Style,
    pub points: Vec<Point>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    /// Written beside the point (a sweep step's load).
    pub label: Option<String>,
    /// Another point of the series is better on both axes (drawn hollow).
    pub dominated: bool,
}

impl Point {
    fn at(x: f64, y: f64) -> Self {
        Point {
            x,
            y,
            label: None,
            dominated: false,
        }
    }

    /// A point written beside with `label`.
    fn labelled(x: f64, y: f64, label: &str) -> Self {
        Point {
            label: Some(label.to_string()),
            ..Point::at(x, y)
        }
    }
}

/// A run's points joined and marked, named `name`; `None` without points.
fn marked(name: String, points: Vec<Point>) -> Option<Series> {
    (!points.is_empty()).then_some(Series {
        name,
        style: Style::LinePoints,
        points,
    })
}

#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

/// One field of a distribution's summary.
type Field = fn(&crate::stats::Summary) -> f64;

/// The percentiles a latency curve goes through, with the summary's field
/// for each.
const PERCENTILES: [(f64, Field); 9] = [
    (1.0, |s| s.p1),
    (5.0, |s| s.p5),
    (10.0, |s| s.p10),
    (25.0, |s| s.p25),
    (50.0, |s| s.p50),
    (75.0, |s| s.p75),
    (90.0, |s| s.p90),
    (95.0, |s| s.p95),
    (99.0, |s| s.p99),
];

/// Every figure the runs give: the sweep plots (when some run has two load
/// steps or more), the latency percentile curves, and the GPUs and the
/// client over time (for runs that kept a time series).
pub fn figures(runs: &[Input]) -> Plots {
    let mut p = Plots::default();
    let names = Names::of(runs);
    sweeps(runs, &names, &mut p);
    percentiles(runs, &names, &mut p);
    over_time(runs, &names, &mut p);
    p
}

/// Series names: the load alone for one run, the run and the load for several.
struct Names {
    several: bool,
}

impl Names {
    fn of(runs: &[Input]) -> Self {
        Names {
            several: runs.len() > 1,
        }
    }

    fn name(&self, run: &str, what: &str) -> String {
        match (self.several, what.is_empty()) {
            (true, true) => run.to_string(),
            (true, false) => format!("{run} {what}"),
            (false, true) => run.to_string(),
            (false, false) => what.to_string(),
        }
    }
}

/// How a run's load is set: the sweep plots put it on an axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Concurrency,
    Rate,
}

impl Mode {
    fn axis(self) -> &'static str {
        match self {
            Mode::Concurrency => "concurrency (requests in flight)",
            Mode::Rate => "request rate (req/s)",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Mode::Concurrency => "concurrency",
            Mode::Rate => "rate",
        }
    }
}

/// One place of a sweep: its load and its published figures (the step's
/// summary, or with trials the trials' means), by their status names.
struct Place {
    mode: Option<Mode>,
    load: f64,
    short: String,
    long: String,
    figures: BTreeMap<String, f64>,
}

fn short_load(concurrency: Option<i32>, rate: Option<f64>, index: i32) -> String {
    match (concurrency, rate) {
        (_, Some(r)) => format!("{r}/s"),
        (Some(c), None) => format!("c={c}"),
        (None, None) => format!("#{index}"),
    }
}

fn place(
    concurrency: Option<i32>,
    rate: Option<f64>,
    index: i32,
    figures: BTreeMap<String, f64>,
) -> Place {
    let (mode, load) = match (concurrency, rate) {
        (_, Some(r)) => (Some(Mode::Rate), r),
        (Some(c), None) => (Some(Mode::Concurrency), f64::from(c)),
        (None, None) => (None, f64::from(index)),
    };
    Place {
        mode,
        load,
        short: short_load(concurrency, rate, index),
        long: crate::api::load_label(concurrency, rate, index),
        figures,
    }
}

/// The figures a step's summary publishes, by name (withheld ones absent).
fn published(s: &StepResult) -> BTreeMap<String, f64> {
    let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&s.summary) else {
        return BTreeMap::new();
    };
    m.into_iter()
        .filter_map(|(k, v)| Some((k, v.as_f64()?)))
        .collect()
}

/// A run's sweep: with trials, each step of the sweep with the trials'
/// means; else each step with its summary.
fn places(doc: &ResultsDocument) -> Vec<Place> {
    if !doc.trials.is_empty() {
        return doc
            .trials
            .iter()
            .map(|t| {
                let means = t.metrics.iter().map(|(k, s)| (k.clone(), s.mean)).collect();
                place(t.concurrency, t.request_rate, t.index, means)
            })
            .collect();
    }
    doc.steps
        .iter()
        .map(|s| place(s.concurrency, s.request_rate, s.index, published(s)))
        .collect()
}

/// An axis from 0 (or below, for negative data) past the largest value by
/// `headroom` of the range; never empty.
fn axis(label: &str, values: impl IntoIterator<Item = f64>, headroom: f64) -> Axis {
    let (mut min, mut max) = (0.0f64, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        min = min.min(v);
        max = max.max(v);
    }
    if !max.is_finite() || max <= min {
        max = min + 1.0;
    }
    let pad = (max - min) * headroom;
    Axis {
        label: label.to_string(),
        min: if min < 0.0 {
            min - (max - min) * 0.05
        } else {
            0.0
        },
        max: max + pad,
    }
}

/// A figure with axes fitted to its series.
fn figure(
    file: &str,
    title: &str,
    x: &str,
    y: &str,
    series: Vec<Series>,
    markers: Vec<Marker>,
) -> Figure {
    let xs = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.x))
        .chain(markers.iter().map(|m| m.x));
    let x = axis(x, xs, 0.05);
    // A quarter above the data: room for the legend.
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.y));
    let y = axis(y, ys, 0.25);
    // Curves against load or percentile rise to the right; over time the
    // steps' markers are labelled at the bottom.
    let legend = if markers.is_empty() {
        Corner::UpperLeft
    } else {
        Corner::UpperRight
    };
    Figure {
        file: file.to_string(),
        title: title.to_string(),
        x,
        y,
        series,
        markers,
        legend,
    }
}

/// Marks the points another point of the series beats on both axes:
/// lower `x` (latency) and higher `y` (throughput) are better.
fn mark_dominated(points: &mut [Point]) {
    let all: Vec<(f64, f64)> = points.iter().map(|p| (p.x, p.y)).collect();
    for p in points.iter_mut() {
        p.dominated = all
            .iter()
            .any(|&(x, y)| x <= p.x && y >= p.y && (x < p.x || y > p.y));
    }
}

/// The sweep plots: throughput against TTFT p99 and ITL p99 (the Pareto
/// curves, points labelled with their load), tokens per joule and goodput
/// against the load.
fn sweeps(runs: &[Input], names: &Names, p: &mut Plots) {
    let swept: Vec<(&Input, Vec<Place>)> = runs.iter().map(|r| (r, places(&r.doc))).collect();
    if swept.iter().all(|(_, places)| places.len() < 2) {
        p.notes.push(
            "no sweep plots: they need a run with two load steps or more (spec.load.sweep)".into(),
        );
        return;
    }
    let mode = swept
        .iter()
        .flat_map(|(_, places)| places.iter().filter_map(|pl| pl.mode))
        .next();
    // (x figure, x label, file, title); y is the output token throughput.
    let pareto = [
        (
            "ttftP99Ms",
            "TTFT p99 (ms)",
            "throughput-vs-ttft-p99",
            "Output token throughput against TTFT p99 (hollow: dominated)",
        ),
        (
            "itlP99Ms",
            "ITL p99 (ms)",
            "throughput-vs-itl-p99",
            "Output token throughput against ITL p99 (hollow: dominated)",
        ),
    ];
    for (x_key, x_label, file, title) in pareto {
        let mut series = Vec::new();
        for (run, places) in &swept {
            let mut points = Vec::new();
            for pl in places {
                match (pl.figures.get(x_key), pl.figures.get("outputTokenThroughput")) {
                    (Some(&x), Some(&y)) => points.push(Point::labelled(x, y, &pl.short)),
                    _ => p.notes.push(format!(
                        "{file}: {} at {} is left out: its {x_key} or outputTokenThroughput is withheld",
                        run.name, pl.long
                    )),
                }
            }
            mark_dominated(&mut points);
            series.extend(marked(names.name(&run.name, ""), points));
        }
        if !series.is_empty() {
            p.figures.push(figure(
                file,
                title,
                x_label,
                "output token throughput (tokens/s)",
                series,
                vec![],
            ));
        }
    }
    let Some(mode) = mode else {
        p.notes.push(
            "no plots against the load: the steps name neither a concurrency nor a rate".into(),
        );
        return;
    };
    let against_load = [
        (
            "outputTokensPerJoule",
            "output tokens per joule (tokens/J)",
            "tokens-per-joule-vs-load",
            "Output tokens per joule against the load",
        ),
        (
            "goodput",
            "goodput (req/s meeting every objective)",
            "goodput-vs-load",
            "Goodput against the load",
        ),
    ];
    for (key, y_label, file, title) in against_load {
        let mut series = Vec::new();
        for (run, places) in &swept {
            let mut points = Vec::new();
            for pl in places {
                if pl.mode != Some(mode) {
                    p.notes.push(format!(
                        "{file}: {} at {} is left out: its load is not a {}",
                        run.name,
                        pl.long,
                        mode.noun()
                    ));
                    continue;
                }
                match pl.figures.get(key) {
                    Some(&y) => points.push(Point::labelled(pl.load, y, &pl.short)),
                    None if key == "goodput" => {}
                    None => p.notes.push(format!(
                        "{file}: {} at {} is left out: its {key} is withheld",
                        run.name, pl.long
                    )),
                }
            }
            series.extend(marked(names.name(&run.name, ""), points));
        }
        if series.is_empty() {
            if key == "goodput" {
                p.notes.push(
                    "no goodput plot: goodput needs per-request objectives (spec.slo)".into(),
                );
            }
            continue;
        }
        p.figures
            .push(figure(file, title, mode.axis(), y_label, series, vec![]));
    }
}

/// The latency percentile curves: TTFT, ITL and request latency, a curve
/// per run and step.
fn percentiles(runs: &[Input], names: &Names, p: &mut Plots) {
    type Pick = fn(&crate::loadgen::engine::StepResult) -> &crate::stats::Summary;
    let metrics: [(&str, &str, &str, Pick); 3] = [
        (
            "ttft-percentiles",
            "Time to first token by percentile",
            "TTFT (ms)",
            |c| &c.ttft_s,
        ),
        (
            "itl-percentiles",
            "Inter-token latency by percentile",
            "ITL (ms)",
            |c| &c.itl_s,
        ),
        (
            "latency-percentiles",
            "Request latency by percentile",
            "request latency (ms)",
            |c| &c.latency_s,
        ),
    ];
    for (file, title, y_label, pick) in metrics {
        let mut series = Vec::new();
        for run in runs {
            let several_steps = run.doc.details.len() > 1;
            for d in &run.doc.details {
                let step = run.doc.steps.iter().find(|s| s.index == d.index as i32);
                let load = match (step, &d.client) {
                    (Some(s), _) => s.load(),
                    (None, Some(c)) => crate::api::load_label(
                        c.concurrency.map(|c| c as i32),
                        c.rate,
                        d.index as i32,
                    ),
                    (None, None) => format!("step {}", d.index),
                };
                let load = match step.and_then(|s| s.trial) {
                    Some(t) => format!("trial {} {load}", t + 1),
                    None => load,
                };
                let Some(client) = &d.client else {
                    p.notes
                        .push(format!("{file}: {} {load} has no client results", run.name));
                    continue;
                };
                if let Some(gap) = d.client_coverage.and_then(|c| c.gap()) {
                    p.notes.push(format!(
                        "{file}: {} {load} is left out: {}",
                        run.name, gap.message
                    ));
                    continue;
                }
                let s = pick(client);
                if s.count == 0 {
                    continue;
                }
                let points = PERCENTILES
                    .iter()
                    .map(|(q, f)| Point::at(*q, f(s) * 1e3))
                    .collect();
                let what = if several_steps { load } else { String::new() };
                series.extend(marked(names.name(&run.name, &what), points));
            }
        }
        if !series.is_empty() {
            p.figures.push(figure(
                file,
                title,
                "percentile (%)",
                y_label,
                series,
                vec![],
            ));
        }
    }
}

/// The first instant a time series records, unix ms.
fn series_start(records: &[Record]) -> Option<u64> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Scrape { t_unix_ms, .. } | Record::Progress { t_unix_ms, .. } => {
                Some(*t_unix_ms)
            }
            Record::Header { .. } => None,
        })
        .min()
}

/// Seconds from `start` to `ms`.
fn since(start: u64, ms: u64) -> f64 {
    (ms as f64 - start as f64) / 1e3
}

/// Each GPU's power and utilization and the client's output tokens per
/// second over time, from the runs' time series, with their steps' starts
/// and the last step's end marked.
fn over_time(runs: &[Input], names: &Names, p: &mut Plots) {
    let mut power = Vec::new();
    let mut util = Vec::new();
    let mut tokens = Vec::new();
    let mut markers = Vec::new();
    for run in runs {
        let Some(records) = &run.timeseries else {
            p.notes.push(format!(
                "{}: no plots over time: the run kept no time series (spec.results.timeseries: true)",
                run.name
            ));
            continue;
        };
        let Some(start) = series_start(records) else {
            p.notes
                .push(format!("{}: its time series holds no records", run.name));
            continue;
        };
        // The GPUs the results count, by the name the series gives them.
        let counted: std::collections::BTreeSet<&str> = run
            .doc
            .details
            .iter()
            .flat_map(|d| &d.gpus)
            .map(|g| g.identity.uuid.as_deref().unwrap_or(&g.key))
            .collect();
        let mut by_gpu: BTreeMap<&str, (Vec<Point>, Vec<Point>)> = BTreeMap::new();
        let mut left_out = std::collections::BTreeSet::new();
        let mut client = Vec::new();
        for r in records {
            match r {
                Record::Scrape {
                    t_unix_ms, gpus, ..
                } => {
                    let x = since(start, *t_unix_ms);
                    for g in gpus {
                        if !counted.contains(g.gpu.as_str()) {
                            left_out.insert(g.gpu.as_str());
                            continue;
                        }
                        let e = by_gpu.entry(g.gpu.as_str()).or_default();
                        if let Some(w) = g.power_w {
                            e.0.push(Point::at(x, w));
                        }
                        if let Some(u) = g.utilization_pct {
                            e.1.push(Point::at(x, u));
                        }
                    }
                }
                Record::Progress {
                    t_unix_ms,
                    dt,
                    output_tokens_per_s,
                    ..
                } if *dt > 0.0 => {
                    client.push(Point::at(since(start, *t_unix_ms), *output_tokens_per_s))
                }
                _ => {}
            }
        }
        if !left_out.is_empty() {
            p.notes.push(format!(
                "{}: {} GPU(s) the exporters served but the results do not count (not the target's) are not plotted",
                run.name,
                left_out.len()
            ));
        }
        for (gpu, (w, u)) in by_gpu {
            let name = names.name(&run.name, &short_gpu(gpu));
            let line = |points| Series {
                name: name.clone(),
                style: Style::Line,
                points,
            };
            if !w.is_empty() {
                power.push(line(w));
            }
            if !u.is_empty() {
                util.push(line(u));
            }
        }
        if !client.is_empty() {
            tokens.push(Series {
                name: run.name.clone(),
                style: Style::Line,
                points: client,
            });
        }
        // Each step's start, and the end of the last.
        let several = names.several;
        for d in &run.doc.details {
            let Some(w) = d.window else { continue };
            let step = run.doc.steps.iter().find(|s| s.index == d.index as i32);
            let load = step.map_or_else(
                || format!("step {}", d.index),
                |s| short_load(s.concurrency, s.request_rate, s.index),
            );
            let label = if several {
                format!("{} {load}", run.name)
            } else {
                load
            };
            markers.push(Marker {
                x: since(start, w.start_unix_ms),
                label,
            });
        }
        if let Some(w) = run
            .doc
            .details
            .iter()
            .filter_map(|d| d.window)
            .max_by_key(|w| w.end_unix_ms)
        {
            markers.push(Marker {
                x: since(start, w.end_unix_ms),
                label: if several {
                    format!("{} end", run.name)
                } else {
                    "end".into()
                },
            });
        }
    }
    let time = "time since the run's first record (s)";
    let charts = [
        (
            "gpu-power",
            "Power of each GPU over time",
            "power (W)",
            power,
        ),
        (
            "gpu-utilization",
            "Utilization of each GPU over time",
            "GPU utilization (%)",
            util,
        ),
        (
            "client-tokens-per-second",
            "Output tokens per second at the client over time",
            "output tokens per second (tokens/s)",
            tokens,
        ),
    ];
    for (file, title, y, series) in charts {
        if !series.is_empty() {
            p.figures
                .push(figure(file, title, time, y, series, markers.clone()));
        }
    }
}

/// A GPU's name short enough for a legend: a UUID's first 12 characters.
fn short_gpu(id: &str) -> String {
    if id.starts_with("GPU-") && id.chars().count() > 12 {
        id.chars().take(12).collect()
    } else {
        id.to_string()
    }
}

/// Reads a time series file (`timeseries.jsonl`): its records, or the line
/// that could not be read.
pub fn read_timeseries(text: &str) -> Result<Vec<Record>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("timeseries line {}: {e}", i + 1))
        })
        .collect()
}
