//! HTTPS end to end: `benchrun sim inference` serving TLS with a certificate
//! for its Service's DNS name, signed by a CA this test makes; the CA reaches
//! the load generators through a Secret; the server's `/metrics` wants a
//! bearer token, which the controller reads from a Secret its owner labelled.

use benchrun::api::BenchmarkRun;
use benchrun_e2e::harness::{TestNamespace, client};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    EnvVar, Probe, Secret, SecretVolumeSource, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::PostParams;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use crate::common::{
    OPERATOR, bench_sim, condition, deploy_with, llm_d_sim, phase, summary_json, wait_ended,
};

/// A CA: its certificate (PEM) and what signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `name` and its key, both PEM.
    fn leaf(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Creates the Secret `name` with `data`, labelled for benchrun's scrapes
/// when `consent`.
async fn secret(ns: &TestNamespace, name: &str, data: &[(&str, &str)], consent: bool) {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    if consent {
        s.metadata.labels = Some(
            [(
                "benchrun.dev/scrape-credentials".to_string(),
                "true".to_string(),
            )]
            .into(),
        );
    }
    s.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    );
    ns.api::<Secret>()
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

/// Mounts the Secret `secret` at `/etc/<name>` and points `$(<VAR>)` at it,
/// and probes the TLS port by TCP (a plain HTTP GET cannot probe it).
fn mount_secrets(pod: &mut k8s_openapi::api::core::v1::PodSpec, mounts: &[(&str, &str, &str)]) {
    pod.volumes = Some(
        mounts
            .iter()
            .map(|(name, secret, _)| Volume {
                name: name.to_string(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
    );
    let c = &mut pod.containers[0];
    c.volume_mounts = Some(
        mounts
            .iter()
            .map(|(name, _, _)| VolumeMount {
                name: name.to_string(),
                mount_path: format!("/etc/{name}"),
                read_only: Some(true),
                ..Default::default()
            })
            .collect(),
    );
    c.env = Some(
        mounts
            .iter()
            .map(|(name, _, var)| EnvVar {
                name: var.to_string(),
                value: Some(format!("/etc/{name}")),
                ..Default::default()
            })
            .collect(),
    );
    c.readiness_probe = Some(Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(2),
        ..Default::default()
    });
}

fn run(name: &str, ca_secret: &str, token_secret: &str, ns: &str) -> BenchmarkRun {
    let yaml = format!(
        r#"apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata: {{name: {name}}}
spec:
  target:
    serviceRef: {{name: llm, portName: http, scheme: https}}
    model: e2e/sim
    tls:
      caRef: {{secretKeyRef: {{name: {ca_secret}, key: ca.crt}}}}
  load:
    concurrency: 2
    requestCount: 40
    input: {{synthetic: {{inputTokens: {{mean: 16}}, outputTokens: {{mean: 16}}}}}}
  telemetry:
    gpu: {{enabled: false}}
    server:
      tls:
        caRef: {{secretKeyRef: {{name: {ca_secret}, key: ca.crt}}}}
        serverName: llm.{ns}.svc
      auth:
        bearerTokenSecretRef: {{name: {token_secret}, key: token}}
"#
    );
    serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// Asserts that `run` succeeded with its TTFT and ITL p50 within
/// `(target, bound)` ms, and that its one server metrics endpoint answered
/// over TLS with vLLM's families; its results document.
async fn measured_over_tls(
    ns: &TestNamespace,
    run: &BenchmarkRun,
    ttft_ms: (f64, f64),
    itl_ms: (f64, f64),
) -> serde_json::Value {
    let name = run.metadata.name.clone().unwrap_or_default();
    assert_eq!(
        phase(Some(run)).as_deref(),
        Some("Succeeded"),
        "{:?}",
        condition(run, "Failed")
    );
    let status = run.status.clone().unwrap();
    let summary = status.summary.clone().unwrap();
    let (ttft, itl) = (summary.ttft_p50_ms.unwrap(), summary.itl_p50_ms.unwrap());
    eprintln!("{name}: TTFT p50 {ttft} ms, ITL p50 {itl} ms");
    assert!(
        (ttft - ttft_ms.0).abs() < ttft_ms.1,
        "TTFT p50 {ttft} ms, the server's {} ms",
        ttft_ms.0
    );
    assert!(
        (itl - itl_ms.0).abs() < itl_ms.1,
        "ITL p50 {itl} ms, the server's {} ms",
        itl_ms.0
    );
    let server = status.endpoints.as_ref().map(|e| e.server.clone());
    assert_eq!(
        server.as_ref().map(|s| (s.discovered, s.reachable)),
        Some((1, 1)),
        "the metrics endpoint answered over TLS"
    );
    let doc = summary_json(ns, &name).await;
    let families = doc["details"][0]["server"].to_string();
    assert!(families.contains("vllm:"), "{families}");
    doc
}

fn failed(r: &BenchmarkRun) -> (String, String) {
    let c = condition(r, "Failed").expect("a Failed condition");
    (c.reason.clone(), c.message.clone())
}

/// A run against the HTTPS Service succeeds with the injected latencies
/// (TLS adds nothing the figures show), its token-guarded metrics scraped;
/// with another CA the pre-flight fails the TLS check before any load is
/// sent, and the run says why; a token Secret its owner did not label is
/// never read.
#[tokio::test]
async fn an_https_service_and_its_token_guarded_metrics_are_measured() {
    let _steady = OPERATOR.read().await;
    let client = client().await;
    let ns = TestNamespace::create(&client, "https").await.unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&format!("llm.{}.svc", ns.name));
    let token = "e2e-metrics-t0ken";
    secret(
        &ns,
        "llm-tls",
        &[("tls.crt", &cert), ("tls.key", &key)],
        false,
    )
    .await;
    secret(&ns, "llm-ca", &[("ca.crt", &ca.pem)], true).await;
    secret(&ns, "other-ca", &[("ca.crt", &Ca::new().pem)], true).await;
    secret(
        &ns,
        "metrics-token",
        &[("token", &format!("{token}\n"))],
        true,
    )
    .await;
    secret(&ns, "unlabelled-token", &[("token", token)], false).await;
    let server = bench_sim(
        "llm",
        &[
            "--ttft",
            "5ms",
            "--itl",
            "2ms",
            "--tls-cert-file",
            "$(TLS_DIR)/tls.crt",
            "--tls-key-file",
            "$(TLS_DIR)/tls.key",
            "--metrics-bearer-token-file",
            "$(TOKEN_DIR)/token",
        ],
        0,
        None,
    );
    deploy_with(&ns, &server, |pod| {
        mount_secrets(
            pod,
            &[
                ("llm-tls", "llm-tls", "TLS_DIR"),
                ("metrics-token", "metrics-token", "TOKEN_DIR"),
            ],
        )
    })
    .await
    .unwrap();
    let runs = ns.api::<BenchmarkRun>();

    runs.create(
        &PostParams::default(),
        &run("good", "llm-ca", "metrics-token", &ns.name),
    )
    .await
    .unwrap();
    let good = wait_ended(&ns, "good").await;
    // TLS adds nothing the figures show: within 1 ms of the injected.
    let doc = measured_over_tls(&ns, &good, (5.0, 1.0), (2.0, 1.0)).await;
    let shown = serde_json::to_string(&good).unwrap() + &doc.to_string();
    assert!(!shown.contains(token), "the token is never shown");

    // The certificate signed by another CA than the one given.
    runs.create(
        &PostParams::default(),
        &run("wrong-ca", "other-ca", "metrics-token", &ns.name),
    )
    .await
    .unwrap();
    let wrong = wait_ended(&ns, "wrong-ca").await;
    let (reason, message) = failed(&wrong);
    assert_eq!(reason, "PreflightFailed", "{message}");
    assert!(
        message.contains("'tls'") && message.contains("certificate"),
        "{message}"
    );
    assert_eq!(
        wrong.status.as_ref().and_then(|s| s.summary.clone()),
        None,
        "no load was sent, so no figure"
    );

    // A token Secret its owner did not label for benchrun: never read.
    runs.create(
        &PostParams::default(),
        &run("unlabelled", "llm-ca", "unlabelled-token", &ns.name),
    )
    .await
    .unwrap();
    let refused = wait_ended(&ns, "unlabelled").await;
    let (reason, message) = failed(&refused);
    assert_eq!(reason, "ScrapeCredentials", "{message}");
    assert!(
        message.contains("unlabelled-token")
            && message.contains("benchrun.dev/scrape-credentials=true"),
        "{message}"
    );
    assert!(!message.contains(token), "{message}");
    ns.delete().await.unwrap();
}

/// llm-d-inference-sim, an independent server, serving HTTPS with the
/// test's certificate (`--ssl-certfile/--ssl-keyfile`): the run verifies it
/// against the CA from a Secret, measures the configured latencies, sizes
/// its prompts with the server's /tokenize over TLS, and scrapes its
/// metrics over TLS.
#[tokio::test]
async fn llm_d_inference_sim_over_https_is_measured() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "llmd-tls").await.unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&format!("sim.{}.svc", ns.name));
    secret(
        &ns,
        "sim-tls",
        &[("tls.crt", &cert), ("tls.key", &key)],
        false,
    )
    .await;
    secret(&ns, "sim-ca", &[("ca.crt", &ca.pem)], true).await;
    let server = llm_d_sim(
        18311,
        10,
        2,
        &[
            "--ssl-certfile",
            "$(TLS_DIR)/tls.crt",
            "--ssl-keyfile",
            "$(TLS_DIR)/tls.key",
        ],
    );
    deploy_with(&ns, &server, |pod| {
        mount_secrets(pod, &[("sim-tls", "sim-tls", "TLS_DIR")])
    })
    .await
    .unwrap();
    let yaml = format!(
        r#"apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata: {{name: llmd-tls}}
spec:
  target:
    serviceRef: {{name: sim, portName: http, scheme: https}}
    model: e2e/tiny-model
    tls:
      caRef: {{secretKeyRef: {{name: sim-ca, key: ca.crt}}}}
  load:
    concurrency: 4
    requestCount: 40
    input: {{synthetic: {{inputTokens: {{mean: 16}}, outputTokens: {{mean: 16}}}}}}
  telemetry:
    gpu: {{enabled: false}}
    server:
      tls:
        caRef: {{secretKeyRef: {{name: sim-ca, key: ca.crt}}}}
        serverName: sim.{}.svc
"#,
        ns.name
    );
    let run: BenchmarkRun = serde_saphyr::from_str(&yaml).unwrap();
    ns.api::<BenchmarkRun>()
        .create(&PostParams::default(), &run)
        .await
        .unwrap();
    let done = wait_ended(&ns, "llmd-tls").await;
    // llm-d's first token as over HTTP (fidelity.rs), plus the TLS work on
    // both sides of a 2-core machine: 11.3 ms seen alone.
    let doc = measured_over_tls(&ns, &done, (10.0, 3.0), (2.0, 1.0)).await;
    let client_step = &doc["details"][0]["client"];
    assert_eq!(client_step["successes"], 40, "{client_step:#}");
    assert_eq!(
        client_step["promptSizing"]["method"], "server",
        "{client_step:#}"
    );
    ns.delete().await.unwrap();
}
