//! The sessions a controller follows, by run: each a task that owns its
//! measurement and publishes what it reached, and the final status of the
//! runs whose session ended (remembered until the cache shows it).

use super::*;

/// One run's session, as the reconciler holds it.
pub struct Session {
    pub(super) published: watch::Receiver<Published>,
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
