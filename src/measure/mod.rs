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

pub mod checkpoint;
mod collect;
pub mod follow;
mod run;
pub mod timeseries;
pub mod workers;

pub use run::IDLE_SETTLE_MAX;

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

/// One run's session, as the reconciler holds it.
pub struct Session {
    published: watch::Receiver<Published>,
    /// The run's time series, when its spec asks for one.
    timeseries: Option<Arc<Mutex<timeseries::Timeseries>>>,
    /// When the run was asked to end early.
    stop: watch::Sender<Option<Instant>>,
    task: tokio::task::JoinHandle<()>,
}

impl Session {
    pub fn view(&self) -> SessionView {
        let mut view = self.published.borrow().view.clone();
        view.stopping_for = self.stop.borrow().map(|t| t.elapsed());
        view
    }

    /// The run ends early: the workers are asked to stop, and their results
    /// (what they measured until then) pulled as at a normal end.
    pub fn stop(&self) {
        self.stop.send_if_modified(|at| {
            let first = at.is_none();
            at.get_or_insert_with(Instant::now);
            first
        });
    }

    /// Waits until the session reaches `stage`; its view then.
    #[cfg(test)]
    pub async fn wait_for_stage(&self, stage: Stage, within: Duration) -> SessionView {
        let mut published = self.published.clone();
        let reached = published.wait_for(|p| p.view.stage == stage);
        tokio::time::timeout(within, reached)
            .await
            .unwrap_or_else(|_| panic!("the session did not reach {stage:?} within {within:?}"))
            .expect("the session ended");
        self.view()
    }

    /// Everything gathered so far (as of the task's latest change).
    /// Waits, at most `patience`, until the session's first discovery is
    /// done; whether it is. A run that ends at once (a failed pre-flight)
    /// then still says what its telemetry spec was refused.
    pub async fn discovered_within(&self, patience: Duration) -> bool {
        let mut published = self.published.clone();
        tokio::time::timeout(patience, published.wait_for(|p| p.view.discovered))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn document(&self) -> Document {
        let document = self.published.borrow().document.clone();
        Arc::unwrap_or_clone(document)
    }

    /// The time series as the results' `timeseries.jsonl`, when kept.
    pub fn timeseries(&self) -> Option<String> {
        let ts = self.timeseries.as_ref()?;
        Some(ts.lock().unwrap_or_else(|p| p.into_inner()).render())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long the final status of an ended run is remembered while the cache
/// has not shown it yet. The cache catches up within milliseconds; this only
/// bounds the memory of runs deleted before it did.
const ENDED_MEMORY: Duration = Duration::from_secs(600);

/// The final status this controller wrote for a run.
struct Ended {
    status: BenchmarkRunStatus,
    at: Instant,
}

/// The sessions of the runs this controller follows, by run UID, and the
/// final status of the runs whose session ended.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
    ended: Mutex<HashMap<String, Ended>>,
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
    /// The bearer token the run's workers require, and the Secret it is in.
    pub token: Option<String>,
    pub token_secret: String,
}

impl Sessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ended_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ended>> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The final status this controller wrote for `run`, when the copy of the
    /// run in hand does not show a final phase yet: that copy is older than
    /// the write (a watch cache lags behind its own writes), and deciding from
    /// it would undo the run's end. Forgotten once a copy shows a final phase.
    pub fn ended(&self, run: &BenchmarkRun) -> Option<BenchmarkRunStatus> {
        let uid = run.metadata.uid.clone()?;
        let mut ended = self.ended_map();
        ended.retain(|_, e| e.at.elapsed() < ENDED_MEMORY);
        let shows_end = run
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(api::Phase::is_final);
        if shows_end {
            ended.remove(&uid);
            return None;
        }
        ended.get(&uid).map(|e| e.status.clone())
    }

    pub fn get(&self, run: &BenchmarkRun) -> Option<Arc<Session>> {
        self.map().get(&run.metadata.uid.clone()?).cloned()
    }

    /// The run's session, started (from what `setup` gives) if there is none.
    pub fn ensure(
        &self,
        run: &BenchmarkRun,
        setup: impl FnOnce() -> Setup,
    ) -> Option<Arc<Session>> {
        let uid = run.metadata.uid.clone()?;
        let ns = run.metadata.namespace.clone()?;
        let mut map = self.map();
        if let Some(s) = map.get(&uid) {
            return Some(s.clone());
        }
        let setup = setup();
        let state = State::new(run.spec.telemetry.gpu.scope, setup.steps);
        let (out, published) = watch::channel(Published {
            view: state.view(&Document::default()),
            document: Arc::default(),
        });
        let (stop, stop_asked) = watch::channel(None);
        let timeseries = run
            .spec
            .results
            .timeseries
            .then(|| Arc::new(Mutex::new(timeseries::Timeseries::default())));
        let task = tokio::spawn(run::drive(run::Inputs {
            ns,
            spec: run.spec.clone(),
            workers: run.spec.load.workers.max(1),
            state,
            out,
            stop_asked,
            setup,
            timeseries: timeseries.clone(),
        }));
        let s = Arc::new(Session {
            timeseries,
            published,
            stop,
            task,
        });
        map.insert(uid, s.clone());
        Some(s)
    }

    /// Stops the sessions of runs that no longer exist (`exists` says by UID):
    /// a deleted run's measurement must not go on scraping. Returns how many
    /// sessions are left.
    pub fn retain(&self, exists: impl Fn(&str) -> bool) -> usize {
        let mut map = self.map();
        map.retain(|uid, _| exists(uid));
        map.len()
    }

    /// Forgets the run's session (its task stops) and remembers the final
    /// status written for it (see [`Sessions::ended`]).
    pub fn end(&self, run: &BenchmarkRun, status: &BenchmarkRunStatus) {
        if let Some(uid) = run.metadata.uid.clone() {
            self.map().remove(&uid);
            let ended = Ended {
                status: status.clone(),
                at: Instant::now(),
            };
            self.ended_map().insert(uid, ended);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Phase;

    fn run(phase: Option<Phase>) -> BenchmarkRun {
        let mut r: BenchmarkRun = serde_saphyr::from_str(
            r#"
apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata: {name: r1, namespace: llm, uid: u-1}
spec:
  target: {url: "http://vllm:8000", model: m}
  load: {concurrency: 1, requestCount: 1}
"#,
        )
        .unwrap();
        r.status = phase.map(|p| BenchmarkRunStatus {
            phase: Some(p),
            ..BenchmarkRunStatus::default()
        });
        r
    }

    #[test]
    fn an_ended_run_is_remembered_until_a_copy_shows_its_end() {
        let sessions = Sessions::default();
        let running = run(Some(Phase::Running));
        assert_eq!(sessions.ended(&running), None);
        let end = BenchmarkRunStatus {
            phase: Some(Phase::Succeeded),
            ..BenchmarkRunStatus::default()
        };
        sessions.end(&running, &end);
        // Copies older than the write (no status yet, Running, Collecting) get the end.
        for phase in [None, Some(Phase::Running), Some(Phase::Collecting)] {
            assert_eq!(sessions.ended(&run(phase)), Some(end.clone()), "{phase:?}");
        }
        // A copy that shows a final phase: the cache caught up; forgotten.
        assert_eq!(sessions.ended(&run(Some(Phase::Succeeded))), None);
        assert_eq!(sessions.ended(&running), None);
        // Sessions of deleted runs stop; the ended memory is not a session.
        assert_eq!(sessions.retain(|_| false), 0);
        // Another run is not touched.
        let mut other = running.clone();
        other.metadata.uid = Some("u-2".into());
        sessions.end(&running, &end);
        assert_eq!(sessions.ended(&other), None);
    }

    /// A change recomputes the steps it touches; the document is always what
    /// computing every step afresh gives.
    #[test]
    fn the_document_recomputes_the_steps_that_changed() {
        use crate::scrape::Format;
        use crate::telemetry::Filter;
        let page = |w: f64| format!("DCGM_FI_DEV_POWER_USAGE{{gpu=\"0\",UUID=\"GPU-0\"}} {w}\n");
        let mut s = State::new(GpuScope::All, 2);
        for _ in 0..2 {
            let mut t = StepTelemetry::new(Filter::default(), 1_800_000_000_000, 0.0, false);
            t.ingest(
                Kind::Gpu,
                "http://e:9400/metrics",
                0.0,
                page(100.0).as_bytes(),
                Format::Prometheus,
            );
            s.telemetry.push(t);
        }
        let fresh = |s: &State| -> Vec<StepDetail> {
            (0..2)
                .map(|k| {
                    collect::detail(
                        k as u32,
                        s.telemetry.get(k),
                        None,
                        None,
                        s.scope,
                        &s.pods,
                        s.idle.as_ref(),
                    )
                })
                .collect()
        };
        assert_eq!(s.document().steps, fresh(&s));
        // Step 1 scraped again: its detail follows, step 0's is reused.
        let step1 = &mut s.telemetry[1];
        step1.ingest(
            Kind::Gpu,
            "http://e:9400/metrics",
            1.0,
            page(500.0).as_bytes(),
            Format::Prometheus,
        );
        s.changed(Some(1));
        let doc = s.document();
        assert_eq!(doc.steps, fresh(&s));
        assert_ne!(doc.steps[0], doc.steps[1]);
        // A change to what every step rests on recomputes them all.
        s.pods.inference.insert("ns/llm-0".into());
        s.changed(None);
        assert_eq!(s.document().steps, fresh(&s));
    }
}
