//! `benchrun loadgen`, the load generator as a role: a Job worker
//! (`--worker`, the plan from the environment) serving the controller's
//! contract ([`serve`], [`crate::contract`]), or standalone from a shell. The
//! engine it drives is [`crate::loadgen`], which knows nothing of either.

use std::process::ExitCode;

use clap::Args;

use crate::loadgen::engine;
use crate::loadgen::plan::{
    API_KEY_ENV, Arrival, ConversationPlan, Endpoint, FilesAt, Goodput, InputPlan, LoadPlan,
    PLAN_ENV, PLAN_FILE_ENV, PLAN_SCHEMA_VERSION, PemSource, Step, StopCondition, TlsPlan,
    Tokenizer, TokenizerFiles,
};
pub mod serve;

use crate::contract::{RESULT_SCHEMA_VERSION, WORKER_TOKEN_ENV, WorkerResult};

#[derive(Args, Debug)]
pub struct LoadgenOpts {
    /// Run as a Job worker: read the plan from the file BENCHRUN_PLAN_FILE
    /// names (else from BENCHRUN_PLAN).
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
    /// The request path under the URL, instead of the endpoint's OpenAI one
    /// (e.g. a gateway's `/openai/v1/chat/completions`).
    #[arg(long)]
    pub path: Option<String>,
    /// Do not stream (TTFT then equals the whole latency).
    #[arg(long)]
    pub no_stream: bool,
    /// Measure for this long instead of a request count (e.g. 60s, 5m).
    #[arg(long, value_parser = crate::flags::go_duration)]
    pub duration: Option<std::time::Duration>,
    /// Requests sent first and left out of every statistic.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Open loop: Poisson or evenly spaced arrivals.
    #[arg(long, value_enum, default_value_t = ArrivalFlag::Poisson)]
    pub arrival: ArrivalFlag,
    /// Mean prompt and output lengths in tokens, and their standard deviations.
    #[arg(long, default_value_t = 128)]
    pub input_tokens: u64,
    #[arg(long, default_value_t = 0)]
    pub input_stddev: u64,
    #[arg(long, default_value_t = 128)]
    pub output_tokens: u64,
    #[arg(long, default_value_t = 0)]
    pub output_stddev: u64,
    /// Whose tokens --input-tokens counts: the target's (`server`, asked
    /// through its /tokenize), the model's (`files`: --tokenizer-files),
    /// the files' or else the target's when it answers (`auto`), or one
    /// vocabulary word per token (`words`).
    #[arg(long, value_enum, default_value_t = TokenizerFlag::Auto)]
    pub tokenizer: TokenizerFlag,
    /// The model's tokenizer files (`tokenizer.json`, and for chat its
    /// `tokenizer_config.json` or `chat_template.jinja`): a folder, or the
    /// http(s) URL of one (a model repository's `…/resolve/main/`).
    #[arg(long, value_name = "DIR|URL")]
    pub tokenizer_files: Option<String>,
    /// Debug: write each measured request's timings beside the server's own
    /// (llama.cpp's per-request `timings`) to this file, one JSON line each.
    #[arg(long, value_name = "FILE")]
    pub server_timings: Option<std::path::PathBuf>,
    /// Send the request payloads of this JSONL file instead of synthetic prompts.
    #[arg(long, conflicts_with = "conversations")]
    pub dataset: Option<std::path::PathBuf>,
    /// Multi-turn: a pool of this many distinct conversations of --turns
    /// turns, history carried forward (closed loop only: not with --request-rate).
    #[arg(long, requires = "turns", conflicts_with = "request_rate")]
    pub conversations: Option<u64>,
    #[arg(long, requires = "conversations")]
    pub turns: Option<u32>,
    /// Seed of the prompts and arrivals: the same seed sends the same requests.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Extra request header, NAME=VALUE (repeatable).
    #[arg(long = "header", value_parser = header)]
    pub headers: Vec<(String, String)>,
    /// Send `Authorization: Bearer $VAR`, the key read from this environment variable.
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// JSON object merged into every request body (e.g. '{"ignore_eos":true}').
    #[arg(long, value_parser = json_object)]
    pub extra_body: Option<serde_json::Map<String, serde_json::Value>>,
    /// Goodput: a request counts when its TTFT, ITL and latency (ms) are within these.
    #[arg(long)]
    pub goodput_ttft_ms: Option<f64>,
    #[arg(long)]
    pub goodput_itl_ms: Option<f64>,
    #[arg(long)]
    pub goodput_latency_ms: Option<f64>,
    /// HTTPS: a PEM CA bundle trusted besides the system's roots.
    #[arg(long)]
    pub ca_file: Option<std::path::PathBuf>,
    /// HTTPS: accept any server certificate (encrypted, not authenticated).
    #[arg(long)]
    pub insecure_skip_verify: bool,
    /// HTTPS: a PEM client certificate and its key, for mTLS gateways.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<std::path::PathBuf>,
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<std::path::PathBuf>,
    /// HTTPS: the name the server's certificate must hold, instead of the
    /// URL's host (e.g. a Service's DNS name when sending to its pods).
    #[arg(long)]
    pub tls_server_name: Option<String>,
    /// Write the JSON result here (standalone).
    #[arg(long)]
    pub output: Option<std::path::PathBuf>,
    /// Worker: send nothing until `POST /start` (the controller starts every
    /// worker of a run at one shared instant).
    #[arg(long)]
    pub wait_for_start: bool,
    /// Worker: give up when no `POST /start` came within this long.
    #[arg(long, default_value = "10m", value_parser = crate::flags::go_duration)]
    pub start_timeout: std::time::Duration,
    /// Worker: serve the result at most this long, waiting for the controller to acknowledge it.
    #[arg(long, default_value = "10m", value_parser = crate::flags::go_duration)]
    pub linger: std::time::Duration,
}

/// Prompt tokenizer flag.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerFlag {
    Auto,
    Server,
    Words,
    Files,
}

/// Arrival process flag.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArrivalFlag {
    Poisson,
    Constant,
}

fn header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

fn json_object(s: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str(s) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err("--extra-body must be a JSON object".into()),
        Err(e) => Err(format!("--extra-body is not JSON: {e}")),
    }
}

pub fn main(opts: LoadgenOpts) -> ExitCode {
    let (mut plan, index) = match plan_of(&opts) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("benchrun loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = plan.resolve_env_headers(|var| std::env::var(var).ok()) {
        eprintln!("benchrun loadgen: {e}");
        return ExitCode::from(2);
    }
    let Ok(rt) = tokio::runtime::Runtime::new() else {
        eprintln!("benchrun loadgen: cannot start the async runtime");
        return ExitCode::FAILURE;
    };
    let key_var = match (&opts.api_key_env, opts.worker) {
        (Some(var), false) => var.as_str(),
        _ => API_KEY_ENV,
    };
    let api_key = plan
        .api_key_from_env
        .then(|| std::env::var(key_var).ok())
        .flatten();
    if plan.api_key_from_env && api_key.is_none() {
        eprintln!("benchrun loadgen: the API key variable {key_var} is not set");
        return ExitCode::from(2);
    }
    let result = if opts.worker {
        // Set by the controller's Job; without it (a worker started by hand)
        // the API is open.
        let token = std::env::var(WORKER_TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty());
        match rt.block_on(serve::run(&opts, &plan, index, api_key.as_deref(), token)) {
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

/// A Job worker's plan: from the file `file` names (the run's plan
/// ConfigMap, mounted), else inline JSON (a worker started by hand).
fn worker_plan(file: Option<String>, inline: Option<String>) -> Result<LoadPlan, String> {
    let json = match (file, inline) {
        (Some(path), _) => std::fs::read_to_string(&path)
            .map_err(|e| format!("reading the plan from {path} ({PLAN_FILE_ENV}): {e}"))?,
        (None, Some(json)) => json,
        (None, None) => {
            return Err(format!(
                "--worker needs a plan: a file named by {PLAN_FILE_ENV}, or JSON in {PLAN_ENV}"
            ));
        }
    };
    LoadPlan::from_json(&json).map_err(|e| e.to_string())
}

fn plan_of(opts: &LoadgenOpts) -> Result<(LoadPlan, u32), String> {
    if opts.worker {
        let plan = worker_plan(
            std::env::var(PLAN_FILE_ENV).ok(),
            std::env::var(PLAN_ENV).ok(),
        )?;
        let index = std::env::var("JOB_COMPLETION_INDEX")
            .ok()
            .and_then(|i| i.parse().ok())
            .unwrap_or(0);
        return Ok((plan, index));
    }
    match (opts.tokenizer, &opts.tokenizer_files) {
        (TokenizerFlag::Files, None) => {
            return Err("--tokenizer files needs --tokenizer-files DIR|URL".into());
        }
        (TokenizerFlag::Server | TokenizerFlag::Words, Some(_)) => {
            return Err("--tokenizer-files is read only with --tokenizer files or auto".into());
        }
        _ => {}
    }
    let goodput = Goodput {
        ttft_ms: opts.goodput_ttft_ms,
        itl_ms: opts.goodput_itl_ms,
        latency_ms: opts.goodput_latency_ms,
    };
    let input = match &opts.dataset {
        Some(path) => InputPlan::Dataset {
            path: path.display().to_string(),
        },
        None => InputPlan::Synthetic {
            input_mean: opts.input_tokens,
            input_stddev: opts.input_stddev,
            output_mean: opts.output_tokens,
            output_stddev: opts.output_stddev,
        },
    };
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
        headers: opts.headers.iter().cloned().collect(),
        api_key_from_env: opts.api_key_env.is_some() || std::env::var(API_KEY_ENV).is_ok(),
        headers_from_env: Default::default(),
        workers: 1,
        steps: vec![Step {
            concurrency: Some(opts.concurrency).filter(|_| opts.request_rate.is_none()),
            rate: opts.request_rate,
        }],
        repeat: None,
        stop: match opts.duration {
            Some(d) => StopCondition::DurationMs(d.as_millis() as u64),
            None => StopCondition::Requests(opts.requests),
        },
        warmup_requests: opts.warmup,
        arrival: match opts.arrival {
            ArrivalFlag::Poisson => Arrival::Poisson,
            ArrivalFlag::Constant => Arrival::Constant,
        },
        input,
        conversations: opts
            .conversations
            .zip(opts.turns)
            .map(|(count, turns)| ConversationPlan { count, turns }),
        extra_body: opts.extra_body.clone().unwrap_or_default(),
        seed: opts.seed,
        goodput: (goodput != Goodput::default()).then_some(goodput),
        tls: TlsPlan {
            ca: opts.ca_file.clone().map(PemSource::File),
            insecure_skip_verify: opts.insecure_skip_verify,
            client_cert: opts.client_cert.clone().map(PemSource::File),
            client_key: opts.client_key.clone().map(PemSource::File),
            server_name: opts.tls_server_name.clone(),
        },
        path: opts.path.clone(),
        tokenizer: match opts.tokenizer {
            TokenizerFlag::Auto => Tokenizer::Auto,
            TokenizerFlag::Server => Tokenizer::Server,
            TokenizerFlag::Words => Tokenizer::Words,
            TokenizerFlag::Files => Tokenizer::Files,
        },
        tokenizer_files: opts.tokenizer_files.as_ref().map(|at| TokenizerFiles {
            at: FilesAt::parse(at),
            origin: crate::net::redact_url(at),
        }),
        server_timings_file: opts.server_timings.clone(),
    };
    Ok((plan, 0))
}

/// A step as users name it: "concurrency 8", "rate 20 req/s", or both for an
/// open loop with a cap on what is in flight.
fn step_label(concurrency: Option<u32>, rate: Option<f64>) -> String {
    match (concurrency, rate) {
        (Some(c), None) => format!("concurrency {c}"),
        (None, Some(r)) => format!("rate {r} req/s"),
        (Some(c), Some(r)) => format!("rate {r} req/s (at most {c} in flight)"),
        (None, None) => "step".into(),
    }
}

fn print_table(r: &WorkerResult) {
    for s in &r.steps {
        crate::outln!(
            "{}: {} requests, {} ok, {:.2} req/s, {:.1} output tok/s",
            step_label(s.concurrency, s.rate),
            s.requests,
            s.successes,
            s.requests_per_s,
            s.output_tokens_per_s
        );
        crate::outln!(
            "{:<24} {:>10} {:>10} {:>10} {:>10}",
            "metric (ms)",
            "avg",
            "p50",
            "p90",
            "p99"
        );
        let answer = (s.reasoning_tokens > 0)
            .then_some(("time to first answer", &s.time_to_first_answer_token_s));
        for (name, m) in [
            ("time to first token", &s.ttft_s),
            ("time to second token", &s.time_to_second_token_s),
        ]
        .into_iter()
        .chain(answer)
        .chain([
            ("inter-token latency", &s.itl_s),
            ("request latency", &s.latency_s),
        ]) {
            crate::outln!(
                "{:<24} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
                name,
                m.mean * 1e3,
                m.p50 * 1e3,
                m.p90 * 1e3,
                m.p99 * 1e3
            );
        }
        if s.reasoning_tokens > 0 {
            crate::outln!(
                "reasoning: {} of {} output tokens ({} answer tokens)",
                s.reasoning_tokens,
                s.output_tokens,
                s.output_tokens.saturating_sub(s.reasoning_tokens)
            );
        }
        if let Some(sizing) = &s.prompt_sizing {
            crate::outln!("{}", sizing.describe(&s.input_tokens_per_request));
        }
        if let (Some(n), Some(rate)) = (s.goodput_requests, s.goodput_per_s) {
            crate::outln!("goodput: {n} requests within the objectives, {rate:.2} req/s");
        }
        for (kind, n) in &s.errors {
            crate::outln!("errors ({kind}): {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FilesAt, Tokenizer, step_label};

    #[test]
    fn a_worker_reads_its_plan_from_the_mounted_file_first() {
        let plan = crate::loadgen::request::tests::plan(crate::loadgen::plan::Endpoint::Chat, true);
        let json = serde_json::to_string(&plan).unwrap();
        let dir = std::env::temp_dir().join(format!("benchrun-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plan.json");
        std::fs::write(&path, &json).unwrap();
        let file = Some(path.display().to_string());
        assert_eq!(super::worker_plan(file.clone(), None).unwrap(), plan);
        // The file wins over an inline plan; inline alone still works.
        assert_eq!(super::worker_plan(file, Some("{}".into())).unwrap(), plan);
        assert_eq!(super::worker_plan(None, Some(json)).unwrap(), plan);
        let missing = super::worker_plan(Some("/nonexistent/plan.json".into()), None);
        assert!(missing.unwrap_err().contains("/nonexistent/plan.json"));
        let none = super::worker_plan(None, None).unwrap_err();
        assert!(none.contains("BENCHRUN_PLAN_FILE"), "{none}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `--tokenizer files` needs the files; the files are read only by
    /// `files` and `auto`; a URL's credentials stay out of the results.
    #[test]
    fn tokenizer_files_flags_are_checked() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            opts: super::LoadgenOpts,
        }
        let plan = |args: &[&str]| {
            let mut all = vec!["loadgen", "--url", "http://127.0.0.1:9", "--model", "m"];
            all.extend_from_slice(args);
            super::plan_of(&Cli::try_parse_from(all).unwrap().opts).map(|(p, _)| p)
        };
        let e = plan(&["--tokenizer", "files"]).unwrap_err();
        assert!(e.contains("--tokenizer-files"), "{e}");
        for t in ["server", "words"] {
            let e = plan(&["--tokenizer", t, "--tokenizer-files", "/m"]).unwrap_err();
            assert!(e.contains("files or auto"), "{e}");
        }
        let p = plan(&["--tokenizer-files", "https://u:pw@models.internal/m/"]).unwrap();
        let files = p.tokenizer_files.unwrap();
        assert_eq!(
            files.at,
            FilesAt::Url("https://u:pw@models.internal/m/".into())
        );
        assert!(!files.origin.contains("pw"), "{}", files.origin);
        let p = plan(&["--tokenizer", "files", "--tokenizer-files", "/m"]).unwrap();
        assert_eq!(p.tokenizer, Tokenizer::Files);
        assert_eq!(p.tokenizer_files.unwrap().at, FilesAt::Dir("/m".into()));
    }

    #[test]
    fn steps_print_as_values_not_debug_forms() {
        assert_eq!(step_label(Some(2), None), "concurrency 2");
        assert_eq!(step_label(None, Some(12.5)), "rate 12.5 req/s");
        assert_eq!(
            step_label(Some(8), Some(4.0)),
            "rate 4 req/s (at most 8 in flight)"
        );
    }
}
