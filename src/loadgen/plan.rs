//! The load plan: everything one load-generator worker needs to know, written by the
//! controller into the run's `<run>-plan` ConfigMap (mounted into the Job's pods)
//! and read by `benchrun loadgen --worker`.
//!
//! It is versioned: a worker refuses a plan whose `schemaVersion` it does not know,
//! rather than running a different benchmark than the one asked for.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The environment variable that names the plan's file (a Job worker's: the
/// run's `<run>-plan` ConfigMap, mounted).
pub const PLAN_FILE_ENV: &str = "BENCHRUN_PLAN_FILE";
/// The environment variable that carries the plan as JSON, for a worker
/// started by hand (a Job's plan is a file: an environment variable has a
/// kernel limit of 128 KiB, which headers and extra inputs could pass).
pub const PLAN_ENV: &str = "BENCHRUN_PLAN";
/// The environment variable that carries the API key, when the run names one.
pub const API_KEY_ENV: &str = "BENCHRUN_API_KEY";
/// The prefix of the environment variables carrying `headersFrom` values
/// (`BENCHRUN_HEADER_0`, `BENCHRUN_HEADER_1`, ...).
pub const HEADER_ENV_PREFIX: &str = "BENCHRUN_HEADER_";
/// The target's CA bundle (PEM), from the Secret or ConfigMap `target.tls.caRef` names.
pub const TLS_CA_ENV: &str = "BENCHRUN_TLS_CA";
/// The client certificate and key (PEM), from `target.tls.clientCertificateSecretName`.
pub const TLS_CERT_ENV: &str = "BENCHRUN_TLS_CERT";
pub const TLS_KEY_ENV: &str = "BENCHRUN_TLS_KEY";
/// The plan schema this build reads and writes.
pub const PLAN_SCHEMA_VERSION: u32 = 1;

/// What to run, as one worker sees it. Totals (`concurrency`, `requestRate`,
/// `requestCount`) are for the whole run; each worker takes its share by its index.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoadPlan {
    pub schema_version: u32,
    /// Base URLs of the server; streams are spread across them evenly.
    pub urls: Vec<String>,
    pub model: String,
    pub endpoint: Endpoint,
    pub streaming: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Read the API key from [`API_KEY_ENV`].
    #[serde(default)]
    pub api_key_from_env: bool,
    /// Headers whose values the worker reads from environment variables
    /// (header name → variable name): the values come from Secrets, so the
    /// plan names only where to find them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers_from_env: BTreeMap<String, String>,
    pub workers: u32,
    /// The steps to run in order; a run without a sweep has one.
    pub steps: Vec<Step>,
    /// Trials: the steps run this many times, in order, each trial after
    /// the first behind a cool-down. Step `i` of trial `r` is measured step
    /// `r × steps.len() + i` (progress and results count measured steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<RepeatPlan>,
    pub stop: StopCondition,
    pub warmup_requests: u64,
    pub arrival: Arrival,
    pub input: InputPlan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversations: Option<ConversationPlan>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra_body: serde_json::Map<String, serde_json::Value>,
    pub seed: u64,
    /// Per-request objectives for goodput (from the run's SLOs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput: Option<Goodput>,
    /// How HTTPS servers are verified, and the client certificate.
    #[serde(default, skip_serializing_if = "TlsPlan::is_default")]
    pub tls: TlsPlan,
    /// The request path, when not the endpoint's OpenAI one (a gateway's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Whose tokens synthetic prompt lengths count (see [`super::tokenize`]).
    #[serde(default)]
    pub tokenizer: Tokenizer,
    /// The model's tokenizer files, for `files` (and tried first by `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_files: Option<TokenizerFiles>,
    /// Debug: write each measured request's timings, and the server's own
    /// where it reports them (llama.cpp's `timings`), to this file as JSON
    /// lines (`benchrun loadgen --server-timings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_timings_file: Option<std::path::PathBuf>,
}

/// Whose tokens synthetic prompt lengths count: the load generator's own
/// word of the run's `load.input.synthetic.tokenizer`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Tokenizer {
    /// The target's tokenizer when it can be asked, else words.
    #[default]
    Auto,
    /// The target's tokenizer; the worker fails when it cannot be asked.
    Server,
    /// One word of the prompt vocabulary per token.
    Words,
    /// The model's tokenizer files ([`LoadPlan::tokenizer_files`]); the
    /// worker fails when they cannot be used.
    Files,
}

/// Where a model's tokenizer files are (see [`super::tokenize::files`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenizerFiles {
    pub at: FilesAt,
    /// How the results name where they came from (a ConfigMap, the URL).
    pub origin: String,
}

/// A folder of tokenizer files, or the base URL they are fetched from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum FilesAt {
    Dir(std::path::PathBuf),
    /// The environment variable naming the folder: a Job worker's mounted
    /// ConfigMap, found the way its plan is ([`TOKENIZER_DIR_ENV`]).
    Env(String),
    /// An `http(s)://` folder.
    Url(String),
}

impl FilesAt {
    /// A user's `DIR|URL`.
    pub fn parse(s: &str) -> FilesAt {
        if s.starts_with("http://") || s.starts_with("https://") {
            FilesAt::Url(s.to_string())
        } else {
            FilesAt::Dir(s.into())
        }
    }
}

/// The folder of a Job worker's tokenizer files (a mounted ConfigMap).
pub const TOKENIZER_DIR_ENV: &str = "BENCHRUN_TOKENIZER_DIR";

/// TLS for the target: where each PEM is (a file, or a variable the kubelet
/// fills from a Secret), never the PEM itself, so the plan carries no key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsPlan {
    /// CA bundle trusted besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PemSource>,
    /// Accept any server certificate (the results say so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// Client certificate chain and key, for gateways that ask for mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PemSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PemSource>,
    /// The name the target's certificate must hold, when not the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// Where a PEM is: a file, or an environment variable (a Job worker's, from
/// the run's Secrets and ConfigMaps).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum PemSource {
    File(std::path::PathBuf),
    Env(String),
}

impl PemSource {
    fn read(&self, env: &impl Fn(&str) -> Option<String>) -> Result<Vec<u8>, String> {
        match self {
            PemSource::File(p) => {
                std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))
            }
            PemSource::Env(v) => env(v)
                .map(String::into_bytes)
                .ok_or_else(|| format!("the variable {v} is not set")),
        }
    }
}

impl TlsPlan {
    fn is_default(&self) -> bool {
        *self == TlsPlan::default()
    }

    /// The options, with the files and variables read; an error naming the
    /// file or variable that cannot be.
    pub fn options(&self) -> Result<crate::net::tls::TlsOptions, String> {
        self.options_from(|v| std::env::var(v).ok())
    }

    /// [`TlsPlan::options`] with the variables looked up by `env`.
    pub fn options_from(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<crate::net::tls::TlsOptions, String> {
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err("a client certificate needs its key, and a key its certificate".into());
        }
        let read = |s: &Option<PemSource>| s.as_ref().map(|s| s.read(&env)).transpose();
        Ok(crate::net::tls::TlsOptions {
            ca_pem: read(&self.ca)?,
            insecure_skip_verify: self.insecure_skip_verify,
            identity: read(&self.client_cert)?.zip(read(&self.client_key)?),
            server_name: self.server_name.clone(),
        })
    }
}

/// A request counts towards goodput when it succeeded and meets every bound given.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Goodput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

impl Goodput {
    /// Whether a successful request with these times (seconds) meets every bound.
    pub fn met(&self, ttft: Option<f64>, itl: Option<f64>, latency: f64) -> bool {
        let within = |v: Option<f64>, max: Option<f64>| match (v, max) {
            (_, None) => true,
            (Some(v), Some(m)) => v * 1e3 <= m,
            (None, Some(_)) => false,
        };
        within(ttft, self.ttft_ms)
            && within(itl.or(Some(0.0)), self.itl_ms)
            && within(Some(latency), self.latency_ms)
    }
}

/// Which OpenAI API to call.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Endpoint {
    Chat,
    Completions,
}

/// One step of load: a closed loop of `concurrency` streams, or an open loop of
/// `rate` requests per second (optionally capped at `concurrency` in flight).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

/// When a step's measured phase ends.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum StopCondition {
    Requests(u64),
    DurationMs(u64),
}

/// Arrival process for rate steps.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Arrival {
    Poisson,
    Constant,
}

/// Where prompts come from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum InputPlan {
    Synthetic {
        input_mean: u64,
        input_stddev: u64,
        output_mean: u64,
        output_stddev: u64,
    },
    /// JSONL request payloads in a file: the dataset ConfigMap, mounted into the pod.
    Dataset { path: String },
}

/// Trials of a plan's steps.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RepeatPlan {
    pub trials: u32,
    /// The pause before each trial after the first, ms: no load is sent.
    pub cool_down_ms: u64,
}

/// Multi-turn conversations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ConversationPlan {
    pub count: u64,
    pub turns: u32,
}

impl LoadPlan {
    /// Every measured step in order, trials after one another, each with
    /// the cool-down before it (ms; 0 for most).
    pub fn measured_steps(&self) -> impl Iterator<Item = (&Step, u64)> {
        let (trials, cool_down) = self
            .repeat
            .map_or((1, 0), |r| (r.trials.max(1), r.cool_down_ms));
        (0..trials).flat_map(move |r| {
            self.steps
                .iter()
                .enumerate()
                .map(move |(i, s)| (s, if r > 0 && i == 0 { cool_down } else { 0 }))
        })
    }

    /// Where requests go under each URL: `path`, else the endpoint's.
    pub fn request_path(&self) -> &str {
        self.path
            .as_deref()
            .unwrap_or(super::request::path(self.endpoint))
    }

    /// Reads a plan, refusing schema versions this build does not know.
    pub fn from_json(json: &str) -> Result<LoadPlan, PlanError> {
        #[derive(Deserialize)]
        struct Version {
            #[serde(rename = "schemaVersion")]
            schema_version: u32,
        }
        let v: Version = serde_json::from_str(json).map_err(PlanError::Malformed)?;
        if v.schema_version != PLAN_SCHEMA_VERSION {
            return Err(PlanError::Version(v.schema_version));
        }
        serde_json::from_str(json).map_err(PlanError::Malformed)
    }

    /// Adds the headers whose values come from the environment (`env` looks a
    /// variable up). An error names the header and the variable, never the value.
    pub fn resolve_env_headers(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), String> {
        for (header, var) in std::mem::take(&mut self.headers_from_env) {
            let Some(value) = env(&var) else {
                return Err(format!(
                    "the value of header {header} is missing: variable {var} is not set"
                ));
            };
            // A trailing newline is how Secrets made from files often end.
            let value = value.strip_suffix('\n').unwrap_or(&value);
            let value = value.strip_suffix('\r').unwrap_or(value);
            if value.contains(['\r', '\n', '\0']) {
                return Err(format!(
                    "the value of header {header} (variable {var}) spans more than one line"
                ));
            }
            self.headers.insert(header, value.to_string());
        }
        Ok(())
    }
}

/// Why a plan cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the load plan is not valid JSON for this version: {0}")]
    Malformed(serde_json::Error),
    #[error(
        "the load plan has schemaVersion {0}; this benchrun reads version {PLAN_SCHEMA_VERSION}"
    )]
    Version(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_from_the_environment_join_the_plain_ones_and_errors_never_show_a_value() {
        let env = |var: &str| match var {
            "H0" => Some("Bearer sk-secret\n".to_string()),
            "H1" => Some("sess=1".to_string()),
            "BAD" => Some("sk-secret\r\nX-Evil: 1".to_string()),
            _ => None,
        };
        let plan_with = |vars: &[(&str, &str)]| {
            let mut p = crate::loadgen::request::tests::plan(Endpoint::Chat, true);
            p.headers = BTreeMap::from([("X-Team".into(), "a".into())]);
            p.headers_from_env = vars
                .iter()
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect();
            p
        };
        let mut plan = plan_with(&[("Authorization", "H0"), ("Cookie", "H1")]);
        plan.resolve_env_headers(env).unwrap();
        assert_eq!(plan.headers["Authorization"], "Bearer sk-secret");
        assert_eq!(plan.headers["Cookie"], "sess=1");
        assert_eq!(plan.headers["X-Team"], "a");
        assert!(plan.headers_from_env.is_empty());

        let mut missing = plan_with(&[("X-Key", "UNSET")]);
        let e = missing.resolve_env_headers(env).unwrap_err();
        assert!(e.contains("X-Key") && e.contains("UNSET"), "{e}");

        let mut smuggled = plan_with(&[("X-Key", "BAD")]);
        let e = smuggled.resolve_env_headers(env).unwrap_err();
        assert!(
            e.contains("X-Key") && e.contains("more than one line"),
            "{e}"
        );
        assert!(!e.contains("sk-secret"), "the value stays secret: {e}");
    }

    #[test]
    fn goodput_bounds_each_request() {
        let g = Goodput {
            ttft_ms: Some(100.0),
            itl_ms: Some(10.0),
            latency_ms: None,
        };
        assert!(g.met(Some(0.1), Some(0.01), 9.0));
        assert!(!g.met(Some(0.1001), Some(0.01), 0.2));
        assert!(!g.met(Some(0.05), Some(0.02), 0.2));
        assert!(g.met(Some(0.05), None, 0.2), "one token: no ITL to miss");
        assert!(!g.met(None, None, 0.2), "no first token: no TTFT to meet");
    }

    #[test]
    fn unknown_versions_are_refused() {
        let json = r#"{"schemaVersion":2}"#;
        assert!(matches!(
            LoadPlan::from_json(json),
            Err(PlanError::Version(2))
        ));
        assert!(matches!(
            LoadPlan::from_json("{"),
            Err(PlanError::Malformed(_))
        ));
    }
}
