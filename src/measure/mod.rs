//! A run's measurement: from the moment its Job exists to the moment its
//! results are written, one task that owns everything it measures and
//!
//! 1. discovers the inference pods and the GPU exporters in scope
//!    ([`crate::discovery`], and looks again every few seconds),
//! 2. waits for every worker pod to be ready and starts them at one shared instant,
//! 3. follows each worker's progress as a long poll ([`crate::contract`]) and,
//!    the moment every worker measures a step, takes a boundary scrape of every
//!    GPU and server endpoint, then scrapes them every `telemetry.interval`,
//!    and takes another boundary scrape when the step ends — so counter deltas
//!    (energy) cover exactly the measured phase,
//! 4. pulls the workers' results and merges them exactly.
//!
//! Nothing it measures is shared: the task publishes a [`SessionView`] and
//! the results document through a `watch` channel after each change, and the
//! reconciler reads those snapshots (no lock is held while payloads are
//! parsed). It checkpoints itself to the run's `<run>-checkpoint`
//! ([`checkpoint`]): after a controller restart a new one continues from the
//! checkpoint, and the results say what the gap cost.

pub mod budget;
pub mod checkpoint;
pub mod collect;
pub mod follow;
mod run;
mod sessions;
pub mod timeseries;
pub mod workers;

pub use run::IDLE_SETTLE_MAX;
pub use sessions::{Session, Sessions};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::scrape::fetch::ScrapeClient;
use tokio::sync::watch;

use self::checkpoint::Checkpoint;
use crate::discovery::{Found, PodInfo};

use self::collect::{EndpointLog, Kind, StepTelemetry};
use crate::api::{self, BenchmarkRun, BenchmarkRunStatus, GpuScope};
use crate::loadgen::engine::StepResult as ClientStep;
use crate::loadgen::plan::StopCondition;
use crate::results::{EndpointReport, StepDetail, WorkerCoverage};
use crate::telemetry::efficiency::IdleBaseline;

/// Where a session is.
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    /// Waiting for the worker pods.
    Starting,
    /// The workers run.
    Running,
    /// The workers are done; their results are being pulled.
    Collecting,
    /// Everything is in.
    Done,
}

/// What the reconciler reads of a session.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionView {
    pub stage: Stage,
    pub progress: Option<api::Progress>,
    pub endpoints: Option<api::Endpoints>,
    /// Why discovery found nothing, when it did not.
    pub discovery_note: Option<String>,
    /// What the run asked to read and the installer's policy refused.
    pub refused: Option<String>,
    /// Per step, the status summary (once the results are in).
    pub steps: Vec<StepDetail>,
    /// How long ago the workers were asked to stop (the run ends early).
    pub stopping_for: Option<Duration>,
    /// Why the measurement cannot go on (the run fails with it).
    pub fatal: Option<Fatal>,
    /// Its first discovery is done (found, refused, or failed).
    pub discovered: bool,
    /// The load generators whose share was lost (killed, evicted, silent),
    /// each with why: `load generator 1: its pod ... ended ...`.
    pub lost: Vec<String>,
    /// This session took a run over that was already running (a restart,
    /// a failover): its workers were started before it.
    pub taking_over: bool,
}

/// Why a measurement cannot go on: the run's `Failed` reason and message.
#[derive(Clone, Debug, PartialEq)]
pub struct Fatal {
    pub reason: &'static str,
    pub message: String,
}

/// The clients a run's scrapes use: each kind of endpoint with its TLS, the
/// server endpoints with the run's credentials (GPU exporters never get them).
#[derive(Clone)]
pub struct Scrapers {
    pub gpu: ScrapeClient,
    pub server: ScrapeClient,
    /// What the results say about how the scrapes were made (a skipped
    /// verification).
    pub notes: Vec<String>,
}

impl Scrapers {
    /// Plain scrapes: the system's roots, no credentials.
    pub fn plain() -> Self {
        let client = crate::scrape::fetch::scrape_client();
        Scrapers {
            gpu: client.clone(),
            server: client,
            notes: Vec::new(),
        }
    }
}

/// Everything a session measures, owned by its task alone.
struct State {
    stage: Stage,
    progress: Option<api::Progress>,
    telemetry: Vec<StepTelemetry>,
    client: Vec<Option<ClientStep>>,
    /// Per step, whose results `client` merges (once they are collected).
    client_coverage: Vec<WorkerCoverage>,
    /// Session time of the latest scrape.
    last_scrape_t: f64,
    logs: BTreeMap<(Kind, String), EndpointLog>,
    /// The inference pods and the namespaces the run may read.
    pods: collect::Pods,
    discovery_notes: Vec<String>,
    refused: Vec<String>,
    /// The first discovery is done.
    discovered: bool,
    /// The load generators whose share was lost, with why.
    lost: Vec<String>,
    /// The run was already running when this session took it up.
    taking_over: bool,
    notes: Vec<String>,
    scope: GpuScope,
    steps: usize,
    /// Why the measurement cannot go on.
    fatal: Option<Fatal>,
    /// Each step's detail as last computed; `None` where what it rests on
    /// has changed since (a scrape recomputes its own step only).
    details: Vec<Option<StepDetail>>,
    /// The GPUs measured idle before the first step (`telemetry.idleBaseline`).
    idle: Option<IdleBaseline>,
}

/// The results as far as they go: step details, endpoints, notes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Document {
    pub steps: Vec<StepDetail>,
    pub endpoints: Vec<EndpointReport>,
    pub notes: Vec<String>,
}

/// What a session publishes after each change.
#[derive(Clone)]
struct Published {
    view: SessionView,
    document: Arc<Document>,
}

impl State {
    fn new(scope: GpuScope, steps: usize) -> Self {
        State {
            stage: Stage::Starting,
            progress: None,
            telemetry: Vec::new(),
            client: Vec::new(),
            client_coverage: Vec::new(),
            last_scrape_t: 0.0,
            logs: BTreeMap::new(),
            pods: collect::Pods::default(),
            discovery_notes: Vec::new(),
            refused: Vec::new(),
            discovered: false,
            lost: Vec::new(),
            taking_over: false,
            notes: Vec::new(),
            scope,
            steps,
            fatal: None,
            details: Vec::new(),
            idle: None,
        }
    }

    /// What step `k`'s detail rests on changed (`None`: every step's, as when
    /// the inference pods, the client results or a restored checkpoint do).
    fn changed(&mut self, step: Option<usize>) {
        match step {
            Some(k) => {
                if let Some(d) = self.details.get_mut(k) {
                    *d = None;
                }
            }
            None => self.details.clear(),
        }
    }

    /// What the reconciler reads; `steps` are the document's once everything is in.
    fn view(&self, document: &Document) -> SessionView {
        SessionView {
            stage: self.stage.clone(),
            progress: self.progress.clone(),
            endpoints: (!self.logs.is_empty()).then(|| collect::counts(&self.logs)),
            discovery_note: (!self.discovery_notes.is_empty())
                .then(|| self.discovery_notes.join("; ")),
            refused: (!self.refused.is_empty()).then(|| self.refused.join("; ")),
            discovered: self.discovered,
            lost: self.lost.clone(),
            taking_over: self.taking_over,
            steps: if self.stage == Stage::Done {
                document.steps.clone()
            } else {
                Vec::new()
            },
            stopping_for: None,
            fatal: self.fatal.clone(),
        }
    }

    /// Everything gathered so far. Partial when the run ends early (cancel,
    /// timeout, failure), and the notes say so.
    fn document(&mut self) -> Document {
        let mut notes = self.notes.clone();
        notes.extend(self.refused.iter().cloned());
        notes.extend(self.discovery_notes.iter().cloned());
        let stopped: Vec<String> = self
            .client
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_ref().is_some_and(|c| c.stopped))
            .map(|(k, _)| k.to_string())
            .collect();
        let sizing_notes = self
            .client
            .iter()
            .flatten()
            .filter_map(|c| c.prompt_sizing.as_ref()?.note.clone());
        for note in sizing_notes {
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
        if !stopped.is_empty() {
            notes.push(format!(
                "the run ended early (cancel or timeout): step {}'s figures cover its measured part, up to the stop",
                stopped.join(", ")
            ));
        }
        if self.stage != Stage::Done {
            notes.push(
                "the load generators' results were not collected (the run ended before they finished); client figures are missing"
                    .into(),
            );
        }
        for ((_, url), log) in self.logs.iter().filter(|(_, l)| l.silent_derived()) {
            notes.push(format!(
                "the target's own metrics endpoint {} ({}) did not answer{}: no server metrics from it",
                crate::net::redact_url(url),
                crate::discovery::DERIVED_FROM_TARGET,
                log.last_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
        }
        let endpoints = self
            .logs
            .iter()
            .filter(|(_, log)| !log.silent_derived())
            .map(|((kind, url), log)| log.report(*kind, url))
            .collect();
        Document {
            steps: self.details(),
            endpoints,
            notes,
        }
    }

    /// Every step's detail, recomputing only those whose inputs changed.
    fn details(&mut self) -> Vec<StepDetail> {
        self.details.resize(self.steps, None);
        let mut out = Vec::new();
        for k in 0..self.steps {
            let measured =
                self.telemetry.get(k).is_some() || self.client.get(k).is_some_and(Option::is_some);
            if !measured {
                continue;
            }
            let detail = self.details[k].get_or_insert_with(|| {
                collect::detail(
                    k as u32,
                    self.telemetry.get(k),
                    self.client.get(k).cloned().flatten(),
                    self.client_coverage.get(k).copied(),
                    self.scope,
                    &self.pods,
                    self.idle.as_ref(),
                )
            });
            out.push(detail.clone());
        }
        out
    }
}

/// What a measurement asks of the cluster. The controller provides it
/// (`controller::measurement`); the measurement itself talks to no API server.
pub trait Cluster: Send + Sync {
    /// The run's worker pods with their completion indexes, in index order.
    fn worker_pods(&self) -> BoxFuture<'_, Result<Vec<(u32, PodInfo)>, String>>;
    /// The inference pods and the endpoints to scrape, as the installer's policy allows.
    fn discover(&self) -> BoxFuture<'_, Result<Found, String>>;
    /// The run's checkpoint, when a predecessor left a whole one.
    fn read_checkpoint(&self) -> BoxFuture<'_, Result<Option<Checkpoint>, String>>;
    /// Writes checkpoint number `seq`.
    fn write_checkpoint(&self, cp: Checkpoint, seq: u64) -> BoxFuture<'_, Result<(), String>>;
    /// Where the checkpoint goes (for logs).
    fn checkpoint_name(&self) -> &str;
    /// The clients the run's scrapes use, as its spec asks (TLS, credentials
    /// from its namespace). An error says why the run cannot be measured.
    fn scrapers(&self) -> BoxFuture<'_, Result<Scrapers, String>> {
        futures::future::ready(Ok(Scrapers::plain())).boxed()
    }
}

/// What a new session needs to know of its run, besides the run itself.
pub struct Setup {
    pub cluster: Arc<dyn Cluster>,
    /// The run's UID (a checkpoint of another run of the same name is not read).
    pub run_uid: String,
    /// The run's Job.
    pub job: String,
    /// The plan's steps, how each ends, and whether each warms up first.
    pub steps: usize,
    pub stop: StopCondition,
    pub warmup: bool,
    /// The run was already running when this controller took it up.
    pub resumed: bool,
    /// Check the target before the start (`load.preflight`).
    pub preflight: bool,
    /// The run's Job was deleted before this controller followed it: its
    /// workers (stopping in their pods' grace period, or orphaned and still
    /// running) are stopped and what they hold is pulled; nothing is started.
    pub salvage: bool,
    /// The bearer token the run's workers require.
    pub token: Option<String>,
    /// The most bytes the run's telemetry may hold, every step together,
    /// as a checkpoint encodes it (0: no bound past each step's own).
    pub telemetry_budget_bytes: usize,
    /// The controller's pool of every run's telemetry, when it has one.
    pub telemetry_pool: Option<Arc<budget::Pool>>,
}

impl Setup {
    /// A fresh telemetry budget for the run, in the controller's pool.
    fn budget(&self) -> budget::Budget {
        let b = budget::Budget::new(self.telemetry_budget_bytes);
        match &self.telemetry_pool {
            Some(pool) => b.in_pool(pool.clone()),
            None => b,
        }
    }
}

#[cfg(test)]
mod tests;
