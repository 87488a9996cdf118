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
    /// The run's telemetry budget (`--max-run-telemetry-mib`).
    budget: super::budget::Budget,
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
        budget: super::budget::Budget::new(0),
    };
    d.budget = d.setup.budget();
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

mod checkpointing;
mod end;
mod follow;
mod idle;
mod scrape;
mod start;

use self::checkpointing::write;
use self::end::{acknowledge, finish, salvage, stop_workers};
use self::scrape::Answer;
use self::start::{preflight, ready_workers, start_workers, wait_for_workers, workers_of};

pub use idle::IDLE_SETTLE_MAX;

#[cfg(test)]
mod tests;
