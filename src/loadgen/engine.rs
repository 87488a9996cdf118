//! Runs a plan's steps: closed loops of N streams, or open loops at a request
//! rate (constant or Poisson arrivals) with each send's lateness recorded.

use crate::clock::unix_ms;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;

use super::client::{Clients, Outgoing, send};
use super::plan::{Arrival, ConversationPlan, LoadPlan, Step, StopCondition};
use super::request::Record;
use super::workload::{Request, Workload};
use crate::net::client::http_client_tls;
use serde::{Deserialize, Serialize};

mod result;
pub mod saturation;

use self::result::summarize;
pub use self::result::{StepResult, StepStats};

/// Bound on one request; a server that never ends a stream is cut here.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Where a worker is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[repr(u8)]
pub enum WorkerPhase {
    /// Waiting for `POST /start`.
    #[default]
    Waiting = 0,
    Warmup = 1,
    Measuring = 2,
    Done = 3,
    /// The pause before a trial (`spec.repeat.coolDown`): no load is sent.
    CoolDown = 4,
}

impl WorkerPhase {
    /// The phase of its number on `/metrics` (anything unknown reads as waiting).
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => WorkerPhase::Warmup,
            2 => WorkerPhase::Measuring,
            3 => WorkerPhase::Done,
            4 => WorkerPhase::CoolDown,
            _ => WorkerPhase::Waiting,
        }
    }
}

/// The answer of `GET /progress` ([`crate::contract`]): where the worker is and what it has done.
/// Requests are counted in the measured phases only.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerProgress {
    /// Bumped at every change of phase or step (the events the controller
    /// waits for); starts at 1.
    pub seq: u64,
    pub phase: WorkerPhase,
    /// The step under way (0-based).
    pub step: u64,
    pub done: u64,
    pub ok: u64,
    pub errors: u64,
    pub output_tokens: u64,
    /// When the worker entered its phase and step, by its own clock (unix ms).
    pub since_unix_ms: u64,
    /// It was asked to stop (`POST /stop`, SIGTERM): `Done` then ends the
    /// share early, at `step`, which may never have been measured.
    #[serde(default)]
    pub stopped: bool,
}

/// The step part of [`Progress`]'s position.
const STEP_MASK: u64 = (1 << 56) - 1;

/// Live counters of a worker, read by its `/metrics` while the run goes.
/// Requests are counted in the measured phases only.
#[derive(Debug, Default)]
pub struct Progress {
    /// The phase (top 8 bits) and the step running (0-based, the rest),
    /// changed together: a reader never sees a new step with the phase of
    /// the step before (the next step's start before its warmup).
    position: AtomicU64,
    pub done: AtomicU64,
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    pub in_flight: AtomicU64,
    pub output_tokens: AtomicU64,
    /// Asked to stop (the run was cancelled or timed out): no request is
    /// sent after it, the ones in flight are dropped uncounted, and the step
    /// under way ends there with what it measured.
    pub stop: tokio_util::sync::CancellationToken,
    /// Changes of phase or step so far (see [`WorkerProgress::seq`]).
    pub seq: AtomicU64,
    /// When the phase or step last changed (unix ms).
    pub since_unix_ms: AtomicU64,
    /// Woken at every change of phase or step.
    pub change: tokio::sync::Notify,
}

impl Progress {
    /// The phase and the step, read together.
    pub fn position(&self) -> (WorkerPhase, u64) {
        let p = self.position.load(Ordering::Acquire);
        (WorkerPhase::from_code((p >> 56) as u8), p & STEP_MASK)
    }

    pub fn phase(&self) -> WorkerPhase {
        self.position().0
    }

    /// Enters `phase` of step `step`, both at once.
    fn enter(&self, phase: WorkerPhase, step: u64) {
        let p = (u64::from(phase as u8) << 56) | (step & STEP_MASK);
        if self.position.swap(p, Ordering::AcqRel) != p {
            self.changed();
        }
    }

    /// Enters `phase` of the step under way.
    fn set(&self, phase: WorkerPhase) {
        self.enter(phase, self.position().1);
    }

    /// [`Progress::set`], for tests of what reads the progress.
    #[cfg(test)]
    pub fn set_phase_for_test(&self, p: WorkerPhase) {
        self.set(p);
    }

    /// [`Progress::enter`], for tests of what reads the progress.
    #[cfg(test)]
    pub fn enter_for_test(&self, p: WorkerPhase, step: u64) {
        self.enter(p, step);
    }

    /// A phase or step changed: stamp it and wake whoever waits on it.
    fn changed(&self) {
        self.since_unix_ms.store(unix_ms(), Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);
        self.change.notify_waiters();
    }

    /// Where the worker is now (`seq` starts at 1).
    pub fn snapshot(&self) -> WorkerProgress {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (phase, step) = self.position();
        WorkerProgress {
            seq: self.seq.load(Ordering::Acquire) + 1,
            phase,
            step,
            done: load(&self.done),
            ok: load(&self.ok),
            errors: load(&self.errors),
            output_tokens: load(&self.output_tokens),
            since_unix_ms: load(&self.since_unix_ms),
            stopped: self.stop.is_cancelled(),
        }
    }
}

/// This worker's share of a total split across `workers`.
pub fn share(total: u64, workers: u32, index: u32) -> u64 {
    let w = u64::from(workers.max(1));
    total / w + u64::from(u64::from(index) < total % w)
}

/// Worker `index`'s part of `step` run by `workers` workers: its share of the
/// streams (at least one) and of the request rate. Each worker reports this
/// part, so the merge of all workers' results gives the step's totals.
pub fn worker_step(step: &Step, workers: u32, index: u32) -> Step {
    Step {
        concurrency: step
            .concurrency
            .map(|c| share(u64::from(c), workers, index).max(1) as u32),
        rate: step.rate.map(|r| r / f64::from(workers.max(1))),
    }
}

/// Runs every step of `plan` as worker `index`, in order. Fails only when the
/// workload cannot be read (a dataset that is missing or malformed).
pub async fn run(
    plan: &LoadPlan,
    index: u32,
    api_key: Option<&str>,
) -> Result<Vec<StepResult>, String> {
    run_with(plan, index, api_key, Arc::new(Progress::default())).await
}

/// [`run`], counting into `progress` as it goes.
pub async fn run_with(
    plan: &LoadPlan,
    index: u32,
    api_key: Option<&str>,
    progress: Arc<Progress>,
) -> Result<Vec<StepResult>, String> {
    Ok(run_prepared(prepare(plan, index, api_key).await?, progress).await)
}

/// A worker ready to send its load: its prompts sized in the target's
/// tokens, its connections' habits learned.
pub struct Prepared(Ctx);

/// What comes before the load, outside every measured window (a worker
/// does it before the shared start instant): the server's token costs of
/// the prompt vocabulary, asked on a connection of their own, and, for
/// streams, whether the server closes a connection after a stream
/// (llama.cpp does), so that the load takes a new connection per request
/// from its first (see [`super::client`]).
pub async fn prepare(
    plan: &LoadPlan,
    index: u32,
    api_key: Option<&str>,
) -> Result<Prepared, String> {
    let mut headers: Vec<(String, String)> = plan.headers.clone().into_iter().collect();
    if let Some(key) = api_key {
        headers.push(("authorization".into(), format!("Bearer {key}")));
    }
    let max_streams = plan
        .steps
        .iter()
        .filter_map(|s| s.concurrency)
        .max()
        .unwrap_or(64) as usize;
    let tls = plan.tls.options()?;
    let (costs, sizing) =
        super::tokenize::sizing(&http_client_tls(1, &tls)?, plan, &headers, &tls).await?;
    let clients = Clients::new(max_streams, &tls)?;
    let workload = Workload::load(plan, index, costs)?;
    if plan.streaming {
        let probe = workload.request(plan, index, 0);
        let url = format!(
            "{}{}",
            plan.urls[0].trim_end_matches('/'),
            plan.request_path()
        );
        clients
            .learn(
                Outgoing {
                    url: &url,
                    headers: &headers,
                    body: super::preflight::short(&probe.body),
                    streaming: true,
                    prompt_words: probe.words,
                    max_tokens: None,
                    timeout: REQUEST_TIMEOUT,
                    keep_text: false,
                },
                Duration::from_millis(50),
            )
            .await;
    }
    Ok(Prepared(Ctx {
        clients,
        plan: plan.clone(),
        headers,
        workload,
        sizing,
        index,
        urls: plan
            .urls
            .iter()
            .map(|u| format!("{}{}", u.trim_end_matches('/'), plan.request_path()))
            .collect(),
        progress: Arc::default(),
    }))
}

/// The load of a [`prepare`]d worker, counting into `progress`.
pub async fn run_prepared(prepared: Prepared, progress: Arc<Progress>) -> Vec<StepResult> {
    let index = prepared.0.index;
    let ctx = Arc::new(Ctx {
        progress,
        ..prepared.0
    });
    let plan = &ctx.plan;
    let mut results = Vec::new();
    for (i, (step, cool_down_ms)) in plan.measured_steps().enumerate() {
        if ctx.progress.stop.is_cancelled() {
            break;
        }
        if cool_down_ms > 0 {
            // Before a trial: nothing is sent, and a stop ends the pause.
            ctx.progress.enter(WorkerPhase::CoolDown, i as u64);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(cool_down_ms)) => {}
                _ = ctx.progress.stop.cancelled() => break,
            }
        }
        if let Some(r) = run_step(&ctx, step, i as u64, index).await {
            results.push(r);
        }
    }
    ctx.progress.set(WorkerPhase::Done);
    results
}

struct Ctx {
    clients: Clients,
    plan: LoadPlan,
    headers: Vec<(String, String)>,
    workload: Workload,
    sizing: Option<super::tokenize::PromptSizing>,
    index: u32,
    urls: Vec<String>,
    progress: Arc<Progress>,
}

impl Ctx {
    /// Request number `n` of this worker, alone.
    async fn one(&self, n: u64) -> Record {
        let req = self.workload.request(&self.plan, self.index, n);
        self.send(n, req, false).await
    }

    async fn send(&self, n: u64, req: Request, keep_text: bool) -> Record {
        let url = &self.urls[(n as usize) % self.urls.len().max(1)];
        let p = &self.progress;
        p.in_flight.fetch_add(1, Ordering::Relaxed);
        let r = send(
            &self.clients,
            Outgoing {
                url,
                headers: &self.headers,
                body: req.body,
                streaming: self.plan.streaming,
                prompt_words: req.words,
                max_tokens: req.max_tokens,
                timeout: REQUEST_TIMEOUT,
                keep_text,
            },
        )
        .await;
        p.in_flight.fetch_sub(1, Ordering::Relaxed);
        if p.phase() == WorkerPhase::Measuring {
            p.done.fetch_add(1, Ordering::Relaxed);
            if r.ok {
                p.ok.fetch_add(1, Ordering::Relaxed);
                p.output_tokens
                    .fetch_add(r.output_tokens, Ordering::Relaxed);
            } else {
                p.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }
}

/// One step; `None` when a stop came before its measured phase began.
async fn run_step(ctx: &Arc<Ctx>, step: &Step, k: u64, index: u32) -> Option<StepResult> {
    let workers = ctx.plan.workers;
    // This worker's part: what it runs, and what its result reports.
    let step = &worker_step(step, workers, index);
    let streams = step.concurrency.map(u64::from);
    let warmup = share(ctx.plan.warmup_requests, workers, index);
    if warmup > 0 {
        ctx.progress.enter(WorkerPhase::Warmup, k);
        closed_loop(
            ctx,
            streams.unwrap_or(1),
            Limit::Requests(warmup),
            index,
            None,
        )
        .await;
    }
    if ctx.progress.stop.is_cancelled() {
        return None;
    }
    ctx.progress.enter(WorkerPhase::Measuring, k);
    let probe = saturation::Probe::start();
    let started_unix_ms = unix_ms();
    let limit = match ctx.plan.stop {
        StopCondition::Requests(n) => Limit::Requests(share(n, workers, index)),
        StopCondition::DurationMs(ms) => Limit::Until(Instant::now() + Duration::from_millis(ms)),
    };
    let started = Instant::now();
    let (records, lateness) = match step.rate {
        Some(rate) => {
            let (r, l) = open_loop(ctx, rate, streams, limit, index).await;
            (r, Some(l))
        }
        None => (
            closed_loop(
                ctx,
                streams.unwrap_or(1),
                limit,
                index,
                ctx.plan.conversations.clone(),
            )
            .await,
            None,
        ),
    };
    if let Some(path) = &ctx.plan.server_timings_file
        && let Err(e) = write_timings(path, k, index, &records)
    {
        tracing::warn!(
            "could not write the request timings to {}: {e}",
            path.display()
        );
    }
    let mut r = summarize(
        step,
        &records,
        started.elapsed().as_secs_f64(),
        lateness,
        ctx.plan.goodput.as_ref(),
    );
    (r.started_unix_ms, r.ended_unix_ms) = (started_unix_ms, unix_ms());
    let load = probe.finish(r.send_lateness_s.as_ref().map(|l| l.p99));
    r.client_saturated = load.saturated();
    r.client_load = Some(load);
    r.stopped = ctx.progress.stop.is_cancelled();
    r.prompt_sizing = ctx.sizing.clone();
    r.new_connection_per_request = ctx.clients.server_closes_connections();
    Some(r)
}

/// Debug (`--server-timings`): each measured request of step `k` as a JSON
/// line, the client's times beside the server's own where it gave them.
fn write_timings(
    path: &std::path::Path,
    k: u64,
    worker: u32,
    records: &[Record],
) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?,
    );
    let ms = |s: Option<f64>| s.map(|s| s * 1e3);
    for r in records {
        let line = serde_json::json!({
            "step": k,
            "worker": worker,
            "ok": r.ok,
            "ttftMs": ms(r.ttft),
            "latencyMs": r.latency * 1e3,
            "itlMs": ms(r.itl()),
            "inputTokens": r.input_tokens,
            "outputTokens": r.output_tokens,
            "retried": r.retried,
            "server": r.server,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()
}

#[derive(Clone, Copy)]
enum Limit {
    Requests(u64),
    Until(Instant),
}

impl Limit {
    fn allows(&self, ticket: u64) -> bool {
        match self {
            Limit::Requests(n) => ticket < *n,
            Limit::Until(t) => Instant::now() < *t,
        }
    }
}

/// A closed loop of `streams` streams of worker `index`. With
/// `conversations`, each stream runs conversations from the pool of
/// `count` distinct ones: their turns in order, every turn carrying the
/// earlier turns and their answers, a failed turn ending its conversation.
/// `limit` counts requests (turns).
async fn closed_loop(
    ctx: &Arc<Ctx>,
    streams: u64,
    limit: Limit,
    index: u32,
    conversations: Option<ConversationPlan>,
) -> Vec<Record> {
    let turns = conversations.as_ref().map(|c| c.turns);
    let tickets = Arc::new(AtomicU64::new(0));
    // This worker's conversations, numbered as they begin.
    let begun = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let (ctx, tickets, begun) = (ctx.clone(), tickets.clone(), begun.clone());
            let conversations = conversations.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let mut history: Vec<String> = Vec::new();
                    let id = conversations.as_ref().map(|c| {
                        let n = begun.fetch_add(1, Ordering::Relaxed);
                        Workload::conversation_id(n, ctx.plan.workers, index, c.count)
                    });
                    for turn in 0..turns.unwrap_or(1).max(1) {
                        let t = tickets.fetch_add(1, Ordering::Relaxed);
                        if !limit.allows(t) || ctx.progress.stop.is_cancelled() {
                            return mine;
                        }
                        let request = async {
                            match id {
                                None => ctx.one(t).await,
                                Some(id) => {
                                    let req = ctx
                                        .workload
                                        .conversation_turn(&ctx.plan, id, turn, &history);
                                    history.push(req.user_text.clone());
                                    let mut r = ctx.send(t, req, true).await;
                                    history.push(r.text.take().unwrap_or_default());
                                    r
                                }
                            }
                        };
                        // A stop drops the request in flight, uncounted.
                        let r = tokio::select! {
                            r = request => r,
                            _ = ctx.progress.stop.cancelled() => return mine,
                        };
                        let ok = r.ok;
                        mine.push(r);
                        if !ok {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all
}

async fn open_loop(
    ctx: &Arc<Ctx>,
    rate: f64,
    cap: Option<u64>,
    limit: Limit,
    index: u32,
) -> (Vec<Record>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(ctx.plan.seed.wrapping_add(u64::from(index) + 1));
    let cap = Arc::new(Semaphore::new(
        cap.map_or(Semaphore::MAX_PERMITS, |c| c as usize),
    ));
    let start = tokio::time::Instant::now();
    let mut due = 0.0f64;
    let mut lateness = Vec::new();
    let mut tasks = Vec::new();
    for ticket in 0u64.. {
        if !limit.allows(ticket) {
            break;
        }
        let gap = match ctx.plan.arrival {
            Arrival::Constant => 1.0 / rate.max(1e-9),
            Arrival::Poisson => -(1.0 - rng.random::<f64>()).ln() / rate.max(1e-9),
        };
        if ticket > 0 {
            due += gap;
        }
        let at = start + Duration::from_secs_f64(due);
        if let Limit::Until(end) = limit
            && at.into_std() >= end
        {
            break;
        }
        let stop = &ctx.progress.stop;
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = stop.cancelled() => break,
        }
        let permit = tokio::select! {
            p = cap.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stop.cancelled() => break,
        };
        lateness.push(start.elapsed().as_secs_f64() - due);
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            // A stop drops the request in flight, uncounted.
            let r = tokio::select! {
                r = ctx.one(ticket) => Some(r),
                _ = ctx.progress.stop.cancelled() => None,
            };
            drop(permit);
            r
        }));
    }
    let mut records = Vec::new();
    for t in tasks {
        if let Ok(Some(r)) = t.await {
            records.push(r);
        }
    }
    (records, lateness)
}

#[cfg(test)]
mod tests;
