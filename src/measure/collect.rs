//! What a session gathers per step, and how it becomes the run's results:
//! GPU attribution by scope, efficiency, the merged client result. Pure.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::GpuScope;
use crate::contract::WorkerResult;
use crate::loadgen::engine::{StepResult as ClientStep, StepStats};
use crate::results::coverage::{GpuSpan, coverage};
use crate::results::{Coverage, EndpointReport, StepDetail, Window, WorkerCoverage};
use crate::scrape::Format;
use crate::telemetry::efficiency::{IdleBaseline, efficiency};
use crate::telemetry::gpu::PodRef;
use crate::telemetry::report::{EnergySource, GpuResult};
use crate::telemetry::{Filter, GpuTelemetry, ServerMetrics};

use crate::results::Dropped;

/// The telemetry of one step's measured phase.
pub struct StepTelemetry {
    pub gpu: GpuTelemetry,
    pub server: ServerMetrics,
    pub window: Window,
    /// Session times of the opening and the latest scrape (the samples' `t`).
    pub opened_t: f64,
    pub closed_t: f64,
    /// Opened by a controller that took the run up mid-run.
    pub resumed: bool,
    /// Stretches without scrapes while a new controller took the run over
    /// from a checkpoint: (the last scrape before, the first after), session seconds.
    pub interruptions: Vec<(f64, f64)>,
    /// What was let go for the run's telemetry budget (and is not kept
    /// from here on).
    pub dropped: Dropped,
}

impl StepTelemetry {
    pub fn new(filter: Filter, start_unix_ms: u64, t: f64, resumed: bool) -> Self {
        Self {
            gpu: GpuTelemetry::default(),
            server: ServerMetrics::new(filter),
            window: Window {
                start_unix_ms,
                end_unix_ms: start_unix_ms,
            },
            opened_t: t,
            closed_t: t,
            resumed,
            interruptions: Vec::new(),
            dropped: Dropped::default(),
        }
    }

    /// The bytes of what the step keeps, as a checkpoint encodes it.
    pub fn encoded_bytes(&self) -> usize {
        self.gpu.encoded_bytes() + self.server.encoded_bytes()
    }

    /// Lets go of what `off` names, and keeps none of it from here on.
    pub fn let_go(&mut self, off: Dropped) {
        if off.server && !self.dropped.server {
            self.server.clear();
        }
        if off.gpu && !self.dropped.gpu {
            self.gpu = GpuTelemetry::default();
        }
        self.dropped = off;
    }

    /// Seconds without scrapes while the run was taken over.
    pub fn restart_gap_s(&self) -> f64 {
        self.interruptions
            .iter()
            .map(|(a, b)| (b - a).max(0.0))
            .sum()
    }

    /// The coverage of `gpus` (attributed, of this step) for `client`.
    pub fn coverage(&self, gpus: &[GpuResult], client: Option<&ClientStep>) -> Coverage {
        let spans = gpus
            .iter()
            .map(|g| {
                let seen = self.gpu.gpus.iter().find(|s| s.key == g.key);
                let span = seen.and_then(|s| s.energy_span());
                let counter = g
                    .energy
                    .as_ref()
                    .is_some_and(|e| e.source == EnergySource::Counter);
                GpuSpan {
                    refreshes: seen.filter(|_| counter).map(|s| s.refreshes()),
                    resets: seen.map_or(0, |s| s.energy_resets()),
                    name: g.identity.uuid.clone().unwrap_or_else(|| g.key.clone()),
                    has_energy: g.energy.is_some(),
                    spans_window: span
                        .is_some_and(|(a, b)| a <= self.opened_t && b >= self.closed_t),
                    counter,
                    // A refresh period shorter than the scrapes' spacing
                    // cannot be known from them (two close samples either
                    // side of one refresh read as a fast exporter): the
                    // spacing bounds it from below. A takeover's time
                    // without scrapes is no part of that spacing.
                    update_period_s: g.update_period_s.map(|p| {
                        let spacing = seen.and_then(|s| s.scrape_spacing_s(&self.interruptions));
                        p.max(spacing.unwrap_or(0.0))
                    }),
                }
            })
            .collect::<Vec<_>>();
        let client = client.map(|c| Window {
            start_unix_ms: c.started_unix_ms,
            end_unix_ms: c.ended_unix_ms,
        });
        let late_close_s = client.map_or(0.0, |c| {
            self.window.end_unix_ms.saturating_sub(c.end_unix_ms) as f64 / 1e3
        });
        coverage(self.window, client, self.resumed, &spans).with_restart_gap(
            self.restart_gap_s(),
            late_close_s,
            &spans,
        )
    }

    /// Takes one scrape of `url`. The series keep the endpoint as results
    /// may show it ([`crate::net::redact_url`]): credentials written into a
    /// telemetry URL never reach the results.
    pub fn ingest(&mut self, kind: Kind, url: &str, t: f64, body: &[u8], format: Format) {
        let shown = crate::net::redact_url(url);
        match kind {
            Kind::Gpu if self.dropped.gpu => {}
            Kind::Server if self.dropped.server => {}
            Kind::Gpu => {
                self.gpu.ingest(&shown, t, body, format);
            }
            Kind::Server => {
                self.server.ingest(&shown, t, body, format);
            }
        }
    }
}

/// What an endpoint serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Gpu,
    Server,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gpu => "gpu",
            Kind::Server => "server",
        }
    }
}

/// What a run knows of pods: its inference pods and the namespaces it may
/// read, as its latest discovery found them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pods {
    /// The inference pods, as `namespace/name`.
    pub inference: BTreeSet<String>,
    /// The namespaces the run may read (its own among them).
    pub readable: BTreeSet<String>,
}

impl Pods {
    /// The GPUs with only the pods the run may know named: a pod in a
    /// namespace the run may not read (another tenant's, on a GPU an
    /// exporter in an opened namespace reports) is counted in
    /// `pods_elsewhere` instead. Pure.
    pub fn name_only_readable(&self, gpus: &mut [GpuResult]) {
        for g in gpus {
            let before = g.pods.len();
            g.pods.retain(|p| self.named(p));
            g.pods_elsewhere += (before - g.pods.len()) as u32;
        }
    }

    /// Whether the run may name `pod`.
    fn named(&self, pod: &PodRef) -> bool {
        self.readable.contains(&pod.namespace) || self.inference.contains(&pod.to_string())
    }

    /// `pods` with every pod the run may not name made anonymous (no
    /// namespace, no name): still counted, in what the run keeps where its
    /// tenant can read it (the checkpoint). Pure.
    pub fn anonymize(&self, pods: &mut [PodRef]) {
        for p in pods.iter_mut().filter(|p| !self.named(p)) {
            *p = PodRef {
                namespace: String::new(),
                pod: String::new(),
                container: String::new(),
            };
        }
    }
}

/// Keeps the GPUs the scope attributes to the run, naming only the pods the
/// run may read. Returns the GPUs and the scope applied.
pub fn attribute(gpus: Vec<GpuResult>, scope: GpuScope, pods: &Pods) -> (Vec<GpuResult>, GpuScope) {
    let (mut gpus, applied) = attributed(gpus, scope, &pods.inference);
    pods.name_only_readable(&mut gpus);
    (gpus, applied)
}

/// Keeps the GPUs the scope attributes to the run. `inference` are the
/// inference pods as `namespace/name`.
fn attributed(
    gpus: Vec<GpuResult>,
    scope: GpuScope,
    inference: &BTreeSet<String>,
) -> (Vec<GpuResult>, GpuScope) {
    let serves = |g: &GpuResult| g.pods.iter().any(|p| inference.contains(&p.to_string()));
    match scope {
        GpuScope::TargetPods => (gpus.into_iter().filter(serves).collect(), scope),
        // Discovery already kept only the exporters on the inference pods' nodes.
        GpuScope::TargetNodes | GpuScope::All => (gpus, scope),
        GpuScope::Auto => {
            if gpus.iter().any(serves) {
                (
                    gpus.into_iter().filter(serves).collect(),
                    GpuScope::TargetPods,
                )
            } else if inference.is_empty() {
                (gpus, GpuScope::All)
            } else {
                (gpus, GpuScope::TargetNodes)
            }
        }
    }
}

pub fn scope_name(s: GpuScope) -> &'static str {
    match s {
        GpuScope::Auto => "auto",
        GpuScope::TargetPods => "targetPods",
        GpuScope::TargetNodes => "targetNodes",
        GpuScope::All => "all",
    }
}

/// Merges the workers' results step by step, with which of the `workers`
/// each step's figures rest on (a worker that sent none is left out, and the
/// step's [`WorkerCoverage`] says so).
pub fn merge_client(
    results: &[WorkerResult],
    steps: usize,
    workers: u32,
) -> Vec<(Option<ClientStep>, WorkerCoverage)> {
    (0..steps)
        .map(|k| {
            let parts: Vec<ClientStep> = results
                .iter()
                .filter_map(|r| r.steps.get(k).cloned())
                .collect();
            let coverage = WorkerCoverage {
                workers,
                reported: parts.len() as u32,
            };
            let merged = ClientStep::merge(&parts).map(|mut m| {
                // The sketches were for merging; the document keeps the summaries.
                m.stats = StepStats::default();
                m
            });
            (merged, coverage)
        })
        .collect()
}

/// One step's detail from what the session gathered.
pub fn detail(
    index: u32,
    telemetry: Option<&StepTelemetry>,
    client: Option<ClientStep>,
    client_coverage: Option<WorkerCoverage>,
    scope: GpuScope,
    pods: &Pods,
    idle: Option<&IdleBaseline>,
) -> StepDetail {
    let mut d = StepDetail {
        index,
        client,
        client_coverage,
        ..Default::default()
    };
    if let Some(t) = telemetry {
        d.window = Some(t.window);
        let all: Vec<GpuResult> = t.gpu.gpus.iter().map(|g| g.result()).collect();
        let (gpus, applied) = attribute(all, scope, pods);
        d.gpu_scope = scope_name(applied).into();
        let counts = &t.gpu.counts;
        let coverage = t
            .coverage(&gpus, d.client.as_ref())
            .with_refused_gpus(counts.gpus_refused, crate::telemetry::gpu::MAX_GPUS)
            .with_workers(client_coverage)
            .with_dropped(t.dropped);
        d.refused = crate::results::Refused {
            gpu_readings_of_gpus_past_bound: counts.gpus_refused,
            gpu_readings_of_fields_past_bound: counts.over_limit,
            server_samples: t.server.over_limit,
            over_budget: t.dropped.any().then_some(t.dropped),
        }
        .any();
        if let Some(totals) = d.client_totals() {
            let mut e = efficiency(&gpus, &totals);
            if !coverage.complete {
                e.withhold();
            }
            if let Some(idle) = idle
                && let Err(why) = e.above_idle(&gpus, idle)
            {
                e.above_idle_note = Some(why);
            }
            d.efficiency = Some(e);
        }
        d.coverage = Some(coverage);
        d.gpus = gpus;
        // Empty when let go (cleared, and nothing kept since).
        d.server = t.server.results();
    }
    d
}

/// Scrape bookkeeping of one endpoint.
#[derive(Clone, Debug, Default)]
pub struct EndpointLog {
    pub pod: Option<String>,
    /// The most bytes a page of it may have (0: the default).
    pub max_bytes: usize,
    pub scrapes: u32,
    pub failures: u32,
    pub last_error: Option<String>,
    last_ok_at: Option<f64>,
    first_seen_at: Option<f64>,
    pub longest_gap_s: f64,
    pub reachable: bool,
}

impl EndpointLog {
    pub fn new(pod: Option<String>) -> Self {
        Self {
            pod,
            ..Default::default()
        }
    }

    /// A scrape at `t` seconds that succeeded or failed.
    pub fn record(&mut self, t: f64, outcome: Result<(), String>) {
        self.scrapes += 1;
        self.first_seen_at.get_or_insert(t);
        let since = self.last_ok_at.or(self.first_seen_at).unwrap_or(t);
        match outcome {
            Ok(()) => {
                self.longest_gap_s = self.longest_gap_s.max(t - since);
                self.last_ok_at = Some(t);
                self.reachable = true;
            }
            Err(e) => {
                self.failures += 1;
                self.last_error = Some(e);
                self.longest_gap_s = self.longest_gap_s.max(t - since);
                self.reachable = false;
            }
        }
    }

    /// An endpoint derived from the target's URL that has not answered yet:
    /// left out of the counts and results (the target may serve no
    /// metrics), with a note.
    pub fn silent_derived(&self) -> bool {
        self.pod.as_deref() == Some(crate::discovery::DERIVED_FROM_TARGET)
            && self.last_ok_at.is_none()
    }

    pub fn report(&self, kind: Kind, url: &str) -> EndpointReport {
        EndpointReport {
            kind: kind.as_str().into(),
            url: crate::net::redact_url(url),
            pod: self.pod.clone(),
            scrapes: self.scrapes,
            failures: self.failures,
            last_error: self.last_error.clone(),
            longest_gap_s: (self.failures > 0).then_some(self.longest_gap_s),
            reachable: self.reachable,
        }
    }
}

/// Discovered and reachable endpoints of each kind.
pub fn counts(logs: &BTreeMap<(Kind, String), EndpointLog>) -> crate::api::Endpoints {
    let mut e = crate::api::Endpoints::default();
    for ((kind, _), log) in logs.iter().filter(|(_, l)| !l.silent_derived()) {
        let c = match kind {
            Kind::Gpu => &mut e.gpu,
            Kind::Server => &mut e.server,
        };
        c.discovered += 1;
        c.reachable += i32::from(log.reachable);
    }
    e
}

#[cfg(test)]
mod tests;
