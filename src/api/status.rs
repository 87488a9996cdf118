//! `BenchmarkRun.status`: where the run is and what it measured.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::{Deserialize, Serialize};

/// Observed state of a run, written by the controller.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BenchmarkRunStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the run is: Pending, Queued, Discovering, Running, Collecting,
    /// Succeeded, Failed or Cancelled. For scripts, prefer the conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Standard conditions: `Accepted` (the spec is valid), `Queued` (waiting
    /// for the run it names to free the target), `Discovered` (the
    /// target resolved), `Running` (load generators active), `TelemetryDiscovered`
    /// (exporters and server endpoints found), `Succeeded`, `Failed`, `SLOMet`
    /// (every objective met), and `MeasurementValid` (the GPU energy covers every
    /// step's client window on every attributed GPU; when false, its reason —
    /// `Restarted`, `Gap`, `PartialGpus`, `StaleExporter`, `Overshoot`, `CounterReset`, `NoGpus`,
    /// `NoClientResults`, `NoTelemetry`, `TooManyGpus`, `SharedGpus` — says why the energy and efficiency
    /// figures are left out of the summary; `MissingWorkers`: some load
    /// generators' results did not arrive, and the client figures are left
    /// out too), and `Warnings` (health and
    /// measurement warnings: the count and the first few).
    /// `kubectl wait --for=condition=Succeeded br/NAME` waits for a successful run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// While `Queued`: the run's place in the queue for its target (1: next
    /// to start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<i32>,
    /// The addresses (`host:port`) the run sends to, as resolved when it was
    /// queued or launched: what other runs' queueing compares against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_endpoints: Vec<String>,
    /// Of `targetEndpoints`, those that are pods of the run's own namespace:
    /// the part of the target the run owns, which a run from another
    /// namespace never holds (see the README, Multi-tenancy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owned_target_endpoints: Vec<String>,
    /// Runs (`namespace/name`) that loaded the same target while this one was
    /// in progress (`concurrencyPolicy: Allow` on either side): this run's
    /// energy and efficiency figures are withheld.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_with: Vec<String>,
    /// When the load generators were launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run reached a final phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The load-generator Job of this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// The scrape targets found and how many answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    /// Live progress of the measured phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Headline results of the run (of the last step, for a sweep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// One summary per sweep step, in order (with `repeat`, every trial's
    /// steps, trial after trial).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepResult>,
    /// With `repeat`: per step of the sweep, each figure across the trials
    /// (mean, standard deviation, 95 % confidence interval, coefficient of
    /// variation). `summary` then holds the means of the last step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trials: Vec<TrialsResult>,
    /// The ConfigMap holding the full results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_config_map: Option<String>,
}

/// The lifecycle of a run.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Accepted; nothing launched yet.
    Pending,
    /// Waiting for earlier runs on the same target to end (see
    /// `spec.concurrencyPolicy` and the `Queued` condition).
    Queued,
    /// Looking up the target, the inference pods and the GPU exporters.
    Discovering,
    /// The load generators are running.
    Running,
    /// The load is done; results are being gathered and written.
    Collecting,
    /// Finished; results are in the status and the results ConfigMap.
    Succeeded,
    /// Ended by an error, an invalid spec or the timeout; see the `Failed` condition.
    Failed,
    /// Stopped by `spec.cancel`.
    Cancelled,
}

impl Phase {
    /// True for the phases a run never leaves.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Queued => "Queued",
            Phase::Discovering => "Discovering",
            Phase::Running => "Running",
            Phase::Collecting => "Collecting",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Cancelled => "Cancelled",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Scrape targets by kind.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Endpoints {
    /// GPU exporters.
    pub gpu: EndpointCounts,
    /// Inference servers.
    pub server: EndpointCounts,
}

/// How many endpoints of one kind were found, and how many answered.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct EndpointCounts {
    pub discovered: i32,
    pub reachable: i32,
}

/// Progress of the measured phase.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Requests completed so far, across workers.
    pub requests_done: i64,
    /// Requests planned, when the run is bounded by a count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_total: Option<i64>,
    /// Requests finished per second, over the last few seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_throughput: Option<f64>,
}

/// Headline results. Latencies in milliseconds, power in watts, energy in joules.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Completed requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_throughput: Option<f64>,
    /// Output tokens per second, all users together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_token_throughput: Option<f64>,
    /// Requests per second that met every per-request objective of `spec.slo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p99_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_p99_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99_ms: Option<f64>,
    /// A reasoning model's time to the first answer token (after its
    /// reasoning), median and p99; absent when the model did not reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfat_p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfat_p99_ms: Option<f64>,
    /// Of the output tokens, those spent reasoning; absent when none were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<i64>,
    /// Failed requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_count: Option<i64>,
    /// Failed requests over all requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// GPUs counted toward the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_count: Option<i32>,
    /// Mean total power of those GPUs over the measured phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_gpu_power_w: Option<f64>,
    /// Energy those GPUs used over the measured phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_gpu_energy_j: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_joule: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_per_output_token_j: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_gpu_util_pct: Option<f64>,
    /// Mean power of the same GPUs when idle, measured before the first
    /// step (with `telemetry.idleBaseline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_gpu_power_w: Option<f64>,
    /// Energy those GPUs used above their idle power over the measured
    /// phase: what the load cost (with `telemetry.idleBaseline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_above_idle_j: Option<f64>,
}

/// Results of one sweep step.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepResult {
    /// Position among the measured steps, from 0 (with `repeat`, the
    /// sweep's steps trial after trial).
    pub index: i32,
    /// The trial the step belongs to, from 0 (with `repeat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<i32>,
    /// The hottest of the step's GPUs at its first reading, °C: recorded for
    /// the first step of each trial (with `repeat`), to show the cool-down worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_temperature_c: Option<f64>,
    /// The step's concurrency, in `concurrency` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<i32>,
    /// The step's request rate, in `rate` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<f64>,
    pub summary: Summary,
    /// Whether this step met every `spec.slo` objective (absent without SLOs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_met: Option<bool>,
    /// The objectives this step missed, said plainly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slo_missed: Vec<String>,
}

/// One step of the sweep across a run's trials (`spec.repeat`).
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrialsResult {
    /// Position in the sweep, from 0.
    pub index: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<f64>,
    /// Trials with results for this step.
    pub trials: i32,
    /// Each summary figure (named as in `summary`) across the trials.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metrics: std::collections::BTreeMap<String, crate::stats::trials::Spread>,
    /// Figures some trial has and another lacks (withheld there, e.g. its
    /// energy coverage was incomplete): they have no mean, rather than a
    /// mean over part of the trials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<String>,
}

/// A step's load as users name it: "concurrency 8", "rate 20 req/s", else
/// "step N".
pub fn load_label(concurrency: Option<i32>, request_rate: Option<f64>, index: i32) -> String {
    match (concurrency, request_rate) {
        (_, Some(r)) => format!("rate {r} req/s"),
        (Some(c), None) => format!("concurrency {c}"),
        (None, None) => format!("step {index}"),
    }
}

impl StepResult {
    /// The step's load as users name it ([`load_label`]).
    pub fn load(&self) -> String {
        load_label(self.concurrency, self.request_rate, self.index)
    }
}

impl TrialsResult {
    /// The sweep step's load as users name it ([`load_label`]).
    pub fn load(&self) -> String {
        load_label(self.concurrency, self.request_rate, self.index)
    }
}
