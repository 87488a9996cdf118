//! A run's measurement session: from the moment its Job exists to the moment
//! its results are written, a task in the controller that
//!
//! 1. discovers the inference pods and the GPU exporters in scope (and looks
//!    again every few seconds),
//! 2. waits for every worker pod to be ready and starts them at one shared instant,
//! 3. follows the workers' `/metrics` and, when every worker measures a step,
//!    takes a boundary scrape of every GPU and server endpoint, then scrapes them
//!    every `telemetry.interval`, and takes another boundary scrape when the
//!    step ends — so counter deltas (energy) cover exactly the measured phase,
//! 4. pulls the workers' results and merges them exactly.
//!
//! The reconciler reads a [`SessionView`] (progress, endpoints, the summary once
//! there is one) and writes the results from [`Session::document`]. A session
//! lives in memory and checkpoints itself to the run's `<run>-checkpoint`
//! ([`checkpoint`]): after a controller restart a new one continues from the
//! checkpoint, and the results say what the gap cost.

mod checkpoint;
mod collect;
pub(crate) mod discover;
pub mod policy;
mod run;
mod workers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::ResourceExt;

use self::collect::{EndpointLog, Kind, StepTelemetry};
use crate::api::{self, BenchmarkRun, BenchmarkRunStatus, GpuScope};
use crate::loadgen::engine::StepResult as ClientStep;
use crate::results::{EndpointReport, StepDetail, WorkerCoverage};

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
}

/// What the session task and the reconciler share.
struct Shared {
    stage: Stage,
    progress: Option<api::Progress>,
    telemetry: Vec<StepTelemetry>,
    client: Vec<Option<ClientStep>>,
    /// Per step, whose results `client` merges (once they are collected).
    client_coverage: Vec<WorkerCoverage>,
    /// Session time of the latest scrape.
    last_scrape_t: f64,
    /// The run ends early (cancel, timeout): when the stop was asked for.
    stop_asked: Option<Instant>,
    logs: BTreeMap<(Kind, String), EndpointLog>,
    inference: BTreeSet<String>,
    discovery_notes: Vec<String>,
    refused: Vec<String>,
    notes: Vec<String>,
    scope: GpuScope,
    steps: usize,
}

/// One run's session.
pub struct Session {
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Session {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn view(&self) -> SessionView {
        let s = self.lock();
        let logs_known = !s.logs.is_empty();
        let details = if s.stage == Stage::Done {
            details(&s)
        } else {
            Vec::new()
        };
        SessionView {
            stage: s.stage.clone(),
            progress: s.progress.clone(),
            endpoints: logs_known.then(|| collect::counts(&s.logs)),
            discovery_note: (!s.discovery_notes.is_empty()).then(|| s.discovery_notes.join("; ")),
            refused: (!s.refused.is_empty()).then(|| s.refused.join("; ")),
            steps: details,
            stopping_for: s.stop_asked.map(|t| t.elapsed()),
        }
    }

    /// The run ends early: the workers are asked to stop, and their results
    /// (what they measured until then) pulled as at a normal end.
    pub fn stop(&self) {
        self.lock().stop_asked.get_or_insert_with(Instant::now);
    }

    /// Everything gathered so far: step details, endpoints, notes. Partial when
    /// the run ends early (cancel, timeout, failure), and the notes say so.
    pub fn document(&self) -> (Vec<StepDetail>, Vec<EndpointReport>, Vec<String>) {
        let s = self.lock();
        let mut notes = s.notes.clone();
        notes.extend(s.refused.iter().cloned());
        notes.extend(s.discovery_notes.iter().cloned());
        let stopped: Vec<String> = s
            .client
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_ref().is_some_and(|c| c.stopped))
            .map(|(k, _)| k.to_string())
            .collect();
        if !stopped.is_empty() {
            notes.push(format!(
                "the run ended early (cancel or timeout): step {}'s figures cover its measured part, up to the stop",
                stopped.join(", ")
            ));
        }
        if s.stage != Stage::Done {
            notes.push(
                "the load generators' results were not collected (the run ended before they finished); client figures are missing"
                    .into(),
            );
        }
        let reports = s
            .logs
            .iter()
            .map(|((kind, url), log)| log.report(*kind, url))
            .collect();
        (details(&s), reports, notes)
    }
}

fn details(s: &Shared) -> Vec<StepDetail> {
    (0..s.steps)
        .filter(|k| s.telemetry.get(*k).is_some() || s.client.get(*k).is_some_and(Option::is_some))
        .map(|k| {
            collect::detail(
                k as u32,
                s.telemetry.get(k),
                s.client.get(k).cloned().flatten(),
                s.client_coverage.get(k).copied(),
                s.scope,
                &s.inference,
            )
        })
        .collect()
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
    /// What runs may make the sessions read.
    policy: Arc<policy::Policy>,
    /// The key of the workers' per-run tokens (`None`: workers run open).
    key: Option<crate::controller::worker_auth::WorkerKey>,
}

impl Sessions {
    pub fn new(
        policy: policy::Policy,
        key: Option<crate::controller::worker_auth::WorkerKey>,
    ) -> Self {
        Sessions {
            policy: Arc::new(policy),
            key,
            ..Sessions::default()
        }
    }

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
        let uid = run.uid()?;
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
        self.map().get(&run.uid()?).cloned()
    }

    /// The run's session, started if there is none. `resumed`: the run was
    /// already running when this controller took it up.
    pub fn ensure(
        &self,
        client: &kube::Client,
        run: &BenchmarkRun,
        resumed: bool,
    ) -> Option<Arc<Session>> {
        let uid = run.uid()?;
        let ns = run.namespace()?;
        let mut map = self.map();
        if let Some(s) = map.get(&uid) {
            return Some(s.clone());
        }
        let plan = crate::controller::build::plan(run, Vec::new());
        let steps = plan.steps.len();
        let shared = Arc::new(Mutex::new(Shared {
            stage: Stage::Starting,
            progress: None,
            telemetry: Vec::new(),
            client: Vec::new(),
            client_coverage: Vec::new(),
            last_scrape_t: 0.0,
            stop_asked: None,
            logs: BTreeMap::new(),
            inference: BTreeSet::new(),
            discovery_notes: Vec::new(),
            refused: Vec::new(),
            notes: Vec::new(),
            scope: run.spec.telemetry.gpu.scope,
            steps,
        }));
        let task = tokio::spawn(run::drive(run::Inputs {
            client: client.clone(),
            ns: ns.clone(),
            job: crate::controller::names::job_name(run),
            spec: run.spec.clone(),
            workers: run.spec.load.workers.max(1),
            steps,
            stop: plan.stop,
            warmup: plan.warmup_requests > 0,
            resumed,
            policy: self.policy.clone(),
            shared: shared.clone(),
            store: checkpoint::Store::new(client, &ns, run, &uid),
            token: self.key.as_ref().map(|k| k.token(&uid)),
        }));
        let s = Arc::new(Session { shared, task });
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
        if let Some(uid) = run.uid() {
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
}
