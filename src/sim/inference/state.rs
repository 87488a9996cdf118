//! What the inference simulator counts: vLLM's metrics (names, types, labels
//! and buckets of vLLM V1) and the ground truth of every request it served.

use std::collections::VecDeque;

use serde::Serialize;

use crate::expose::{Histogram, NumberStyle, Page};
use crate::scrape::Kind;
use crate::stats::{Stats, Summary};

/// vLLM V1's bucket bounds.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const REQUEST_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// How a request ended.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Ok,
    /// Answered 500 on purpose (`--error-rate`).
    InjectedError,
    /// The stream was cut on purpose (`--truncate-rate`).
    Truncated,
    /// The client went away before the end.
    Cancelled,
}

/// One request as the server saw it. Times in seconds from its arrival.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: u64,
    pub received_unix_ms: u64,
    pub outcome: Outcome,
    /// Stalled on purpose (`--stall-rate`).
    pub stalled: bool,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    pub queue_s: f64,
    pub ttft_s: Option<f64>,
    /// Time to the first answer token (after the reasoning, in reasoning
    /// mode); `None` for a reply that only reasoned.
    pub ttfat_s: Option<f64>,
    /// Of the output tokens, those sent as reasoning.
    pub reasoning_tokens: u64,
    /// (e2e − TTFT) / (output tokens − 1).
    pub itl_s: Option<f64>,
    pub e2e_s: f64,
}

/// The gauges the engine publishes after each step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Gauges {
    pub running: usize,
    pub waiting: usize,
    pub kv_usage: f64,
}

/// Counters, histograms and the ground truth.
pub struct State {
    model: String,
    pub gauges: Gauges,
    prompt_tokens: u64,
    generation_tokens: u64,
    success: u64,
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
    queue: Histogram,
    prompt_hist: Histogram,
    generation_hist: Histogram,
    truth: Truth,
}

/// The ground truth, as served on `/sim/truth`.
struct Truth {
    requests: u64,
    refused: u64,
    by_outcome: [u64; 4],
    stalled: u64,
    prompt_tokens: u64,
    output_tokens: u64,
    ttft: Stats,
    itl: Stats,
    e2e: Stats,
    queue: Stats,
    records: VecDeque<Record>,
    records_cap: usize,
    records_dropped: u64,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct TruthView<'a> {
    pub model: &'a str,
    pub requests: u64,
    pub refused: u64,
    pub succeeded: u64,
    pub injected_errors: u64,
    pub truncated: u64,
    pub cancelled: u64,
    pub stalled: u64,
    /// Prompt tokens of the requests that reached the engine.
    pub prompt_tokens: u64,
    /// Tokens sent to clients.
    pub output_tokens: u64,
    /// Over successful requests; every gap between two tokens for `itlS`.
    pub ttft_s: Summary,
    pub itl_s: Summary,
    pub e2e_s: Summary,
    pub queue_s: Summary,
    /// The newest records (at most `--truth-records`), oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<&'a Record>>,
    pub records_dropped: u64,
}

impl State {
    pub fn new(model: &str, records_cap: usize) -> Self {
        Self {
            model: model.to_string(),
            gauges: Gauges::default(),
            prompt_tokens: 0,
            generation_tokens: 0,
            success: 0,
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(REQUEST_BUCKETS),
            queue: Histogram::new(REQUEST_BUCKETS),
            prompt_hist: Histogram::new(TOKEN_BUCKETS),
            generation_hist: Histogram::new(TOKEN_BUCKETS),
            truth: Truth {
                requests: 0,
                refused: 0,
                by_outcome: [0; 4],
                stalled: 0,
                prompt_tokens: 0,
                output_tokens: 0,
                ttft: Stats::default(),
                itl: Stats::default(),
                e2e: Stats::default(),
                queue: Stats::default(),
                records: VecDeque::new(),
                records_cap,
                records_dropped: 0,
            },
        }
    }

    /// A request refused before the engine (bad body, too long).
    pub fn refused(&mut self) {
        self.truth.requests += 1;
        self.truth.refused += 1;
    }

    /// The first token of a request: prefill is done.
    pub fn first_token(&mut self, prompt_tokens: u64, ttft: f64) {
        self.prompt_tokens += prompt_tokens;
        self.ttft.observe(ttft);
    }

    /// A token sent; `gap` is the time since the previous one (none for the first).
    pub fn token(&mut self, gap: Option<f64>) {
        self.generation_tokens += 1;
        self.truth.output_tokens += 1;
        if let Some(g) = gap {
            self.itl.observe(g);
            self.truth.itl.add(g);
        }
    }

    /// A request ended.
    pub fn finish(&mut self, r: Record) {
        let t = &mut self.truth;
        t.requests += 1;
        t.by_outcome[r.outcome as usize] += 1;
        t.stalled += u64::from(r.stalled);
        t.prompt_tokens += r.prompt_tokens;
        if r.outcome == Outcome::Ok {
            self.success += 1;
            self.e2e.observe(r.e2e_s);
            self.queue.observe(r.queue_s);
            self.prompt_hist.observe(r.prompt_tokens as f64);
            self.generation_hist.observe(r.output_tokens as f64);
            if let Some(v) = r.ttft_s {
                t.ttft.add(v);
            }
            t.e2e.add(r.e2e_s);
            t.queue.add(r.queue_s);
        }
        if t.records_cap > 0 {
            if t.records.len() == t.records_cap {
                t.records.pop_front();
                t.records_dropped += 1;
            }
            t.records.push_back(r);
        }
    }

    pub fn truth(&self, with_records: bool) -> TruthView<'_> {
        let t = &self.truth;
        TruthView {
            model: &self.model,
            requests: t.requests,
            refused: t.refused,
            succeeded: t.by_outcome[Outcome::Ok as usize],
            injected_errors: t.by_outcome[Outcome::InjectedError as usize],
            truncated: t.by_outcome[Outcome::Truncated as usize],
            cancelled: t.by_outcome[Outcome::Cancelled as usize],
            stalled: t.stalled,
            prompt_tokens: t.prompt_tokens,
            output_tokens: t.output_tokens,
            ttft_s: t.ttft.summary(),
            itl_s: t.itl.summary(),
            e2e_s: t.e2e.summary(),
            queue_s: t.queue.summary(),
            records: with_records.then(|| t.records.iter().collect()),
            records_dropped: t.records_dropped,
        }
    }

    /// The `/metrics` page, as vLLM V1 writes it.
    pub fn render(&self) -> String {
        let labels: &[(&str, &str)] = &[("engine", "0"), ("model_name", &self.model)];
        let mut p = Page::new(NumberStyle::Python);
        let gauges = [
            (
                "vllm:num_requests_running",
                "Number of requests in model execution batches.",
                self.gauges.running as f64,
            ),
            (
                "vllm:num_requests_waiting",
                "Number of requests waiting to be processed.",
                self.gauges.waiting as f64,
            ),
            (
                "vllm:kv_cache_usage_perc",
                "KV-cache usage. 1 means 100 percent usage.",
                self.gauges.kv_usage,
            ),
        ];
        for (name, help, v) in gauges {
            p.family(name, help, Kind::Gauge).sample(name, labels, v);
        }
        let counters = [
            (
                "vllm:num_preemptions_total",
                "Cumulative number of preemption from the engine.",
                0,
            ),
            (
                "vllm:prompt_tokens_total",
                "Number of prefill tokens processed.",
                self.prompt_tokens,
            ),
            (
                "vllm:generation_tokens_total",
                "Number of generation tokens processed.",
                self.generation_tokens,
            ),
        ];
        for (name, help, v) in counters {
            p.family(name, help, Kind::Counter)
                .sample(name, labels, v as f64);
        }
        let success = "vllm:request_success_total";
        p.family(
            success,
            "Count of successfully processed requests.",
            Kind::Counter,
        );
        for reason in ["stop", "length", "abort"] {
            let v = if reason == "length" { self.success } else { 0 };
            let mut l = labels.to_vec();
            l.insert(1, ("finished_reason", reason));
            p.sample(success, &l, v as f64);
        }
        let histograms = [
            (
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
                &self.ttft,
            ),
            (
                "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.",
                &self.itl,
            ),
            (
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
                &self.e2e,
            ),
            (
                "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.",
                &self.queue,
            ),
            (
                "vllm:request_prompt_tokens",
                "Number of prefill tokens processed.",
                &self.prompt_hist,
            ),
            (
                "vllm:request_generation_tokens",
                "Number of generation tokens processed.",
                &self.generation_hist,
            ),
        ];
        for (name, help, h) in histograms {
            p.family(name, help, Kind::Histogram)
                .histogram(name, labels, h);
        }
        p.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::Format;
    use crate::telemetry::{Filter, ServerMetrics};

    fn record(outcome: Outcome, out: u64) -> Record {
        Record {
            id: 1,
            received_unix_ms: 0,
            outcome,
            stalled: false,
            prompt_tokens: 10,
            output_tokens: out,
            queue_s: 0.001,
            ttft_s: Some(0.02),
            ttfat_s: Some(0.02),
            reasoning_tokens: 0,
            itl_s: Some(0.005),
            e2e_s: 0.02 + 0.005 * (out - 1) as f64,
        }
    }

    #[test]
    fn metrics_and_truth_agree_and_the_page_reads_as_vllm() {
        let mut s = State::new("sim/llm", 2);
        for _ in 0..3 {
            s.first_token(10, 0.02);
            s.token(None);
            for _ in 1..4 {
                s.token(Some(0.005));
            }
            s.finish(record(Outcome::Ok, 4));
        }
        s.finish(record(Outcome::Truncated, 2));
        s.refused();
        let truth = s.truth(true);
        assert_eq!(
            (
                truth.requests,
                truth.succeeded,
                truth.truncated,
                truth.refused
            ),
            (5, 3, 1, 1)
        );
        assert_eq!(truth.output_tokens, 12);
        assert_eq!(truth.itl_s.count, 9);
        assert_eq!(truth.records.as_ref().unwrap().len(), 2);
        assert_eq!(truth.records_dropped, 2);

        let page = s.render();
        let mut server = ServerMetrics::new(Filter::default());
        let report = server.ingest("sim", 0.0, page.as_bytes(), Format::Prometheus);
        assert_eq!(report.skipped, 0, "{page}");
        let fams = server.results();
        let find = |n: &str| {
            fams.iter()
                .find(|f| f.name == n)
                .unwrap_or_else(|| panic!("{n}"))
        };
        for (name, kind) in [
            ("vllm:num_requests_running", Kind::Gauge),
            ("vllm:kv_cache_usage_perc", Kind::Gauge),
            ("vllm:generation_tokens_total", Kind::Counter),
            ("vllm:request_success_total", Kind::Counter),
            ("vllm:time_to_first_token_seconds", Kind::Histogram),
            ("vllm:inter_token_latency_seconds", Kind::Histogram),
            ("vllm:e2e_request_latency_seconds", Kind::Histogram),
            ("vllm:request_queue_time_seconds", Kind::Histogram),
        ] {
            assert_eq!(find(name).kind, kind, "{name}");
        }
        assert!(
            page.contains(
                "vllm:generation_tokens_total{engine=\"0\",model_name=\"sim/llm\"} 12.0\n"
            )
        );
        assert!(page.contains(
            "vllm:inter_token_latency_seconds_count{engine=\"0\",model_name=\"sim/llm\"} 9.0\n"
        ));
    }
}
