//! Fixtures the tests share: an inference server to benchmark, runs, waits.

use std::collections::BTreeMap;
use std::time::Duration;

use benchrun::api::BenchmarkRun;
use benchrun::loadgen::plan::{
    Arrival, Endpoint, InputPlan, LoadPlan, PLAN_SCHEMA_VERSION, Step, StopCondition,
};
use benchrun_e2e::harness::{TestNamespace, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, Pod, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ListParams, PostParams};

/// Generous bounds: CI machines have two cores shared with the whole cluster.
pub const LONG: Duration = Duration::from_secs(120);

/// The namespace the chart installs the operator into.
pub const OPERATOR_NS: &str = "benchrun-system";

/// A test that deletes the operator's pod holds this for writing; a test
/// whose results a controller restart would change (exact figures, complete
/// coverage, every result kept) holds it for reading, so the two never overlap.
pub static OPERATOR: std::sync::LazyLock<tokio::sync::RwLock<()>> =
    std::sync::LazyLock::new(|| tokio::sync::RwLock::new(()));

/// Deploys llm-d-inference-sim (an OpenAI-compatible server with vLLM's metric
/// names) as `sim` behind a Service `sim` with port name `http`, and waits for
/// it to be Ready. Each test picks its own port: processes share one host.
pub async fn deploy_sim(
    ns: &TestNamespace,
    port: i32,
    ttft_ms: u32,
    itl_ms: u32,
) -> anyhow::Result<()> {
    deploy(ns, &llm_d_sim(port, ttft_ms, itl_ms, &[])).await
}

/// llm-d-inference-sim as Service `sim`, serving `e2e/tiny-model` on `port`
/// with a fixed TTFT and ITL, and `extra` arguments.
pub fn llm_d_sim(port: i32, ttft_ms: u32, itl_ms: u32, extra: &[&str]) -> Server<'static> {
    let args = [
        "--model",
        "e2e/tiny-model",
        "--port",
        &port.to_string(),
        "--mode",
        "random",
        "--time-to-first-token",
        &format!("{ttft_ms}ms"),
        "--inter-token-latency",
        &format!("{itl_ms}ms"),
        "--max-num-seqs",
        "64",
    ]
    .map(String::from);
    Server {
        name: "sim",
        image: "ghcr.io/llm-d/llm-d-inference-sim:v0.10.2",
        args: args
            .into_iter()
            .chain(extra.iter().map(|a| a.to_string()))
            .collect(),
        port,
        gpus: 0,
        node: None,
        probe: "/v1/models",
    }
}

/// An inference server to deploy.
pub struct Server<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub args: Vec<String>,
    pub port: i32,
    /// `nvidia.com/gpu` the pod requests (0: none, any node).
    pub gpus: u32,
    /// Pin the pod to this node.
    pub node: Option<String>,
    /// The readiness probe's path.
    pub probe: &'a str,
}

/// Deploys `server` (one replica, container port `http`) behind a Service of
/// the same name, and waits for it to be available.
pub async fn deploy(ns: &TestNamespace, server: &Server<'_>) -> anyhow::Result<()> {
    deploy_with(ns, server, |_| {}).await
}

/// [`deploy`] with the pod's spec changed by `adjust` first (volumes, a
/// probe of another kind).
pub async fn deploy_with(
    ns: &TestNamespace,
    server: &Server<'_>,
    adjust: impl FnOnce(&mut PodSpec),
) -> anyhow::Result<()> {
    let labels = BTreeMap::from([("app".to_string(), server.name.to_string())]);
    let resources = (server.gpus > 0).then(|| ResourceRequirements {
        limits: Some(BTreeMap::from([(
            "nvidia.com/gpu".to_string(),
            Quantity(server.gpus.to_string()),
        )])),
        ..Default::default()
    });
    let deployment = Deployment {
        metadata: ObjectMeta {
            name: Some(server.name.into()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: server.name.into(),
                        image: Some(server.image.into()),
                        args: Some(server.args.clone()),
                        ports: Some(vec![ContainerPort {
                            name: Some("http".into()),
                            container_port: server.port,
                            ..Default::default()
                        }]),
                        readiness_probe: Some(Probe {
                            http_get: Some(HTTPGetAction {
                                path: Some(server.probe.into()),
                                port: IntOrString::String("http".into()),
                                ..Default::default()
                            }),
                            period_seconds: Some(2),
                            ..Default::default()
                        }),
                        resources,
                        ..Default::default()
                    }],
                    node_selector: server.node.as_ref().map(|n| {
                        BTreeMap::from([("kubernetes.io/hostname".to_string(), n.clone())])
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    };
    let mut deployment = deployment;
    if let Some(pod) = deployment
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
    {
        adjust(pod);
    }
    ns.api::<Deployment>()
        .create(&PostParams::default(), &deployment)
        .await?;
    let service = Service {
        metadata: ObjectMeta {
            name: Some(server.name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: server.port,
                target_port: Some(IntOrString::String("http".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    ns.api::<Service>()
        .create(&PostParams::default(), &service)
        .await?;
    wait_for(
        &ns.api::<Deployment>(),
        server.name,
        "the inference server to be available",
        LONG,
        |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref())
                .and_then(|s| s.available_replicas)
                == Some(1)
        },
    )
    .await?;
    Ok(())
}

/// A run against the `sim` Service, from YAML with `{load}` filled in.
pub fn run(name: &str, load: &str, extra: &str) -> BenchmarkRun {
    let yaml = format!(
        "apiVersion: benchrun.dev/v1alpha1\nkind: BenchmarkRun\nmetadata:\n  name: {name}\nspec:\n  target:\n    serviceRef: {{name: sim, portName: http}}\n    model: e2e/tiny-model\n  load: {load}\n{extra}"
    );
    serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("test run {name}: {e}\n{yaml}"))
}

/// [`run`] against the `benchrun sim inference` Service `service` (model `e2e/sim`).
pub fn bench_sim_run(name: &str, service: &str, load: &str, extra: &str) -> BenchmarkRun {
    let mut r = run(name, load, extra);
    r.spec.target.service_ref.as_mut().unwrap().name = service.into();
    r.spec.target.model = "e2e/sim".into();
    r
}

/// Waits until run `name` ends (succeeded, failed or cancelled).
pub async fn wait_ended(ns: &TestNamespace, name: &str) -> BenchmarkRun {
    let ended = |r: Option<&BenchmarkRun>| {
        matches!(
            phase(r).as_deref(),
            Some("Succeeded" | "Failed" | "Cancelled")
        )
    };
    wait_for(
        &ns.api::<BenchmarkRun>(),
        name,
        "the run to end",
        LONG,
        ended,
    )
    .await
    .unwrap()
}

/// The run's phase as text.
pub fn phase(run: Option<&BenchmarkRun>) -> Option<String> {
    let status = run?.status.as_ref()?;
    Some(format!("{:?}", status.phase.as_ref()?))
}

/// Waits until the run's measured phase is under way: requests are being done.
pub async fn wait_requests_done(runs: &kube::Api<BenchmarkRun>, name: &str) {
    wait_for(
        runs,
        name,
        "requests to be done",
        LONG,
        |r: Option<&BenchmarkRun>| {
            r.and_then(|r| r.status.as_ref())
                .and_then(|s| s.progress.as_ref())
                .is_some_and(|p| p.requests_done > 0)
        },
    )
    .await
    .unwrap();
}

/// A condition on a run reaching `want` (by the phase's Debug name).
pub fn phase_is(want: &'static str) -> impl Fn(Option<&BenchmarkRun>) -> bool {
    move |r| phase(r).as_deref() == Some(want)
}

/// The running pod of `selector` in `api`, once there is one with an IP.
pub async fn pod_of(api: &kube::Api<Pod>, selector: &str) -> Pod {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let pods = api
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        if let Some(p) = pods.items.into_iter().find(|p| {
            p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        }) {
            return p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no running pod for {selector}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn ip(p: &Pod) -> String {
    p.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap()
}

/// `benchrun sim inference` serving `e2e/sim` on port 8000 with `extra`
/// arguments, holding `gpus` GPUs.
pub fn bench_sim(
    name: &'static str,
    extra: &[&str],
    gpus: u32,
    node: Option<String>,
) -> Server<'static> {
    let args = ["sim", "inference", "--model", "e2e/sim", "--port", "8000"];
    Server {
        name,
        image: "ghcr.io/benchrun/benchrun:dev",
        args: args.iter().chain(extra).map(|a| a.to_string()).collect(),
        port: 8000,
        gpus,
        node,
        probe: "/v1/models",
    }
}

/// `benchrun sim inference` with a fixed TTFT and ITL, holding a GPU.
pub fn gpu_sim(
    name: &'static str,
    ttft: &'static str,
    itl: &'static str,
    node: Option<String>,
) -> Server<'static> {
    bench_sim(name, &["--ttft", ttft, "--itl", itl], 1, node)
}

/// Opens namespace `name` to every run's telemetry discovery, as its owner would.
pub async fn open_to_telemetry(client: &kube::Client, name: &str) {
    let label = serde_json::json!({"metadata": {"labels": {"benchrun.dev/telemetry": "readable"}}});
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&label),
        )
        .await
        .unwrap();
}

/// A load of `streams` chat streams for `duration_ms` against the simulator
/// serving `e2e/sim` at `url`, sent from the test process (not a run).
pub fn sim_load(url: String, streams: u32, duration_ms: u64, input_tokens: u64) -> LoadPlan {
    LoadPlan {
        schema_version: PLAN_SCHEMA_VERSION,
        urls: vec![url],
        model: "e2e/sim".into(),
        endpoint: Endpoint::Chat,
        streaming: true,
        headers: Default::default(),
        api_key_from_env: false,
        headers_from_env: Default::default(),
        workers: 1,
        steps: vec![Step {
            concurrency: Some(streams),
            rate: None,
        }],
        repeat: None,
        stop: StopCondition::DurationMs(duration_ms),
        warmup_requests: 0,
        arrival: Arrival::Constant,
        input: InputPlan::Synthetic {
            input_mean: input_tokens,
            input_stddev: 0,
            output_mean: 32,
            output_stddev: 0,
        },
        conversations: None,
        extra_body: Default::default(),
        seed: 1,
        goodput: None,
        tls: Default::default(),
        path: None,
        tokenizer: Default::default(),
        tokenizer_files: None,
        server_timings_file: None,
    }
}

pub async fn get_json(url: &str) -> serde_json::Value {
    serde_json::from_str(&get_text(url).await).unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// The status and body of `GET url`, sent with `token` as a bearer token.
pub async fn get_text_as(url: &str, token: Option<&str>) -> (u16, String) {
    let client = benchrun::net::client::http_client(1);
    let mut request = http::Request::get(url);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let request = request.body(http_body_util::Full::default()).unwrap();
    let resp = client
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap();
    (
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    )
}

/// The status of `POST url` with an empty body.
pub async fn post_status(url: &str) -> u16 {
    let client = benchrun::net::client::http_client(1);
    let request = http::Request::post(url)
        .body(http_body_util::Full::default())
        .unwrap();
    let resp = client
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    resp.status().as_u16()
}

/// The service account, in the operator's namespace, bound to the chart's
/// `benchrun-metrics-reader` ClusterRole (as a Prometheus would be).
pub const METRICS_READER: &str = "e2e-metrics-reader";

/// A token of service account `name` in the operator's namespace, made
/// first if it is not there; [`METRICS_READER`] is bound to the chart's
/// metrics-reader ClusterRole, any other name to nothing.
pub async fn metrics_token(client: &kube::Client, name: &str) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let accounts = kube::Api::<ServiceAccount>::namespaced(client.clone(), OPERATOR_NS);
    let account: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    match accounts.create(&PostParams::default(), &account).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("service account {name}: {e}"),
    }
    if name == METRICS_READER {
        let bindings = kube::Api::<ClusterRoleBinding>::all(client.clone());
        let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "benchrun-metrics-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": OPERATOR_NS}],
        }))
        .unwrap();
        match bindings.create(&PostParams::default(), &binding).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("binding {name}: {e}"),
        }
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("a token of {name}: {e}"))
        .status
        .unwrap()
        .token
}

/// The body of `GET url`, as text.
pub async fn get_text(url: &str) -> String {
    let client = benchrun::net::client::http_client(1);
    let resp = client
        .get(url.parse().unwrap())
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap();
    String::from_utf8_lossy(&body.to_bytes()).into_owned()
}

/// The run's `summary.json`.
pub async fn summary_json(ns: &TestNamespace, run: &str) -> serde_json::Value {
    let cm = ns
        .api::<k8s_openapi::api::core::v1::ConfigMap>()
        .get(&format!("{run}-results"))
        .await
        .unwrap();
    serde_json::from_str(&cm.data.unwrap()["summary.json"]).unwrap()
}

/// Every file of the run's results, unpacked (compressed and split parts too).
pub async fn results_files(
    ns: &TestNamespace,
    run: &str,
) -> std::collections::BTreeMap<String, String> {
    let cms = ns.api::<k8s_openapi::api::core::v1::ConfigMap>();
    benchrun::results::read(&cms, &format!("{run}-results"))
        .await
        .unwrap()
}

/// Energy (J) the GPU drew between two instants, from the simulator's history
/// of its exact integral (power is constant between ticks: interpolate).
pub fn energy_between(history: &[serde_json::Value], from_ms: u64, to_ms: u64) -> f64 {
    let points: Vec<(f64, f64)> = history
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    let at = |t: f64| {
        let i = points
            .partition_point(|p| p.0 < t)
            .clamp(1, points.len() - 1);
        let ((t0, e0), (t1, e1)) = (points[i - 1], points[i]);
        e0 + (e1 - e0) * ((t - t0) / (t1 - t0).max(1e-9)).clamp(0.0, 1.0)
    };
    (at(to_ms as f64) - at(from_ms as f64)) / 1e3
}

/// The GPU simulator's ground truth for every GPU of `node` (each with the
/// pod it serves and the history of its exact energy integral).
pub async fn gpu_truth(client: &kube::Client, node: &str) -> Vec<serde_json::Value> {
    let truth = gpu_sim_truth(client, node).await;
    truth["gpus"].as_array().cloned().unwrap_or_default()
}

/// The GPU simulator's `/sim/truth` of `node`: its GPUs and its board
/// constants (`idlePowerW`, `updateIntervalS`).
pub async fn gpu_sim_truth(client: &kube::Client, node: &str) -> serde_json::Value {
    get_json(&format!("{}/sim/truth", gpu_sim_url(client, node).await)).await
}

/// The base URL of the GPU simulator (its dcgm-exporter) on `node`.
pub async fn gpu_sim_url(client: &kube::Client, node: &str) -> String {
    let exporters = kube::Api::<Pod>::namespaced(client.clone(), OPERATOR_NS);
    let dcgm = exporters
        .list(&kube::api::ListParams::default().labels("app=sim-dcgm"))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .unwrap_or_else(|| panic!("no GPU simulator on {node}"));
    format!("http://{}:9400", ip(&dcgm))
}

/// The value of the series `series` (name and labels, as exposed) on the
/// `/metrics` of the controller that holds the lease; 0 when it is absent
/// (a counter not yet incremented).
pub async fn controller_metric(client: &kube::Client, series: &str) -> f64 {
    let token = metrics_token(client, METRICS_READER).await;
    let (status, text) = get_text_as(&controller_metrics_url(client).await, Some(&token)).await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The `/metrics` URL of the controller that holds the lease.
pub async fn controller_metrics_url(client: &kube::Client) -> String {
    use k8s_openapi::api::coordination::v1::Lease;
    let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), OPERATOR_NS);
    let lease = leases.get("benchrun-controller").await.unwrap();
    let holder = lease.spec.and_then(|s| s.holder_identity).unwrap();
    let pod = kube::Api::<Pod>::namespaced(client.clone(), OPERATOR_NS)
        .get(&holder)
        .await
        .unwrap();
    let ip = pod.status.and_then(|s| s.pod_ip).unwrap();
    format!("http://{ip}:8081/metrics")
}

/// The run's condition of `type_`, if it has one.
pub fn condition<'a>(
    r: &'a BenchmarkRun,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    r.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}
