//! The session task: discovery, the workers' start, the scrape schedule with
//! its boundary scrapes, and the collection of the workers' results. The
//! task owns its [`State`]; every change is published for the reconciler.

use crate::clock::unix_ms;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::checkpoint::{self, Checkpoint, SavedStep};
use super::collect::{self, EndpointLog, Kind, StepTelemetry};
use super::follow as follow_machine;
use super::timeseries::{ClientCounts, Timeseries};
use super::workers::{self, Worker};
use super::{Cluster, Fatal, Published, Scrapers, Setup, Stage, State};
use crate::api::{self, BenchmarkRunSpec};
use crate::contract::{WorkerProgress, WorkerResult};
use crate::discovery::Found;
use crate::net::client::{HttpClient, http_client};
use crate::scrape::fetch::{self, DEFAULT_MAX_BYTES};
use crate::telemetry::Filter;

pub struct Inputs {
    pub ns: String,
    pub spec: BenchmarkRunSpec,
    pub workers: i32,
    pub setup: Setup,
    pub state: State,
    /// Where the task publishes its view and document.
    pub out: watch::Sender<Published>,
    /// When the run was asked to end early.
    pub stop_asked: watch::Receiver<Option<std::time::Instant>>,
    /// The run's time series, when its spec asks for one.
    pub timeseries: Option<Arc<std::sync::Mutex<Timeseries>>>,
}

/// How often a worker reports its request counts for the status's progress
/// (step boundaries come at once, whatever this is).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How long a worker whose progress request failed is left before the next.
const PROGRESS_RETRY: Duration = Duration::from_millis(250);
/// How many scrapes one run's session has in flight at most.
const MAX_FETCHES: usize = 32;
/// How often a checkpoint read that fails is tried (over about a minute)
/// before the run fails.
const CHECKPOINT_READS: u32 = 9;
/// How often discovery looks again.
const REDISCOVER: Duration = Duration::from_secs(10);

struct Driver {
    ns: String,
    spec: BenchmarkRunSpec,
    workers: i32,
    setup: Setup,
    state: State,
    out: watch::Sender<Published>,
    stop_asked: watch::Receiver<Option<std::time::Instant>>,
    http: HttpClient,
    scrapers: Scrapers,
    t0: Instant,
    /// Session time 0, unix ms (a session that takes a run over from a
    /// checkpoint keeps its predecessor's, so every `t` lines up).
    origin_unix_ms: u64,
    /// Session time at `t0`.
    offset_s: f64,
    filter: Filter,
    /// The workers' results pulled so far, by worker index.
    results: std::collections::BTreeMap<u32, WorkerResult>,
    /// The collection is over: `results` is all there will be.
    collected: bool,
    /// The step and next step as of the latest checkpoint.
    steps_at: (Option<usize>, usize),
    /// Checkpoints are numbered; a write never replaces a newer one.
    checkpoints: u64,
    written: Arc<tokio::sync::Mutex<u64>>,
    last_checkpoint: Instant,
    timeseries: Option<Arc<std::sync::Mutex<Timeseries>>>,
}

/// Where a session picks a run up from its checkpoint.
struct Resume {
    active: Option<usize>,
    next_step: usize,
    /// The collection was over: the held results are all there will be.
    collected: bool,
}

impl Driver {
    /// Publishes the view and the document after a change of what was measured.
    fn publish(&mut self) {
        let document = Arc::new(self.state.document());
        let view = self.state.view(&document);
        self.out.send_replace(Published { view, document });
    }

    /// Publishes the view after a change of progress or stage alone (the
    /// document stays as it was).
    fn publish_view(&self) {
        self.out
            .send_modify(|p| p.view = self.state.view(&p.document));
    }

    fn t(&self) -> f64 {
        self.offset_s + self.t0.elapsed().as_secs_f64()
    }

    /// Adds to the time series, when the run keeps one.
    fn with_timeseries(&self, f: impl FnOnce(&mut Timeseries)) {
        if let Some(ts) = &self.timeseries {
            f(&mut ts.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    /// Takes the measurement over from a predecessor's checkpoint.
    fn restore(&mut self, cp: Checkpoint) -> Resume {
        let s = &mut self.state;
        s.telemetry = cp
            .steps
            .into_iter()
            .map(|st| st.restore(self.filter.clone()))
            .collect();
        s.notes = cp.notes;
        s.idle = cp.idle;
        s.lost = cp.lost;
        s.last_scrape_t = cp.last_scrape_t;
        s.changed(None);
        self.results = cp
            .results
            .into_iter()
            .flatten()
            .map(|r| (r.worker, r))
            .collect();
        Resume {
            active: cp.active,
            next_step: cp.next_step,
            collected: cp.collected && !self.results.is_empty(),
        }
    }

    /// The measurement as far as it went.
    fn checkpoint(&self, active: Option<usize>, next_step: usize) -> Checkpoint {
        let s = &self.state;
        Checkpoint {
            version: checkpoint::VERSION,
            run_uid: self.setup.run_uid.clone(),
            origin_unix_ms: self.origin_unix_ms,
            taken_unix_ms: unix_ms(),
            last_scrape_t: s.last_scrape_t,
            // The checkpoint sits in the run's namespace: it names no pod
            // the run may not read either.
            steps: s
                .telemetry
                .iter()
                .map(|t| {
                    let mut step = SavedStep::of(t);
                    for g in &mut step.gpu.gpus {
                        s.pods.anonymize(&mut g.pods);
                    }
                    step
                })
                .collect(),
            active,
            next_step,
            notes: s.notes.clone(),
            results: (!self.results.is_empty()).then(|| self.results.values().cloned().collect()),
            workers: self.workers as u32,
            collected: self.collected,
            idle: s.idle.clone(),
            lost: s.lost.clone(),
        }
    }

    /// Writes a checkpoint in the background (boundaries and the periodic
    /// ones: the schedule does not wait on the API server).
    fn save(&mut self, active: Option<usize>, next_step: usize) {
        self.steps_at = (active, next_step);
        let cp = self.checkpoint(active, next_step);
        self.last_checkpoint = Instant::now();
        let seq = self.next_seq();
        let (written, cluster) = (self.written.clone(), self.setup.cluster.clone());
        tokio::spawn(async move { write(&*cluster, &written, seq, cp).await });
    }

    /// Writes a checkpoint now, with the results pulled so far, and says
    /// whether it was written (a worker is let go only once it was).
    async fn checkpoint_results(&mut self) -> bool {
        let (active, next_step) = self.steps_at;
        let cp = self.checkpoint(active, next_step);
        let seq = self.next_seq();
        write(&*self.setup.cluster, &self.written, seq, cp).await
    }

    /// A checkpoint is due during a step.
    fn checkpoint_due(&self) -> bool {
        self.last_checkpoint.elapsed() >= checkpoint::EVERY
    }

    fn next_seq(&mut self) -> u64 {
        self.checkpoints += 1;
        self.checkpoints
    }

    async fn discover(&mut self) {
        let found = self.setup.cluster.discover().await;
        match found {
            Ok(found) => self.adopt(found),
            Err(e) => warn!(ns = %self.ns, "discovery failed: {e}"),
        }
        if !self.state.discovered {
            self.state.discovered = true;
            self.publish_view();
        }
    }

    /// Adds a note to the results.
    fn note(&mut self, note: String) {
        self.state.notes.push(note);
        self.publish();
    }

    /// Adds newly found endpoints; endpoints found before stay (a pod that
    /// went away is reported unreachable, with its gap).
    fn adopt(&mut self, found: Found) {
        let Found {
            refused,
            inference,
            servers,
            gpus,
            notes,
            readable,
            page_bounds,
        } = found;
        let s = &mut self.state;
        s.changed(None);
        s.pods.readable = readable;
        s.pods.inference.extend(
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
                    let mut log = EndpointLog::new(pod);
                    log.max_bytes = page_bounds.get(&url).copied().unwrap_or_default();
                    e.insert(log);
                }
            }
        }
        self.publish();
    }

    /// Fetches every endpoint once and ingests the answers into step `k`'s
    /// telemetry (begun by this scrape when `opens`). The step's window runs
    /// from its opening scrape to its latest one, each stamped when it was sent.
    async fn scrape(&mut self, k: usize, opens: bool) {
        self.scrape_step(k, opens, false).await;
    }

    /// [`Driver::scrape`]; `resumed`: the step was already under way when
    /// this session took the run up.
    async fn scrape_step(&mut self, k: usize, opens: bool, resumed: bool) {
        let (t, stamp, answers) = self.fetch_all(None).await;
        self.ingest_step_as(k, t, stamp, answers, opens, resumed);
    }

    /// Ingests the answers of a scrape of step `k` sent at `t`.
    fn ingest_step(&mut self, k: usize, t: f64, stamp: u64, answers: Vec<Answer>) {
        self.ingest_step_as(k, t, stamp, answers, false, false);
    }

    fn ingest_step_as(
        &mut self,
        k: usize,
        t: f64,
        stamp: u64,
        answers: Vec<Answer>,
        opens: bool,
        resumed: bool,
    ) {
        let s = &mut self.state;
        s.changed(Some(k));
        if opens && s.telemetry.len() == k {
            s.telemetry
                .push(StepTelemetry::new(self.filter.clone(), stamp, t, resumed));
        }
        off_runtime(|| ingest(&mut s.logs, s.telemetry.get_mut(k), answers, t, stamp));
        s.last_scrape_t = t;
        if let Some(step) = self.state.telemetry.get(k) {
            self.with_timeseries(|ts| ts.scrape(k, t, stamp, &step.gpu, &step.server));
        }
        self.publish();
    }

    /// Scrapes the GPU exporters into the idle baseline's telemetry (begun
    /// by this scrape when `opens`).
    async fn scrape_idle(&mut self, idle: &mut Option<StepTelemetry>, opens: bool) {
        let (t, stamp, answers) = self.fetch_all(Some(Kind::Gpu)).await;
        if opens {
            *idle = Some(StepTelemetry::new(self.filter.clone(), stamp, t, false));
        }
        off_runtime(|| ingest(&mut self.state.logs, idle.as_mut(), answers, t, stamp));
        self.state.last_scrape_t = t;
    }

    /// Fetches every endpoint discovered so far (of `kind` only, when given),
    /// at most [`MAX_FETCHES`] at once; with the session time and unix ms
    /// the fetches were sent at.
    fn fetch_all(
        &self,
        kind: Option<Kind>,
    ) -> impl std::future::Future<Output = (f64, u64, Vec<Answer>)> + Send + 'static {
        let timeout: Duration = self.spec.telemetry.timeout.into();
        let (t, stamp) = (self.t(), unix_ms());
        // Every endpoint discovered so far: the keys of the scrape logs.
        let targets: Vec<(Kind, String, usize)> = self
            .state
            .logs
            .iter()
            .filter(|((k, _), _)| kind.is_none_or(|want| *k == want))
            .map(|((k, url), log)| {
                let max = match log.max_bytes {
                    0 => DEFAULT_MAX_BYTES,
                    n => n,
                };
                (*k, url.clone(), max)
            })
            .collect();
        let scrapers = (self.scrapers.gpu.clone(), self.scrapers.server.clone());
        let fetches = targets.into_iter().map(move |(kind, url, max_bytes)| {
            let scraper = match kind {
                Kind::Gpu => scrapers.0.clone(),
                Kind::Server => scrapers.1.clone(),
            };
            async move {
                let began = std::time::Instant::now();
                let r = fetch::fetch(&scraper, &url, timeout, max_bytes).await;
                fetch::record(
                    kind.as_str(),
                    began.elapsed().as_secs_f64(),
                    r.as_ref().map(drop),
                );
                (kind, url, r)
            }
        });
        async move {
            // At most MAX_FETCHES at once per run, however many endpoints it found.
            let answers = futures::stream::iter(fetches)
                .buffer_unordered(MAX_FETCHES)
                .collect()
                .await;
            (t, stamp, answers)
        }
    }
}

/// Runs `f` (parsing pages of up to 16 MiB) where it does not hold up the
/// runtime's other tasks (the probes, other runs' scrapes): on a runtime with
/// worker threads, this thread hands its tasks to another first
/// (`block_in_place`); on a single-threaded runtime (tests), in place.
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// One endpoint's answer to a scrape.
type Answer = (Kind, String, Result<fetch::Payload, fetch::FetchError>);

/// Ingests a scrape's answers into `into` (a step's telemetry, or the idle
/// baseline's), which then spans to this scrape; each answer is logged for
/// its endpoint.
fn ingest(
    logs: &mut std::collections::BTreeMap<(Kind, String), EndpointLog>,
    mut into: Option<&mut StepTelemetry>,
    answers: Vec<Answer>,
    t: f64,
    stamp: u64,
) {
    for (kind, url, r) in answers {
        let outcome = match r {
            Ok(p) => {
                if let Some(step) = into.as_deref_mut() {
                    step.ingest(kind, &url, t, &p.body, p.format);
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Some(log) = logs.get_mut(&(kind, url)) {
            log.record(t, outcome);
        }
    }
    if let Some(step) = into {
        step.window.end_unix_ms = stamp;
        step.closed_t = t;
    }
}

/// Writes checkpoint number `seq` unless a newer one was written already.
async fn write(
    cluster: &dyn Cluster,
    written: &tokio::sync::Mutex<u64>,
    seq: u64,
    cp: Checkpoint,
) -> bool {
    let mut last = written.lock().await;
    if seq <= *last {
        return true;
    }
    let written = match cluster.write_checkpoint(cp, seq).await {
        Ok(()) => {
            *last = seq;
            true
        }
        Err(e) => {
            warn!(checkpoint = %cluster.checkpoint_name(), "writing the checkpoint: {e}");
            false
        }
    };
    checkpoint::record_write(written);
    written
}

/// Runs the session to its end (the task is aborted if the run ends first).
pub async fn drive(inputs: Inputs) {
    let filter = Filter::new(
        &inputs.spec.telemetry.server.include,
        &inputs.spec.telemetry.server.exclude,
    )
    .unwrap_or_default();
    // A predecessor's checkpoint: the measurement goes on from it. One
    // that cannot be read is never taken for none (this session would
    // overwrite what it holds): the read is retried, then the run fails.
    let cluster = inputs.setup.cluster.clone();
    let mut tries = 0;
    let restored = loop {
        match cluster.read_checkpoint().await {
            Ok(cp) => break cp,
            Err(e) if tries + 1 < CHECKPOINT_READS => {
                tries += 1;
                warn!(checkpoint = %cluster.checkpoint_name(), "reading the checkpoint (try {tries}): {e}");
                // 1, 2, 4, 8, 8, ... s: an API server's short outage passes.
                tokio::time::sleep(Duration::from_secs(1 << tries.min(4).saturating_sub(1))).await;
            }
            Err(e) => {
                let mut state = inputs.state;
                state.fatal = Some(Fatal {
                    reason: "CheckpointUnreadable",
                    message: format!(
                        "the run's checkpoint {} could not be read in {CHECKPOINT_READS} tries ({e}); it holds the measurement so far, so it is not overwritten",
                        cluster.checkpoint_name()
                    ),
                });
                let document = Arc::new(state.document());
                let view = state.view(&document);
                inputs.out.send_replace(Published { view, document });
                return;
            }
        }
    };
    let now = unix_ms();
    let origin_unix_ms = restored.as_ref().map_or(now, |c| c.origin_unix_ms);
    let mut d = Driver {
        ns: inputs.ns,
        spec: inputs.spec,
        workers: inputs.workers,
        setup: inputs.setup,
        state: inputs.state,
        out: inputs.out,
        stop_asked: inputs.stop_asked,
        http: http_client(16),
        scrapers: Scrapers::plain(),
        t0: Instant::now(),
        origin_unix_ms,
        offset_s: now.saturating_sub(origin_unix_ms) as f64 / 1e3,
        filter,
        results: Default::default(),
        collected: false,
        steps_at: (None, 0),
        checkpoints: 0,
        written: Default::default(),
        last_checkpoint: Instant::now(),
        timeseries: inputs.timeseries,
    };
    let resume = restored.map(|cp| {
        info!(job = %d.setup.job, step = ?cp.active, "taking the measurement over from its checkpoint");
        d.restore(cp)
    });
    d.state.taking_over = resume.is_some() || d.setup.resumed;
    if d.state.taking_over {
        // What came before the takeover is not kept: the series says so.
        let t = d.t();
        d.with_timeseries(|ts| *ts = Timeseries::resumed(t));
    }
    d.publish();
    // TLS and credentials first: a run that cannot be scraped as it asks
    // ends before its workers start.
    match d.setup.cluster.scrapers().await {
        Ok(scrapers) => {
            for note in &scrapers.notes {
                d.state.notes.push(note.clone());
            }
            d.scrapers = scrapers;
        }
        Err(message) => {
            warn!(job = %d.setup.job, "the scrapes cannot be set up: {message}");
            d.state.fatal = Some(Fatal {
                reason: "ScrapeCredentials",
                message,
            });
            d.publish();
            return;
        }
    }
    d.discover().await;
    if resume.as_ref().is_some_and(|r| r.collected) {
        // Every result was pulled and checkpointed before: finish with them.
        d.collected = true;
        finish(&mut d);
        let bases = ready_workers(&d).await.unwrap_or_default();
        acknowledge(&d.http, &bases.iter().collect::<Vec<_>>()).await;
        return;
    }
    let bases = if d.setup.salvage {
        None
    } else {
        wait_for_workers(&d, resume.is_some() || d.setup.resumed).await
    };
    let Some((bases, wanted)) = bases else {
        salvage(&mut d, resume).await;
        return;
    };
    // A run that starts now (not one taken over) checks its target first.
    if d.setup.preflight && resume.is_none() && !d.setup.resumed && !preflight(&mut d, &bases).await
    {
        return;
    }
    // The GPUs idle, when asked for: after the pre-flight's requests, before
    // the workers send anything.
    if let Some(span) = d.spec.telemetry.idle_baseline
        && resume.is_none()
        && !d.setup.resumed
    {
        idle::idle_baseline(&mut d, span.into()).await;
    }
    let started_at = start_workers(&mut d, &bases).await;
    if d.state.fatal.is_some() {
        return;
    }
    d.state.stage = Stage::Running;
    d.publish_view();
    // Without warmup, the first measured step begins at the shared start
    // instant: its opening boundary scrape is taken right then, not when a
    // worker's progress tells of the step.
    let first_step_at =
        started_at.filter(|_| !d.setup.warmup && !d.setup.resumed && resume.is_none());
    let lost = follow::follow(&mut d, &bases, &wanted, first_step_at, resume).await;
    for (i, why) in &lost {
        d.state.lost.push(super::follow::lost_line(*i, why));
        d.state.notes.push(format!(
            "load generator {i}'s share is lost: {why}; every step it had not handed over has results from the other load generators only, and its client figures are left out"
        ));
    }
    // Every result is in hand and checkpointed (the machine let no worker
    // go before): the collection is over.
    d.state.stage = Stage::Collecting;
    d.collected = true;
    if !d.checkpoint_results().await {
        warn!(job = %d.setup.job, "the end of the collection is not checkpointed");
    }
    finish(&mut d);
}

/// The Job's ready workers, by index.
async fn ready_workers(d: &Driver) -> Option<Vec<Worker>> {
    workers_of(d, true).await
}

/// The Job's workers with an address, by index; only the ready ones when
/// `ready` (a stopping pod is not ready, yet holds its result until its
/// grace period ends).
async fn workers_of(d: &Driver, ready: bool) -> Option<Vec<Worker>> {
    let s = &d.setup;
    match s.cluster.worker_pods().await {
        Ok(pods) => Some(
            pods.iter()
                .filter(|(_, p)| p.ready || !ready)
                .filter_map(|(index, p)| {
                    Some(Worker {
                        index: *index,
                        base: workers::base(p)?,
                        token: s.token.clone(),
                    })
                })
                .collect(),
        ),
        Err(e) => {
            warn!(job = %s.job, "listing the workers: {e}");
            None
        }
    }
}

/// How long a session that takes a running run over waits for its workers
/// to be ready before it follows those that are (one that died meanwhile
/// never will; the machine finds it ended and names it).
const TAKE_OVER_WAIT: Duration = Duration::from_secs(15);

/// Waits until every worker whose result is not held yet is ready; those
/// workers, by index, and the indexes of every worker whose result is
/// awaited (a worker whose result is held may have exited). A session that
/// takes a running run over waits at most [`TAKE_OVER_WAIT`]. `None` when
/// the run ends early first (its Job deleted, cancelled, past its timeout):
/// stopping workers never become ready again.
async fn wait_for_workers(d: &Driver, taking_over: bool) -> Option<(Vec<Worker>, Vec<u32>)> {
    let wanted: Vec<u32> = (0..d.workers.max(0) as u32)
        .filter(|i| !d.results.contains_key(i))
        .collect();
    let until = Instant::now() + TAKE_OVER_WAIT;
    loop {
        if d.stop_asked.borrow().is_some() {
            return None;
        }
        if let Some(ready) = ready_workers(d).await {
            let live: Vec<Worker> = ready
                .into_iter()
                .filter(|w| wanted.contains(&w.index))
                .collect();
            if live.len() >= wanted.len() {
                return Some((live, wanted));
            }
        }
        if taking_over && Instant::now() >= until {
            // Every one with an address is followed, ready or not: its
            // silence or its pod's end then ends its share.
            let all = workers_of(d, false).await.unwrap_or_default();
            let live = all
                .into_iter()
                .filter(|w| wanted.contains(&w.index))
                .collect();
            return Some((live, wanted));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Has the first worker check the target as the run will use it; a failed
/// check ends the measurement (the run fails `PreflightFailed` with what the
/// server answered). Returns whether the run goes on.
async fn preflight(d: &mut Driver, bases: &[Worker]) -> bool {
    let Some(first) = bases.first() else {
        return true;
    };
    match workers::preflight(&d.http, first).await {
        Ok(report) => {
            for note in report.notes {
                d.note(format!("pre-flight: {note}"));
            }
            if let Some(check) = report.failed {
                d.state.fatal = Some(Fatal {
                    reason: "PreflightFailed",
                    message: format!(
                        "the pre-flight check '{}' failed before any load was sent: {}",
                        check.as_str(),
                        report.message
                    ),
                });
                d.publish();
                return false;
            }
            info!(job = %d.setup.job, "pre-flight passed: {}", report.message);
            true
        }
        Err(e) => {
            // A worker image without the pre-flight: the run goes on unchecked.
            d.note(format!("no pre-flight: {e}"));
            true
        }
    }
}

/// How far ahead of the start request the workers' shared start instant lies:
/// room for every worker to get it, retries included, before it comes.
const START_AHEAD: Duration = Duration::from_millis(1500);

/// Starts every worker at one shared instant, asking them all at once (one
/// slow worker delays nobody), and notes a worker that got it too late.
/// Returns the instant when every worker took it from this request in time.
async fn start_workers(d: &mut Driver, bases: &[Worker]) -> Option<u64> {
    let at = unix_ms() + START_AHEAD.as_millis() as u64;
    // A worker that cannot be reached by then is given up on (and said so).
    let give_up = at + START_AHEAD.as_millis() as u64;
    let http = &d.http;
    let starts = bases.iter().map(|base| async move {
        loop {
            match workers::start(http, base, at).await {
                Ok(now) => return Ok((now, unix_ms())),
                Err(e) if e == workers::TOKEN_REFUSED => return Err(e),
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
            Err(e) if e == workers::TOKEN_REFUSED => {
                d.state.fatal = Some(Fatal {
                    reason: "WorkerTokenRejected",
                    message: format!(
                        "the load generators refuse the run's token (HTTP 401): the Secret {} holds another one, so a Secret of that name existed before the run (benchrun creates it and never reads it); delete that Secret and create the run again",
                        d.setup.token_secret
                    ),
                });
                d.publish();
                return None;
            }
            Err(e) => {
                warn!(%base, "could not start the worker: {e}");
                format!("the worker at {base} could not be started: {e}")
            }
        };
        all_on_time = false;
        d.note(note);
    }
    info!(job = %d.setup.job, workers = bases.len(), "load generators started");
    all_on_time.then_some(at)
}

/// Takes over step `k`, which a predecessor was measuring, with a scrape
/// now: the time since its last one is the step's interruption (the energy
/// counters span it; coverage judges the rest).
async fn take_over_step(d: &mut Driver, k: usize) {
    // The predecessor's last scrape (restored with the checkpoint).
    let before = d.state.last_scrape_t;
    d.scrape(k, false).await;
    let now = d.state.last_scrape_t;
    if let Some(step) = d.state.telemetry.get_mut(k) {
        step.interruptions.push((before, now));
    }
    d.state.changed(Some(k));
    d.note(format!(
        "a new controller took this run over from its checkpoint during step {k}: {:.1} s without scrapes, which the energy counters span",
        (now - before).max(0.0)
    ));
}

/// How long a session whose Job is gone waits for its workers' results:
/// within the pods' grace period, and before the run ends without them.
const SALVAGE: Duration = Duration::from_secs(10);

/// The run ended before the session followed its workers: their Job was
/// deleted while no session followed it (this controller started since), or
/// it ended early while the session waited for them. The workers are asked to
/// stop (a stopping pod has already; an orphaned one, or one never started,
/// has not), the step a predecessor left open is closed, and the results
/// they hold are pulled.
async fn salvage(d: &mut Driver, resume: Option<Resume>) {
    let workers: Vec<Worker> = workers_of(d, false)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|w| !d.results.contains_key(&w.index))
        .collect();
    stop_workers(&d.http, &workers).await;
    if let Some(r) = resume {
        if let Some(k) = r.active {
            take_over_step(d, k).await;
        }
        d.save(None, r.next_step);
    }
    info!(job = %d.setup.job, workers = workers.len(), "the Job is gone: pulling what its workers hold");
    collect_results(d, &workers, SALVAGE).await;
}

/// Asks every one of `bases` to stop, all at once (one that cannot be
/// reached is logged: its result, if any, is pulled all the same).
async fn stop_workers(http: &HttpClient, bases: &[Worker]) {
    let stops = bases.iter().map(|w| workers::stop(http, w));
    for (w, r) in bases.iter().zip(futures::future::join_all(stops).await) {
        if let Err(e) = r {
            warn!(worker = %w, "stopping the worker: {e}");
        }
    }
}

fn record_progress(
    d: &mut Driver,
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
    d.with_timeseries(|ts| {
        let sum = |f: fn(&WorkerProgress) -> u64| progress.iter().map(f).sum::<u64>();
        let counts = ClientCounts {
            done,
            ok: sum(|p| p.ok),
            errors: sum(|p| p.errors),
            output_tokens: sum(|p| p.output_tokens),
        };
        ts.progress(d.t(), unix_ms(), counts);
    });
    let s = &mut d.state;
    let previous = s.progress.as_ref().and_then(|p| p.request_throughput);
    let next = Some(api::Progress {
        requests_done: done as i64,
        requests_total: total.map(|t| t as i64),
        request_throughput: rate.map(|r| (r * 10.0).round() / 10.0).or(previous),
    });
    if s.progress != next {
        s.progress = next;
        d.publish_view();
    }
}

/// Pulls every worker's result, all at once, then acknowledges them (each
/// worker exits on its acknowledgement, never on a bare fetch: a result whose
/// answer was lost on the way is fetched again). A worker whose result does
/// not come in time is left out, and the steps' coverage says so.
async fn collect_results(d: &mut Driver, bases: &[Worker], within: Duration) {
    d.state.stage = Stage::Collecting;
    d.publish_view();
    let deadline = Instant::now() + within;
    let http = &d.http;
    let missing: Vec<&Worker> = bases
        .iter()
        .filter(|w| !d.results.contains_key(&w.index))
        .collect();
    let pulls = missing.iter().map(|base| async move {
        loop {
            match workers::result(http, base).await {
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
    let mut pulled = Vec::new();
    for (base, answer) in missing.into_iter().zip(answers) {
        match answer {
            Ok(r) => {
                d.results.insert(base.index, r);
                pulled.push(base);
            }
            Err(e) => {
                warn!(%base, "no result from the worker: {e}");
                d.note(format!(
                    "no result from the worker at {base} within {within:?}: {e}"
                ));
            }
        }
    }
    // Held in the checkpoint before any worker is let go: a successor that
    // finds the workers gone still has their results.
    d.collected = true;
    let mut tries = 0;
    while !d.checkpoint_results().await {
        tries += 1;
        if tries >= follow_machine::SAVE_TRIES {
            // Held only here until the reconciler writes them: a worker not
            // let go exits at the end of its linger anyway, so holding it
            // keeps nothing and holds the run open.
            d.note(format!(
                "{tries} checkpoint writes in a row failed: the results pulled from the stopping load generators are held by this controller alone until the run's results are written"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_secs_f64(follow_machine::RETRY_S)).await;
    }
    finish(d);
    acknowledge(&d.http, &pulled).await;
}

/// Merges the workers' results into the session's steps: everything is in.
fn finish(d: &mut Driver) {
    let results: Vec<WorkerResult> = d.results.values().cloned().collect();
    let merged = collect::merge_client(&results, d.setup.steps, d.workers.max(1) as u32);
    let s = &mut d.state;
    (s.client, s.client_coverage) = merged.into_iter().unzip();
    s.changed(None);
    s.stage = Stage::Done;
    d.publish();
    info!(job = %d.setup.job, workers = results.len(), "results collected");
}

/// Lets the workers go: their results are held.
async fn acknowledge(http: &HttpClient, bases: &[&Worker]) {
    let acks = bases.iter().map(|base| async move {
        if let Err(e) = workers::acknowledge(http, base).await {
            debug!(%base, "acknowledging the result: {e}");
        }
    });
    futures::future::join_all(acks).await;
}

mod follow;
mod idle;

pub use idle::IDLE_SETTLE_MAX;

#[cfg(test)]
mod tests;
