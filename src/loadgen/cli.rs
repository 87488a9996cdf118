//! `benchrun loadgen`: as a Job worker (`--worker`, the plan from the
//! environment) or standalone from a shell.

use std::process::ExitCode;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::engine::{self, StepResult};
use super::plan::{
    API_KEY_ENV, Arrival, Endpoint, InputPlan, LoadPlan, PLAN_ENV, PLAN_SCHEMA_VERSION, Step,
    StopCondition,
};

/// The result schema this build writes.
pub const RESULT_SCHEMA_VERSION: u32 = 1;

/// One worker's result: its steps, in plan order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerResult {
    pub schema_version: u32,
    pub worker: u32,
    pub steps: Vec<StepResult>,
}

#[derive(Args, Debug)]
pub struct LoadgenOpts {
    /// Run as a Job worker: read the plan from BENCHRUN_PLAN.
    #[arg(long)]
    pub worker: bool,
    /// Base URL of the OpenAI-compatible server (standalone).
    #[arg(long, required_unless_present = "worker")]
    pub url: Option<String>,
    /// Model name (standalone).
    #[arg(long, required_unless_present = "worker")]
    pub model: Option<String>,
    /// Streams in flight (closed loop).
    #[arg(long, default_value_t = 1)]
    pub concurrency: u32,
    /// Requests per second (open loop) instead of a closed loop.
    #[arg(long)]
    pub request_rate: Option<f64>,
    /// Requests to measure.
    #[arg(long, default_value_t = 100)]
    pub requests: u64,
    /// Call /v1/completions instead of /v1/chat/completions.
    #[arg(long)]
    pub completions: bool,
    /// Do not stream (TTFT then equals the whole latency).
    #[arg(long)]
    pub no_stream: bool,
    /// Mean prompt and output lengths in tokens.
    #[arg(long, default_value_t = 128)]
    pub input_tokens: u64,
    #[arg(long, default_value_t = 128)]
    pub output_tokens: u64,
    /// Write the JSON result here (standalone).
    #[arg(long)]
    pub output: Option<std::path::PathBuf>,
    /// Worker: send nothing until `POST /start` (the controller starts every
    /// worker of a run at one shared instant).
    #[arg(long)]
    pub wait_for_start: bool,
    /// Worker: give up when no `POST /start` came within this long.
    #[arg(long, default_value = "10m", value_parser = crate::cli::go_duration)]
    pub start_timeout: std::time::Duration,
    /// Worker: serve the result at most this long, waiting for it to be fetched.
    #[arg(long, default_value = "10m", value_parser = crate::cli::go_duration)]
    pub linger: std::time::Duration,
}

pub fn main(opts: LoadgenOpts) -> ExitCode {
    let (plan, index) = match plan_of(&opts) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("benchrun loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let Ok(rt) = tokio::runtime::Runtime::new() else {
        eprintln!("benchrun loadgen: cannot start the async runtime");
        return ExitCode::FAILURE;
    };
    let api_key = plan
        .api_key_from_env
        .then(|| std::env::var(API_KEY_ENV).ok())
        .flatten();
    let result = if opts.worker {
        match rt.block_on(super::worker::run(&opts, &plan, index, api_key.as_deref())) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("benchrun loadgen: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        match rt.block_on(engine::run(&plan, index, api_key.as_deref())) {
            Ok(steps) => WorkerResult {
                schema_version: RESULT_SCHEMA_VERSION,
                worker: index,
                steps,
            },
            Err(e) => {
                eprintln!("benchrun loadgen: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let json = serde_json::to_string(&result).unwrap_or_default();
    if !opts.worker {
        print_table(&result);
        if let Some(path) = &opts.output
            && let Err(e) = std::fs::write(path, &json)
        {
            eprintln!("benchrun loadgen: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    // A run in which nothing succeeded is a failed run, with the reasons.
    if result.steps.iter().all(|s| s.successes == 0) {
        let samples: Vec<&str> = result
            .steps
            .iter()
            .flat_map(|s| s.error_samples.iter().map(String::as_str))
            .take(3)
            .collect();
        let total: u64 = result.steps.iter().map(|s| s.requests).sum();
        eprintln!(
            "every request failed ({total} sent): {}",
            samples.join("; ")
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn plan_of(opts: &LoadgenOpts) -> Result<(LoadPlan, u32), String> {
    if opts.worker {
        let json = std::env::var(PLAN_ENV)
            .map_err(|_| format!("--worker needs the plan in {PLAN_ENV}"))?;
        let plan = LoadPlan::from_json(&json).map_err(|e| e.to_string())?;
        let index = std::env::var("JOB_COMPLETION_INDEX")
            .ok()
            .and_then(|i| i.parse().ok())
            .unwrap_or(0);
        return Ok((plan, index));
    }
    let plan = LoadPlan {
        schema_version: PLAN_SCHEMA_VERSION,
        urls: vec![opts.url.clone().unwrap_or_default()],
        model: opts.model.clone().unwrap_or_default(),
        endpoint: if opts.completions {
            Endpoint::Completions
        } else {
            Endpoint::Chat
        },
        streaming: !opts.no_stream,
        headers: Default::default(),
        api_key_from_env: std::env::var(API_KEY_ENV).is_ok(),
        workers: 1,
        steps: vec![Step {
            concurrency: Some(opts.concurrency).filter(|_| opts.request_rate.is_none()),
            rate: opts.request_rate,
        }],
        stop: StopCondition::Requests(opts.requests),
        warmup_requests: 0,
        arrival: Arrival::Poisson,
        input: InputPlan::Synthetic {
            input_mean: opts.input_tokens,
            input_stddev: 0,
            output_mean: opts.output_tokens,
            output_stddev: 0,
        },
        conversations: None,
        extra_body: Default::default(),
        seed: 0,
        goodput: None,
    };
    Ok((plan, 0))
}

fn print_table(r: &WorkerResult) {
    for s in &r.steps {
        println!(
            "step concurrency={:?} rate={:?}: {} requests, {} ok, {:.2} req/s, {:.1} output tok/s",
            s.concurrency, s.rate, s.requests, s.successes, s.requests_per_s, s.output_tokens_per_s
        );
        println!(
            "{:<24} {:>10} {:>10} {:>10} {:>10}",
            "metric (ms)", "avg", "p50", "p90", "p99"
        );
        for (name, m) in [
            ("time to first token", &s.ttft_s),
            ("inter-token latency", &s.itl_s),
            ("request latency", &s.latency_s),
        ] {
            println!(
                "{:<24} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
                name,
                m.mean * 1e3,
                m.p50 * 1e3,
                m.p90 * 1e3,
                m.p99 * 1e3
            );
        }
        for (kind, n) in &s.errors {
            println!("errors {kind:?}: {n}");
        }
    }
}
