//! Finished runs' results as Prometheus gauges on the controller's
//! `/metrics`, read from the controller's cache of the runs at each scrape:
//! a run's series appear when it succeeds and go with it (its TTL, or a
//! delete), and only the latest [`RunMetrics::max_runs`] runs are shown.
//!
//! Cardinality is bounded: labels are the run's namespace and name, the
//! step's index (at most 64 a run), a quantile or a phase — never a pod's
//! name and never free text. A figure the run withheld (incomplete
//! coverage) has no series.

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::context::RunStore;
use crate::api::{BenchmarkRun, Phase, Summary};

/// The runs to export, once the controller's caches exist.
#[derive(Clone)]
pub struct RunMetrics {
    pub stores: Arc<OnceLock<Vec<RunStore>>>,
    /// How many finished runs are exported at most (the latest by completion).
    pub max_runs: usize,
}

impl std::fmt::Debug for RunMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunMetrics")
            .field("max_runs", &self.max_runs)
            .finish_non_exhaustive()
    }
}

/// One gauge family: its name (after the `benchrun_` prefix), help, and
/// the value of a step's summary (with the quantile label, if any).
struct Family {
    name: &'static str,
    help: &'static str,
    quantile: Option<&'static str>,
    of: fn(&Summary) -> Option<f64>,
}

const fn family(
    name: &'static str,
    help: &'static str,
    quantile: Option<&'static str>,
    of: fn(&Summary) -> Option<f64>,
) -> Family {
    Family {
        name,
        help,
        quantile,
        of,
    }
}

fn seconds(ms: Option<f64>) -> Option<f64> {
    ms.map(|v| v / 1e3)
}

/// Every per-step figure, in exposition order (families with quantiles
/// appear once per quantile, adjacent).
const FAMILIES: [Family; 13] = [
    family(
        "run_ttft_seconds",
        "Time to first token of a finished run's step",
        Some("0.5"),
        |s| seconds(s.ttft_p50_ms),
    ),
    family(
        "run_ttft_seconds",
        "Time to first token of a finished run's step",
        Some("0.99"),
        |s| seconds(s.ttft_p99_ms),
    ),
    family(
        "run_itl_seconds",
        "Inter-token latency of a finished run's step",
        Some("0.5"),
        |s| seconds(s.itl_p50_ms),
    ),
    family(
        "run_itl_seconds",
        "Inter-token latency of a finished run's step",
        Some("0.99"),
        |s| seconds(s.itl_p99_ms),
    ),
    family(
        "run_latency_seconds",
        "Request latency of a finished run's step",
        Some("0.99"),
        |s| seconds(s.latency_p99_ms),
    ),
    family(
        "run_request_throughput",
        "Completed requests per second of a finished run's step",
        None,
        |s| s.request_throughput,
    ),
    family(
        "run_output_token_throughput",
        "Output tokens per second of a finished run's step",
        None,
        |s| s.output_token_throughput,
    ),
    family(
        "run_goodput",
        "Requests per second that met every objective, of a finished run's step",
        None,
        |s| s.goodput,
    ),
    family(
        "run_error_rate",
        "Failed requests over all requests of a finished run's step",
        None,
        |s| s.error_rate,
    ),
    family(
        "run_output_tokens_per_joule",
        "Output tokens per joule of the target's GPUs, of a finished run's step",
        None,
        |s| s.output_tokens_per_joule,
    ),
    family(
        "run_energy_per_output_token_joules",
        "GPU energy per output token of a finished run's step",
        None,
        |s| s.energy_per_output_token_j,
    ),
    family(
        "run_gpu_energy_joules",
        "Energy the target's GPUs used over a finished run's step",
        None,
        |s| s.total_gpu_energy_j,
    ),
    family(
        "run_gpu_power_watts",
        "Mean power of the target's GPUs over a finished run's step",
        None,
        |s| s.total_gpu_power_w,
    ),
];

/// A finished run as exported: its namespace, name, phase, completion
/// (unix s), steps (index, summary) and its `Regressed` status.
struct Exported {
    namespace: String,
    name: String,
    phase: Phase,
    completed: f64,
    steps: Vec<(String, Summary)>,
    regressed: Option<bool>,
}

fn exported(run: &BenchmarkRun) -> Option<Exported> {
    let status = run.status.as_ref()?;
    let phase = status.phase.filter(|p| p.is_final())?;
    let completed = status.completion_time.as_ref()?.0.as_millisecond() as f64 / 1e3;
    // Figures only for a run that succeeded; every finished run has its end.
    let steps = match (phase, status.steps.is_empty(), &status.summary) {
        (Phase::Succeeded, false, _) => status
            .steps
            .iter()
            .map(|s| (s.index.to_string(), s.summary.clone()))
            .collect(),
        (Phase::Succeeded, true, Some(s)) => vec![("0".to_string(), s.clone())],
        _ => Vec::new(),
    };
    let regressed = status
        .conditions
        .iter()
        .find(|c| c.type_ == super::conditions::REGRESSED)
        .and_then(|c| match c.status.as_str() {
            "True" => Some(true),
            "False" => Some(false),
            _ => None,
        });
    Some(Exported {
        namespace: run.metadata.namespace.clone().unwrap_or_default(),
        name: run.metadata.name.clone().unwrap_or_default(),
        phase,
        completed,
        steps,
        regressed,
    })
}

/// The latest `max` finished runs of `runs`, newest first.
fn latest(runs: impl Iterator<Item = BenchmarkRun>, max: usize) -> Vec<Exported> {
    let mut all: Vec<Exported> = runs.filter_map(|r| exported(&r)).collect();
    all.sort_by(|a, b| b.completed.total_cmp(&a.completed));
    all.truncate(max);
    all
}

type Labels = Vec<(&'static str, String)>;

fn run_labels(r: &Exported) -> Labels {
    vec![("namespace", r.namespace.clone()), ("run", r.name.clone())]
}

/// Encodes the gauges of `runs`.
fn encode(runs: &[Exported], mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let mut i = 0;
    while i < FAMILIES.len() {
        let name = FAMILIES[i].name;
        let parts: Vec<&Family> = FAMILIES[i..]
            .iter()
            .take_while(|f| f.name == name)
            .collect();
        i += parts.len();
        let mut series = Vec::new();
        for r in runs {
            for (step, summary) in &r.steps {
                for f in &parts {
                    let Some(v) = (f.of)(summary).filter(|v| v.is_finite()) else {
                        continue;
                    };
                    let mut labels = run_labels(r);
                    labels.push(("step", step.clone()));
                    if let Some(q) = f.quantile {
                        labels.push(("quantile", q.to_string()));
                    }
                    series.push((labels, v));
                }
            }
        }
        gauge(&mut encoder, name, parts[0].help, series)?;
    }
    let ends = runs
        .iter()
        .map(|r| {
            let mut labels = run_labels(r);
            labels.push(("phase", r.phase.to_string()));
            (labels, r.completed)
        })
        .collect();
    gauge(
        &mut encoder,
        "run_completion_timestamp_seconds",
        "When a finished run ended (unix seconds), with its phase",
        ends,
    )?;
    let gates = runs
        .iter()
        .filter_map(|r| Some((run_labels(r), if r.regressed? { 1.0 } else { 0.0 })))
        .collect();
    gauge(
        &mut encoder,
        "run_regressed",
        "1 when a finished run regressed against its baseline, 0 when it did not (absent: no baseline, or not judged)",
        gates,
    )
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: Vec<(Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    if series.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in &series {
        ConstGauge::new(*v).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for RunMetrics {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let runs = self
            .stores
            .get()
            .into_iter()
            .flatten()
            .flat_map(|s| s.state())
            .filter_map(|guard| guard.0.as_ref().ok().cloned());
        encode(&latest(runs, self.max_runs), encoder)
    }
}

#[cfg(test)]
mod tests;
