//! The `BenchmarkRun` spec: what to benchmark and how hard to push it.
//!
//! Doc comments on these fields become the CRD descriptions that `kubectl explain
//! benchmarkrun.spec` prints, so they are written for the people who apply runs.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::GoDuration;
use super::load::Load;
use super::status::BenchmarkRunStatus;
use super::telemetry::Telemetry;

/// Desired state of a benchmark: the endpoint under test, the load to send, the
/// telemetry to collect and what to do with the results.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "benchrun.dev",
    doc = "A benchmark of an OpenAI-compatible inference endpoint, with the GPU power and energy it used.",
    version = "v1alpha1",
    kind = "BenchmarkRun",
    plural = "benchmarkruns",
    shortname = "br",
    namespaced,
    status = "BenchmarkRunStatus",
    derive = "PartialEq",
    category = "all",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Queue","type":"integer","description":"Place in the queue for the target, while Queued","jsonPath":".status.queuePosition"}"#,
    printcolumn = r#"{"name":"Req/s","type":"number","format":"float","jsonPath":".status.summary.requestThroughput"}"#,
    printcolumn = r#"{"name":"TTFT p99","type":"number","format":"float","description":"Time to first token, 99th percentile, in milliseconds","jsonPath":".status.summary.ttftP99Ms"}"#,
    printcolumn = r#"{"name":"Tok/J","type":"number","format":"float","description":"Output tokens per joule of GPU energy","jsonPath":".status.summary.outputTokensPerJoule"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = kube::core::Rule::new(super::rules::IMMUTABLE_RULE).message(super::rules::IMMUTABLE_MSG),
    validation = kube::core::Rule::new(super::rules::NO_UNCANCEL_RULE).message(super::rules::NO_UNCANCEL_MSG),
    validation = kube::core::Rule::new(super::rules::TRIAL_STEPS_RULE).message(super::rules::TRIAL_STEPS_MSG),
    cel
)]
#[x_kube(validation = kube::core::Rule::new(super::rules::TIMEOUT_MIN_RULE).message(super::rules::TIMEOUT_MIN_MSG))]
#[serde(rename_all = "camelCase")]
pub struct BenchmarkRunSpec {
    /// The OpenAI-compatible endpoint under test.
    pub target: Target,

    /// The load to send: closed-loop concurrency or open-loop request rate, how many
    /// requests or for how long, and what the prompts look like.
    pub load: Load,

    /// Which Prometheus endpoints to scrape during the run: GPU exporters
    /// (dcgm-exporter or `benchrun gpu-exporter`) and the inference servers' own metrics.
    #[serde(default)]
    pub telemetry: Telemetry,

    /// Service-level objectives. Each one gates the `SLOMet` condition; the run still
    /// succeeds when an objective is missed, so results are never lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub slo: Vec<Slo>,

    /// Where the results go.
    #[serde(default)]
    pub results: ResultsSpec,

    /// A finished run, or a saved results document, to compare this run with
    /// when it ends: the `Regressed` condition names every metric that got
    /// worse past its tolerance (see docs/compare.md). Both are looked up in
    /// the run's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,

    /// Run the whole load (every step of the sweep) this many times, each
    /// trial after a cool-down, and report per metric the mean over the
    /// trials with its 95 % confidence interval, the standard deviation and
    /// the coefficient of variation (`status.trials`). A baseline with
    /// trials on both sides is judged by Welch's t-test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Repeat>,

    /// Upper bound on the whole run, from start to results (Go duration, e.g. "30m").
    /// When it passes, the load generators are stopped, partial results are kept and
    /// the run ends Failed with reason Timeout. Default: no limit beyond the load's own.
    /// Time spent `Queued` does not count: the limit runs from the launch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub timeout: Option<GoDuration>,

    /// Delete the run (and, through owner references, its Job and results ConfigMap)
    /// this many seconds after it finishes. Unset keeps it until you delete it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i32>,

    /// What to do when another run loads the same target (the same Service,
    /// the same pods, or a URL naming either) at the same time. `Queue` (the
    /// default): wait in phase `Queued` until the earlier runs end, in the
    /// order the runs were created, so that no two runs measure each other's
    /// load or count the same GPUs' energy. `Allow`: start at once; the runs
    /// that overlap record it (`status.sharedWith`) and their energy and
    /// efficiency figures are withheld (`MeasurementValid` reason `SharedGpus`).
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,

    /// Set to true to stop a run in progress. Results gathered so far are kept and
    /// the run ends Cancelled. The only field that may change after the run started.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel: bool,
}

/// What a run does when another run loads the same target.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum ConcurrencyPolicy {
    /// Wait until the earlier runs on the same target end.
    #[default]
    Queue,
    /// Start at once, sharing the target; energy and efficiency are withheld.
    Allow,
}

/// The endpoint under test: either a URL or a Service in the run's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new(super::rules::TARGET_ONE_OF_RULE).message(super::rules::TARGET_ONE_OF_MSG),
    validation = kube::core::Rule::new(super::rules::HEADERS_NO_CREDENTIALS_RULE).message(super::rules::HEADERS_NO_CREDENTIALS_MSG),
    validation = kube::core::Rule::new(super::rules::URL_NO_CREDENTIALS_RULE).message(super::rules::URL_NO_CREDENTIALS_MSG),
    validation = kube::core::Rule::new(super::rules::HEADER_NAMES_RULE).message(super::rules::HEADER_NAMES_MSG),
    validation = kube::core::Rule::new(super::rules::HEADERS_NO_FRAMING_RULE).message(super::rules::HEADERS_NO_FRAMING_MSG),
    validation = kube::core::Rule::new(super::rules::HEADERS_FROM_UNIQUE_RULE).message(super::rules::HEADERS_FROM_UNIQUE_MSG),
    validation = kube::core::Rule::new(super::rules::HEADERS_FROM_NO_FRAMING_RULE).message(super::rules::HEADERS_FROM_NO_FRAMING_MSG),
    validation = kube::core::Rule::new(super::rules::HEADERS_FROM_NOT_TWICE_RULE).message(super::rules::HEADERS_FROM_NOT_TWICE_MSG),
    validation = kube::core::Rule::new(super::rules::API_KEY_OR_AUTHORIZATION_RULE).message(super::rules::API_KEY_OR_AUTHORIZATION_MSG),
    validation = kube::core::Rule::new(super::rules::TLS_NEEDS_HTTPS_RULE).message(super::rules::TLS_NEEDS_HTTPS_MSG),
)]
pub struct Target {
    /// Base URL of the server, e.g. "http://vllm.llm.svc:8000". Requests go to
    /// `<url>/v1/chat/completions` or `<url>/v1/completions`. Exactly one of `url` and
    /// `serviceRef` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/\S*)?$"), length(max = 2048))]
    pub url: Option<String>,

    /// A Service in the run's namespace. benchrun resolves it through its
    /// EndpointSlices to the ready pod addresses and spreads requests across them
    /// evenly, bypassing the Service's virtual IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_ref: Option<ServiceRef>,

    /// The model name sent in each request's `model` field.
    #[schemars(length(min = 1, max = 256))]
    pub model: String,

    /// Which OpenAI API to call.
    #[serde(default)]
    pub endpoint_type: EndpointType,

    /// The request path under the target, instead of `endpointType`'s OpenAI
    /// one (`/v1/chat/completions`, `/v1/completions`): a gateway's route,
    /// e.g. `/openai/deployments/llama/chat/completions`. The body is still
    /// `endpointType`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$"),
        length(max = 256)
    )]
    pub path: Option<String>,

    /// A Secret key holding the API key; sent as `Authorization: Bearer <key>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,

    /// Extra HTTP headers sent with every request. Not for credentials:
    /// those go in a Secret (`headersFrom`, or `apiKeySecretRef` for a bearer
    /// key). Values are single lines.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 32,
        "additionalProperties" = {"type": "string", "maxLength": 4096, "pattern": "^[^\\r\\n]*$"}
    ))]
    pub headers: BTreeMap<String, String>,

    /// HTTP headers whose values come from Secrets in the run's namespace: API
    /// keys, gateway tokens, cookies. The kubelet hands each value to the load
    /// generators' environment; the values never appear in the run, its Job's
    /// spec, its plan, its results or the controller's logs, and the controller
    /// never reads them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers_from: Vec<HeaderFromSecret>,

    /// TLS for an `https` target: the CA that signed its certificate (trusted
    /// besides the image's roots), a client certificate for gateways that ask
    /// for one, or no verification at all. The load generators read the
    /// Secrets and ConfigMaps named here, in the run's namespace; the
    /// controller never does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TargetTls>,
}

/// TLS for the target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(super::rules::TLS_CA_OR_INSECURE_RULE).message(super::rules::TLS_CA_OR_INSECURE_MSG))]
pub struct TargetTls {
    /// PEM CA certificates (a bundle) that signed the target's certificate,
    /// e.g. cert-manager's `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_ref: Option<CaRef>,
    /// A Secret of type `kubernetes.io/tls` (keys `tls.crt` and `tls.key`)
    /// in the run's namespace: the client certificate the load generators
    /// present (mTLS gateways).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub client_certificate_secret_name: Option<String>,
    /// Accept any server certificate: the traffic is encrypted, the server
    /// not authenticated. The run's results say so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// The name the target's certificate must hold. Default: the URL's host;
    /// for a `serviceRef`, whose requests go to its pods by address, the
    /// Service's DNS name `<name>.<namespace>.svc`, as certificates for a
    /// Service are issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[A-Za-z0-9.:\[\]-]+$"))]
    pub server_name: Option<String>,
}

/// Where a CA bundle is: a Secret's key or a ConfigMap's key, in the run's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(super::rules::CA_REF_ONE_OF_RULE).message(super::rules::CA_REF_ONE_OF_MSG))]
pub struct CaRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeyRef>,
}

/// One request header whose value is a Secret's key.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeaderFromSecret {
    /// The header's name, e.g. `X-Api-Key` or `Authorization` (the value is sent
    /// exactly as stored, so an `Authorization` value carries its scheme, e.g.
    /// `Bearer sk-...`).
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[-A-Za-z0-9!#$%&'*+.^_|~]+$")
    )]
    pub name: String,
    /// The Secret key holding the value (one line).
    pub secret_key_ref: SecretKeyRef,
}

/// A Service and one of its ports.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(super::rules::PORT_ONE_OF_RULE).message(super::rules::PORT_ONE_OF_MSG))]
pub struct ServiceRef {
    /// Name of the Service, in the run's namespace.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Service port number. Set this or `portName`; with neither, the Service must
    /// have exactly one port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Service port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub port_name: Option<String>,
    /// URL scheme used to reach the pods.
    #[serde(default)]
    pub scheme: Scheme,
    /// How requests reach the Service. `endpoints` (the default): straight
    /// to its ready pods by address, from its EndpointSlices, spread evenly
    /// over them whatever the proxy does. `service`: through the Service
    /// itself, by its cluster DNS name `<name>.<namespace>.svc` and virtual
    /// IP, as the cluster's other clients reach it (its session affinity,
    /// traffic policy and proxy included). The results record which.
    #[serde(default)]
    pub routing: Routing,
}

/// How requests reach a `serviceRef`.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// To the Service's ready pods by address.
    #[default]
    Endpoints,
    /// Through the Service's DNS name and virtual IP.
    Service,
}

/// URL scheme.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

/// The OpenAI-compatible API to call.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
#[serde(rename_all = "lowercase")]
pub enum EndpointType {
    /// `/v1/chat/completions` with a `messages` array.
    #[default]
    Chat,
    /// `/v1/completions` with a `prompt` string.
    Completions,
}

/// A key of a Secret in the run's namespace.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretKeyRef {
    /// Secret name, in the run's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// A ConfigMap key in the run's namespace.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ConfigMapKeyRef {
    /// ConfigMap name, in the run's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key within the ConfigMap.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Trials: the same load run several times.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(super::rules::COOL_DOWN_RULE).message(super::rules::COOL_DOWN_MSG))]
pub struct Repeat {
    /// How many trials (2 to 10). Each runs every step of the load, with
    /// its own warmup and boundary scrapes.
    #[schemars(range(min = 2, max = 10))]
    pub count: i32,
    /// The pause before each trial after the first (Go duration, 0s to
    /// 30m), so the GPUs return towards their resting temperature; no load
    /// is sent meanwhile. Default "30s". Each trial records the temperature
    /// its GPUs started at.
    #[serde(default = "default_cool_down")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub cool_down: GoDuration,
}

fn default_cool_down() -> GoDuration {
    std::time::Duration::from_secs(30).into()
}

/// What a run is compared with when it ends, and how much worse a metric
/// may get before the run counts as regressed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new(super::rules::BASELINE_ONE_OF_RULE).message(super::rules::BASELINE_ONE_OF_MSG),
    validation = kube::core::Rule::new(super::rules::TOLERANCE_METRICS_UNIQUE_RULE).message(super::rules::TOLERANCE_METRICS_UNIQUE_MSG),
)]
pub struct Baseline {
    /// A BenchmarkRun in this namespace that has finished; its results
    /// ConfigMap is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub run_ref: Option<String>,
    /// A results ConfigMap in this namespace (one benchrun wrote, or a copy
    /// of one kept past its run's TTL, with its labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub config_map_ref: Option<String>,
    /// The metrics that gate, each with how much worse it may get. Empty:
    /// every summary metric the baseline has, each by 5 %.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerances: Vec<Tolerance>,
}

/// How much worse one metric may get than the baseline's.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Tolerance {
    pub metric: SloMetric,
    /// The largest change for the worse that still passes, in percent of
    /// the baseline's value (e.g. "5%"; "0%": any change for the worse).
    #[schemars(length(max = 12), regex(pattern = r"^[0-9]{1,3}(\.[0-9]{1,3})?%$"))]
    pub max_regression: String,
}

impl Tolerance {
    /// The tolerance as a fraction (0.05 for "5%").
    pub fn fraction(&self) -> Option<f64> {
        percent(&self.max_regression)
    }
}

/// "5%" as 0.05.
pub fn percent(text: &str) -> Option<f64> {
    let v: f64 = text.trim().strip_suffix('%')?.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v / 100.0)
}

/// One service-level objective on a summary metric.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = kube::core::Rule::new(super::rules::SLO_BOUND_RULE).message(super::rules::SLO_BOUND_MSG))]
pub struct Slo {
    /// The summary metric the objective is about.
    pub metric: SloMetric,
    /// The metric must be at most this value (latencies, energy per token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The metric must be at least this value (throughput, tokens per joule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
}

/// Summary metrics an SLO can gate on; the names match `status.summary`.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum SloMetric {
    RequestThroughput,
    OutputTokenThroughput,
    TtftP50Ms,
    TtftP99Ms,
    ItlP50Ms,
    ItlP99Ms,
    LatencyP99Ms,
    /// Time to the first answer token, for reasoning models (for a model
    /// that does not reason, the first token is the first answer token).
    TtfatP50Ms,
    TtfatP99Ms,
    ErrorRate,
    /// Requests per second that met every per-request objective (the
    /// latency objectives among the SLOs).
    Goodput,
    OutputTokensPerJoule,
    EnergyPerOutputTokenJ,
    /// Mean total power of the target's GPUs over the measured phase, W.
    TotalGpuPowerW,
}

impl SloMetric {
    /// Every metric, in the order tables show them.
    pub const ALL: [SloMetric; 14] = [
        SloMetric::RequestThroughput,
        SloMetric::OutputTokenThroughput,
        SloMetric::Goodput,
        SloMetric::TtftP50Ms,
        SloMetric::TtftP99Ms,
        SloMetric::TtfatP50Ms,
        SloMetric::TtfatP99Ms,
        SloMetric::ItlP50Ms,
        SloMetric::ItlP99Ms,
        SloMetric::LatencyP99Ms,
        SloMetric::ErrorRate,
        SloMetric::OutputTokensPerJoule,
        SloMetric::EnergyPerOutputTokenJ,
        SloMetric::TotalGpuPowerW,
    ];

    /// The metric's name in `status.summary`.
    pub fn name(self) -> &'static str {
        match self {
            SloMetric::RequestThroughput => "requestThroughput",
            SloMetric::OutputTokenThroughput => "outputTokenThroughput",
            SloMetric::TtftP50Ms => "ttftP50Ms",
            SloMetric::TtftP99Ms => "ttftP99Ms",
            SloMetric::ItlP50Ms => "itlP50Ms",
            SloMetric::ItlP99Ms => "itlP99Ms",
            SloMetric::LatencyP99Ms => "latencyP99Ms",
            SloMetric::TtfatP50Ms => "ttfatP50Ms",
            SloMetric::TtfatP99Ms => "ttfatP99Ms",
            SloMetric::ErrorRate => "errorRate",
            SloMetric::Goodput => "goodput",
            SloMetric::OutputTokensPerJoule => "outputTokensPerJoule",
            SloMetric::EnergyPerOutputTokenJ => "energyPerOutputTokenJ",
            SloMetric::TotalGpuPowerW => "totalGpuPowerW",
        }
    }

    /// The metric's value in a summary; `None` where it was not measured
    /// or was withheld. A model that does not reason has its first answer
    /// token as its first token.
    pub fn of(self, s: &super::Summary) -> Option<f64> {
        match self {
            SloMetric::RequestThroughput => s.request_throughput,
            SloMetric::OutputTokenThroughput => s.output_token_throughput,
            SloMetric::TtftP50Ms => s.ttft_p50_ms,
            SloMetric::TtftP99Ms => s.ttft_p99_ms,
            SloMetric::ItlP50Ms => s.itl_p50_ms,
            SloMetric::ItlP99Ms => s.itl_p99_ms,
            SloMetric::LatencyP99Ms => s.latency_p99_ms,
            SloMetric::TtfatP50Ms => s.ttfat_p50_ms.or(s.ttft_p50_ms),
            SloMetric::TtfatP99Ms => s.ttfat_p99_ms.or(s.ttft_p99_ms),
            SloMetric::ErrorRate => s.error_rate,
            SloMetric::Goodput => s.goodput,
            SloMetric::OutputTokensPerJoule => s.output_tokens_per_joule,
            SloMetric::EnergyPerOutputTokenJ => s.energy_per_output_token_j,
            SloMetric::TotalGpuPowerW => s.total_gpu_power_w,
        }
    }

    /// Whether more is better (throughput, goodput, tokens per joule) rather
    /// than less (latencies, errors, energy per token).
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            SloMetric::RequestThroughput
                | SloMetric::OutputTokenThroughput
                | SloMetric::Goodput
                | SloMetric::OutputTokensPerJoule
        )
    }
}

/// What happens to the results.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResultsSpec {
    /// Name of the results ConfigMap. Default: `<run-name>-results`. The run
    /// creates it; a ConfigMap of that name that is not the run's is left
    /// untouched and the run fails with `ResultsConflict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
        length(max = 253)
    )]
    pub config_map_name: Option<String>,
    /// Also store the run over time as `timeseries.jsonl` in the results: per
    /// scrape the GPUs' power, energy, utilization, activity, temperature and
    /// memory and the servers' gauges and counters; per progress answer the
    /// client's counts and rates. Bounded: past 8 MiB neighbouring
    /// records are merged (the file says how often), never cut.
    #[serde(default)]
    pub timeseries: bool,
}
