//! A run reads only what its namespace may read: its own namespace, the
//! operator's, and namespaces that opt in by label; explicit telemetry URLs
//! only on the installer's allow-list (empty in the suite's install).

use benchrun::api::BenchmarkRun;
use benchrun_e2e::harness::{TestNamespace, client, wait_for};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};

use crate::common::{
    LONG, deploy_sim, ip, open_to_telemetry, phase_is, run, summary_json, wait_requests_done,
};

fn telemetry_condition(r: Option<&BenchmarkRun>) -> Option<(String, String, String)> {
    let c = r?
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "TelemetryDiscovered")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test]
async fn another_namespace_is_read_only_once_it_opts_in_and_metadata_urls_never() {
    let client = client().await;
    let a = TestNamespace::create(&client, "tenant-a").await.unwrap();
    let b = TestNamespace::create(&client, "tenant-b").await.unwrap();
    deploy_sim(&a, 18401, 5, 1).await.unwrap();
    // Another tenant's inference server, in namespace B.
    deploy_sim(&b, 18402, 5, 1).await.unwrap();
    let load = "\n    concurrency: 1\n    duration: 2m\n    input: {synthetic: {inputTokens: {mean: 16}, outputTokens: {mean: 8}}}";
    let extra = format!(
        "  telemetry:\n    server: {{selector: {{matchLabels: {{app: sim}}}}, namespaces: [{}]}}\n    gpu: {{urls: [\"http://169.254.169.254/latest/meta-data\"]}}\n",
        b.name
    );
    let runs = a.api::<BenchmarkRun>();
    runs.create(&PostParams::default(), &run("peek", load, &extra))
        .await
        .unwrap();
    // Refused, and said so without a request to either.
    let refused = wait_for(
        &runs,
        "peek",
        "the refusal",
        LONG,
        |r: Option<&BenchmarkRun>| {
            telemetry_condition(r).is_some_and(|(_, reason, _)| reason == "NotPermitted")
        },
    )
    .await
    .unwrap();
    let (status, _, message) = telemetry_condition(Some(&refused)).unwrap();
    assert_eq!(status, "False");
    assert!(
        message.contains(&format!("namespace {} is not readable", b.name)),
        "{message}"
    );
    assert!(message.contains("link-local"), "{message}");
    let found = refused.status.as_ref().and_then(|s| s.endpoints.clone());
    assert!(
        found.as_ref().is_none_or(|e| e.server.discovered == 0),
        "{found:?}"
    );

    // B's owner opens it: the next discovery finds its server.
    open_to_telemetry(&client, &b.name).await;
    wait_for(
        &runs,
        "peek",
        "B's server to be found",
        LONG,
        |r: Option<&BenchmarkRun>| {
            r.and_then(|r| r.status.as_ref())
                .and_then(|s| s.endpoints.as_ref())
                .is_some_and(|e| e.server.discovered >= 1)
        },
    )
    .await
    .unwrap();
    let cancel = serde_json::json!({"spec": {"cancel": true}});
    runs.patch("peek", &PatchParams::default(), &Patch::Merge(&cancel))
        .await
        .unwrap();
    a.delete().await.unwrap();
    b.delete().await.unwrap();
}

/// `results.configMapName` naming a ConfigMap that is not the run's: the run
/// fails with `ResultsConflict` before launching anything, and the ConfigMap
/// stays exactly as it was (no new owner, so the run's deletion keeps it too).
#[tokio::test]
async fn a_foreign_configmap_is_never_taken_over() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "foreign").await.unwrap();
    let cms = ns.api::<ConfigMap>();
    let theirs: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "team-config"},
        "data": {"settings.yaml": "replicas: 3\n"},
    }))
    .unwrap();
    let before = cms.create(&PostParams::default(), &theirs).await.unwrap();
    let load = "\n    concurrency: 1\n    requestCount: 2";
    let extra = "  results: {configMapName: team-config}\n";
    let mut r = run("grab", load, extra);
    r.spec.target.service_ref = None;
    r.spec.target.url = Some("http://127.0.0.1:9".into());
    let runs = ns.api::<BenchmarkRun>();
    runs.create(&PostParams::default(), &r).await.unwrap();
    let failed = wait_for(&runs, "grab", "Failed", LONG, phase_is("Failed"))
        .await
        .unwrap();
    let reason = failed.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Failed")
            .map(|c| c.reason.clone())
    });
    assert_eq!(reason.as_deref(), Some("ResultsConflict"));
    assert!(
        ns.api::<Job>()
            .get_opt("grab-loadgen")
            .await
            .unwrap()
            .is_none()
    );
    let after = cms.get("team-config").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(after.data, before.data);
    assert_eq!(after.metadata.owner_references, None);
    ns.delete().await.unwrap();
}

/// Another tenant's pod reaching a worker's port gets 401 on every call that
/// could start, read or end it, and the run goes on to complete results.
#[tokio::test]
async fn a_worker_answers_only_its_controller() {
    // Some 30 s of load: the workers still run when the first progress
    // (written every 5 s at most) shows the run under way.
    const REQUESTS: u64 = 1500;
    let client = client().await;
    let ns = TestNamespace::create(&client, "token").await.unwrap();
    deploy_sim(&ns, 18403, 5, 2).await.unwrap();
    let load = format!(
        "\n    concurrency: 2\n    workers: 2\n    requestCount: {REQUESTS}\n    input: {{synthetic: {{inputTokens: {{mean: 16}}, outputTokens: {{mean: 16}}}}}}"
    );
    let runs = ns.api::<BenchmarkRun>();
    runs.create(&PostParams::default(), &run("guarded", &load, ""))
        .await
        .unwrap();
    wait_requests_done(&runs, "guarded").await;
    let workers = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("batch.kubernetes.io/job-name=guarded-loadgen"))
        .await
        .unwrap()
        .items;
    assert_eq!(workers.len(), 2);
    let http = benchrun::net::client::http_client(2);
    for pod in &workers {
        let base = format!("http://{}:8080", ip(pod));
        for (method, path, auth) in [
            ("POST", "/start", None),
            ("GET", "/metrics", None),
            ("GET", "/progress", None),
            ("GET", "/result", None),
            ("POST", "/result/ack", None),
            ("POST", "/result/ack", Some("Bearer guessed")),
        ] {
            let mut req = http::Request::builder()
                .method(method)
                .uri(format!("{base}{path}"));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let req = req.body(http_body_util::Full::default()).unwrap();
            let status = http.request(req).await.unwrap().status();
            assert_eq!(status, 401, "{method} {path} on {base} with {auth:?}");
        }
    }
    let done = wait_for(&runs, "guarded", "Succeeded", LONG, phase_is("Succeeded"))
        .await
        .unwrap();
    let doc = summary_json(&ns, "guarded").await;
    let client_doc = &doc["details"][0]["client"];
    assert_eq!(client_doc["requests"].as_u64(), Some(REQUESTS), "{doc:#}");
    assert_eq!(client_doc["successes"].as_u64(), Some(REQUESTS), "{doc:#}");
    let summary = done.status.and_then(|s| s.summary).unwrap();
    assert!(summary.request_throughput.is_some(), "{summary:?}");
    ns.delete().await.unwrap();
}

/// A Secret named as older versions named a run's worker token
/// (`<run>-worker-token`), made before the run by someone else. The token
/// is written into the run's Job now, and the controller may not create
/// Secrets in a tenant's namespace at all: the planted Secret is neither
/// used nor touched, no Secret is made, and the run succeeds with its own
/// token (its workers answered the controller's calls).
#[tokio::test]
async fn a_planted_worker_token_secret_is_neither_used_nor_touched() {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    use k8s_openapi::api::core::v1::Secret;
    let client = client().await;
    let ns = TestNamespace::create(&client, "planted").await.unwrap();
    deploy_sim(&ns, 18404, 5, 2).await.unwrap();
    // The controller's account may create Jobs here, and not Secrets.
    let may = |verb: &str, resource: &str, group: &str| {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some("system:serviceaccount:benchrun-system:benchrun".into()),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(ns.name.clone()),
                    verb: Some(verb.into()),
                    resource: Some(resource.into()),
                    group: Some(group.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: kube::Api<SubjectAccessReview> = kube::Api::all(client.clone());
        async move {
            let r = api.create(&PostParams::default(), &review).await.unwrap();
            r.status.map(|s| s.allowed)
        }
    };
    assert_eq!(may("create", "jobs", "batch").await, Some(true));
    assert_eq!(may("create", "secrets", "").await, Some(false));
    let planted: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p-worker-token"},
        "stringData": {"token": "known-to-the-planter"},
    }))
    .unwrap();
    let secrets = ns.api::<Secret>();
    secrets
        .create(&PostParams::default(), &planted)
        .await
        .unwrap();
    let load = "\n    concurrency: 1\n    requestCount: 4\n    input: {synthetic: {inputTokens: {mean: 16}, outputTokens: {mean: 16}}}";
    let runs = ns.api::<BenchmarkRun>();
    runs.create(&PostParams::default(), &run("p", load, ""))
        .await
        .unwrap();
    let done = wait_for(&runs, "p", "Succeeded", LONG, phase_is("Succeeded"))
        .await
        .unwrap();
    let summary = done.status.and_then(|s| s.summary).unwrap();
    assert!(summary.request_throughput.is_some(), "{summary:?}");
    let names: Vec<String> = secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, ["p-worker-token"], "no Secret is made");
    let kept = secrets.get("p-worker-token").await.unwrap();
    assert_eq!(kept.metadata.owner_references, None, "left untouched");
    ns.delete().await.unwrap();
}
