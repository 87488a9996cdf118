//! `spec.telemetry`: which `/metrics` endpoints to scrape during a run.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::GoDuration;
use super::rules as r;

/// Scrape settings for GPU exporters and inference servers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new(r::INTERVAL_MIN_RULE).message(r::INTERVAL_MIN_MSG),
    validation = kube::core::Rule::new(r::SCRAPE_TIMEOUT_RULE).message(r::SCRAPE_TIMEOUT_MSG),
    validation = kube::core::Rule::new(r::IDLE_BASELINE_RULE).message(r::IDLE_BASELINE_MSG),
)]
pub struct Telemetry {
    /// GPU exporters: dcgm-exporter, or `benchrun gpu-exporter` where DCGM is absent.
    #[serde(default)]
    pub gpu: GpuTelemetry,
    /// The inference servers' own Prometheus metrics (vLLM, SGLang, TRT-LLM, NIM...).
    #[serde(default)]
    pub server: ServerTelemetry,
    /// Time between scrapes (Go duration, at least 100ms). Default "1s". One extra
    /// scrape is always taken at the start and at the end of the measured phase.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub interval: GoDuration,
    /// Timeout of one scrape (Go duration). Default "2s"; must not exceed 60s.
    #[serde(default = "default_scrape_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub timeout: GoDuration,
    /// Measure the target's GPUs idle for this long (Go duration, 1s to 10m)
    /// just before the first step, once the load generators are ready and
    /// before they send anything; each step then reports the energy above
    /// that idle power beside the total (`energyAboveIdleJ`): what the load
    /// cost rather than what the GPUs drew. Unset: no idle baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub idle_baseline: Option<GoDuration>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            gpu: GpuTelemetry::default(),
            server: ServerTelemetry::default(),
            interval: default_interval(),
            timeout: default_scrape_timeout(),
            idle_baseline: None,
        }
    }
}

fn default_interval() -> GoDuration {
    std::time::Duration::from_secs(1).into()
}

fn default_scrape_timeout() -> GoDuration {
    std::time::Duration::from_secs(2).into()
}

fn default_metrics_path() -> String {
    "/metrics".to_string()
}

/// GPU exporter discovery.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(r::PORT_ONE_OF_RULE).message(r::PORT_ONE_OF_MSG))]
pub struct GpuTelemetry {
    /// Collect GPU telemetry. Default true.
    #[serde(default = "super::default_true")]
    pub enabled: bool,
    /// Labels of the exporter pods. Default: `app.kubernetes.io/name=dcgm-exporter`
    /// (the NVIDIA GPU Operator's and the dcgm-exporter chart's label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Namespaces to look for exporter pods in. Default: every namespace the
    /// run may read: its own, the operator's, those its installer opened, and
    /// those labelled `benchrun.dev/telemetry=readable`. Others are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    pub namespaces: Vec<String>,
    /// Container port number of the exporter's metrics endpoint. Default 9400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Container port name of the metrics endpoint, instead of `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    pub port_name: Option<String>,
    /// HTTP path of the metrics endpoint.
    #[serde(default = "default_metrics_path")]
    #[schemars(regex(pattern = r"^/\S*$"), length(max = 256))]
    pub path: String,
    /// Which GPUs count toward the results. `auto` uses `targetPods` when the
    /// exporter labels GPUs with the pods using them, else `targetNodes`.
    /// `targetPods`: only GPUs whose series carry the inference pods' names.
    /// `targetNodes`: every GPU on the nodes that host the inference pods.
    /// `all`: every GPU the exporters report.
    #[serde(default)]
    pub scope: GpuScope,
    /// Extra exporter URLs to scrape as they are, e.g. exporters outside the
    /// cluster. Only hosts on the installer's allow-list are scraped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(regex(pattern = r"^https?://\S+$"), length(max = 2048))
    )]
    pub urls: Vec<String>,
    /// TLS for exporters that serve HTTPS: discovered exporters are scraped
    /// over `https` when this is set, verified against the system's roots and
    /// `caRef`, or not verified at all (the results say so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<EndpointTls>,
}

impl Default for GpuTelemetry {
    fn default() -> Self {
        GpuTelemetry {
            enabled: true,
            selector: None,
            namespaces: Vec::new(),
            port: None,
            port_name: None,
            path: default_metrics_path(),
            scope: GpuScope::default(),
            urls: Vec::new(),
            tls: None,
        }
    }
}

/// How GPU series are attributed to the target.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
#[serde(rename_all = "camelCase")]
pub enum GpuScope {
    #[default]
    Auto,
    TargetPods,
    TargetNodes,
    All,
}

/// Inference server metrics discovery.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(r::PORT_ONE_OF_RULE).message(r::PORT_ONE_OF_MSG))]
pub struct ServerTelemetry {
    /// Collect server metrics. Default true.
    #[serde(default = "super::default_true")]
    pub enabled: bool,
    /// Labels of the inference pods. Default: the pods behind `target.serviceRef`.
    /// These pods also decide which GPUs belong to the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Namespaces to look for inference pods in. Default: the run's namespace.
    /// Others only when the run may read them (see `gpu.namespaces`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    pub namespaces: Vec<String>,
    /// Container port number of the metrics endpoint. Default: the target's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Container port name of the metrics endpoint, instead of `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    pub port_name: Option<String>,
    /// HTTP path of the metrics endpoint; `/prometheus/metrics` is tried when this
    /// one does not serve the Prometheus text format.
    #[serde(default = "default_metrics_path")]
    #[schemars(regex(pattern = r"^/\S*$"), length(max = 256))]
    pub path: String,
    /// Extra server metrics URLs to scrape as they are. Only hosts on the
    /// installer's allow-list are scraped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(regex(pattern = r"^https?://\S+$"), length(max = 2048))
    )]
    pub urls: Vec<String>,
    /// Keep only metric families whose name matches one of these regular expressions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 256)))]
    pub include: Vec<String>,
    /// Drop metric families whose name matches one of these regular expressions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 256)))]
    pub exclude: Vec<String>,
    /// Credentials for server metrics endpoints behind authentication (a
    /// gateway, a `--metrics-auth` flag): sent to the server endpoints only,
    /// never to GPU exporters. The controller reads these Secrets, so the
    /// installer must allow it (chart value `telemetry.scrapeCredentials`) and
    /// each Secret must carry the label `benchrun.dev/scrape-credentials=true`
    /// (its owner's consent). The values never reach results, events or logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ScrapeAuth>,
    /// TLS for server metrics endpoints that serve HTTPS (discovered pods are
    /// then scraped over `https`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<EndpointTls>,
}

/// How a metrics endpoint's certificate is verified.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(r::TLS_CA_OR_INSECURE_RULE).message(r::TLS_CA_OR_INSECURE_MSG))]
pub struct EndpointTls {
    /// PEM CA certificates that signed the endpoints' certificates, besides
    /// the system's roots. A Secret named here needs the label
    /// `benchrun.dev/scrape-credentials=true`, as for `auth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_ref: Option<super::CaRef>,
    /// Accept any certificate: encrypted, not authenticated. The results say so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// The name the endpoints' certificates must hold, instead of the pod
    /// address they are scraped at (e.g. `vllm.llm.svc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[A-Za-z0-9.:\[\]-]+$"))]
    pub server_name: Option<String>,
}

/// Credentials for the server metrics endpoints: exactly one kind.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(r::SCRAPE_AUTH_ONE_OF_RULE).message(r::SCRAPE_AUTH_ONE_OF_MSG))]
pub struct ScrapeAuth {
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<super::SecretKeyRef>,
    /// Sent as `Authorization: Basic <base64(username:password)>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
}

/// HTTP basic authentication, both parts from Secrets.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    pub username_secret_ref: super::SecretKeyRef,
    pub password_secret_ref: super::SecretKeyRef,
}

impl Default for ServerTelemetry {
    fn default() -> Self {
        ServerTelemetry {
            enabled: true,
            selector: None,
            namespaces: Vec::new(),
            port: None,
            port_name: None,
            path: default_metrics_path(),
            urls: Vec::new(),
            include: Vec::new(),
            auth: None,
            tls: None,
            exclude: Vec::new(),
        }
    }
}
