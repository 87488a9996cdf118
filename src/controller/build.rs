//! The build stage: a validated run in, the objects it should own out.
//!
//! Pure: no client, no clock. Tested as "run in, Job out".

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapKeySelector, ConfigMapVolumeSource, Container, ContainerPort,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use super::names;
use crate::api::{self, BenchmarkRun, LoadMode, PromptTokenizer};
use crate::loadgen::plan::{self as lp, LoadPlan, Tokenizer};
use crate::results::ConfigMapData;

/// Where the run's plan ConfigMap is mounted in load-generator pods.
pub const PLAN_DIR: &str = "/var/run/benchrun/plan";
const PLAN_FILE: &str = "plan.json";
/// Where a dataset ConfigMap is mounted in load-generator pods.
pub const DATASET_DIR: &str = "/var/run/benchrun/dataset";
const DATASET_FILE: &str = "dataset.jsonl";
/// Where a `tokenizerFiles.configMapRef` ConfigMap is mounted, whole (its
/// keys are the files' names).
pub const TOKENIZER_DIR: &str = "/var/run/benchrun/tokenizer";
/// UID and GID of the load-generator (distroless `nonroot`).
const NONROOT: i64 = 65532;

/// Controller settings the build stage needs.
#[derive(Clone, Debug)]
pub struct BuildSettings {
    /// Image for load-generator pods when the run names none.
    pub loadgen_image: String,
    /// Workers require their run's token, derived from this key: the
    /// Job's pods carry it in `BENCHRUN_WORKER_TOKEN` (see `worker_auth`).
    pub worker_key: Option<super::worker_auth::WorkerKey>,
    /// Images a run's `load.podTemplate.image` may name besides
    /// `loadgen_image`: whole references, or prefixes ending in `*`.
    pub allowed_images: Vec<String>,
    /// Service accounts `load.podTemplate.serviceAccountName` may name.
    pub allowed_service_accounts: Vec<String>,
    /// The controller's namespace, when each run's workers get a
    /// NetworkPolicy that admits only the controller to their port.
    pub network_policy: Option<String>,
}

impl BuildSettings {
    /// Why the installer's policy refuses the run's load-generator pods, or
    /// `None`. A run is input from a tenant: whoever may create one must not
    /// get pods of any image, or any service account's rights, through it.
    pub fn refuses(&self, run: &BenchmarkRun) -> Option<String> {
        let overrides = run.spec.load.pod_template.as_ref()?;
        let mut refused = Vec::new();
        if let Some(image) = overrides.image.as_deref()
            && image != self.loadgen_image
            && !self
                .allowed_images
                .iter()
                .any(|a| match a.strip_suffix('*') {
                    Some(prefix) => image.starts_with(prefix),
                    None => a == image,
                })
        {
            refused.push(format!(
                "load.podTemplate.image {image:?} is not among the images this installation allows (the operator's own, {:?}{})",
                self.loadgen_image,
                listed(&self.allowed_images)
            ));
        }
        if let Some(sa) = overrides.service_account_name.as_deref()
            && !self.allowed_service_accounts.iter().any(|a| a == sa)
        {
            refused.push(format!(
                "load.podTemplate.serviceAccountName {sa:?} is not among the service accounts this installation allows ({})",
                if self.allowed_service_accounts.is_empty() {
                    "none".to_string()
                } else {
                    format!("{:?}", self.allowed_service_accounts)
                }
            ));
        }
        (!refused.is_empty()).then(|| {
            format!(
                "{}; the operator's installer can allow more (Helm values loadgen.allowedImages and loadgen.allowedServiceAccounts)",
                refused.join("; ")
            )
        })
    }
}

fn listed(entries: &[String]) -> String {
    if entries.is_empty() {
        String::new()
    } else {
        format!(", {entries:?}")
    }
}

/// The steps of one pass of the load: its sweep's, else its one step.
pub fn sweep(load: &api::Load) -> Vec<lp::Step> {
    let sweep = load.sweep.as_ref();
    match load.mode {
        LoadMode::Concurrency => match sweep.filter(|s| !s.concurrency.is_empty()) {
            Some(s) => s
                .concurrency
                .iter()
                .map(|&c| lp::Step {
                    concurrency: Some(c.unsigned_abs()),
                    rate: None,
                })
                .collect(),
            None => vec![lp::Step {
                concurrency: Some(load.concurrency.unwrap_or(1).unsigned_abs()),
                rate: None,
            }],
        },
        LoadMode::Rate => {
            let cap = load.concurrency.map(i32::unsigned_abs);
            let rates = match sweep.filter(|s| !s.request_rate.is_empty()) {
                Some(s) => s.request_rate.clone(),
                None => load.request_rate.into_iter().collect(),
            };
            rates
                .into_iter()
                .map(|r| lp::Step {
                    concurrency: cap,
                    rate: Some(r),
                })
                .collect()
        }
    }
}

/// How long a worker waits for its start before it gives up, beyond the
/// idle baseline the controller measures first (and the time it may wait
/// for the exporters to settle before it): the worker's default.
const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// The workers' command line: they wait for the controller's start, for
/// longer when the run measures its GPUs idle first.
fn worker_args(run: &BenchmarkRun) -> Vec<String> {
    let mut args = vec![
        "loadgen".to_string(),
        "--worker".into(),
        "--wait-for-start".into(),
    ];
    if let Some(idle) = run.spec.telemetry.idle_baseline {
        let idle: std::time::Duration = idle.into();
        args.push("--start-timeout".into());
        let settle = crate::measure::IDLE_SETTLE_MAX;
        args.push(format!("{}s", (START_TIMEOUT + settle + idle).as_secs()));
    }
    args
}

/// The plan workers run, from the spec and the resolved target URLs.
pub fn plan(run: &BenchmarkRun, urls: Vec<String>) -> LoadPlan {
    let spec = &run.spec;
    let load = &spec.load;
    let steps = sweep(load);
    let stop = match (load.request_count, load.duration) {
        (Some(n), _) => lp::StopCondition::Requests(n.unsigned_abs()),
        (None, Some(d)) => {
            let d: std::time::Duration = d.into();
            lp::StopCondition::DurationMs(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }
        // Validation requires one of the two; a plan of zero requests is harmless.
        (None, None) => lp::StopCondition::Requests(0),
    };
    let input = match (&load.input.synthetic, &load.input.dataset) {
        (_, Some(_)) => lp::InputPlan::Dataset {
            path: format!("{DATASET_DIR}/{DATASET_FILE}"),
        },
        (Some(s), None) => synthetic(s),
        (None, None) => synthetic(&api::Synthetic::default()),
    };
    LoadPlan {
        schema_version: lp::PLAN_SCHEMA_VERSION,
        urls,
        model: spec.target.model.clone(),
        endpoint: match spec.target.endpoint_type {
            api::EndpointType::Chat => lp::Endpoint::Chat,
            api::EndpointType::Completions => lp::Endpoint::Completions,
        },
        streaming: load.streaming,
        headers: spec.target.headers.clone(),
        api_key_from_env: spec.target.api_key_secret_ref.is_some(),
        headers_from_env: spec
            .target
            .headers_from
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.clone(), format!("{}{i}", lp::HEADER_ENV_PREFIX)))
            .collect(),
        workers: load.workers.unsigned_abs(),
        steps,
        repeat: spec.repeat.as_ref().map(|r| {
            let pause: std::time::Duration = r.cool_down.into();
            lp::RepeatPlan {
                trials: r.count.unsigned_abs(),
                cool_down_ms: u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
            }
        }),
        stop,
        warmup_requests: load.warmup_request_count.unsigned_abs(),
        arrival: match load.arrival {
            api::Arrival::Poisson => lp::Arrival::Poisson,
            api::Arrival::Constant => lp::Arrival::Constant,
        },
        input,
        conversations: load.conversations.as_ref().map(|c| lp::ConversationPlan {
            count: c.count.unsigned_abs(),
            turns: c.turns.unsigned_abs(),
        }),
        extra_body: load.extra_inputs.clone().unwrap_or_default(),
        seed: load.random_seed.unsigned_abs(),
        goodput: goodput(&spec.slo),
        tls: tls_plan(run),
        path: spec.target.path.clone(),
        tokenizer: match load.input.synthetic.as_ref().map(|s| s.tokenizer) {
            None | Some(PromptTokenizer::Auto) => Tokenizer::Auto,
            Some(PromptTokenizer::Server) => Tokenizer::Server,
            Some(PromptTokenizer::Words) => Tokenizer::Words,
            Some(PromptTokenizer::Files) => Tokenizer::Files,
        },
        tokenizer_files: tokenizer_files(run).map(|f| match (&f.config_map_ref, &f.url) {
            (Some(cm), _) => lp::TokenizerFiles {
                at: lp::FilesAt::Env(lp::TOKENIZER_DIR_ENV.into()),
                origin: format!("ConfigMap {}", cm.name),
            },
            (None, url) => {
                let url = url.clone().unwrap_or_default();
                lp::TokenizerFiles {
                    origin: crate::net::redact_url(&url),
                    at: lp::FilesAt::Url(url),
                }
            }
        }),
        server_timings_file: None,
    }
}

/// The tokenizer files a synthetic input names.
fn tokenizer_files(run: &BenchmarkRun) -> Option<&api::TokenizerFiles> {
    run.spec
        .load
        .input
        .synthetic
        .as_ref()?
        .tokenizer_files
        .as_ref()
}

/// The target's TLS as its workers apply it. Requests to a `serviceRef` go
/// to its pods by address, and a Service's certificate is issued for its DNS
/// name, not for them: that name is what is verified unless the spec names
/// another.
fn tls_plan(run: &BenchmarkRun) -> lp::TlsPlan {
    let target = &run.spec.target;
    let service_name = target
        .service_ref
        .as_ref()
        .filter(|s| s.scheme == api::Scheme::Https)
        .map(|s| format!("{}.{}.svc", s.name, run.namespace().unwrap_or_default()));
    let mut plan = target
        .tls
        .as_ref()
        .map(|t| {
            let cert = t.client_certificate_secret_name.is_some();
            let env = |v: &str| lp::PemSource::Env(v.to_string());
            lp::TlsPlan {
                ca: t.ca_ref.as_ref().map(|_| env(lp::TLS_CA_ENV)),
                insecure_skip_verify: t.insecure_skip_verify,
                client_cert: cert.then(|| env(lp::TLS_CERT_ENV)),
                client_key: cert.then(|| env(lp::TLS_KEY_ENV)),
                server_name: t.server_name.clone(),
            }
        })
        .unwrap_or_default();
    if plan.server_name.is_none() {
        plan.server_name = service_name;
    }
    plan
}

/// What the results say about the target's TLS: that it was not verified,
/// when the run said not to.
pub fn tls_note(run: &BenchmarkRun) -> Option<String> {
    run.spec
        .target
        .tls
        .as_ref()
        .filter(|t| t.insecure_skip_verify)
        .map(|_| {
            "the target's TLS certificate was not verified (target.tls.insecureSkipVerify): \
             the traffic was encrypted, the server not authenticated"
                .to_string()
        })
}

fn synthetic(s: &api::Synthetic) -> lp::InputPlan {
    lp::InputPlan::Synthetic {
        input_mean: s.input_tokens.mean.unsigned_abs(),
        input_stddev: s.input_tokens.stddev.unsigned_abs(),
        output_mean: s.output_tokens.mean.unsigned_abs(),
        output_stddev: s.output_tokens.stddev.unsigned_abs(),
    }
}

pub(crate) fn owned_meta(run: &BenchmarkRun, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: run.namespace(),
        labels: Some(names::labels(run, component)),
        owner_references: run.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity("500m".into())),
            ("memory".into(), Quantity("128Mi".into())),
        ])),
        limits: Some(BTreeMap::from([("memory".into(), Quantity("1Gi".into()))])),
        ..ResourceRequirements::default()
    }
}

/// The load-generator Job. `suspend` stops its pods (cancel, timeout) while keeping
/// the Job as a record; the run owns it, so deleting the run deletes it.
/// The workers' termination grace period, in seconds: the controller's
/// lease handover, the salvage of a session that finds their Job gone, and
/// room to spare.
pub const WORKER_GRACE_S: i64 = 4 * super::leader::LEASE_SECONDS as i64;

pub fn job(run: &BenchmarkRun, settings: &BuildSettings, suspend: bool) -> Job {
    let load = &run.spec.load;
    let overrides = load.pod_template.clone().unwrap_or_default();
    let mut env_vars = vec![
        env(lp::PLAN_FILE_ENV, format!("{PLAN_DIR}/{PLAN_FILE}")),
        field_env("POD_IP", "status.podIP"),
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
    ];
    let mut secrets = Vec::new();
    if let Some(key) = &run.spec.target.api_key_secret_ref {
        secrets.push((
            lp::API_KEY_ENV.to_string(),
            key.name.clone(),
            key.key.clone(),
        ));
    }
    for (i, h) in run.spec.target.headers_from.iter().enumerate() {
        let r = &h.secret_key_ref;
        secrets.push((
            format!("{}{i}", lp::HEADER_ENV_PREFIX),
            r.name.clone(),
            r.key.clone(),
        ));
    }
    let tls = run.spec.target.tls.as_ref();
    if let Some(name) = tls.and_then(|t| t.client_certificate_secret_name.as_ref()) {
        for (var, key) in [(lp::TLS_CERT_ENV, "tls.crt"), (lp::TLS_KEY_ENV, "tls.key")] {
            secrets.push((var.to_string(), name.clone(), key.to_string()));
        }
    }
    match tls.and_then(|t| t.ca_ref.as_ref()) {
        Some(api::CaRef {
            secret_key_ref: Some(r),
            ..
        }) => secrets.push((lp::TLS_CA_ENV.to_string(), r.name.clone(), r.key.clone())),
        Some(api::CaRef {
            config_map_key_ref: Some(r),
            ..
        }) => env_vars.push(EnvVar {
            name: lp::TLS_CA_ENV.to_string(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: r.name.clone(),
                    key: r.key.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }),
        _ => {}
    }
    // The run's token, written into the Job: no Secret (the controller
    // needs no right to create Secrets in a tenant's namespace), and no one
    // who cannot read the tenant's own Jobs or pods sees it.
    if let Some(key) = &settings.worker_key {
        let token = key.token(&run.uid().unwrap_or_default());
        env_vars.push(env(crate::contract::WORKER_TOKEN_ENV, token));
    }
    for (var, name, key) in secrets {
        env_vars.push(EnvVar {
            name: var,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name,
                    key,
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    // The plan, the dataset when the run reads one, and the tokenizer files:
    // files from ConfigMaps (one key each, or the tokenizer's whole).
    let mut files = vec![(
        "plan",
        names::plan_name(run),
        Some((PLAN_FILE_KEY.to_string(), PLAN_FILE)),
        PLAN_DIR,
    )];
    if let Some(d) = &load.input.dataset {
        files.push((
            "dataset",
            d.config_map_ref.name.clone(),
            Some((d.config_map_ref.key.clone(), DATASET_FILE)),
            DATASET_DIR,
        ));
    }
    if let Some(cm) = tokenizer_files(run).and_then(|f| f.config_map_ref.as_ref()) {
        files.push(("tokenizer", cm.name.clone(), None, TOKENIZER_DIR));
        env_vars.push(env(lp::TOKENIZER_DIR_ENV, TOKENIZER_DIR));
    }
    let (volumes, mounts): (Vec<Volume>, Vec<VolumeMount>) = files
        .into_iter()
        .map(|(volume, config_map, item, dir)| {
            let v = Volume {
                name: volume.into(),
                config_map: Some(ConfigMapVolumeSource {
                    // The tokenizer's may be missing: the worker then says
                    // so (and `auto` goes on), where a missing volume would
                    // hold the pod in ContainerCreating until the run times out.
                    optional: item.is_none().then_some(true),
                    name: config_map,
                    items: item.map(|(key, file)| {
                        vec![KeyToPath {
                            key,
                            path: file.into(),
                            ..KeyToPath::default()
                        }]
                    }),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            };
            let m = VolumeMount {
                name: volume.into(),
                mount_path: dir.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            };
            (v, m)
        })
        .unzip();
    let (volumes, mounts) = (Some(volumes), Some(mounts));
    let container = Container {
        name: "loadgen".into(),
        image: Some(
            overrides
                .image
                .unwrap_or_else(|| settings.loadgen_image.clone()),
        ),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(worker_args(run)),
        env: Some(env_vars),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: i32::from(crate::contract::WORKER_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/ready".into()),
                port: IntOrString::String("http".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(1),
            ..Probe::default()
        }),
        resources: Some(overrides.resources.unwrap_or_else(default_resources)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: mounts,
        ..Container::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".into()),
        // Workers talk to the target and to the controller, never to the API server.
        automount_service_account_token: Some(false),
        // A stopping worker holds its result until the controller takes it
        // (it exits then, so this lengthens nothing else): long enough for a
        // successor controller to take the lease over and pull it.
        termination_grace_period_seconds: Some(WORKER_GRACE_S),
        service_account_name: overrides.service_account_name,
        node_selector: (!overrides.node_selector.is_empty()).then_some(overrides.node_selector),
        tolerations: (!overrides.tolerations.is_empty()).then_some(overrides.tolerations),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NONROOT),
            run_as_group: Some(NONROOT),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        volumes,
        ..PodSpec::default()
    };
    let workers = load.workers;
    Job {
        metadata: owned_meta(run, names::job_name(run), "loadgen"),
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".into()),
            completions: Some(workers),
            parallelism: Some(workers),
            // A retried worker would measure a different benchmark: no
            // index is retried. One worker that fails (killed, evicted)
            // does not end the others: they measure their shares to the
            // end, and the Job fails (`FailedIndexes`) once they have.
            backoff_limit_per_index: Some(0),
            suspend: Some(suspend),
            // A backstop should the controller be gone at the timeout: later
            // than the controller's own stop (the workers are asked to stop
            // and their results pulled first, for up to STOP_GRACE).
            active_deadline_seconds: run.spec.timeout.map(|t| {
                let t: std::time::Duration = t.into();
                let backstop = t.as_secs().max(1) + super::decide::STOP_GRACE.as_secs() + 30;
                i64::try_from(backstop).unwrap_or(i64::MAX)
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(names::labels(run, "loadgen")),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// The key of the plan in the run's plan ConfigMap.
const PLAN_FILE_KEY: &str = "plan.json";

/// The run's `<run>-plan` ConfigMap, owned by the run: the plan its workers
/// read from a file (see [`job`]).
pub fn plan_config_map(
    run: &BenchmarkRun,
    plan: &LoadPlan,
) -> Result<ConfigMap, serde_json::Error> {
    Ok(ConfigMap {
        metadata: owned_meta(run, names::plan_name(run), "plan"),
        data: Some(BTreeMap::from([(
            PLAN_FILE_KEY.to_string(),
            serde_json::to_string(plan)?,
        )])),
        ..ConfigMap::default()
    })
}

/// The results ConfigMap with the given files.
/// Per-request goodput bounds from the run's SLOs: a latency objective's
/// `max` bounds each request (the tightest of p50 and p99 when both are set).
pub fn goodput(slos: &[api::Slo]) -> Option<lp::Goodput> {
    let mut g = lp::Goodput::default();
    let tighten = |slot: &mut Option<f64>, v: f64| *slot = Some(slot.map_or(v, |s| s.min(v)));
    for slo in slos {
        let Some(max) = slo.max else { continue };
        match slo.metric {
            api::SloMetric::TtftP50Ms | api::SloMetric::TtftP99Ms => tighten(&mut g.ttft_ms, max),
            api::SloMetric::ItlP50Ms | api::SloMetric::ItlP99Ms => tighten(&mut g.itl_ms, max),
            api::SloMetric::LatencyP99Ms => tighten(&mut g.latency_ms, max),
            _ => {}
        }
    }
    (g != lp::Goodput::default()).then_some(g)
}

/// The results ConfigMaps: `<run>-results`, then `<run>-results-1`, ... when
/// the results had to be split (see [`crate::results::pack`]).
pub fn results_config_maps(
    run: &BenchmarkRun,
    parts: Vec<ConfigMapData>,
    client_steps: usize,
) -> Vec<ConfigMap> {
    let base = names::results_config_map_name(run);
    let annotations = BTreeMap::from([(CLIENT_STEPS.to_string(), client_steps.to_string())]);
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let name = if i == 0 {
                base.clone()
            } else {
                format!("{base}-{i}")
            };
            let mut metadata = owned_meta(run, name, "results");
            metadata.annotations = Some(annotations.clone());
            ConfigMap {
                metadata,
                data: Some(part.data).filter(|d| !d.is_empty()),
                binary_data: Some(
                    part.binary_data
                        .into_iter()
                        .map(|(k, v)| (k, k8s_openapi::ByteString(v)))
                        .collect(),
                )
                .filter(|b: &BTreeMap<_, _>| !b.is_empty()),
                ..ConfigMap::default()
            }
        })
        .collect()
}

/// The NetworkPolicy of a run's workers (`<run>-loadgen`, owned by the run),
/// when the installer asks for one: ingress to the worker port only from the
/// controller's pods in its namespace. Other traffic to and from the workers
/// is left as the namespace's own policies say.
pub fn network_policy(run: &BenchmarkRun, settings: &BuildSettings) -> Option<NetworkPolicy> {
    let controller_ns = settings.network_policy.as_ref()?;
    let workers = names::labels(run, "loadgen")
        .into_iter()
        .filter(|(k, _)| k == "app.kubernetes.io/component" || k == names::RUN_LABEL)
        .collect();
    Some(NetworkPolicy {
        metadata: owned_meta(run, names::job_name(run), "loadgen"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(workers),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            "kubernetes.io/metadata.name".to_string(),
                            controller_ns.clone(),
                        )])),
                        ..Default::default()
                    }),
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([
                            ("app.kubernetes.io/name".to_string(), "benchrun".to_string()),
                            (
                                "app.kubernetes.io/component".to_string(),
                                "controller".to_string(),
                            ),
                        ])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(i32::from(crate::contract::WORKER_PORT))),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            }]),
            ..Default::default()
        }),
    })
}

/// Annotation of a results ConfigMap: how many steps' client results it holds.
pub const CLIENT_STEPS: &str = "benchrun.dev/client-steps";

/// Whether a results ConfigMap already written must be kept rather than
/// replaced by a document holding the client results of `client_steps`
/// steps: results are never overwritten by fewer results (a decision from a
/// stale copy of the run, or a session that lost them, must not erase them).
pub fn keep_existing_results(existing: Option<&ConfigMap>, client_steps: usize) -> bool {
    let held = existing
        .and_then(|cm| cm.metadata.annotations.as_ref())
        .and_then(|a| a.get(CLIENT_STEPS))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    held > client_steps
}

/// The results document of a run from its status (the measured details,
/// endpoints and notes are the session's, added by the caller).
pub fn results_document(
    run: &BenchmarkRun,
    status: &api::BenchmarkRunStatus,
) -> crate::results::ResultsDocument {
    let end = super::conditions::get(&status.conditions, super::conditions::SUCCEEDED);
    crate::results::ResultsDocument {
        schema_version: crate::results::RESULTS_SCHEMA_VERSION,
        run: crate::results::RunRef {
            namespace: run.namespace().unwrap_or_default(),
            name: run.name_any(),
            uid: run.uid().unwrap_or_default(),
        },
        phase: status.phase.unwrap_or(api::Phase::Pending),
        reason: end.map(|c| c.reason.clone()).unwrap_or_default(),
        message: end.map(|c| c.message.clone()).unwrap_or_default(),
        start_time: status.start_time.as_ref().map(|t| t.0.to_string()),
        completion_time: status.completion_time.as_ref().map(|t| t.0.to_string()),
        summary: status.summary.clone().unwrap_or_default(),
        routing: Some(crate::results::Routing::of(&run.spec.target)),
        steps: status.steps.clone(),
        trials: status.trials.clone(),
        details: Vec::new(),
        endpoints: Vec::new(),
        notes: Vec::new(),
        baseline: None,
    }
}

#[cfg(test)]
mod tests;
