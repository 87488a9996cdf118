//! What a session gathers per step, and how it becomes the run's results:
//! GPU attribution by scope, efficiency, the merged client result. Pure.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::GpuScope;
use crate::loadgen::cli::WorkerResult;
use crate::loadgen::engine::{StepResult as ClientStep, StepStats};
use crate::results::{EndpointReport, StepDetail, Window};
use crate::scrape::Format;
use crate::telemetry::efficiency::efficiency;
use crate::telemetry::report::GpuResult;
use crate::telemetry::{Filter, GpuTelemetry, ServerMetrics};

/// The telemetry of one step's measured phase.
pub struct StepTelemetry {
    pub gpu: GpuTelemetry,
    pub server: ServerMetrics,
    pub window: Window,
}

impl StepTelemetry {
    pub fn new(filter: Filter, start_unix_ms: u64) -> Self {
        Self {
            gpu: GpuTelemetry::default(),
            server: ServerMetrics::new(filter),
            window: Window {
                start_unix_ms,
                end_unix_ms: start_unix_ms,
            },
        }
    }

    pub fn ingest(&mut self, kind: Kind, url: &str, t: f64, body: &[u8], format: Format) {
        match kind {
            Kind::Gpu => {
                self.gpu.ingest(url, t, body, format);
            }
            Kind::Server => {
                self.server.ingest(url, t, body, format);
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

/// Keeps the GPUs the scope attributes to the run. `inference` are the
/// inference pods as `namespace/name`. Returns the GPUs and the scope applied.
pub fn attribute(
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

/// Merges the workers' results step by step (a worker that sent none is left
/// out, and said so in `notes`).
pub fn merge_client(results: &[WorkerResult], steps: usize) -> Vec<Option<ClientStep>> {
    (0..steps)
        .map(|k| {
            let parts: Vec<ClientStep> = results
                .iter()
                .filter_map(|r| r.steps.get(k).cloned())
                .collect();
            let mut merged = ClientStep::merge(&parts)?;
            // The sketches were for merging; the document keeps the summaries.
            merged.stats = StepStats::default();
            Some(merged)
        })
        .collect()
}

/// One step's detail from what the session gathered.
pub fn detail(
    index: u32,
    telemetry: Option<&StepTelemetry>,
    client: Option<ClientStep>,
    scope: GpuScope,
    inference: &BTreeSet<String>,
) -> StepDetail {
    let mut d = StepDetail {
        index,
        client,
        ..Default::default()
    };
    if let Some(t) = telemetry {
        d.window = Some(t.window);
        let all: Vec<GpuResult> = t.gpu.gpus.iter().map(|g| g.result()).collect();
        let (gpus, applied) = attribute(all, scope, inference);
        d.gpu_scope = scope_name(applied).into();
        if let Some(totals) = d.client_totals() {
            d.efficiency = Some(efficiency(&gpus, &totals));
        }
        d.gpus = gpus;
        d.server = t.server.results();
    }
    d
}

/// Scrape bookkeeping of one endpoint.
#[derive(Clone, Debug, Default)]
pub struct EndpointLog {
    pub pod: Option<String>,
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

    pub fn report(&self, kind: Kind, url: &str) -> EndpointReport {
        EndpointReport {
            kind: kind.as_str().into(),
            url: url.to_string(),
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
    for ((kind, _), log) in logs {
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
mod tests {
    use super::*;
    use crate::telemetry::gpu::PodRef;

    fn gpu(uuid: &str, pod: Option<&str>) -> GpuResult {
        let page = match pod {
            Some(p) => format!(
                "DCGM_FI_DEV_POWER_USAGE{{gpu=\"0\",UUID=\"{uuid}\",namespace=\"ns\",pod=\"{p}\"}} 100\n"
            ),
            None => format!("DCGM_FI_DEV_POWER_USAGE{{gpu=\"0\",UUID=\"{uuid}\"}} 100\n"),
        };
        let mut t = GpuTelemetry::default();
        t.ingest("e", 0.0, page.as_bytes(), Format::Prometheus);
        t.gpus[0].result()
    }

    #[test]
    fn scope_keeps_the_targets_gpus_or_falls_back_as_it_says() {
        let inference = BTreeSet::from(["ns/llm-0".to_string()]);
        let gpus = || {
            vec![
                gpu("A", Some("llm-0")),
                gpu("B", Some("other")),
                gpu("C", None),
            ]
        };
        let (kept, applied) = attribute(gpus(), GpuScope::TargetPods, &inference);
        assert_eq!(kept.len(), 1);
        assert_eq!(
            kept[0].pods,
            vec![PodRef {
                namespace: "ns".into(),
                pod: "llm-0".into(),
                container: String::new()
            }]
        );
        assert_eq!(applied, GpuScope::TargetPods);
        let (kept, applied) = attribute(gpus(), GpuScope::Auto, &inference);
        assert_eq!((kept.len(), applied), (1, GpuScope::TargetPods));
        let (kept, applied) = attribute(vec![gpu("C", None)], GpuScope::Auto, &inference);
        assert_eq!((kept.len(), applied), (1, GpuScope::TargetNodes));
        let (kept, applied) = attribute(gpus(), GpuScope::Auto, &BTreeSet::new());
        assert_eq!((kept.len(), applied), (3, GpuScope::All));
        assert_eq!(attribute(gpus(), GpuScope::All, &inference).0.len(), 3);
    }

    #[test]
    fn endpoint_logs_state_gaps_and_reachability() {
        let mut l = EndpointLog::default();
        l.record(0.0, Ok(()));
        l.record(1.0, Err("connection refused".into()));
        l.record(2.0, Err("connection refused".into()));
        assert!(!l.reachable);
        l.record(3.5, Ok(()));
        let r = l.report(Kind::Gpu, "http://x:9400/metrics");
        assert_eq!((r.scrapes, r.failures, r.reachable), (4, 2, true));
        assert_eq!(r.longest_gap_s, Some(3.5));
        assert_eq!(r.last_error.as_deref(), Some("connection refused"));
    }
}
