//! The result model of a run and its renderings (status summary, ConfigMap files).
//!
//! Pure: no Kubernetes client. The controller fills a [`ResultsDocument`] and
//! writes what [`ResultsDocument::files`] returns into the results ConfigMap.

pub mod compare;
pub mod coverage;
mod csv;
pub mod pack;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use self::coverage::{Coverage, Gap, GapReason, WorkerCoverage};
pub(crate) use self::csv::{opt as csv_opt, write as csv_write};
pub use self::pack::{ConfigMapData, MAX_CONFIGMAP_BYTES, pack, read, unpack};
use crate::api::{Phase, StepResult, Summary};
use crate::loadgen::engine::StepResult as ClientStep;
use crate::telemetry::report::GpuResult;
use crate::telemetry::server::FamilyResult;
use crate::telemetry::{ClientTotals, Efficiency};

/// Version of the `summary.json` layout; bumped on any incompatible change.
pub const RESULTS_SCHEMA_VERSION: u32 = 1;

/// Everything a run produced, as `summary.json` holds it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResultsDocument {
    pub schema_version: u32,
    pub run: RunRef,
    pub phase: Phase,
    /// Why the run ended as it did (the final condition's reason).
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    pub summary: Summary,
    /// How the requests reached the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepResult>,
    /// With trials: each step of the sweep across them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trials: Vec<crate::api::TrialsResult>,
    /// Everything measured, step by step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<StepDetail>,
    /// Every endpoint scraped, with how the scrapes went.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointReport>,
    /// What the numbers do not cover, said plainly (gaps, restarts, files left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The run against its baseline (`spec.baseline`), figure by figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<compare::Gate>,
}

/// How a run's requests reached its target.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// To `target.url` as given (a server, a Service's name, a gateway).
    Url,
    /// To a Service's ready pods by address (`serviceRef.routing: endpoints`).
    Endpoints,
    /// Through a Service's DNS name and virtual IP (`serviceRef.routing: service`).
    Service,
}

impl Routing {
    /// The routing a target asks for.
    pub fn of(target: &crate::api::Target) -> Routing {
        match &target.service_ref {
            None => Routing::Url,
            Some(s) => match s.routing {
                crate::api::Routing::Endpoints => Routing::Endpoints,
                crate::api::Routing::Service => Routing::Service,
            },
        }
    }

    /// How the routing reads in a condition's message.
    pub fn describe(self) -> &'static str {
        match self {
            Routing::Url => "to the URL as given",
            Routing::Endpoints => "to the Service's ready pods by address",
            Routing::Service => "through the Service's name and virtual IP",
        }
    }
}

/// Identity of the run the results belong to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// The measured phase of a step, wall clock (the boundary scrapes' instants).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    pub start_unix_ms: u64,
    pub end_unix_ms: u64,
}

/// One step: the load generators' merged result, the GPUs in scope, the servers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StepDetail {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// All workers together; `None` when no worker result was collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientStep>,
    /// Whose results `client` merges: when some worker's is missing, the
    /// client figures stay here and are left out of the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_coverage: Option<WorkerCoverage>,
    /// The GPU attribution applied (`targetPods`, `targetNodes`, `all`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gpu_scope: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuResult>,
    /// Energy figures over the attributed GPUs; the per-token figures are
    /// left empty unless `coverage` is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efficiency: Option<Efficiency>,
    /// What the energy covers: the window, the GPUs, the gaps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server: Vec<FamilyResult>,
    /// What the step's telemetry set aside at its bounds (present only when
    /// something was): those series are missing from `gpus` and `server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refused>,
}

/// What of a step's telemetry was let go for the run's budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dropped {
    /// Its server metrics (none kept for the rest of the run).
    #[serde(default)]
    pub server: bool,
    /// Its GPU telemetry (none kept for the rest of the run).
    #[serde(default)]
    pub gpu: bool,
    /// The budget that was passed, bytes (0 when nothing was let go).
    #[serde(default)]
    pub budget_bytes: u64,
    /// The budget passed was the controller's pool, shared by every run
    /// (this run held more than its share), not the run's own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pool: bool,
}

impl Dropped {
    pub fn any(self) -> bool {
        self.server || self.gpu
    }

    /// What was let go, and why, as a sentence.
    pub fn reason(self) -> String {
        let what = match (self.server, self.gpu) {
            (true, true) => "server metrics and GPU telemetry were",
            (true, false) => "server metrics were",
            (false, true) => "GPU telemetry was",
            (false, false) => return String::new(),
        };
        let mib = self.budget_bytes >> 20;
        let why = if self.pool {
            format!(
                "the runs' telemetry together passed the controller's limit of {mib} MiB (--max-telemetry-mib) while this run held more than its share"
            )
        } else {
            format!("the run's telemetry passed its budget of {mib} MiB (--max-run-telemetry-mib)")
        };
        format!(
            "{what} let go: {why}, and none of it is kept for the rest of the run (docs/telemetry.md, \"A run's budget\")"
        )
    }
}

/// Samples a step's telemetry refused at its bounds (docs/telemetry.md,
/// "Bounds"), so that what is missing is said rather than silent.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Refused {
    /// GPU readings of GPUs past the most a step keeps (those GPUs are not measured).
    pub gpu_readings_of_gpus_past_bound: u64,
    /// GPU readings of fields past the most one GPU keeps.
    pub gpu_readings_of_fields_past_bound: u64,
    /// Server samples of series past the bounds (families, series per
    /// family and per step, identity length).
    pub server_samples: u64,
    /// What was let go for the run's telemetry budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_budget: Option<Dropped>,
}

impl Refused {
    /// The refusals, if there were any.
    pub fn any(self) -> Option<Self> {
        (self != Refused::default()).then_some(self)
    }
}

/// How one scraped endpoint fared.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EndpointReport {
    /// `gpu`, `server` or `worker`.
    pub kind: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    pub scrapes: u32,
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The longest stretch without a good scrape, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_gap_s: Option<f64>,
    /// Answering at the end of the run.
    pub reachable: bool,
}

/// The most failed requests, as a fraction of a step's, for the load to be
/// the one asked for: `load.maxErrorRate`'s default.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.01;

/// What the run as a whole says of its steps' energy, marked on each: a
/// step measured while the runs `shared_with` loaded the same target (see
/// [`Coverage::with_shared`]), or one whose requests failed past
/// `max_error_rate` ([`coverage::failed_requests_gap`]). Either leaves the
/// efficiency figures out, in the status and in the step's own efficiency,
/// and the results say why beside what was measured.
pub fn mark_run(steps: &mut [StepDetail], shared_with: &[String], max_error_rate: f64) {
    for step in steps {
        let failed = step.client.as_ref().and_then(|c| {
            coverage::failed_requests_gap(
                c.requests,
                &c.errors,
                c.error_samples.first().map(String::as_str),
                max_error_rate,
            )
        });
        if let Some(c) = step.coverage.take() {
            // Each once: a document read back is marked already.
            let has = |r: GapReason| c.gaps.iter().any(|g| g.reason == r);
            let (failed, shared) = (
                failed.filter(|_| !has(GapReason::FailedRequests)),
                if has(GapReason::SharedGpus) {
                    &[][..]
                } else {
                    shared_with
                },
            );
            let c = c.with_failed_requests(failed).with_shared(shared);
            if !c.complete
                && let Some(e) = step.efficiency.as_mut()
            {
                e.withhold();
            }
            step.coverage = Some(c);
        }
    }
}

impl StepDetail {
    /// The status summary of this step.
    /// The hottest GPU's first temperature reading in the step, °C.
    pub fn start_temperature_c(&self) -> Option<f64> {
        self.gpus
            .iter()
            .filter_map(|g| g.metrics.iter().find(|m| m.key == "gpu_temperature")?.first)
            .reduce(f64::max)
    }

    /// The step's energy stands (every output shows it): its coverage is
    /// complete, or only failed requests are against it (the GPUs spent
    /// that energy; the efficiency is withheld in the step's own figures).
    pub fn energy_covered(&self) -> bool {
        self.coverage.as_ref().is_none_or(|c| {
            c.complete
                || (!c.gaps.is_empty()
                    && c.gaps.iter().all(|g| g.reason == GapReason::FailedRequests))
        })
    }

    /// Why the step's energy is withheld, when it is: its first gap.
    pub fn energy_withheld(&self) -> Option<&str> {
        (!self.energy_covered())
            .then(|| {
                self.coverage
                    .as_ref()?
                    .gaps
                    .first()
                    .map(|g| g.message.as_str())
            })
            .flatten()
    }

    /// The step's GPUs as outputs show them: when the step's energy is
    /// withheld, without their energy (the energy column, the energy
    /// counter's increase and rate) — every other reading stays.
    pub fn shown_gpus(&self) -> std::borrow::Cow<'_, [crate::telemetry::report::GpuResult]> {
        if self.energy_covered() {
            return std::borrow::Cow::Borrowed(&self.gpus);
        }
        let gpus = self
            .gpus
            .iter()
            .map(|g| {
                let mut g = g.clone();
                g.energy = None;
                g.metrics
                    .retain(|m| m.key != crate::telemetry::report::ENERGY_KEY);
                g
            })
            .collect();
        std::borrow::Cow::Owned(gpus)
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        if let Some(c) = &self.client
            && self.client_complete()
        {
            let ms = |v: f64| (v * 1e3 * 1000.0).round() / 1000.0;
            let errors: u64 = c.errors.values().sum();
            s.request_throughput = Some(round3(c.requests_per_s));
            s.output_token_throughput = Some(round3(c.output_tokens_per_s));
            s.goodput = c.goodput_per_s.map(round3);
            if c.ttft_s.count > 0 {
                s.ttft_p50_ms = Some(ms(c.ttft_s.p50));
                s.ttft_p99_ms = Some(ms(c.ttft_s.p99));
            }
            if c.itl_s.count > 0 {
                s.itl_p50_ms = Some(ms(c.itl_s.p50));
                s.itl_p99_ms = Some(ms(c.itl_s.p99));
            }
            if c.latency_s.count > 0 {
                s.latency_p99_ms = Some(ms(c.latency_s.p99));
            }
            if c.reasoning_tokens > 0 {
                s.reasoning_tokens = Some(c.reasoning_tokens as i64);
                let t = &c.time_to_first_answer_token_s;
                if t.count > 0 {
                    s.ttfat_p50_ms = Some(ms(t.p50));
                    s.ttfat_p99_ms = Some(ms(t.p99));
                }
            }
            s.error_count = Some(errors as i64);
            if c.requests > 0 {
                s.error_rate = Some(round3(errors as f64 / c.requests as f64));
            }
        }
        if !self.gpus.is_empty() {
            s.gpu_count = Some(self.gpus.len() as i32);
            let utils: Vec<f64> = self
                .gpus
                .iter()
                .filter_map(|g| g.metrics.iter().find(|m| m.key == "gpu_utilization"))
                .filter_map(|m| m.stats.as_ref().map(|st| st.mean))
                .collect();
            if !utils.is_empty() {
                s.avg_gpu_util_pct = Some(round3(utils.iter().sum::<f64>() / utils.len() as f64));
            }
        }
        // Energy and efficiency reach the status only when the energy covers
        // the whole step; the ConfigMap keeps what was measured, with its
        // coverage. Failed requests leave the energy right (the GPUs spent
        // it) and the efficiency out (withheld in the step's efficiency).
        if let Some(e) = &self.efficiency
            && e.gpus_with_energy > 0
            && self.energy_covered()
        {
            s.total_gpu_power_w = Some(round3(e.total_gpu_power_w));
            s.total_gpu_energy_j = Some(round3(e.total_gpu_energy_j));
            s.output_tokens_per_joule = e.output_tokens_per_joule.map(round3);
            s.energy_per_output_token_j =
                e.energy_per_output_token_j.map(|v| (v * 1e6).round() / 1e6);
            s.idle_gpu_power_w = e.idle_power_w.map(round3);
            s.energy_above_idle_j = e.energy_above_idle_j.map(round3);
        }
        s
    }

    /// Every worker's result is in `client` (documents without the
    /// bookkeeping predate partial collection and had every result).
    pub fn client_complete(&self) -> bool {
        self.client_coverage.is_none_or(|w| w.complete())
    }

    /// The client totals the efficiency figures divide by.
    pub fn client_totals(&self) -> Option<ClientTotals> {
        let c = self.client.as_ref()?;
        Some(ClientTotals {
            output_tokens: c.output_tokens,
            requests: c.successes,
            duration_s: c.duration_s,
            concurrency: c.concurrency,
            mean_latency_s: (c.latency_s.count > 0).then_some(c.latency_s.mean),
            goodput_per_s: c.goodput_per_s,
        })
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl ResultsDocument {
    /// The ConfigMap files: `summary.json`, `client_metrics.csv`,
    /// `gpu_telemetry.csv` and `server_metrics.csv`.
    pub fn files(&self) -> Result<BTreeMap<String, String>, serde_json::Error> {
        let mut files = BTreeMap::from([(
            "summary.json".to_string(),
            serde_json::to_string_pretty(self)?,
        )]);
        if self.details.iter().any(|d| d.client.is_some()) {
            files.insert("client_metrics.csv".into(), csv::client(&self.details));
        }
        if self.details.iter().any(|d| !d.gpus.is_empty()) {
            files.insert("gpu_telemetry.csv".into(), csv::gpus(&self.details));
        }
        if self.details.iter().any(|d| !d.server.is_empty()) {
            files.insert("server_metrics.csv".into(), csv::server(&self.details));
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests;
pub mod trials;
