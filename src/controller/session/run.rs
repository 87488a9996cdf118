//! The session task: discovery, the workers' start, the scrape schedule with
//! its boundary scrapes, and the collection of the workers' results.

use crate::clock::unix_ms;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::checkpoint::{self, Checkpoint, SavedStep, Store};
use super::collect::{self, EndpointLog, Kind, StepTelemetry};
use super::discover::{self, Found};
use super::policy::Policy;
use super::workers::{self, StepState, Worker, WorkerProgress};
use super::{Shared, Stage};
use crate::api::{self, BenchmarkRunSpec};
use crate::loadgen::client::{HttpClient, http_client};
use crate::loadgen::plan::StopCondition;
use crate::scrape::fetch::{self, DEFAULT_MAX_BYTES, ScrapeClient};
use crate::telemetry::Filter;

pub struct Inputs {
    pub client: kube::Client,
    pub ns: String,
    pub job: String,
    pub spec: BenchmarkRunSpec,
    pub workers: i32,
    pub steps: usize,
    pub stop: StopCondition,
    /// The plan warms up before each measured step.
    pub warmup: bool,
    pub resumed: bool,
    pub policy: Arc<Policy>,
    pub shared: Arc<Mutex<Shared>>,
    /// Where the measurement is checkpointed.
    pub store: Store,
    /// The bearer token the run's workers require.
    pub token: Option<String>,
}

/// How often the workers' progress is read (step boundaries are found this fast).
const POLL: Duration = Duration::from_millis(50);
/// How many scrapes one run's session has in flight at most.
const MAX_FETCHES: usize = 32;
/// How often discovery looks again.
const REDISCOVER: Duration = Duration::from_secs(10);
/// How long the workers' results are waited for once they are done.
const COLLECT: Duration = Duration::from_secs(60);

struct Driver {
    inputs: Inputs,
    http: HttpClient,
    scraper: ScrapeClient,
    t0: Instant,
    /// Session time 0, unix ms (a session that takes a run over from a
    /// checkpoint keeps its predecessor's, so every `t` lines up).
    origin_unix_ms: u64,
    /// Session time at `t0`.
    offset_s: f64,
    filter: Filter,
    /// Checkpoints are numbered; a write never replaces a newer one.
    checkpoints: std::sync::atomic::AtomicU64,
    written: Arc<tokio::sync::Mutex<u64>>,
    last_checkpoint: Mutex<Instant>,
}

/// Where a session picks a run up from its checkpoint.
struct Resume {
    active: Option<usize>,
    next_step: usize,
    results: Option<(Vec<crate::loadgen::cli::WorkerResult>, u32)>,
}

impl Driver {
    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.inputs.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn t(&self) -> f64 {
        self.offset_s + self.t0.elapsed().as_secs_f64()
    }

    /// Takes the measurement over from a predecessor's checkpoint.
    fn restore(&self, cp: Checkpoint) -> Resume {
        let mut s = self.shared();
        s.telemetry = cp
            .steps
            .into_iter()
            .map(|st| st.restore(self.filter.clone()))
            .collect();
        s.notes = cp.notes;
        s.last_scrape_t = cp.last_scrape_t;
        Resume {
            active: cp.active,
            next_step: cp.next_step,
            results: cp.results.map(|r| (r, cp.workers)),
        }
    }

    /// The measurement as far as it went.
    fn checkpoint(
        &self,
        active: Option<usize>,
        next_step: usize,
        results: Option<(&[crate::loadgen::cli::WorkerResult], u32)>,
    ) -> Checkpoint {
        let s = self.shared();
        Checkpoint {
            version: checkpoint::VERSION,
            run_uid: self.inputs.store.run_uid.clone(),
            origin_unix_ms: self.origin_unix_ms,
            taken_unix_ms: unix_ms(),
            last_scrape_t: s.last_scrape_t,
            steps: s.telemetry.iter().map(SavedStep::of).collect(),
            active,
            next_step,
            notes: s.notes.clone(),
            results: results.map(|(r, _)| r.to_vec()),
            workers: results.map_or(0, |(_, w)| w),
        }
    }

    /// Writes a checkpoint in the background (boundaries and the periodic
    /// ones: the schedule does not wait on the API server).
    fn save(&self, active: Option<usize>, next_step: usize) {
        let cp = self.checkpoint(active, next_step, None);
        *self
            .last_checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
        let seq = self.next_seq();
        let (written, store) = (self.written.clone(), self.inputs.store.clone());
        tokio::spawn(async move { write(&store, &written, seq, &cp).await });
    }

    /// A checkpoint is due during a step.
    fn checkpoint_due(&self) -> bool {
        self.last_checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
            >= checkpoint::EVERY
    }

    fn next_seq(&self) -> u64 {
        self.checkpoints
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    async fn discover(&self) {
        let i = &self.inputs;
        match discover::discover(&i.client, &i.ns, &i.spec, &i.policy).await {
            Ok(found) => self.adopt(found),
            Err(e) => warn!(ns = %i.ns, "discovery failed: {e}"),
        }
    }

    /// Adds newly found endpoints; endpoints found before stay (a pod that
    /// went away is reported unreachable, with its gap).
    fn adopt(&self, found: Found) {
        let Found {
            refused,
            inference,
            servers,
            gpus,
            notes,
        } = found;
        let mut s = self.shared();
        s.inference.extend(
            inference
                .iter()
                .map(|p| format!("{}/{}", p.namespace, p.name)),
        );
        s.discovery_notes = notes;
        s.refused = refused;
        for (kind, list) in [(Kind::Server, servers), (Kind::Gpu, gpus)] {
            for (url, pod) in list {
                if let std::collections::btree_map::Entry::Vacant(e) =
                    s.logs.entry((kind, url.clone()))
                {
                    let shown = crate::net::redact_url(&url);
                    debug!(url = %shown, kind = kind.as_str(), "scraping");
                    e.insert(EndpointLog::new(pod));
                }
            }
        }
    }

    /// Fetches every endpoint once and ingests the answers into step `k`'s
    /// telemetry (begun by this scrape when `opens`). The step's window runs
    /// from its opening scrape to its latest one, each stamped when it was sent.
    async fn scrape(&self, k: usize, opens: bool) {
        self.scrape_step(k, opens, false).await;
    }

    /// [`Driver::scrape`]; `resumed`: the step was already under way when
    /// this session took the run up.
    async fn scrape_step(&self, k: usize, opens: bool, resumed: bool) {
        let timeout: Duration = self.inputs.spec.telemetry.timeout.into();
        let (t, stamp) = (self.t(), unix_ms());
        // Every endpoint discovered so far: the keys of the scrape logs.
        let targets: Vec<(Kind, String)> = self.shared().logs.keys().cloned().collect();
        let fetches = targets.into_iter().map(|(kind, url)| {
            let scraper = self.scraper.clone();
            async move {
                let r = fetch::fetch(&scraper, &url, timeout, DEFAULT_MAX_BYTES).await;
                (kind, url, r)
            }
        });
        // At most MAX_FETCHES at once per run, however many endpoints it found.
        let answers: Vec<_> = futures::stream::iter(fetches)
            .buffer_unordered(MAX_FETCHES)
            .collect()
            .await;
        let mut s = self.shared();
        if opens && s.telemetry.len() == k {
            s.telemetry
                .push(StepTelemetry::new(self.filter.clone(), stamp, t, resumed));
        }
        for (kind, url, r) in answers {
            let outcome = match r {
                Ok(p) => {
                    if let Some(step) = s.telemetry.get_mut(k) {
                        step.ingest(kind, &url, t, &p.body, p.format);
                    }
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            };
            if let Some(log) = s.logs.get_mut(&(kind, url)) {
                log.record(t, outcome);
            }
        }
        if let Some(step) = s.telemetry.get_mut(k) {
            step.window.end_unix_ms = stamp;
            step.closed_t = t;
        }
        s.last_scrape_t = t;
    }
}

/// Writes checkpoint number `seq` unless a newer one was written already.
async fn write(
    store: &Store,
    written: &tokio::sync::Mutex<u64>,
    seq: u64,
    cp: &Checkpoint,
) -> bool {
    let mut last = written.lock().await;
    if seq <= *last {
        return true;
    }
    match store.write(cp, seq).await {
        Ok(()) => {
            *last = seq;
            true
        }
        Err(e) => {
            warn!(checkpoint = %store.base, "writing the checkpoint: {e}");
            false
        }
    }
}

/// Runs the session to its end (the task is aborted if the run ends first).
pub async fn drive(inputs: Inputs) {
    let filter = Filter::new(
        &inputs.spec.telemetry.server.include,
        &inputs.spec.telemetry.server.exclude,
    )
    .unwrap_or_default();
    // A predecessor's checkpoint: the measurement goes on from it.
    let restored = match inputs.store.read().await {
        Ok(cp) => cp,
        Err(e) => {
            warn!(checkpoint = %inputs.store.base, "reading the checkpoint: {e}");
            None
        }
    };
    let now = unix_ms();
    let origin_unix_ms = restored.as_ref().map_or(now, |c| c.origin_unix_ms);
    let d = Driver {
        inputs,
        http: http_client(16),
        scraper: fetch::scrape_client(),
        t0: Instant::now(),
        origin_unix_ms,
        offset_s: now.saturating_sub(origin_unix_ms) as f64 / 1e3,
        filter,
        checkpoints: Default::default(),
        written: Default::default(),
        last_checkpoint: Mutex::new(Instant::now()),
    };
    let resume = restored.map(|cp| {
        info!(job = %d.inputs.job, step = ?cp.active, "taking the measurement over from its checkpoint");
        d.restore(cp)
    });
    d.discover().await;
    if let Some((results, workers)) = resume.as_ref().and_then(|r| r.results.clone()) {
        // Every result was pulled and checkpointed before: finish with them.
        finish(&d, &results, workers);
        let bases = ready_workers(&d).await.unwrap_or_default();
        acknowledge(&d, &bases.iter().collect::<Vec<_>>()).await;
        return;
    }
    let Some(bases) = wait_for_workers(&d).await else {
        return;
    };
    let started_at = start_workers(&d, &bases).await;
    d.shared().stage = Stage::Running;
    // Without warmup, the first measured step begins at the shared start
    // instant: its opening boundary scrape is taken right then, not when a
    // progress poll notices the step.
    let first_step_at =
        started_at.filter(|_| !d.inputs.warmup && !d.inputs.resumed && resume.is_none());
    follow(&d, &bases, first_step_at, resume).await;
    collect_results(&d, &bases).await;
}

/// The Job's ready workers, by index.
async fn ready_workers(d: &Driver) -> Option<Vec<Worker>> {
    let i = &d.inputs;
    match workers::pods(&i.client, &i.ns, &i.job).await {
        Ok(pods) => Some(
            pods.iter()
                .filter(|p| p.ready)
                .filter_map(workers::base)
                .map(|base| Worker {
                    base,
                    token: i.token.clone(),
                })
                .collect(),
        ),
        Err(e) => {
            warn!(job = %i.job, "listing the workers: {e}");
            None
        }
    }
}

/// Waits until every worker pod is ready; their base URLs by index.
async fn wait_for_workers(d: &Driver) -> Option<Vec<Worker>> {
    loop {
        if let Some(ready) = ready_workers(d).await
            && ready.len() >= d.inputs.workers as usize
        {
            return Some(ready);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How far ahead of the start request the workers' shared start instant lies:
/// room for every worker to get it, retries included, before it comes.
const START_AHEAD: Duration = Duration::from_millis(1500);

/// Starts every worker at one shared instant, asking them all at once (one
/// slow worker delays nobody), and notes a worker that got it too late.
/// Returns the instant when every worker took it from this request in time.
async fn start_workers(d: &Driver, bases: &[Worker]) -> Option<u64> {
    let at = unix_ms() + START_AHEAD.as_millis() as u64;
    // A worker that cannot be reached by then is given up on (and said so).
    let give_up = at + START_AHEAD.as_millis() as u64;
    let starts = bases.iter().map(|base| async move {
        loop {
            match workers::start(&d.http, base, at).await {
                Ok(now) => return Ok((now, unix_ms())),
                Err(e) if unix_ms() < give_up => {
                    debug!(%base, "starting the worker: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    });
    let answers = futures::future::join_all(starts).await;
    let mut all_on_time = true;
    for (base, answer) in bases.iter().zip(answers) {
        let note = match answer {
            Ok((true, when)) if when > at => format!(
                "the worker at {base} accepted the shared start {} ms late and started then",
                when - at
            ),
            Ok((true, _)) => continue,
            // Started before, by an earlier session: its start instant is not this one.
            Ok((false, _)) => {
                all_on_time = false;
                continue;
            }
            Err(e) => {
                warn!(%base, "could not start the worker: {e}");
                format!("the worker at {base} could not be started: {e}")
            }
        };
        all_on_time = false;
        d.shared().notes.push(note);
    }
    info!(job = %d.inputs.job, workers = bases.len(), "load generators started");
    all_on_time.then_some(at)
}

/// Follows the workers to their end, scraping on the schedule; the first
/// step is opened at `first_step_at` (unix ms) when it is known to begin then.
async fn follow(d: &Driver, bases: &[Worker], first_step_at: Option<u64>, resume: Option<Resume>) {
    let interval: Duration = d.inputs.spec.telemetry.interval.into();
    let per_step_total = match d.inputs.stop {
        StopCondition::Requests(n) => Some(n),
        StopCondition::DurationMs(_) => None,
    };
    let steps = d.inputs.steps;
    let mut active: Option<usize> = None;
    let mut next_step = 0usize;
    let mut next_scrape = Instant::now();
    let mut next_discovery = Instant::now() + REDISCOVER;
    let mut last_done: Option<(Instant, u64)> = None;
    let mut resumed_noted = false;
    if let Some(r) = resume {
        // Taken over from a checkpoint: the steps it holds go on; the step it
        // was measuring continues from its own opening readings.
        (active, next_step, resumed_noted) = (r.active, r.next_step, true);
        if let Some(k) = active {
            // The predecessor's last scrape (restored with the checkpoint).
            let before = d.shared().last_scrape_t;
            d.scrape(k, false).await;
            let mut s = d.shared();
            let now = s.last_scrape_t;
            if let Some(step) = s.telemetry.get_mut(k) {
                step.interruptions.push((before, now));
            }
            s.notes.push(format!(
                "a new controller took this run over from its checkpoint during step {k}: {:.1} s without scrapes, which the energy counters span",
                (now - before).max(0.0)
            ));
            drop(s);
            next_scrape = Instant::now() + interval;
            d.save(active, next_step);
        }
    } else if let Some(at) = first_step_at.filter(|_| steps > 0) {
        let wait = at.saturating_sub(unix_ms());
        tokio::time::sleep(Duration::from_millis(wait)).await;
        d.scrape(0, true).await;
        (active, next_step) = (Some(0), 1);
        next_scrape = Instant::now() + interval;
        d.save(active, next_step);
        info!(job = %d.inputs.job, step = 0, "measured phase started");
    }
    let mut stop_sent = false;
    loop {
        tokio::time::sleep(POLL).await;
        if !stop_sent && d.shared().stop_asked.is_some() {
            // The run ends early: every worker ends its step where it is; the
            // closing boundary scrape follows as at any step's end.
            stop_sent = true;
            let stops = bases.iter().map(|w| workers::stop(&d.http, w));
            for (w, r) in bases.iter().zip(futures::future::join_all(stops).await) {
                if let Err(e) = r {
                    warn!(worker = %w, "stopping the worker: {e}");
                }
            }
            info!(job = %d.inputs.job, "load generators stopped (the run ends early)");
        }
        let polls =
            futures::future::join_all(bases.iter().map(|b| workers::progress(&d.http, b))).await;
        let progress: Vec<WorkerProgress> = polls.into_iter().filter_map(Result::ok).collect();
        if progress.len() == bases.len() {
            record_progress(
                d,
                &progress,
                per_step_total.map(|n| n * steps as u64),
                &mut last_done,
            );
            // Step boundaries: each takes one scrape that closes a step and/or opens the next.
            loop {
                let (end, start) = match active {
                    Some(a) if workers::step_state(&progress, a as u64) == StepState::Ended => {
                        (Some(a), None)
                    }
                    None if next_step < steps
                        && workers::step_state(&progress, next_step as u64)
                            != StepState::NotStarted =>
                    {
                        (None, Some(next_step))
                    }
                    _ => break,
                };
                if let Some(k) = start {
                    // The first step a resumed session sees was under way already.
                    let resumed = d.inputs.resumed && !resumed_noted;
                    if resumed {
                        resumed_noted = true;
                        d.shared().notes.push(format!(
                            "the controller took this run up while it was running (a restart): step {k}'s telemetry starts then, and any earlier step's is missing"
                        ));
                    }
                    active = Some(k);
                    next_step = k + 1;
                    d.scrape_step(k, true, resumed).await;
                    next_scrape = Instant::now() + interval;
                    d.save(active, next_step);
                    info!(job = %d.inputs.job, step = k, "measured phase started");
                }
                if let Some(k) = end {
                    d.scrape(k, false).await;
                    active = None;
                    d.save(active, next_step);
                    info!(job = %d.inputs.job, step = k, "measured phase ended");
                }
            }
            if progress
                .iter()
                .all(|p| p.phase == Some(crate::loadgen::engine::WorkerPhase::Done))
                && active.is_none()
            {
                return;
            }
        }
        if let Some(k) = active
            && Instant::now() >= next_scrape
        {
            d.scrape(k, false).await;
            next_scrape += interval;
            if next_scrape < Instant::now() {
                next_scrape = Instant::now() + interval;
            }
            if d.checkpoint_due() {
                d.save(active, next_step);
            }
        }
        if Instant::now() >= next_discovery {
            d.discover().await;
            next_discovery = Instant::now() + REDISCOVER;
        }
    }
}

fn record_progress(
    d: &Driver,
    progress: &[WorkerProgress],
    total: Option<u64>,
    last: &mut Option<(Instant, u64)>,
) {
    let done: u64 = progress.iter().map(|p| p.done).sum();
    let now = Instant::now();
    let rate = match *last {
        Some((t, n)) if now.duration_since(t) >= Duration::from_secs(2) => {
            *last = Some((now, done));
            Some((done.saturating_sub(n)) as f64 / now.duration_since(t).as_secs_f64())
        }
        Some(_) => None,
        None => {
            *last = Some((now, done));
            None
        }
    };
    let mut s = d.shared();
    let previous = s.progress.as_ref().and_then(|p| p.request_throughput);
    s.progress = Some(api::Progress {
        requests_done: done as i64,
        requests_total: total.map(|t| t as i64),
        request_throughput: rate.map(|r| (r * 10.0).round() / 10.0).or(previous),
    });
}

/// Pulls every worker's result, all at once, then acknowledges them (each
/// worker exits on its acknowledgement, never on a bare fetch: a result whose
/// answer was lost on the way is fetched again). A worker whose result does
/// not come in time is left out, and the steps' coverage says so.
async fn collect_results(d: &Driver, bases: &[Worker]) {
    d.shared().stage = Stage::Collecting;
    let deadline = Instant::now() + COLLECT;
    let pulls = bases.iter().map(|base| async move {
        loop {
            match workers::result(&d.http, base).await {
                Ok(Some(r)) => return Ok(r),
                Ok(None) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Ok(None) => return Err("the worker had not finished".to_string()),
                Err(e) => return Err(e),
            }
        }
    });
    let answers = futures::future::join_all(pulls).await;
    let mut results = Vec::new();
    let mut pulled = Vec::new();
    for (base, answer) in bases.iter().zip(answers) {
        match answer {
            Ok(r) => {
                results.push(r);
                pulled.push(base);
            }
            Err(e) => {
                warn!(%base, "no result from the worker: {e}");
                d.shared().notes.push(format!(
                    "no result from the worker at {base} within {COLLECT:?}: {e}"
                ));
            }
        }
    }
    let workers = bases.len() as u32;
    // Held in the checkpoint before any worker is let go: a successor that
    // finds the workers gone still has their results.
    let cp = d.checkpoint(None, d.inputs.steps, Some((&results, workers)));
    if !write(&d.inputs.store, &d.written, d.next_seq(), &cp).await {
        // Held only here until the reconciler writes them: a restart in
        // between would lose them, but keeping the workers would hold the
        // run open for their whole linger.
        warn!(job = %d.inputs.job, "the results are not checkpointed; letting the workers go all the same");
    }
    finish(d, &results, workers);
    acknowledge(d, &pulled).await;
}

/// Merges the workers' results into the session's steps: everything is in.
fn finish(d: &Driver, results: &[crate::loadgen::cli::WorkerResult], workers: u32) {
    let merged = collect::merge_client(results, d.inputs.steps, workers);
    let mut s = d.shared();
    (s.client, s.client_coverage) = merged.into_iter().unzip();
    s.stage = Stage::Done;
    info!(job = %d.inputs.job, workers = results.len(), "results collected");
}

/// Lets the workers go: their results are held.
async fn acknowledge(d: &Driver, bases: &[&Worker]) {
    let acks = bases.iter().map(|base| async move {
        if let Err(e) = workers::acknowledge(&d.http, base).await {
            debug!(%base, "acknowledging the result: {e}");
        }
    });
    futures::future::join_all(acks).await;
}
