//! Runs side by side, metric by metric (`kubectl benchrun compare A B [C…]`),
//! the steps of one sweep side by side (`kubectl benchrun compare A`), and
//! the gate of a run against its baseline (`spec.baseline`, [`gate`]).
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
//! says so. The gate of runs with trials (`spec.repeat`) on both sides
//! tests each difference with Welch's t-test on the trials' spreads: a
//! change past its tolerance counts only when it is significant.
//!
//! Pure: the plugin and the controller read the results documents; the
//! renderings are the plugin's (`crate::cli::compare`).

use serde::{Deserialize, Serialize};

use crate::api::{SloMetric, StepResult, Summary, TrialsResult};
use crate::results::ResultsDocument;
use crate::stats::trials::{Spread, welch};

/// How a run's figure stands against the baseline's.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
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
    pub fn as_str(self) -> &'static str {
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
    /// With trials on both sides: the p-value of Welch's t-test.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
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

    /// Some figure of a run beside the baseline was judged (better, worse
    /// or the same): not every one withheld or missing on a side.
    pub fn judged_any(&self) -> bool {
        self.steps.iter().flat_map(|s| &s.rows).any(|r| {
            r.cells
                .iter()
                .skip(1)
                .any(|c| matches!(c.verdict, Verdict::Better | Verdict::Worse | Verdict::Same))
        })
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
        // One step: its load is the client's, where the details have it.
        let client = doc.details.first().and_then(|d| d.client.as_ref());
        vec![StepResult {
            index: 0,
            concurrency: client.and_then(|c| c.concurrency).map(|c| c as i32),
            request_rate: client.and_then(|c| c.rate),
            summary: doc.summary.clone(),
            ..Default::default()
        }]
    } else {
        doc.steps.clone()
    }
}

/// A figure against the baseline's.
fn judge(base: Option<f64>, value: Option<f64>, higher_is_better: bool, tolerance: f64) -> Cell {
    let (Some(b), Some(v)) = (base, value) else {
        return Cell {
            value,
            change: None,
            verdict: Verdict::Missing,
            p: None,
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
        p: None,
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
    let all: Vec<Vec<(StepResult, Option<&TrialsResult>)>> =
        runs.iter().map(|(_, d)| gated_steps(d)).collect();
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
            let at: Vec<(&Summary, Option<&TrialsResult>)> =
                all.iter().map(|s| (&s[k].0.summary, s[k].1)).collect();
            let rows = SloMetric::ALL
                .iter()
                .filter(|m| at.iter().any(|(s, _)| shown(**m, s)))
                .map(|&m| {
                    let cells = at
                        .iter()
                        .enumerate()
                        .map(|(i, &side)| match i {
                            0 => Cell {
                                value: m.of(at[0].0),
                                change: None,
                                verdict: Verdict::Baseline,
                                p: None,
                            },
                            _ => judge_tested(m, at[0], side, tolerance),
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
                step: all[0][k].0.load(),
                rows,
            }
        })
        .collect::<Vec<StepRows>>();
    let cells = steps
        .iter()
        .flat_map(|s| &s.rows)
        .flat_map(|r| r.cells.iter().skip(1));
    let one_side = runs.iter().any(|(_, d)| d.trials.is_empty())
        && runs.iter().any(|(_, d)| !d.trials.is_empty());
    Comparison {
        runs: runs.iter().map(|(n, _)| n.clone()).collect(),
        tolerance,
        test: test_of(cells, one_side),
        steps,
        notes,
    }
}

/// How the differences of `cells` were judged.
fn test_of<'a>(cells: impl Iterator<Item = &'a Cell>, one_side: bool) -> &'static str {
    let judged = cells.filter(|c| c.verdict != Verdict::Missing);
    let (tested, untested) = judged.fold((0, 0), |(t, u), c| match c.p {
        Some(_) => (t + 1, u),
        None => (t, u + 1),
    });
    match (tested, untested) {
        (t, 0) if t > 0 => WELCH,
        (0, _) if one_side => THRESHOLD_ONE_SIDE,
        (0, _) => THRESHOLD,
        _ => WELCH_OR_THRESHOLD,
    }
}

/// Metric `m` of `value` against the `base`'s (each a summary and, with
/// trials, their spreads): with trials on both sides, a change past the
/// tolerance counts only when Welch's t-test finds it significant.
fn judge_tested(
    m: SloMetric,
    base: (&Summary, Option<&TrialsResult>),
    value: (&Summary, Option<&TrialsResult>),
    tolerance: f64,
) -> Cell {
    let mut cell = judge(m.of(base.0), m.of(value.0), m.higher_is_better(), tolerance);
    let test = base
        .1
        .zip(value.1)
        .and_then(|(b, v)| Some(welch(spread(b, m)?, spread(v, m)?)));
    if let Some(w) = test
        && matches!(cell.verdict, Verdict::Worse | Verdict::Better)
        && !w.significant()
    {
        cell.verdict = Verdict::Same;
    }
    cell.p = test.map(|w| w.p);
    cell
}

/// The steps of one run (a sweep) side by side, the first step the
/// baseline: how each figure moves with the load.
pub fn compare_steps(name: &str, doc: &ResultsDocument, tolerance: f64) -> Comparison {
    let per_step: Vec<(String, ResultsDocument)> = gated_steps(doc)
        .into_iter()
        .map(|(s, trials)| {
            let mut one = doc.clone();
            let label = format!("{name} {}", s.load());
            one.trials = trials.into_iter().cloned().collect();
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

/// The default tolerance of a gate whose `tolerances` name no metric.
pub const DEFAULT_MAX_REGRESSION: f64 = 0.05;

/// One gated metric of one step against the baseline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GateRow {
    pub step: String,
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Relative change against the baseline (0.05: 5 % more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<f64>,
    /// The largest change for the worse that passes (0.05: 5 %).
    pub max_regression: f64,
    pub verdict: Verdict,
    /// With trials on both sides: Welch's t-test of the difference (a
    /// change past the tolerance counts only when `p` < 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
}

/// A run judged against its baseline (`spec.baseline`): the `Regressed`
/// condition and the results document's `baseline`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    /// What was compared with, e.g. `run team-a/vllm-0-9`.
    pub baseline: String,
    /// How differences were judged.
    pub test: String,
    pub rows: Vec<GateRow>,
    /// Metrics (with their step, for a sweep) that got worse past their tolerance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regressed: Vec<String>,
    /// Why some gated figure could not be judged (withheld on either side,
    /// steps of another load): the gate cannot say the run did not regress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
}

impl Gate {
    /// The `Regressed` condition: `Some(true)` regressed, `Some(false)`
    /// within every tolerance, `None` unknown (`incomplete`); with its
    /// reason and message.
    pub fn condition(&self) -> (Option<bool>, &'static str, String) {
        let against = format!("against {} ({})", self.baseline, self.test);
        if !self.regressed.is_empty() {
            return (
                Some(true),
                "Regressed",
                format!("{} {against}", self.regressed.join(", ")),
            );
        }
        if !self.incomplete.is_empty() {
            return (
                None,
                "Incomplete",
                format!(
                    "nothing got worse past its tolerance, but not every gated figure could be judged {against}: {}",
                    self.incomplete.join("; ")
                ),
            );
        }
        let judged = self
            .rows
            .iter()
            .filter(|r| r.verdict != Verdict::Missing)
            .count();
        // Nothing judged (every figure withheld, or one trial a side with
        // no spread to judge): not a pass.
        if judged == 0 {
            return (
                None,
                "Incomplete",
                format!(
                    "no gated figure could be judged {against}: the figures were withheld or not measured on one side"
                ),
            );
        }
        (
            Some(false),
            "WithinTolerance",
            format!("{judged} figures within their tolerance {against}"),
        )
    }
}

/// Judges `run` against `baseline` (named `baseline_name`, e.g. `run
/// ns/name`), step by step, on the metrics `tolerances` name (none named:
/// every metric the baseline has, by [`DEFAULT_MAX_REGRESSION`]).
///
/// A gated figure the baseline has and the run withheld, a metric named
/// that the baseline lacks, a step of another load, a baseline that did
/// not succeed: the gate is incomplete rather than passed.
pub fn gate(
    baseline_name: &str,
    baseline: &ResultsDocument,
    run: &ResultsDocument,
    tolerances: &[crate::api::Tolerance],
) -> Gate {
    let mut incomplete = Vec::new();
    if baseline.phase != crate::api::Phase::Succeeded {
        incomplete.push(format!(
            "the baseline ended {} ({}), not Succeeded",
            baseline.phase, baseline.reason
        ));
    }
    let gated: Vec<(SloMetric, f64, bool)> = if tolerances.is_empty() {
        SloMetric::ALL
            .iter()
            .map(|&m| (m, DEFAULT_MAX_REGRESSION, false))
            .collect()
    } else {
        tolerances
            .iter()
            .map(|t| {
                (
                    t.metric,
                    t.fraction().unwrap_or(DEFAULT_MAX_REGRESSION),
                    true,
                )
            })
            .collect()
    };
    let (theirs, ours) = (gated_steps(baseline), gated_steps(run));
    if theirs.len() != ours.len() {
        incomplete.push(format!(
            "the baseline has {} steps and this run {}",
            theirs.len(),
            ours.len()
        ));
    }
    let several = ours.len() > 1;
    let mut cells = Vec::new();
    let mut rows = Vec::new();
    let mut regressed = Vec::new();
    for ((b, b_trials), (r, r_trials)) in theirs.iter().zip(&ours) {
        let step = r.load();
        // A load not recorded (an older document) is not held against it.
        let known = |s: &StepResult| s.concurrency.is_some() || s.request_rate.is_some();
        if known(b)
            && known(r)
            && (b.concurrency, b.request_rate) != (r.concurrency, r.request_rate)
        {
            incomplete.push(format!(
                "step {}: the baseline ran {} and this run {}",
                r.index,
                b.load(),
                step
            ));
            continue;
        }
        let at = if several {
            format!("{step}: ")
        } else {
            String::new()
        };
        for &(m, max, named) in &gated {
            let base = m.of(&b.summary);
            if base.is_none() && !named {
                // Not measured in the baseline, and not asked for by name.
                continue;
            }
            if matches!(m, SloMetric::TtfatP50Ms | SloMetric::TtfatP99Ms)
                && !named
                && !shown(m, &b.summary)
            {
                continue;
            }
            let cell = judge_tested(m, (&b.summary, *b_trials), (&r.summary, *r_trials), max);
            match (cell.verdict, base) {
                (Verdict::Worse, _) => regressed.push(format!(
                    "{at}{} {} (max {}{})",
                    m.name(),
                    cell.change
                        .map_or("worse".into(), |c| format!("{:+.1}%", c * 100.0)),
                    pct(max),
                    cell.p.map(|p| format!(", p={p:.3}")).unwrap_or_default()
                )),
                (Verdict::Missing, None) => incomplete.push(format!(
                    "{at}{}: the baseline has no figure",
                    m.name()
                )),
                (Verdict::Missing, Some(_)) => incomplete.push(format!(
                    "{at}{}: this run has no figure (not measured, or withheld: see MeasurementValid)",
                    m.name()
                )),
                _ => {}
            }
            rows.push(GateRow {
                step: step.clone(),
                metric: m.name().into(),
                baseline: base,
                value: cell.value,
                change: cell.change,
                max_regression: max,
                verdict: cell.verdict,
                p: cell.p,
            });
            cells.push(cell);
        }
    }
    let one_side = baseline.trials.is_empty() != run.trials.is_empty();
    let test = test_of(cells.iter(), one_side);
    Gate {
        baseline: baseline_name.into(),
        test: test.into(),
        rows,
        regressed,
        incomplete,
    }
}

const WELCH: &str = "Welch's t-test on the trials of both runs: a change counts when it is significant (p < 0.05) and past its tolerance";
const WELCH_OR_THRESHOLD: &str =
    "Welch's t-test where both runs have trials of a figure, else a threshold";
const THRESHOLD_ONE_SIDE: &str =
    "threshold: only one side has trials, so no test of the difference was possible";

/// The steps a gate compares: with trials, the sweep's steps, each figure
/// the mean over the trials, with the trials' spreads; else the run's steps.
fn gated_steps(doc: &ResultsDocument) -> Vec<(StepResult, Option<&TrialsResult>)> {
    if doc.trials.is_empty() {
        return steps(doc).into_iter().map(|s| (s, None)).collect();
    }
    doc.trials
        .iter()
        .map(|t| {
            let means: serde_json::Map<String, serde_json::Value> = t
                .metrics
                .iter()
                .map(|(k, s)| (k.clone(), serde_json::Value::from(s.mean)))
                .collect();
            let step = StepResult {
                index: t.index,
                concurrency: t.concurrency,
                request_rate: t.request_rate,
                summary: serde_json::from_value(serde_json::Value::Object(means))
                    .unwrap_or_default(),
                ..Default::default()
            };
            (step, Some(t))
        })
        .collect()
}

/// A metric's spread across trials (a model that does not reason has its
/// first token as its first answer token).
fn spread(t: &TrialsResult, m: SloMetric) -> Option<&Spread> {
    let fallback = match m {
        SloMetric::TtfatP50Ms => Some(SloMetric::TtftP50Ms),
        SloMetric::TtfatP99Ms => Some(SloMetric::TtftP99Ms),
        _ => None,
    };
    t.metrics
        .get(m.name())
        .or_else(|| t.metrics.get(fallback?.name()))
}

fn pct(f: f64) -> String {
    format!("{}%", (f * 1000.0).round() / 10.0)
}

#[cfg(test)]
mod tests;
