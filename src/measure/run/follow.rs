//! The shell of the measured part ([`crate::measure::follow`]): it feeds the
//! machine what happens — each worker's long-polled progress, the workers'
//! pods ending, a stop asked, pulls and checkpoint writes coming back, time
//! passing — and performs the effects it answers with. Nothing the machine
//! asks waits behind anything else: pulls, checkpoint writes, periodic
//! scrapes and discovery rounds run as tasks beside the loop, so a boundary
//! scrape goes out the moment the last worker's step change arrives.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Answer, Driver, PROGRESS_EVERY, PROGRESS_RETRY, REDISCOVER, Resume};
use crate::contract::{ProgressQuery, WorkerPhase, WorkerProgress, WorkerResult};
use crate::discovery::Found;
use crate::loadgen::plan::StopCondition;
use crate::measure::follow::{Effect, Event, Follow};
use crate::measure::workers::{self, Worker};
use crate::net::client::HttpClient;

/// How often time passes for the machine (its bounds on silence, pulls and
/// stops are judged then).
const TICK: Duration = Duration::from_millis(500);
/// How often the workers' pods are looked at for one that ended (from the
/// shared watch of workers: no request to the API server).
const POD_LOOK: Duration = Duration::from_secs(2);

/// What a task beside the loop brings back.
enum Back {
    Machine(Event, Option<WorkerResult>),
    /// A periodic scrape of step `k`, sent at session time `t`.
    Scraped {
        k: usize,
        t: f64,
        stamp: u64,
        answers: Vec<Answer>,
    },
    Discovered(Result<Found, String>),
    /// The workers whose pod ended, as the cluster said.
    PodsEnded(Vec<Event>),
    Nothing,
}

/// Follows one worker's progress as a long poll, sending every answer (or
/// failure) to the loop, until the worker is done or the loop stops listening.
async fn follow_worker(
    http: HttpClient,
    worker: Worker,
    to: mpsc::Sender<(u32, Result<WorkerProgress, String>)>,
) {
    let mut q = ProgressQuery {
        after: 0,
        done: None,
        wait_ms: PROGRESS_EVERY.as_millis() as u64,
    };
    loop {
        let answer = workers::progress(&http, &worker, q).await;
        let failed = answer.is_err();
        if let Ok(p) = &answer {
            (q.after, q.done) = (p.seq, Some(p.done));
        }
        let done = matches!(&answer, Ok(p) if p.phase == WorkerPhase::Done);
        if to.send((worker.index, answer)).await.is_err() || done {
            return;
        }
        if failed {
            tokio::time::sleep(PROGRESS_RETRY).await;
        }
    }
}

/// Follows the workers to their end, scraping on the schedule; the first
/// step is opened at `first_step_at` (unix ms) when it is known to begin
/// then. `wanted`: the workers whose results are awaited (`bases` are those
/// of them with an address). Returns the workers whose share was lost, with why.
pub(super) async fn follow(
    d: &mut Driver,
    bases: &[Worker],
    wanted: &[u32],
    first_step_at: Option<u64>,
    resume: Option<Resume>,
) -> Vec<(u32, String)> {
    let interval: Duration = d.spec.telemetry.interval.into();
    let per_step_total = match d.setup.stop {
        StopCondition::Requests(n) => Some(n),
        StopCondition::DurationMs(_) => None,
    };
    let steps = d.setup.steps;
    let (mut active, mut next_step) = (None, 0usize);
    let mut resumed_noted = false;
    if let Some(r) = resume {
        // Taken over from a checkpoint: the steps it holds go on; the step it
        // was measuring continues from its own opening readings.
        (active, next_step, resumed_noted) = (r.active, r.next_step, true);
        if let Some(k) = active {
            super::take_over_step(d, k).await;
            d.save(active, next_step);
        }
    } else if let Some(at) = first_step_at.filter(|_| steps > 0) {
        let wait = at.saturating_sub(crate::clock::unix_ms());
        tokio::time::sleep(Duration::from_millis(wait)).await;
        d.scrape(0, true).await;
        (active, next_step) = (Some(0), 1);
        d.save(active, next_step);
        info!(job = %d.setup.job, step = 0, "measured phase started");
    }
    // Every worker whose result is not held is followed; one without a pod
    // to follow is found ended at the first look at the pods.
    let indexes = wanted.to_vec();
    let by_index: BTreeMap<u32, Worker> = bases.iter().map(|w| (w.index, w.clone())).collect();
    let mut m = Follow::new(steps, &indexes, active, next_step);
    let (to, mut answers) = mpsc::channel(bases.len().max(1) * 2);
    let mut followers = JoinSet::new();
    for w in bases {
        followers.spawn(follow_worker(d.http.clone(), w.clone(), to.clone()));
    }
    drop(to);
    let mut tasks: JoinSet<Back> = JoinSet::new();
    // Let-gos are sent to their end, even once the machine has ended.
    let mut acks = JoinSet::new();
    let mut stop_asked = d.stop_asked.clone();
    let mut stop_gone = false;
    let mut listening = true;
    let mut ticks = tokio::time::interval(TICK);
    let mut next_scrape = Instant::now() + interval;
    let mut scraping = false;
    let mut next_discovery = Instant::now() + REDISCOVER;
    let mut discovering = false;
    let mut last_pod_look = Instant::now();
    let mut looking_at_pods = false;
    let mut last_done: Option<(Instant, u64)> = None;
    let mut lost = Vec::new();
    // The machine's first look: a session with nothing left to follow
    // closes what it holds open and ends at once.
    let mut events = vec![Event::Tick];
    if d.stop_asked.borrow().is_some() {
        events.push(Event::StopAsked);
    }
    loop {
        let mut progressed = false;
        for event in events.drain(..) {
            progressed |= matches!(event, Event::Progress(..));
            let effects = m.handle(d.t(), event);
            for effect in effects {
                match effect {
                    Effect::Open(k) => {
                        // The first step a resumed session sees was under way already.
                        let resumed = d.setup.resumed && !resumed_noted;
                        if resumed {
                            resumed_noted = true;
                            d.note(format!(
                                "the controller took this run up while it was running (a restart): step {k}'s telemetry starts then, and any earlier step's is missing"
                            ));
                        }
                        d.scrape_step(k, true, resumed).await;
                        next_scrape = Instant::now() + interval;
                        let (a, n) = m.steps_at();
                        d.save(a, n);
                        info!(job = %d.setup.job, step = k, "measured phase started");
                    }
                    Effect::Close(k) => {
                        d.scrape(k, false).await;
                        let (a, n) = m.steps_at();
                        d.save(a, n);
                        info!(job = %d.setup.job, step = k, "measured phase ended");
                    }
                    Effect::Pull(i) => {
                        let (http, w) = (d.http.clone(), by_index[&i].clone());
                        tasks.spawn(async move {
                            match workers::result(&http, &w).await {
                                Ok(Some(r)) => Back::Machine(Event::Pulled(i), Some(r)),
                                Ok(None) => Back::Machine(Event::PullFailed(i), None),
                                Err(e) => {
                                    debug!(worker = %w, "pulling the result: {e}");
                                    Back::Machine(Event::PullFailed(i), None)
                                }
                            }
                        });
                    }
                    Effect::Save(holding) => {
                        // Every result pulled so far, the steps as they stand.
                        let (a, n) = m.steps_at();
                        d.steps_at = (a, n);
                        let cp = d.checkpoint(a, n);
                        let seq = d.next_seq();
                        let (written, cluster) = (d.written.clone(), d.setup.cluster.clone());
                        tasks.spawn(async move {
                            let ok = super::write(&*cluster, &written, seq, cp).await;
                            Back::Machine(Event::Saved { holding, ok }, None)
                        });
                    }
                    Effect::Ack(list) => {
                        let ws: Vec<Worker> = list.iter().map(|i| by_index[i].clone()).collect();
                        let http = d.http.clone();
                        acks.spawn(async move {
                            super::acknowledge(&http, &ws.iter().collect::<Vec<_>>()).await;
                        });
                    }
                    Effect::StopWorkers => {
                        let (http, ws) = (d.http.clone(), bases.to_vec());
                        tasks.spawn(async move {
                            super::stop_workers(&http, &ws).await;
                            Back::Nothing
                        });
                        info!(job = %d.setup.job, "load generators asked to stop (the run ends early)");
                    }
                    Effect::Lost(i, why) => {
                        warn!(job = %d.setup.job, worker = i, "the load generator's share is lost: {why}");
                    }
                    Effect::Note(note) => d.note(note),
                    Effect::Done => {}
                }
            }
        }
        if progressed && let Some(progress) = m.progress() {
            super::record_progress(
                d,
                &progress,
                per_step_total.map(|n| n * steps as u64),
                &mut last_done,
            );
        }
        if m.is_done() {
            lost.extend(m.lost().map(|(i, why)| (i, why.to_string())));
            break;
        }
        let active = m.steps_at().0;
        tokio::select! {
            got = answers.recv(), if listening => {
                let mut take = |(i, answer): (u32, Result<WorkerProgress, String>)| match answer {
                    Ok(p) => events.push(Event::Progress(i, p)),
                    Err(e) => {
                        debug!(worker = i, "reading the worker's progress: {e}");
                        events.push(Event::ProgressFailed(i));
                    }
                };
                match got {
                    Some(first) => {
                        take(first);
                        // Whatever else has come in: one look at all of it.
                        while let Ok(more) = answers.try_recv() {
                            take(more);
                        }
                    }
                    // Every follower ended: the ticks go on.
                    None => listening = false,
                }
            }
            Some(back) = tasks.join_next() => match back {
                Ok(Back::Machine(event, result)) => {
                    if let (Event::Pulled(i), Some(r)) = (&event, result) {
                        d.results.insert(*i, r);
                    }
                    events.push(event);
                }
                Ok(Back::Scraped { k, t, stamp, answers }) => {
                    scraping = false;
                    // A sample sent before a boundary that has closed its
                    // step since is not the step's: it is left out.
                    if active == Some(k) && t >= d.state.last_scrape_t {
                        d.ingest_step(k, t, stamp, answers);
                        if d.checkpoint_due() {
                            let (a, n) = m.steps_at();
                            d.save(a, n);
                        }
                    }
                }
                Ok(Back::Discovered(found)) => {
                    discovering = false;
                    match found {
                        Ok(found) => d.adopt(found),
                        Err(e) => warn!(ns = %d.ns, "discovery failed: {e}"),
                    }
                    next_discovery = Instant::now() + REDISCOVER;
                }
                Ok(Back::PodsEnded(ended)) => {
                    looking_at_pods = false;
                    events.extend(ended);
                }
                Ok(Back::Nothing) => {}
                Err(e) => warn!(job = %d.setup.job, "a task of the session failed: {e}"),
            },
            _ = ticks.tick() => {
                events.push(Event::Tick);
                // Beside the loop, as every call to the cluster: a boundary
                // never waits for it.
                if last_pod_look.elapsed() >= POD_LOOK && !looking_at_pods {
                    last_pod_look = Instant::now();
                    looking_at_pods = true;
                    let (cluster, indexes) = (d.setup.cluster.clone(), indexes.clone());
                    tasks.spawn(async move { Back::PodsEnded(pods_ended(&*cluster, &indexes).await) });
                }
            }
            _ = tokio::time::sleep_until(next_scrape), if active.is_some() && !scraping => {
                if let Some(k) = active {
                    scraping = true;
                    let fetch = d.fetch_all(None);
                    tasks.spawn(async move {
                        let (t, stamp, answers) = fetch.await;
                        Back::Scraped { k, t, stamp, answers }
                    });
                }
                next_scrape += interval;
                if next_scrape < Instant::now() {
                    next_scrape = Instant::now() + interval;
                }
            }
            _ = tokio::time::sleep_until(next_discovery), if !discovering => {
                discovering = true;
                let cluster = d.setup.cluster.clone();
                tasks.spawn(async move { Back::Discovered(cluster.discover().await) });
            }
            changed = stop_asked.changed(), if !stop_gone => match changed {
                Ok(()) if stop_asked.borrow_and_update().is_some() => events.push(Event::StopAsked),
                Ok(()) => {}
                Err(_) => stop_gone = true,
            },
        }
    }
    tasks.abort_all();
    followers.abort_all();
    while acks.join_next().await.is_some() {}
    lost
}

/// The workers among `indexes` whose pod ended (killed, evicted, failed) or
/// is gone, as the cluster says now.
async fn pods_ended(cluster: &dyn super::Cluster, indexes: &[u32]) -> Vec<Event> {
    let Ok(pods) = cluster.worker_pods().await else {
        return Vec::new();
    };
    indexes
        .iter()
        .filter_map(|i| match pods.iter().find(|(j, _)| j == i) {
            None => Some(Event::PodEnded(*i, "its pod is gone".into())),
            Some((_, p)) if p.ended => Some(Event::PodEnded(
                *i,
                format!("its pod {} ended without handing over its result", p.name),
            )),
            Some(_) => None,
        })
        .collect()
}
