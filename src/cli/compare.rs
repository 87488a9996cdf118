//! `kubectl benchrun compare A B [C…]`: runs side by side, metric by metric;
//! `kubectl benchrun compare A`: the steps of one sweep side by side.
//!
//! The first run is the baseline. Each step (matched by its place in the
//! sweep) shows, for every summary metric, each run's value, its change
//! against the baseline and a verdict by the metric's direction: better,
//! worse, or within the tolerance. A figure a run left out (not measured,
//! or withheld because its coverage was incomplete) is shown as such and
//! never compared: a gap is not a regression, and not an improvement.
//!
//! One run per side has no spread to test a difference against, so the
//! verdict is a plain threshold on the relative change, and every rendering
//! says so; repeated trials with a statistical test are not here yet.
//!
//! [`compare`] and the renderings are pure; `main` reads the runs' results.

use std::fmt::Write as _;

use serde::Serialize;

use crate::api::{SloMetric, StepResult, Summary};
use crate::results::ResultsDocument;

/// How a run's figure stands against the baseline's.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// The baseline's own figure.
    Baseline,
    Better,
    Worse,
    /// Within the tolerance either way.
    Same,
    /// Either side has no figure.
    Missing,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Baseline => "baseline",
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Same => "same",
            Verdict::Missing => "missing",
        }
    }
}

/// One run's figure for one metric.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Cell {
    pub value: Option<f64>,
    /// Relative change against the baseline (0.05: 5 % more).
    pub change: Option<f64>,
    pub verdict: Verdict,
}

/// One metric across the runs.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub metric: &'static str,
    pub higher_is_better: bool,
    pub cells: Vec<Cell>,
}

/// One step across the runs.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepRows {
    /// The baseline's step, e.g. "concurrency 8".
    pub step: String,
    pub rows: Vec<Row>,
}

/// Runs compared.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// `namespace/name`, the baseline first.
    pub runs: Vec<String>,
    /// The relative change past which a difference counts (0.05: 5 %).
    pub tolerance: f64,
    /// How differences were judged.
    pub test: &'static str,
    pub steps: Vec<StepRows>,
    pub notes: Vec<String>,
}

const THRESHOLD: &str = "threshold: one run per side, no spread to test a difference against";

impl Comparison {
    /// Whether any figure got worse past the tolerance.
    pub fn regressed(&self) -> bool {
        self.worse().next().is_some()
    }

    /// `(step, metric, run)` of every figure that got worse.
    pub fn worse(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.steps.iter().flat_map(move |s| {
            s.rows.iter().flat_map(move |r| {
                r.cells
                    .iter()
                    .zip(&self.runs)
                    .filter(|(c, _)| c.verdict == Verdict::Worse)
                    .map(move |(_, run)| (s.step.as_str(), r.metric, run.as_str()))
            })
        })
    }
}

/// The steps of a results document: its sweep's, else its one summary.
fn steps(doc: &ResultsDocument) -> Vec<StepResult> {
    if doc.steps.is_empty() {
        vec![StepResult {
            index: 0,
            concurrency: None,
            request_rate: None,
            summary: doc.summary.clone(),
            slo_met: None,
            slo_missed: Vec::new(),
        }]
    } else {
        doc.steps.clone()
    }
}

fn step_label(s: &StepResult) -> String {
    match (s.concurrency, s.request_rate) {
        (_, Some(r)) => format!("rate {r} req/s"),
        (Some(c), None) => format!("concurrency {c}"),
        (None, None) => format!("step {}", s.index),
    }
}

/// A figure against the baseline's.
fn judge(base: Option<f64>, value: Option<f64>, higher_is_better: bool, tolerance: f64) -> Cell {
    let (Some(b), Some(v)) = (base, value) else {
        return Cell {
            value,
            change: None,
            verdict: Verdict::Missing,
        };
    };
    let change = if b != 0.0 {
        Some((v - b) / b.abs())
    } else if v == 0.0 {
        Some(0.0)
    } else {
        None
    };
    let gained = match change {
        Some(c) if c.abs() <= tolerance => None,
        Some(c) => Some(c > 0.0),
        None => Some(v > b),
    };
    let verdict = match gained {
        None => Verdict::Same,
        Some(up) if up == higher_is_better => Verdict::Better,
        Some(_) => Verdict::Worse,
    };
    Cell {
        value,
        change,
        verdict,
    }
}

/// Whether a summary has `m` of its own: the first answer token only
/// where a model reasoned (elsewhere it is the first token, a row already).
fn shown(m: SloMetric, s: &Summary) -> bool {
    match m {
        SloMetric::TtfatP50Ms | SloMetric::TtfatP99Ms => s.ttfat_p50_ms.is_some(),
        _ => m.of(s).is_some(),
    }
}

/// Compares `runs` (name and results), the first being the baseline, step by
/// step, with `tolerance` the relative change that still counts as the same.
pub fn compare(runs: &[(String, ResultsDocument)], tolerance: f64) -> Comparison {
    let mut notes = Vec::new();
    let all: Vec<Vec<StepResult>> = runs.iter().map(|(_, d)| steps(d)).collect();
    let common = all.iter().map(Vec::len).min().unwrap_or(0);
    for ((name, _), s) in runs.iter().zip(&all) {
        if s.len() > common {
            notes.push(format!(
                "{name} has {} steps: only the first {common} are compared",
                s.len()
            ));
        }
    }
    for (name, doc) in runs {
        if doc.phase != crate::api::Phase::Succeeded {
            notes.push(format!(
                "{name} ended {} ({}): its figures cover what it measured",
                doc.phase, doc.reason
            ));
        }
    }
    let steps = (0..common)
        .map(|k| {
            let summaries: Vec<&Summary> = all.iter().map(|s| &s[k].summary).collect();
            let rows = SloMetric::ALL
                .iter()
                .filter(|m| summaries.iter().any(|s| shown(**m, s)))
                .map(|&m| {
                    let base = m.of(summaries[0]);
                    let cells = summaries
                        .iter()
                        .enumerate()
                        .map(|(i, s)| match i {
                            0 => Cell {
                                value: base,
                                change: None,
                                verdict: Verdict::Baseline,
                            },
                            _ => judge(base, m.of(s), m.higher_is_better(), tolerance),
                        })
                        .collect();
                    Row {
                        metric: m.name(),
                        higher_is_better: m.higher_is_better(),
                        cells,
                    }
                })
                .collect();
            StepRows {
                step: step_label(&all[0][k]),
                rows,
            }
        })
        .collect();
    Comparison {
        runs: runs.iter().map(|(n, _)| n.clone()).collect(),
        tolerance,
        test: THRESHOLD,
        steps,
        notes,
    }
}

/// The steps of one run (a sweep) side by side, the first step the
/// baseline: how each figure moves with the load.
pub fn compare_steps(name: &str, doc: &ResultsDocument, tolerance: f64) -> Comparison {
    let per_step: Vec<(String, ResultsDocument)> = steps(doc)
        .into_iter()
        .map(|s| {
            let mut one = doc.clone();
            let label = format!("{name} {}", step_label(&s));
            one.steps = vec![s];
            (label, one)
        })
        .collect();
    let mut c = compare(&per_step, tolerance);
    for s in &mut c.steps {
        s.step = format!("steps of {name}");
    }
    // The run's own phase, said once rather than per step.
    c.notes.clear();
    if doc.phase != crate::api::Phase::Succeeded {
        c.notes.push(format!(
            "{name} ended {} ({}): its figures cover what it measured",
            doc.phase, doc.reason
        ));
    }
    c
}

fn value(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v != 0.0 && v.abs() < 0.01 => format!("{v:.3e}"),
        Some(v) => format!("{v:.3}"),
    }
}

fn change(c: &Cell) -> String {
    match (c.verdict, c.change) {
        (Verdict::Baseline, _) => String::new(),
        (Verdict::Missing, _) => "(missing)".into(),
        (v, Some(ch)) => format!("({:+.1}% {})", ch * 100.0, v.as_str()),
        (v, None) => format!("({})", v.as_str()),
    }
}

fn header(c: &Comparison) -> String {
    format!(
        "baseline {}; tolerance {:.1}%; {}",
        c.runs.first().map(String::as_str).unwrap_or("-"),
        c.tolerance * 100.0,
        c.test
    )
}

/// Aligned columns for a terminal.
pub fn table(c: &Comparison) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", header(c));
    for s in &c.steps {
        let _ = writeln!(o, "\n{}", s.step);
        let mut lines: Vec<Vec<String>> = vec![
            std::iter::once("metric".to_string())
                .chain(c.runs.iter().cloned())
                .collect(),
        ];
        for r in &s.rows {
            let arrow = if r.higher_is_better { "↑" } else { "↓" };
            lines.push(
                std::iter::once(format!("{} {arrow}", r.metric))
                    .chain(
                        r.cells
                            .iter()
                            .map(|cell| format!("{} {}", value(cell.value), change(cell))),
                    )
                    .map(|t| t.trim_end().to_string())
                    .collect(),
            );
        }
        let widths: Vec<usize> = (0..=c.runs.len())
            .map(|i| {
                lines
                    .iter()
                    .map(|l| l.get(i).map_or(0, |t| t.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for l in &lines {
            let cells: Vec<String> = l
                .iter()
                .zip(&widths)
                .map(|(t, w)| format!("{t:<w$}"))
                .collect();
            let _ = writeln!(o, "  {}", cells.join("  ").trim_end());
        }
    }
    notes(&mut o, c);
    o
}

fn notes(o: &mut String, c: &Comparison) {
    for n in &c.notes {
        let _ = writeln!(o, "note: {n}");
    }
}

/// A Markdown table per step, for a pull request's comment.
pub fn markdown(c: &Comparison) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "_{}_", header(c));
    for s in &c.steps {
        let _ = writeln!(o, "\n**{}**\n", s.step);
        let _ = writeln!(o, "| metric | {} |", c.runs.join(" | "));
        let _ = writeln!(o, "|---|{}", "---:|".repeat(c.runs.len()));
        for r in &s.rows {
            let arrow = if r.higher_is_better { "↑" } else { "↓" };
            let cells: Vec<String> = r
                .cells
                .iter()
                .map(|cell| {
                    let shown = format!("{} {}", value(cell.value), change(cell));
                    let shown = shown.trim_end().to_string();
                    match cell.verdict {
                        Verdict::Worse => format!("**{shown}**"),
                        _ => shown,
                    }
                })
                .collect();
            let _ = writeln!(o, "| {} {arrow} | {} |", r.metric, cells.join(" | "));
        }
    }
    if !c.notes.is_empty() {
        let _ = writeln!(o);
        for n in &c.notes {
            let _ = writeln!(o, "- {n}");
        }
    }
    o
}

/// One line per step, metric and run.
pub fn csv(c: &Comparison) -> String {
    use crate::results::csv_opt as opt;
    let mut rows = Vec::new();
    for s in &c.steps {
        for r in &s.rows {
            for (cell, run) in r.cells.iter().zip(&c.runs) {
                rows.push(vec![
                    s.step.clone(),
                    r.metric.to_string(),
                    run.clone(),
                    opt(cell.value),
                    opt(cell.change),
                    cell.verdict.as_str().to_string(),
                ]);
            }
        }
    }
    crate::results::csv_write(
        &["step", "metric", "run", "value", "change", "verdict"],
        rows,
    )
}

#[cfg(test)]
mod tests;
