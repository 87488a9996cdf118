//! The `BenchmarkRun` API (benchrun.dev/v1alpha1): types, CEL rules, the generated
//! CRD and the validation the controller repeats before it acts.
//!
//! Pure: nothing here talks to an API server.

mod crd;
mod load;
pub mod rules;
mod spec;
mod status;
mod telemetry;
mod validate;

pub use crd::{crd, crd_yaml};
pub use load::{
    Arrival, Conversations, Dataset, Input, Load, LoadMode, LocalObjectName, PodOverrides,
    PromptTokenizer, Sweep, Synthetic, TokenDistribution, TokenizerFiles,
};
pub use spec::{
    Baseline, BenchmarkRun, BenchmarkRunSpec, CaRef, ConcurrencyPolicy, ConfigMapKeyRef,
    EndpointType, Repeat, ResultsSpec, Routing, Scheme, SecretKeyRef, ServiceRef, Slo, SloMetric,
    Target, TargetTls, Tolerance, percent,
};
pub use status::{
    BenchmarkRunStatus, EndpointCounts, Endpoints, Phase, Progress, StepResult, Summary,
    TrialsResult, load_label,
};
pub use telemetry::{
    BasicAuth, EndpointTls, GpuScope, GpuTelemetry, ScrapeAuth, ServerTelemetry, Telemetry,
};
pub use validate::{FieldError, InvalidSpec, validate, validate_json};

/// A Go-style duration string ("100ms", "5m", "1h30m"), as Kubernetes APIs use.
pub type GoDuration = kube::core::Duration;

/// The API group.
pub const GROUP: &str = "benchrun.dev";
/// The API version.
pub const VERSION: &str = "v1alpha1";

fn default_true() -> bool {
    true
}
