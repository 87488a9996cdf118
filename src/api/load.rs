//! `spec.load`: how hard, how long, and with which prompts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::GoDuration;
use super::rules as r;
use super::spec::ConfigMapKeyRef;

/// The load to generate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new(r::COUNT_XOR_DURATION_RULE).message(r::COUNT_XOR_DURATION_MSG),
    validation = kube::core::Rule::new(r::RATE_NEEDS_RATE_RULE).message(r::RATE_NEEDS_RATE_MSG),
    validation = kube::core::Rule::new(r::CONCURRENCY_MODE_NO_RATE_RULE).message(r::CONCURRENCY_MODE_NO_RATE_MSG),
    validation = kube::core::Rule::new(r::SWEEP_MATCHES_MODE_RULE).message(r::SWEEP_MATCHES_MODE_MSG),
    validation = kube::core::Rule::new(r::WORKERS_LE_CONCURRENCY_RULE).message(r::WORKERS_LE_CONCURRENCY_MSG),
    validation = kube::core::Rule::new(r::CONVERSATIONS_SYNTHETIC_RULE).message(r::CONVERSATIONS_SYNTHETIC_MSG),
    validation = kube::core::Rule::new(r::CONVERSATIONS_CLOSED_LOOP_RULE).message(r::CONVERSATIONS_CLOSED_LOOP_MSG),
    validation = kube::core::Rule::new(r::DURATION_MIN_RULE).message(r::DURATION_MIN_MSG),
)]
pub struct Load {
    /// `concurrency`: a closed loop that keeps `concurrency` requests in flight.
    /// `rate`: an open loop that sends `requestRate` requests per second whatever the
    /// server does, and records how late each send was.
    #[serde(default)]
    pub mode: LoadMode,

    /// Requests kept in flight in `concurrency` mode, across all workers. Default 1.
    /// In `rate` mode, an optional cap on requests in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub concurrency: Option<i32>,

    /// Requests per second in `rate` mode, across all workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001, max = 100000.0))]
    pub request_rate: Option<f64>,

    /// Spacing of arrivals in `rate` mode.
    #[serde(default)]
    pub arrival: Arrival,

    /// Number of measured requests (warmup not included). Exactly one of
    /// `requestCount` and `duration` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000000))]
    pub request_count: Option<i64>,

    /// Length of the measured phase (Go duration, e.g. "5m", at least 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub duration: Option<GoDuration>,

    /// Requests sent before the measured phase and left out of every statistic, so
    /// caches and CUDA graphs are warm when measuring starts.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000000))]
    pub warmup_request_count: i64,

    /// Stream responses (server-sent events); needed for time to first token and
    /// inter-token latency.
    #[serde(default = "default_true")]
    pub streaming: bool,

    /// Check the target before any load (default true): one worker sends
    /// one short request as the run will (URLs, headers, API key, TLS), after
    /// reading `/v1/models`, and a failed check fails the run
    /// `PreflightFailed` at once. Off for a target where even one extra
    /// request matters.
    #[serde(default = "default_true")]
    pub preflight: bool,

    /// Prompt and response lengths.
    #[serde(default)]
    pub input: Input,

    /// The most failed requests a step may have, as a fraction of its
    /// requests (default 0.01). Past it the load was not the one asked for:
    /// `MeasurementValid` says `FailedRequests` and the step's efficiency
    /// figures are left out (their energy paid for requests whose tokens
    /// were never counted). Any failed request is named in `Warnings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: Option<f64>,

    /// Multi-turn conversations: each conversation carries its history forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversations: Option<Conversations>,

    /// Free-form JSON merged into every request body, e.g.
    /// `{"min_tokens": 128, "ignore_eos": true}`. At most 64 keys and 16 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub extra_inputs: Option<serde_json::Map<String, serde_json::Value>>,

    /// Seed of the random prompt, length and arrival generators; the same seed gives
    /// the same request sequence. Default 0.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub random_seed: i64,

    /// Parallel load-generator pods (the Indexed Job's parallelism). They start
    /// together and their results merge exactly. Default 1.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 256))]
    pub workers: i32,

    /// Run several steps one after another, one per value, each with its own results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Sweep>,

    /// Overrides for the load-generator pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodOverrides>,
}

impl Load {
    /// `maxErrorRate`, or its default.
    pub fn max_error_rate(&self) -> f64 {
        self.max_error_rate
            .unwrap_or(crate::results::DEFAULT_MAX_ERROR_RATE)
    }
}

fn default_true() -> bool {
    true
}

fn default_one() -> i32 {
    1
}

/// Schema of a JSON object whose contents are the user's: the API server keeps
/// every field as given.
fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 64,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The most `load.extraInputs` may weigh as JSON: it rides in every request
/// body and in the load plan the workers get.
pub const MAX_EXTRA_INPUTS_BYTES: usize = 16 * 1024;

/// Load mode.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
#[serde(rename_all = "camelCase")]
pub enum LoadMode {
    #[default]
    Concurrency,
    Rate,
}

/// Arrival process in `rate` mode.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
#[serde(rename_all = "camelCase")]
pub enum Arrival {
    /// Exponentially distributed gaps: the load of many independent users.
    #[default]
    Poisson,
    /// Evenly spaced requests.
    Constant,
}

/// Prompts: synthetic lengths, or a dataset of request payloads.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = kube::core::Rule::new(r::INPUT_ONE_OF_RULE).message(r::INPUT_ONE_OF_MSG))]
pub struct Input {
    /// Random prompts whose token lengths follow normal distributions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<Synthetic>,
    /// A JSONL dataset of request payloads stored in a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<Dataset>,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            synthetic: Some(Synthetic::default()),
            dataset: None,
        }
    }
}

/// Synthetic prompt and response lengths, in tokens.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new(r::FILES_NEED_FILES_RULE).message(r::FILES_NEED_FILES_MSG),
    validation = kube::core::Rule::new(r::FILES_READ_BY_RULE).message(r::FILES_READ_BY_MSG)
)]
pub struct Synthetic {
    /// Prompt length. Default mean 550, stddev 0.
    #[serde(default = "TokenDistribution::default_input")]
    pub input_tokens: TokenDistribution,
    /// Response length, sent as `max_tokens`. Default mean 150, stddev 0.
    #[serde(default = "TokenDistribution::default_output")]
    pub output_tokens: TokenDistribution,
    /// Whose tokens `inputTokens` counts. `auto` (the default): the model's
    /// tokenizer files when `tokenizerFiles` names them, else the target's
    /// own tokenizer, asked through its `/tokenize` endpoint (vLLM, SGLang,
    /// llama.cpp) before the first step, when it answers; else one word of
    /// the prompt vocabulary per token, and the results say which and why.
    /// `server`: the target's tokenizer or the run fails. `files`: the
    /// model's tokenizer files (`tokenizerFiles`) or the run fails, for
    /// servers without `/tokenize`. `words`: one word per token, unasked.
    /// The length is the prompt text's; the tokens the server adds around it
    /// (a chat template) are recorded beside it.
    #[serde(default)]
    pub tokenizer: PromptTokenizer,
    /// The model's tokenizer files, read by `tokenizer: files` and tried
    /// first by `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_files: Option<TokenizerFiles>,
}

impl Default for Synthetic {
    fn default() -> Self {
        Synthetic {
            input_tokens: TokenDistribution::default_input(),
            output_tokens: TokenDistribution::default_output(),
            tokenizer: PromptTokenizer::default(),
            tokenizer_files: None,
        }
    }
}

/// Whose tokens synthetic prompt lengths count.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
#[serde(rename_all = "lowercase")]
pub enum PromptTokenizer {
    /// The tokenizer files when named, else the target's tokenizer when it
    /// serves `/tokenize`, else words.
    #[default]
    Auto,
    /// The target's tokenizer; the run fails when it serves none.
    Server,
    /// One word of the prompt vocabulary per token.
    Words,
    /// The model's tokenizer files; the run fails when they cannot be used.
    Files,
}

/// A model's tokenizer files as Hugging Face publishes them:
/// `tokenizer.json` (needed), and for a chat endpoint its chat template, in
/// `chat_template.jinja` or as `chat_template` in `tokenizer_config.json`
/// (which also names the BOS and EOS tokens). Each file may be gzipped.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(r::TOKENIZER_FILES_ONE_OF_RULE).message(r::TOKENIZER_FILES_ONE_OF_MSG))]
pub struct TokenizerFiles {
    /// A ConfigMap in the run's namespace holding the files under their own
    /// names as keys (`data`, or `binaryData` for gzipped ones: a ConfigMap
    /// holds at most 1 MiB, and a gzipped `tokenizer.json` of a 50k
    /// vocabulary is about 0.6 MB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<LocalObjectName>,
    /// The http(s) URL of a folder holding the files (a model repository's
    /// `…/resolve/main/`), fetched by the load generator before its first
    /// step, following redirects; the target's CA (`target.tls.caRef`) is
    /// trusted for it too, and none of the target's headers or keys are sent,
    /// so the files must be readable without credentials (none in the URL):
    /// mirror a gated model's files, or use a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 8, max = 2048),
        regex(pattern = r"^https?://[^/@\s?#]+([/?][^\s]*)?$")
    )]
    pub url: Option<String>,
}

/// A ConfigMap in the run's namespace, by name.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LocalObjectName {
    /// The ConfigMap's name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// A normal distribution of token counts, truncated at 1.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TokenDistribution {
    /// Mean length in tokens.
    #[schemars(range(min = 1, max = 1000000))]
    pub mean: i64,
    /// Standard deviation in tokens; 0 makes every request the same length.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000000))]
    pub stddev: i64,
}

impl TokenDistribution {
    fn default_input() -> Self {
        TokenDistribution {
            mean: 550,
            stddev: 0,
        }
    }
    fn default_output() -> Self {
        TokenDistribution {
            mean: 150,
            stddev: 0,
        }
    }
}

/// A dataset of OpenAI request payloads, one JSON object per line.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Dataset {
    /// The ConfigMap key holding the JSONL text.
    pub config_map_ref: ConfigMapKeyRef,
}

/// Multi-turn conversations.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Conversations {
    /// Number of distinct conversations: the pool the streams take them from
    /// in turn, reused when the run needs more.
    #[schemars(range(min = 1, max = 1000000))]
    pub count: i64,
    /// Turns per conversation; each turn sends the history so far plus a new prompt.
    #[schemars(range(min = 1, max = 1000))]
    pub turns: i32,
}

/// A sweep over concurrency levels or request rates. Set the list that matches `mode`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(r::SWEEP_ONE_OF_RULE).message(r::SWEEP_ONE_OF_MSG))]
pub struct Sweep {
    /// Concurrency levels, one step each, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(range(min = 1, max = 100000)))]
    pub concurrency: Vec<i32>,
    /// Request rates per second, one step each, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(range(min = 0.001, max = 100000.0)))]
    pub request_rate: Vec<f64>,
}

/// Overrides for the load-generator pods.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Load-generator image. Default: the controller's own image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Compute resources of the load-generator container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node labels the load-generator pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the load-generator pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,
    /// Service account the load-generator pods run as. Default: the namespace's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub service_account_name: Option<String>,
}
