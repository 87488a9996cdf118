//! A run reads only what its namespace may read: its own namespace, the
//! operator's, and namespaces that opt in by label; explicit telemetry URLs
//! only on the installer's allow-list (empty in the suite's install).

use benchrun::api::BenchmarkRun;
use benchrun_e2e::harness::{TestNamespace, client, wait_for};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use crate::common::{LONG, deploy_sim, phase_is, run};

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
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let label = serde_json::json!({"metadata": {"labels": {"benchrun.dev/telemetry": "readable"}}});
    namespaces
        .patch(&b.name, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
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
