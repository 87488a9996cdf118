//! `benchrun sim inference`: an OpenAI-compatible server for dry runs and tests.
//!
//! - `POST /v1/chat/completions`, `POST /v1/completions` (streaming with
//!   `stream_options.include_usage`, or not), `GET /v1/models`, `GET /health`;
//! - `GET /metrics`: vLLM V1's metric names, types, labels and buckets;
//! - `GET /sim/truth` (`?records=0` leaves the per-request records out): what
//!   the server did — per request its queueing, TTFT, ITL, end-to-end time and
//!   tokens, measured when each chunk is handed to the connection — so tests
//!   and users can check a client's figures against it.
//!
//! Latency comes from the continuous-batching model in [`model`], or, with
//! `--ttft` and `--itl`, from a fixed schedule that ignores load. Every request
//! generates exactly its `max_tokens` (as with `ignore_eos`), so token counts
//! are known in advance. Failures are injected on request: an HTTP 500, a stall
//! mid-stream, or a stream cut short without its final chunks.

mod engine;
mod generate;
pub mod model;
mod request;
mod response;
mod state;
mod timer;

use crate::clock::unix_ms;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::engine::{Msg, Source};
use self::model::{LatencyModel, Scheduler};
use self::request::{Api, Parsed};
use self::response::Chunks;
use self::state::{Outcome, Record, State};
use self::timer::Timer;
use crate::flags::{go_duration, probability};

#[derive(Args, Debug, Clone)]
pub struct InferenceOpts {
    /// Address to listen on (default: $POD_IP, else every interface).
    #[arg(long)]
    pub host: Option<IpAddr>,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// The model name served (requests for another get 404, as from vLLM).
    #[arg(long, default_value = "benchrun/sim-llm")]
    pub model: String,
    /// Sequences decoding at once.
    #[arg(long, default_value_t = 64)]
    pub max_batch: usize,
    /// Prompt tokens prefilled in one step.
    #[arg(long, default_value_t = 8192)]
    pub max_batched_tokens: u64,
    /// KV cache capacity in tokens; also the longest request accepted.
    #[arg(long, default_value_t = 131_072)]
    pub kv_cache_tokens: u64,
    /// Fixed cost of one engine step.
    #[arg(long, default_value = "8ms", value_parser = go_duration)]
    pub decode_base: Duration,
    /// Step cost per sequence decoding in it.
    #[arg(long, default_value = "100us", value_parser = go_duration)]
    pub decode_per_seq: Duration,
    /// Step cost per prompt token prefilled in it.
    #[arg(long, default_value = "40us", value_parser = go_duration)]
    pub prefill_per_token: Duration,
    /// Deterministic mode: every first token this long after arrival (needs --itl).
    #[arg(long, value_parser = go_duration, requires = "itl")]
    pub ttft: Option<Duration>,
    /// Deterministic mode: this long between tokens (needs --ttft).
    #[arg(long, value_parser = go_duration, requires = "ttft")]
    pub itl: Option<Duration>,
    /// Tokens to generate when the request does not say.
    #[arg(long, default_value_t = 256)]
    pub default_max_tokens: u64,
    /// Share of requests answered with HTTP 500.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub error_rate: f64,
    /// Share of streams that pause mid-way for --stall.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub stall_rate: f64,
    #[arg(long, default_value = "2s", value_parser = go_duration)]
    pub stall: Duration,
    /// Share of streams cut off half-way, without finish reason, usage or [DONE].
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub truncate_rate: f64,
    /// Seed of the failure draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Per-request records kept for /sim/truth (the newest).
    #[arg(long, default_value_t = 100_000)]
    pub truth_records: usize,
    /// Reasoning mode: the first N tokens of each chat reply are reasoning,
    /// streamed as `delta.<reasoning-field>` before the answer (the wire format
    /// of vLLM's reasoning parsers); a reply of at most N tokens only reasons.
    #[arg(long, default_value_t = 0)]
    pub reasoning_tokens: u64,
    /// The field reasoning is sent in: `reasoning_content` (SGLang, vLLM's
    /// earlier releases) or `reasoning` (vLLM's later releases).
    #[arg(long, default_value = "reasoning_content", value_parser = ["reasoning_content", "reasoning"])]
    pub reasoning_field: String,
    /// Serve HTTPS with this PEM certificate chain (and `--tls-key-file`),
    /// HTTP/2 and HTTP/1.1 by ALPN, as a TLS-terminating server does.
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<std::path::PathBuf>,
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<std::path::PathBuf>,
    /// `/metrics` answers only requests with `Authorization: Bearer <the
    /// file's first line>` (401 otherwise), as behind an authenticating proxy.
    #[arg(long)]
    pub metrics_bearer_token_file: Option<std::path::PathBuf>,
    /// How prompt tokens are counted (in `usage`, in the metrics and by
    /// `/tokenize`): `words`, or `subword` (⌈characters/4⌉ per word, and a
    /// chat template's tokens), a tokenizer unlike the load generator's words.
    #[arg(long, value_enum, default_value_t = request::Tokenizer::Words)]
    pub tokenizer: request::Tokenizer,
}

/// The token in `path` (its first line).
fn read_token(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--metrics-bearer-token-file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!(
            "--metrics-bearer-token-file {}: empty",
            path.display()
        ));
    }
    Ok(token)
}

impl InferenceOpts {
    fn latency_model(&self) -> LatencyModel {
        LatencyModel {
            max_batch: self.max_batch.max(1),
            max_batched_tokens: self.max_batched_tokens.max(1),
            kv_capacity: self.kv_cache_tokens.max(2),
            decode_base: self.decode_base.as_secs_f64(),
            decode_per_seq: self.decode_per_seq.as_secs_f64(),
            prefill_per_token: self.prefill_per_token.as_secs_f64(),
        }
    }
}

/// The server's shared state.
struct Sim {
    opts: InferenceOpts,
    latency: LatencyModel,
    engine: Option<mpsc::UnboundedSender<Msg>>,
    state: Arc<Mutex<State>>,
    rng: Mutex<StdRng>,
    next_id: AtomicU64,
    in_flight: AtomicU64,
    created: u64,
    timer: Timer,
    /// What `/metrics` requires as its bearer token, when anything.
    metrics_token: Option<String>,
}

/// Serves until the process is stopped.
pub async fn run(opts: InferenceOpts) -> Result<(), String> {
    if let Some(p) = &opts.metrics_bearer_token_file {
        read_token(p)?;
    }
    let tls = match (&opts.tls_cert_file, &opts.tls_key_file) {
        (Some(cert), Some(key)) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))
            };
            Some(crate::net::tls::server_config(&read(cert)?, &read(key)?)?)
        }
        _ => None,
    };
    let addr = crate::net::listen_addr(opts.host, opts.port);
    let listener = crate::net::bind(addr).await?;
    let app = router(opts);
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    match tls {
        Some(cfg) => {
            eprintln!("benchrun sim inference: serving on https://{local}");
            crate::net::serve_tls(listener, app, cfg).await
        }
        None => {
            eprintln!("benchrun sim inference: serving on http://{local}");
            crate::net::serve(listener, app).await
        }
    }
}

/// The routes, with the engine task started (inside a Tokio runtime).
pub fn router(opts: InferenceOpts) -> Router {
    let state = Arc::new(Mutex::new(State::new(&opts.model, opts.truth_records)));
    let latency = opts.latency_model();
    let timer = Timer::start();
    let engine = if opts.ttft.is_none() {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(engine::run(
            Scheduler::new(latency.clone()),
            rx,
            state.clone(),
            timer.clone(),
        ));
        Some(tx)
    } else {
        None
    };
    let sim = Arc::new(Sim {
        rng: Mutex::new(StdRng::seed_from_u64(opts.seed)),
        latency,
        engine,
        state,
        next_id: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        created: unix_ms() / 1000,
        timer,
        // Checked by `run`; a file gone since leaves /metrics closed.
        metrics_token: opts
            .metrics_bearer_token_file
            .as_deref()
            .map(|p| read_token(p).unwrap_or_default()),
        opts,
    });
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/tokenize", post(tokenize))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/sim/truth", get(truth))
        .with_state(sim)
}

/// vLLM's `/tokenize`: the count and stand-in token ids.
async fn tokenize(AxState(sim): AxState<Arc<Sim>>, body: Bytes) -> Response {
    match request::tokenize(&body, &sim.opts.model, sim.opts.tokenizer) {
        Ok(count) => axum::Json(json!({
            "count": count,
            "max_model_len": sim.latency.kv_capacity,
            "tokens": (0..count).collect::<Vec<u64>>(),
        }))
        .into_response(),
        Err(r) => error(r.status, &r.message),
    }
}

async fn models(AxState(sim): AxState<Arc<Sim>>) -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{
            "id": sim.opts.model, "object": "model", "created": sim.created,
            "owned_by": "benchrun", "root": sim.opts.model,
            "max_model_len": sim.latency.kv_capacity,
        }],
    }))
    .into_response()
}

async fn metrics(AxState(sim): AxState<Arc<Sim>>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = &sim.metrics_token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if token.is_empty() || given != Some(token.as_str()) {
            return (
                axum::http::StatusCode::UNAUTHORIZED,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                "unauthorized\n",
            )
                .into_response();
        }
    }
    let body = {
        let mut s = sim.state.lock().unwrap_or_else(|p| p.into_inner());
        if sim.engine.is_none() {
            let n = sim.in_flight.load(Ordering::Relaxed) as usize;
            s.gauges.running = n;
        }
        s.render()
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct TruthQuery {
    records: Option<u8>,
}

async fn truth(AxState(sim): AxState<Arc<Sim>>, Query(q): Query<TruthQuery>) -> Response {
    let s = sim.state.lock().unwrap_or_else(|p| p.into_inner());
    axum::Json(s.truth(q.records != Some(0))).into_response()
}

async fn chat(sim: AxState<Arc<Sim>>, body: Bytes) -> Response {
    serve(sim.0, Api::Chat, body).await
}

async fn completions(sim: AxState<Arc<Sim>>, body: Bytes) -> Response {
    serve(sim.0, Api::Completions, body).await
}

fn error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let kind = if status >= 500 {
        "InternalServerError"
    } else if status == 404 {
        "NotFoundError"
    } else {
        "BadRequestError"
    };
    (
        code,
        axum::Json(json!({"error": {"message": message, "type": kind, "code": status}})),
    )
        .into_response()
}

/// The failure draws of one request.
struct Faults {
    error: bool,
    /// Pause before this token.
    stall_at: Option<u64>,
    /// End the stream before this token.
    cut_at: Option<u64>,
}

impl Sim {
    fn faults(&self, max_tokens: u64) -> Faults {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let mut draw = |p: f64| p > 0.0 && rng.random::<f64>() < p;
        let error = draw(self.opts.error_rate);
        let stall = draw(self.opts.stall_rate);
        let cut = draw(self.opts.truncate_rate);
        let half = (max_tokens / 2).max(1);
        Faults {
            error,
            stall_at: stall.then_some(half),
            cut_at: (cut && max_tokens > 1).then_some(half + 1),
        }
    }

    fn source(&self, id: u64, p: &Parsed, start: Instant) -> Option<Source> {
        match (&self.engine, self.opts.ttft, self.opts.itl) {
            (Some(engine), _, _) => {
                let (tx, events) = mpsc::unbounded_channel();
                engine
                    .send(Msg::Submit {
                        id,
                        prompt: p.prompt_tokens,
                        max_tokens: p.max_tokens,
                        events: tx,
                    })
                    .ok()?;
                Some(Source::Engine {
                    events,
                    engine: engine.clone(),
                    id,
                    done: false,
                })
            }
            (None, Some(ttft), Some(itl)) => Some(Source::Fixed {
                timer: self.timer.clone(),
                start,
                ttft,
                itl,
                max_tokens: p.max_tokens,
                sent: 0,
            }),
            (None, _, _) => None,
        }
    }
}

async fn serve(sim: Arc<Sim>, api: Api, body: Bytes) -> Response {
    let start = Instant::now();
    let received_unix_ms = unix_ms();
    let parsed = request::parse(
        api,
        &body,
        &sim.opts.model,
        sim.opts.default_max_tokens,
        sim.opts.tokenizer,
    )
    .and_then(
        |p| match sim.latency.rejects(p.prompt_tokens, p.max_tokens) {
            Some(message) => Err(request::Refusal {
                status: 400,
                message,
            }),
            None => Ok(p),
        },
    );
    let p = match parsed {
        Ok(p) => p,
        Err(r) => {
            sim.state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .refused();
            return error(r.status, &r.message);
        }
    };
    let id = sim.next_id.fetch_add(1, Ordering::Relaxed);
    let faults = sim.faults(p.max_tokens);
    let mut record = Record {
        id,
        received_unix_ms,
        outcome: Outcome::Ok,
        stalled: false,
        prompt_tokens: p.prompt_tokens,
        output_tokens: 0,
        queue_s: 0.0,
        ttft_s: None,
        ttfat_s: None,
        reasoning_tokens: 0,
        itl_s: None,
        e2e_s: 0.0,
    };
    if faults.error {
        record.outcome = Outcome::InjectedError;
        record.prompt_tokens = 0;
        sim.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finish(record);
        return error(
            500,
            "injected failure (benchrun sim inference --error-rate)",
        );
    }
    let Some(source) = sim.source(id, &p, start) else {
        return error(503, "the simulated engine has stopped");
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let mut chunks = Chunks::new(&sim.opts.model, api, id);
    if sim.opts.reasoning_tokens > 0 {
        chunks.reason(sim.opts.reasoning_tokens, &sim.opts.reasoning_field);
    }
    tokio::spawn(generate::generate(
        sim.clone(),
        source,
        p.clone(),
        faults,
        record,
        start,
        chunks,
        tx,
    ));
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let content_type = if p.stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
pub(crate) mod tests;
