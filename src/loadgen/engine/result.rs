//! What one worker measured in one step, the mergeable distributions behind
//! it, and the exact merge of several workers' steps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::saturation::ClientLoad;
use crate::loadgen::plan::{Goodput, Step};
use crate::loadgen::request::{ErrorKind, Record, TokenSource};
use crate::stats::{Stats, Summary};

/// What one worker measured in one step.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepResult {
    pub concurrency: Option<u32>,
    pub rate: Option<f64>,
    pub requests: u64,
    pub successes: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    /// The first few error messages, for the run's status.
    pub error_samples: Vec<String>,
    /// Requests sent a second time, on a new connection, because the server
    /// had closed the kept-alive one before reading them (each counted once
    /// in `requests`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retried: u64,
    /// The server closes the connections it answered on, so every request
    /// took a new connection (its connect time is in its TTFT).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_connection_per_request: bool,
    /// Successful requests whose output was shorter than they asked for:
    /// the server stopped them first (an end-of-sequence token), so the
    /// output lengths are not the asked ones.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stopped_early: u64,
    pub duration_s: f64,
    pub input_tokens: u64,
    /// Each successful request's input tokens: the server's count where it
    /// gave one (`usage.prompt_tokens`), else the prompt's length as built.
    #[serde(default)]
    pub input_tokens_per_request: Summary,
    /// How the synthetic prompts were sized (absent for a dataset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_sizing: Option<crate::loadgen::tokenize::PromptSizing>,
    /// Every generated token, reasoning included.
    pub output_tokens: u64,
    /// Of the output tokens, those spent reasoning (a reasoning model's
    /// thinking before its answer); the answer tokens are the rest.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
    pub requests_per_s: f64,
    pub output_tokens_per_s: f64,
    pub total_tokens_per_s: f64,
    pub ttft_s: Summary,
    /// Time to the second token, from the send.
    #[serde(default)]
    pub time_to_second_token_s: Summary,
    /// Time to the first answer token: after a reasoning model's reasoning,
    /// else the TTFT (`ttft_s` is the first token of either kind). Requests
    /// that only reasoned have none.
    #[serde(default)]
    pub time_to_first_answer_token_s: Summary,
    pub itl_s: Summary,
    pub inter_token_gap_s: Summary,
    pub latency_s: Summary,
    pub output_tokens_per_s_per_user: Summary,
    /// Open loop: how late each send left against its schedule.
    pub send_lateness_s: Option<Summary>,
    /// Successful requests that met every per-request objective, and per second
    /// (when the plan has objectives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput_requests: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput_per_s: Option<f64>,
    /// Whether any request's token counts were counted from the stream
    /// rather than taken from the server's `usage`.
    pub tokens_counted: bool,
    /// The measured phase (after warmup), wall clock.
    #[serde(default)]
    pub started_unix_ms: u64,
    #[serde(default)]
    pub ended_unix_ms: u64,
    /// The load generator was the bottleneck: its own delay is in the
    /// timings (`client_load` says how).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_saturated: bool,
    /// How loaded the load generator was (the worst worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_load: Option<ClientLoad>,
    /// The run was stopped during this step (cancel, timeout): the figures
    /// cover its measured part, up to the stop.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// The distributions behind the summaries, mergeable exactly across workers
    /// (left out once merged, in the run's results).
    #[serde(default, skip_serializing_if = "StepStats::is_empty")]
    pub stats: StepStats,
}

/// The mergeable distributions of one step.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepStats {
    pub ttft_s: Stats,
    #[serde(default)]
    pub time_to_second_token_s: Stats,
    #[serde(default)]
    pub time_to_first_answer_token_s: Stats,
    pub itl_s: Stats,
    pub inter_token_gap_s: Stats,
    pub latency_s: Stats,
    pub output_tokens_per_s_per_user: Stats,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lateness_s: Option<Stats>,
    #[serde(default)]
    pub input_tokens: Stats,
}

impl StepStats {
    pub fn is_empty(&self) -> bool {
        *self == StepStats::default()
    }

    fn merge(&mut self, o: &StepStats) {
        self.ttft_s.merge(&o.ttft_s);
        self.time_to_second_token_s.merge(&o.time_to_second_token_s);
        self.time_to_first_answer_token_s
            .merge(&o.time_to_first_answer_token_s);
        self.itl_s.merge(&o.itl_s);
        self.inter_token_gap_s.merge(&o.inter_token_gap_s);
        self.latency_s.merge(&o.latency_s);
        self.output_tokens_per_s_per_user
            .merge(&o.output_tokens_per_s_per_user);
        self.input_tokens.merge(&o.input_tokens);
        match (&mut self.send_lateness_s, &o.send_lateness_s) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => self.send_lateness_s = Some(b.clone()),
            _ => {}
        }
    }
}

impl StepResult {
    /// The step as all workers together ran it: counts summed, distributions
    /// merged exactly, throughput over the span from the first worker's start
    /// to the last one's end. `None` for no parts.
    pub fn merge(parts: &[StepResult]) -> Option<StepResult> {
        let first = parts.first()?;
        let mut stats = StepStats::default();
        let mut errors: BTreeMap<ErrorKind, u64> = BTreeMap::new();
        let mut samples: Vec<String> = Vec::new();
        for p in parts {
            stats.merge(&p.stats);
            for (k, n) in &p.errors {
                *errors.entry(*k).or_insert(0) += n;
            }
            for m in &p.error_samples {
                if samples.len() < 5 && !samples.contains(m) {
                    samples.push(m.clone());
                }
            }
        }
        let started = parts.iter().map(|p| p.started_unix_ms).min().unwrap_or(0);
        let ended = parts.iter().map(|p| p.ended_unix_ms).max().unwrap_or(0);
        let duration_s = if started > 0 && ended > started {
            (ended - started) as f64 / 1e3
        } else {
            parts.iter().map(|p| p.duration_s).fold(0.0, f64::max)
        };
        let sum = |f: fn(&StepResult) -> u64| parts.iter().map(f).sum::<u64>();
        let (successes, input_tokens, output_tokens) = (
            sum(|p| p.successes),
            sum(|p| p.input_tokens),
            sum(|p| p.output_tokens),
        );
        let per_s = |x: f64| {
            if duration_s > 0.0 {
                x / duration_s
            } else {
                0.0
            }
        };
        let goodput_requests = parts
            .iter()
            .filter_map(|p| p.goodput_requests)
            .reduce(|a, b| a + b);
        Some(StepResult {
            concurrency: parts
                .iter()
                .filter_map(|p| p.concurrency)
                .reduce(|a, b| a + b),
            rate: parts.iter().filter_map(|p| p.rate).reduce(|a, b| a + b),
            requests: sum(|p| p.requests),
            successes,
            errors,
            error_samples: samples,
            duration_s,
            input_tokens,
            input_tokens_per_request: stats.input_tokens.summary(),
            prompt_sizing: parts.iter().find_map(|p| p.prompt_sizing.clone()),
            output_tokens,
            reasoning_tokens: sum(|p| p.reasoning_tokens),
            requests_per_s: per_s(successes as f64),
            output_tokens_per_s: per_s(output_tokens as f64),
            total_tokens_per_s: per_s((input_tokens + output_tokens) as f64),
            ttft_s: stats.ttft_s.summary(),
            time_to_second_token_s: stats.time_to_second_token_s.summary(),
            time_to_first_answer_token_s: stats.time_to_first_answer_token_s.summary(),
            itl_s: stats.itl_s.summary(),
            inter_token_gap_s: stats.inter_token_gap_s.summary(),
            latency_s: stats.latency_s.summary(),
            output_tokens_per_s_per_user: stats.output_tokens_per_s_per_user.summary(),
            send_lateness_s: stats.send_lateness_s.as_ref().map(Stats::summary),
            goodput_requests,
            goodput_per_s: goodput_requests.map(|n| per_s(n as f64)),
            tokens_counted: parts.iter().any(|p| p.tokens_counted),
            started_unix_ms: started,
            ended_unix_ms: ended.max(first.ended_unix_ms),
            client_saturated: parts.iter().any(|p| p.client_saturated),
            stopped: parts.iter().any(|p| p.stopped),
            retried: parts.iter().map(|p| p.retried).sum(),
            stopped_early: parts.iter().map(|p| p.stopped_early).sum(),
            new_connection_per_request: parts.iter().any(|p| p.new_connection_per_request),
            client_load: ClientLoad::worst(parts.iter().filter_map(|p| p.client_load.clone())),
            stats,
        })
    }
}

pub(super) fn summarize(
    step: &Step,
    records: &[Record],
    duration_s: f64,
    lateness: Option<Vec<f64>>,
    goodput: Option<&Goodput>,
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
    let mut stats = StepStats::default();
    for r in &ok {
        if let Some(t) = r.ttft {
            stats.ttft_s.add(t);
        }
        if let Some(t) = r.ttst() {
            stats.time_to_second_token_s.add(t);
        }
        if let Some(t) = r.ttfat {
            stats.time_to_first_answer_token_s.add(t);
        }
        if let Some(itl) = r.itl() {
            stats.itl_s.add(itl);
            if itl > 0.0 {
                stats.output_tokens_per_s_per_user.add(1.0 / itl);
            }
        }
        r.inter_token_gaps()
            .for_each(|g| stats.inter_token_gap_s.add(g));
        stats.latency_s.add(r.latency);
        stats.input_tokens.add(r.input_tokens as f64);
    }
    stats.send_lateness_s = lateness.map(|l| {
        let mut s = Stats::default();
        l.into_iter().for_each(|v| s.add(v));
        s
    });
    let one = StepResult {
        concurrency: step.concurrency,
        rate: step.rate,
        requests: records.len() as u64,
        successes: ok.len() as u64,
        errors,
        error_samples,
        retried: records.iter().filter(|r| r.retried).count() as u64,
        stopped_early: records.iter().filter(|r| r.stopped_early()).count() as u64,
        new_connection_per_request: false,
        duration_s,
        input_tokens: ok.iter().map(|r| r.input_tokens).sum(),
        input_tokens_per_request: Summary::default(),
        prompt_sizing: None,
        output_tokens: ok.iter().map(|r| r.output_tokens).sum(),
        reasoning_tokens: ok.iter().map(|r| r.reasoning_tokens).sum(),
        requests_per_s: 0.0,
        output_tokens_per_s: 0.0,
        total_tokens_per_s: 0.0,
        ttft_s: Summary::default(),
        itl_s: Summary::default(),
        inter_token_gap_s: Summary::default(),
        latency_s: Summary::default(),
        output_tokens_per_s_per_user: Summary::default(),
        time_to_second_token_s: Summary::default(),
        time_to_first_answer_token_s: Summary::default(),
        goodput_per_s: None,
        send_lateness_s: None,
        goodput_requests: goodput.map(|g| {
            ok.iter()
                .filter(|r| g.met(r.ttft, r.itl(), r.latency))
                .count() as u64
        }),
        tokens_counted: ok.iter().any(|r| r.source == TokenSource::Counted),
        started_unix_ms: 0,
        ended_unix_ms: 0,
        client_saturated: false,
        client_load: None,
        stopped: false,
        stats,
    };
    // One worker's step is the merge of one part, so the summaries and rates
    // come from the same arithmetic either way (no wall-clock span yet: the
    // merge divides by `duration_s`).
    StepResult::merge(std::slice::from_ref(&one)).unwrap_or(one)
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
