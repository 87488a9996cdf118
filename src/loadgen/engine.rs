//! Runs a plan's steps: closed loops of N streams, or open loops at a request
//! rate (constant or Poisson arrivals) with each send's lateness recorded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Semaphore};

use super::client::{HttpClient, Outgoing, http_client, send};
use super::plan::{Arrival, LoadPlan, Step, StopCondition};
use super::request::{ErrorKind, Prompts, Record, body, path};
use crate::stats::Summary;

/// Bound on one request; a server that never ends a stream is cut here.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// What one worker measured in one step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepResult {
    pub concurrency: Option<u32>,
    pub rate: Option<f64>,
    pub requests: u64,
    pub successes: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    /// The first few error messages, for the run's status.
    pub error_samples: Vec<String>,
    pub duration_s: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub requests_per_s: f64,
    pub output_tokens_per_s: f64,
    pub total_tokens_per_s: f64,
    pub ttft_s: Summary,
    pub itl_s: Summary,
    pub inter_token_gap_s: Summary,
    pub latency_s: Summary,
    pub output_tokens_per_s_per_user: Summary,
    /// Open loop: how late each send left against its schedule.
    pub send_lateness_s: Option<Summary>,
    /// Whether any request's token counts were counted from the stream
    /// rather than taken from the server's `usage`.
    pub tokens_counted: bool,
}

/// This worker's share of a total split across `workers`.
pub fn share(total: u64, workers: u32, index: u32) -> u64 {
    let w = u64::from(workers.max(1));
    total / w + u64::from(u64::from(index) < total % w)
}

/// Runs every step of `plan` as worker `index`, in order.
pub async fn run(plan: &LoadPlan, index: u32, api_key: Option<&str>) -> Vec<StepResult> {
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
    let ctx = Arc::new(Ctx {
        client: http_client(max_streams),
        plan: plan.clone(),
        headers,
        prompts: Mutex::new(Prompts::new(plan.seed, index)),
        urls: plan
            .urls
            .iter()
            .map(|u| format!("{}{}", u.trim_end_matches('/'), path(plan.endpoint)))
            .collect(),
    });
    let mut results = Vec::new();
    for step in &plan.steps {
        results.push(run_step(&ctx, step, index).await);
    }
    results
}

struct Ctx {
    client: HttpClient,
    plan: LoadPlan,
    headers: Vec<(String, String)>,
    prompts: Mutex<Prompts>,
    urls: Vec<String>,
}

impl Ctx {
    async fn one(&self, n: u64) -> Record {
        let (bytes, words) = {
            let mut prompts = self.prompts.lock().await;
            let p = prompts.next(&self.plan.input);
            (
                Bytes::from(serde_json::to_vec(&body(&self.plan, &p)).unwrap_or_default()),
                p.words,
            )
        };
        let url = &self.urls[(n as usize) % self.urls.len().max(1)];
        send(
            &self.client,
            Outgoing {
                url,
                headers: &self.headers,
                body: bytes,
                streaming: self.plan.streaming,
                prompt_words: words,
                timeout: REQUEST_TIMEOUT,
            },
        )
        .await
    }
}

async fn run_step(ctx: &Arc<Ctx>, step: &Step, index: u32) -> StepResult {
    let workers = ctx.plan.workers;
    let streams = step
        .concurrency
        .map(|c| share(u64::from(c), workers, index).max(1));
    let warmup = share(ctx.plan.warmup_requests, workers, index);
    if warmup > 0 {
        closed_loop(ctx, streams.unwrap_or(1), Limit::Requests(warmup)).await;
    }
    let limit = match ctx.plan.stop {
        StopCondition::Requests(n) => Limit::Requests(share(n, workers, index)),
        StopCondition::DurationMs(ms) => Limit::Until(Instant::now() + Duration::from_millis(ms)),
    };
    let started = Instant::now();
    let (records, lateness) = match step.rate {
        Some(rate) => {
            let rate = rate / f64::from(workers.max(1));
            let (r, l) = open_loop(ctx, rate, streams, limit, index).await;
            (r, Some(l))
        }
        None => (closed_loop(ctx, streams.unwrap_or(1), limit).await, None),
    };
    summarize(step, &records, started.elapsed().as_secs_f64(), lateness)
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

async fn closed_loop(ctx: &Arc<Ctx>, streams: u64, limit: Limit) -> Vec<Record> {
    let tickets = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let (ctx, tickets) = (ctx.clone(), tickets.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let t = tickets.fetch_add(1, Ordering::Relaxed);
                    if !limit.allows(t) {
                        return mine;
                    }
                    mine.push(ctx.one(t).await);
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
        tokio::time::sleep_until(at).await;
        let permit = cap
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        lateness.push(start.elapsed().as_secs_f64() - due);
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let r = ctx.one(ticket).await;
            drop(permit);
            r
        }));
    }
    let mut records = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await {
            records.push(r);
        }
    }
    (records, lateness)
}

fn summarize(
    step: &Step,
    records: &[Record],
    duration_s: f64,
    lateness: Option<Vec<f64>>,
) -> StepResult {
    let ok: Vec<&Record> = records.iter().filter(|r| r.ok).collect();
    let mut errors = BTreeMap::new();
    let mut error_samples = Vec::new();
    for (kind, msg) in records.iter().filter_map(|r| r.error.as_ref()) {
        *errors.entry(*kind).or_insert(0) += 1;
        if error_samples.len() < 5 && !error_samples.contains(msg) {
            error_samples.push(msg.clone());
        }
    }
    let input_tokens: u64 = ok.iter().map(|r| r.input_tokens).sum();
    let output_tokens: u64 = ok.iter().map(|r| r.output_tokens).sum();
    let per_s = |x: f64| {
        if duration_s > 0.0 {
            x / duration_s
        } else {
            0.0
        }
    };
    StepResult {
        concurrency: step.concurrency,
        rate: step.rate,
        requests: records.len() as u64,
        successes: ok.len() as u64,
        errors,
        error_samples,
        duration_s,
        input_tokens,
        output_tokens,
        requests_per_s: per_s(ok.len() as f64),
        output_tokens_per_s: per_s(output_tokens as f64),
        total_tokens_per_s: per_s((input_tokens + output_tokens) as f64),
        ttft_s: Summary::of(ok.iter().filter_map(|r| r.ttft).collect()),
        itl_s: Summary::of(ok.iter().filter_map(|r| r.itl()).collect()),
        inter_token_gap_s: Summary::of(ok.iter().flat_map(|r| r.inter_token_gaps()).collect()),
        latency_s: Summary::of(ok.iter().map(|r| r.latency).collect()),
        output_tokens_per_s_per_user: Summary::of(
            ok.iter()
                .filter_map(|r| r.itl().filter(|v| *v > 0.0).map(|v| 1.0 / v))
                .collect(),
        ),
        send_lateness_s: lateness.map(Summary::of),
        tokens_counted: ok
            .iter()
            .any(|r| r.source == super::request::TokenSource::Counted),
    }
}

#[cfg(test)]
mod tests;
