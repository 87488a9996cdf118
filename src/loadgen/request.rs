//! Request bodies and the record of one request. Pure.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::plan::{Endpoint, InputPlan, LoadPlan};
use super::tokenize::{Costs, build};

/// How a request failed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum ErrorKind {
    Connect,
    Timeout,
    HttpStatus,
    MalformedStream,
    EmptyResponse,
    /// The connection closed (or was reset) before a response, after the
    /// request may have reached the server: not sent again.
    Disconnected,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorKind::Connect => "could not connect",
            ErrorKind::Timeout => "timed out",
            ErrorKind::HttpStatus => "HTTP error status",
            ErrorKind::MalformedStream => "malformed stream",
            ErrorKind::EmptyResponse => "empty response",
            ErrorKind::Disconnected => {
                "closed before a response (the request may have reached the server)"
            }
        })
    }
}

/// Where a request's token counts came from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum TokenSource {
    /// The server's `usage` object.
    Usage,
    /// Counted from the streamed chunks (input: the prompt's words).
    Counted,
}

/// The server's own account of one request, where it gives one
/// (llama.cpp's `timings`): tokens and milliseconds of the prompt's
/// processing and of the generation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServerTimings {
    /// Prompt tokens taken from the cache (not processed).
    pub cache_n: u64,
    /// Prompt tokens processed, and how long that took.
    pub prompt_n: u64,
    pub prompt_ms: f64,
    /// Tokens generated, and how long that took (from the first).
    pub predicted_n: u64,
    pub predicted_ms: f64,
}

impl ServerTimings {
    /// From a `timings` object; `None` without the prompt and generation figures.
    pub fn read(v: &Value) -> Option<ServerTimings> {
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        let ms = |k: &str| v.get(k).and_then(Value::as_f64).filter(|x| x.is_finite());
        Some(ServerTimings {
            cache_n: n("cache_n").unwrap_or(0),
            prompt_n: n("prompt_n")?,
            prompt_ms: ms("prompt_ms")?,
            predicted_n: n("predicted_n")?,
            predicted_ms: ms("predicted_ms")?,
        })
    }
}

/// One finished request. Times in seconds from its send.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub ok: bool,
    pub error: Option<(ErrorKind, String)>,
    /// Time to the first token, reasoning or answer.
    pub ttft: Option<f64>,
    /// Time to the first answer token (a reasoning model reasons first; for
    /// other models it is the TTFT). `None` for a reply that only reasoned.
    pub ttfat: Option<f64>,
    /// Time of every content chunk after the first, from the send.
    pub token_times: Vec<f64>,
    pub latency: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub source: TokenSource,
    /// Of the output tokens, those the model spent reasoning (the server's
    /// count where it gives one, else the reasoning chunks counted).
    pub reasoning_tokens: u64,
    /// The generated text, when it was asked for (conversations).
    pub text: Option<String>,
    /// Sent a second time, on a new connection: the server had closed the
    /// first before reading it ([`crate::net::conn`]).
    pub retried: bool,
    /// The server's own timing of it, where it reported one.
    pub server: Option<ServerTimings>,
    /// The output tokens it asked for, when known.
    pub asked_tokens: Option<u64>,
}

impl Record {
    /// A success whose output is shorter than it asked for: the server
    /// stopped it first (an end-of-sequence token, a stop string).
    pub fn stopped_early(&self) -> bool {
        self.ok && self.asked_tokens.is_some_and(|n| self.output_tokens < n)
    }
}

impl Record {
    /// Gaps between consecutive tokens.
    pub fn inter_token_gaps(&self) -> impl Iterator<Item = f64> + '_ {
        let times = self
            .ttft
            .into_iter()
            .chain(self.token_times.iter().copied());
        times.clone().zip(times.skip(1)).map(|(a, b)| b - a)
    }

    /// Time to the second token (the first chunk after the first), from the send.
    pub fn ttst(&self) -> Option<f64> {
        self.token_times.first().copied()
    }

    /// Per-request inter-token latency: (latency − TTFT) / (output tokens − 1).
    pub fn itl(&self) -> Option<f64> {
        let ttft = self.ttft?;
        (self.output_tokens > 1).then(|| (self.latency - ttft) / (self.output_tokens - 1) as f64)
    }
}

/// Builds the prompts of a plan, reproducibly from its seed.
pub struct Prompts {
    rng: StdRng,
    /// The vocabulary's costs in the server's tokens, when it told them.
    costs: Option<Arc<Costs>>,
}

/// A prompt and the tokens asked for.
pub struct Prompt {
    pub text: String,
    /// The prompt's length in tokens, as well as it is known: by the
    /// server's costs and template when it told them, else in words (the
    /// input count when the server sends no usage).
    pub words: u64,
    pub max_tokens: u64,
}

impl Prompts {
    /// Prompts sized in words of the vocabulary.
    pub fn new(seed: u64, worker: u32) -> Self {
        Self::sized(seed, worker, None)
    }

    /// Prompts sized in the server's tokens by `costs`, or words without.
    pub fn sized(seed: u64, worker: u32, costs: Option<Arc<Costs>>) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed ^ (u64::from(worker) << 32)),
            costs,
        }
    }

    /// A synthetic prompt of `input_mean ± input_stddev` tokens: exactly, in
    /// the server's tokens, when its costs are known (see
    /// [`super::tokenize`]); else as many vocabulary words.
    pub fn next(&mut self, input: &InputPlan) -> Prompt {
        let (im, isd, om, osd) = match input {
            InputPlan::Synthetic {
                input_mean,
                input_stddev,
                output_mean,
                output_stddev,
            } => (*input_mean, *input_stddev, *output_mean, *output_stddev),
            InputPlan::Dataset { .. } => (128, 0, 128, 0),
        };
        let tokens = self.normal(im, isd).max(1);
        let max_tokens = self.normal(om, osd).max(1);
        let (text, built) = build(&mut self.rng, tokens, self.costs.as_deref());
        Prompt {
            text,
            words: built + self.costs.as_ref().map_or(0, |c| c.template),
            max_tokens,
        }
    }

    fn normal(&mut self, mean: u64, stddev: u64) -> u64 {
        if stddev == 0 {
            return mean;
        }
        // Box-Muller; enough for request shapes.
        let (u1, u2): (f64, f64) = (self.rng.random_range(f64::EPSILON..1.0), self.rng.random());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (mean as f64 + z * stddev as f64).round().max(0.0) as u64
    }
}

/// The JSON body for `prompt` under `plan`, after the conversation's earlier
/// turns (`history`: alternating user and assistant texts; empty for a single
/// request): model, messages or one prompt, max_tokens, then [`finish_body`].
pub fn body(plan: &LoadPlan, history: &[String], prompt: &Prompt) -> Value {
    let texts = history
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(prompt.text.as_str()));
    let mut b = match plan.endpoint {
        Endpoint::Chat => {
            let messages: Vec<Value> = texts
                .enumerate()
                .map(|(i, t)| {
                    let role = if i % 2 == 0 { "user" } else { "assistant" };
                    json!({ "role": role, "content": t })
                })
                .collect();
            json!({ "model": plan.model, "messages": messages, "max_tokens": prompt.max_tokens })
        }
        Endpoint::Completions => json!({
            "model": plan.model,
            "prompt": texts.collect::<Vec<_>>().join("\n"),
            "max_tokens": prompt.max_tokens,
        }),
    };
    finish_body(plan, &mut b);
    b
}

/// Streaming with usage (or neither), then the plan's extra body merged last.
pub fn finish_body(plan: &LoadPlan, b: &mut Value) {
    let Value::Object(map) = b else { return };
    if plan.streaming {
        map.insert("stream".into(), json!(true));
        map.insert("stream_options".into(), json!({ "include_usage": true }));
    } else {
        map.remove("stream");
        map.remove("stream_options");
    }
    for (k, v) in &plan.extra_body {
        map.insert(k.clone(), v.clone());
    }
}

/// The request path of an endpoint.
pub fn path(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Chat => "/v1/chat/completions",
        Endpoint::Completions => "/v1/completions",
    }
}

#[cfg(test)]
pub(crate) mod tests;
